"""GENQM (``ntxmeta.genqm``) against independent computations.

metafor's GENQM needs CompQuadForm, which the oracle lacks, so every
reference case holds an error there; these tests use no value our code
produced as a reference:

(a) the weighted chi^2 distribution function against the exact chi^2
    distribution (equal weights), the exact exponential mixture (weights in
    equal pairs) and Monte Carlo simulation (arbitrary weights);
(b) the determinant formula of ``q_a_sf`` (no eigenvalues) against the
    eigenvalues of the dense k x k matrix S P_a S, for p = 1, 2, 3;
(c) GENQM = PMM when all v_i are equal and a = 1/v (derivation below), and
    when k = 2;
(d) the defining median property by simulation at the estimated tau^2;
(e) se.tau2 of an ``rma(method="GENQM")`` fit against the dense formula of
    metafor's rma.uni.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ntxmeta.genqm import q_a_sf, wchisq_cdf, wchisq_sf
from ntxmeta.rma import estimate_tau2, rma

#: Imhof's inversion is accurate to ~1e-13 absolute (QUAD_EPSABS); 1e-11
#: allows for the three quadratures adding up and for scipy's chi^2 itself.
EXACT_ATOL = 1e-11
#: Monte Carlo: draws, and the allowed distance in standard errors (a
#: correct implementation fails one such check with probability ~6e-7).
N_SIM = 400_000
SIM_Z = 5.0


def _sim_ok(p_hat, p):
    return abs(p_hat - p) <= SIM_Z * np.sqrt(p * (1 - p) / N_SIM) + 1e-12


# --------------------------------------------------------------------------- (a)

@pytest.mark.parametrize("m", [1, 2, 3, 6, 25, 400, 3000])
@pytest.mark.parametrize("w", [0.04, 1.0, 30.0])
def test_equal_weights_give_the_chi2_distribution(m, w):
    """Many terms are the hard case: near the median the phase of the
    integrand nearly cancels the oscillation it is split from."""
    for x_over_w in (1e-3, 0.4, 1.0, 0.8 * m, m, 1.1 * m, 3 * m + 10):
        x = w * x_over_w
        assert wchisq_sf(x, [w] * m) == pytest.approx(stats.chi2.sf(x_over_w, m), abs=EXACT_ATOL)
        assert wchisq_cdf(x, [w] * m) == pytest.approx(stats.chi2.cdf(x_over_w, m), abs=EXACT_ATOL)


@pytest.mark.parametrize("lams", [[1.0, 3.0], [0.01, 2.0, 50.0], [0.3, 0.31, 7.0, 100.0]])
def test_paired_weights_give_the_exponential_mixture(lams):
    """sum_j lam_j (chi^2_1 + chi^2_1) = sum_j lam_j chi^2_2 with distinct lam_j has
    P(Q > x) = sum_j prod_{l != j} lam_j / (lam_j - lam_l) exp(-x / (2 lam_j))."""
    lams = np.asarray(lams)
    weights = np.repeat(lams, 2)
    for x in (0.05, 1.0, 5.0, 40.0, 400.0):
        exact = sum(np.prod([lj / (lj - ll) for ll in lams if ll != lj]) * np.exp(-x / (2 * lj))
                    for lj in lams)
        assert wchisq_sf(x, weights) == pytest.approx(exact, abs=EXACT_ATOL)


@pytest.mark.parametrize("lams", [[5.0, 0.2, 0.01], [1e3, 1.0, 1e-3, 2.0], [2.0, 1.0]])
def test_weighted_chi2_against_simulation(lams):
    rng = np.random.default_rng(11)
    sims = (np.asarray(lams) * rng.chisquare(1, size=(N_SIM, len(lams)))).sum(1)
    for x in np.quantile(sims, [0.05, 0.5, 0.95]):
        assert _sim_ok(np.mean(sims <= x), wchisq_cdf(x, lams))


def test_weighted_chi2_edges():
    assert wchisq_sf(0.0, [1.0, 2.0]) == 1.0
    assert wchisq_sf(-1.0, [1.0]) == 1.0
    assert wchisq_sf(0.5, [0.0, 0.0]) == 0.0
    assert wchisq_sf(2.0, [0.0, 1.0]) == pytest.approx(stats.chi2.sf(2.0, 1), abs=EXACT_ATOL)
    with pytest.raises(ValueError):
        wchisq_sf(1.0, [1.0, -0.5])
    with pytest.raises(ValueError):
        wchisq_sf(1.0, [np.nan])


# --------------------------------------------------------------------------- (b)

def _dense_eigenvalues(v, a, X, tau2):
    k = v.size
    X = np.ones((k, 1)) if X is None else X
    A = np.diag(a)
    P = A - A @ X @ np.linalg.pinv(X.T @ A @ X) @ X.T @ A
    S = np.diag(np.sqrt(v + tau2))
    return np.clip(np.linalg.eigvalsh(S @ P @ S), 0.0, None)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_determinant_formula_matches_dense_eigenvalues(p):
    rng = np.random.default_rng(p)
    k = 9
    v = rng.uniform(0.01, 0.6, k)
    a = rng.uniform(0.2, 4.0, k)
    a[4] = 0.0  # a zero weight drops a study
    X = None if p == 1 else np.column_stack([np.ones(k), rng.normal(size=(k, p - 1))])
    for tau2 in (0.0, 0.05, 2.0):
        lam = _dense_eigenvalues(v, a, X, tau2)
        for q in (0.3, 2.0, 9.0, 60.0):
            assert q_a_sf(q, v, a, X, tau2) == pytest.approx(wchisq_sf(q, lam), abs=1e-10)


# --------------------------------------------------------------------------- (c)

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_x", [False, True])
def test_equal_variances_make_genqm_pmm(seed, with_x):
    """With v_i = v and a_i = 1/v, P_a = (I - H)/v (H the hat matrix of X), so
    S P_a S = (v + tau^2)/v (I - H) has k - p eigenvalues (v + tau^2)/v and
    Q_a ~ (v + tau^2)/v chi^2(k - p). The median condition becomes
    q_a v / (v + tau^2) = median chi^2(k - p); and q_a v / (v + tau^2) is the
    Q(tau^2) = sum (y - X b)^2 / (v + tau^2) whose root at the chi^2 median
    defines PMM. So the two estimators coincide (both floored at 0)."""
    rng = np.random.default_rng(seed)
    k = 6 + seed
    v = np.full(k, 0.04 * (seed + 1))
    X = np.column_stack([np.ones(k), rng.uniform(0, 1, k)]) if with_x else None
    y = rng.normal(0.3, np.sqrt(v + 0.1 * seed))
    genqm = estimate_tau2(y, v, method="GENQM", X=X, weights=1 / v)
    pmm = estimate_tau2(y, v, method="PMM", X=X)
    assert genqm == pytest.approx(pmm, rel=1e-9, abs=1e-14)


def test_many_studies_equal_variances_make_genqm_pmm():
    rng = np.random.default_rng(21)
    k = 800
    v = np.full(k, 0.07)
    y = rng.normal(0.0, np.sqrt(v + 0.05))
    assert estimate_tau2(y, v, method="GENQM", weights=1 / v) == pytest.approx(
        estimate_tau2(y, v, method="PMM"), rel=1e-9)


def test_two_studies_make_genqm_pmm():
    """k = 2: one eigenvalue (v1 + v2 + 2 tau^2) a1 a2 / (a1 + a2) and q_a =
    (y1 - y2)^2 a1 a2 / (a1 + a2), so the median condition is
    (y1 - y2)^2 / (v1 + v2 + 2 tau^2) = median chi^2(1) for any weights: PMM."""
    y, v = np.array([0.1, 0.9]), np.array([0.03, 0.2])
    for a in (1 / v, np.array([1.0, 5.0])):
        assert estimate_tau2(y, v, method="GENQM", weights=a) == pytest.approx(
            estimate_tau2(y, v, method="PMM"), rel=1e-9)


def test_floor_at_zero():
    v = np.array([0.1, 0.2, 0.15, 0.3, 0.12])
    assert estimate_tau2(np.full(5, 0.4), v, method="GENQM", weights=1 / v) == 0.0  # Q_a = 0
    y = np.array([0.40, 0.42, 0.38, 0.41, 0.39])  # q_a far below the median at tau^2 = 0
    a = 1 / v
    assert q_a_sf(float((a * (y - (a * y).sum() / a.sum()) ** 2).sum()), v, a, None, 0.0) > 0.5
    assert estimate_tau2(y, v, method="GENQM", weights=a) == 0.0


# --------------------------------------------------------------------------- (d)

@pytest.mark.parametrize("weights", ["inverse", "unit"])
@pytest.mark.parametrize("with_x", [False, True])
def test_median_property_by_simulation(weights, with_x):
    """At the GENQM estimate, half of the simulated Q_a fall below q_a."""
    y = np.array([0.12, 0.95, -0.30, 0.41, 0.77, 0.05])
    v = np.array([0.02, 0.09, 0.05, 0.30, 0.04, 0.11])
    k = y.size
    a = 1 / v if weights == "inverse" else np.ones(k)
    X = np.column_stack([np.ones(k), np.arange(k, dtype=float)]) if with_x else None
    tau2 = float(estimate_tau2(y, v, method="GENQM", X=X, weights=a))
    assert tau2 > 0
    Xd = np.ones((k, 1)) if X is None else X
    A = np.diag(a)
    P = A - A @ Xd @ np.linalg.inv(Xd.T @ A @ Xd) @ Xd.T @ A
    q_obs = float(y @ P @ y)
    rng = np.random.default_rng(5)
    sims = rng.normal(0.0, np.sqrt(v + tau2), size=(N_SIM, k))  # Q_a does not depend on beta
    q_sim = np.einsum("nk,kl,nl->n", sims, P, sims)
    assert _sim_ok(np.mean(q_sim <= q_obs), 0.5)


# --------------------------------------------------------------------------- batch and fit

def test_batch_equals_one_by_one():
    y = np.array([[0.1, 0.5, 0.3, -0.2, 0.8], [0.4, 0.0, 1.1, np.nan, np.nan]])
    v = np.array([[0.02, 0.05, 0.04, 0.03, 0.06], [0.1, 0.2, 0.05, np.nan, np.nan]])
    a = np.where(np.isfinite(v), 1 / v, 0.0)
    batch = estimate_tau2(y, v, method="GENQM", weights=a)
    for i in range(2):
        keep = np.isfinite(y[i])
        assert batch[i] == pytest.approx(
            estimate_tau2(y[i, keep], v[i, keep], method="GENQM", weights=a[i, keep]), rel=1e-12)


def test_fit_se_tau2_matches_dense_formula():
    """metafor: se.tau2 = sqrt(2 sum(PV * t(PV)) + 4 tau^2 sum(PV * P)
    + 2 tau^4 sum(P * P)) / tr(P), P = P_a, V = diag(v)."""
    y = np.array([0.1, 0.5, 0.3, -0.2, 0.8, 0.25])
    v = np.array([0.02, 0.05, 0.04, 0.03, 0.06, 0.08])
    a = 1 / v
    fit = rma(y, v, method="GENQM", weights=a)
    A = np.diag(a)
    one = np.ones((y.size, 1))
    P = A - A @ one @ one.T @ A / a.sum()
    PV = P @ np.diag(v)
    t = fit.tau2
    se = np.sqrt(2 * np.sum(PV * PV.T) + 4 * t * np.sum(PV * P) + 2 * t**2 * np.sum(P * P)) / np.trace(P)
    assert t > 0
    assert fit.se_tau2 == pytest.approx(se, rel=1e-10)


def test_an_analysis_estimates_genqm_once():
    """The ``rma`` and ``rma_knha`` sections share one GENQM estimate (the knha fit is
    derived by ``with_test``), which is why no memo of GENQM estimates is kept."""
    from ntxmeta.analyse import analyse
    from ntxmeta.rma import fit_counter
    spec = Path(__file__).parent / "fixtures" / "oracle" / "bcg_RR" / "spec.json"
    with fit_counter() as fits:
        out = analyse(spec, only=["rma.GENQM", "rma_knha.GENQM"])
    assert fits.by_method == {"GENQM": 1}
    assert fits.fixed == 1
    assert out["rma"]["GENQM"]["tau2"] == out["rma_knha"]["GENQM"]["tau2"]
