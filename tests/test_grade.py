"""GRADE rules on small hand-made evidence sets, each expected rating worked out here.

Each test sits on the boundary of one rule: it fails if the rule is removed
(the domain would then not be rated down) or moved (the threshold shifts).
"""
import math

import pytest

from ntxmeta import grade
from ntxmeta.grade import Evidence, certainty


def clean(**kw) -> Evidence:
    """Evidence no rule rates down: 4 trials at low risk, 500 events, RR 0.6 (0.5 to 0.7)."""
    base = dict(outcome="return to heavy drinking", estimate=0.6, ci=(0.5, 0.7), null=1.0, k=4,
                binary=True, events=500, participants=1000, pi=(0.45, 0.8), i2_pct=10.0,
                i2_q_pct=12.0, q_pval=0.4, weights=(25.0, 25.0, 25.0, 25.0),
                rob=("low",) * 4, indirect=((),) * 4,
                trial_ci=((0.4, 0.9), (0.5, 0.8), (0.3, 1.1), (0.5, 0.95)),
                mid=(0.75, 1.25))
    base.update(kw)
    return Evidence(**base)


def levels(ev, domain):
    return next(r.levels for r in certainty(ev).ratings if r.domain == domain)


def test_clean_evidence_is_high():
    c = certainty(clean())
    assert c.level == 4 and c.label == "High" and c.symbols == "\u2295" * 4
    assert c.statement == "Naltrexone reduces return to heavy drinking."


# --------------------------------------------------------------------------- risk of bias

@pytest.mark.parametrize("rob, expected", [
    (("high", "low", "low", "low"), 0),            # 25 % high: not more than 25 %
    (("high", "high", "low", "low"), 2),           # 50 % high: most of the weight
    (("some_concerns",) * 2 + ("low",) * 2, 0),    # 50 % not low: not a majority
    (("some_concerns",) * 3 + ("low",), 1),        # 75 % not low: majority rule
    (("not_assessed",) * 3 + ("low",), 1),         # not assessed counts as not low
])
def test_risk_of_bias_by_weight_share(rob, expected):
    assert levels(clean(rob=rob), "risk_of_bias") == expected


def test_risk_of_bias_high_share_above_quarter():
    # weights 30/70: the high-risk trial carries 30 % > 25 % -> one level (Pollock)
    ev = clean(weights=(30.0, 70.0), rob=("high", "low"), k=2, trial_ci=((0.4, 0.9),) * 2)
    assert levels(ev, "risk_of_bias") == 1


# --------------------------------------------------------------------------- inconsistency

def test_inconsistency_i2_above_50():
    assert levels(clean(i2_pct=51.0, i2_q_pct=40.0), "inconsistency") == 1
    assert levels(clean(i2_pct=50.0, i2_q_pct=50.0), "inconsistency") == 0


def test_inconsistency_q_p_below_010_with_i2_zero():
    assert levels(clean(i2_pct=0.0, i2_q_pct=0.0, q_pval=0.09), "inconsistency") == 1


def test_inconsistency_pi_crosses_null_ci_does_not():
    assert levels(clean(pi=(0.3, 1.2)), "inconsistency") == 1


def test_inconsistency_two_levels_opposite_directions():
    opposite = ((0.3, 0.6), (1.2, 2.0), (0.5, 0.9), (0.6, 0.8))
    assert levels(clean(i2_pct=80.0, trial_ci=opposite), "inconsistency") == 2
    # same I^2 without trials on both sides: one level
    assert levels(clean(i2_pct=80.0), "inconsistency") == 1


def test_inconsistency_single_trial_not_assessable():
    ev = clean(k=1, weights=(100.0,), rob=("low",), indirect=((),), trial_ci=((0.5, 0.7),),
               q_pval=math.nan, i2_pct=math.nan, i2_q_pct=math.nan, pi=(math.nan, math.nan))
    r = next(r for r in certainty(ev).ratings if r.domain == "inconsistency")
    assert r.levels == 0 and r.reason.startswith("not assessable")


# --------------------------------------------------------------------------- indirectness

def test_indirectness_half_the_weight():
    flags = (("population: not treatment seeking",),) * 2 + ((),) * 2
    assert levels(clean(indirect=flags), "indirectness") == 1
    flags = (("population: not treatment seeking",),) + ((),) * 3
    assert levels(clean(indirect=flags), "indirectness") == 0


def test_indirectness_two_domains_two_levels():
    flags = (("population: a", "intervention: 100 mg"),) * 2 + ((),) * 2
    assert levels(clean(indirect=flags), "indirectness") == 2


# --------------------------------------------------------------------------- imprecision

def test_imprecision_ci_includes_null():
    assert levels(clean(ci=(0.5, 1.05)), "imprecision") == 1


def test_imprecision_ci_includes_both_mids():
    assert levels(clean(estimate=1.0, ci=(0.7, 1.3)), "imprecision") == 2
    # the same CI without MIDs: only the null threshold, one level
    assert levels(clean(estimate=1.0, ci=(0.7, 1.3), mid=None), "imprecision") == 1


def test_imprecision_optimal_information_size():
    assert levels(clean(events=299), "imprecision") == 1
    assert levels(clean(events=300), "imprecision") == 0
    cont = clean(binary=False, events=math.nan, participants=399, null=0.0, estimate=-0.4,
                 ci=(-0.6, -0.2), mid=(-0.2, 0.2), pi=(-0.7, -0.1),
                 trial_ci=((-0.8, -0.1),) * 4)
    assert levels(cont, "imprecision") == 1
    from dataclasses import replace
    assert levels(replace(cont, participants=400), "imprecision") == 0


# --------------------------------------------------------------------------- publication bias

