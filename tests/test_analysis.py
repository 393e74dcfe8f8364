"""The pool step's builder (``ntxmeta.analysis.run_plan``) against metafor 3.8-1.

Every number of the typed result is compared with metafor's own values for
the same data (dat.bcg, the vendored oracle case ``bcg_RR``): the tightly
converged fits where the reference has them (``rma_tight``, the
``metafor_tight`` and ``bias_tight`` fixtures: RTOL 1e-6, the oracle rule),
metafor's default-control fits (leave-one-out, cumulative, classic Egger)
with the oracle's loose tolerance LOOSE_RTOL 1e-4 (metafor stopped them at
a change of 1e-5 in tau^2). The fit counter shows that an analysis fits at
most half as many models as the oracle-layout pool did.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta.analysis import run_plan
from ntxmeta.config import resolve
from ntxmeta.pipeline import EFFECT_COLUMNS
from ntxmeta.plan import Config
from ntxmeta.result import AnalysisResult

FIX = Path(__file__).parent / "fixtures"
CASE = FIX / "oracle" / "bcg_RR"
RTOL, ATOL = 1e-6, 1e-9          # the oracle's rule for tightly converged fits
LOOSE_RTOL, LOOSE_ATOL = 1e-4, 1e-7  # metafor's default stopping rule (threshold 1e-5)


def _ref(path):
    text = Path(path).read_text()
    return json.loads(text.replace('"NA"', "NaN"))


REF = _ref(CASE / "out.json")
TIGHT = _ref(FIX / "metafor_tight" / "bcg_RR.json")
BIAS = _ref(FIX / "bias_tight" / "bcg_RR.json")


def close(a, b, rtol=RTOL, atol=ATOL):
    return a == pytest.approx(b, rel=rtol, abs=atol, nan_ok=True)


def bcg_effects() -> pd.DataFrame:
    data = pd.read_csv(CASE / "data.csv")
    es = REF["escalc"]
    frame = pd.DataFrame({c: np.nan for c in EFFECT_COLUMNS}, index=range(len(data)))
    frame = frame.assign(row_id=[f"r{i}" for i in data["trial"]], study_id=data["author"],
                         label=data["author"], year=data["year"], subgroup=data["alloc"],
                         events_treat=data["ai"], n_treat=data["n1i"], events_ctrl=data["ci"],
                         n_ctrl=data["n2i"], data_type="binary", comparator_type="placebo",
                         confidence="high", derived=False, ablat=data["ablat"],
                         yi=es["yi"], vi=es["vi"])
    return frame


def bcg_plan(**over):
    block = {"title": "BCG", "filters": {"indication": ["x"]}, "measure": "RR",
             "subgroup": "alloc", "moderators": ["ablat"], "preset": "metafor", **over}
    return Config.from_resolved(resolve({"analyses": {"bcg": block}})).analyses["bcg"]


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    return run_plan(bcg_plan(), bcg_effects())


def test_main_and_common_models_equal_metafor(result):
    ref = REF["rma_tight"]["REML"]
    m = result.main
    assert (m.model, m.test, m.k) == ("REML", "z", 13)
    assert close(m.estimate, ref["estimate"]) and close(m.se, ref["se"])
    assert close(m.ci.low, ref["ci.lb"]) and close(m.ci.high, ref["ci.ub"])
    assert close(m.test_stat.statistic, ref["zval"]) and close(m.test_stat.pval, ref["pval"])
    assert close(m.pi.low, ref["predict"]["pi.lb"]) and close(m.pi.high, ref["predict"]["pi.ub"])
    h = m.heterogeneity
    assert close(h.tau2, ref["tau2"]) and close(h.i2_pct, ref["I2"]) and close(h.q, ref["QE"])
    assert close(np.nansum(result.weights_pct), 100.0)
    assert close(list(result.weights_pct), ref["weights_pct"])
    ee = REF["common"]["EE"]
    assert close(result.common.estimate, ee["estimate"]) and close(result.common.se, ee["se"])
    assert result.common.pi is None
    assert result.scale.log and result.scale.null == 1.0


def test_sensitivity_variants_equal_metafor(result):
    v = {x.name: x for x in result.variants}
    for m in ("DL", "PM", "REML"):
        assert close(v[f"tau2_{m}"].fit.estimate, REF["rma_tight"][m]["estimate"]), m
        assert close(v[f"tau2_{m}"].fit.heterogeneity.tau2, REF["rma_tight"][m]["tau2"]), m
    knha = REF["rma_knha_tight"]["REML"]
    assert close(v["test_knha"].fit.ci.low, knha["ci.lb"]) and close(v["test_knha"].fit.se, knha["se"])
    assert v["test_knha"].fit.test_stat.df == 12
    mh = REF["common"]["MH"]["RR"]
    assert close(v["common_MH"].fit.estimate, mh["estimate"]) and close(v["common_MH"].fit.ci.high, mh["ci.ub"])
    assert close(v["common_Peto"].fit.estimate, REF["common"]["Peto"]["estimate"])
    # every row is placebo-controlled, high confidence and not derived: same rows as the main model
    assert v["placebo_only"].note == "same rows as the main model"
    assert close(v["excl_derived"].fit.estimate, result.main.estimate, rtol=0, atol=0)
    loo = REF["leave1out"]["REML"]
    assert close(v["leave1out_min"].fit.estimate, min(loo["estimate"]), LOOSE_RTOL, LOOSE_ATOL)
    assert close(v["leave1out_max"].fit.estimate, max(loo["estimate"]), LOOSE_RTOL, LOOSE_ATOL)


def test_series_equal_metafor(result):
    loo, ref = result.leave_one_out, REF["leave1out"]["REML"]
    assert list(loo.labels) == ref["slab"]
    assert close(list(loo.estimate), ref["estimate"], LOOSE_RTOL, LOOSE_ATOL)
    assert close(list(loo.ci_high), ref["ci.ub"], LOOSE_RTOL, LOOSE_ATOL)
    cum, ref = result.cumulative, REF["cumul"]["REML"]
    assert list(cum.labels) == ref["slab"]
    assert close(list(cum.estimate), ref["estimate"], LOOSE_RTOL, LOOSE_ATOL)
    assert close(list(cum.i2_pct), ref["I2"], LOOSE_RTOL, 1e-5)


def test_subgroups_equal_metafor(result):
    sg, ref = result.subgroups, TIGHT["subgroup"]
    assert [lev.level for lev in sg.levels] == ref["levels"]
    for lev in sg.levels:
        r = ref["by_level"][lev.level]["REML"]
        assert close(lev.fit.estimate, r["estimate"]) and close(lev.fit.heterogeneity.tau2, r["tau2"])
    qb = ref["Q_between"]["from_REML_subgroup_estimates"]
    assert close(sg.between.statistic, qb["Q"]) and close(sg.between.pval, qb["pval"])
    assert sg.between.df == qb["df"]
    # RevMan's I^2 of the test for subgroup differences: (Q - df) / Q, floored at 0
    assert close(sg.between_i2_pct, max(0.0, 100 * (qb["Q"] - qb["df"]) / qb["Q"]))
    me = ref["mixed_effects"]["REML"]
    assert close(sg.mixed_effects.statistic, me["QM"]) and close(sg.mixed_effects.pval, me["QMp"])


def test_metaregression_equals_metafor(result):
    reg, ref = result.regression("ablat"), TIGHT["metareg"]["REML"]
    assert [c.name for c in reg.coefficients] == ["intrcpt", "ablat"]
    assert close([c.estimate for c in reg.coefficients], ref["coefficients"]["estimate"])
    assert close([c.ci.low for c in reg.coefficients], ref["coefficients"]["ci.lb"])
    assert close(reg.r2_pct, ref["R2"])
    assert close(reg.tau2, ref["tau2"]) and close(reg.qm.statistic, ref["QM"])
    # the line is the fitted model: intercept + slope x, at both ends of the grid
    b0, b1 = (c.estimate for c in reg.coefficients)
    assert close(reg.line.pred[0], b0 + b1 * reg.line.x[0], 1e-12, 1e-12)
    assert reg.line.x[0] == min(pd.read_csv(CASE / "data.csv")["ablat"])
    assert reg.line.ci_low[50] < reg.line.pred[50] < reg.line.ci_high[50]


def test_small_study_tests_equal_metafor(result):
    ss = result.small_study
    assert ss.assessed and ss.k == 13
    eg = BIAS["regtest"]["rma_REML"]
    assert close(ss.egger.statistic, eg["stat"]) and close(ss.egger.pval, eg["pval"])
    assert close(ss.egger_limit, eg["limit_estimate"])
    lm = REF["regtest"]["lm_classic_egger"]
    assert close(ss.egger_classic.statistic, lm["stat"]) and ss.egger_classic.df == lm["df"]
    rk = REF["ranktest"]["default"]
    assert close(ss.begg.statistic, rk["tau"]) and close(ss.begg.pval, rk["pval"])
    tf = BIAS["trimfill"]["REML"]
    assert ss.trimfill.k0 == tf["k0"] and ss.trimfill.side == tf["side"]
    assert close(ss.trimfill.fit.estimate, tf["estimate"])
    assert len(ss.trimfill.filled_yi) == tf["k0"]


def test_binary_small_study_tests_harbord_and_peters(result):
    """Harbord: metafor regtest(model="lm") on Harbord's score Z/V and 1/V (make_harbord.R).
    Peters: log OR on 1/N by weighted least squares with weights 1/(1/E + 1/F)
    (Peters et al. 2006, JAMA 295:676), recomputed here with statsmodels."""
    import json
    import statsmodels.api as sm
    ref = json.loads((CASE.parent.parent / "harbord" / "harbord.json").read_text())["bcg"]
    ss = result.small_study
    assert close(ss.harbord.statistic, ref["stat"]) and close(ss.harbord.pval, ref["pval"])
    assert ss.harbord.df == ref["ddf"]
    d = pd.read_csv(CASE / "data.csv")
    a, b, c, e = d["ai"], d["n1i"] - d["ai"], d["ci"], d["n2i"] - d["ci"]
    lor = np.log(a * e / (b * c))  # no zero cell in dat.bcg
    fit = sm.WLS(lor, sm.add_constant(1 / (a + b + c + e)), weights=1 / (1 / (a + c) + 1 / (b + e))).fit()
    assert close(ss.peters.statistic, fit.tvalues.iloc[1]) and close(ss.peters.pval, fit.pvalues.iloc[1])
    assert ss.peters.df == len(a) - 2


def test_json_round_trip_is_exact(result):
    text = result.to_json()
    back = AnalysisResult.from_json(text)
    assert back == result or back.to_json() == text
    assert back.to_json() == text
    with pytest.raises(ValueError, match="schema"):
        AnalysisResult.from_json(text.replace("ntxmeta.result/2", "ntxmeta.result/1"))


def test_small_k_and_refusals():
    eff = bcg_effects()
    one = run_plan(bcg_plan(), eff.iloc[:1].reset_index(drop=True))
    assert one.main is None and "single study" in one.status and one.weights_pct == (100.0,)
    none = run_plan(bcg_plan(), eff.iloc[:0])
    assert none.main is None and none.k_used == 0 and "no usable rows" in none.status
    two = run_plan(bcg_plan(), eff.iloc[:2].reset_index(drop=True))
    assert two.main.pi is None          # no prediction interval below k = 3
    assert two.leave_one_out is None    # leave-one-out needs k >= 3
    assert "not computed" in two.regression("ablat").note
    assert not two.small_study or not two.small_study.assessed


def test_missing_effects_rows_are_kept_but_not_used():
    eff = bcg_effects()
    eff.loc[3, ["yi", "vi"]] = np.nan
    res = run_plan(bcg_plan(), eff)
    assert res.k_rows == 13 and res.k_used == 12 and res.used[3] is False
    assert math.isnan(res.weights_pct[3])


def test_a_failing_part_is_recorded_and_the_rest_survives(monkeypatch):
    import ntxmeta.analysis as an

    def broken(*args):
        raise ZeroDivisionError("simulated")
    monkeypatch.setattr(an, "_cumulative", broken)
    res = run_plan(bcg_plan(), bcg_effects())
    assert res.cumulative is None and res.main is not None and res.leave_one_out is not None
    assert res.failed == ("cumulative: ZeroDivisionError: simulated",)
    assert "FAILED parts: cumulative" in res.status


def test_fits_per_analysis_at_most_half_of_the_oracle_layout():
    """The pool step used to compute every oracle section (all 12 estimators, z and knha,
    confint, influence, ...) and then pick the main model; now it fits what the plan asks."""
    from ntxmeta.rma import fit_counter
    from ntxmeta.data import analysis_data
    from ntxmeta.analyse import analyse_data
    eff = bcg_effects()
    spec = {"name": "bcg", "measure": "RR", "columns": {"ai": "events_treat", "n1i": "n_treat",
            "ci": "events_ctrl", "n2i": "n_ctrl"}, "study": "label", "year": "year",
            "subgroup": "subgroup", "moderator": "ablat",
            "options": {"transf": "exp", "control": "full"}}
    with fit_counter() as old:
        analyse_data(analysis_data(eff, spec), isolate=True)
    with fit_counter() as new:
        run_plan(bcg_plan(), eff)
    assert new.count > 0
    assert new.count <= old.count / 2, (new.count, old.count)
    # 87 rma() calls per analysis at 54dfb7b (the pool step before typed results)
    assert new.count <= 87 / 2


def test_participants_count_the_rows_that_report_arm_sizes():
    eff = bcg_effects()
    eff.loc[0, "n_treat"] = np.nan
    res = run_plan(bcg_plan(), eff)
    data = pd.read_csv(CASE / "data.csv")
    assert res.participants == data["n1i"][1:].sum() + data["n2i"].sum()
