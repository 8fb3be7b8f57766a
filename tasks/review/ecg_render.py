"""The ECG of a screened record as cardiologists read it: one small SVG per record.

Layout: the standard 3×4 grid (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6; each column 2.5 s,
the columns consecutive in time) and a 10-s lead II rhythm strip, at 25 mm/s and 10 mm/mV on the
paper grid (1 mm minor, 5 mm major lines), a 1 mV × 0.2 s calibration pulse at each row's start.
The SVG's user unit is the millimetre (its viewBox in mm, its size in mm), so it prints at scale.
The leads behind the call (scores' `top_leads`) are shaded, the rest of the call's territory
lightly; quality flags are written in red on their leads.

With a feature store, the median beat of every lead follows, with the J point, the ST level at J
and the Q waves marked. The store keeps per-lead values (`st_j_<lead>`, `q_amp_<lead>`,
`q_dur_<lead>`, criteria), not positions: the positions (QRS onset, J point) come from running
the feature code's own median-beat delineation on the same window, the values from the store.

Traces are numpy-built: each lead is one `<path>` whose samples are reduced to the minimum and
maximum of every 10 ms in time order (no peak is lost; 0.125 mm per point, finer than a print),
quantized to 0.125 mm, written as relative moves with collinear points dropped; the path's
transform scales its integer units to mm. A record is about 20 KB (30 KB with the median
beats) and renders in under 10 ms (30 ms with the median beats, delineation included).
"""

from __future__ import annotations

import html
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from data_contracts.leads import CANONICAL_LEADS, TERRITORIES
from data_contracts.schemas import FS
from tasks.features.beats import FeatureSkip
from tasks.features.measure import measure_beats, usable_leads
from tasks.ingest.archive import ArchiveLimits, RecordUnit, open_archive
from tasks.ingest.errors import RecordError
from tasks.ingest.readers import SNIFF_BYTES, sniff
from tasks.ingest.records import content_sha256, decode_harmonized
from tasks.ingest.wfdb_header import header_text, parse_header
from tasks.settings import Settings
from tasks.store.location import Location

MM_PER_S = 25.0  # paper speed
MM_PER_MV = 10.0  # gain
UNIT_MM = 0.125  # one path unit: half a 10-ms column in time, 12.5 µV in amplitude
COLUMN_S = 2 * UNIT_MM / MM_PER_S  # each column of samples becomes two points (its extremes)
LAYOUT: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"
CELL_S = 2.5
LEFT_MM, TOP_MM, ROW_MM = 10.0, 15.0, 40.0  # calibration margin, header, row pitch (multiples of 5)
STRIP_MM = 10 * MM_PER_S  # 10 s
WIDTH_MM = LEFT_MM + STRIP_MM + 5.0
BEAT_ZOOM, BEAT_CROP_S = (
    2.0,
    (-0.25, 0.45),
)  # median beats: double scale, from 0.25 s before R to 0.45 s after
BEAT_PITCH_MM, BEAT_ROW_MM, BEATS_PER_ROW = 40.0, 45.0, 6
_LEAD = {name: i for i, name in enumerate(CANONICAL_LEADS)}

_STYLE = (
    ".t{fill:none;stroke:#111;stroke-width:2.2;stroke-linejoin:round}"
    ".m{fill:none;stroke:#111;stroke-width:.25}"
    ".n{font-size:3.2px;font-weight:600}.f{font-size:2.6px;fill:#c00}"
    ".h{font-size:3.2px}.s{font-size:2.4px;fill:#333}.v{font-size:2.2px;fill:#1a4d8f}"
    ".top{fill:#ffd54f;opacity:.35}.ter{fill:#ffe9a8;opacity:.3}.bad{fill:none;stroke:#c00;stroke-width:.4;"
    "stroke-dasharray:1.5 1}.j{stroke:#1a4d8f;stroke-width:.25;stroke-dasharray:.8 .6}"
    ".st{stroke:#1a4d8f;stroke-width:.5}.hit{stroke:#c00;fill:#c00}.q{fill:#1a4d8f;opacity:.25}"
    ".qc{fill:#c00;opacity:.3}"
)
_GRID = (
    '<pattern id="g" width="5" height="5" patternUnits="userSpaceOnUse">'
    '<path d="M1 0V5M2 0V5M3 0V5M4 0V5M0 1H5M0 2H5M0 3H5M0 4H5" stroke="#f6c9c9" stroke-width=".1"/>'
    '<path d="M0 0H5M0 0V5" stroke="#e79a9a" stroke-width=".2"/></pattern>'
)


