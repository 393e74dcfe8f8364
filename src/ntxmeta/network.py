"""Contrast-based network meta-analysis on the multilevel engine (``rma_mv``).

Model (Salanti 2012 [1]; metafor's network examples [2])
--------------------------------------------------------
Each row is a contrast y = treat1 - treat2 of one study with sampling
variance v; the contrasts of a multi-arm study share its common arm
(treat2), so within a study Cov(y_a, y_b) = Var(shared arm) (Gleser &
Olkin 2009; ``multilevel.shared_arm_vcov``). With T treatments and a
reference r, the basic parameters are d_t = mu_t - mu_r (t != r) and the
consistency model is

    y = X d + u + e,  e ~ N(0, V),  X[row, t1] = +1, X[row, t2] = -1 (no column for r)

with random study-by-contrast effects u ~ N(0, tau2 (Z1 R Z1') o (Z2 Z2')),
R_lm = 1/2 for two contrasts of one study (metafor ``random = ~ comp |
study, rho = 1/2``: every comparison has heterogeneity tau2, and for
contrasts sharing an arm Var(u_a - u_b) = tau2, as consistency requires).
It is fitted by ``multilevel.rma_mv`` (REML by default), which matches
metafor 3.8-1 ``rma.mv`` on dat.senn2013 and dat.hasselblad1998
(tests/fixtures/oracle_mv). Without random effects (``random=False``) it is
the common-effect model, the weighted least squares fit that netmeta's
graph-theoretical common-effects model equals (Rücker 2012 [3]).

Every pairwise effect: d_ij = d_j - d_i (j versus i) with
Var = Var(d_i) + Var(d_j) - 2 Cov(d_i, d_j), Wald z, CI.

Ranking (``rank_treatments``)
-----------------------------
P-score (Rücker & Schwarzer 2015 [4], netmeta ``netrank``):
P_i = 1/(T-1) sum_{j != i} P_ij with P_ij = Phi((mu_j - mu_i)/s_ij) when
small values are good and Phi((mu_i - mu_j)/s_ij) when large values are
good (the one-sided certainty that i is better than j). SUCRA from the
normal approximation: rank probabilities by Monte Carlo draws of the
treatment effects from N(d, Var(d)) (the frequentist "resampling" that
netmeta's ``rankogram`` does), SUCRA_i = sum_{r<T} cumP_i(r)/(T-1). SUCRA
estimated this way converges to the P-score exactly (SUCRA = (T - E rank)
/(T - 1), and E rank_i - 1 = sum_j P(j better than i), whose terms are the
bivariate-normal margins Phi(.) above; [4], section "P-scores and SUCRA").

Inconsistency
-------------
* ``design_by_treatment``: the design-by-treatment interaction model
  (Higgins et al. 2012 [5]; White et al. 2012 [6]): every design (the set
  of treatments of a study) gets its own treatment effects, mu_{D,t} -
  mu_{D,b} for t in D (b the design's first treatment). It is fitted as
  rma_mv with the design X_cons augmented by a basis of the part of the
  design-specific columns outside span(X_cons) (the same column space as
  the design-specific model, so the same fit), with the same random
  effects; the inconsistency is the Wald QM of the added coefficients
  (chi^2, df = rank of the addition), and, with ML refits of both models,
  the likelihood-ratio test. For the common-effect model the Wald QM is
  Q_between designs of netmeta's ``decomp.design`` (QE_cons - QE_inc).
* ``node_split``: side-splitting by back-calculation (Dias et al. 2010 [7],
  section 3.1; König, Krahn & Binder 2013 [8]; netmeta ``netsplit`` method
  "Back-calculation"). For each comparison A-B with direct evidence, the
  direct estimate is the inverse-variance random-effects pooled estimate of
  the A-B contrasts of the studies that compared A and B (a multi-arm study
  contributes its A-B contrast y_A. - y_B., variance v_A + v_B - 2 Var(shared),
  once), with tau2 fixed at the network's (as netmeta, whose direct
  estimates use the network's tau2); the indirect estimate is back-calculated
  from the network and direct ones,

      w_ind = 1/v_net - 1/v_dir,   d_ind = (d_net/v_net - d_dir/v_dir) / w_ind,

  and the difference d_dir - d_ind is tested with z = diff/sqrt(v_dir +
  v_ind). A comparison has indirect evidence only when A and B are still
  joined through the studies that do not include both (van Valkenhoef et
  al. 2016 [9]): a treatment joined by one comparison, or a loop closed
  only inside one multi-arm study (which is consistent by construction),
  has none, and its indirect estimate is NaN (back-calculation would
  still give a number there, from the random-effects correlation of the
  multi-arm study's contrasts alone); so is it where the network adds
  nothing to the direct evidence (w_ind <= ``INDIRECT_RTOL``/v_net). With multi-arm studies the direct and
  indirect estimates are not exactly independent (Dias 2010, section 3.2):
  this approximation is the one netmeta makes too.

References
----------
1. Salanti G (2012). Indirect and mixed-treatment comparison, network, or
   multiple-treatments meta-analysis. Res Synth Methods 3:80-97.
2. Viechtbauer W. metafor 3.8-1 help pages ``dat.senn2013``,
   ``dat.hasselblad1998``, ``contrmat``.
3. Rücker G (2012). Network meta-analysis, electrical networks and graph
   theory. Res Synth Methods 3:312-324.
4. Rücker G, Schwarzer G (2015). Ranking treatments in frequentist network
   meta-analysis works without resampling methods. BMC Med Res Methodol 15:58.
5. Higgins JPT, Jackson D, Barrett JK, Lu G, Ades AE, White IR (2012).
   Consistency and inconsistency in network meta-analysis: concepts and
   models for multi-arm studies. Res Synth Methods 3:98-110.
6. White IR, Barrett JK, Jackson D, Higgins JPT (2012). Consistency and
   inconsistency in network meta-analysis: model estimation using
   multivariate meta-regression. Res Synth Methods 3:111-125.
7. Dias S, Welton NJ, Caldwell DM, Ades AE (2010). Checking consistency in
   mixed treatment comparison meta-analysis. Stat Med 29:932-944.
8. König J, Krahn U, Binder H (2013). Visualizing the flow of evidence in
   network meta-analysis and characterizing mixed treatment comparisons.
   Stat Med 32:5414-5429.
9. van Valkenhoef G, Dias S, Ades AE, Welton NJ (2016). Automated
   generation of node-splitting models for assessment of inconsistency in
   network meta-analysis. Res Synth Methods 7:80-93 (a comparison is split
   only when its treatments stay joined without the studies of both).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from . import multilevel as ml
from ._common import Interval, MetaError, z_crit
from .rma import rma

#: Columns of the design-specific model whose residual on span(X_cons) has a
#: singular value below this (relative to the largest) add no dimension (QR
#: rank rule; the columns are 0/+-1 so real dimensions have singular values ~1).
RANK_RTOL = 1e-10
#: Indirect evidence is taken as absent where the back-calculated weight
#: 1/v_net - 1/v_dir is below this fraction of 1/v_net (rounding of a
#: comparison with direct evidence only leaves ~1e-15 relative).
INDIRECT_RTOL = 1e-8
SMALL_VALUES = ("good", "bad")
#: netmeta >= 2.0 spells them "desirable"/"undesirable".
SMALL_VALUES_ALIASES = {"desirable": "good", "undesirable": "bad"}
#: Monte Carlo draws for rank probabilities and SUCRA (MC error of SUCRA
#: <= 0.5/sqrt(NSIM) ~ 0.0016).
NSIM = 100_000


# --------------------------------------------------------------------------- data

def _validate(study, treat1, treat2, yi, vi):
    # labels as Python str objects (messages and names read 'A', not np.str_('A'))
    s = np.array([str(x) for x in np.asarray(study)], dtype=object)
    t1 = np.array([str(x) for x in np.asarray(treat1)], dtype=object)
    t2 = np.array([str(x) for x in np.asarray(treat2)], dtype=object)
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    k = len(y)
    for name, a in (("study", s), ("treat1", t1), ("treat2", t2), ("vi", v)):
        if a.shape != (k,):
            raise ValueError(f"network: {name} has shape {a.shape}, yi has ({k},)")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v)) and np.all(v > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(y) & np.isfinite(v) & (v > 0)))[0])
        raise MetaError(f"network: row {bad} (study {s[bad]!r}): yi must be finite and vi > 0, "
                        f"got yi={y[bad]!r}, vi={v[bad]!r}")
    for i in range(k):
        if t1[i] == t2[i]:
            raise MetaError(f"network: row {i} (study {s[i]!r}) compares {t1[i]!r} with itself")
    for st in np.unique(s):
        idx = np.flatnonzero(s == st)
        if len(idx) > 1:
            if len(set(t2[idx])) != 1:
                raise MetaError(
                    f"network: study {st!r} has {len(idx)} contrasts with different second "
                    f"treatments {sorted(set(t2[idx]))}; the contrasts of a multi-arm study must "
                    "share its common arm as treat2 (rule: one shared arm per study)")
            if len(set(t1[idx])) != len(idx):
                raise MetaError(f"network: study {st!r} repeats a contrast "
                                f"({list(t1[idx])} vs {t2[idx[0]]!r})")
    return s, t1, t2, y, v


def _connected(treatments: list, t1, t2) -> None:
    parent = {t: t for t in treatments}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(t1, t2):
        parent[find(a)] = find(b)
    roots = {find(t) for t in treatments}
    if len(roots) > 1:
        groups = sorted(sorted(t for t in treatments if find(t) == r) for r in roots)
        raise MetaError(f"network: the treatments form {len(roots)} disconnected networks: "
                        f"{groups}")


def _design_matrix(t1, t2, basic: list) -> np.ndarray:
    col = {t: j for j, t in enumerate(basic)}
    X = np.zeros((len(t1), len(basic)))
    for i, (a, b) in enumerate(zip(t1, t2)):
        if a in col:
            X[i, col[a]] = 1.0
        if b in col:
            X[i, col[b]] = -1.0
    return X


# --------------------------------------------------------------------------- fit

@dataclass(frozen=True)
class PairEffect:
    """One network estimate: ``treat2`` versus ``treat1`` (d_treat2 - d_treat1)."""

    treat1: str
    treat2: str
    estimate: float
    se: float
    ci: Interval
    z: float
    pval: float


@dataclass(frozen=True)
class NetworkFit:
    """A consistency network model.

    ``treatments``: the reference first, then the others sorted; ``d`` (T,)
    each treatment versus the reference (0 for the reference), ``vcov``
    (T, T) their covariance (zero row/column for the reference);
    ``effect[i, j]`` = d_j - d_i (treatment j versus treatment i) with
    ``se``, ``ci_low``, ``ci_high`` (T, T); ``tau2`` the common
    heterogeneity (0 for the common-effect model), ``QE``/``QEdf``/``QEp``
    the test of residual heterogeneity/inconsistency of the common-effect
    fit; ``n_studies[i, j]`` the number of studies that compared i and j
    directly; ``mv`` the underlying ``rma_mv`` fit.
    """

    treatments: tuple
    reference: str
    d: np.ndarray
    vcov: np.ndarray
    effect: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    tau2: float
    QE: float
    QEdf: int
    QEp: float
    method: str
    level: float
    random: bool
    n_studies: np.ndarray
    mv: ml.MVFit = field(repr=False)
    study: np.ndarray = field(repr=False)
    treat1: np.ndarray = field(repr=False)
    treat2: np.ndarray = field(repr=False)
    yi: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)

    @property
    def basic(self) -> tuple:
        """Names of the basic parameters (the non-reference treatments)."""
        return self.treatments[1:]

    def index(self, treatment: str) -> int:
        try:
            return self.treatments.index(treatment)
        except ValueError:
            raise KeyError(f"unknown treatment {treatment!r}; "
                           f"treatments are {list(self.treatments)}") from None

    def pair(self, treat1: str, treat2: str) -> PairEffect:
        """``treat2`` versus ``treat1``: d_treat2 - d_treat1 with SE, CI and Wald z test."""
        i, j = self.index(treat1), self.index(treat2)
        est, se = float(self.effect[i, j]), float(self.se[i, j])
        z = est / se
        return PairEffect(treat1, treat2, est, se,
                          Interval(float(self.ci_low[i, j]), float(self.ci_high[i, j])), z,
                          float(2 * special.ndtr(-abs(z))))

    def pairs(self) -> list[PairEffect]:
        """Every pair i < j (in ``treatments`` order), j versus i."""
        T = len(self.treatments)
        return [self.pair(self.treatments[i], self.treatments[j])
                for i in range(T) for j in range(i + 1, T)]

    def comparisons(self) -> list[tuple[str, str, int]]:
        """(treatment a, treatment b, number of studies) of each directly compared pair."""
        T = len(self.treatments)
        return [(self.treatments[i], self.treatments[j], int(self.n_studies[i, j]))
                for i in range(T) for j in range(i + 1, T) if self.n_studies[i, j] > 0]


def _study_pairs(study, t1, t2) -> dict:
    """{study: set of treatments} (a multi-arm study compares every pair of its arms)."""
    arms: dict = {}
    for s, a, b in zip(study, t1, t2):
        arms.setdefault(s, set()).update((a, b))
    return arms


def network(study, treat1, treat2, yi, vi, *, V=None, shared_var=None, reference: str | None = None,
            random: bool = True, method: str = "REML", level: float = 95) -> NetworkFit:
    """Fit the contrast-based consistency model of a network.

    Parameters
    ----------
    study, treat1, treat2 : (k,) labels; row i is the contrast treat1 - treat2.
        The contrasts of a multi-arm study share their second treatment.
    yi, vi : (k,) contrast estimates and their sampling variances.
    V : (k, k), optional: the full sampling covariance (overrides ``shared_var``).
    shared_var : (k,), optional: the variance of the shared arm of each row's
        study (``multilevel.arm_var``); V is then ``shared_arm_vcov``. Without
        V and shared_var the contrasts are independent (two-arm studies only;
        a multi-arm study then raises).
    reference : the treatment of the basic parameters (default: the first sorted).
    random : random study-by-contrast effects with rho = 1/2 (metafor
        ``random = ~ comp | study, rho = 1/2``); False = common-effect model.
    method : "REML" or "ML" (``rma_mv``).

    Matches metafor 3.8-1 ``rma.mv(yi, V, mods = ~ contrmat columns - 1,
    random = ~ comp | study, rho = 1/2)`` (tests/test_network.py).
    """
    s, t1, t2, y, v = _validate(study, treat1, treat2, yi, vi)
    k = len(y)
    treatments = sorted(set(t1) | set(t2))
    if reference is None:
        reference = treatments[0]
    if reference not in treatments:
        raise MetaError(f"network: reference {reference!r} is not among the treatments "
                        f"{treatments}")
    if len(treatments) < 3:
        raise MetaError(f"network: needs at least 3 treatments, got {treatments}")
    _connected(treatments, t1, t2)
    if V is not None:
        Vm = np.asarray(V, dtype=float)
        if Vm.shape != (k, k):
            raise ValueError(f"network: V has shape {Vm.shape}, expected ({k}, {k})")
    elif shared_var is not None:
        Vm = ml.shared_arm_vcov(v, s, shared_var)
    else:
        multi = [st for st in np.unique(s) if np.sum(s == st) > 1]
        if multi:
            raise MetaError(f"network: multi-arm studies {multi} need shared_var (or V) for the "
                            "covariance of their contrasts")
        Vm = np.diag(v)
    basic = [t for t in treatments if t != reference]
    X = _design_matrix(t1, t2, basic)
    rnd = _random_term(s, t1, t2) if random else None
    fit = ml.rma_mv(y, Vm, X=X, random=rnd, method=method, level=level, names=basic)
    return _finish(fit, [reference] + basic, reference, method, level, random, s, t1, t2, y, Vm)


def _random_term(s, t1, t2) -> ml.Structured:
    return ml.Structured(inner=np.array([f"{a} vs {b}" for a, b in zip(t1, t2)]), outer=s,
                         struct="CS", rho=0.5)


def _finish(fit, treatments, reference, method, level, random, s, t1, t2, y, Vm) -> NetworkFit:
    T = len(treatments)
    d = np.concatenate([[0.0], fit.beta])
    vc = np.zeros((T, T))
    vc[1:, 1:] = fit.vb
    effect = d[None, :] - d[:, None]
    var = np.diag(vc)[:, None] + np.diag(vc)[None, :] - 2 * vc
    se = np.sqrt(np.clip(var, 0.0, None))
    zc = z_crit(level)
    idx = {t: i for i, t in enumerate(treatments)}
    n = np.zeros((T, T), dtype=int)
    for arms in _study_pairs(s, t1, t2).values():
        a = sorted(idx[t] for t in arms)
        for p in range(len(a)):
            for q in range(p + 1, len(a)):
                n[a[p], a[q]] += 1
                n[a[q], a[p]] += 1
    return NetworkFit(treatments=tuple(treatments), reference=reference, d=d, vcov=vc,
                      effect=effect, se=se, ci_low=effect - zc * se, ci_high=effect + zc * se,
                      tau2=float(fit.tau2[0]) if fit.tau2.size else 0.0, QE=fit.QE,
                      QEdf=fit.QEdf, QEp=fit.QEp, method=method, level=level, random=random,
                      n_studies=n, mv=fit, study=s, treat1=t1, treat2=t2, yi=y, V=Vm)


# --------------------------------------------------------------------------- league table

@dataclass(frozen=True)
class League:
    """League table in the order ``treatments``.

    Lower triangle (row i > column j): the network estimate of the column
    treatment versus the row treatment, d_j - d_i (netmeta ``netleague``'s
    lower triangle); upper triangle (i < j): the direct estimate of the row
    versus the column treatment (d_i - d_j from ``node_split``), NaN where
    no study compared them. ``cells`` formats each as "est (low to high)",
    the treatment names on the diagonal.
    """

    treatments: tuple
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    cells: tuple


def league(fit: NetworkFit, *, order=None, digits: int = 2, transform=None) -> League:
    """League table of ``fit`` (see ``League``); ``order``: treatments in display
    order (default by P-score, best first, small values good); ``transform``:
    applied to estimates and bounds for display (e.g. ``np.exp`` for ORs)."""
    if order is None:
        order = rank_treatments(fit, nsim=0).order
    order = tuple(order)
    if sorted(order) != sorted(fit.treatments):
        raise ValueError(f"league: order must list every treatment once: {list(fit.treatments)}")
    ix = [fit.index(t) for t in order]
    T = len(ix)
    est = np.full((T, T), np.nan)
    lo = np.full((T, T), np.nan)
    hi = np.full((T, T), np.nan)
    direct = {(r.treat1, r.treat2): r for r in node_split(fit)}
    zc = z_crit(fit.level)
    for a in range(T):
        for b in range(T):
            i, j = ix[a], ix[b]
            if a > b:       # column vs row, network
                est[a, b] = fit.effect[i, j]
                lo[a, b], hi[a, b] = fit.ci_low[i, j], fit.ci_high[i, j]
            elif a < b:     # row vs column, direct
                r, sign = direct.get((order[b], order[a])), 1.0
                if r is None:
                    r, sign = direct.get((order[a], order[b])), -1.0
                if r is not None:
                    e = sign * r.direct
                    est[a, b], lo[a, b], hi[a, b] = e, e - zc * r.se_direct, e + zc * r.se_direct
    f = transform or (lambda x: x)
    cells = []
    for a in range(T):
        row = []
        for b in range(T):
            if a == b:
                row.append(order[a])
            elif np.isnan(est[a, b]):
                row.append(".")
            else:
                e, l_, h = (float(f(x)) for x in (est[a, b], lo[a, b], hi[a, b]))
                row.append(f"{e:.{digits}f} ({min(l_, h):.{digits}f} to {max(l_, h):.{digits}f})")
        cells.append(tuple(row))
    return League(order, est, lo, hi, tuple(cells))


# --------------------------------------------------------------------------- ranking

@dataclass(frozen=True)
class Ranking:
    """P-scores, SUCRA and rank probabilities, in ``treatments`` order.

    ``pscore[i]`` (Rücker & Schwarzer 2015); ``pmatrix[i, j]`` the one-sided
    certainty P_ij that i is better than j; ``rank_prob[i, r]`` the
    probability of rank r + 1 (1 = best) from ``nsim`` normal draws (seed
    ``seed``), ``sucra[i]`` from it (NaN when nsim = 0); ``order`` the
    treatments by decreasing P-score.
    """

    treatments: tuple
    small_values: str
    pscore: np.ndarray
    pmatrix: np.ndarray
    sucra: np.ndarray
    rank_prob: np.ndarray
    nsim: int
    order: tuple


def rank_treatments(fit: NetworkFit, *, small_values: str = "good", nsim: int = NSIM,
                    seed: int = 1) -> Ranking:
    """P-scores (exact, from the network estimates and their SEs) and SUCRA
    (Monte Carlo from N(d, Var d)); see the module docstring for the formulas."""
    small_values = SMALL_VALUES_ALIASES.get(small_values, small_values)
    if small_values not in SMALL_VALUES:
        raise ValueError(f"small_values must be one of {SMALL_VALUES}, got {small_values!r}")
    sign = 1.0 if small_values == "good" else -1.0
    T = len(fit.treatments)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = special.ndtr(sign * fit.effect / fit.se)   # effect[i, j] = d_j - d_i
    np.fill_diagonal(P, 0.0)
    pscore = P.sum(axis=1) / (T - 1)
    rank_prob = np.full((T, T), np.nan)
    sucra = np.full(T, np.nan)
    if nsim:
        rng = np.random.default_rng(seed)
        L = np.linalg.cholesky(fit.vcov[1:, 1:])
        draws = np.zeros((nsim, T))
        draws[:, 1:] = fit.d[1:] + rng.standard_normal((nsim, T - 1)) @ L.T
        ranks = np.argsort(np.argsort(sign * draws, axis=1), axis=1)  # 0 = best
        rank_prob = np.stack([np.bincount(ranks[:, i], minlength=T) / nsim for i in range(T)])
        sucra = np.cumsum(rank_prob, axis=1)[:, :-1].sum(axis=1) / (T - 1)
    order = tuple(fit.treatments[i] for i in np.argsort(-pscore, kind="stable"))
    return Ranking(fit.treatments, small_values, pscore, P, sucra, rank_prob, nsim, order)


# --------------------------------------------------------------------------- inconsistency

@dataclass(frozen=True)
class DesignByTreatment:
    """Design-by-treatment interaction test (Higgins et al. 2012).

    ``QM``/``df``/``pval``: Wald chi^2 of the inconsistency coefficients in
    the model of ``fit``'s method; ``LRT``/``LRT_pval``: likelihood ratio of
    ML refits of the inconsistency and consistency models (same df);
    ``tau2``: heterogeneity of the inconsistency model; ``designs``: the
    designs (treatments joined by ":"); ``mv``: the inconsistency fit.
    """

    QM: float
    df: int
    pval: float
    LRT: float
    LRT_pval: float
    tau2: float
    designs: tuple
    mv: ml.MVFit = field(repr=False)


def designs(fit: NetworkFit) -> list[str]:
    """Each row's design: the treatments of its study, sorted and joined by ``:``."""
    arms = _study_pairs(fit.study, fit.treat1, fit.treat2)
    return [":".join(sorted(arms[s])) for s in fit.study]


