"""Clinician review of a screening: the worklist (`worklist`), ECG pages (`ecg_render`) and
the adjudications that feed the next retraining (`adjudication`)."""

from __future__ import annotations

from tasks.review.adjudication import (
    AdjudicationError,
    Decision,
    StoreBusy,
    adjudication_row,
    append_decisions,
    latest_decisions,
    reviewer_key,
)
from tasks.review.ecg_render import CallInfo, render_record
from tasks.review.worklist import decisions_by_row, page_data, render_page, worklist, write_worklist

__all__ = [
    "AdjudicationError",
    "CallInfo",
    "Decision",
    "StoreBusy",
    "adjudication_row",
    "append_decisions",
    "decisions_by_row",
    "latest_decisions",
    "page_data",
    "render_page",
    "render_record",
    "reviewer_key",
    "worklist",
    "write_worklist",
]
