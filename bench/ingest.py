"""Ingest throughput and memory against the bare decoder's loop on the same files.

WFDB: archives of copies of the shared real data (LUDB + CinC 2021) at two sizes against a bare
`wfdb.rdrecord` loop over the larger archive's records. Hospital formats: for each format, archives
of copies of the shared exports of `shared/data/hospital` at two sizes against a loop of the
format's reader alone over the larger archive's files (`tasks.ingest.readers.read` on the file's bytes,
file read included, as `rdrecord` reads its files). Both kinds are measured alike: site folders
holding as many records as the WFDB archive's folders on average, and the bare loop over the same
files the pipeline reads. The rate once started (`once_started`, the goal's measure for both) is
taken from the two sizes in this process, bare loop and pipeline alternating over a few rounds;
`msaic ingest` also runs end to end as a subprocess (Prefect flow, parallel workers, Parquet
writes, GX validation) with the peak RSS of its whole process tree sampled. Prints JSON.
Usage: python bench/ingest.py [--copies 64] [--format-seconds 8] [--workers 2] [--rounds 3]
                              [--only wfdb|formats] [--format edf [--format scp_ecg ...]]
(64 copies: 17,280 WFDB records, 3.5 GB of temp files)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import wfdb
from _measure import run_measured

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = [SHARED / "ludb" / "data", *sorted(p for p in (SHARED / "cinc2021").iterdir() if p.is_dir())]
HOSPITAL = SHARED / "hospital"
# records per site folder of the WFDB archives (LUDB's 200 and the CinC folders' 10-20 per copy):
# the format archives get site folders of the same mean size, so that per-site costs (one part
# file per site and shard) weigh the same in both measures
WFDB_RECORDS_PER_SITE = sum(len(list(s.glob("*.hea"))) for s in SOURCES) / len(SOURCES)


def build(root: Path, copies: int) -> list[Path]:
    """`copies` site folders, each a copy of every shared record; returns the headers."""
    for c in range(copies):
        for src in SOURCES:
            dst = root / f"copy{c:02d}_{src.parent.name if src.name == 'data' else src.name}"
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.i", "*.ii", "*.iii", "*.av?", "*.v?"))
    return sorted(root.rglob("*.hea"))


def bare_read(headers: list[Path]) -> float:
    t = time.perf_counter()
    for h in headers:
        wfdb.rdrecord(str(h.with_suffix("")))
    return len(headers) / (time.perf_counter() - t)


def run_ingest(archive: Path, store: Path, workers: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, whole process tree) of one `msaic ingest`."""
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "ingest",
        str(archive),
        "--store",
        str(store),
        "--workers",
        str(workers),
    ]
    return run_measured(cmd)


def hospital_files() -> dict[str, list[Path]]:
    """The shared exports that hold an ECG, by the format their content is read as."""
    from tasks.ingest import readers

    files: dict[str, list[Path]] = {}
    for path in sorted(HOSPITAL.rglob("*")):
        fmt = readers.sniff(path.read_bytes()[: readers.SNIFF_BYTES]) if path.is_file() else None
        if fmt is not None:
            try:
                readers.read(fmt, path.read_bytes())
            except readers.ReaderError:
                continue  # a refused sample (the non-compliant SCP, the EDF without ECG)
            files.setdefault(fmt, []).append(path)
    return files


def bare_decode(fmt: str, paths: list[Path]) -> float:
    """Records/s of the format's reader alone over these files, file read included."""
    from tasks.ingest import readers

    t = time.perf_counter()
    for path in paths:
        readers.read(fmt, path.read_bytes())
    return len(paths) / (time.perf_counter() - t)


def build_format(root: Path, paths: list[Path], copies: int) -> list[Path]:
    """`copies` copies of a format's sample files, one folder per copy, in site folders of about
    `WFDB_RECORDS_PER_SITE` records; returns the files."""
    per_site = max(1, round(WFDB_RECORDS_PER_SITE / len(paths)))
    files = []
    for c in range(copies):
        folder = root / f"site{c // per_site:03d}" / f"copy{c:04d}"
        folder.mkdir(parents=True)
        for p in paths:
            files.append(folder / p.name)
            shutil.copy(p, files[-1])
    return files


def once_started(
    small: tuple[Path, int],
    large: tuple[Path, int],
    bare: Callable[[], float],
    workers: int,
    tmp: Path,
    rounds: int,
) -> dict[str, Any]:
    """The pipeline's rate once started against the bare loop's, in this process: after one
    warm-up ingest (imports, the records contract), each round times the bare loop, then
    `ingest_archive` (the ingest flow's one task: archive walk, worker pool, Parquet writes,
    validation, commits; a fresh pool and store each time) on the small and the large archive; the
    pool's start-up cancels in the difference. Bare and pipeline alternate and the medians over
    the rounds are taken, so that a change of machine load hits both; Prefect's start-up (10-20 s
    per command, and the largest source of run-to-run spread on a loaded machine) stays out."""
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings

    settings = Settings(workers=workers)

    def timed(archive: Path, store: Path) -> float:
        t = time.perf_counter()
        ingest_archive(archive, store, settings)
        wall = time.perf_counter() - t
        shutil.rmtree(store)
        return wall

    timed(small[0], tmp / "warm-up")
    bares, rates = [], []
    for r in range(rounds):
        bares.append(bare())
        wall_small = timed(small[0], tmp / f"small-{r}")
        wall_large = timed(large[0], tmp / f"large-{r}")
        rates.append((large[1] - small[1]) / (wall_large - wall_small))
    bare_rate, rate = statistics.median(bares), statistics.median(rates)
    return {
        "bare_records_per_s": round(bare_rate, 1),
        "once_started_records_per_s": round(rate, 1),
        "once_started_over_bare": round(rate / bare_rate, 3),
        "rounds_over_bare": [round(x / b, 3) for x, b in zip(rates, bares, strict=True)],
    }


