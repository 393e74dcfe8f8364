"""Multilevel and multivariate random-effects models: metafor's ``rma.mv``.

Model (Viechtbauer 2010 [1]; Konstantopoulos 2011 [2]; Berkey et al. 1998 [3])
-------------------------------------------------------------------------------
y = X beta + sum_j u_j + g + e, with e ~ N(0, V) (V known: diagonal, or
block-diagonal by trial for correlated estimates), and random effects

* ``Nested(outer, inner)`` (metafor ``random = ~ 1 | outer/inner``): one
  variance per level, sigma2_1 for ``outer`` and sigma2_2 for ``inner``
  within ``outer``; its covariance is sigma2_j Z_j Z_j' with Z_j the
  indicator matrix of level j;
* ``Structured(inner, outer, struct)`` (metafor ``random = ~ inner | outer``):
  estimates of the same ``outer`` (trial) share a random effect per level of
  ``inner`` (outcome, time point, comparison), with L x L covariance G over
  the sorted levels of ``inner``; its covariance is (Z1 G Z1') o (Z2 Z2')
  (o the elementwise product, Z1 the indicators of ``inner``, Z2 of
  ``outer``). G = D R D with D = diag(sqrt(tau2)) and

  =====  =====================================  ===========================
  CS     R_lm = rho (l != m), one tau2           compound symmetry
  HCS    R_lm = rho, tau2 per level              heteroscedastic CS
  UN     R_lm = rho_lm, tau2 per level           unstructured
  AR     R_lm = rho^|l - m|, one tau2            AR(1) over the level index
  HAR    R_lm = rho^|l - m|, tau2 per level      heteroscedastic AR(1)
  =====  =====================================  ===========================

  (metafor's ``.con.E``; AR uses the rank of the level, not its value, as
  metafor's ``toeplitz(ARMAacf(rho))``). ``rho=`` fixes the correlation (the
  contrast-based network models fix rho = 1/2 so that tau2 is the
  heterogeneity of every comparison).

With M = V + random-effects covariance and W = M^-1:
beta = (X'WX)^-1 X'Wy, Var(beta) = (X'WX)^-1, and the log-likelihoods

    ll_ML   = -k/2 log(2 pi) - 1/2 log|M| - 1/2 r'Wr
    ll_REML = -(k-p)/2 log(2 pi) + 1/2 log|X'X| - 1/2 log|M| - 1/2 log|X'WX| - 1/2 r'Wr

(metafor's ``.ll.rma.mv`` with ``REMLf = TRUE``). They are maximised over
log variances and atanh correlations by ``scipy.optimize.minimize``
(``trust-exact``) with the analytic score d ll/d theta_i = -1/2 tr(P D_i) +
1/2 y'P D_i P y (D_i = dM/dtheta_i, P = W - WX(X'WX)^-1X'W for REML, W for
ML) and, for the Hessian, the exact observed information

    -d2 ll/dtheta_i dtheta_j = 2 AI_ij - I_ij - s(D_ij)

with the expected information I_ij = 1/2 tr(P D_i P D_j), the average
information AI_ij = 1/2 y'P D_i P D_j P y (Gilmour, Thompson & Cullis 1995
[6]; P, REML's, for ML too, which accounts for beta's dependence on theta)
and s(D_ij) = -1/2 tr(P D_ij) + 1/2 y'P D_ij P y for the second derivatives
D_ij = d2M/dtheta_i dtheta_j (``_Model.second``; tests/test_oracle_mv.py
checks it against differences of the score). The expected information alone
converged linearly, 30-60 steps, far from the optimum, as in profile fits. The optimiser stops when
the Fisher step left is below 1e-9 in every transformed parameter (1e-7
where the rounding of ll stops it first); a variance that heads for 0 or a
correlation for +-1 is then tried at exactly that boundary (metafor sets a
variance <= 10 eps to 0). Starting values are metafor's (each variance
total/(number of variances), rho = 0.5).

Cost: up to ``DENSE_MAX_K`` estimates one evaluation of ll, score and
information uses k x k matrices; above it, sums over the independent
blocks of M (connected components of V and the random-effects terms: the
trials), batched by block size, so that a three-level model of 1,000
estimates in 200 districts costs 0.5 ms per evaluation instead of 141 ms.
The random-effects terms are kept as codes and V as a vector when it is
diagonal, so memory is O(k + sum_b n_b^2) (k = 100,000 in blocks of 5: 2.5
s, 66 MB); a full V is O(k^2) as given. QE and CR2 use the same blocks;
k x k matrices are made only on the dense path and by ``MVFit.M``.

Around the fit, as ``rma.mv`` 3.8-1: Wald z (or t with k - p df,
``test="t"``) tests and CIs; QM over the coefficients (all of them without
an intercept, all but the intercept with one; F = QM/m under t); QE = r'V^-1 r
of the common-effect GLS fit, chi^2(k - p); fit statistics with parms = p +
the number of estimated variance components and correlations, deviance
-2(ll_ML - ll_sat) with ll_sat = -k/2 log(2 pi) - 1/2 log|V| for ML and
-2 ll_REML for REML, BIC and AICc on k (ML) or k - p (REML) observations.

``confint`` gives profile-likelihood CIs of each variance component and
correlation (metafor ``confint.rma.mv``: the values where 2 (ll_max -
ll_profile) = chi^2_1(0.95), searched in [0, max(10, 100 est)] for
variances and [-1, 1] for correlations ([min(0, est), 1] for AR), the
search bound returned where the profile does not reach the cut-off).
``anova`` is the likelihood-ratio test of two nested fits; ``wald`` tests
linear combinations of the coefficients (metafor ``anova(fit, X = L)``); ``cr2`` the
cluster-robust CR2 variance with Satterthwaite df (Pustejovsky & Tipton
2018 [4], as clubSandwich 0.5.8 ``coef_test(fit, vcov = "CR2")`` for an
rma.mv model: working weights W = M^-1, target M, "inverse_var" form).

Why written here: statsmodels' MixedLM fits random effects with an
estimated residual variance, not a known V, and has no structured (CS,
HCS, UN, AR) covariance between levels of a factor; pymare fits only the
univariate model; nothing in Python gives clubSandwich's CR2 with
Satterthwaite df for these models. The matrices are dense k x k, as in
metafor (the models here have k of tens to a few thousand).

References
----------
1. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3); metafor 3.8-1 ``rma.mv``, ``confint``,
   ``anova``, ``vcalc`` help pages.
2. Konstantopoulos S (2011). Fixed effects and variance components
   estimation in three-level meta-analysis. Res Synth Methods 2:61-76.
3. Berkey CS, Hoaglin DC, Antczak-Bouckoms A, Mosteller F, Colditz GA
   (1998). Meta-analysis of multiple outcomes by regression with random
   effects. Stat Med 17:2537-2550.
4. Pustejovsky JE, Tipton E (2018). Small-sample methods for cluster-robust
   variance estimation and hypothesis testing in fixed effects models.
   J Bus Econ Stat 36:672-683.
5. Gleser LJ, Olkin I (2009). Stochastically dependent effect sizes. In
   Cooper, Hedges, Valentine (eds), The Handbook of Research Synthesis and
   Meta-Analysis, 2nd ed., 357-376 (covariances of estimates that share a
   control arm, eq. 19.11 for log odds ratios).
6. Gilmour AR, Thompson R, Cullis BR (1995). Average information REML: an
   efficient algorithm for variance parameter estimation in linear mixed
   models. Biometrics 51:1440-1450.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy import linalg, optimize, sparse, special
from scipy.sparse import csgraph
from threadpoolctl import ThreadpoolController

from ._common import Interval, MetaError, t_crit, z_crit
from .rma import FitStats

METHODS = ("REML", "ML")
TESTS = ("z", "t")
STRUCTS = ("CS", "HCS", "UN", "AR", "HAR")
#: Structures with one tau2 per level of ``inner`` (the others share one).
HETERO = ("HCS", "UN", "HAR")
#: Gradient tolerance of trust-exact on the log-likelihood in the transformed
#: parameters (it usually stops earlier on ``STEP_TOL``). metafor's
#: reference fits (make_mv.R) are polished nlminb/optim/nlm fits whose
#: parameters are good to ~1e-7 where the likelihood is flat.
GTOL = 1e-11
#: Iteration cap of the optimiser; hitting it raises MetaError unless only
#: components at their boundary are still moving (see ``ACCEPT_GRAD``).
MAXITER = 500
#: trust-exact stops before GTOL when rounding in the log-likelihood (~1e-14
#: relative) hides any further gain ("bad approximation"); a score this
#: small then moves no component by more than ~1e-9 relative.
PRECISION_GRAD = 1e-8
#: The Hessian of trust-exact: "expected" (Fisher information) or "observed".
HESSIAN = "observed"
#: A free correlation this close to +-1 when the optimiser stops is tried at +-1.
RHO_BOUNDARY = 1e-6
#: Stop when the Fisher step I^-1 g left is below this in every transformed
#: parameter (log variance, atanh correlation): variances are then within
#: ~1e-9 relative of the optimum, correlations within ~1e-9.
STEP_TOL = 1e-9
#: Where trust-exact stops because the rounding of ll (~1e-16 |ll|) hides
#: any further gain, a Fisher step left below this is accepted (1e-7
#: relative in a variance, against the 1e-6 of the conformance tests).
ROUNDING_STEP_TOL = 1e-7
#: Largest score (in the transformed parameters) of a component not at its
#: boundary that is accepted when the optimiser stops without converging.
ACCEPT_GRAD = 1e-6
#: A variance whose estimate falls below this fraction of the total
#: variance of y is tried at exactly 0 (metafor: <= 10 eps is set to 0).
BOUNDARY_REL = 1e-6
#: Profile-likelihood CIs: root tolerance of brentq on the component
#: (metafor's reference uses uniroot tol 1e-10, see make_mv.R).
PROFILE_XTOL = 1e-12
#: Up to this k one evaluation uses k x k matrices (a few BLAS calls); above
#: it, sums over the independent blocks of M (batched by block size), whose
#: cost grows with the blocks, not k^3. Measured (bench/README.md): at k = 82
#: dense 0.3 ms vs blocks 0.5 ms per evaluation; at k = 1,000 in blocks of
#: 5, dense 141 ms vs blocks 0.5 ms.
DENSE_MAX_K = 120
#: metafor's ``eptries`` of confint.rma.mv (tries to move a range end inwards).
EPTRIES = 10
#: metafor's ``eps`` below which a variance is treated as 0 in the search bound.
SQRT_EPS = float(np.sqrt(np.finfo(float).eps))


#: The k x k solves here are small (k of tens to a few thousand): a threaded
#: BLAS on a busy 2-core machine made them ~10x slower (bench/README.md), so
#: the public functions run BLAS on one thread. The controller is built once
#: (it inspects the loaded libraries, ~ms).
_BLAS = ThreadpoolController()


def _one_blas_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _BLAS.limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------- specification

def _codes(x, name: str) -> tuple[np.ndarray, list]:
    """Integer codes 0..n-1 of a grouping variable, levels sorted (R's factor())."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    levels, codes = np.unique(a, return_inverse=True)
    return codes.astype(int), list(levels)


@dataclass(frozen=True)
class Nested:
    """``random = ~ 1 | outer/inner`` (or ``~ 1 | outer`` when inner is None).

    Gives sigma2 per level: sigma2[0] for ``outer``, sigma2[1] for the
    combination (outer, inner). Codes are any hashable labels, one per estimate.
    """

    outer: Sequence
    inner: Sequence | None = None

    def levels(self) -> list[np.ndarray]:
        o = np.asarray(self.outer)
        out = [_codes(o, "Nested.outer")[0]]
        if self.inner is not None:
            pairs = np.array([f"{a}\x1f{b}" for a, b in zip(o, np.asarray(self.inner))])
            out.append(_codes(pairs, "Nested.inner")[0])
        return out


@dataclass(frozen=True)
class Structured:
    """``random = ~ inner | outer`` with ``struct`` = CS, HCS, UN, AR or HAR.

    ``inner``: outcome / time point / comparison of each estimate (levels are
    sorted, so tau2[l] belongs to the l-th sorted level; for AR/HAR the
    sorted order is the time order); ``outer``: its trial. ``rho``: a fixed
    correlation (metafor's ``rho=``), else estimated.
    """

    inner: Sequence
    outer: Sequence
    struct: str = "CS"
    rho: float | None = None

    def __post_init__(self):
        if self.struct not in STRUCTS:
            raise ValueError(f"struct must be one of {STRUCTS}, got {self.struct!r}")
        if self.rho is not None and not -1 <= self.rho <= 1:
            raise ValueError(f"rho must be in [-1, 1], got {self.rho}")


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class _Par:
    """One variance component or correlation: kind, index, and how it is transformed."""

    kind: str      # "sigma2" | "tau2" | "rho"
    index: int     # position within its kind
    fixed: float | None = None   # natural-scale value when fixed

    def to_theta(self, v: float) -> float:
        if self.kind == "rho":
            with np.errstate(divide="ignore"):
                return float(np.arctanh(np.clip(v, -1.0, 1.0)))
        return float(np.log(v)) if v > 0 else -np.inf

    def to_natural(self, t: float) -> float:
        return float(np.tanh(t)) if self.kind == "rho" else float(np.exp(t))


class _Model:
    """The covariance M(theta) of one model and its derivatives D_i = dM/dtheta_i."""

    def __init__(self, V: np.ndarray, random) -> None:
        # V: (k,) variances or (k, k); the random-effects terms are kept as
        # codes, and k x k matrices are made only for the dense path (S, Z1, C)
        self.V = V
        k = V.shape[0]
        self.k = k
        terms = () if random is None else (random if isinstance(random, tuple) else (random,))
        self.S_codes: list[np.ndarray] = []
        self._S = self._Z1 = self._C = None
        self.struct = None
        pars: list[_Par] = []
        for term in terms:
            if isinstance(term, Nested):
                for codes in term.levels():
                    if len(codes) != k:
                        raise ValueError(f"Nested codes have {len(codes)} entries, yi has {k}")
                    pars.append(_Par("sigma2", len(self.S_codes)))
                    self.S_codes.append(codes)
            elif isinstance(term, Structured):
                if self.struct is not None:
                    raise ValueError("at most one Structured term (metafor's first ~ inner | outer)")
                self.struct = term.struct
                inner, self.levels = _codes(term.inner, "Structured.inner")
                outer, _ = _codes(term.outer, "Structured.outer")
                if len(inner) != k or len(outer) != k:
                    raise ValueError("Structured inner/outer must have one entry per estimate")
                L = len(self.levels)
                self.L = L
                self.inner_codes, self.outer_codes = inner, outer
                ntau = L if term.struct in HETERO else 1
                pars += [_Par("tau2", j) for j in range(ntau)]
                if term.struct == "UN":
                    self.pairs = [(m, l) for l in range(L) for m in range(l + 1, L)]  # R lower.tri order
                    pars += [_Par("rho", j, term.rho) for j in range(len(self.pairs))]
                elif L > 1 or term.rho is not None:
                    pars.append(_Par("rho", 0, term.rho))
            else:
                raise TypeError(f"random terms are Nested or Structured, got {term!r}")
        self.pars = tuple(pars)
        self._blocks()
        if self.struct in ("AR", "HAR"):
            idx = np.arange(self.L)
            self.lag = np.abs(np.subtract.outer(idx, idx))

    # G = D R D over the levels of inner, and its derivatives in theta
    def _G(self, nat: np.ndarray) -> tuple[np.ndarray, list]:
        L = self.L
        tau = [nat[i] for i, p in enumerate(self.pars) if p.kind == "tau2"]
        rho_i = [i for i, p in enumerate(self.pars) if p.kind == "rho"]
        rho = [nat[i] for i in rho_i]
        tau2 = np.full(L, tau[0]) if len(tau) == 1 else np.array(tau)
        s = np.sqrt(tau2)
        r = rho[0] if rho else 0.0
        dR = []
        if self.struct in ("CS", "HCS"):
            R = np.full((L, L), r)
            np.fill_diagonal(R, 1.0)
            dR = [(1 - r * r) * (np.ones((L, L)) - np.eye(L))]
        elif self.struct in ("AR", "HAR"):
            with np.errstate(divide="ignore", invalid="ignore"):
                R = np.where(self.lag == 0, 1.0, r ** self.lag)
                d = np.where(self.lag == 0, 0.0, self.lag * r ** np.maximum(self.lag - 1, 0))
            dR = [(1 - r * r) * d]
        else:  # UN
            R = np.eye(L)
            for (l, m), v in zip(self.pairs, rho):
                R[l, m] = R[m, l] = v
            for (l, m), v in zip(self.pairs, rho):
                E = np.zeros((L, L))
                E[l, m] = E[m, l] = 1 - v * v
                dR.append(E)
        G = s[:, None] * R * s[None, :]
        dG = {}
        tau_i = [i for i, p in enumerate(self.pars) if p.kind == "tau2"]
        if len(tau_i) == 1:
            dG[tau_i[0]] = G
        else:
            for l, i in enumerate(tau_i):
                e = np.zeros(L)
                e[l] = 1.0
                dG[i] = G * (e[:, None] + e[None, :]) / 2
        for i, d in zip(rho_i, dR):
            dG[i] = s[:, None] * d * s[None, :]
        return G, dG

    def _G2(self, nat: np.ndarray) -> dict:
        """Second derivatives d2G/dtheta_i dtheta_j (i <= j) of the G parameters."""
        L = self.L
        G, dG = self._G(nat)
        tau_i = [i for i, p in enumerate(self.pars) if p.kind == "tau2"]
        rho_i = [i for i, p in enumerate(self.pars) if p.kind == "rho"]
        tau2 = np.array([nat[i] for i in tau_i])
        s = np.sqrt(np.full(L, tau2[0]) if len(tau_i) == 1 else tau2)
        ss = s[:, None] * s[None, :]
        if len(tau_i) == 1:
            E = {tau_i[0]: np.ones((L, L))}
        else:
            E = {}
            for l, i in enumerate(tau_i):
                e = np.zeros(L)
                e[l] = 1.0
                E[i] = (e[:, None] + e[None, :]) / 2
        out = {}
        for a in tau_i:
            for b in tau_i:
                if b >= a:
                    out[a, b] = G * E[a] * E[b]
            for r in rho_i:
                out[min(a, r), max(a, r)] = dG[r] * E[a]
        for n, r in enumerate(rho_i):
            v = nat[r]
            if self.struct in ("CS", "HCS"):
                d2R = -2 * v * (1 - v * v) * (np.ones((L, L)) - np.eye(L))
            elif self.struct in ("AR", "HAR"):
                lag = self.lag
                with np.errstate(divide="ignore", invalid="ignore"):
                    t1 = np.where(lag >= 2, lag * (lag - 1) * v ** np.maximum(lag - 2, 0), 0.0)
                    t2 = np.where(lag >= 1, 2 * lag * v ** lag, 0.0)
                # d/db [lag rho^(lag-1) (1 - rho^2)], d rho/db = 1 - rho^2
                d2R = (1 - v * v) * (t1 * (1 - v * v) - t2)
            else:
                l, m = self.pairs[n]
                d2R = np.zeros((L, L))
                d2R[l, m] = d2R[m, l] = -2 * v * (1 - v * v)
            out[r, r] = ss * d2R
        return out

    def natural(self, theta: np.ndarray) -> np.ndarray:
        return np.array([p.to_natural(t) for p, t in zip(self.pars, theta)])

    @property
    def S(self) -> list:
        """Z_j Z_j' (k x k) of each Nested level, made on first use (dense path)."""
        if self._S is None:
            self._S = [np.equal.outer(c, c).astype(float) for c in self.S_codes]
        return self._S

    @property
    def Z1(self) -> np.ndarray:
        if self._Z1 is None:
            self._Z1 = np.zeros((self.k, self.L))
            self._Z1[np.arange(self.k), self.inner_codes] = 1.0
        return self._Z1

    @property
    def C(self) -> np.ndarray:
        if self._C is None:
            self._C = np.equal.outer(self.outer_codes, self.outer_codes).astype(float)
        return self._C

    def V_dense(self) -> np.ndarray:
        return np.diag(self.V) if self.V.ndim == 1 else self.V.copy()

    def _blocks(self) -> None:
        """Independent blocks: connected components of the graph joining
        estimates with a non-zero covariance in V or a shared level of a
        random-effects term (M is block-diagonal over them). O(k) memory for
        the terms (each estimate joined to the first one of its level)."""
        k = self.k
        rows, cols = [np.arange(k)], [np.arange(k)]
        if self.V.ndim == 2:
            r, c = np.nonzero(self.V)
            rows.append(r)
            cols.append(c)
        codes = list(self.S_codes) + ([self.outer_codes] if self.struct is not None else [])
        for cd in codes:
            first = np.full(cd.max() + 1, -1)
            first[cd[::-1]] = np.arange(k)[::-1]
            rows.append(np.arange(k))
            cols.append(first[cd])
        r, c = np.concatenate(rows), np.concatenate(cols)
        graph = sparse.coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(k, k)).tocsr()
        n, lab = csgraph.connected_components(graph, directed=False)
        order = np.argsort(lab, kind="stable")
        bounds = np.flatnonzero(np.diff(lab[order])) + 1
        self.block_idx = np.split(order, bounds)
        # blocks of equal size are stacked, so that each size is one batched
        # numpy call (g blocks of n estimates: arrays of shape (g, n, n))
        sizes = np.array([len(ix) for ix in self.block_idx])
        self.groups = []
        eq = (lambda c: (c[:, :, None] == c[:, None, :]).astype(float))  # noqa: E731
        for n_b in np.unique(sizes):
            ix = np.array([self.block_idx[b] for b in np.flatnonzero(sizes == n_b)])
            if self.V.ndim == 1:
                Vg = np.zeros((len(ix), n_b, n_b))
                Vg[:, np.arange(n_b), np.arange(n_b)] = self.V[ix]
            else:
                Vg = self.V[ix[:, :, None], ix[:, None, :]]
            grp = {"idx": ix, "V": Vg, "S": [eq(cd[ix]) for cd in self.S_codes]}
            if self.struct is not None:
                grp["Z1"] = (self.inner_codes[ix][:, :, None] == np.arange(self.L)).astype(float)
                grp["C"] = eq(self.outer_codes[ix])
            self.groups.append(grp)

    def block_M(self, theta: np.ndarray) -> list:
        """[(indices, M_b)] for every block (M at theta, block by block)."""
        out = []
        for (M, _), grp in zip(self.build_groups(theta, False)[0], self.groups):
            out += list(zip(grp["idx"], M))
        return out

    def build_groups(self, theta: np.ndarray, derivs: bool = True):
        """[(M_g, [D_ig])] per group of equal-size blocks (arrays (g, n, n)), and
        the natural parameters."""
        nat = self.natural(theta)
        if self.struct is not None:
            G, dG = self._G(nat)
        out = []
        for grp in self.groups:
            M = grp["V"].copy()
            D: list = [None] * len(self.pars)
            for i, p in enumerate(self.pars):
                if p.kind == "sigma2":
                    M += nat[i] * grp["S"][p.index]
                    D[i] = nat[i] * grp["S"][p.index]
            if self.struct is not None:
                Z1, C = grp["Z1"], grp["C"]
                M += (Z1 @ G @ Z1.transpose(0, 2, 1)) * C
                if derivs:
                    for i, g in dG.items():
                        D[i] = (Z1 @ g @ Z1.transpose(0, 2, 1)) * C
            out.append((M, D))
        return out, nat

    def second(self, theta: np.ndarray) -> dict:
        """d2M/dtheta_i dtheta_j (i <= j), k x k: D_i itself for a log
        variance that enters M linearly (sigma^2, a shared tau^2), and the
        G terms of ``_G2``."""
        nat = self.natural(theta)
        out = {}
        for i, p in enumerate(self.pars):
            if p.kind == "sigma2":
                out[i, i] = nat[i] * self.S[p.index]
        if self.struct is not None:
            for key, g in self._G2(nat).items():
                out[key] = (self.Z1 @ g @ self.Z1.T) * self.C
        return out

    def second_groups(self, theta: np.ndarray) -> list:
        """``second`` per group of equal-size blocks ((g, n, n) arrays)."""
        nat = self.natural(theta)
        G2 = self._G2(nat) if self.struct is not None else {}
        out = []
        for grp in self.groups:
            d = {}
            for i, p in enumerate(self.pars):
                if p.kind == "sigma2":
                    d[i, i] = nat[i] * grp["S"][p.index]
            for key, g in G2.items():
                d[key] = (grp["Z1"] @ g @ grp["Z1"].transpose(0, 2, 1)) * grp["C"]
            out.append(d)
        return out

    def build(self, theta: np.ndarray, derivs: bool = True):
        nat = self.natural(theta)
        M = self.V_dense()
        D: list = [None] * len(self.pars)
        for i, p in enumerate(self.pars):
            if p.kind == "sigma2":
                M += nat[i] * self.S[p.index]
                D[i] = nat[i] * self.S[p.index]
        if self.struct is not None:
            G, dG = self._G(nat)
            M += (self.Z1 @ G @ self.Z1.T) * self.C
            if derivs:
                for i, g in dG.items():
                    D[i] = (self.Z1 @ g @ self.Z1.T) * self.C
        return M, D, nat


