"""Trial sequential analysis (TSA): required information size, Lan-DeMets
monitoring boundaries, the cumulative z-curve and the TSA-adjusted CI.

What TSA does [1-4]: it treats each update of a cumulative meta-analysis
(trials added in chronological order) as an interim analysis of one large
trial whose planned size is the *required information size* (RIS), and
judges the cumulative z-statistic against group-sequential boundaries
instead of the fixed +-1.96.

The pieces, each a public function:

- :func:`spending_function` -- Lan-DeMets alpha-spending [5]: O'Brien-Fleming
  type ``f(t) = 2 - 2 Phi(z_{1-a/2} / sqrt t)`` and Pocock type
  ``f(t) = a ln(1 + (e - 1) t)`` with ``a`` the error of one side
  (alpha / 2 per side for two-sided boundaries, as ldbounds and rpact);
  ``a(0) = 0``, ``a(1) = alpha``.
- :func:`sequential_bounds` -- boundaries at any increasing information
  fractions ``0 < t_1 < ... < t_K <= 1`` such that the probability of a
  first crossing at look k under H0 is ``a(t_k) - a(t_{k-1})``. Two-sided
  boundaries are symmetric (``a(t)/2`` per side); one-sided spends ``a(t)``
  on one side only.
- :func:`futility_bounds` -- beta-spending (inner wedge) boundaries [6, 7].
- :func:`required_information_size` and :func:`diversity` -- RIS [2] and
  its heterogeneity adjustment by D^2 [3].
- :func:`tsa` -- the whole analysis of one meta-analysis, a
  :class:`TSAResult`; :func:`table_row` -- its row of a TSA summary table.
- :func:`plot_tsa` -- the TSA figure (z-curve, boundaries, RIS line).

Numerical method
----------------
The boundaries need the joint law of the z-statistics at the looks, a
Brownian motion observed at ``t_1 < ... < t_K`` (corr(Z_i, Z_j) =
sqrt(t_i / t_j), E Z_k = theta sqrt(t_k)). The crossing probabilities are
computed by the recursive numerical integration of Armitage, McPherson &
Rowe [8], on the grid of Jennison & Turnbull [6, ch. 19.2] (``6r - 1``
points per look, refined towards the tails, trimmed to the continuation
region, with Simpson's rule on the odd/even points; ``r = GRID_R = 32``). Each boundary is the root (``scipy.optimize.brentq``) of "crossing
probability = alpha to spend at this look". This is hand-written because
neither scipy nor statsmodels computes group-sequential boundaries; scipy's
``multivariate_normal.cdf`` (Genz's randomised quasi-Monte Carlo) is too
noisy (~1e-5) to root-find on, and costs far more. The tests check it
against rpact 3.3.4 (tests/fixtures/tsa/) and against published values.

TSA conventions followed (TSA manual [4], Wetterslev et al. [2, 3])
------------------------------------------------------------------
- Information = number of randomised participants; ``t_i = N_i / RIS_D``
  with ``N_i`` the participants of the first i trials.
- The pooled estimate at each look is the random-effects model of the
  trials so far, DerSimonian-Laird by default as in the TSA software
  (``method=`` takes any estimator of :func:`ntxmeta.rma.rma_batch`; "EE"/
  "FE" gives the common-effect TSA).
- The RIS is adjusted by the diversity D^2 of the whole (current)
  meta-analysis, ``RIS_D = RIS / (1 - D^2)`` [3].
- Looks beyond the RIS: the alpha-spending function is spent up at t = 1,
  so the first look at which the accrued information reaches the RIS is the
  final analysis, taken at t = 1 (all remaining alpha spent); at later looks
  the RIS has been reached and the conventional boundary z_{1-alpha/2}
  applies (a z-curve that passes it there is firm evidence, as in a
  conventional meta-analysis of enough information). The TSA-adjusted CI at
  such a look is the conventional CI [4].
- TSA-adjusted CI at the last look: ``estimate +- c * SE`` with ``c`` the
  alpha-spending boundary at the current information fraction [4].

Futility (beta-spending) boundaries
-----------------------------------
Under the alternative that the RIS was computed for, the drift is
``theta = z_{1-alpha/s} + z_{1-beta}`` (s = sides): E Z_k = theta sqrt(t_k).
The futility boundary ``f_k`` is the root of

    P_theta(f_j < Z_j < b_j for j < k, Z_k < f_k) = b(t_k) - b(t_{k-1}),

with ``b(t)`` the same spending family with total ``beta`` and ``b_j`` the
(non-binding) efficacy boundaries; this is the one-sided beta-spending of
Pampallona, Tsiatis & Kim [7] and Jennison & Turnbull [6, ch. 7] as the
TSA software draws it [4, ch. 1.4]: for two-sided TSA the inner
wedge is ``+-f_k`` (the futility region is ``|Z_k| < f_k``), shown only
where ``f_k > 0``. The efficacy boundaries are not changed by the futility
boundaries (non-binding), and the RIS is not inflated for the sequential
design, so the wedge does not close by itself at t = 1; at the final
analysis (t = 1) the futility boundary is set equal to the efficacy
boundary (a final analysis either rejects H0 or does not), and the beta
spent there is what is left. RTSA [9] offers an inflated-RIS variant; it is
not done here.

References
----------
1. Wetterslev J, Thorlund K, Brok J, Gluud C. Trial sequential analysis may
   establish when firm evidence is reached in cumulative meta-analysis.
   J Clin Epidemiol 2008;61:64-75.
2. Wetterslev J, Jakobsen JC, Gluud C. Trial Sequential Analysis in
   systematic reviews with meta-analysis. BMC Med Res Methodol 2017;17:39.
3. Wetterslev J, Thorlund K, Brok J, Gluud C. Estimating required
   information size by quantifying diversity in random-effects model
   meta-analyses. BMC Med Res Methodol 2009;9:86.
4. Thorlund K, Engstrom J, Wetterslev J, Brok J, Imberger G, Gluud C. User
   manual for trial sequential analysis (TSA). Copenhagen Trial Unit, 2011.
5. Lan KKG, DeMets DL. Discrete sequential boundaries for clinical trials.
   Biometrika 1983;70:659-63.
6. Jennison C, Turnbull BW. Group Sequential Methods with Applications to
   Clinical Trials. Chapman & Hall/CRC, 2000 (ch. 7 and 19).
7. Pampallona S, Tsiatis AA, Kim K. Interim monitoring of group sequential
   trials using spending functions for the type I and type II error
   probabilities. Drug Inf J 2001;35:1113-21.
8. Armitage P, McPherson CK, Rowe BC. Repeated significance tests on
   accumulating data. J R Stat Soc A 1969;132:235-44; Reboussin DM, DeMets
   DL, Kim KM, Lan KKG. Computations for group sequential boundaries using
   the Lan-DeMets spending function method. Control Clin Trials
   2000;21:190-207.
9. Sorensen AL, Olsen MH, Lange T, Gluud C. RTSA: 'Trial Sequential
   Analysis' for error control and inference in sequential meta-analyses.
   R package 0.2.2, 2023.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import optimize, special

from ._common import Interval
from .result import Crossing, TSALook, TSAResult  # noqa: F401  (re-exported)

#: Spending-function families (Lan & DeMets 1983 [5]).
SPENDING = ("OBF", "Pocock")

#: Default relative risk reduction to detect: 20%. The TSA manual's worked
#: example (smoking cessation) uses a 20% relative change [4], and Wetterslev et al. [2]
#: advise a realistic anticipated effect such as RRR 20% or the estimate of
#: the trials at low risk of bias; give ``rrr=`` to change it.
DEFAULT_RRR = 0.20
DEFAULT_ALPHA = 0.05
DEFAULT_BETA = 0.20

#: Grid parameter r of Jennison & Turnbull's integration grid [6, 19.2]:
#: 6r - 1 points per look. gsDesign uses r = 18, which leaves errors of up
#: to ~8e-7 in the boundaries of five looks; r = 32 brings them under 1e-7
#: there, and to ~1.4e-6 on ten close looks with boundaries of 4-5 (the
#: grid's tails are log-spaced), against rpact and against this code at
#: r = 100 (tests/test_tsa.py); ~15 ms per 20 looks with futility bounds.
GRID_R = 32
#: Root-finding tolerance on the z scale (far below the grid's error).
BOUND_XTOL = 1e-10
#: Search interval for a boundary on the z scale. A look whose alpha to
#: spend is so small that the boundary would pass BOUND_MAX (a(t) < 1e-300)
#: gets +inf: no crossing is possible there.
BOUND_MAX = 37.0
#: An alpha (or beta) increment at or below this spends nothing: the
#: boundary is +inf (float rounding of a(t_k) - a(t_{k-1}) at t ~ 0).
SPEND_ZERO = 1e-300

BINARY = ("RR", "OR", "RD")
CONTINUOUS = ("SMD", "MD")
CONCLUSIONS = ("firm evidence of effect", "futility boundary crossed",
               "RIS reached without crossing a boundary: an effect of the anticipated size is "
               "unlikely", "not conclusive")


# --------------------------------------------------------------------------- spending

def _check_level(name: str, x: float) -> float:
    x = float(x)
    if not (0.0 < x < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {x!r}")
    return x


def _check_spending(spending: str) -> str:
    if spending not in SPENDING:
        raise ValueError(f"spending must be one of {SPENDING}, got {spending!r}")
    return spending


def spending_function(t, total: float = DEFAULT_ALPHA, spending: str = "OBF",
                      sides: int = 1) -> np.ndarray:
    """Cumulative error spent by information fraction ``t`` (Lan & DeMets 1983 [5]).

    Parameters
    ----------
    t : array_like
        Information fractions; values above 1 are taken as 1, 0 spends 0.
    total : float
        The error spent by t = 1 (alpha; or beta for futility boundaries).
    spending : {"OBF", "Pocock"}
        With ``a = total / sides`` the error of one side::

            OBF:    f(t) = 2 - 2 Phi(z_{1-a/2} / sqrt t)
            Pocock: f(t) = a ln(1 + (e - 1) t)

        (gsDesign's ``sfLDOF``/``sfLDPocock``, ldbounds' ``iuse = 1, 2``).
    sides : {1, 2}
        Two-sided symmetric boundaries spend ``f(t)`` on each side, so the
        total spent is ``2 f(t)`` with ``a = alpha / 2``: the convention of
        ldbounds (Reboussin et al. 2000 [8]: "half of alpha for each
        boundary") and rpact, which gives the classic boundaries 4.877,
        3.357, 2.680, 2.290, 2.031 for five equal looks at alpha = 0.05.
        (Spending ``2 - 2 Phi(z_{1-alpha/2}/sqrt t)`` as the two-sided total
        instead gives 4.383, 3.100, ... : another, less used, convention.)

    Returns
    -------
    ndarray of the same shape as ``t``: the total (both sides) spent.
    """
    total = _check_level("total error", total)
    _check_spending(spending)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    a = total / sides
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if spending == "OBF":
        z = -special.ndtri(a / 2.0)
        with np.errstate(divide="ignore"):
            return sides * np.where(t > 0, 2.0 * special.ndtr(-z / np.sqrt(t)), 0.0)
    return sides * a * np.log1p((math.e - 1.0) * t)


# --------------------------------------------------------------------------- integration

def _grid(mu: float, lo: float, hi: float, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Jennison & Turnbull's grid for one look, trimmed to (lo, hi), with Simpson weights.

    Points ``mu - 3 - 4 ln(r/i)`` (i < r), ``mu - 3 + 3(i - r)/(2r)``
    (r <= i <= 5r), ``mu + 3 + 4 ln(r/(6r - i))`` (i > 5r) [6, ch. 19.2];
    the ends of the continuation region are added when they fall inside;
    midpoints are inserted and weights are Simpson's (1, 4, 2, ..., 4, 1)/6
    of each pair of intervals.
    """
    i = np.arange(1, 6 * r, dtype=float)
    x = np.where(i < r, mu - 3.0 - 4.0 * np.log(r / i),
                 np.where(i <= 5 * r, mu - 3.0 + 3.0 * (i - r) / (2.0 * r),
                          mu + 3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1e-300))))
    inside = x[(x > lo) & (x < hi)]
    parts = []
    if lo > x[0]:
        parts.append([lo])
    parts.append(inside)
    if hi < x[-1]:
        parts.append([hi])
    pts = np.concatenate(parts)
    if pts.size < 2:            # a continuation region narrower than one grid step
        pts = np.array([lo, hi]) if np.isfinite(lo) and np.isfinite(hi) else pts
    z = np.empty(2 * pts.size - 1)
    z[0::2] = pts
    z[1::2] = 0.5 * (pts[:-1] + pts[1:])
    d = np.diff(pts)
    w = np.zeros_like(z)
    w[1::2] = 4.0 * d / 6.0
    w[0:-1:2] += d / 6.0
    w[2::2] += d / 6.0
    return z, w


