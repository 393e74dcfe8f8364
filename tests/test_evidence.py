"""Evidence tables, checked against metafor and against hand arithmetic.

* sensitivity rows equal metafor's fits of the vendored ``bcg_RR`` case
  (``rma``, ``rma_knha``, ``common.EE``, ``common.MH.RR``, ``common.Peto``,
  ``leave1out.REML`` in ``out.json``) and direct ``rma()`` calls on the
  subsets they describe;
* the summary of findings is recomputed by hand on small constructed
  analyses (assumed control risk as a median, corresponding risk through
  RR, OR and RD, the absolute difference, NNT with Altman's interval) and
  with the standard library's ``statistics.median`` on bcg_RR;
* subgroup and small-study tables carry the reference's numbers to the
  right rows, and say "not assessed (k < 10)" or why a section is missing.

Tolerances: ``TIGHT`` where metafor's value is tightly converged or
closed-form (DL, EE, MH, Peto: floating-point noise only); ``LOOSE`` for
metafor's default-control REML fits inside leave1out (stopped at a change
of 1e-5 in tau^2, see tests/oracle_util.py).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta import evidence as ev
from ntxmeta._common import Interval
from ntxmeta.analysis import run_plan
from ntxmeta.config import resolve
from ntxmeta.plan import Config
from ntxmeta.result import AnalysisResult, Heterogeneity, Pooled, Scale, Test
from ntxmeta.rma import rma

FIX = Path(__file__).parent / "fixtures" / "oracle"
TIGHT = 1e-6
LOOSE = 1e-4


def raw_json(case: str) -> dict:
    """The reference as plain JSON (no project code between the file and the test)."""
    return json.loads((FIX / case / "out.json").read_text())


def bcg_effects(case: str = "bcg_RR") -> pd.DataFrame:
    d = pd.read_csv(FIX / case / "data.csv")
    ref = raw_json(case)
    trial = d.trial.to_numpy()
    return pd.DataFrame({
        "row_id": [f"R{t}" for t in trial], "study_id": d.author, "label": d.author, "year": d.year,
        "subgroup": d.alloc, "indication": "alcohol",
        "comparator_type": np.where(trial % 3 == 0, "active", "placebo"),
        "data_type": "binary", "events_treat": d.ai, "n_treat": d.n1i, "events_ctrl": d.ci,
        "n_ctrl": d.n2i, "yi": ref["escalc"]["yi"], "vi": ref["escalc"]["vi"],
        "confidence": np.where(trial % 4 == 0, "low", "high"),
        "derived": np.where(trial % 5 == 0, "True", "False")})


def config(analyses: dict, **top) -> Config:
    """A config of these analyses; metafor's preset (REML, z) unless ``defaults`` says otherwise,
    so that the numbers compare with metafor's default rma() fits in out.json."""
    blocks = {n: {"title": n, "measure": "RR", "filters": {"indication": ["alcohol"]}, **a}
              for n, a in analyses.items()}
    top["defaults"] = {"preset": "metafor", **top.get("defaults", {})}
    return Config.from_resolved(resolve({"analyses": blocks, **top}))


def sensitivity(eff, block=None, defaults=None, subsets=None) -> pd.DataFrame:
    """The sensitivity table of an analysis whose rows are ``eff``, through the pool step."""
    cfg = config({"x": {"measure": "RR", **(block or {})}}, defaults=defaults or {},
                 sensitivity=subsets or {})
    return ev.sensitivity_table(run_plan(cfg.analyses["x"], eff))


def bcg_result(case: str = "bcg_RR", **block) -> AnalysisResult:
    """The pool step's result on a vendored case (equal to metafor: tests/test_analysis.py)."""
    cfg = config({case: {"measure": "RR", "main": True, "subgroup": "alloc", **block}})
    return run_plan(cfg.analyses[case], bcg_effects(case))


def by_variant(table: pd.DataFrame) -> dict:
    return {r["variant"]: r for r in table.to_dict("records")}


def close(a, b, rel):
    return a == pytest.approx(b, rel=rel, abs=1e-12)


# --------------------------------------------------------------------------- sensitivity


