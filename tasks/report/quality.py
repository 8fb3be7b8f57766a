"""The data-quality report for informatics teams: what share of each site's and device's ECGs is
usable, which leads fail and why, the worst records as strips, the quarantine and the data
contracts' validation results.

`load_inputs` reads the store (records, quality, quarantine; waveforms only for the few worst
records); the table builders are pure functions of those frames; `build_report` renders one
self-contained HTML page and a markdown digest of the headline tables. No patient identifier
is read: `patient_key` only passes through the Great Expectations check of records/.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import (
    FLAG_COLUMNS,
    FS,
    LEAD_VALUES,
    N_LEADS,
    QC_FLAGS,
    QC_VERDICTS,
    QUALITY,
)
from tasks import store as st
from tasks.quality.gate import load_profile
from tasks.report import contracts as contracts
from tasks.report import figures as fig
from tasks.report import html as h
from tasks.settings import Settings

UNCHECKED = "unchecked"
NOISE_INDICES: tuple[str, ...] = tuple(f.name for f in QUALITY if f.type == LEAD_VALUES)
_SEVERITY = {verdict: rank for rank, verdict in enumerate(QC_VERDICTS)}  # in increasing severity
_RECORD_COLUMNS = ["record_id", "site", "device", "source_path", "ingested_at", "recorded_at"]
_NO_DEVICE = "(not stated)"
# the profile threshold each stored noise index is compared with (tasks.quality.flag_masks)
_INDEX_THRESHOLDS = {
    "powerline": "powerline_mv",
    "baseline": "baseline_mv",
    "emg": "emg_mv",
    "template_corr": "low_sqi_corr",
    "kurtosis": "low_sqi_kurtosis",
}
_WORST_COLUMNS = [
    "record_id",
    "site",
    "device",
    "source_path",
    "verdict",
    "reasons",
    "flagged_leads",
    "lead_flags",
]


@dataclass(frozen=True)
class QualityInputs:
    """What the report is made from. `windows`: one row per stored record (window) with its
    quality columns, verdict `unchecked` where quality/ has no row; `noise`: each noise index as
    a (quality rows × 12 leads) array, rows in the order of `noise_sites`."""

    windows: pd.DataFrame
    noise: dict[str, np.ndarray]
    noise_sites: np.ndarray
    quarantine: pd.DataFrame
    qc_versions: list[str]


@dataclass(frozen=True)
class QualityReport:
    html: str
    markdown: str
    summary: str


def load_inputs(store: Path) -> QualityInputs:
    """Read what the report needs; raises FileNotFoundError when the store has no records or
    no quality/ table yet (the report needs `msaic ingest` and `msaic qc` first)."""
    if st.dataset(store, "records") is None:
        raise FileNotFoundError(f"no records in {store}: run `msaic ingest ARCHIVE --store {store}` first")
    if st.dataset(store, "quality") is None:
        raise FileNotFoundError(f"no quality/ table in {store}: run `msaic qc --store {store}` first")
    records = st.read_table(store, "records", columns=_RECORD_COLUMNS).to_pandas()
    quality = st.read_table(store, "quality")
    quality = quality.filter(pc.is_in(quality["record_id"], pa.array(records["record_id"])))  # no stale rows
    noise = {name: _lead_matrix(quality[name]) for name in NOISE_INDICES}
    scalar = quality.select(["record_id", "verdict", "reasons", *FLAG_COLUMNS, "qc_version"]).to_pandas()
    scalar["reasons"] = scalar["reasons"].map(lambda r: "; ".join(r))
    windows = records.merge(scalar, on="record_id", how="left")
    windows["verdict"] = windows["verdict"].fillna(UNCHECKED)
    windows["device"] = windows["device"].fillna(_NO_DEVICE)
    windows["ingest_date"] = windows["ingested_at"].dt.strftime("%Y-%m-%d")
    windows["recorded_month"] = acquisition_month(windows["recorded_at"])
    quarantine = st.read_table(store, "quarantine").to_pandas()
    return QualityInputs(
        windows=windows,
        noise=noise,
        noise_sites=quality["site"].to_numpy(zero_copy_only=False),
        quarantine=quarantine.drop(columns=["content_sha256"]).sort_values("at", ascending=False),
        qc_versions=sorted(scalar["qc_version"].unique()),
    )


def acquisition_month(recorded_at: pd.Series) -> pd.Series:
    """ "YYYY-MM" of each ISO acquisition time as the source states it; null where it states none,
    or one that is no calendar month a date axis can show (a source's "2019-25-12", a year 1600)."""
    month = recorded_at.str.slice(0, 7)
    return month.where(pd.to_datetime(month, format="%Y-%m", errors="coerce").notna())


def _lead_matrix(column: pa.ChunkedArray) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float64).reshape(-1, N_LEADS)


