"""``ntxmeta.bayes``: the exact posterior against an independent brute-force 2-D grid.

R's bayesmeta is not installed here (not packaged for Debian, CRAN is out
of reach), so the reference is computed in this file from the model alone:
a dense grid over (mu, tau) on which prior x likelihood,
p(tau) p(mu) prod_i N(y_i; mu, v_i + tau^2), is evaluated directly — none of
the module's formulas (mu integrated out analytically, log-tau quadrature,
normal mixtures, Newton quantiles, equal-density shortest intervals) is used.
Marginals come from summing over one axis, CDFs from cumulative Simpson
sums, quantiles from root finding on a cubic spline of the CDF, shortest
intervals from minimising the width directly.

Tolerance ``GRID_TOL`` = 1e-4 (absolute, on summaries of size 0.1-1):
the mu axis is summed by the trapezoid rule, whose error for a smooth,
Gaussian-shaped integrand decays geometrically once the step is below the
conditional sd of mu (here the step is <= 1/8 of it); the tau axis by
Simpson's rule, O(h^4) with h <= 2.5e-3 (~1e-10), and the integrand is an
even function of tau, so the end at tau = 0 costs no accuracy; each grid's
truncation is checked to leave less than ``EDGE_TOL`` of the peak density at
its edges (``check_edges``). What is left is the CDF spline, Simpson near
the steep rise of a log-normal prior at small tau, and for the predictive
the 4x coarser tau sub-grid. Measured: every summary within 7.5e-6 of the
grid (most within 1e-6), densities within 1.3e-5 of their peak, so 1e-4
leaves a margin of >10x and still catches the likely slip: giving the
normal mu prior the inflated weight 1/(sd^2 + tau^2) moves mu.median,
mu.ci.low or tau.median of every normal-prior case by 8.6e-4 to 0.2 (measured).
Against itself with 4x finer quadrature the module agrees to
``SELF_TOL`` = 1e-8 (its quadrature error is spectrally small).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, interpolate, optimize, special, stats

from ntxmeta.bayes import (FLAT, N_PANELS, MuPrior, bayesmeta, halfcauchy, halfnormal, lognormal,
                           parse_mu_prior, parse_tau_prior, uniform)
from ntxmeta.cli import main

#: summaries against the brute-force grid (see the module docstring)
GRID_TOL = 1e-4
#: a grid edge may hold at most this fraction of the peak density (truncation check)
EDGE_TOL = 1e-7
#: default quadrature against 4x as many panels
SELF_TOL = 1e-8
#: point-mass-like prior: the mixture over a tau spread of 1e-5 (relative) is
#: within this of the normal at the fixed tau
POINT_MASS_TOL = 1e-6

D7 = (np.array([-0.1, 0.3, -0.5, 0.05, -0.2, 0.1, -0.4]),
      np.array([0.04, 0.09, 0.05, 0.02, 0.08, 0.03, 0.06]))
D2 = (np.array([-0.3, 0.2]), np.array([0.05, 0.1]))

#: (id, data, tau prior, mu prior, tau range of the grid, mu half-range around 0)
CASES = [
    ("k7-halfnormal-flat", D7, halfnormal(0.5), FLAT, (0.0, 3.5), 4.0),
    ("k7-halfnormal-normal", D7, halfnormal(0.5), MuPrior(0.0, 1.0), (0.0, 3.5), 4.0),
    ("k7-halfcauchy-flat", D7, halfcauchy(0.5), FLAT, (0.0, 8.0), 6.0),
    ("k7-lognormal-normal", D7, lognormal(-1.5, 0.8), MuPrior(0.0, 0.5), (0.0, 4.0), 4.0),
    ("k7-uniform-flat", D7, uniform(1.0), FLAT, (0.0, 1.0), 3.0),
    ("k2-halfnormal-flat", D2, halfnormal(0.5), FLAT, (0.0, 3.5), 10.0),
    ("k2-halfnormal-normal", D2, halfnormal(0.25), MuPrior(0.0, 1.0), (0.0, 2.0), 6.0),
    ("k2-lognormal-flat", D2, lognormal(-2.0, 0.5), FLAT, (0.0, 2.5), 6.0),
    ("k2-uniform-normal", D2, uniform(1.0), MuPrior(0.2, 0.5), (0.0, 1.0), 4.0),
]
N_TAU = 1601
N_MU = 2401
#: predictive CDF: every PRED_STRIDE-th grid point in both directions
PRED_STRIDE = 4


class _Grid:
    """Brute-force posterior on a (tau, mu) grid, from prior x likelihood only."""

    def __init__(self, y, v, tau_prior, mu_prior, tau_range, mu_half):
        self.y, self.v = y, v
        self.t = np.linspace(*tau_range, N_TAU)
        self.m = np.linspace(-mu_half, mu_half, N_MU)
        T, M = np.meshgrid(self.t, self.m, indexing="ij")
        loglik = np.zeros_like(T)
        for yi, vi in zip(y, v):
            s2 = vi + T ** 2
            loglik -= 0.5 * (np.log(2 * np.pi * s2) + (yi - M) ** 2 / s2)
        with np.errstate(divide="ignore"):
            logp = np.log(tau_prior.pdf(self.t))[:, None] + loglik
        if mu_prior.sd is not None:
            logp = logp + stats.norm.logpdf(M, mu_prior.mean, mu_prior.sd)
        self.T, self.M = T, M
        p = np.exp(logp - logp.max())
        self.dm = self.m[1] - self.m[0]
        # trapezoid in mu, Simpson in tau: the joint integration weights
        wm = np.full(N_MU, self.dm)
        wm[[0, -1]] /= 2
        self.wt = integrate.simpson(np.eye(N_TAU), x=self.t, axis=1)
        self.joint = p * wm[None, :] * self.wt[:, None]
        self.joint /= self.joint.sum()
        self.p = p
        self.tau_pdf = (p * wm[None, :]).sum(axis=1)
        self.tau_pdf /= self.tau_pdf @ self.wt
        self.mu_pdf = (p * self.wt[:, None]).sum(axis=0)
        self.mu_pdf /= self.mu_pdf.sum() * self.dm

    def check_edges(self, upper_open: bool) -> None:
        assert max(self.mu_pdf[0], self.mu_pdf[-1]) < EDGE_TOL * self.mu_pdf.max()
        if upper_open:
            assert self.tau_pdf[-1] < EDGE_TOL * self.tau_pdf.max()


def _cdf_spline(x, pdf):
    cdf = integrate.cumulative_simpson(pdf, x=x, initial=0.0)
    return interpolate.CubicSpline(x, cdf / cdf[-1])


def _ppf(spline, x, p):
    return optimize.brentq(lambda q: spline(q) - p, x[0], x[-1], xtol=1e-13)


def _shortest(ppf, prob, start_at_zero=False):
    res = optimize.minimize_scalar(lambda a: ppf(a + prob) - ppf(a),
                                   bounds=(1e-9, 1 - prob - 1e-9), method="bounded",
                                   options={"xatol": 1e-10})
    lo, hi = ppf(res.x), ppf(res.x + prob)
    if start_at_zero and ppf(prob) < hi - lo:
        return 0.0, ppf(prob)
    return lo, hi


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request):
    _, (y, v), tp, mp, tr, mh = request.param
    grid = _Grid(y, v, tp, mp, tr, mh)
    grid.check_edges(upper_open=not math.isfinite(tp.upper))
    return grid, bayesmeta(y, v, tau_prior=tp, mu_prior=mp, threshold=-0.2)


def test_mu_against_grid(case):
    g, fit = case
    sp = _cdf_spline(g.m, g.mu_pdf)
    ppf = lambda p: _ppf(sp, g.m, p)  # noqa: E731
    mean = (g.joint * g.M).sum()
    sd = math.sqrt((g.joint * (g.M - mean) ** 2).sum())
    ref = {"median": ppf(0.5), "mean": mean, "sd": sd, "ci.low": ppf(0.025),
           "ci.high": ppf(0.975), "P(mu<0)": float(sp(0.0)), "P(mu<-0.2)": float(sp(-0.2))}
    ref["shortest.low"], ref["shortest.high"] = _shortest(ppf, 0.95)
    got = {"median": fit.mu.median, "mean": fit.mu.mean, "sd": fit.mu.sd,
           "ci.low": fit.mu.ci.low, "ci.high": fit.mu.ci.high,
           "P(mu<0)": fit.prob_below_null, "P(mu<-0.2)": fit.prob_below_threshold,
           "shortest.low": fit.mu.shortest.low, "shortest.high": fit.mu.shortest.high}
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=GRID_TOL), key
    dens = interpolate.CubicSpline(g.m, g.mu_pdf)(fit.mu_grid)
    assert np.max(np.abs(fit.mu_density - dens)) < GRID_TOL * dens.max()


def test_tau_against_grid(case):
    g, fit = case
    sp = _cdf_spline(g.t, g.tau_pdf)
    ppf = lambda p: _ppf(sp, g.t, p)  # noqa: E731
    mean = g.tau_pdf * g.t @ g.wt
    sd = math.sqrt(g.tau_pdf * (g.t - mean) ** 2 @ g.wt)
    lo, hi = _shortest(ppf, 0.95, start_at_zero=True)
    ref = [ppf(0.5), mean, sd, ppf(0.025), ppf(0.975), lo, hi]
    got = [fit.tau.median, fit.tau.mean, fit.tau.sd, fit.tau.ci.low, fit.tau.ci.high,
           fit.tau.shortest.low, fit.tau.shortest.high]
    assert got == pytest.approx(ref, abs=GRID_TOL)
    inside = fit.tau_grid <= g.t[-1]
    dens = interpolate.CubicSpline(g.t, g.tau_pdf)(fit.tau_grid[inside])
    assert np.max(np.abs(fit.tau_density[inside] - dens)) < GRID_TOL * dens.max()


def test_predictive_against_grid(case):
    """theta_new | mu, tau ~ N(mu, tau^2) (the model), summed over the grid.

    Rows with tau >= dmu: the trapezoid sum of p(mu, tau) Phi((x - mu)/tau)
    over mu (aliasing error ~exp(-2 pi^2 (tau/dmu)^2) < 3e-9). Rows with
    tau < dmu (Phi is a step on the grid's scale): integrated by parts,
    E_e P(x - tau e) with P the row's CDF in mu (a cubic spline of its
    cumulative Simpson sum) and e ~ N(0, 1) by Gauss-Hermite.
    """
    g, fit = case
    s = PRED_STRIDE
    t = g.t[::s]
    rows = g.p[::s] * integrate.simpson(np.eye(t.size), x=t, axis=1)[:, None]
    rows /= rows.sum()
    sharp = t < g.dm
    gh_x, gh_w = np.polynomial.hermite.hermgauss(40)
    e, we = math.sqrt(2.0) * gh_x, gh_w / math.sqrt(math.pi)
    splines = [(tj, interpolate.CubicSpline(g.m, integrate.cumulative_simpson(
        r / g.dm, x=g.m, initial=0.0))) for tj, r in zip(t[sharp], rows[sharp])]
    T, M, R = t[~sharp][:, None], g.m[None, :], rows[~sharp]

    def cdf(x):
        smooth = float((R * special.ndtr((x - M) / T)).sum())
        return smooth + sum(float(we @ sp(x - tj * e)) for tj, sp in splines)

    def ppf(p):
        return optimize.brentq(lambda x: cdf(x) - p, g.m[0], g.m[-1], xtol=1e-12)
    mean = (g.joint * g.M).sum()
    sd = math.sqrt((g.joint * ((g.M - mean) ** 2 + g.T ** 2)).sum())
    ref = [ppf(0.5), mean, sd, ppf(0.025), ppf(0.975)]
    got = [fit.pred.median, fit.pred.mean, fit.pred.sd, fit.pred.ci.low, fit.pred.ci.high]
    assert got == pytest.approx(ref, abs=GRID_TOL)
    # the shortest interval holds 95% by the grid's CDF and is no wider than the equal-tailed
    lo, hi = fit.pred.shortest.low, fit.pred.shortest.high
    assert cdf(hi) - cdf(lo) == pytest.approx(0.95, abs=GRID_TOL)
    assert hi - lo <= fit.pred.ci.high - fit.pred.ci.low + 1e-12


def test_shrinkage_against_grid(case):
    """theta_i | mu, tau, y_i is normal (conjugacy at fixed mu, tau); averaged over the grid."""
    g, fit = case
    for i, (yi, vi) in enumerate(zip(g.y, g.v)):
        cond_mean = (yi * g.T ** 2 + g.M * vi) / (vi + g.T ** 2)
        cond_var = vi * g.T ** 2 / (vi + g.T ** 2)
        mean = (g.joint * cond_mean).sum()
        sd = math.sqrt((g.joint * (cond_var + (cond_mean - mean) ** 2)).sum())
        assert fit.study_mean[i] == pytest.approx(mean, abs=GRID_TOL)
        assert fit.study_sd[i] == pytest.approx(sd, abs=GRID_TOL)


def test_study_intervals_against_grid(case):
    """theta_i's credible interval: quantiles of the grid's CDF of theta_i.

    theta_i | mu, tau, y_i ~ N(B mu + (1 - B) y_i, (1 - B) v_i), B = v_i /
    (v_i + tau^2) (conjugacy at fixed mu, tau), summed over the grid's
    (mu, tau) points as the predictive is (every PRED_STRIDE-th tau row):
    rows whose conditional sd (over B, the scale in mu) is at least the mu
    step by the trapezoid sum over mu; sharper rows, where the normal CDF
    is a step on the grid's scale, by parts: E_e P((x - (1 - B) y_i - sd e) / B)
    with P the row's CDF in mu and e ~ N(0, 1) by Gauss-Hermite. The first
    and the last study of each case (the quantile searches are the slow part).
    """
    g, fit = case
    t = g.t[::PRED_STRIDE]
    rows = g.p[::PRED_STRIDE] * integrate.simpson(np.eye(t.size), x=t, axis=1)[:, None]
    rows /= rows.sum()
    gh_x, gh_w = np.polynomial.hermite.hermgauss(40)
    e, we = math.sqrt(2.0) * gh_x, gh_w / math.sqrt(math.pi)
    alpha = 1.0 - fit.level / 100.0
    for i in sorted({0, g.y.size - 1}):
        yi, vi = g.y[i], g.v[i]
        B = vi / (vi + t ** 2)
        sd = np.sqrt((1.0 - B) * vi)
        sharp = sd / B < g.dm
        splines = [(b, c, s_, interpolate.CubicSpline(g.m, integrate.cumulative_simpson(
            r / g.dm, x=g.m, initial=0.0)))
            for b, c, s_, r in zip(B[sharp], (1 - B[sharp]) * yi, sd[sharp], rows[sharp])]
        Bs, Cs, Ss = B[~sharp][:, None], ((1 - B[~sharp]) * yi)[:, None], sd[~sharp][:, None]
        R = rows[~sharp]

        def cdf(x):
            smooth = float((R * special.ndtr((x - Cs - Bs * g.m[None, :]) / Ss)).sum())
            return smooth + sum(float(we @ sp((x - c - s_ * e) / b)) for b, c, s_, sp in splines)

        got = [fit.study_ci[i].low, fit.study_ci[i].high]
        ref = []
        for p, x0 in zip((alpha / 2, 1 - alpha / 2), got):
            lo, hi = x0 - 10 * GRID_TOL, x0 + 10 * GRID_TOL   # a narrow bracket, else the grid's
            if not (cdf(lo) < p < cdf(hi)):
                lo, hi = g.m[0], g.m[-1]
            ref.append(optimize.brentq(lambda x: cdf(x) - p, lo, hi, xtol=1e-12))
        assert got == pytest.approx(ref, abs=GRID_TOL), i


def test_joint_density_against_grid(case):
    """``joint_density`` on (tau_grid, mu) against prior x likelihood, normalised by the grid."""
    g, fit = case
    mu = np.linspace(fit.mu.ci.low, fit.mu.ci.high, 7)
    tau = fit.tau_grid[(fit.tau_grid > 0) & (fit.tau_grid <= g.t[-1])][::20]
    got = fit.joint_density(mu)[np.isin(fit.tau_grid, tau)]
    # the grid's normalising constant: sum of p over its Simpson x trapezoid weights
    wm = np.full(N_MU, g.dm)
    wm[[0, -1]] /= 2
    z = float((g.p * wm[None, :] * g.wt[:, None]).sum())
    ref = interpolate.RectBivariateSpline(g.t, g.m, g.p / z, kx=3, ky=3)(tau, mu)
    assert np.max(np.abs(got - ref)) < GRID_TOL * ref.max()


def test_prior_density_on_the_grid():
    """``tau_prior_density`` is the prior's density (scipy's half-normal) on ``tau_grid``."""
    y, v = D7
    fit = bayesmeta(y, v, tau_prior=halfnormal(0.5))
    assert fit.tau_prior_density == pytest.approx(stats.halfnorm(scale=0.5).pdf(fit.tau_grid),
                                                  rel=1e-12)


@pytest.mark.parametrize("c", CASES, ids=[c[0] for c in CASES])
def test_quadrature_is_converged(c):
    _, (y, v), tp, mp, _, _ = c
    a = bayesmeta(y, v, tau_prior=tp, mu_prior=mp)
    b = bayesmeta(y, v, tau_prior=tp, mu_prior=mp, n_panels=4 * N_PANELS)
    for name in ("mu", "tau", "pred"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert [sa.median, sa.mean, sa.sd, sa.ci.low, sa.ci.high, sa.shortest.low,
                sa.shortest.high] == pytest.approx(
            [sb.median, sb.mean, sb.sd, sb.ci.low, sb.ci.high, sb.shortest.low,
             sb.shortest.high], abs=SELF_TOL), name
    assert a.prob_below_null == pytest.approx(b.prob_below_null, abs=SELF_TOL)


# --------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("mu_prior", [FLAT, MuPrior(0.1, 0.3)], ids=["flat", "normal"])
@pytest.mark.parametrize("tau0", [1e-3, 0.2])
def test_point_mass_prior_gives_the_normal_at_that_tau(tau0, mu_prior):
    """A log-normal prior of sigma 1e-5 fixes tau: mu | y is the (common-effect) normal."""
    y, v = D7
    fit = bayesmeta(y, v, tau_prior=lognormal(math.log(tau0), 1e-5), mu_prior=mu_prior)
    w = 1.0 / (v + tau0 ** 2)
    ys = y
    if mu_prior.sd is not None:
        w, ys = np.append(w, 1 / mu_prior.sd ** 2), np.append(y, mu_prior.mean)
    mean, sd = (w @ ys) / w.sum(), 1.0 / math.sqrt(w.sum())
    z = special.ndtri(0.975)
    assert [fit.mu.median, fit.mu.mean, fit.mu.sd, fit.mu.ci.low, fit.mu.ci.high,
            fit.mu.shortest.low, fit.mu.shortest.high, fit.prob_below_null] == pytest.approx(
        [mean, mean, sd, mean - z * sd, mean + z * sd, mean - z * sd, mean + z * sd,
         special.ndtr(-mean / sd)], abs=POINT_MASS_TOL)
    assert fit.tau.median == pytest.approx(tau0, rel=1e-4)
    assert fit.pred.sd == pytest.approx(math.sqrt(sd ** 2 + tau0 ** 2), abs=POINT_MASS_TOL)


@pytest.mark.parametrize("k,mu_prior,mean_ok,sd_ok", [(1, FLAT, False, False),
                                                      (2, FLAT, True, False),
                                                      (3, FLAT, True, True),
                                                      (1, MuPrior(0, 1), True, False)])
def test_halfcauchy_moments_that_do_not_exist(k, mu_prior, mean_ok, sd_ok):
    """Tail of p(tau | y) ~ tau^-(k+1) (flat) or tau^-(k+2) (normal mu prior)."""
    y, v = D7[0][:k], D7[1][:k]
    fit = bayesmeta(y, v, tau_prior=halfcauchy(0.5), mu_prior=mu_prior)
    assert math.isfinite(fit.tau.mean) == mean_ok and math.isfinite(fit.tau.sd) == sd_ok
    assert math.isfinite(fit.pred.sd) == sd_ok
    assert math.isfinite(fit.mu.sd) == (sd_ok or mu_prior.sd is not None)
    assert all(math.isfinite(x) for x in (fit.mu.median, fit.tau.median, fit.pred.ci.low,
                                          fit.pred.ci.high, fit.tau.shortest.high))


def test_very_wide_normal_mu_prior_approaches_flat():
    y, v = D7
    a = bayesmeta(y, v, tau_prior=halfnormal(0.5))
    b = bayesmeta(y, v, tau_prior=halfnormal(0.5), mu_prior=MuPrior(0.0, 1e4))
    assert [b.mu.median, b.mu.ci.low, b.tau.median] == pytest.approx(
        [a.mu.median, a.mu.ci.low, a.tau.median], abs=1e-6)


PRIORS = [(halfnormal(0.5), stats.halfnorm(scale=0.5)),
          (halfcauchy(0.3), stats.halfcauchy(scale=0.3)),
          (lognormal(-1.2, 0.7), stats.lognorm(s=0.7, scale=math.exp(-1.2))),
          (uniform(2.0), stats.uniform(0, 2.0))]


@pytest.mark.parametrize("prior,ref", PRIORS, ids=[p.name for p, _ in PRIORS])
def test_prior_densities_integrate_to_one_and_match_scipy(prior, ref):
    upper = prior.upper if math.isfinite(prior.upper) else np.inf
    total, _ = integrate.quad(lambda t: float(prior.pdf(t)), 0, upper)
    assert total == pytest.approx(1.0, abs=1e-8)
    t = np.array([0.01, 0.1, 0.5, 1.0, 1.9])
    assert prior.pdf(t) == pytest.approx(ref.pdf(t), rel=1e-12)
    u = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    assert prior.ppf(u) == pytest.approx(ref.ppf(u), rel=1e-10)


def test_k1_and_density_grids_normalised():
    fit = bayesmeta([0.2], [0.05], tau_prior=halfnormal(0.5))
    assert fit.k == 1 and fit.mu.median == pytest.approx(0.2, abs=1e-9)  # symmetric about y
    big = bayesmeta(*D7, tau_prior=halfnormal(0.5))
    assert np.trapezoid(big.mu_density, big.mu_grid) == pytest.approx(0.999, abs=1e-3)
    assert big.tau_density[0] > 0 and not big.tau_density.flags.writeable


@pytest.mark.parametrize("yi,vi,msg", [([0.1, 0.2], [0.1, 0.0], "vi must be > 0"),
                                       ([0.1, 0.2], [0.1, -1], "vi must be > 0"),
                                       ([0.1], [0.1, 0.2], "differ in length"),
                                       ([], [], "k >= 1"),
                                       ([np.nan], [0.1], "finite")])
def test_bad_data_refused(yi, vi, msg):
    with pytest.raises(ValueError, match=msg):
        bayesmeta(yi, vi, tau_prior=halfnormal(0.5))


@pytest.mark.parametrize("spec", ["halfnormal", "halfnormal:0", "halfnormal:-1", "cauchy:1",
                                  "lognormal:1", "uniform:x", "halfcauchy:inf"])
def test_bad_tau_prior_spec(spec):
    with pytest.raises(ValueError, match=f"tau prior '{spec}'"):
        parse_tau_prior(spec)


def test_prior_specs_round_trip():
    for spec in ["halfnormal:0.5", "halfcauchy:1", "lognormal:-1.5:0.8", "uniform:2"]:
        assert str(parse_tau_prior(spec)) == spec
    assert str(parse_mu_prior(None)) == "flat"
    assert str(parse_mu_prior("normal:0:1")) == "normal:0:1"
    with pytest.raises(ValueError, match="SD must be"):
        parse_mu_prior("normal:0:-1")


# --------------------------------------------------------------------------- command line

def _csv(tmp_path, text, name="effects.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8" if text.isascii() else "latin-1")
    return path


def test_cli_bayes_prints_the_fit(tmp_path, capsys):
    y, v = D7
    rows = "\n".join(f"S{i},{float(a)!r},{float(b)!r}" for i, (a, b) in enumerate(zip(y, v)))
    path = _csv(tmp_path, "study,yi,vi\n" + rows + "\n")
    rc = main(["bayes", str(path), "--yi", "yi", "--vi", "vi", "--tau-prior", "halfnormal:0.5",
               "--mu-prior", "normal:0:1", "--threshold", "-0.1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    fit = bayesmeta(y, v, tau_prior=halfnormal(0.5), mu_prior=MuPrior(0, 1), threshold=-0.1)
    assert out["mu.median"] == fit.mu.median
    assert out["mu.ci95"] == [fit.mu.ci.low, fit.mu.ci.high]
    assert out["tau.median"] == fit.tau.median
    assert out["tau.ci95"] == [fit.tau.ci.low, fit.tau.ci.high]
    assert out["prob_below_null"] == fit.prob_below_null
    assert out["prob_below_threshold"] == fit.prob_below_threshold
    assert out["mu_prior"] == "normal:0:1" and out["tau_prior"] == "halfnormal:0.5"
    assert len(out["study.mean"]) == 7


def test_cli_bayes_writes_non_finite_moments_as_strict_json(tmp_path, capsys):
    path = _csv(tmp_path, "study,yi,vi\nA,0.2,0.05\n")
    assert main(["bayes", str(path), "--yi", "yi", "--vi", "vi",
                 "--tau-prior", "halfcauchy:0.5"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=pytest.fail)
    assert out["tau.mean"] == "Inf" and out["mu.mean"] == "NA"
    assert out["tau.median"] > 0


@pytest.mark.parametrize("text,args,expected", [
    ("study,yi,vi\nA,0.1,0.04\n", ["--yi", "effect"], ":1: column 'effect': no such column"),
    ("study,yi,vi\nA,0.1,0.04\nB,abc,0.05\n", [], ":3: column 'yi' = 'abc': not a number"),
    ("study,yi,vi\nA,0.1,0.04\nB,0.2,-0.05\n", [],
     ":3: column 'vi' = '-0.05': a sampling variance must be > 0"),
    ("study,yi,vi\nA,0.1,\n", [], ":2: column 'vi' = '': empty cell"),
    ("study,yi,vi\nA,0.1,0.04\n", ["--tau-prior", "halfnormal:-1"],
     "--tau-prior 'halfnormal:-1': half-normal scale must be a finite number > 0"),
    ("study,yi,vi\nA,0.1,0.04\n", ["--mu-prior", "normal:0"],
     "--mu-prior 'normal:0': expected normal:MEAN:SD"),
    ("study,yi,vi\nA,0.1,0.04\nB,caf\xe9,0.05\n", [], ": not UTF-8 text"),
], ids=["missing-column", "non-numeric", "negative-variance", "empty-cell", "bad-tau-prior",
        "bad-mu-prior", "not-utf8"])
def test_cli_bayes_bad_input(tmp_path, capsys, text, args, expected):
    path = _csv(tmp_path, text)
    base = {"--yi": "yi", "--vi": "vi", "--tau-prior": "halfnormal:0.5"}
    extra = dict(zip(args[::2], args[1::2]))
    argv = ["bayes", str(path)] + [x for kv in {**base, **extra}.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("ntxmeta bayes: error: ")
    assert expected in err
    if not args or args[0] in ("--yi", "--vi"):
        assert str(path) in err


# Turner et al. (2015), Table IV, as quoted (log tau^2 ~ N(m, s^2)); rows
# copied from the paper's table as transcribed by bayesmeta's
# TurnerEtAlParameters and rnmamod's table_tau2_prior (they agree):
TURNER_QUOTED = [
    ("all-cause mortality", "pharmacological vs placebo / control", -3.95, 1.34),
    ("subjective outcomes (various)", "pharmacological vs placebo / control", -2.70, 1.52),
    ("adverse events", "pharmacological vs placebo / control", -1.87, 1.52),
    ("mental health indicators", "pharmacological vs pharmacological", -2.35, 1.60),
    ("withdrawals / drop-outs", "non-pharmacological vs placebo / control", -3.21, 1.91),
    ("pain", "non-pharmacological vs pharmacological", -0.80, 1.25),
    ("biological markers (dichotomized)", "non-pharmacological vs non-pharmacological",
     -1.33, 1.45),
]


@pytest.mark.parametrize("outcome, comparison, m, s", TURNER_QUOTED)
def test_turner_prior_is_the_quoted_lognormal(outcome, comparison, m, s):
    """log tau = log(tau^2) / 2 ~ N(m/2, (s/2)^2): density and quantiles against scipy."""
    from ntxmeta.bayes import turner_prior
    prior = turner_prior(outcome, comparison)
    assert prior.name == "lognormal" and prior.params == pytest.approx((m / 2, s / 2), abs=1e-15)
    # tau^2 ~ lognormal(m, s): P(tau <= t) = P(tau^2 <= t^2)
    tau2 = stats.lognorm(s=s, scale=math.exp(m))
    u = np.array([0.025, 0.5, 0.975])
    assert np.asarray(prior.ppf(u)) ** 2 == pytest.approx(tau2.ppf(u), rel=1e-12)
    t = np.array([0.05, 0.2, 0.8])
    assert prior.pdf(t) == pytest.approx(tau2.pdf(t ** 2) * 2 * t, rel=1e-12)


def test_turner_prior_spellings_and_errors():
    from ntxmeta.bayes import TURNER_2015, turner_prior
    assert len(TURNER_2015) == 16 * 5
    a = turner_prior("Pain", "Non-Pharmacological vs. Pharmacological")
    assert a.params == turner_prior("pain", "non-pharmacological vs pharmacological").params
    with pytest.raises(ValueError, match="unknown outcome type 'semi-objective'"):
        turner_prior("semi-objective", "pharmacological vs placebo / control")
    with pytest.raises(ValueError, match="unknown comparison type"):
        turner_prior("pain", "drug vs drug")
