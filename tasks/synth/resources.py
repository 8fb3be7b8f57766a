"""Loads the generator's parameter files (site profiles, physiology) shipped inside the package.

Every tunable number of the generator lives in these JSON files, not in code, so that a profile
can be reviewed and changed without touching the signal model.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_json(name: str) -> Any:
    """Parsed content of `tasks/synth/<name>` (cached: the files are read once per process)."""
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
