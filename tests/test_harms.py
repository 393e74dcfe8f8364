"""Harms pooled as Mantel-Haenszel risk differences (``pooling: mantel_haenszel``), against metafor.

Reference: tests/fixtures/harms/harms.json, metafor 3.8-1 ``rma.mh`` and
``rma.peto`` (make_harms.R), on the AUD nausea and serious-adverse-event
tables of data/raw/harms.csv and a hand-made rare-event set with single-arm
zeros and two tables with no events in either arm (kept in the MH RD, as
metafor and the Cochrane Handbook 10.4.4.2 keep them; dropped from Q).
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta import evidence as ev
from ntxmeta.analysis import run_plan
from ntxmeta.config import resolve
from ntxmeta.effects import binary_effects
from ntxmeta.plan import Config

REF = json.loads((Path(__file__).parent / "fixtures" / "harms" / "harms.json").read_text())
#: MH and Peto are closed-form sums: only floating-point rounding separates us from R.
CLOSED_FORM = 1e-10
SETS = ("aud_nausea", "aud_serious", "rare")


def harms_effects(name: str) -> pd.DataFrame:
    d = pd.DataFrame(REF[name]["data"])
    a, c = d.ai.to_numpy(float), d.ci.to_numpy(float)
    es = binary_effects("RD", a, d.n1i - a, c, d.n2i - c, add=0.5, to="only0", drop00=False)
    k = len(d)
    return pd.DataFrame({"study_id": [f"T{i}" for i in range(k)], "label": [f"T{i}" for i in range(k)],
                         "indication": "alcohol", "data_type": "binary", "comparator_class": "placebo",
                         "events_treat": a, "n_treat": d.n1i, "events_ctrl": c, "n_ctrl": d.n2i,
                         "yi": es.yi, "vi": es.vi, "rob_overall": "not_assessed"})


def plan(**extra):
    block = {"title": "x: nausea", "measure": "RD", "pooling": "mantel_haenszel",
             "filters": {"indication": ["alcohol"]}, **extra}
    return Config.from_resolved(resolve({"analyses": {"x": block}})).analyses["x"]


@pytest.mark.parametrize("name", SETS)
def test_mh_risk_difference_main_model_matches_metafor(name):
    ref = REF[name]["RD"]
    res = run_plan(plan(), harms_effects(name))
    m = res.main
    assert m.model == "MH" and m.pi is None
    got = (m.estimate, m.se, m.ci.low, m.ci.high, m.test_stat.statistic, m.test_stat.pval,
           m.heterogeneity.q)
    want = (ref["estimate"], ref["se"], ref["ci_lb"], ref["ci_ub"], ref["zval"], ref["pval"], ref["QE"])
    assert got == pytest.approx(want, rel=CLOSED_FORM, abs=1e-15)
    assert m.heterogeneity.q_df == ref["k_yi"] - 1  # double-zero tables out of Q only
    assert m.k == ref["k"]


@pytest.mark.parametrize("name", SETS)
def test_mh_weights_are_n1_n2_over_n(name):
    d = pd.DataFrame(REF[name]["data"])
    w = d.n1i * d.n2i / (d.n1i + d.n2i)
    res = run_plan(plan(), harms_effects(name))
    assert np.asarray(res.weights_pct) == pytest.approx(100 * w / w.sum(), rel=1e-12)


@pytest.mark.parametrize("name", [n for n in SETS if "PETO" in REF[n]])
def test_peto_odds_ratio_in_the_sensitivity_table_matches_metafor(name):
    ref = REF[name]["PETO"]
    res = run_plan(plan(), harms_effects(name))
    peto = next(v for v in res.variants if v.name == "common_Peto")
    assert (peto.fit.estimate, peto.fit.se) == pytest.approx((ref["estimate"], ref["se"]), rel=CLOSED_FORM)
    row = ev.sensitivity_table(res).set_index("variant").loc["common_Peto"]
    # shown as an odds ratio beside the RD main model
    assert row.estimate == pytest.approx(math.exp(ref["estimate"]), rel=CLOSED_FORM)
    random = next(v for v in res.variants if v.name == "random_effects")
    if res.k_used >= 3:  # at k = 2 the cochrane2025 preset fits no random-effects model
        assert random.fit is not None and random.fit.model == "REML"
    else:
        assert random.fit is None and "pool_k2: false" in random.note


def test_sof_row_gives_the_number_needed_to_harm_from_the_rd():
    res = run_plan(plan(), harms_effects("aud_nausea"))
    r = ev.sof_row(res, harms_effects("aud_nausea"))
    rd, lb, ub = (REF["aud_nausea"]["RD"][k] for k in ("estimate", "ci_lb", "ci_ub"))
    assert r["ard_per_1000"] == pytest.approx(1000 * rd, rel=CLOSED_FORM)
    # NNH = 1 / RD rounded up: 1 / 0.1565 = 6.4 -> 7; CI 1 / 0.2331 = 4.3 -> 5 to 1 / 0.0799 = 12.5 -> 13
    assert (r["nnt_kind"], r["nnt"], r["nnt_ci"]) == ("NNTH", math.ceil(1 / rd),
                                                       f"NNTH {math.ceil(1 / ub)} to {math.ceil(1 / lb)}")
    assert r["model"] == "common effect, Mantel-Haenszel"


def test_mantel_haenszel_needs_a_binary_measure():
    from ntxmeta.config import check_config
    import yaml
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"analyses": {"x": {"title": "x", "measure": "SMD", "pooling": "mantel_haenszel",
                                           "filters": {"indication": ["alcohol"]}}}}, f)
    _, problems = check_config(f.name)
    assert any("Mantel-Haenszel pools 2x2 tables" in p.message for p in problems)


def test_subsets_of_a_mantel_haenszel_analysis_refit_mantel_haenszel():
    """Without the low-confidence row, the nausea RD is MH on the other two tables (metafor by hand:
    the closed-form MH RD of tables 1 and 3)."""
    eff = harms_effects("aud_nausea").assign(confidence=["high", "low", "high"], derived="no")
    res = run_plan(plan(), eff)
    v = next(v for v in res.variants if v.name == "excl_low_confidence")
    d = pd.DataFrame(REF["aud_nausea"]["data"]).iloc[[0, 2]]
    n = d.n1i + d.n2i
    rd = ((d.ai * d.n2i - d.ci * d.n1i) / n).sum() / (d.n1i * d.n2i / n).sum()
    assert v.fit.model == "MH" and v.k == 2
    assert v.fit.estimate == pytest.approx(rd, rel=CLOSED_FORM)
    same = next(v for v in res.variants if v.name == "excl_derived")
    assert same.fit.estimate == pytest.approx(REF["aud_nausea"]["RD"]["estimate"], rel=CLOSED_FORM)
    assert "same rows as the main model" in same.note


def _mh_rd(d: pd.DataFrame) -> float:
    """Closed-form Mantel-Haenszel RD: sum (a n2 - c n1) / N over sum n1 n2 / N."""
    n = d.n1i + d.n2i
    return float(((d.ai * d.n2i - d.ci * d.n1i) / n).sum() / (d.n1i * d.n2i / n).sum())


def test_leave_one_out_and_cumulative_of_a_mantel_haenszel_analysis_refit_mantel_haenszel():
    d = pd.DataFrame(REF["aud_nausea"]["data"])
    eff = harms_effects("aud_nausea").assign(year=[2008, 2001, 2019])
    res = run_plan(plan(), eff)
    loo, cum = res.leave_one_out, res.cumulative
    assert (loo.model, cum.model) == ("MH", "MH")
    for j in range(len(d)):                          # each table left out in turn
        assert loo.estimate[j] == pytest.approx(_mh_rd(d.drop(index=j)), rel=CLOSED_FORM)
        assert loo.k[j] == len(d) - 1 and loo.tau2[j] == 0.0
    assert cum.labels == ("T1", "T0", "T2")          # by year
    a, n1, c, n2 = d.loc[1, ["ai", "n1i", "ci", "n2i"]]
    assert cum.estimate[0] == pytest.approx(a / n1 - c / n2, rel=1e-12)   # one table: its own RD
    assert cum.estimate[1] == pytest.approx(_mh_rd(d.loc[[1, 0]]), rel=CLOSED_FORM)
    assert cum.estimate[2] == pytest.approx(REF["aud_nausea"]["RD"]["estimate"], rel=CLOSED_FORM)