def _log_likelihoods(k: int, p: int, logdet_m: float, logdet_xx: float, logdet_xwx: float,
                     rss: float) -> tuple[float, float]:
    """ML and REML log-likelihoods from the pieces both fitting paths compute (metafor's
    conventions: the REML one with + 1/2 log|X'X|)."""
    ll_ml = -0.5 * k * np.log(2 * np.pi) - 0.5 * logdet_m - 0.5 * rss
    ll_reml = (-0.5 * (k - p) * np.log(2 * np.pi) + 0.5 * logdet_xx - 0.5 * logdet_m
               - 0.5 * logdet_xwx - 0.5 * rss)
    return ll_ml, ll_reml


@dataclass
class _Eval:
    ll_ml: float
    ll_reml: float
    beta: np.ndarray
    vb: np.ndarray
    M: np.ndarray
    W: np.ndarray
    grad: np.ndarray | None = None
    info: np.ndarray | None = None
    #: average information 1/2 y'P D_i P D_j P y (Gilmour et al. 1995)
    ai: np.ndarray | None = None
    #: the score along the second derivatives: -1/2 tr(P D_ij) + 1/2 y'P D_ij P y
    s2: np.ndarray | None = None
    rss: float = float("nan")
    logdet_m: float = float("nan")


def _evaluate(model: _Model, y, X, logdet_xx, theta, reml: bool, derivs: bool):
    """``_evaluate_dense`` for small k, else ``_evaluate_blocks`` (see ``DENSE_MAX_K``)."""
    if model.k <= DENSE_MAX_K or len(model.block_idx) == 1:
        return _evaluate_dense(model, y, X, logdet_xx, theta, reml, derivs)
    return _evaluate_blocks(model, y, X, logdet_xx, theta, reml, derivs)


