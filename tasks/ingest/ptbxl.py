"""The PTB-XL layout: `ptbxl_database.csv` (+ `scp_statements.csv`) beside `records100/` and
`records500/`. Patient, site, device, acquisition time, labels and folds come from the CSV; for
each ECG the 500 Hz file (`filename_hr`) is read when the archive has it, else the 100 Hz one."""

from __future__ import annotations

import ast
import io
import posixpath
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from tasks.ingest import labels
from tasks.ingest.readers.base import plausible_age

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"


class _Readable(Protocol):
    def names(self) -> list[str]: ...
    def read_member(self, name: str) -> bytes | None: ...


def find_database(names: list[str]) -> str | None:
    """The shallowest `ptbxl_database.csv` in the archive (at most two folders deep)."""
    hits = [n for n in names if posixpath.basename(n) == DATABASE_CSV and n.count("/") <= 2]
    return min(hits, key=lambda n: n.count("/")) if hits else None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text or None


def _age(value: Any) -> float | None:
    """PTB-XL writes 300 for patients older than 89 (de-identification): stored as 90."""
    if value is None or pd.isna(value):
        return None
    age = float(value)
    return 90.0 if age == 300 else plausible_age(age)


def _recorded_at(value: Any) -> str | None:
    """PTB-XL's `recording_date` ("1984-11-09 09:17:34") as ISO 8601 ("1984-11-09T09:17:34"; a
    date alone stays a date), or None when the row states none or no date."""
    text = _text(value)
    if text is None:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp.date().isoformat() if len(text) <= 10 else stamp.replace(microsecond=0).isoformat()


def header_index(archive: _Readable, database: str) -> dict[str, dict[str, Any]]:
    """Header path → metadata for every ECG listed in the CSV whose file the archive holds."""
    root = posixpath.dirname(database)
    names = set(archive.names())
    db = pd.read_csv(io.BytesIO(archive.read_member(database) or b""))
    statements = archive.read_member(posixpath.join(root, STATEMENTS_CSV))
    diagnostic: set[str] | None = None
    if statements:
        st = pd.read_csv(io.BytesIO(statements), index_col=0)
        diagnostic = set(st.index[st["diagnostic"].fillna(0).astype(float) == 1].astype(str))
    index: dict[str, dict[str, Any]] = {}
    for row in db.to_dict("records"):
        choices = [_text(row.get("filename_hr")), _text(row.get("filename_lr"))]
        header = next(
            (p for c in choices if c and (p := posixpath.join(root, c) + ".hea") in names),
            None,
        )
        if header is None:
            continue
        codes = ast.literal_eval(row["scp_codes"]) if _text(row.get("scp_codes")) else {}
        sex = _text(row.get("sex"))
        index[header] = {
            "patient_id": _text(row.get("patient_id")) or _text(row.get("ecg_id")),
            "patient_namespace": f"ptbxl:{root}",  # ids are unique across the database's sites
            "age": _age(row.get("age")),
            "sex": {"0": "M", "1": "F"}.get(sex or ""),
            "site": _text(row.get("site")),
            "device": _text(row.get("device")),
            "dx": sorted(codes),
            "label": labels.from_scp(codes, diagnostic),
            "recorded_at": _recorded_at(row.get("recording_date")),
            "strat_fold": int(row["strat_fold"]) if pd.notna(row.get("strat_fold")) else None,
        }
    return index
