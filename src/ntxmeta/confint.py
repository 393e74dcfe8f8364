"""Confidence intervals for the heterogeneity tau^2 (and tau, I^2, H^2).

The equivalent of metafor 3.8-1 ``confint(fit)`` for ``rma.uni`` fits, and
the ``confint`` section of an analysis (metafor's key paths).

Methods (``type``)
------------------
QP    Q-profile (Viechtbauer 2007 [1]). The generalised Q statistic
      Q(tau^2) = sum_i w_i (y_i - x_i' b(tau^2))^2, w_i = 1 / (v_i + tau^2),
      is chi^2(k - p) distributed at the true tau^2 and decreases
      monotonically in tau^2, so the interval is
      {tau^2 : chi^2_{a/2}(k-p) <= Q(tau^2) <= chi^2_{1-a/2}(k-p)}:
      lower bound Q(lb) = chi^2_{1-a/2}, upper bound Q(ub) = chi^2_{a/2}.
      The interval does not depend on the tau^2 estimator; only the search
      limit does (below).
GENQ  generalised Q-profile (Jackson 2013 [3]): the same with the weighted
      Q_a of the GENQ/GENQM fit and the exact distribution of Q_a
      (``ntxmeta.genqm.q_a_sf``): lb solves P(Q_a > q_a | lb) = a/2 and ub
      solves P(Q_a > q_a | ub) = 1 - a/2. metafor's default for GENQ/GENQM
      fits (it needs CompQuadForm, so metafor's oracle has no reference).
PL    profile likelihood (Hardy & Thompson 1996 [2]): the set of tau^2 with
      -2 (ll(tau^2) - ll(tau^2_hat)) <= chi^2_{1-a}(1), ll the REML (for a
      REML fit) or ML (for an ML fit) log-likelihood with the coefficients
      profiled out.

I^2 and H^2 bounds are the tau^2 bounds transformed with the fit's typical
within-study variance v~ = (k - p) / tr(P_FE): I^2 = 100 tau^2 / (v~ + tau^2),
H^2 = tau^2 / v~ + 1; tau = sqrt(tau^2). The ``estimate`` row is the fit's.

metafor's conventions, all kept (confint.rma.uni, 3.8-1)
--------------------------------------------------------
* The search is limited to [tau2.min, tau2.max] = [0, max(100, 10 tau^2_hat)],
  so the upper limit depends on the estimator: a bound beyond it is
  reported as tau2.max with sign ">" (``ub_sign``/``lb_sign``); both bounds
  are tau2.max with ">" when even Q(tau2.max) exceeds the upper quantile.
* A bound whose equation has no root above 0 is 0 (Q(0) below the
  quantile); when Q(0) is below even the lower quantile (e.g. Q = 0, all
  y_i equal) the interval is {0} and both signs are "<" (metafor's
  "ci.null", the interval is empty).
* k = 1 raises "Stopped because k = 1."; a common-effect fit raises (no
  random effect). k = 2 works (1 df). k = p (no residual df) raises.
* PL is offered for ML and REML fits only: metafor also runs it for
  moment estimators, where it compares the likelihood with its value at
  an estimate that is not its maximum, so the "interval" may not contain
  the estimate; we refuse instead.

Why written here, what comes from libraries
-------------------------------------------
The Q-profile roots come from ``pymare.stats.q_profile`` (pymare 0.0.13):
it solves Q(tau^2) = quantile by bracketing and ``scipy.optimize.brentq``
and agrees with metafor's tightly converged ``confint(control=list(tol=
1e-12))`` to ~1e-10 relative on all 12 oracle cases in ~1 ms per analysis.
Two things are added around it: metafor's search limit and signs (pymare
searches without an upper limit), and a rescaling (y / s, v / s^2 with s^2
the mean v_i; Q is invariant, bounds scale by s^2) because brentq's absolute
``xtol`` of 2e-12 would otherwise cost relative accuracy when tau^2 is
tiny (e.g. risk differences of large trials). Neither pymare nor
statsmodels offers the profile-likelihood interval or the generalised
Q-profile, so those solve their equations here with ``brentq``.

Cost: O(k p^2) per evaluation of Q or the log-likelihood, a few dozen
evaluations per bound; O(k) memory (the generalised Q-profile: see
``ntxmeta.genqm``).

Emulating metafor's default control (``emulate=True``)
-----------------------------------------------------
By default every bound is converged fully, as metafor's ``*_tight``
references (``control=list(tol=1e-12)``) are. metafor's default output is
less precise: its REML fit stops at a change in tau^2 of 1e-5 and R's
``uniroot`` at an absolute tolerance of eps^0.25 = 1.2e-4, so a profile-
likelihood bound near 0.0015 can be 1.6% off the converged one (hackshaw
1998). The oracle has no tight twin of ``confint(type="PL")``, so the
section reproduces metafor's default computation step for step: the
default-control estimate (Fisher scoring from max(0, HE) with metafor's
step halving and 1e-5 stopping rule; PM/PMM by uniroot on [0, max(100,
10 mad(y)^2)]), then R's zeroin (Brent 1973, the stopping rule and step
choices of R's stats/src/zeroin.c) on metafor's search intervals. On the
12 oracle cases this reproduces metafor's default ``confint()`` output,
QP and PL, to 2e-14 relative (tests/test_confint.py), i.e. the replica
takes the same steps. The section's QP entries use the converged default.

References
----------
1. Viechtbauer W (2007). Confidence intervals for the amount of
   heterogeneity in meta-analysis. Stat Med 26:37-52.
2. Hardy RJ, Thompson SG (1996). A likelihood approach to meta-analysis
   with random effects. Stat Med 15:619-629.
3. Jackson D (2013). Confidence intervals for the between-study variance
   in random effects meta-analysis using generalised Cochran heterogeneity
   statistics. Res Synth Methods 4:220-229.
4. Higgins JPT, Thompson SG (2002). Quantifying heterogeneity in a
   meta-analysis. Stat Med 21:1539-1558 (I^2, H^2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymare import stats as pymare_stats
from scipy import optimize, stats

from ._common import Interval, MetaError, guarded
from .oracle import register
from .data import AnalysisData
from .rma import (COMMON_ALIASES, METAFOR_DEFAULT, REPLAYED_METHODS, RMAFit, _loglik, _Projection,
                  _q_at, metafor_fisher_tau2, rma)
from .oracle.keys import CONFINT_ROWS
from .oracle.sections import fit_used

TYPES = ("QP", "GENQ", "PL")
#: Estimators whose Q-profile intervals the ``confint`` section reports (oracle.R).
SECTION_METHODS = ("REML", "DL", "PM")
#: Key of the REML profile-likelihood interval in the section.
PL_KEY = "REML_profile_likelihood"
#: metafor's default upper search limit: tau2.max = max(TAU2_MAX_FLOOR,
#: TAU2_MAX_FACTOR * tau^2_hat) (confint.rma.uni; tau2.min = 0).
TAU2_MAX_FLOOR = 100.0
TAU2_MAX_FACTOR = 10.0
#: brentq's relative tolerance: its floor (4 machine epsilons); metafor's
#: tight references stop uniroot at an absolute 1e-12.
BRENT_RTOL = 4 * np.finfo(float).eps
#: brentq's absolute tolerance, relative to the problem's scale (mean vi):
#: far below anything a tau^2 bound is reported to.
BRENT_XTOL_REL = 1e-15
#: Iteration cap for brentq (it needs ~10-40 here).
BRENT_MAXITER = 500
#: R's ``uniroot`` default tolerance, .Machine$double.eps^0.25 (~1.22e-4,
#: absolute), and metafor's confint() iteration cap.
EPS = float(np.finfo(float).eps)
R_UNIROOT_TOL = EPS**0.25
R_UNIROOT_MAXITER = 1000
#: R's ``mad()`` consistency constant (1 / qnorm(3/4)), as metafor's PM
#: search limit tau2.max = max(100, 10 mad(yi)^2) uses it.
R_MAD_CONSTANT = 1.4826
#: metafor's sign strings for a bound held at a search limit.
BELOW, ABOVE = "<", ">"


@dataclass(frozen=True)
class EstimateCI:
    """A point estimate with its confidence interval."""

    estimate: float
    ci: Interval


@dataclass(frozen=True)
class Tau2CI:
    """Confidence intervals for the heterogeneity of one random-effects fit.

    Attributes
    ----------
    method : str
        The tau^2 estimator of the fit (gives the ``estimate`` rows).
    type : {"QP", "GENQ", "PL"}
    level : float
        Confidence level in percent.
    k : int
    tau2, tau, I2_pct, H2 : EstimateCI
        I2_pct in percent.
    lb_sign, ub_sign : str
        "" for a solved bound, "<" or ">" when the bound sits at the lower or
        upper end of the search interval [0, tau2_max] (metafor's
        ``lb.sign``/``ub.sign``).
    tau2_max : float
        The upper search limit, max(100, 10 tau^2_hat).
    """

    method: str
    type: str
    level: float
    k: int
    tau2: EstimateCI
    tau: EstimateCI
    I2_pct: EstimateCI
    H2: EstimateCI
    lb_sign: str
    ub_sign: str
    tau2_max: float

    @property
    def ci_null(self) -> bool:
        """True when the interval is empty (metafor's ``ci.null``: Q(0) below both quantiles)."""
        return self.lb_sign == BELOW and self.ub_sign == BELOW


def tau2_ci(yi, vi, *, method: str = "REML", level: float = 95.0, type: str = "QP",
            X=None, weights=None, emulate: bool = False) -> Tau2CI:
    """Confidence interval for tau^2, tau, I^2 (%) and H^2; matches metafor 3.8-1
    ``confint(rma(yi, vi, method=method, level=level), type=type)``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect sizes and sampling variances (finite, vi > 0).
    method : str
        tau^2 estimator of the fit (any random-effects method of ``rma``).
    level : float
        Confidence level in percent.
    type : {"QP", "GENQ", "PL"}
        Q-profile, generalised Q-profile (GENQ/GENQM fits only) or profile
        likelihood (ML/REML fits only). See the module docstring.
    X : array_like, shape (k, p), optional
        Design matrix with intercept column (meta-regression).
    weights : array_like, shape (k,), optional
        The weights a_i of a GENQ/GENQM fit.
    emulate : bool
        False (default): every root converged fully (brentq to 4 machine
        epsilons), from the fully converged fit: what metafor gives with
        ``control=list(threshold=1e-12, tol=1e-12)``. True: reproduce
        metafor's default-control output digit for digit, imprecision
        included (see "Emulating metafor's default control" in the module
        docstring); QP and PL only.

    Returns
    -------
    Tau2CI

    Raises
    ------
    ValueError
        k = 1, a common-effect method, no residual degrees of freedom,
        a type that does not fit the method, a study with vi = 0 (metafor's
        "Cannot compute CI for tau^2 ..."), or the input errors of ``rma``.
    """
    fit = rma(yi, vi, method=method, level=level, X=X, weights=weights)
    return confint_fit(fit, type=type, weights=weights, emulate=emulate)


def confint_fit(fit: RMAFit, *, type: str = "QP", weights=None, emulate: bool = False) -> Tau2CI:
    """``tau2_ci`` for an existing fit (its level, data and tau^2 estimate)."""
    if type not in TYPES:
        raise ValueError(f"type must be one of {TYPES}, got {type!r}")
    if fit.k == 1:
        raise MetaError("Stopped because k = 1.")
    if fit.method in COMMON_ALIASES:
        raise MetaError("Model does not contain a random-effects component.")
    if fit.k <= fit.p:
        raise MetaError(f"no residual degrees of freedom (k = {fit.k}, p = {fit.p})")
    if fit.vi.min() == 0:
        # metafor 3.8-1's refusal for QP and GENQ. For PL it reports the upper bound
        # and NA for the lower one ("Error in iterative search"): refused here as well
        raise MetaError("Cannot compute CI for tau^2 when there are non-positive sampling "
                        "variances in the data.")
    if type == "GENQ" and emulate:
        raise ValueError("emulate=True is offered for type QP and PL (metafor's GENQ needs CompQuadForm)")
    tau2_hat = _metafor_default_tau2(fit) if emulate else fit.tau2
    tau2_max = max(TAU2_MAX_FLOOR, TAU2_MAX_FACTOR * tau2_hat)
    alpha = 1.0 - fit.level / 100.0
    solve = _r_uniroot if emulate else _brent
    if type == "QP":
        lb, ub, lb_sign, ub_sign = _q_profile(fit, alpha, tau2_max, emulate)
    elif type == "GENQ":
        if fit.method not in ("GENQ", "GENQM") or weights is None:
            raise ValueError('type="GENQ" needs a fit with method="GENQ" or "GENQM" and its weights')
        lb, ub, lb_sign, ub_sign = _genq_profile(fit, np.asarray(weights, float), alpha, tau2_max)
    else:
        if fit.method not in ("ML", "REML"):
            raise ValueError('type="PL" needs a fit with method="ML" or "REML"')
        lb, ub, lb_sign, ub_sign = _profile_likelihood(fit, tau2_hat, alpha, tau2_max, solve)
    vt = _typical_variance(fit)

    def i2(t):
        return 100 * t / (vt + t)

    def h2(t):
        return t / vt + 1

    rows = {}
    for name, f in (("tau2", float), ("tau", _sqrt_or_nan), ("I2_pct", i2), ("H2", h2)):
        rows[name] = EstimateCI(float(f(tau2_hat)), Interval(float(f(lb)), float(f(ub))))
    return Tau2CI(method=fit.method, type=type, level=fit.level, k=fit.k, lb_sign=lb_sign,
                  ub_sign=ub_sign, tau2_max=tau2_max, **rows)


def _sqrt_or_nan(t: float) -> float:
    return math.sqrt(t) if t >= 0 else math.nan


def _data(fit: RMAFit):
    return fit.yi, fit.vi, np.ones(fit.k), fit.X


def _typical_variance(fit: RMAFit) -> float:
    """v~ = (k - p) / tr(P_FE) (Higgins & Thompson 2002; metafor's ``vt``)."""
    y, v, m, X = _data(fit)
    return (fit.k - fit.p) / float(_Projection.of(m / v, y, X).tr())


def _q(fit: RMAFit, tau2: float) -> float:
    y, v, m, X = _data(fit)
    return float(_q_at(np.float64(tau2), y, v, m, X)[0])


def _bounds_from_tests(at_min_lo, at_max_lo, at_min_hi, at_max_hi, solve_lb, solve_ub, tau2_max):
    """metafor's decision tree shared by QP and GENQ.

    ``at_min_lo`` is "the statistic at tau^2 = 0 is already below the
    quantile that defines the upper bound" (the interval is {0}, both "<");
    ``at_max_lo`` is "the upper bound is beyond tau2_max"; ``at_max_hi`` is
    "even the lower bound is beyond tau2_max"; ``at_min_hi`` is "the lower
    bound's equation has no root above 0".
    """
    lb_sign = ub_sign = ""
    if at_min_lo:
        lb = ub = 0.0
        lb_sign = ub_sign = BELOW
    elif at_max_lo:
        ub, ub_sign = tau2_max, ABOVE
    else:
        ub = solve_ub()
    if at_max_hi:
        lb = ub = tau2_max
        lb_sign = ub_sign = ABOVE
    elif at_min_hi:
        lb = 0.0  # sign stays as set above ("<" only for the empty interval)
    else:
        lb = solve_lb()
    return lb, ub, lb_sign, ub_sign


def _q_profile(fit: RMAFit, alpha: float, tau2_max: float, emulate: bool):
    """Q-profile bounds with metafor's search limits and signs."""
    df = fit.k - fit.p
    crit_hi = stats.chi2.isf(alpha / 2, df)  # Q(lb) = crit_hi
    crit_lo = stats.chi2.ppf(alpha / 2, df)  # Q(ub) = crit_lo
    q0, qmax = _q(fit, 0.0), _q(fit, tau2_max)
    if emulate:  # metafor: uniroot over [tau2.min, tau2.max]
        def root(crit, f_lo=q0, f_hi=qmax):
            return _r_uniroot(lambda t: _q(fit, t) - crit, 0.0, tau2_max, f_lo - crit, f_hi - crit)
        return _bounds_from_tests(q0 < crit_lo, qmax > crit_lo, q0 < crit_hi, qmax > crit_hi,
                                  lambda: root(crit_hi), lambda: root(crit_lo), tau2_max)
    roots: dict = {}

    def pymare_roots():
        if not roots:
            # Q is invariant under y -> y/s, v -> v/s^2, tau^2 -> tau^2/s^2:
            # solve at unit scale so that brentq's absolute xtol is relative.
            s2 = float(np.mean(fit.vi))
            X = np.ones((fit.k, 1)) if fit.X is None else fit.X
            r = pymare_stats.q_profile(fit.yi / math.sqrt(s2), fit.vi / s2, X, alpha=alpha)
            roots.update(lb=s2 * float(r["ci_l"]), ub=s2 * float(r["ci_u"]))
            if not all(np.isfinite(list(roots.values()))):
                raise MetaError("Q-profile: root finding failed")
        return roots

    return _bounds_from_tests(q0 < crit_lo, qmax > crit_lo, q0 < crit_hi, qmax > crit_hi,
                              lambda: pymare_roots()["lb"], lambda: pymare_roots()["ub"],
                              tau2_max)


def _brent(f, lo: float, hi: float, f_lo=None, f_hi=None, *, scale: float = 1.0) -> float:
    """Root of f in [lo, hi] by ``scipy.optimize.brentq``, converged fully."""
    return float(optimize.brentq(f, lo, hi, xtol=BRENT_XTOL_REL * scale, rtol=BRENT_RTOL,
                                 maxiter=BRENT_MAXITER))


def _r_uniroot(f, lo: float, hi: float, f_lo: float, f_hi: float, *, scale: float = 1.0,
               tol: float = R_UNIROOT_TOL, maxiter: int = R_UNIROOT_MAXITER) -> float:
    """R's ``uniroot(f, c(lo, hi), tol=tol)``: Brent's zeroin as R's stats/src/zeroin.c runs it.

    The same sequence of secant, inverse quadratic and bisection steps and
    the same stopping rule (half the bracket <= 2 eps |b| + tol / 2), so that
    a root found with R's loose default tolerance lands where metafor's does.
    ``scale`` is unused (signature shared with ``_brent``).
    """
    if f_lo * f_hi > 0:
        raise MetaError("f() values at end points not of opposite sign")
    a, b, fa, fb = lo, hi, f_lo, f_hi
    c, fc = a, fa
    if fa == 0:
        return a
    if fb == 0:
        return b
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):  # b is the best approximation
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * EPS * abs(b) + tol / 2
        step = (c - b) / 2  # bisection
        if abs(step) <= tol_act or fb == 0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # secant
                t1 = fb / fa
                p, q = cb * t1, 1.0 - t1
            else:  # inverse quadratic interpolation
                q, t1, t2 = fa / fc, fb / fc, fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < 0.75 * cb * q - abs(tol_act * q) / 2 and p < abs(prev_step * q / 2):
                step = p / q
        if abs(step) < tol_act:
            step = tol_act if step > 0 else -tol_act
        a, fa = b, fb
        b += step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    raise MetaError("uniroot: no convergence")