def test_publication_bias_needs_ten_trials():
    few = clean(small_study_test="Harbord", small_study_p=0.01)
    r = next(r for r in certainty(few).ratings if r.domain == "publication_bias")
    assert r.levels == 0 and "not assessable" in r.reason
    ten = clean(k=10, small_study_test="Harbord", small_study_p=0.01)
    assert levels(ten, "publication_bias") == 1
    assert levels(clean(k=10, small_study_test="Harbord", small_study_p=0.10), "publication_bias") == 0


# --------------------------------------------------------------------------- totals, overrides, words

def test_levels_add_up_and_floor_at_very_low():
    ev = clean(rob=("high",) * 4, ci=(0.5, 1.3), estimate=0.8, i2_pct=60.0)
    # risk of bias 2 + imprecision 2 (CI includes 0.75 and 1.25) + inconsistency 1 = 5 -> floor 1
    c = certainty(ev)
    assert sum(r.levels for r in c.ratings) == 5
    assert c.level == 1 and c.symbols == "\u2295\u25ef\u25ef\u25ef"
    assert c.statement == ("The evidence is very uncertain about the effect of naltrexone on "
                           "return to heavy drinking.")
    assert len(c.footnotes) == 4  # three downgrades + publication bias not assessable


def test_override_replaces_rule_and_says_so():
    ev = clean(indirect=(("population: a",),) * 4)
    c = certainty(ev, {"indirectness": {"levels": 0, "reason": "the population is the review's"}})
    r = next(r for r in c.ratings if r.domain == "indirectness")
    assert (r.levels, r.override, r.rule_levels) == (0, True, 1)
    assert c.level == 4
    assert any("reviewer override" in f and "the rule: rated down one level" in f for f in c.footnotes)
    with pytest.raises(ValueError, match="unknown GRADE domain"):
        certainty(ev, {"indirect": {"levels": 1, "reason": "x"}})


@pytest.mark.parametrize("level, kw, text", [
    (3, dict(rob=("some_concerns",) * 4), "Naltrexone probably reduces return to heavy drinking."),
    (2, dict(rob=("high",) * 4), "Naltrexone may reduce return to heavy drinking."),
    (3, dict(rob=("some_concerns",) * 4, estimate=0.9, ci=(0.8, 0.95)),
     "Naltrexone probably results in little to no difference in return to heavy drinking."),
    (3, dict(rob=("some_concerns",) * 4, estimate=1.4, ci=(1.3, 1.5), pi=(1.2, 1.6),
             trial_ci=((1.1, 1.9),) * 4), "Naltrexone probably increases return to heavy drinking."),
])
def test_plain_language_statement(level, kw, text):
    c = certainty(clean(**kw))
    assert c.level == level and c.statement == text


def test_certainty_text_has_footnote_letters():
    c = certainty(clean(rob=("high",) * 4))
    assert c.text == "\u2295\u2295\u25ef\u25ef Low (a,b)"
    assert grade.letter(0) == "a" and grade.letter(26) == "aa"


# --------------------------------------------------------------------------- from the data and the config

def test_indirectness_flags_come_from_the_column_and_the_design():
    import pandas as pd
    from ntxmeta.evidence import indirectness_flags
    eff = pd.DataFrame({"formulation": ["oral", "oral", "xr_injection", "oral"],
                        "dose_mg": [100, 50, 380, None],
                        "pooling_issue": ["", "combination_treatment", "", ""],
                        "indirectness": ["population: not seeking treatment", "", "", ""]})
    flags = indirectness_flags(eff)
    assert flags[0] == ("population: not seeking treatment",
                        "intervention: oral 100 mg a day (licensed: 50 mg)")
    assert flags[1] == ("intervention: naltrexone combined with another active drug",)
    assert flags[2] == () and flags[3] == ()  # 380 mg is an injection; no dose, no flag


def _config_problems(tmp_path, data):
    import yaml
    from ntxmeta.config import check_config
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return [p.message for p in check_config(path)[1]]


def test_config_refuses_a_mid_on_one_side_and_an_override_of_no_analysis(tmp_path):
    block = {"title": "t", "measure": "RR", "filters": {"indication": ["alcohol"]}}
    msgs = _config_problems(tmp_path, {"analyses": {"a": {**block, "mid": [0.8, 0.9]}},
                                       "grade": {"mid": {"SMD": [0.1, 0.2]},
                                                 "overrides": {"b": {"imprecision": {
                                                     "levels": 1, "reason": "a long enough reason"}}}}})
    assert sum("lower < 1 < upper" in m for m in msgs) == 1
    assert sum("lower < 0 < upper" in m for m in msgs) == 1
    assert any("not an analysis of this config" in m for m in msgs)
    ok = _config_problems(tmp_path, {"analyses": {"a": {**block, "mid": [0.8, 1.25]}},
                                     "grade": {"overrides": {"a": {"imprecision": {
                                         "levels": 1, "reason": "a long enough reason"}}}}})
    assert ok == []


def test_overrides_reach_the_plan_and_the_sof_row():
    from ntxmeta.config import resolve
    from ntxmeta.plan import Config
    cfg = Config.from_resolved(resolve({
        "analyses": {"a": {"title": "AUD: return to heavy drinking", "measure": "RR",
                           "filters": {"indication": ["alcohol"]}}},
        "grade": {"mid": {"RR": [0.8, 1.25]},
                  "overrides": {"a": {"risk_of_bias": {"levels": 2, "reason": "open-label, subjective"}}}}}))
    plan = cfg.analyses["a"]
    assert plan.mid == (0.8, 1.25) and plan.plain_outcome == "return to heavy drinking"
    c = certainty(clean(mid=plan.mid), plan.overrides)
    assert c.level == 2 and c.ratings[0].override and c.ratings[0].rule_levels == 0