def format_rates(
    tmp: Path, seconds: float, workers: int, rounds: int, only: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per hospital format (those in `only`, else all): the pipeline's rate once started against
    the bare reader's (`once_started`), on two archives of copies sized so that the larger one
    holds about `seconds` of bare decoding, and the end-to-end rate and peak RSS of `msaic ingest`
    on the larger one."""
    out: dict[str, dict[str, Any]] = {}
    for fmt, paths in hospital_files().items():
        if only and fmt not in only:
            continue
        sizing = bare_decode(fmt, paths * max(1, round(20 / len(paths))))  # a first estimate, to size
        copies = max(8, round(sizing * seconds / len(paths)))
        small, large = tmp / f"{fmt}-small", tmp / f"{fmt}-large"
        build_format(small, paths, copies // 4)
        files = build_format(large, paths, copies)
        rates = once_started(
            (small, copies // 4 * len(paths)),
            (large, len(files)),
            partial(bare_decode, fmt, files),
            workers,
            tmp,
            rounds,
        )
        wall, peak = run_ingest(large, tmp / f"store-{fmt}", workers)
        for folder in (small, large, tmp / f"store-{fmt}"):
            shutil.rmtree(folder)
        out[fmt] = {
            "sample_files": len(paths),
            "records": len(files),
            **rates,
            "ingest_records_per_s": round(len(files) / wall, 1),
            "peak_rss_mib": round(peak, 1),
        }
    return out


def main() -> None:
    from tasks.ingest.readers import FORMATS

    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=64)
    ap.add_argument(
        "--format-seconds", type=float, default=8.0, help="seconds of bare decoding in each format's archive"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=["wfdb", "formats"], help="run one part only")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the once-started measure (median)")
    ap.add_argument(
        "--format",
        action="append",
        choices=sorted(set(FORMATS.values())),
        help="measure this hospital format only (repeatable)",
    )
    args = ap.parse_args()
    from tasks.runner import tune_allocator

    # The bare loops run in this process: give them the allocator the pipeline's workers get, so
    # that the reference is at its best (untuned, decoding an EDF record here took 4x as long)
    out: dict[str, Any] = {"workers": args.workers, "allocator_tuned": tune_allocator()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "wfdb":
            only = args.format
            out["formats"] = format_rates(Path(tmp), args.format_seconds, args.workers, args.rounds, only)
            out["formats_target"] = "once_started_over_bare >= 0.5 per format"
        if args.only == "formats":
            print(json.dumps(out, indent=2))
            return
        sizes, archives = {}, {}
        for copies in (max(1, args.copies // 4), args.copies):
            archive = Path(tmp) / f"archive{copies}"
            headers = build(archive, copies)
            archives[len(headers)] = (archive, headers)
            bare = bare_read(headers)
            wall, peak = run_ingest(archive, Path(tmp) / f"store{copies}", args.workers)
            store_mb = (
                sum(p.stat().st_size for p in (Path(tmp) / f"store{copies}").rglob("*.parquet")) / 2**20
            )
            shutil.rmtree(Path(tmp) / f"store{copies}")
            raw_mb = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file()) / 2**20
            sizes[len(headers)] = {
                "records": len(headers),
                "bare_rdrecord_records_per_s": round(bare, 1),
                "ingest_records_per_s": round(len(headers) / wall, 1),
                "ingest_over_bare": round(len(headers) / wall / bare, 3),
                "ingest_wall_s": round(wall, 2),
                "peak_rss_mib": round(peak, 1),
                "store_mib": round(store_mb, 1),
                "raw_archive_mib": round(raw_mb, 1),
            }
        small, large = sorted(sizes)
        out["runs"] = list(sizes.values())
        # the rate once started (what an archive of millions of records sees), measured as for the
        # hospital formats: the fixed start-up (Prefect's temporary API, worker processes, imports)
        # taken out by the two sizes, in this process, bare loop and pipeline alternating
        rates = once_started(
            (archives[small][0], small),
            (archives[large][0], large),
            partial(bare_read, archives[large][1]),
            args.workers,
            Path(tmp),
            args.rounds,
        )
        out["once_started"] = rates
        out["fixed_startup_s"] = round(
            sizes[large]["ingest_wall_s"] - large / float(rates["once_started_records_per_s"]),
            1,
        )
        out["peak_rss_growth_large_over_small"] = round(
            sizes[large]["peak_rss_mib"] / sizes[small]["peak_rss_mib"], 3
        )
        out["target"] = "ingest_over_bare >= 0.5 at >= 2000 records; peak RSS flat in archive size"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
