"""The 12-lead quality gate: per-lead flags from the indices, and a verdict per record.

Every threshold and every flag → verdict rule comes from the versioned QC profile
(data_contracts/qc_profile.json); this module only applies them. `assess` never raises on any
signal: a flat, all-NaN or pure-noise record gets flags and a verdict, not an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import numpy as np
import pyarrow as pa

from data_contracts.leads import CANONICAL_LEADS, CHEST_INDEX
from data_contracts.schemas import FLAG_COLUMNS, N_LEADS, QC_FLAGS, QC_VERDICTS, QUALITY
from tasks.quality import lead_reversal
from tasks.quality.indices import IndexParams, LeadIndices, masked_median, measure
from tasks.quality.profile_file import profile_bytes
from tasks.store.location import Location

FLAGS = QC_FLAGS
VERDICTS = QC_VERDICTS  # in increasing severity
# rules only, never stored: the `reversal` leads of a swap whose evidence reaches the reject margin
CERTAIN_REVERSAL = "reversal_certain"
RULE_FLAGS = (*FLAGS, CERTAIN_REVERSAL)
STORED_INDICES: tuple[str, ...] = ("powerline", "baseline", "emg", "template_corr", "kurtosis")


@dataclass(frozen=True)
class Thresholds:
    """When an index raises a flag (the `thresholds` section of the profile)."""

    missing_fraction: float
    flat_still_fraction: float
    flat_rms_mv: float
    disconnected_ratio: float
    disconnected_corr: float
    saturation_fraction: float  # on at least two plateaus (a limit reached again and again)
    saturation_single: float  # on one plateau
    amplitude_max_mv: float
    limb_gain_ratio: float  # a limb lead off its Einthoven/Goldberger value by this factor
    chest_amplitude_z: float  # a chest lead this many sd off what the other chest leads predict
    chest_log_mean: tuple[float, ...]  # V1..V6: mean log whole-beat amplitude on clean records
    chest_log_cov: tuple[tuple[float, ...], ...]  # and its covariance
    powerline_mv: float
    baseline_mv: float  # the baseline's half peak-to-peak: slow respiratory wander up to here is normal
    baseline_fast_mv: float  # its fast part's (electrode motion, steps): lower, a clean lead has little
    emg_mv: float
    low_sqi_corr: float
    low_sqi_kurtosis: float
    low_sqi_kurtosis_corr: float  # a low kurtosis counts only where beats are not this alike


@dataclass(frozen=True)
class Rule:
    """Fires when at least `min_leads` of `leads` carry one of `flags`."""

    verdict: str
    reason: str
    flags: tuple[str, ...]
    min_leads: int
    leads: tuple[str, ...] = CANONICAL_LEADS


@dataclass(frozen=True)
class Reversal:
    """When a cable swap is suspected (tasks/quality/lead_reversal.py): its score beats "no swap" by
    `limb_margin` (limb electrodes) or `chest_margin` (two chest cables), with at least
    `min_limb_leads` and `min_chest_leads` voting; P-wave features count where the median P-window
    beat correlation reaches `p_wave_min_corr`. A suspected swap flags the leads it changes; where it
    beats "no swap" by `limb_reject_margin` (`chest_reject_margin`) too, those leads are also
    `reversal_certain`, which the rules can reject on (None: the flag margin, as before qc/6)."""

    model: lead_reversal.ReversalModel
    limb_margin: float
    chest_margin: float
    p_wave_min_corr: float
    min_limb_leads: int
    min_chest_leads: int
    limb_reject_margin: float | None = None
    chest_reject_margin: float | None = None


@dataclass(frozen=True)
class QcProfile:
    version: str
    indices: IndexParams
    thresholds: Thresholds
    reversal: Reversal
    rules: tuple[Rule, ...]
    unusable: dict[str, float]
    benchmark: dict[str, Any]  # this version measured on held-out real records (bench/qc_real.py)


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"QC profile: unknown {cls.__name__} keys {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def parse_profile(raw: dict[str, Any]) -> QcProfile:
    """A QC profile from its JSON content; refuses unknown keys, flags, leads and verdicts, and
    reject margins that would do nothing or less than they say (below their flag margin, or set
    while no rule names CERTAIN_REVERSAL)."""
    rules = tuple(_build(Rule, r) for r in raw["rules"])
    indices = _build(IndexParams, raw["indices"])
    rev = dict(raw["reversal"])
    reversal = _build(Reversal, {**rev, "model": lead_reversal.load_model(rev["model"], indices)})
    for rule in rules:
        if (
            rule.verdict not in VERDICTS
            or set(rule.flags) - set(RULE_FLAGS)
            or set(rule.leads) - set(CANONICAL_LEADS)
        ):
            raise ValueError(f"QC profile: bad rule {rule}")
    rejects = {"limb": reversal.limb_reject_margin, "chest": reversal.chest_reject_margin}
    flags = {"limb": reversal.limb_margin, "chest": reversal.chest_margin}
    if any(m is not None and m < flags[kind] for kind, m in rejects.items()):
        raise ValueError(f"QC profile: a reject margin below its flag margin ({rejects} < {flags})")
    if any(m is not None for m in rejects.values()) and not any(CERTAIN_REVERSAL in r.flags for r in rules):
        raise ValueError(f"QC profile: reject margins set but no rule names {CERTAIN_REVERSAL}")
    return QcProfile(
        version=str(raw["version"]),
        indices=indices,
        thresholds=_build(Thresholds, raw["thresholds"]),
        reversal=reversal,
        rules=rules,
        unusable={k: float(v) for k, v in raw["unusable"].items()},
        benchmark=dict(raw.get("benchmark", {})),
    )


def load_profile(path: Location | None = None) -> QcProfile:
    """The QC profile at `path` (a path or an s3:// location, such as a model's own profile), or
    the one shipped in data_contracts/qc_profile.json."""
    return parse_profile(json.loads(profile_bytes(path)))


@dataclass
class QualityResult:
    """What the gate says about n records."""

    verdict: list[str]
    reasons: list[list[str]]
    flags: list[list[list[str]]]  # per record, per canonical lead: flag names
    masks: dict[str, np.ndarray]  # flag name (and CERTAIN_REVERSAL) → (n, 12) bool
    indices: LeadIndices

    def take(self, rows: np.ndarray) -> QualityResult:
        """The result for the records at `rows` (positions), as assessed: nothing is measured again."""
        return QualityResult(
            [self.verdict[i] for i in rows],
            [self.reasons[i] for i in rows],
            [self.flags[i] for i in rows],
            {name: mask[rows] for name, mask in self.masks.items()},
            self.indices.take(rows),
        )

    def without_leads(self, rows: np.ndarray, removed: np.ndarray) -> QualityResult:
        """The result for the records at `rows` with the leads where `removed` (len(rows), 12) is
        True taken out, as occlusion takes them out: flagged `missing`, every verdict as assessed
        (taking four leads out to see what they carried does not make a window unusable)."""
        part = self.take(rows)
        removed = np.asarray(removed, dtype=bool)
        flags = [
            [
                [*lead, "missing"] if gone and "missing" not in lead else lead
                for lead, gone in zip(f, r, strict=True)
            ]
            for f, r in zip(part.flags, removed.tolist(), strict=True)
        ]
        masks = part.masks | {"missing": part.masks["missing"] | removed}
        return QualityResult(part.verdict, part.reasons, flags, masks, part.indices)


def _limb_pairs() -> np.ndarray:
    """(6, 10, 6): for each limb lead, its value from each pair of the other five limb leads
    (Einthoven's and Goldberger's identities make any two of them determine all six)."""
    basis = np.array([[1, 0], [0, 1], [-1, 1], [-0.5, -0.5], [1, -0.5], [-0.5, 1]])  # in I and II
    weights = np.zeros((6, 10, 6))
    for k in range(6):
        others = [j for j in range(6) if j != k]
        for n, (a, b) in enumerate(combinations(others, 2)):
            weights[k, n, [a, b]] = np.linalg.solve(basis[[a, b]].T, basis[k])
    return weights


_LIMB_PAIRS = _limb_pairs()


def limb_gains(template: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """(n, 6) each limb lead's mean beat over its value from the others (least squares), the median
    over the pairs of trusted leads that give it: 1 where the file's per-lead scales are right, the
    factor where one lead's is wrong (a wrong lead spoils 4 of the 10 pairs of each other lead, so
    their medians hold). NaN where not measurable."""
    limb = np.nan_to_num(np.asarray(template[:, :6], dtype=np.float64))
    n, _, width = limb.shape
    pred = np.matmul(_LIMB_PAIRS.reshape(60, 6), limb).reshape(n, 6, 10, width)
    den = (pred * pred).sum(-1)
    gain = (pred * limb[:, :, None, :]).sum(-1) / np.where(den > 0, den, 1.0)
    uses = _LIMB_PAIRS != 0  # (6, 10, 6)
    keep = ~(uses[None] & ~trusted[:, None, None, :6]).any(-1) & (den > 0) & trusted[:, :6, None]
    return masked_median(gain, keep, np.nan)


def chest_z(log_amp: np.ndarray, t: Thresholds) -> np.ndarray:
    """(n, 6) each chest lead's log amplitude (of the whole mean beat) against what the other
    available (finite) ones predict under the Gaussian of clean records (conditional mean and sd),
    in sd; NaN where the lead or all the others are missing."""
    mean, cov = np.array(t.chest_log_mean), np.array(t.chest_log_cov)
    ok = np.isfinite(log_amp)
    dev = np.where(ok, log_amp - mean, 0.0)
    z = np.full(log_amp.shape, np.nan)
    for k in range(6):
        others = ok & (np.arange(6) != k)  # (n, 6): the predictors of lead k per record
        # conditioning on a subset: zero the rows/columns of the missing ones, unit diagonal there
        keep = others[:, :, None] & others[:, None, :]
        sub = np.where(keep, cov, 0.0) + np.eye(6) * ~others[:, :, None]
        w = np.linalg.solve(sub, np.where(others, cov[:, k], 0.0)[..., None])[..., 0]  # Σ⁻¹ Σ_ok
        cond_mean = (w * dev).sum(1)
        cond_var = cov[k, k] - (w * np.where(others, cov[:, k], 0.0)).sum(1)
        z[:, k] = np.where(ok[:, k] & others.any(1), (dev[:, k] - cond_mean) / np.sqrt(cond_var), np.nan)
    return z


def _chest_outliers(amp: np.ndarray, ok: np.ndarray, t: Thresholds, rounds: int = 2) -> np.ndarray:
    """(n, 12) chest leads whose amplitude `amp` departs by more than chest_amplitude_z from what
    the other chest leads predict (a wrong per-lead scale); the worst lead of a record is set aside
    before the next round so that it does not drag the prediction of the others along. `amp` is the
    whole mean beat's peak-to-peak, not the QRS's: a wrong scale multiplies P, QRS and T alike,
    while the QRS alone is small wherever the lead lies near the perpendicular of the QRS axis
    (V1-V2 or the transition lead in many healthy hearts), which the T and P waves seldom share."""
    log = np.log(np.where(ok & (amp > 0), amp, np.nan))[:, CHEST_INDEX]
    out = np.zeros(log.shape, dtype=bool)
    for _ in range(rounds):
        z = np.abs(np.nan_to_num(chest_z(np.where(out, np.nan, log), t)))
        worst = np.argmax(z, axis=1)
        hit = np.take_along_axis(z, worst[:, None], axis=1)[:, 0] > t.chest_amplitude_z
        out[np.flatnonzero(hit), worst[hit]] = True
    full = np.zeros(amp.shape, dtype=bool)
    full[:, CHEST_INDEX] = out
    return full


def flag_masks(ix: LeadIndices, profile: QcProfile) -> dict[str, np.ndarray]:
    """Flag name → (n, 12) bool, from the indices and the profile's thresholds; and
    CERTAIN_REVERSAL, the `reversal` leads whose swap reaches the reject margin."""
    t = profile.thresholds
    with np.errstate(invalid="ignore"):
        missing = ix.missing > t.missing_fraction
        # no ECG: tiny, or no QRS above the noise of the QRS band, and beats unlike their mean
        faint = (ix.rms < t.flat_rms_mv) | (ix.qrs_amplitude < t.disconnected_ratio * ix.rms)
        no_ecg = faint & ~(ix.template_corr >= t.disconnected_corr)
        flat = ~missing & ((ix.still >= t.flat_still_fraction) | no_ecg)
        saturation = ~missing & (
            ((ix.saturation >= t.saturation_fraction) & (ix.plateaus >= 2))
            | (ix.saturation >= t.saturation_single)
        )
        dead = missing | flat | saturation
        no_beats = (ix.beats < profile.indices.min_beats)[:, None]
        limb = np.zeros(missing.shape, dtype=bool)
        limb[:, :6] = np.abs(np.log(limb_gains(ix.template, ~dead))) > np.log(t.limb_gain_ratio)
        amplitude = ~dead & (
            (ix.qrs_amplitude > t.amplitude_max_mv) | limb | _chest_outliers(ix.beat_amplitude, ~dead, t)
        )
        low_sqi = ~dead & (
            no_beats
            | (ix.template_corr < t.low_sqi_corr)
            | ((ix.kurtosis < t.low_sqi_kurtosis) & (ix.template_corr < t.low_sqi_kurtosis_corr))
        )
        masks = {
            "missing": missing,
            "flat": flat,
            "saturation": saturation,
            "amplitude": amplitude,
            "powerline": ~dead & (ix.powerline >= t.powerline_mv),
            "baseline": ~dead & ((ix.baseline >= t.baseline_mv) | (ix.baseline_fast >= t.baseline_fast_mv)),
            "emg": ~dead & (ix.emg >= t.emg_mv),
            "low_sqi": low_sqi,
        }
        masks["reversal"], masks[CERTAIN_REVERSAL] = reversal_masks(ix, ~(dead | low_sqi), profile)
    return masks


def suspected_swaps(
    ix: LeadIndices, trusted: np.ndarray, profile: QcProfile
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) index into the reversal model's swaps of the suspected cable swap, -1 for none; and
    (n,) bool, whether it beats "no swap" by the reject margin of its kind as well."""
    rev = profile.reversal
    views = lead_reversal.features(ix.template, ix.p_corr, trusted, profile.indices, rev.p_wave_min_corr)
    votes = {"limb": rev.min_limb_leads, "chest": rev.min_chest_leads}
    margins = {"limb": rev.limb_margin, "chest": rev.chest_margin}
    swap, lead = lead_reversal.detect(views, trusted, rev.model, margins, votes)
    reject = {
        "limb": rev.limb_margin if rev.limb_reject_margin is None else rev.limb_reject_margin,
        "chest": rev.chest_margin if rev.chest_reject_margin is None else rev.chest_reject_margin,
    }
    return swap, lead_reversal.beats_margin(swap, lead, rev.model, reject)