def _metafor_default_tau2(fit: RMAFit) -> float:
    """tau^2 as metafor's default control leaves it (for ``emulate=True``).

    ML/REML/EB: ``ntxmeta.rma.metafor_fisher_tau2`` under ``METAFOR_DEFAULT``
    (Fisher scoring from max(0, HE), threshold 1e-5, ll0check with tol
    eps^0.25). PM/PMM: R's uniroot on [0, max(100, 10 mad(y)^2)].
    Other estimators are not iterative: the fit's value.
    """
    y, v, m, X = _data(fit)
    k, p = float(fit.k), fit.p
    if fit.method in REPLAYED_METHODS:
        return metafor_fisher_tau2(fit.method, y, v, X, control=METAFOR_DEFAULT)
    if fit.method in ("PM", "PMM"):
        target = (k - p) if fit.method == "PM" else float(stats.chi2.ppf(0.5, k - p))
        mad = R_MAD_CONSTANT * float(np.median(np.abs(y - np.median(y))))
        t_max = max(TAU2_MAX_FLOOR, TAU2_MAX_FACTOR * mad**2)
        q0, qmax = _q(fit, 0.0), _q(fit, t_max)
        if q0 < target:
            return 0.0
        if qmax > target:
            raise MetaError("Value of 'tau2.max' too low.")
        return _r_uniroot(lambda t: _q(fit, t) - target, 0.0, t_max, q0 - target, qmax - target,
                          maxiter=METAFOR_DEFAULT.maxiter)
    return fit.tau2


