"""The one exception shape for inputs the pipeline refuses: a stable reason code for the
quarantine table and a human-readable detail. Each stage subclasses it."""

from __future__ import annotations


class RecordError(ValueError):
    """An input that cannot be processed; `reason` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
