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
that sum is below machine epsilon) and t(k - p) replaces z. ``test="adhoc"``
(Knapp & Hartung 2003): the same with s2w = max(1, s2w) (``knha_s2w``).
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
      (its fixed point is PM's root, which is how it is computed here)
PM    root of Q(tau^2) = k - p                                Paule & Mandel 1982
PMM   root of Q(tau^2) = median of chi^2(k-p)
GENQ  generalised Q with weights a: (Q_a - tr(P_a V)) / tr(P_a)  DerSimonian & Kacker 2007
GENQM root of P(Q_a <= q_obs | tau^2) = 1/2 (see ``ntxmeta.genqm``)   Jackson 2013
Every estimate is floored at 0. ML and REML start from max(0, HE) and, as
metafor, fall back to 0 when the log-likelihood at 0 is higher than at the
solution (a local maximum). PM, PMM (and EB) solve by safeguarded Newton
steps on Q(tau^2), which is decreasing and convex, so iterates approach the
root from below and never overshoot; no upper search limit is imposed
(metafor stops at tau2.max = 100 with an error). For the intercept-only
model, ML and REML find the root of the score that metafor's Fisher scoring
converges to by Newton steps kept in Fisher's basin (``_ml_reml_intercept``):
3-6 steps instead of up to thousands, and a result where metafor's Fisher
scoring oscillates and stops with "did not converge" (about 1 in 200 random
analyses of k = 10); with moderators Fisher scoring is used as in metafor.

Speed
-----
The intercept-only model without user weights (the case asked of at scale)
has its own path from weighted sums w^a yc^b (``_Sums``), evaluated in
cache-sized blocks for one long analysis (``_LongRow``) or row-wise for
many (``_Rows``, ``rma_batch``), without BLAS (a threaded BLAS on a busy
2-core machine was 40x slower). Measured figures are in bench/README.md.

Edge cases: k = 1 gives tau^2 = 0, se.tau2 = NaN, Q = 0, Q-p = 1, I^2 = 0,
H^2 = 1, and knha falls back to z, as metafor does. vi must be finite and
>= 0 (vi = 0 where metafor allows it: see ``rma``); rows with non-finite yi
or vi are dropped before fitting (metafor's na.omit) by the callers that
take per-row data.

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

import contextlib
import contextvars
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from . import _special as special
from ._common import Interval, MetaError, t_crit, z_crit

METHODS = ("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM",
           "GENQ", "GENQM")
COMMON_ALIASES = ("EE", "FE", "CE")
TESTS = ("z", "knha", "adhoc")
#: The tests that scale Var(beta) by s2w and use t(k - p) (metafor's "knha", "adhoc").
HK_TESTS = ("knha", "adhoc")
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
#: Estimators that metafor 3.8-1 refuses when a study has vi = 0 (their
#: formulas weight by 1/vi): "<method> estimator cannot be used when there
#: are non-positive sampling variances in the data." EE/FE/CE are refused
#: with ``DIV0_MSG``; HE, SJ, ML, REML, EB and GENQ fit.
ZERO_VI_REFUSED = ("DL", "PM", "PMM", "HS", "HSk")
#: metafor's refusal when a weight 1/(vi + tau^2) is infinite (vi = 0 and tau^2 = 0).
DIV0_MSG = "Division by zero when computing the inverse variance weights."
#: metafor sets a negative vi to 0 with a warning; we refuse it (a negative
#: sampling variance is an error in the data, not a value to repair silently).
NEGATIVE_VI_MSG = "sampling variances vi must be >= 0"


def knha_s2w(rss: float | np.ndarray, df, test: str):
    """Hartung-Knapp scale factor s2w of Var(beta), as metafor 3.8-1 ``rma.uni``.

    ``test="knha"`` (Hartung & Knapp 2001; Sidik & Jonkman 2002):
    s2w = RSS / (k - p), RSS = sum w_i (y_i - x_i' beta)^2 with the
    random-effects weights w_i = 1/(v_i + tau^2); s2w = 0 when RSS <=
    ``KNHA_EPS`` (metafor's rule; no truncation at 1).
    ``test="adhoc"`` (Knapp & Hartung 2003, "ad hoc" improvement; Röver et
    al. 2015): s2w = max(1, s2w), so that the HK variance is never below the
    unadjusted one (metafor: ``s2w[s2w < 1] <- 1``, applied after the
    RSS <= eps rule, so s2w = 1 there). Both use t(k - p) in metafor.
    Works elementwise on arrays (``rss``, ``df``).

    References: Knapp G, Hartung J (2003). Improved tests for a random
    effects meta-regression with a single covariate. Stat Med 22:2693-2710;
    Röver C, Knapp G, Friede T (2015). Hartung-Knapp-Sidik-Jonkman approach
    and its modification for random-effects meta-analysis with few studies.
    BMC Med Res Methodol 15:99.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        s2w = np.where(rss <= KNHA_EPS, 0.0, rss / df)
    if test == "adhoc":
        s2w = np.maximum(s2w, 1.0)
    return float(s2w) if np.ndim(s2w) == 0 else s2w


def _check_zero_vi(method: str, method_in: str) -> None:
    """metafor 3.8-1's refusals when a study has vi = 0 (ValueError with its message)."""
    if method == "EE":
        raise ValueError(f"{DIV0_MSG} (a study has vi = 0: a common-effect model gives it an "
                         "infinite weight)")
    if method in ZERO_VI_REFUSED:
        raise ValueError(f"{method_in} estimator cannot be used when there are non-positive "
                         "sampling variances in the data.")
    if method == "GENQM":
        raise ValueError("GENQM with a study of vi = 0 is not offered: metafor's GENQM needs "
                         "CompQuadForm, so there is no reference to check it against")


# --------------------------------------------------------------------------- control

@dataclass(frozen=True)
class Control:
    """How the iterative tau^2 estimators (ML, REML, EB) stop: metafor's ``rma(control=)``.

    Attributes
    ----------
    threshold : float
        Stop when the change in tau^2 is at most this (metafor's
        ``threshold``); relative to max(1, tau^2) when ``replay`` is False.
    maxiter : int
        Iteration cap; exceeding it raises ``MetaError`` (metafor: "Fisher
        scoring algorithm did not converge").
    tol : float
        metafor's ll0check: a solution whose log-likelihood is below the
        one at tau^2 = 0 by more than this is replaced by 0.
    replay : bool
        True: run metafor's Fisher scoring step for step (start at max(0,
        HE), halve steps that would leave [0, inf), absolute ``threshold``),
        so that the result is what metafor reports with these settings,
        imprecision included (``metafor_fisher_tau2``). False: this module's
        fully converging iterations (safeguarded Newton for the
        intercept-only model, see ``_ml_reml_intercept``), which exist only
        with the settings of ``FULL``.

    Notes
    -----
    One type for every module: the spec's string ``"control": "metafor" |
    "full"`` is translated to ``METAFOR_DEFAULT`` / ``FULL`` where the spec
    is read (``ntxmeta.data``), nowhere else.
    """

    threshold: float
    maxiter: int
    tol: float
    replay: bool

    def matters_for(self, method: str, k: int) -> bool:
        """Does this control change the fit (only ML/REML/EB with k > 1 iterate it)?"""
        return self.replay and method in REPLAYED_METHODS and k > 1


#: The estimators whose iterations ``Control.replay`` reproduces (metafor's Fisher scoring).
REPLAYED_METHODS = ("ML", "REML", "EB")
#: Converge fully (the default of every function and the pipeline's choice):
#: agrees with metafor's tight fits (control=list(threshold=1e-12)) to ~1e-10.
FULL = Control(threshold=TAU2_RTOL, maxiter=MAX_ITER, tol=LL0_TOL, replay=False)
#: metafor 3.8-1's default control: threshold 1e-5, maxiter 100, tol
#: .Machine$double.eps^0.25, replayed step for step (what its default output shows).
METAFOR_DEFAULT = Control(threshold=1e-5, maxiter=100, tol=float(np.finfo(float).eps ** 0.25),
                          replay=True)


def _check_control(control) -> Control:
    if not isinstance(control, Control):
        raise TypeError(f"control must be a ntxmeta.rma.Control (FULL, METAFOR_DEFAULT, ...), "
                        f"got {control!r}")
    if not control.replay and control != FULL:
        raise ValueError("a non-replayed control converges fully: use FULL, or replay=True "
                         "to reproduce metafor's Fisher scoring with other settings")
    return control


# --------------------------------------------------------------------------- fit counter

class FitCount:
    """What ``fit_counter()`` has seen: fits of the engine while it was open.

    Attributes
    ----------
    count : int
        Models whose tau^2 was estimated (``rma`` without ``tau2=``, and
        ``estimate_tau2``), the expensive part of a fit.
    by_method : dict
        ``count`` per (canonical) method name.
    fixed : int
        Fits with a given tau^2 (``rma(tau2=)`` and ``RMAFit.with_test``).
    batch : int
        Calls of the batch paths (``rma_batch``; the subset fits of
        ``ntxmeta.diagnostics``), each fitting many models at once.
    """

    def __init__(self) -> None:
        self.count = 0
        self.by_method: dict[str, int] = {}
        self.fixed = 0
        self.batch = 0

    def __repr__(self) -> str:
        return (f"FitCount(count={self.count}, fixed={self.fixed}, batch={self.batch}, "
                f"by_method={self.by_method})")


_counters: list[FitCount] = []
_counter_lock = threading.Lock()


@contextlib.contextmanager
def fit_counter():
    """Count the engine's fits inside a ``with`` block (all threads of the process).

    Usage::

        with fit_counter() as fits:
            analyse(spec)
        fits.count, fits.by_method["REML"], fits.fixed, fits.batch

    Counters nest: a fit is counted by every counter open at the time.
    Cost when no counter is open: one truthiness test of a list per fit.
    """
    c = FitCount()
    with _counter_lock:
        _counters.append(c)
    try:
        yield c
    finally:
        with _counter_lock:
            _counters.remove(c)


def note_fit(kind: str, method: str = "") -> None:
    """Tell the open counters about one fit: kind "estimated", "fixed" or "batch"."""
    if not _counters:
        return
    with _counter_lock:
        for c in _counters:
            if kind == "estimated":
                c.count += 1
                c.by_method[method] = c.by_method.get(method, 0) + 1
            elif kind == "fixed":
                c.fixed += 1
            else:
                c.batch += 1


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


def _newton_step(excess, slope, active):
    """Newton's step excess / slope where ``active``, 0 elsewhere, divided only where active.

    On inactive lanes (Q already at or below its target) the slope y'PPy can be
    subnormal (effects of ~1e-160) or 0 (equal effects); dividing there
    overflowed (a RuntimeWarning, tests/test_properties.py) for a value
    that was then discarded.
    """
    step = np.zeros(np.shape(excess))
    np.divide(excess, slope, out=step, where=active)
    return step


def _newton_root(y, v, m, X, target):
    """Root tau^2 >= 0 of Q(tau^2) = target by Newton steps from 0 (Q convex, decreasing)."""
    tau2 = np.zeros(y.shape[:-1])
    q, dq = _q_at(tau2, y, v, m, X)
    active = q > target
    for _ in range(MAX_ITER):
        if not np.any(active):
            return tau2
        step = _newton_step(q - target, -dq, active)
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


def estimate_tau2(yi, vi, *, method: str = "REML", X=None, weights=None,
                  control: Control = FULL) -> np.ndarray:
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
    control : Control
        ``FULL`` (default) or a replayed control such as ``METAFOR_DEFAULT``
        (one analysis at a time, ML/REML/EB: ``metafor_fisher_tau2``).

    Returns
    -------
    ndarray, shape (...)
        tau^2 >= 0.
    """
    control = _check_control(control)
    y, v, m = _masked(yi, vi)
    X = _design(X, y.shape)
    method = _check_method(method)
    note_fit("estimated", method)
    k = m.sum(-1)
    p = 1 if X is None else X.shape[-1]
    if control.replay and method in REPLAYED_METHODS and y.ndim == 1 and m.all() and y.size > 1:
        return np.asarray(metafor_fisher_tau2(method, y, v, X, control=control))
    return _tau2(method, y, v, m, X, k, p, weights)[0]


def _fe_basis(y, v, m, X, k, p, a):
    """DL, HS, HSk: the common-effect projection (weights 1/v)."""
    return {"proj": _Projection.of(m / v, y, X)}


def _genq_basis(y, v, m, X, k, p, a):
    """GENQ, GENQM: the projection with the user weights a."""
    if a is None:
        raise ValueError("method GENQ/GENQM needs weights (metafor: 'Must specify weights')")
    a = m * np.where(m > 0, np.asarray(a, dtype=float), 0.0)
    return {"proj": _Projection.of(a, y, X), "a": a}


def _ols_basis(y, v, m, X, k, p, a):
    """HE (and the starting value of ML, REML): the unweighted projection and Hedges' estimate."""
    ols = _Projection.of(m, y, X)
    return {"proj": ols, "he": (ols.rss() - ols.tr_pv(v)) / (k - p)}


def _sj_basis(y, v, m, X, k, p, a):
    """SJ: the projection at the initial estimate tau0^2 = mean((y - ybar)^2)."""
    ybar = (m * y).sum(-1) / k
    t0 = (m * (y - ybar[..., None]) ** 2).sum(-1) / k
    return {"proj": _Projection.of(m / (v + t0[..., None]), y, X), "tau2_0": t0}


def _no_basis(y, v, m, X, k, p, a):
    return {}


def _est_dl(ex, y, v, m, X, k, p):
    pr = ex["proj"]
    return (pr.rss() - (k - p)) / pr.tr()


def _est_hs(ex, y, v, m, X, k, p):
    return (ex["proj"].rss() - k) / (m / v).sum(-1)


def _est_hsk(ex, y, v, m, X, k, p):
    return (k / (k - p) * ex["proj"].rss() - k) / (m / v).sum(-1)


def _est_genq(ex, y, v, m, X, k, p):
    pa = ex["proj"]
    return (pa.rss() - pa.tr_pv(v)) / pa.tr()


def _est_genqm(ex, y, v, m, X, k, p):
    from .genqm import genqm_tau2  # local: optional, heavier numerics
    return genqm_tau2(y, v, m, X, ex["a"])


def _est_he(ex, y, v, m, X, k, p):
    return ex["he"]


def _est_sj(ex, y, v, m, X, k, p):
    t0 = ex["tau2_0"]
    return t0 * ex["proj"].rss() / (k - p)


def _est_q_root(method):
    """PM, PMM, EB: the root of Q(tau^2) = target.

    EB's Fisher step (Q k/(k-p) - k)/sum w is 0 exactly where Q(tau^2) = k - p,
    so metafor's EB iteration converges to PM's root (or 0); Newton on the
    convex, decreasing Q gets there always, where EB's own iteration can
    oscillate for ever.
    """
    def est(ex, y, v, m, X, k, p):
        target = _chi2_median(k - p) if method == "PMM" else (k - p)
        if X is None:
            return _q_root_masked(target, y, v, m, k)
        return _newton_root(y, v, m, X, target)
    return est


def _est_ml_reml(method):
    """ML, REML: the maximum from max(0, HE), with metafor's ll0check."""
    def est(ex, y, v, m, X, k, p):
        he = ex["he"]
        if X is None:
            t = _ml_reml_masked(method, he, y, v, m, k)
        else:
            t = _fisher_scoring(method, he, y, v, m, X, k, p)
        zero = np.zeros(y.shape[:-1])
        ll0 = _loglik(method, zero, y, v, m, X, k, p)
        ll = _loglik(method, t, y, v, m, X, k, p)
        return np.where((ll0 - ll > LL0_TOL) & (t > 0), 0.0, t)
    return est


def _se_hs(t, ex, y, v, m, X, k, p):
    pr = ex["proj"]
    return np.sqrt(((2 * (k - p) + 4 * t * pr.tr() + 2 * t**2 * pr.tr_pp()) / (m / v).sum(-1) ** 2))


def _se_hsk(t, ex, y, v, m, X, k, p):
    return _se_hs(t, ex, y, v, m, X, k, p) * (k / (k - p))


def _se_he(t, ex, y, v, m, X, k, p):
    pr = ex["proj"]
    return np.sqrt((2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pv(v) + 2 * t**2 * (k - p)) / (k - p) ** 2)


def _se_dl(t, ex, y, v, m, X, k, p):
    pr = ex["proj"]
    return np.sqrt((2 * (k - p) + 4 * t * pr.tr() + 2 * t**2 * pr.tr_pp()) / pr.tr() ** 2)


def _se_genq(t, ex, y, v, m, X, k, p):
    pr = ex["proj"]
    return np.sqrt((2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pvp(v) + 2 * t**2 * pr.tr_pp()) / pr.tr() ** 2)


def _se_sj(t, ex, y, v, m, X, k, p):
    pr, t0 = ex["proj"], ex["tau2_0"]
    return np.sqrt(t0**2 / (k - p) ** 2 * (2 * pr.tr_pvpv(v) + 4 * t * pr.tr_pvp(v)
                                            + 2 * t**2 * pr.tr_pp()))


def _se_ml(t, ex, y, v, m, X, k, p):
    return np.sqrt(2 / ((m / (v + t[..., None])) ** 2).sum(-1))


def _se_reml(t, ex, y, v, m, X, k, p):
    return np.sqrt(2 / _Projection.of(m / (v + t[..., None]), y, X).tr_pp())


def _se_q_root(t, ex, y, v, m, X, k, p):   # EB, PM, PMM
    return np.sqrt(2 * k**2 / (k - p) / (m / (v + t[..., None])).sum(-1) ** 2)


@dataclass(frozen=True)
class Estimator:
    """One tau^2 estimator of metafor's ``rma.uni``: its basis, estimate and standard error.

    ``basis(y, v, m, X, k, p, a)`` computes what both formulas need (a
    projection, Hedges' start value, SJ's tau0^2); ``estimate(basis, ...)``
    gives tau^2 before the floor at 0; ``se(tau2, basis, ...)`` metafor's
    se.tau2 at a tau^2 (also a fixed one: metafor evaluates the method's
    formula at ``rma(tau2=)``'s value). All vectorised over leading dims.
    """

    basis: Callable
    estimate: Callable
    se: Callable


#: name -> estimator (formulas in the module docstring; se.tau2 as rma.uni computes it).
ESTIMATORS: dict[str, Estimator] = {
    "DL": Estimator(_fe_basis, _est_dl, _se_dl),
    "HS": Estimator(_fe_basis, _est_hs, _se_hs),
    "HSk": Estimator(_fe_basis, _est_hsk, _se_hsk),
    "HE": Estimator(_ols_basis, _est_he, _se_he),
    "SJ": Estimator(_sj_basis, _est_sj, _se_sj),
    "ML": Estimator(_ols_basis, _est_ml_reml("ML"), _se_ml),
    "REML": Estimator(_ols_basis, _est_ml_reml("REML"), _se_reml),
    "EB": Estimator(_no_basis, _est_q_root("EB"), _se_q_root),
    "PM": Estimator(_no_basis, _est_q_root("PM"), _se_q_root),
    "PMM": Estimator(_no_basis, _est_q_root("PMM"), _se_q_root),
    "GENQ": Estimator(_genq_basis, _est_genq, _se_genq),
    "GENQM": Estimator(_genq_basis, _est_genqm, _se_genq),
}


def _tau2(method, y, v, m, X, k, p, weights):
    """(tau2, basis) where the basis carries what se.tau2 needs."""
    zero = np.zeros(y.shape[:-1])
    if method in COMMON_ALIASES or np.all(k <= 1):
        return zero, {}
    est = ESTIMATORS[method]
    basis = est.basis(y, v, m, X, k, p, weights)
    return np.maximum(est.estimate(basis, y, v, m, X, k, p), 0.0), basis


def _se_tau2(method, tau2, extras, y, v, m, X, k, p):
    """Standard error of tau^2 as metafor computes it for each estimator."""
    if method in COMMON_ALIASES:
        return np.full(np.shape(tau2), np.nan)
    return ESTIMATORS[method].se(np.maximum(tau2, 0.0), extras, y, v, m, X, k, p)


def _chi2_median(df):
    """Median of chi^2(df), PMM's target (scipy.stats imported here only: it is slow to load)."""
    from scipy import stats
    return stats.chi2.ppf(0.5, df)


def _check_method(method: str) -> str:
    if method not in METHODS and method not in COMMON_ALIASES:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    return "EE" if method in COMMON_ALIASES else method


# --------------------------------------------------------------------------- intercept-only kernels
#
# The intercept-only model (X = None) is the common case and the one asked
# of at scale (k up to 1e6 studies, or millions of small analyses), so it has
# its own path built from weighted sums instead of ``_Projection``: no
# einsum over a design, no (k, 1) design, no p x p inverse. Effects are
# centred at their unweighted mean c (yc = y - c) so that the expanded sums
# below lose no digits when the mean is large relative to the spread. With
# w = 1/(v + t), Sa = sum w^a, b = sum(w yc)/S1 and r = yc - b:
#   RSS = sum w r^2,  y'PPy = sum w^2 r^2,  tr P = S1 - S2/S1,
#   tr PP = S2 - 2 S3/S1 + (S2/S1)^2,  y'PPPy = sum w^3 r^2 - (sum w^2 r)^2/S1,
# since Py = w r and P = W - w w'/S1; every sum w^a r^b is expanded in the
# sums w^a yc^b (``_Sums``). Two evaluators produce them: ``_Rows`` for many
# short analyses ((m, k) arrays, padded entries v = inf so w = 0, y = 0) and
# ``_LongRow`` for one analysis, in cache-sized blocks.

#: A REML/ML iteration that has not converged after this many safeguarded
#: Newton/Fisher steps switches to bisection of its bracket (guaranteed to
#: converge; never reached on the oracle cases, where Newton takes < 10).
_BISECT_AFTER = 60
#: A Newton step longer than the Fisher step metafor would take is taken
#: only when it is within this fraction of the step of the Fisher target, or
#: when the Newton target predicted from the previous iterate agrees with the
#: current one to this fraction: a consistent local quadratic model.
#: Without the check, Newton from HE jumped over the ML maximum metafor
#: finds into the basin of the boundary maximum at 0 on random k = 6 data
#: (where information / |score derivative| was 2.8).
_NEWTON_AGREE = 0.1
#: rma_batch works through its rows in chunks of about this many numbers per
#: (rows, k) array: large enough to amortise numpy's per-call overhead (each
#: Newton step is ~50 numpy calls), small enough that the ~10 temporaries of
#: 1 MB stay in cache (2**15 to 2**17 measured about equally fast; 10,000
#: analyses of k = 10 are one chunk).
_BATCH_CHUNK = 2**17
#: One long analysis is evaluated in blocks of this many studies, for the
#: same reason: measured 2-3x faster than whole-array passes at k = 1e6
#: (2**13 to 2**15 about equally fast; 2**12 pays call overhead, 2**17
#: misses L2).
_BLOCK = 2**13


def _rsum(a: np.ndarray) -> np.ndarray:
    """Row sums of an (m, k) array.

    No BLAS here on purpose: a threaded BLAS ddot/gemv on a busy 2-core
    machine was measured 40x slower than numpy's single-threaded loops.
    """
    return np.einsum("ij->i", a)


def _csum(a: np.ndarray) -> np.ndarray:
    """Column sums of a (k, m) array (einsum: see ``_rsum``)."""
    return np.einsum("ij->j", a)


def _cdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise dot products of two (k, m) arrays."""
    return np.einsum("ij,ij->j", a, b)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two vectors without BLAS (see ``_rsum``)."""
    return np.einsum("i,i->", a, b)


@dataclass(frozen=True)
class _Sums:
    """Weighted sums of intercept-only models, one entry per analysis, at tau^2 = t.

    ``s1 = sum w``, ``sy = sum w yc``, ``syy = sum w yc^2``; with ``full``
    also ``s2 = sum w^2``, ``s2y``, ``s2yy``, ``s3 = sum w^3``, ``s3y``,
    ``s3yy`` (the same with w^2 and w^3).
    """

    s1: np.ndarray
    sy: np.ndarray
    syy: np.ndarray
    s2: np.ndarray | None = None
    s2y: np.ndarray | None = None
    s2yy: np.ndarray | None = None
    s3: np.ndarray | None = None
    s3y: np.ndarray | None = None
    s3yy: np.ndarray | None = None

    FIELDS = ("s1", "sy", "syy", "s2", "s2y", "s2yy", "s3", "s3y", "s3yy")

    def take(self, rows) -> "_Sums":
        return _Sums(*(None if getattr(self, f) is None else getattr(self, f)[rows]
                       for f in self.FIELDS))

    @property
    def b(self):
        """Weighted mean of yc (the estimate minus the centre)."""
        return self.sy / self.s1

    def rss(self):
        """sum w r^2 = syy - sy^2 / s1."""
        return self.syy - self.sy * self.b

    def tr(self):
        """tr P."""
        return self.s1 - self.s2 / self.s1

    def tr_pp(self):
        """tr PP."""
        q = self.s2 / self.s1
        return self.s2 - 2 * self.s3 / self.s1 + q * q

    def score(self, method: str):
        """(score, Fisher information, derivative of the score) of ML or REML in tau^2.

        The score is twice d ll / d tau^2: REML y'PPy - tr P, ML y'PPy - sum w;
        its derivative uses d P / d tau^2 = -PP: -2 y'PPPy + tr PP (REML),
        -2 y'PPPy + sum w^2 (ML); the expected information is tr PP or sum w^2.
        """
        b = self.b
        ypp = self.s2yy - 2 * b * self.s2y + b * b * self.s2
        w2r = self.s2y - b * self.s2
        ypppy = self.s3yy - 2 * b * self.s3y + b * b * self.s3 - w2r * w2r / self.s1
        if method == "REML":
            info = self.tr_pp()
            return ypp - self.tr(), info, info - 2 * ypppy
        return ypp - self.s1, self.s2, self.s2 - 2 * ypppy


class _Rows:
    """Many intercept-only analyses, stored studies-major for speed: (k, m) arrays.

    Built from (m, k) arrays v (inf at padding, so w = 0 there) and yc (0
    there), with ``valid`` marking real studies (None: no padding). The sums
    over a column are then vectorised across analyses (measured 2x faster
    than row-wise einsum over short rows).
    """

    def __init__(self, v, yc, valid=None, *, transposed=False):
        if not transposed:
            v, yc = np.ascontiguousarray(v.T), np.ascontiguousarray(yc.T)
            valid = None if valid is None else np.ascontiguousarray(valid.T)
        self.v, self.yc, self.valid = v, yc, valid

    def take(self, rows) -> "_Rows":
        return _Rows(self.v[:, rows], self.yc[:, rows],
                     None if self.valid is None else self.valid[:, rows], transposed=True)

    def plain(self):
        """(sum yc, sum yc^2) per analysis, for Hedges' estimator."""
        return _csum(self.yc), _cdot(self.yc, self.yc)

    def logsum(self, t: np.ndarray) -> np.ndarray:
        """sum log(v + t) over the studies of each analysis."""
        x = self.v + t[None, :]
        if self.valid is None:
            return _csum(np.log(x, out=x))
        out = np.zeros(x.shape)
        np.log(x, out=out, where=self.valid)
        return _csum(out)

    def at(self, t: np.ndarray, *, sums: str = "full", w: np.ndarray | None = None) -> _Sums:
        """Sums at tau^2 = t (shape (m,)) to the level ``sums`` (see ``_LongRow.LEVELS``);
        ``w`` may pass 1/(v + t), (k, m), if already known."""
        fields = _LongRow.LEVELS[sums]
        yc = self.yc
        if w is None:
            w = np.add(self.v, t[None, :])
            np.reciprocal(w, out=w)
        wy = w * yc
        out = {"s1": _csum(w), "sy": _csum(wy), "syy": _cdot(wy, yc)}
        if "s2" in fields:
            out["s2"] = _cdot(w, w)
        if "s2y" in fields:
            out["s2y"], out["s2yy"] = _cdot(wy, w), _cdot(wy, wy)
        if "s3" in fields:
            buf = w * w
            out["s3"] = _cdot(buf, w)
            if "s3y" in fields:
                np.multiply(wy, w, out=buf)          # w^2 yc
                out["s3y"], out["s3yy"] = _cdot(buf, w), _cdot(buf, wy)
        return _Sums(**out)


class _LongRow:
    """One intercept-only analysis (y, v of length k), evaluated in blocks of ``_BLOCK``.

    yc = y - c is formed block by block in every pass; memory is the
    weights when asked for (``w_out``) and O(_BLOCK).
    """

    #: the ``_Sums`` fields each ``sums`` level fills: "basic" for the estimate and RSS,
    #: "fe" adds tr P, "dl" tr PP as well, "q" y'PPy (Q's derivative), "full" all nine
    LEVELS = {"none": (), "basic": ("s1", "sy", "syy"), "fe": ("s1", "sy", "syy", "s2"),
              "dl": ("s1", "sy", "syy", "s2", "s3"),
              "q": ("s1", "sy", "syy", "s2", "s2y", "s2yy"), "full": _Sums.FIELDS}

    def __init__(self, y: np.ndarray, v: np.ndarray, c: float):
        self.y, self.v, self.c = y, v, c
        self._buf = np.empty((4, min(_BLOCK, y.size)))

    def take(self, rows) -> "_LongRow":  # one row: the Newton loop never drops part of it
        return self

    def at(self, t, *, sums: str = "full", log: bool = False, plain: bool = False,
           w_out: np.ndarray | None = None, w_scale: float = 1.0):
        """Sums at tau^2 = t (a scalar or shape (1,)) as ``_Sums`` of shape (1,).

        ``sums``: one of ``LEVELS``. With ``log``/``plain`` also returns
        ``extra`` = {"lsum": sum log(v + t), "syc": sum yc, "syc2": sum yc^2}
        (the last two only with ``plain``, for Hedges' estimator);
        ``w_out`` receives w_scale / (v + t).
        """
        t = float(np.asarray(t).reshape(-1)[0])
        v, c = self.v, self.c
        fields = self.LEVELS[sums]
        basic, s2, s2y, s3, s3y = ("s1" in fields, "s2" in fields, "s2y" in fields,
                                   "s3" in fields, "s3y" in fields)
        acc = dict.fromkeys(_Sums.FIELDS + ("lsum", "syc", "syc2"), 0.0)
        k, blk = v.size, self._buf.shape[1]
        for s in range(0, k, blk):
            n = min(blk, k - s)
            wb, wy, buf, yc = (b[:n] for b in self._buf)
            w = wb if w_out is None else w_out[s:s + n]
            if basic or plain:
                # recomputed in every pass: cheaper than storing a k-vector (page faults)
                np.subtract(self.y[s:s + n], c, out=yc)
            if plain:
                acc["syc"] += yc.sum()
                acc["syc2"] += _dot(yc, yc)
            vt = v[s:s + n]
            if t != 0:
                vt = np.add(vt, t, out=buf)
            if log:
                acc["lsum"] += np.log(vt, out=wy).sum()
            np.reciprocal(vt, out=w)
            if basic:
                np.multiply(w, yc, out=wy)
                acc["s1"] += w.sum()
                acc["sy"] += wy.sum()
                acc["syy"] += _dot(wy, yc)
            if s2:
                acc["s2"] += _dot(w, w)
            if s2y:
                acc["s2y"] += _dot(wy, w)
                acc["s2yy"] += _dot(wy, wy)
            if s3:
                np.multiply(w, w, out=buf)
                acc["s3"] += _dot(buf, w)
            if s3y:
                np.multiply(wy, w, out=buf)  # w^2 yc
                acc["s3y"] += _dot(buf, w)
                acc["s3yy"] += _dot(buf, wy)
            if w_out is not None and w_scale != 1.0:
                w *= w_scale
        S = _Sums(**{f: np.array([acc[f]]) for f in fields}) if fields else None
        if log or plain:
            return S, {"lsum": acc["lsum"], "syc": acc["syc"], "syc2": acc["syc2"]}
        return S


def _ml_reml_intercept(method: str, t0: np.ndarray, data):
    """ML/REML tau^2 of intercept-only analyses: the root of the score, as metafor's Fisher scoring.

    metafor iterates Fisher scoring, tau^2 += score / information, from
    max(0, HE) and stops at tau^2 = 0 when the score there is negative. Its
    fixed point is the root of the score (or 0); we reach the same point by
    Newton steps on the score where the log-likelihood is concave and the
    Newton step is shorter than the Fisher step or agrees with the one
    predicted at the previous iterate (``_NEWTON_AGREE``; quadratic
    convergence: 3-6 steps, where Fisher scoring takes 10 to 1000s at small
    k and sometimes oscillates for ever, metafor then stopping with "did not
    converge"), Fisher steps elsewhere, both kept inside the bracket
    [largest tau^2 seen with a positive score, smallest with a negative one]
    by bisection. Converged when the step is below TAU2_RTOL * max(1, tau^2).

    Stops also one step early where two successive Newton steps show
    quadratic convergence and predict the next step below the tolerance.
    ``data`` is a ``_Rows`` or ``_LongRow``. Returns tau^2 (m,) and the full
    ``_Sums`` at it when all rows stopped at an evaluated point in the same
    step (else None, and the caller evaluates there).
    """
    m = t0.shape[0]
    t = np.maximum(t0, 0.0)
    res_t = np.empty(m)
    lo = np.full(m, -np.inf)           # largest tau^2 seen with a positive score
    hi = np.full(m, np.inf)            # smallest tau^2 seen with a negative score
    idx = np.arange(m)
    prev = np.full(m, np.nan)          # the Newton target predicted at the previous iterate
    mult = np.ones(m)                  # growth of successive Fisher steps in convex stretches
    last_sign = np.zeros(m)            # sign of the score at the previous Fisher step
    last_newton = np.zeros(m, dtype=bool)   # the previous step was a Newton step
    last_step = np.full(m, np.inf)     # and its length
    finished = np.zeros(m, dtype=bool)  # converged, kept in the arrays until a quarter are
    with np.errstate(divide="ignore", invalid="ignore"):
        for it in range(MAX_ITER):
            S = data.at(t)
            s, info, curv = S.score(method)
            np.maximum(lo, t, out=lo, where=s > 0)
            np.minimum(hi, t, out=hi, where=s < 0)
            fstep = s / info
            nstep = -s / curv
            newton = t + nstep
            step = np.abs(nstep)
            use_newton = (curv < 0) & (newton >= 0) & (
                (step <= np.abs(fstep)) | (np.abs(nstep - fstep) <= _NEWTON_AGREE * step)
                | (np.abs(newton - prev) <= _NEWTON_AGREE * step))
            prev = newton
            # where the log-likelihood is convex (curv >= 0) Fisher steps towards the
            # maximum are short and shrink only slowly (hundreds of steps); no root can lie
            # before the curvature turns, so successive steps in one direction are doubled
            sign = np.sign(s)
            grow = ~use_newton & (curv >= 0) & (sign == last_sign)
            mult = np.where(grow, 2 * mult, 1.0)
            last_sign = np.where(use_newton, 0.0, sign)
            prop = np.where(use_newton, newton, t + fstep * mult)
            np.maximum(prop, 0.0, out=prop)
            outside = (prop >= hi) | (prop <= lo) | ~np.isfinite(prop)
            if it >= _BISECT_AFTER:
                outside[:] = True
            if outside.any():
                mid = np.where(np.isfinite(hi), 0.5 * (np.maximum(lo, 0.0) + hi),
                               np.where(np.isfinite(prop), prop, 2 * t + 1))
                prop = np.where(outside, np.where(np.isinf(lo) & np.isfinite(hi), 0.0, mid), prop)
            # converged when the Newton step or metafor's (Fisher) step is below the
            # tolerance (the score carries rounding noise of ~1e-16 tr P; near the root
            # Newton's step amplifies it by information / |derivative|)
            tol = TAU2_RTOL * np.maximum(1.0, t)
            done = ((np.abs(prop - t) <= tol) | (np.abs(fstep) <= tol) | (s == 0)
                    | ((t == 0) & (s <= 0)))
            # two Newton steps in a row in the quadratic regime: the step after this one
            # would be ~ (this step)^2 / (last step)^2 * this step; when that is below the
            # tolerance, take this step and stop without evaluating there (saves one pass)
            taken = np.abs(prop - t)
            ahead = use_newton & last_newton & ~outside & (taken * taken * taken
                                                            <= tol * last_step * last_step)
            last_newton, last_step = use_newton & ~outside, taken
            if ahead.any():
                t = np.where(ahead & ~done, prop, t)
                done = done | ahead
            done |= finished
            if done.all():
                fresh = ~finished
                res_t[idx[fresh]] = t[fresh]
                return res_t, (S if idx.size == m and not ahead.any() else None)
            new = done & ~finished
            if new.any():
                res_t[idx[new]] = t[new]
                prop = np.where(done, t, prop)      # converged rows stay where they are
                finished = done
                if finished.sum() * 4 >= finished.size:   # drop them once they are a quarter
                    keep = ~finished
                    idx, lo, hi, prop, prev = idx[keep], lo[keep], hi[keep], prop[keep], prev[keep]
                    mult, last_sign = mult[keep], last_sign[keep]
                    last_newton, last_step = last_newton[keep], last_step[keep]
                    finished = finished[keep]
                    data = data.take(keep)
            t = prop
    raise MetaError(f"{method} estimation of tau^2 did not converge in {MAX_ITER} iterations")


def _q_root_intercept(target: np.ndarray, data) -> np.ndarray:
    """Root tau^2 >= 0 of Q(tau^2) = target for intercept-only analyses (PM, PMM, EB).

    ``_newton_root`` on weighted sums: Newton steps from 0 on the convex,
    decreasing Q(tau^2) = RSS(tau^2), Q' = -y'PPy, so iterates approach the
    root from below; converged when the step is below TAU2_RTOL * max(1, tau^2).
    ``data`` is a ``_Rows`` or ``_LongRow``; rows are dropped as they converge.
    """
    m = target.shape[0]
    res = np.zeros(m)
    idx = np.arange(m)
    t = np.zeros(m)
    for _ in range(MAX_ITER):
        S = data.at(t, sums="q")
        q = S.rss()
        b = S.b
        ypp = S.s2yy - 2 * b * S.s2y + b * b * S.s2
        active = q > target
        step = _newton_step(q - target, ypp, active)
        new = t + step
        done = ~active | ~(np.abs(step) > TAU2_RTOL * np.maximum(1.0, new))
        res[idx] = new
        if np.all(done):
            return res
        if np.any(done):
            keep = ~done
            idx, new, target = idx[keep], new[keep], target[keep]
            data = data.take(keep)
        t = new
    raise MetaError("root finding for tau^2 did not converge")


def _ll0_better(method, t, lsum_t, lsum_0, S_t, S_0):
    """metafor's ll0check: the (ML/REML) log-likelihood at 0 beats the one at t by > LL0_TOL.

    ll(t) = const - 1/2 sum log(v + t) - 1/2 RSS(t) [- 1/2 log sum w(t) for REML].
    """
    diff = 0.5 * (lsum_t - lsum_0) + 0.5 * (S_t.rss() - S_0.rss())
    if method == "REML":
        diff = diff + 0.5 * (np.log(S_t.s1) - np.log(S_0.s1))
    return (diff > LL0_TOL) & (t > 0)


def _center(y: np.ndarray, k: np.ndarray, valid: np.ndarray | None):
    """Unweighted mean c per row and yc = y - c (0 at padded entries)."""
    c = _rsum(y) / k
    yc = y - c[:, None]
    if valid is not None:
        yc[~valid] = 0.0
    return c, yc


def _he_intercept(syc, syc2, vsum, k):
    """Hedges' estimator (before the floor at 0) from sum yc, sum yc^2, sum v.

    (sum (y - ybar)^2 - sum v (k - 1)/k) / (k - 1), with sum (y - ybar)^2 =
    sum yc^2 - (sum yc)^2 / k for any centring yc = y - c.
    """
    return (syc2 - syc * syc / k - vsum * (k - 1) / k) / (k - 1)


def _ml_reml_masked(method, he, y, v, m, k):
    """``_ml_reml_intercept`` on arrays of any leading shape in ``_masked`` form (m = 0: padding)."""
    shape = y.shape[:-1]
    n = y.shape[-1]
    kk = np.broadcast_to(k, shape).reshape(-1)
    valid = m.reshape(-1, n) > 0
    Y = np.where(valid, y.reshape(-1, n), 0.0)
    V = np.where(valid, v.reshape(-1, n), np.inf)
    ok = kk > 1
    t = np.zeros(kk.shape)
    if np.any(ok):
        _, yc = _center(Y[ok], kk[ok], valid[ok])
        he_ok = np.broadcast_to(he, shape).reshape(-1)[ok]
        t[ok] = _ml_reml_intercept(method, he_ok, _Rows(V[ok], yc, valid[ok]))[0]
    return t.reshape(shape)


def _q_root_masked(target, y, v, m, k):
    """``_q_root_intercept`` on arrays of any leading shape in ``_masked`` form (m = 0: padding)."""
    shape = y.shape[:-1]
    n = y.shape[-1]
    kk = np.broadcast_to(k, shape).reshape(-1)
    valid = m.reshape(-1, n) > 0
    Y = np.where(valid, y.reshape(-1, n), 0.0)
    V = np.where(valid, v.reshape(-1, n), np.inf)
    ok = kk > 1
    t = np.zeros(kk.shape)
    if np.any(ok):
        _, yc = _center(Y[ok], kk[ok], valid[ok])
        tg = np.broadcast_to(target, shape).reshape(-1)[ok].astype(float)
        t[ok] = _q_root_intercept(tg, _Rows(V[ok], yc, valid[ok]))
    return t.reshape(shape)


def _rma_intercept(y, v, ysum, vsum, method, method_in, test, level, tau2_fix=None,
                   estimated=False, a=None, control=FULL) -> "RMAFit":
    """``rma`` for X = None without user weights, from weighted sums (same conventions).

    Passes over the k studies (each in cache-sized blocks): one at tau^2 =
    0 (common-effect fit, Q, HE, sum log v), one per Newton step for
    REML/ML (usually 3), one at the final tau^2 (sum log(v + tau^2) and the
    weights). Memory: the weights (a k-vector) plus O(_BLOCK). ``tau2_fix``:
    a given tau^2 (no estimation, no ll0check; ``estimated`` as in ``_fit``).
    """
    k = y.size
    c = ysum / k
    row = _LongRow(y, v, c)
    S0, x0 = row.at(0.0, sums="dl" if method == "DL" else "fe", log=True,
                    plain=method in ("REML", "ML"))
    lsum0 = x0["lsum"]
    QE = max(0.0, float(S0.rss()[0]))
    trP0 = float(S0.tr()[0])
    St, tau2, se_tau2, lsum_t = S0, 0.0, np.nan, lsum0
    test_used = test if k > 1 else "z"
    S = None                      # full sums at tau2 (REML/ML: for se.tau2)
    fixed = tau2_fix is not None
    if fixed:
        tau2 = tau2_fix           # metafor keeps a fixed tau^2 also at k = 1
        if k == 1:
            pass
        elif method == "DL":
            se_tau2 = float(np.sqrt((2 * (k - 1) + 4 * tau2 * trP0 + 2 * tau2**2 * float(S0.tr_pp()[0]))
                                    / trP0**2))
        elif method not in ("REML", "ML", "PM", "PMM", "EB"):
            m = np.ones(k)
            extras = ESTIMATORS[method].basis(y, v, m, None, float(k), 1, None)
            se_tau2 = float(_se_tau2(method, np.float64(tau2), extras, y, v, m, None, float(k), 1))
    elif k > 1 and method != "EE":
        if method == "DL":
            tau2 = max(0.0, (QE - (k - 1)) / trP0)
            se_tau2 = float(np.sqrt((2 * (k - 1) + 4 * tau2 * trP0 + 2 * tau2**2 * float(S0.tr_pp()[0]))
                                    / trP0**2))
        elif method in ("REML", "ML"):
            he = _he_intercept(x0["syc"], x0["syc2"], vsum, k)
            t, S = _ml_reml_intercept(method, np.array([he]), row)
            tau2 = float(t[0])
        elif method in ("PM", "PMM", "EB"):
            target = _chi2_median(k - 1) if method == "PMM" else k - 1
            tau2 = float(_q_root_intercept(np.array([float(target)]), row)[0])
        else:
            m = np.ones(k)
            t, extras = _tau2(method, y, v, m, None, float(k), 1, None)
            tau2 = float(t)
            se_tau2 = float(_se_tau2(method, np.float64(tau2), extras, y, v, m, None, float(k), 1))
    mlreml = k > 1 and method in ("REML", "ML")
    w = np.empty(k)
    scaled = False
    if tau2 > 0:
        if S is not None:         # sums at tau2 known: only the log and the weights are left
            _, xt = row.at(tau2, sums="none", log=True, w_out=w, w_scale=100 / float(S.s1[0]))
            St, scaled = S, True
        else:                     # (REML/ML: S2, S3 for se.tau2)
            St, xt = row.at(tau2, sums="dl" if mlreml else "basic", log=True, w_out=w)
            S = St if mlreml else None
        lsum_t = xt["lsum"]
        if mlreml and not fixed and _ll0_better(method, np.array([tau2]), lsum_t, lsum0, S, S0)[0]:
            tau2, St, lsum_t, S = 0.0, S0, lsum0, None
    if tau2 == 0:
        row.at(0.0, sums="none", w_out=w, w_scale=100 / float(S0.s1[0]))
        if mlreml and S is None:
            S = row.at(0.0)
    elif not scaled:
        w *= 100 / float(St.s1[0])
    if mlreml:
        info = S.tr_pp() if method == "REML" else S.s2
        se_tau2 = float(np.sqrt(2 / info[0]))
    s1 = float(St.s1[0])
    if method in ("PM", "PMM", "EB") and k > 1:    # _se_tau2's: sqrt(2 k^2 / (k-p)) / sum w
        se_tau2 = float(np.sqrt(2 * k**2 / (k - 1)) / s1)
    beta = np.array([c + float(St.b[0])])
    rss_f = float(St.rss()[0])
    s2w, df = 1.0, None
    if test_used in HK_TESTS:
        s2w = knha_s2w(rss_f, k - 1, test_used)
        df = float(k - 1)
    return _finish(method, method_in, test_used, level, k, 1, beta, np.array([[s2w / s1]]), df, s2w,
                   tau2, se_tau2, QE, trP0, rss_f, lsum_t, lsum0, np.log(s1), np.log(k),
                   w, y, v, None, tau2_fixed=fixed and not estimated, weights=a,
                   control=control)


def _finish(method, method_in, test, level, k, p, beta, vb, df, s2w, tau2, se_tau2, QE, trP0,
            rss_f, lsum_t, lsum0, logdet_xtwx, logdet_xtx, weights_pct, y, v, X, *,
            tau2_fixed=False, weights=None, control=FULL, zero_vi=False) -> "RMAFit":
    """Tests, intervals, heterogeneity and fit statistics of a fitted model -> RMAFit.

    ``vb`` already includes s2w; ``QE``/``trP0`` come from the common-effect
    fit; ``lsum_t`` = sum log(v + tau^2), ``lsum0`` = sum log v. ``zero_vi``:
    a study has vi = 0, so (as metafor) Q, its p-value, I^2 and H^2 are NaN
    and the ML deviance is -2 ll (there is no saturated model).
    """
    # scipy.special directly: the functions scipy.stats' norm/t/chi2/f call, without
    # their argument handling (~30 us a call, most of a small fit's time)
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        # se = 0 under knha when every residual is 0 (s2w = 0, as metafor):
        # the statistic is then +-Inf (NaN for beta = 0), as R's division gives
        stat = beta / se
    q = (1 - level / 100) / 2
    if df is None:
        pval = 2 * special.ndtr(-np.abs(stat))
        crit = -special.ndtri(q)
    else:
        pval = 2 * special.stdtr(df, -np.abs(stat)) if df > 0 else np.full(p, np.nan)
        crit = -special.stdtrit(df, q) if df > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        ci_lb, ci_ub = beta - crit * se, beta + crit * se
    # omnibus test of the moderators (all but the intercept; the intercept alone if p == 1)
    QM, QMdf, QMp = _omnibus(beta, vb, p, df, k)
    # heterogeneity from the common-effect fit
    if zero_vi:
        QE = QEp = I2 = H2 = np.nan
    elif k > p:
        QEp = float(special.chdtrc(k - p, QE))
        if method == "EE":
            I2 = max(0.0, 100 * (QE - (k - p)) / QE) if QE > 0 else 0.0
            H2 = QE / (k - p)
        else:
            vt = (k - p) / trP0
            I2 = 100 * tau2 / (vt + tau2)
            H2 = tau2 / vt + 1
    else:
        QE, QEp, I2, H2 = 0.0, 1.0, 0.0, 1.0
    if k == 1 or method == "EE":
        se_tau2 = np.nan
    parms = p + (0 if method == "EE" or tau2_fixed else 1)   # metafor: no parameter for a fixed tau^2
    fit_ml, fit_reml = _fit_stats(k, p, parms, lsum_t, None if zero_vi else lsum0, rss_f,
                                  logdet_xtwx, logdet_xtx)
    return RMAFit(method=method_in,
                  test=test, level=level, k=k, p=p, beta=beta, se=se, stat=stat,
                  pval=pval, ci_lb=ci_lb, ci_ub=ci_ub, vb=vb, tau2=tau2, se_tau2=se_tau2,
                  I2_pct=float(I2), H2=float(H2), QE=QE, QEdf=k - p, QEp=QEp, s2w=s2w, df=df,
                  QM=QM, QMdf=QMdf, QMp=QMp, weights_pct=weights_pct,
                  fit_ml=fit_ml, fit_reml=fit_reml, parms=parms, yi=y, vi=v, X=X,
                  weights=weights, tau2_fixed=tau2_fixed, control=control)


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
    weights: np.ndarray | None = field(repr=False, default=None)
    #: True when tau^2 was given (``rma(tau2=)``), not estimated
    tau2_fixed: bool = False
    #: the control the fit was made with
    control: Control = field(repr=False, compare=False, default=FULL)

    def with_test(self, test: str) -> "RMAFit":
        """The same model with another test (one of ``TESTS``), tau^2 not re-estimated.

        Equals a fresh ``rma(..., test=test)`` with the same data, method,
        level, design, weights and control (tests/test_rma_api.py checks it
        bit for bit): estimates, se and intervals follow from tau^2, which
        does not depend on the test. Cost: one pass over the studies at the
        known tau^2. A fit with k = 1 stays a z test (as metafor).
        """
        if test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {test!r}")
        if test == self.test:
            return self
        return _fit(self.yi, self.vi, method=self.method, test=test, level=self.level,
                    X=self.X, weights=self.weights, tau2=self.tau2,
                    estimated=not self.tau2_fixed, control=self.control)

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

        ``pi_type``: "default" uses z (t(k-p) under knha and adhoc); "t" uses
        t(k-p); "riley" uses t(k-p-1) for a random-effects model (Riley 2011),
        i.e. df = k - parms; df below 1 is set to 1 as metafor does. The
        half-width is crit sqrt(se^2 + tau^2), se including s2w under
        knha/adhoc: metafor 3.8-1 ``predict.rma`` (pi.type "default", "t",
        "riley"; its crit is t(k-p) for every test of "knha", "adhoc", "t").
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


def metafor_fisher_tau2(method: str, y, v, X=None, *, control: Control = METAFOR_DEFAULT,
                        ll0check: bool = True) -> float:
    """ML/REML/EB tau^2 exactly as metafor's Fisher scoring leaves it under ``control``.

    metafor 3.8-1 ``rma.uni``, step for step: start at max(0, HE), halve a
    step until tau^2 stays >= 0, stop when the change is <= ``threshold``
    (error after ``maxiter`` steps: "Fisher scoring algorithm did not
    converge"), then set tau^2 = 0 if the log-likelihood at 0 is higher by
    more than ``tol`` (ML/REML, and only for an iterate above
    ``threshold``). Under ``METAFOR_DEFAULT`` the result can be some 1e-3
    relative off the maximum when tau^2 is small; it exists to reproduce
    metafor's default-control output (the one implementation of it: rma,
    confint's emulation, bias, metareg and subgroup all call this).

    ``control=FULL`` (not replayed) runs the same iteration to a change
    below ``FULL.threshold`` times max(1, tau^2) within ``FULL.maxiter``
    steps (used where a study has vi = 0, see ``_fisher_tau2_zero_vi``).
    ``ll0check=False`` skips the comparison with tau^2 = 0, as metafor does
    when a vi is 0 (the log-likelihood at 0 is then not finite).
    """
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    X = _design(X, y.shape)
    k, p = float(y.size), 1 if X is None else X.shape[1]
    m = np.ones(y.size)
    ols = _Projection.of(m, y, X)
    t = max(0.0, float((ols.rss() - ols.tr_pv(v)) / (k - p)))
    for _ in range(control.maxiter + 1):
        w = m / (v + t)
        pr = _Projection.of(w, y, X)
        if method == "REML":
            adj = float((pr.ypp() - pr.tr()) / pr.tr_pp())
        elif method == "ML":
            adj = float((pr.ypp() - w.sum()) / (w**2).sum())
        else:
            adj = float((pr.rss() * k / (k - p) - k) / w.sum())
        adj = adj if np.isfinite(adj) else 0.0
        while t + adj < 0:
            adj /= 2
        t, change = t + adj, abs(adj)
        if change <= control.threshold * (1.0 if control.replay else max(1.0, t)):
            break
    else:
        raise MetaError("Fisher scoring algorithm did not converge.")
    if ll0check and method in ("ML", "REML") and t > control.threshold:
        zero = np.zeros(())
        ll0 = float(_loglik(method, zero, y, v, m, X, k, p))
        ll = float(_loglik(method, np.asarray(t), y, v, m, X, k, p))
        if ll0 - ll > control.tol:
            t = 0.0
    return max(0.0, t)


def _fisher_tau2_zero_vi(method: str, y, v, X, control: Control) -> float:
    """ML/REML/EB tau^2 when a study has vi = 0: metafor's Fisher scoring itself.

    metafor 3.8-1 starts at max(0, HE); at 0 the weight 1/vi is infinite and
    it stops with ``DIV0_MSG`` (raised here too). Otherwise it iterates,
    halving steps so that tau^2 stays > 0, and skips the ll0check. The
    faster iterations of this module start from 0 or step onto it, so this
    case runs that iteration (``metafor_fisher_tau2``): step for step under a
    replayed control, to a relative change of ``TAU2_RTOL`` under ``FULL``.
    An iterate that reaches tau^2 = 0 (a boundary maximum) is refused like
    metafor's 1/0 (the caller checks the final tau^2).
    """
    k, p = float(y.size), 1 if X is None else X.shape[1]
    ols = _Projection.of(np.ones(y.size), y, X)
    if not float((ols.rss() - ols.tr_pv(v)) / (k - p)) > 0:
        raise ValueError(f"{DIV0_MSG} (a study has vi = 0 and {method}'s iteration starts at "
                         "tau^2 = max(0, HE) = 0)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return metafor_fisher_tau2(method, y, v, X, control=control, ll0check=False)


def rma(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0,
        X=None, weights=None, tau2: float | None = None, control: Control = FULL) -> RMAFit:
    """Fit a random- or common-effect model; matches metafor 3.8-1 ``rma()``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect sizes and sampling variances (finite, vi >= 0; see Notes for
        vi = 0).
    method : str
        tau^2 estimator, one of ``METHODS`` ("EE" for the common-effect model).
    test : {"z", "knha", "adhoc"}
        Wald z; Hartung-Knapp-Sidik-Jonkman t with k - p df; or the same
        with the ad hoc correction s2w = max(1, s2w) (see ``knha_s2w``).
    level : float
        Confidence level in percent.
    X : array_like, shape (k, p), optional
        Design matrix including the intercept column; None = intercept only.
    weights : array_like, shape (k,), optional
        User weights (GENQ/GENQM): the estimate then uses these weights and a
        sandwich variance, as metafor does.
    tau2 : float, optional
        A fixed tau^2 >= 0: estimation is skipped, as metafor's ``rma(tau2=)``
        and PyMARE's ``WeightedLeastSquares(tau2=)``. As metafor then:
        se.tau2 is the method's formula evaluated at the given tau^2, I^2
        and H^2 follow from it, the ll0check is not made, and the fit
        statistics count no parameter for tau^2 (``parms = p``). Ignored
        (tau^2 = 0) for EE, as metafor ignores it for a common-effect model.
    control : Control
        ``FULL`` (default) converges tau^2 fully; ``METAFOR_DEFAULT`` (or
        another replayed control) stops ML, REML and EB where metafor's
        Fisher scoring stops (``metafor_fisher_tau2``).

    Returns
    -------
    RMAFit

    Raises
    ------
    ValueError
        Empty or mismatched inputs, non-finite values, vi < 0, unknown
        method or test, a design with fewer studies than coefficients or
        not of full rank, a negative or non-finite ``tau2``; with a vi = 0,
        what metafor 3.8-1 refuses (see Notes).
    TypeError
        ``control`` not a ``Control``.

    Notes
    -----
    Studies with vi = 0 are accepted where metafor 3.8-1 accepts them, with
    its results (tests/test_rma_api.py against its fits): HE, SJ, ML, REML,
    EB and GENQ fit; Q, its p-value, I^2 and H^2 are NaN and the ML
    deviance is -2 ll (metafor: "Cannot compute Q-test, I^2, or H^2");
    ML/REML/EB run metafor's Fisher scoring from max(0, HE) without its
    ll0check (``_fisher_tau2_zero_vi``). Refused with metafor's messages:
    DL, PM, PMM, HS, HSk ("... estimator cannot be used when there are
    non-positive sampling variances in the data."), EE, and any fit whose
    tau^2 is 0 (k = 1, tau2=0, HE <= 0 for ML/REML/EB/HE: "Division by zero
    when computing the inverse variance weights."), except GENQ with user
    weights and a z test (NaN fit statistics, as metafor). Negative vi are
    refused (metafor sets them to 0 with a warning). GENQM with a vi = 0 is
    refused: metafor's GENQM needs CompQuadForm, absent here.

    The intercept-only model without user weights (X = None, weights =
    None) takes a path of weighted sums (``_rma_intercept``): at k = 1e6 a
    REML fit takes about 30 ms and 60 MB (see bench/README.md). Every fit
    is seen by ``fit_counter``.
    """
    if tau2 is not None:
        tau2 = float(tau2)
        if not (np.isfinite(tau2) and tau2 >= 0):
            raise ValueError(f"tau2 must be finite and >= 0, got {tau2!r}")
    return _fit(yi, vi, method=method, test=test, level=level, X=X, weights=weights,
                tau2=tau2, estimated=False, control=control)


def _fit(yi, vi, *, method, test, level, X, weights, tau2, estimated, control) -> RMAFit:
    """``rma``; ``tau2`` given and ``estimated`` True: the value of an earlier
    estimate (``with_test``), which keeps its parameter count and se.tau2."""
    control = _check_control(control)
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.ndim != 1 or v.ndim != 1:
        raise ValueError("yi and vi must be one-dimensional (use rma_batch for many analyses)")
    if y.shape != v.shape:
        raise ValueError(f"yi and vi differ in length ({y.size} vs {v.size})")
    k = y.size
    if k == 0:
        raise ValueError("no studies: yi and vi are empty")
    # finite sums imply finite values (one pass each instead of isfinite arrays)
    ysum, vsum = float(y.sum()), float(v.sum())
    sums_finite = np.isfinite(ysum) and np.isfinite(vsum)
    if not sums_finite and not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("yi and vi must be finite (drop studies with missing effects first)")
    vmin = v.min()
    if vmin < 0:
        raise ValueError(NEGATIVE_VI_MSG)
    zero_vi = vmin == 0
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    method_in = method
    method = _check_method(method)
    if zero_vi:
        _check_zero_vi(method, method_in)
    X = _design(X, y.shape)
    p = 1 if X is None else X.shape[1]
    if k < p:
        raise ValueError(f"too few studies ({k}) for a model with {p} coefficients")
    if X is not None and np.linalg.matrix_rank(X) < p:
        raise ValueError("the design matrix is not of full rank (a moderator without variance?)")
    a = None if weights is None else np.asarray(weights, dtype=float)
    if a is not None and (a.shape != y.shape or np.any(~np.isfinite(a)) or np.any(a < 0)):
        raise ValueError("weights must be finite, >= 0 and one per study")
    fixed = tau2 is not None and method != "EE"
    note_fit("fixed" if fixed else "estimated", method)
    # a replayed control takes the general path; so does with_test of such a fit
    # (the same arithmetic as a fresh fit, to the bit)
    emulate = control.matters_for(method, k) and (not fixed or estimated)
    if X is None and a is None and sums_finite and not emulate and not zero_vi:
        return _rma_intercept(y, v, ysum, vsum, method, method_in, test, level,
                              tau2 if fixed else None, estimated, a, control)
    m = np.ones(k)
    test_used = test if k > 1 else "z"
    if fixed:
        extras = ESTIMATORS[method].basis(y, v, m, X, float(k), p, a) if k > 1 else {}
    elif k == 1:
        tau2, extras = 0.0, {}
    elif zero_vi and method in REPLAYED_METHODS:
        tau2, extras = _fisher_tau2_zero_vi(method, y, v, X, control), {}
    elif emulate:
        tau2, extras = metafor_fisher_tau2(method, y, v, X, control=control), {}
    else:
        t, extras = _tau2(method, y, v, m, X, float(k), p, a)
        tau2 = float(t)
    if method == "EE":
        tau2 = 0.0
    user_w = method in ("GENQ", "GENQM") and a is not None
    if zero_vi and tau2 == 0 and not (user_w and test_used == "z"):
        # metafor computes 1/(vi + tau^2) for the estimate unless user weights give
        # it (and the test is z); then only the fit statistics are NaN
        raise ValueError(f"{DIV0_MSG} (a study has vi = 0 and tau^2 is 0)")
    # with a vi = 0 study, log(vi) is -inf, and with user weights and tau^2 = 0 (allowed
    # above) the weights 1/(vi + tau^2) are infinite: NaN fit statistics, as metafor's
    quiet = np.errstate(divide="ignore", invalid="ignore") if zero_vi else contextlib.nullcontext()
    with quiet:
        w = 1.0 / (v + tau2)
        pr = _Projection.of(w, y, X)
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
        if test_used in HK_TESTS:
            s2w = knha_s2w(float(pr.rss()), k - p, test_used)
            df = float(k - p)
        vb = s2w * vb
        QE, trP0 = 0.0, np.nan
        if zero_vi:    # metafor: no Q-test, I^2 or H^2 with a vi = 0 (weight 1/vi infinite)
            QE = np.nan
        elif k > p:
            fe = _Projection.of(1.0 / v, y, X)
            QE = max(0.0, float(fe.rss()))
            trP0 = float(fe.tr())
        if k == 1 or method == "EE":
            se_tau2 = np.nan
        else:
            se_tau2 = float(_se_tau2(method, np.float64(tau2), extras, y, v, m, X, float(k), p))
        wts = a if user_w else w
        lsum0 = float(np.log(v).sum())       # -inf with a vi = 0: no saturated model then
        return _finish(method, method_in, test_used, level, k, p, beta, vb, df, s2w, tau2, se_tau2,
                       QE, trP0, rss_f, float(np.log(v + tau2).sum()), lsum0,
                       float(pr.logdet_xtdx()), float(_Projection.of(m, y, X).logdet_xtdx()),
                       100 * wts / wts.sum(), y, v, X, tau2_fixed=fixed and not estimated,
                       weights=a, control=control, zero_vi=zero_vi)


# --------------------------------------------------------------------------- fits shared within an analysis

_shared: contextvars.ContextVar[dict | None] = contextvars.ContextVar("ntxmeta_shared_fits",
                                                                     default=None)


@contextlib.contextmanager
def shared_fits():
    """Within the block, ``rma_shared`` estimates each model once and derives the rest.

    One analysis's sections ask for the same model several times (the
    ``rma`` and ``rma_knha`` sections, confint's fits, a subgroup level's z
    and knha fits, the intercept-only fit of a pseudo-R^2, trimfill's fit of
    the full data). The store lives for the block only (``analyse_data``
    opens one per analysis), per thread or task (a context variable), so a
    remembered fit is always one of the same data.
    """
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


class _ContentKey:
    """A dictionary key for float arrays (or None) by their exact content.

    Equal when every element has the same bits (uint64 views: what equal
    ``tobytes()`` means, NaN payloads and the sign of zero included). The
    hash covers the shapes and the bits of at most ``SAMPLE`` elements of
    each, so that a lookup at k = 1e6 costs ~1 ms, not the ~15 ms of copying
    and hashing 16 MB of bytes; a full comparison runs only on a hash match.
    ``stored()`` copies the arrays, so that a remembered key keeps the
    content of the call that made it.
    """

    SAMPLE = 64
    __slots__ = ("arrays", "_hash")

    def __init__(self, arrays):
        self.arrays = tuple(None if a is None else np.ascontiguousarray(a, dtype=float)
                            for a in arrays)
        self._hash = hash(tuple(None if a is None else
                                (a.shape, a.reshape(-1)[::max(1, a.size // self.SAMPLE)].tobytes())
                                for a in self.arrays))

    def stored(self) -> "_ContentKey":
        key = object.__new__(_ContentKey)
        key.arrays = tuple(None if a is None else a.copy() for a in self.arrays)
        key._hash = self._hash
        return key

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, _ContentKey) or self._hash != other._hash:
            return False
        return all((a is None and b is None) or (
            a is not None and b is not None and a.shape == b.shape
            and np.array_equal(a.view(np.uint64), b.view(np.uint64)))
            for a, b in zip(self.arrays, other.arrays, strict=True))


def rma_shared(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0, X=None,
               weights=None, control: Control = FULL) -> RMAFit:
    """``rma`` that reuses the fit of the same model inside ``shared_fits()``.

    The z-test fit is remembered; any test is derived from it by
    ``RMAFit.with_test`` (bit for bit what a fresh fit gives). The key is
    the exact content of yi, vi, X and weights (``_ContentKey``), so that
    any section's request for the same model on the same studies finds it. Outside ``shared_fits()`` this is ``rma``.
    The control is part of the key only where it changes the fit.
    """
    store = _shared.get()
    if store is None:
        return rma(yi, vi, method=method, test=test, level=level, X=X, weights=weights,
                   control=control)
    y = np.asarray(yi, dtype=float)
    canon = _check_method(method)
    ctl = control if control.matters_for(canon, y.size) else FULL
    data_key = _ContentKey((y, vi, X, weights))
    k = (data_key, method, float(level), ctl)
    fit = store.get(k)
    if fit is None:
        fit = rma(y, vi, method=method, test="z", level=level, X=X, weights=weights,
                  control=ctl)
        store[(data_key.stored(), method, float(level), ctl)] = fit
    return fit.with_test(test)


def _omnibus(beta, vb, p, df, k):
    """Wald test of the coefficients other than the intercept (all of them if p == 1)."""
    if p == 1:   # b^2 / var; a zero variance is singular (as np.linalg.solve finds it)
        var = float(vb[0, 0])
        QM = float(beta[0]) ** 2 / var if var != 0 else np.nan
        mdf = 1
    else:
        idx = np.arange(1, p)
        b = beta[idx]
        try:
            QM = float(b @ np.linalg.solve(vb[np.ix_(idx, idx)], b))
        except np.linalg.LinAlgError:
            QM = np.nan
        mdf = p - 1
    if df is None:
        return QM, (mdf, None), float(special.chdtrc(mdf, QM))
    QM = QM / mdf
    QMp = float(special.fdtrc(mdf, k - p, QM)) if k - p > 0 else np.nan
    return QM, (mdf, k - p), QMp


def _fit_stats(k, p, parms, lsum_t, lsum0, rss_f, logdet_xtwx, logdet_xtx):
    """metafor's fit.stats: ML and REML ll, deviance, AIC, BIC, AICc.

    ll_ML = -k/2 log(2 pi) - 1/2 sum log(v + tau^2) - RSS/2; ll_REML adds
    p/2 log(2 pi) + 1/2 log|X'X| - 1/2 log|X'WX|; the ML deviance is taken
    against the saturated model, sum log N(y_i; y_i, v_i) = -k/2 log(2 pi)
    - 1/2 sum log v (``lsum0``); with ``lsum0=None`` (a vi = 0) it is -2 ll,
    as metafor's.
    """
    ll_ml = -0.5 * k * np.log(2 * np.pi) - 0.5 * lsum_t - 0.5 * rss_f
    ll_reml = (-0.5 * (k - p) * np.log(2 * np.pi) + 0.5 * float(logdet_xtx) - 0.5 * lsum_t
               - 0.5 * float(logdet_xtwx) - 0.5 * rss_f)
    if k > p:
        sat = 0.0 if lsum0 is None else -0.5 * k * np.log(2 * np.pi) - 0.5 * lsum0
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

    #: the per-analysis fields, in order
    ARRAYS = ("k", "estimate", "se", "ci_lb", "ci_ub", "pval", "tau2", "I2_pct", "H2", "QE", "QEp",
              "pi_lb", "pi_ub")


def rma_batch(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0) -> BatchFit:
    """Fit m intercept-only models at once from (m, k) arrays padded with NaN.

    Parameters
    ----------
    yi, vi : array_like, shape (m, k)
        One analysis per row; entries where yi or vi is not finite are
        padding (ragged k), so a row of k_i studies has k - k_i of them.
    method, test, level
        As in ``rma`` (GENQ/GENQM are not offered: they need per-analysis
        weights).

    Returns
    -------
    BatchFit
        Row i equals ``rma(yi_i, vi_i, method=, test=, level=)`` on the
        studies of row i (tests/test_batch.py checks this to rtol 1e-10),
        with the prediction interval of ``predict()`` (pi_type "default":
        z, or t(k - 1) under knha; NaN for the common-effect model).

    Notes
    -----
    Same conventions as ``rma``: rows with one study get tau^2 = 0, Q = 0,
    I^2 = 0, H^2 = 1 and a z test; s2w = 0 when the knha RSS is below
    machine epsilon (1 under adhoc). A row with a study of vi = 0 is fitted
    by ``rma`` itself (metafor's answers and refusals, see there: Q, I^2,
    H^2 NaN); a refusal raises ValueError naming the row. REML/ML use the safeguarded Newton iteration of
    ``rma`` on all rows at once, dropping rows as they converge. Rows are
    processed in chunks of about ``_BATCH_CHUNK`` numbers, so memory beyond
    the inputs and the (m,) outputs stays a few MB whatever m is; cost is
    O(m k) per iteration. 10,000 analyses of k = 10 take about 15 ms.
    """
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.ndim != 2 or y.shape != v.shape:
        raise ValueError(f"rma_batch takes two (m, k) arrays of one shape, got {y.shape} and {v.shape}")
    method = _check_method(method)
    if method in ("GENQ", "GENQM"):
        raise ValueError("GENQ/GENQM need per-analysis weights; use rma()")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    note_fit("batch")
    n_rows, n_cols = y.shape
    with np.errstate(invalid="ignore"):    # NaN padding compares False
        zero = v == 0
    zero_rows = np.flatnonzero(zero.any(axis=1))
    if zero_rows.size:          # fitted one by one below; the vectorised path sees vi = 1
        v = np.where(zero, 1.0, v)
    out = {f: np.empty(n_rows) for f in BatchFit.ARRAYS}
    step = max(1, _BATCH_CHUNK // max(n_cols, 1))
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        for f, val in _batch_chunk(y[rows], v[rows], method, test, level).items():
            out[f][rows] = val
    for i in zero_rows:
        for f, val in _batch_row_fit(y[i], np.where(zero[i], 0.0, v[i]), i, method, test,
                                     level).items():
            out[f][i] = val
    k = out.pop("k").astype(int)
    return BatchFit(method, test, k, **out)


def _batch_row_fit(y, v, row, method, test, level) -> dict:
    """One row of ``rma_batch`` by ``rma`` on its studies (the rows with a vi = 0)."""
    used = np.isfinite(y) & np.isfinite(v)
    try:
        fit = rma(y[used], v[used], method=method, test=test, level=level)
    except ValueError as exc:
        raise ValueError(f"analysis {row} (row of yi/vi): {exc}") from exc
    pred = fit.predict()
    return {"k": fit.k, "estimate": fit.estimate, "se": float(fit.se[0]), "ci_lb": fit.ci.low,
            "ci_ub": fit.ci.high, "pval": float(fit.pval[0]), "tau2": fit.tau2,
            "I2_pct": fit.I2_pct, "H2": fit.H2, "QE": fit.QE, "QEp": fit.QEp,
            "pi_lb": pred.pi.low, "pi_ub": pred.pi.high}


def _batch_chunk(y, v, method, test, level) -> dict:
    """rma_batch on one chunk of rows: a dict of (rows,) arrays."""
    valid = np.isfinite(y) & np.isfinite(v)
    if valid.all():
        k = np.full(y.shape[0], float(y.shape[1]))
        vsum = _rsum(v)
        valid = None
    else:
        k = valid.sum(-1).astype(float)
        y = np.where(valid, y, 0.0)
        v = np.where(valid, v, np.inf)
        vsum = _rsum(np.where(valid, v, 0.0))
    if np.any(v <= 0):           # (vi = 0 rows were set aside by rma_batch)
        raise ValueError(NEGATIVE_VI_MSG)
    if np.any(k == 0):
        raise ValueError("every analysis needs at least one study")
    c, yc = _center(y, k, valid)
    rows = _Rows(v, yc, valid)
    S0 = rows.at(None, sums="fe", w=1.0 / rows.v)
    ok = k > 1
    QE = np.where(ok, np.maximum(S0.rss(), 0.0), 0.0)
    trP0 = S0.tr()
    tau2 = np.zeros(k.shape)
    if method == "DL":
        with np.errstate(divide="ignore", invalid="ignore"):
            tau2 = np.where(ok, np.maximum(0.0, (QE - (k - 1)) / trP0), 0.0)
    elif method in ("REML", "ML") and np.any(ok):
        sub = rows if ok.all() else rows.take(ok)
        syc, syc2 = sub.plain()
        he = _he_intercept(syc, syc2, vsum[ok], k[ok])
        t, S = _ml_reml_intercept(method, he, sub)
        if S is None:
            S = sub.at(t, sums="basic")
        lsum_t, lsum0 = sub.logsum(t), sub.logsum(np.zeros(t.shape))
        tau2[ok] = np.where(_ll0_better(method, t, lsum_t, lsum0, S, S0.take(ok)), 0.0, t)
    elif method != "EE" and np.any(ok):
        m = np.ones(y.shape) if valid is None else valid.astype(float)
        vm = v if valid is None else np.where(valid, v, 1.0)
        tau2[ok] = _tau2(method, y[ok], vm[ok], m[ok], None, k[ok], 1, None)[0]
    St = rows.at(tau2, sums="basic")
    est = c + St.b
    rss = St.rss()
    knha = ok & (test in HK_TESTS)
    s2w = np.where(knha, knha_s2w(rss, np.maximum(k - 1, 1), test if test in HK_TESTS else "knha"),
                   1.0)
    se = np.sqrt(s2w / St.s1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(est / se)
    # t and chi^2 tail areas cost ~0.4 us each (most of this function at k = 10):
    # evaluated per distinct df with a scalar df, and each only where it is used
    crit = np.full(k.shape, z_crit(level))
    pval = 2 * special.ndtr(-z)
    df_all = k - 1
    for df in np.unique(df_all[knha]):
        rows = knha & (df_all == df)
        crit[rows] = t_crit(level, df)
        pval[rows] = 2 * special.stdtr(df, -z[rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "EE":
            I2 = np.where(QE > 0, np.maximum(0.0, 100 * (QE - (k - 1)) / QE), 0.0)
            H2 = np.where(ok, QE / np.maximum(k - 1, 1), 1.0)
        else:
            vt = (k - 1) / trP0
            I2 = np.where(ok, 100 * tau2 / (vt + tau2), 0.0)
            H2 = np.where(ok, tau2 / vt + 1, 1.0)
    QEp = np.ones(k.shape)
    for df in np.unique(df_all[ok]):
        rows = df_all == df
        QEp[rows] = special.chdtrc(df, QE[rows])
    # metafor gives no prediction interval for a common-effect model
    half = np.full(k.shape, np.nan) if method == "EE" else crit * np.sqrt(se**2 + tau2)
    return {"k": k, "estimate": est, "se": se, "ci_lb": est - crit * se, "ci_ub": est + crit * se,
            "pval": pval, "tau2": tau2, "I2_pct": I2, "H2": H2, "QE": QE, "QEp": QEp,
            "pi_lb": est - half, "pi_ub": est + half}
