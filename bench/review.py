"""Benchmark of the clinician's review: the worklist page at 100,000 rows in headless Chromium, and
the ECG rendering of real LUDB windows.

Page: a synthetic scored OUT whose scores table is built directly (random but plausible values:
sites, devices, dates, territories, probabilities with their log-odds and a calibrated risk with its band,
quality flags; every row flagged, one window per record, so the worklist has `--rows` rows) is
served by `msaic review`'s server (`flows.review`); Chromium (Debian's, through Selenium and the
system chromedriver, nothing downloaded) opens it. Time to first rows: from navigation start to the
first page of rows in the DOM (the page's own `performance.now()`), and the wall time of the
load as Selenium sees it; time to filtered rows: each filter (site, territory, risk band, date
range, path search, device) applied as a user does, timed from the change event to the rows in the DOM,
and with Selenium's round trip. Goal: under 2 s each.
ECG: `render_ecg` per record on real LUDB windows (decoded and harmonized as scoring does, not
timed), its SVG size, the median beats with their marks (the feature delineation included), and
the whole lazy path of the server (`render_record`: read, decode, harmonize, render). Goal:
render under 50 ms per record. Prints JSON.

    .venv/bin/python bench/review.py [--rows 100000] [--ecg-records 50] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
LUDB = ROOT.parent / "shared" / "data" / "ludb"
GOAL_PAGE_S = 2.0
GOAL_RENDER_MS = 50.0
SITES = ("north", "south", "east", "west", "central", "harbour", "valley", "hill")
DEVICES = ("MAC 5500", "PageWriter TC70", "CARDIOVIT AT-102", "ELI 380", None)
BANDS = ((0.2, "low"), (0.5, "intermediate"), (1.01, "high"))


def synthetic_scores(rows: int, seed: int = 0) -> pa.Table:
    """`rows` flagged scores rows with plausible values, the `site` column included."""
    from data_contracts.leads import CANONICAL_LEADS, TERRITORIES
    from data_contracts.schemas import SCORES, SITE_FIELD

    rng = np.random.default_rng(seed)
    logit = rng.normal(1.5, 2.0, rows)
    prob = 1 / (1 + np.exp(-logit))
    risk = 1 / (1 + np.exp(-(0.8 * logit - 0.4)))
    band = np.select([risk < BANDS[0][0], risk < BANDS[1][0]], [BANDS[0][1], BANDS[1][1]], BANDS[2][1])
    site = np.asarray(SITES)[rng.integers(0, len(SITES), rows)]
    day = np.datetime64("2015-01-01") + rng.integers(0, 3650, rows).astype("timedelta64[D]")
    seconds = rng.integers(0, 86400, rows)
    recorded = [
        f"{d}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for d, s in zip(day, seconds, strict=True)
    ]
    recorded = [r if k % 10 else None for k, r in enumerate(recorded)]  # a tenth states no date
    names = list(TERRITORIES)
    territory = [names[k] if k < len(names) else None for k in rng.integers(0, len(names) + 1, rows)]
    top = [list(TERRITORIES[t][:2]) if t else [] for t in territory]
    flagged_lead = np.asarray(CANONICAL_LEADS)[rng.integers(0, len(CANONICAL_LEADS), rows)]
    limited = rng.random(rows) < 0.15
    paths = [f"{s}/p{k // 3:06d}/ecg_{k:07d}.hea" for k, s in enumerate(site)]
    now = datetime.now(UTC)
    data = {
        "record_id": [f"{k:032x}" for k in rng.integers(0, 2**62, rows)],
        "source_path": paths,
        "window": np.zeros(rows, np.int32),
        "content_sha256": ["0" * 64] * rows,
        "recorded_date": [r[:10] if r else None for r in recorded],
        "recorded_at": recorded,
        "device": np.asarray(DEVICES)[rng.integers(0, len(DEVICES), rows)],
        "verdict": np.where(limited, "limited", "pass"),
        "quality_reasons": [[] for _ in range(rows)],
        "flagged_leads": [
            [f"{lead}: emg"] if lim else [] for lead, lim in zip(flagged_lead, limited, strict=True)
        ],
        "probability": prob.astype(np.float32),
        "logit": logit,
        "risk": risk.astype(np.float32),
        "risk_band": band,
        "flagged": np.ones(rows, bool),
        "threshold": np.full(rows, 0.5, np.float32),
        "model_id": ["bench-model"] * rows,
        "model_version": ["net msaic 1"] * rows,
        "territory": territory,
        "top_leads": top,
        "explanation": [f"consistent with a territory ({', '.join(t)})" if t else None for t in top],
        "unscored_reason": [None] * rows,
        "qc_version": ["qc/1"] * rows,
        "score_version": ["score/4"] * rows,
        "scored_at": [now] * rows,
        "site": site,
    }
    return pa.Table.from_pydict(data, schema=SCORES.append(SITE_FIELD))


def scored_out(out: Path, rows: int) -> None:
    """A scored OUT of `rows` flagged records (scores/ committed as a run does, score_run.json)."""
    from tasks import store as st
    from tasks.scoring.run import RUN_FILE

    moves = st.stage_parts(out, "scores", synthetic_scores(rows))
    st.Commit(moves=moves).publish(out)
    (out / RUN_FILE).write_text(json.dumps({"archive": str(LUDB), "model_id": "bench-model"}))


def browser():
    """Headless Debian Chromium through the system chromedriver (Selenium Manager stays offline)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _set(element: str, how: str, event: str = "change") -> str:
    return f"const e=document.getElementById('{element}'); {how}; e.dispatchEvent(new Event('{event}'));"


