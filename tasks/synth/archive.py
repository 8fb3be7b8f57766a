"""Writes a synthetic archive in the PTB-XL layout, streamed shard by shard through the shard runner.

Output (OUT): `records<fs>/<thousands>/<ecg_id>_hr.hea/.dat` per record at the site's native
rate, `ptbxl_database.csv` (its `scp_codes` are the reader's statements), `scp_statements.csv`,
`truth.parquet` (one row per record: what the heart has, `mi_label`, beside what the reader stated,
`mi_read`) and `truth_artifacts.parquet` (one row per lead and injected artifact). Shards have a
fixed size and their own random streams, and results are written in shard order, so the archive
depends on the seed only, never on the number of workers; memory stays bounded by the shards in
flight.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.runner import run_sharded
from tasks.synth.pathology import NONE, scp_codes, territories
from tasks.synth.record import RecordSpec, plan_shard, render
from tasks.synth.resources import load_json
from tasks.synth.sites import quantize, site
from tasks.synth.wfdbfmt import write_record

SHARD_SIZE = 256
DATABASE_COLUMNS: tuple[str, ...] = (
    "ecg_id",
    "patient_id",
    "age",
    "sex",
    "site",
    "device",
    "recording_date",
    "scp_codes",
    "strat_fold",
    "filename_lr",
    "filename_hr",
)
TRUTH_SCHEMA = pa.schema(
    [
        ("ecg_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("mi_label", pa.int8()),
        ("mi_read", pa.int8()),
        ("read_territory", pa.string()),
        ("mi_type", pa.string()),
        ("pattern", pa.string()),
        ("territory", pa.string()),
        ("artery", pa.string()),
        ("severity", pa.float64()),
        ("grade", pa.string()),
        ("confounder", pa.string()),
        ("confounder_severity", pa.float64()),
        ("fragmentation", pa.string()),
        ("fragmentation_mv", pa.float64()),
        ("placement", pa.string()),
        ("rhythm", pa.string()),
        ("ectopy", pa.string()),
        ("site", pa.string()),
        ("device", pa.string()),
        ("fs", pa.int32()),
        ("hr_bpm", pa.float64()),
        ("n_artifacts", pa.int32()),
    ]
)
ARTIFACT_SCHEMA = pa.schema(
    [
        ("ecg_id", pa.int64()),
        ("lead", pa.string()),
        ("artifact", pa.string()),
        ("strength", pa.float64()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class SynthConfig:
    """What decides the archive's content (the worker count does not)."""

    n_records: int
    sites: tuple[str, ...]
    seed: int = 0
    mi_prevalence: float | None = None  # mean over the sites; None keeps the profiles' own
    artifact_scale: float = 1.0  # multiplies every artifact rate (stress archives for QC)

    def __post_init__(self) -> None:
        if self.n_records < 1:
            raise ValueError(f"--records must be at least 1, got {self.n_records}")
        if self.mi_prevalence is not None and not 0.0 <= self.mi_prevalence <= 1.0:
            raise ValueError(f"--mi-prevalence must be in [0, 1], got {self.mi_prevalence}")

    def prevalence(self) -> dict[str, float]:
        """Per-site MI prevalence: the profiles', rescaled to the requested mean (site ratios kept)."""
        own = {s: site(s).mi_prevalence for s in self.sites}
        if self.mi_prevalence is None:
            return own
        mean = sum(own.values()) / len(own)
        return {
            s: min(1.0, p * self.mi_prevalence / mean) if mean else self.mi_prevalence for s, p in own.items()
        }

    @property
    def n_shards(self) -> int:
        return -(-self.n_records // SHARD_SIZE)


@dataclass
class Summary:
    """Counts of a finished run, for the CLI's summary line."""

    out: Path
    records: int = 0
    patients: int = 0
    mi: int = 0
    with_artifacts: int = 0
    per_site: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def relative_path(ecg_id: int, fs: int) -> str:
    """PTB-XL style path without extension, e.g. records500/00000/00001_hr."""
    return f"records{fs}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_hr"


# Acquisition times of the database rows: days since RECORDING_START within RECORDING_DAYS, hours
# of a working day (PTB-XL states `recording_date` as "YYYY-MM-DD HH:MM:SS").
RECORDING_START = np.datetime64("2016-01-01T00:00:00", "s")
RECORDING_DAYS = 8 * 365
RECORDING_HOURS = (7, 19)
_DATE_STREAM = 0xDA7E  # spawn key of the date's own random stream, apart from the rendering's


def recording_date(spec: RecordSpec) -> str:
    """When the record was taken, as PTB-XL writes it: drawn from the archive's seed and the
    record's id (so the same seed gives the same archive), on a random stream of its own so that
    no signal changes."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_DATE_STREAM, spec.ecg_id)))
    seconds = int(rng.integers(RECORDING_DAYS)) * 86400 + int(
        rng.integers(RECORDING_HOURS[0] * 3600, RECORDING_HOURS[1] * 3600)
    )
    return str(RECORDING_START + np.timedelta64(seconds, "s")).replace("T", " ")


def _database_row(spec: RecordSpec, path: str) -> list[Any]:
    codes = scp_codes(spec.mi_type, spec.pattern, spec.statement, spec.confounder, spec.rhythm)
    device = site(spec.site).device
    return [
        spec.ecg_id,
        spec.patient_id,
        spec.age,
        int(spec.female),
        spec.site,
        device,
        recording_date(spec),
        repr(codes),
        spec.strat_fold,
        "",
        path,
    ]


def _truth_row(spec: RecordSpec, fs: int, hr_bpm: float, n_artifacts: int) -> dict[str, Any]:
    fields = asdict(spec)
    return {name: fields[name] for name in TRUTH_SCHEMA.names if name in fields} | {
        "mi_label": int(spec.mi_type != NONE),
        "mi_read": int(spec.statement != NONE),
        "read_territory": spec.statement,
        "artery": territories()[spec.territory]["artery"] if spec.mi_type != NONE else NONE,
        "device": site(spec.site).device,
        "fs": fs,
        "hr_bpm": round(hr_bpm, 2),
        "n_artifacts": n_artifacts,
    }


def synth_shard(config: SynthConfig, shard: int, out: Path) -> tuple[list[list[Any]], list[dict], list[dict]]:
    """Render and write one shard; returns its database rows, truth rows and artifact rows."""
    db, truth, arts = [], [], []
    made: set[Path] = set()
    for spec in plan_shard(
        config.seed, shard, SHARD_SIZE, config.n_records, config.sites, config.prevalence()
    ):
        profile = site(spec.site)
        rendered = render(spec, artifact_scale=config.artifact_scale)
        path = relative_path(spec.ecg_id, profile.fs)
        directory = (out / path).parent
        if directory not in made:
            directory.mkdir(parents=True, exist_ok=True)
            made.add(directory)
        write_record(directory, Path(path).name, quantize(profile, rendered.signal), profile)
        db.append(_database_row(spec, path))
        truth.append(_truth_row(spec, profile.fs, rendered.hr_bpm, len(rendered.artifacts)))
        arts += [{"ecg_id": spec.ecg_id} | asdict(row) for row in rendered.artifacts]
    return db, truth, arts


def _results(config: SynthConfig, out: Path, workers: int) -> Iterator[tuple[list, list, list]]:
    """Shard results in shard order, from the local pool's workers (forked from its forkserver, a
    process of its own, so that no thread of the caller (Prefect, logging) is forked)."""
    shard = partial(synth_shard, config, out=out)
    return run_sharded(range(config.n_shards), shard, workers)


def write_scp_statements(out: Path) -> None:
    """scp_statements.csv in PTB-XL's shape (unnamed first column = code) for every code used."""
    columns = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
    with (out / "scp_statements.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", *columns])
        for s in load_json("physiology.json")["scp_statements"]:
            w.writerow([s["code"], *("" if s[c] is None else s[c] for c in columns)])


