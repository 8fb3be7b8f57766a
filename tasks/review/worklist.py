"""The screening worklist of a scored archive: OUT/worklist.csv and OUT/worklist.html.

One line per flagged source record (its highest-ranked window), ranked by the calibrated risk (the
probability while the scores have none), ties broken by the model's log-odds, with what the care
team needs to pull the ECG and judge it: site, acquisition time when the source states one,
source path, quality verdict and flagged leads, and the territory explanation. Only flagged rows
are read from OUT/scores, so the worklist costs little whatever the archive size.

The page is self-contained (inline CSS and JS, no asset from anywhere) and stays fast at 100,000
rows: the rows travel as compact columnar JSON (repeated text as dictionary codes) and only one
page of rows is in the DOM at a time; filters, sorting, paging, CSV export of the filtered rows
and the keyboard run in the browser. Opened as a file it shows the ECGs already rendered into
OUT/ecg/; served by `msaic review` it renders them on request and records adjudications.

Cells of the CSV (and of the page's CSV export) come from file names and headers, which anyone who
can write to the archive chooses: a text cell that a spreadsheet would run as a formula (starting
with = + - @, a tab or a carriage return, OWASP's CSV-injection list) is written with a leading
single quote, which the spreadsheet shows as text.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from data_contracts.schemas import ADJUDICATION_DECISIONS
from tasks import store as st
from tasks.review.adjudication import latest_decisions, territories

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "rank",
    "risk",
    "risk_band",
    "probability",
    "logit",
    "site",
    "device",
    "recorded_at",
    "source_path",
    "window",
    "verdict",
    "flagged_leads",
    "territory",
    "top_leads",
    "explanation",
    "record_id",
    "model_id",
]
LIST_COLUMNS = ("flagged_leads", "top_leads")
# Page data: text kept as is, text coded through a dictionary (few distinct values), numbers
PAGE_TEXT = ("record_id", "source_path", "recorded_at")
PAGE_CODED = (
    "site",
    "device",
    "verdict",
    "territory",
    "risk_band",
    "top_leads",
    "flagged_leads",
    "explanation",
)
PAGE_NUMBERS = {"risk": 4, "probability": 4, "logit": 3, "window": 0}  # column → decimals


def worklist(out: Path, store: Path | None = None) -> pd.DataFrame:
    """Flagged records of OUT/scores, one per source record, highest risk first (every scores
    column, `rank`, and `store_record_id` from STORE/records when a store is given)."""
    df = st.read_table(out, "scores", filter=ds.field("flagged")).to_pandas()
    if "device" not in df.columns:  # scored before score/4: the device only from a store
        df["device"] = None
    df["store_record_id"] = None
    if df.empty:
        df["rank"] = []
        return df
    df["_score"] = df["risk"].fillna(df["probability"])
    df = df.sort_values(
        ["_score", "logit", "site", "source_path", "window"],
        ascending=[False, False, True, True, True],
        na_position="last",
    )
    df = df.drop_duplicates(["site", "source_path"]).drop(columns="_score").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    return with_store_records(df, store) if store is not None else df


def with_store_records(df: pd.DataFrame, store: Path) -> pd.DataFrame:
    """`store_record_id` of each row from STORE/records (matched on site, source path and window;
    null where the store does not hold the record), and the store's `device` where the scores
    have none (an OUT scored before score/4)."""
    cols = ["site", "source_path", "window", "record_id", "device"]
    records = st.read_table(store, "records", columns=cols).to_pandas()
    records = records.rename(columns={"record_id": "store_record_id", "device": "store_device"})
    merged = df.drop(columns="store_record_id").merge(
        records.drop_duplicates(cols[:3]), how="left", on=cols[:3]
    )
    merged["device"] = merged["device"].where(merged["device"].notna(), merged.pop("store_device"))
    for col in ("device", "store_record_id"):
        merged[col] = merged[col].astype(object).where(merged[col].notna(), None)
    return merged


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that start like a formula begin with a single quote instead."""
    safe = df.copy()
    for col in safe.select_dtypes(include=["object", "string"]).columns:
        text = safe[col].map(lambda v: isinstance(v, str))
        formula = text & safe[col].where(text, "").str.startswith(FORMULA_STARTS)
        safe.loc[formula, col] = "'" + safe.loc[formula, col]
    return safe