class _Recursion:
    """The sub-density of Z_k on the continuation region, look by look (AMR [8]).

    ``theta`` is the drift: E Z_k = theta sqrt(t_k). After ``advance(lo,
    hi)`` at look k the object holds grid points ``z`` and ``h`` = Simpson
    weight x sub-density of Z_k on (lo, hi) (the law of the paths that have
    not crossed).
    """

    def __init__(self, theta: float, r: int = GRID_R):
        self.theta = theta
        self.r = r
        self.t_prev = 0.0
        self.z = None
        self.h = None

    def _u(self, t: float, x: float) -> np.ndarray:
        """Standardised increment to reach x at t from each grid point of the last look.

        Z_k sqrt(t_k) - Z_{k-1} sqrt(t_{k-1}) ~ N(theta dt, dt), dt = t_k - t_{k-1}.
        """
        dt = t - self.t_prev
        return (x * math.sqrt(t) - self.z * math.sqrt(self.t_prev) - self.theta * dt) / math.sqrt(dt)

    def p_above(self, t: float, b: float) -> float:
        """P(not crossed before, Z_k >= b) at a look at t."""
        if not np.isfinite(b):
            return 0.0 if b > 0 else self.p_total()
        if self.z is None:
            return float(special.ndtr(self.theta * math.sqrt(t) - b))
        return float(np.dot(self.h, special.ndtr(-self._u(t, b))))

    def p_below(self, t: float, a: float) -> float:
        """P(not crossed before, Z_k <= a) at a look at t."""
        if not np.isfinite(a):
            return 0.0 if a < 0 else self.p_total()
        if self.z is None:
            return float(special.ndtr(a - self.theta * math.sqrt(t)))
        return float(np.dot(self.h, special.ndtr(self._u(t, a))))

    def p_total(self) -> float:
        return 1.0 if self.z is None else float(self.h.sum())

    def advance(self, t: float, lo: float, hi: float) -> None:
        """Move to the look at t with continuation region (lo, hi)."""
        mu = self.theta * math.sqrt(t)
        z, w = _grid(mu, lo, hi, self.r)
        if self.z is None:
            dens = np.exp(-0.5 * (z - mu) ** 2) / math.sqrt(2 * math.pi)
        else:
            dt = t - self.t_prev
            sd = math.sqrt(dt)
            u = (np.multiply.outer(z * math.sqrt(t), np.ones_like(self.z))
                 - self.z * math.sqrt(self.t_prev) - self.theta * dt) / sd
            dens = (np.exp(-0.5 * u * u) @ self.h) * (math.sqrt(t) / sd) / math.sqrt(2 * math.pi)
        self.z, self.h, self.t_prev = z, w * dens, t


