"""Random- and common-effect meta-analysis models: the equivalent of metafor's ``rma()``.

Why written here
----------------
pymare (0.0.13) estimates DL, ML and REML tau^2 but has no HE, SJ, EB, HS,
HSk, PM, PMM, GENQ or GENQM, no fit statistics or Riley prediction
intervals, and its Hartung-Knapp interval is NaN when Q = 0; statsmodels'
``combine_effects`` does not floor DL's tau^2 at 0 and offers neither REML
nor meta-regression. metafor itself builds dense k x k matrices (O(k^2)
memory, O(k^3) time for REML). This module computes every quantity of
``rma.uni`` from O(k p^2) vector formulas: the projection
``P = W - W X (X'WX)^-1 X'W`` is never formed; its traces and quadratic
forms come from the p x p matrix ``A = (X'WX)^-1`` and per-study leverages
``h_i = x_i' A x_i`` (see ``_Projection``). All functions accept leading
batch dimensions (many analyses at once, NaN-padded to a common k).

Model (Viechtbauer 2005, 2010)
------------------------------
y_i = x_i' beta + u_i + e_i,  u_i ~ N(0, tau^2),  e_i ~ N(0, v_i).
With w_i = 1 / (v_i + tau^2): beta_hat = (X'WX)^-1 X'Wy, Var = (X'WX)^-1.
Hartung-Knapp (``test="knha"``): Var is multiplied by
s2w = sum w_i r_i^2 / (k - p) (no truncation, as metafor 3.8-1; s2w = 0 when
that sum is below machine epsilon) and t(k - p) replaces z.
Heterogeneity: Q = sum (1/v_i) r_i^2 (common-effect weights), I^2 = 100
tau^2 / (tau^2 + v~), H^2 = tau^2 / v~ + 1 with the typical variance
v~ = (k - p) / tr(P_FE) (Higgins & Thompson 2002); for EE, I^2 = max(0, 100
(Q - df) / Q) and H^2 = Q / df.

Estimators (``method``), all matching metafor 3.8-1 ``rma(method=...)``
-----------------------------------------------------------------------
EE    tau^2 = 0 (also "FE", "CE")
DL    (Q - (k-p)) / tr(P_FE)                       DerSimonian & Laird 1986
HE    (RSS_OLS - tr(P_OLS V)) / (k-p)                Hedges 1983
HS    (Q - k) / sum(1/v)                             Hunter & Schmidt 2004
HSk   (k/(k-p) Q - k) / sum(1/v)                     (small-sample adjusted)
SJ    tau0^2 Q(tau0^2) / (k-p), tau0^2 = mean((y - ybar)^2)   Sidik & Jonkman 2005
ML    Fisher scoring: tau^2 += (y'PPy - tr W) / tr(WW)        Viechtbauer 2005
REML  Fisher scoring: tau^2 += (y'PPy - tr P) / tr(PP)
EB    tau^2 += (y'Py k/(k-p) - k) / sum(w)                   Morris 1983
PM    root of Q(tau^2) = k - p                                Paule & Mandel 1982
PMM   root of Q(tau^2) = median of chi^2(k-p)
GENQ  generalised Q with weights a: (Q_a - tr(P_a V)) / tr(P_a)  DerSimonian & Kacker 2007
GENQM root of P(Q_a <= q_obs | tau^2) = 1/2 (see ``ntxmeta.genqm``)   Jackson 2013
Every estimate is floored at 0. ML and REML start from max(0, HE) and, as
metafor, fall back to 0 when the log-likelihood at 0 is higher than at the
solution (a local maximum). PM, PMM solve by safeguarded Newton steps on
Q(tau^2), which is decreasing and convex, so iterates approach the root from
below and never overshoot; no upper search limit is imposed (metafor stops
at tau2.max = 100 with an error).

Edge cases: k = 1 gives tau^2 = 0, se.tau2 = NaN, Q = 0, Q-p = 1, I^2 = 0,
H^2 = 1, and knha falls back to z, as metafor does. vi must be finite and
> 0; rows with non-finite yi or vi are dropped before fitting (metafor's
na.omit) by the callers that take per-row data.

References
----------
1. Viechtbauer W (2005). Bias and efficiency of meta-analytic variance
   estimators in the random-effects model. J Educ Behav Stat 30:261-293.
2. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3).
3. Hartung J, Knapp G (2001). On tests of the overall treatment effect in
   meta-analysis with normally distributed responses. Stat Med 20:1771-82.
4. Higgins JPT, Thompson SG, Spiegelhalter DJ (2009). A re-evaluation of
   random-effects meta-analysis. JRSS A 172:137-159 (prediction interval).
5. Riley RD, Higgins JPT, Deeks JJ (2011). Interpretation of random effects
   meta-analyses. BMJ 342:d549.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._common import Interval, MetaError, t_crit, z_crit

METHODS = ("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM",
           "GENQ", "GENQM")
COMMON_ALIASES = ("EE", "FE", "CE")
TESTS = ("z", "knha")
PI_TYPES = ("default", "riley", "t")

#: Convergence of iterative tau^2 estimators: stop when the change in tau^2
#: is below this times max(1, tau^2). metafor's default is an absolute 1e-5
#: (its "_tight" reference fits use 1e-12); we always converge fully so that
#: results agree with the tight fits to ~1e-10 relative.
TAU2_RTOL = 1e-13
#: Iteration cap for Fisher scoring and Newton root finding (metafor: 100,
#: 10000 in the tight fits). Hitting it raises MetaError.
MAX_ITER = 10_000
#: metafor's ll0check: a solution whose log-likelihood is below the one at
#: tau^2 = 0 by more than this is replaced by 0 (metafor's control tol, 1e-12 tight).
LL0_TOL = 1e-12
#: metafor sets s2w = 0 when the knha residual sum of squares is below this.
KNHA_EPS = np.finfo(float).eps


# --------------------------------------------------------------------------- linear algebra

@dataclass(frozen=True)
class _Projection:
    """Quantities of P = D - D X A X' D, A = (X'DX)^-1, without forming P.

    ``d`` are diagonal weights (..., k), zero for padded rows; ``X`` is
    (..., k, p) or None for the intercept-only model.
    """

    d: np.ndarray
    X: np.ndarray | None
    A: np.ndarray          # (..., p, p)
    beta: np.ndarray       # (..., p)
    r: np.ndarray          # (..., k) residuals y - X beta
    h: np.ndarray          # (..., k) x_i' A x_i

    @classmethod
    def of(cls, d: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> "_Projection":
        if X is None:
            sd = d.sum(-1)
            A = (1.0 / sd)[..., None, None]
            beta = ((d * y).sum(-1) / sd)[..., None]
            r = y - beta
            h = np.broadcast_to(1.0 / sd[..., None], y.shape)
            return cls(d, None, A, beta, r, h)
        XtD = X * d[..., None]
        XtDX = np.einsum("...ki,...kj->...ij", XtD, X)
        A = np.linalg.inv(XtDX)
        beta = np.einsum("...ij,...j->...i", A, np.einsum("...ki,...k->...i", XtD, y))
        r = y - np.einsum("...kp,...p->...k", X, beta)
        h = np.einsum("...ki,...ij,...kj->...k", X, A, X)
        return cls(d, X, A, beta, r, h)

    def _gram(self, c: np.ndarray) -> np.ndarray:
        """X' diag(c) X, shape (..., p, p)."""
        if self.X is None:
            return c.sum(-1)[..., None, None]
        return np.einsum("...ki,...k,...kj->...ij", self.X, c, self.X)

    @staticmethod
    def _tr_sq(M: np.ndarray) -> np.ndarray:
        """tr(M M) for (..., p, p)."""
        return np.einsum("...ij,...ji->...", M, M)

    def rss(self) -> np.ndarray:
        """y'Py = sum d r^2."""
        return (self.d * self.r**2).sum(-1)

    def ypp(self) -> np.ndarray:
        """y'PPy = sum (d r)^2, since Py = d * r."""
        return ((self.d * self.r) ** 2).sum(-1)

    def tr(self) -> np.ndarray:
        """tr(P) = sum d - sum d^2 h."""
        return (self.d - self.d**2 * self.h).sum(-1)

    def tr_pp(self) -> np.ndarray:
        """tr(PP) = sum d^2 - 2 sum d^3 h + tr((A X'D^2X)^2)."""
        d = self.d
        AB = self.A @ self._gram(d**2)
        return (d**2).sum(-1) - 2 * (d**3 * self.h).sum(-1) + self._tr_sq(AB)

    def tr_pv(self, v: np.ndarray) -> np.ndarray:
        """tr(PV) = sum v (d - d^2 h)."""
        return (v * (self.d - self.d**2 * self.h)).sum(-1)

    def tr_pvpv(self, v: np.ndarray) -> np.ndarray:
        """tr(PVPV) = sum d^2 v^2 - 2 sum d^3 v^2 h + tr((A X'D^2VX)^2)."""
        d = self.d
        AC = self.A @ self._gram(d**2 * v)
        return (d**2 * v**2).sum(-1) - 2 * (d**3 * v**2 * self.h).sum(-1) + self._tr_sq(AC)

    def tr_pvp(self, v: np.ndarray) -> np.ndarray:
        """sum(PV * P) = sum_i v_i (PP)_ii, (PP)_ii = d_i^2 (1 - 2 d_i h_i + x_i'ABAx_i)."""
        d = self.d
        ABA = self.A @ self._gram(d**2) @ self.A
        if self.X is None:
            xq = np.broadcast_to(ABA[..., 0, 0][..., None], d.shape)
        else:
            xq = np.einsum("...ki,...ij,...kj->...k", self.X, ABA, self.X)
        return (v * d**2 * (1 - 2 * d * self.h + xq)).sum(-1)

    def logdet_xtdx(self) -> np.ndarray:
        """log |X'DX| = -log |A|."""
        return -np.linalg.slogdet(self.A)[1]


