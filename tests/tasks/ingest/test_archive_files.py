"""Workers read their records' files themselves (`ArchiveFiles`): what a unit carries to a worker,
and what happens when a file changes or goes between the walk and the read, on real files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from tasks.ingest.archive import ArchiveFiles, ArchiveLimits, RecordUnit, open_archive
from tasks.ingest.records import IngestConfig, Task, content_sha256, process_shard
from tasks.ingest.wfdb_header import HeaderError
from tasks.settings import Settings
from tests.conftest import SHARED_DATA
from tests.helpers import copy_ludb

EDF = SHARED_DATA / "hospital" / "edf" / "ecgcontec_0000050_contec-ecg2edf.edf"


def _units(root: Path, workers_read: bool, limits: ArchiveLimits | None = None) -> list[RecordUnit]:
    items = open_archive(root, limits, workers_read).units(lambda _name: {})
    return [u for u in items if isinstance(u, RecordUnit)]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = copy_ludb(tmp_path / "archive" / "ludb", (1, 2, 3))
    shutil.copy(EDF, root / EDF.name)
    return root.parent


def test_a_unit_carries_where_its_files_are_not_their_bytes(archive: Path) -> None:
    eager, lazy = _units(archive, False), _units(archive, True)
    assert [u.source_path for u in eager] == [u.source_path for u in lazy]
    assert all(isinstance(u.files, ArchiveFiles) for u in lazy)
    assert not any(isinstance(u.files, ArchiveFiles) for u in eager)
    for e, z in zip(eager, lazy, strict=True):
        assert z.nbytes == e.nbytes
        shipped = pickle.dumps(z)
        assert len(shipped) < 2048 < e.nbytes  # the header (WFDB) travels, the signal does not
        assert content_sha256(pickle.loads(shipped).files) == content_sha256(e.files)


def test_a_file_gone_after_the_walk_is_quarantined_the_rest_read(archive: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    cfg = IngestConfig.for_store(store, Settings(workers=1))
    tasks = [Task(u, "ludb", None) for u in _units(archive, True)]
    (archive / "ludb" / "2.dat").unlink()
    result = process_shard(tasks, cfg, tmp_path / "staging", "s")
    [row] = result.quarantine
    assert (row["source_path"], row["stage"], row["reason"]) == ("ludb/2.hea", "read", "unreadable_file")
    assert result.windows == 2 + 4  # LUDB 1 and 3 (10 s each); the 47-s EDF, its 7-s tail dropped


def test_a_file_grown_past_the_limit_after_the_walk_is_refused(archive: Path) -> None:
    limits = ArchiveLimits(max_member_bytes=EDF.stat().st_size)
    [unit] = [u for u in _units(archive, True, limits) if u.format == "edf"]
    with (archive / "ludb" / EDF.name).open("ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(HeaderError) as err:
        unit.files[EDF.name]
    assert err.value.reason == "too_large"