def _check_fractions(t) -> np.ndarray:
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise ValueError("information fractions: give at least one look")
    if not np.all(np.isfinite(t)) or t[0] <= 0 or t[-1] > 1:
        raise ValueError(f"information fractions must lie in (0, 1], got {t.tolist()}")
    if np.any(np.diff(t) <= 0):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError("information fractions must be strictly increasing: look "
                         f"{bad + 2} has t = {t[bad + 1]!r} after t = {t[bad]!r}")
    return t


@dataclass(frozen=True)
class Boundaries:
    """Group-sequential monitoring boundaries at K looks (shape (K,) tuples).

    ``upper``/``lower`` are on the z scale (``lower = -upper`` for two-sided,
    ``-inf`` for one-sided); ``alpha_spent`` is the cumulative a(t_k);
    ``nominal_p`` the two-sided (one-sided) p-value that each boundary
    corresponds to on its own.
    """

    info_fraction: tuple[float, ...]
    upper: tuple[float, ...]
    lower: tuple[float, ...]
    alpha_spent: tuple[float, ...]
    nominal_p: tuple[float, ...]
    alpha: float
    spending: str
    sides: int


def sequential_bounds(t, *, alpha: float = DEFAULT_ALPHA, spending: str = "OBF",
                      sides: int = 2, r: int = GRID_R) -> Boundaries:
    """Lan-DeMets alpha-spending boundaries at information fractions ``t``.

    Parameters
    ----------
    t : array_like, shape (K,)
        Strictly increasing information fractions in (0, 1] (need not be
        equally spaced, nor end at 1).
    alpha : float
        Total type I error: two-sided (half per side) when ``sides=2``,
        one-sided when ``sides=1``.
    spending : {"OBF", "Pocock"}
        See :func:`spending_function`.
    sides : {1, 2}
    r : int
        Grid parameter (see ``GRID_R``).

    Returns
    -------
    Boundaries
        Under H0 the probability of a first crossing at look k equals
        ``a(t_k) - a(t_{k-1})`` (two-sided: of either boundary).

    Notes
    -----
    Matches ldbounds' ``ldBounds(t, iuse=1|2, alpha, sides)`` (Reboussin et
    al. 2000 [8]) and rpact's ``getDesignGroupSequential(typeOfDesign =
    "asOF"|"asP")``; the look at t_1 has the closed form
    ``z_{1 - a(t_1)/s}``.
    """
    t = _check_fractions(t)
    alpha = _check_level("alpha", alpha)
    _check_spending(spending)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    spent = spending_function(t, alpha, spending, sides)
    inc = np.diff(np.concatenate([[0.0], spent]))
    rec = _Recursion(0.0, r)
    upper = np.empty(t.size)
    for k, tk in enumerate(t):
        if sides == 2:
            def excess(b, tk=tk, target=inc[k]):
                return rec.p_above(tk, b) + rec.p_below(tk, -b) - target
        else:
            def excess(b, tk=tk, target=inc[k]):
                return rec.p_above(tk, b) - target
        if inc[k] <= SPEND_ZERO or excess(BOUND_MAX) > 0:
            b = math.inf
        elif excess(0.0) < 0:       # cannot spend this much: everything left crosses
            b = 0.0
        else:
            b = optimize.brentq(excess, 0.0, BOUND_MAX, xtol=BOUND_XTOL)
        upper[k] = b
        if k + 1 < t.size:
            rec.advance(tk, -b if sides == 2 else -math.inf, b)
    lower = -upper if sides == 2 else np.full(t.size, -math.inf)
    nominal = sides * special.ndtr(-upper)
    return Boundaries(tuple(map(float, t)), tuple(map(float, upper)), tuple(map(float, lower)),
                      tuple(map(float, spent)), tuple(map(float, nominal)), alpha, spending,
                      sides)


