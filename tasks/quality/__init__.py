"""The per-lead quality gate: flags per lead, a verdict per window, into quality/.

Modules: `indices` (signal indices per lead), `lead_reversal` (electrode swaps), `gate` (the rules
of the versioned QC profile: flags and verdicts), `profile_file` (which profile a store, a model or
a scoring run holds, and its identity), `run` (the store-level driver)."""

from __future__ import annotations

from tasks.quality.gate import QcProfile, QualityResult, assess, load_profile
from tasks.quality.run import QualityTotals, run_quality

__all__ = ["QcProfile", "QualityResult", "QualityTotals", "assess", "load_profile", "run_quality"]