def _masked(yi, vi):
    """Arrays with padded rows (non-finite yi or vi) neutralised, and the mask."""
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    m = np.isfinite(y) & np.isfinite(v)
    return np.where(m, y, 0.0), np.where(m, v, 1.0), m.astype(float)


def _design(X, k_shape):
    if X is None:
        return None
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[-2] != k_shape[-1]:
        raise ValueError(f"X has {X.shape[-2]} rows but there are {k_shape[-1]} studies")
    return X


# --------------------------------------------------------------------------- tau^2 estimators

def _q_at(tau2, y, v, m, X):
    """Generalised Q(tau^2) = sum w r^2 with w = 1/(v + tau^2), and its derivative."""
    w = m / (v + tau2[..., None])
    pr = _Projection.of(w, y, X)
    return pr.rss(), -pr.ypp()


def _newton_root(y, v, m, X, target):
    """Root tau^2 >= 0 of Q(tau^2) = target by Newton steps from 0 (Q convex, decreasing)."""
    tau2 = np.zeros(y.shape[:-1])
    q, dq = _q_at(tau2, y, v, m, X)
    active = q > target
    for _ in range(MAX_ITER):
        if not np.any(active):
            return tau2
        step = np.where(active, (q - target) / -dq, 0.0)
        tau2 = tau2 + step
        q, dq = _q_at(tau2, y, v, m, X)
        active = active & (np.abs(step) > TAU2_RTOL * np.maximum(1.0, tau2)) & (q > target)
    raise MetaError("root finding for tau^2 did not converge")


