"""Publication figures: forest, funnel, cumulative, leave-one-out and bubble plots.

Every function takes plain data, never file paths:

- ``result``: the :class:`~ntxmeta.result.AnalysisResult` of the analysis
  (``results/analyses/{analysis}/result.json`` read with
  :func:`~ntxmeta.result.read_result`). Every number in it is on the
  analysis scale; ``result.scale`` says how to show it (``scale.show``, a
  log axis when ``scale.log``, ``scale.null``, ``scale.name``,
  ``scale.axis_label``). The title is ``result.title``; the model is
  ``result.method`` / ``Pooled.model`` and ``result.test``.
- ``effects``: the analysis's effects table
  (``data/processed/effects/{analysis}.csv``), one row per study in the
  order of ``result.weights_pct`` and ``result.used``: ``label``, ``year``,
  ``subgroup``, ``yi``, ``vi``, ``sei``, ``ci_lb``, ``ci_ub`` (analysis
  scale), arm-level columns, ``confidence`` and each row's risk of bias
  (``rob_d1_randomisation`` ... ``rob_d5_reporting``, ``rob_overall``;
  :func:`ntxmeta.rob.judgements_of`).

The plots compute no statistic: every estimate, interval, test, weight,
fitted line and trim-and-fill study is read from the result; what is done
here is formatting and geometry (the funnel's significance contours and
pseudo-confidence limits around the main estimate, marker areas
proportional to weights, sums of the arm counts shown in subtotal rows).
A part the result does not have (``None``) is said on the figure, with
its reason when the result gives one (``note``, ``status``, ``failed``).

Each function takes ``ax=None`` and returns the Axes it drew on (STYLE.md
habit 12); with ``ax=None`` it makes its own Agg-backed Figure, sized to its
content. The look comes from :mod:`ntxmeta.style`; no pyplot state is used.
Each also takes ``options=`` (:class:`ntxmeta.figopts.FigureOptions`, the
config's ``figures``): a width the figure is laid out to, the font size,
the effect axis' limits and ticks, the forest's order and columns, the
favours and axis texts, colours or greyscale; the default options draw the
figures exactly as without them. Codes of the data are shown by their
display names (:mod:`ntxmeta.labels`: "Nausea", "XR injection",
"Follow-up (weeks)").

The forest, cumulative and leave-one-out plots are one table engine: a list
of rows (text cells plus an interval, square, diamond or prediction
interval) drawn as text columns left and right of an effect axis. Column
widths are measured with the renderer before anything is placed, long study
labels are cut with an ellipsis, and spanning notes (heterogeneity, tests)
widen the left block rather than run into the plot, so no two texts overlap.
A column may hold dots instead of text: the forest's risk-of-bias columns,
one per RoB 2 domain and one for the overall judgement, drawn by
:func:`ntxmeta.robplots.draw_judgement` as the traffic light draws them.
Those columns sit outside the Axes: when you pass your own ``ax``, leave
room on both sides of it.

Conventions: a ratio below 1 (or a difference below 0) favours naltrexone
(DESIGN.md), so ``FAVOURS[0]`` is written left of the line of no effect.

References
----------
1. Peters JL, Sutton AJ, Jones DR, Abrams KR, Rushton L. Contour-enhanced
   meta-analysis funnel plots help distinguish publication bias from other
   causes of asymmetry. J Clin Epidemiol 2008;61:991-6.
2. IntHout J, Ioannidis JPA, Rovers MM, Goeman JJ. Plea for routinely
   presenting prediction intervals in meta-analysis. BMJ Open 2016;6:e010247.
3. Viechtbauer W. Conducting meta-analyses in R with the metafor package.
   J Stat Softw 2010;36(3) (forest, funnel, cumul, leave1out, regplot).
4. Higgins JPT et al. (eds). Cochrane Handbook for Systematic Reviews of
   Interventions, version 6.4, 2023, section 10.11.3.1 (RevMan's test for
   subgroup differences and its I^2).
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from . import rob, robplots, style
from ._common import z_crit
from .data import make_unique
from .figopts import DEFAULT as DEFAULT_FIGURE, DEFAULT_PLOT, FigureOptions, PlotOptions
from .labels import UNITS, display
from .result import AnalysisResult, MetaRegression, Pooled, Scale, Series, SubgroupLevel, Test
from .style import save_figure

__all__ = ["forest", "funnel", "cumulative", "leave_one_out", "bubble", "save_figure"]

FAVOURS = ("naltrexone", "control")
#: Estimators of a common-effect model (no tau^2, no prediction interval).
COMMON_MODELS = {"EE": "", "FE": "", "CE": "", "MH": "Mantel-Haenszel", "Peto": "Peto"}

#: Table geometry, in inches. A row of 0.19 in fits 8 pt text with air.
ROW_IN = 0.19
COL_GAP_IN = 0.12          # between two text columns
#: Risk-of-bias columns (RevMan's, right of the weights): a dot of 10 pt with
#: a 6-pt symbol fits a 0.19-in (13.7-pt) row with air above and below (the
#: traffic light's 12-pt dot would all but touch the next row's), and dots
#: of adjacent domains stand this far apart; the overall column keeps the
#: gap of a text column, to set it off from the domains.
ROB_DOT_PT = 10.0
ROB_SYMBOL_PT = 6.0
ROB_GAP_IN = 0.04
PLOT_GAP_IN = 0.18         # between a text block and the plot
PLOT_IN = 2.3              # width of the effect axis
LABEL_MAX_IN = 1.8         # study labels longer than this are cut with an ellipsis
MARGIN_IN = 0.1
POINTS_PER_IN = 72.0
#: Where a column's anchor sits in its width, by the column's alignment.
ALIGN_AT = {"left": 0.0, "center": 0.5, "right": 1.0}
#: Figure kinds whose size is computed from their content (a table beside an
#: effect axis, MARGIN_IN of white on every side): they are saved as they
#: are (``save_figure(..., crop=False)``), without the tight crop that
#: would lay every text out once more. tests/test_plots.py checks that
#: nothing of them reaches beyond the figure.
LAID_OUT = frozenset({"forest", "cumulative", "leave_one_out"})
#: Figure kinds that take a requested width (``FigureOptions.width_in``) by
#: fitting their Axes into it: saved uncropped too when a width is set.
WIDTH_FITTED = frozenset({"funnel", "bubble"})
NOTE_MAX_IN = 4.2          # notes (heterogeneity, tests, errors) wrap beyond this width
NOTE_INDENT = "    "
AXIS_PAD_ROWS = 0.4        # space between the last row and the x axis, in rows
AXIS_SPACE_IN = 0.62       # below the table: tick labels, favours labels, axis label
#: Squares: side in points for the largest weight of the analysis, and the
#: least side so that a study with a tiny weight stays visible. Area is
#: proportional to the study's weight in the overall model, in every block:
#: a study alone in its subgroup is as big as its overall weight says.
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
#: is not estimable in any useful sense (IntHout et al. 2016; the result
#: has no ``pi`` then either).
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
FUNNEL_LEGEND_CHARS = 34
#: A funnel narrower than its default width (a requested width) has its
#: legend under the plot, below the axis title (this far under the Axes, in
#: inches at 8 pt), in a figure this much taller.
FUNNEL_LEGEND_BELOW_IN = 0.5
FUNNEL_BELOW_EXTRA_IN = 1.8
#: Bubble plot: area in pt^2 of the most precise study, margins as a fraction
#: of the data range, and the wrap width of the summary line.
BUBBLE_MAX_PT2 = 400.0
BUBBLE_PAD = 0.06
BUBBLE_NOTE_CHARS = 80
BUBBLE_NOTE_MIN_CHARS = 30
BUBBLE_NOTE_OFFSET_PT = 6.0   # summary text above the plot
BUBBLE_LINE_PT = 1.25 * style.SMALL_SIZE  # height of one summary line
BUBBLE_TITLE_GAP_PT = 4.0     # between the summary and the title
BUBBLE_SIZE_IN = (5.0, 4.0)
BUBBLE_RECT = (0.13, 0.12, 0.83, 0.7)
MINUS = "\u2212"
DASH = "\u2013"
TAU2 = "\u03c4\u00b2"
I2 = "I\u00b2"
#: How a test's name is printed.
TEST_NAMES = {"Chi2": "Chi\u00b2", "tau": "Kendall's \u03c4"}

# Row kinds of the table engine. EXCLUDED: a study row that does not enter
# the models (``result.used`` False): its CI is drawn in grey, without a square.
STUDY, EXCLUDED, POINT, DIAMOND, PI, HEADING, NOTE, BLANK = (
    "study", "excluded", "point", "diamond", "pi", "heading", "note", "blank")
_GRAPHIC_KINDS = (STUDY, EXCLUDED, POINT, DIAMOND, PI)


# --------------------------------------------------------------------------
# numbers and words


def _num(x: Any) -> float:
    """A table cell as float (NaN for None, text and missing values)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def _fmt(x: float, digits: int = 2) -> str:
    """Fixed decimals with a typographic minus; NaN as an en dash."""
    return _minus(f"{x:.{digits}f}") if math.isfinite(x) else DASH


