"""The quality report's figures, drawn with matplotlib's object API (no pyplot state, Agg canvas)
and returned as PNG bytes ready to embed.

Each function takes the small summary table it shows (built in `tasks.report.quality`), so the
figures and the report's tables always show the same numbers.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from data_contracts.leads import CANONICAL_LEADS

VERDICT_COLORS = {"pass": "#2e7d32", "limited": "#f9a825", "reject": "#c62828", "unchecked": "#9e9e9e"}
_OTHER_COLOR = "#5c6bc0"
_FLAGGED_FACE = "#fde2df"
_FLAGGED_LINE = "#c62828"
STRIP_ROW_MV = 3.0
_DPI = 80


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def verdict_shares(counts: pd.DataFrame, group: str) -> bytes:
    """100 % stacked horizontal bars: the share of each verdict per group, with the group's size."""
    shares = counts.div(counts.sum(axis=1).where(lambda n: n > 0), axis=0).fillna(0) * 100
    fig = Figure(figsize=(9, 0.9 + 0.4 * len(shares)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(shares))
    left = np.zeros(len(shares))
    for verdict in shares.columns:
        ax.barh(y, shares[verdict], left=left, color=VERDICT_COLORS.get(verdict, _OTHER_COLOR), label=verdict)
        left += shares[verdict].to_numpy()
    for yi, n in zip(y, counts.sum(axis=1), strict=True):
        ax.text(101, yi, f"n={n}", va="center", fontsize=9)
    ax.set_yticks(y, [str(i) for i in shares.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("% of records")
    ax.set_ylabel(group)
    ax.legend(ncols=len(shares.columns), loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=9)
    return png(fig)


def verdicts_over_time(counts: pd.DataFrame, axis: str = "ingest date (UTC)", monthly: bool = False) -> bytes:
    """Stacked bars of verdict counts per day (or per month: index "YYYY-MM") on a calendar axis;
    days or months without records stay empty."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    days = pd.to_datetime(counts.index)
    bottom = np.zeros(len(counts))
    for verdict in counts.columns:
        color = VERDICT_COLORS.get(verdict, _OTHER_COLOR)
        ax.bar(
            days, counts[verdict], width=25 if monthly else 0.8, bottom=bottom, color=color, label=verdict,
            align="edge" if monthly else "center",
        )  # fmt: skip
        bottom += counts[verdict].to_numpy()
    pad = pd.Timedelta(days=max(31 if monthly else 3, (days.max() - days.min()).days // 20))
    ax.set_xlim(days.min() - pad, days.max() + pad)
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m" if monthly else "%Y-%m-%d"))
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel(axis)
    ax.set_ylabel("records")
    ax.legend(ncols=len(counts.columns), loc="lower left", bbox_to_anchor=(0, 1), frameon=False, fontsize=9)
    return png(fig)


def flag_heatmap(rates: pd.DataFrame) -> bytes:
    """Site × lead heat map of the % of records with any flag on the lead, values written in."""
    values = rates.to_numpy(dtype=float)
    fig = Figure(figsize=(10, 1.4 + 0.45 * len(rates)), layout="constrained")
    ax = fig.subplots()
    top = max(float(np.nanmax(values)) if values.size else 0.0, 1.0)
    im = ax.imshow(values, cmap="Reds", vmin=0, vmax=top, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(
            j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black"
        )
    ax.set_xticks(range(rates.shape[1]), list(rates.columns))
    ax.set_yticks(range(rates.shape[0]), [str(s) for s in rates.index])
    ax.set_xlabel("lead")
    ax.set_ylabel("site")
    fig.colorbar(im, ax=ax, label="% of records flagged", fraction=0.03)
    return png(fig)


def noise_distributions(values: dict[str, dict[str, np.ndarray]], thresholds: dict[str, float]) -> bytes:
    """One box plot panel per noise index: the distribution over all leads of each site's records,
    with the index's flag threshold as a dashed line where one is given."""
    n = len(values)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4 * cols, 3.4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, by_site) in zip(axes, values.items(), strict=False):
        sites = [s for s, v in by_site.items() if v.size]
        data = [by_site[s] for s in sites]
        if not data:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.boxplot(data, tick_labels=sites, flierprops={"markersize": 2, "alpha": 0.4})
            _long_tail_scale(ax, np.concatenate(data))
        if name in thresholds:
            ax.axhline(thresholds[name], ls="--", lw=1, color=_FLAGGED_LINE)
        ax.set_title(name)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in axes[n:]:
        ax.set_visible(False)
    return png(fig)


def _long_tail_scale(ax: Axes, values: np.ndarray) -> None:
    """A non-negative index whose tail reaches past 100 × its median (noise amplitudes: most leads
    near zero, a few far out) gets a symmetric-log axis, linear below its 5th positive percentile,
    so that both the bulk and the outliers stay readable; zeros stay drawable."""
    positive = values[values > 0]
    if values.min() < 0 or positive.size == 0 or values.max() <= 100 * np.median(values):
        return
    ax.set_yscale("symlog", linthresh=float(np.percentile(positive, 5)))


def ecg_strip(signal: np.ndarray, flags: list[str], title: str, fs: int) -> bytes:
    """All 12 leads of one record on one sheet at a fixed scale (one row of `STRIP_ROW_MV` mV per
    lead, each trace centred on its median and clipped to its row), as on ECG paper; a flagged lead
    is drawn in red on a tinted row, its flag names on the right; a lead without samples says so."""
    fig = Figure(figsize=(11, 10), layout="constrained")
    ax = fig.subplots()
    t = np.arange(signal.shape[1]) / fs
    half = STRIP_ROW_MV / 2
    centres = -STRIP_ROW_MV * np.arange(len(CANONICAL_LEADS))
    for centre, trace, flag in zip(centres, signal, flags, strict=True):
        color = _FLAGGED_LINE if flag else "#1a1a1a"
        if flag:
            ax.axhspan(centre - half, centre + half, color=_FLAGGED_FACE, lw=0)
        finite = np.isfinite(trace)
        if finite.any():
            level = np.median(trace[finite])
            ax.plot(t, np.clip(trace - level, -half, half) + centre, lw=0.6, color=color)
        else:
            ax.text(t[-1] / 2, centre, "no samples", ha="center", va="center", fontsize=8)
    ax.set_yticks(centres, list(CANONICAL_LEADS))
    for label, flag in zip(ax.get_yticklabels(), flags, strict=True):
        label.set_color(_FLAGGED_LINE if flag else "#1a1a1a")
    ax.set_ylim(centres[-1] - half, half)
    names = ax.twinx()  # the flag names on the right, outside the traces
    names.set_ylim(ax.get_ylim())
    names.set_yticks(centres, [f.replace(",", ", ") for f in flags], fontsize=8, color=_FLAGGED_LINE)
    names.tick_params(length=0)
    ax.set_xlim(0, t[-1])
    ax.set_xticks(np.arange(0, t[-1] + 1e-9, 1.0))
    ax.set_xticks(np.arange(0, t[-1] + 1e-9, 0.2), minor=True)
    ax.grid(True, axis="x", which="both", color="#f0c8c8", lw=0.4)
    ax.set_xlabel(f"s  (rows of {STRIP_ROW_MV:g} mV, clipped at ±{half:g} mV around each lead's median)")
    ax.set_title(title, fontsize=10)
    return png(fig)
