"""Figures of an exact Bayesian random-effects fit (:func:`ntxmeta.bayes.bayesmeta`).

- :func:`posterior_figure`: three panels, as bayesmeta's ``plot(x, which=2:4)``
  (Röver 2020, Fig. 3): the joint posterior of (mu, tau) as contours with
  the posterior medians marked; the marginal posterior of mu with its
  credible interval shaded and the line of no effect; the marginal
  posterior of tau with its prior dashed.
- :func:`shrinkage_forest`: each study's observed estimate and CI (open
  circle) beside its shrunken estimate, the posterior mean of theta_i, and
  credible interval (filled circle), then the overall effect mu (diamond)
  and the effect in a new study (bar), as bayesmeta's ``forestplot``
  with ``shrinkage``.

The plots compute no statistic: every density, interval and mean is read
from the :class:`~ntxmeta.bayes.BayesFit` (``joint_density``,
``mu_density``, ``tau_density``, ``tau_prior_density``, ``study_mean``,
``study_ci``, ``mu``, ``pred``); the observed CIs are yi -/+ z sqrt(vi) at
the fit's level. Numbers are on the analysis scale; with a
:class:`~ntxmeta.result.Scale` whose ``log`` is set, the effect axes keep
their log values but are labelled on the ratio scale (ticks at log 0.5,
log 1, log 2 written "0.5", "1", "2").

Contours of the joint density are drawn at 1/2, 1/10 and 1/100 of its
peak on the grid (:data:`CONTOUR_FRACTIONS`): for a bivariate normal the
region above a fraction f of the peak holds 1 - f of the probability (50%,
90%, 99%), so they read as approximate credible regions.

Both functions return a :class:`matplotlib.figure.Figure` on an Agg canvas
(no pyplot), styled by :mod:`ntxmeta.style`; save it with
:func:`ntxmeta.style.save_figure` (fixed SVG hash salt, no date: the same
bytes on every run).

References
----------
1. Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta
   R package. J Stat Softw 93(6). doi:10.18637/jss.v093.i06
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from . import style
from ._common import as_float_array, z_crit
from .bayes import BayesFit
from .plots import _fmt, _minus, _nice_limits
from .result import Scale

__all__ = ["posterior_figure", "shrinkage_forest"]

#: Joint-density contours as fractions of the peak (50%, 90%, 99% regions of
#: a bivariate normal).
CONTOUR_FRACTIONS = (0.01, 0.1, 0.5)
#: Size of the three-panel posterior figure, inches.
POSTERIOR_SIZE_IN = (7.5, 2.6)
MEDIAN_MARKER_PT = 6.0
#: The tau panel reaches this far above its peak: room for the legend.
TAU_HEADROOM = 1.4
#: Forest geometry, inches: one row per study, the text column of numbers
#: right of the plot, labels cut at LABEL_MAX_IN.
ROW_IN = 0.32
PLOT_IN = 2.6
LABEL_MAX_IN = 1.8
TEXT_IN = 2.4
TOP_IN = 0.55      # title and legend
BOTTOM_IN = 0.5    # tick labels and axis label
MARGIN_IN = 0.1
#: Vertical offset of the observed (up) and shrunken (down) point in a row.
PAIR_OFFSET = 0.17
POINT_PT = 4.5
DIAMOND_HALF = 0.3
MAX_TICKS = 7
#: Ratio ticks tried, in turn, when fewer than three of plots' 1-2-5 ticks
#: fall inside a log axis (a narrow posterior): 1-2-3-5, then every digit.
LOG_DENSER = ((1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))


# --------------------------------------------------------------------------- axes


def _effect_label(scale: Scale | None) -> str:
    if scale is None:
        return "Effect \u03bc"
    return scale.axis_label


def _set_effect_axis(ax: Axes, lo: float, hi: float, scale: Scale | None) -> None:
    """x axis over [lo, hi] (analysis scale); ratio-scale labels when ``scale.log``.

    Log: ticks at log t for the 1-2-5 ratios t that ``plots`` uses (the
    ones inside [lo, hi]; the range grows to the enclosing two when fewer
    than two fall inside). Else MaxNLocator's nice ticks.
    """
    if scale is not None and scale.log:
        ticks = [math.log(t) for t in _nice_limits(lo, hi, True)]
        inside = [t for t in ticks if lo - 1e-12 <= t <= hi + 1e-12]
        for mantissas in LOG_DENSER:  # a narrow range: denser ratios, while few enough
            if len(inside) >= 3:
                break
            cands = [math.log(m_ * 10.0 ** e) for e in range(-4, 5) for m_ in mantissas]
            denser = sorted(t for t in cands if lo - 1e-12 <= t <= hi + 1e-12)
            if len(denser) <= MAX_TICKS:
                inside = max(inside, denser, key=len)
        if len(inside) < 2:
            inside = ticks
            lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
        ax.xaxis.set_major_locator(FixedLocator(inside))
        ax.xaxis.set_ticklabels([_minus(f"{math.exp(t):.3g}") for t in inside])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(lo, hi)


def _prob(p: float) -> str:
    """'= 0.975', '> 0.999', '< 0.001'."""
    if p > 0.999:
        return "> 0.999"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}"


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- posterior


#: Vector fields a figure reads, as arrays (a result read from JSON holds tuples).
_VECTORS = ("mu_grid", "mu_density", "tau_grid", "tau_density", "tau_prior_density",
            "study_mean", "study_sd", "cond_mu_mean", "cond_mu_sd")


def _arrays(fit):
    """A ``BayesFit``, or an ``AnalysisResult.bayes`` with its vectors as arrays."""
    if isinstance(fit, BayesFit):
        return fit
    return dataclasses.replace(fit, **{f: np.asarray(getattr(fit, f), dtype=float)
                                       for f in _VECTORS})


@style.styled()
def posterior_figure(fit: BayesFit, *, scale: Scale | None = None,
                     title: str | None = None) -> Figure:
    """Joint posterior of (mu, tau), marginal of mu, marginal of tau with its prior.

    Parameters
    ----------
    fit : BayesFit
    scale : Scale, optional
        Names the effect axis; ``scale.log`` labels it on the ratio scale.
    title : str, optional
        Above the figure, left.

    Returns
    -------
    Figure
        Three Axes, left to right. Artists a reader (or a test) can find by
        ``gid``: ``joint-contour`` (the ContourSet; its ``levels`` are
        :data:`CONTOUR_FRACTIONS` times the grid's peak), ``joint-median``,
        ``mu-density``, ``mu-ci`` (the shaded interval), ``null``,
        ``tau-density``, ``tau-prior``.
    """
    fit = _arrays(fit)
    fig = _new_figure(*POSTERIOR_SIZE_IN)
    ax_joint, ax_mu, ax_tau = fig.subplots(1, 3)
    mu, tau = fit.mu_grid, fit.tau_grid
    joint = fit.joint_density()
    peak = float(joint.max())
    cs = ax_joint.contour(mu, tau, joint, levels=[f * peak for f in CONTOUR_FRACTIONS],
                          colors=style.INK, linewidths=style.LINE_WIDTH,
                          linestyles=["dotted", "dashed", "solid"])
    cs.set_gid("joint-contour")
    ax_joint.plot([fit.mu.median], [fit.tau.median], ls="none", marker="+",
                  ms=MEDIAN_MARKER_PT, color=style.INK, mew=style.LINE_WIDTH,
                  gid="joint-median", label="posterior medians")
    ax_joint.axvline(0.0, color=style.MID, lw=style.THIN_LINE, ls=":", gid="null")
    ax_joint.set_ylim(0.0, tau[-1])
    ax_joint.set_ylabel("Heterogeneity \u03c4")
    ax_joint.set_title("Joint posterior, + medians", loc="left", fontsize=style.FONT_SIZE)
    ax_joint.text(0.0, -0.32, "contours: " + ", ".join(f"{f:g}" for f in CONTOUR_FRACTIONS[::-1])
                  + " \u00d7 peak (solid, dashed, dotted)", transform=ax_joint.transAxes,
                  fontsize=style.SMALL_SIZE - 1, color=style.DARK, va="top")

    ax_mu.plot(mu, fit.mu_density, color=style.INK, lw=style.LINE_WIDTH, gid="mu-density")
    inside = (mu >= fit.mu.ci.low) & (mu <= fit.mu.ci.high)
    xs = np.concatenate([[fit.mu.ci.low], mu[inside], [fit.mu.ci.high]])
    ys = np.interp(xs, mu, fit.mu_density)
    band = ax_mu.fill_between(xs, 0.0, ys, color=style.LIGHT, lw=0)
    band.set_gid("mu-ci")
    ax_mu.axvline(0.0, color=style.INK, lw=style.THIN_LINE, ls=":", gid="null")
    ax_mu.axvline(fit.mu.median, color=style.MID, lw=style.THIN_LINE)
    ax_mu.set_ylim(0.0, 1.05 * float(np.max(fit.mu_density)))
    ax_mu.set_ylabel("Posterior density")
    ax_mu.set_title(f"\u03bc: {fit.level:g}% CrI shaded; P(\u03bc < 0) "
                    f"{_prob(fit.prob_below_null)}", loc="left", fontsize=style.FONT_SIZE)

    ax_tau.plot(tau, fit.tau_density, color=style.INK, lw=style.LINE_WIDTH, gid="tau-density",
                label="posterior")
    ax_tau.plot(tau, fit.tau_prior_density, color=style.INK, lw=style.LINE_WIDTH, ls="--",
                gid="tau-prior", label=f"prior ({fit.tau_prior})")
    ax_tau.set_xlim(0.0, tau[-1])
    top = float(np.max(fit.tau_density[np.isfinite(fit.tau_density)]))
    ax_tau.set_ylim(0.0, TAU_HEADROOM * top)
    ax_tau.set_xlabel("Heterogeneity \u03c4")
    ax_tau.set_title(f"\u03c4: median {_fmt(fit.tau.median)}", loc="left",
                     fontsize=style.FONT_SIZE)
    ax_tau.legend(loc="upper right", fontsize=style.SMALL_SIZE - 1, handlelength=1.6)

    lo, hi = float(mu[0]), float(mu[-1])
    for ax in (ax_joint, ax_mu):
        _set_effect_axis(ax, min(lo, 0.0) if lo > -0.05 * (hi - lo) else lo,
                         max(hi, 0.0) if hi < 0.05 * (hi - lo) else hi, scale)
        ax.set_xlabel(_effect_label(scale))
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=style.TITLE_SIZE)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- forest


def _interval(ax: Axes, y: float, lo: float, hi: float, color: str, gid: str) -> None:
    ax.plot([lo, hi], [y, y], color=color, lw=style.LINE_WIDTH, solid_capstyle="butt", gid=gid)


def _text(v: float, lo: float, hi: float, scale: Scale | None) -> str:
    show = (lambda x: math.exp(x)) if scale is not None and scale.log else (lambda x: x)
    return f"{_fmt(show(v))} [{_fmt(show(lo))}, {_fmt(show(hi))}]"


@style.styled()
def shrinkage_forest(fit: BayesFit, labels: Sequence[str], yi, vi, *,
                     scale: Scale | None = None, title: str | None = None) -> Figure:
    """Forest plot of observed and shrunken study effects, mu and the predictive effect.

    Rows, top to bottom: one per study, its observed estimate yi with the
    CI yi -/+ z sqrt(vi) at ``fit.level`` (open circle, grey line, drawn a
    little above the row's centre) and its posterior mean E(theta_i | y)
    with the equal-tailed credible interval (filled circle, black line, a
    little below); then the overall effect mu (diamond over its credible
    interval, the point at its median) and the effect in a new study
    (bar over its credible interval, a tick at its median). A dotted line
    marks no effect. The numbers are written right of the plot on the
    shown scale.

    Parameters
    ----------
    fit : BayesFit
        Fitted on ``yi``, ``vi`` (same order).
    labels : sequence of str, length k
    yi, vi : array_like, shape (k,)
    scale : Scale, optional
    title : str, optional

    Returns
    -------
    Figure
        One Axes; y tick labels are the k + 2 row names. ``gid``s:
        ``observed`` / ``shrunken`` (one Line2D each, all the points),
        ``observed-ci`` / ``shrunken-ci`` (one Line2D per study),
        ``mu-diamond``, ``pred-bar``, ``null``.
    """
    fit = _arrays(fit)
    y = as_float_array(yi, "yi")
    v = as_float_array(vi, "vi")
    labels = [str(s) for s in labels]
    k = fit.k
    if not (len(labels) == y.size == v.size == k):
        raise ValueError(f"shrinkage forest: the fit has k = {k} studies; got {len(labels)} "
                         f"labels, {y.size} yi and {v.size} vi")
    z = z_crit(fit.level)
    obs_lo, obs_hi = y - z * np.sqrt(v), y + z * np.sqrt(v)
    rows = np.arange(k + 1, 1, -1, dtype=float)   # studies k+1 .. 2, mu at 1, pred at 0
    height = TOP_IN + BOTTOM_IN + ROW_IN * (k + 2)
    width = MARGIN_IN * 2 + LABEL_MAX_IN + 0.15 + PLOT_IN + TEXT_IN
    fig = _new_figure(width, height)
    left = (MARGIN_IN + LABEL_MAX_IN + 0.15) / width
    ax = fig.add_axes((left, BOTTOM_IN / height, PLOT_IN / width,
                       ROW_IN * (k + 2) / height))
    for j in range(k):
        _interval(ax, rows[j] + PAIR_OFFSET, obs_lo[j], obs_hi[j], style.MID, "observed-ci")
        ci = fit.study_ci[j]
        _interval(ax, rows[j] - PAIR_OFFSET, ci.low, ci.high, style.INK, "shrunken-ci")
    ax.plot(y, rows + PAIR_OFFSET, ls="none", marker="o", ms=POINT_PT, mfc=style.PAPER,
            mec=style.DARK, mew=style.LINE_WIDTH, gid="observed", label="observed, "
            f"{fit.level:g}% CI")
    ax.plot(np.asarray(fit.study_mean), rows - PAIR_OFFSET, ls="none", marker="o", ms=POINT_PT,
            mfc=style.INK, mec=style.INK, gid="shrunken",
            label=f"shrunken (posterior mean), {fit.level:g}% CrI")
    m = fit.mu
    dia = Polygon([[m.ci.low, 1.0], [m.median, 1.0 + DIAMOND_HALF], [m.ci.high, 1.0],
                   [m.median, 1.0 - DIAMOND_HALF]], closed=True, facecolor=style.INK,
                  edgecolor=style.INK, lw=style.THIN_LINE, gid="mu-diamond")
    ax.add_patch(dia)
    p = fit.pred
    ax.plot([p.ci.low, p.ci.high], [0.0, 0.0], color=style.INK, lw=3 * style.LINE_WIDTH,
            solid_capstyle="butt", gid="pred-bar")
    ax.plot([p.median, p.median], [-DIAMOND_HALF, DIAMOND_HALF], color=style.PAPER,
            lw=style.LINE_WIDTH)
    ax.axvline(0.0, color=style.INK, lw=style.THIN_LINE, ls=":", gid="null")
    names = [style.fit_text(s, LABEL_MAX_IN, style.font()) for s in labels]
    ax.yaxis.set_major_locator(FixedLocator([*rows, 1.0, 0.0]))
    ax.yaxis.set_ticklabels([*names, "Overall effect \u03bc", "New study (predictive)"])
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.set_ylim(-0.7, k + 1.7)
    vals = [*obs_lo, *obs_hi, *(c.low for c in fit.study_ci), *(c.high for c in fit.study_ci),
            p.ci.low, p.ci.high, 0.0]
    lo, hi = min(vals), max(vals)
    pad = 0.04 * (hi - lo or 1.0)
    _set_effect_axis(ax, lo - pad, hi + pad, scale)
    ax.set_xlabel(_effect_label(scale))
    # numbers, right of the plot: observed and shrunken in each study row
    tx = ax.get_yaxis_transform()
    kw = dict(transform=tx, fontsize=style.SMALL_SIZE, va="center", ha="left", clip_on=False)
    for j in range(k):
        ci = fit.study_ci[j]
        ax.text(1.04, rows[j] + PAIR_OFFSET, _text(y[j], obs_lo[j], obs_hi[j], scale),
                color=style.DARK, **kw)
        ax.text(1.04, rows[j] - PAIR_OFFSET, _text(fit.study_mean[j], ci.low, ci.high, scale),
                **kw)
    ax.text(1.04, 1.0, _text(m.median, m.ci.low, m.ci.high, scale), fontweight="bold", **kw)
    ax.text(1.04, 0.0, _text(p.median, p.ci.low, p.ci.high, scale), **kw)
    ax.text(1.04, k + 1.55, f"Estimate [{fit.level:g}% interval]",
            **{**kw, "fontsize": style.SMALL_SIZE, "fontweight": "bold"})
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, borderaxespad=0.2,
              handlelength=1.2, fontsize=style.SMALL_SIZE, columnspacing=1.0)
    if title:
        fig.suptitle(title, x=MARGIN_IN / width, y=1 - MARGIN_IN / height, ha="left",
                     va="top", fontweight="bold", fontsize=style.TITLE_SIZE)
    return fig