FILTERS = {  # filter → the JS that sets it as a user would, and fires its event
    "site": _set("f-site", "e.selectedIndex=2"),
    "device": _set("f-device", "e.selectedIndex=2"),
    "territory": _set("f-territory", "e.selectedIndex=1"),
    "risk_band": _set("f-risk_band", "e.selectedIndex=1"),
    "date_range": _set("f-from", "e.value='2019-01-01'"),
    "path_search": _set("f-path", "e.value='p0123'", "input"),
}


def page_figures(out: Path) -> dict:
    from flows.review import Review, serve
    from tasks.settings import Settings

    t0 = time.perf_counter()
    review = Review(out, None, "bench", Settings())
    build_s = time.perf_counter() - t0
    server = serve(review, 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    driver = browser()
    try:
        driver.get("about:blank")
        t0 = time.perf_counter()
        driver.get(url)  # returns at the load event, after the page's script has rendered the first rows
        load_wall = time.perf_counter() - t0
        first_rows_ms = driver.execute_script("return window.msaic.firstRowsMs")
        shown = driver.execute_script("return document.querySelectorAll('#rows tr').length")
        filters = {}
        for name, js in FILTERS.items():
            driver.execute_script("document.getElementById('reset').click()")
            t0 = time.perf_counter()
            driver.execute_script(js)
            wall = time.perf_counter() - t0
            in_page = driver.execute_script("return window.msaic.lastRefreshMs")
            filters[name] = {
                "rows": driver.execute_script("return window.msaic.rows()"),
                "in_page_s": round(in_page / 1000, 4),
                "with_round_trip_s": round(wall, 4),
            }
        t0 = time.perf_counter()
        driver.execute_script("document.querySelector('th[data-col=recorded_at]').click()")
        sort_s = time.perf_counter() - t0
    finally:
        driver.quit()
        server.shutdown()
    worst_filter = max(max(f["in_page_s"], f["with_round_trip_s"]) for f in filters.values())
    return {
        "rows": len(review.frame),
        "page_mb": round(len(review.page) / 2**20, 2),
        "server_build_s": round(build_s, 2),
        "first_rows_s": round(first_rows_ms / 1000, 3),
        "load_wall_s": round(load_wall, 3),
        "rows_in_dom": shown,
        "filters": filters,
        "sort_by_date_s": round(sort_s, 3),
        "goal_s": GOAL_PAGE_S,
        "meets_goal": max(first_rows_ms / 1000, load_wall, worst_filter) < GOAL_PAGE_S,
    }


def _ms(values: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(float(np.percentile(values, 95)) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def ecg_figures(records: int) -> dict:
    """Render times and sizes on real LUDB windows."""
    from tasks.features.beats import FeatureSkip
    from tasks.features.measure import measure_record
    from tasks.ingest.archive import ArchiveLimits
    from tasks.ingest.records import content_sha256
    from tasks.review.ecg_render import (
        CallInfo,
        median_marks,
        record_unit,
        record_window,
        render_ecg,
        render_record,
    )
    from tasks.settings import Settings

    settings = Settings()
    render_s, marks_s, lazy_s, sizes, median_sizes = [], [], [], [], []
    for k in range(1, records + 1):
        source = f"data/{k}.hea"
        sha = content_sha256(record_unit(LUDB, source, ArchiveLimits()).files)
        info = CallInfo(
            f"ludb{k}", source, "ludb", 0, "bench", "pass", probability=0.9, risk=0.8, risk_band="high",
            territory="inferior", top_leads=("III", "aVF"), lead_flags={"V1": "emg"},
        )  # fmt: skip
        t0 = time.perf_counter()
        svg = render_record(LUDB, info, sha, settings)
        lazy_s.append(time.perf_counter() - t0)
        signal = record_window(LUDB, source, 0, sha, settings)
        t0 = time.perf_counter()
        svg = render_ecg(signal, info)
        render_s.append(time.perf_counter() - t0)
        sizes.append(len(svg.encode()))
        try:
            features = measure_record(signal, np.ones(len(signal), bool))
            t0 = time.perf_counter()
            svg = render_ecg(signal, info, median_marks(signal, info.lead_flags, features))
            marks_s.append(time.perf_counter() - t0)
            median_sizes.append(len(svg.encode()))
        except FeatureSkip:
            pass
    return {
        "records": records,
        "render": _ms(render_s),
        "svg_kb_median": round(statistics.median(sizes) / 1024, 1),
        "svg_kb_max": round(max(sizes) / 1024, 1),
        "with_median_beats": {
            **_ms(marks_s),
            "svg_kb_median": round(statistics.median(median_sizes) / 1024, 1),
        },
        "lazy_read_decode_render": _ms(lazy_s),
        "goal_ms": GOAL_RENDER_MS,
        "meets_goal": float(np.percentile(render_s, 95)) * 1000 < GOAL_RENDER_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ecg-records", type=int, default=50)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench-key-not-secret")
    work = Path(tempfile.mkdtemp(prefix="msaic-bench-review-", dir=args.workdir))
    try:
        out = work / "out"
        t0 = time.perf_counter()
        scored_out(out, args.rows)
        setup_s = time.perf_counter() - t0
        result = {
            "bench": "review",
            "synthetic_out_s": round(setup_s, 1),
            "page": page_figures(out),
            "ecg": ecg_figures(args.ecg_records),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
