"""Leave-one-out, influence and cumulative meta-analysis, k analyses at once.

Matches metafor 3.8-1 ``leave1out()``, ``influence()`` and ``cumul()`` for
intercept-only ``rma.uni`` fits, and registers the result sections
``leave1out``, ``influence`` and ``cumul`` of ``ntxmeta analyse``.

Public API
----------
``leave1out(yi, vi, *, method, test, level, control) -> Leave1Out``
    Row i is the model fitted without study i.
``cumulative(yi, vi, order=None, *, method, test, level, control) -> Cumulative``
    Studies sorted stably by ``order`` (NaN last, as R's ``order()``); row j
    is the model fitted on the first j + 1 studies of that order.
``influence(yi, vi, *, method, test, level, control) -> Influence``
    metafor's case-deletion diagnostics (rstudent, DFFITS, Cook's distance,
    COVRATIO, tau^2 and Q after deletion, hat values, weights, DFBETAS and
    the "influential" flag).

``control=FULL`` (default) converges REML/ML/EB fully, as metafor
with control=list(threshold=1e-12); ``control=METAFOR_DEFAULT`` replays
metafor's default control, which is what its leave1out(), influence() and
cumul() print, and what the ``leave1out``, ``influence`` and ``cumul``
sections (and the metafor oracle) hold: there REML values differ from the
fully converged ones by up to ~1e-4 relative where tau^2 is small, and
analyses on which metafor's Fisher scoring fails are NaN rows.

Why written here
----------------
Neither pymare nor statsmodels offers case deletion or cumulative
meta-analysis, and metafor refits the model k times, each fit building
k x k matrices: O(k^3) time per REML fit, O(k^4) for the whole analysis.
Refitting k times with ``ntxmeta.rma`` would be O(k^2) time and k rounds of
Python overhead. This module treats the k fits as one batch and needs, for
analysis i at its own tau_i^2, only the sums

    T_ab(i) = sum_{j in S_i} w_j(tau_i^2)^a r_j^b,  w_j(t) = 1 / (v_j + t),
    a = 1, 2, 3;  b = 0, 1, 2;  r_j = y_j - c_y (a fixed centre),

and sum_{j in S_i} log(v_j + tau_i^2) for the log-likelihood check, where
S_i is "all but i" (leave-one-out) or "the first i" (cumulative). Every
quantity of the intercept-only model follows from them (``_fit_parts``):
beta = c_y + T11/T10, Var = 1/T10, RSS = T12 - T11^2/T10,
y'PPy = sum w^2 (r - d)^2, tr P = T10 - T20/T10,
tr PP = T20 - 2 T30/T10 + (T20/T10)^2, y'PPPy = sum w^3 (r - d)^2 -
(sum w^2 (r - d))^2 / T10 with d = T11/T10.

Sums at many different tau^2 without a k x k matrix: a power series
---------------------------------------------------------------------
Around a centre c (the full-data tau^2, which every leave-one-out and the
late cumulative tau^2 lie close to; also the mean HE estimate, where
metafor's iterations start, and 0), with g = min_j (v_j + c),
u_j = g / (v_j + c) in (0, 1] and rho = (t - c) / g,

    (v_j + t)^-a = g^-a sum_{n >= 0} binom(-a, n) rho^n u_j^(a+n),
    log(v_j + t) = log(v_j + c) + sum_{n >= 1} (-1)^(n+1) rho^n u_j^n / n,

so T_ab(t) = g^-a sum_n binom(-a, n) rho^n M_{a+n,b} with the moments
M_pb = sum_{j in S} u_j^p r_j^b: one O(k) moment vector per power p
(full sums minus the own term for leave-one-out, prefix sums for
cumulative) serves every analysis at every tau^2. The series converges
geometrically with ratio q = |rho| max_{j in S} u_j; it is summed until the
remainder is below ``SERIES_TOL``: each analysis gets the length N its
own ratio needs (at most ``N_MAX`` terms for q <= ``RHO_MAX``; a few terms
for most leave-one-out analyses). Analyses that no centre serves with
q <= ``RHO_MAX`` (tau^2 drifting over a cumulative analysis, or moved far
by an outlier) get centres from the lattice c_i = v_min (2^i - 1), which
serves every tau^2 with q < 1/2, when that costs less than summing them
directly. What is left is summed directly over the studies, in blocks of at
most ``BLOCK_ENTRIES`` numbers: the first ``CUMUL_DIRECT_BELOW``
cumulative analyses (cheap), analyses no centre pays for, and
leave-one-out rows whose left-out study carries nearly all the weight
(where "full minus own" would cancel). Time is O(k N) per iteration (all
analyses at once) plus the direct rows; memory O(k N) per centre, the
cumulative prefix moments bounded by ``MOMENT_CACHE_ENTRIES`` (beyond it
rebuilt in chunks of ``BLOCK_ENTRIES``).

tau^2 per analysis
------------------
EE 0; DL, HS, HSk from the common-effect sums (closed form); HE from plain
sums. REML, ML and EB follow metafor's own path, so that where the
likelihood has two maxima (it happens: a boundary maximum at 0 and an
interior one) the same one is found: Fisher scoring from max(0, HE), a
step that would leave [0, inf) halved until it does not, all analyses
iterated together. ``control=METAFOR_DEFAULT`` stops there with metafor's
default control (change <= 1e-5 within 100 iterations, else the analysis
is NaN, as metafor reports it); ``control=FULL`` (the default)
continues from that point with Newton steps on the likelihood score
(Fisher-scoring steps where the score is not decreasing, clamped at 0)
to a change below ``ntxmeta.rma.TAU2_RTOL``. Then, for ML and REML,
metafor's check that the log-likelihood at tau^2 = 0 is not higher.
Analyses that Newton does not converge in ``NEWTON_MAX_ITER`` steps are
refitted one by one with ``ntxmeta.rma``. SJ, PM and PMM are estimated by
``ntxmeta.rma.rma_batch`` on blocks of explicit subsets (O(k^2) time,
O(BLOCK_ENTRIES) memory; fully converged in both modes). GENQ and GENQM
(user weights) are not offered.

Conventions of metafor 3.8-1 kept here
--------------------------------------
* ``leave1out`` and ``influence`` stop when k = 1 ("Stopped because
  k = 1."); ``cumul`` does not: its first row is the fit on one study.
* A fit on one study has tau^2 = 0, Q = 0, p(Q) = 1, I^2 = 0, H^2 = 1, and
  a knha or adhoc test falls back to z (so k = 2 leave-one-out fits are all z);
  adhoc floors the leave-one-out s2w at 1 as the full fit (``knha_s2w``).
* I^2 = 100 tau^2 / (tau^2 + v~), v~ = (k - 1) / tr(P_EE); for EE,
  I^2 = max(0, 100 (Q - df) / Q), H^2 = Q / df.
* ``influence``: hat_i = w_i / sum w (set to 1 above 1 - 10 eps);
  rstudent uses the deleted residual y_i - beta_(-i) (0 when below 100 eps)
  over sqrt(s2w_(-i) (v_i + tau^2_(-i)) + Var(beta_(-i)));
  DFFITS = (beta - beta_(-i)) / sqrt(s2w_(-i) h_i (tau^2_(-i) + v_i));
  DFBETAS = (beta - beta_(-i)) / sqrt(s2w_(-i) / sum_j 1/(v_j + tau^2_(-i)))
  (all k studies at the deleted tau^2); Cook's D = (beta - beta_(-i))^2 /
  Var(beta); COVRATIO = Var(beta_(-i)) / Var(beta); a study is influential
  when |DFFITS| > 3 sqrt(p / (k - p)), P(chi^2_1 <= D) > 0.5,
  h_i > 3 p / k or |DFBETAS| > 1 (p = 1).
* ``cumul`` orders with R's stable ``order()``: ties keep input order,
  missing keys last.

References
----------
1. Viechtbauer W, Cheung MW-L (2010). Outlier and influence diagnostics
   for meta-analysis. Res Synth Methods 1:112-125.
2. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3).
3. Lau J, Antman EM, Jimenez-Silva J, et al. (1992). Cumulative
   meta-analysis of therapeutic trials for myocardial infarction.
   N Engl J Med 327:248-254.
4. Belsley DA, Kuh E, Welsch RE (1980). Regression Diagnostics. Wiley
   (DFFITS, DFBETAS, COVRATIO).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from . import oracle
from ._common import MetaError, guarded
from .data import AnalysisData
from .rma import (COMMON_ALIASES, FULL, HK_TESTS, LL0_TOL, METAFOR_DEFAULT, METHODS, TAU2_RTOL,
                  TESTS, Control, _check_control, _tau2, estimate_tau2, knha_s2w, note_fit, rma,
                  rma_batch)

# --------------------------------------------------------------------------- constants

#: Largest series convergence ratio q accepted; rows beyond it are summed
#: directly. 1/2 keeps the series at <= N_MAX terms and leaves direct sums
#: to the few analyses whose tau^2 is far from the centre.
RHO_MAX = 0.5
#: Truncation target of the series, relative to the sum of the absolute
#: terms: below double-precision rounding (2^-53 ~ 1.1e-16).
SERIES_TOL = 1e-17
#: Leave-one-out: when the left-out study's weight is more than this share
#: of the total, "full sum minus own term" would lose more than
#: log10(1 / (1 - share)) = 3 digits, so that row is summed directly.
OWN_SHARE_MAX = 1.0 - 1e-3
#: Numbers per block of a direct summation or of the prefix moments
#: (2^21 float64 = 16 MiB): bounds memory independently of k.
BLOCK_ENTRIES = 1 << 21
#: Cumulative analyses of fewer studies than this are summed directly: they
#: cost little (j numbers each) and their tau^2, far from the centre, would
#: need the longest series.
CUMUL_DIRECT_BELOW = 256
#: Positions per chunk of the prefix moments at most, so that the series
#: length kept can drop soon after the last analysis that needs a long one.
CHUNK_MAX = 1024
#: Series lengths are rounded up to a multiple of this, so analyses of
#: similar length share one vectorised evaluation.
N_BUCKET = 4
#: A lattice centre is added when the direct sums it replaces touch at least
#: this many times the numbers of one pass of its moments (a moment pass
#: costs about N_MAX + 3 powers per study, a direct sum about one).
LATTICE_BREAK_EVEN = 24
#: Prefix moments of the cumulative series are kept between evaluations
#: when they take at most this many numbers (2^22 float64 = 32 MiB, i.e.
#: k up to about 19,000); above it they are rebuilt chunk by chunk.
MOMENT_CACHE_ENTRIES = 1 << 22
#: Newton iterations per analysis before falling back to ``ntxmeta.rma``
#: (from where metafor's rule stops, 2-4 suffice; Fisher-scoring steps
#: taken where the score is not decreasing converge linearly).
NEWTON_MAX_ITER = 200
#: Deleted residuals below this many machine epsilons are set to 0, as
#: metafor's influence() does (it uses 100 * .Machine$double.eps).
RESID_ZERO_EPS = 100
#: Hat values above 1 - this many epsilons are set to 1 (metafor's hatvalues()).
HAT_ONE_EPS = 10
#: Methods whose tau^2 this module computes from the sums; the others
#: (but GENQ, GENQM) go through rma_batch on explicit subsets.
SERIES_METHODS = ("EE", "DL", "HE", "HS", "HSk", "REML", "ML", "EB")
ITERATIVE_METHODS = ("REML", "ML", "EB")
BATCH_METHODS = ("SJ", "PM", "PMM")
#: ``control`` (``ntxmeta.rma.Control``): ``FULL`` iterates to
#: ``ntxmeta.rma.TAU2_RTOL`` (what metafor gives with
#: control=list(threshold=1e-12)); a replayed control such as
#: ``METAFOR_DEFAULT`` replays metafor 3.8-1's Fisher scoring for REML/ML/EB
#: with its threshold, maxiter and tol, which is what metafor's leave1out(),
#: influence() and cumul() report by default. This module's Fisher scoring
#: is the vectorised twin of ``ntxmeta.rma.metafor_fisher_tau2`` (all
#: subsets at once from weighted series sums; one subset at a time through
#: ``rma`` would be O(k) fits), with the same settings from the same object.
STOP_K1 = "Stopped because k = 1."

_EPS = np.finfo(float).eps


def _q_thresholds(n_top: int = 400) -> np.ndarray:
    """thr[N]: the largest ratio q for which terms n = 0..N leave a remainder <= SERIES_TOL.

    Remainder after term N of the a <= 3 series, relative to the sum of the
    absolute terms: sum_{n > N} binom(n + 2, 2) q^n <= binom(N + 3, 2)
    q^(N+1) / (1 - q); solved for q by bisection on its logarithm.
    """
    n = np.arange(n_top + 1, dtype=float)
    lo, hi = np.zeros_like(n), np.full_like(n, 1.0 - 1e-12)
    target = np.log(SERIES_TOL) - np.log((n + 2.0) * (n + 3.0) / 2.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f = (n + 1.0) * np.log(mid) - np.log1p(-mid)
        below = f <= target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return lo


_Q_THR = _q_thresholds()


def _series_terms(q) -> np.ndarray:
    """Series length N (terms n = 0..N) for convergence ratios q (vectorised)."""
    return np.searchsorted(_Q_THR, np.asarray(q, dtype=float), side="left")


#: Series length at q = RHO_MAX.
N_MAX = int(_series_terms(RHO_MAX))


def _bucketed_terms(q) -> np.ndarray:
    """Series lengths rounded up to a multiple of N_BUCKET (at most N_MAX)."""
    return np.minimum(-(-_series_terms(q) // N_BUCKET) * N_BUCKET, N_MAX)


def _binom_neg(a: int, n: np.ndarray) -> np.ndarray:
    """binom(-a, n) = (-1)^n binom(a + n - 1, n) for a = 1, 2, 3."""
    sign = np.where(n % 2 == 0, 1.0, -1.0)
    if a == 1:
        return sign
    if a == 2:
        return sign * (n + 1.0)
    return sign * (n + 1.0) * (n + 2.0) / 2.0


# --------------------------------------------------------------------------- subset sums

KINDS = ("loo", "cumul", "all")


def _prefix_moments(u: np.ndarray, R: np.ndarray, P: int) -> np.ndarray:
    """M[p-1, l, b] = sum_{j <= l} u_j^p R[j, b] for p = 1..P, shape (P, len(u), 3)."""
    Up = np.cumprod(np.broadcast_to(u, (P, u.size)), axis=0)
    M = Up[:, :, None] * R[None, :, :]
    return np.cumsum(M, axis=1, out=M)


class _Centre:
    """Series data around one centre c: g = min (v + c), u = g / (v + c)."""

    def __init__(self, sums: "_SubsetSums", c: float):
        self.c = float(c)
        vc = sums.v + self.c
        self.g = float(vc.min())
        self.u = self.g / vc
        self.reach = (np.maximum.accumulate(self.u) if sums.kind == "cumul"
                      else np.ones(sums.m))  # max u over S_i (<= 1, conservative)
        self.log_all = float(np.log(vc).sum())
        self.log_c = sums.plain(np.log(vc))
        self._moments = None
        self._prefix = None

    def prefix_moments(self, sums: "_SubsetSums", P: int) -> np.ndarray | None:
        """Prefix moments of at least P powers, (P', k, 3), kept between calls.

        Built with the powers first asked for, rebuilt with all N_MAX + 3 the
        first time more are needed; None when the centres of this batch
        would hold more than MOMENT_CACHE_ENTRIES numbers.
        """
        if self._prefix is None or self._prefix.shape[0] < P:
            P = P if self._prefix is None else N_MAX + 3
            held = 0 if self._prefix is None else self._prefix.size
            if sums.cache_used - held + P * sums.k * 3 > MOMENT_CACHE_ENTRIES:
                return None
            self._prefix = _prefix_moments(self.u, sums.R, P)
            sums.cache_used += self._prefix.size - held
        return self._prefix

    def moments(self, R: np.ndarray) -> np.ndarray:
        """M[p-1, b] = sum over all studies of u^p r^b, p = 1..N_MAX+3 (loo, all)."""
        if self._moments is None:
            M = np.empty((N_MAX + 3, 3))
            pw = self.u.copy()
            for p in range(N_MAX + 3):
                M[p] = pw @ R
                pw *= self.u
            self._moments = M
        return self._moments


class _SubsetSums:
    """Sums over the subsets S_i of one analysis's leave-one-out, cumulative or full fits.

    ``kind``: "loo" (m = k analyses, S_i = all but i), "cumul" (m = k, S_i =
    the first i + 1 studies, studies already in cumulative order) or "all"
    (m = 1, every study). ``at(t, rows)`` returns T[row, a-1, b] =
    sum_{j in S_row} (v_j + t_row)^-a r_j^b for a = 1..3, b = 0..2, and
    optionally L[row] = sum_{j in S_row} log(v_j + t_row). Each analysis is
    expanded around the centre that gives the fastest-converging series.
    """

    def __init__(self, v: np.ndarray, r: np.ndarray, kind: str, centres):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.v, self.kind, self.k = v, kind, v.size
        self.m = 1 if kind == "all" else self.k
        self.R = np.stack([np.ones_like(r), r, r * r], axis=1)  # (k, 3)
        self.size = {"loo": np.full(self.k, self.k - 1), "cumul": np.arange(1, self.k + 1),
                     "all": np.array([self.k])}[kind]
        self.v_min = float(v.min())
        self.cache_used = 0  # numbers held by the centres' prefix-moment caches
        self.centres = [_Centre(self, c) for c in dict.fromkeys(float(c) for c in centres)]
        self._lattice: set[int] = set()

    def plain(self, x: np.ndarray) -> np.ndarray:
        """sum_{j in S_i} x_j for every analysis i."""
        if self.kind == "loo":
            return x.sum() - x
        if self.kind == "cumul":
            return np.cumsum(x)
        return np.array([x.sum()])

    def _ratios(self, t, rows):
        q = np.stack([np.abs(t - ce.c) / ce.g * ce.reach[rows] for ce in self.centres])
        return np.argmin(q, axis=0), np.min(q, axis=0) <= RHO_MAX  # False for NaN

    def _add_lattice_centres(self, t, rows) -> bool:
        """Centres c_i = v_min (2^i - 1) for analyses no centre serves, where they pay.

        For c_i >= t > c_(i-1): q = (c_i - t) / min_S(v + c_i) < 2^(i-1) v_min /
        (2^i v_min) = 1/2, so every tau^2 >= 0 has a lattice centre with
        q < RHO_MAX (i = 0 is the exact centre 0). A centre costs one pass of
        moments over the studies it reaches; it is added when the direct
        sums it replaces touch at least ``LATTICE_BREAK_EVEN`` times as many numbers.
        """
        lattice = np.ceil(np.log2(t / self.v_min + 1.0)).astype(int)
        added = False
        for li in np.unique(lattice):
            if li in self._lattice:
                continue
            r_l = rows[lattice == li]
            if self.kind == "cumul":
                saved, extent = float((r_l + 1).sum()), float(r_l.max() + 1)
            else:
                saved, extent = float(r_l.size * self.k), float(self.k)
            if saved >= LATTICE_BREAK_EVEN * extent:
                self._lattice.add(int(li))
                self.centres.append(_Centre(self, self.v_min * (2.0 ** li - 1.0)))
                added = True
        return added

    def at(self, t, rows: np.ndarray | None = None, log: bool = False):
        rows = np.arange(self.m) if rows is None else np.asarray(rows)
        t = np.broadcast_to(np.asarray(t, dtype=float), rows.shape)
        T = np.empty((rows.size, 3, 3))
        L = np.empty(rows.size) if log else None
        best, series = self._ratios(t, rows)
        eligible = np.isfinite(t) & (rows >= CUMUL_DIRECT_BELOW if self.kind == "cumul" else True)
        lost = ~series & eligible
        if np.any(lost) and self._add_lattice_centres(t[lost], rows[lost]):
            best, series = self._ratios(t, rows)
        series &= eligible
        for ci, ce in enumerate(self.centres):
            idx = np.flatnonzero(series & (best == ci))
            if idx.size == 0:
                continue
            rho = (t[idx] - ce.c) / ce.g
            if self.kind == "cumul":
                self._cumul_series(ce, rows[idx], rho, T, L, idx)
            else:
                ok = self._full_series(ce, rows[idx], t[idx], rho, T, L, idx)
                series[idx[~ok]] = False
        if not np.all(series):
            idx = np.flatnonzero(~series)
            self._direct(rows[idx], t[idx], T, L, idx)
        return T, L

    @staticmethod
    def _coef(rho: np.ndarray, N: int):
        n = np.arange(N + 1)
        powers = np.ones((rho.size, N + 1))
        powers[:, 1:] = rho[:, None]
        np.cumprod(powers, axis=1, out=powers)  # rho^n
        coef = [powers * _binom_neg(a, n)[None, :] for a in (1, 2, 3)]
        nl = n[1:]
        logcoef = powers[:, 1:] * (np.where(nl % 2 == 1, 1.0, -1.0) / nl)[None, :]
        return coef, logcoef

    def _full_series(self, ce, rows, t, rho, T, L, out):
        """Series over all studies, minus the own term for "loo".

        Returns the rows summed this way; a "loo" row whose left-out study
        holds more than OWN_SHARE_MAX of the weight is left to ``_direct``.
        """
        M = ce.moments(self.R)
        loo = self.kind == "loo"
        ok = np.ones(rows.size, dtype=bool)
        n_row = _bucketed_terms(np.abs(rho))
        for N in np.unique(n_row):
            sel = np.flatnonzero(n_row == N)
            r_s, t_s, o_s = rows[sel], t[sel], out[sel]
            coef, logcoef = self._coef(rho[sel], int(N))
            own_w = 1.0 / (self.v[r_s] + t_s) if loo else None
            for a in (1, 2, 3):
                full = ce.g ** -a * (coef[a - 1] @ M[a - 1:a + N])
                if loo:
                    if a == 1:
                        ok[sel] = own_w <= OWN_SHARE_MAX * full[:, 0]
                    full = full - (own_w ** a)[:, None] * self.R[r_s]
                T[o_s, a - 1] = full
            if L is not None:
                series = logcoef @ M[:N, 0] if N > 0 else np.zeros(sel.size)
                L[o_s] = ce.log_all + series - (np.log(self.v[r_s] + t_s) if loo else 0.0)
        return ok

    def _prefix_chunks(self, ce, rows, n_suffix):
        """(start, stop, M) with M[p-1, l - start, b] = sum_{j <= l} u_j^p r_j^b.

        From the centre's cache when it fits in ``MOMENT_CACHE_ENTRIES``;
        otherwise rebuilt chunk by chunk (memory O(BLOCK_ENTRIES)), keeping
        at each position only the powers that an analysis at or after it needs.
        """
        last = int(rows[-1])
        cached = ce.prefix_moments(self, int(n_suffix[0]) + 3)
        if cached is not None:
            yield 0, last + 1, cached
            return
        carry = np.zeros((int(n_suffix[0]) + 3, 3))
        start = 0
        while start <= last:
            P = int(n_suffix[np.searchsorted(rows, start)]) + 3
            stop = min(start + min(CHUNK_MAX, max(1, BLOCK_ENTRIES // (3 * P))), last + 1)
            Mc = _prefix_moments(ce.u[start:stop], self.R[start:stop], P)
            Mc += carry[:P, None, :]
            carry[:P] = Mc[:, -1, :]
            yield start, stop, Mc
            start = stop

    def _cumul_series(self, ce, rows, rho, T, L, out):
        """Series with prefix moments; each analysis gets the length its own ratio needs.

        Lengths are rounded up to a multiple of ``N_BUCKET`` so that analyses
        of similar length share one vectorised evaluation.
        """
        order = np.argsort(rows, kind="stable")
        rows, rho, out = rows[order], rho[order], out[order]
        n_row = _bucketed_terms(np.abs(rho) * ce.reach[rows])
        n_suffix = np.maximum.accumulate(n_row[::-1])[::-1]
        for start, stop, Mc in self._prefix_chunks(ce, rows, n_suffix):
            first, hi = np.searchsorted(rows, [start, stop])
            for N in np.unique(n_row[first:hi]):
                sel = first + np.flatnonzero(n_row[first:hi] == N)
                coef, logcoef = self._coef(rho[sel], int(N))
                Mr = Mc[:N + 3, rows[sel] - start, :]  # (N + 3, nr, 3)
                for a in (1, 2, 3):
                    T[out[sel], a - 1] = ce.g ** -a * np.einsum(
                        "rn,nrb->rb", coef[a - 1], Mr[a - 1:a + N])
                if L is not None:
                    s = (np.einsum("rn,nr->r", logcoef, Mr[:N, :, 0]) if N > 0
                         else np.zeros(sel.size))
                    L[out[sel]] = ce.log_c[rows[sel]] + s

    def _direct(self, rows, t, T, L, out):
        """Sum over each subset explicitly, a block of analyses at a time."""
        k = self.k
        block = max(1, BLOCK_ENTRIES // k)
        for s in range(0, rows.size, block):
            r_b, t_b, o_b = rows[s:s + block], t[s:s + block], out[s:s + block]
            ncol = int(r_b.max()) + 1 if self.kind == "cumul" else k
            vt = self.v[None, :ncol] + t_b[:, None]
            if self.kind == "loo":
                keep = np.ones(vt.shape, dtype=bool)
                keep[np.arange(r_b.size), r_b] = False
            elif self.kind == "cumul":
                keep = np.arange(ncol)[None, :] <= r_b[:, None]
            else:
                keep = np.ones(vt.shape, dtype=bool)
            with np.errstate(invalid="ignore", divide="ignore"):
                W = np.where(keep, 1.0 / vt, 0.0)
                Rb = self.R[:ncol]
                Wa = W.copy()
                for a in (1, 2, 3):
                    T[o_b, a - 1] = Wa @ Rb
                    if a < 3:
                        Wa *= W
                if L is not None:
                    L[o_b] = np.where(keep, np.log(vt), 0.0).sum(axis=1)


# --------------------------------------------------------------------------- per-analysis quantities

@dataclass(frozen=True)
class _Parts:
    """Quantities of the intercept-only model from the sums T (rows, 3, 3)."""

    W0: np.ndarray    # sum w
    d: np.ndarray     # beta - centre of the residuals
    rss: np.ndarray   # sum w (r - d)^2 = y'Py
    ypp: np.ndarray   # y'PPy
    trP: np.ndarray
    trPP: np.ndarray
    yp3: np.ndarray   # y'PPPy
    W2: np.ndarray    # sum w^2


def _fit_parts(T: np.ndarray) -> _Parts:
    T10, T11, T12 = T[:, 0, 0], T[:, 0, 1], T[:, 0, 2]
    T20, T21, T22 = T[:, 1, 0], T[:, 1, 1], T[:, 1, 2]
    T30, T31, T32 = T[:, 2, 0], T[:, 2, 1], T[:, 2, 2]
    d = T11 / T10
    rss = np.maximum(T12 - T11 * d, 0.0)
    ypp = np.maximum(T22 - 2 * d * T21 + d * d * T20, 0.0)
    h = T20 / T10
    e = T21 - d * T20
    yp3 = np.maximum(T32 - 2 * d * T31 + d * d * T30 - e * e / T10, 0.0)
    return _Parts(T10, d, rss, ypp, T10 - h, T20 - 2 * T30 / T10 + h * h, yp3, T20)


def _score(method: str, p: _Parts, size: np.ndarray):
    """(score, Fisher information, derivative of the score) of ML, REML and EB.

    The score is metafor's numerator of the Fisher-scoring step and the
    information its denominator: REML (y'PPy - tr P) / tr PP, ML
    (y'PPy - sum w) / sum w^2, EB (y'Py k/(k-1) - k) / sum w.
    """
    if method == "REML":
        return p.ypp - p.trP, p.trPP, p.trPP - 2 * p.yp3
    if method == "ML":
        return p.ypp - p.W0, p.W2, p.W2 - 2 * p.yp3
    f = size / (size - 1.0)  # EB
    return p.rss * f - size, p.W0, -p.ypp * f


def _iterate(method, sums, rows, start, step_rule, max_iter):
    """Iterate ``step_rule`` on every analysis in ``rows`` until it says done.

    ``step_rule(t, score, info, slope) -> (new, done)``; analyses that are
    done leave the batch. Returns (tau2, converged).
    """
    tau2 = np.maximum(np.asarray(start, dtype=float).copy(), 0.0)
    done = np.zeros(rows.size, dtype=bool)
    size = sums.size[rows]
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        t = tau2[act]
        score, info, slope = _score(method, _fit_parts(sums.at(t, rows[act])[0]), size[act])
        with np.errstate(divide="ignore", invalid="ignore"):
            tau2[act], done[act] = step_rule(t, score, info, slope)
    return tau2, done


def _newton_step(t, score, info, slope):
    """Newton where the score decreases (Fisher scoring elsewhere), clamped at 0 as
    ``ntxmeta.rma``'s Fisher scoring; done at a change below ``TAU2_RTOL`` (relative
    to max(1, tau^2)) or when a step from 0 points below 0."""
    step = np.where(slope < 0, score / -slope, score / info)
    step = np.where(np.isfinite(step), step, 0.0)
    at_zero = (t == 0) & (step < 0)
    new = np.where((t + step < 0) | at_zero, 0.0, t + step)
    return new, at_zero | (np.abs(new - t) <= TAU2_RTOL * np.maximum(1.0, new))


def _metafor_step(threshold):
    """metafor 3.8-1's Fisher-scoring step: adj = score / information (0 if NA),
    halved while tau^2 + adj < 0; done when |change| <= ``threshold``."""
    def step(t, score, info, slope):
        adj = score / info
        adj = np.where(np.isnan(adj), 0.0, adj)
        adj = np.where((t == 0) & (adj < 0), 0.0, adj)  # halved at 0 until it vanishes
        neg = t + adj < 0
        while np.any(neg):
            adj = np.where(neg, adj / 2, adj)
            neg = t + adj < 0
        new = t + adj
        return new, np.abs(t - new) <= threshold
    return step


def _newton(method, sums, rows, start):
    """Fully converged ML/REML/EB tau^2 for ``rows`` by ``_newton_step``."""
    return _iterate(method, sums, rows, start, _newton_step, NEWTON_MAX_ITER)


def _fisher_metafor(method, sums, rows, start, control: Control = METAFOR_DEFAULT):
    """metafor 3.8-1's Fisher scoring under a replayed ``control`` from max(0, start)
    (metafor: HE), step for step; an analysis not done within ``control.maxiter``
    iterations has not converged (metafor: "Fisher scoring algorithm did not converge")."""
    return _iterate(method, sums, rows, start, _metafor_step(control.threshold), control.maxiter)


def _loglik_gain(method, sums, rows, tau2, fe):
    """ll(tau2) - ll(0) of ML or REML for the subsets ``rows``."""
    T, L = sums.at(tau2, rows, log=True)
    p = _fit_parts(T)
    p0, L0 = fe
    gain = -0.5 * (L - L0[rows]) - 0.5 * (p.rss - p0.rss[rows])
    if method == "REML":
        gain = gain - 0.5 * (np.log(p.W0) - np.log(p0.W0[rows]))
    return gain


def _subset(kind, i, y, v):
    if kind == "loo":
        return np.delete(y, i), np.delete(v, i)
    if kind == "cumul":
        return y[:i + 1], v[:i + 1]
    return y, v


def _refit_one(method, kind, i, y, v):
    """tau^2 of one explicit subset by ``ntxmeta.rma`` (fallback, O(k))."""
    ys, vs = _subset(kind, i, y, v)
    return float(_tau2(method, ys[None, :], vs[None, :], np.ones((1, ys.size)), None,
                       np.array([float(ys.size)]), 1, None)[0][0])


def _batch_tau2(method, y, v, kind):
    """tau^2 of every subset via rma_batch on NaN-padded blocks (SJ, PM, PMM)."""
    k = y.size
    m = 1 if kind == "all" else k
    out = np.zeros(m)
    block = max(1, BLOCK_ENTRIES // k)
    for s in range(0, m, block):
        rows = np.arange(s, min(m, s + block))
        Y = np.broadcast_to(y, (rows.size, k)).copy()
        if kind == "loo":
            Y[np.arange(rows.size), rows] = np.nan
        elif kind == "cumul":
            Y[np.arange(k)[None, :] > rows[:, None]] = np.nan
        V = np.broadcast_to(v, Y.shape)
        multi = np.isfinite(Y).sum(axis=1) > 1
        if np.any(multi):
            out[rows[multi]] = rma_batch(Y[multi], V[multi], method=method).tau2
    return out


@dataclass(frozen=True)
class _Batch:
    """Everything the public results and influence() need, one entry per analysis.

    NaN rows: analyses whose fit did not converge under metafor's default
    stopping rule (``control=METAFOR_DEFAULT``), as metafor records them.
    """

    size: np.ndarray
    tau2: np.ndarray
    estimate: np.ndarray
    var: np.ndarray        # Var(beta) including s2w
    s2w: np.ndarray
    df: np.ndarray | None  # t-test df per analysis (NaN where z); None for test="z"
    Q: np.ndarray
    Qp: np.ndarray
    I2: np.ndarray
    H2: np.ndarray
    W0: np.ndarray         # sum of the RE weights over the subset
    refits: int            # analyses refitted one by one after Newton failed


def _check_inputs(yi, vi, method, test, level, control):
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.ndim != 1 or v.ndim != 1 or y.shape != v.shape:
        raise ValueError("yi and vi must be one-dimensional arrays of equal length")
    if y.size == 0:
        raise ValueError("no studies: yi and vi are empty")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("yi and vi must be finite (drop studies with missing effects first)")
    if np.any(v <= 0):
        raise ValueError("sampling variances vi must be > 0")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if method not in METHODS and method not in COMMON_ALIASES:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if method in ("GENQ", "GENQM"):
        raise ValueError(f"method={method!r} needs user weights; not offered for leave-one-out, "
                         "influence or cumulative fits")
    if not 0 < float(level) < 100:
        raise ValueError(f"level must be in (0, 100), got {level!r}")
    _check_control(control)
    return y, v, ("EE" if method in COMMON_ALIASES else method)


def _batch(y, v, kind, method, test, control: Control = FULL) -> _Batch:
    """Fit every subset (leave-one-out, prefix or the full set) of one analysis."""
    k = y.size
    note_fit("batch")
    # centre: the full-data estimates, which every subset's answer lies near
    c_tau2 = float(estimate_tau2(y, v, method=method)) if k > 1 else 0.0
    w_c = 1.0 / (v + c_tau2)
    c_y = float((w_c * y).sum() / w_c.sum())
    r = y - c_y  # residuals about the full-data estimate keep the sums small
    iterative = method in ITERATIVE_METHODS
    fe = _SubsetSums(v, r, kind, [0.0])
    T0, L0 = fe.at(np.zeros(fe.m), log=method in ("REML", "ML"))
    p0 = _fit_parts(T0)
    size = fe.size
    multi = size > 1
    df_q = np.maximum(size - 1, 1)
    Q = np.where(multi, p0.rss, 0.0)
    # HE: metafor's starting value of Fisher scoring, and an estimator itself
    s1, s2, sv = fe.plain(r), fe.plain(r * r), fe.plain(v)
    he = np.where(multi, np.maximum((s2 - s1 * s1 / size - (1 - 1 / size) * sv) / df_q, 0.0), 0.0)
    metafor = control.replay and iterative
    centres = [c_tau2] + ([float(he[multi].mean()), 0.0] if iterative and np.any(multi) else [])
    sums = _SubsetSums(v, r, kind, centres)
    refits = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "EE":
            tau2 = np.zeros(fe.m)
        elif method == "DL":
            tau2 = np.where(multi, np.maximum((Q - (size - 1)) / p0.trP, 0.0), 0.0)
        elif method in ("HS", "HSk"):
            qq = Q if method == "HS" else size / df_q * Q
            tau2 = np.where(multi, np.maximum((qq - size) / p0.W0, 0.0), 0.0)
        elif method == "HE":
            tau2 = he
        elif iterative:
            tau2 = np.zeros(fe.m)
            rows = np.flatnonzero(multi)
            if rows.size:
                # metafor's path: Fisher scoring from HE, halving steps that would leave [0, inf)
                # (the start of the full path too: it finds metafor's maximum)
                t, conv = _fisher_metafor(method, sums, rows, he[rows],
                                          control if metafor else METAFOR_DEFAULT)
                if metafor:
                    t[~conv] = np.nan
                else:
                    # the same maximum, converged fully by Newton steps
                    t, conv = _newton(method, sums, rows, t)
                    for j in np.flatnonzero(~conv):
                        t[j] = _refit_one(method, kind, rows[j], y, v)
                    refits = int((~conv).sum())
                if method != "EB":
                    tol, floor = ((control.tol, control.threshold) if metafor
                                  else (LL0_TOL, 0.0))
                    pos = np.flatnonzero(t > floor)
                    if pos.size:
                        gain = _loglik_gain(method, sums, rows[pos], t[pos], (p0, L0))
                        t[pos[-gain > tol]] = 0.0
                tau2[rows] = t
        else:  # SJ, PM, PMM
            tau2 = _batch_tau2(method, y, v, kind)
    ok = np.isfinite(tau2)
    p = _fit_parts(sums.at(np.where(ok, tau2, c_tau2))[0])
    estimate = c_y + p.d
    if test in HK_TESTS:
        s2w = np.where(multi, knha_s2w(p.rss, df_q, test), 1.0)
        df = np.where(multi, size - 1.0, np.nan)
    else:
        s2w, df = np.ones(fe.m), None
    var = s2w / p.W0
    Qp = np.where(multi, stats.chi2.sf(Q, df_q), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "EE":
            I2 = np.where(Q > 0, np.maximum(0.0, 100 * (Q - (size - 1)) / Q), 0.0)
            H2 = np.where(multi, Q / df_q, 1.0)
        else:
            vt = (size - 1) / p0.trP
            I2 = np.where(multi, 100 * tau2 / (vt + tau2), 0.0)
            H2 = np.where(multi, tau2 / vt + 1, 1.0)
    na = lambda x: np.where(ok, x, np.nan)  # noqa: E731 - metafor's NA row
    return _Batch(size, na(tau2), na(estimate), na(var), na(s2w),
                  None if df is None else na(df), na(Q), na(Qp), na(I2), na(H2), na(p.W0), refits)


def _tests(b: _Batch, level: float):
    """se, stat, pval, ci_lb, ci_ub per analysis (z, or t with the row's df)."""
    se = np.sqrt(b.var)
    alpha = 1 - level / 100
    zc = stats.norm.isf(alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = b.estimate / se
        if b.df is None:
            crit = np.full(se.shape, zc)
            pval = 2 * stats.norm.sf(np.abs(stat))
        else:
            is_t = np.isfinite(b.df)
            dfv = np.where(is_t, b.df, 1.0)
            crit = np.where(is_t, stats.t.isf(alpha / 2, dfv), zc)
            pval = np.where(is_t, 2 * stats.t.sf(np.abs(stat), dfv), 2 * stats.norm.sf(np.abs(stat)))
        lb, ub = b.estimate - crit * se, b.estimate + crit * se
    return se, stat, pval, lb, ub


# --------------------------------------------------------------------------- public results

@dataclass(frozen=True)
class SubsetFits:
    """Intercept-only fits of many subsets of one analysis; arrays of shape (m,).

    ``k`` is the number of studies in each fit; ``stat`` is a z value for
    ``test="z"`` and a t value (``df`` = k - 1) under knha, where one-study
    fits fall back to z (``df`` NaN). ``I2_pct`` is in percent. Rows are
    NaN where metafor's default stopping rule fails (``control=METAFOR_DEFAULT``).
    """

    method: str
    test: str
    level: float
    control: Control
    k: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    Q: np.ndarray
    Qp: np.ndarray
    tau2: np.ndarray
    I2_pct: np.ndarray
    H2: np.ndarray
    df: np.ndarray | None


@dataclass(frozen=True)
class Leave1Out(SubsetFits):
    """Row i: the model without study i (metafor's ``leave1out``)."""


@dataclass(frozen=True)
class Cumulative(SubsetFits):
    """Row j: the model on the first j + 1 studies of ``order`` (metafor's ``cumul``).

    ``order`` holds the input indices of the studies in cumulative order.
    """

    order: np.ndarray | None = None


@dataclass(frozen=True)
class Influence:
    """metafor's ``influence()`` diagnostics, one entry per study (input order).

    ``weight_pct`` is the study's weight in percent; ``dfbetas`` is the
    DFBETAS of the intercept (the only coefficient); ``is_infl`` the flag
    that metafor marks with "*" (a masked array: masked where R gives NA).
    """

    rstudent: np.ndarray
    dffits: np.ndarray
    cook_d: np.ndarray
    cov_r: np.ndarray
    tau2_del: np.ndarray
    QE_del: np.ndarray
    hat: np.ndarray
    weight_pct: np.ndarray
    dfbetas: np.ndarray
    is_infl: np.ndarray
    leave1out: Leave1Out


def _subset_fits(cls, y, v, kind, method, test, level, control, **extra):
    if control.replay and method in ITERATIVE_METHODS:
        _full_fit(y, v, method, test, control)  # metafor needs the fitted model first
    b = _batch(y, v, kind, method, test, control)
    se, stat, pval, lb, ub = _tests(b, level)
    return cls(method=method, test=test, level=float(level), control=control, k=b.size,
               estimate=b.estimate, se=se, stat=stat, pval=pval, ci_lb=lb, ci_ub=ub, Q=b.Q,
               Qp=b.Qp, tau2=b.tau2, I2_pct=b.I2, H2=b.H2, df=b.df, **extra), b


_PARAMS_DOC = """
    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effects and sampling variances (finite, vi > 0).
    method : str
        tau^2 estimator of ``ntxmeta.rma.METHODS`` except GENQ/GENQM.
    test : {"z", "knha", "adhoc"}
        adhoc: knha with s2w floored at 1 (``ntxmeta.rma.knha_s2w``).
    level : float
        Confidence level in percent.
    control : ntxmeta.rma.Control
        ``FULL`` (default) converges REML/ML/EB to ``ntxmeta.rma.TAU2_RTOL``,
        as metafor with control=list(threshold=1e-12); ``METAFOR_DEFAULT``
        replays metafor's default control (Fisher scoring from HE, threshold
        1e-5, 100 iterations, NaN rows where metafor's fit fails), which is
        what metafor's own functions print by default."""


def leave1out(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0,
              control: Control = FULL) -> Leave1Out:
    y, v, m = _check_inputs(yi, vi, method, test, level, control)
    if y.size == 1:
        raise MetaError(STOP_K1)
    return _subset_fits(Leave1Out, y, v, "loo", m, test, level, control)[0]


leave1out.__doc__ = f"""Leave-one-out fits; matches metafor 3.8-1 ``leave1out(rma(yi, vi, ...))``.
{_PARAMS_DOC}

    Returns
    -------
    Leave1Out
        Row i is ``rma(np.delete(yi, i), np.delete(vi, i), ...)``.

    Raises
    ------
    ValueError
        k = 1 ("Stopped because k = 1.", as metafor) and bad input.

    Notes
    -----
    O(k N) time per Newton iteration (N <= ``N_MAX`` series terms) and
    O(k N) memory; see the module docstring. k = 2 gives one-study fits
    (tau^2 = 0, Q = 0).
    """


def stable_order(keys) -> np.ndarray:
    """R's ``order(keys)``: ascending, ties in input order, NaN last."""
    keys = np.asarray(keys, dtype=float)
    return np.argsort(keys, kind="stable")  # numpy sorts NaN to the end


def cumulative(yi, vi, order=None, *, method: str = "REML", test: str = "z",
               level: float = 95.0, control: Control = FULL) -> Cumulative:
    y, v, m = _check_inputs(yi, vi, method, test, level, control)
    if order is None:
        idx = np.arange(y.size)
    else:
        keys = np.asarray(order, dtype=float)
        if keys.shape != y.shape:
            raise ValueError(f"order has {keys.size} keys for {y.size} studies")
        idx = stable_order(keys)
    return _subset_fits(Cumulative, y[idx], v[idx], "cumul", m, test, level, control,
                        order=idx)[0]


cumulative.__doc__ = f"""Cumulative fits; matches metafor 3.8-1 ``cumul(rma(yi, vi, ...), order=order)``.
{_PARAMS_DOC}
    order : array_like, shape (k,), optional
        Sort keys (e.g. publication year): studies enter in ascending order,
        ties in input order, missing (NaN) keys last, as R's ``order()``.
        None keeps the input order.

    Returns
    -------
    Cumulative
        Row j is the fit on the first j + 1 studies; ``order`` gives their
        input indices. Row 0 is a one-study fit (tau^2 = 0, Q = 0, p = 1);
        k = 1 is allowed, as in metafor.
    """


def _full_fit(y, v, method, test, control):
    """(tau2, beta, Var(beta)) of the full model, with the same engine and stopping rule."""
    b = _batch(y, v, "all", method, test, control)
    if not np.isfinite(b.tau2[0]):
        raise MetaError("Fisher scoring algorithm did not converge. See 'help(rma)' for "
                        "possible remedies.")
    return float(b.tau2[0]), float(b.estimate[0]), float(b.var[0])


def influence(yi, vi, *, method: str = "REML", test: str = "z", level: float = 95.0,
              control: Control = FULL) -> Influence:
    y, v, m = _check_inputs(yi, vi, method, test, level, control)
    k = y.size
    if k == 1:
        raise MetaError(STOP_K1)
    tau2, beta, vb = _full_fit(y, v, m, test, control)
    if not vb > 0:
        raise MetaError("the variance of the pooled estimate is 0, so Cook's distance "
                        "is undefined (metafor: Cholesky factorisation fails)")
    l1o, b = _subset_fits(Leave1Out, y, v, "loo", m, test, level, control)
    w = 1.0 / (v + tau2)
    hat = w / w.sum()
    hat = np.where(hat > 1 - HAT_ONE_EPS * _EPS, 1.0, hat)
    resid = y - b.estimate
    resid = np.where(np.abs(resid) < RESID_ZERO_EPS * _EPS, 0.0, resid)
    rstudent = resid / np.sqrt(v * b.s2w + b.var + b.tau2 * b.s2w)
    dfb = beta - b.estimate
    dffits = dfb / np.sqrt(b.s2w * hat * (b.tau2 + v))
    w_all = b.W0 + 1.0 / (v + b.tau2)  # all k studies at the deleted tau^2
    dfbetas = dfb / np.sqrt(b.s2w / w_all)
    cook = dfb**2 / vb
    covr = b.var / vb
    p = 1
    with np.errstate(invalid="ignore"):
        is_infl = _r_or(np.abs(dffits) > 3 * np.sqrt(p / (k - p)), dffits,
                        stats.chi2.cdf(cook, p) > 0.5, cook,
                        hat > 3 * p / k, hat,
                        np.abs(dfbetas) > 1, dfbetas)
    return Influence(rstudent=rstudent, dffits=dffits, cook_d=cook, cov_r=covr, tau2_del=b.tau2,
                     QE_del=b.Q, hat=hat, weight_pct=100 * hat, dfbetas=dfbetas,
                     is_infl=is_infl, leave1out=l1o)


influence.__doc__ = f"""Case-deletion diagnostics; matches metafor 3.8-1 ``influence(rma(yi, vi, ...))``.
{_PARAMS_DOC}

    Returns
    -------
    Influence
        One entry per study. With (-i) the fit without study i, w_i =
        1/(v_i + tau^2) at the full fit and s2w = 1 for z tests:

        * hat_i = w_i / sum w; weight = 100 hat_i
        * rstudent_i = (y_i - beta_(-i)) / sqrt(s2w_(-i) (v_i + tau^2_(-i)) + Var(beta_(-i)))
        * DFFITS_i = (beta - beta_(-i)) / sqrt(s2w_(-i) hat_i (tau^2_(-i) + v_i))
        * DFBETAS_i = (beta - beta_(-i)) / sqrt(s2w_(-i) / sum_j 1/(v_j + tau^2_(-i)))
        * Cook's D_i = (beta - beta_(-i))^2 / Var(beta)
        * COVRATIO_i = Var(beta_(-i)) / Var(beta)
        * influential: |DFFITS| > 3 sqrt(1/(k-1)), P(chi^2_1 <= D) > 0.5,
          hat > 3/k or |DFBETAS| > 1 (R's three-valued "or": masked where
          no rule holds and one is NA).

    Raises
    ------
    ValueError
        k = 1 ("Stopped because k = 1."), a full-model variance of 0 (knha
        with Q = 0: metafor's Cholesky factorisation of Var(beta) fails), a
        full fit that metafor's stopping rule does not reach
        (``control=METAFOR_DEFAULT``), and bad input.
    """


def _r_or(*pairs) -> np.ma.MaskedArray:
    """R's ``|`` over conditions: TRUE if any holds, NA if none holds and one is NA.

    ``pairs`` alternates a condition and the values it was computed from
    (NaN values make that condition NA).
    """
    conds, vals = pairs[0::2], pairs[1::2]
    true = np.zeros(np.shape(conds[0]), dtype=bool)
    na = np.zeros_like(true)
    for c, x in zip(conds, vals):
        unknown = np.isnan(x)
        true |= c & ~unknown
        na |= unknown
    return np.ma.masked_array(true, mask=na & ~true)


# --------------------------------------------------------------------------- sections

#: Methods of the reference sections (oracle.R): leave1out and cumul for
#: REML and DL, influence for REML.
L1O_METHODS = ("REML", "DL")
CUMUL_METHODS = ("REML", "DL")
INFLUENCE_METHODS = ("REML",)
#: The sections reproduce what metafor's leave1out(), influence() and cumul()
#: report with their default control (the oracle has no tight version of
#: them), unless the spec's options say ``"control": "full"`` (the pipeline):
#: ``data.control``, as ``ntxmeta.data`` translated the spec.
CUMUL_NOTE = ("cumul(fit, order=year): stable sort by year (ties keep CSV order, missing "
              "last); row j = fit on the first j studies in that order.")


def _fits_dict(f: SubsetFits, slab, pval_key: str) -> dict:
    stat_key = "zval" if f.test == "z" else "tval"
    return {"slab": list(slab), "estimate": f.estimate, "se": f.se, stat_key: f.stat,
            pval_key: f.pval, "ci.lb": f.ci_lb, "ci.ub": f.ci_ub, "Q": f.Q, "Qp": f.Qp,
            "tau2": f.tau2, "I2": f.I2_pct, "H2": f.H2}


def _used(data: AnalysisData):
    u = data.used
    return data.yi[u], data.vi[u], [s for s, keep in zip(data.slab, u) if keep]


def leave1out_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """``leave1out.{REML,DL}`` as oracle.R writes it."""
    y, v, slab = _used(data)

    def one(m):
        return _fits_dict(leave1out(y, v, method=m, level=data.level,
                                    control=data.control), slab, "pval")

    return {m: guarded(one, m) for m in L1O_METHODS if sub is None or m in sub}


def _influence_dict(y, v, slab, method, level, control) -> dict:
    inf = influence(y, v, method=method, level=level, control=control)
    flags = inf.is_infl.filled(False)
    return {"slab": list(slab), "rstudent": inf.rstudent, "dffits": inf.dffits,
            "cook.d": inf.cook_d, "cov.r": inf.cov_r, "tau2.del": inf.tau2_del,
            "QE.del": inf.QE_del, "hat": inf.hat, "weight": inf.weight_pct,
            "inf": ["*" if f else "" for f in flags],
            "dfbetas": {"intrcpt": inf.dfbetas}, "is.infl": inf.is_infl.tolist()}


def influence_section(data: AnalysisData, sub: set[str] | None) -> dict:
    """``influence.REML`` as oracle.R writes it."""
    y, v, slab = _used(data)
    return {m: guarded(_influence_dict, y, v, slab, m, data.level, data.control)
            for m in INFLUENCE_METHODS if sub is None or m in sub}


def cumul_section(data: AnalysisData, sub: set[str] | None) -> dict | None:
    """``cumul.{REML,DL}`` ordered by the spec's year column; None without one."""
    if data.year is None:
        return None
    y, v, slab = _used(data)
    year = data.year[data.used]
    # AnalysisData keeps the year values but not the column's name (see the report)
    order_by = getattr(data, "year_name", None) or "year"

    def one(m):
        c = cumulative(y, v, year, method=m, level=data.level,
                       control=data.control)
        d = _fits_dict(c, [slab[i] for i in c.order], "pvals")
        d["order_by"] = order_by
        return d

    out: dict = {m: guarded(one, m) for m in CUMUL_METHODS if sub is None or m in sub}
    out["note"] = CUMUL_NOTE
    return out


oracle.register("leave1out", leave1out_section)
oracle.register("influence", influence_section)
oracle.register("cumul", cumul_section)
