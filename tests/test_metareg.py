"""ntxmeta.metareg against metafor 3.8-1 and against hand computations.

The section is compared with every reference that has one (vendored oracle
cases and the synthetic edge cases in fixtures/metafor_extra), as explained
in ``metafor_sections``: the spec as it is reproduces metafor's default
control where oracle.R used it (0 wrong against the oracle), the spec with
``"control": "full"`` its tightly converged fits (fixtures/metafor_tight).
Independent checks: the
common-effect meta-regression is weighted least squares (numpy, by hand),
its R^2 is statsmodels' adjusted weighted R^2, and metafor's documented
behaviour for constant moderators, too few studies and missing values.
"""
from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

import ntxmeta.metareg as mr
from metafor_sections import cases_with, check_against_oracle, check_against_tight, engine_result
from ntxmeta.data import load_spec
from ntxmeta.rma import FULL, METAFOR_DEFAULT, estimate_tau2, rma
from oracle_util import FIXTURES, load

CASES = cases_with("metareg")
TIGHT = FIXTURES.parent / "metafor_tight"


@pytest.fixture(scope="module")
def results():
    """Each case's spec as it is: metafor's default control where oracle.R used it."""
    return {case.name: engine_result(case, "metareg") for case in CASES}


@pytest.fixture(scope="module")
def results_full():
    """Each case's spec with ``"control": "full"``, as the pipeline writes it."""
    return {case.name: engine_result(case, "metareg", control="full") for case in CASES}


def test_references_with_moderators_are_found():
    names = {c.name for c in CASES}
    assert {"bcg_RR", "hackshaw1998_GEN", "bcg_k2_RR"} <= names
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_metareg_matches_metafor(results, case):
    assert check_against_oracle(case, "metareg", results[case.name]) > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_control_matches_tightly_converged_metafor(results_full, case):
    assert check_against_tight(case, "metareg", results_full[case.name]) > 0


@pytest.mark.parametrize("name", ["bcg_OR", "bcg_RD"])
def test_default_spec_fits_reml_fully_and_reml_knha_as_metafor(results, name):
    """oracle.R: ``REML`` is compared with its tight twin, ``REML_knha`` has none.

    metafor's default REML stops 0.03 % (bcg_OR) and 0.04 % (bcg_RD) off
    the root here, so the two tau^2 of one model differ in the reference.
    """
    ref = load(FIXTURES / name / "out.json")["metareg"]
    ours = results[name]["metareg"]
    gap = abs(ref["REML_knha"]["tau2"] - ref["REML_tight"]["tau2"])
    assert gap > 1e-4 * ref["REML_tight"]["tau2"]
    for key in ("tau2", "R2"):
        assert ours["REML"][key] == pytest.approx(ref["REML_tight"][key], rel=1e-8)
        assert ours["REML_tight"][key] == pytest.approx(ref["REML_tight"][key], rel=1e-8)
        assert ours["REML_knha"][key] == pytest.approx(ref["REML_knha"][key], rel=1e-10)


#: Both models on the REML boundary (tau^2 = 0) from HE starts > 0: yi, vi,
#: moderator 0..5, and metafor 3.8-1's R^2 (%) with its default control and
#: with control = list(threshold = 1e-12, tol = 1e-12, maxiter = 10000):
#: ``rma(yi, vi, mods = ~ x)$R2`` (R 4.2.2).
BOUNDARY_R2 = (
    ([-1.61, 1.05, 1.05, -0.2, -0.25, -0.05], [1.0, 1.0, 1.0, 0.5, 1.0, 0.01],
     49.059673616070150, 63.193118888219516),
    ([0.08, -0.07, -0.67, -0.03, 0.96, 0.0], [0.01, 0.01, 1.0, 0.01, 0.5, 0.01],
     0.0, 44.151017376524610),
    ([0.51, 1.76, -0.0, -0.06, -0.01, 0.76], [0.5, 1.0, 0.01, 0.01, 0.01, 1.0],
     95.793776065042120, 53.765041231435575),
)


