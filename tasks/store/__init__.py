"""The Parquet store: tables, staging, the journalled commit and the store lock (`tables`), the
pseudonym key kept in it (`pseudonym`), the model directory's files (`model_files`), and the
check and repair of damaged parts (`repair`).

The names below are the store's verbs; every stage reads and writes the store through them.
"""

from __future__ import annotations

from tasks.store.tables import (
    STAGING,
    Commit,
    append_line,
    clean_staging,
    dataset,
    fragment_file,
    new_part_id,
    orphan_staging,
    parquet_file,
    part_path,
    pending_journals,
    read_table,
    read_table_file,
    recover,
    row_count,
    signals_of,
    site_of_part,
    stage_parts,
    staging_dir,
    store_lock,
    table_dir,
    write_atomic,
    write_parquet,
)

__all__ = [
    "STAGING",
    "Commit",
    "append_line",
    "clean_staging",
    "dataset",
    "fragment_file",
    "new_part_id",
    "orphan_staging",
    "parquet_file",
    "part_path",
    "pending_journals",
    "read_table",
    "read_table_file",
    "recover",
    "row_count",
    "signals_of",
    "site_of_part",
    "stage_parts",
    "staging_dir",
    "store_lock",
    "table_dir",
    "write_atomic",
    "write_parquet",
]
