"""`msaic score` reads an archive on S3 (a real SeaweedFS server, tests/s3/conftest.py) and gives
the scores it gives the same archive on local disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks import store as st
from tasks.store.location import ObjectPath
from tests.s3.conftest import upload


def test_scores_of_an_archive_on_s3_are_those_of_the_archive_on_disk(
    small_archive: Path, s3_prefix: ObjectPath, model_dir: Path, tmp_path: Path
) -> None:
    from flows.score import run_score
    from tasks.settings import Settings

    archive = upload(small_archive, s3_prefix / "archive")
    settings = Settings(workers=1, score_shard_size=8)
    on_disk = run_score(small_archive, model_dir, tmp_path / "disk", settings)
    on_s3 = run_score(archive, model_dir, tmp_path / "s3", settings)
    assert on_s3.counts == on_disk.counts and on_s3.counts["windows"] > 0
    a, b = (
        st.read_table(tmp_path / out, "scores").to_pandas().sort_values("record_id").reset_index(drop=True)
        for out in ("disk", "s3")
    )
    assert a["record_id"].tolist() == b["record_id"].tolist()
    assert a["verdict"].tolist() == b["verdict"].tolist()
    np.testing.assert_allclose(a["probability"].astype(float), b["probability"].astype(float), rtol=1e-6)


def test_scores_written_to_s3_are_those_written_to_disk(
    small_archive: Path, s3_prefix: ObjectPath, model_dir: Path, tmp_path: Path
) -> None:
    from flows.score import run_score
    from tasks.settings import Settings

    settings = Settings(workers=1, score_shard_size=8)
    on_disk = run_score(small_archive, model_dir, tmp_path / "disk", settings)
    out = s3_prefix / "out"
    on_s3 = run_score(small_archive, model_dir, out, settings)
    assert on_s3.counts == on_disk.counts
    a, b = (
        st.read_table(where, "scores").to_pandas().sort_values(["record_id", "window"]).reset_index(drop=True)
        for where in (tmp_path / "disk", out)
    )
    assert len(a) == on_disk.counts["windows"] > 0
    for column in ("record_id", "window", "verdict", "flagged", "unscored_reason"):
        assert a[column].tolist() == b[column].tolist()
    np.testing.assert_allclose(a["probability"].astype(float), b["probability"].astype(float), rtol=1e-6)
    quarantined = (
        st.read_table(where, "quarantine")
        .to_pandas()[["source_path", "stage", "reason"]]
        .sort_values("source_path")
        for where in (tmp_path / "disk", out)
    )
    assert next(quarantined).to_numpy().tolist() == next(quarantined).to_numpy().tolist()
    assert (out / "worklist.csv").read_bytes() == (tmp_path / "disk" / "worklist.csv").read_bytes()
    again = run_score(small_archive, model_dir, out, settings)  # resumed: every shard already done
    assert again.shards_done == 0 and st.read_table(out, "scores").num_rows == on_disk.counts["windows"]
