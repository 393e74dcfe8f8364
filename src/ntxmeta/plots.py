"""Publication figures: forest, funnel, cumulative, leave-one-out and bubble plots.

Every function takes plain data, never file paths:

- ``effects``: a DataFrame with one row per study (``label``, ``year``,
  ``subgroup``, ``yi``, ``vi``, ``sei``, ``ci_lb``, ``ci_ub`` on the analysis
  scale, ``weight_pct``, arm-level columns and ``confidence``);
- ``result``: the analysis result laid out under metafor's key paths
  (``result["rma"]["REML"]["ci.lb"]``, ...); any section may be
  ``{"error": "..."}`` and is then shown as such, not hidden;
- keyword options: ``measure``, ``transf`` (``"exp"`` shows ratio measures
  on their natural scale with a log axis; default: ``"exp"`` for RR, OR and
  ROM), ``method`` (default ``"REML"``), ``test`` (``"z"`` or ``"knha"``
  for the forest and bubble plots), ``title`` and ``favours``.

Each function takes ``ax=None`` and returns the Axes it drew on (STYLE.md
habit 12); with ``ax=None`` it makes its own Agg-backed Figure, sized to its
content. The look comes from :mod:`ntxmeta.style`; no pyplot state is used.

The forest, cumulative and leave-one-out plots are one table engine: a list
of rows (text cells plus an interval, square, diamond or prediction
interval) drawn as text columns left and right of an effect axis. Column
widths are measured with the renderer before anything is placed, long study
labels are cut with an ellipsis, and spanning notes (heterogeneity, tests)
widen the left block rather than run into the plot, so no two texts overlap.
Those columns sit outside the Axes: when you pass your own ``ax``, leave
room on both sides of it.

Conventions: a ratio below 1 (or a difference below 0) favours naltrexone
(DESIGN.md), so ``favours[0]`` is written left of the line of no effect.

References
----------
1. Peters JL, Sutton AJ, Jones DR, Abrams KR, Rushton L. Contour-enhanced
   meta-analysis funnel plots help distinguish publication bias from other
   causes of asymmetry. J Clin Epidemiol 2008;61:991-6.
2. IntHout J, Ioannidis JPA, Rovers MM, Goeman JJ. Plea for routinely
   presenting prediction intervals in meta-analysis. BMJ Open 2016;6:e010247.
3. Viechtbauer W. Conducting meta-analyses in R with the metafor package.
   J Stat Softw 2010;36(3) (forest, funnel, cumul, leave1out, regplot).
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator
from matplotlib.transforms import ScaledTranslation, blended_transform_factory
from scipy import stats

from . import style
from .data import make_unique
from .style import save_figure

__all__ = ["forest", "funnel", "cumulative", "leave_one_out", "bubble", "save_figure"]

RATIO_MEASURES = ("RR", "OR", "ROM")
MEASURE_NAMES = {
    "RR": "Risk ratio",
    "OR": "Odds ratio",
    "RD": "Risk difference",
    "SMD": "Standardised mean difference",
    "MD": "Mean difference",
    "ROM": "Ratio of means",
    "GEN": "Effect size",
}
FAVOURS = ("naltrexone", "control")

#: Table geometry, in inches. A row of 0.19 in fits 8 pt text with air.
ROW_IN = 0.19
COL_GAP_IN = 0.12          # between two text columns
PLOT_GAP_IN = 0.18         # between a text block and the plot
PLOT_IN = 2.3              # width of the effect axis
LABEL_MAX_IN = 1.8         # study labels longer than this are cut with an ellipsis
MARGIN_IN = 0.1
#: Figure kinds whose size is computed from their content (a table beside an
#: effect axis, MARGIN_IN of white on every side): they are saved as they
#: are (``save_figure(..., crop=False)``), without the tight crop that
#: would lay every text out once more. tests/test_plots.py checks that
#: nothing of them reaches beyond the figure.
LAID_OUT = frozenset({"forest", "cumulative", "leave_one_out"})
NOTE_MAX_IN = 4.2          # notes (heterogeneity, tests, errors) wrap beyond this width
NOTE_INDENT = "    "
AXIS_PAD_ROWS = 0.4        # space between the last row and the x axis, in rows
AXIS_SPACE_IN = 0.62       # below the table: tick labels, favours labels, axis label
#: Squares: side in points for the largest weight, and the least side so that
#: a study with a tiny weight stays visible. Area is proportional to weight.
SQUARE_MAX_PT = 10.0
SQUARE_MIN_PT = 2.5
POINT_PT = 4.0
ARROW_PT = 4.0
PI_CAP_PT = 5.0
DIAMOND_HALF_ROWS = 0.34   # half the diamond's height, in rows
#: Offsets below the x axis, in points (tick labels take about 13 pt).
FAVOURS_OFFSET_PT = 15.0
XLABEL_PAD_PT = 15.0
#: How far a study's CI may widen the axis beyond the span of the point
#: estimates, pooled intervals and the null, as a fraction of that span;
#: intervals beyond it are clipped and drawn with an arrow.
CI_OVERHANG = 1.0
#: Least room on each side of the null, as a fraction of that span, so that
#: both favours labels have an axis to sit under.
NULL_MARGIN = 0.08
MAX_TICKS = 7
#: Prediction intervals are drawn for k >= 3 only: with fewer studies tau^2
#: is not estimable in any useful sense (IntHout et al. 2016).
PI_MIN_K = 3
#: Significance contours of the funnel plot (two-sided p against no effect)
#: and the shade of the region inside each, outermost first: p >= 0.10 is
#: white and the shade darkens as p falls; beyond p = 0.01 it is darkest.
FUNNEL_CONTOURS = ((0.01, style.LIGHT), (0.05, style.FAINT), (0.10, style.PAPER))
FUNNEL_SE_HEADROOM = 1.08  # y axis reaches 8% beyond the largest standard error
FUNNEL_GRID = 200
FUNNEL_MARKER_PT = 5.0
FUNNEL_SIZE_IN = (6.0, 3.6)
FUNNEL_RECT = (0.1, 0.14, 0.52, 0.78)
#: Bubble plot: area in pt^2 of the heaviest study, margins as a fraction
#: of the data range, and the wrap width of the summary line.
BUBBLE_MAX_PT2 = 400.0
BUBBLE_PAD = 0.06
BUBBLE_GRID = 200
BUBBLE_NOTE_CHARS = 80
BUBBLE_TITLE_PAD_PT = 26.0
BUBBLE_SIZE_IN = (5.0, 4.0)
BUBBLE_RECT = (0.13, 0.12, 0.83, 0.7)
MINUS = "\u2212"
DASH = "\u2013"

# Row kinds of the table engine.
STUDY, POINT, DIAMOND, PI, HEADING, NOTE, BLANK = (
    "study", "point", "diamond", "pi", "heading", "note", "blank")
_GRAPHIC_KINDS = (STUDY, POINT, DIAMOND, PI)


# --------------------------------------------------------------------------
# numbers and words


def _num(x: Any) -> float:
    """A result value as float: metafor's "NA"/"NaN"/"Inf" strings and None become floats.

    A list (``QMdf = [2, "NA"]``) gives its first entry.
    """
    if isinstance(x, (list, tuple)):
        return _num(x[0]) if x else math.nan
    if x is None:
        return math.nan
    if isinstance(x, str):
        return {"Inf": math.inf, "-Inf": -math.inf}.get(x, math.nan)
    return float(x)


def _section(result: Mapping, *path: str) -> tuple[Mapping | None, str | None]:
    """Follow ``path`` into the result: ``(section, None)`` or ``(None, reason)``."""
    node: Any = result
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None, "not computed"
        node = node[key]
        if isinstance(node, Mapping) and "error" in node:
            return None, str(node["error"])
    return node, None


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def _fmt(x: float, digits: int = 2) -> str:
    """Fixed decimals with a typographic minus; NaN as an en dash."""
    return _minus(f"{x:.{digits}f}") if math.isfinite(x) else DASH


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return f"p = {DASH}"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _fmt_small(x: float) -> str:
    """tau^2 and the like: 2 decimals, 3 below 0.01, "< 0.001" below that."""
    if not math.isfinite(x):
        return DASH
    if x == 0:
        return "0"
    if x >= 0.01:
        return _fmt(x, 2)
    return "< 0.001" if x < 0.001 else _fmt(x, 3)


def _fmt_count(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else ""


def _capital(word: str) -> str:
    return word[:1].upper() + word[1:]


@dataclass(frozen=True)
class _Scale:
    """How analysis-scale numbers are shown: identity, or exp on a log axis."""

    measure: str
    log: bool

    @property
    def null(self) -> float:
        return 1.0 if self.log else 0.0

    @property
    def short(self) -> str:
        if self.measure == "GEN":
            return "Ratio" if self.log else "Effect"
        return self.measure

    @property
    def axis_label(self) -> str:
        name = MEASURE_NAMES.get(self.measure, self.measure)
        return f"{name} (log scale)" if self.log else name

    def show(self, y: Any) -> Any:
        """Analysis scale -> displayed value."""
        return np.exp(y) if self.log else y

    def effect(self, est: float, lb: float, ub: float, digits: int = 2) -> str:
        """'0.49 [0.34, 0.70]' on the displayed scale."""
        est, lb, ub = (float(self.show(v)) for v in (est, lb, ub))
        return f"{_fmt(est, digits)} [{_fmt(lb, digits)}, {_fmt(ub, digits)}]"


def _scale(measure: str, transf: str | None) -> _Scale:
    measure = measure.upper()
    if transf is None:
        transf = "exp" if measure in RATIO_MEASURES else "none"
    if transf not in ("exp", "none", "identity"):
        raise ValueError(f"transf must be 'exp', 'none' or None, got {transf!r}")
    return _Scale(measure, transf == "exp")


def _model_name(method: str) -> str:
    if method in ("EE", "FE", "CE"):
        return "Common-effect model"
    return f"Random-effects model ({method})"


def _heterogeneity(fit: Mapping) -> str:
    """'Heterogeneity: tau^2 = ..; I^2 = ..%; Q = .., df = .. (p ..)' of one fit."""
    k = int(_num(fit.get("k")))
    if k < 2:
        return f"Heterogeneity: not applicable (k = {k})"
    return (f"Heterogeneity: \u03c4\u00b2 = {_fmt_small(_num(fit.get('tau2')))}; "
            f"I\u00b2 = {_fmt(_num(fit.get('I2')), 0)}%; "
            f"Q = {_fmt(_num(fit.get('QE')))}, df = {_fmt(_num(fit.get('QEdf')), 0)} "
            f"({_fmt_p(_num(fit.get('QEp')))})")


def _overall_test(fit: Mapping) -> str:
    """'Test for overall effect: z = .. (p ..)', or 't = .., df = ..' for Knapp-Hartung."""
    p = _fmt_p(_num(fit.get("pval")))
    if fit.get("test", "z") == "z":
        return f"Test for overall effect: z = {_fmt(_num(fit.get('zval')))} ({p})"
    return f"Test for overall effect: t = {_fmt(_num(fit.get('tval')))}, df = {_fmt(_num(fit.get('df')), 0)} ({p})"


def _interval(fit: Mapping) -> tuple[float, float, float]:
    """(estimate, ci.lb, ci.ub) of a fit."""
    return _num(fit.get("estimate")), _num(fit.get("ci.lb")), _num(fit.get("ci.ub"))


# --------------------------------------------------------------------------
# the table engine behind forest, cumulative and leave-one-out plots


@dataclass(frozen=True)
class _Col:
    """A text column left or right of the plot; ``group`` spans adjacent columns."""

    key: str
    header: str
    side: str
    align: str = "right"
    group: str = ""


@dataclass(frozen=True)
class _Row:
    """One table row: cells by column key, plus its graphic on the analysis scale.

    ``area`` (STUDY rows) is the marker area as a fraction of the largest.
    NOTE rows carry their text in ``cells["note"]``; it spans the left block.
    """

    kind: str
    cells: Mapping[str, str] = field(default_factory=dict)
    est: float = math.nan
    lb: float = math.nan
    ub: float = math.nan
    area: float = 1.0


@dataclass(frozen=True)
class _Table:
    cols: tuple[_Col, ...]
    rows: tuple[_Row, ...]
    scale: _Scale
    title: str | None = None
    favours: tuple[str, str] = FAVOURS
    band: tuple[float, float, float] | None = None  # (est, lb, ub): shaded reference


def _row_font(kind: str):
    """Font of a row kind: notes small, headings (and column headers) and pooled rows bold."""
    if kind == NOTE:
        return style.font(style.SMALL_SIZE)
    return style.font(weight="bold" if kind in (HEADING, DIAMOND) else "normal")


def _notes(text: str) -> list[_Row]:
    """A note as NOTE rows, wrapped at spaces to at most ``NOTE_MAX_IN`` wide."""
    prop = _row_font(NOTE)
    lines = [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and style.text_width_in(candidate, prop) > NOTE_MAX_IN:
            lines.append(NOTE_INDENT + word)
        else:
            lines[-1] = candidate
    return [_Row(NOTE, {"note": line}) for line in lines]


@dataclass(frozen=True)
class _Layout:
    """Text anchors in inches: left columns from the plot's left edge (negative),
    right columns from its right edge; block widths include the gap to the plot."""

    anchor: Mapping[str, float]
    span: Mapping[str, tuple[float, float]]  # group -> (start, end) offsets
    left_in: float
    right_in: float


def _measure(table: _Table) -> _Layout:
    """Column widths from the rendered texts, then the anchors of every column."""
    widths = {}
    for col in table.cols:
        texts = [(col.header, _row_font(HEADING))]
        texts += [(row.cells[col.key], _row_font(row.kind)) for row in table.rows if col.key in row.cells]
        widths[col.key] = max(style.text_width_in(t, p) for t, p in texts)

    def run(cols: Sequence[_Col]) -> float:
        return sum(widths[c.key] for c in cols) + COL_GAP_IN * max(len(cols) - 1, 0)

    for name in {c.group for c in table.cols if c.group}:  # a group header wider than its columns
        members = [c for c in table.cols if c.group == name]
        extra = style.text_width_in(name, _row_font(HEADING)) - run(members)
        for c in members:
            widths[c.key] += max(0.0, extra) / len(members)
    left = [c for c in table.cols if c.side == "left"]
    right = [c for c in table.cols if c.side == "right"]
    notes = max((style.text_width_in(r.cells["note"], _row_font(NOTE)) for r in table.rows if r.kind == NOTE),
                default=0.0)
    widths[left[0].key] += max(0.0, notes - run(left))  # notes span the left block: widen its first column
    anchor: dict[str, float] = {}
    span: dict[str, tuple[float, float]] = {}
    for cols, x in ((left, -run(left) - PLOT_GAP_IN), (right, PLOT_GAP_IN)):
        for col in cols:
            anchor[col.key] = x + (widths[col.key] if col.align == "right" else 0.0)
            if col.group:
                lo, _ = span.get(col.group, (x, x))
                span[col.group] = (lo, x + widths[col.key])
            x += widths[col.key] + COL_GAP_IN
    return _Layout(anchor, span, run(left) + PLOT_GAP_IN, run(right) + PLOT_GAP_IN if right else 0.0)


def _nice_limits(lo: float, hi: float, log: bool) -> list[float]:
    """Ticks (displayed scale) whose first and last enclose [lo, hi] (analysis scale)."""
    if log:  # 1-2-5 ticks; if too many, the evenly spaced 1-3, then decades
        a, b = math.exp(lo) * (1 + 1e-9), math.exp(hi) * (1 - 1e-9)
        for mantissas in ((1, 2, 5), (1, 3), (1,)):
            cands = sorted(m * 10.0 ** e for e in range(-4, 5) for m in mantissas)
            first = max([c for c in cands if c <= a], default=cands[0])
            last = min([c for c in cands if c >= b], default=cands[-1])
            ticks = [c for c in cands if first <= c <= last]
            if len(ticks) <= MAX_TICKS:
                break
        return ticks
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    first = max((t for t in ticks if t <= lo + 1e-12), default=ticks[0])
    last = min((t for t in ticks if t >= hi - 1e-12), default=ticks[-1])
    return [float(t) for t in ticks if first <= t <= last]


def _axis_ticks(table: _Table) -> list[float]:
    """Ticks of the effect axis: all estimates, pooled intervals and the null in
    view; study intervals too unless they would squash the rest (then clipped)."""
    core = [0.0]  # the null on the analysis scale
    wide = []
    for row in table.rows:
        if row.kind in (DIAMOND, PI):
            core += [row.est, row.lb, row.ub]
        elif row.kind in (STUDY, POINT):
            core.append(row.est)
            wide += [row.lb, row.ub]
    if table.band is not None:
        core += list(table.band)
    core = [v for v in core if math.isfinite(v)]
    wide = [v for v in wide if math.isfinite(v)]
    lo, hi = min(core), max(core)
    span = (hi - lo) or 1.0
    lo, hi = min(lo, -NULL_MARGIN * span), max(hi, NULL_MARGIN * span)  # the null never sits on an edge
    lo = max(min([lo, *wide]), lo - CI_OVERHANG * span)
    hi = min(max([hi, *wide]), hi + CI_OVERHANG * span)
    return _nice_limits(lo, hi, table.scale.log)


def _tick_label(v: float) -> str:
    return _minus(f"{v:g}")


def _draw_interval(ax: Axes, y: float, lb: float, ub: float, lim: tuple[float, float]) -> None:
    """A CI line clipped to the axis, with an arrowhead where it runs off."""
    lo, hi = lim
    a, b = max(lb, lo), min(ub, hi)
    if a < b:
        ax.plot([a, b], [y, y], color=style.INK, lw=style.LINE_WIDTH, solid_capstyle="butt")
    for beyond, edge, marker in ((lb < lo, lo, "<"), (ub > hi, hi, ">")):
        if beyond:
            ax.plot([edge], [y], marker=marker, ms=ARROW_PT, color=style.INK, clip_on=False, lw=0)


def _draw_graphic(ax: Axes, y: float, row: _Row, scale: _Scale, lim: tuple[float, float]) -> None:
    est, lb, ub = (float(scale.show(v)) for v in (row.est, row.lb, row.ub))
    if not math.isfinite(est) and row.kind != PI:
        return
    inside = lim[0] <= est <= lim[1]
    if row.kind == STUDY:
        _draw_interval(ax, y, lb, ub, lim)
        if inside:
            side = max(SQUARE_MIN_PT, SQUARE_MAX_PT * math.sqrt(max(row.area, 0.0)))
            ax.plot([est], [y], marker="s", ms=side, mfc=style.INK, mec=style.INK, mew=0, lw=0)
    elif row.kind == POINT:
        _draw_interval(ax, y, lb, ub, lim)
        if inside:
            ax.plot([est], [y], marker="o", ms=POINT_PT, mfc=style.INK, mec=style.INK, lw=0)
    elif row.kind == DIAMOND:
        xs = np.clip([lb, est, ub, est], *lim)
        h = DIAMOND_HALF_ROWS
        ax.add_patch(Polygon(np.column_stack([xs, [y, y - h, y, y + h]]), closed=True,
                             facecolor=style.INK, edgecolor=style.INK, lw=style.THIN_LINE))
    elif row.kind == PI:
        _draw_interval(ax, y, lb, ub, lim)
        ends = [v for v in (lb, ub) if lim[0] <= v <= lim[1]]
        ax.plot(ends, [y] * len(ends), marker="|", ms=PI_CAP_PT, color=style.INK, lw=0)


def _new_table_axes(layout: _Layout, n_rows: float) -> Axes:
    width = MARGIN_IN * 2 + layout.left_in + PLOT_IN + layout.right_in
    height = n_rows * ROW_IN + AXIS_SPACE_IN + MARGIN_IN
    rect = ((MARGIN_IN + layout.left_in) / width, AXIS_SPACE_IN / height,
            PLOT_IN / width, n_rows * ROW_IN / height)
    return style.new_axes(width, height, rect)


def _draw_table(table: _Table, ax: Axes | None) -> Axes:
    """Render a table of rows beside an effect axis; returns the Axes."""
    layout = _measure(table)
    has_groups = any(c.group for c in table.cols)
    n_head = 1 + int(has_groups) + int(bool(table.title))
    n_body = len(table.rows)
    top = -n_head - 0.5
    bottom = n_body - 0.5 + AXIS_PAD_ROWS
    if ax is None:
        ax = _new_table_axes(layout, bottom - top)
    # x in inches from the Axes' left (right) edge for left (right) columns, y in
    # rows: texts move with the Axes when it moves (savefig's tight crop, resizing)
    trans = {side: blended_transform_factory(
        ax.figure.dpi_scale_trans + ScaledTranslation(edge, 0, ax.transAxes), ax.transData)
        for side, edge in (("left", 0), ("right", 1))}

    def put(side: str, x: float, y: float, text: str, prop, ha: str, color: str = style.INK) -> None:
        ax.text(x, y, text, transform=trans[side], ha=ha, va="center", fontproperties=prop,
                color=color, parse_math=False, clip_on=False)

    ticks = _axis_ticks(table)
    lim = (ticks[0], ticks[-1])
    ax.set_xscale("log" if table.scale.log else "linear")
    ax.set_xlim(*lim)
    ax.set_ylim(bottom, top)
    if table.title:
        put("left", -layout.left_in, -n_head, table.title, style.font(style.TITLE_SIZE, "bold"), "left")
    for col in table.cols:
        put(col.side, layout.anchor[col.key], -1, col.header, _row_font(HEADING), col.align)
    for name, (lo, hi) in layout.span.items():
        side = next(c.side for c in table.cols if c.group == name)
        put(side, (lo + hi) / 2, -2, name, _row_font(HEADING), "center")
    rule = {"color": style.INK, "lw": style.THIN_LINE, "clip_on": False, "solid_capstyle": "butt"}
    ax.add_line(Line2D([-layout.left_in, 0], [-0.5, -0.5], transform=trans["left"], **rule))
    ax.add_line(Line2D([0, 1], [-0.5, -0.5], transform=ax.get_yaxis_transform(), **rule))
    ax.add_line(Line2D([0, layout.right_in], [-0.5, -0.5], transform=trans["right"], **rule))
    for y, row in enumerate(table.rows):
        if row.kind == NOTE:
            put("left", -layout.left_in, y, row.cells["note"], _row_font(NOTE), "left", style.DARK)
            continue
        for col in table.cols:
            if col.key in row.cells:
                put(col.side, layout.anchor[col.key], y, row.cells[col.key],
                    _row_font(row.kind), col.align)
        if row.kind in _GRAPHIC_KINDS:
            _draw_graphic(ax, y, row, table.scale, lim)
    graphic = [y for y, r in enumerate(table.rows) if r.kind in _GRAPHIC_KINDS]
    if table.band is not None:
        est, lb, ub = (float(table.scale.show(v)) for v in table.band)
        ax.fill_betweenx([-0.5, bottom], max(lb, lim[0]), min(ub, lim[1]),
                         color=style.FAINT, lw=0, zorder=0)
        ax.vlines(est, -0.5, bottom, colors=style.DARK, linestyles="--", lw=style.THIN_LINE, zorder=1)
    if graphic:
        ax.vlines(table.scale.null, min(graphic) - 0.5, bottom, colors=style.INK,
                  lw=style.THIN_LINE, zorder=1)
    _style_effect_axis(ax, table, ticks)
    return ax


def _style_effect_axis(ax: Axes, table: _Table, ticks: list[float]) -> None:
    for name in ("left", "right", "top"):
        ax.spines[name].set_visible(False)
    ax.yaxis.set_major_locator(NullLocator())
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_tick_label(t) for t in ticks])
    ax.set_xlabel(table.scale.axis_label, labelpad=XLABEL_PAD_PT)
    ax.patch.set_visible(False)
    null = table.scale.null
    if ticks[0] < null < ticks[-1]:
        for text, ha, dx in ((f"\u2190 Favours {table.favours[0]}", "right", -3),
                             (f"Favours {table.favours[1]} \u2192", "left", 3)):
            ax.annotate(text, xy=(null, 0), xycoords=("data", "axes fraction"),
                        xytext=(dx, -FAVOURS_OFFSET_PT), textcoords="offset points",
                        ha=ha, va="top", fontproperties=style.font(style.SMALL_SIZE), parse_math=False)


# --------------------------------------------------------------------------
# forest plot


def _has(effects: pd.DataFrame, col: str) -> bool:
    return col in effects.columns and effects[col].notna().any()


def _arm_columns(effects: pd.DataFrame, favours: tuple[str, str]) -> list[_Col]:
    """Arm-level columns: events and totals (binary) or mean, SD and total (continuous)."""
    if _has(effects, "events_treat"):
        fields = (("events", "Events"), ("n", "Total"))
    elif _has(effects, "mean_treat"):
        fields = (("mean", "Mean"), ("sd", "SD"), ("n", "Total"))
    else:
        return []
    return [_Col(f"{f}_{arm}", header, "left", group=_capital(name))
            for arm, name in (("treat", favours[0]), ("ctrl", favours[1]))
            for f, header in fields]


def _decimals(values: pd.Series) -> int:
    """Fewest decimals (0-2) that show every value of a column as given."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    for d in (0, 1):
        if np.allclose(v, np.round(v, d), rtol=0, atol=1e-9):
            return d
    return 2


