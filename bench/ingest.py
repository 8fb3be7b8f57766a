"""Ingest throughput and memory against the bare decoder's loop on the same files.

WFDB: archives of copies of the shared real data (LUDB + CinC 2021) at two sizes against a bare
`wfdb.rdrecord` loop. Hospital formats: for each format, archives of copies of the shared exports
of `shared/data/hospital` at two sizes against a loop of the format's reader alone
(`tasks.ingest.readers.read` on the file's bytes, file read included, as `rdrecord` reads its files).
Each archive goes through `msaic ingest` end to end as a subprocess (Prefect flow, parallel
workers, Parquet writes, GX validation) with the peak RSS of its whole process tree sampled; the
rate once started is taken from the two sizes (the fixed start-up taken out). Prints JSON.
Usage: python bench/ingest.py [--copies 64] [--format-seconds 8] [--workers 2] [--only wfdb|formats]
(64 copies: 17,280 WFDB records, 3.5 GB of temp files)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import wfdb
from _measure import run_measured

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = [SHARED / "ludb" / "data", *sorted(p for p in (SHARED / "cinc2021").iterdir() if p.is_dir())]
HOSPITAL = SHARED / "hospital"


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


def bare_decode(fmt: str, paths: list[Path], repeats: int) -> float:
    """Records/s of the format's reader alone, file read included, over `repeats` passes."""
    from tasks.ingest import readers

    t = time.perf_counter()
    for _ in range(repeats):
        for path in paths:
            readers.read(fmt, path.read_bytes())
    return repeats * len(paths) / (time.perf_counter() - t)


def format_rates(tmp: Path, seconds: float, workers: int) -> dict[str, dict[str, float]]:
    """Per hospital format: the bare reader's rate, then the pipeline's rate once started, from
    two archives of copies sized so that the larger one holds about `seconds` of bare decoding
    (start-up is 10-20 s, so smaller archives would measure only the start-up)."""
    out: dict[str, dict[str, float]] = {}
    for fmt, paths in hospital_files().items():
        bare = bare_decode(fmt, paths, repeats=max(1, round(20 / len(paths))))
        copies = max(8, round(bare * seconds / len(paths)))
        walls: dict[int, float] = {}
        peaks: dict[int, float] = {}
        for n in (copies // 4, copies):
            archive = tmp / f"{fmt}{n}"
            for c in range(n):
                (archive / f"copy{c:04d}").mkdir(parents=True)
                for p in paths:
                    shutil.copy(p, archive / f"copy{c:04d}" / p.name)
            records = n * len(paths)
            walls[records], peaks[records] = run_ingest(archive, tmp / f"store-{fmt}{n}", workers)
            shutil.rmtree(archive)
        small, large = sorted(walls)
        marginal = (large - small) / (walls[large] - walls[small])
        out[fmt] = {
            "sample_files": len(paths),
            "records": large,
            "bare_decode_records_per_s": round(bare, 1),
            "ingest_records_per_s": round(large / walls[large], 1),
            "marginal_ingest_records_per_s": round(marginal, 1),
            "marginal_over_bare": round(marginal / bare, 3),
            "peak_rss_mib": round(peaks[large], 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=64)
    ap.add_argument(
        "--format-seconds", type=float, default=8.0, help="seconds of bare decoding in each format's archive"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=["wfdb", "formats"], help="run one part only")
    args = ap.parse_args()
    out: dict[str, object] = {"workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "wfdb":
            out["formats"] = format_rates(Path(tmp), args.format_seconds, args.workers)
            out["formats_target"] = "marginal_over_bare >= 0.5 per format"
        if args.only == "formats":
            print(json.dumps(out, indent=2))
            return
        sizes = {}
        for copies in (max(1, args.copies // 4), args.copies):
            archive = Path(tmp) / f"archive{copies}"
            headers = build(archive, copies)
            bare = bare_read(headers)
            wall, peak = run_ingest(archive, Path(tmp) / f"store{copies}", args.workers)
            store_mb = (
                sum(p.stat().st_size for p in (Path(tmp) / f"store{copies}").rglob("*.parquet")) / 2**20
            )
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
        # the rate once started: what an archive of millions of records sees, with the fixed start-up
        # (Prefect's temporary API, worker processes, imports) taken out by the two sizes
        marginal = (large - small) / (sizes[large]["ingest_wall_s"] - sizes[small]["ingest_wall_s"])
        out["marginal_ingest_records_per_s"] = round(marginal, 1)
        out["marginal_over_bare"] = round(marginal / sizes[large]["bare_rdrecord_records_per_s"], 3)
        out["fixed_startup_s"] = round(sizes[small]["ingest_wall_s"] - small / marginal, 1)
        out["peak_rss_growth_large_over_small"] = round(
            sizes[large]["peak_rss_mib"] / sizes[small]["peak_rss_mib"], 3
        )
        out["target"] = "ingest_over_bare >= 0.5 at >= 2000 records; peak RSS flat in archive size"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