def test_sensitivity_rows_equal_metafor_on_bcg():
    ref = raw_json("bcg_RR")
    rows = by_variant(sensitivity(bcg_effects()))
    expected = {
        "main": ref["rma_tight"]["REML"], "tau2_REML": ref["rma_tight"]["REML"],
        "tau2_DL": ref["rma"]["DL"], "tau2_PM": ref["rma_tight"]["PM"],
        "test_z": ref["rma_tight"]["REML"], "test_knha": ref["rma_knha_tight"]["REML"],
        "common_EE": ref["common"]["EE"],
    }
    for variant, fit in expected.items():
        r = rows[variant]
        assert r["k"] == 13
        assert close(r["estimate"], fit["exp"]["estimate"], TIGHT), variant
        assert close(r["ci_lb"], fit["exp"]["ci.lb"], TIGHT), variant
        assert close(r["ci_ub"], fit["exp"]["ci.ub"], TIGHT), variant
        assert close(r["tau2"], fit["tau2"], TIGHT), variant
        assert close(r["I2_pct"], fit["I2"], TIGHT), variant
        assert close(r["pval"], fit["pval"], TIGHT), variant
    for variant, fit, measure in (("common_MH", ref["common"]["MH"]["RR"], "RR"),
                                  ("common_Peto", ref["common"]["Peto"], "OR (Peto)")):
        r = rows[variant]
        assert r["measure"] == measure and r["k"] == 13 and r["note"] == ""
        for ours, theirs in (("estimate", "estimate"), ("ci_lb", "ci.lb"), ("ci_ub", "ci.ub")):
            assert close(r[ours], fit["exp"][theirs], TIGHT), (variant, ours)
        assert close(r["I2_pct"], fit["I2"], TIGHT)
    assert rows["tau2_REML"]["note"] == rows["test_z"]["note"] == "same model as the main model"
    assert rows["tau2_DL"]["note"] == ""


def test_leave_one_out_range_is_metafors_extremes():
    loo = raw_json("bcg_RR")["leave1out"]["REML"]
    est = np.array(loo["estimate"])
    rows = by_variant(sensitivity(bcg_effects()))
    for variant, j in (("leave1out_min", int(np.argmin(est))), ("leave1out_max", int(np.argmax(est)))):
        r = rows[variant]
        assert r["k"] == 12
        assert close(r["estimate"], math.exp(est[j]), LOOSE)
        assert close(r["ci_lb"], math.exp(loo["ci.lb"][j]), LOOSE)
        assert close(r["ci_ub"], math.exp(loo["ci.ub"][j]), LOOSE)
        assert close(r["tau2"], loo["tau2"][j], LOOSE)
        assert f"(without {loo['slab'][j]})" in r["description"]


def test_subset_rows_equal_direct_rma_calls():
    eff = bcg_effects()
    subsets = {"no_alt": {"title": "Without alternate allocation", "exclude": {"subgroup": ["alternate"]}},
               "bad": {"title": "Unknown column", "exclude": {"no_such_column": ["x"]}}}
    rows = by_variant(sensitivity(eff, {"method": "DL", "test": "knha"}, {"method": "REML"}, subsets))
    yi, vi = eff.yi.to_numpy(), eff.vi.to_numpy()
    masks = {"excl_low_confidence": eff.confidence.to_numpy() != "low",
             "excl_derived": eff.derived.to_numpy() != "True",
             "placebo_only": eff.comparator_type.to_numpy() == "placebo",
             "subset_no_alt": eff.subgroup.to_numpy() != "alternate"}
    for variant, keep in masks.items():
        fit = rma(yi[keep], vi[keep], method="DL", test="knha")    # the analysis overrides the default
        r = rows[variant]
        assert r["k"] == keep.sum() < 13
        assert r["model"] == "DL random effects, Hartung-Knapp"
        assert close(r["estimate"], math.exp(fit.estimate), 1e-12)
        assert close(r["ci_lb"], math.exp(fit.ci.low), 1e-12)
        assert close(r["tau2"], fit.tau2, 1e-12)
    refits = [rma(np.delete(yi, i), np.delete(vi, i), method="DL", test="knha") for i in range(13)]
    lowest = min(refits, key=lambda f: f.estimate)
    assert close(rows["leave1out_min"]["estimate"], math.exp(lowest.estimate), 1e-10)
    assert close(rows["leave1out_min"]["ci_ub"], math.exp(lowest.ci.high), 1e-10)
    assert rows["subset_bad"]["k"] == 13
    assert "no_such_column" in rows["subset_bad"]["note"]
    assert rows["test_knha"]["note"] == "same model as the main model"