def _study_label(rec: Mapping) -> str:
    label = str(rec.get("label") or rec.get("study_id") or "")
    year = rec.get("year")
    if year is not None and not (isinstance(year, float) and math.isnan(year)):
        year = str(int(year)) if isinstance(year, (int, float, np.number)) else str(year)
        if year not in label:
            label = f"{label} {year}"
    return label


LOW_CONFIDENCE_MARK = " \u2020"


def _label_cell(text: str, mark: str = "") -> str:
    prop = _row_font(STUDY)
    return style.fit_text(text, LABEL_MAX_IN - style.text_width_in(mark, prop), prop) + mark


def _study_rows(effects: pd.DataFrame, arm_cols: Sequence[_Col], scale: _Scale) -> list[_Row]:
    digits = {c.key: _decimals(effects[c.key]) for c in arm_cols}
    wmax = pd.to_numeric(effects.get("weight_pct"), errors="coerce").max() if "weight_pct" in effects else math.nan
    rows = []
    for rec in effects.to_dict("records"):
        mark = LOW_CONFIDENCE_MARK if str(rec.get("confidence", "")).lower() == "low" else ""
        cells = {"label": _label_cell(_study_label(rec), mark)}
        for c in arm_cols:
            cells[c.key] = _fmt(_num(rec.get(c.key)), digits[c.key]) if math.isfinite(_num(rec.get(c.key))) else ""
        yi, lb, ub = (_num(rec.get(k)) for k in ("yi", "ci_lb", "ci_ub"))
        weight = _num(rec.get("weight_pct"))
        cells["effect"] = scale.effect(yi, lb, ub) if math.isfinite(yi) else "not estimable"
        cells["weight"] = f"{weight:.1f}%" if math.isfinite(weight) else ""
        area = weight / wmax if math.isfinite(weight) and wmax > 0 else 0.0
        rows.append(_Row(STUDY, cells, yi, lb, ub, area))
    return rows