def write_archive(
    config: SynthConfig, out: Path, workers: int = 1, on_progress: Callable[[int], None] | None = None
) -> Summary:
    """Generate the whole archive into `out` (which must be missing or empty)."""
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output directory {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = Summary(out=out)
    write_scp_statements(out)
    with (
        (out / "ptbxl_database.csv").open("w", newline="", encoding="utf-8") as db_file,
        pq.ParquetWriter(out / "truth.parquet", TRUTH_SCHEMA) as truth_writer,
        pq.ParquetWriter(out / "truth_artifacts.parquet", ARTIFACT_SCHEMA) as artifact_writer,
    ):
        db = csv.writer(db_file)
        db.writerow(DATABASE_COLUMNS)
        for rows, truth, arts in _results(config, out, workers):
            db.writerows(rows)
            truth_writer.write_table(pa.Table.from_pylist(truth, schema=TRUTH_SCHEMA))
            if arts:
                artifact_writer.write_table(pa.Table.from_pylist(arts, schema=ARTIFACT_SCHEMA))
            summary.records += len(rows)
            summary.mi += sum(t["mi_label"] for t in truth)
            summary.with_artifacts += sum(t["n_artifacts"] > 0 for t in truth)
            summary.patients += len({t["patient_id"] for t in truth})  # patients never span shards
            for t in truth:
                summary.per_site[t["site"]] = summary.per_site.get(t["site"], 0) + 1
            if on_progress:
                on_progress(len(rows))
    summary.seconds = time.perf_counter() - started
    return summary