@dataclass(frozen=True)
class CallInfo:
    """What the scores say about the record: shown in the header and behind the highlights."""

    record_id: str
    source_path: str
    site: str
    window: int
    model_id: str
    verdict: str
    probability: float | None = None
    risk: float | None = None
    risk_band: str | None = None
    recorded_at: str | None = None
    territory: str | None = None
    top_leads: tuple[str, ...] = ()
    lead_flags: Mapping[str, str] = field(default_factory=dict)  # lead → "flat, emg"
    explanation: str | None = None

    @classmethod
    def from_scores(cls, row: Mapping[str, Any]) -> CallInfo:
        """From one OUT/scores row (as a dict, the site included); `flagged_leads` holds "V1: flat"."""
        flags = dict(item.partition(": ")[::2] for item in _items(row.get("flagged_leads")))
        return cls(
            record_id=row["record_id"],
            source_path=row["source_path"],
            site=row["site"],
            window=int(row["window"]),
            model_id=row["model_id"],
            verdict=row["verdict"],
            probability=_number(row.get("probability")),
            risk=_number(row.get("risk")),
            risk_band=row.get("risk_band"),
            recorded_at=row.get("recorded_at") or row.get("recorded_date"),
            territory=row.get("territory"),
            top_leads=tuple(_items(row.get("top_leads"))),
            lead_flags=flags,
            explanation=row.get("explanation"),
        )


def _items(value: Any) -> list[str]:
    """A list cell as read from Parquet (list, numpy array or null)."""
    return [] if value is None else [str(v) for v in value]


