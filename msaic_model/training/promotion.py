"""The promotion gate of scheduled retraining, and the record of its decisions.

`STORE/models/promoted` names the model that scheduled screening uses (one model id, replaced
atomically); `STORE/models/promotions.jsonl` holds one line per decision, promoted or not, with
both intervals, the reason and how many reviewers' adjudications the candidate was trained on (its
snapshot.json), so that every change of the screening model can be traced. The rule and its
tolerance are in data_contracts/promotion.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from data_contracts import load_json
from tasks import store as st
from tasks.store.location import Location, location
from tasks.store.model_files import METRICS, MODELS, SNAPSHOT

PROMOTION_RULES = "promotion.json"
POINTER = "promoted"
LOG = "promotions.jsonl"


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Decision:
    at: str
    candidate: str
    current: str | None
    candidate_interval: Interval | None
    current_interval: Interval | None
    promoted: bool
    reason: str
    rules_version: str
    adjudications: dict[str, int] | None  # the candidate's adjudicated labels; None: not recorded


def trained_on_adjudications(model_dir: Location) -> dict[str, int] | None:
    """The adjudication counts in a registered model's snapshot.json (None before they were kept)."""
    snapshot: dict[str, Any] = json.loads((model_dir / SNAPSHOT).read_text())
    return snapshot.get("adjudications")


def held_out_interval(model_dir: Location, metric: str) -> Interval | None:
    """The held-out-site interval of `metric` in a registered model's metrics.json, or None."""
    metrics: dict[str, Any] = json.loads((model_dir / METRICS).read_text())
    shift = (metrics.get("evaluation") or {}).get("shift") or {}
    entry = (shift.get("held_out") or {}).get(metric) or {}
    if any(entry.get(k) is None for k in ("value", "low", "high")):
        return None
    return Interval(float(entry["value"]), float(entry["low"]), float(entry["high"]))


def promoted_model(store: Location) -> str | None:
    """The id of the model scheduled screening uses, or None before the first promotion."""
    pointer = location(store) / MODELS / POINTER
    if not pointer.is_file():
        return None
    return pointer.read_text().strip() or None


def decide(candidate: Interval | None, current: Interval | None, tolerance: float) -> tuple[bool, str]:
    """Whether a candidate replaces the current model, and why (the rule of promotion.json)."""
    if candidate is None:
        return False, "candidate has no held-out-site interval"
    if current is None:
        return True, "no promoted model with a held-out-site interval yet"
    if candidate.low >= current.low - tolerance and candidate.high >= current.high - tolerance:
        return True, "held-out-site interval not worse than the promoted model's"
    return False, "held-out-site interval worse than the promoted model's"


def gate(store: Location, candidate_id: str) -> Decision:
    """Decide on a freshly registered model and record the decision (and the new pointer), under
    the store lock (a path or an s3:// store)."""
    store = location(store)
    rules = load_json(PROMOTION_RULES)
    metric, tolerance = str(rules["metric"]), float(rules["tolerance"])
    models = store / MODELS
    current_id = promoted_model(store)
    cand = held_out_interval(models / candidate_id, metric)
    curr = held_out_interval(models / current_id, metric) if current_id else None
    promoted, reason = decide(cand, curr, tolerance)
    decision = Decision(
        datetime.now(UTC).isoformat(),
        candidate_id,
        current_id,
        cand,
        curr,
        promoted,
        reason,
        rules["version"],
        trained_on_adjudications(models / candidate_id),
    )
    with st.store_lock(store):
        st.append_line(models / LOG, json.dumps(asdict(decision)))
        if promoted:
            st.write_atomic(models / POINTER, candidate_id + "\n")
    return decision