def _totals(effects: pd.DataFrame, arm_cols: Sequence[_Col]) -> dict[str, str]:
    """Summed events and totals of a block of studies (not means or SDs)."""
    out = {}
    for c in arm_cols:
        if c.key.split("_")[0] in ("events", "n"):
            out[c.key] = _fmt_count(pd.to_numeric(effects[c.key], errors="coerce").sum(min_count=1))
    if _has(effects, "weight_pct"):
        out["weight"] = f"{pd.to_numeric(effects['weight_pct'], errors='coerce').sum():.1f}%"
    return out


def _summary_rows(fit: Mapping | None, reason: str | None, label: str, extra: Mapping[str, str],
                  scale: _Scale, *, with_pi: bool) -> list[_Row]:
    """Diamond, prediction interval and heterogeneity note of one pooled fit."""
    if fit is None:
        return _notes(f"{label}: no pooled estimate ({reason})")
    if _num(fit.get("k")) == 1:  # the study's own estimate is already on its row
        return _notes(f"{label}: not pooled (a single study)")
    est, lb, ub = _interval(fit)
    rows = [_Row(DIAMOND, {"label": label, **extra, "effect": scale.effect(est, lb, ub)}, est, lb, ub)]
    pred = fit.get("predict") or {}
    pi_lb, pi_ub = _num(pred.get("pi.lb")), _num(pred.get("pi.ub"))
    if with_pi and _num(fit.get("k")) >= PI_MIN_K and math.isfinite(pi_lb) and math.isfinite(pi_ub):
        text = f"[{_fmt(float(scale.show(pi_lb)))}, {_fmt(float(scale.show(pi_ub)))}]"
        rows.append(_Row(PI, {"label": "Prediction interval", "effect": text}, est, pi_lb, pi_ub))
    rows += _notes(_heterogeneity(fit))
    return rows