def _evaluate_blocks(model: _Model, y, X, logdet_xx, theta, reml: bool, derivs: bool):
    """ll (ML and REML), beta, Var(beta), and with ``derivs`` the score and the
    expected information, from sums over the independent blocks of M.

    With P = W - Q, Q = WX B X'W (B = Var(beta)), per block b:
    tr(P D_i) = sum_b tr(W_b D_ib) - tr(B F_i), F_i = sum_b X_b'W_b D_ib W_b X_b;
    tr(P D_i P D_j) = sum_b tr(W_b D_ib W_b D_jb) - 2 tr(B A_ij) + tr(B F_i B F_j),
    A_ij = sum_b X_b'W_b D_ib W_b D_jb W_b X_b. ML uses W for P (no B terms).
    O(sum_b n_b^3) instead of O(k^3); ``_evaluate_dense`` is the k x k
    version (tests/test_oracle_mv.py checks that both agree). Blocks of one
    size are stacked into (g, n, n) arrays and handled by one batched call.
    """
    groups, _ = model.build_groups(theta, derivs)
    k, p = X.shape
    logdet_m = 0.0
    XWX = np.zeros((p, p))
    XWy = np.zeros(p)
    Ws, WXs, Xs, ys = [], [], [], []
    for (M, _), grp in zip(groups, model.groups):
        try:
            L = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            return None
        dg = np.diagonal(L, axis1=1, axis2=2)
        if not np.all(np.isfinite(dg)) or np.any(dg <= 0):
            return None
        logdet_m += 2.0 * np.sum(np.log(dg))
        Li = np.linalg.inv(L)
        W = Li.transpose(0, 2, 1) @ Li
        Xg, yg = X[grp["idx"]], y[grp["idx"]]
        WX = W @ Xg
        XWX += np.einsum("gnp,gnq->pq", Xg, WX)
        XWy += np.einsum("gnp,gn->p", WX, yg)
        Ws.append(W)
        WXs.append(WX)
        Xs.append(Xg)
        ys.append(yg)
    try:
        cx = linalg.cho_factor(XWX, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None
    vb = linalg.cho_solve(cx, np.eye(p), check_finite=False)
    beta = vb @ XWy
    Wrs, rss = [], 0.0
    for W, Xg, yg in zip(Ws, Xs, ys):
        rg = yg - Xg @ beta
        Wr = np.einsum("gnm,gm->gn", W, rg)
        rss += float(np.sum(rg * Wr))
        Wrs.append(Wr)
    ll_ml, ll_reml = _log_likelihoods(k, p, logdet_m, logdet_xx,
                                      2.0 * np.sum(np.log(np.diag(cx[0]))), rss)
    ev = _Eval(ll_ml, ll_reml, beta, vb, None, None, rss=rss, logdet_m=logdet_m)
    if derivs:
        free = [i for i, par in enumerate(model.pars) if par.fixed is None]
        q = len(model.pars)
        grad = np.zeros(q)
        info = np.zeros((q, q))
        trWD = np.zeros(q)
        F = {i: np.zeros((p, p)) for i in free}
        A: dict = {}
        ai = np.zeros((q, q))
        sx = {i: np.zeros(p) for i in free}
        for (M, D), W, WX, Wr in zip(groups, Ws, WXs, Wrs):
            WD = {i: W @ D[i] for i in free}
            DWr = {i: np.einsum("gnm,gm->gn", D[i], Wr) for i in free}
            WDWr = {i: np.einsum("gnm,gm->gn", W, DWr[i]) for i in free}
            for i in free:
                sx[i] += np.einsum("gnp,gn->p", WX, DWr[i])
            for a_ in free:
                for b_ in free:
                    if b_ >= a_:
                        ai[a_, b_] += 0.5 * np.sum(DWr[a_] * WDWr[b_])
            for i in free:
                trWD[i] += np.einsum("gnn->", WD[i])
                grad[i] += 0.5 * np.einsum("gn,gnm,gm->", Wr, D[i], Wr)
                if reml:
                    F[i] += np.einsum("gnp,gnm,gmq->pq", WX, D[i], WX)
            for a_ in free:
                for b_ in free:
                    if b_ >= a_:
                        info[a_, b_] += 0.5 * np.einsum("gnm,gmn->", WD[a_], WD[b_])
                        if reml:
                            A[a_, b_] = A.get((a_, b_), 0.0) + np.einsum(
                                "gnp,gnm,gmq->pq", WX, D[a_], WD[b_] @ WX)
        for i in free:
            grad[i] -= 0.5 * (trWD[i] - (np.sum(vb * F[i]) if reml else 0.0))
        if reml:
            BF = {i: vb @ F[i] for i in free}
            for a_ in free:
                for b_ in free:
                    if b_ >= a_:
                        info[a_, b_] += 0.5 * (-2 * np.sum(vb * A[a_, b_].T)
                                               + np.sum(BF[a_] * BF[b_].T))
        for a_ in free:  # P (REML's) in the middle, for ML too (see _evaluate_dense)
            for b_ in free:
                if b_ >= a_:
                    ai[a_, b_] -= 0.5 * float(sx[a_] @ vb @ sx[b_])
        S = np.zeros((q, q))
        for sec, W, WX, Wr in zip(model.second_groups(theta), Ws, WXs, Wrs):
            for (a_, b_), D2 in sec.items():
                if a_ in F and b_ in F:
                    tr = np.einsum("gnm,gmn->", W, D2)
                    if reml:
                        tr -= np.sum(vb * np.einsum("gnp,gnm,gmq->pq", WX, D2, WX))
                    S[a_, b_] += -0.5 * tr + 0.5 * np.einsum("gn,gnm,gm->", Wr, D2, Wr)
        S = np.triu(S) + np.triu(S, 1).T
        info = np.triu(info) + np.triu(info, 1).T
        ai = np.triu(ai) + np.triu(ai, 1).T
        ev.grad, ev.info, ev.ai, ev.s2 = grad, info, ai, S
    return ev


def _evaluate_dense(model: _Model, y, X, logdet_xx, theta, reml: bool, derivs: bool):
    """``_evaluate`` with k x k matrices (metafor's way), kept as its check."""
    M, D, _ = model.build(theta, derivs)
    try:
        cf = linalg.cho_factor(M, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cf[0])):
        return None
    k, p = X.shape
    logdet_m = 2.0 * np.sum(np.log(np.diag(cf[0])))
    W = linalg.cho_solve(cf, np.eye(k), check_finite=False)
    WX = W @ X
    XWX = X.T @ WX
    try:
        cx = linalg.cho_factor(XWX, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None
    vb = linalg.cho_solve(cx, np.eye(p), check_finite=False)
    beta = vb @ (WX.T @ y)
    r = y - X @ beta
    Wr = W @ r
    rss = float(r @ Wr)
    ll_ml, ll_reml = _log_likelihoods(k, p, logdet_m, logdet_xx,
                                      2.0 * np.sum(np.log(np.diag(cx[0]))), rss)
    ev = _Eval(ll_ml, ll_reml, beta, vb, M, W, rss=rss, logdet_m=logdet_m)
    if derivs:
        P = W - WX @ vb @ WX.T if reml else W
        free = [i for i, par in enumerate(model.pars) if par.fixed is None]
        q = len(D)
        grad = np.zeros(q)
        info = np.zeros((q, q))
        PD = {}
        for i in free:
            if D[i] is None:
                continue
            PD[i] = P @ D[i]
            grad[i] = -0.5 * np.trace(PD[i]) + 0.5 * float(Wr @ D[i] @ Wr)
        ai = np.zeros((q, q))
        Pr = W - WX @ vb @ WX.T  # the REML P: the observed information uses it for ML too
        DWr = {i: D[i] @ Wr for i in PD}
        PDWr = {i: Pr @ DWr[i] for i in PD}
        for a in PD:
            for b in PD:
                if b >= a:
                    info[a, b] = info[b, a] = 0.5 * np.sum(PD[a] * PD[b].T)
                    ai[a, b] = ai[b, a] = 0.5 * float(DWr[a] @ PDWr[b])
        S = np.zeros((q, q))
        for (a, b), D2 in model.second(theta).items():
            if a in PD and b in PD:
                S[a, b] = S[b, a] = -0.5 * np.sum(P * D2) + 0.5 * float(Wr @ D2 @ Wr)
        ev.grad, ev.info, ev.ai, ev.s2 = grad, info, ai, S
    return ev


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class MVFit:
    """A fitted ``rma.mv`` model. Names follow metafor.

    ``beta``, ``se``, ``stat`` (z or t), ``pval``, ``ci`` (one Interval per
    coefficient) per coefficient, named ``names``; ``sigma2`` (one per Nested
    level), ``tau2`` and ``rho`` (Structured) are empty arrays when absent.
    ``fit_ml``/``fit_reml``: metafor's fit.stats columns. ``df`` is k - p
    under ``test="t"``, None under z. ``QMdf`` is (m, df2) with df2 None under z.
    """

    method: str
    test: str
    level: float
    k: int
    p: int
    names: tuple
    beta: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci: tuple
    vb: np.ndarray
    sigma2: np.ndarray
    tau2: np.ndarray
    rho: np.ndarray
    QE: float
    QEdf: int
    QEp: float
    QM: float
    QMdf: tuple
    QMp: float
    df: float | None
    fit_ml: FitStats
    fit_reml: FitStats
    parms: int
    yi: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    random: object = field(repr=False, default=None)
    theta: np.ndarray = field(repr=False, default=None)
    btt: tuple = field(repr=False, default=())

    @property
    def M(self) -> np.ndarray:
        """The marginal covariance V + random effects at the estimate (k x k,
        made on demand: O(k^2) memory)."""
        return _Model(self.V, self.random).build(self.theta, False)[0]

    @property
    def ll(self) -> float:
        """The maximised log-likelihood of ``method``."""
        return self.fit_reml.ll if self.method == "REML" else self.fit_ml.ll

    def fit_stats(self) -> FitStats:
        return self.fit_reml if self.method == "REML" else self.fit_ml

    def as_dict(self) -> dict:
        """The ``rma.mv`` section of the oracle (tests/fixtures/oracle_mv)."""
        out = {"method": self.method, "test": self.test, "k": self.k, "p": self.p,
               "parms": self.parms,
               "coefficients": {"names": list(self.names), "estimate": self.beta.tolist(),
                                "se": self.se.tolist(), "stat": self.stat.tolist(),
                                "pval": self.pval.tolist(),
                                "ci.lb": [c.low for c in self.ci],
                                "ci.ub": [c.high for c in self.ci]},
               "vcov": self.vb.tolist(),
               "QE": self.QE, "QEdf": self.QEdf, "QEp": self.QEp, "QM": self.QM,
               "QMdf": [self.QMdf[0], float("nan") if self.QMdf[1] is None else self.QMdf[1]],
               "QMp": self.QMp,
               "fit.stats": {"ML": self.fit_ml.as_dict(), "REML": self.fit_reml.as_dict()}}
        if self.df is not None:
            out["coefficients"]["df"] = [self.df] * self.p
        if self.sigma2.size:
            out["sigma2"] = self.sigma2.tolist()
        if self.tau2.size:
            out["tau2"] = self.tau2.tolist()
            out["rho"] = self.rho.tolist()
        return out


def _diag(V: np.ndarray) -> np.ndarray:
    return V if V.ndim == 1 else np.diag(V)


def _as_V(V, k: int) -> np.ndarray:
    """V as given: (k,) variances (kept as a vector: O(k) memory) or (k, k)."""
    a = np.asarray(V, dtype=float)
    if a.ndim == 1:
        if a.shape[0] != k:
            raise ValueError(f"V has {a.shape[0]} variances, yi has {k}")
        if np.any(a < 0):
            raise ValueError("V must have non-negative sampling variances")
        return a
    if a.shape != (k, k):
        raise ValueError(f"V must be a vector of {k} variances or a {k} x {k} matrix, got {a.shape}")
    if not np.allclose(a, a.T, rtol=0, atol=1e-12 * max(1.0, np.abs(a).max())):
        raise ValueError("V must be symmetric")
    if np.any(np.diag(a) < 0):
        raise ValueError("V must have non-negative sampling variances on its diagonal")
    return a


def _has_intercept(X: np.ndarray) -> bool:
    return bool(np.all(X[:, 0] == 1.0))


def _start(model: _Model, y, X, V) -> np.ndarray:
    """metafor's initial values: each variance total/(number of variances), rho 0.5."""
    beta_fe = np.linalg.lstsq(X, y, rcond=None)[0]
    nvar = sum(p.kind != "rho" for p in model.pars)
    total = max(0.001 * nvar, np.var(y - X @ beta_fe, ddof=1) - 1.0 / np.mean(1.0 / _diag(V)))
    th = []
    for p in model.pars:
        if p.fixed is not None:
            th.append(p.to_theta(p.fixed))
        elif p.kind == "rho":
            th.append(np.arctanh(0.5) if model.struct != "UN" else 0.0)
        else:
            th.append(np.log(total / nvar))
    return np.array(th, dtype=float)


def _maximise(model: _Model, y, X, logdet_xx, theta0, reml: bool) -> np.ndarray:
    """Maximise ll over the free parameters from theta0 (fixed ones stay)."""
    free = np.array([p.fixed is None and np.isfinite(t) for p, t in zip(model.pars, theta0)])
    if not free.any():
        return theta0
    cache: dict = {}

    def ev(x):
        key = x.tobytes()
        if key not in cache:
            th = theta0.copy()
            th[free] = x
            cache.clear()
            cache[key] = _evaluate(model, y, X, logdet_xx, th, reml, True)
        return cache[key]

    def fun(x):
        e = ev(x)
        if e is None:
            return np.inf, np.zeros(free.sum())
        ll = e.ll_reml if reml else e.ll_ml
        return -ll, -e.grad[free]

    def hess(x):
        e = ev(x)
        if e is None:
            return np.eye(free.sum())
        H = e.info[np.ix_(free, free)]
        if HESSIAN == "observed" and e.ai is not None:
            # the observed information -d2ll/dtheta2 = 2 AI - I - s(D_ij)
            H = 2 * e.ai[np.ix_(free, free)] - H - e.s2[np.ix_(free, free)]
        return H + 1e-12 * np.trace(np.abs(H)) * np.eye(len(H))

    def newton_step(x):
        """The largest |Fisher step| I^-1 g in theta: how far the optimum still is."""
        e = ev(x)
        if e is None:
            return np.inf
        try:
            return float(np.max(np.abs(np.linalg.solve(hess(x), e.grad[free]))))
        except np.linalg.LinAlgError:
            return np.inf

    def stop(intermediate_result):
        # near the optimum the gain left is below the rounding of ll (~1e-15
        # |ll|), and trust-exact would shrink its radius step after step
        # ("bad approximation"); stop once the step left is negligible
        if newton_step(intermediate_result.x) < STEP_TOL:
            raise StopIteration

    res = optimize.minimize(fun, theta0[free], jac=True, hess=hess, method="trust-exact",
                            options={"gtol": GTOL, "maxiter": MAXITER}, callback=stop)
    if not res.success and newton_step(res.x) < ROUNDING_STEP_TOL:
        # trust-exact stops ("bad approximation") when the gain left is below
        # the rounding of ll; the step left then is ~1e-9 to 3e-8 on the fixtures
        res.success = True
    if not res.success:
        # a correlation crawling to +-1 (atanh -> +-inf) or a variance to 0
        # (log -> -inf): try them at exactly that boundary
        th = theta0.copy()
        th[free] = res.x
        scale = max(np.var(y), np.finfo(float).tiny)
        rho_i = [i for i, p in enumerate(model.pars) if p.kind == "rho" and free[i]
                 and abs(np.tanh(th[i])) > 1 - RHO_BOUNDARY]
        var_i = [i for i, p in enumerate(model.pars) if p.kind != "rho" and free[i]
                 and np.exp(th[i]) < BOUNDARY_REL * scale]
        if rho_i or var_i:
            th1 = th.copy()
            th1[rho_i] = np.sign(th[rho_i]) * np.inf
            th1[var_i] = -np.inf
            try:
                th1 = _maximise(model, y, X, logdet_xx, th1, reml)
            except MetaError:
                th1 = None
            if th1 is not None and _ll(model, y, X, logdet_xx, th1, reml) >= -res.fun - 1e-12:
                return th1
    if not res.success:
        # far from the optimum of a profile the expected information can be a
        # poor Hessian and trust-exact crawls; BFGS from where it stopped
        res2 = optimize.minimize(fun, res.x, jac=True, method="BFGS",
                                 options={"gtol": GTOL, "maxiter": 10 * MAXITER})
        if np.isfinite(res2.fun) and res2.fun <= res.fun:
            res = res2
            if np.max(np.abs(res.jac)) <= ACCEPT_GRAD:
                res.success = True
    if not np.all(np.isfinite(res.x)) or ev(res.x) is None:
        raise MetaError(f"rma_mv: the optimiser failed ({res.message})")
    th = theta0.copy()
    th[free] = res.x
    if not res.success:
        # a component heading for its boundary (a variance to 0, a correlation
        # to +-1) sits at theta = -+inf, where trust-exact crawls; such a
        # result is accepted when the score of every other component is ~0
        nat = model.natural(th)[free]
        kinds = np.array([p.kind for p in model.pars])[free]
        at_bound = np.where(kinds == "rho", np.abs(nat) > 1 - 1e-6,
                            nat < 1e-10 * max(np.var(y), np.finfo(float).tiny))
        if np.any(np.abs(res.jac[~at_bound]) > ACCEPT_GRAD):
            raise MetaError(f"rma_mv: the optimiser did not converge ({res.message})")
    return th


def _fit_theta(model: _Model, y, X, logdet_xx, reml: bool, theta0=None) -> np.ndarray:
    """Fitted theta with variances that head for 0 set to exactly 0 when that is higher."""
    th = _maximise(model, y, X, logdet_xx, _start(model, y, X, model.V) if theta0 is None
                   else theta0, reml)
    scale = max(np.var(y), np.finfo(float).tiny)
    ll = _ll(model, y, X, logdet_xx, th, reml)
    for i, p in enumerate(model.pars):
        if p.kind != "rho" and p.fixed is None and np.exp(th[i]) < BOUNDARY_REL * scale:
            pars = list(model.pars)
            pars[i] = replace(p, fixed=0.0)
            m0 = _with_pars(model, pars)
            th0 = th.copy()
            th0[i] = -np.inf
            th0 = _maximise(m0, y, X, logdet_xx, th0, reml)
            ll0 = _ll(m0, y, X, logdet_xx, th0, reml)
            if ll0 >= ll - 1e-12:
                th, ll = th0, ll0
    return th


def _with_pars(model: _Model, pars) -> _Model:
    m = object.__new__(_Model)
    m.__dict__.update(model.__dict__)
    m.pars = tuple(pars)
    return m


def _ll(model, y, X, logdet_xx, th, reml) -> float:
    e = _evaluate(model, y, X, logdet_xx, th, reml, False)
    if e is None:
        return -np.inf
    return e.ll_reml if reml else e.ll_ml


@_one_blas_thread
def rma_mv(yi, V, *, X=None, random=None, method: str = "REML", test: str = "z",
           level: float = 95, btt=None, names=None, sigma2=None) -> MVFit:
    """Fit a multilevel / multivariate model, as metafor 3.8-1 ``rma.mv``.

    Parameters
    ----------
    yi : (k,) estimates.
    V : (k,) sampling variances or (k, k) known sampling covariance matrix
        (e.g. from ``vcalc``, ``rvars_vcov`` or ``shared_arm_vcov``).
    X : (k, p) design, default intercept only. A first column of ones is
        the intercept (QM then leaves it out, as metafor's ``btt``).
    random : ``Nested``, ``Structured``, a tuple of them (at most one
        Structured), or None (a common-effect GLS model, M = V).
    method : "REML" or "ML".
    test : "z" or "t" (t with k - p df, metafor's ``test="t"``).
    btt : indices of the coefficients QM tests (default as metafor).
    names : coefficient names (default "intrcpt", "X1", ...).
    sigma2 : one value per Nested level, NaN where estimated: metafor's
        ``sigma2 = c(NA, 0)`` (a fixed component is not counted in ``parms``).

    Matches metafor 3.8-1 ``rma.mv(yi, V, mods, random, struct, rho, method,
    test, sigma2)``: see the module docstring for the formulas and
    tests/fixtures/oracle_mv for the reference fits.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    y = np.asarray(yi, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ValueError("yi must be a one-dimensional array of finite values")
    k = y.shape[0]
    Vm = _as_V(V, k)
    X = np.ones((k, 1)) if X is None else np.asarray(X, dtype=float).reshape(k, -1)
    p = X.shape[1]
    if p > k:
        raise MetaError("Number of parameters to be estimated is larger than the number of "
                        "observations.")
    model = _Model(Vm, random)
    if sigma2 is not None:
        model = _fix_sigma2(model, sigma2)
    logdet_xx = float(np.linalg.slogdet(X.T @ X)[1])
    reml = method == "REML"
    th = _fit_theta(model, y, X, logdet_xx, reml)
    return _result(model, y, X, Vm, th, method, test, level, btt, names, random, logdet_xx)


def _fix_sigma2(model: _Model, sigma2) -> _Model:
    """``model`` with the Nested variances given (finite, >= 0) in ``sigma2`` held fixed."""
    vals = np.asarray(sigma2, dtype=float).ravel()
    idx = [i for i, p in enumerate(model.pars) if p.kind == "sigma2"]
    if len(vals) != len(idx):
        raise ValueError(f"sigma2 has {len(vals)} values, the model has {len(idx)} Nested levels")
    if np.any(vals[np.isfinite(vals)] < 0):
        raise ValueError("a fixed sigma2 must be >= 0")
    pars = list(model.pars)
    for i, v in zip(idx, vals):
        if np.isfinite(v):
            pars[i] = replace(pars[i], fixed=float(v))
    return _with_pars(model, pars)


def _result(model, y, X, Vm, th, method, test, level, btt, names, random, logdet_xx) -> MVFit:
    k, p = X.shape
    e = _evaluate(model, y, X, logdet_xx, th, method == "REML", False)
    nat = model.natural(th)
    kinds = [q.kind for q in model.pars]
    sigma2 = np.array([v for v, kd in zip(nat, kinds) if kd == "sigma2"])
    tau2 = np.array([v for v, kd in zip(nat, kinds) if kd == "tau2"])
    rho = np.array([v for v, kd in zip(nat, kinds) if kd == "rho"])
    se = np.sqrt(np.diag(e.vb))
    stat = e.beta / se
    df = float(k - p) if test == "t" else None
    if test == "t":
        pval = 2 * special.stdtr(df, -np.abs(stat))
        crit = t_crit(level, df)
    else:
        pval = 2 * special.ndtr(-np.abs(stat))
        crit = z_crit(level)
    ci = tuple(Interval(float(b - crit * s), float(b + crit * s)) for b, s in zip(e.beta, se))
    if btt is None:
        btt = tuple(range(1, p)) if (_has_intercept(X) and p > 1) else tuple(range(p))
    btt = tuple(btt)
    bb = e.beta[list(btt)]
    QM = float(bb @ np.linalg.solve(e.vb[np.ix_(btt, btt)], bb))
    m = len(btt)
    if test == "t":
        QM /= m
        QMp = float(special.fdtrc(m, df, QM))
        QMdf = (m, df)
    else:
        QMp = float(special.chdtrc(m, QM))
        QMdf = (m, None)
    # QE: the common-effect GLS fit (M = V), by the same block sums
    e0 = _evaluate(_Model(Vm, None), y, X, logdet_xx, np.zeros(0), False, False)
    if e0 is None:
        raise MetaError("V is not positive definite: the common-effect fit for QE fails")
    QEdf = k - p
    if QEdf > 0:
        QE = float(e0.rss)
        QEp = float(special.chdtrc(QEdf, QE))
    else:
        QE, QEp = 0.0, 1.0
    parms = p + sum(q.fixed is None for q in model.pars)
    ll_sat = -0.5 * k * np.log(2 * np.pi) - 0.5 * e0.logdet_m
    dev_ml = -2 * (e.ll_ml - ll_sat) if np.all(_diag(Vm) > 0) else -2 * e.ll_ml
    fit_ml = _fitstats(e.ll_ml, dev_ml, parms, k)
    fit_reml = _fitstats(e.ll_reml, -2 * e.ll_reml, parms, k - p)
    if names is None:
        names = (["intrcpt"] + [f"X{j}" for j in range(1, p)]) if _has_intercept(X) else \
            [f"X{j + 1}" for j in range(p)]
    return MVFit(method=method, test=test, level=level, k=k, p=p, names=tuple(names),
                 beta=e.beta, se=se, stat=stat, pval=pval, ci=ci, vb=e.vb, sigma2=sigma2,
                 tau2=tau2, rho=rho, QE=QE, QEdf=QEdf, QEp=QEp, QM=QM, QMdf=QMdf, QMp=QMp,
                 df=df, fit_ml=fit_ml, fit_reml=fit_reml, parms=parms, yi=y, V=Vm, X=X,
                 random=random, theta=th, btt=btt)


def _fitstats(ll: float, dev: float, parms: int, n: int) -> FitStats:
    """metafor's AIC, BIC, AICc (n = k for ML, k - p for REML)."""
    nn = max(n, parms + 2)
    return FitStats(ll=float(ll), dev=float(dev), AIC=float(-2 * ll + 2 * parms),
                    BIC=float(-2 * ll + parms * np.log(n)),
                    AICc=float(-2 * ll + 2 * parms * nn / (nn - parms - 1)))


# --------------------------------------------------------------------------- profile CIs

@dataclass(frozen=True)
class ProfileCI:
    """Profile-likelihood CI of one variance component or correlation.

    ``name`` is metafor's row name (``sigma^2.1``, ``tau^2``, ``rho``, ...);
    ``lb_at_bound``/``ub_at_bound`` say that the profile did not reach the
    cut-off inside the search range, so the bound is the range's end
    (metafor prints "<" / ">" for a variance's bound, not for 0 or +-1).
    """

    name: str
    estimate: float
    ci: Interval
    lb_at_bound: bool
    ub_at_bound: bool


def _par_names(model: _Model) -> list[str]:
    count = {kd: sum(p.kind == kd for p in model.pars) for kd in ("sigma2", "tau2", "rho")}
    sym = {"sigma2": "sigma^2", "tau2": "tau^2", "rho": "rho"}
    return [sym[p.kind] if count[p.kind] == 1 else f"{sym[p.kind]}.{p.index + 1}"
            for p in model.pars]


@_one_blas_thread
def profile_ll(fit: MVFit, name: str, value: float) -> float:
    """The profile log-likelihood of ``fit``'s method with component ``name``
    (metafor's row name, e.g. ``"rho"``, ``"tau^2.1"``) fixed at ``value``."""
    model = _Model(fit.V, fit.random)
    names = _par_names(model)
    if name not in names:
        raise ValueError(f"no component {name!r} in this model; it has {names}")
    return _profile(fit, model, names.index(name), float(value))[0]


def _profile(fit: MVFit, model: _Model, i: int, v: float, warm=None) -> tuple[float, np.ndarray]:
    """(profile ll, its theta) with component i fixed at v; ``warm``: a theta to start from."""
    y, X = fit.yi, fit.X
    logdet_xx = float(np.linalg.slogdet(X.T @ X)[1])
    reml = fit.method == "REML"
    p = model.pars[i]
    pars = list(model.pars)
    pars[i] = replace(p, fixed=v)
    m = _with_pars(model, pars)
    best, best_th = -np.inf, None
    # warm start from a nearby profile point (or the fit), metafor's start as a second chance
    starts = ([] if warm is None else [warm.copy()]) + [fit.theta.copy(), _start(m, y, X, fit.V)]
    for th in starts:
        with np.errstate(divide="ignore"):
            th[i] = p.to_theta(v)
        th[~np.isfinite(th) & (np.arange(len(th)) != i)] = np.log(1e-3 * max(np.var(y), 1e-12))
        try:
            th = _maximise(m, y, X, logdet_xx, th, reml)
        except MetaError:
            continue
        llv = _ll(m, y, X, logdet_xx, th, reml)
        if llv > best:
            best, best_th = llv, th
        if np.isfinite(best):
            break
    return best, best_th


@_one_blas_thread
def confint(fit: MVFit, *, level: float = 95) -> list[ProfileCI]:
    """Profile-likelihood CIs of every estimated component, as metafor 3.8-1 ``confint(rma.mv)``.

    For component c with estimate c_hat, the bounds solve 2 (ll_max -
    ll_p(c)) = chi^2_1(level), where ll_p(c) maximises the (restricted)
    log-likelihood over the other components with c fixed. Search ranges
    (metafor's defaults): variances [0, max(10, 100 c_hat)] (10 when c_hat
    <= sqrt(eps)); correlations [-1, 1], [min(0, rho_hat), 1] for AR/HAR.
    A range end where the profile is still inside the interval is the bound.
    Roots by ``scipy.optimize.brentq`` (xtol ``PROFILE_XTOL``), each profile
    point warm-started from the fit.
    """
    model = _Model(fit.V, fit.random)
    cut = float(special.chdtri(1, 1 - level / 100.0))
    names = _par_names(model)
    nat = model.natural(fit.theta)
    out = []
    for i, p in enumerate(model.pars):
        if p.fixed is not None:
            continue
        est = float(nat[i])

        # each profile point starts from the fit, not from the previous point:
        # a neighbour whose variance went to ~0 (log scale -> -inf, score -> 0)
        # would trap the next point on that boundary
        def f(v, i=i):
            best, _ = _profile(fit, model, i, float(v))
            return 2 * (fit.ll - best) - cut if np.isfinite(best) else np.nan

        if p.kind == "rho":
            lo = min(0.0, est) if model.struct in ("AR", "HAR") else -1.0
            hi = 1.0
        else:
            lo = 0.0
            hi = 10.0 if est <= SQRT_EPS else max(10.0, 100.0 * est)
        bounds = []
        for end in (lo, hi):
            # metafor's eptries: where the profile cannot be fitted at the end
            # of the range, the end moves a tenth of the way to the estimate
            step = (est - end) / EPTRIES
            for _ in range(EPTRIES):
                fe = f(end)
                if not np.isnan(fe):
                    break
                end += step
            if np.isnan(fe):
                bounds.append((np.nan, False))
            elif fe < 0:
                bounds.append((end, True))
            else:
                a, b = (end, est) if end < est else (est, end)
                try:
                    root = optimize.brentq(f, a, b, xtol=PROFILE_XTOL,
                                           rtol=4 * np.finfo(float).eps)
                except ValueError:  # a profile point that cannot be fitted
                    root = np.nan
                bounds.append((root, False))
        (lb, lb_b), (ub, ub_b) = bounds
        # metafor's "<" / ">": a bound at the end of the searched range that is
        # not the end of the parameter space (0 for a variance, -1/1 for rho)
        floor = -1.0 if p.kind == "rho" else 0.0
        out.append(ProfileCI(names[i], est, Interval(float(lb), float(ub)),
                             lb_at_bound=bool(lb_b and lb > floor),
                             ub_at_bound=bool(ub_b and not (p.kind == "rho" and ub >= 1.0))))
    return out


def confint_dict(cis: list[ProfileCI]) -> dict:
    """The ``confint`` section: one entry per component; with a single one,
    also its square root (``sigma``/``tau``), as metafor prints."""
    out = {c.name: {"estimate": c.estimate, "ci.lb": c.ci.low, "ci.ub": c.ci.high} for c in cis}
    if len(cis) == 1 and not cis[0].name.startswith("rho"):
        c = cis[0]
        out[c.name.replace("^2", "")] = {"estimate": np.sqrt(c.estimate),
                                         "ci.lb": np.sqrt(c.ci.low), "ci.ub": np.sqrt(c.ci.high)}
    return out


# --------------------------------------------------------------------------- LRT

@dataclass(frozen=True)
class LRTest:
    """Likelihood-ratio test of two nested fits (metafor ``anova(full, reduced)``)."""

    LRT: float
    df: int
    pval: float
    parms_f: int
    parms_r: int
    fit_f: FitStats
    fit_r: FitStats
    QE_f: float
    QE_r: float

    def as_dict(self) -> dict:
        fs = lambda s: [s.ll, s.dev, s.AIC, s.BIC, s.AICc]  # noqa: E731
        return {"LRT": self.LRT, "pval": self.pval, "df": self.df, "parms.f": self.parms_f,
                "parms.r": self.parms_r, "fit.stats.f": fs(self.fit_f),
                "fit.stats.r": fs(self.fit_r), "QE.f": self.QE_f, "QE.r": self.QE_r}


def anova(full: MVFit, reduced: MVFit) -> LRTest:
    """LRT = 2 |ll_full - ll_reduced|, chi^2 with parms_full - parms_reduced df.

    As metafor 3.8-1 ``anova.rma``: both fits must use the same method and
    data; REML fits must also have the same fixed effects (their restricted
    likelihoods are not comparable otherwise). The fuller model is the one
    with more parameters (swapped if given the other way round).
    """
    if full.method != reduced.method:
        raise ValueError("anova: both models must be fitted with the same method")
    if full.k != reduced.k or not np.array_equal(full.yi, reduced.yi):
        raise ValueError("anova: the models must be fitted to the same data")
    if full.parms < reduced.parms:
        full, reduced = reduced, full
    if full.method == "REML" and not (full.X.shape == reduced.X.shape
                                      and np.allclose(full.X, reduced.X)):
        raise ValueError("anova: REML fits can only be compared with the same fixed effects")
    df = full.parms - reduced.parms
    lrt = abs(2 * (full.ll - reduced.ll))
    return LRTest(LRT=float(lrt), df=int(df), pval=float(special.chdtrc(df, lrt)),
                  parms_f=full.parms, parms_r=reduced.parms, fit_f=full.fit_stats(),
                  fit_r=reduced.fit_stats(), QE_f=full.QE, QE_r=reduced.QE)


# --------------------------------------------------------------------------- Wald

@dataclass(frozen=True)
class WaldTest:
    """Wald tests of linear combinations L beta (metafor ``anova(fit, X = L)``)."""

    L: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    QM: float
    QMdf: tuple
    QMp: float

    def as_dict(self) -> dict:
        return {"L": self.L.tolist(), "estimate": self.estimate.tolist(), "se": self.se.tolist(),
                "stat": self.stat.tolist(), "pval": self.pval.tolist(), "QM": self.QM,
                "QMdf": [self.QMdf[0], float("nan") if self.QMdf[1] is None else self.QMdf[1]],
                "QMp": self.QMp}


def wald(fit: MVFit, L) -> WaldTest:
    """Each row l of L: l'beta, se = sqrt(l' Var(beta) l), z (t with k - p df
    under ``test="t"``) and its p; jointly QM = (L beta)' (L Var L')^-1 (L beta),
    chi^2 with m = rows df, or F = QM/m with (m, k - p) df under t, as metafor
    3.8-1 ``anova(fit, X = L)`` (e.g. the difference of two outcomes, L = (1, -1))."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.shape[1] != fit.p:
        raise ValueError(f"L must have {fit.p} columns (one per coefficient), got {L.shape[1]}")
    est = L @ fit.beta
    VL = L @ fit.vb @ L.T
    se = np.sqrt(np.diag(VL))
    stat = est / se
    m = L.shape[0]
    QM = float(est @ np.linalg.solve(VL, est))
    if fit.test == "t":
        pval = 2 * special.stdtr(fit.df, -np.abs(stat))
        QM /= m
        QMdf, QMp = (m, fit.df), float(special.fdtrc(m, fit.df, QM))
    else:
        pval = 2 * special.ndtr(-np.abs(stat))
        QMdf, QMp = (m, None), float(special.chdtrc(m, QM))
    return WaldTest(L=L, estimate=est, se=se, stat=stat, pval=pval, QM=QM, QMdf=QMdf, QMp=QMp)


# --------------------------------------------------------------------------- CR2

@dataclass(frozen=True)
class CR2Test:
    """Cluster-robust (CR2) tests of each coefficient with Satterthwaite df."""

    names: tuple
    beta: np.ndarray
    se: np.ndarray
    tstat: np.ndarray
    df: np.ndarray
    pval: np.ndarray
    vcov: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {"names": list(self.names), "estimate": self.beta.tolist(), "SE": self.se.tolist(),
                "tstat": self.tstat.tolist(), "df": self.df.tolist(), "pval": self.pval.tolist()}


def _sym_power(A: np.ndarray, power: float) -> np.ndarray:
    """clubSandwich's ``matrix_power``: eigenvalues <= 1e-12 are set to 0."""
    w, U = np.linalg.eigh(A)
    with np.errstate(divide="ignore"):
        wp = np.where(w > 1e-12, np.abs(w) ** power, 0.0)
    return (U * wp) @ U.T


@_one_blas_thread
def cr2(fit: MVFit, cluster) -> CR2Test:
    """CR2 cluster-robust variance and Satterthwaite t tests, as clubSandwich 0.5.8
    ``coef_test(fit, vcov = "CR2", cluster = cluster)`` for an rma.mv model.

    With working weights W_j = M_j^-1 (M the fitted marginal covariance,
    also the target Theta_j = M_j) and B = (X'WX)^-1 (Pustejovsky & Tipton
    2018, "inverse_var" form):

        A_j   = T_j' [T_j (I - X_j B X_j' W_j) M_j T_j']^(-1/2) T_j,  T_j = chol(M_j) (upper)
        V_CR2 = B [sum_j X_j' W_j A_j r_j r_j' A_j W_j X_j] B,        r = y - X beta

    Satterthwaite df of coefficient c: with G_j = B X_j' W_j A_j T_j' (p x n_j)
    and H_j = B X_j' W_j A_j X_j L (L = chol(B), lower), the J x J matrix
    P_c = diag_j(|G_j[c, :]|^2) - H[c]' H[c] (H[c] the p x J matrix of rows c),
    df_c = 2 tr(P_c)^2 / (2 |P_c|_F^2). p from t(df_c).
    Clusters must nest the random effects (clubSandwich checks it; here the
    caller's responsibility, as the marginal M must be block-diagonal by cluster).
    """
    codes, _ = _codes(cluster, "cluster")
    if len(codes) != fit.k:
        raise ValueError(f"cluster has {len(codes)} entries, the model has {fit.k} estimates")
    J = codes.max() + 1
    if J < 2:
        raise ValueError("Cluster-robust variance estimation needs at least two clusters")
    # M cluster by cluster from its independent blocks (each must lie in one cluster)
    model = _Model(fit.V, fit.random)
    per_cluster: dict = {}
    for ix, Mb in model.block_M(fit.theta):
        cl = np.unique(codes[ix])
        if len(cl) > 1:
            raise ValueError("the random effects (or V) are not nested within the clusters")
        per_cluster.setdefault(int(cl[0]), []).append((ix, Mb))
    X, y, B = fit.X, fit.yi, fit.vb
    r = y - X @ fit.beta
    Lb = np.linalg.cholesky(B)
    p = X.shape[1]
    comps, Gs, Hs = [], [], []
    for j in range(J):
        parts = per_cluster[j]
        idx = np.concatenate([ix for ix, _ in parts])
        Mj = linalg.block_diag(*[Mb for _, Mb in parts])
        Xj = X[idx]
        Wj = np.linalg.inv(Mj)
        Tj = linalg.cholesky(Mj, lower=False)
        IH = np.eye(len(idx)) - Xj @ B @ Xj.T @ Wj
        Gm = Tj @ IH @ Mj @ Tj.T
        Aj = Tj.T @ _sym_power((Gm + Gm.T) / 2, -0.5) @ Tj
        Ej = Xj.T @ Wj @ Aj
        comps.append(Ej @ r[idx])
        ME = B @ Ej
        Gs.append(ME @ Tj.T)
        Hs.append(ME @ Xj @ Lb)
    C = np.array(comps).T
    Vcr = B @ (C @ C.T) @ B
    se = np.sqrt(np.diag(Vcr))
    with np.errstate(divide="ignore", invalid="ignore"):  # a coefficient no cluster informs
        t = fit.beta / se
    df = np.empty(p)
    for c in range(p):
        Hc = np.array([H[c, :] for H in Hs]).T          # p x J
        P = -Hc.T @ Hc
        P[np.diag_indices(J)] += [np.sum(G[c, :] ** 2) for G in Gs]
        with np.errstate(divide="ignore", invalid="ignore"):
            df[c] = 2 * np.trace(P) ** 2 / (2 * np.sum(P ** 2))
    pval = 2 * special.stdtr(df, -np.abs(t))
    return CR2Test(names=fit.names, beta=fit.beta, se=se, tstat=t, df=df, pval=pval, vcov=Vcr)


# --------------------------------------------------------------------------- V helpers

def vcalc(vi, cluster, *, rho: float | None = None, time=None, phi: float | None = None):
    """Within-cluster sampling covariance from an assumed correlation (metafor ``vcalc``).

    V_ii = v_i; for i != j in the same cluster V_ij = r_ij sqrt(v_i v_j) with
    r_ij = rho (estimates of different outcomes, e.g. a sensitivity range of
    assumed correlations), phi^|t_i - t_j| (one outcome at time points t,
    AR(1) decay), or rho phi^|t_i - t_j| when both are given; 0 across clusters.
    metafor 3.8-1: ``vcalc(vi, cluster, rho=)``, ``vcalc(vi, cluster, time1=, phi=)``.
    """
    v = np.asarray(vi, dtype=float)
    codes, _ = _codes(cluster, "cluster")
    if rho is None and phi is None:
        raise ValueError("vcalc needs rho (assumed correlation) and/or time with phi")
    r = np.full((len(v), len(v)), 1.0 if rho is None else float(rho))
    if phi is not None:
        if time is None:
            raise ValueError("vcalc: phi needs time")
        t = np.asarray(time, dtype=float)
        r = r * float(phi) ** np.abs(np.subtract.outer(t, t))
    s = np.sqrt(v)
    Vm = r * np.outer(s, s) * np.equal.outer(codes, codes)
    Vm[np.diag_indices(len(v))] = v
    return Vm


def rvars_vcov(cluster, rvars) -> np.ndarray:
    """V from per-row covariance columns (metafor ``vcalc(vi=1, cluster, rvars=c(...))``).

    Row i, the a-th row of its cluster, holds in column b the covariance of
    its estimate with the b-th estimate of the cluster (dat.berkey1998's
    v1i, v2i): V[i, j] = rvars[pos(j)][i] within a cluster, 0 across.
    """
    R = np.column_stack([np.asarray(c, dtype=float) for c in rvars])
    codes, _ = _codes(cluster, "cluster")
    k = len(codes)
    Vm = np.zeros((k, k))
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        if len(idx) > R.shape[1]:
            raise ValueError(f"cluster {c} has {len(idx)} rows but only {R.shape[1]} rvars columns")
        Vm[np.ix_(idx, idx)] = R[np.ix_(idx, range(len(idx)))]
    return Vm


def shared_arm_vcov(vi, cluster, shared_var) -> np.ndarray:
    """V of contrasts that share one (control) arm: Cov = the shared arm's variance.

    Two contrasts y_a = T_a - C and y_b = T_b - C of one trial share C, so
    Cov(y_a, y_b) = Var(C) (Gleser & Olkin 2009 [5]); ``shared_var`` gives
    Var(C) per row, and the first row of each cluster's value is used (as
    metafor's network examples). Var(C) by measure: ``arm_var``.
    """
    v = np.asarray(vi, dtype=float)
    sv = np.asarray(shared_var, dtype=float)
    codes, _ = _codes(cluster, "cluster")
    first = {}
    for i, c in enumerate(codes):
        first.setdefault(c, sv[i])
    s = np.array([first[c] for c in codes])
    Vm = np.where(np.equal.outer(codes, codes), s[:, None], 0.0)
    Vm[np.diag_indices(len(v))] = v
    return Vm


def arm_var(measure: str, *, x=None, n=None, sd=None, add: float = 0.0) -> np.ndarray:
    """Sampling variance of one arm's contribution to a contrast.

    OR: 1/(x + add) + 1/(n - x + add) (log odds; Gleser & Olkin eq. 19.11);
    RR: 1/(x + add) - 1/(n + 2 add) (log risk, the arm's term of escalc's
    RR variance); MD: sd^2 / n (the arm's mean).
    """
    if measure == "OR":
        x, n = np.asarray(x, float), np.asarray(n, float)
        return 1 / (x + add) + 1 / (n - x + add)
    if measure == "RR":
        x, n = np.asarray(x, float), np.asarray(n, float)
        return 1 / (x + add) - 1 / (n + 2 * add)
    if measure == "MD":
        return np.asarray(sd, float) ** 2 / np.asarray(n, float)
    raise ValueError(f"arm_var: measure must be OR, RR or MD, got {measure!r}")


@dataclass(frozen=True)
class RhoSensitivity:
    """Fits of one model under each assumed within-cluster correlation rho."""

    rho: tuple
    fits: tuple

    def table(self) -> list[dict]:
        """One row per rho: the coefficients and their CIs, and the variance components."""
        return [{"rho": r, "estimate": f.beta.tolist(), "se": f.se.tolist(),
                 "ci.lb": [c.low for c in f.ci], "ci.ub": [c.high for c in f.ci],
                 "sigma2": f.sigma2.tolist(), "tau2": f.tau2.tolist()}
                for r, f in zip(self.rho, self.fits)]


def rho_sensitivity(yi, vi, cluster, rhos=(0.0, 0.2, 0.4, 0.6, 0.8), **kwargs) -> RhoSensitivity:
    """Refit ``rma_mv`` with V = ``vcalc(vi, cluster, rho=r)`` for each assumed r.

    When estimates of one trial share patients but their sampling
    correlation is not reported, the analysis is repeated over a range of
    assumed correlations (metafor's ``vcalc(rho=)`` help page; Pustejovsky &
    Tipton 2022, "Meta-analysis with robust variance estimation: expanding
    the range of working models", Prev Sci 23:425-438, who pair it with CR2
    inference, ``cr2``). ``kwargs`` go to ``rma_mv``.
    """
    fits = tuple(rma_mv(yi, vcalc(vi, cluster, rho=float(r)), **kwargs) for r in rhos)
    return RhoSensitivity(rho=tuple(float(r) for r in rhos), fits=fits)
