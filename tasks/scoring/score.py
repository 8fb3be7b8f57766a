"""Scoring of one shard of archive records: decode and harmonize (the ingest path, reused), the
quality gate, the model's probabilities, and an occlusion explanation of each positive call.

Pure work on in-memory units; `tasks.scoring.run` stages and commits the rows it returns. A record
that cannot be read becomes a quarantine row (the ingest classification), a window the quality
gate rejects is kept with its reason instead of a probability, a `limited` one is scored and
names its flagged leads. A scored window also carries the model's log-odds (`logit`, which still
ranks calls whose probability reads 1.000) and, when the model was registered with a calibration,
the calibrated `risk` and its band (null otherwise).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS, TERRITORIES
from tasks.ingest.archive import ArchiveProblem, RecordUnit
from tasks.ingest.records import IngestConfig, Task, classify_error, content_sha256, record_rows
from tasks.quality.gate import QcProfile, assess
from tasks.store.commit import quarantine_row
from tasks.store.location import Location
from tasks.store.model_files import Calibration, decision_threshold

# 2: explanations from log-odds drops (score_explain/3); 3: logit, risk, risk_band; 4: device
SCORE_VERSION = "score/4"
NO_INPUT = "no model input: no median beat could be formed"
EXPLAIN_FILE = "score_explain.json"


class Occlusion(Protocol):
    """Scores of some windows and their lead occlusion
    (`msaic_model.training.registry.LoadedModel.occlusion`): `probability` (n,) of each window,
    `logit` (n,) its log-odds, `base_logit` (n,) the log-odds of what occlusion looks at with
    nothing removed, and `masked_logit(rows, masks)` those of windows `rows` with the leads where
    `masks` (m, 12) is True removed. Drops are measured in log-odds, which still rank leads where a
    confident call's probability has saturated at 1."""

    probability: np.ndarray
    logit: np.ndarray
    base_logit: np.ndarray
    no_input: np.ndarray  # (n,) bool: the model had nothing to read; such a window is not scored

    def masked_logit(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray: ...


class ProbabilityModel(Protocol):
    """What scoring needs of a registered model (`msaic_model.training.registry.LoadedModel`); a model
    registered before calibration has `calibration` None and scores without a risk."""

    model_id: str
    threshold: float | None
    config: dict[str, Any]
    calibration: Calibration | None

    def occlusion(self, signals: np.ndarray) -> Occlusion: ...


@dataclass(frozen=True)
class Explainer:
    """The occlusion explanation (data_contracts/score_explain.json) over the territories' leads."""

    version: str
    territories: dict[str, tuple[int, ...]]  # territory → indices of its leads
    top_leads: int
    min_drop: float


def load_explainer() -> Explainer:
    spec = load_json(EXPLAIN_FILE)
    index = {lead: i for i, lead in enumerate(CANONICAL_LEADS)}
    return Explainer(
        version=spec["version"],
        territories={t: tuple(index[lead] for lead in leads) for t, leads in TERRITORIES.items()},
        top_leads=int(spec["top_leads"]),
        min_drop=float(spec["min_drop"]),
    )


@dataclass(frozen=True)
class ScoreConfig:
    """What a scoring worker needs; plain data so that it pickles to processes and Dask workers."""

    ingest: IngestConfig
    model_dir: Location  # a path or an s3:// location
    threads: int  # BLAS and torch threads of each worker
    qc_profile: Location | None = None  # the quality gate's profile (None: the packaged one)


@dataclass
class ShardScores:
    """Score rows (one per window), quarantine rows, and seconds spent per step."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)
    records: int = 0


def explain(
    occlusion: Occlusion, positive: np.ndarray, explainer: Explainer
) -> list[tuple[str | None, list[str]]]:
    """Per positive window (indices into the occlusion's windows): the territory whose masking
    lowers the model's log-odds most, and its leads ranked by their own drop; None and [] where no
    drop reaches `min_drop`. A network is occluded on the crop of the window it finds most
    positive (`LoadedModel.occlusion`)."""
    n = len(positive)
    if n == 0:
        return []
    names = list(explainer.territories)
    groups = list(explainer.territories.values())
    masks = np.zeros((len(groups), n, len(CANONICAL_LEADS)), bool)
    for j, leads in enumerate(groups):
        masks[j][:, list(leads)] = True
    rows = np.tile(positive, len(groups))
    masked = occlusion.masked_logit(rows, masks.reshape(-1, len(CANONICAL_LEADS)))
    drops = occlusion.base_logit[positive][None] - masked.reshape(len(groups), n)
    best = drops.argmax(axis=0)
    out: list[tuple[str | None, list[str]]] = [(None, [])] * n
    chosen = [i for i in range(n) if drops[best[i], i] >= explainer.min_drop]
    # single-lead masks, only for the leads of each window's chosen territory
    singles = [(i, lead) for i in chosen for lead in groups[best[i]]]
    if not singles:
        return out
    single_rows = positive[[i for i, _ in singles]]
    single_masks = np.zeros((len(singles), len(CANONICAL_LEADS)), bool)
    single_masks[np.arange(len(singles)), [lead for _, lead in singles]] = True
    lead_drop = occlusion.base_logit[single_rows] - occlusion.masked_logit(single_rows, single_masks)
    per_window: dict[int, list[tuple[float, int]]] = {}
    for (i, lead), d in zip(singles, lead_drop, strict=True):
        per_window.setdefault(i, []).append((float(d), lead))
    for i in chosen:
        ranked = sorted(per_window[i], key=lambda t: -t[0])
        leads = [CANONICAL_LEADS[lead] for d, lead in ranked if d >= explainer.min_drop][
            : explainer.top_leads
        ]
        out[i] = (names[best[i]], leads)
    return out


def model_version(model: ProbabilityModel) -> str:
    """Kind, config name and config version of a registered model (e.g. "net msaic 1")."""
    spec = model.config.get("model") or {}
    return " ".join(str(v) for v in (model.config.get("kind"), spec.get("name"), spec.get("version")) if v)


def explanation_text(territory: str | None, leads: list[str]) -> str | None:
    """The worklist's wording: "consistent with an inferior territory (leads III, aVF)"."""
    if territory is None:
        return None
    article = "an" if territory[0] in "aeiou" else "a"
    return f"consistent with {article} {territory} territory" + (
        f" (leads {', '.join(leads)})" if leads else ""
    )


def calibrated_risk(calibration: Calibration | None, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the calibrated risk (NaN where the window has no logit or the model has no
    calibration) and its band (None there)."""
    if calibration is None:
        return np.full(len(logits), np.nan), np.full(len(logits), None, object)
    risk = calibration.risk(logits)
    return risk, np.where(np.isnan(risk), None, calibration.bands.of(np.nan_to_num(risk)))


def score_units(
    items: list[tuple[RecordUnit | ArchiveProblem, str]],
    cfg: ScoreConfig,
    model: ProbabilityModel,
    profile: QcProfile,
    explainer: Explainer,
) -> ShardScores:
    """Score one shard of (unit or archive problem, site): every input ends as score rows or
    quarantine rows, never as an exception. Should the gate, the model or the explanation fail
    on the shard's windows (no known input does), each record is scored on its own and the one
    that fails alone is quarantined (stage `score`), so that one record cannot stop an archive."""
    out = ShardScores()
    rows: list[dict[str, Any]] = []
    signals: list[np.ndarray] = []
    t0 = time.perf_counter()
    for item, site in items:
        if isinstance(item, ArchiveProblem):
            out.quarantine.append(
                quarantine_row(item.source_path, site, "archive", item.reason, item.detail, None)
            )
            continue
        out.records += 1
        sha = None
        try:
            sha = content_sha256(item.files)  # the files are read here (`ArchiveFiles`)
            unit_rows, windows = record_rows(Task(item, site, None), sha, cfg.ingest)
        except Exception as exc:  # a decoder bug must not stop the archive: keep the evidence
            stage, reason, detail = classify_error(exc)
            out.quarantine.append(quarantine_row(item.source_path, site, stage, reason, detail, sha))
            continue
        rows += [
            {**r, "site": site, "recorded_date": (r["recorded_at"] or "")[:10] or None} for r in unit_rows
        ]
        signals.append(windows)
    out.seconds["read"] += time.perf_counter() - t0
    if not rows:
        return out
    windows = np.concatenate(signals)
    try:
        out.rows += score_windows(rows, windows, model, profile, explainer, out.seconds)
    except Exception:
        records: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            records.setdefault(row["source_path"], []).append(i)
        for at in records.values():
            first = rows[at[0]]
            try:
                out.rows += score_windows(
                    [rows[i] for i in at], windows[at], model, profile, explainer, out.seconds
                )
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                out.quarantine.append(
                    quarantine_row(first["source_path"], first["site"], "score", "score_error", detail,
                                   first["content_sha256"])
                )  # fmt: skip
    return out


def score_windows(
    rows: list[dict[str, Any]],
    windows: np.ndarray,
    model: ProbabilityModel,
    profile: QcProfile,
    explainer: Explainer,
    seconds: Counter,
) -> list[dict[str, Any]]:
    """The score rows of decoded windows (their record rows `rows`): the quality gate, the model's
    probabilities and the explanation of each positive call; seconds per step added to `seconds`."""
    t1 = time.perf_counter()
    qc = assess(windows, profile)
    t2 = time.perf_counter()
    seconds["quality"] += t2 - t1
    verdicts = np.asarray(qc.verdict)
    scored = np.flatnonzero(verdicts != "reject")
    probs = np.full(len(rows), np.nan, np.float32)
    logits = np.full(len(rows), np.nan, np.float64)
    threshold = decision_threshold(model)
    why: dict[int, tuple[str | None, list[str]]] = {}
    no_input: set[int] = set()
    t3 = t2
    if len(scored):
        demographics = [(rows[i]["sex"], rows[i]["age"]) for i in scored]
        occlusion = model.occlusion(windows[scored], demographics, qc.take(scored))
        probs[scored] = np.where(occlusion.no_input, np.nan, occlusion.probability)
        logits[scored] = np.where(occlusion.no_input, np.nan, occlusion.logit)
        no_input = set(scored[occlusion.no_input].tolist())
        positive = np.flatnonzero(
            ~occlusion.no_input & (occlusion.probability >= threshold)
        )  # among `scored`
        t3 = time.perf_counter()
        why = dict(zip(scored[positive], explain(occlusion, positive, explainer), strict=True))
    seconds["model"] += t3 - t2
    seconds["explain"] += time.perf_counter() - t3
    now, version = datetime.now(UTC), model_version(model)
    risks, bands = calibrated_risk(model.calibration, logits)
    scored_rows: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        territory, leads = why.get(i, (None, []))
        rejected = verdicts[i] == "reject"
        unscored = (
            "quality reject: " + ", ".join(qc.reasons[i])
            if rejected
            else (NO_INPUT if i in no_input else None)
        )
        scored_rows.append(
            {
                "record_id": row["record_id"],
                "site": row["site"],
                "source_path": row["source_path"],
                "window": row["window"],
                "content_sha256": row["content_sha256"],
                "recorded_date": row["recorded_date"],
                "recorded_at": row["recorded_at"],
                "device": row["device"],
                "verdict": str(verdicts[i]),
                "quality_reasons": list(qc.reasons[i]),
                "flagged_leads": [
                    f"{lead}: {', '.join(flags)}"
                    for lead, flags in zip(CANONICAL_LEADS, qc.flags[i], strict=True)
                    if flags
                ],
                "probability": None if unscored else float(probs[i]),
                "logit": None if unscored else float(logits[i]),
                "risk": None if np.isnan(risks[i]) else float(risks[i]),
                "risk_band": bands[i],
                "flagged": bool(probs[i] >= threshold),
                "threshold": threshold,
                "model_id": model.model_id,
                "model_version": version,
                "territory": territory,
                "top_leads": leads,
                "explanation": explanation_text(territory, leads),
                "unscored_reason": unscored,
                "qc_version": profile.version,
                "score_version": SCORE_VERSION,
                "scored_at": now,
            }
        )
    return scored_rows