def test_config_subsets_that_repeat_a_builtin_row_take_its_place():
    subsets = {"no_low": {"title": "Without rows of low confidence", "exclude": {"confidence": ["low"]}},
               "no_derived": {"title": "Without derived counts", "exclude": {"derived": [True]}}}
    table = sensitivity(bcg_effects(), subsets=subsets)
    rows = by_variant(table)
    assert not any(v.startswith("subset_") for v in rows)
    assert rows["excl_low_confidence"]["description"] == "Without rows of low confidence"
    assert rows["excl_derived"]["description"] == "Without derived counts"
    assert rows["excl_low_confidence"]["k"] == 10 and rows["excl_derived"]["k"] == 11


def test_variants_that_cannot_be_fitted_say_why():
    eff = bcg_effects("bcg_k2_RR")
    eff["confidence"] = ["low", "high"]
    eff["comparator_type"] = "active"
    eff.loc[0, ["events_treat", "n_treat"]] = np.nan      # a ratio-only row: no arm counts
    rows = by_variant(sensitivity(eff))
    assert rows["main"]["k"] == 2 and math.isfinite(rows["main"]["estimate"])
    assert rows["excl_low_confidence"]["k"] == 1
    assert "k = 1" in rows["excl_low_confidence"]["note"] and math.isnan(rows["excl_low_confidence"]["estimate"])
    assert rows["placebo_only"]["k"] == 0 and rows["placebo_only"]["note"] == "not computed: no rows"
    assert "k = 1" in rows["common_MH"]["note"]            # one row left with counts
    assert "leave1out_min" not in rows                     # leave-one-out needs k >= 3
    # with both rows' counts, MH runs and notes nothing
    full = by_variant(sensitivity(bcg_effects("bcg_k2_RR")))
    assert full["common_MH"]["note"] == "" and full["common_MH"]["k"] == 2


def test_mh_on_part_of_the_rows_says_so():
    eff = bcg_effects()
    eff.loc[[0, 5], "events_ctrl"] = np.nan
    r = by_variant(sensitivity(eff))["common_MH"]
    assert r["k"] == 11 and r["note"] == "11 of 13 pooled rows have arm counts; the others are left out"


def test_continuous_analysis_has_no_binary_rows_and_no_back_transform():
    d = pd.read_csv(FIX / "normand1999_SMD" / "data.csv")
    ref = raw_json("normand1999_SMD")
    eff = pd.DataFrame({"label": d.source, "data_type": "continuous", "yi": ref["escalc"]["yi"],
                        "vi": ref["escalc"]["vi"], "confidence": "high", "derived": False,
                        "comparator_type": "placebo"})
    rows = by_variant(sensitivity(eff, {"measure": "SMD"}))
    assert "common_MH" not in rows and "common_Peto" not in rows
    assert close(rows["main"]["estimate"], ref["rma_tight"]["REML"]["estimate"], TIGHT)
    assert close(rows["tau2_DL"]["ci_lb"], ref["rma"]["DL"]["ci.lb"], TIGHT)


# --------------------------------------------------------------------------- summary of findings


def constructed(measure: str, est: float, lb: float, ub: float, *, pi=(math.nan, math.nan),
                i2: float = 0.0, risks=((2, 10), (4, 10), (5, 10)), low=(False, True, False),
                weights=(50.0, 30.0, 20.0)) -> tuple[pd.DataFrame, dict]:
    """A k-study analysis with chosen control risks and a hand-made result."""
    k = len(risks)
    eff = pd.DataFrame({"study_id": [f"S{i}" for i in range(k)], "label": [f"S{i}" for i in range(k)],
                        "indication": "opioid", "data_type": "binary",
                        "events_treat": [1] * k, "n_treat": [10] * k,
                        "events_ctrl": [e for e, _ in risks], "n_ctrl": [n for _, n in risks],
                        "yi": [0.1] * k, "vi": [0.2] * k,
                        "confidence": ["low" if x else "high" for x in low]})
    return eff, hand_result(measure, est, lb, ub, pi=pi, i2=i2, k=k,
                            events=int(eff.events_treat.sum() + eff.events_ctrl.sum()),
                            weights=tuple(weights)[:k])