@pytest.mark.parametrize("yi, vi, default_r2, tight_r2", BOUNDARY_R2)
def test_r2_with_both_models_on_the_boundary(yi, vi, default_r2, tight_r2):
    """metafor's R^2 is then (eps_RE - eps_ME) / eps_RE of two unconverged
    iterates: METAFOR_DEFAULT replays them; FULL converges both
    to 0 and reports metafor's rule for tau2_RE = 0, R^2 = 0, which is not
    what metafor's tight control gives (the one documented difference)."""
    x = np.arange(6.0)
    X = np.column_stack([np.ones(6), x])
    assert float(estimate_tau2(yi, vi, method="HE")) > 0
    assert float(estimate_tau2(yi, vi, method="HE", X=X)) > 0
    emulated = mr.meta_regression(yi, vi, x, control=METAFOR_DEFAULT)
    assert emulated.R2_pct == pytest.approx(default_r2, rel=1e-6, abs=1e-9)
    full = mr.meta_regression(yi, vi, x, control=FULL)
    assert full.fit.tau2 == 0 and rma(yi, vi).tau2 == 0
    assert full.R2_pct == 0.0
    assert tight_r2 > 0   # metafor's tight control: another ratio of iterates


def test_a_control_string_is_refused():
    with pytest.raises(TypeError, match="Control"):
        mr.meta_regression([0.1, 0.4, -0.2, 0.3], [0.05, 0.1, 0.08, 0.2], [1.0, 2.0, 3.0, 5.0],
                           control="tight")


def _case_arrays(name):
    _, data = load_spec(FIXTURES / name / "spec.json")
    u = data.used & np.isfinite(data.moderator)
    return data.yi[u], data.vi[u], data.moderator[u]


