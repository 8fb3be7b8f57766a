"""Benchmark of the quality gate on real recordings: clean real 12-lead windows with artifacts
injected by bench/_artifacts.py (independent of the synthetic archive), split by patient into a
fitting part and a held-out part. Every threshold and fitted score of the QC profile is chosen on
the fitting part; the figures that count are those of the held-out part. Prints one JSON object.

- Records: LUDB (morphology; its leads are normalized to 1 mV peak-to-peak, so each LUDB window
  gets real amplitudes back: its limb leads rescaled until Einthoven's and Goldberger's identities
  hold, which they do exactly, then lead II and each chest lead scaled to amplitudes drawn from a
  log-normal fitted to the clean CinC records of the same part, one draw per LUDB record, so that
  no one CinC record's amplitude pattern is copied onto many) and the CinC 2021 sample, harmonized
  by the project (500 Hz, 10-s windows; padded tails left out). Split by patient (PTB S0002/S0003,
  S0006/S0007 and S0008-S0010 are one patient each) within each source, seed SPLIT_SEED.
- Clean leads: a lead is clean when its own noise, measured here by textbook estimators that are
  not the gate's (two-stage median-filter baseline, de Chazal et al. 2004; 40 Hz high-pass rms
  between neurokit2's R peaks; Hann-windowed mains amplitude), is below half of what the profile
  calls unusable, it is not held at one value for the whole window (a zeroed or disconnected
  lead, in which the estimators see no noise; added in session 17, after the fresh part showed
  six such leads counted clean), and its record is not one of REVIEWED (real artifacts seen in
  the recordings, kept as tests). A clean record has no lead with own noise at or above the
  unusable strength and none held at one value: the gate must never reject it. Artifacts are
  injected into clean records only.
- A fresh part (--part fresh --fresh DIR): real records no threshold or rule was ever looked at
  against, judged like the held-out part (every one of them is "fresh"; the fitting part and the
  LUDB amplitude draws stay as they are). DIR holds source folders of WFDB records. Three parts
  have been used (session 17: 50 CinC 2021 records of torch_ecg's `sample-data/cinc2021`; session
  19: 221 CPSC 2018 and CinC 2021 records; session 20: 192 CODE-15%, PTB-XL, CPSC-Extra and Georgia
  records); none is in ../shared/data; docs/BENCHMARKS.md says where each comes from and how to
  rebuild it.
- Out of fold (--part fit): the gate judged fold by fold (patients in 5 folds), its chest Gaussian
  fitted on the other folds: clean leads flagged, clean records rejected, recall per kind; and per
  candidate z the chest-amplitude rule alone: clean chest leads flagged, chest gain errors found
  (the in-sample rate flatters a rule fitted on the same records; the reversal model's own
  out-of-fold figures are tools/fit_lead_reversal.py's).
- Scores: per artifact kind, recall of the kind's own flag on the leads it reaches at or above the
  profile's `unusable` strength, and the confusion (every flag those leads received); flags on the
  clean leads of the records as recorded; verdicts of the clean records; flags on untouched clean
  leads of injected windows. Side by side, neurokit2's zhao2018 rating (`Unacceptable` counts as a
  flag) on the same held-out windows, and the speed of both in the same run.
With --write-profile (held-out part, packaged profile) the confusion table is written into the
profile's `benchmark` section, which the quality report shows in its methods section.
With --list (fitting or fresh part only) the windows with a flag on a clean lead, or a clean
record rejected, are listed with their flags: where to look next, on a part that may be looked at.
Usage: python bench/qc_real.py [--part held_out|fit|fresh] [--fresh DIR] [--copies 3] [--seed 2121]
                               [--nk-per-kind 25] [--profile PATH] [--write-profile] [--list]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from _artifacts import KINDS, Truth, inject
from _neurokit import UNACCEPTABLE, zhao2018
from scipy import ndimage
from scipy.signal import butter, decimate, sosfiltfilt

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SPLIT_SEED = 21
FS = 500
WINDOW = 10 * FS
REVIEWED: dict[str, str] = {
    "ChapmanShaoxing_Ningbo/JS45542": "V1-V6 zero",
    "ChapmanShaoxing_Ningbo/JS45544": "V2-V6 zero, V1 a ramp then zero",
    "ChapmanShaoxing_Ningbo/JS45547": "V2-V6 held flat for about 0.6 s, a motion burst in V1",
    "ChapmanShaoxing_Ningbo/JS45551": "V4-V6 zero",
    "G12EC/E00006": "a transient of over 8 mV in most leads at 9.8 s",
}
SAME_PATIENT = {
    "PTB_PTBXL/S0003": "PTB_PTBXL/S0002",
    "PTB_PTBXL/S0007": "PTB_PTBXL/S0006",
    "PTB_PTBXL/S0009": "PTB_PTBXL/S0008",
    "PTB_PTBXL/S0010": "PTB_PTBXL/S0008",
}
PARTS = ("held_out", "fit", "fresh")
FRESH = "fresh:"  # source prefix of the records given with --fresh
OWN_NOISE = {"baseline": "baseline", "emg": "emg", "mains": "powerline"}  # estimator → profile flag
BATCH = 256


@dataclass
class Windows:
    """Full 10-s harmonized windows: `record` as `<source>/<name>`, signals (n, 12, 5000) mV."""

    record: list[str]
    source: list[str]
    x: np.ndarray


def load_windows(fresh: Path | None = None) -> Windows:
    """LUDB and the CinC sample through the project's harmonization; full windows only. With
    `fresh`, also the WFDB records in its source folders (`<fresh>/<source>/<name>.hea`), named
    `fresh:<source>/<name>`."""
    import wfdb

    from tasks.ingest.harmonize import harmonize
    from tasks.ingest.wfdb_reader import RawRecord

    heads = sorted((SHARED / "ludb" / "data").glob("*.hea"), key=lambda p: int(p.stem))
    heads += sorted((SHARED / "cinc2021").glob("*/*.hea"))
    heads += sorted(fresh.glob("*/*.hea")) if fresh is not None else []
    record, source, x = [], [], []
    for head in heads:
        rec = wfdb.rdrecord(str(head.with_suffix("")))
        raw = RawRecord(
            rec.p_signal.astype(np.float32), list(rec.sig_name), list(rec.units), float(rec.fs), []
        )
        h = harmonize(raw, target_fs=FS, window_s=10.0, min_duration_s=8.0, max_duration_s=600.0)
        src = "ludb" if head.parent.name == "data" else head.parent.name
        src = f"{FRESH}{src}" if fresh is not None and head.is_relative_to(fresh) else src
        for w, valid in zip(h.windows, h.n_valid, strict=True):
            if valid == WINDOW:
                record.append(f"{src}/{head.stem}")
                source.append(src)
                x.append(w)
    return Windows(record, source, np.stack(x).astype(np.float64))


def split(w: Windows) -> np.ndarray:
    """(n,) part per window, 'fit' or 'held_out': patients shuffled within each source with
    SPLIT_SEED and dealt alternately; every window of a fresh source is 'fresh'."""
    rng = np.random.default_rng(SPLIT_SEED)
    patient = [SAME_PATIENT.get(r, r) for r in w.record]
    part = {p: "fresh" for p, s in zip(patient, w.source, strict=True) if s.startswith(FRESH)}
    for src in sorted(s for s in set(w.source) if not s.startswith(FRESH)):
        groups = sorted({p for p, s in zip(patient, w.source, strict=True) if s == src})
        for k, g in enumerate(rng.permutation(groups)):
            part[g] = ("fit", "held_out")[k % 2]
    return np.array([part[p] for p in patient])


def amplitude(x: np.ndarray) -> np.ndarray:
    """Robust peak-to-peak per lead (0.5-99.5 percentiles above 0.5 Hz), mV."""
    hp = sosfiltfilt(butter(2, 0.5, "highpass", fs=FS, output="sos"), x, axis=-1)
    return np.percentile(hp, 99.5, axis=-1) - np.percentile(hp, 0.5, axis=-1)


AMPLITUDE_LEADS = [1, 6, 7, 8, 9, 10, 11]  # II, V1-V6: the amplitudes a LUDB window is given


def amplitude_draws(amp: np.ndarray, record: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 12) amplitudes from a log-normal over AMPLITUDE_LEADS fitted to (windows, 12) real ones,
    each record weighted once (its windows' mean log), the covariance shrunk a tenth to its diagonal."""
    logs = np.log(amp[:, AMPLITUDE_LEADS])
    names = sorted(set(record))
    per = np.stack([logs[[r == name for r in record]].mean(0) for name in names])
    cov = np.cov(per, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov))
    out = np.ones((n, 12))
    out[:, AMPLITUDE_LEADS] = np.exp(rng.multivariate_normal(per.mean(0), cov, size=n))
    return out