def hand_result(measure, est, lb, ub, *, pi=(math.nan, math.nan), i2=0.0, k=3, events=None,
                weights=None, used=None, **fields) -> AnalysisResult:
    """A result made by hand: the numbers a SoF row is computed from, and nothing else."""
    pooled = Pooled(model="REML", test="z", level=95.0, k=k, estimate=est, se=math.nan,
                    ci=Interval(lb, ub), test_stat=Test("z", math.nan, math.nan),
                    pi=Interval(*pi), heterogeneity=Heterogeneity(math.nan, k - 1, math.nan, 0.1,
                                                                  math.nan, math.sqrt(0.1), i2, math.nan))
    base = dict(name="x", title="X", measure=measure, scale=Scale.of(measure), method="REML",
                test="z", level=95.0, status="pooled", k_rows=k, k_used=k, participants=0,
                events=events, main=pooled, common=None,
                weights_pct=weights or (100.0 / k,) * k, used=used or (True,) * k)
    return AnalysisResult(**{**base, **fields})


def sof(eff, res, indications=()):
    return ev.sof_row(res, eff, indications)


def test_sof_by_hand_rr_through_zero():
    # ACR = median(0.2, 0.4, 0.5) = 0.4; RR 0.75 (0.5 to 1.25)
    eff, res = constructed("RR", math.log(0.75), math.log(0.5), math.log(1.25),
                           pi=(math.log(0.3), math.log(1.9)), i2=60.0)
    r = sof(eff, res)
    assert r["acr_per_1000"] == pytest.approx(400)
    assert r["cr_per_1000"] == pytest.approx(300)        # 0.4 x 0.75
    assert r["cr_lb_per_1000"] == pytest.approx(200)     # 0.4 x 0.5
    assert r["cr_ub_per_1000"] == pytest.approx(500)     # 0.4 x 1.25
    assert r["ard_per_1000"] == pytest.approx(-100)
    assert (r["ard_lb_per_1000"], r["ard_ub_per_1000"]) == (pytest.approx(-200), pytest.approx(100))
    assert (r["nnt_kind"], r["nnt"]) == ("NNTB", 10)      # 1 / 0.1
    assert r["nnt_ci"] == "NNTB 5 to \u221e to NNTH 10"     # 1/0.2 and 1/0.1 (Altman 1998)
    assert r["estimate"] == pytest.approx(0.75) and r["pi_ub"] == pytest.approx(1.9)
    assert r["events"] == 3 + 11 and r["participants"] == 60 and r["k"] == 3 and r["studies"] == 3
    assert r["imprecision"] == "yes: CI includes 1; 14 events (< 300)"
    assert r["inconsistency"] == "yes: I\u00b2 = 60% (> 50%)"      # the CI includes 1 too: imprecision
    assert r["small_study_effects"] == "not assessed (k < 10)"
    assert r["low_confidence_weight_pct"] == pytest.approx(30.0)   # study 2 of weights 50/30/20


def test_inconsistency_from_the_prediction_interval():
    # CI excludes 1 but the PI does not: the effect may reverse in a new setting
    eff, res = constructed("RR", math.log(0.7), math.log(0.6), math.log(0.8),
                           pi=(math.log(0.4), math.log(1.2)), i2=40.0)
    assert sof(eff, res)["inconsistency"] == "yes: prediction interval includes 1 (the CI does not)"
    eff, res = constructed("RR", math.log(0.7), math.log(0.6), math.log(0.8),
                           pi=(math.log(0.5), math.log(0.95)), i2=50.0)   # I2 = 50 is not > 50
    assert sof(eff, res)["inconsistency"] == "no"