@pytest.mark.parametrize("name", ["bcg_RR", "bcg_RD", "hackshaw1998_GEN"])
def test_ee_coefficients_are_weighted_least_squares(name):
    yi, vi, x = _case_arrays(name)
    X = np.column_stack([np.ones_like(x), x])
    w = 1 / vi
    xtwx = X.T @ (w[:, None] * X)
    beta = np.linalg.solve(xtwx, X.T @ (w * yi))
    cov = np.linalg.inv(xtwx)
    resid = yi - X @ beta
    res = mr.meta_regression(yi, vi, x, method="EE")
    np.testing.assert_allclose(res.fit.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(res.fit.se, np.sqrt(np.diag(cov)), rtol=1e-10)
    assert res.fit.QE == pytest.approx(float(np.sum(w * resid**2)), rel=1e-10)
    assert res.fit.QM == pytest.approx(beta[1] ** 2 / cov[1, 1], rel=1e-10)
    assert res.fit.QMp == pytest.approx(stats.chi2.sf(beta[1] ** 2 / cov[1, 1], 1), rel=1e-9)


@pytest.mark.parametrize("name", ["bcg_RR", "bcg_k3_RR", "hackshaw1998_GEN"])
def test_ee_r2_is_the_adjusted_weighted_r2(name):
    yi, vi, x = _case_arrays(name)
    wls = sm.WLS(yi, sm.add_constant(x), weights=1 / vi).fit()
    res = mr.meta_regression(yi, vi, x, method="EE")
    assert res.R2_pct == pytest.approx(max(0.0, 100 * wls.rsquared_adj), rel=1e-10, abs=1e-12)


def test_random_effects_r2_is_the_proportional_reduction_in_tau2():
    yi, vi, x = _case_arrays("bcg_RR")
    res = mr.meta_regression(yi, vi, x, method="DL")
    tau2_re = rma(yi, vi, method="DL").tau2
    assert tau2_re > res.fit.tau2 > 0
    assert res.R2_pct == pytest.approx(100 * (tau2_re - res.fit.tau2) / tau2_re, rel=1e-12)


def test_constant_moderator_is_dropped_as_metafor_does():
    yi, vi = np.array([0.1, 0.4, -0.2, 0.3]), np.array([0.05, 0.1, 0.08, 0.2])
    res = mr.meta_regression(yi, vi, np.full(4, 7.0), names=["dose"])
    assert res.names == ("intrcpt",) and res.p == 1
    assert mr.WARN_REDUNDANT in res.warnings
    assert np.isnan(res.R2_pct)
    # the intercept-only model; QM tests the intercept
    plain = rma(yi, vi)
    assert res.fit.beta[0] == pytest.approx(plain.estimate, rel=1e-12)
    assert res.fit.QM == pytest.approx((plain.estimate / plain.se[0]) ** 2, rel=1e-12)


def test_too_few_studies_for_tau2_is_metafors_error_but_ee_fits():
    yi, vi, x = np.array([0.1, 0.4]), np.array([0.05, 0.1]), np.array([1.0, 2.0])
    for method in ("REML", "DL"):
        with pytest.raises(ValueError, match="larger than the number of observations"):
            mr.meta_regression(yi, vi, x, method=method)
    ee = mr.meta_regression(yi, vi, x, method="EE")
    assert ee.fit.QE == 0 and ee.fit.QEp == 1 and ee.fit.H2 == 1
    assert np.isnan(ee.R2_pct)   # R's adjusted R^2 of an exact fit: 0 * Inf
    assert ee.fit.beta[1] == pytest.approx(0.3, rel=1e-12)


def test_design_not_of_full_rank_is_refused():
    yi, vi = np.array([0.1, 0.3, -0.2, 0.5]), np.array([0.1, 0.2, 0.15, 0.1])
    with pytest.raises(ValueError, match="not of full rank"):
        mr.meta_regression(yi, vi, 1e-5 * np.arange(1, 5), method="EE")


def test_rows_with_missing_values_are_omitted():
    yi = np.array([0.1, np.nan, 0.4, -0.2, 0.3, 0.0])
    vi = np.array([0.05, 0.1, 0.1, 0.08, 0.2, 0.1])
    x = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    res = mr.meta_regression(yi, vi, x, method="DL")
    assert res.used.tolist() == [True, False, False, True, True, True]
    assert res.k == 4 and mr.WARN_NA in res.warnings
    direct = mr.meta_regression(yi[res.used], vi[res.used], x[res.used], method="DL")
    np.testing.assert_array_equal(res.fit.beta, direct.fit.beta)
    assert direct.warnings == ()


def test_redundant_columns_follow_lm():
    x = np.arange(6.0)
    X = np.column_stack([np.ones(6), x, np.zeros(6), 2 * x + 1, x**2])
    assert mr.redundant_columns(X).tolist() == [False, False, True, True, False]


def test_predict_line_for_bubble_plots():
    yi, vi, x = _case_arrays("bcg_RR")
    res = mr.meta_regression(yi, vi, x, method="REML", test="knha", names=["ablat"])
    line = res.predict(np.array([0.0, 20.0, 40.0]))
    f = res.fit
    assert line.pred[0] == pytest.approx(f.beta[0], rel=1e-12)
    assert line.se[0] == pytest.approx(f.se[0], rel=1e-12)
    assert line.pred[2] == pytest.approx(f.beta[0] + 40 * f.beta[1], rel=1e-12)
    crit = stats.t.isf(0.025, f.k - f.p)
    assert line.ci.low[1] == pytest.approx(line.pred[1] - crit * line.se[1], rel=1e-12)
    assert line.pi.high[1] == pytest.approx(line.pred[1] + crit * np.sqrt(line.se[1] ** 2 + f.tau2),
                                            rel=1e-12)
    assert list(res.coefficients.index) == ["intrcpt", "ablat"]
    with pytest.raises(ValueError, match="column"):
        res.predict(np.ones((2, 2)))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="one row each"):
        mr.meta_regression([0.1, 0.2], [0.1, 0.1], [1.0])
    with pytest.raises(ValueError, match="names"):
        mr.meta_regression([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], [1.0, 2.0, 3.0], names=["a", "b"])
    with pytest.raises(ValueError, match="no studies"):
        mr.meta_regression([np.nan], [0.1], [1.0])


def test_section_is_absent_without_a_moderator():
    from ntxmeta.analyse import analyse
    out = analyse(FIXTURES / "normand1999_MD" / "spec.json", only=["metareg"])
    assert "metareg" not in out
