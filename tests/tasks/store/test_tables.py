"""Parquet files as the store writes them: a real EDF record's windows in `waveforms/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.schemas import WAVEFORMS
from tasks.ingest import readers
from tasks.ingest.harmonize import harmonize
from tasks.ingest.records import signal_array
from tasks.store.tables import signals_of, write_parquet
from tests.conftest import SHARED_DATA

EDF = SHARED_DATA / "hospital" / "edf" / "ecgcontec_0000050_contec-ecg2edf.edf"


def test_signals_carry_no_statistics_and_the_ids_keep_theirs(tmp_path: Path) -> None:
    raw = readers.read("edf", EDF.read_bytes()).raw
    windows = harmonize(raw, target_fs=500, window_s=10, min_duration_s=5, max_duration_s=3600).windows
    ids = pa.array([f"edf-{i}" for i in range(len(windows))])
    table = pa.table({"record_id": ids, "signal": signal_array(windows)}).cast(WAVEFORMS)
    path = write_parquet(table, tmp_path / "part.waveforms.parquet")

    meta = pq.ParquetFile(path).metadata
    columns = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(2)}
    signal = next(c for name, c in columns.items() if name.startswith("signal"))
    assert not signal.is_stats_set
    assert columns["record_id"].is_stats_set
    assert columns["record_id"].statistics.min == "edf-0"
    back = pq.read_table(path)["signal"].combine_chunks().flatten().flatten().to_numpy()
    assert np.array_equal(back.reshape(windows.shape), windows, equal_nan=True)  # values unchanged


def test_signals_of_reads_the_windows_back_from_any_chunking(tmp_path: Path) -> None:
    """The one decoder of `waveforms/`' signal column: a real EDF record's windows as written, in
    one chunk (no copy) and in several."""
    raw = readers.read("edf", EDF.read_bytes()).raw
    windows = harmonize(raw, target_fs=500, window_s=10, min_duration_s=5, max_duration_s=3600).windows
    column = pa.table({"record_id": [str(i) for i in range(len(windows))], "signal": signal_array(windows)})
    column = column.cast(WAVEFORMS)["signal"]
    one = signals_of(column.combine_chunks())
    assert one.shape == windows.shape and one.dtype == np.float32
    assert np.array_equal(one, windows, equal_nan=True)
    chunked = pa.chunked_array([column.combine_chunks()[:2], column.combine_chunks()[2:]])
    assert np.array_equal(signals_of(chunked), windows, equal_nan=True)
    assert signals_of(column.combine_chunks()[:0]).shape == (0, *windows.shape[1:])