def drift(alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, sides: int = 2) -> float:
    """E Z at t = 1 under the alternative the RIS is powered for: z_{1-alpha/s} + z_{1-beta}."""
    return float(-special.ndtri(alpha / sides) - special.ndtri(beta))


def futility_bounds(bounds: Boundaries, *, beta: float = DEFAULT_BETA,
                    spending: str | None = None, theta: float | None = None,
                    r: int = GRID_R) -> tuple[float, ...]:
    """Beta-spending futility boundaries ``f_k`` at the looks of ``bounds``.

    Parameters
    ----------
    bounds : Boundaries
        The (non-binding) efficacy boundaries, from :func:`sequential_bounds`.
    beta : float
        Total type II error spent by t = 1.
    spending : {"OBF", "Pocock"}, optional
        Beta-spending family; default: that of ``bounds``.
    theta : float, optional
        Drift of the alternative (E Z_k = theta sqrt(t_k)); default
        :func:`drift` of ``bounds.alpha``, ``beta`` and ``bounds.sides``.

    Returns
    -------
    tuple of K floats
        ``f_k`` solves ``P_theta(f_j < Z_j < b_j, j < k; Z_k < f_k) =
        b(t_k) - b(t_{k-1})`` (module docstring); a look with t = 1 gets
        ``f_k = b_k``; ``-inf`` where nothing is spent. For two-sided TSA
        the futility region is ``|Z_k| < f_k`` (empty while ``f_k <= 0``).
    """
    beta = _check_level("beta", beta)
    spending = _check_spending(spending or bounds.spending)
    t = np.asarray(bounds.info_fraction)
    b = np.asarray(bounds.upper)
    if theta is None:
        theta = drift(bounds.alpha, beta, bounds.sides)
    spent = spending_function(t, beta, spending)
    inc = np.diff(np.concatenate([[0.0], spent]))
    rec = _Recursion(float(theta), r)
    f = np.empty(t.size)
    for k, tk in enumerate(t):
        top = b[k] if np.isfinite(b[k]) else BOUND_MAX
        if tk >= 1.0:
            fk = b[k]
        else:
            def excess(x, tk=tk, target=inc[k]):
                return rec.p_below(tk, x) - target
            if inc[k] <= SPEND_ZERO or excess(-BOUND_MAX) > 0:
                fk = -math.inf
            elif excess(top) < 0:    # the wedge closes before t = 1
                fk = top
            else:
                fk = optimize.brentq(excess, -BOUND_MAX, top, xtol=BOUND_XTOL)
        f[k] = fk
        if k + 1 < t.size:
            rec.advance(tk, fk, b[k])
    return tuple(map(float, f))


