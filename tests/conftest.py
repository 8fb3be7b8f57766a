"""Session-wide test set-up: one Prefect test harness (a real temporary API on SQLite in a
temporary PREFECT_HOME), quiet offline settings, and the paths of the shared real data."""

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
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
