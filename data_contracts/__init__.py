"""Contracts every table keeps: pyarrow schemas, Great Expectations suites, label mappings,
versioned thresholds. Data files here are versioned with the code and read at run time."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any


@cache
def package_json(package: str, name: str) -> Any:
    """A JSON file shipped inside `package` (parsed once per process)."""
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def load_json(name: str) -> dict[str, Any]:
    """A versioned JSON contract file of this package."""
    return package_json(__package__, name)


def load_contract(name: str, path: Path | str | None = None) -> dict[str, Any]:
    """The packaged contract file `name`, or the file at `path` in the same layout (a site's own
    QC profile or evaluation config, say)."""
    if path is None:
        return load_json(name)
    return json.loads(Path(path).read_text(encoding="utf-8"))
