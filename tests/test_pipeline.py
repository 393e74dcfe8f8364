"""Pipeline steps on constructed inputs: the effects step fits nothing, pool writes a typed result."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ntxmeta.config import resolve
from ntxmeta.pipeline import EFFECT_COLUMNS, analysis_spec, effects_table, pool, write_pool
from ntxmeta.plan import Config
from ntxmeta.result import read_result
from ntxmeta.tables import summary_table

ROWS = [dict(row_id=f"r{i}", study_id=f"S{i}", label=f"Study {i}", year=2000 + i,
             events_treat=e1, n_treat=n1, events_ctrl=e2, n_ctrl=n2, data_type="binary",
             formulation="oral")
        for i, (e1, n1, e2, n2) in enumerate([(10, 50, 20, 50), (5, 40, 9, 41), (30, 100, 28, 99)])]


def plan(**over):
    block = {"title": "t", "measure": "RR", "filters": {"indication": ["alcohol"]}, **over}
    return Config.from_resolved(resolve({"analyses": {"a": block}})).analyses["a"]


def rows_frame(rows=ROWS):
    return pd.DataFrame(rows)


def test_effects_table_is_escalc_and_fits_no_model(monkeypatch):
    import ntxmeta.rma as rma_module

    def no_fit(*a, **k):
        raise AssertionError("the effects step must not fit a model")
    monkeypatch.setattr(rma_module, "rma", no_fit)
    eff = effects_table(rows_frame(), plan(subgroup="formulation"))
    assert "weight_pct" not in eff.columns and list(eff.columns[:len(EFFECT_COLUMNS)]) == list(EFFECT_COLUMNS)
    # log RR and its variance from the 2x2 table, by hand
    a, n1, c, n2 = 10, 50, 20, 50
    assert eff["yi"][0] == pytest.approx(np.log((a / n1) / (c / n2)), rel=1e-14)
    assert eff["vi"][0] == pytest.approx(1 / a - 1 / n1 + 1 / c - 1 / n2, rel=1e-14)
    assert list(eff["subgroup"]) == ["oral"] * 3


def test_pool_writes_the_typed_result_and_its_oracle_spec(tmp_path):
    p = plan()
    eff = effects_table(rows_frame(), p)
    eff_csv = tmp_path / "effects.csv"
    eff.to_csv(eff_csv, index=False)
    out = tmp_path / "results" / "a"
    write_pool(eff_csv, p, out / "result.json", out / "spec.json")
    res = read_result(out / "result.json")
    assert res.name == "a" and res.k_used == 3 and res.main.k == 3 and res.scale.log
    spec = json.loads((out / "spec.json").read_text())
    assert spec["measure"] == "RR" and spec["options"]["transf"] == "exp"
    assert spec["columns"] == {"ai": "events_treat", "n1i": "n_treat", "ci": "events_ctrl",
                               "n2i": "n_ctrl"}


def test_generic_log_ratio_rows_are_shown_as_ratios_everywhere():
    """A GEN analysis of reported ratios: one scale, decided once (the result's)."""
    rows = [dict(row_id=f"g{i}", study_id=f"G{i}", label=f"G {i}", year=2010 + i,
                 data_type="ratio", log_ratio=lr, var_log_ratio=v)
            for i, (lr, v) in enumerate([(-0.3, 0.04), (0.1, 0.09), (-0.2, 0.05)])]
    p = plan(measure="GEN")
    eff = effects_table(rows_frame(rows), p)
    res, spec = pool(eff, p, "x.csv")
    assert res.scale.log and res.scale.name == "Ratio" and spec["options"]["transf"] == "exp"
    row = summary_table([res]).iloc[0]
    assert row["measure"] == "Ratio"
    assert row["estimate"] == pytest.approx(np.exp(res.main.estimate), rel=1e-15)
    assert row["ci_lb"] == pytest.approx(np.exp(res.main.ci.low), rel=1e-15)


def test_empty_and_single_study_analyses_say_why():
    p = plan()
    empty, _ = pool(effects_table(rows_frame().iloc[:0], p), p, "x.csv")
    assert empty.status.startswith("no pooled estimate: no usable rows")
    single, _ = pool(effects_table(rows_frame().iloc[:1], p), p, "x.csv")
    assert "single study" in single.status and single.main is None
    row = summary_table([single]).iloc[0]
    assert row["k"] == 1 and np.isnan(row["estimate"])


def test_spec_reproduces_the_analysis_options():
    p = plan(method="DL", test="knha", level=90, subgroup="formulation", moderators=["year"])
    eff = effects_table(rows_frame(), p)
    spec = analysis_spec(p, eff, "effects.csv")
    assert spec["options"]["level"] == 90.0 and spec["subgroup"] == "subgroup"
    assert spec["moderator"] == "year"


def test_good_events_count_responders_as_reported():
    """ADAPT-2 is shown as response (RR > 1 favours naltrexone), not RR of non-response."""
    rows = rows_frame().assign(outcome="response", event="no_response", flipped=True,
                               log_ratio=np.nan, ratio_type="")
    bad = effects_table(rows, plan())
    good = effects_table(rows, plan(events="good"))
    # responders = n - non-responders, in each arm
    assert list(good["events_treat"]) == [40, 35, 70] and list(good["events_ctrl"]) == [30, 32, 71]
    assert set(good["event"]) == {"response"} and not good["flipped"].any()
    # RR of response: (40/50) / (30/50) for the first row
    assert good["yi"].iloc[0] == pytest.approx(np.log((40 / 50) / (30 / 50)), abs=1e-12)
    assert bad["yi"].iloc[0] == pytest.approx(np.log((10 / 50) / (20 / 50)), abs=1e-12)


def test_a_variance_that_would_take_all_the_weight_is_left_out_with_its_reason():
    """An MD row with SD 1e-9 (vi ~ 1e-19) beside ordinary rows: the fit used to fail
    (tr P cancels to 0); the row is now left out with its reason and the rest pooled."""
    from ntxmeta.analysis import run_plan
    rows = pd.DataFrame([dict(row_id=f"c{i}", study_id=f"S{i}", label=f"S{i}", year=2000 + i,
                              data_type="continuous", mean_treat=m1, sd_treat=s1, n_treat=30,
                              mean_ctrl=m2, sd_ctrl=s2, n_ctrl=30)
                         for i, (m1, s1, m2, s2) in enumerate([(10.0, 1e-9, 11.0, 1e-9),
                                                               (10.0, 3.0, 12.0, 3.5),
                                                               (9.0, 2.5, 10.0, 3.0),
                                                               (8.0, 4.0, 9.5, 4.0)])])
    p = plan(measure="MD", preset="metafor")
    eff = effects_table(rows, p)
    assert np.isnan(eff["vi"].iloc[0]) and "more than 1e+12 times below" in eff["exclusion_reason"].iloc[0]
    assert (eff["exclusion_reason"].iloc[1:] == "").all()
    res = run_plan(p, eff)
    assert res.status == "pooled" and res.k_used == 3 and not res.failed
