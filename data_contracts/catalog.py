"""The table catalog: every Parquet table of a store (or of a scoring OUT), with its schema, its
partitioning, the Great Expectations suite its batches are checked with, and the stage that writes
it. `tasks.store` resolves every table name through `table`, so a misspelt name fails loudly
instead of reading an empty table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from data_contracts.schemas import TABLES


@dataclass(frozen=True)
class TableSpec:
    """One table: `STORE/<name>/site=<site>/part-<id>.parquet` (Hive-partitioned by `partitioning`)."""

    name: str
    schema: pa.Schema  # the columns of a part file (partition columns excluded)
    partitioning: tuple[str, ...]
    suites: tuple[str, ...]  # keys of data_contracts.suites.SUITES; none: the schema is the contract
    written_by: str


_WRITERS: dict[str, tuple[tuple[str, ...], str]] = {
    "records": (("records",), "msaic ingest"),
    "waveforms": ((), "msaic ingest (same part id as its records; checked through records)"),
    "quarantine": ((), "every stage (tasks.store.commit.quarantine_row)"),
    "quality": (("quality",), "msaic qc"),
    # features: `features` on the rows, `feature_leads` on their per-lead view (tasks.features.contract)
    "features": (("features", "feature_leads"), "msaic features (checked per site after the run)"),
    "adjudications": ((), "msaic review"),
    "scores": ((), "msaic score (in OUT)"),
}

CATALOG: dict[str, TableSpec] = {
    name: TableSpec(name, schema, ("site",), *_WRITERS[name]) for name, schema in TABLES.items()
}


def table(name: str) -> TableSpec:
    """The catalog entry of a table; an unknown name is an error."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no table {name!r} in the catalog (known: {', '.join(CATALOG)})") from None