def _fisher_scoring(method, tau2, y, v, m, X, k, p):
    """metafor's Fisher scoring for ML, REML and EB, vectorised, converged tightly."""
    tau2 = np.maximum(tau2, 0.0)
    done = np.zeros(tau2.shape, dtype=bool)
    for _ in range(MAX_ITER):
        w = m / (v + tau2[..., None])
        pr = _Projection.of(w, y, X)
        if method == "REML":
            adj = (pr.ypp() - pr.tr()) / pr.tr_pp()
        elif method == "ML":
            adj = (pr.ypp() - w.sum(-1)) / (w**2).sum(-1)
        else:  # EB
            adj = (pr.rss() * k / (k - p) - k) / w.sum(-1)
        adj = np.where(np.isfinite(adj) & ~done, adj, 0.0)
        # metafor halves a step that would leave [0, inf); a step that would
        # cross 0 from tau^2 = 0 means the maximum is on the boundary.
        at_zero = (tau2 == 0) & (adj < 0)
        new = np.where((tau2 + adj < 0) | at_zero, 0.0, tau2 + adj)
        change = np.abs(new - tau2)
        tau2 = new
        done = done | at_zero | (change <= TAU2_RTOL * np.maximum(1.0, tau2))
        if np.all(done):
            return tau2
    raise MetaError(f"Fisher scoring for {method} did not converge in {MAX_ITER} iterations")