def _joined(values: pd.Series) -> pd.Series:
    """A list column as text, "a; b" ("" for an empty or null list)."""
    return values.map(lambda v: "; ".join(v) if v is not None and len(v) else "")


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The worklist's CSV columns, lists written as "a; b"."""
    out = df.reindex(columns=COLUMNS)
    for col in LIST_COLUMNS:
        out[col] = _joined(out[col])
    return out


def write_worklist(out: Path) -> tuple[Path, Path, int]:
    """Write worklist.csv and worklist.html into OUT (atomically); returns their paths and length.
    The page carries the decisions already in OUT/adjudications."""
    df = worklist(out)
    csv_path, html_path = out / "worklist.csv", out / "worklist.html"
    # RFC 4180 line ends, so that a cell holding a bare CR is quoted too, not a line break
    text = spreadsheet_safe(csv_frame(df)).to_csv(index=False, float_format="%.4f", lineterminator="\r\n")
    st.write_atomic(csv_path, text)
    st.write_atomic(html_path, render_page(page_data(df, out, decisions_by_row(df, latest_decisions(out)))))
    return csv_path, html_path, len(df)


def decisions_by_row(df: pd.DataFrame, latest: pd.DataFrame) -> dict[str, list[str | None]]:
    """Worklist record_id → [decision, territory] of the latest adjudication of that record (an
    adjudication names the store's record id where the store holds the record)."""
    if latest.empty or df.empty:
        return {}
    target = df["store_record_id"].where(df["store_record_id"].notna(), df["record_id"])
    by_target = dict(zip(target, df["record_id"], strict=True))
    return {
        by_target[rid]: [decision, territory]
        for rid, decision, territory in latest[["record_id", "decision", "territory"]].itertuples(index=False)
        if rid in by_target
    }


def _coded(values: pd.Series) -> tuple[list[int], list[str]]:
    """Dictionary codes (-1 for null or empty) and the dictionary of a text or list column."""
    text = _joined(values) if values.name in LIST_COLUMNS else values
    text = text.where(text.notna() & (text != ""), None)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    return codes.tolist(), [str(u) for u in uniques]


