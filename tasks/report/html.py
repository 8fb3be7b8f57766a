"""Self-contained HTML (and markdown) for generated reports: inline CSS, figures embedded as
base64 PNG data URIs, every text escaped. Nothing is loaded from the network, so a report
opens the same way on an air-gapped workstation or as an e-mail attachment."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

import pandas as pd

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
nav ol { columns: 2; }
table.data { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
table.data th, table.data td { border: 1px solid #ccc; padding: .25em .6em; text-align: left;
                               vertical-align: top; }
table.data th { background: #f1f1f1; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
p.note { color: #555; font-size: .9em; }
.meta { color: #555; }
"""


@dataclass(frozen=True)
class Section:
    """One titled part of a report; `key` is its anchor (`id`) in the page."""

    key: str
    title: str
    body: str


def paragraph(text: str, css_class: str | None = None) -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<p{cls}>{html.escape(text)}</p>"


def heading(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def image(png: bytes, alt: str) -> str:
    """A PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def table(frame: pd.DataFrame, table_id: str, index: bool = True, digits: str = ".1f") -> str:
    """A DataFrame as an HTML table: the index (when kept) as the first column, numbers right
    aligned and written with `digits`, missing values as an en dash, all text escaped."""
    flat = frame.reset_index() if index else frame
    numeric = [pd.api.types.is_numeric_dtype(flat[c]) for c in flat.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in flat.columns)
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_cell(v, digits)}</td>' if num else f"<td>{_cell(v, digits)}</td>"
            for v, num in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in flat.itertuples(index=False)
    )
    return f'<table id="{table_id}" class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _cell(value: object, digits: str) -> str:
    if pd.isna(value):
        return "–"
    return html.escape(format(value, digits) if isinstance(value, float) else str(value))


def page(title: str, meta: str, sections: list[Section]) -> str:
    """The whole document: title, a contents list, then the sections in order."""
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(meta)}</p><nav><ol>{toc}</ol></nav>{body}</body></html>\n'
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame (with its index as the first column) as a GitHub-flavoured markdown table."""
    flat = frame.reset_index()
    cells = flat.map(_markdown_cell)
    header = "| " + " | ".join(_markdown_cell(c) for c in flat.columns) + " |"
    rule = "|" + "---|" * len(flat.columns)
    rows = ["| " + " | ".join(r) + " |" for r in cells.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _markdown_cell(value: object) -> str:
    if pd.isna(value):
        return "–"
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
