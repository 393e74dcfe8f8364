"""``ntxmeta.bayesplots``: the artists on the figures against an independent brute-force grid.

The reference posterior is computed here from the model alone, as in
tests/test_bayes.py: prior x likelihood p(tau) prod_i N(y_i; mu, v_i + tau^2)
(flat mu prior) on a dense (tau, mu) grid, normalised with Simpson weights
in tau and the trapezoid rule in mu. None of the module's formulas is used.

Data: dat.bcg as log risk ratios (k = 13, yi and vi from metafor's escalc,
tests/fixtures/oracle/bcg_RR/out.json), tau ~ half-normal(0.5); its joint
mode is inside the plane (tau ~ 0.5), so the innermost contour closes
around it.

Tolerances: ``GRID_TOL`` (1e-4, as tests/test_bayes.py) for posterior
means; densities relative to their peak ``DENS_TOL`` = 1e-3 (the grid here
is coarser than test_bayes.py's, and a density is compared after a cubic
interpolation); the contour levels are drawn by matplotlib's linear
interpolation on the figure's 201 x 201 grid, whose peak sits below the
true peak by (h/2)^2 / (2 sd^2) ~ 3e-4 of it, and the density at a contour
vertex is off by O(h^2) likewise: ``CONTOUR_TOL`` = 1e-2 of the peak.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from scipy import integrate, interpolate, stats

from ntxmeta import bayesplots, style
from ntxmeta.bayes import bayesmeta, halfnormal
from ntxmeta.result import Scale

ORACLE = Path(__file__).parent / "fixtures" / "oracle" / "bcg_RR"
GRID_TOL = 1e-4
DENS_TOL = 1e-3
CONTOUR_TOL = 1e-2
#: the figure's grid covers the 0.05% .. 99.95% quantiles of mu: the density
#: line integrates to 0.999 of the whole, plus the trapezoid's error
MASS_TOL = 2e-3
TAU_PRIOR = halfnormal(0.5)
N_TAU, N_MU = 1201, 1601
TAU_RANGE, MU_RANGE = (0.0, 2.5), (-3.2, 1.8)


@pytest.fixture(scope="module")
def data():
    out = json.loads((ORACLE / "out.json").read_text())
    y = np.asarray(out["escalc"]["yi"], float)
    v = np.asarray(out["escalc"]["vi"], float)
    with open(ORACLE / "data.csv", newline="") as fh:
        labels = [f"{r['author']} {r['year']}" for r in csv.DictReader(fh)]
    return labels, y, v


@pytest.fixture(scope="module")
def fit(data):
    _, y, v = data
    return bayesmeta(y, v, tau_prior=TAU_PRIOR)


@pytest.fixture(scope="module")
def grid(data):
    """Normalised joint density on (t, m), its marginals, and the grid axes."""
    _, y, v = data
    t = np.linspace(*TAU_RANGE, N_TAU)
    m = np.linspace(*MU_RANGE, N_MU)
    T, M = np.meshgrid(t, m, indexing="ij")
    loglik = np.zeros_like(T)
    for yi, vi in zip(y, v):
        s2 = vi + T ** 2
        loglik -= 0.5 * (np.log(2 * np.pi * s2) + (yi - M) ** 2 / s2)
    logp = stats.halfnorm(scale=0.5).logpdf(t)[:, None] + loglik
    p = np.exp(logp - logp.max())
    dm = m[1] - m[0]
    wm = np.full(N_MU, dm)
    wm[[0, -1]] /= 2
    wt = integrate.simpson(np.eye(N_TAU), x=t, axis=1)
    z = float((p * wm[None, :] * wt[:, None]).sum())
    dens = p / z
    # the truncation of the grid leaves a negligible mass at its edges
    assert max(dens[-1].max(), dens[:, 0].max(), dens[:, -1].max()) < 1e-7 * dens.max()
    return {"t": t, "m": m, "T": T, "M": M, "dens": dens, "wt": wt, "wm": wm,
            "mu_pdf": dens.T @ wt, "tau_pdf": dens @ wm, "y": y, "v": v}


def _by_gid(fig, gid):
    found = [a for ax in fig.axes for a in ax.findobj() if a.get_gid() == gid]
    assert found, gid
    return found


def test_joint_contours_close_around_the_joint_mode(fit, grid):
    fig = bayesplots.posterior_figure(fit)
    (cs,) = _by_gid(fig, "joint-contour")
    dens = grid["dens"]
    i, j = np.unravel_index(np.argmax(dens), dens.shape)
    mode = (grid["m"][j], grid["t"][i])          # (mu, tau): x, y of the plot
    peak = float(dens.max())
    # the levels are the fractions of the peak of the joint density
    assert np.asarray(cs.levels) / peak == pytest.approx(
        bayesplots.CONTOUR_FRACTIONS, rel=CONTOUR_TOL)
    spline = interpolate.RectBivariateSpline(grid["t"], grid["m"], dens)
    for level, segs in zip(cs.levels, cs.allsegs):
        assert segs, level
        for seg in segs:   # every vertex of a contour lies on that level of the grid's density
            on = spline.ev(seg[:, 1], seg[:, 0])
            assert np.max(np.abs(on - level)) < CONTOUR_TOL * peak
    # the innermost contour (half the peak) is one closed curve around the brute-force mode
    inner = cs.allsegs[-1]
    assert len(inner) == 1
    assert MplPath(inner[0]).contains_point(mode)
    # the medians are marked where the fit puts them
    (med,) = _by_gid(fig, "joint-median")
    assert (med.get_xdata()[0], med.get_ydata()[0]) == (fit.mu.median, fit.tau.median)


def test_marginal_of_mu_integrates_to_one_and_matches_the_grid(fit, grid):
    fig = bayesplots.posterior_figure(fit)
    (line,) = _by_gid(fig, "mu-density")
    x, d = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert integrate.trapezoid(d, x) == pytest.approx(1.0, abs=MASS_TOL)
    ref = interpolate.CubicSpline(grid["m"], grid["mu_pdf"])(x)
    assert np.max(np.abs(d - ref)) < DENS_TOL * ref.max()
    # the shaded band spans the credible interval; the null line is at 0
    (band,) = _by_gid(fig, "mu-ci")
    xs = band.get_paths()[0].vertices[:, 0]
    assert (xs.min(), xs.max()) == pytest.approx((fit.mu.ci.low, fit.mu.ci.high), abs=1e-12)
    assert all(n.get_xdata()[0] == 0.0 for n in _by_gid(fig, "null"))


def test_marginal_of_tau_and_its_prior(fit, grid):
    fig = bayesplots.posterior_figure(fit)
    (line,) = _by_gid(fig, "tau-density")
    x, d = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    ref = interpolate.CubicSpline(grid["t"], grid["tau_pdf"])(x)
    assert np.max(np.abs(d - ref)) < DENS_TOL * ref.max()
    assert integrate.trapezoid(d, x) == pytest.approx(1.0, abs=MASS_TOL)
    (prior,) = _by_gid(fig, "tau-prior")
    assert np.asarray(prior.get_ydata()) == pytest.approx(
        stats.halfnorm(scale=0.5).pdf(prior.get_xdata()), rel=1e-12)
    assert prior.get_linestyle() == "--"


def test_shrunken_points_are_the_posterior_means(data, fit, grid):
    labels, y, v = data
    fig = bayesplots.shrinkage_forest(fit, labels, y, v)
    (obs,) = _by_gid(fig, "observed")
    (shr,) = _by_gid(fig, "shrunken")
    assert np.asarray(obs.get_xdata()) == pytest.approx(y, abs=0)
    T, M, w = grid["T"], grid["M"], grid["dens"] * grid["wt"][:, None] * grid["wm"][None, :]
    ref = [float((w * (yi * T ** 2 + M * vi) / (vi + T ** 2)).sum()) for yi, vi in zip(y, v)]
    assert np.asarray(shr.get_xdata()) == pytest.approx(ref, abs=GRID_TOL)
    # the observed CIs are yi -/+ 1.96 sqrt(vi); the shrunken ones the fit's intervals
    z = stats.norm.ppf(0.975)
    got = sorted(tuple(ln.get_xdata()) for ln in _by_gid(fig, "observed-ci"))
    assert np.array(got) == pytest.approx(
        np.array(sorted(zip(y - z * np.sqrt(v), y + z * np.sqrt(v)))), abs=1e-12)
    got = sorted(tuple(ln.get_xdata()) for ln in _by_gid(fig, "shrunken-ci"))
    assert got == sorted((c.low, c.high) for c in fit.study_ci)
    # every shrunken point lies between its observed estimate and mu's posterior mean
    lo = np.minimum(y, fit.mu.mean) - 1e-12
    hi = np.maximum(y, fit.mu.mean) + 1e-12
    assert np.all((shr.get_xdata() >= lo) & (shr.get_xdata() <= hi))


def test_forest_rows(data, fit):
    labels, y, v = data
    fig = bayesplots.shrinkage_forest(fit, labels, y, v, title="BCG")
    (ax,) = fig.axes
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert len(ticks) == fit.k + 2
    assert ticks[:fit.k] == labels
    assert ticks[-2:] == ["Overall effect \u03bc", "New study (predictive)"]
    (dia,) = _by_gid(fig, "mu-diamond")
    xs = dia.get_xy()[:, 0]
    assert (xs.min(), xs.max()) == (fit.mu.ci.low, fit.mu.ci.high)
    (bar,) = _by_gid(fig, "pred-bar")
    assert tuple(bar.get_xdata()) == (fit.pred.ci.low, fit.pred.ci.high)
    with pytest.raises(ValueError, match="k = 13"):
        bayesplots.shrinkage_forest(fit, labels[:-1], y, v)


@pytest.mark.parametrize("which", ["posterior", "forest"])
def test_log_scale_ticks_are_ratios(data, fit, which):
    labels, y, v = data
    scale = Scale.of("RR")
    fig = (bayesplots.posterior_figure(fit, scale=scale) if which == "posterior"
           else bayesplots.shrinkage_forest(fit, labels, y, v, scale=scale))
    axes = fig.axes[:2] if which == "posterior" else fig.axes
    for ax in axes:
        fig.canvas.draw()
        pos = ax.get_xticks()
        texts = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels()]
        assert len(pos) >= 2
        # the numbers stay log: a tick at log(r) is labelled r
        assert np.log([float(s) for s in texts]) == pytest.approx(pos, abs=1e-12)
        assert ax.get_xlabel() == "Risk ratio (log scale)"
    # the forest spans RR 0.1 .. 3 or so: ticks at 1-2-5 or 1-3 ratios, the null among them
    if which == "forest":
        assert "1" in [t.get_text() for t in fig.axes[0].get_xticklabels()]


def test_linear_scale_keeps_the_numbers(fit):
    fig = bayesplots.posterior_figure(fit, scale=Scale.of("SMD"))
    ax = fig.axes[1]
    fig.canvas.draw()
    labels = [float(t.get_text().replace("\u2212", "-")) for t in ax.get_xticklabels()]
    assert labels == pytest.approx(list(ax.get_xticks()), abs=1e-9)
    assert ax.get_xlabel() == "Standardised mean difference"


def test_svg_is_repeatable(tmp_path, data, fit):
    labels, y, v = data
    for name, make in (("post", lambda: bayesplots.posterior_figure(fit, title="BCG")),
                       ("forest", lambda: bayesplots.shrinkage_forest(fit, labels, y, v,
                                                                       title="BCG"))):
        _, svg1 = style.save_figure(make(), tmp_path / f"{name}1")
        _, svg2 = style.save_figure(make(), tmp_path / f"{name}2")
        a, b = svg1.read_bytes(), svg2.read_bytes()
        assert a == b, name
        assert b"<dc:date>" not in a and b"BCG" in a