def _number(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass(frozen=True)
class MedianMarks:
    """Median beats (leads × samples, baseline-corrected mV, R fiducial at `pre`) with the QRS
    onset and J point (sample indices, from the delineation) and the store's values per lead."""

    beats: np.ndarray
    pre: int
    qrs_on: int
    j_point: int
    values: Mapping[str, Mapping[str, Any]]  # lead → st_j, q_amp, q_dur, crit_q, crit_ste


# ---- traces -------------------------------------------------------------------------------------


def trace_units(x: np.ndarray, fs: int = FS) -> tuple[np.ndarray, np.ndarray]:
    """A lead's samples (mV) → path points in units (y down, `UNIT_MM` mm each): the extremes of
    every `COLUMN_S` column in time order, and whether each point is finite."""
    per = max(1, round(fs * COLUMN_S))
    n = len(x) // per
    cols = np.asarray(x[: n * per], dtype=np.float64).reshape(n, per)
    finite = np.isfinite(cols)
    filled = np.where(finite, cols, 0.0)
    rows = np.arange(n)
    lo, hi = filled.argmin(axis=1), filled.argmax(axis=1)
    first_low = lo <= hi
    a = np.where(first_low, filled[rows, lo], filled[rows, hi])
    b = np.where(first_low, filled[rows, hi], filled[rows, lo])
    y = np.rint(-np.column_stack([a, b]).ravel() * (MM_PER_MV / UNIT_MM)).astype(np.int64)
    return y, np.repeat(finite.all(axis=1), 2)


def path_data(y: np.ndarray, valid: np.ndarray) -> str:
    """Compact `d` of integer points (one x unit apart): a subpath per run of valid points,
    relative moves, collinear points dropped, a minus sign doubling as separator."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    parts = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        ys = y[start:end]
        dy = np.diff(ys)
        keep = np.concatenate([[True], dy[:-1] != dy[1:], [True]]) if len(ys) > 1 else np.array([True])
        xs = np.arange(start, end)[keep]
        rel = np.column_stack([np.diff(xs), np.diff(ys[keep])]).ravel()
        moves = "l" + " ".join(map(str, rel.tolist())) if rel.size else ""
        parts.append(f"M{xs[0]} {ys[keep][0]}{moves}")
    return "".join(parts).replace(" -", "-")


def _trace(
    x: np.ndarray, left: float, baseline: float, fs: int, centre: bool = True, zoom: float = 1.0
) -> str:
    """One `<path>` of a lead segment at (left, baseline) mm, `zoom` times the paper scale; empty
    when it holds no sample."""
    finite = np.isfinite(x)
    if not finite.any():
        return ""
    shift = float(np.median(x[finite])) if centre else 0.0
    y, valid = trace_units(x - shift, fs)
    if not valid.any():
        return ""
    return (
        f'<path class="t" transform="translate({left:g} {baseline:g}) scale({UNIT_MM * zoom:g})" '
        f'd="{path_data(y, valid)}"/>'
    )


# ---- layout -------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _highlight(lead: str, info: CallInfo) -> str:
    if lead in info.top_leads:
        return "top"
    return "ter" if lead in TERRITORIES.get(info.territory or "", ()) else ""


def _lead_cell(
    lead: str, x: np.ndarray, left: float, baseline: float, width: float, info: CallInfo, rhythm: bool = False
) -> str:
    """A lead's group: highlight (not on the rhythm strip), trace, name, quality flags."""
    mark, flags = "" if rhythm else _highlight(lead, info), info.lead_flags.get(lead, "")
    top = baseline - ROW_MM / 2
    kind = "lead rhythm" if rhythm else "lead"
    parts = [f'<g class="{kind}" data-lead="{lead}" data-highlight="{mark}" data-flags="{_esc(flags)}">']
    if mark:
        parts.append(f'<rect class="{mark}" x="{left:g}" y="{top:g}" width="{width:g}" height="{ROW_MM:g}"/>')
    if flags:
        parts.append(
            f'<rect class="bad" x="{left + 0.3:g}" y="{top + 0.3:g}" width="{width - 0.6:g}" '
            f'height="{ROW_MM - 0.6:g}"/>'
        )
    trace = _trace(x, left, baseline, FS)
    parts.append(trace)
    label_y = top + 5
    parts.append(f'<text class="n" x="{left + 1:g}" y="{label_y:g}">{lead}</text>')
    if flags:
        parts.append(f'<text class="f" x="{left + 8:g}" y="{label_y:g}">{_esc(flags)}</text>')
    if not trace:
        parts.append(f'<text class="f" x="{left + 8:g}" y="{baseline:g}">no signal</text>')
    return "".join(parts) + "</g>"


def _calibration(baseline: float) -> str:
    """1 mV (10 mm) high, 0.2 s (5 mm) wide, ending where the trace starts."""
    return f'<path class="m cal" d="M1 {baseline:g}h2v-{MM_PER_MV:g}h{0.2 * MM_PER_S:g}v{MM_PER_MV:g}h2"/>'


def _header(info: CallInfo) -> str:
    score = (
        f"risk {info.risk:.3f}" + (f" ({info.risk_band})" if info.risk_band else "")
        if info.risk is not None
        else (f"probability {info.probability:.3f}" if info.probability is not None else "not scored")
    )
    if info.risk is not None and info.probability is not None:
        score += f" · probability {info.probability:.3f}"
    when = f" · recorded {info.recorded_at}" if info.recorded_at else ""
    line1 = f"{info.source_path} · window {info.window} · site {info.site}{when}"
    call = info.explanation or (f"{info.territory} territory" if info.territory else "no territory named")
    line2 = f"MI {score} · {call} · quality {info.verdict} · model {info.model_id}"
    return (
        f'<text class="h" x="{LEFT_MM:g}" y="6">{_esc(line1)}</text>'
        f'<text class="h" x="{LEFT_MM:g}" y="11">{_esc(line2)}</text>'
    )


def render_ecg(signal: np.ndarray, info: CallInfo, marks: MedianMarks | None = None, fs: int = FS) -> str:
    """The SVG of one window (12 canonical leads × samples, mV at `fs`, NaN where absent)."""
    cell_n = round(CELL_S * fs)
    rows_bottom = TOP_MM + (len(LAYOUT) + 1) * ROW_MM
    height = rows_bottom + 8 + (_median_height() if marks is not None else 0)
    body = [_header(info)]
    for r, leads in enumerate(LAYOUT):
        baseline = TOP_MM + ROW_MM * (r + 0.5)
        body.append(_calibration(baseline))
        for c, lead in enumerate(leads):
            seg = signal[_LEAD[lead], c * cell_n : (c + 1) * cell_n]
            body.append(
                _lead_cell(lead, seg, LEFT_MM + c * CELL_S * MM_PER_S, baseline, CELL_S * MM_PER_S, info)
            )
        ticks = "".join(f"M{LEFT_MM + c * CELL_S * MM_PER_S:g} {baseline - 4:g}v8" for c in range(1, 4))
        body.append(f'<path class="m" d="{ticks}"/>')
    baseline = TOP_MM + ROW_MM * (len(LAYOUT) + 0.5)
    body.append(_calibration(baseline))
    body.append(_lead_cell(RHYTHM_LEAD, signal[_LEAD[RHYTHM_LEAD]], LEFT_MM, baseline, STRIP_MM, info, True))
    body.append(
        f'<text class="s" x="{LEFT_MM:g}" y="{rows_bottom + 3.5:g}">'
        f"{MM_PER_S:g} mm/s · {MM_PER_MV:g} mm/mV · "
        f"{fs} Hz as harmonized, unfiltered, each trace centred on its median · shaded: the leads behind "
        "the call (dark) and the rest of its territory (light) · red: quality flags</text>"
        f'<text class="s" x="{LEFT_MM:g}" y="{rows_bottom + 6.5:g}">A flag is a prompt for a clinician to '
        "review the ECG, not a diagnosis.</text>"
    )
    if marks is not None:
        body.append(_median_section(marks, rows_bottom + 8, fs))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH_MM:g} {height:g}" '
        f'width="{WIDTH_MM:g}mm" height="{height:g}mm" font-family="sans-serif" '
        f'data-mm-per-s="{MM_PER_S:g}" data-mm-per-mv="{MM_PER_MV:g}" '
        f'data-record-id="{_esc(info.record_id)}">'
        f"<title>ECG {_esc(info.source_path)} window {info.window}</title>"
        f"<style>{_STYLE}</style><defs>{_GRID}</defs>"
        f'<rect width="{WIDTH_MM:g}" height="{height:g}" fill="#fff"/>'
        f'<rect class="grid" y="{TOP_MM:g}" width="{WIDTH_MM:g}" height="{rows_bottom - TOP_MM:g}" '
        f'fill="url(#g)"/>{"".join(body)}</svg>'
    )


