"""ntxmeta.subgroup against metafor 3.8-1 and against hand computations.

The section is compared with every reference that has one (vendored oracle
cases and the synthetic edge cases in fixtures/metafor_extra), as explained
in ``metafor_sections``: the spec as it is reproduces metafor's default
control (0 wrong against the oracle), the spec with ``"control": "full"``
its tightly converged fits (fixtures/metafor_tight). The independent checks recompute
the fixed-effect Q-between and the RevMan-style Q from the subgroup
estimates with plain numpy.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import ntxmeta.subgroup as sg
from metafor_sections import cases_with, check_against_oracle, check_against_tight, engine_result
from ntxmeta.data import load_spec
from ntxmeta.rma import FULL, METAFOR_DEFAULT
from oracle_util import FIXTURES, load

CASES = cases_with("subgroup")
TIGHT = FIXTURES.parent / "metafor_tight"


@pytest.fixture(scope="module")
def results():
    """Each case's spec as it is: metafor's default control."""
    return {case.name: engine_result(case, "subgroup") for case in CASES}


@pytest.fixture(scope="module")
def results_full():
    """Each case's spec with ``"control": "full"``, as the pipeline writes it."""
    return {case.name: engine_result(case, "subgroup", control="full") for case in CASES}


def test_references_with_subgroups_are_found():
    names = {c.name for c in CASES}
    assert {"bcg_RR", "hackshaw1998_GEN", "bcg_k2_RR"} <= names
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_subgroup_matches_metafor(results, case):
    assert check_against_oracle(case, "subgroup", results[case.name]) > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_control_matches_tightly_converged_metafor(results_full, case):
    assert check_against_tight(case, "subgroup", results_full[case.name]) > 0


def test_control_decides_where_metafor_default_stops_early(results, results_full):
    """bcg_RD level "random": metafor's default REML stops 1.4 % off the root."""
    path = ("subgroup", "by_level", "random", "REML", "tau2")

    def at(d):
        for key in path:
            d = d[key]
        return d
    default = at(load(FIXTURES / "bcg_RD" / "out.json"))
    tight = at(load(TIGHT / "bcg_RD.json"))
    assert abs(default - tight) > 0.01 * tight
    assert at(results["bcg_RD"]) == pytest.approx(default, rel=1e-12)
    assert at(results_full["bcg_RD"]) == pytest.approx(tight, rel=1e-9)


def test_control_reaches_every_fit_of_subgroup_analysis():
    """The per-level fits (and so Q between) and the mixed-effects model follow ``control``."""
    yi, vi, g = _case_arrays("bcg_RD")
    ref = load(FIXTURES / "bcg_RD" / "out.json")["subgroup"]
    tight = load(TIGHT / "bcg_RD.json")["subgroup"]
    for control, want in ((METAFOR_DEFAULT, ref), (FULL, tight)):
        res = sg.subgroup_analysis(yi, vi, g, control=control)
        knha = sg.subgroup_analysis(yi, vi, g, test="knha", control=control)
        assert res.fits["random"].tau2 == pytest.approx(want["by_level"]["random"]["REML"]["tau2"],
                                                        rel=1e-9)
        assert res.q_between.Q == pytest.approx(
            want["Q_between"]["from_REML_subgroup_estimates"]["Q"], rel=1e-9)
        assert knha.q_between == res.q_between
        assert res.mixed_effects.fit.tau2 == pytest.approx(want["mixed_effects"]["REML"]["tau2"],
                                                           rel=1e-9)
        assert res.mixed_effects.R2_pct == pytest.approx(want["mixed_effects"]["REML"]["R2"],
                                                         rel=1e-9)
        assert knha.mixed_effects.fit.tau2 == pytest.approx(
            want["mixed_effects"]["REML_knha"]["tau2"], rel=1e-9)


def test_unknown_control_in_the_spec_is_refused(tmp_path):
    from ntxmeta.analyse import analyse
    spec = json.loads((FIXTURES / "bcg_RR" / "spec.json").read_text())
    spec["csv"] = str(FIXTURES / "bcg_RR" / spec["csv"])
    spec["options"] = {"control": "tight"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="options.control must be one of"):
        analyse(tmp_path / "spec.json", only=["subgroup"])
    with pytest.raises(TypeError, match="Control"):
        sg.subgroup_analysis([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], ["a", "a", "b"], control="tight")


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


def test_integer_codes_with_a_missing_cell_name_levels_as_r_does():
    """read.csv keeps 1, 2, NA as integers, so factor() levels are "1", "2" (not "1.0")."""
    from ntxmeta.data import analysis_data
    frame = pd.DataFrame({"yi": [0.1, 0.3, 0.2, 0.5, 0.4], "vi": [0.1, 0.2, 0.1, 0.2, 0.1],
                          "grp": [1, 2, None, 1, 2]})
    spec = {"measure": "GEN", "columns": {"yi": "yi", "vi": "vi"}, "subgroup": "grp"}
    data = analysis_data(frame, spec)
    assert list(data.group) == ["1", "2", None, "1", "2"]
    labels = analysis_data(frame.assign(grp=[1.5, 2, None, 1.5, 2]), spec).group
    assert list(labels) == ["1.5", "2.0", None, "1.5", "2.0"]   # not codes: R's as.character
