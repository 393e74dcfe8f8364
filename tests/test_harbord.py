"""``harbord_test``: Harbord, Egger & Sterne's (2006) score-based test for 2x2 tables.

Three independent checks:

* metafor 3.8-1 (``fixtures/harbord/harbord.json``, ``make_harbord.R``):
  ``escalc(measure="PETO", add=0)`` is Harbord's Z/V and 1/V, and
  ``regtest(model="lm")`` on it is his regression (R's ``meta`` package,
  whose ``metabias(method.bias="Harbord")`` is the usual reference, is not
  in Debian bookworm); dat.bcg and dat.nielweise2007 (zero cells, one
  double-zero table with V = 0, which both leave out);
* the formula of the paper, fitted here by statsmodels: OLS of Z/sqrt(V)
  on sqrt(V), the intercept's t test;
* the score and its variance from scipy's hypergeometric distribution
  (a ~ Hypergeom(N, m1, n1): Z = a - E(a), V = Var(a)), independent of the
  arithmetic typed into ``harbord_test``.

Tolerance: ``RTOL`` = 1e-10 relative: closed-form least squares on both
sides (QR in R, pinv in statsmodels), only the order of summation differs.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from ntxmeta.analyse import loads
from ntxmeta.bias import EggerTest, harbord_test

REF = loads((Path(__file__).parent / "fixtures" / "harbord" / "harbord.json")
            .read_text(encoding="utf-8"))
#: see the module docstring
RTOL = 1e-10


def _cells(name):
    d = REF[name]
    return tuple(np.array(d[x], dtype=float) for x in ("ai", "bi", "ci", "di"))


@pytest.mark.parametrize("name", sorted(REF))
def test_harbord_matches_metafor_peto_regtest(name):
    ref = REF[name]
    res = harbord_test(*_cells(name))
    assert isinstance(res, EggerTest) and (res.model, res.predictor) == ("lm", "harbord")
    assert res.stat == pytest.approx(ref["stat"], rel=RTOL)
    assert res.pval == pytest.approx(ref["pval"], rel=RTOL)
    assert res.df == ref["ddf"]
    assert res.limit_estimate == pytest.approx(ref["est"], rel=RTOL)
    assert res.limit_ci.low == pytest.approx(ref["ci.lb"], rel=RTOL)
    assert res.limit_ci.high == pytest.approx(ref["ci.ub"], rel=RTOL)
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("stat", "stat"),
                         ("pval", "pval")):
        assert np.allclose(getattr(res.coefficients, ours), ref["coef"][theirs], rtol=RTOL,
                           atol=0), theirs
    dropped = int(np.isnan(ref["peto_vi"]).sum())
    assert (res.warning is not None) == (dropped > 0)
    if dropped:
        assert res.warning.startswith(f"{dropped} table(s) with V = 0")


@pytest.mark.parametrize("name", sorted(REF))
def test_harbord_is_the_papers_ols_with_hypergeometric_score(name):
    a, b, c, d = _cells(name)
    n1, m1, N = a + b, a + c, a + b + c + d
    # scipy forms the kurtosis along with the variance, dividing by 0 for the
    # double-zero table (whose mean and variance it still gets right)
    with np.errstate(divide="ignore", invalid="ignore"):
        hg = stats.hypergeom(N.astype(int), m1.astype(int), n1.astype(int))
        mean, var = hg.mean(), hg.var()
    keep = var > 0
    z, v = (a - mean)[keep], var[keep]
    # metafor's Peto log odds ratios are Z/V and their variances 1/V (NA where V = 0)
    peto_yi, peto_vi = np.array(REF[name]["peto_yi"]), np.array(REF[name]["peto_vi"])
    assert np.array_equal(np.isnan(peto_vi), ~keep)
    assert np.allclose(z / v, peto_yi[keep], rtol=1e-12, atol=0)
    assert np.allclose(1 / v, peto_vi[keep], rtol=1e-12, atol=0)
    ols = sm.OLS(z / np.sqrt(v), sm.add_constant(np.sqrt(v))).fit()
    res = harbord_test(a, b, c, d)
    assert res.stat == pytest.approx(ols.tvalues[0], rel=RTOL)     # the intercept: bias
    assert res.pval == pytest.approx(ols.pvalues[0], rel=RTOL)
    assert res.limit_estimate == pytest.approx(ols.params[1], rel=RTOL)
    assert res.df == ols.df_resid


def test_harbord_differs_from_egger_on_the_same_tables():
    """The score test is not Egger's test of log odds ratios (else nothing was gained)."""
    from ntxmeta.bias import egger_test
    a, b, c, d = _cells("bcg")
    lor, v = np.log(a * d / (b * c)), 1 / a + 1 / b + 1 / c + 1 / d
    assert abs(egger_test(lor, v, model="lm").stat - harbord_test(a, b, c, d).stat) > 0.1


def test_harbord_inputs_are_checked():
    with pytest.raises(ValueError, match="one entry per study"):
        harbord_test([1, 2], [3, 4], [5, 6], [7])
    with pytest.raises(ValueError, match=">= 0"):
        harbord_test([1, -2, 3], [3, 4, 5], [5, 6, 7], [7, 8, 9])
    with pytest.raises(ValueError, match="at least 2 participants"):
        harbord_test([1, 0, 3], [3, 1, 5], [5, 0, 7], [7, 0, 9])
    with pytest.raises(ValueError, match="at least 2 tables"):
        harbord_test([0, 0, 3], [3, 4, 5], [0, 0, 7], [7, 8, 9])
    res = harbord_test([1, 2], [10, 20], [3, 4], [10, 20])    # k = 2: no residual df
    assert math.isnan(res.stat) and res.df == 0 and "degrees of freedom" in res.warning
