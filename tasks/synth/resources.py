"""Loads the generator's parameter files (site profiles, physiology) shipped inside the package.

Every tunable number of the generator lives in these JSON files, not in code, so that a profile
can be reviewed and changed without touching the signal model.
"""

from __future__ import annotations

from typing import Any

from data_contracts import package_json


def load_json(name: str) -> Any:
    """Parsed content of `tasks/synth/<name>` (read once per process)."""
    return package_json(__package__, name)
