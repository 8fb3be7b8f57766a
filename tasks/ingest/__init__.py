"""Ingest: a raw archive into records/, waveforms/ and quarantine/.

Modules: `archive` (walking folders, zip and tar safely), `readers` (hospital export formats, by
content), `wfdb_header` and `wfdb_reader` (WFDB records), `harmonize` (12 leads, mV, 500 Hz, 10-s
windows), `labels`, `header_meta`, `record_meta` and `ptbxl` (what a record states), `records`
(one shard's rows and the parent's commits), `run` (the store-level driver)."""

from __future__ import annotations

from tasks.ingest.records import IngestConfig, IngestTotals
from tasks.ingest.run import archive_name, ingest_archive, site_of, walk_archive

__all__ = ["IngestConfig", "IngestTotals", "archive_name", "ingest_archive", "site_of", "walk_archive"]