# --------------------------------------------------------------------------- information size

def required_information_size(*, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                              sides: int = 2, control_risk: float | None = None,
                              rrr: float | None = None, mid: float | None = None,
                              sd: float = 1.0) -> float:
    """Required information size (total participants) of a fixed-size comparison.

    Binary outcome (``control_risk`` Pc and ``rrr``) [1, 4]::

        Pe = Pc (1 - RRR), delta = Pc - Pe = Pc RRR, pbar = (Pc + Pe) / 2
        RIS = 4 (z_{1-alpha/s} + z_{1-beta})^2 pbar (1 - pbar) / delta^2

    Continuous outcome (``mid``, the minimal important difference, and
    ``sd``; for an SMD ``sd = 1`` and ``mid`` in SD units) [4]::

        RIS = 4 (z_{1-alpha/s} + z_{1-beta})^2 sd^2 / mid^2

    The value is not rounded (the TSA software shows it rounded up).
    """
    alpha = _check_level("alpha", alpha)
    beta = _check_level("beta", beta)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    zz = drift(alpha, beta, sides) ** 2
    if mid is not None:
        if control_risk is not None or rrr is not None:
            raise ValueError("give either control_risk and rrr (binary) or mid (continuous)")
        mid = float(mid)
        if not (np.isfinite(mid) and mid > 0):
            raise ValueError(f"mid (minimal important difference) must be > 0, got {mid!r}")
        if not (np.isfinite(sd) and sd > 0):
            raise ValueError(f"sd must be > 0, got {sd!r}")
        return 4.0 * zz * sd * sd / (mid * mid)
    if control_risk is None or rrr is None:
        raise ValueError("a binary RIS needs control_risk and rrr")
    pc = _check_level("control risk", control_risk)
    rrr = _check_level("rrr (relative risk reduction)", rrr)
    pe = pc * (1.0 - rrr)
    pbar = 0.5 * (pc + pe)
    delta = pc - pe
    return 4.0 * zz * pbar * (1.0 - pbar) / (delta * delta)


def diversity(var_random: float, var_common: float) -> float:
    """Diversity D^2 = (v_R - v_F) / v_R (Wetterslev et al. 2009 [3]).

    ``v_R``, ``v_F``: variances of the pooled estimate under the
    random-effects and the common-effect (inverse-variance) model. 0 when
    tau^2 = 0 (``v_R = v_F``); floored at 0.
    """
    if not (var_random > 0 and var_common > 0):
        raise ValueError(f"variances must be > 0, got v_R = {var_random!r}, "
                         f"v_F = {var_common!r}")
    return max(0.0, (var_random - var_common) / var_random)


