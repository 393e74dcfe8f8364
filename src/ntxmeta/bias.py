"""Small-study effects: Egger's regression test, Begg's rank test, trim and fill.

The equivalents of metafor 3.8-1 ``regtest()`` (every predictor: Egger's
test, Peters' test with ``predictor="ninv"``), ``ranktest()`` and
``trimfill()`` for a model without moderators, Harbord's score-based test
for 2x2 tables (``harbord_test``), and the ``regtest``, ``ranktest`` and
``trimfill`` sections of an analysis (metafor's key paths).

Egger-type regression test (``egger_test``) [1, 2]
--------------------------------------------------
The effects are regressed on their standard errors, y_i = b0 + b1 sei_i.
A slope b1 away from 0 means that small (imprecise) studies report other
effects than large ones. The intercept b0 is the "limit estimate", the
effect expected of a study with sei -> 0 [7].

* ``model="rma"`` (metafor's default): the mixed-effects meta-regression
  ``rma(yi, vi, mods=sei, method=...)`` with the tau^2 estimator of the
  fit, a z test of b1 (t with k - 2 df under ``test="knha"``), and the
  intercept with its Wald interval. Fitted by ``ntxmeta.rma.rma`` with the
  design X = [1, sei] (O(k) cost).
* ``model="lm"``: the classic Egger test [1], weighted least squares of y
  on [1, sei] with weights 1/v_i and a free multiplicative dispersion
  phi = sum w_i r_i^2 / (k - 2), Var(b) = phi (X'WX)^-1, t with k - 2 df;
  the interval of b0 uses t(k - 2) as well (R's ``lm(weights=1/vi)``).

Begg and Mazumdar's rank test (``rank_test``) [3]
-------------------------------------------------
With the common-effect estimate theta = sum w y / sum w (w = 1/v) and its
variance v_theta = 1 / sum w, the standardised deviates are
y*_i = (y_i - theta) / sqrt(v_i - v_theta); Kendall's tau_b between y*
and v, tested by R's ``cor.test(method="kendall")``:

* ``exact=True`` and no ties in y* or v: the exact permutation
  distribution of the number of concordant pairs, two-sided
  p = min(1, 2 min(P(T <= q), P(T >= q)));
* otherwise the normal approximation with the tie-corrected variance of S
  (Kendall 1970, ch. 4) and no continuity correction.

Trim and fill (``trim_and_fill``) [4, 5]
----------------------------------------
The effects are mirrored if the missing studies are on the right (so that
they are always missing on the left), sorted, and the k0 most extreme ones
on the right are trimmed iteratively: with beta the pooled estimate of the
k - k0 smallest effects (same tau^2 estimator as the fit), the deviations
d_i = y_i - beta of all k effects are ranked by |d_i| (ties by position),
S_r is the sum of the ranks of the positive d_i, and Duval and Tweedie's
L0 estimator is

    k0 = max(0, round((4 S_r - k (k + 1)) / (2 k - 1))),
    var(S_r) = [k (k + 1) (2k + 1) + 10 L^3 + 27 L^2 + 17 L - 18 k L^2
               - 18 k L + 6 k^2 L] / 24,  L the unrounded k0,
    se(k0) = 4 sqrt(var(S_r)) / (2 k - 1)   (NaN when var(S_r) < 0, as in R).

The loop stops when k0 repeats (at most ``maxiter`` = 100 rounds, metafor's
default). If k0 > 0, the k0 trimmed effects are filled in mirrored about
beta (2 beta - y_i, with their own v_i) and the model is fitted again to
the k + k0 effects with the same estimator; with k0 = 0 the original fit
is returned. The side, if not given, comes from the sign of the slope of
the meta-regression of y on sqrt(v) with the fit's estimator (negative:
missing on the right), as metafor chooses it.

Edge cases (metafor's refusals, raised as ``MetaError``)
--------------------------------------------------------
* k = 1: regtest "Model matrix no longer of full rank after addition of
  predictor", ranktest "not enough finite observations", trimfill
  "Stopped because k = 1."; all sei equal: regtest's full-rank error.
* k = 2: regtest with a random-effects estimator and trimfill's side
  regression need k >= 3 ("Number of parameters to be estimated is larger
  than the number of observations."; the common-effect model works);
  the classic Egger test has 0 df: estimates, NaN standard errors, t, p
  and intervals (R's "NaNs produced"); the normal-approximation rank test
  gives p = NaN (the variance of S is 0/0 at n = 2).
* k > 170, exact=True and no ties: p is NaN with a warning, as metafor
  (R's exact distribution overflows; for strongly negative tau R reports a
  spurious p = 0, which we do not copy); ``exact=False`` gives the normal
  approximation, accurate at that size.
* All y* equal (e.g. all y_i equal): tau and p are NaN (R's "the standard
  deviation is zero"); the ``warning`` field says so. theta is computed so
  that it is exact for equal y_i; R's ``weighted.mean`` may leave rounding
  noise in y_i - theta, and then reports tau = +-1 from that noise
  (``ranktest(rep(0.3, 4), c(.1, .2, .3, .4))`` gives tau = 1, p = 0.083;
  on ``identical_GEN`` it happens to give NA).
* Classic Egger test with an "essentially perfect fit" (R's rule, e.g.
  all y_i equal): slope and standard error are both rounding noise; t and
  p are NaN with a warning (R reports the noise: on ``identical_GEN`` t =
  -1.23, p = 0.31, values no other arithmetic reproduces).
* All y_i equal in trim and fill: metafor's deviations y_i - beta are then
  the rounding noise of its weighted mean, and on ``identical_GEN`` its
  iteration oscillates on that noise and stops with "Trim and fill
  algorithm did not converge." We refuse with the same message and the
  reason (equal effects carry no information on asymmetry), rather than
  report the k0 = 0 that exact arithmetic gives.

Agreement with metafor
----------------------
Every value agrees with metafor 3.8-1 to 1e-6 relative once metafor is
converged tightly (``control=list(threshold=1e-12)``, tests/fixtures/
bias_tight). The oracle ran ``regtest`` and ``trimfill`` with metafor's
default control, which stops REML when tau^2 changes by less than 1e-5 in
absolute terms; where tau^2 is small (risk differences) that default fit
is visibly unconverged (dat.bcg RD: regtest z -3.830 vs -3.850 converged).
``control=METAFOR_DEFAULT`` reproduces that stopping rule step for step (the
sections use it unless the spec says ``"control": "full"``, as the
pipeline's specs do); ``control=FULL``, the functions' default, reports
the converged value.

Why written here, what comes from libraries
-------------------------------------------
* The classic Egger fit is statsmodels' ``WLS(y, [1, sei], weights=1/v)``:
  estimates, standard errors, t, p and t intervals agree with R's
  ``summary(lm(weights=1/vi))`` to 1e-13 on the oracle cases. Added
  around it: NaN (R's) instead of statsmodels' inf/0 at 0 residual df,
  and the perfect-fit rule above.
* Kendall's tau and its p-value come from ``scipy.stats.kendalltau``
  (variant "b"): with ``method="exact"`` it gives R's exact p (checked to
  1e-15 on the oracle cases and n = 60), and with ``method="asymptotic"``
  R's tie-corrected normal approximation (no continuity correction, R's
  default). What scipy does not do as R: it has no "exact unless ties"
  switch (``method="exact"`` refuses ties, so the choice is made here with
  R's rule), and at n = 2 its asymptotic variance raises
  ZeroDivisionError where R returns p = NaN (handled here).
* The meta-regression of ``model="rma"`` and every fit of trim and fill
  use ``ntxmeta.rma``; neither pymare nor statsmodels offers trim and fill
  or a regression test with a random-effects model.

Cost: O(k) memory; regtest O(k); ranktest O(k log k) (scipy's tau; the
exact p-value, offered up to k = 170 as in R, takes ~0.05 s there);
trimfill O(k log k) per round (a sort and a rank) plus one tau^2 fit.

References
----------
1. Egger M, Davey Smith G, Schneider M, Minder C (1997). Bias in
   meta-analysis detected by a simple, graphical test. BMJ 315:629-634.
2. Sterne JAC, Egger M (2005). Regression methods to detect publication
   and other bias in meta-analysis. In: Rothstein HR et al. (eds.),
   Publication bias in meta-analysis. Wiley, 99-110.
3. Begg CB, Mazumdar M (1994). Operating characteristics of a rank
   correlation test for publication bias. Biometrics 50:1088-1101.
4. Duval SJ, Tweedie RL (2000). Trim and fill: a simple funnel-plot-based
   method of testing and adjusting for publication bias in meta-analysis.
   Biometrics 56:455-463.
5. Duval SJ, Tweedie RL (2000). A nonparametric "trim and fill" method of
   accounting for publication bias in meta-analysis. JASA 95:89-98.
6. Kendall MG, Gibbons JD (1990). Rank correlation methods, 5th ed.
   Arnold (tie-corrected variance of S).
7. Stanley TD, Doucouliagos H (2014). Meta-regression approximations to
   reduce publication selection bias. Res Synth Methods 5:60-78.
8. Peters JL, Sutton AJ, Jones DR, Abrams KR, Rushton L (2006). Comparison
   of two methods to detect publication bias in meta-analysis. JAMA
   295:676-680.
9. Harbord RM, Egger M, Sterne JAC (2006). A modified test for small-study
   effects in meta-analyses of controlled trials with binary endpoints.
   Stat Med 25:3443-3457.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy import stats

from . import oracle
from ._common import Interval, MetaError, as_float_array, guarded
from .data import AnalysisData
from .rma import COMMON_ALIASES, FULL, METHODS, Control, RMAFit, estimate_tau2, rma_shared
from .oracle.sections import fit_dict

MODELS = ("rma", "lm")
#: regtest's predictors: the column x of y = b0 + b1 x (metafor's ``predictor``).
PREDICTORS = ("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
#: The predictors that vanish for an infinitely large study, so that the
#: intercept is a limit estimate (metafor reports it for these only).
LIMIT_PREDICTORS = ("sei", "vi", "ninv", "sqrtninv")
#: metafor's name of the predictor's column (it names both square-root columns "ni").
_PREDICTOR_COLUMN = {"sei": "sei", "vi": "vi", "ni": "ni", "ninv": "ninv", "sqrtni": "ni",
                     "sqrtninv": "ni"}
SIDES = ("left", "right")
#: Estimators whose fits need user weights (metafor passes the fit's weights
#: on to regtest and trimfill); not offered here.
_NEEDS_WEIGHTS = ("GENQ", "GENQM")
#: R's ``lm`` declares a column aliased when, after the columns before it
#: are projected out, less than this fraction of its norm is left (the
#: ``tol = 1e-7`` of ``lm.fit``/LINPACK ``dqrdc2``); regtest then stops.
LM_RANK_TOL = 1e-7
#: R's ``summary.lm`` calls a fit "essentially perfect" when the residual
#: variance is below this times mean(f)^2 + var(f) (f the fitted values).
PERFECT_FIT_RATIO = 1e-30
#: R's exact Kendall p divides permutation counts by gamma(n + 1), which
#: overflows a double beyond n = 170: cor.test (so metafor's ranktest) then
#: returns NaN (or, for strongly negative tau, a spurious 0).
R_EXACT_MAX_N = 170
#: metafor's default ``maxiter`` of ``trimfill``.
TRIMFILL_MAXITER = 100

_RANK_MSG = "Model matrix no longer of full rank after addition of predictor. Cannot fit model."
_PARMS_MSG = "Number of parameters to be estimated is larger than the number of observations."


@dataclass(frozen=True)
class Coefficients:
    """A coefficient table; one entry per coefficient (intercept first).

    ``stat`` is z or t; ``df`` is None for z tests.
    """

    names: tuple
    estimate: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    df: float | None


@dataclass(frozen=True)
class EggerTest:
    """An Egger-type regression test for funnel-plot asymmetry.

    Attributes
    ----------
    model : {"rma", "lm"}
    predictor : str
        One of ``PREDICTORS`` ("sei", the standard errors, by default;
        "ninv" with ``model="lm"`` is Peters' test), or "harbord" for
        ``harbord_test`` (the score-based standard error 1/sqrt(V)).
    method : str or None
        tau^2 estimator of the meta-regression (None for ``model="lm"``).
    stat, pval : float
        Test of the slope (z, or t with ``df`` degrees of freedom).
    df : float or None
        None for a z test.
    limit_estimate : float
        The intercept: the effect expected as the predictor -> 0 (NaN for
        the predictors "ni" and "sqrtni", as metafor reports none).
    limit_ci : Interval
    coefficients : Coefficients
        The regression (intercept, predictor).
    fit : RMAFit or None
        The meta-regression (``model="rma"``).
    warning : str or None
        Why some values are NaN (0 residual df, perfect fit).
    """

    model: str
    predictor: str
    method: str | None
    stat: float
    pval: float
    df: float | None
    limit_estimate: float
    limit_ci: Interval
    coefficients: Coefficients
    fit: RMAFit | None
    warning: str | None


@dataclass(frozen=True)
class RankTest:
    """Begg and Mazumdar's rank correlation test.

    ``exact`` says whether the exact permutation distribution was used;
    ``warning`` is set when tau is undefined (NaN).
    """

    tau: float
    pval: float
    k: int
    exact: bool
    ties: bool
    warning: str | None


@dataclass(frozen=True)
class TrimAndFill:
    """Trim-and-fill result.

    Attributes
    ----------
    fit : RMAFit
        The model of the k + k0 effects (the original fit when k0 = 0).
    k0 : int
        Estimated number of missing studies.
    se_k0 : float
    side : {"left", "right"}
        Side on which studies were missing (and filled in).
    estimator : str
        "L0".
    yi_all, vi_all : ndarray
        The effects and variances of ``fit``: the k given ones, then the k0
        filled ones.
    filled : ndarray of bool
        True for the filled effects.
    iterations : int
    """

    fit: RMAFit
    k0: int
    se_k0: float
    side: str
    estimator: str
    yi_all: np.ndarray
    vi_all: np.ndarray
    filled: np.ndarray
    iterations: int

    @property
    def p_k0(self) -> float:
        """metafor's p-value of k0, defined for the R0 estimator only (NaN for L0)."""
        return float("nan")


# --------------------------------------------------------------------------- helpers

def _inputs(yi, vi) -> tuple[np.ndarray, np.ndarray]:
    y = as_float_array(yi, "yi")
    v = as_float_array(vi, "vi")
    if y.shape != v.shape:
        raise ValueError(f"yi and vi differ in length ({y.size} vs {v.size})")
    if y.size == 0:
        raise ValueError("no studies: yi and vi are empty")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("yi and vi must be finite (drop studies with missing effects first)")
    if np.any(v <= 0):
        raise ValueError("sampling variances vi must be > 0")
    return y, v


def _check_method(method: str) -> str:
    if method in _NEEDS_WEIGHTS:
        raise ValueError(f"method={method!r} needs user weights; not offered for bias tests")
    if method not in METHODS and method not in COMMON_ALIASES:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    return method


def _check_parms(method: str, k: int, p: int) -> None:
    """metafor's rma.uni refusal: p coefficients (+ tau^2 unless common effect) > k."""
    needed = p if method in COMMON_ALIASES else p + 1
    if needed > k:
        raise MetaError(_PARMS_MSG)


def _predictor_column(v: np.ndarray, ni, predictor: str) -> np.ndarray:
    """The predictor x of regtest: sqrt(v), v, n, 1/n, sqrt(n) or 1/sqrt(n)."""
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if predictor == "sei":
        return np.sqrt(v)
    if predictor == "vi":
        return v
    if ni is None:
        raise ValueError("No sample size information available to use this predictor.")
    n = as_float_array(ni, "ni")
    if n.shape != v.shape:
        raise ValueError(f"ni must have one entry per study ({n.size} vs {v.size})")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError("sample sizes ni must be finite and > 0")
    return {"ni": n, "ninv": 1.0 / n, "sqrtni": np.sqrt(n), "sqrtninv": 1.0 / np.sqrt(n)}[predictor]


def _predictor_design(v: np.ndarray, ni=None, predictor: str = "sei") -> np.ndarray:
    """[1, x], after R's lm rank check (unweighted, as regtest does it first)."""
    x = _predictor_column(v, ni, predictor)
    left = np.linalg.norm(x - x.mean())
    if v.size < 2 or left < LM_RANK_TOL * np.linalg.norm(x):
        raise MetaError(_RANK_MSG)
    return np.column_stack([np.ones_like(x), x])


# --------------------------------------------------------------------------- regtest

def _weighted_lm(y: np.ndarray, X: np.ndarray, w: np.ndarray, level: float,
                 column: str = "sei") -> tuple[Coefficients, str | None]:
    """R's ``summary(lm(y ~ X - 1, weights=w))`` coefficient table, with t intervals.

    statsmodels' WLS gives R's numbers (checked to 1e-13 on the oracle
    cases), including NaN standard errors at 0 residual df. Two things are
    added: its division-by-zero warnings at 0 df become the returned
    warning, and an "essentially perfect fit" (R's rule: residual variance
    below ``PERFECT_FIT_RATIO`` (mean(f)^2 + var(f)), f the fitted values)
    gets NaN t and p: standard errors and slope are then both rounding
    noise, so their ratio is undefined (R reports the noise, with a warning).
    """
    k, p = X.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        res = sm.WLS(y, X, weights=w).fit()
        ci = res.conf_int(alpha=1.0 - level / 100.0)
        stat, pval = np.asarray(res.tvalues, float), np.asarray(res.pvalues, float)
        resvar = float(res.ssr) / (k - p) if k > p else np.nan
    warning = None
    if k == p:
        # R: residual variance 0/0 = NaN ("NaNs produced"); statsmodels divides
        # a rounding-noise residual sum of squares by 0 and gets inf or 0
        stat, pval, nan = np.full(p, np.nan), np.full(p, np.nan), np.full(p, np.nan)
        c = Coefficients(("Xintrcpt", "X" + column), np.asarray(res.params, float), nan, stat,
                         pval, nan, nan, 0.0)
        return c, "no residual degrees of freedom: standard errors, tests and intervals are NaN"
    else:
        f = X @ res.params
        if resvar < PERFECT_FIT_RATIO * (f.mean() ** 2 + f.var(ddof=1)):
            stat, pval = np.full(p, np.nan), np.full(p, np.nan)
            warning = ("essentially perfect fit: the slope and its standard error are both "
                       "rounding noise, so t and p are undefined")
    c = Coefficients(("Xintrcpt", "X" + column), np.asarray(res.params, float),
                     np.asarray(res.bse, float), stat, pval, ci[:, 0], ci[:, 1], float(k - p))
    return c, warning


def egger_test(yi, vi, *, model: str = "rma", predictor: str = "sei", ni=None,
               method: str = "REML", test: str = "z", level: float = 95.0,
               control: Control = FULL) -> EggerTest:
    """Egger-type regression test; matches metafor 3.8-1 ``regtest(fit, model=, predictor=)``.

    The effects are regressed on a predictor x of study size, y_i = b0 +
    b1 x_i, and b1 is tested: x = sei (Egger [1], the default), vi, ni,
    1/ni, sqrt(ni) or 1/sqrt(ni) (metafor's ``predictor``).
    ``predictor="ninv"`` with ``model="lm"`` is metafor's version of Peters'
    test [8] for binary outcomes: log odds ratios regressed on 1/n with
    weights 1/vi. (Peters et al. weight by 1/(1/E + 1/F), E and F the total
    events and non-events of a study; pass vi = 1/E + 1/F to get their
    weighting, since ``model="lm"`` weights by 1/vi.)

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effects and sampling variances (finite, vi > 0).
    model : {"rma", "lm"}
        "rma": mixed-effects meta-regression on x (metafor's default);
        "lm": weighted least squares with weights 1/vi and a free dispersion,
        t with k - 2 df (the classic Egger test for x = sei).
    predictor : {"sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv"}
    ni : array_like, shape (k,), optional
        Total sample sizes (finite, > 0); needed by the ni predictors.
    method : str
        tau^2 estimator of the meta-regression (``model="rma"`` only).
    test : {"z", "knha", "adhoc"}
        Test of the meta-regression (``model="rma"`` only).
    level : float
        Confidence level (percent) of the limit estimate's interval.

    Returns
    -------
    EggerTest
        ``limit_estimate`` is the intercept for the predictors that vanish
        for an infinitely large study (sei, vi, ninv, sqrtninv) and NaN for
        ni and sqrtni (metafor reports none).

    Raises
    ------
    MetaError
        k = 1 or a predictor without variance (metafor's "Model matrix no
        longer of full rank ..."); fewer than 3 studies for a random-effects
        meta-regression.
    ValueError
        Bad input; an ni predictor without ``ni`` (metafor's "No sample size
        information available to use this predictor.").
    """
    y, v = _inputs(yi, vi)
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    X = _predictor_design(v, ni, predictor)
    k, p = X.shape
    column = _PREDICTOR_COLUMN[predictor]
    if model == "lm":
        c, warning = _weighted_lm(y, X, 1.0 / v, level, column)
        return _egger_result("lm", predictor, None, c, None, warning)
    method = _check_method(method)
    _check_parms(method, k, p)
    fit = rma_shared(y, v, method=method, test=test, level=level, X=X, control=control)
    c = Coefficients(("intrcpt", column), fit.beta, fit.se, fit.stat, fit.pval, fit.ci_lb,
                     fit.ci_ub, fit.df)
    return _egger_result("rma", predictor, method, c, fit, None)


def _egger_result(model, predictor, method, c: Coefficients, fit, warning) -> EggerTest:
    """The test of the slope and, where the predictor has a limit, the intercept."""
    if predictor in LIMIT_PREDICTORS or predictor == "harbord":
        limit, ci = float(c.estimate[0]), Interval(float(c.ci_lb[0]), float(c.ci_ub[0]))
    else:
        limit, ci = float("nan"), Interval(float("nan"), float("nan"))
    return EggerTest(model, predictor, method, float(c.stat[1]), float(c.pval[1]), c.df, limit,
                     ci, c, fit, warning)


def harbord_test(ai, bi, ci, di, *, level: float = 95.0) -> EggerTest:
    """Harbord's modified regression test for small-study effects in 2x2 tables.

    Harbord, Egger & Sterne (2006) [9]: for table i with a events and b
    non-events in the treated arm, c and d in the control arm (n1 = a + b,
    n0 = c + d, m1 = a + c, m0 = b + d, N = n1 + n0), the efficient score
    of the log odds ratio at 0 and its (hypergeometric) variance are

        Z_i = a - n1 m1 / N,    V_i = n1 n0 m1 m0 / (N^2 (N - 1)).

    Z/sqrt(V) is regressed on sqrt(V) by ordinary least squares, and the
    intercept is tested (t with k - 2 df): unlike Egger's test on the log
    odds ratio, Z and V are not correlated under the null hypothesis of no
    small-study effect. The same fit is the weighted regression of Z/V on
    1/sqrt(V) with weights V, i.e. ``egger_test(Z/V, 1/V, model="lm")``
    (dividing the OLS equation by sqrt(V) swaps the roles of intercept and
    slope), which is how it is computed here (and in R's
    ``meta::metabias(method.bias="Harbord")``): ``stat``/``pval`` are the
    test of Harbord's intercept (the slope on 1/sqrt(V)), ``limit_estimate``
    is his slope (the log odds ratio of an infinitely large study).

    Tables with V = 0 (no events, or only events, in both arms together, or
    an empty arm) carry no information on the odds ratio and are left out;
    ``warning`` says how many.

    Parameters
    ----------
    ai, bi, ci, di : array_like, shape (k,)
        Cell counts (finite, >= 0; N >= 2 per table).
    level : float
        Confidence level (percent) of the limit estimate's interval.

    Returns
    -------
    EggerTest
        ``model="lm"``, ``predictor="harbord"``, coefficients named
        ("Xintrcpt", "Xsei") of the weighted form (Z/V on 1/sqrt(V)).

    Raises
    ------
    ValueError
        Bad cells; fewer than 2 tables with V > 0.
    """
    a, b, c, d = (as_float_array(x, name) for x, name in ((ai, "ai"), (bi, "bi"), (ci, "ci"),
                                                          (di, "di")))
    if not (a.shape == b.shape == c.shape == d.shape):
        raise ValueError("ai, bi, ci and di must have one entry per study")
    cells = np.stack([a, b, c, d])
    if not (np.all(np.isfinite(cells)) and np.all(cells >= 0)):
        raise ValueError("cell counts must be finite and >= 0")
    n1, n0, m1, m0 = a + b, c + d, a + c, b + d
    N = n1 + n0
    if np.any(N < 2):
        raise ValueError("every table needs at least 2 participants (V divides by N - 1)")
    Z = a - n1 * m1 / N
    V = n1 * n0 * m1 * m0 / (N**2 * (N - 1))
    keep = V > 0
    if keep.sum() < 2:
        raise ValueError("Harbord's test needs at least 2 tables with score variance V > 0 "
                         "(events and non-events, both arms non-empty)")
    dropped = int((~keep).sum())
    res = egger_test(Z[keep] / V[keep], 1.0 / V[keep], model="lm", level=level)
    notes = [w for w in (res.warning, f"{dropped} table(s) with V = 0 (no events or no "
                         "non-events, or an empty arm) left out" if dropped else None) if w]
    return _egger_result("lm", "harbord", None, res.coefficients, None,
                         "; ".join(notes) if notes else None)


# --------------------------------------------------------------------------- ranktest

def _has_ties(x: np.ndarray) -> bool:
    return np.unique(x).size < x.size


def rank_test(yi, vi, *, exact: bool = True) -> RankTest:
    """Begg and Mazumdar's rank test; matches metafor 3.8-1 ``ranktest(fit, exact=...)``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
    exact : bool
        Exact p-value unless there are ties (R's ``cor.test(exact=TRUE)``);
        False: normal approximation.

    Returns
    -------
    RankTest
        tau is Kendall's tau_b. NaN, with a warning: tau and p when the
        standardised deviates (or the variances) are all equal; p for the
        normal approximation at k = 2 and the exact p beyond k = 170.

    Raises
    ------
    MetaError
        k = 1 ("not enough finite observations", as R's cor.test).
    """
    y, v = _inputs(yi, vi)
    k = y.size
    if k < 2:
        raise MetaError("not enough finite observations")
    w = 1.0 / v
    ystar = (y - _weighted_mean(y, w)) / np.sqrt(v - 1.0 / w.sum())
    ties = _has_ties(ystar) or _has_ties(v)
    use_exact = exact and not ties
    if np.ptp(ystar) == 0 or np.ptp(v) == 0:
        return RankTest(np.nan, np.nan, k, use_exact, ties,
                        "the standard deviation is zero: all standardised deviates "
                        "(or all variances) are equal, so Kendall's tau is undefined")
    undefined_p = None
    if use_exact and k > R_EXACT_MAX_N:
        undefined_p = (f"exact p-value not available for more than {R_EXACT_MAX_N} studies "
                       "(R's exact distribution overflows; metafor returns NaN): use "
                       "exact=False, the normal approximation")
    elif not use_exact and k == 2:
        # var(S) has the term sum t(t-1)(t-2) / (9 n (n-1) (n-2)) = 0/0 at n = 2 (R: NaN)
        undefined_p = "normal approximation undefined for 2 studies (variance of S is 0/0)"
    if undefined_p:
        tau = float(stats.kendalltau(ystar, v).statistic)
        return RankTest(tau, np.nan, k, use_exact, ties, undefined_p)
    res = stats.kendalltau(ystar, v, method="exact" if use_exact else "asymptotic")
    return RankTest(float(res.statistic), float(res.pvalue), k, use_exact, ties, None)


# --------------------------------------------------------------------------- trimfill

def _weighted_mean(y: np.ndarray, w: np.ndarray) -> float:
    """sum w y / sum w, computed as y_1 + sum w (y - y_1) / sum w.

    Exact when all y are equal (or there is one), so that deviations from
    it are then exactly 0 rather than rounding noise; and never below
    min(y) when y_1 is the minimum.
    """
    return float(y[0] + (w * (y - y[0])).sum() / w.sum())


def _pooled(y: np.ndarray, v: np.ndarray, method: str, control: Control = FULL) -> float:
    """Estimate of the intercept-only model, weights 1/(v + tau^2).

    With y sorted ascending the estimate is never below y_1, so a round of
    trimming can never remove every study, and a single remaining study's
    deviation is exactly 0 (counted as neither sign, as in metafor).
    """
    tau2 = float(estimate_tau2(y, v, method=method, control=control))
    return _weighted_mean(y, 1.0 / (v + tau2))


def _l0(d: np.ndarray) -> tuple[float, float]:
    """Duval-Tweedie L0 from deviations d (sorted as the effects): (k0 unrounded, se)."""
    k = d.size
    ranks = stats.rankdata(np.abs(d), method="ordinal")
    s_r = float(ranks[d > 0].sum())
    k0 = (4 * s_r - k * (k + 1)) / (2 * k - 1)
    var_sr = (k * (k + 1) * (2 * k + 1) + 10 * k0**3 + 27 * k0**2 + 17 * k0
              - 18 * k * k0**2 - 18 * k * k0 + 6 * k**2 * k0) / 24
    with np.errstate(invalid="ignore"):
        se = 4 * np.sqrt(var_sr) / (2 * k - 1)
    return k0, float(se)


def trim_and_fill(yi, vi, *, method: str = "REML", side: str | None = None,
                  level: float = 95.0, maxiter: int = TRIMFILL_MAXITER,
                  control: Control = FULL) -> TrimAndFill:
    """Duval and Tweedie's trim and fill (L0); matches metafor 3.8-1 ``trimfill(fit)``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
    method : str
        tau^2 estimator, used for the side regression, every trimmed fit
        and the filled model ("EE" for the common-effect model).
    side : {"left", "right"} or None
        Side with the missing studies; None chooses it as metafor does
        (slope of y on sqrt(v) negative: "right").
    level : float
        Confidence level of the filled model.
    maxiter : int
        Rounds of trimming before giving up.

    Returns
    -------
    TrimAndFill

    Raises
    ------
    MetaError
        k = 1; fewer than 3 studies when the side must be estimated with a
        random-effects model; all effects equal (ranks undefined); no
        convergence within ``maxiter`` rounds.
    """
    y0, v0 = _inputs(yi, vi)
    method = _check_method(method)
    k = y0.size
    if k == 1:
        raise MetaError("Stopped because k = 1.")
    if side is None:
        X = np.column_stack([np.ones(k), np.sqrt(v0)])
        _check_parms(method, k, 2)
        slope = rma_shared(y0, v0, method=method, X=X, control=control).beta[1]
        side = "right" if slope < 0 else "left"
    elif side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if np.ptp(y0) == 0:
        raise MetaError("Trim and fill algorithm did not converge. All effects are equal, so "
                        "the signs of their deviations from the estimate are rounding noise "
                        "and the ranks that L0 counts are undefined.")
    sign = -1.0 if side == "right" else 1.0
    order = np.argsort(sign * y0, kind="stable")
    y, v = sign * y0[order], v0[order]
    k0, prev, it = 0, -1, 0
    while k0 != prev:
        prev = k0
        it += 1
        if it > maxiter:
            raise MetaError("Trim and fill algorithm did not converge.")
        beta = _pooled(y[:k - k0], v[:k - k0], method, control)
        k0_raw, se_k0 = _l0(y - beta)
        k0 = max(0, int(round(k0_raw)))
        se_k0 = float(np.maximum(0.0, se_k0))  # NaN stays NaN, as R's max(0, NaN)
    if k0 == 0:
        fit = rma_shared(y0, v0, method=method, level=level, control=control)
        yi_all, vi_all = y0, v0
    else:
        y_fill = sign * (2 * beta - y[k - k0:])
        yi_all = np.concatenate([y0, y_fill])
        vi_all = np.concatenate([v0, v[k - k0:]])
        fit = rma_shared(yi_all, vi_all, method=method, level=level, control=control)
    filled = np.arange(yi_all.size) >= k
    return TrimAndFill(fit, k0, se_k0, side, "L0", yi_all, vi_all, filled, it)


# --------------------------------------------------------------------------- sections

#: The regtest section: key -> (model, tau^2 method of the fit).
REGTEST_KEYS = {"rma_REML": ("rma", "REML"), "rma_DL": ("rma", "DL"),
                "lm_classic_egger": ("lm", "REML")}
RANKTEST_KEYS = {"default": True, "normal_approx": False}
TRIMFILL_KEYS = ("REML", "DL", "EE")


def _used(data: AnalysisData) -> tuple[np.ndarray, np.ndarray]:
    u = data.used
    return data.yi[u], data.vi[u]


def egger_dict(res: EggerTest) -> dict:
    """metafor's ``reg_sum`` layout of an ``EggerTest``."""
    c = res.coefficients
    nan = float("nan")
    if res.model == "lm":
        table = {"names": list(c.names), "estimate": c.estimate, "se": c.se, "tval": c.stat,
                 "pval": c.pval}
    else:
        table = {"names": list(c.names), "estimate": c.estimate, "se": c.se, "stat": c.stat,
                 "pval": c.pval, "ci.lb": c.ci_lb, "ci.ub": c.ci_ub,
                 "df": nan if c.df is None else c.df}
    return {"model": res.model, "predictor": res.predictor, "stat": res.stat, "pval": res.pval,
            "df": nan if res.df is None else res.df, "limit_estimate": res.limit_estimate,
            "limit_ci.lb": res.limit_ci.low, "limit_ci.ub": res.limit_ci.high, "fit": table,
            **({"warnings": [res.warning]} if res.warning else {})}


def regtest_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """``regtest.{rma_REML, rma_DL, lm_classic_egger}``."""
    y, v = _used(data)
    return {key: guarded(lambda m=model, t=method: egger_dict(
                egger_test(y, v, model=m, method=t, level=data.level,
                           control=data.control)))
            for key, (model, method) in REGTEST_KEYS.items() if sub is None or key in sub}


def rank_dict(res: RankTest) -> dict:
    d = {"tau": res.tau, "pval": res.pval}
    if res.warning:
        d["warnings"] = [res.warning]
    return d


def ranktest_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """``ranktest.{default, normal_approx}``."""
    y, v = _used(data)
    return {key: guarded(lambda e=exact: rank_dict(rank_test(y, v, exact=e)))
            for key, exact in RANKTEST_KEYS.items() if sub is None or key in sub}


def trimfill_dict(res: TrimAndFill, data: AnalysisData) -> dict:
    """metafor's ``tf_sum``: the filled model's summary, k0 and the data with the fills.

    ``yi_all``/``vi_all`` have one entry per input row (NaN where the row
    has no effect size, as metafor's ``yi.f``), then the filled effects.
    """
    d = fit_dict(res.fit, transf=data.transf, with_weights=False)
    k = int(data.used.sum())
    d.update({"k0": res.k0, "se.k0": res.se_k0, "p.k0": res.p_k0, "side": res.side,
              "estimator": res.estimator,
              "yi_all": np.concatenate([data.yi, res.yi_all[k:]]),
              "vi_all": np.concatenate([data.vi, res.vi_all[k:]]),
              "filled": [False] * data.yi.size + [True] * res.k0})
    return d


def trimfill_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """``trimfill.{REML, DL, EE}``."""
    y, v = _used(data)
    return {m: guarded(lambda m=m: trimfill_dict(
                trim_and_fill(y, v, method=m, level=data.level,
                              control=data.control), data))
            for m in TRIMFILL_KEYS if sub is None or m in sub}


oracle.register("regtest", regtest_section)
oracle.register("ranktest", ranktest_section)
oracle.register("trimfill", trimfill_section)