def _subgroups(effects: pd.DataFrame) -> pd.Series:
    """Each study's subgroup as text; "" where it has none."""
    return effects["subgroup"].astype(object).where(effects["subgroup"].notna(), "").astype(str).str.strip()


def _subgroup_levels(effects: pd.DataFrame, result: Mapping) -> list[str] | None:
    """Subgroup levels to draw as blocks, in the result's order, or None for a plain forest."""
    if not _has(effects, "subgroup"):
        return None
    present = set(_subgroups(effects)) - {""}
    by_level, _ = _section(result, "subgroup", "by_level")
    if not present or by_level is None:
        return None
    listed = [str(v) for v in (result["subgroup"].get("levels") or sorted(by_level))]
    return [v for v in listed if v in present] + sorted(present - set(listed))


def _subgroup_block(effects: pd.DataFrame, level: str, result: Mapping, fit_key: str,
                    arm_cols: Sequence[_Col], scale: _Scale) -> list[_Row]:
    """Heading, studies, subtotal and heterogeneity of one subgroup ("" : studies without one)."""
    block = effects[_subgroups(effects) == level]
    heading = _capital(level.replace("_", " ")) if level else "No subgroup"
    rows = [_Row(HEADING, {"label": _label_cell(heading)}), *_study_rows(block, arm_cols, scale)]
    if level:
        fit, reason = _section(result, "subgroup", "by_level", level, fit_key)
        label = f"Subtotal (k = {len(block)})"
        rows += _summary_rows(fit, reason, label, _totals(block, arm_cols), scale, with_pi=False)
    else:
        rows += _notes("Not in the subgroup analysis (no subgroup given)")
    return rows + [_Row(BLANK)]


