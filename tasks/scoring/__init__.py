"""Archive scoring: one shard's scores, explanations and quarantine rows (`score`) and the
resumable, exactly-once run over a whole archive (`run`). The probability of a window is
`msaic_model.model.inference`."""

from __future__ import annotations

from tasks.scoring.run import (
    RUN_FILE,
    ScoreTotals,
    expected_inputs,
    run_shard,
    score_archive_run,
)
from tasks.scoring.score import score_units

__all__ = [
    "RUN_FILE",
    "ScoreTotals",
    "expected_inputs",
    "run_shard",
    "score_archive_run",
    "score_units",
]