# --------------------------------------------------------------------------- result

# TSALook, Crossing and TSAResult live in ntxmeta.result (the result layout's one home).


def _as_1d(name: str, x, k: int | None = None) -> np.ndarray:
    a = np.atleast_1d(np.asarray(x, dtype=float))
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if k is not None and a.size != k:
        raise ValueError(f"{name} has {a.size} values for {k} trials")
    return a


def control_risk_of(rule, events_ctrl, n_ctrl, k=None) -> tuple[float, str]:
    """The control-arm risk a binary TSA's information size uses, and its rule.

    ``rule`` is ``"pooled"`` (events over participants of the control arms),
    ``"median"`` (median of the trials' control risks) or a risk in (0, 1)
    (``"given"``); trials without control counts are left out. Raises
    ValueError when no risk in (0, 1) results.
    """
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        return _check_level("control_risk", rule), "given"
    if rule not in ("pooled", "median"):
        raise ValueError(f"control_risk must be 'pooled', 'median' or a risk in (0, 1), "
                         f"got {rule!r}")
    if events_ctrl is None or n_ctrl is None:
        raise ValueError("a binary TSA needs events_ctrl and n_ctrl (or control_risk=<risk>)")
    e = _as_1d("events_ctrl", events_ctrl, k)
    n = _as_1d("n_ctrl", n_ctrl, k)
    ok = np.isfinite(e) & np.isfinite(n) & (n > 0)
    if np.any(ok & ((e < 0) | (e > n))):
        i = int(np.flatnonzero(ok & ((e < 0) | (e > n)))[0])
        raise ValueError(f"trial {i + 1}: control events {float(e[i])!r} not in "
                         f"[0, n_ctrl = {float(n[i])!r}]")
    if not ok.any():
        raise ValueError("no trial has control-group counts for the control risk")
    pc = float(e[ok].sum() / n[ok].sum()) if rule == "pooled" else float(np.median(e[ok] / n[ok]))
    if not (0 < pc < 1):
        raise ValueError(f"the {rule} control-arm risk is {pc:g}, so no information size can "
                         "be computed")
    return pc, rule