def _fmt_p(p: float, letter: str = "p") -> str:
    if not math.isfinite(p):
        return f"{letter} = {DASH}"
    if p < 0.001:
        return f"{letter} < 0.001"
    return f"{letter} = {p:.3f}" if p < 0.01 else f"{letter} = {p:.2f}"


def _fmt_small(x: float) -> str:
    """tau^2 and the like: 2 decimals, 3 below 0.01, "< 0.001" below that."""
    if not math.isfinite(x):
        return DASH
    if x == 0:
        return "0"
    if x >= 0.01:
        return _fmt(x, 2)
    return "< 0.001" if x < 0.001 else _fmt(x, 3)


def _is(name: str, value: str) -> str:
    """'name = value', or 'name < 0.001' when the value is a bound."""
    return f"{name} {value}" if value[:1] in "<>" else f"{name} = {value}"


def _fmt_df(df: float) -> str:
    return f"{df:.0f}" if abs(df - round(df)) < 1e-9 else f"{df:.2f}"


def _fmt_count(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else ""


def _test_text(t: Test, letter: str = "p") -> str:
    """'z = -3.78 (p < 0.001)', 't = -2.10, df = 11 (p = 0.06)', 'QM = 1.35, df = 2 (p = 0.51)'."""
    name = TEST_NAMES.get(t.name, t.name)
    df = f", df = {_fmt_df(t.df)}" if t.df is not None and math.isfinite(t.df) else ""
    return f"{name} = {_fmt(t.statistic)}{df} ({_fmt_p(t.pval, letter)})"


def _capital(word: str) -> str:
    return word[:1].upper() + word[1:]


def _level_label(level: str) -> str:
    """A subgroup level for a reader: 'xr_injection' -> 'XR injection', 'oral' -> 'Oral'.

    The display name of :data:`ntxmeta.labels.LABELS`; a level not in it has
    its underscores as spaces, a capital first letter and its acronyms in
    capitals (:func:`ntxmeta.labels.display`).
    """
    return display(level)


def _in_text(name: str) -> str:
    """A display name inside a sentence: first letter lower-cased unless it starts an acronym."""
    return name if name[1:2].isupper() else name[:1].lower() + name[1:]


def _effect(scale: Scale, est: float, lb: float, ub: float, digits: int = 2) -> str:
    """'0.49 [0.34, 0.70]' on the shown scale."""
    est, lb, ub = (float(scale.show(v)) for v in (est, lb, ub))
    return f"{_fmt(est, digits)} [{_fmt(lb, digits)}, {_fmt(ub, digits)}]"


def _model_name(model: str) -> str:
    """'Random-effects model (REML)', 'Common-effect model', 'Common-effect model (Peto)'."""
    if model in COMMON_MODELS:
        how = COMMON_MODELS[model]
        return f"Common-effect model ({how})" if how else "Common-effect model"
    return f"Random-effects model ({model})"


def _model_words(model: str, test: str) -> str:
    """The model of a table's rows in running text, with the test when it is Hartung-Knapp."""
    name = _model_name(model)
    return name[:1].lower() + name[1:] + (", Hartung-Knapp CI" if test == "knha" else "")


def _failure(result: AnalysisResult, part: str) -> str | None:
    """The message of a part that failed unexpectedly (``result.failed``), if any."""
    for entry in result.failed:
        name, _, message = entry.partition(": ")
        if name == part:
            return message
    return None


def _no_pool_reason(result: AnalysisResult) -> str:
    """Why the result has no main estimate, from ``failed`` or ``status``."""
    failed = _failure(result, "main")
    if failed:
        return failed
    return result.status.removeprefix("no pooled estimate: ") or "not computed"


def missing_reason(result: AnalysisResult, part: str) -> str:
    """Why an optional part of the result is None."""
    failed = _failure(result, part)
    if failed:
        return failed
    if result.main is None:
        return _no_pool_reason(result)
    return "not computed"


def _heterogeneity(fit: Pooled) -> str | None:
    """'Heterogeneity: tau^2 = ..; I^2 = ..%; Q = .., df = .. (p ..)' of one fit."""
    het = fit.heterogeneity
    if fit.k < 2:
        return f"Heterogeneity: not applicable (k = {fit.k})"
    if het is None:
        return None
    tau2 = "" if fit.model in COMMON_MODELS else _is(TAU2, _fmt_small(het.tau2)) + "; "
    from_q = (f" ({I2} from Q = {_fmt(het.i2_q_pct, 0)}%)"
              if math.isfinite(het.i2_q_pct) and fit.model not in COMMON_MODELS
              and round(het.i2_q_pct) != round(het.i2_pct) else "")
    return (f"Heterogeneity: {tau2}{I2} = {_fmt(het.i2_pct, 0)}%{from_q}; "
            f"Q = {_fmt(het.q)}, df = {het.q_df} ({_fmt_p(het.q_pval)})")


def _overall_test(fit: Pooled) -> str:
    """'Test for overall effect: z = .. (p ..)', or 't = .., df = ..' for Hartung-Knapp."""
    how = {"knha": " (Hartung-Knapp)", "adhoc": " (Hartung-Knapp, ad hoc variance floor)"
           }.get(fit.test, "")
    return f"Test for overall effect{how}: {_test_text(fit.test_stat)}"


# --------------------------------------------------------------------------
# the table engine behind forest, cumulative and leave-one-out plots


@dataclass(frozen=True)
class _Col:
    """A text column left or right of the plot; ``group`` spans adjacent columns.

    ``gap_in`` is the space before the column (from the one left of it);
    a ``dot`` column's cells are risk-of-bias judgements, each drawn as a
    dot (:func:`ntxmeta.robplots.draw_judgement`), not as text.
    """

    key: str
    header: str
    side: str
    align: str = "right"
    group: str = ""
    gap_in: float = COL_GAP_IN
    dot: bool = False


@dataclass(frozen=True)
class _Row:
    """One table row: cells by column key, plus its graphic on the analysis scale.

    ``area`` (STUDY rows) is the marker area as a fraction of the largest.
    NOTE rows carry their text in ``cells["note"]``; it spans the left block.
    ``ref`` is the effects row of a study row (it names the row's dots).
    """

    kind: str
    cells: Mapping[str, str] = field(default_factory=dict)
    est: float = math.nan
    lb: float = math.nan
    ub: float = math.nan
    area: float = 1.0
    ref: int = -1


@dataclass(frozen=True)
class _Table:
    cols: tuple[_Col, ...]
    rows: tuple[_Row, ...]
    scale: Scale
    title: str | None = None
    favours: tuple[str, str] = FAVOURS
    band: tuple[float, float, float] | None = None  # (est, lb, ub): shaded reference
    options: FigureOptions = DEFAULT_FIGURE   # width, font size, colours
    plot: PlotOptions = DEFAULT_PLOT          # axis limits and ticks, labels


def _row_font(kind: str):
    """Font of a row kind: notes small, headings (and column headers) and pooled rows bold."""
    if kind == NOTE:
        return style.font(style.SMALL_SIZE)
    return style.font(weight="bold" if kind in (HEADING, DIAMOND) else "normal")


def _notes(text: str, max_in: float = NOTE_MAX_IN) -> list[_Row]:
    """A note as NOTE rows, wrapped at spaces to at most ``max_in`` wide."""
    prop = _row_font(NOTE)
    lines = [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and style.text_width_in(candidate, prop) > max_in:
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
        if not col.dot:
            texts += [(row.cells[col.key], _row_font(row.kind)) for row in table.rows
                      if col.key in row.cells]
        widths[col.key] = max(style.text_width_in(t, p) for t, p in texts)
        if col.dot:
            widths[col.key] = max(widths[col.key], ROB_DOT_PT / POINTS_PER_IN)

    def run(cols: Sequence[_Col]) -> float:
        return sum(widths[c.key] for c in cols) + sum(c.gap_in for c in cols[1:])

    for name in sorted({c.group for c in table.cols if c.group}):  # a group header wider than its columns
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
        for n, col in enumerate(cols):
            x += col.gap_in if n else 0.0
            anchor[col.key] = x + widths[col.key] * ALIGN_AT[col.align]
            if col.group:
                lo, _ = span.get(col.group, (x, x))
                span[col.group] = (lo, x + widths[col.key])
            x += widths[col.key]
    return _Layout(anchor, span, run(left) + PLOT_GAP_IN, run(right) + PLOT_GAP_IN if right else 0.0)


def _nice_limits(lo: float, hi: float, log: bool) -> list[float]:
    """Ticks (shown scale) whose first and last enclose [lo, hi] (analysis scale)."""
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


def _configured_axis(plot: PlotOptions, log: bool) -> tuple[tuple[float, float], list[float]] | None:
    """(limits, ticks) of the effect axis from the options (shown scale), or None.

    Ticks given without limits set the limits to the first and last tick;
    limits without ticks get nice ticks within them (:func:`_nice_limits`).
    """
    if plot.limits is None and plot.ticks is None:
        return None
    if plot.limits is None:
        return (plot.ticks[0], plot.ticks[-1]), list(plot.ticks)
    lo, hi = plot.limits
    if plot.ticks is not None:
        ticks = list(plot.ticks)
    else:
        to = (lambda v: math.log(v)) if log else (lambda v: v)
        ticks = [t for t in _nice_limits(to(lo), to(hi), log) if lo - 1e-12 <= t <= hi + 1e-12]
    return (lo, hi), [t for t in ticks if lo - 1e-12 <= t <= hi + 1e-12]


def _axis_ticks(table: _Table) -> list[float]:
    """Ticks of the effect axis: all estimates, pooled intervals and the null in
    view; study intervals too unless they would squash the rest (then clipped)."""
    core = [0.0]  # the null on the analysis scale
    wide = []
    for row in table.rows:
        if row.kind in (DIAMOND, PI):
            core += [row.est, row.lb, row.ub]
        elif row.kind in (STUDY, EXCLUDED, POINT):
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


def _draw_interval(ax: Axes, y: float, lb: float, ub: float, lim: tuple[float, float],
                   color: Any = style.INK) -> None:
    """A CI line clipped to the axis, with an arrowhead where it runs off."""
    lo, hi = lim
    a, b = max(lb, lo), min(ub, hi)
    if a < b:
        ax.plot([a, b], [y, y], color=color, lw=style.LINE_WIDTH, solid_capstyle="butt")
    for beyond, edge, marker in ((lb < lo, lo, "<"), (ub > hi, hi, ">")):
        if beyond:
            ax.plot([edge], [y], marker=marker, ms=ARROW_PT, color=color, clip_on=False, lw=0)


def _square_side(area: float) -> float:
    """Side in points of a study's square: area proportional to its weight."""
    return max(SQUARE_MIN_PT, SQUARE_MAX_PT * math.sqrt(max(area, 0.0)))


def _draw_graphic(ax: Axes, y: float, row: _Row, scale: Scale, lim: tuple[float, float],
                  options: FigureOptions = DEFAULT_FIGURE) -> None:
    est, lb, ub = (float(scale.show(v)) for v in (row.est, row.lb, row.ub))
    if not math.isfinite(est) and row.kind != PI:
        return
    inside = lim[0] <= est <= lim[1]
    if row.kind == STUDY:
        ink = options.colour("study", style.INK)
        _draw_interval(ax, y, lb, ub, lim, color=ink)
        if inside:
            ax.plot([est], [y], marker="s", ms=_square_side(row.area), mfc=ink, mec=ink,
                    mew=0, lw=0, gid="study-square")
    elif row.kind == EXCLUDED:  # not pooled: its CI in grey, no square
        _draw_interval(ax, y, lb, ub, lim, color=style.MID)
    elif row.kind == POINT:
        _draw_interval(ax, y, lb, ub, lim)
        if inside:
            ax.plot([est], [y], marker="o", ms=POINT_PT, mfc=style.INK, mec=style.INK, lw=0)
    elif row.kind == DIAMOND:
        xs = np.clip([lb, est, ub, est], *lim)
        h = DIAMOND_HALF_ROWS
        ink = options.colour("pooled", style.INK)
        ax.add_patch(Polygon(np.column_stack([xs, [y, y - h, y, y + h]]), closed=True,
                             facecolor=ink, edgecolor=ink, lw=style.THIN_LINE,
                             gid="diamond"))
    elif row.kind == PI:
        _draw_interval(ax, y, lb, ub, lim)
        ends = [v for v in (lb, ub) if lim[0] <= v <= lim[1]]
        ax.plot(ends, [y] * len(ends), marker="|", ms=PI_CAP_PT, color=style.INK, lw=0)


#: Narrowest effect axis a requested width may leave (inches): below it the
#: intervals of a typical analysis can no longer be told apart.
MIN_PLOT_IN = 1.0


def _new_table_axes(layout: _Layout, n_rows: float, options: FigureOptions = DEFAULT_FIGURE,
                    what: str = "figure") -> Axes:
    """A figure sized to the table; with ``options.width_in`` the effect axis takes
    what the text columns leave of that width (ValueError below MIN_PLOT_IN).
    Rows and the space under the table grow with the font size."""
    scale = options.font_scale
    row_in, axis_in = ROW_IN * scale, AXIS_SPACE_IN * scale
    plot_in = PLOT_IN
    if options.width_in is not None:
        plot_in = options.width_in - MARGIN_IN * 2 - layout.left_in - layout.right_in
        if plot_in < MIN_PLOT_IN:
            need = options.width_in - plot_in + MIN_PLOT_IN
            raise ValueError(f"{what}: a width of {options.width_in:.2f} in leaves {plot_in:.2f} in "
                             f"for the plot beside the text columns at {options.font_size_pt:g} pt; "
                             f"it needs at least {need:.2f} in: choose a wider width, a smaller "
                             "font_size or fewer forest columns")
    width = MARGIN_IN * 2 + layout.left_in + plot_in + layout.right_in
    height = n_rows * row_in + axis_in + MARGIN_IN
    rect = ((MARGIN_IN + layout.left_in) / width, axis_in / height,
            plot_in / width, n_rows * row_in / height)
    return style.new_axes(width, height, rect)


#: Narrowest wrap of the notes under a table of a requested width (inches).
NOTE_MIN_IN = 1.5


def _rewrap_notes(table: _Table) -> _Table:
    """The table with its notes wrapped to leave the effect axis its default width
    within the requested width (never wider than NOTE_MAX_IN, never narrower than
    the left columns or NOTE_MIN_IN): a narrow figure gets more note lines."""
    width = table.options.width_in
    if width is None or not any(r.kind == NOTE for r in table.rows):
        return table
    bare = _measure(replace(table, rows=tuple(r for r in table.rows if r.kind != NOTE)))
    room = width - MARGIN_IN * 2 - bare.right_in - PLOT_IN - PLOT_GAP_IN
    max_in = max(NOTE_MIN_IN, bare.left_in - PLOT_GAP_IN, min(NOTE_MAX_IN, room))
    rows: list[_Row] = []
    texts: list[str] = []
    for row in (*table.rows, None):
        if row is not None and row.kind == NOTE and texts and row.cells["note"].startswith(NOTE_INDENT):
            texts[-1] += " " + row.cells["note"][len(NOTE_INDENT):]
            continue
        for text in texts:
            rows += _notes(text, max_in)
        texts = []
        if row is not None and row.kind == NOTE:
            texts.append(row.cells["note"])
        elif row is not None:
            rows.append(row)
    return replace(table, rows=tuple(rows))


def _draw_table(table: _Table, ax: Axes | None) -> Axes:
    """Render a table of rows beside an effect axis; returns the Axes."""
    if ax is None:
        table = _rewrap_notes(table)
    layout = _measure(table)
    has_groups = any(c.group for c in table.cols)
    n_head = 1 + int(has_groups) + int(bool(table.title))
    n_body = len(table.rows)
    top = -n_head - 0.5
    bottom = n_body - 0.5 + AXIS_PAD_ROWS
    if ax is None:
        ax = _new_table_axes(layout, bottom - top, table.options, table.title or "figure")
    # x in inches from the Axes' left (right) edge for left (right) columns, y in
    # rows: texts move with the Axes when it moves (savefig's tight crop, resizing)
    trans = {side: blended_transform_factory(
        ax.figure.dpi_scale_trans + ScaledTranslation(edge, 0, ax.transAxes), ax.transData)
        for side, edge in (("left", 0), ("right", 1))}

    def put(side: str, x: float, y: float, text: str, prop, ha: str, color: str = style.INK) -> None:
        ax.text(x, y, text, transform=trans[side], ha=ha, va="center", fontproperties=prop,
                color=color, parse_math=False, clip_on=False)

    configured = _configured_axis(table.plot, table.scale.log)
    if configured is None:
        ticks = _axis_ticks(table)
        lim = (ticks[0], ticks[-1])
    else:
        lim, ticks = configured
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
            if col.key in row.cells and col.dot:
                robplots.draw_judgement(ax, layout.anchor[col.key], y, row.cells[col.key],
                                        cell=f"{row.ref}:{col.key}", transform=trans[col.side],
                                        dot_pt=ROB_DOT_PT, symbol_pt=ROB_SYMBOL_PT,
                                        options=table.options)
            elif col.key in row.cells:
                put(col.side, layout.anchor[col.key], y, row.cells[col.key],
                    _row_font(row.kind), col.align)
        if row.kind in _GRAPHIC_KINDS:
            _draw_graphic(ax, y, row, table.scale, lim, table.options)
    graphic = [y for y, r in enumerate(table.rows) if r.kind in _GRAPHIC_KINDS]
    if table.band is not None:
        est, lb, ub = (float(table.scale.show(v)) for v in table.band)
        ax.fill_betweenx([-0.5, bottom], max(lb, lim[0]), min(ub, lim[1]),
                         color=style.FAINT, lw=0, zorder=0)
        ax.vlines(est, -0.5, bottom, colors=style.DARK, linestyles="--", lw=style.THIN_LINE, zorder=1)
    if graphic:
        ax.vlines(table.scale.null, min(graphic) - 0.5, bottom, colors=style.INK,
                  lw=style.THIN_LINE, zorder=1)
    _style_effect_axis(ax, table, ticks, lim)
    return ax


def _favours_texts(table: _Table) -> tuple[str, str]:
    """'\u2190 Favours naltrexone' and 'Favours control \u2192', or the configured words."""
    labels = table.plot.labels
    left = labels.favours_left if labels.favours_left is not None else f"Favours {table.favours[0]}"
    right = labels.favours_right if labels.favours_right is not None else f"Favours {table.favours[1]}"
    return f"\u2190 {left}", f"{right} \u2192"


def _style_effect_axis(ax: Axes, table: _Table, ticks: list[float],
                       lim: tuple[float, float] | None = None) -> None:
    for name in ("left", "right", "top"):
        ax.spines[name].set_visible(False)
    ax.yaxis.set_major_locator(NullLocator())
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_tick_label(t) for t in ticks])
    scale = table.options.font_scale
    title = table.plot.labels.axis_title
    ax.set_xlabel(table.scale.axis_label if title is None else title, labelpad=XLABEL_PAD_PT * scale)
    ax.patch.set_visible(False)
    null = table.scale.null
    lo, hi = lim if lim is not None else (ticks[0], ticks[-1])
    if lo < null < hi:
        for text, ha, dx in zip(_favours_texts(table), ("right", "left"), (-3, 3)):
            ax.annotate(text, xy=(null, 0), xycoords=("data", "axes fraction"),
                        xytext=(dx, -FAVOURS_OFFSET_PT * scale), textcoords="offset points",
                        ha=ha, va="top", fontproperties=style.font(style.SMALL_SIZE), parse_math=False)


