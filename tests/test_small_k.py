"""Small-k rules of the pool step (issue: analyses a Cochrane statistical editor would sign).

Each test fails if its rule is removed: two studies get no random-effects
estimate unless pool_k2 asks for one; no prediction interval below k = 3;
subgroups that are comparator classes get no overall estimate; I^2 from Q
is computed as (Q - df) / Q; meta-regression needs 10 studies.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from ntxmeta.analysis import METAREG_MIN_K, i2_from_q, run_plan
from ntxmeta.config import resolve
from ntxmeta.plan import Config
from ntxmeta.rma import rma


def plan(**block):
    a = {"title": "x", "measure": "RR", "filters": {"indication": ["alcohol"]},
         "preset": "metafor", **block}
    return Config.from_resolved(resolve({"analyses": {"x": a}})).analyses["x"]


def effects(y, v, **cols) -> pd.DataFrame:
    k = len(y)
    return pd.DataFrame({"study_id": [f"S{i}" for i in range(k)], "label": [f"S{i}" for i in range(k)],
                         "year": list(range(2000, 2000 + k)), "data_type": "generic",
                         "yi": y, "vi": v, **cols})


Y2, V2 = [-0.5, -0.1], [0.04, 0.09]


def test_two_studies_get_no_random_effects_estimate_by_default():
    res = run_plan(plan(pool_k2=False), effects(Y2, V2))
    assert res.main is None and res.common is not None
    assert res.status.startswith("no random-effects estimate: two studies")
    w = 1 / np.array(V2)
    assert res.common.estimate == pytest.approx(float(np.sum(w * Y2) / np.sum(w)), abs=1e-12)
    assert res.weights_pct == pytest.approx(tuple(100 * w / w.sum()), abs=1e-9)
    assert any("pool_k2" in n for n in res.notes)
    # every random-effects variant of two studies is refused too
    random = [v for v in res.variants if not v.model.startswith("common") and v.k == 2]
    assert random and all(v.fit is None and "pool_k2" in v.note for v in random), random


def test_two_studies_are_pooled_when_asked_and_get_no_prediction_interval():
    res = run_plan(plan(pool_k2=True), effects(Y2, V2))
    fit = rma(np.array(Y2), np.array(V2), method="REML")
    assert res.main.estimate == pytest.approx(fit.estimate, abs=1e-10)
    assert res.main.pi is None  # k < 3
    assert any("fewer than 3 studies" in n for n in res.notes)


def test_three_studies_get_a_t_prediction_interval_with_k_minus_1_df():
    y, v = [-0.5, -0.1, -0.3], [0.04, 0.09, 0.05]
    res = run_plan(plan(pi="t"), effects(y, v))
    fit = rma(np.array(y), np.array(v), method="REML")
    from scipy import stats
    half = stats.t.ppf(0.975, 2) * math.sqrt(fit.se[0] ** 2 + fit.tau2)
    assert res.main.pi.low == pytest.approx(fit.estimate - half, abs=1e-10)
    assert res.main.pi_kind == "t" and res.main.pi_df == 2


def test_comparator_class_subgroups_get_no_overall_estimate():
    y, v = [-0.5, -0.1, -0.3, 0.1], [0.04, 0.09, 0.05, 0.06]
    eff = effects(y, v, subgroup=["placebo", "placebo", "active", "active"])
    res = run_plan(plan(subgroup="comparator_class"), eff)
    assert not res.overall and any("different questions" in n for n in res.notes)
    assert run_plan(plan(subgroup="formulation"), eff).overall
    assert not run_plan(plan(subgroup="formulation", overall=False), eff).overall


def test_a_k2_subgroup_level_is_not_pooled_by_random_effects():
    y, v = [-0.5, -0.1, -0.3, 0.1, 0.2], [0.04, 0.09, 0.05, 0.06, 0.07]
    eff = effects(y, v, subgroup=["a", "a", "b", "b", "b"])
    levels = {lev.level: lev for lev in
              run_plan(plan(subgroup="formulation", pool_k2=False), eff).subgroups.levels}
    assert levels["a"].fit is None and "pool_k2" in levels["a"].note
    assert levels["b"].fit is not None


def test_i2_from_q_is_higgins_thompson():
    assert i2_from_q(16.4, 8) == pytest.approx(100 * 8.4 / 16.4)
    assert i2_from_q(5.0, 8) == 0.0 and i2_from_q(0.0, 3) == 0.0
    y, v = [-0.5, -0.1, -0.3, 0.4], [0.04, 0.09, 0.05, 0.06]
    het = run_plan(plan(), effects(y, v)).main.heterogeneity
    assert het.i2_q_pct == pytest.approx(max(0.0, 100 * (het.q - het.q_df) / het.q))


def test_meta_regression_needs_ten_studies():
    rng = np.random.default_rng(1)
    y, v = rng.normal(0, 0.3, 9), np.full(9, 0.05)
    res = run_plan(plan(moderators=["year"]), effects(y, v))
    assert res.metaregression[0].coefficients == () and "at least 10" in res.metaregression[0].note
    assert METAREG_MIN_K == 10
    y, v = rng.normal(0, 0.3, 10), np.full(10, 0.05)
    assert run_plan(plan(moderators=["year"]), effects(y, v)).metaregression[0].coefficients


def test_risk_of_bias_sensitivity_keeps_low_risk_or_drops_high_risk_trials():
    y, v = [-0.5, -0.1, -0.3, 0.4], [0.04, 0.09, 0.05, 0.06]
    eff = effects(y, v, rob_overall=["low", "high", "low", "some_concerns"])
    res = run_plan(plan(), eff)
    by = {x.name: x for x in res.variants}
    low = rma(np.array([y[0], y[2]]), np.array([v[0], v[2]]), method="REML")
    assert by["rob_low"].k == 2 and by["rob_low"].fit.estimate == pytest.approx(low.estimate)
    keep = [0, 2, 3]
    not_high = rma(np.array(y)[keep], np.array(v)[keep], method="REML")
    assert by["rob_not_high"].k == 3
    assert by["rob_not_high"].fit.estimate == pytest.approx(not_high.estimate, abs=1e-10)