def _genq_profile(fit: RMAFit, a: np.ndarray, alpha: float, tau2_max: float):
    """Generalised Q-profile bounds (Jackson 2013), metafor's ``type="GENQ"``."""
    from .genqm import q_a_sf  # local: the heavier numerics live there

    y, v, m, X = _data(fit)
    qa = float(_Projection.of(a, y, X).rss())

    def sf(tau2):  # P(Q_a > qa | tau^2), increasing in tau^2
        return float(q_a_sf(qa, v, a, X, tau2))

    s0, smax = sf(0.0), sf(tau2_max)
    scale = float(np.mean(v))
    return _bounds_from_tests(
        s0 > 1 - alpha / 2, smax < 1 - alpha / 2, s0 > alpha / 2, smax < alpha / 2,
        lambda: _brent(lambda t: sf(t) - alpha / 2, 0.0, tau2_max, scale=scale),
        lambda: _brent(lambda t: sf(t) - (1 - alpha / 2), 0.0, tau2_max, scale=scale),
        tau2_max)


def _profile_likelihood(fit: RMAFit, tau2_hat: float, alpha: float, tau2_max: float, solve):
    """Profile-likelihood bounds: -2 (ll(tau^2) - ll(tau2_hat)) = chi^2_{1-alpha}(1).

    metafor searches [0, tau2_hat] for the lower and [tau2_hat, tau2_max]
    for the upper bound; a bound whose end of the search interval is
    already inside the region is that end (0, or tau2_max with ">").
    """
    y, v, m, X = _data(fit)
    k, p = float(fit.k), fit.p
    crit = stats.chi2.isf(alpha, 1)

    def ll(t):
        return float(_loglik(fit.method, np.float64(t), y, v, m, X, k, p))

    ll_hat = ll(tau2_hat)

    def excess(t):
        return -2 * (ll(t) - ll_hat) - crit

    scale = float(np.mean(v))
    ub_sign = ""
    at_hat, at_zero, at_max = excess(tau2_hat), excess(0.0), excess(tau2_max)
    lb = 0.0 if at_zero < 0 else solve(excess, 0.0, tau2_hat, at_zero, at_hat, scale=scale)
    if at_max < 0:
        ub, ub_sign = tau2_max, ABOVE
    else:
        ub = solve(excess, tau2_hat, tau2_max, at_hat, at_max, scale=scale)
    return lb, ub, "", ub_sign


