"""The screening worklist of a scored archive: OUT/worklist.csv and OUT/worklist.html.

One line per flagged source record (its most probable window), ranked by probability, with what
the care team needs to pull the ECG and judge it: site, recording date when the header states
one, source path, quality verdict and flagged leads, and the territory explanation. Only flagged
rows are read from OUT/scores, so the worklist costs little whatever the archive size.

Cells of the CSV come from file names and headers, which anyone who can write to the archive
chooses: a text cell that a spreadsheet would run as a formula (starting with = + - @, a tab or a
carriage return, OWASP's CSV-injection list) is written with a leading single quote, which the
spreadsheet shows as text.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from tasks import store as st

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "rank",
    "probability",
    "site",
    "recorded_date",
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


def worklist(out: Path) -> pd.DataFrame:
    """Flagged records of OUT/scores, one per source record, most probable first."""
    table = st.read_table(out, "scores", filter=ds.field("flagged"))
    df = table.to_pandas()
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df.sort_values(["probability", "site", "source_path", "window"], ascending=[False, True, True, True])
    df = df.drop_duplicates(["site", "source_path"]).reset_index(drop=True)
    df["rank"] = range(1, len(df) + 1)
    for col in ("flagged_leads", "top_leads"):
        df[col] = df[col].map(lambda v: "; ".join(v))
    return df[COLUMNS]


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that start like a formula begin with a single quote instead."""
    safe = df.copy()
    for col in safe.select_dtypes(include=["object", "string"]).columns:
        text = safe[col].map(lambda v: isinstance(v, str))
        formula = text & safe[col].where(text, "").str.startswith(FORMULA_STARTS)
        safe.loc[formula, col] = "'" + safe.loc[formula, col]
    return safe


def write_worklist(out: Path) -> tuple[Path, Path, int]:
    """Write worklist.csv and worklist.html into OUT (atomically); returns their paths and length."""
    df = worklist(out)
    csv_path, html_path = out / "worklist.csv", out / "worklist.html"
    tmp = csv_path.with_suffix(".csv.tmp")
    # RFC 4180 line ends, so that a cell holding a bare CR is quoted too, not a line break
    spreadsheet_safe(df).to_csv(tmp, index=False, float_format="%.4f", lineterminator="\r\n")
    tmp.replace(csv_path)
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render_html(df, out))
    tmp.replace(html_path)
    return csv_path, html_path, len(df)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.p { text-align: right; font-variant-numeric: tabular-nums; }
tr.limited td { background: #fff8e0; }
.note { color: #555; max-width: 60em; }
"""


def render_html(df: pd.DataFrame, out: Path) -> str:
    """A self-contained HTML page (no external assets) of the worklist."""
    model = html.escape(str(df["model_id"].iloc[0])) if len(df) else "n/a"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS if c != "model_id")
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for col in COLUMNS:
            if col == "model_id":
                continue
            value = getattr(row, col)
            if col == "probability":
                cells.append(f'<td class="p">{value:.3f}</td>')
            else:
                cells.append(f"<td>{html.escape('' if pd.isna(value) else str(value))}</td>")
        css = ' class="limited"' if row.verdict == "limited" else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>MSAIC screening worklist</title><style>{_STYLE}</style></head>
<body>
<h1>MSAIC screening worklist</h1>
<p class="note">{len(df)} flagged records from <code>{html.escape(str(out))}</code>,
model <code>{model}</code>, generated {now}. Ranked by the model's probability of myocardial
infarction or scar. A flag is a prompt for a clinician to review the ECG, not a diagnosis. Rows
shaded yellow passed the quality gate with flagged leads (<em>limited</em>); the territory is the
lead group whose masking weakened the call most.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