def _subgroup_test(result: Mapping, fit_key: str, n_levels: int) -> str:
    if n_levels < 2:
        return "Test for subgroup differences: not applicable (one subgroup)"
    test, reason = _section(result, "subgroup", "mixed_effects", fit_key)
    if test is None:
        return f"Test for subgroup differences: not available ({reason})"
    qmdf = test.get("QMdf")  # [m, "NA"] for z tests, [m, k - p] for F tests
    df_text = ", ".join(_fmt(d, 0) for d in map(_num, qmdf if isinstance(qmdf, list) else [qmdf]) if math.isfinite(d))
    stat = "QM" if test.get("test", "z") == "z" else "F"
    return (f"Test for subgroup differences: {stat} = {_fmt(_num(test.get('QM')))}, "
            f"df = {df_text} ({_fmt_p(_num(test.get('QMp')))})")


def _fit_keys(method: str, test: str) -> tuple[str, str]:
    """(section of the main model, key of a fit inside subgroup/metareg) for a test:
    ``rma``/``REML`` for z tests, ``rma_knha``/``REML_knha`` for Knapp-Hartung."""
    if test not in ("z", "knha"):
        raise ValueError(f"test must be 'z' or 'knha', got {test!r}")
    return ("rma", method) if test == "z" else ("rma_knha", f"{method}_knha")


@style.styled()  # texts are measured under the figure style (rcParams are global)
def forest(effects: pd.DataFrame, result: Mapping, *, measure: str, transf: str | None = None,
           method: str = "REML", test: str = "z", title: str | None = None,
           favours: tuple[str, str] = FAVOURS, ax: Axes | None = None) -> Axes:
    """Forest plot with study table, pooled diamond, prediction interval and tests.

    Columns: study label with year (cut with an ellipsis if long; a dagger
    marks low-confidence rows); arm-level data (events and totals, or mean,
    SD and total per arm); the effect and its 95% CI on the displayed scale
    (RR, not log RR, when ``transf="exp"``); the weight in percent. Squares
    have an area proportional to the weight; CIs that leave the axis end in
    an arrow. Below the studies: the pooled diamond, the prediction interval
    as a whisker line under it (k >= 3), heterogeneity (tau^2, I^2, Q, df, p)
    and the test for the overall effect. When ``effects`` has a ``subgroup``
    column and the result has ``subgroup.by_level``, studies come in blocks
    with a header, a subtotal diamond and heterogeneity each (studies with no
    subgroup last, without a subtotal), and the test for subgroup
    differences (QM, df, p of metafor's mixed-effects model) is given last.
    A single study (k = 1) is not drawn as a pooled diamond. A section that is ``{"error": ...}`` is written out as
    "no pooled estimate (<reason>)". The figure's height grows with the rows.

    Parameters
    ----------
    effects : DataFrame
        One row per study (see module docstring); rows are drawn in order.
    result : mapping
        Result under metafor's key paths; uses ``rma.<method>``,
        ``subgroup.by_level.<level>.<method>`` and ``subgroup.mixed_effects.<method>``
        (``rma_knha`` and ``<method>_knha`` when ``test="knha"``), and
        ``analysis.status`` to say why there is no model at all.
    measure : str
        RR, OR, RD, SMD, MD, ROM or GEN.
    transf : {"exp", "none"} or None
        None: "exp" for RR, OR, ROM.
    method : str
        Which fit of each section to show (metafor's ``method``).
    test : {"z", "knha"}
        z tests, or the Knapp-Hartung fits (t and F tests).
    title : str, optional
    favours : (str, str)
        Who is favoured left and right of the line of no effect.
    ax : Axes, optional
        Draw here; the text columns go outside it, so leave room.

    Returns
    -------
    Axes
    """
    scale = _scale(measure, transf)
    model, fit_key = _fit_keys(method, test)
    arm_cols = _arm_columns(effects, favours)
    fit, reason = _section(result, model, method)
    level = _num((fit or {}).get("level", 95))
    cols = (_Col("label", "Study", "left", align="left"), *arm_cols,
            _Col("effect", f"{scale.short} [{level:.0f}% CI]", "right"), _Col("weight", "Weight", "right"))
    levels = _subgroup_levels(effects, result)
    rows: list[_Row] = []
    if levels is None:
        rows += _study_rows(effects, arm_cols, scale) + [_Row(BLANK)]
    else:
        unassigned = [""] if (_subgroups(effects) == "").any() else []
        for lev in levels + unassigned:
            rows += _subgroup_block(effects, lev, result, fit_key, arm_cols, scale)
    k = int(_num(fit.get("k"))) if fit else len(effects)
    status = (result.get("analysis") or {}).get("status", "")
    if fit is None and reason == "not computed" and status:  # the pipeline says why
        reason = status.removeprefix("no pooled estimate: ")
    rows += _summary_rows(fit, reason, f"{_model_name(method)}, k = {k}", _totals(effects, arm_cols),
                          scale, with_pi=True)
    if fit is not None and k > 1:
        rows += _notes(_overall_test(fit))
    if levels is not None:
        rows += _notes(_subgroup_test(result, fit_key, len(levels)))
    if "confidence" in effects and (effects["confidence"].astype(str).str.lower() == "low").any():
        rows += _notes(f"{LOW_CONFIDENCE_MARK.strip()} low-confidence data")
    return _draw_table(_Table(tuple(cols), tuple(rows), scale, title, favours), ax)


