"""ntxmeta.subgroup against metafor 3.8-1 and against hand computations.

The section is compared with every reference that has one (vendored oracle
cases and the synthetic edge cases in fixtures/metafor_extra), under the
rule explained in ``metafor_sections``. The independent checks recompute
the fixed-effect Q-between and the RevMan-style Q from the subgroup
estimates with plain numpy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import ntxmeta.subgroup as sg
from metafor_sections import cases_with, check_against_oracle, check_against_tight, engine_result
from ntxmeta.data import load_spec
from oracle_util import FIXTURES

CASES = cases_with("subgroup")


@pytest.fixture(scope="module")
def results():
    return {case.name: engine_result(case, "subgroup") for case in CASES}


def test_references_with_subgroups_are_found():
    names = {c.name for c in CASES}
    assert {"bcg_RR", "hackshaw1998_GEN", "bcg_k2_RR"} <= names
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_subgroup_matches_metafor(results, case):
    assert check_against_oracle(case, "subgroup", results[case.name]) > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_subgroup_matches_tightly_converged_metafor(results, case):
    assert check_against_tight(case, "subgroup", results[case.name]) > 0


def _case_arrays(name):
    _, data = load_spec(FIXTURES / name / "spec.json")
    u = data.used
    return data.yi[u], data.vi[u], data.group[u]


@pytest.mark.parametrize("name", ["bcg_RR", "bcg_OR", "hackshaw1998_GEN"])
def test_ee_mixed_effects_qm_is_fixed_effect_q_between(name):
    yi, vi, g = _case_arrays(name)
    w = 1 / vi

    def q(y, wt):
        return float(np.sum(wt * (y - np.sum(wt * y) / np.sum(wt)) ** 2))

    levels = sorted(set(g))
    q_between = q(yi, w) - sum(q(yi[g == lev], w[g == lev]) for lev in levels)
    res = sg.subgroup_analysis(yi, vi, g, method="EE")
    me = res.mixed_effects.fit
    assert me.QMdf[0] == len(levels) - 1
    assert me.QM == pytest.approx(q_between, rel=1e-10)
    assert me.QMp == pytest.approx(stats.chi2.sf(q_between, len(levels) - 1), rel=1e-9)
    # the residual Q of the factor model is the pooled within-subgroup Q
    assert me.QE == pytest.approx(q(yi, w) - q_between, rel=1e-10)


def test_q_between_from_subgroup_estimates_by_hand():
    yi, vi, g = _case_arrays("bcg_RR")
    res = sg.subgroup_analysis(yi, vi, g, method="DL")
    b = np.array([res.fits[lev].estimate for lev in res.levels])
    s2 = np.array([res.fits[lev].se[0] ** 2 for lev in res.levels])
    bbar = np.sum(b / s2) / np.sum(1 / s2)
    q = float(np.sum((b - bbar) ** 2 / s2))
    assert res.q_between.Q == pytest.approx(q, rel=1e-12)
    assert res.q_between.df == len(res.levels) - 1
    assert res.q_between.pval == pytest.approx(stats.chi2.sf(q, len(res.levels) - 1), rel=1e-12)
    assert res.q_between.levels == res.levels


def test_q_between_uses_z_standard_errors_under_knha():
    yi, vi, g = _case_arrays("bcg_RR")
    z = sg.subgroup_analysis(yi, vi, g, method="REML")
    knha = sg.subgroup_analysis(yi, vi, g, method="REML", test="knha")
    assert knha.q_between == z.q_between
    assert knha.fits["random"].test == "knha"


def test_levels_in_byte_order_and_missing_rows_left_out():
    labels = ["b", "B", None, "a", "\u00e9", "Zeta", float("nan"), "a"]
    yi = np.array([0.1, 0.2, 0.3, np.nan, 0.5, 0.6, 0.7, 0.8])
    vi = np.full(8, 0.1)
    g, used, levels = sg.subgroup_rows(yi, vi, labels)
    assert levels == ("B", "Zeta", "a", "b", "\u00e9")
    assert used.tolist() == [True, True, False, False, True, True, False, True]
    assert g[2] is None and g[6] is None


def test_group_design_is_treatment_coded_with_metafor_names():
    labels = np.array(["x", "z", "y", "x"], dtype=object)
    X, names = sg.group_design(labels, ("x", "y", "z"))
    assert names == ["intrcpt", "group=y", "group=z"]
    np.testing.assert_array_equal(X, [[1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 0, 0]])


def test_knha_test_of_subgroup_differences_is_an_f_test():
    yi, vi, g = _case_arrays("bcg_RR")
    me = sg.subgroup_analysis(yi, vi, g, method="DL", test="knha").mixed_effects.fit
    m, k = 3, yi.size
    assert me.QMdf == (m - 1, k - m)
    assert me.QMp == pytest.approx(stats.f.sf(me.QM, m - 1, k - m), rel=1e-12)


def test_one_level_keeps_the_level_fit_and_records_metafors_refusals():
    yi, vi = np.array([0.1, 0.4, -0.2]), np.array([0.05, 0.1, 0.08])
    res = sg.subgroup_analysis(yi, vi, ["only"] * 3)
    assert res.levels == ("only",) and res.k == {"only": 3}
    assert res.mixed_effects is None and res.q_between is None
    assert res.refusals == {"mixed_effects": sg.MSG_ONE_LEVEL, "q_between": sg.MSG_FEW_ESTIMATES}


def test_one_study_per_level_refuses_a_shared_tau2_but_not_ee():
    yi, vi = np.array([0.1, 0.4, -0.2]), np.array([0.05, 0.1, 0.08])
    reml = sg.subgroup_analysis(yi, vi, ["a", "b", "c"])
    assert reml.refusals["mixed_effects"].startswith("Number of parameters")
    ee = sg.subgroup_analysis(yi, vi, ["a", "b", "c"], method="EE").mixed_effects
    assert ee.fit.QE == 0 and ee.fit.QEp == 1 and np.isnan(ee.R2_pct)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="differ in length"):
        sg.subgroup_rows([0.1, 0.2], [0.1, 0.1], ["a"])
    with pytest.raises(ValueError, match="no rows"):
        sg.subgroup_analysis([np.nan], [0.1], ["a"])


def test_section_is_absent_without_a_subgroup_column():
    from ntxmeta.analyse import analyse
    out = analyse(FIXTURES / "normand1999_MD" / "spec.json", only=["subgroup"])
    assert "subgroup" not in out


def test_pandas_labels_work():
    yi, vi, g = _case_arrays("bcg_RR")
    res = sg.subgroup_analysis(pd.Series(yi), pd.Series(vi), pd.Series(g))
    assert res.levels == ("alternate", "random", "systematic")
