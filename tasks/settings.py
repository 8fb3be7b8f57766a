"""The one typed settings object of the pipeline.

Defaults live here; any field can be overridden by an environment variable `MSAIC_<FIELD>`
(for example `MSAIC_WORKERS=4`) and by the CLI flags that name it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Run-time configuration shared by every flow."""

    model_config = SettingsConfigDict(env_prefix="MSAIC_", extra="forbid")

    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    shard_size: int = Field(default=128, ge=1, description="source records per worker shard")
    commit_records: int = Field(
        default=4096, ge=1, description="windows validated and committed to the store at once"
    )
    target_fs: int = Field(default=500, description="harmonized sampling rate, Hz")
    window_s: float = Field(default=10.0, gt=0, description="length of one stored window, s")
    min_duration_s: float = Field(
        default=8.0, gt=0, description="shorter recordings are quarantined; longer tails padded"
    )
    max_duration_s: float = Field(
        default=600.0, gt=0, description="longer recordings (Holter-like) are quarantined"
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key for patient_key and record_id; else STORE/.pseudonym_key"
    )
    store: Path | None = None

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.target_fs)