def test_sof_by_hand_or_and_rd_and_harm():
    # OR 0.5 with ACR 0.4: odds 0.4/0.6 x 0.5 = 1/3 -> risk 0.25
    eff, res = constructed("OR", math.log(0.5), math.log(0.25), math.log(0.8))
    r = sof(eff, res)
    assert r["cr_per_1000"] == pytest.approx(250)
    assert r["cr_lb_per_1000"] == pytest.approx(1000 * 0.1 / 0.7)   # odds 1/6 -> 1/7... by hand: 0.25*0.4/(0.6+0.1)
    assert r["cr_ub_per_1000"] == pytest.approx(1000 * 0.32 / 0.92)
    assert (r["nnt_kind"], r["nnt"]) == ("NNTB", 7)                 # 1/0.15 = 6.67, rounded up
    assert r["nnt_ci"] == f"NNTB {math.ceil(1 / (0.4 - 0.1 / 0.7))} to {math.ceil(1 / (0.4 - 0.32 / 0.92))}"
    assert r["imprecision"] == "yes: 14 events (< 300)" and r["inconsistency"] == "no"
    # RD: no back-transform, CR = ACR + RD
    eff, res = constructed("RD", -0.1, -0.15, -0.05)
    r = sof(eff, res)
    assert r["estimate"] == pytest.approx(-0.1) and r["cr_per_1000"] == pytest.approx(300)
    assert r["nnt_ci"] == "NNTB 7 to 20"
    # harm: RR 1.5 (1.25 to 2.0), ACR 0.4 -> ARD +0.2 (0.1 to 0.4): NNTH 5 (3 to 10)
    eff, res = constructed("RR", math.log(1.5), math.log(1.25), math.log(2.0))
    r = sof(eff, res)
    assert (r["nnt_kind"], r["nnt"], r["nnt_ci"]) == ("NNTH", 5, "NNTH 3 to 10")
    # a risk cannot exceed 1: RR 3 with ACR 0.4 caps at 1000 per 1000
    eff, res = constructed("RR", math.log(2.0), math.log(1.5), math.log(3.0))
    assert sof(eff, res)["cr_ub_per_1000"] == pytest.approx(1000)


def test_acr_is_the_median_of_the_pooled_control_arms():
    risks = ((1, 10), (3, 10), (6, 10), (9, 10))          # even k: (0.3 + 0.6) / 2
    eff, _ = constructed("RR", 0, 0, 0, risks=risks, low=(False,) * 4, weights=(25,) * 4)
    every = np.ones(4, dtype=bool)
    assert ev.assumed_control_risk(eff, every) == pytest.approx(0.45)
    assert ev.assumed_control_risk(eff, every & (np.arange(4) != 3)) == pytest.approx(0.3)  # not pooled
    eff[["events_ctrl", "n_ctrl"]] = np.nan              # ratio-only rows: no ACR, no absolute effect
    assert math.isnan(ev.assumed_control_risk(eff, every))


def test_sof_on_bcg_against_the_standard_library():
    eff, res = bcg_effects(), bcg_result()
    ref = raw_json("bcg_RR")["rma_tight"]["REML"]
    cfg = config({"bcg_RR": {"title": "BCG", "main": True}})
    r = ev.summary_of_findings({"bcg_RR": eff}, {"bcg_RR": res}, cfg).iloc[0]
    acr = statistics.median(c / n for c, n in zip(eff.events_ctrl, eff.n_ctrl))
    rr, lb, ub = ref["exp"]["estimate"], ref["exp"]["ci.lb"], ref["exp"]["ci.ub"]
    assert r["acr_per_1000"] == pytest.approx(1000 * acr, rel=1e-12)
    assert r["cr_per_1000"] == pytest.approx(1000 * acr * rr, rel=1e-9)
    assert r["ard_lb_per_1000"] == pytest.approx(1000 * (acr * lb - acr), rel=1e-9)
    assert r["nnt"] == math.ceil(1 / (acr - acr * rr))
    assert r["nnt_ci"] == f"NNTB {math.ceil(1 / (acr - acr * lb))} to {math.ceil(1 / (acr - acr * ub))}"
    assert r["events"] == eff.events_treat.sum() + eff.events_ctrl.sum() >= 300
    assert r["imprecision"] == "no"
    assert r["inconsistency"].startswith("yes: I\u00b2 = 92% (> 50%)")
    # 2x2 tables: Harbord's test (metafor's regtest on Harbord's score and variance, make_harbord.R)
    harbord_p = json.loads((FIX.parent / "harbord" / "harbord.json").read_text())["bcg"]["pval"]
    assert r["small_study_effects"] == f"no: Harbord p = {harbord_p:.3f}"
    w = np.array(ref["weights_pct"])
    assert r["low_confidence_weight_pct"] == pytest.approx(w[eff.confidence == "low"].sum() / w.sum() * 100)
    assert r["indication"] == "alcohol" and r["studies"] == 11          # two authors appear twice