def reversal_masks(ix: LeadIndices, trusted: np.ndarray, profile: QcProfile) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12) bool: the leads that the suspected swap of each record changes; and the same where
    the swap reaches the reject margin, else nothing."""
    swap, certain = suspected_swaps(ix, trusted, profile)
    changed = np.zeros((len(profile.reversal.model.swaps) + 1, N_LEADS), dtype=bool)
    for k, name in enumerate(profile.reversal.model.swaps):
        changed[k, [CANONICAL_LEADS.index(x) for x in lead_reversal.leads_changed(name)]] = True
    flagged = changed[swap]  # -1 picks the last row: nothing changed
    return flagged, flagged & certain[:, None]


def verdicts(masks: dict[str, np.ndarray], profile: QcProfile) -> tuple[list[str], list[list[str]]]:
    """The worst verdict of the fired rules per record, and their reasons (in rule order)."""
    n = next(iter(masks.values())).shape[0]
    level = np.zeros(n, dtype=np.int64)
    reasons: list[list[str]] = [[] for _ in range(n)]
    for rule in profile.rules:
        leads = [CANONICAL_LEADS.index(x) for x in rule.leads]
        has = np.zeros((n, len(leads)), dtype=bool)
        for flag in rule.flags:
            has |= masks[flag][:, leads]
        count = has.sum(1)
        fires = count >= rule.min_leads
        level = np.where(fires, np.maximum(level, VERDICTS.index(rule.verdict)), level)
        for i in np.flatnonzero(fires):
            reasons[i].append(rule.reason.format(n=int(count[i])))
    return [VERDICTS[v] for v in level], reasons


def assess(signals: np.ndarray, profile: QcProfile) -> QualityResult:
    """Flags per lead and a verdict per record for signals (n, 12, samples) in mV, NaN allowed."""
    signals = np.asarray(signals)
    if signals.ndim != 3 or signals.shape[1] != N_LEADS:
        raise ValueError(f"assess takes (n, {N_LEADS}, samples) signals, got shape {signals.shape}")
    ix = measure(signals, profile.indices)
    masks = flag_masks(ix, profile)
    verdict, reasons = verdicts(masks, profile)
    stacked = np.stack([masks[f] for f in FLAGS], axis=-1)  # (n, 12, flags)
    flags = [[[FLAGS[k] for k in np.flatnonzero(lead)] for lead in rec] for rec in stacked]
    return QualityResult(verdict, reasons, flags, masks, ix)


def _lead_values(values: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, N_LEADS)


def result_table(record_ids: list[str], sites: list[str], result: QualityResult, qc_version: str) -> pa.Table:
    """Rows of `quality/` (with the `site` column that `store.stage_parts` partitions on)."""
    n = len(record_ids)
    now = datetime.now(UTC)
    columns: dict[str, Any] = {
        "record_id": pa.array(record_ids, pa.string()),
        "site": pa.array(sites, pa.string()),
        "verdict": pa.array(result.verdict, pa.string()),
        "reasons": pa.array(result.reasons, pa.list_(pa.string())),
    }
    for j, col in enumerate(FLAG_COLUMNS):
        columns[col] = pa.array([",".join(rec[j]) for rec in result.flags], pa.string())
    for name in STORED_INDICES:
        columns[name] = _lead_values(getattr(result.indices, name))
    columns["qc_version"] = pa.array([qc_version] * n, pa.string())
    columns["checked_at"] = pa.array([now] * n, QUALITY.field("checked_at").type)
    table = pa.table(columns)
    return table.select(["site", *QUALITY.names]).cast(QUALITY.insert(0, pa.field("site", pa.string())))
