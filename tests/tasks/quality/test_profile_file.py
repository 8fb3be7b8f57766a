"""Which QC profile scoring applies: the given one, else the model's, else the packaged one, with
a warning when it is not the model's."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.quality.profile_file import PROFILE_FILE, ProfileId, profile_bytes, scoring_profile


def _profile(path: Path, version: str) -> Path:
    raw = json.loads(profile_bytes(None))
    path.write_text(json.dumps(raw | {"version": version}))
    return path


def test_the_model_profile_is_applied_unless_another_is_given(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    packaged = ProfileId.of(profile_bytes(None))
    # a model registered before profiles were kept: the packaged profile, no warning
    old = scoring_profile(model, None)
    assert (old.path, old.profile, old.model_profile, old.warning) == (None, packaged, None, None)
    _profile(model / PROFILE_FILE, "qc/site")
    own = scoring_profile(model, None)
    assert own.path == (model / PROFILE_FILE).resolve() and own.profile.version == "qc/site"
    assert own.warning is None
    given = scoring_profile(model, _profile(tmp_path / "other.json", "qc/other"))
    assert given.profile.version == "qc/other" and given.model_profile == own.profile
    assert given.warning is not None and "qc/other" in given.warning and "qc/site" in given.warning
    # the same bytes under another name are the same profile
    same = tmp_path / "same.json"
    same.write_bytes((model / PROFILE_FILE).read_bytes())
    assert scoring_profile(model, same).warning is None