def _numbers(values: pd.Series, decimals: int) -> list[float | int | None]:
    """Rounded numbers, null where not finite."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(arr)
    rounded = np.round(np.where(finite, arr, 0.0), decimals)
    items = rounded.astype(np.int64).tolist() if decimals == 0 else rounded.tolist()
    return [v if ok else None for v, ok in zip(items, finite.tolist(), strict=True)]


def page_data(
    df: pd.DataFrame, out: Path, decisions: dict[str, list[str | None]], serving: bool = False
) -> dict[str, Any]:
    """The page's rows as columnar JSON-ready data, in rank order, with what the page needs to
    filter, export and adjudicate."""
    columns: dict[str, Any] = {c: df[c].where(df[c].notna(), None).tolist() for c in PAGE_TEXT}
    dicts: dict[str, list[str]] = {}
    for col in PAGE_CODED:
        columns[col], dicts[col] = _coded(df[col])
    for col, decimals in PAGE_NUMBERS.items():
        columns[col] = _numbers(df[col], decimals)
    has_risk = bool(df["risk"].notna().any()) if len(df) else False
    return {
        "n": len(df),
        "source": str(out),
        "model_id": str(df["model_id"].iloc[0]) if len(df) else None,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "score": "risk" if has_risk else "probability",
        "serving": serving,
        "formula_starts": list(FORMULA_STARTS),
        "decision_names": list(ADJUDICATION_DECISIONS),
        "territories": list(territories()),
        "columns": columns,
        "dicts": dicts,
        "decisions": decisions,
    }


def json_for_script(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` can close it or open a comment."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict[str, Any]) -> str:
    """The self-contained worklist page (inline CSS and JS) with its data embedded."""
    title = f"MSAIC screening worklist · {data['n']:,} flagged records"
    return (
        _PAGE.replace("@TITLE@", html.escape(title))
        .replace("@STYLE@", _STYLE)
        .replace("@SCRIPT@", _SCRIPT)
        .replace("@DATA@", json_for_script(data))
    )


_STYLE = """
*{box-sizing:border-box}
body{font:13px system-ui,sans-serif;margin:0;color:#222;display:flex;flex-direction:column;height:100vh}
header{padding:8px 14px;border-bottom:1px solid #ddd}
h1{font-size:17px;margin:0 0 4px}
.note{color:#555;margin:0}
#filters{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:end;padding:8px 14px;background:#f7f7f7;
border-bottom:1px solid #ddd}
#filters label{display:flex;flex-direction:column;font-size:11px;color:#555;gap:2px}
#filters select,#filters input{font:12px system-ui,sans-serif;padding:2px}
#count{font-weight:600;margin-left:auto}
main{display:flex;flex:1;min-height:0}
#list{flex:1;display:flex;flex-direction:column;min-width:0}
#tablewrap{flex:1;overflow:auto}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.path{max-width:26em;overflow:hidden;text-overflow:ellipsis}
tr.limited td{background:#fff8e0}
tr.sel td{background:#d8e8ff!important}
tr{cursor:pointer}
.band-high{color:#b00;font-weight:600}.band-intermediate{color:#a60}
.dec-mi{color:#b00;font-weight:600}.dec-not_mi{color:#080}.dec-unreadable{color:#777}
#pager{display:flex;gap:8px;align-items:center;padding:6px 14px;border-top:1px solid #ddd}
#viewer{flex:1.5;border-left:2px solid #ccc;display:flex;flex-direction:column;min-width:0}
#viewer[hidden]{display:none}
#vbar{display:flex;flex-wrap:wrap;gap:6px;align-items:center;padding:6px 10px;background:#f7f7f7;
border-bottom:1px solid #ddd}
#vtitle{font-weight:600;flex-basis:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#vstatus,#vsaved{color:#555}
#vstatus.err{color:#b00}
#ecgwrap{flex:1;overflow:auto;background:#fff}
#ecg{width:100%;min-width:900px;display:block}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 3px;background:#fafafa;font-size:11px}
button{font:12px system-ui,sans-serif}
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<meta name="viewport" content="width=device-width"><link rel="icon" href="data:,">
<style>@STYLE@</style></head>
<body>
<header><h1>@TITLE@</h1>
<p class="note" id="about"></p>
<p class="note">Keys: <kbd>j</kbd>/<kbd>k</kbd> or arrows move, <kbd>Enter</kbd> opens the ECG,
<kbd>m</kbd> MI, <kbd>n</kbd> not MI, <kbd>u</kbd> unreadable, <kbd>t</kbd> territory,
<kbd>[</kbd>/<kbd>]</kbd> page, <kbd>/</kbd> search, <kbd>Esc</kbd> close. A flag is a prompt for a
clinician to review the ECG, not a diagnosis.</p></header>
<div id="filters">
<label>site<select id="f-site"></select></label>
<label>device<select id="f-device"></select></label>
<label>recorded from<input id="f-from" type="date"></label>
<label>recorded to<input id="f-to" type="date"></label>
<label>territory<select id="f-territory"></select></label>
<label>quality<select id="f-verdict"></select></label>
<label>risk band<select id="f-risk_band"></select></label>
<label>decision<select id="f-decision"></select></label>
<label>path contains<input id="f-path" type="search" size="16"></label>
<button id="reset" type="button">Reset</button>
<button id="export" type="button">Export CSV</button>
<span id="count"></span>
</div>
<main>
<section id="list"><div id="tablewrap"><table><thead><tr id="head"></tr></thead>
<tbody id="rows"></tbody></table></div>
<div id="pager"><button id="prev" type="button">‹ prev</button><span id="pageinfo"></span>
<button id="next" type="button">next ›</button></div></section>
<aside id="viewer" hidden><div id="vbar"><span id="vtitle"></span>
<button id="d-mi" type="button">MI (m)</button>
<select id="d-territory" title="territory of a confirmed MI (t)"></select>
<button id="d-not_mi" type="button">not MI (n)</button>
<button id="d-unreadable" type="button">unreadable (u)</button>
<span id="vstatus"></span><span id="vsaved"></span>
<button id="close" type="button" style="margin-left:auto">close (Esc)</button></div>
<div id="ecgwrap"><img id="ecg" alt="ECG"></div></aside>
</main>
<script id="data" type="application/json">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
(function () {
const D = JSON.parse(document.getElementById("data").textContent);
const C = D.columns, N = D.n, PAGE = 100;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
const txt = (col, i) => { const c = C[col][i]; return c < 0 ? "" : D.dicts[col][c]; };
const num = (v) => (v === null ? NaN : v);
const score = C[D.score].map(num);
const decided = new Array(N).fill(null);  // [decision, territory] per row
const rowOf = new Map();
for (let i = 0; i < N; i++) rowOf.set(C.record_id[i], i);
function applyDecisions(map) {
  for (const [rid, d] of Object.entries(map)) {
    const i = rowOf.get(rid);
    if (i !== undefined) decided[i] = d;
  }
}
applyDecisions(D.decisions);
const COLS = [
  ["rank", "#", (i) => i + 1, "num"],
  [D.score, D.score === "risk" ? "risk" : "probability", (i) => fmt(score[i], 3), "num"],
  ["risk_band", "band", (i) => txt("risk_band", i), "", (i) => "band-" + txt("risk_band", i)],
  ["decision", "decision", (i) => decisionText(i), "", (i) => decided[i] ? "dec-" + decided[i][0] : ""],
  ["site", "site", (i) => txt("site", i)],
  ["device", "device", (i) => txt("device", i)],
  ["recorded_at", "recorded", (i) => C.recorded_at[i] || ""],
  ["territory", "territory", (i) => txt("territory", i)],
  ["top_leads", "leads", (i) => txt("top_leads", i)],
  ["verdict", "quality", (i) => txt("verdict", i)],
  ["flagged_leads", "flagged leads", (i) => txt("flagged_leads", i)],
  ["source_path", "source path", (i) => C.source_path[i] + " #" + C.window[i], "path"],
];
function fmt(v, d) { return Number.isNaN(v) ? "" : v.toFixed(d); }
function decisionText(i) {
  const d = decided[i]; if (!d) return "";
  return d[0].replace("_", " ") + (d[1] ? " (" + d[1] + ")" : "");
}
// ---- filters --------------------------------------------------------------------------------
const CODED = ["site", "device", "territory", "verdict", "risk_band"];
function fillSelect(id, values, labels) {
  const el = $(id);
  el.innerHTML = '<option value="">all</option>' + values.map((v, k) =>
    '<option value="' + esc(v) + '">' + esc(labels ? labels[k] : v) + "</option>").join("");
}
for (const col of CODED) {
  const present = new Set(C[col]);
  const codes = [...present].filter((c) => c >= 0).sort((a, b) =>
    D.dicts[col][a] < D.dicts[col][b] ? -1 : 1);
  fillSelect("f-" + col, [...codes.map(String), ...(present.has(-1) ? ["-1"] : [])],
    [...codes.map((c) => D.dicts[col][c]), ...(present.has(-1) ? ["(none)"] : [])]);
}
fillSelect("f-decision", ["none", ...D.decision_names], ["undecided", ...D.decision_names.map(
  (d) => d.replace("_", " "))]);
$("d-territory").innerHTML = '<option value="">territory?</option>' + D.territories.map((t) =>
  '<option value="' + esc(t) + '">' + esc(t) + "</option>").join("");
let view = [], sortCol = "rank", sortDir = "asc", page = 0, sel = 0, openRow = -1;
function filtered() {
  const f = {};
  for (const col of CODED) { const v = $("f-" + col).value; if (v !== "") f[col] = Number(v); }
  const from = $("f-from").value, to = $("f-to").value, dec = $("f-decision").value;
  const needle = $("f-path").value.trim().toLowerCase();
  const out = [];
  for (let i = 0; i < N; i++) {
    let ok = true;
    for (const col in f) if (C[col][i] !== f[col]) { ok = false; break; }
    if (!ok) continue;
    if (from || to) {
      const day = (C.recorded_at[i] || "").slice(0, 10);
      if (!day || (from && day < from) || (to && day > to)) continue;
    }
    if (dec && (dec === "none" ? decided[i] !== null : !decided[i] || decided[i][0] !== dec)) continue;
    if (needle && C.source_path[i].toLowerCase().indexOf(needle) < 0) continue;
    out.push(i);
  }
  return out;
}
function sortKey(col) {
  if (col === "rank") return null;
  if (col === D.score) return (i) => -score[i];
  if (col === "decision") return (i) => decisionText(i);
  if (col === "recorded_at" || col === "source_path") return (i) => C[col][i] || "";
  return (i) => txt(col, i);
}
function sortView() {
  const key = sortKey(sortCol);
  if (key) {
    const k = new Map(view.map((i) => [i, key(i)]));
    view.sort((a, b) => { const x = k.get(a), y = k.get(b);
      return x < y ? -1 : x > y ? 1 : a - b; });  // ties stay in rank order (risk, then log-odds)
  } else view.sort((a, b) => a - b);
  if (sortDir === "desc") view.reverse();
}
function refresh(keepSelection) {
  const t0 = performance.now();
  const current = view[page * PAGE + sel];
  view = filtered();
  sortView();
  page = 0; sel = 0;
  if (keepSelection && current !== undefined) {
    const at = view.indexOf(current);
    if (at >= 0) { page = Math.floor(at / PAGE); sel = at % PAGE; }
  }
  render();
  window.msaic.lastRefreshMs = performance.now() - t0;
}
// ---- rendering ------------------------------------------------------------------------------
$("head").innerHTML = COLS.map(([col, label]) =>
  '<th data-col="' + col + '">' + esc(label) + "</th>").join("");
function render() {
  const pages = Math.max(1, Math.ceil(view.length / PAGE));
  page = Math.min(page, pages - 1);
  const start = page * PAGE, rows = view.slice(start, start + PAGE);
  sel = Math.min(sel, Math.max(rows.length - 1, 0));
  $("rows").innerHTML = rows.map((i, k) => {
    const cls = (txt("verdict", i) === "limited" ? "limited" : "") + (k === sel ? " sel" : "");
    const cells = COLS.map(([, , get, kind, css]) =>
      '<td class="' + (kind || "") + " " + (css ? css(i) : "") + '">' + esc(get(i)) + "</td>");
    return '<tr data-row="' + i + '" class="' + cls + '">' + cells.join("") + "</tr>";
  }).join("");
  $("count").textContent = view.length.toLocaleString("en") + " of " + N.toLocaleString("en") + " records";
  $("pageinfo").textContent = "page " + (page + 1) + " of " + pages;
  for (const th of $("head").children) th.dataset.dir = th.dataset.col === sortCol ? sortDir : "";
  const row = $("rows").children[sel];
  if (row) row.scrollIntoView({block: "nearest"});
}
function move(step) {
  const at = page * PAGE + sel + step;
  if (at < 0 || at >= view.length) return;
  page = Math.floor(at / PAGE); sel = at % PAGE;
  render();
  if (openRow >= 0) open();
}
function turn(step) {
  const pages = Math.ceil(view.length / PAGE);
  const next = page + step;
  if (next < 0 || next >= pages) return;
  page = next; sel = 0; render();
}
// ---- ECG viewer and adjudication -------------------------------------------------------------
function selected() { return view[page * PAGE + sel]; }
function status(text, error) { $("vstatus").textContent = text; $("vstatus").className = error ? "err" : ""; }
function open() {
  const i = selected(); if (i === undefined) return;
  openRow = i;
  $("viewer").hidden = false;
  $("vtitle").textContent = "#" + (view.indexOf(i) + 1) + " · " + C.source_path[i] + " · window " +
    C.window[i] + " · " + txt("site", i);
  const t = txt("territory", i);
  $("d-territory").value = decided[i] && decided[i][1] ? decided[i][1] : (D.territories.includes(t) ? t : "");
  status(D.serving ? "loading ECG…" : "");
  const img = $("ecg");
  img.onload = () => status(decided[i] ? "decided: " + decisionText(i) : "");
  img.onerror = () => status(D.serving ? "the ECG could not be rendered (see the server's output)"
    : "no ECG rendered yet: run `msaic review --out OUT` to see it", true);
  img.src = "ecg/" + encodeURIComponent(C.record_id[i]) + ".svg";
  for (const b of ["d-mi", "d-not_mi", "d-unreadable", "d-territory"]) $(b).disabled = !D.serving;
}
function close() { $("viewer").hidden = true; openRow = -1; $("ecg").removeAttribute("src"); }
async function decide(decision) {
  const i = openRow >= 0 ? openRow : selected();
  if (i === undefined) return;
  if (!D.serving) { status("decisions are recorded through `msaic review --out OUT`", true); return; }
  const territory = decision === "mi" ? $("d-territory").value || null : null;
  status("saving…");
  try {
    const r = await fetch("api/adjudications", {method: "POST", headers: {"Content-Type": "application/json",
      "X-MSAIC-Review": "1"}, body: JSON.stringify({record_id: C.record_id[i], decision, territory})});
    const body = await r.json();
    if (!r.ok) { status(body.error || "not saved", true); return; }
    decided[i] = [decision, territory];
    window.msaic.saved += 1;
    $("vsaved").textContent = "saved: " + C.source_path[i] + " " + decisionText(i) + " at " + body.decided_at;
    render();
    if (openRow >= 0 && i === selected()) move(1);  // on to the next record
  } catch (e) { status("not saved: the review server is not reachable", true); }
}
async function loadDecisions() {
  if (!D.serving) return;
  try { const r = await fetch("api/decisions"); applyDecisions(await r.json()); render(); } catch (e) {}
}
// ---- CSV export ------------------------------------------------------------------------------
const CSV_COLS = [["rank", (i) => i + 1], ["risk", (i) => fmt(num(C.risk[i]), 4)],
  ["risk_band", (i) => txt("risk_band", i)], ["probability", (i) => fmt(num(C.probability[i]), 4)],
  ["logit", (i) => fmt(num(C.logit[i]), 3)], ["site", (i) => txt("site", i)],
  ["device", (i) => txt("device", i)],
  ["recorded_at", (i) => C.recorded_at[i] || ""], ["source_path", (i) => C.source_path[i]],
  ["window", (i) => C.window[i]], ["verdict", (i) => txt("verdict", i)],
  ["flagged_leads", (i) => txt("flagged_leads", i)], ["territory", (i) => txt("territory", i)],
  ["top_leads", (i) => txt("top_leads", i)], ["explanation", (i) => txt("explanation", i)],
  ["decision", (i) => decided[i] ? decided[i][0] : ""],
  ["decided_territory", (i) => decided[i] && decided[i][1] ? decided[i][1] : ""],
  ["record_id", (i) => C.record_id[i]], ["model_id", () => D.model_id || ""]];
function cell(v) {
  let s = String(v);
  if (typeof v === "string" && D.formula_starts.some((p) => s.startsWith(p))) s = "'" + s;
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
function csv() {
  const lines = [CSV_COLS.map(([h]) => h).join(",")];
  for (const i of view) lines.push(CSV_COLS.map(([, get]) => cell(get(i))).join(","));
  return lines.join("\r\n") + "\r\n";
}
function exportCsv() {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv()], {type: "text/csv"}));
  a.download = "worklist-filtered.csv";
  document.body.appendChild(a); a.click(); a.remove();
}
// ---- events ----------------------------------------------------------------------------------
for (const id of ["f-site", "f-device", "f-from", "f-to", "f-territory", "f-verdict", "f-risk_band",
  "f-decision"]) $(id).addEventListener("change", () => refresh(false));
$("f-path").addEventListener("input", () => refresh(false));
$("reset").onclick = () => { for (const el of $("filters").querySelectorAll("select,input")) el.value = "";
  refresh(false); };
$("export").onclick = exportCsv;
$("prev").onclick = () => turn(-1);
$("next").onclick = () => turn(1);
$("close").onclick = close;
for (const d of D.decision_names) $("d-" + d).onclick = () => decide(d);
$("head").addEventListener("click", (e) => {
  const col = e.target.dataset && e.target.dataset.col; if (!col) return;
  if (col !== sortCol) { sortCol = col; sortDir = "asc"; }
  else if (sortDir === "asc") sortDir = "desc";
  else { sortCol = "rank"; sortDir = "asc"; }
  refresh(true);
});
$("rows").addEventListener("click", (e) => {
  const tr = e.target.closest("tr"); if (!tr) return;
  sel = [...$("rows").children].indexOf(tr); render(); open();
});
document.addEventListener("keydown", (e) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName);
  if (e.key === "Escape") { if (typing) e.target.blur(); else close(); return; }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const act = {j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    Enter: open, o: open, "]": () => turn(1), PageDown: () => turn(1), "[": () => turn(-1),
    PageUp: () => turn(-1), m: () => decide("mi"), n: () => decide("not_mi"), u: () => decide("unreadable"),
    t: () => { if (openRow >= 0) $("d-territory").focus(); }, "/": () => $("f-path").focus()}[e.key];
  if (act) { e.preventDefault(); act(); }
});
$("about").textContent = N.toLocaleString("en") + " flagged records from " + D.source + ", model " +
  (D.model_id || "n/a") + ", generated " + D.generated + ". Ranked by the " + (D.score === "risk" ?
  "calibrated risk" : "model's probability (no calibrated risk in these scores)") +
  ", ties by the model's log-odds. Yellow rows passed the quality gate with flagged leads (limited).";
window.msaic = {csv, refresh, saved: 0, lastRefreshMs: null, rows: () => view.length};
refresh(false);
window.msaic.firstRowsMs = performance.now();
loadDecisions();
})();
"""