def checked(windows: pd.DataFrame) -> pd.DataFrame:
    return windows[windows["verdict"] != UNCHECKED]


def verdict_counts(windows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Records per verdict for each value of `by` (verdicts in a fixed order, any unexpected
    verdict kept after them, `unchecked` last when some records have no quality row)."""
    counts = pd.crosstab(windows[by], windows["verdict"])
    extra = sorted(set(counts.columns) - {*QC_VERDICTS, UNCHECKED})
    order = [*QC_VERDICTS, *extra, *([UNCHECKED] if UNCHECKED in counts.columns else [])]
    counts = counts.reindex(columns=order, fill_value=0)
    counts.columns.name = None
    return counts


def verdict_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Counts with totals and the rate of each verdict among the checked records (%)."""
    out = counts.copy()
    judged = counts.drop(columns=[UNCHECKED], errors="ignore")
    n_checked = judged.sum(axis=1)
    out.insert(0, "records", counts.sum(axis=1))
    for verdict in judged.columns:
        out[f"{verdict} %"] = 100 * judged[verdict] / n_checked.where(n_checked > 0)
    return out


def flagged(windows: pd.DataFrame) -> pd.DataFrame:
    """Boolean (checked records × leads): the lead carries at least one flag."""
    rows = checked(windows)
    return (rows[FLAG_COLUMNS] != "").set_axis(list(CANONICAL_LEADS), axis=1)


def flag_rates_by_site(windows: pd.DataFrame) -> pd.DataFrame:
    """Site × lead: % of checked records with any flag on the lead."""
    return flagged(windows).groupby(checked(windows)["site"]).mean() * 100


def flag_rates_by_lead(windows: pd.DataFrame) -> pd.DataFrame:
    """Lead × flag name: % of checked records whose lead carries that flag (every known flag, in
    the QC's order, then any other flag found); `any` last."""
    rows = checked(windows)
    per_lead = {
        lead: rows[col].str.get_dummies(sep=",").mean() * 100
        for lead, col in zip(CANONICAL_LEADS, FLAG_COLUMNS, strict=True)
    }
    table = pd.DataFrame(per_lead).T.reindex(list(CANONICAL_LEADS)).fillna(0.0)
    table = table.reindex(columns=[*QC_FLAGS, *sorted(set(table.columns) - set(QC_FLAGS))], fill_value=0.0)
    table["any"] = flagged(windows).mean() * 100
    table.index.name = "lead"
    return table


def worst_records(windows: pd.DataFrame, n: int) -> pd.DataFrame:
    """n examples of the most severe records that are not `pass`, ranked by verdict, then by
    flagged leads. The best-ranked record of each distinct set of flags comes first, so that
    the examples show different problems rather than n copies of the commonest one."""
    rows = checked(windows)
    if rows.empty:  # nothing checked yet (a report between ingest and qc)
        return pd.DataFrame(columns=[*_WORST_COLUMNS, *FLAG_COLUMNS])
    rows = rows.assign(
        severity=rows["verdict"].map(_SEVERITY).fillna(1),
        flagged_leads=flagged(windows).sum(axis=1),
        lead_flags=rows[FLAG_COLUMNS].apply(_leads_by_flag, axis=1),
    )
    rows = rows[rows["severity"] > 0]
    rows = rows.sort_values(["severity", "flagged_leads", "record_id"], ascending=[False, False, True])
    kinds = rows["lead_flags"].str.replace(r": [^;]*", "", regex=True)
    first = ~kinds.duplicated()
    chosen = pd.concat([rows[first], rows[~first]]).head(n).index
    return rows[rows.index.isin(chosen)][[*_WORST_COLUMNS, *FLAG_COLUMNS]].reset_index(drop=True)


def _leads_by_flag(lead_flags: pd.Series) -> str:
    """A record's flags, each with the leads that carry it: `flat: V1, V2; emg: III`."""
    leads_of: dict[str, list[str]] = {}
    for lead, value in zip(CANONICAL_LEADS, lead_flags, strict=True):
        for flag in value.split(",") if value else []:
            leads_of.setdefault(flag, []).append(lead)
    order = {flag: i for i, flag in enumerate(QC_FLAGS)}
    return "; ".join(
        f"{flag}: {', '.join(leads_of[flag])}"
        for flag in sorted(leads_of, key=lambda f: (order.get(f, len(order)), f))
    )


def noise_by_site(inputs: QualityInputs) -> dict[str, dict[str, np.ndarray]]:
    """Each noise index's finite values (all leads pooled) per site."""
    sites = sorted(set(inputs.noise_sites))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, values in inputs.noise.items():
        out[name] = {}
        for site in sites:
            v = values[inputs.noise_sites == site].ravel()
            out[name][site] = v[np.isfinite(v)]
    return out


def noise_thresholds(qc_versions: list[str], profile_path: Path | None) -> dict[str, float]:
    """The flag threshold of each noise index from the QC profile, when every stored row was made
    with that profile's version (else none: lines from another version would mislead)."""
    profile = load_profile(profile_path)
    if qc_versions != [profile.version]:
        return {}
    return {index: getattr(profile.thresholds, key) for index, key in _INDEX_THRESHOLDS.items()}


def methods_table(benchmark: dict) -> pd.DataFrame:
    """Artifact kind × flag from the QC profile's held-out benchmark: for the leads each injected
    artifact reached at an unusable strength, the % that carried its own flag (recall), each flag,
    and no flag; last, the % of clean real leads that carried each flag. Empty without a benchmark."""
    kinds = benchmark.get("kinds", {})
    if not kinds:
        return pd.DataFrame()
    rows = {
        f"{kind} ({k['flag']})": {"leads": k["truth_leads"], "own flag %": 100 * k["recall"], **k["received"]}
        for kind, k in kinds.items()
    }
    clean = benchmark["clean_leads"]
    rows["clean leads (none)"] = {"leads": clean["leads"], **clean["by_flag"], "none": 1 - clean["flagged"]}
    table = pd.DataFrame.from_dict(rows, orient="index")
    shares = [*QC_FLAGS, "none"]
    table[shares] = 100 * table.reindex(columns=shares).fillna(0.0)
    table.index.name = "injected artifact (its flag)"
    return table[["leads", "own flag %", *shares]]


def _methods_section(benchmark: dict) -> tuple[h.Section, list[str]]:
    """The methods section (what each flag means and how often it is wrong) and its digest."""
    title = "Methods: what each flag means and how often it is wrong"
    table = methods_table(benchmark)
    if table.empty:
        text = "The QC profile of this report carries no held-out benchmark."
        return h.Section("methods", title, h.paragraph(text)), [f"## {title}", text]
    clean, records = benchmark["clean_leads"], benchmark["clean_records"]
    note = (
        f"Measured by {benchmark['command']} on the held-out part of real records ({benchmark['source']}), "
        "into which artifacts were injected as devices make them. Each row: of the leads an artifact "
        "reached at an unusable strength, the % carrying each flag (a lead can carry several). Clean real "
        f"leads: {100 * clean['flagged']:.2f} % carried a flag; clean records rejected: "
        f"{100 * records['rejected']:.2f} % of {records['records']}."
    )
    html = h.paragraph(note, "note") + h.table(table, "methods-table")
    return h.Section("methods", title, html), [f"## {title}", note, h.markdown_table(table)]


def noise_medians(by_site: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Site × noise index: the median over leads and records."""
    table = pd.DataFrame(
        {
            name: {s: float(np.median(v)) if v.size else np.nan for s, v in sites.items()}
            for name, sites in by_site.items()
        }
    )
    table.index.name = "site"
    return table


def load_signals(store: Path, record_ids: list[str]) -> dict[str, np.ndarray]:
    """The 12 × 5000 signals of a few records. Only the row groups that hold one of them are
    decoded: their record_id column is scanned first, so the cost follows the number of records
    asked for, not the size of the archive."""
    dset = st.dataset(store, "waveforms")
    wanted = ds.field("record_id").isin(record_ids)
    groups = [g for f in (dset.get_fragments() if dset else []) for g in f.split_by_row_group()]
    tables = [
        g.to_table(columns=["record_id", "signal"], filter=wanted)
        for g in groups
        if g.count_rows(filter=wanted)
    ]
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    return dict(zip(table["record_id"].to_pylist(), st.signals_of(table["signal"]), strict=True))


def quarantine_counts(quarantine: pd.DataFrame) -> pd.DataFrame:
    return quarantine.groupby(["site", "stage", "reason"]).size().rename("inputs").to_frame()


def build_report(store: Path, settings: Settings, now: datetime) -> QualityReport:
    """Gather, summarize, draw and render the whole report."""
    inputs = load_inputs(store)
    sections, markdown = _sections(store, inputs, settings)
    title = "MSAIC data-quality report"
    meta = f"generated {now:%Y-%m-%d %H:%M:%S} UTC"
    summary = summary_line(inputs)
    return QualityReport(
        h.page(title, meta, sections), "\n\n".join([f"# {title}", f"{meta}. {summary}.", *markdown]), summary
    )


def summary_line(inputs: QualityInputs) -> str:
    """One line: records by verdict, inputs quarantined."""
    counts = verdict_counts(inputs.windows.assign(all="all"), "all").iloc[0]
    verdicts = ", ".join(f"{n} {v}" for v, n in counts.items())
    return f"{len(inputs.windows)} records: {verdicts}; {len(inputs.quarantine)} inputs quarantined"


def _sections(store: Path, inputs: QualityInputs, settings: Settings) -> tuple[list[h.Section], list[str]]:
    """The report's sections in order, and the blocks of its markdown digest."""
    windows = inputs.windows
    by_site = verdict_table(verdict_counts(windows, "site"))
    per_lead = flag_rates_by_lead(windows)
    noise = noise_by_site(inputs)
    by_date = verdict_counts(windows, "ingest_date")
    total = verdict_table(verdict_counts(windows.assign(scope="all records"), "scope")).rename_axis("")
    validations = contracts.validation_results(store)
    methods, methods_md = _methods_section(load_profile(settings.qc_profile).benchmark)
    sections = [
        h.Section(
            "summary",
            "Summary",
            h.paragraph(summary_line(inputs))
            + h.paragraph(f"QC version(s): {', '.join(inputs.qc_versions)}. Store: {store}.", "note")
            + h.table(total, "verdicts-total"),
        ),
        _verdict_section("verdicts-site", "Verdicts by site", by_site, "site"),
        _verdict_section(
            "verdicts-device",
            "Verdicts by device",
            verdict_table(verdict_counts(windows, "device")),
            "device",
        ),
        _recorded_section(windows),
        h.Section(
            "verdicts-date",
            "Verdicts over ingest date",
            h.image(fig.verdicts_over_time(by_date), "verdict counts per ingest date")
            + h.table(verdict_table(by_date), "verdicts-date-table"),
        ),
        h.Section(
            "flags",
            "Flag rates by site and lead",
            h.paragraph("% of checked records whose lead carries at least one flag.", "note")
            + h.image(fig.flag_heatmap(flag_rates_by_site(windows)), "site by lead heat map of flag rates")
            + h.heading("Flag rates per lead (% of checked records)")
            + h.table(per_lead, "flags-per-lead"),
        ),
        h.Section(
            "noise",
            "Noise indices by site",
            h.paragraph(
                "Each box pools all leads of a site's checked records (whiskers 1.5 IQR); the "
                "indices are defined in the QC profile of the version above, whose flag thresholds "
                "are drawn as dashed red lines (powerline, baseline, emg: flagged at or above; "
                "template_corr, kurtosis: low_sqi below).",
                "note",
            )
            + h.image(
                fig.noise_distributions(noise, noise_thresholds(inputs.qc_versions, settings.qc_profile)),
                "noise index distributions by site",
            )
            + h.heading("Median per site")
            + h.table(noise_medians(noise), "noise-medians", digits=".3g"),
        ),
        _worst_section(
            store, worst_records(windows, settings.report_worst_records), settings.report_worst_records
        ),
        _quarantine_section(inputs.quarantine, settings.report_max_rows),
        methods,
        h.Section(
            "validation",
            "Data contract validation (Great Expectations)",
            h.paragraph("Every stored table with a suite in data_contracts/suites.py, validated now.", "note")
            + h.table(validations, "validation-table"),
        ),
    ]
    quarantined = inputs.quarantine
    markdown = [
        "## Verdicts by site",
        h.markdown_table(by_site),
        "## Flag rates per lead (% of checked records)",
        h.markdown_table(per_lead),
        "## Quarantine",
        h.markdown_table(quarantine_counts(quarantined)) if len(quarantined) else "nothing quarantined",
        "## Data contract validation",
        h.markdown_table(validations),
        *methods_md,
    ]
    return sections, markdown


def _recorded_section(windows: pd.DataFrame) -> h.Section:
    """Verdicts per month of acquisition, as the sources state it (WFDB base date, PTB-XL
    `recording_date`, hospital exports), with the records that state none counted apart."""
    title = "Verdicts over acquisition month"
    dated = windows[windows["recorded_month"].notna()]
    undated = (
        f"{len(windows) - len(dated)} of {len(windows)} records state no acquisition date "
        "(or one that is no calendar month)."
    )
    if dated.empty:
        return h.Section("verdicts-recorded", title, h.paragraph(undated, "note"))
    by_month = verdict_counts(dated, "recorded_month")
    return h.Section(
        "verdicts-recorded",
        title,
        h.paragraph(f"Month of acquisition as the source states it. {undated}", "note")
        + h.image(
            fig.verdicts_over_time(by_month, "acquisition month", monthly=True),
            "verdict counts per acquisition month",
        )
        + h.table(verdict_table(by_month), "verdicts-recorded-table"),
    )


def _verdict_section(key: str, title: str, table: pd.DataFrame, group: str) -> h.Section:
    counts = table.drop(columns=["records", *[c for c in table.columns if c.endswith(" %")]])
    return h.Section(
        key, title, h.image(fig.verdict_shares(counts, group), title) + h.table(table, f"{key}-table")
    )


def _worst_section(store: Path, worst: pd.DataFrame, n: int) -> h.Section:
    title = "Worst records"
    if worst.empty:
        empty = "No record was rejected or limited." if n else "Not drawn (report_worst_records is 0)."
        return h.Section("worst", title, h.paragraph(empty))
    signals = load_signals(store, worst["record_id"].tolist())
    strips = []
    for row in worst.to_dict("records"):
        caption = f"{row['record_id']} · {row['site']} · {row['verdict']}: {row['reasons']}"
        if row["record_id"] not in signals:
            strips.append(h.paragraph(f"{row['record_id']}: no waveform stored", "note"))
            continue
        flags = [row[c] for c in FLAG_COLUMNS]
        strips.append(h.image(fig.ecg_strip(signals[row["record_id"]], flags, caption, FS), caption))
    return h.Section(
        "worst",
        title,
        h.paragraph(
            "Rejected records first, then by the number of flagged leads, taking one record of each "
            "distinct set of flags before any repeat; flagged leads in red.",
            "note",
        )
        + h.table(worst[_WORST_COLUMNS], "worst-table", index=False)
        + "".join(strips),
    )


def _quarantine_section(quarantine: pd.DataFrame, max_rows: int) -> h.Section:
    title = "Quarantine"
    if quarantine.empty:
        return h.Section("quarantine", title, h.paragraph("No input was quarantined."))
    shown = quarantine.head(max_rows).assign(at=lambda q: q["at"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    more = len(quarantine) - len(shown)
    note = f"The {more} oldest entries are not listed here; all are in STORE/quarantine/." if more else ""
    columns = ["at", "site", "stage", "reason", "source_path", "detail"]
    return h.Section(
        "quarantine",
        title,
        h.heading("Inputs per reason")
        + h.table(quarantine_counts(quarantine), "quarantine-counts")
        + h.heading(f"Entries, newest first ({len(quarantine)})")
        + h.table(shown[columns], "quarantine-table", index=False)
        + (h.paragraph(note, "note") if note else ""),
    )


def report_paths(store: Path, now: datetime) -> tuple[Path, Path]:
    """The timestamped report file and its stable `quality.html` alias."""
    folder = st.table_dir(store, "reports")
    return folder / f"quality-{now:%Y%m%dT%H%M%SZ}.html", folder / "quality.html"


def write_report(store: Path, html: str, now: datetime) -> Path:
    """Publish the page as STORE/reports/quality-<timestamp>.html and as quality.html, both
    renamed into place in one commit (a reader never sees half a page)."""
    dated, stable = report_paths(store, now)
    stage = st.staging_dir(store)
    moves = []
    for final in (dated, stable):
        staged = stage / f"{st.new_part_id()}.{final.name}"
        staged.write_text(html, encoding="utf-8")
        moves.append((staged, final))
    st.Commit(moves=moves).publish(store)
    return dated