def _loglik(method, tau2, y, v, m, X, k, p):
    """ML or REML log-likelihood at tau2 (REML with metafor's +1/2 log|X'X|)."""
    w = m / (v + tau2[..., None])
    pr = _Projection.of(w, y, X)
    base = -0.5 * (m * np.log(v + tau2[..., None])).sum(-1) - 0.5 * pr.rss()
    if method == "ML":
        return -0.5 * k * np.log(2 * np.pi) + base
    ones = _Projection.of(m, y, X)
    return (-0.5 * (k - p) * np.log(2 * np.pi) + 0.5 * ones.logdet_xtdx()
            + base - 0.5 * pr.logdet_xtdx())


def estimate_tau2(yi, vi, *, method: str = "REML", X=None, weights=None) -> np.ndarray:
    """tau^2 by one of metafor's estimators (vectorised over leading dimensions).

    Parameters
    ----------
    yi, vi : array_like, shape (..., k)
        Effects and sampling variances; non-finite entries are padding.
    method : str
        One of ``METHODS`` (EE/FE/CE give 0).
    X : array_like, shape (..., k, p), optional
        Design matrix; None is the intercept-only model.
    weights : array_like, shape (..., k), optional
        The weights a_i of GENQ and GENQM (metafor's oracle uses 1/vi).

    Returns
    -------
    ndarray, shape (...)
        tau^2 >= 0.
    """
    y, v, m = _masked(yi, vi)
    X = _design(X, y.shape)
    method = _check_method(method)
    k = m.sum(-1)
    p = 1 if X is None else X.shape[-1]
    return _tau2(method, y, v, m, X, k, p, weights)[0]


def _tau2(method, y, v, m, X, k, p, weights):
    """(tau2, extras) where extras carries what se.tau2 needs."""
    zero = np.zeros(y.shape[:-1])
    if method in COMMON_ALIASES:
        return zero, {}
    if np.all(k <= 1):
        return zero, {}
    fe = _Projection.of(m / v, y, X)
    if method in ("DL", "HS", "HSk"):
        q = fe.rss()
        if method == "DL":
            t = (q - (k - p)) / fe.tr()
        elif method == "HS":
            t = (q - k) / (m / v).sum(-1)
        else:
            t = (k / (k - p) * q - k) / (m / v).sum(-1)
        return np.maximum(t, 0.0), {"proj": fe}
    if method in ("GENQ", "GENQM"):
        if weights is None:
            raise ValueError(f"method={method!r} needs weights (metafor: 'Must specify weights')")
        a = m * np.where(m > 0, np.asarray(weights, dtype=float), 0.0)
        pa = _Projection.of(a, y, X)
        if method == "GENQ":
            t = (pa.rss() - pa.tr_pv(v)) / pa.tr()
        else:
            from .genqm import genqm_tau2  # local: optional, heavier numerics
            t = genqm_tau2(y, v, m, X, a)
        return np.maximum(t, 0.0), {"proj": pa}
    ols = _Projection.of(m, y, X)
    he = (ols.rss() - ols.tr_pv(v)) / (k - p)
    if method == "HE":
        return np.maximum(he, 0.0), {"proj": ols}
    if method == "SJ":
        ybar = (m * y).sum(-1) / k
        t0 = (m * (y - ybar[..., None]) ** 2).sum(-1) / k
        pr = _Projection.of(m / (v + t0[..., None]), y, X)
        return np.maximum(t0 * pr.rss() / (k - p), 0.0), {"proj": pr, "tau2_0": t0}
    if method in ("PM", "PMM"):
        target = (k - p) if method == "PM" else stats.chi2.ppf(0.5, k - p)
        return _newton_root(y, v, m, X, target), {}
    t = _fisher_scoring(method, he, y, v, m, X, k, p)
    if method in ("ML", "REML"):
        ll0 = _loglik(method, zero, y, v, m, X, k, p)
        ll = _loglik(method, t, y, v, m, X, k, p)
        t = np.where((ll0 - ll > LL0_TOL) & (t > 0), 0.0, t)
    return t, {}


