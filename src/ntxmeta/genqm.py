"""The GENQM estimator of tau^2 and the exact distribution of generalised Q.

GENQM (Jackson 2013 [1]; metafor ``rma(method="GENQM", weights=a)``) is
the median-unbiased version of the generalised Q estimator GENQ: with
weights a_i, ``A = diag(a)`` and ``P_a = A - A X (X'AX)^-1 X'A``, the statistic
Q_a = y' P_a y = sum_i a_i (y_i - x_i' b_a)^2 (b_a the a-weighted fit) is,
under the random-effects model y ~ N(X beta, V + tau^2 I),

    Q_a ~ sum_j lambda_j(tau^2) chi^2_1,
    lambda_j(tau^2) = eigenvalues of (V + tau^2 I)^1/2 P_a (V + tau^2 I)^1/2,

a positive weighted sum of k - p independent chi^2_1 variables (the other p
eigenvalues are 0). Its distribution is stochastically increasing in
tau^2, and GENQM is the tau^2 that puts the observed q_a at the median:

    P(Q_a <= q_a | tau^2) = 1/2,

floored at 0 when P(Q_a <= q_a | 0) < 1/2, i.e. when q_a lies below the
median already at tau^2 = 0 (metafor: ``.GENQ.func(tau2.min) > 0.5`` for the
upper tail P(Q_a > q_a)). With a_i = 1/v_i and equal v_i it is the PMM
estimator (median Paule-Mandel); Q_a = 0 (all y_i equal) gives 0.

Why written here
----------------
metafor evaluates the distribution with ``CompQuadForm::farebrother``
(Ruben's series, accuracy 1e-6 by default) on eigenvalues of a dense
k x k matrix; CompQuadForm is not installed with the oracle, so its GENQM
references hold an error and there is nothing to compare against. scipy
has no distribution function for a weighted sum of chi^2 variables; on
PyPI, ``momentchi2`` only approximates it by moment matching, and
``chi2comb`` (Davies' algorithm, 0.1.0 of 2020) is a C extension whose
source distribution does not build here. So the distribution function is
computed here by Imhof's (1961 [2]) numerical inversion of the
characteristic function,

    P(Q > x) = 1/2 + 1/pi int_0^inf sin(theta(u)) / (u rho(u)) du,
    theta(u) = 1/2 sum_j arctan(lambda_j u) - x u / 2,
    rho(u)   = prod_j (1 + lambda_j^2 u^2)^(1/4),

with ``scipy.integrate.quad``: adaptive Gauss-Kronrod (QAGS) on a head
[0, U] and QUADPACK's Fourier-integral routine (QAWF, ``weight="cos"/"sin"``,
wvar = x/2) on the infinite oscillatory tail, after writing
sin(theta) = sin(phi) cos(xu/2) - cos(phi) sin(xu/2) with the smooth phase
phi = theta + xu/2; U is chosen where phi turns slowly against xu/2, so
that the two parts do not cancel (``_imhof_sf``). Against the exact chi^2
distribution (equal weights, 1 to 3000 terms) and the exact exponential
mixture (weights in equal pairs) this is accurate to ~1e-13
(tests/test_genqm.py).

No k x k matrix: the characteristic function is a determinant
---------------------------------------------------------------
With S = (V + tau^2 I)^1/2, d_i = a_i (v_i + tau^2) and G = X'AX, the
matrix determinant lemma gives, exactly,

    det(I + i u S P_a S) = prod_i (1 + i u d_i) det(X' diag(a_i / (1 + i u d_i)) X) / det G,

and X' diag(a_i / (1 + i u d_i)) X = B - i C with B = X' diag(a_i / (1 + u^2
d_i^2)) X and C = X' diag(a_i u d_i / (1 + u^2 d_i^2)) X, both symmetric
p x p, B positive definite, C positive semidefinite. So with mu_j the
generalised eigenvalues of (C, B) (all >= 0),

    sum_j arctan(lambda_j u) = sum_i arctan(u d_i) - sum_j arctan(mu_j),
    log rho(u) = 1/4 sum_i log(1 + u^2 d_i^2) + 1/2 log(det B / det G)
                 + 1/4 sum_j log(1 + mu_j^2),

without eigenvalues of S P_a S and without phase ambiguity (each arctan(mu_j)
lies in [0, pi/2)). For the intercept-only model p = 1, mu = C / B is a
scalar. Cost: O(k p^2 + p^3) time and O(k) memory per evaluation of the
integrand, ~10^3 evaluations per distribution function value, ~15 values
per GENQM estimate (bracketing plus ``scipy.optimize.brentq``): ~0.1 s at
k = 13, ~0.25 s at k = 1,000, ~2.6 s at k = 10,000 (intercept only).

References
----------
1. Jackson D (2013). Confidence intervals for the between-study variance
   in random effects meta-analysis using generalised Cochran heterogeneity
   statistics. Res Synth Methods 4:220-229.
2. Imhof JP (1961). Computing the distribution of quadratic forms in
   normal variables. Biometrika 48:419-426.
3. DerSimonian R, Kacker R (2007). Random-effects model for meta-analysis
   of clinical trials: an update. Contemp Clin Trials 28:105-114 (GENQ).
4. Duchesne P, Lafaye de Micheaux P (2010). Computing the distribution of
   quadratic forms: further comparisons between the Liu-Tang-Zhang
   approximation and exact methods. Comput Stat Data Anal 54:858-862
   (CompQuadForm).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import integrate, optimize

from ._common import MetaError
from .rma import _Projection

#: Absolute accuracy asked of each of the three quadratures. The
#: distribution function is then good to ~1e-13, which moves a GENQM
#: estimate by ~1e-12 relative (metafor's farebrother() default is 1e-6).
QUAD_EPSABS = 1e-13
#: Subinterval budget of QAGS on [0, 4 pi / x] (QUADPACK's default is 50;
#: widely spread weights need more).
QUAD_LIMIT = 500
#: The head [0, 4 pi / x] gets decade breakpoints from 1 / trace on only when
#: it is longer than this many times 1 / trace (x far in the lower tail);
#: near the median (x ~ trace) plain QAGS resolves it and is ~2x cheaper.
BREAKPOINT_SPAN = 1e3
#: The tail split (see ``_imhof_sf``) starts where the phase Phi/2 turns at
#: most this fraction of the rate omega of the oscillation it is split from.
SPLIT_SLOPE = 0.25
#: Relative step of the central difference for Phi'(u) (only a criterion).
SLOPE_STEP = 1e-4
#: Estimated quadrature error above which a probability is refused (a
#: GENQM estimate then would move by more than ~1e-8 relative).
QUAD_FAIL_ABSERR = 1e-9
#: A tail integral bounded below this is not computed (far below QUAD_EPSABS).
TAIL_NEGLIGIBLE = 1e-17
#: Cycle budget of QAWF on the oscillatory tail (scipy's default is 50).
QAWF_LIMLST = 200
#: brentq tolerances for GENQM: relative to 4 machine epsilons, absolute
#: relative to the scale of the v_i (tau^2 lives on that scale).
BRENT_RTOL = 4 * np.finfo(float).eps
BRENT_XTOL_REL = 1e-15
BRENT_MAXITER = 500
#: Doublings allowed when bracketing the GENQM root from above.
MAX_DOUBLINGS = 200

PhaseFn = Callable[[float], "tuple[float, float]"]


# --------------------------------------------------------------------------- Imhof

def _quad(f, lo, hi, **kw) -> float:
    """``scipy.integrate.quad`` judged by its error estimate rather than its warnings.

    QUADPACK flags "bad integrand behaviour" in far tail cycles whose
    contributions are ~1e-16 (far beyond what matters); what matters is the
    estimated absolute error, which must stay below ``QUAD_FAIL_ABSERR``.
    """
    res = integrate.quad(f, lo, hi, full_output=1, **kw)
    value, abserr = res[0], res[1]
    if not (np.isfinite(value) and abserr <= QUAD_FAIL_ABSERR):
        raise MetaError(f"Imhof integral did not converge (estimated error {abserr:.1e})")
    return float(value)


def _imhof_sf(x: float, phase: PhaseFn, trace: float, m: int) -> float:
    """P(Q > x) by Imhof's formula, integrated in a head and a tail.

    ``phase(u)`` returns (Phi(u), log rho(u)) with Phi(u) = sum_j
    arctan(lambda_j u); ``trace`` = sum_j lambda_j (between max lambda_j and
    m max lambda_j for the m positive weights); the integrand is
    sin(Phi(u)/2 - omega u) / (u rho(u)), omega = x / 2.

    * Split point U: the tail [U, inf) is integrated as
      sin(Phi/2) cos(omega u) - cos(Phi/2) sin(omega u) by QAWF, which is
      accurate only where the phase Phi/2 varies slowly against omega u
      (else the two parts cancel: many terms with x near sum lambda_j make
      Phi/2 - omega u nearly constant at first). U starts at one period
      4 pi / x and doubles until Phi'(u)/2 <= ``SPLIT_SLOPE`` omega
      (Phi'(u) by a central difference; Phi' decreases in u).
    * Head [0, U]: QAGS on the whole integrand, with breakpoints at each
      decade from 1 / trace (where the integrand starts to decay, u ~ 1 /
      lambda_max) when the head is much longer than that.
    * The tail is skipped when provably negligible: for U lambda_max >= 1
      (guaranteed by U trace / m >= 1), rho(u) >= rho(U) (u / U)^1/2 / 2^1/4
      for u >= U, so |tail| <= 2^5/4 / rho(U).
    """
    omega = 0.5 * x
    split = 2 * math.pi / omega  # one full period of cos(omega u)

    def half_slope(u):
        h = SLOPE_STEP * u
        return 0.25 * (phase(u + h)[0] - phase(u - h)[0]) / h

    for _ in range(MAX_DOUBLINGS):
        if half_slope(split) <= SPLIT_SLOPE * omega:
            break
        split *= 2
    else:
        raise MetaError("Imhof integral: the phase never settles (weights out of range?)")
    first = 1.0 / trace
    points = None
    if split > BREAKPOINT_SPAN * first:
        points = first * 10.0 ** np.arange(int(math.log10(split / first)) + 1)
        points = points[points < split]

    def full(u):
        ph, logrho = phase(u)
        return math.sin(0.5 * ph - omega * u) * math.exp(-logrho) / u

    def env_cos(u):
        ph, logrho = phase(u)
        return math.sin(0.5 * ph) * math.exp(-logrho) / u

    def env_sin(u):
        ph, logrho = phase(u)
        return -math.cos(0.5 * ph) * math.exp(-logrho) / u

    head = _quad(full, 0.0, split, points=points, limit=QUAD_LIMIT,
                 epsabs=QUAD_EPSABS, epsrel=0.0)
    if split * trace / m >= 1 and 2**1.25 * math.exp(-phase(split)[1]) < TAIL_NEGLIGIBLE:
        return min(1.0, max(0.0, 0.5 + head / math.pi))
    tail_c = _quad(env_cos, split, np.inf, weight="cos", wvar=omega, epsabs=QUAD_EPSABS,
                   limlst=QAWF_LIMLST)
    tail_s = _quad(env_sin, split, np.inf, weight="sin", wvar=omega, epsabs=QUAD_EPSABS,
                   limlst=QAWF_LIMLST)
    return min(1.0, max(0.0, 0.5 + (head + tail_c + tail_s) / math.pi))


def wchisq_sf(x: float, weights) -> float:
    """P(sum_j w_j chi^2_1 > x) for positive weights w_j (Imhof 1961).

    Parameters
    ----------
    x : float
    weights : array_like, shape (m,)
        Weights >= 0 (zeros are dropped: they add nothing).

    Returns
    -------
    float
        The upper tail probability, accurate to ~1e-13 absolute; 1 for
        x < 0 (or x = 0 with a positive weight), 0 for x >= 0 when every
        weight is 0.
    """
    w = np.asarray(weights, dtype=float).ravel()
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    w = w[w > 0]
    if w.size == 0:
        return 0.0 if x >= 0 else 1.0
    if x <= 0:
        return 1.0

    def phase(u):
        t = w * u
        return float(np.arctan(t).sum()), float(0.25 * np.log1p(t * t).sum())

    return _imhof_sf(float(x), phase, float(w.sum()), w.size)


def wchisq_cdf(x: float, weights) -> float:
    """P(sum_j w_j chi^2_1 <= x) = 1 - ``wchisq_sf``."""
    return 1.0 - wchisq_sf(x, weights)


# --------------------------------------------------------------------------- Q_a

def _qa_phase(v: np.ndarray, a: np.ndarray, X: np.ndarray | None,
              tau2: float) -> "tuple[PhaseFn, float, int] | None":
    """Phase and log-modulus of det(I + i u S P_a S) (module docstring) and the
    trace of S P_a S, sum_i d_i (1 - a_i h_i) with h_i = x_i' G^-1 x_i, and the number
    k - p of positive eigenvalues; None if P_a = 0 (k <= p)."""
    keep = a > 0
    a, v = a[keep], v[keep]
    d = a * (v + tau2)
    if X is None:
        if a.size < 2:
            return None
        r = a / a.sum()  # B and C are divided by G = sum a: B(0) = 1
        trace, m = float((d * (1.0 - r)).sum()), a.size - 1

        def phase(u):
            t = u * d
            den = 1.0 + t * t
            b = float((r / den).sum())
            mu = float((r * t / den).sum()) / b
            return (float(np.arctan(t).sum()) - math.atan(mu),
                    float(0.25 * np.log1p(t * t).sum()) + 0.5 * math.log(b) + 0.25 * math.log1p(mu * mu))
        return phase, trace, m
    X = X[keep]
    if a.size <= X.shape[1]:
        return None
    pa = _Projection.of(a, np.zeros(a.size), X)
    logdet_g = float(pa.logdet_xtdx())
    trace, m = float((d * (1.0 - a * pa.h)).sum()), a.size - X.shape[1]

    def phase_x(u):
        t = u * d
        den = 1.0 + t * t
        B = (X * (a / den)[:, None]).T @ X
        C = (X * (a * t / den)[:, None]).T @ X
        L = np.linalg.cholesky(B)
        Li = np.linalg.inv(L)
        mu = np.clip(np.linalg.eigvalsh(Li @ C @ Li.T), 0.0, None)
        logdet_b = 2 * float(np.log(np.diag(L)).sum())
        return (float(np.arctan(t).sum() - np.arctan(mu).sum()),
                float(0.25 * np.log1p(t * t).sum() + 0.5 * (logdet_b - logdet_g)
                      + 0.25 * np.log1p(mu * mu).sum()))
    return phase_x, trace, m


def q_a_sf(q: float, v, a, X, tau2: float) -> float:
    """P(Q_a > q | tau^2) for the generalised Q statistic with weights a.

    Parameters
    ----------
    q : float
        Observed Q_a = y' P_a y.
    v, a : array_like, shape (k,)
        Sampling variances and weights (a_i = 0 drops a study).
    X : array_like, shape (k, p) or None
        Design matrix (None: intercept only).
    tau2 : float
        tau^2 >= 0 at which the distribution is evaluated.

    Returns
    -------
    float
        The upper tail probability (metafor's ``farebrother(q, lambda)$Qq``),
        computed in O(k p^2) memory without eigenvalues (module docstring).
    """
    v = np.asarray(v, dtype=float)
    a = np.asarray(a, dtype=float)
    X = None if X is None else np.asarray(X, dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(a >= 0) and np.all(np.isfinite(v))):
        raise ValueError("weights a must be finite and >= 0, and v finite")
    if not (tau2 >= 0 and np.all(v[a > 0] + tau2 > 0)):
        raise ValueError("tau2 must be >= 0 and v + tau2 > 0 where a > 0")
    structure = _qa_phase(v, a, X, float(tau2))
    if structure is None:  # no residual degrees of freedom: Q_a = 0
        return 0.0 if q >= 0 else 1.0
    if q <= 0:
        return 1.0
    return _imhof_sf(float(q), *structure)


# --------------------------------------------------------------------------- estimator

def _genqm_one(y, v, a, X) -> float:
    """GENQM tau^2 of one analysis (rows with a_i = 0 are ignored)."""
    keep = a > 0
    y, v, a = y[keep], v[keep], a[keep]
    Xk = None if X is None else X[keep]
    p = 1 if Xk is None else Xk.shape[1]
    if y.size <= p:
        return 0.0  # k <= p: Q_a = 0, as every estimator gives tau^2 = 0 at k = 1
    pa = _Projection.of(a, y, Xk)
    q = float(pa.rss())

    def excess(tau2):  # P(Q_a <= q | tau^2) - 1/2, decreasing in tau^2
        return 0.5 - q_a_sf(q, v, a, Xk, tau2)

    if excess(0.0) <= 0:
        return 0.0
    # GENQ's moment estimate sizes the first bracket: E[Q_a] = q there.
    scale = float(np.mean(v))
    lo, hi = 0.0, max(float((q - pa.tr_pv(v)) / pa.tr()), scale)
    for _ in range(MAX_DOUBLINGS):
        if excess(hi) < 0:
            break
        lo, hi = hi, 2 * hi
    else:
        raise MetaError("GENQM: could not bracket tau^2 (the median condition has no root)")
    return float(optimize.brentq(excess, lo, hi, xtol=BRENT_XTOL_REL * scale, rtol=BRENT_RTOL,
                                 maxiter=BRENT_MAXITER))


def genqm_tau2(y, v, m, X, a) -> np.ndarray:
    """GENQM tau^2 for each analysis of a batch (called by ``ntxmeta.rma``).

    Parameters
    ----------
    y, v, m, a : ndarray, shape (..., k)
        Effects, sampling variances, 0/1 mask of the rows in use, and the
        weights a_i (zero on masked rows).
    X : ndarray, shape (..., k, p) or None

    Returns
    -------
    ndarray, shape (...)
        tau^2 >= 0 solving P(Q_a <= q_a | tau^2) = 1/2 (0 when q_a is below
        the median at tau^2 = 0): the estimator of metafor 3.8-1
        ``rma(method="GENQM", weights=a)``, converged fully (metafor stops at
        uniroot's 1.2e-4 with farebrother's 1e-6 accuracy). Not checked
        against metafor itself: the oracle lacks CompQuadForm. Unlike
        metafor, no upper search limit (tau2.max = max(100, 10 mad(y)^2))
        is imposed, as ``ntxmeta.rma`` does for PM and PMM.
    """
    y, v, m, a = (np.asarray(z, dtype=float) for z in (y, v, m, a))
    a = np.where(m > 0, a, 0.0)
    batch = y.shape[:-1]
    Xa = None if X is None else np.asarray(X, dtype=float)
    out = np.zeros(batch)
    for idx in np.ndindex(*batch):
        Xi = None if Xa is None else (Xa[idx] if Xa.ndim > 2 else Xa)
        out[idx] = _genqm_one(y[idx], v[idx], a[idx], Xi)
    return out