# --------------------------------------------------------------------------
# cumulative and leave-one-out forests


def _sequence_rows(sec: Mapping, labels: Sequence[str], scale: _Scale, extra: Sequence[Mapping[str, str]]) -> list[_Row]:
    """POINT rows from metafor's cumul/leave1out arrays (estimate, ci.lb, ci.ub, I2, tau2)."""
    est, lb, ub, i2, tau2 = ([_num(v) for v in sec.get(key, [])] for key in ("estimate", "ci.lb", "ci.ub", "I2", "tau2"))
    rows = []
    for j, label in enumerate(labels):
        cells = {"label": _label_cell(label), **extra[j], "effect": scale.effect(est[j], lb[j], ub[j]),
                 "i2": f"{_fmt(i2[j], 0)}%" if j < len(i2) and math.isfinite(i2[j]) else DASH,
                 "tau2": _fmt_small(tau2[j]) if j < len(tau2) else DASH}
        rows.append(_Row(POINT, cells, est[j], lb[j], ub[j]))
    return rows


def _sequence_cols(first: str, scale: _Scale, level: float, left: Sequence[_Col] = ()) -> tuple[_Col, ...]:
    return (_Col("label", first, "left", align="left"), *left,
            _Col("effect", f"{scale.short} [{level:.0f}% CI]", "right"),
            _Col("i2", "I\u00b2", "right"), _Col("tau2", "\u03c4\u00b2", "right"))


def _years_by_slab(effects: pd.DataFrame | None) -> dict[str, str]:
    """Study label (made unique as metafor's slab) -> year, when the effects table has both."""
    if effects is None or not _has(effects, "year") or "label" not in effects:
        return {}
    slabs = make_unique([str(v) for v in effects["label"]])
    return {s: _fmt_count(_num(y)) for s, y in zip(slabs, effects["year"])}


