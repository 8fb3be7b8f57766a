"""The 12-lead quality gate: per-lead flags from the indices, and a verdict per record.

Every threshold and every flag → verdict rule comes from the versioned QC profile
(data_contracts/qc_profile.json); this module only applies them. `assess` never raises on any
signal: a flat, all-NaN or pure-noise record gets flags and a verdict, not an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FLAG_COLUMNS, N_LEADS, QC_FLAGS, QC_VERDICTS, QUALITY
from tasks import lead_reversal
from tasks.quality_indices import IndexParams, LeadIndices, measure

FLAGS = QC_FLAGS
VERDICTS = QC_VERDICTS  # in increasing severity
STORED_INDICES: tuple[str, ...] = ("powerline", "baseline", "emg", "template_corr", "kurtosis")
_CHEST = [CANONICAL_LEADS.index(f"V{k}") for k in range(1, 7)]


@dataclass(frozen=True)
class Thresholds:
    """When an index raises a flag (the `thresholds` section of the profile)."""

    missing_fraction: float
    flat_still_fraction: float
    flat_rms_mv: float
    disconnected_ratio: float
    disconnected_corr: float
    saturation_fraction: float
    saturation_min_mv: float
    amplitude_max_mv: float
    amplitude_neighbour_ratio: float
    powerline_mv: float
    baseline_mv: float
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
    """When a limb-electrode swap is suspected (tasks/lead_reversal.py): its score beats "no swap" by
    `margin`, with at least `min_limb_leads` and `min_chest_leads` voting; P-wave features count where
    the median P-window beat correlation reaches `p_wave_min_corr`. A suspected swap flags the limb
    leads it changes."""

    model: lead_reversal.ReversalModel
    margin: float
    p_wave_min_corr: float
    min_limb_leads: int
    min_chest_leads: int


@dataclass(frozen=True)
class QcProfile:
    version: str
    indices: IndexParams
    thresholds: Thresholds
    reversal: Reversal
    rules: tuple[Rule, ...]
    unusable: dict[str, float]


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"QC profile: unknown {cls.__name__} keys {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def parse_profile(raw: dict[str, Any]) -> QcProfile:
    """A QC profile from its JSON content; refuses unknown keys, flags, leads and verdicts."""
    rules = tuple(_build(Rule, r) for r in raw["rules"])
    indices = _build(IndexParams, raw["indices"])
    rev = dict(raw["reversal"])
    reversal = _build(Reversal, {**rev, "model": lead_reversal.load_model(rev["model"], indices)})
    for rule in rules:
        if (
            rule.verdict not in VERDICTS
            or set(rule.flags) - set(FLAGS)
            or set(rule.leads) - set(CANONICAL_LEADS)
        ):
            raise ValueError(f"QC profile: bad rule {rule}")
    return QcProfile(
        version=str(raw["version"]),
        indices=indices,
        thresholds=_build(Thresholds, raw["thresholds"]),
        reversal=reversal,
        rules=rules,
        unusable={k: float(v) for k, v in raw["unusable"].items()},
    )


def load_profile(path: Path | None = None) -> QcProfile:
    """The QC profile at `path`, or the one shipped in data_contracts/qc_profile.json."""
    raw = load_json("qc_profile.json") if path is None else json.loads(Path(path).read_text(encoding="utf-8"))
    return parse_profile(raw)


@dataclass
class QualityResult:
    """What the gate says about n records."""

    verdict: list[str]
    reasons: list[list[str]]
    flags: list[list[list[str]]]  # per record, per canonical lead: flag names
    masks: dict[str, np.ndarray]  # flag name → (n, 12) bool
    indices: LeadIndices


def _amplitude_outliers(amp: np.ndarray, ok: np.ndarray, ratio: float, rounds: int = 2) -> np.ndarray:
    """Chest leads whose QRS amplitude departs from their nearest usable chest neighbours by more
    than `ratio` (a gain error); the worst lead of a record is set aside before the next round so
    that it does not drag its neighbours along."""
    n = amp.shape[0]
    log = np.log(np.where(ok & (amp > 0), amp, np.nan))[:, _CHEST]
    out = np.zeros((n, len(_CHEST)), dtype=bool)
    pos = np.arange(len(_CHEST))
    for _ in range(rounds):
        avail = np.isfinite(log) & ~out
        dev = np.full(log.shape, np.nan)
        for j in pos:
            ref = np.zeros(n)
            cnt = np.zeros(n)
            for side in (pos[:j][::-1], pos[j + 1 :]):
                found = np.zeros(n, dtype=bool)
                for k in side:  # nearest available neighbour on this side
                    take = avail[:, k] & ~found
                    ref += np.where(take, log[:, k], 0.0)
                    cnt += take
                    found |= take
            dev[:, j] = np.where(
                avail[:, j] & (cnt > 0), np.abs(log[:, j] - ref / np.maximum(cnt, 1)), np.nan
            )
        worst = np.argmax(np.where(np.isfinite(dev), dev, -1.0), axis=1)
        hit = np.take_along_axis(dev, worst[:, None], axis=1)[:, 0] > np.log(ratio)
        out[np.flatnonzero(hit), worst[hit]] = True
    full = np.zeros(amp.shape, dtype=bool)
    full[:, _CHEST] = out
    return full


def flag_masks(ix: LeadIndices, profile: QcProfile) -> dict[str, np.ndarray]:
    """Flag name → (n, 12) bool, from the indices and the profile's thresholds."""
    t = profile.thresholds
    with np.errstate(invalid="ignore"):
        missing = ix.missing > t.missing_fraction
        disconnected = (ix.qrs_amplitude < t.disconnected_ratio * ix.rms) & (
            ix.template_corr < t.disconnected_corr
        )
        flat = ~missing & ((ix.still >= t.flat_still_fraction) | (ix.rms < t.flat_rms_mv) | disconnected)
        saturation = ~missing & (ix.saturation >= t.saturation_fraction) & (ix.extreme >= t.saturation_min_mv)
        dead = missing | flat | saturation
        no_beats = (ix.beats < profile.indices.min_beats)[:, None]
        amplitude = ~dead & (
            (ix.qrs_amplitude > t.amplitude_max_mv)
            | _amplitude_outliers(ix.qrs_amplitude, ~dead, t.amplitude_neighbour_ratio)
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
            "baseline": ~dead & (ix.baseline >= t.baseline_mv),
            "emg": ~dead & (ix.emg >= t.emg_mv),
            "low_sqi": low_sqi,
        }
        masks["reversal"] = reversal_mask(ix, ~(dead | low_sqi), profile)
    return masks


def suspected_swaps(ix: LeadIndices, trusted: np.ndarray, profile: QcProfile) -> np.ndarray:
    """(n,) index into the reversal model's swaps of the suspected limb-electrode swap, -1 for none."""
    rev = profile.reversal
    per_lead = lead_reversal.features(ix.template, ix.p_corr, trusted, profile.indices, rev.p_wave_min_corr)
    votes = {"limb": rev.min_limb_leads, "chest": rev.min_chest_leads}
    return lead_reversal.detect(per_lead, trusted, rev.model, rev.margin, votes)


def reversal_mask(ix: LeadIndices, trusted: np.ndarray, profile: QcProfile) -> np.ndarray:
    """(n, 12) bool: the limb leads that the suspected swap of each record changes."""
    swap = suspected_swaps(ix, trusted, profile)
    changed = np.zeros((len(profile.reversal.model.swaps) + 1, N_LEADS), dtype=bool)
    for k, name in enumerate(profile.reversal.model.swaps):
        changed[k, [CANONICAL_LEADS.index(x) for x in lead_reversal.leads_changed(name)]] = True
    return changed[swap]  # -1 picks the last row: nothing changed


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