# --------------------------------------------------------------------------
# forest plot


def _has(effects: pd.DataFrame, col: str) -> bool:
    return col in effects.columns and effects[col].notna().any()


def _check_rows(effects: pd.DataFrame, result: AnalysisResult) -> None:
    """The effects table must be the one the result was computed from (same rows)."""
    n = len(effects)
    if len(result.weights_pct) != n or len(result.used) != n:
        raise ValueError(f"{result.name}: the effects table has {n} rows but the result has "
                         f"{len(result.weights_pct)} weights and {len(result.used)} used flags; "
                         "re-run the pool step on this effects table")


def _favours(result: AnalysisResult) -> tuple[str, str]:
    """Which side of the null favours whom: swapped when the analysis counts good events."""
    return FAVOURS[::-1] if result.good_events else FAVOURS


def _arm_columns(effects: pd.DataFrame) -> list[_Col]:
    """Arm-level columns: events and totals (binary) or mean, SD and total (continuous)."""
    if _has(effects, "events_treat"):
        fields = (("events", "Events"), ("n", "Total"))
    elif _has(effects, "mean_treat"):
        fields = (("mean", "Mean"), ("sd", "SD"), ("n", "Total"))
    else:
        return []
    return [_Col(f"{f}_{arm}", header, "left", group=_capital(name))
            for arm, name in (("treat", FAVOURS[0]), ("ctrl", FAVOURS[1]))
            for f, header in fields]


