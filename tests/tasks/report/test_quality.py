"""The quality report's summary tables, figures and HTML, on small frames with known answers."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FLAG_COLUMNS, N_LEADS, QC_FLAGS, WINDOW_SAMPLES
from tasks.quality.gate import load_profile
from tasks.report import figures as fig
from tasks.report import html as h
from tasks.report import quality as rq


def _windows() -> pd.DataFrame:
    """Six records at two sites: flags on chosen leads, one record not checked yet."""
    rows = [
        ("r1", "a", "dev1", "pass", {}),
        ("r2", "a", "dev1", "limited", {"V1": "powerline,emg"}),
        ("r3", "a", "dev2", "reject", {"V1": "flat", "V2": "flat", "V3": "flat", "V4": "flat"}),
        ("r4", "b", "dev2", "limited", {"II": "baseline", "V1": "powerline"}),
        ("r5", "b", "dev2", "reject", {"I": "reversal"}),
        ("r6", "b", "dev2", rq.UNCHECKED, {}),
    ]
    frame = pd.DataFrame(
        [
            {
                "record_id": rid,
                "site": site,
                "device": device,
                "verdict": verdict,
                "reasons": "" if verdict in ("pass", rq.UNCHECKED) else f"reason of {rid}",
                "source_path": f"{site}/{rid}.hea",
                "ingest_date": "2026-11-24" if rid < "r4" else "2026-11-25",
                "recorded_month": {"r1": "2019-03", "r2": "2019-03", "r4": "2021-11"}.get(rid),
                **{f"flags_{lead}": flags.get(lead, "") for lead in CANONICAL_LEADS},
            }
            for rid, site, device, verdict, flags in rows
        ]
    )
    unchecked = frame["verdict"] == rq.UNCHECKED
    frame.loc[unchecked, FLAG_COLUMNS] = np.nan  # no quality row: the left join leaves NaN
    return frame


def _is_png(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


def test_verdict_counts_and_rates_leave_unchecked_out_of_the_rates() -> None:
    counts = rq.verdict_counts(_windows(), "site")
    assert list(counts.columns) == ["pass", "limited", "reject", rq.UNCHECKED]
    assert counts.loc["a"].tolist() == [1, 1, 1, 0] and counts.loc["b"].tolist() == [0, 1, 1, 1]
    table = rq.verdict_table(counts)
    assert table.loc["b", "records"] == 3
    assert table.loc["b", "reject %"] == pytest.approx(50.0)  # 1 of the 2 checked records
    assert table.loc["a", "pass %"] == pytest.approx(100 / 3)
    checked_only = rq.verdict_counts(_windows().query("verdict != @rq.UNCHECKED"), "device")
    assert rq.UNCHECKED not in checked_only.columns
    assert checked_only.loc["dev2"].tolist() == [0, 1, 2]


def test_flag_rates_per_site_and_per_lead() -> None:
    windows = _windows()
    by_site = rq.flag_rates_by_site(windows)
    assert list(by_site.columns) == list(CANONICAL_LEADS)
    assert by_site.loc["a", "V1"] == pytest.approx(200 / 3)  # r2 and r3 of a's 3 checked records
    assert by_site.loc["b", "V1"] == pytest.approx(50.0)  # r4 of 2 checked (r6 is not checked)
    assert by_site.loc["a", "V5"] == 0.0
    per_lead = rq.flag_rates_by_lead(windows)
    assert list(per_lead.index) == list(CANONICAL_LEADS)
    assert list(per_lead.columns) == [*QC_FLAGS, "any"]
    assert per_lead.loc["V1", "powerline"] == pytest.approx(40.0)  # 2 of 5 checked records
    assert per_lead.loc["V1", "emg"] == pytest.approx(20.0)
    assert per_lead.loc["V1", "any"] == pytest.approx(60.0)  # a two-flag lead counts once
    assert per_lead.loc["V6"].sum() == 0.0


def test_worst_records_rank_rejects_first_then_by_flagged_leads() -> None:
    worst = rq.worst_records(_windows(), 3)
    assert worst["record_id"].tolist() == ["r3", "r5", "r4"]  # r4 has two flagged leads, r2 one
    assert worst.loc[0, "flagged_leads"] == 4
    assert worst.loc[0, "lead_flags"] == "flat: V1, V2, V3, V4"
    assert worst.loc[2, "lead_flags"] == "powerline: V1; baseline: II"  # in the QC's flag order
    every = rq.worst_records(_windows(), 10)
    assert every["record_id"].tolist() == ["r3", "r5", "r4", "r2"]  # never `pass` or unchecked


def test_worst_records_show_each_kind_of_problem_before_repeats() -> None:
    windows = _windows()
    twin = windows[windows["record_id"] == "r3"].assign(record_id="r3b", source_path="a/r3b.hea")
    windows = pd.concat([windows, twin], ignore_index=True)
    assert rq.worst_records(windows, 2)["record_id"].tolist() == ["r3", "r5"]  # not r3 and its twin
    assert rq.worst_records(windows, 4)["record_id"].tolist() == ["r3", "r5", "r4", "r2"]
    assert rq.worst_records(windows, 5)["record_id"].tolist() == ["r3", "r3b", "r5", "r4", "r2"]  # by rank


def test_worst_records_of_a_store_not_checked_yet_are_none() -> None:
    """A report between ingest and qc: every record unchecked, no example (it raised before)."""
    windows = _windows()
    windows["verdict"] = rq.UNCHECKED
    worst = rq.worst_records(windows, 5)
    assert worst.empty and list(worst.columns) == list(rq.worst_records(_windows(), 5).columns)


def test_acquisition_month_is_null_where_no_calendar_month_is_stated() -> None:
    """Months a date axis can show; a source's day-month swap, a year 1600 or nothing are null
    (one such record stopped the whole report before)."""
    stated = pd.Series(["2019-03-05T10:11:12", "2021-11-30", "2019-25-12", "1600-01-01", None, "garbage"])
    month = rq.acquisition_month(stated)
    assert month[:2].tolist() == ["2019-03", "2021-11"] and month[2:].isna().all()
    windows = pd.DataFrame({"recorded_month": month, "verdict": "pass"})
    counts = rq.verdict_counts(windows[windows["recorded_month"].notna()], "recorded_month")
    _is_png(fig.verdicts_over_time(counts, "acquisition month", monthly=True))


def test_noise_by_site_pools_finite_values_of_all_leads() -> None:
    values = np.arange(3 * N_LEADS, dtype=float).reshape(3, N_LEADS)
    values[0, :6] = np.nan
    inputs = rq.QualityInputs(
        windows=_windows(),
        noise={"emg": values},
        noise_sites=np.array(["a", "b", "a"], dtype=object),
        quarantine=pd.DataFrame(),
        qc_versions=["qc/1"],
    )
    by_site = rq.noise_by_site(inputs)
    assert by_site["emg"]["a"].size == 6 + 12 and by_site["emg"]["b"].size == 12
    medians = rq.noise_medians(by_site)
    assert medians.loc["b", "emg"] == pytest.approx(np.median(values[1]))


def test_figures_are_png_and_the_strip_tints_only_flagged_leads() -> None:
    windows = _windows()
    counts = rq.verdict_counts(windows, "site")
    for png in (
        fig.verdict_shares(counts, "site"),
        fig.verdicts_over_time(rq.verdict_counts(windows, "ingest_date")),
        fig.verdicts_over_time(
            rq.verdict_counts(windows, "recorded_month"), "acquisition month", monthly=True
        ),
        fig.flag_heatmap(rq.flag_rates_by_site(windows)),
        fig.noise_distributions(
            {"emg": {"a": np.array([0.01, 0.02, 0.5]), "b": np.array([])}}, {"emg": 0.03}
        ),
    ):
        width, height = _is_png(png)
        assert width > 300 and height > 100
    t = np.arange(WINDOW_SAMPLES) / 500
    signal = np.tile(np.sin(2 * np.pi * 1.2 * t), (N_LEADS, 1)).astype(np.float32)
    signal[7] = np.nan
    tint = tuple(int(fig._FLAGGED_FACE[i : i + 2], 16) for i in (1, 3, 5))

    def tinted_pixels(flags: list[str]) -> int:
        png = fig.ecg_strip(signal, flags, "r1", 500)
        _is_png(png)
        rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        return int((rgb == tint).all(axis=2).sum())

    assert tinted_pixels([""] * N_LEADS) == 0
    assert tinted_pixels(["flat" if lead == "V2" else "" for lead in CANONICAL_LEADS]) > 10_000


def test_page_is_self_contained_and_escapes_text() -> None:
    frame = pd.DataFrame({"record_id": ["<script>alert(1)</script>"], "rate": [12.345]})
    png = fig.verdict_shares(rq.verdict_counts(_windows(), "site"), "site")
    html = h.page(
        "T & <b>", "meta", [h.Section("one", "First", h.table(frame, "t1") + h.image(png, "a < b"))]
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "T &amp; &lt;b&gt;" in html
    assert 'href="#one"' in html and '<section id="one">' in html
    assert "12.3" in html and "http" not in html
    assert "data:image/png;base64," in html


def test_markdown_table() -> None:
    frame = pd.DataFrame({"n": [3, 4], "rate": [1.25, np.nan]}, index=pd.Index(["a", "b|c"], name="site"))
    assert h.markdown_table(frame).splitlines() == [
        "| site | n | rate |",
        "|---|---|---|",
        "| a | 3 | 1.2 |",
        "| b\\|c | 4 | – |",
    ]


def test_noise_thresholds_come_from_the_profile_of_the_stored_version() -> None:
    profile = load_profile()
    lines = rq.noise_thresholds([profile.version], None)
    assert set(lines) == set(rq.NOISE_INDICES)
    assert (
        lines["emg"] == profile.thresholds.emg_mv and lines["kurtosis"] == profile.thresholds.low_sqi_kurtosis
    )
    assert rq.noise_thresholds([f"{profile.version}-old"], None) == {}
    assert rq.noise_thresholds([profile.version, "other"], None) == {}


def test_methods_table_is_the_profile_held_out_benchmark() -> None:
    """The methods section shows, per injected artifact kind, how often its leads carried each flag
    (own flag first) and how often clean real leads carried one, from the profile's benchmark."""
    bench = load_profile().benchmark
    table = rq.methods_table(bench)
    assert list(table.columns) == ["leads", "own flag %", *QC_FLAGS, "none"]
    wander = table.loc["wander (baseline)"]
    assert wander["own flag %"] == pytest.approx(100 * bench["kinds"]["wander"]["recall"])
    assert wander["baseline"] == pytest.approx(wander["own flag %"])
    assert wander["saturation"] < 1.0  # the failure of issue 21: wander called saturation
    clean = table.loc["clean leads (none)"]
    assert clean[list(QC_FLAGS)].sum() >= 100 * bench["clean_leads"]["flagged"] - 1e-9
    assert clean["none"] == pytest.approx(100 * (1 - bench["clean_leads"]["flagged"]))
    assert rq.methods_table({}).empty
    section, digest = rq._methods_section(bench)
    assert section.key == "methods" and "methods-table" in section.body and "held-out" in digest[1]