def inconsistency_columns(fit: NetworkFit) -> np.ndarray:
    """A basis (k, m) of the design-specific columns outside span(X_cons).

    Design-specific columns: for design D with first (sorted) treatment b and
    each other t in D, the column is +1 on rows of D with treat1 = t, -1 on
    rows of D with treat2 = t. Their residuals on X_cons, orthonormalised by
    SVD, give the m = rank([X_cons, X_D]) - rank(X_cons) added dimensions.
    """
    X = fit.mv.X
    des = np.array(designs(fit))
    cols = []
    for D in sorted(set(des)):
        ts = D.split(":")
        rows = des == D
        for t in ts[1:]:
            c = (rows & (fit.treat1 == t)).astype(float) - (rows & (fit.treat2 == t)).astype(float)
            cols.append(c)
    XD = np.column_stack(cols)
    Q, _ = np.linalg.qr(X)
    R = XD - Q @ (Q.T @ XD)
    U, sv, _ = np.linalg.svd(R, full_matrices=False)
    keep = sv > RANK_RTOL * max(1.0, sv[0] if sv.size else 0.0)
    return U[:, keep]


def design_by_treatment(fit: NetworkFit) -> DesignByTreatment:
    """The design-by-treatment interaction model and its tests against ``fit``."""
    E = inconsistency_columns(fit)
    m = E.shape[1]
    des = tuple(sorted(set(designs(fit))))
    if m == 0:
        raise MetaError("design_by_treatment: the network has no loop of evidence from different "
                        f"designs (designs {list(des)}), so there is nothing to test")
    X = fit.mv.X
    Xa = np.column_stack([X, E])
    rnd = _random_term(fit.study, fit.treat1, fit.treat2) if fit.random else None
    p = X.shape[1]
    btt = tuple(range(p, p + m))
    inc = ml.rma_mv(fit.yi, fit.V, X=Xa, random=rnd, method=fit.method, btt=btt)
    if fit.method == "ML":
        cons_ml, inc_ml = fit.mv, inc
    else:
        cons_ml = ml.rma_mv(fit.yi, fit.V, X=X, random=rnd, method="ML")
        inc_ml = ml.rma_mv(fit.yi, fit.V, X=Xa, random=rnd, method="ML")
    lrt = ml.anova(inc_ml, cons_ml)
    return DesignByTreatment(QM=inc.QM, df=int(inc.QMdf[0]), pval=inc.QMp, LRT=lrt.LRT,
                             LRT_pval=lrt.pval, tau2=float(inc.tau2[0]) if inc.tau2.size else 0.0,
                             designs=des, mv=inc)