# --------------------------------------------------------------------------- section

#: Our field names -> metafor's row names of ``confint()$random`` (ntxmeta.oracle.keys).
ROW_KEYS = CONFINT_ROWS


def ci_dict(ci: Tau2CI) -> dict:
    """metafor's ``confint()`` layout as oracle.R's ``ci_sum`` writes it."""
    d: dict = {}
    for ours, theirs in ROW_KEYS:
        row: EstimateCI = getattr(ci, ours)
        d[theirs] = {"estimate": row.estimate, "ci.lb": row.ci.low, "ci.ub": row.ci.high}
    d["lb.sign"], d["ub.sign"] = ci.lb_sign, ci.ub_sign
    return d


def confint_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """The ``confint`` section: Q-profile CIs for REML, DL, PM and REML's PL interval."""
    out: dict = {}
    for method in SECTION_METHODS:
        if sub is None or method in sub:
            out[method] = guarded(lambda m=method: ci_dict(confint_fit(fit_used(data, m))))
    if sub is None or PL_KEY in sub:
        # metafor's reference for PL has no tightly converged twin: emulate its
        # default control (see the module docstring).
        emulate = data.control.replay  # the pipeline's specs converge fully
        out[PL_KEY] = guarded(lambda: ci_dict(confint_fit(fit_used(data, "REML"), type="PL",
                                                          emulate=emulate)))
    return out


register("confint", confint_section)
