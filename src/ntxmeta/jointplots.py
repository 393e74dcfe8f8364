"""Figures of the joint models (``ntxmeta.joint``), drawn from a stored result only.

* ``timepoints_forest``: every estimate of every trial, grouped by time point
  (end of treatment, after treatment), each group closed by its pooled
  diamond from the multilevel model: whether the effect lasts, at a glance.
* ``network_graph`` / ``network_forest``: ``ntxmeta.networkplots`` on the
  stored matrices (``joint.NetworkView``), the P-scores as stored.

Formatting only: every number drawn is in ``JointResult``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import networkplots, style
from ._common import z_crit
from .joint import TIMES, JointResult, NetworkView
from .result import Scale

ROW_IN = 0.2
WIDTH_IN = 6.5
#: Axes rectangle across the figure width (fractions): labels left, CI text right.
LEFT, RIGHT = 0.32, 0.72
#: Half-height of a pooled diamond, in rows.
DIAMOND_H = 0.35
KINDS = {"timepoints": ("timepoints",), "network": ("network_graph", "network_forest")}


def timepoints_forest(result: JointResult):
    """Forest plot of a time-point model (see the module docstring)."""
    scale = Scale.of(result.measure)
    show = scale.show
    groups = [(e, [r for r in result.rows if r[3] == e.label]) for e in result.estimates]
    n = sum(len(rows) + 2 for _, rows in groups)
    h = ROW_IN * (n + 1) + 0.7
    ax = style.new_axes(WIDTH_IN, h, rect=(LEFT, 0.55 / h, RIGHT - LEFT, ROW_IN * (n + 0.5) / h))
    z = float(z_crit(result.level))
    tr = ax.get_yaxis_transform()
    y = n
    with style.styled():
        for est, rows in groups:
            ax.text(-0.02, y, est.label, transform=tr, ha="right", va="center", weight="bold")
            y -= 1
            for row_id, _trial, label, _time, yi, vi in rows:
                lo, hi = yi - z * np.sqrt(vi), yi + z * np.sqrt(vi)
                ax.plot(show([lo, hi]), [y, y], color=style.INK, linewidth=style.LINE_WIDTH,
                        gid=f"ci:{row_id}")
                ax.plot([show(yi)], [y], marker="s", color=style.INK, markersize=3.5,
                        linestyle="none", gid=f"estimate:{row_id}")
                ax.text(-0.02, y, label, transform=tr, ha="right", va="center")
                ax.text(1.03, y, f"{show(yi):.2f} [{show(lo):.2f}, {show(hi):.2f}]",
                        transform=tr, ha="left", va="center")
                y -= 1
            xs = show(np.array([est.ci_low, est.estimate, est.ci_high, est.estimate]))
            ax.fill(xs, [y, y + DIAMOND_H, y, y - DIAMOND_H], color=style.INK,
                    gid=f"pooled:{est.label}")
            what = f"Model estimate, {est.trials} trial{'s' if est.trials != 1 else ''}"
            ax.text(-0.02, y, what, transform=tr, ha="right", va="center", style="italic")
            ax.text(1.03, y, f"{show(est.estimate):.2f} [{show(est.ci_low):.2f}, "
                    f"{show(est.ci_high):.2f}]", transform=tr, ha="left", va="center",
                    weight="bold")
            y -= 1
        ax.axvline(scale.null, color=style.MID, linewidth=style.THIN_LINE, zorder=0)
        if scale.log:
            networkplots.ratio_axis(ax)
        ax.set_ylim(y + 0.5, n + 0.6)
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel(f"{scale.axis_label}; below {scale.null:g} favours naltrexone")
        diff = result.tests.get("difference")
        if diff:
            what = "ratio" if scale.log else "difference"
            ax.set_title(f"After vs end of treatment: {what} {show(diff['estimate']):.2f}, "
                         f"p = {diff['pval']:.2f}", fontsize=style.FONT_SIZE)
    return ax.figure


def draw(result: JointResult, kind: str):
    """The figure ``kind`` of :data:`KINDS` for a stored result."""
    if kind == "timepoints":
        return timepoints_forest(result)
    view = NetworkView.of(result)
    if kind == "network_graph":
        return networkplots.network_graph(view)
    scale = Scale.of(result.measure)
    pscores = {r["treatment"]: r["pscore"] for r in result.ranking}
    return networkplots.network_forest(
        view, result.treatments[0], transform=np.exp if scale.log else None,
        xlabel=f"{scale.axis_label} vs {result.treatments[0]}; below {scale.null:g} is better",
        pscores=pscores)


def write_figures(result_json: str | Path, pngs: dict) -> None:
    """Every figure of a joint result: ``pngs`` maps kind -> PNG path (SVG beside it)."""
    from .joint import read_result
    from .style import save_figure
    result = read_result(result_json)
    for kind, png in pngs.items():
        fig = draw(result, kind)
        save_figure(getattr(fig, "figure", fig), str(Path(png).with_suffix("")))
