"""Figures of a network meta-analysis (``ntxmeta.network``).

* ``network_graph``: treatments on a circle (netmeta ``netgraph``'s
  default "circle" layout, Rücker & Schwarzer 2016 [1]), one straight edge
  per directly compared pair whose width is proportional to the number of
  studies of that comparison (netmeta ``thickness = "number.of.studies"``),
  node area proportional to the participants of a treatment when given.
* ``network_forest``: each treatment versus a reference with its CI and a
  P-score column (netmeta ``forest.netmeta`` with ``rightcols`` holding the
  P-score), rows ordered by P-score, best first.

Artists carry ``gid``s (``edge:A|B``, ``nodes``, ``estimate:T``, ``ci:T``)
so the tests and a reader of the SVG can find them. Styling comes from
``ntxmeta.style`` (black ink, greyscale-safe).

References
----------
1. Rücker G, Schwarzer G (2016). Automated drawing of network plots in
   network meta-analysis. Res Synth Methods 7:94-107.
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import style
from .network import NetworkFit, rank_treatments

#: Edge width (points) of the most-studied comparison; the others scale linearly.
EDGE_MAX_PT = 6.0
#: Node area (points^2) of the largest treatment when participants are given,
#: and of every node otherwise.
NODE_MAX_PT2 = 400.0
NODE_PT2 = 120.0
#: Smallest node area, so that a treatment with few participants stays visible.
NODE_MIN_PT2 = 30.0
GRAPH_IN = (4.0, 4.0)
ROW_IN = 0.22
FOREST_WIDTH_IN = 6.0
#: Axes rectangle of the forest plot (figure fractions, left/right leave room
#: for the treatment labels and the text columns).
FOREST_LEFT, FOREST_RIGHT = 0.25, 0.58
#: Text columns right of the forest axes (inches): gap, estimate [CI], P-score.
CI_GAP_IN, CI_COL_IN, P_COL_IN = 0.12, 1.45, 0.55


#: Ticks of a ratio axis (log scale), those inside the limits are shown.
RATIO_TICKS = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0, 20.0)


def ratio_axis(ax: Axes) -> None:
    """A log-scale effect axis with plain tick labels (0.5, 1, 2), no minor ticks.

    matplotlib's log ticks are mathtext ("10^-1"), which the project's text
    style does not render; the forest plots label ratios plainly.
    """
    from matplotlib.ticker import FixedLocator, NullLocator
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi] or [1.0]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])


def _circle(T: int) -> np.ndarray:
    """Positions of T nodes on the unit circle, the first at the top, clockwise."""
    a = np.pi / 2 - 2 * np.pi * np.arange(T) / T
    return np.column_stack([np.cos(a), np.sin(a)])


def network_graph(fit: NetworkFit, *, participants: dict | None = None, title: str | None = None,
                  ax: Axes | None = None) -> Figure:
    """Network graph of ``fit`` (see the module docstring).

    Parameters
    ----------
    fit : NetworkFit
    participants : {treatment: number of participants}, optional; node area
        proportional to it (every treatment needs a value), else equal nodes.
    ax : Axes, optional; default a new styled Figure of ``GRAPH_IN``.
    """
    if ax is None:
        ax = style.new_axes(*GRAPH_IN, rect=(0.12, 0.12, 0.76, 0.76))
    T = len(fit.treatments)
    xy = _circle(T)
    comps = fit.comparisons()
    nmax = max(n for _, _, n in comps)
    if participants is not None:
        missing = [t for t in fit.treatments if t not in participants]
        if missing:
            raise ValueError(f"network_graph: participants has no value for {missing}")
        p = np.array([float(participants[t]) for t in fit.treatments])
        sizes = np.maximum(NODE_MAX_PT2 * p / p.max(), NODE_MIN_PT2)
    else:
        sizes = np.full(T, NODE_PT2)
    with style.styled():
        for a, b, n in comps:
            i, j = fit.index(a), fit.index(b)
            ax.plot(xy[[i, j], 0], xy[[i, j], 1], color=style.DARK, solid_capstyle="butt",
                    linewidth=EDGE_MAX_PT * n / nmax, gid=f"edge:{a}|{b}", zorder=1)
            mid = xy[[i, j]].mean(axis=0)
            ax.text(mid[0], mid[1], str(n), ha="center", va="center", fontsize=style.SMALL_SIZE,
                    bbox=dict(boxstyle="round,pad=0.15", fc=style.PAPER, ec="none"), zorder=2,
                    gid=f"count:{a}|{b}")
        ax.scatter(xy[:, 0], xy[:, 1], s=sizes, color=style.PAPER, edgecolors=style.INK,
                   linewidths=style.LINE_WIDTH, zorder=3, gid="nodes")
        for t, (x, y) in zip(fit.treatments, xy):
            r = 1.14
            ha = "center" if abs(x) < 0.2 else ("left" if x > 0 else "right")
            ax.text(r * x, r * y, t, ha=ha, va="center", fontsize=style.FONT_SIZE, gid=f"label:{t}")
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.set_axis_off()
        if title:
            ax.set_title(title)
    return ax.figure


def network_forest(fit: NetworkFit, reference: str | None = None, *, small_values: str = "good",
                   transform=None, xlabel: str = "Effect versus reference",
                   null_value: float | None = None, digits: int = 2, title: str | None = None,
                   ax: Axes | None = None, pscores: dict | None = None) -> Figure:
    """Forest plot of each treatment versus ``reference`` (default the fit's).

    Rows ordered by P-score (``small_values`` as ``rank_treatments``), best
    first; columns: treatment, estimate with CI (drawn and as text) and
    P-score. ``transform`` (e.g. ``np.exp``) maps estimates and bounds to
    the display scale; the axis is then logarithmic if ``transform`` is
    ``np.exp``. ``null_value``: the vertical line (0, or 1 after exp).
    """
    reference = fit.reference if reference is None else reference
    r = fit.index(reference)
    if pscores is None:   # a fit's own; a stored result passes the P-scores it holds
        rank = rank_treatments(fit, small_values=small_values, nsim=0)
        pscores = dict(zip(fit.treatments, rank.pscore))
    order = sorted(fit.treatments, key=lambda t: -pscores[t])
    others = [t for t in order if t != reference]
    f = transform or (lambda x: x)
    if null_value is None:
        null_value = float(f(0.0))
    n = len(others)
    if ax is None:
        h = ROW_IN * (n + 2) + 0.6
        ax = style.new_axes(FOREST_WIDTH_IN, h,
                            rect=(FOREST_LEFT, 0.6 / h, FOREST_RIGHT - FOREST_LEFT,
                                  ROW_IN * (n + 1) / h))
    # text columns placed in inches right of the axes, whatever its width
    pos = ax.get_position()
    fig_w = ax.figure.get_figwidth()
    ax_w_in = pos.width * fig_w

    def past(inches: float) -> float:     # axes fraction `inches` right of the axes
        return 1.0 + inches / ax_w_in

    x_ci, x_p = past(CI_GAP_IN), past(CI_GAP_IN + CI_COL_IN + P_COL_IN)
    with style.styled():
        for row, t in enumerate(others):
            j = fit.index(t)
            y = n - row
            est, lo, hi = (float(f(v)) for v in (fit.effect[r, j], fit.ci_low[r, j],
                                                 fit.ci_high[r, j]))
            lo, hi = min(lo, hi), max(lo, hi)
            ax.plot([lo, hi], [y, y], color=style.INK, linewidth=style.LINE_WIDTH, gid=f"ci:{t}")
            ax.plot([est], [y], marker="s", color=style.INK, markersize=4, linestyle="none",
                    gid=f"estimate:{t}")
            tr = ax.get_yaxis_transform()
            ax.text(-0.03, y, t, transform=tr, ha="right", va="center", fontsize=style.FONT_SIZE)
            ax.text(x_ci, y, f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]", transform=tr,
                    ha="left", va="center", fontsize=style.FONT_SIZE, gid=f"citext:{t}")
            ax.text(x_p, y, f"{pscores[t]:.2f}", transform=tr, ha="right", va="center",
                    fontsize=style.FONT_SIZE, gid=f"pscore:{t}")
        tr = ax.get_yaxis_transform()
        ax.text(-0.03, n + 1, f"vs {reference}", transform=tr, ha="right", va="center",
                fontsize=style.FONT_SIZE, weight="bold")
        ax.text(x_ci, n + 1, f"Estimate [{fit.level:g}% CI]", transform=tr, ha="left",
                va="center", fontsize=style.FONT_SIZE, weight="bold")
        ax.text(x_p, n + 1, "P-score", transform=tr, ha="right", va="center",
                fontsize=style.FONT_SIZE, weight="bold")
        ax.axvline(null_value, color=style.MID, linewidth=style.THIN_LINE, zorder=0)
        if transform is np.exp:
            ratio_axis(ax)
        ax.set_ylim(0.4, n + 1.5)
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
    return ax.figure
