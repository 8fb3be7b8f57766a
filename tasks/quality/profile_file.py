"""Which QC profile a store's quality rows, a model and a scoring run used.

A profile's bytes are kept beside what they produced: `msaic qc` writes the profile it ran with
as STORE/qc_profile.json (in its first commit), registration copies it into the model directory,
and a profile is named by its version and the SHA-256 of its bytes. Scoring applies the profile
it is given (`--profile`, `MSAIC_QC_PROFILE`), else the model's, else the packaged one, and says
so when the given one differs from the model's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tasks.store.location import Location, location

PROFILE_FILE = "qc_profile.json"


def profile_bytes(path: Location | None) -> bytes:
    """The bytes of the profile at `path` (a path or an s3:// location), or of the packaged
    data_contracts/qc_profile.json."""
    if path is not None:
        return location(path).read_bytes()
    return resources.files("data_contracts").joinpath(PROFILE_FILE).read_bytes()


@dataclass(frozen=True)
class ProfileId:
    """A profile's version and the SHA-256 of its bytes."""

    version: str
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> ProfileId:
        return cls(str(json.loads(data)["version"]), hashlib.sha256(data).hexdigest())


def recorded_profile(directory: Location) -> Location | None:
    """The profile kept in a store or model directory (a path or an s3:// location), if any."""
    path = location(directory) / PROFILE_FILE
    return path if path.is_file() else None


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a scoring run applies (`path` None: the packaged one), its identity, and a
    warning when it is not the model's."""

    path: Location | None
    profile: ProfileId
    model_profile: ProfileId | None
    warning: str | None


def scoring_profile(model_dir: Location, given: Path | None) -> ProfileChoice:
    """The given profile, else the model's, else the packaged one; a warning when the given one
    (or the packaged one, for a model trained with another) is not the one the model was trained
    with, since its verdicts then gate windows differently from what the model saw."""
    kept = recorded_profile(model_dir)
    model = ProfileId.of(kept.read_bytes()) if kept else None
    path: Location | None = given or kept
    used = ProfileId.of(profile_bytes(path))
    warning = None
    if model is not None and used != model:
        warning = (
            f"QC profile {used.version} ({used.sha256[:12]}) differs from the one model was trained "
            f"with, {model.version} ({model.sha256[:12]})"
        )
    return ProfileChoice(path.resolve() if path else None, used, model, warning)
