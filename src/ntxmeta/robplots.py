"""Risk-of-bias figures: the robvis-style traffic-light plot and the weighted summary.

Both take a *rob frame*: one row per study with the five domain columns of
:data:`ntxmeta.rob.DOMAINS` and ``overall``, each one of
:data:`ntxmeta.rob.JUDGEMENTS`, and ``label`` (else ``study_id``) to name
the study; :func:`ntxmeta.rob.assess_frame` builds it from the sourced table
and the comparisons, with the design floors applied.

- :func:`rob_traffic_light`: studies x domains, one dot per cell coloured by
  the judgement with its symbol on it (+ low, − some concerns, × high,
  ? not assessed), the overall judgement in its own column, and a key of the
  domains and judgements under the grid, as robvis' ``rob_traffic_light``
  draws it [1]_.
- :func:`rob_summary`: for each domain and overall, one bar split into the
  share of the analysis' weight that each judgement carries (robvis'
  ``rob_summary(weighted = TRUE)``); the shares are
  :func:`ntxmeta.rob.weighted_shares`, read here, not computed.

Colours and symbols come from :mod:`ntxmeta.style` (``ROB_*``): the
Okabe-Ito blue / yellow / vermillion, distinct under the common colour-vision
deficiencies, and a symbol on every dot so the figure reads in greyscale.
Each dot, symbol and bar segment carries a ``gid`` (``rob:{row}:{column}``,
``robsym:{row}:{column}``, ``robsum:{column}:{judgement}``) that the SVG
keeps as its ``id``, so a test or an editor can find every cell.

:func:`draw_judgement` draws one cell, :func:`domain_key` and
:func:`judgement_key` are the key in words: the forest plot
(:func:`ntxmeta.plots.forest`) draws its risk-of-bias columns and key with
them, so the two figures cannot drift apart.

Each figure function takes ``ax=None`` and returns the Axes it drew on (STYLE.md
habit 12); with ``ax=None`` it makes its own Agg-backed Figure sized to its
content (save it with :func:`ntxmeta.style.save_figure`, cropped).

References
----------
.. [1] McGuinness LA, Higgins JPT. Risk-of-bias VISualization (robvis): an R
   package and Shiny web app for visualizing risk-of-bias assessments. Res
   Synth Methods 2021;12:55-61.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import style
from .figopts import DEFAULT as DEFAULT_FIGURE, FigureOptions, grey
from .rob import DOMAINS, JUDGEMENTS, NAMES, SHORT, weighted_shares
from .style import save_figure

__all__ = ["rob_traffic_light", "rob_summary", "save_figure", "COLUMNS", "check_frame",
           "draw_judgement", "domain_key", "judgement_key"]

#: The columns of both figures: the five domains, then overall.
COLUMNS: tuple[str, ...] = (*DOMAINS, "overall")
HEADERS = {**SHORT, "overall": "Overall"}
#: Geometry, in inches. A row of 0.22 in holds a 0.17-in dot with air.
ROW_IN = 0.22
COL_IN = 0.34
LABEL_MAX_IN = 2.2         # study labels longer than this are cut with an ellipsis
MARGIN_IN = 0.12
HEADER_IN = 0.3
KEY_LINE_IN = 0.15         # one line of the key under the grid
DOT_PT = 12.0              # diameter of a dot, in points
SYMBOL_SIZE = 7.0
#: Summary bars: height of one bar (in rows), width of the axis; segments
#: narrower than this share (percent) carry no label.
BAR_HEIGHT = 0.7
SUMMARY_PLOT_IN = 3.2
SHARE_LABEL_MIN_PCT = 10.0


def check_frame(rob_frame: pd.DataFrame) -> list[str]:
    """The study labels; ValueError if a column or a judgement is missing or unknown."""
    missing = [c for c in COLUMNS if c not in rob_frame.columns]
    if missing:
        raise ValueError(f"the rob frame has no column {', '.join(missing)}; it needs "
                         f"{', '.join(COLUMNS)} (ntxmeta.rob.assess_frame)")
    for c in COLUMNS:
        bad = sorted(set(rob_frame[c]) - set(JUDGEMENTS), key=str)
        if bad:
            raise ValueError(f"column {c} holds {bad[0]!r}; use one of {', '.join(JUDGEMENTS)}")
    name = "label" if "label" in rob_frame.columns else "study_id"
    if name not in rob_frame.columns:
        return [f"Study {i + 1}" for i in range(len(rob_frame))]
    return [str(v) for v in rob_frame[name]]


#: Luminance below which a symbol on a configured (or greyscale) fill is white.
DARK_FILL = 0.6


def palette(options: FigureOptions = DEFAULT_FIGURE) -> tuple[dict, dict]:
    """(fill, symbol ink) per judgement: style.ROB_* unless the options set colours or greyscale.

    A configured or grey fill gets a white symbol when its luminance is
    below :data:`DARK_FILL`, else a black one (the default fills keep
    style.ROB_SYMBOL_INK).
    """
    fill, ink = dict(style.ROB_COLOURS), dict(style.ROB_SYMBOL_INK)
    for j in JUDGEMENTS:
        colour = options.colour(f"rob_{j}", style.ROB_COLOURS[j])
        if colour != style.ROB_COLOURS[j]:
            fill[j] = colour
            ink[j] = "white" if float(grey(colour)) < DARK_FILL else style.INK
    return fill, ink


def _judgement_handles(options: FigureOptions = DEFAULT_FIGURE) -> list:
    fill, _ = palette(options)
    return [Line2D([], [], linestyle="none", marker="o", markersize=DOT_PT * 0.7,
                   markerfacecolor=fill[j], markeredgecolor=style.INK,
                   markeredgewidth=style.THIN_LINE,
                   label=f"{style.ROB_SYMBOLS[j]}  {style.ROB_WORDS[j]}") for j in JUDGEMENTS]


def domain_key() -> list[str]:
    """The key of the domain columns, one entry per domain: 'D1: Randomisation process', ..."""
    return [f"{SHORT[d]}: {NAMES[d]}" for d in DOMAINS]


def judgement_key() -> list[str]:
    """The key of the dots in words, one entry per judgement: '+ Low', '\u2212 Some concerns', ..."""
    return [f"{style.ROB_SYMBOLS[j]} {style.ROB_WORDS[j]}" for j in JUDGEMENTS]


def draw_judgement(ax: Axes, x: float, y: float, judgement: str, *, cell: str,
                   transform=None, dot_pt: float = DOT_PT,
                   symbol_pt: float = SYMBOL_SIZE, options: FigureOptions = DEFAULT_FIGURE) -> None:
    """One cell: a dot coloured by the judgement with its symbol on it.

    The dot is a PathCollection with ``gid`` ``rob:{cell}``, the symbol a
    Text with ``gid`` ``robsym:{cell}`` (``cell`` is ``{row}:{column}``).
    ``transform`` places (x, y) (default the data coordinates); a cell
    placed by another transform (the forest plot's columns, outside the
    Axes) is not clipped.
    """
    where = {} if transform is None else {"transform": transform}
    fill, ink = palette(options)
    ax.scatter([x], [y], s=dot_pt ** 2, facecolors=fill[judgement],
               edgecolors=style.INK, linewidths=style.THIN_LINE, zorder=3, gid=f"rob:{cell}",
               clip_on=transform is None, **where)
    ax.text(x, y, style.ROB_SYMBOLS[judgement], ha="center", va="center_baseline",
            color=ink[judgement], fontproperties=style.font(symbol_pt, "bold"),
            zorder=4, gid=f"robsym:{cell}", **where)


def rob_traffic_light(rob_frame: pd.DataFrame, ax: Axes | None = None, *,
                      options: FigureOptions | None = None) -> Axes:
    """Traffic-light plot: one row per study, one dot per domain and overall.

    Parameters
    ----------
    rob_frame : DataFrame
        One row per study (drawn top to bottom in its order): the domain
        columns, ``overall``, and ``label`` or ``study_id``.
    ax : Axes, optional
        Where to draw; default a new Figure sized to the studies. The study
        labels, headers and key sit outside the Axes: leave room around it.

    Returns
    -------
    Axes
        With one dot (a PathCollection, ``gid`` ``rob:{row}:{column}``) and
        one symbol (a Text, ``robsym:{row}:{column}``) per cell.

    Raises
    ------
    ValueError
        If a column is missing or a cell is not a judgement.
    """
    options = DEFAULT_FIGURE if options is None else options
    if options.font_scale == 1.0:  # laid out outside the style, as it always was
        return _traffic_light(rob_frame, ax, options)
    with style.styled(font_scale=options.font_scale):
        return _traffic_light(rob_frame, ax, options)


def _traffic_light(rob_frame: pd.DataFrame, ax: Axes | None, options: FigureOptions) -> Axes:
    labels = check_frame(rob_frame)
    n = len(labels)
    prop = style.font()
    labels = [style.fit_text(t, LABEL_MAX_IN, prop) for t in labels]
    if ax is None:
        label_in = max([style.text_width_in(t, prop) for t in labels] + [0.5])
        key_in = KEY_LINE_IN * (len(DOMAINS) + 1)
        width = MARGIN_IN * 2 + label_in + 0.1 + COL_IN * len(COLUMNS)
        width = max(width, MARGIN_IN * 2 + 3.6)  # room for the key beside the legend
        height = MARGIN_IN * 2 + HEADER_IN + ROW_IN * max(n, 1) + key_in
        left = (MARGIN_IN + label_in + 0.1) / width
        ax = style.new_axes(width, height, (left, (MARGIN_IN + key_in) / height,
                                            COL_IN * len(COLUMNS) / width,
                                            ROW_IN * max(n, 1) / height))
    with style.styled():
        for i, rec in enumerate(rob_frame[list(COLUMNS)].to_dict("records")):
            for x, col in enumerate(COLUMNS):
                draw_judgement(ax, x, i, rec[col], cell=f"{i}:{col}", options=options)
        ax.axvline(len(DOMAINS) - 0.5, color=style.MID, linewidth=style.THIN_LINE)
        for i in range(n):
            ax.axhline(i, color=style.FAINT, linewidth=style.THIN_LINE, zorder=1)
        ax.set_xlim(-0.5, len(COLUMNS) - 0.5)
        ax.set_ylim(max(n, 1) - 0.5, -0.5)
        ax.set_xticks(range(len(COLUMNS)), [HEADERS[c] for c in COLUMNS])
        ax.xaxis.tick_top()
        ax.set_yticks(range(n), labels)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.text(0.0, -0.04, "\n".join(domain_key()), transform=ax.transAxes, ha="right", va="top",
                fontproperties=style.font(style.SMALL_SIZE), gid="rob:key")
        ax.legend(handles=_judgement_handles(options), loc="upper left", bbox_to_anchor=(0.0, -0.02),
                  title="Judgement", alignment="left", borderaxespad=0.0, handletextpad=0.3)
        if n == 0:
            ax.text(len(COLUMNS) / 2 - 0.5, 0, "no studies", ha="center", va="center",
                    color=style.DARK)
    return ax


def rob_summary(rob_frame: pd.DataFrame, weights: Sequence[float], ax: Axes | None = None, *,
                options: FigureOptions | None = None) -> Axes:
    """Weighted summary: per domain and overall, the share of weight of each judgement.

    Parameters
    ----------
    rob_frame : DataFrame
        As for :func:`rob_traffic_light`.
    weights : sequence of float, shape (k,)
        The studies' weights in the analysis, in the frame's order (e.g.
        ``result.weights_pct``); NaN (not pooled) counts as 0.
    ax : Axes, optional
        Where to draw; default a new Figure.

    Returns
    -------
    Axes
        With one bar segment (a Rectangle, ``gid`` ``robsum:{column}:{judgement}``)
        per column and judgement, its width the share in percent
        (:func:`ntxmeta.rob.weighted_shares`), drawn top to bottom D1...D5,
        Overall, and segments left to right low, some concerns, high, not
        assessed.

    Raises
    ------
    ValueError
        As :func:`rob_traffic_light`, or if the weights do not fit (see
        :func:`ntxmeta.rob.weighted_shares`).
    """
    options = DEFAULT_FIGURE if options is None else options
    if options.font_scale == 1.0:  # laid out outside the style, as it always was
        return _summary(rob_frame, weights, ax, options)
    with style.styled(font_scale=options.font_scale):
        return _summary(rob_frame, weights, ax, options)


def _summary(rob_frame: pd.DataFrame, weights: Sequence[float], ax: Axes | None,
             options: FigureOptions) -> Axes:
    check_frame(rob_frame)
    fill, ink = palette(options)
    shares = weighted_shares(rob_frame, weights)
    names = {**{d: f"{SHORT[d]} {NAMES[d]}" for d in DOMAINS}, "overall": "Overall"}
    if ax is None:
        prop = style.font()
        label_in = max(style.text_width_in(t, prop) for t in names.values())
        width = MARGIN_IN * 2 + label_in + 0.1 + SUMMARY_PLOT_IN
        key_in = 0.75
        height = MARGIN_IN * 2 + ROW_IN * 1.3 * len(COLUMNS) + key_in
        ax = style.new_axes(width, height, ((MARGIN_IN + label_in + 0.1) / width,
                                            (MARGIN_IN + key_in) / height,
                                            SUMMARY_PLOT_IN / width,
                                            ROW_IN * 1.3 * len(COLUMNS) / height))
    with style.styled():
        for y, col in enumerate(COLUMNS):
            left = 0.0
            for j in JUDGEMENTS:
                share = float(shares.loc[col, j])
                bars = ax.barh([y], [share], left=[left], height=BAR_HEIGHT,
                               color=fill[j], edgecolor=style.INK,
                               linewidth=style.THIN_LINE)
                bars.patches[0].set_gid(f"robsum:{col}:{j}")
                if share >= SHARE_LABEL_MIN_PCT:
                    ax.text(left + share / 2, y, f"{share:.0f}%", ha="center",
                            va="center_baseline", color=ink[j],
                            fontproperties=style.font(style.SMALL_SIZE))
                left += share
        ax.set_xlim(0, 100)
        ax.set_ylim(len(COLUMNS) - 0.5, -0.5)
        ax.set_xticks(np.arange(0, 101, 25), [f"{v}%" for v in range(0, 101, 25)])
        ax.set_yticks(range(len(COLUMNS)), [names[c] for c in COLUMNS])
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_xlabel("Share of the analysis' weight")
        ax.legend(handles=[Patch(facecolor=fill[j], edgecolor=style.INK,
                                 linewidth=style.THIN_LINE, label=style.ROB_WORDS[j])
                           for j in JUDGEMENTS],
                  loc="upper center", bbox_to_anchor=(0.5, -0.32), ncols=len(JUDGEMENTS),
                  borderaxespad=0.0, handlelength=1.0, columnspacing=1.0)
    return ax
