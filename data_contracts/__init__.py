"""Contracts every table keeps: pyarrow schemas, Great Expectations suites, label mappings,
versioned thresholds. Data files here are versioned with the code and read at run time."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_json(name: str) -> dict[str, Any]:
    """A versioned JSON contract file shipped inside this package (read once per process)."""
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