#: Risk-of-bias columns: their group header and the overall judgement's header
#: (a letter, as RevMan heads its narrow columns; the key says what it is).
ROB_GROUP = "Risk of bias"
OVERALL_HEADER = "O"


def _rob_columns() -> list[_Col]:
    """One narrow dot column per RoB 2 domain (D1...D5), then the overall judgement (O)."""
    headers = {**rob.SHORT, "overall": OVERALL_HEADER}
    return [_Col(c, headers[c], "right", align="center", group=ROB_GROUP, dot=True,
                 gap_in=ROB_GAP_IN if 0 < n < len(rob.DOMAINS) else COL_GAP_IN)
            for n, c in enumerate(robplots.COLUMNS)]


def _rob_key() -> list[_Row]:
    """The key under the table: what D1...D5 and O are (robplots' key), and the symbols."""
    domains = [*robplots.domain_key(), f"{OVERALL_HEADER}: Overall"]
    return (_notes(f"{ROB_GROUP} (RoB 2): " + "; ".join(domains))
            + _notes(", ".join(robplots.judgement_key())))


def _decimals(values: pd.Series) -> int:
    """Fewest decimals (0-2) that show every value of a column as given."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    for d in (0, 1):
        if np.allclose(v, np.round(v, d), rtol=0, atol=1e-9):
            return d
    return 2


def _year_text(year: Any) -> str:
    if year is None or (isinstance(year, float) and math.isnan(year)):
        return ""
    return str(int(year)) if isinstance(year, (int, float, np.number)) else str(year)


def _study_label(rec: Mapping) -> str:
    label = str(rec.get("label") or rec.get("study_id") or "")
    year = _year_text(rec.get("year"))
    if year and year not in label:
        label = f"{label} {year}"
    return label


LOW_CONFIDENCE_MARK = " \u2020"
#: favourable events counted as their complement (abstinence -> not abstinent)
FLIPPED_MARK = " \u2021"
#: the control arm is shared with another comparison and was split
SPLIT_MARK = " \u00a7"
NOT_POOLED = "not pooled"
#: a row kept out of the main model for a sensitivity analysis (e.g. a sample-size conflict)
SENSITIVITY_ONLY = "sensitivity only"
#: Widest outcome cell (event and time point of each study).
OUTCOME_MAX_IN = 1.7


def _has_text(effects: pd.DataFrame, col: str, values: tuple) -> bool:
    return col in effects and effects[col].astype(str).str.strip().str.lower().isin(values).any()


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _outcome_cell(rec: Mapping) -> str:
    """When and the event counted: '24 wk: relapse or dropout' (cut at the end if long)."""
    event = str(rec.get("event") or rec.get("outcome") or "")
    event = "" if event.lower() == "nan" else display(event)
    weeks = _num(rec.get("followup_weeks"))
    when = f"{weeks:g} wk" if math.isfinite(weeks) else ""
    event = _in_text(event) if when and event else event
    text = ": ".join(t for t in (when, event) if t)
    return style.fit_text(text, OUTCOME_MAX_IN, _row_font(STUDY)) if text else ""


def _definition_notes(effects: pd.DataFrame, used: np.ndarray) -> list[str]:
    """One footnote per study with its outcome definition (where the data give one)."""
    if "outcome_definition" not in effects:
        return []
    out = []
    for i, rec in enumerate(effects.to_dict("records")):
        text = str(rec.get("outcome_definition") or "").strip()
        if text and text.lower() != "nan":
            out.append(f"{_study_label(rec)}: {text}")
    return out


def _label_cell(text: str, mark: str = "") -> str:
    prop = _row_font(STUDY)
    return style.fit_text(text, LABEL_MAX_IN - style.text_width_in(mark, prop), prop) + mark


@dataclass(frozen=True)
class _Studies:
    """The effects table with the result's per-row weights and used flags.

    ``rob``: each row's risk-of-bias judgements (:func:`ntxmeta.rob.judgements_of`),
    or None when the table has no ``rob_*`` column (written before the
    risk-of-bias step): then the forest has no risk-of-bias columns.
    """

    effects: pd.DataFrame
    weights: np.ndarray   # percent of the overall model, NaN where not used
    used: np.ndarray      # bool
    wmax: float           # the largest overall weight (NaN if none)
    rob: pd.DataFrame | None = None

    @classmethod
    def of(cls, effects: pd.DataFrame, result: AnalysisResult) -> "_Studies":
        _check_rows(effects, result)
        weights = np.asarray(result.weights_pct, dtype=float)
        used = np.asarray(result.used, dtype=bool)
        finite = weights[used & np.isfinite(weights)]
        judged = None
        if rob.has_judgements(effects):
            judged = rob.judgements_of(effects)
            try:
                robplots.check_frame(judged)
            except ValueError as err:
                raise ValueError(f"{result.name}: the effects table's risk of bias (rob_*): "
                                 f"{err}") from err
        return cls(effects.reset_index(drop=True), weights, used,
                   float(finite.max()) if finite.size else math.nan, judged)


def _study_rows(studies: _Studies, rows: Sequence[int], arm_cols: Sequence[_Col],
                scale: Scale) -> list[_Row]:
    """One row per effects row in ``rows``; squares scaled by the overall weights."""
    effects = studies.effects
    digits = {c.key: _decimals(effects[c.key]) for c in arm_cols}
    out = []
    for i in rows:
        rec = effects.iloc[i].to_dict()
        mark = "".join(m for flag, m in ((str(rec.get("confidence", "")).lower() == "low",
                                           LOW_CONFIDENCE_MARK),
                                          (_truthy(rec.get("flipped")), FLIPPED_MARK),
                                          (_num(rec.get("split_control")) > 1, SPLIT_MARK))
                       if flag)
        cells = {"label": _label_cell(_study_label(rec), mark), "outcome": _outcome_cell(rec)}
        for c in arm_cols:
            v = _num(rec.get(c.key))
            cells[c.key] = _fmt(v, digits[c.key]) if math.isfinite(v) else ""
        yi, lb, ub = (_num(rec.get(k)) for k in ("yi", "ci_lb", "ci_ub"))
        cells["effect"] = _effect(scale, yi, lb, ub) if math.isfinite(yi) else "not estimable"
        if studies.rob is not None:  # shown on rows left out of the pool too
            cells.update({c: studies.rob.at[i, c] for c in robplots.COLUMNS})
        weight = studies.weights[i]
        if studies.used[i]:
            cells["weight"] = f"{weight:.1f}%" if math.isfinite(weight) else ""
            area = weight / studies.wmax if math.isfinite(weight) and studies.wmax > 0 else 0.0
            out.append(_Row(STUDY, cells, yi, lb, ub, area, ref=i))
        else:
            cells["weight"] = (SENSITIVITY_ONLY if str(rec.get("role", "")) == "sensitivity"
                               else NOT_POOLED)
            out.append(_Row(EXCLUDED, cells, yi, lb, ub, 0.0, ref=i))
    return out


def _totals(studies: _Studies, rows: Sequence[int], arm_cols: Sequence[_Col]) -> dict[str, str]:
    """Summed events and totals (not means or SDs) and weights of the pooled rows of a block."""
    pooled = [i for i in rows if studies.used[i]]
    block = studies.effects.iloc[pooled]
    out = {}
    events = set(block["event"].astype(str)) if "event" in block else set()
    for c in arm_cols:
        if c.key.startswith("events") and len(events) > 1:
            continue  # events of unlike outcomes are not summed
        if c.key.split("_")[0] in ("events", "n"):
            out[c.key] = _fmt_count(pd.to_numeric(block[c.key], errors="coerce").sum(min_count=1))
    weights = studies.weights[pooled]
    if np.isfinite(weights).any():
        out["weight"] = f"{np.nansum(weights):.1f}%"
    return out


def _summary_rows(fit: Pooled | None, reason: str, label: str, extra: Mapping[str, str],
                  scale: Scale, *, with_pi: bool) -> list[_Row]:
    """Diamond, prediction interval and heterogeneity note of one pooled fit."""
    if fit is None:
        return _notes(f"{label}: no pooled estimate ({reason or 'not computed'})")
    if fit.k == 1:  # the study's own estimate is already on its row
        return _notes(f"{label}: not pooled (a single study)")
    rows = [_Row(DIAMOND, {"label": label, **extra,
                           "effect": _effect(scale, fit.estimate, fit.ci.low, fit.ci.high)},
                 fit.estimate, fit.ci.low, fit.ci.high)]
    pi = fit.pi
    if with_pi and pi is not None and fit.k >= PI_MIN_K and math.isfinite(pi.low) and math.isfinite(pi.high):
        text = f"[{_fmt(float(scale.show(pi.low)))}, {_fmt(float(scale.show(pi.high)))}]"
        rows.append(_Row(PI, {"label": "Prediction interval", "effect": text}, fit.estimate, pi.low, pi.high))
    het = _heterogeneity(fit)
    return rows + (_notes(het) if het else [])


def _groups(effects: pd.DataFrame, column: str) -> list[str]:
    """Each row's subgroup level as the result spells it (str of the value); "" where none.

    The effects table's ``subgroup`` column is the one ``pool`` groups by;
    ``column`` (the config's subgroup column) is read when it is absent.
    """
    col = "subgroup" if "subgroup" in effects else column
    if col not in effects:
        return [""] * len(effects)
    out = []
    for v in effects[col]:
        missing = v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""
        out.append("" if missing else str(v))
    return out


def _ordered(studies: _Studies, rows: Sequence[int], order: str) -> list[int]:
    """Study rows in the forest's order (``FigureOptions`` ``order``).

    entered: as the effects table has them; year: oldest first; weight:
    largest weight in the overall model first (RevMan's sort by weight);
    effect: smallest effect first (analysis scale). Ties, and rows without
    a year, weight or effect (last), keep the order of the table.
    """
    rows = list(rows)
    if order == "entered":
        return rows
    if order == "year":
        key = _column(studies.effects, "year")
    elif order == "weight":
        key = -np.where(studies.used, studies.weights, np.nan)
    elif order == "effect":
        key = _column(studies.effects, "yi")
    else:
        raise ValueError(f"unknown forest order {order!r}; use one of entered, year, weight, effect")
    place = {i: n for n, i in enumerate(rows)}
    return sorted(rows, key=lambda i: (not math.isfinite(key[i]), key[i] if math.isfinite(key[i]) else 0.0,
                                       place[i]))


def _subgroup_rows(studies: _Studies, result: AnalysisResult, arm_cols: Sequence[_Col],
                   scale: Scale, study_order: str = "entered") -> list[_Row]:
    """Per level: heading, studies, subtotal and heterogeneity; studies of no level last."""
    sub = result.subgroups
    groups = _groups(studies.effects, sub.column)
    fits: dict[str, SubgroupLevel] = {lev.level: lev for lev in sub.levels}
    present = set(groups) - {""}
    order = [lev.level for lev in sub.levels if lev.level in present]
    order += sorted(present - set(order)) + ([""] if "" in groups else [])
    rows: list[_Row] = []
    for level in order:
        members = _ordered(studies, [i for i, g in enumerate(groups) if g == level], study_order)
        heading = _level_label(level) if level else "No subgroup"
        rows += [_Row(HEADING, {"label": _label_cell(heading)}),
                 *_study_rows(studies, members, arm_cols, scale)]
        if level in fits:
            lev = fits[level]
            rows += _summary_rows(lev.fit, lev.note, f"Subtotal (k = {lev.k})",
                                  _totals(studies, members, arm_cols), scale, with_pi=False)
        elif level:
            rows += _notes("Not in the subgroup analysis (no row of this level was pooled)")
        else:
            rows += _notes("Not in the subgroup analysis (no subgroup given)")
        rows.append(_Row(BLANK))
    return rows


def _note_part(note: str, part: str) -> str:
    """The reason for one part in a note of '<part>: <reason>; ...' entries (else the note)."""
    for entry in note.split("; "):
        name, sep, reason = entry.partition(": ")
        if sep and name == part:
            return reason
    return note or "not computed"


def _subgroup_tests(result: AnalysisResult) -> list[str]:
    """RevMan's test for subgroup differences, then the mixed-effects QM as a footnote."""
    sub = result.subgroups
    if sum(1 for lev in sub.levels if lev.k > 0) < 2:
        return ["Test for subgroup differences: not applicable (one subgroup)"]
    if sub.between is None:
        out = [f"Test for subgroup differences: not available ({_note_part(sub.note, 'q_between')})"]
    else:
        out = [f"Test for subgroup differences: {_test_text(sub.between, 'P')}, "
               f"{I2} = {_fmt(sub.between_i2_pct, 0)}%"]
    if sub.mixed_effects is None:
        out.append("Mixed-effects model (one common \u03c4\u00b2): not available "
                   f"({_note_part(sub.note, 'mixed_effects')})")
    else:
        out.append(f"Mixed-effects model (one common \u03c4\u00b2): {_test_text(sub.mixed_effects)}")
    return out


def _scaled(fn):
    """Run a plot function under the style at its options' font size (``options=``)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, options: FigureOptions | None = None, **kwargs):
        options = DEFAULT_FIGURE if options is None else options
        with style.styled(font_scale=options.font_scale):
            return fn(*args, options=options, **kwargs)
    return wrapper


@_scaled  # texts are measured under the figure style (rcParams are global)
def forest(effects: pd.DataFrame, result: AnalysisResult, *, ax: Axes | None = None,
           options: FigureOptions | None = None) -> Axes:
    """Forest plot with study table, pooled diamond, prediction interval and tests.

    Columns: study label with year (cut with an ellipsis if long; a dagger
    marks low-confidence rows); arm-level data (events and totals, or mean,
    SD and total per arm); the effect and its CI on the shown scale (RR, not
    log RR, when ``result.scale.log``); the weight in percent
    (``result.weights_pct``); then, when the effects table has ``rob_*``
    columns, risk of bias as RevMan draws it: one narrow column per RoB 2
    domain (D1...D5) and one for the overall judgement (O), a dot per study
    row coloured and marked as in the traffic light (+ low, − some
    concerns, × high, ? not assessed; an empty cell is not assessed), on
    rows left out of the pool too but not on summary rows, and a key of the
    domains and symbols under the notes. Without ``rob_*`` columns (tables
    written before the risk-of-bias step) there are no such columns. Squares
    have an area proportional to the study's weight in the overall model, in
    subgroup blocks too; rows that do not enter the models (``result.used``
    False) have no square, their CI in grey and "not pooled" as their
    weight. CIs that leave the axis end in an arrow.

    Below the studies: the diamond of ``result.main`` ("Random-effects model
    (REML)", "Common-effect model" for EE) with its arm totals, the
    prediction interval ``main.pi`` as a whisker line under it (k >= 3),
    heterogeneity (tau^2, I^2, Q, df, p of ``main.heterogeneity``) and the
    test for the overall effect (``main.test_stat``: "z = .." or
    "t = .., df = .." with Hartung-Knapp). Without a main estimate the
    status says why (``result.status``, or the failure of the main model).

    With ``result.subgroups``, studies come in blocks per level (in the
    result's order; studies with no subgroup last, without a subtotal), each
    with a heading, a subtotal diamond (``SubgroupLevel.fit``) and its
    heterogeneity; a level of one study is not pooled. Then RevMan's test for
    subgroup differences (``subgroups.between``: Chi², df, P, and I² of it)
    and, as a footnote, the mixed-effects QM (``subgroups.mixed_effects``).
    The figure's height grows with the rows.

    ``options`` (:class:`~ntxmeta.figopts.FigureOptions`, default: the
    look above) may set the width (the effect axis takes what the columns
    leave), the font size, the effect axis' limits and ticks, the order of
    the study rows (``order``: entered, year, weight, effect; within each
    subgroup), which columns are shown (``columns``; the study label always
    is), the favours and axis texts, and the colours of squares, diamonds
    and risk-of-bias dots (or greyscale).

    Parameters
    ----------
    effects : DataFrame
        The analysis's effects table, one row per study, in the result's
        row order (see module docstring); rows are drawn in order.
    result : AnalysisResult
    ax : Axes, optional
        Draw here; the text columns go outside it, so leave room.
    options : FigureOptions, optional

    Returns
    -------
    Axes
        Each risk-of-bias dot is a PathCollection with ``gid``
        ``rob:{row}:{column}`` (``row`` the effects row, ``column`` one of
        :data:`ntxmeta.robplots.COLUMNS`), its symbol a Text ``robsym:...``.

    Raises
    ------
    ValueError
        When ``effects`` does not have one row per entry of ``result.weights_pct``,
        or a ``rob_*`` cell is not one of :data:`ntxmeta.rob.JUDGEMENTS`.
    """
    scale = result.scale
    plot = options.plot("forest")
    studies = _Studies.of(effects, result)
    arm_cols = _arm_columns(studies.effects) if plot.shows("arms") else []
    cols = (_Col("label", "Study", "left", align="left"),
            *((_Col("outcome", "Time: outcome", "left", align="left"),) if plot.shows("outcome") else ()),
            *arm_cols,
            *((_Col("effect", f"{scale.name} [{result.level:.0f}% CI]", "right"),)
              if plot.shows("effect") else ()),
            *((_Col("weight", "Weight", "right"),) if plot.shows("weight") else ()),
            *(_rob_columns() if studies.rob is not None and plot.shows("rob") else ()))
    every = range(len(studies.effects))
    rows: list[_Row] = []
    if result.subgroups is None:
        rows += _study_rows(studies, _ordered(studies, every, plot.order), arm_cols, scale) + [_Row(BLANK)]
    else:
        rows += _subgroup_rows(studies, result, arm_cols, scale, plot.order)
    main = result.main
    if not result.overall:  # subgroups that are different questions: no overall diamond
        rows += _notes("No overall estimate: the subgroups are different comparisons")
    elif main is None and result.common is not None and result.k_used == 2:
        rows += _summary_rows(result.common, "", "Common-effect model, k = 2",
                              _totals(studies, every, arm_cols), scale, with_pi=False)
        rows += _notes(_overall_test(result.common))
    else:
        model = main.model if main is not None else result.method
        k = main.k if main is not None else result.k_used
        rows += _summary_rows(main, _no_pool_reason(result), f"{_model_name(model)}, k = {k}",
                              _totals(studies, every, arm_cols), scale, with_pi=True)
        if main is not None and main.k > 1:
            rows += _notes(_overall_test(main))
    for note in result.notes:
        if not note.startswith("no overall estimate"):
            rows += _notes(_capital(note))
    if result.subgroups is not None:
        for line in _subgroup_tests(result):
            rows += _notes(line)
    marks = ((LOW_CONFIDENCE_MARK, "low-confidence data",
              _has_text(effects, "confidence", ("low",))),
             (FLIPPED_MARK, "favourable events counted as their complement (e.g. not abstinent)",
              _has_text(effects, "flipped", ("true", "1", "yes"))),
             (SPLIT_MARK, "control arm shared with another comparison, split between them",
              "split_control" in effects
              and (pd.to_numeric(effects["split_control"], errors="coerce") > 1).any()))
    for mark, words, present in marks:
        if present:
            rows += _notes(f"{mark.strip()} {words}")
    for line in _definition_notes(effects, studies.used):
        rows += _notes(line)
    if studies.rob is not None and plot.shows("rob"):
        rows += _rob_key()
    return _draw_table(_Table(tuple(cols), tuple(rows), scale, result.title or None,
                              _favours(result), options=options, plot=plot), ax)


# --------------------------------------------------------------------------
# cumulative and leave-one-out forests


def _sequence_rows(series: Series, scale: Scale, extra: Sequence[Mapping[str, str]]) -> list[_Row]:
    """POINT rows of a series (estimate, CI, I^2, tau^2 of each fit)."""
    rows = []
    for j, label in enumerate(series.labels):
        est, lb, ub = series.estimate[j], series.ci_low[j], series.ci_high[j]
        i2, tau2 = series.i2_pct[j], series.tau2[j]
        cells = {"label": _label_cell(label), **extra[j], "effect": _effect(scale, est, lb, ub),
                 "i2": f"{_fmt(i2, 0)}%" if math.isfinite(i2) else DASH, "tau2": _fmt_small(tau2)}
        rows.append(_Row(POINT, cells, est, lb, ub))
    return rows


def _sequence_cols(first: str, scale: Scale, level: float, left: Sequence[_Col] = ()) -> tuple[_Col, ...]:
    return (_Col("label", first, "left", align="left"), *left,
            _Col("effect", f"{scale.name} [{level:.0f}% CI]", "right"),
            _Col("i2", I2, "right"), _Col("tau2", TAU2, "right"))


def _years_by_label(effects: pd.DataFrame | None) -> dict[str, str]:
    """Study label (as given, and made unique as metafor's slab) -> year."""
    if effects is None or not _has(effects, "year") or "label" not in effects:
        return {}
    labels = [str(v) for v in effects["label"]]
    years = [_year_text(y) for y in effects["year"]]
    out: dict[str, str] = {}
    for names in (make_unique(labels), labels):
        for name, year in zip(names, years):
            out.setdefault(name, year)
    return out


@_scaled  # texts are measured under the figure style (rcParams are global)
def cumulative(result: AnalysisResult, *, effects: pd.DataFrame | None = None,
               ax: Axes | None = None, options: FigureOptions | None = None) -> Axes:
    """Cumulative forest: the pooled estimate as studies are added in order of year.

    Row j is ``result.cumulative`` fit j (the first ``k[j]`` studies, metafor
    ``cumul(fit, order=year)``), with its CI, I^2 and tau^2; a dashed line
    marks the final estimate, and a note names the model of the rows. A
    missing series is said, with its reason.

    Parameters
    ----------
    result : AnalysisResult
    effects : DataFrame, optional
        When given with ``label`` and ``year``, a year column is added (by
        study label) unless the labels carry the year already.
    ax : Axes, optional
    options : FigureOptions, optional
        Width, font size, effect-axis limits and ticks, axis and favours
        texts, colours (:class:`~ntxmeta.figopts.FigureOptions`; default:
        the look described here).

    Returns
    -------
    Axes
    """
    scale = result.scale
    series = result.cumulative
    labels = series.labels if series is not None else ()
    years = _years_by_label(effects)
    if all(year in label for label, year in years.items()):  # labels such as "Anton 1999" say it already
        years = {}
    year_col = (_Col("year", "Year", "left"),) if years else ()
    cols = _sequence_cols("Study added", scale, result.level, (*year_col, _Col("k", "k", "left")))
    if series is None:
        rows = _notes(f"Cumulative meta-analysis not available ({missing_reason(result, 'cumulative')})")
        band = None
    else:
        extra = [{"year": years.get(s, ""), "k": str(k)} for s, k in zip(labels, series.k)]
        rows = _sequence_rows(series, scale, extra)
        band = (series.estimate[-1],) * 3 if labels else None  # final estimate, no band
        rows += [_Row(BLANK), *_notes(f"Each row: {_model_words(series.model, series.test)}")]
    return _draw_table(_Table(cols, tuple(rows), scale, result.title or None, _favours(result),
                              band, options, options.plot("cumulative")), ax)


@_scaled  # texts are measured under the figure style (rcParams are global)
def leave_one_out(result: AnalysisResult, *, ax: Axes | None = None,
                  options: FigureOptions | None = None) -> Axes:
    """Leave-one-out forest: the pooled estimate with each study omitted in turn.

    Each row is ``result.leave_one_out`` fit j (without that study, metafor
    ``leave1out``), with its CI, I^2 and tau^2. The main estimate
    (``result.main``) is drawn as a diamond at the bottom and as a shaded
    band (its CI) with a dashed line through the rows, so that an
    influential study stands out as a row outside the band.

    Parameters
    ----------
    result : AnalysisResult
    ax : Axes, optional
    options : FigureOptions, optional
        Width, font size, effect-axis limits and ticks, axis and favours
        texts, colours (:class:`~ntxmeta.figopts.FigureOptions`; default:
        the look described here).

    Returns
    -------
    Axes
    """
    scale = result.scale
    series = result.leave_one_out
    cols = _sequence_cols("Study omitted", scale, result.level)
    rows: list[_Row] = []
    if series is None:
        rows += _notes(f"Leave-one-out analysis not available ({missing_reason(result, 'leave_one_out')})")
    else:
        rows += _sequence_rows(series, scale, [{}] * len(series.labels))
    rows.append(_Row(BLANK))
    main = result.main
    band = None
    if main is not None:
        het = main.heterogeneity
        cells = {"label": f"All studies (k = {main.k})",
                 "effect": _effect(scale, main.estimate, main.ci.low, main.ci.high),
                 "i2": f"{_fmt(het.i2_pct, 0)}%" if het is not None else DASH,
                 "tau2": _fmt_small(het.tau2) if het is not None else DASH}
        rows.append(_Row(DIAMOND, cells, main.estimate, main.ci.low, main.ci.high))
        band = (main.estimate, main.ci.low, main.ci.high)
    else:
        rows += _notes(f"All studies: no pooled estimate ({_no_pool_reason(result)})")
    if series is not None:
        rows += _notes(f"Each row: {_model_words(series.model, series.test)}")
    return _draw_table(_Table(cols, tuple(rows), scale, result.title or None, _favours(result),
                              band, options, options.plot("leave_one_out")), ax)


# --------------------------------------------------------------------------
# funnel and bubble plots


def _column(effects: pd.DataFrame, col: str) -> np.ndarray:
    if col not in effects:
        return np.full(len(effects), np.nan)
    return pd.to_numeric(effects[col], errors="coerce").to_numpy(dtype=float)


def _set_effect_axis(ax: Axes, which: str, scale: Scale, lo: float, hi: float,
                     plot: PlotOptions = DEFAULT_PLOT) -> None:
    """Scale, ticks and limits of the x or y effect axis: nice ticks enclosing the
    analysis-scale [lo, hi], or the configured limits and ticks (shown scale)."""
    configured = _configured_axis(plot, scale.log)
    if configured is None:
        ticks = _nice_limits(lo, hi, scale.log)
        lim = (ticks[0], ticks[-1])
    else:
        lim, ticks = configured
    axis = getattr(ax, f"{which}axis")
    getattr(ax, f"set_{which}scale")("log" if scale.log else "linear")
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_ticklabels([_tick_label(t) for t in ticks])
    getattr(ax, f"set_{which}lim")(*lim)


def _figure_ax(ax: Axes | None, width_in: float, height_in: float, rect: tuple[float, float, float, float],
               options: FigureOptions = DEFAULT_FIGURE) -> Axes:
    """A new Axes at ``rect`` of a figure of the given size, or of the requested width
    (same height; the Axes is fitted to it once drawn: :func:`_fit_to_figure`)."""
    if ax is not None:
        return ax
    return style.new_axes(options.width_in or width_in, height_in, rect)


#: Passes of :func:`_fit_to_figure`: texts outside the Axes have fixed sizes,
#: so the second pass only corrects the first's rounding.
FIT_PASSES = 3


#: Share of a requested width that a title of a funnel or bubble plot may
#: take before it wraps (it starts at the Axes' left edge, right of the
#: y-axis labels).
TITLE_SHARE = 0.8


def _title_text(title: str, options: FigureOptions) -> str:
    """The title, wrapped at words to fit a requested width (as it is otherwise)."""
    if options.width_in is None:
        return title
    prop = style.font(style.TITLE_SIZE, "bold")
    lines = [""]
    for word in title.split(" "):
        candidate = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and style.text_width_in(candidate, prop) > TITLE_SHARE * options.width_in:
            lines.append(word)
        else:
            lines[-1] = candidate
    return "\n".join(lines)


def _fit_to_figure(ax: Axes, options: FigureOptions, what: str) -> None:
    """Move and resize the Axes so that everything drawn fits the figure with
    ``style.PAD_IN`` of white around it (a figure of a requested width is saved
    uncropped, at exactly that size). ValueError when no room is left."""
    if options.width_in is None or ax.figure.axes != [ax]:
        return
    fig = ax.figure
    width, height = fig.get_size_inches()
    for _ in range(FIT_PASSES):
        fig.draw_without_rendering()
        box = fig.get_tightbbox()
        pos = ax.get_position()
        over = (style.PAD_IN - box.x0, box.x1 - (width - style.PAD_IN),
                style.PAD_IN - box.y0, box.y1 - (height - style.PAD_IN))
        new = (pos.x0 + over[0] / width, pos.y0 + over[2] / height,
               pos.width - (over[0] + over[1]) / width, pos.height - (over[2] + over[3]) / height)
        if new[2] * width < MIN_PLOT_IN or new[3] * height < MIN_PLOT_IN:
            raise ValueError(f"{what}: a width of {width:.2f} in leaves no room for the plot beside "
                             f"its legend and labels at {options.font_size_pt:g} pt; choose a wider "
                             "width or a smaller font_size")
        ax.set_position(new)


def _wrap(text: str, width: int = FUNNEL_LEGEND_CHARS) -> str:
    return textwrap.fill(text, width)


def _text_handle(text: str) -> Line2D:
    """A legend entry that is only words."""
    return Line2D([], [], lw=0, label=_wrap(text))


@_scaled  # texts are measured under the figure style (rcParams are global)
def funnel(effects: pd.DataFrame, result: AnalysisResult, *, ax: Axes | None = None,
           options: FigureOptions | None = None) -> Axes:
    """Contour-enhanced funnel plot (Peters et al. 2008) with trim-and-fill studies.

    Each pooled study (``result.used``) is a filled circle at its effect (x,
    ``yi``) and standard error (y, ``sei``, inverted, 0 at the top). The
    background is shaded by the two-sided p value a study at that point
    would have against no effect: white for p >= 0.10, then darker greys for
    0.05-0.10, 0.01-0.05 and p < 0.01, so that missing studies in the white
    region suggest publication bias and missing studies in the grey regions
    suggest other causes. A solid line marks the main estimate
    (``result.main``) with dashed pseudo-confidence limits around it (at
    ``result.level``). Studies imputed by trim and fill
    (``result.small_study.trimfill.filled_yi``/``filled_vi``) are open
    circles, with the adjusted estimate (``trimfill.fit``) as a dotted line.
    A missing trim and fill, a missing main estimate and an asymmetry
    assessment skipped for few studies are said in the legend.

    Parameters
    ----------
    effects : DataFrame
        Uses ``yi`` and ``sei`` (``vi`` when there is no ``sei``).
    result : AnalysisResult
    ax : Axes, optional
        The legend goes to the right of it (below it in a figure of a
        requested width narrower than the default 6 in).
    options : FigureOptions, optional
        Width, font size, effect-axis limits and ticks, axis and favours
        texts, colours (:class:`~ntxmeta.figopts.FigureOptions`; default:
        the look described here).

    Returns
    -------
    Axes
    """
    _check_rows(effects, result)
    scale = result.scale
    yi = _column(effects, "yi")
    sei = _column(effects, "sei") if "sei" in effects else np.sqrt(_column(effects, "vi"))
    keep = np.asarray(result.used, dtype=bool) & np.isfinite(yi) & np.isfinite(sei)
    yi, sei = yi[keep], sei[keep]
    small = result.small_study
    tf = small.trimfill if small is not None else None
    filled_yi = np.asarray(tf.filled_yi if tf else (), dtype=float)
    filled_se = np.sqrt(np.asarray(tf.filled_vi if tf else (), dtype=float))
    se_max = FUNNEL_SE_HEADROOM * max([*sei, *filled_se, 1e-3])
    z_edge = z_crit(100 * (1 - FUNNEL_CONTOURS[0][0]))
    lo = min([-z_edge * se_max, *yi, *filled_yi])
    hi = max([z_edge * se_max, *yi, *filled_yi])
    plot = options.plot("funnel")
    below = ax is None and options.width_in is not None and options.width_in < FUNNEL_SIZE_IN[0]
    ax = _figure_ax(ax, FUNNEL_SIZE_IN[0], FUNNEL_SIZE_IN[1] + (FUNNEL_BELOW_EXTRA_IN if below else 0.0),
                    FUNNEL_RECT, options)
    _set_effect_axis(ax, "x", scale, lo, hi, plot)
    ax.set_ylim(se_max, 0)
    se = np.linspace(0, se_max, FUNNEL_GRID)
    ax.set_facecolor(style.SHADE)
    handles = [Patch(facecolor=style.SHADE, label=f"p < {FUNNEL_CONTOURS[0][0]:.2f}")]
    for i, (p, shade) in enumerate(FUNNEL_CONTOURS):  # outermost first: inner regions paint over
        z = z_crit(100 * (1 - p))
        ax.fill_betweenx(se, scale.show(-z * se), scale.show(z * se), color=shade, lw=0, zorder=0)
        upper = FUNNEL_CONTOURS[i + 1][0] if i + 1 < len(FUNNEL_CONTOURS) else None
        label = f"{p:.2f} \u2264 p < {upper:.2f}" if upper else f"p \u2265 {p:.2f}"
        handles.append(Patch(facecolor=shade, label=label))
    handles.reverse()
    for patch in handles:
        patch.set(edgecolor=style.MID, lw=style.THIN_LINE)
    main = result.main
    ink = options.colour("study", style.INK)
    pooled = options.colour("pooled", style.INK)
    if main is not None:
        est = main.estimate
        crit = z_crit(result.level)
        ax.plot(scale.show(np.array([est, est])), [0, se_max], color=pooled, lw=style.LINE_WIDTH)
        for sign in (-1, 1):
            ax.plot(scale.show(est + sign * crit * se), se, color=style.INK, lw=style.THIN_LINE, ls="--")
        handles.append(Line2D([], [], color=pooled, lw=style.LINE_WIDTH,
                              label=_wrap(f"Pooled estimate ({main.model}): {_fmt(float(scale.show(est)))}")))
        handles.append(Line2D([], [], color=style.INK, lw=style.THIN_LINE, ls="--",
                              label=f"Pseudo {result.level:.0f}% limits"))
    ax.plot(scale.show(yi), sei, ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=ink, mec=style.PAPER,
            mew=style.THIN_LINE, zorder=3)
    handles.append(Line2D([], [], ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=ink, mec=style.PAPER,
                          label=f"Studies (k = {len(yi)})"))
    if filled_yi.size:
        ax.plot(scale.show(filled_yi), filled_se, ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.PAPER,
                mec=style.INK, mew=style.LINE_WIDTH, zorder=3)
        handles.append(Line2D([], [], ls="none", marker="o", ms=FUNNEL_MARKER_PT, mfc=style.PAPER, mec=style.INK,
                              label=f"Imputed by trim and fill ({filled_yi.size})"))
    if tf is not None:
        adj = tf.fit.estimate
        ax.plot(scale.show(np.array([adj, adj])), [0, se_max], color=style.INK, lw=style.LINE_WIDTH, ls=":")
        handles.append(Line2D([], [], color=style.INK, lw=style.LINE_WIDTH, ls=":",
                              label=f"Trim-and-fill estimate: {_fmt(float(scale.show(adj)))}"))
    else:
        reason = (small.note if small is not None and small.note else missing_reason(result, "small_study"))
        handles.append(_text_handle(f"Trim and fill not available ({reason})"))
    if small is not None and not small.assessed:
        handles.append(_text_handle(f"Asymmetry {small.note}" if small.note else "Asymmetry not assessed"))
    if main is None:
        handles.append(_text_handle(f"No pooled estimate ({_no_pool_reason(result)})"))
    where = {"loc": "upper left", "bbox_to_anchor": (1.03, 1.0)}
    if below:
        where = {"loc": "upper left", "bbox_to_anchor": (0.0, 0.0), "bbox_transform": ax.transAxes
                 + ScaledTranslation(0, -FUNNEL_LEGEND_BELOW_IN * options.font_scale,
                                     ax.figure.dpi_scale_trans)}
    ax.legend(handles=handles, **where, borderaxespad=0,
              handlelength=1.6)
    title = plot.labels.axis_title
    ax.set_xlabel(scale.axis_label if title is None else title)
    ax.set_ylabel("Standard error")
    ax.set_axisbelow(False)
    if result.title:
        ax.set_title(_title_text(result.title, options), loc="left", fontweight="bold")
    _fit_to_figure(ax, options, f"funnel plot of {result.name}")
    return ax


_INTERCEPTS = ("intrcpt", "intercept", "(Intercept)")


def _named(note: str, moderator: str) -> str:
    """A result's note with the moderator's column code as its display name."""
    return note.replace(moderator, _in_text(display(moderator))) if note else note


def _metareg_summary(reg: MetaRegression, scale: Scale) -> str:
    """Lines: the slope with CI and p (analysis scale); QM, residual tau^2 and R^2; notes."""
    slope = next((c for c in reg.coefficients if c.name == reg.moderator), None)
    if slope is None:
        others = [c for c in reg.coefficients if c.name not in _INTERCEPTS]
        slope = others[0] if len(others) == 1 else None
    lines = []
    if slope is not None:
        on = f" (log {scale.name})" if scale.log else ""
        per = UNITS.get(reg.moderator) or f"unit of {_in_text(display(reg.moderator))}"
        lines.append(f"Slope{on} {_fmt(slope.estimate, 3)} per {per} "
                     f"({reg.level:.0f}% CI {_fmt(slope.ci.low, 3)} to {_fmt(slope.ci.high, 3)}), "
                     f"{_fmt_p(slope.test_stat.pval)}")
    fit = [] if reg.qm is None else [_test_text(reg.qm)]
    fit.append(f"residual {_is(TAU2, _fmt_small(reg.tau2))}" if fit else
               _capital(f"residual {_is(TAU2, _fmt_small(reg.tau2))}"))
    if math.isfinite(reg.r2_pct):
        fit.append(f"R\u00b2 = {_fmt(reg.r2_pct, 0)}%")
    lines.append("; ".join(fit))
    how = "Hartung-Knapp" if reg.test == "knha" else "z tests"
    lines.append(f"Mixed-effects meta-regression ({reg.model}, {how}), k = {reg.k}"
                 + (f"; {_named(reg.note, reg.moderator)}" if reg.note else ""))
    return "\n".join(lines)


@_scaled  # texts are measured under the figure style (rcParams are global)
def bubble(effects: pd.DataFrame, result: AnalysisResult, moderator: str, *,
           ax: Axes | None = None, options: FigureOptions | None = None) -> Axes:
    """Meta-regression bubble plot: effect against a moderator, with the fitted line.

    Each study is an open circle at its moderator value
    (``MetaRegression.x``, NaN for rows not in the regression) and effect
    (``effects.yi``); its area is proportional to its precision ``1 / vi``,
    scaled to the most precise study. The fitted line and its CI band are
    ``result.regression(moderator).line``. The slope with its CI and p, QM,
    the residual tau^2 and R^2 are written above the plot. A regression
    that was not computed leaves the studies drawn and says why
    (``MetaRegression.note``).

    Parameters
    ----------
    effects : DataFrame
        Uses ``yi`` and ``vi``; one row per entry of ``MetaRegression.x``.
    result : AnalysisResult
    moderator : str
        A moderator of the result's meta-regressions (shown by its display
        name, :func:`ntxmeta.labels.display`).
    ax : Axes, optional
    options : FigureOptions, optional
        Width, font size, effect-axis limits and ticks, axis and favours
        texts, colours (:class:`~ntxmeta.figopts.FigureOptions`; default:
        the look described here).

    Returns
    -------
    Axes

    Raises
    ------
    ValueError
        When the result has no meta-regression on ``moderator``, or
        ``effects`` has not one row per entry of its ``x``.
    """
    scale = result.scale
    reg = result.regression(moderator)
    if reg is None:
        known = ", ".join(r.moderator for r in result.metaregression) or "none"
        raise ValueError(f"bubble plot: {result.name} has no meta-regression on {moderator!r} "
                         f"(moderators: {known})")
    if len(reg.x) != len(effects):
        raise ValueError(f"bubble plot: the effects table has {len(effects)} rows, the meta-regression "
                         f"on {moderator!r} has {len(reg.x)}; re-run the pool step")
    x = np.asarray(reg.x, dtype=float)
    yi, vi = _column(effects, "yi"), _column(effects, "vi")
    keep = np.isfinite(x) & np.isfinite(yi) & np.isfinite(vi) & (vi > 0)
    x, yi, vi = x[keep], yi[keep], vi[keep]
    plot = options.plot("bubble")
    ax = _figure_ax(ax, *BUBBLE_SIZE_IN, BUBBLE_RECT, options)
    span = [*yi]
    line = reg.line
    if line is not None:
        span += [v for v in (*line.ci_low, *line.ci_high) if math.isfinite(v)]
        ax.fill_between(line.x, scale.show(np.asarray(line.ci_low)), scale.show(np.asarray(line.ci_high)),
                        color=style.FAINT, lw=0, zorder=0)
        ax.plot(line.x, scale.show(np.asarray(line.pred)), color=style.INK, lw=style.LINE_WIDTH * 1.5,
                zorder=2)
    if reg.coefficients:
        note = _metareg_summary(reg, scale)
        if line is None:
            note = "No fitted line (the model has more than one slope)\n" + note
    else:
        note = f"No meta-regression line ({_named(reg.note, moderator) or 'not computed'})"
    if x.size:
        w = 1.0 / vi
        ax.scatter(x, scale.show(yi), s=BUBBLE_MAX_PT2 * w / w.max(), facecolors=style.TRANSLUCENT,
                   edgecolors=options.colour("study", style.INK), linewidths=style.LINE_WIDTH, zorder=3)
    ax.axhline(scale.null, color=style.INK, lw=style.THIN_LINE, ls=":", zorder=1)
    span = span or [0.0]
    pad = BUBBLE_PAD * (max(span) - min(span) or 1.0)
    _set_effect_axis(ax, "y", scale, min(span) - pad, max(span) + pad, plot)
    xs = [*x, *(line.x if line is not None else ())] or [0.0]
    xpad = BUBBLE_PAD * (max(xs) - min(xs) or 1.0)
    ax.set_xlim(min(xs) - xpad, max(xs) + xpad)
    ax.set_xlabel(display(moderator))
    title = plot.labels.axis_title
    ax.set_ylabel(scale.axis_label if title is None else title)
    size = style.font_scale()
    chars = BUBBLE_NOTE_CHARS  # at a requested width: as many characters as fit it
    if options.width_in is not None:
        chars = max(BUBBLE_NOTE_MIN_CHARS, int(BUBBLE_NOTE_CHARS * options.width_in / BUBBLE_SIZE_IN[0] / size))
    note = "\n".join(_wrap(line_, chars) for line_ in note.split("\n"))
    ax.annotate(note, xy=(0, 1), xycoords="axes fraction", xytext=(0, BUBBLE_NOTE_OFFSET_PT),
                textcoords="offset points",
                ha="left", va="bottom", fontsize=style.SMALL_SIZE * size, color=style.DARK, parse_math=False)
    if result.title:
        ax.set_title(_title_text(result.title, options), loc="left", fontweight="bold",
                     pad=BUBBLE_NOTE_OFFSET_PT + BUBBLE_LINE_PT * size * (note.count("\n") + 1)
                     + BUBBLE_TITLE_GAP_PT)
    _fit_to_figure(ax, options, f"bubble plot of {result.name}")
    return ax