def test_sof_small_study_flag_fires_below_ten_percent():
    import dataclasses
    eff, res = bcg_effects(), bcg_result()
    # 2x2 tables: Harbord's test decides (Sterne et al. 2011), not Egger's
    harbord = dataclasses.replace(res.small_study.harbord, pval=0.04)
    resh = dataclasses.replace(res, small_study=dataclasses.replace(res.small_study, harbord=harbord))
    assert ev.sof_row(resh, eff)["small_study_effects"] == "yes: Harbord p = 0.040 < 0.10"
    # without 2x2 tables (no Harbord test), Egger's
    res = dataclasses.replace(res, small_study=dataclasses.replace(res.small_study, harbord=None))
    egger = dataclasses.replace(res.small_study.egger, pval=0.04)
    res4 = dataclasses.replace(res, small_study=dataclasses.replace(res.small_study, egger=egger))
    assert ev.sof_row(res4, eff)["small_study_effects"] == "yes: Egger p = 0.040 < 0.10"
    refused = dataclasses.replace(res, small_study=dataclasses.replace(res.small_study, egger=None,
                                                                      note="simulated refusal"))
    assert ev.sof_row(refused, eff)["small_study_effects"] == "not available (simulated refusal)"


def test_sof_continuous_and_unpooled_rows():
    d = pd.read_csv(FIX / "normand1999_SMD" / "data.csv")
    ref = raw_json("normand1999_SMD")
    eff = pd.DataFrame({"study_id": d.source, "label": d.source, "data_type": "continuous",
                        "n_treat": d.n1i, "n_ctrl": d.n2i, "yi": ref["escalc"]["yi"],
                        "vi": ref["escalc"]["vi"], "confidence": "high"})
    res = run_plan(config({"smd": {"measure": "SMD"}}).analyses["smd"], eff)
    r = ev.sof_row(res, eff, ("alcohol",))
    assert r["measure"] == "SMD"
    assert r["estimate"] == pytest.approx(ref["rma_tight"]["REML"]["estimate"], rel=TIGHT)
    assert math.isnan(r["acr_per_1000"]) and r["nnt_kind"] == "" and math.isnan(r["events"])
    assert r["participants"] == d.n1i.sum() + d.n2i.sum() >= 400
    eff1 = pd.DataFrame({"study_id": ["a"], "label": ["a"], "yi": [0.2], "vi": [0.1],
                         # the Wald interval the effects step writes beside yi
                         "ci_lb": [0.2 - 1.959963985 * 0.1 ** 0.5], "ci_ub": [0.2 + 1.959963985 * 0.1 ** 0.5]})
    single = run_plan(config({"one": {"measure": "GEN"}}).analyses["one"], eff1)
    r = ev.sof_row(single, eff1)
    # k = 1: the trial's own estimate and Wald CI (0.2 -+ 1.959964 sqrt(0.1)), not pooled
    assert r["status"].startswith("no pooled estimate: a single study")
    assert (r["estimate"], r["ci_lb"], r["ci_ub"]) == pytest.approx(
        (0.2, 0.2 - 1.959963985 * 0.1 ** 0.5, 0.2 + 1.959963985 * 0.1 ** 0.5), rel=1e-9)
    assert r["model"].startswith("a single trial (k = 1)")
    assert r["imprecision"] == "not assessed (k = 1)" and r["small_study_effects"] == "not assessed (k < 10)"
    assert r["certainty_label"] in ("High", "Moderate", "Low", "Very low")