def tsa(yi, vi, n, *, year=None, labels: Sequence[str] | None = None,
        events_ctrl=None, n_ctrl=None, measure: str = "RR",
        control_risk: str | float = "pooled", rrr: float = DEFAULT_RRR,
        mid: float | None = None, sd: float = 1.0,
        alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, spending: str = "OBF",
        sides: int = 2, futility: bool = False, method: str = "DL",
        heterogeneity_adjusted: bool = True, test: str = "z") -> TSAResult:
    """Trial sequential analysis of one meta-analysis.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect sizes on the analysis scale (log RR / log OR for ratio
        measures) and their sampling variances, one per trial.
    n : array_like, shape (k,)
        Participants randomised per trial (both arms): the information.
    year : array_like, shape (k,), optional
        Chronological order: trials enter by year, ties in input order,
        missing years last; None keeps the input order.
    labels : sequence of str, optional
        Trial labels (default "1", "2", ...).
    events_ctrl, n_ctrl : array_like, shape (k,), optional
        Control-group events and participants, for the control risk.
    measure : {"RR", "OR", "RD", "SMD", "MD"}
        Binary measures use the binary RIS (control risk and ``rrr``);
        continuous ones need ``mid`` (and ``sd`` for MD).
    control_risk : "pooled", "median" or float
        ``pooled``: sum of control events / sum of control participants;
        ``median``: median of the trials' control risks; a float: given.
    rrr : float
        Relative risk reduction to detect (binary), default ``DEFAULT_RRR``.
    mid, sd : float
        Minimal important difference and SD (continuous; SD = 1 for SMD).
    alpha, beta : float
        Type I (two-sided total when ``sides=2``) and type II error.
    spending : {"OBF", "Pocock"}
        Alpha- (and beta-) spending family.
    sides : {1, 2}
        One-sided TSA tests for benefit (negative z, the naltrexone side).
    futility : bool
        Also compute beta-spending futility boundaries (inner wedge).
    method : str
        Estimator of the pooled model at each look (:func:`ntxmeta.rma.rma_batch`);
        DerSimonian-Laird by default as the TSA software; "EE" for
        common-effect TSA (then D^2 = 0).
    heterogeneity_adjusted : bool
        Divide the RIS by 1 - D^2 [3].
    test : {"z", "knha", "adhoc"}
        The standard error of the cumulative z-curve and the adjusted CI:
        Wald ("z", the TSA software's) or the Hartung-Knapp one of the
        meta-analysis itself (with the ad hoc floor for "adhoc"), so that
        the TSA claims no more than the analysis it monitors. D^2 always
        uses the Wald variances (its definition [3]). Past the RIS the
        boundary is the analysis's conventional critical value: z, or t
        with k - 1 df under Hartung-Knapp; before it, under Hartung-Knapp,
        the alpha-spending boundary or that t value, whichever is larger,
        so that no look claims more than the analysis's own test.

    Returns
    -------
    TSAResult
        See :class:`TSAResult`; the looks are in chronological order.

    Notes
    -----
    A crossing of a monitoring boundary (``|z_k| >= upper_k``, at any look
    with a boundary) concludes "firm evidence of effect"; otherwise a look
    inside the futility wedge concludes "futility boundary crossed";
    otherwise "RIS reached without crossing a boundary: ..." when the accrued
    information reaches the RIS,
    else "not conclusive". For one-sided TSA (benefit: z < 0) the
    monitoring boundary is ``-upper`` and the futility region ``z > -f_k``
    (stored as ``lower = -upper``, ``futility_lower = -f_k``).
    Cost: one vectorised batch of k cumulative fits plus K boundary roots;
    ~10 ms for 20 trials.
    """
    from .rma import rma_batch
    y = _as_1d("yi", yi)
    k = y.size
    if k == 0:
        raise ValueError("TSA needs at least one trial; got none")
    v = _as_1d("vi", vi, k)
    nn = _as_1d("n", n, k)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"yi must be finite; trial {int(np.flatnonzero(~np.isfinite(y))[0]) + 1} is not")
    if not np.all(np.isfinite(v) & (v > 0)):
        i = int(np.flatnonzero(~(np.isfinite(v) & (v > 0)))[0])
        raise ValueError(f"vi must be finite and > 0; trial {i + 1} has vi = {float(v[i])!r}")
    if not np.all(np.isfinite(nn) & (nn > 0)):
        i = int(np.flatnonzero(~(np.isfinite(nn) & (nn > 0)))[0])
        raise ValueError(f"n (participants) must be > 0; trial {i + 1} has n = {float(nn[i])!r}")
    alpha = _check_level("alpha", alpha)
    beta = _check_level("beta", beta)
    _check_spending(spending)
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    if measure not in BINARY + CONTINUOUS:
        raise ValueError(f"measure must be one of {BINARY + CONTINUOUS}, got {measure!r}")
    yr = np.full(k, np.nan) if year is None else _as_1d("year", year, k)
    lab = [str(i + 1) for i in range(k)] if labels is None else [str(s) for s in labels]
    if len(lab) != k:
        raise ValueError(f"labels has {len(lab)} entries for {k} trials")

    if measure in BINARY:
        if mid is not None:
            raise ValueError(f"mid is for continuous outcomes; {measure} uses rrr")
        rrr = _check_level("rrr (relative risk reduction)", rrr)
        pc, rule = control_risk_of(control_risk, events_ctrl, n_ctrl, k)
        ris = required_information_size(alpha=alpha, beta=beta, sides=sides,
                                         control_risk=pc, rrr=rrr)
        rrr_out, mid_out, sd_out = rrr, math.nan, math.nan
    else:
        if mid is None:
            raise ValueError(f"a continuous TSA ({measure}) needs mid, the minimal important "
                             "difference")
        sd_use = 1.0 if measure == "SMD" else float(sd)
        ris = required_information_size(alpha=alpha, beta=beta, sides=sides, mid=mid, sd=sd_use)
        pc, rule, rrr_out, mid_out, sd_out = math.nan, "", math.nan, float(mid), sd_use

    order = np.argsort(yr, kind="stable")           # NaN years last, ties in input order
    ys, vs, ns = y[order], v[order], nn[order]
    tri = np.tril(np.ones((k, k), dtype=bool))
    fits = rma_batch(np.where(tri, ys, np.nan), np.where(tri, vs, np.nan), method=method)
    est, se = np.asarray(fits.estimate, float), np.asarray(fits.se, float)
    var_common = 1.0 / np.sum(1.0 / vs)
    d2 = diversity(se[-1] ** 2, var_common)
    if test != "z":
        tested = rma_batch(np.where(tri, ys, np.nan), np.where(tri, vs, np.nan), method=method,
                           test=test)
        se = np.asarray(tested.se, float)
    z = est / se
    if heterogeneity_adjusted and d2 >= 1.0:
        raise ValueError("D^2 = 1: the common-effect variance is 0 against the random-effects one")
    ris_d = ris / (1.0 - d2) if heterogeneity_adjusted else ris
    n_cum = np.cumsum(ns)
    t = n_cum / ris_d

    # looks with a boundary: those with t < 1 and the first with t >= 1 (taken at t = 1)
    reached = np.flatnonzero(t >= 1.0)
    last = int(reached[0]) if reached.size else k - 1
    t_b = np.minimum(t[:last + 1], 1.0)
    bounds = sequential_bounds(t_b, alpha=alpha, spending=spending, sides=sides)
    # past the RIS: the conventional critical value of the analysis's own test (z, or t
    # with k_i - 1 df under Hartung-Knapp, a single trial's z)
    df = np.arange(k, dtype=float)
    conventional = (np.full(k, float(-special.ndtri(alpha / sides))) if test == "z"
                    else np.where(df > 0, -special.stdtrit(np.maximum(df, 1.0), alpha / sides),
                                  -special.ndtri(alpha / sides)))
    upper = conventional.copy()
    upper[:last + 1] = bounds.upper
    if test != "z":   # never below the analysis's own critical value (t with few trials)
        upper = np.maximum(upper, conventional)
    fut = np.full(k, np.nan)
    if futility:
        fut[:last + 1] = futility_bounds(bounds, beta=beta, spending=spending)

    looks = []
    for i in range(k):
        f = fut[i]
        wedge = np.isfinite(f) and f > 0
        if sides == 2:
            lo, fu, fl = -upper[i], (f if wedge else math.nan), (-f if wedge else math.nan)
            up = upper[i]
        else:   # benefit is z < 0: monitoring boundary below, futility above -f
            lo, up = -upper[i], math.nan
            fu, fl = math.nan, (-f if np.isfinite(f) else math.nan)
        looks.append(TSALook(lab[order[i]], float(yr[order[i]]), float(n_cum[i]), float(t[i]),
                             float(est[i]), float(se[i]), float(z[i]), float(up), float(lo),
                             float(fu), float(fl)))

    crossed = None
    for i, lk in enumerate(looks):
        if np.isfinite(lk.upper) and lk.z >= lk.upper:
            crossed = Crossing("upper", i, lk.label)
            break
        if np.isfinite(lk.lower) and lk.z <= lk.lower:
            crossed = Crossing("lower", i, lk.label)
            break
    if crossed is None and futility:
        for i, lk in enumerate(looks):
            if sides == 2:
                inside = np.isfinite(lk.futility_upper) and abs(lk.z) < lk.futility_upper
            else:
                inside = np.isfinite(lk.futility_lower) and lk.z > lk.futility_lower
            if inside and not (i == last and t[i] >= 1.0):
                crossed = Crossing("futility", i, lk.label)
                break
    if crossed is not None and crossed.boundary != "futility":
        conclusion = CONCLUSIONS[0]
    elif crossed is not None:
        conclusion = CONCLUSIONS[1]
    elif t[-1] >= 1.0:
        conclusion = CONCLUSIONS[2]
    else:
        conclusion = CONCLUSIONS[3]

    if t[-1] >= 1.0:
        c = float(conventional[-1])
    else:
        c = float(upper[-1])
    if sides == 2 or not np.isfinite(c):
        ci = Interval(float(est[-1] - c * se[-1]), float(est[-1] + c * se[-1]))
    else:   # one-sided benefit test: the bound that matters is the upper one
        ci = Interval(-math.inf, float(est[-1] + c * se[-1]))
    return TSAResult(
        measure=measure, method=fits.method, sides=sides, spending=spending, alpha=alpha,
        beta=beta, control_risk=float(pc), control_risk_rule=rule, rrr=float(rrr_out),
        mid=float(mid_out), sd=float(sd_out), ris=float(ris), ris_adjusted=float(ris_d),
        d2=float(d2), heterogeneity_adjusted=bool(heterogeneity_adjusted), futility=bool(futility),
        n_total=float(n_cum[-1]), info_fraction=float(t[-1]), estimate=float(est[-1]),
        se=float(se[-1]), critical_value=c, ci_adjusted=ci, looks=tuple(looks), crossed=crossed,
        conclusion=conclusion)


