"""The trial sequential analysis figure, as the Copenhagen TSA software draws it [1].

x: cumulative participants; y: cumulative z-statistic. Drawn: the z-curve
(one marker per trial, in chronological order, from the origin), the
conventional boundaries +-z_{1-alpha/2} (dashed), the alpha-spending
monitoring boundaries (solid), the futility wedge when the result has one
(dotted), and a vertical line at the required information size labelled
"RIS = N". The figure computes no statistic: every number comes from the
:class:`~ntxmeta.tsa.TSAResult`.

Each artist carries a ``gid`` (``z_curve``, ``conventional_upper``,
``conventional_lower``, ``boundary_upper``, ``boundary_lower``,
``futility_upper``, ``futility_lower``, ``ris``) so that tests and callers
can find it without reading pixels.

Boundaries are drawn where they are finite and, like the TSA software, the
y axis is cut at +-``Y_MAX``: early O'Brien-Fleming boundaries can be
very large (the lines are clipped, the data kept). The boundary of the look
that reaches the RIS is the final analysis at t = 1 and is drawn at x = RIS.

References
----------
1. Thorlund K, Engstrom J, Wetterslev J, Brok J, Imberger G, Gluud C. User
   manual for trial sequential analysis (TSA). Copenhagen Trial Unit, 2011,
   ch. 1.3-1.4.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import style
from .tsa import TSAResult

#: The y axis is cut here (|z|), as TSA figures are; lines beyond are clipped.
Y_MAX = 8.0
#: Figure size in inches (one column of a journal page, TSA's aspect).
SIZE_IN = (6.0, 4.6)
#: Axes position: room below for the legend, which stays off the curve.
AXES_RECT = (0.10, 0.27, 0.86, 0.66)


def _fmt_n(x: float) -> str:
    return f"{int(math.ceil(x)):,}"


def plot_tsa(result: TSAResult, *, title: str | None = None, scale_name: str = "RR",
             favours: tuple[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """Draw the TSA figure of ``result``; returns its Figure.

    Parameters
    ----------
    result : TSAResult
    title : str, optional
        Axes title.
    scale_name : str
        Named in the y-axis label ("Cumulative z (log RR / SE)").
    favours : (str, str), optional
        Labels for z < 0 and z > 0 (e.g. ("Favours naltrexone", "Favours
        placebo")), written at the left end of each half.
    ax : Axes, optional
        Draw here; default a new styled Figure of ``SIZE_IN``.
    """
    if ax is None:
        ax = style.new_axes(*SIZE_IN, rect=AXES_RECT)
    looks = result.looks
    x = np.array([lk.n_cum for lk in looks])
    z = np.array([lk.z for lk in looks])
    ris = result.ris_adjusted
    c = -float(_ndtri(result.alpha / result.sides))
    x_max = 1.08 * max(ris, float(x.max()))
    with style.styled():
        ax.plot(np.concatenate([[0.0], x]), np.concatenate([[0.0], z]), color=style.INK,
                marker="o", markersize=3.5, linewidth=style.LINE_WIDTH * 1.5, gid="z_curve",
                label="Cumulative z-curve")
        ax.axhline(0.0, color=style.LIGHT, linewidth=style.THIN_LINE)
        if result.sides == 2:
            ax.axhline(c, color=style.MID, linestyle="--", linewidth=style.LINE_WIDTH,
                       gid="conventional_upper",
                       label=f"Conventional boundary, Wald (z = \u00b1{c:.2f})")
            ax.axhline(-c, color=style.MID, linestyle="--", linewidth=style.LINE_WIDTH,
                       gid="conventional_lower")
        else:
            ax.axhline(-c, color=style.MID, linestyle="--", linewidth=style.LINE_WIDTH,
                       gid="conventional_lower",
                       label=f"Conventional boundary, Wald (z = \u2212{c:.2f})")
        xb = np.minimum(x, ris)
        # looks after the one that reached the RIS: the conventional boundary of the
        # analysis's own test, drawn at their own x as short bars (not on the RIS line)
        reached = np.flatnonzero(x >= ris)
        past = np.zeros(len(x), dtype=bool)
        if reached.size:
            past[reached[0] + 1:] = True
        labelled = False
        for name in ("upper", "lower"):
            b = np.array([getattr(lk, name) for lk in looks])
            ok = np.isfinite(b) & ~past
            if ok.any():
                ax.plot(xb[ok], b[ok], color=style.INK, linewidth=style.LINE_WIDTH * 1.5,
                        gid=f"boundary_{name}",
                        label=None if labelled else "Monitoring boundary (alpha spending)")
                labelled = True
            after = np.isfinite(b) & past
            if after.any():
                ax.plot(x[after], b[after], ls="none", marker="_", ms=10, mew=1.5,
                        color=style.INK, gid=f"conventional_past_ris_{name}",
                        label=None if name == "lower" else "Boundary past the RIS")
        labelled = False
        for name in ("futility_upper", "futility_lower"):
            f = np.array([getattr(lk, name) for lk in looks])
            ok = np.isfinite(f)
            if ok.any():
                ax.plot(xb[ok], f[ok], color=style.DARK, linestyle=":",
                        linewidth=style.LINE_WIDTH * 1.5, gid=name,
                        label=None if labelled else "Futility boundary (beta spending)")
                labelled = True
        ax.axvline(ris, color=style.DARK, linewidth=style.LINE_WIDTH, gid="ris",
                   label=f"RIS = {_fmt_n(ris)}")
        ax.annotate(f"RIS = {_fmt_n(ris)}", xy=(ris, Y_MAX), xytext=(-3, -3),
                    textcoords="offset points", ha="right", va="top",
                    fontsize=style.SMALL_SIZE)
        if favours is not None:
            ax.text(0.01, 0.03, favours[0], transform=ax.transAxes, ha="left", va="bottom",
                    fontsize=style.SMALL_SIZE, style="italic")
            ax.text(0.01, 0.97, favours[1], transform=ax.transAxes, ha="left", va="top",
                    fontsize=style.SMALL_SIZE, style="italic")
        ax.set_xlim(0.0, x_max)
        ax.set_ylim(-Y_MAX, Y_MAX)
        ax.set_xlabel("Cumulative number of participants")
        ax.set_ylabel(f"Cumulative z (log {scale_name} / SE)"
                      if result.measure in ("RR", "OR") else f"Cumulative z ({scale_name} / SE)")
        if title:
            ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                  fontsize=style.SMALL_SIZE, frameon=False)
    return ax.figure


def _ndtri(p: float) -> float:
    from scipy import special
    return float(special.ndtri(p))