@dataclass(frozen=True)
class NodeSplit:
    """Direct, indirect (back-calculated) and network estimate of treat2 vs treat1."""

    treat1: str
    treat2: str
    k_direct: int
    direct: float
    se_direct: float
    indirect: float
    se_indirect: float
    network: float
    se_network: float
    diff: float
    se_diff: float
    z: float
    pval: float


def direct_contrasts(fit: NetworkFit, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The b - a contrast of every study that compared a and b, and its variance
    (from two rows of a multi-arm study sharing another arm: their difference,
    v1 + v2 - 2 Cov)."""
    ys, vs = [], []
    for st in dict.fromkeys(fit.study):
        idx = np.flatnonzero(fit.study == st)
        t1, t2 = fit.treat1[idx], fit.treat2[idx]
        shared = t2[0]
        if {a, b} - (set(t1) | {shared}):
            continue
        # each arm's contrast vs the shared arm: value, row (None for the shared arm)
        def arm(t):
            if t == shared:
                return 0.0, None
            r = idx[np.flatnonzero(t1 == t)[0]]
            return fit.yi[r], r
        (ya, ra), (yb, rb) = arm(a), arm(b)
        var = sum(fit.V[r, r] for r in (ra, rb) if r is not None)
        if ra is not None and rb is not None:
            var -= 2 * fit.V[ra, rb]
        ys.append(yb - ya)
        vs.append(var)
    return np.array(ys), np.array(vs)


def has_indirect_path(fit: NetworkFit, a: str, b: str) -> bool:
    """Whether a and b are joined through the studies that do not include both
    (van Valkenhoef et al. 2016 [9]): the condition for indirect evidence."""
    joined = {a}
    arms = [set(fit.treat1[fit.study == st]) | set(fit.treat2[fit.study == st])
            for st in dict.fromkeys(fit.study)]
    arms = [s for s in arms if not {a, b} <= s]
    grew = True
    while grew and b not in joined:
        grew = False
        for s in arms:
            if s & joined and not s <= joined:
                joined |= s
                grew = True
    return b in joined


def node_split(fit: NetworkFit) -> list[NodeSplit]:
    """Side-splitting by back-calculation for every directly compared pair
    (a, b) (a before b in ``treatments``), estimates of b versus a."""
    out = []
    for a, b, _ in fit.comparisons():
        y, v = direct_contrasts(fit, a, b)
        indirect = has_indirect_path(fit, a, b)
        if fit.random:
            r = rma(y, v, method="REML", tau2=fit.tau2)
        else:
            r = rma(y, v, method="EE")
        dd, vd = float(r.beta[0]), float(r.vb[0, 0])
        pe = fit.pair(a, b)
        dn, vn = pe.estimate, pe.se ** 2
        w_ind = 1 / vn - 1 / vd
        if indirect and w_ind > INDIRECT_RTOL / vn:
            vi_ = 1 / w_ind
            di = (dn / vn - dd / vd) * vi_
            diff, sdiff = dd - di, float(np.sqrt(vd + vi_))
            z = diff / sdiff
            p = float(2 * special.ndtr(-abs(z)))
        else:
            di = vi_ = diff = sdiff = z = p = float("nan")
        out.append(NodeSplit(a, b, len(y), dd, float(np.sqrt(vd)), float(di), float(np.sqrt(vi_)),
                             dn, float(np.sqrt(vn)), float(diff), sdiff, float(z), p))
    return out