RATIO = ("RR", "OR")


def table_row(result: TSAResult) -> dict[str, Any]:
    """One row of a TSA summary table.

    Columns: ``ris`` (D^2-adjusted, rounded up as the TSA software shows
    it), ``d2_pct``, ``n_accrued``, ``ris_pct`` (accrued as % of the RIS),
    ``z_final``, ``boundary_final`` (the critical value of the last look:
    the monitoring boundary, or z_{1-alpha/s} once the RIS is reached),
    ``crossed`` ("" or "upper"/"lower"/"futility" at trial <label>),
    ``ci_adjusted_low``/``ci_adjusted_high`` (TSA-adjusted CI on the shown
    scale: exp for RR/OR), ``conclusion``.
    """
    show = math.exp if result.measure in RATIO else (lambda x: x)
    lo, hi = result.ci_adjusted.low, result.ci_adjusted.high
    crossed = ("" if result.crossed is None else
               f"{result.crossed.boundary} at {result.crossed.label}")
    return {
        "ris": int(math.ceil(result.ris_adjusted)),
        "d2_pct": 100.0 * result.d2,
        "n_accrued": int(round(result.n_total)),
        "ris_pct": 100.0 * result.info_fraction,
        "z_final": result.looks[-1].z,
        "boundary_final": result.critical_value,
        "crossed": crossed,
        "ci_adjusted_low": show(lo) if np.isfinite(lo) else (0.0 if result.measure in RATIO else lo),
        "ci_adjusted_high": show(hi),
        "conclusion": result.conclusion,
    }