def test_sof_order_and_main_selection():
    eff_a, res_a = constructed("RR", 0.0, -0.1, 0.1)
    eff_b = eff_a.assign(indication="alcohol")
    blocks = {"b_opioid": {"main": True, "filters": {"indication": ["opioid"]}},
              "c_side": {"filters": {"indication": ["opioid"]}},
              "a_alcohol": {"main": True}}
    effects = {"b_opioid": eff_a, "c_side": eff_a, "a_alcohol": eff_b}
    results = {n: res_a for n in effects}
    table = ev.summary_of_findings(effects, results, config(blocks))
    assert list(table.analysis) == ["a_alcohol", "b_opioid"]      # alcohol first; c_side not main
    assert list(table.columns) == list(ev.SOF_COLUMNS)
    for b in blocks.values():
        b["main"] = False                                         # none main: all are summarised
    assert len(ev.summary_of_findings(effects, results, config(blocks))) == 3


@pytest.mark.parametrize("ard, lb, ub, expected", [
    (-0.1, -0.2, -0.05, ("NNTB", 10, "NNTB 5 to 20")),
    (0.1, 0.05, 0.2, ("NNTH", 10, "NNTH 5 to 20")),
    (-0.1, -0.2, 0.0, ("NNTB", 10, "NNTB 5 to \u221e to NNTH \u221e")),
    (0.0, -0.1, 0.1, ("", math.inf, "NNTB 10 to \u221e to NNTH 10")),
    (-1 / 3, -0.5, -0.25, ("NNTB", 3, "NNTB 2 to 4")),
])
def test_nnt_by_hand(ard, lb, ub, expected):
    assert ev.number_needed_to_treat(ard, lb, ub) == expected


def test_nnt_of_missing_difference_is_empty():
    kind, nnt, ci = ev.number_needed_to_treat(math.nan, -0.1, 0.1)
    assert kind == "" and math.isnan(nnt) and ci == ""


# --------------------------------------------------------------------------- subgroups and small-study effects


def test_subgroup_table_carries_metafors_numbers():
    ref = json.loads((FIX.parent / "metafor_tight" / "bcg_RR.json").read_text())["subgroup"]
    table = ev.subgroup_table({"bcg": bcg_result()})
    levels = table[table.row == "level"].set_index("level")
    assert list(levels.index) == ref["levels"]
    for lev in ref["levels"]:
        fit = ref["by_level"][lev]["REML"]
        assert levels.loc[lev, "k"] == fit["k"]
        assert close(levels.loc[lev, "estimate"], math.exp(fit["estimate"]), TIGHT)
        assert close(levels.loc[lev, "ci_ub"], math.exp(fit["ci.ub"]), TIGHT)
        assert close(levels.loc[lev, "I2_pct"], fit["I2"], TIGHT)
    test = table[table.row == "test"].iloc[0]
    me = ref["mixed_effects"]["REML"]
    assert close(test["statistic"], me["QM"], TIGHT) and test["df"] == "2"
    assert close(test["pval"], me["QMp"], TIGHT)
    qb = table[table.row == "Q_between"].iloc[0]
    q = ref["Q_between"]["from_REML_subgroup_estimates"]
    assert close(qb["statistic"], q["Q"], TIGHT)
    assert close(qb["I2_pct"], max(0.0, 100 * (q["Q"] - q["df"]) / q["Q"]), TIGHT)  # RevMan's I^2
    assert table.subgroup.unique().tolist() == ["alloc"]


def test_subgroup_table_under_knha_and_refusals():
    ref = json.loads((FIX.parent / "metafor_tight" / "bcg_RR.json").read_text())["subgroup"]
    knha = ev.subgroup_table({"bcg": bcg_result(test="knha")})
    test = knha[knha.row == "test"].iloc[0]
    assert close(test["statistic"], ref["mixed_effects"]["REML_knha"]["QM"], TIGHT)
    assert "(F test)" in test["note"] and test["df"] == "2, 10"
    lev = knha[(knha.row == "level") & (knha.level == "random")].iloc[0]
    assert close(lev["ci_lb"], math.exp(ref["by_level"]["random"]["REML_knha"]["ci.lb"]), TIGHT)
    k3 = ev.subgroup_table({"k3": bcg_result("bcg_k3_RR")})
    assert k3[k3.row == "test"].note.iloc[0].startswith("not available: ")
    assert ev.subgroup_table({"x": bcg_result(subgroup=None)}).empty