# ---- median beats -------------------------------------------------------------------------------


def _median_height() -> float:
    rows = -(-len(CANONICAL_LEADS) // BEATS_PER_ROW)
    return 12 + rows * BEAT_ROW_MM


def median_marks(
    signal: np.ndarray, lead_flags: Mapping[str, str], features: Mapping[str, Any]
) -> MedianMarks:
    """Median beats of a window with the feature store's row of the record: leads whose quality
    flags make them unusable for features (`unusable_flags`) are left out, as the feature run does.
    Raises FeatureSkip when no median beat can be measured."""
    usable = np.array(usable_leads([lead_flags.get(lead, "") for lead in CANONICAL_LEADS]))
    beats, d = measure_beats(signal, usable)
    values = {
        lead: {m: features.get(f"{m}_{lead}") for m in ("st_j", "q_amp", "q_dur", "crit_q", "crit_ste")}
        for lead in CANONICAL_LEADS
    }
    return MedianMarks(beats.median - d.baseline[:, None], beats.pre, d.qrs_on, d.qrs_off, values)


def _known(value: Any) -> float | None:
    return None if value is None or not np.isfinite(float(value)) else float(value)


def _beat_cell(lead: str, marks: MedianMarks, left: float, baseline: float, fs: int) -> str:
    """One lead's median beat (cropped around R, at `BEAT_ZOOM` times the paper scale) and marks."""
    lo, hi = (marks.pre + round(s * fs) for s in BEAT_CROP_S)
    v = marks.values[lead]
    parts = [f'<g class="beat" data-lead="{lead}">']
    trace = _trace(marks.beats[_LEAD[lead], lo:hi], left, baseline, fs, centre=False, zoom=BEAT_ZOOM)
    sample_mm, mv_mm = BEAT_ZOOM * MM_PER_S / fs, BEAT_ZOOM * MM_PER_MV
    on, j = left + (marks.qrs_on - lo) * sample_mm, left + (marks.j_point - lo) * sample_mm
    half = BEAT_ROW_MM / 2 - 4
    span = f"{baseline - half:g}v{2 * half:g}"
    parts += [trace, f'<path class="j" d="M{on:.2f} {span}M{j:.2f} {span}"/>']
    lines = []
    q_amp, q_dur = _known(v["q_amp"]), _known(v["q_dur"])
    if trace and q_amp is not None and q_dur is not None and q_amp < 0 and q_dur > 0:
        width = q_dur / 1000 * MM_PER_S * BEAT_ZOOM
        parts.append(
            f'<rect class="{"qc" if v["crit_q"] else "q"} qwave" x="{on:.2f}" y="{baseline:g}" '
            f'width="{width:.2f}" height="{-q_amp * mv_mm:.2f}"/>'
        )
        lines.append(f"Q {q_amp:+.2f} mV, {q_dur:.0f} ms")
    st_j = _known(v["st_j"])
    if trace and st_j is not None:
        y, cls = baseline - st_j * mv_mm, "st hit" if v["crit_ste"] else "st"
        parts.append(f'<path class="{cls} stj" d="M{j - 2.5:.2f} {y:.2f}h5"/>')
        lines.append(f"ST at J {st_j:+.2f} mV")
    if not trace:
        lines.append("not measured (unusable lead)")
    parts.append(f'<text class="n" x="{left + 0.5:g}" y="{baseline - half + 2.5:g}">{lead}</text>')
    parts += [
        f'<text class="v" x="{left + 0.5:g}" y="{baseline + half + 1.5 + 2.6 * k:g}">{_esc(t)}</text>'
        for k, t in enumerate(lines)
    ]
    return "".join(parts) + "</g>"


def _median_section(marks: MedianMarks, top: float, fs: int) -> str:
    parts = [
        f'<g class="median"><rect y="{top + 8:g}" width="{WIDTH_MM:g}" height="{_median_height() - 12:g}" '
        'fill="url(#g)"/>',
        f'<text class="h" x="{LEFT_MM:g}" y="{top + 3.5:g}">Median beats at {BEAT_ZOOM * MM_PER_S:g} mm/s, '
        f"{BEAT_ZOOM * MM_PER_MV:g} mm/mV (double scale)</text>"
        f'<text class="s" x="{LEFT_MM:g}" y="{top + 6.5:g}">Dashed: QRS onset and J point (the feature '
        "delineation of this window). From the feature store: the ST level at J (tick; red where the STEMI "
        "cut-point is met) and Q waves (shaded; red where pathological).</text>",
    ]
    for k, lead in enumerate(CANONICAL_LEADS):
        r, c = divmod(k, BEATS_PER_ROW)
        baseline = top + 8 + BEAT_ROW_MM * (r + 0.5)
        parts.append(_beat_cell(lead, marks, LEFT_MM + c * BEAT_PITCH_MM, baseline, fs))
    return "".join(parts) + "</g>"


# ---- the record, as scoring read it -------------------------------------------------------------


class SourceChanged(RecordError):
    """The archive's file is not the one scored (its content hash differs)."""


def record_unit(archive: Location, source_path: str, limits: ArchiveLimits) -> RecordUnit:
    """The unit a scored `source_path` names (a WFDB header with its signal files, or a single
    export file), read directly from a folder or an s3:// prefix, or from a zip or tar: members
    over the size limit or outside the archive are refused."""
    if archive.is_dir():
        root = archive.resolve()

        def read(name: str) -> bytes:
            path = (root / name).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                raise RecordError("missing_file", f"{name} is no file inside the archive")
            if path.stat().st_size > limits.max_member_bytes:
                raise RecordError("too_large", f"{name} is above the member size limit")
            return path.read_bytes()
    else:
        opened = open_archive(archive, limits)

        def read(name: str) -> bytes:
            data = opened.read_member(name)
            if data is None:
                raise RecordError("missing_file", f"{name} is not in the archive")
            return data

    head = read(source_path)
    base = posixpath.basename(source_path)
    if source_path.endswith(".hea"):
        folder = posixpath.dirname(source_path)
        files = {base: head}
        for name in parse_header(header_text(head)).file_names:
            files[name] = read(posixpath.normpath(posixpath.join(folder, name)))
        return RecordUnit(source_path, files)
    fmt = sniff(head[:SNIFF_BYTES])
    if fmt is None:
        raise RecordError("unknown_format", f"{source_path} is no recording this version reads")
    return RecordUnit(source_path, {base: head}, {}, fmt)


def record_window(
    archive: Location, source_path: str, window: int, sha: str, settings: Settings
) -> np.ndarray:
    """The scored window (12 × samples, mV at the target rate) of a record: decoded and harmonized
    as scoring does (`decode_harmonized`), after checking that the file is the one scored."""
    unit = record_unit(archive, source_path, ArchiveLimits.from_settings(settings))
    if content_sha256(unit.files) != sha:
        raise SourceChanged("source_changed", f"{source_path} changed since it was scored")
    h, _ = decode_harmonized(unit, settings)
    if not 0 <= window < len(h.windows):
        raise RecordError("no_window", f"{source_path} has no window {window}")
    return h.windows[window]


def render_record(
    archive: Location,
    info: CallInfo,
    sha: str,
    settings: Settings,
    features: Mapping[str, Any] | None = None,
) -> str:
    """The SVG of a scored record read from its archive. With a feature store (`features`: the
    record's features/ row, {} when the store has none for it), its median beats too, or a note in
    the header saying why there are none."""
    signal = record_window(archive, info.source_path, info.window, sha, settings)
    marks, note = None, None
    if features is not None and not features:
        note = "the feature store holds no features of this record"
    elif features is not None:
        try:
            marks = median_marks(signal, info.lead_flags, features)
        except FeatureSkip as skip:
            note = f"no median beat could be measured ({skip.reason})"
    if note:
        info = replace(info, explanation=f"{info.explanation or ''} · {note}".strip(" ·"))
    return render_ecg(signal, info, marks, FS)
