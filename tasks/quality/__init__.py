"""The per-lead quality gate: signal indices, lead reversal, verdicts, and the store-level run."""

from __future__ import annotations
