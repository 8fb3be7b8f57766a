"""`msaic synth` through the real Prefect flow: the sub-command's arguments, the summary line and
an archive that wfdb and pandas read back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest
import wfdb

from flows.synth import register, synth


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="msaic")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_runs_the_flow_and_prints_a_summary(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "archive"
    args = parse(
        ["synth", "--out", str(out), "--records", "30", "--sites", "2", "--seed", "3", "--workers", "1"]
    )
    assert args.func(args) == 0
    assert "synth: 30 records" in capsys.readouterr().out
    db = pd.read_csv(out / "ptbxl_database.csv")
    assert len(db) == 30 and set(db["site"]) <= {"site_a", "site_b"}
    record = wfdb.rdrecord(str(out / db["filename_hr"].iloc[0]))
    assert record.n_sig == 12 and record.sig_len == 10 * record.fs
    assert len(pd.read_parquet(out / "truth.parquet")) == 30


def test_flow_rejects_bad_settings(prefect_harness: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--sites"):
        synth.fn(out=tmp_path / "a", records=5, sites=99)
    with pytest.raises(ValueError, match="--records"):
        synth.fn(out=tmp_path / "b", records=0)


def test_cli_arguments_and_defaults() -> None:
    args = parse(["synth", "--out", "x", "--records", "5", "--mi-prevalence", "0.3"])
    assert (args.sites, args.seed, args.mi_prevalence, args.workers) == (4, 0, 0.3, None)
    with pytest.raises(SystemExit):
        parse(["synth", "--records", "5"])