def _se_tau2(method, tau2, extras, y, v, m, X, k, p):
    """Standard error of tau^2 as metafor computes it for each estimator."""
    t = np.maximum(tau2, 0.0)
    pr = extras.get("proj")
    if method in COMMON_ALIASES:
        return np.full(np.shape(tau2), np.nan)
    if method in ("HS", "HSk"):
        se = np.sqrt(((2 * (k - p) + 4 * t * pr.tr() + 2 * t**2 * pr.tr_pp())
                      / (m / v).sum(-1) ** 2))
        return se * (k / (k - p)) if method == "HSk" else se
    if method == "HE":
        return np.sqrt((2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pv(v) + 2 * t**2 * (k - p)) / (k - p) ** 2)
    if method == "DL":
        return np.sqrt((2 * (k - p) + 4 * t * pr.tr() + 2 * t**2 * pr.tr_pp()) / pr.tr() ** 2)
    if method in ("GENQ", "GENQM"):
        return np.sqrt((2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pvp(v) + 2 * t**2 * pr.tr_pp())
                       / pr.tr() ** 2)
    if method == "SJ":
        t0 = extras["tau2_0"]
        return np.sqrt(t0**2 / (k - p) ** 2 * (2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pvp(v)
                                                + 2 * t**2 * pr.tr_pp()))
    w = m / (v + tau2[..., None])
    if method == "ML":
        return np.sqrt(2 / (w**2).sum(-1))
    if method == "REML":
        return np.sqrt(2 / _Projection.of(w, y, X).tr_pp())
    return np.sqrt(2 * k**2 / (k - p) / w.sum(-1) ** 2)  # EB, PM, PMM


def _check_method(method: str) -> str:
    if method not in METHODS and method not in COMMON_ALIASES:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    return "EE" if method in COMMON_ALIASES else method


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class FitStats:
    """Log-likelihood, deviance and information criteria (metafor's fit.stats)."""

    ll: float
    dev: float
    AIC: float
    BIC: float
    AICc: float

    def as_dict(self) -> dict:
        return {"ll": self.ll, "dev": self.dev, "AIC": self.AIC, "BIC": self.BIC, "AICc": self.AICc}


@dataclass(frozen=True)
class Prediction:
    """Predicted average effect with its confidence and prediction intervals."""

    pred: float
    se: float
    ci: Interval
    pi: Interval
    pi_df: float | None


@dataclass(frozen=True)
class RMAFit:
    """A fitted model (one analysis). Names follow metafor; I2 is in percent.

    ``beta``, ``se``, ``stat``, ``pval``, ``ci_lb``, ``ci_ub`` have one entry
    per coefficient; ``estimate``/``ci`` give the first (the intercept, the
    pooled effect of an intercept-only model). ``weights_pct`` has one entry
    per study used. ``df`` is None for z tests.
    """

    method: str
    test: str
    level: float
    k: int
    p: int
    beta: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vb: np.ndarray
    tau2: float
    se_tau2: float
    I2_pct: float
    H2: float
    QE: float
    QEdf: int
    QEp: float
    s2w: float
    df: float | None
    QM: float
    QMdf: tuple
    QMp: float
    weights_pct: np.ndarray
    fit_ml: FitStats
    fit_reml: FitStats
    parms: int
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    X: np.ndarray | None = field(repr=False, default=None)

    @property
    def estimate(self) -> float:
        return float(self.beta[0])

    @property
    def ci(self) -> Interval:
        return Interval(float(self.ci_lb[0]), float(self.ci_ub[0]))

    @property
    def tau(self) -> float:
        return float(np.sqrt(self.tau2))

    def predict(self, pi_type: str = "default") -> Prediction:
        """Average effect with CI and prediction interval (metafor's ``predict``).

        ``pi_type``: "default" uses z (t(k-p) under knha); "t" uses t(k-p);
        "riley" uses t(k-p-1) for a random-effects model (Riley 2011), i.e.
        df = k - parms; df below 1 is set to 1 as metafor does.
        """
        if pi_type not in PI_TYPES:
            raise ValueError(f"pi_type must be one of {PI_TYPES}")
        if self.p != 1:
            raise ValueError("predict() here is for intercept-only models")
        se = float(self.se[0])
        ddf = self.df if self.df is not None else self.k - self.p
        if pi_type == "default":
            pi_df = self.df
            crit = z_crit(self.level) if self.df is None else _tcrit_or_nan(self.level, self.df)
        else:
            pi_df = ddf - self.parms + self.p if pi_type == "riley" else ddf
            pi_df = max(pi_df, 1)
            crit = t_crit(self.level, pi_df)
        # metafor gives no prediction interval for a common-effect model
        half = np.nan if self.method in COMMON_ALIASES else crit * np.sqrt(se**2 + self.tau2)
        return Prediction(self.estimate, se, self.ci, Interval(self.estimate - half, self.estimate + half),
                          pi_df)


