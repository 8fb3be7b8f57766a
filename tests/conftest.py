"""Session-wide test set-up: one Prefect test harness (a real temporary API on SQLite in a
temporary PREFECT_HOME), quiet offline settings, and the paths of the shared real data. Under
pytest-xdist (pyproject's addopts) each worker process is a session of its own: its own harness,
PREFECT_HOME and session fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="msaic-prefect-home-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DASK_LOGGING__DISTRIBUTED": "error",
        "MSAIC_PSEUDONYM_KEY": "test-key-not-secret",
    }
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LUDB = SHARED_DATA / "ludb" / "data"
CINC = SHARED_DATA / "cinc2021"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real Prefect API for the whole session; flows called in tests report to it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture(scope="session")
def real_store(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """LUDB (site `ludb`) and the CinC sample ingested once per session through the flow.
    Shared by many tests: treat it as read-only, or copy it with `tests.helpers.copy_store`."""
    from flows.ingest import ingest
    from tasks.settings import Settings

    store = tmp_path_factory.mktemp("real-store")
    settings = Settings(workers=2, shard_size=32)
    ingest(LUDB.parent, store, site="ludb", settings=settings)
    ingest(CINC, store, settings=settings)
    return store


SYNTH_RECORDS = 240
SYNTH_SITES = 4


@pytest.fixture(scope="session")
def synth_archive(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A synthetic multi-site archive (PTB-XL layout, with truth tables), made once per session."""
    from flows.synth import synth

    archive = tmp_path_factory.mktemp("synth") / "archive"
    synth(out=archive, records=SYNTH_RECORDS, sites=SYNTH_SITES, seed=11, workers=2)
    return archive


@pytest.fixture(scope="session")
def synth_store(synth_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synth_archive` ingested once per session; read-only for tests (copy before writing)."""
    from flows.ingest import ingest
    from tasks.settings import Settings

    store = tmp_path_factory.mktemp("synth-store")
    ingest(synth_archive, store, settings=Settings(workers=2))
    return store


@pytest.fixture(scope="session")
def measured_store(synth_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synth_store` with its quality verdicts and features, through their own flows, once per
    session; read-only for tests (copy before writing: training registers models in the store)."""
    from flows.features import features
    from flows.quality import quality
    from tasks.settings import Settings
    from tests.helpers import copy_store

    store = copy_store(synth_store, tmp_path_factory.mktemp("measured") / "store")
    quality(store, Settings(workers=2))
    features(store, Settings(workers=2))
    return store


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, measured_store: Path) -> Path:
    """The directory of a tiny MSAIC-Net registered on a copy of `measured_store`, trained once
    per session (tests/flows/scoring_setup.py); read-only for tests."""
    from tests.flows.scoring_setup import trained_store

    store, model_id = trained_store(tmp_path_factory, measured_store)
    return store / "models" / model_id


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