def restore_ludb(x: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """A LUDB window (12, n) with real amplitudes: limb leads rescaled so that III = II - I and
    Goldberger's aVR, aVL, aVF hold (exactly, up to one factor), then lead II and each chest lead
    given the amplitude that the (12,) `donor` amplitudes say."""
    (a, b), *_ = np.linalg.lstsq(np.stack([x[0], x[2]], axis=1), x[1], rcond=None)
    y = x.copy()
    y[0], y[2] = a * x[0], b * x[2]
    goldberger = {3: -(y[0] + y[1]) / 2, 4: (y[0] - y[2]) / 2, 5: (y[1] + y[2]) / 2}
    for k, target in goldberger.items():
        y[k] = x[k] * (x[k] @ target) / (x[k] @ x[k])
    amp = amplitude(y)
    y[:6] *= donor[1] / amp[1]
    y[6:] *= (donor[6:] / amp[6:])[:, None]
    return y


def _r_peaks(x: np.ndarray) -> list[np.ndarray]:
    """neurokit2's R peaks per window, found on the lead with the largest amplitude."""
    import neurokit2 as nk

    peaks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in x:
            lead = w[int(np.argmax(amplitude(w)))]
            try:
                _, info = nk.ecg_peaks(nk.ecg_clean(lead, sampling_rate=FS), sampling_rate=FS)
                peaks.append(np.asarray(info["ECG_R_Peaks"], dtype=int))
            except Exception:
                peaks.append(np.zeros(0, dtype=int))
    return peaks


def own_noise(x: np.ndarray) -> dict[str, np.ndarray]:
    """(n, 12) per estimator, mV: baseline (half peak-to-peak of a 0.2 s then 0.6 s median filter
    at 100 Hz), emg (90th percentile of 0.1-s rms above 40 Hz away from R peaks), mains (Hann-
    windowed amplitude at 50 or 60 Hz and harmonics, root sum of squares, the larger)."""
    low = decimate(x, 5, ftype="fir", axis=-1, zero_phase=True)
    base = ndimage.median_filter(ndimage.median_filter(low, size=(1, 1, 21)), size=(1, 1, 61))
    high = sosfiltfilt(butter(4, 40, "highpass", fs=FS, output="sos"), x, axis=-1)
    blocks = np.sqrt((high.reshape(*x.shape[:2], -1, FS // 10) ** 2).mean(-1))  # (n, 12, 100)
    centres = (np.arange(blocks.shape[-1]) + 0.5) * (FS // 10)
    emg = np.zeros(x.shape[:2])
    for i, r in enumerate(_r_peaks(x)):
        away = (
            np.abs(centres[:, None] - r[None, :]).min(1) > 0.08 * FS
            if len(r)
            else np.ones(len(centres), bool)
        )
        emg[i] = np.percentile(blocks[i][:, away], 90, axis=-1)
    window = np.hanning(x.shape[-1])
    spec = np.abs(np.fft.rfft((x - x.mean(-1, keepdims=True)) * window, axis=-1)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / FS)
    mains = np.zeros(x.shape[:2])
    for f0 in (50.0, 60.0):
        harmonics = [h * f0 for h in range(1, 5) if h * f0 < FS / 2 - 5]
        peaks = [spec[..., np.abs(freqs - f) <= 0.6].max(-1) for f in harmonics]
        mains = np.maximum(mains, np.sqrt(np.sum(np.square(peaks), axis=0)))
    return {"baseline": (base.max(-1) - base.min(-1)) / 2, "emg": emg, "mains": mains}


def below(
    noise: dict[str, np.ndarray], reviewed: np.ndarray, unusable: dict[str, float], share: float
) -> np.ndarray:
    """(n, 12) bool: own noise below `share` of the unusable strength of its flag, record not reviewed."""
    ok = ~reviewed[:, None] & np.ones(noise["baseline"].shape, dtype=bool)
    for name, flag in OWN_NOISE.items():
        ok &= noise[name] < share * unusable[flag]
    return ok


@dataclass
class Base:
    """The windows with LUDB amplitudes restored, their part, own noise, clean leads (own noise
    below half the unusable strength) and clean records (no lead at or above it)."""

    w: Windows
    part: np.ndarray
    own: dict[str, np.ndarray]
    clean: np.ndarray  # (n, 12)
    records: np.ndarray  # (n,)


def base_set(profile, fresh: Path | None = None) -> Base:
    w = load_windows(fresh)
    part = split(w)
    reviewed = np.array([r in REVIEWED for r in w.record])
    ludb = np.array([s == "ludb" for s in w.source])
    cinc = own_noise(w.x[~ludb])
    donor_ok = below(cinc, reviewed[~ludb], profile.unusable, 0.5).all(1)
    cinc_amp = amplitude(w.x[~ludb])
    cinc_record = [r for r, is_ludb in zip(w.record, ludb, strict=True) if not is_ludb]
    rng = np.random.default_rng(SPLIT_SEED)
    for p in ("fit", "held_out"):
        donors = np.flatnonzero(donor_ok & (part[~ludb] == p))
        targets = np.flatnonzero(ludb & (part == p))
        draws = amplitude_draws(cinc_amp[donors], [cinc_record[k] for k in donors], len(targets), rng)
        for i, amp in zip(targets, draws, strict=True):
            w.x[i] = restore_ludb(w.x[i], amp)
    ludb_noise = own_noise(w.x[ludb])
    own = {}
    for k in cinc:
        own[k] = np.zeros(w.x.shape[:2])
        own[k][~ludb], own[k][ludb] = cinc[k], ludb_noise[k]
    held = np.ptp(w.x, axis=-1) == 0  # a lead held at one value (zeroed, lead-off): no noise, no ECG
    clean = below(own, reviewed, profile.unusable, 0.5) & ~held
    records = below(own, reviewed, profile.unusable, 1.0).all(1) & ~held.any(1)
    return Base(w, part, own, clean, records)


@dataclass
class GateRun:
    masks: np.ndarray  # (n, 12, flags) bool
    verdict: list[str]
    reasons: list[list[str]]
    indices: dict[str, np.ndarray]  # the per-lead indices, (n, 12) each
    seconds: float


def run_gate(batches, profile) -> GateRun:
    """The gate over batches of (b, 12, 5000) windows; only `assess` is timed."""
    from tasks.quality.gate import FLAGS, assess

    masks, verdict, reasons, indices, seconds = [], [], [], [], 0.0
    for x in batches:
        started = time.perf_counter()
        res = assess(x.astype(np.float32), profile)
        seconds += time.perf_counter() - started
        masks.append(np.stack([res.masks[f] for f in FLAGS], axis=-1))
        verdict += res.verdict
        reasons += res.reasons
        indices.append({k: v for k, v in vars(res.indices).items() if np.shape(v) == x.shape[:2]})
    merged = {k: np.concatenate([d[k] for d in indices]) for k in indices[0]}
    return GateRun(np.concatenate(masks), verdict, reasons, merged, seconds)


def injected(base: np.ndarray, jobs: list[tuple[int, str, int]], seed: int):
    """Batches of injected windows for jobs (base index, kind, copy), and their truths in order."""
    truths: list[Truth] = []

    def batches():
        for start in range(0, len(jobs), BATCH):
            out = []
            for i, kind, copy in jobs[start : start + BATCH]:
                rng = np.random.default_rng([seed, i, list(KINDS).index(kind), copy])
                y, truth = inject(base[i], kind, rng)
                assert np.isfinite(truth.strength).all(), (kind, truth.detail)
                out.append(y)
                truths.append(truth)
            yield np.stack(out)

    return batches, truths


def nk_ratings(x: np.ndarray) -> tuple[np.ndarray, float]:
    """neurokit2's reference rating per lead: True where it rates the lead Unacceptable or raises,
    and the seconds it took."""
    ratings, seconds = zhao2018(x, FS)
    return np.isin(ratings, (*UNACCEPTABLE, "error")), seconds


def _rate(hit: np.ndarray) -> float | None:
    return round(float(hit.mean()), 4) if hit.size else None


def confusion(run: GateRun, truths: list[Truth], clean: np.ndarray, unusable: dict[str, float]) -> dict:
    """Per kind: truth leads (at or above unusable), the flags they received, own-flag recall; flags
    on the untouched clean leads (`clean`, per injected window) of the same windows."""
    from tasks.quality.gate import FLAGS

    out: dict[str, dict] = {}
    for kind in KINDS:
        rows = [k for k, t in enumerate(truths) if t.kind == kind]
        if not rows:
            continue
        flag = truths[rows[0]].flag
        strength = np.stack([truths[k].strength for k in rows])
        touched = np.stack([truths[k].touched for k in rows])
        m = run.masks[rows]
        truth = strength >= unusable[flag]
        got = m[truth]  # (truth leads, flags)
        own = got[:, FLAGS.index(flag)]
        per_instance = [
            bool(m[r][truth[r], FLAGS.index(flag)].all()) for r in range(len(rows)) if truth[r].any()
        ]
        below = touched & ~truth & (strength > 0)
        untouched = ~touched & clean[rows]
        entry = {
            "flag": flag,
            "instances": len(rows),
            "truth_leads": int(truth.sum()),
            "recall": _rate(own),
            "recall_instances": _rate(np.array(per_instance)),
            "received": {f: int(got[:, k].sum()) for k, f in enumerate(FLAGS) if got[:, k].any()},
            "no_flag": int((~got.any(1)).sum()),
            "flagged_below_unusable": _rate(m[below][:, FLAGS.index(flag)]),
            "untouched_leads_any_flag": _rate(m[untouched].any(-1)),
            "verdicts": dict(Counter(run.verdict[r] for r in rows)),
        }
        if kind in ("limb_swap", "chest_swap", "clip"):
            group = [truths[k].detail.split(" ", 1)[-1] for k in rows]  # clip: without the lead
            entry["recall_by_detail"] = {
                d: _rate(
                    np.concatenate([m[p][truth[p], FLAGS.index(flag)] for p, g in enumerate(group) if g == d])
                )
                for d in sorted(set(group))
            }
        out[kind] = entry
    return out


def clean_scores(run: GateRun, clean: np.ndarray, records: np.ndarray) -> dict:
    """Flags on the clean leads of the windows as recorded, and verdicts of the clean records."""
    from tasks.quality.gate import FLAGS

    on_clean = run.masks[clean]
    verdicts = [v for v, c in zip(run.verdict, records, strict=True) if c]
    rejected = [r for r, v, c in zip(run.reasons, run.verdict, records, strict=True) if c and v == "reject"]
    return {
        "clean_leads": int(clean.sum()),
        "flags_on_clean_leads": {
            f: int(on_clean[:, k].sum()) for k, f in enumerate(FLAGS) if on_clean[:, k].any()
        },
        "clean_leads_flagged": _rate(on_clean.any(-1)),
        "clean_records": int(records.sum()),
        "clean_record_verdicts": dict(Counter(verdicts)),
        "clean_records_rejected": _rate(np.array([v == "reject" for v in verdicts])),
        "reject_reasons": dict(Counter(r for rs in rejected for r in rs)),
    }


def clean_flags_by_record(run: GateRun, clean: np.ndarray, records: np.ndarray, names: list[str]) -> list:
    """Per window with a flag on a clean lead or a clean record rejected: its record, its verdict
    and each flagged clean lead's flags (--list; never for the held-out part)."""
    from data_contracts.leads import CANONICAL_LEADS
    from tasks.quality.gate import FLAGS

    out = []
    for i in np.flatnonzero(
        (run.masks.any(-1) & clean).any(-1) | (records & (np.array(run.verdict) == "reject"))
    ):
        leads = np.flatnonzero(run.masks[i].any(-1) & clean[i])
        flags = {CANONICAL_LEADS[k]: [f for j, f in enumerate(FLAGS) if run.masks[i, k, j]] for k in leads}
        out.append({"record": names[i], "verdict": run.verdict[i], "flags": flags})
    return out


def side_by_side(x, ok, records, as_recorded: GateRun, jobs, truths: list[Truth], args, profile):
    """neurokit2's zhao2018 rating next to the gate's flags: on the clean records as recorded and on
    `args.nk_per_kind` injected windows per kind; its ms per window. (None, None, 0) when skipped."""
    from tasks.quality.gate import FLAGS

    if args.nk_per_kind <= 0:
        return None, None, 0
    rng = np.random.default_rng(args.seed)
    sample = np.concatenate(
        [
            rng.permutation([k for k, t in enumerate(truths) if t.kind == kind])[: args.nk_per_kind]
            for kind in KINDS
        ]
    )
    nk_clean, nk_clean_s = nk_ratings(x[records])
    nk_batches, nk_truths = injected(x, [jobs[k] for k in sample], args.seed)
    nk_x = np.concatenate(list(nk_batches()))
    nk_bad, nk_s = nk_ratings(nk_x)
    gate_sample = run_gate([nk_x], profile)
    out = {}
    for kind in KINDS:
        rows = [k for k, t in enumerate(nk_truths) if t.kind == kind]
        truth = np.stack([nk_truths[k].strength >= profile.unusable[nk_truths[k].flag] for k in rows])
        own_flag = FLAGS.index(nk_truths[rows[0]].flag)
        out[kind] = {
            "truth_leads": int(truth.sum()),
            "gate_own_flag": _rate(gate_sample.masks[rows][truth][:, own_flag]),
            "gate_any_flag": _rate(gate_sample.masks[rows][truth].any(-1)),
            "nk_zhao2018_unacceptable": _rate(nk_bad[rows][truth]),
        }
    out["clean_leads_of_clean_records"] = {
        "leads": int(ok[records].sum()),
        "gate_any_flag": _rate(as_recorded.masks[records][ok[records]].any(-1)),
        "nk_zhao2018_unacceptable": _rate(nk_clean[ok[records]]),
    }
    windows = int(records.sum()) + len(nk_x)
    return out, 1000 * (nk_clean_s + nk_s) / windows, windows


QUANTILES = (0.5, 1, 5, 10, 50, 90, 95, 99, 99.5, 100)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    return {f"p{q:g}": round(float(np.percentile(v, q)), 4) for q in QUANTILES} if v.size else {}


def index_quantiles(
    as_recorded: GateRun, clean: np.ndarray, run: GateRun, truths: list[Truth], unusable
) -> dict:
    """For choosing thresholds on the fitting part: each index on the clean leads as recorded and
    on each kind's truth leads."""
    out = {"clean_leads": {k: _quantiles(v[clean]) for k, v in as_recorded.indices.items()}}
    for kind in KINDS:
        rows = [k for k, t in enumerate(truths) if t.kind == kind]
        truth = np.stack([truths[k].strength >= unusable[truths[k].flag] for k in rows])
        out[kind] = {k: _quantiles(v[rows][truth]) for k, v in run.indices.items()}
    return out


def chest_amplitudes(as_recorded: GateRun, clean: np.ndarray) -> dict[str, list]:
    """The profile's `chest_log_mean` and `chest_log_cov` fitted here: the mean and covariance of
    the log whole-beat amplitudes of V1-V6 on the windows whose six chest leads are clean."""
    logs = np.log(as_recorded.indices["beat_amplitude"][clean[:, 6:].all(1), 6:])
    cov = np.cov(logs, rowvar=False)
    return {
        "chest_log_mean": [round(float(v), 4) for v in logs.mean(0)],
        "chest_log_cov": [[round(float(v), 4) for v in row] for row in cov],
    }


CHEST_Z = (3.5, 3.75, 4.0, 4.25, 4.5)
FOLDS = 5


def patient_folds(record: list[str], folds: int) -> np.ndarray:
    """(n,) fold per window of `record` (`<source>/<name>`): patients (SAME_PATIENT joined) shuffled
    with SPLIT_SEED and dealt in turn, so that no patient's windows sit in two folds (the windows of
    one long CinC record are alike; a fold that holds one of them flatters the score of another)."""
    patient = [SAME_PATIENT.get(r, r) for r in record]
    order = {
        p: k % folds
        for k, p in enumerate(np.random.default_rng(SPLIT_SEED).permutation(sorted(set(patient))))
    }
    return np.array([order[p] for p in patient], dtype=np.int64)


def _with_thresholds(profile, **changes):
    """`profile` with some of its thresholds replaced."""
    return replace(profile, thresholds=replace(profile.thresholds, **changes))


def _fold_profile(profile, as_recorded: GateRun, clean: np.ndarray, train: np.ndarray):
    """`profile` with its fitted part, the chest Gaussian, refitted on the windows `train`."""
    fitted = chest_amplitudes(as_recorded, clean & train[:, None])
    return _with_thresholds(
        profile,
        chest_log_mean=tuple(fitted["chest_log_mean"]),
        chest_log_cov=tuple(map(tuple, fitted["chest_log_cov"])),
    )


def _chest_flags(run: GateRun, rows: np.ndarray, profile) -> np.ndarray:
    """(rows, 12) the chest-amplitude rule alone on `rows` of a gate run, as flag_masks applies it."""
    from tasks.quality.gate import FLAGS, _chest_outliers

    dead = run.masks[rows][..., [FLAGS.index(f) for f in ("missing", "flat", "saturation")]].any(-1)
    return _chest_outliers(run.indices["beat_amplitude"][rows], ~dead, profile.thresholds)


def out_of_fold(
    x: np.ndarray,
    ok: np.ndarray,
    records: np.ndarray,
    record: list[str],
    runs: tuple[GateRun, GateRun],
    jobs: tuple[list[tuple[int, str, int]], list[Truth], int],
    profile,
) -> dict:
    """The gate out of fold on the fitting part: patients dealt into FOLDS folds, each fold's windows
    (as recorded, and with the artifacts injected into them) judged by the profile whose fitted part,
    the chest Gaussian, is fitted on the other folds (its thresholds are the profile's). The same
    figures as the part's own (clean leads flagged, clean records rejected, recall per kind), and per
    candidate `chest_amplitude_z` the chest-amplitude rule alone: clean chest leads flagged and chest
    leads given a gain error found (`runs`: the in-sample gate runs whose indices it reuses)."""
    as_recorded, with_artifacts = runs
    job_list, truths, seed = jobs
    fold = patient_folds(record, FOLDS)
    job_fold = fold[[i for i, _, _ in job_list]]
    masks = (np.zeros_like(as_recorded.masks), np.zeros_like(with_artifacts.masks))
    verdict = ([""] * len(x), [""] * len(job_list))
    reasons: tuple[list, list] = ([[]] * len(x), [[]] * len(job_list))
    gain = np.array([k for k, t in enumerate(truths) if t.kind == "gain" and t.touched[6:].any()])
    gain_lead = np.array([int(np.flatnonzero(truths[k].touched)[0]) for k in gain])
    per_z = {z: [0, 0] for z in CHEST_Z}
    for f in range(FOLDS):
        fitted = _fold_profile(profile, as_recorded, ok, fold != f)
        here = np.flatnonzero(fold == f)
        todo = np.flatnonzero(job_fold == f)
        batches, _ = injected(x, [job_list[k] for k in todo], seed)
        for k, (run, rows) in enumerate(
            ((run_gate([x[here]], fitted), here), (run_gate(batches(), fitted), todo))
        ):
            masks[k][rows] = run.masks
            for n, r in enumerate(rows):
                verdict[k][r], reasons[k][r] = run.verdict[n], run.reasons[n]
        g = gain[job_fold[gain] == f]
        for z in CHEST_Z:
            at_z = _with_thresholds(fitted, chest_amplitude_z=z)
            per_z[z][0] += int((_chest_flags(as_recorded, here, at_z) & ok[here]).sum())
            found = _chest_flags(with_artifacts, g, at_z)[np.arange(len(g)), gain_lead[job_fold[gain] == f]]
            per_z[z][1] += int(found.sum())
    oof = [GateRun(m, v, r, {}, 0.0) for m, v, r in zip(masks, verdict, reasons, strict=True)]
    job_clean = ok[[i for i, _, _ in job_list]]
    injected_oof = confusion(oof[1], truths, job_clean, profile.unusable)
    return {
        "folds": f"{FOLDS}, by patient",
        "as_recorded": clean_scores(oof[0], ok, records),
        "recall": {kind: e["recall"] for kind, e in injected_oof.items()},
        "recall_by_detail": {
            kind: e["recall_by_detail"] for kind, e in injected_oof.items() if "recall_by_detail" in e
        },
        "chest_amplitude_by_z": {
            str(z): {
                "clean_chest_leads_flagged": f"{c} of {int(ok[:, 6:].sum())}",
                "gain_chest_leads_found": round(n / max(len(gain), 1), 4),
            }
            for z, (c, n) in per_z.items()
        },
    }


def benchmark_section(out: dict, command: str) -> dict:
    """The profile's `benchmark`: per kind its flag, truth leads, recall and the share of them that
    received each flag (and none); the clean leads' flags; the clean records rejected."""
    kinds = {}
    for kind, e in out["injected"].items():
        n = max(e["truth_leads"], 1)
        received = {f: round(k / n, 4) for f, k in e["received"].items()}
        kinds[kind] = {
            "flag": e["flag"],
            "truth_leads": e["truth_leads"],
            "recall": e["recall"],
            "received": {**received, "none": round(e["no_flag"] / n, 4)},
        }
    rec = out["as_recorded"]
    n = max(rec["clean_leads"], 1)
    return {
        "_doc": "Written by bench/qc_real.py --write-profile: this profile on the held-out part of the real "
        "benchmark; shown in the quality report's methods section.",
        "command": command,
        "source": f"LUDB and CinC 2021 split by patient with SPLIT_SEED={SPLIT_SEED}, held-out part: "
        f"{out['records']['held_out']} records, {out['windows']['held_out']} windows",
        "kinds": kinds,
        "clean_leads": {
            "leads": rec["clean_leads"],
            "flagged": rec["clean_leads_flagged"],
            "by_flag": {f: round(k / n, 5) for f, k in rec["flags_on_clean_leads"].items()},
        },
        "clean_records": {"records": rec["clean_records"], "rejected": rec["clean_records_rejected"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=PARTS, default="held_out")
    parser.add_argument(
        "--fresh", type=Path, help="folder of source folders of WFDB records: the 'fresh' part (see above)"
    )
    parser.add_argument("--copies", type=int, default=3, help="injections per clean record and kind")
    parser.add_argument("--seed", type=int, default=2121, help="seed of the injections")
    parser.add_argument("--nk-per-kind", type=int, default=25, help="injected windows per kind rated by nk")
    parser.add_argument("--profile", type=Path, help="a QC profile to score (default: the packaged one)")
    parser.add_argument(
        "--write-profile", action="store_true", help="write the held-out table into the profile"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the clean leads flagged, per window (fit or fresh part)"
    )
    args = parser.parse_args()
    if args.write_profile and (args.part != "held_out" or args.profile):
        parser.error("--write-profile records the packaged profile's held-out figures only")
    if args.list and args.part == "held_out":
        parser.error("--list shows the fitting part or a fresh part: the held-out part is not looked into")
    if (args.part == "fresh") != (args.fresh is not None):
        parser.error("--part fresh and --fresh DIR go together")

    from tasks.quality.gate import load_profile

    profile = load_profile(args.profile)
    base = base_set(profile, args.fresh)
    w, part, own = base.w, base.part, base.own
    here = np.flatnonzero(part == args.part)
    x, ok, records = w.x[here], base.clean[here], base.records[here]

    as_recorded = run_gate([x[k : k + BATCH] for k in range(0, len(x), BATCH)], profile)
    jobs = [(int(i), kind, c) for i in np.flatnonzero(records) for kind in KINDS for c in range(args.copies)]
    batches, truths = injected(x, jobs, args.seed)
    with_artifacts = run_gate(batches(), profile)
    job_clean = ok[[i for i, _, _ in jobs]]

    parts = [p for p in PARTS if (part == p).any()]
    nk_side, nk_ms, nk_windows = side_by_side(x, ok, records, as_recorded, jobs, truths, args, profile)
    n_gate = len(x) + len(jobs)
    gate_ms = 1000 * (as_recorded.seconds + with_artifacts.seconds) / n_gate

    out = {
        "qc_version": profile.version,
        "part": args.part,
        "split_seed": SPLIT_SEED,
        "injection_seed": args.seed,
        "copies": args.copies,
        "windows": {p: int((part == p).sum()) for p in parts},
        "records": {p: len({r for r, q in zip(w.record, part, strict=True) if q == p}) for p in parts},
        "reviewed_real_artifacts": REVIEWED,
        "own_noise_leads_not_clean": {
            k: int((own[k][here] >= profile.unusable[f] / 2).sum()) for k, f in OWN_NOISE.items()
        },
        "as_recorded": clean_scores(as_recorded, ok, records),
        "injected": confusion(with_artifacts, truths, job_clean, profile.unusable),
        "neurokit2_side_by_side": nk_side,
        "speed": {
            "gate_windows": n_gate,
            "gate_ms_per_window": round(gate_ms, 2),
            "nk_windows": nk_windows,
            "nk_ms_per_window": round(nk_ms, 2) if nk_ms else None,
            "speedup": round(nk_ms / gate_ms, 1) if nk_ms else None,
        },
    }
    if args.list:
        out["clean_flags_by_window"] = clean_flags_by_record(
            as_recorded, ok, records, [w.record[k] for k in here]
        )
    if args.part == "fit":
        out["index_quantiles"] = index_quantiles(as_recorded, ok, with_artifacts, truths, profile.unusable)
        out["fitted_chest_amplitudes"] = chest_amplitudes(as_recorded, ok)
        out["out_of_fold"] = out_of_fold(
            x,
            ok,
            records,
            [w.record[k] for k in here],
            (as_recorded, with_artifacts),
            (jobs, truths, args.seed),
            profile,
        )
    if args.write_profile:
        path = ROOT / "data_contracts" / "qc_profile.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        command = f"bench/qc_real.py --copies {args.copies} --seed {args.seed}"
        raw["benchmark"] = benchmark_section(out, command)
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