def _tcrit_or_nan(level, df):
    return t_crit(level, df) if df > 0 else np.nan


def rma(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0,
        X=None, weights=None) -> RMAFit:
    """Fit a random- or common-effect model; matches metafor 3.8-1 ``rma()``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect sizes and sampling variances (finite, vi > 0).
    method : str
        tau^2 estimator, one of ``METHODS`` ("EE" for the common-effect model).
    test : {"z", "knha"}
        Wald z, or Hartung-Knapp-Sidik-Jonkman t with k - p df.
    level : float
        Confidence level in percent.
    X : array_like, shape (k, p), optional
        Design matrix including the intercept column; None = intercept only.
    weights : array_like, shape (k,), optional
        User weights (GENQ/GENQM): the estimate then uses these weights and a
        sandwich variance, as metafor does.

    Returns
    -------
    RMAFit

    Raises
    ------
    ValueError
        Empty or mismatched inputs, non-finite values, vi <= 0, unknown
        method or test, a design with fewer studies than coefficients or
        not of full rank.
    """
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.ndim != 1 or v.ndim != 1:
        raise ValueError("yi and vi must be one-dimensional (use rma_batch for many analyses)")
    if y.shape != v.shape:
        raise ValueError(f"yi and vi differ in length ({y.size} vs {v.size})")
    k = y.size
    if k == 0:
        raise ValueError("no studies: yi and vi are empty")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("yi and vi must be finite (drop studies with missing effects first)")
    if np.any(v <= 0):
        raise ValueError("sampling variances vi must be > 0")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    method_in = method
    method = _check_method(method)
    X = _design(X, y.shape)
    p = 1 if X is None else X.shape[1]
    if k < p:
        raise ValueError(f"too few studies ({k}) for a model with {p} coefficients")
    if X is not None and np.linalg.matrix_rank(X) < p:
        raise ValueError("the design matrix is not of full rank (a moderator without variance?)")
    a = None if weights is None else np.asarray(weights, dtype=float)
    if a is not None and (a.shape != y.shape or np.any(~np.isfinite(a)) or np.any(a < 0)):
        raise ValueError("weights must be finite, >= 0 and one per study")
    m = np.ones(k)
    if k == 1:
        tau2, extras = 0.0, {}
        test_used = "z"
    else:
        t, extras = _tau2(method, y, v, m, X, float(k), p, a)
        tau2 = float(t)
        test_used = test
    w = 1.0 / (v + tau2)
    pr = _Projection.of(w, y, X)
    user_w = method in ("GENQ", "GENQM") and a is not None
    if user_w:
        pa = _Projection.of(a, y, X)
        beta, A = pa.beta, pa.A
        XA = (X if X is not None else np.ones((k, 1))) * a[:, None]
        meat = np.einsum("ki,k,kj->ij", XA, v + tau2, XA)
        vb = A @ meat @ A
        r_f = y - (beta[0] if X is None else X @ beta)
        rss_f = float((w * r_f**2).sum())
    else:
        beta, vb = pr.beta, pr.A
        rss_f = float(pr.rss())
    s2w = 1.0
    df = None
    if test_used == "knha":
        rss_knha = float(pr.rss())
        s2w = 0.0 if rss_knha <= KNHA_EPS else rss_knha / (k - p)
        df = float(k - p)
    vb = s2w * vb
    se = np.sqrt(np.diag(vb))
    stat = beta / se
    if df is None:
        pval = 2 * stats.norm.sf(np.abs(stat))
        crit = z_crit(level)
    else:
        pval = 2 * stats.t.sf(np.abs(stat), df) if df > 0 else np.full(p, np.nan)
        crit = _tcrit_or_nan(level, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        ci_lb, ci_ub = beta - crit * se, beta + crit * se
    # omnibus test of the moderators (all but the intercept; the intercept alone if p == 1)
    QM, QMdf, QMp = _omnibus(beta, vb, p, df, k)
    # heterogeneity from the common-effect fit
    if k > p:
        fe = _Projection.of(1.0 / v, y, X)
        QE = max(0.0, float(fe.rss()))
        QEp = float(stats.chi2.sf(QE, k - p))
        if method == "EE":
            I2 = max(0.0, 100 * (QE - (k - p)) / QE) if QE > 0 else 0.0
            H2 = QE / (k - p)
        else:
            vt = (k - p) / float(fe.tr())
            I2 = 100 * tau2 / (vt + tau2)
            H2 = tau2 / vt + 1
    else:
        QE, QEp, I2, H2 = 0.0, 1.0, 0.0, 1.0
    if k == 1 or method == "EE":
        se_tau2 = np.nan
    else:
        se_tau2 = float(_se_tau2(method, np.float64(tau2), extras, y, v, m, X, float(k), p))
    parms = p + (0 if method == "EE" else 1)
    fit_ml, fit_reml = _fit_stats(y, v, X, k, p, tau2, rss_f, pr, parms)
    wts = a if user_w else w
    return RMAFit(method=method_in,
                  test=test_used, level=level, k=k, p=p, beta=beta, se=se, stat=stat,
                  pval=pval, ci_lb=ci_lb, ci_ub=ci_ub, vb=vb, tau2=tau2, se_tau2=se_tau2,
                  I2_pct=float(I2), H2=float(H2), QE=QE, QEdf=k - p, QEp=QEp, s2w=s2w, df=df,
                  QM=QM, QMdf=QMdf, QMp=QMp, weights_pct=100 * wts / wts.sum(),
                  fit_ml=fit_ml, fit_reml=fit_reml, parms=parms, yi=y, vi=v, X=X)


def _omnibus(beta, vb, p, df, k):
    """Wald test of the coefficients other than the intercept (all of them if p == 1)."""
    idx = np.arange(1, p) if p > 1 else np.arange(p)
    sub = vb[np.ix_(idx, idx)]
    b = beta[idx]
    try:
        QM = float(b @ np.linalg.solve(sub, b))
    except np.linalg.LinAlgError:
        QM = np.nan
    mdf = len(idx)
    if df is None:
        return QM, (mdf, None), float(stats.chi2.sf(QM, mdf))
    QM = QM / mdf
    QMp = float(stats.f.sf(QM, mdf, k - p)) if k - p > 0 else np.nan
    return QM, (mdf, k - p), QMp


def _fit_stats(y, v, X, k, p, tau2, rss_f, pr, parms):
    """metafor's fit.stats: ML and REML ll, deviance, AIC, BIC, AICc."""
    sum_log = float(np.log(v + tau2).sum())
    ll_ml = -0.5 * k * np.log(2 * np.pi) - 0.5 * sum_log - 0.5 * rss_f
    xtx = _Projection.of(np.ones(k), y, X).logdet_xtdx()
    ll_reml = (-0.5 * (k - p) * np.log(2 * np.pi) + 0.5 * float(xtx) - 0.5 * sum_log
               - 0.5 * float(pr.logdet_xtdx()) - 0.5 * rss_f)
    if k > p:
        sat = float(stats.norm.logpdf(y, loc=y, scale=np.sqrt(v)).sum())
        dev_ml = -2 * (ll_ml - sat)
    else:
        dev_ml = 0.0

    def crit(ll, n):
        aicc_n = max(n, parms + 2)
        with np.errstate(divide="ignore"):
            bic = -2 * ll + parms * np.log(n) if n > 0 else (-np.inf if parms > 0 else np.nan)
        return -2 * ll + 2 * parms, bic, -2 * ll + 2 * parms * aicc_n / (aicc_n - parms - 1)

    aic, bic, aicc = crit(ll_ml, k)
    fit_ml = FitStats(ll_ml, dev_ml, aic, bic, aicc)
    aic, bic, aicc = crit(ll_reml, k - p)
    fit_reml = FitStats(ll_reml, -2 * ll_reml, aic, bic, aicc)
    return fit_ml, fit_reml


# --------------------------------------------------------------------------- batch API

@dataclass(frozen=True)
class BatchFit:
    """Intercept-only fits of many analyses at once; every field has shape (m,)."""

    method: str
    test: str
    k: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    pval: np.ndarray
    tau2: np.ndarray
    I2_pct: np.ndarray
    H2: np.ndarray
    QE: np.ndarray
    QEp: np.ndarray
    pi_lb: np.ndarray
    pi_ub: np.ndarray


def rma_batch(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0) -> BatchFit:
    """Fit m intercept-only models at once from (m, k) arrays padded with NaN.

    Same estimators and conventions as ``rma`` (same code), vectorised: the
    cost is O(m k) per iteration and memory O(m k). Rows with fewer than 2
    studies get tau^2 = 0 and a z test as ``rma`` gives them. GENQ/GENQM
    are not offered here (they need per-analysis weights).
    """
    y, v, m = _masked(yi, vi)
    if y.ndim != 2:
        raise ValueError("rma_batch takes (m, k) arrays")
    if np.any((m > 0) & (v <= 0)):
        raise ValueError("sampling variances vi must be > 0")
    method = _check_method(method)
    if method in ("GENQ", "GENQM"):
        raise ValueError("GENQ/GENQM need per-analysis weights; use rma()")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    k = m.sum(-1)
    if np.any(k == 0):
        raise ValueError("every analysis needs at least one study")
    ok = k > 1
    tau2 = np.zeros(k.shape)
    if np.any(ok):
        tau2[ok] = _tau2(method, y[ok], v[ok], m[ok], None, k[ok], 1, None)[0]
    w = m / (v + tau2[:, None])
    pr = _Projection.of(w, y, None)
    est = pr.beta[:, 0]
    var = pr.A[:, 0, 0]
    knha = (test == "knha") & ok
    rss = pr.rss()
    s2w = np.where(knha, np.where(rss <= KNHA_EPS, 0.0, rss / np.maximum(k - 1, 1)), 1.0)
    se = np.sqrt(s2w * var)
    df = np.where(knha, k - 1, np.inf)
    crit = np.where(knha, stats.t.isf((1 - level / 100) / 2, np.maximum(df, 1)), z_crit(level))
    pval = 2 * np.where(knha, stats.t.sf(np.abs(est / se), np.maximum(df, 1)), stats.norm.sf(np.abs(est / se)))
    fe = _Projection.of(m / v, y, None)
    QE = np.where(ok, np.maximum(fe.rss(), 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vt = (k - 1) / fe.tr()
        if method == "EE":
            I2 = np.where(QE > 0, np.maximum(0.0, 100 * (QE - (k - 1)) / QE), 0.0)
            H2 = np.where(ok, QE / (k - 1), 1.0)
        else:
            I2 = np.where(ok, 100 * tau2 / (vt + tau2), 0.0)
            H2 = np.where(ok, tau2 / vt + 1, 1.0)
    QEp = np.where(ok, stats.chi2.sf(QE, np.maximum(k - 1, 1)), 1.0)
    half = crit * np.sqrt(se**2 + tau2)
    return BatchFit(method, test, k.astype(int), est, se, est - crit * se, est + crit * se, pval,
                    tau2, I2, H2, QE, QEp, est - half, est + half)
