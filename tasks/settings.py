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
    min_duration_s: float = Field(
        default=8.0, gt=0, description="shorter recordings are quarantined; longer tails padded"
    )
    max_duration_s: float = Field(
        default=600.0, gt=0, description="longer recordings (Holter-like) are quarantined"
    )
    # Archive limits: what one member may cost before it is read (see tasks/ingest/archive.py)
    max_member_mb: int = Field(default=64, ge=1, description="largest archive member read, MiB")
    max_compression_ratio: float = Field(
        default=200.0, gt=1, description="largest expansion of a zip member over 1 MiB"
    )
    max_archive_depth: int = Field(default=64, ge=1, description="deepest folder nesting walked")
    max_buffered_mb: int = Field(
        default=256, ge=1, description="tar: signal files held while waiting for their header, MiB"
    )
    shard_max_mb: int = Field(default=64, ge=1, description="input bytes per worker shard, MiB")
    cluster_shard_factor: int = Field(
        default=4, ge=1, description="Dask cluster: ingest, features, score shards this many times larger"
    )
    workers_see_archive: bool = Field(
        default=False,
        description="Dask workers read an archive on disk at its path themselves (a shared file system; "
        "--dask-local sets it); else the command reads it and ships the bytes inside the shards",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key for patient_key and record_id; else STORE/.pseudonym_key"
    )
    # locations of `msaic serve`: a path, or an s3:// URL kept as a string (a Path would fold its
    # "//"); the flows read them with tasks.store.location
    store: Path | str | None = Field(
        default=None, description="serve: the store (a path or s3://bucket/prefix)"
    )
    qc_profile: Path | None = Field(
        default=None, description="QC profile JSON (default: the packaged data_contracts/qc_profile.json)"
    )
    qc_batch_records: int = Field(default=256, ge=1, description="quality: windows read and assessed at once")
    qc_windows_per_worker: int = Field(
        default=2048, ge=1, description="quality: one worker process per this many windows to check"
    )
    qc_commit_records: int = Field(
        default=8192, ge=1, description="quality: rows validated and committed to the store at once"
    )
    report_worst_records: int = Field(
        default=6, ge=0, description="quality report: example strips of this many worst records"
    )
    report_max_rows: int = Field(
        default=200, ge=1, description="quality report: longest row listing (quarantine) shown in full"
    )
    # `msaic score`: shards of archive records, each one task and one exactly-once commit
    score_shard_size: int = Field(default=64, ge=1, description="score: archive records per shard")
    # `msaic serve`: cron schedules (standard 5-field cron, in serve_timezone) and what they work on
    serve_ingest_cron: str = Field(
        default="0 1 * * *", description="serve: nightly ingest + quality + quality report"
    )
    serve_retrain_cron: str = Field(default="0 3 * * 0", description="serve: weekly retraining (Sundays)")
    serve_screen_cron: str = Field(default="0 5 * * *", description="serve: nightly archive screening")
    serve_timezone: str = Field(default="UTC", description="serve: time zone of the cron schedules")
    serve_archives: list[Path | str] = Field(
        default_factory=list, description="serve: archives ingested nightly into `store` (JSON list)"
    )
    serve_screen_archives: list[Path | str] = Field(
        default_factory=list, description="serve: archives screened nightly (default: serve_archives)"
    )
    serve_out: Path | str | None = Field(
        default=None, description="serve: screening output root (default STORE/screening/<archive>)"
    )
    serve_train_model: str = Field(default="msaic", description="serve: architecture retrained weekly")
    serve_train_split: str = Field(default="site", description="serve: split of weekly retraining")

    def shard_records(self, records: int, on_cluster: bool) -> int:
        """Records per shard of a stage whose local shards hold `records`: on a Dask cluster each
        shard is one Prefect task run, whose orchestration (about 0.25 s of the worker's, the
        API's and the submitter's CPU, and 0.1 s of round trips, per task run) a shard's work
        must outweigh, so shards there are `cluster_shard_factor` times larger (a local pool
        hands a shard over in milliseconds; the factor's measurements: docs/BENCHMARKS.md,
        Scale-out)."""
        return records * self.cluster_shard_factor if on_cluster else records