@style.styled()  # texts are measured under the figure style (rcParams are global)
def cumulative(result: Mapping, *, measure: str, transf: str | None = None, method: str = "REML",
               title: str | None = None, favours: tuple[str, str] = FAVOURS,
               effects: pd.DataFrame | None = None, ax: Axes | None = None) -> Axes:
    """Cumulative forest: the pooled estimate as studies are added in order of year.

    Row j shows the fit on the first j studies (metafor ``cumul(fit,
    order=year)``), with its CI, I^2 and tau^2; a dashed line marks the
    final estimate. An error section is shown as a note.

    Parameters
    ----------
    result : mapping
        Uses ``cumul.<method>`` (slab, estimate, ci.lb, ci.ub, I2, tau2) and
        ``rma.<method>`` for the final estimate.
    measure, transf, method, title, favours
        As in :func:`forest`.
    effects : DataFrame, optional
        When given with ``label`` and ``year``, a year column is added
        (labels matched to metafor's unique slabs) unless the labels carry
        the year already.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    scale = _scale(measure, transf)
    sec, reason = _section(result, "cumul", method)
    fit, _ = _section(result, "rma", method)
    level = _num((fit or {}).get("level", 95))
    years = _years_by_slab(effects)
    if all(year in slab for slab, year in years.items()):  # labels such as "Anton 1999" say it already
        years = {}
    labels = [str(s) for s in (sec or {}).get("slab", [])]
    year_col = (_Col("year", "Year", "left"),) if years else ()
    extra = [{"year": years.get(s, ""), "k": str(j + 1)} for j, s in enumerate(labels)]
    cols = _sequence_cols("Study added", scale, level, (*year_col, _Col("k", "k", "left")))
    if sec is None:
        rows = _notes(f"Cumulative meta-analysis not available ({reason})")
    else:
        rows = _sequence_rows(sec, labels, scale, extra)
    band = (rows[-1].est,) * 3 if sec is not None and labels else None  # final estimate, no band
    return _draw_table(_Table(cols, tuple(rows), scale, title, favours, band), ax)


@style.styled()  # texts are measured under the figure style (rcParams are global)
def leave_one_out(result: Mapping, *, measure: str, transf: str | None = None, method: str = "REML",
                  title: str | None = None, favours: tuple[str, str] = FAVOURS,
                  ax: Axes | None = None) -> Axes:
    """Leave-one-out forest: the pooled estimate with each study omitted in turn.

    Each row is the fit without that study (metafor ``leave1out``), with its
    CI, I^2 and tau^2. The estimate from all studies is drawn as a diamond at
    the bottom and as a shaded band (its CI) with a dashed line through the
    rows, so that an influential study stands out as a row outside the band.

    Parameters
    ----------
    result : mapping
        Uses ``leave1out.<method>`` and ``rma.<method>``.
    measure, transf, method, title, favours, ax
        As in :func:`forest`.

    Returns
    -------
    Axes
    """
    scale = _scale(measure, transf)
    sec, reason = _section(result, "leave1out", method)
    fit, fit_reason = _section(result, "rma", method)
    level = _num((fit or {}).get("level", 95))
    cols = _sequence_cols("Study omitted", scale, level)
    rows: list[_Row] = []
    if sec is None:
        rows += _notes(f"Leave-one-out analysis not available ({reason})")
    else:
        labels = [str(s) for s in sec.get("slab", [])]
        rows += _sequence_rows(sec, labels, scale, [{}] * len(labels))
    rows.append(_Row(BLANK))
    k = int(_num(fit.get("k"))) if fit else 0
    band = None
    if fit is not None:
        est, lb, ub = _interval(fit)
        cells = {"label": f"All studies (k = {k})", "effect": scale.effect(est, lb, ub),
                 "i2": f"{_fmt(_num(fit.get('I2')), 0)}%", "tau2": _fmt_small(_num(fit.get("tau2")))}
        rows.append(_Row(DIAMOND, cells, est, lb, ub))
        band = (est, lb, ub)
    else:
        rows += _notes(f"All studies: no pooled estimate ({fit_reason})")
    return _draw_table(_Table(cols, tuple(rows), scale, title, favours, band), ax)


# --------------------------------------------------------------------------
# funnel and bubble plots


def _finite(effects: pd.DataFrame, *cols: str) -> list[np.ndarray]:
    """Columns as float arrays, keeping rows where all of them are finite."""
    arrays = [pd.to_numeric(effects[c], errors="coerce").to_numpy(dtype=float) for c in cols]
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return [a[keep] for a in arrays]


def _set_effect_axis(ax: Axes, which: str, scale: _Scale, lo: float, hi: float) -> None:
    """Scale, nice ticks and limits of the x or y effect axis, from analysis-scale limits."""
    ticks = _nice_limits(lo, hi, scale.log)
    axis = getattr(ax, f"{which}axis")
    getattr(ax, f"set_{which}scale")("log" if scale.log else "linear")
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_ticklabels([_tick_label(t) for t in ticks])
    getattr(ax, f"set_{which}lim")(ticks[0], ticks[-1])


def _figure_ax(ax: Axes | None, width_in: float, height_in: float, rect: tuple[float, float, float, float]) -> Axes:
    return style.new_axes(width_in, height_in, rect) if ax is None else ax


@style.styled()  # texts are measured under the figure style (rcParams are global)
def funnel(effects: pd.DataFrame, result: Mapping, *, measure: str, transf: str | None = None,
           method: str = "REML", title: str | None = None, ax: Axes | None = None) -> Axes:
    """Contour-enhanced funnel plot (Peters et al. 2008) with trim-and-fill studies.

    Each study is a filled circle at its effect (x) and standard error (y,
    inverted, 0 at the top). The background is shaded by the two-sided p
    value a study at that point would have against no effect: white for
    p >= 0.10, then darker greys for 0.05-0.10, 0.01-0.05 and p < 0.01, so
    that missing studies in the white region suggest publication bias and
    missing studies in the grey regions suggest other causes. A solid line
    marks the pooled estimate with dashed pseudo-95% limits around it;
    studies imputed by trim and fill (``trimfill.<method>``: ``yi_all``,
    ``vi_all``, ``filled``) are open circles, with the adjusted estimate as
    a dotted line. A missing or failed trim and fill is said in the legend.

    Parameters
    ----------
    effects : DataFrame
        Uses ``yi`` and ``sei``.
    result : mapping
        Uses ``rma.<method>`` and ``trimfill.<method>``.
    measure, transf, method, title
        As in :func:`forest`.
    ax : Axes, optional
        The legend goes to the right of it.

    Returns
    -------
    Axes
    """
    scale = _scale(measure, transf)
    yi, sei = _finite(effects, "yi", "sei")
    fit, fit_reason = _section(result, "rma", method)
    tf, tf_reason = _section(result, "trimfill", method)
    filled_yi = filled_se = np.array([])
    if tf is not None and tf.get("filled") is not None:
        mask = np.array([bool(f) for f in tf["filled"]])
        filled_yi = np.array([_num(v) for v in tf["yi_all"]])[mask]
        filled_se = np.sqrt(np.array([_num(v) for v in tf["vi_all"]])[mask])
    se_max = FUNNEL_SE_HEADROOM * max([*sei, *filled_se, 1e-3])
    z_edge = stats.norm.isf(FUNNEL_CONTOURS[0][0] / 2)
    lo = min([-z_edge * se_max, *yi, *filled_yi])
    hi = max([z_edge * se_max, *yi, *filled_yi])
    ax = _figure_ax(ax, *FUNNEL_SIZE_IN, FUNNEL_RECT)
    _set_effect_axis(ax, "x", scale, lo, hi)
    ax.set_ylim(se_max, 0)
    se = np.linspace(0, se_max, FUNNEL_GRID)
    ax.set_facecolor(style.SHADE)
    handles = [Patch(facecolor=style.SHADE, label=f"p < {FUNNEL_CONTOURS[0][0]:.2f}")]
    for i, (p, shade) in enumerate(FUNNEL_CONTOURS):  # outermost first: inner regions paint over
        z = stats.norm.isf(p / 2)
        ax.fill_betweenx(se, scale.show(-z * se), scale.show(z * se), color=shade, lw=0, zorder=0)
        upper = FUNNEL_CONTOURS[i + 1][0] if i + 1 < len(FUNNEL_CONTOURS) else None
        label = f"{p:.2f} \u2264 p < {upper:.2f}" if upper else f"p \u2265 {p:.2f}"
        handles.append(Patch(facecolor=shade, label=label))
    handles.reverse()
    for patch in handles:
        patch.set(edgecolor=style.MID, lw=style.THIN_LINE)
    if fit is not None:
        est = _num(fit.get("estimate"))
        crit = stats.norm.isf((1 - _num(fit.get("level", 95)) / 100) / 2)
        ax.plot(scale.show(np.array([est, est])), [0, se_max], color=style.INK, lw=style.LINE_WIDTH)
        for sign in (-1, 1):
            ax.plot(scale.show(est + sign * crit * se), se, color=style.INK, lw=style.THIN_LINE, ls="--")
        handles.append(Line2D([], [], color=style.INK, lw=style.LINE_WIDTH, label=f"Pooled estimate ({method})"))
        handles.append(Line2D([], [], color=style.INK, lw=style.THIN_LINE, ls="--", label="Pseudo 95% limits"))
    ax.plot(scale.show(yi), sei, ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.INK, mec=style.PAPER,
            mew=style.THIN_LINE, zorder=3)
    handles.append(Line2D([], [], ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.INK, mec=style.PAPER,
                          label=f"Studies (k = {len(yi)})"))
    if filled_yi.size:
        ax.plot(scale.show(filled_yi), filled_se, ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.PAPER,
                mec=style.INK, mew=style.LINE_WIDTH, zorder=3)
        handles.append(Line2D([], [], ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.PAPER, mec=style.INK,
                              label=f"Imputed by trim and fill ({filled_yi.size})"))
    if tf is not None:
        adj = _num(tf.get("estimate"))
        ax.plot(scale.show(np.array([adj, adj])), [0, se_max], color=style.INK, lw=style.LINE_WIDTH, ls=":")
        handles.append(Line2D([], [], color=style.INK, lw=style.LINE_WIDTH, ls=":",
                              label=f"Trim-and-fill estimate: {_fmt(float(scale.show(adj)))}"))
    else:
        handles.append(Line2D([], [], lw=0, label=_wrap(f"Trim and fill not available ({tf_reason})")))
    if fit is None:
        handles.append(Line2D([], [], lw=0, label=_wrap(f"No pooled estimate ({fit_reason})")))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0,
              handlelength=1.6)
    ax.set_xlabel(scale.axis_label)
    ax.set_ylabel("Standard error")
    ax.set_axisbelow(False)
    if title:
        ax.set_title(title, loc="left", fontweight="bold")
    return ax


def _wrap(text: str, width: int = 34) -> str:
    return textwrap.fill(text, width)


def _metareg_vcov(reg: Mapping, x: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Covariance of (intercept, slope): ``reg["vcov"]`` if given, else metafor's
    ``s2w * (X' W X)^-1`` with ``W = diag(1 / (vi + tau2))`` (``s2w`` = 1 for z tests)."""
    if reg.get("vcov") is not None:
        return np.array([[_num(v) for v in row] for row in reg["vcov"]])
    w = 1.0 / (vi + _num(reg.get("tau2")))
    xtwx = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    s2w = _num(reg.get("s2w", 1.0))
    return (s2w if math.isfinite(s2w) else 1.0) * np.linalg.inv(xtwx)