def test_small_study_table():
    ref = raw_json("bcg_RR")
    bias = json.loads((FIX.parent / "bias_tight" / "bcg_RR.json").read_text())
    table = ev.small_study_table({"bcg": bcg_result(), "k3": bcg_result("bcg_k3_RR")}).set_index("analysis")
    b = table.loc["bcg"]
    assert b["assessed"] and b["k"] == 13 and b["note"] == ""
    assert close(b["egger_z"], bias["regtest"]["rma_REML"]["stat"], TIGHT)
    assert close(b["egger_limit"], math.exp(bias["regtest"]["rma_REML"]["limit_estimate"]), TIGHT)
    assert close(b["egger_classic_p"], ref["regtest"]["lm_classic_egger"]["pval"], TIGHT)
    assert b["egger_classic_df"] == 11
    assert close(b["begg_p"], ref["ranktest"]["default"]["pval"], TIGHT)
    assert b["trimfill_k0"] == bias["trimfill"]["REML"]["k0"] and b["trimfill_side"] == "right"
    assert close(b["trimfill_estimate"], math.exp(bias["trimfill"]["REML"]["estimate"]), TIGHT)
    s = table.loc["k3"]
    assert not s["assessed"] and s["note"] == "not assessed (k < 10)" and math.isnan(s["egger_p"])


# --------------------------------------------------------------------------- small-k rules


def _with_heterogeneity(res: AnalysisResult, **het) -> AnalysisResult:
    import dataclasses
    main = dataclasses.replace(res.main,
                               heterogeneity=dataclasses.replace(res.main.heterogeneity, **het))
    return dataclasses.replace(res, main=main)


def test_inconsistency_flag_reads_q_at_p_below_010_even_when_tau2_is_0():
    """REML tau^2 = 0 (so the model's I^2 = 0) beside Q = 16.4 on 8 df (p = 0.037):
    the flag must not say "no" (the issue's example)."""
    eff, res = constructed("RR", math.log(0.7), math.log(0.6), math.log(0.8))
    res = _with_heterogeneity(res, q=16.4, q_df=8, q_pval=0.037, i2_pct=0.0, tau2=0.0,
                              i2_q_pct=100 * (16.4 - 8) / 16.4)
    flag = sof(eff, res)["inconsistency"]
    assert flag.startswith("yes: ")
    assert "I\u00b2 from Q = 51% (> 50%)" in flag and "Q = 16.4 on 8 df, p = 0.037 (< 0.10)" in flag
    calm = _with_heterogeneity(res, q=9.0, q_df=8, q_pval=0.34, i2_q_pct=100 / 9)
    assert sof(eff, calm)["inconsistency"] == "no"


def test_sof_row_states_comparator_formulation_time_frame_and_control_risk_source():
    eff, res = constructed("RR", math.log(0.75), math.log(0.5), math.log(0.9))
    eff = eff.assign(comparator_class="active", comparator="buprenorphine-naloxone",
                     formulation=["xr_injection", "xr_injection", "oral"],
                     followup_weeks=[12, 24, 24], timepoint="end_of_treatment")
    r = sof(eff, res)
    assert r["comparator"] == "active drug: buprenorphine-naloxone"
    assert r["formulation"] == "XR injection; oral"
    assert r["time_frame"] == "12 to 24 weeks, end of treatment"
    assert r["control_risk_source"] == ("median control-arm risk of the 3 pooled trials with "
                                        "counts (range 200 to 500 per 1000)")
    assert r["model"] == "REML random effects, z test"


def test_sof_counts_trials_not_comparisons():
    eff, res = constructed("RR", math.log(0.75), math.log(0.5), math.log(0.9))
    eff = eff.assign(study_id=["A", "A", "B"])  # a three-arm trial gives two comparisons
    r = sof(eff, res)
    assert r["k"] == 3 and r["studies"] == 2
