"""Confidence intervals for tau^2 (``ntxmeta.confint``) against metafor 3.8-1 and theory.

* The ``confint`` section of every vendored case is compared with metafor's
  references by the rule of ``oracle_util`` (Q-profile bounds against the
  ``*_tight`` references at rtol 1e-6; the profile-likelihood interval,
  which has no tight twin, at the loose 1e-4).
* ``emulate=True`` must reproduce metafor's default-control output (the
  non-tight ``confint.REML``/``DL``/``PM`` references, estimates included)
  to 1e-9: that proves the replica of R's uniroot and of metafor's loose
  fits takes metafor's steps, which is what the PL section relies on.
* Independent checks that do not use metafor: at each solved bound the
  defining equation holds, evaluated here with dense k x k matrix algebra
  (Q(lb) = chi^2_{0.975}(k-p), Q(ub) = chi^2_{0.025}(k-p); the REML
  likelihood-ratio statistic equals chi^2_{0.95}(1)); bounds scale with
  the data (tau^2 -> c^2 tau^2 when y -> c y, v -> c^2 v) down to tiny
  scales; the generalised Q-profile equals the Q-profile when the weights
  are 1/v and all v are equal.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from oracle_util import cases, compare, load, normalise
from ntxmeta.analyse import analyse
from ntxmeta.confint import PL_KEY, SECTION_METHODS, ci_dict, confint_fit, tau2_ci
from ntxmeta.data import load_spec
from ntxmeta.sections import fit_used

CASES = cases()
IDS = [c.name for c in CASES]
#: The defining equations are solved to ~1e-15; 1e-9 leaves room for the
#: different summation order of the dense check.
EQ_RTOL = 1e-9
#: emulate=True repeats metafor's arithmetic step by step; what is left is
#: floating-point noise (observed <= 2e-14).
EMULATE_RTOL = 1e-9


@pytest.fixture(scope="module")
def results():
    return {c.name: normalise(analyse(c / "spec.json", only="confint")) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_section_matches_metafor(results, case):
    ref = load(case / "out.json")
    t = compare(ref, results[case.name], sections=["confint"])
    assert not t.missing, t.missing[:10]
    assert not t.wrong, t.wrong[:10]
    assert t.ok + t.errors_matched > 0
    assert t.beyond == 0  # where metafor refuses (k = 1), so do we


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("key", SECTION_METHODS + (PL_KEY,))
def test_no_entry_drops_out(results, case, key):
    """Every entry of the reference section is compared (none silently skipped)."""
    ref = load(case / "out.json")
    assert key in ref["confint"]
    t = compare(ref, results[case.name], sections=[f"confint.{key}"])
    assert t.ok + t.errors_matched > 0
    if "error" not in ref["confint"][key]:
        assert t.ok == 12  # 4 rows x (estimate, ci.lb, ci.ub)
        got = results[case.name]["confint"][key]
        assert (got["lb.sign"], got["ub.sign"]) == (ref["confint"][key]["lb.sign"],
                                                     ref["confint"][key]["ub.sign"])


def _close(a, b, rtol):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * abs(a) + 1e-300


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("method", SECTION_METHODS)
def test_emulation_reproduces_default_control(case, method):
    ref = load(case / "out.json")["confint"][method]
    _, data = load_spec(case / "spec.json")
    if "error" in ref:
        with pytest.raises(ValueError):
            confint_fit(fit_used(data, method), emulate=True)
        return
    got = ci_dict(confint_fit(fit_used(data, method), emulate=True))
    for row in ("tau^2", "tau", "I^2(%)", "H^2"):
        for col in ("estimate", "ci.lb", "ci.ub"):
            assert _close(ref[row][col], got[row][col], EMULATE_RTOL), (row, col)
    assert (got["lb.sign"], got["ub.sign"]) == (ref["lb.sign"], ref["ub.sign"])


# --------------------------------------------------------------------------- independent checks

def _dense_q(y, v, tau2, X=None):
    """Generalised Q with an explicit k x k projection matrix."""
    X = np.ones((y.size, 1)) if X is None else X
    W = np.diag(1 / (v + tau2))
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    return float(y @ P @ y)


def _dense_reml_ll(y, v, tau2, X=None):
    """REML log-likelihood up to a constant, from the marginal covariance matrix."""
    X = np.ones((y.size, 1)) if X is None else X
    S = np.diag(v + tau2)
    Si = np.linalg.inv(S)
    XSX = X.T @ Si @ X
    b = np.linalg.solve(XSX, X.T @ Si @ y)
    r = y - X @ b
    return float(-0.5 * (np.linalg.slogdet(S)[1] + np.linalg.slogdet(XSX)[1] + r @ Si @ r))


def _used(case):
    _, data = load_spec(case / "spec.json")
    return data.yi[data.used], data.vi[data.used]


MULTI = [c for c in CASES if _used(c)[0].size >= 2]  # k = 1 has no CI (tested as an error)


@pytest.mark.parametrize("case", MULTI, ids=[c.name for c in MULTI])
def test_q_at_bounds_equals_chi2_quantiles(case):
    y, v = _used(case)
    ci = tau2_ci(y, v, method="REML")
    df = y.size - 1
    lb, ub = ci.tau2.ci.low, ci.tau2.ci.high
    if ci.lb_sign == "" and lb > 0:
        assert _dense_q(y, v, lb) == pytest.approx(stats.chi2.isf(0.025, df), rel=EQ_RTOL)
    else:  # at 0: Q(0) is already below the upper quantile
        assert _dense_q(y, v, 0.0) < stats.chi2.isf(0.025, df)
    if ci.ub_sign == "":
        if ub > 0:
            assert _dense_q(y, v, ub) == pytest.approx(stats.chi2.ppf(0.025, df), rel=EQ_RTOL)
    elif ci.ub_sign == ">":
        assert ub == ci.tau2_max and _dense_q(y, v, ub) > stats.chi2.ppf(0.025, df)
    else:
        assert ci.ci_null and _dense_q(y, v, 0.0) < stats.chi2.ppf(0.025, df)


@pytest.mark.parametrize("case", MULTI, ids=[c.name for c in MULTI])
def test_profile_likelihood_at_bounds(case):
    y, v = _used(case)
    ci = tau2_ci(y, v, method="REML", type="PL")
    hat = ci.tau2.estimate
    crit = stats.chi2.isf(0.05, 1)

    def lr(t):
        return -2 * (_dense_reml_ll(y, v, t) - _dense_reml_ll(y, v, hat))

    lb, ub = ci.tau2.ci.low, ci.tau2.ci.high
    if lb > 0:
        assert lr(lb) == pytest.approx(crit, rel=EQ_RTOL)
    else:
        assert lr(0.0) < crit
    if ci.ub_sign == "":
        assert lr(ub) == pytest.approx(crit, rel=EQ_RTOL)
    assert lb <= hat <= ub


def test_meta_regression_bounds_solve_their_equation():
    rng = np.random.default_rng(7)
    k = 12
    x = rng.uniform(0, 10, k)
    v = rng.uniform(0.02, 0.2, k)
    y = 0.1 + 0.05 * x + rng.normal(0, np.sqrt(v + 0.5))
    X = np.column_stack([np.ones(k), x])
    ci = tau2_ci(y, v, method="REML", X=X)
    df = k - 2
    assert ci.tau2.ci.low > 0 and ci.ub_sign == ""
    assert _dense_q(y, v, ci.tau2.ci.low, X) == pytest.approx(stats.chi2.isf(0.025, df), rel=EQ_RTOL)
    assert _dense_q(y, v, ci.tau2.ci.high, X) == pytest.approx(stats.chi2.ppf(0.025, df), rel=EQ_RTOL)


@pytest.mark.parametrize("c", [1e-5, 1.0, 1e3])
def test_bounds_scale_with_the_data(c):
    """y -> c y, v -> c^2 v scales tau^2 bounds by c^2 exactly (also at tiny scales)."""
    y, v = _used(next(p for p in CASES if p.name == "bcg_RR"))
    base = tau2_ci(y, v, method="REML")
    for typ in ("QP", "PL"):
        ref = tau2_ci(y, v, method="REML", type=typ)
        got = tau2_ci(c * y, c**2 * v, method="REML", type=typ)
        assert got.tau2.ci.low == pytest.approx(c**2 * ref.tau2.ci.low, rel=1e-9)
        assert got.tau2.ci.high == pytest.approx(c**2 * ref.tau2.ci.high, rel=1e-9)
        assert got.I2_pct.ci.low == pytest.approx(ref.I2_pct.ci.low, rel=1e-9)
    assert base.tau2.ci.low > 0


def test_generalised_q_profile_equals_q_profile_for_equal_variances():
    """With a = 1/v and equal v, Q_a = (v + tau^2)/v chi^2(k-1), so P(Q_a > q_a) = a/2
    is Q(tau^2) = chi^2_{1-a/2}: the GENQ profile interval is the Q-profile one."""
    rng = np.random.default_rng(3)
    k = 7
    v = np.full(k, 0.05)
    y = rng.normal(0.2, np.sqrt(0.05 + 0.08), k)
    qp = tau2_ci(y, v, method="DL")
    gq = tau2_ci(y, v, method="GENQM", type="GENQ", weights=1 / v)
    assert gq.tau2.ci.low == pytest.approx(qp.tau2.ci.low, rel=1e-8)
    assert gq.tau2.ci.high == pytest.approx(qp.tau2.ci.high, rel=1e-8)


def test_level_nests_intervals():
    y, v = _used(next(p for p in CASES if p.name == "normand1999_SMD"))
    wide = tau2_ci(y, v, level=99)
    narrow = tau2_ci(y, v, level=80)
    assert wide.tau2.ci.low < narrow.tau2.ci.low < narrow.tau2.ci.high < wide.tau2.ci.high


def test_edge_cases():
    with pytest.raises(ValueError, match="k = 1"):
        tau2_ci([0.2], [0.1])
    with pytest.raises(ValueError, match="random-effects"):
        tau2_ci([0.2, 0.4, 0.1], [0.1, 0.1, 0.2], method="EE")
    with pytest.raises(ValueError, match="PL"):
        tau2_ci([0.2, 0.4, 0.1], [0.1, 0.1, 0.2], method="DL", type="PL")
    with pytest.raises(ValueError, match="type"):
        tau2_ci([0.2, 0.4, 0.1], [0.1, 0.1, 0.2], type="Wald")
    with pytest.raises(ValueError, match="GENQ"):
        tau2_ci([0.2, 0.4, 0.1], [0.1, 0.1, 0.2], method="DL", type="GENQ")
    same = tau2_ci([0.3] * 4, [0.1, 0.2, 0.1, 0.3])  # Q = 0: the interval is empty
    assert same.ci_null and same.tau2.ci == same.tau2.ci.__class__(0.0, 0.0)
    two = tau2_ci([0.1, 0.9], [0.05, 0.05], method="DL")  # k = 2: 1 df, no finite upper end
    assert two.ub_sign == ">" and two.tau2.ci.high == two.tau2_max == 100.0