def _metareg_line(reg: Mapping, moderator: str, x: np.ndarray, vi: np.ndarray,
                  grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fitted line and its CI over ``grid`` (analysis scale) from an intercept + slope model."""
    coef = reg["coefficients"]
    names = list(coef["names"])
    if len(names) != 2 or moderator not in names:
        raise ValueError(f"bubble plot needs a model of intercept + {moderator}, got {names}")
    b = np.array([_num(v) for v in coef["estimate"]])
    order = [1 - names.index(moderator), names.index(moderator)]  # (intercept, slope)
    b = b[order]
    vcov = _metareg_vcov(reg, x, vi)
    df = _num(coef.get("df"))
    q = 1 - (1 - _num(reg.get("level", 95)) / 100) / 2
    crit = stats.t.ppf(q, df) if math.isfinite(df) else stats.norm.ppf(q)
    fitted = b[0] + b[1] * grid
    se = np.sqrt(vcov[0, 0] + 2 * grid * vcov[0, 1] + grid ** 2 * vcov[1, 1])
    return fitted, fitted - crit * se, fitted + crit * se


def _metareg_summary(reg: Mapping, moderator: str, scale: _Scale) -> str:
    """Two lines: the slope with CI and p (on the analysis scale), then tau^2 and R^2."""
    coef = reg["coefficients"]
    j = list(coef["names"]).index(moderator)
    est, lb, ub, p = (_num(coef[key][j]) for key in ("estimate", "ci.lb", "ci.ub", "pval"))
    on = f" (log {scale.short})" if scale.log else ""
    r2 = _num(reg.get("R2"))
    return (f"Slope{on} {_fmt(est, 3)} per unit of {moderator} "
            f"({_fmt(_num(reg.get('level', 95)), 0)}% CI {_fmt(lb, 3)} to {_fmt(ub, 3)}), {_fmt_p(p)}\n"
            f"Residual \u03c4\u00b2 = {_fmt_small(_num(reg.get('tau2')))}"
            + (f"; R\u00b2 = {_fmt(r2, 0)}%" if math.isfinite(r2) else ""))


@style.styled()  # texts are measured under the figure style (rcParams are global)
def bubble(effects: pd.DataFrame, result: Mapping, moderator: str | None = None, *, measure: str,
           transf: str | None = None, method: str = "REML", test: str = "z", title: str | None = None,
           ax: Axes | None = None) -> Axes:
    """Meta-regression bubble plot: effect against a moderator, with the fitted line.

    Each study is an open circle whose area is proportional to its weight in
    the meta-regression, ``1 / (vi + tau2)`` with the residual tau^2. The
    fitted line and its CI band come from ``metareg.<method>.coefficients``
    (intercept and slope) and the coefficients' covariance: ``vcov`` when the
    result has it, else rebuilt as metafor does, ``s2w (X'WX)^-1``. The slope,
    its CI and p, the residual tau^2 and R^2 are written above the plot. An
    error section leaves the studies drawn and says why there is no line.

    Parameters
    ----------
    effects : DataFrame
        Uses ``yi``, ``vi`` and the moderator column.
    result : mapping
        Uses ``metareg_by.<moderator>.<method>`` when present (the pipeline
        fits one model per moderator), else ``metareg.<method>`` (and
        ``metareg.moderator`` when ``moderator`` is None).
    moderator : str, optional
        Column of ``effects`` and coefficient name in the model.
    measure, transf, method, test, title
        As in :func:`forest`.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    scale = _scale(measure, transf)
    moderator = moderator or (result.get("metareg") or {}).get("moderator")
    if not moderator or moderator not in effects:
        raise ValueError(f"bubble plot: moderator {moderator!r} is not a column of the effects table")
    x, yi, vi = _finite(effects, moderator, "yi", "vi")
    by = "metareg_by" in result and moderator in result["metareg_by"]  # one model per moderator
    reg, reason = _section(result, *(("metareg_by", moderator) if by else ("metareg",)), _fit_keys(method, test)[1])
    ax = _figure_ax(ax, *BUBBLE_SIZE_IN, BUBBLE_RECT)
    tau2 = _num(reg.get("tau2")) if reg is not None else 0.0
    w = 1.0 / (vi + (tau2 if math.isfinite(tau2) else 0.0))
    grid = np.linspace(x.min(), x.max(), BUBBLE_GRID)
    span = [*yi]
    note = f"No meta-regression line ({reason})"
    if reg is not None:
        try:
            fitted, lb, ub = _metareg_line(reg, moderator, x, vi, grid)
        except ValueError as exc:  # a model with other coefficients: say so on the plot
            reg, note = None, f"No meta-regression line ({exc})"
    if reg is not None:
        span += [*lb, *ub]
        ax.fill_between(grid, scale.show(lb), scale.show(ub), color=style.FAINT, lw=0, zorder=0)
        ax.plot(grid, scale.show(fitted), color=style.INK, lw=style.LINE_WIDTH * 1.5, zorder=2)
        note = _metareg_summary(reg, moderator, scale)
    ax.scatter(x, scale.show(yi), s=BUBBLE_MAX_PT2 * w / w.max(), facecolors=style.TRANSLUCENT,
               edgecolors=style.INK, linewidths=style.LINE_WIDTH, zorder=3)
    ax.axhline(scale.null, color=style.INK, lw=style.THIN_LINE, ls=":", zorder=1)
    pad = BUBBLE_PAD * (max(span) - min(span) or 1.0)
    _set_effect_axis(ax, "y", scale, min(span) - pad, max(span) + pad)
    xpad = BUBBLE_PAD * (x.max() - x.min() or 1.0)
    ax.set_xlim(x.min() - xpad, x.max() + xpad)
    ax.set_xlabel(moderator)
    ax.set_ylabel(scale.axis_label)
    ax.annotate("\n".join(_wrap(line, BUBBLE_NOTE_CHARS) for line in note.split("\n")), xy=(0, 1), xycoords="axes fraction", xytext=(0, 6),
                textcoords="offset points", ha="left", va="bottom", fontsize=style.SMALL_SIZE,
                color=style.DARK, parse_math=False)
    if title:
        ax.set_title(title, loc="left", fontweight="bold", pad=BUBBLE_TITLE_PAD_PT)
    return ax
