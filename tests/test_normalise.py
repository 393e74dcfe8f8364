"""Normalisation: flips, ratio rows, pooling rules and the shared-control split.

Every expected number is worked out by hand in the comment beside it, from
the counts of the row under test (mostly the real Krupitsky 2012 arms).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from statistics import NormalDist

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntxmeta.normalise import (comparison_columns, normalise, read_comparisons, resolve_rules,
                               split_evenly, write_comparisons)
from ntxmeta.validate import load_schema, validate_raw

RAW = sorted((Path(__file__).parent.parent / "data" / "raw").glob("*.csv"))

#: A valid binary row; tests override what they need.
TEMPLATE = {
    "row_id": "Trial2000_relapse", "study_id": "Trial2000", "label": "Trial 2000",
    "author": "Doe J", "year": "2000", "indication": "alcohol", "population": "AUD",
    "comparator_type": "placebo", "comparator": "placebo", "formulation": "oral",
    "dose_mg": "50", "outcome": "relapse_trial_defined", "measure_type": "binary",
    "events_treat": "20", "n_treat": "50", "events_ctrl": "30", "n_ctrl": "50",
    "followup_weeks": "12", "source_url_or_ref": "a source", "quote": "a quote",
    "derived": "no", "confidence": "high",
}


def raw_rows(tmp_path: Path, *rows: dict) -> pd.DataFrame:
    """Validated raw rows built from TEMPLATE and the given overrides (one CSV file)."""
    columns = list(load_schema("raw_trials")["properties"])
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**TEMPLATE, **row})
    return validate_raw([path])


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("row_id")


KRUPITSKY_2012 = (  # retained without relapse, shared placebo arm 11/102
    {"row_id": "K_implant", "cluster_id": "K", "pooling_issue": "shared_control",
     "indication": "opioid", "formulation": "implant", "outcome": "retained_without_relapse",
     "measure_type": "binary_favourable_event", "events_treat": "54", "n_treat": "102",
     "events_ctrl": "11", "n_ctrl": "102"},
    {"row_id": "K_oral", "cluster_id": "K", "pooling_issue": "shared_control",
     "indication": "opioid", "outcome": "retained_without_relapse",
     "measure_type": "binary_favourable_event", "events_treat": "16", "n_treat": "102",
     "events_ctrl": "11", "n_ctrl": "102"},
)


def test_favourable_events_are_flipped_to_bad_events(tmp_path):
    row = by_id(normalise(raw_rows(tmp_path, KRUPITSKY_2012[0] | {"pooling_issue": "",
                                                                  "cluster_id": ""}))).loc["K_implant"]
    # 102 - 54 = 48 relapsed or dropped out on the implant; 102 - 11 = 91 on placebo
    assert (row.events_treat, row.n_treat, row.events_ctrl, row.n_ctrl) == (48, 102, 91, 102)
    assert row.flipped and row.outcome == "retained_without_relapse"
    assert row.event == "relapse_or_dropout"
    assert row.pooled and row.exclusion_reason == ""


def test_bad_events_are_left_alone(tmp_path):
    row = normalise(raw_rows(tmp_path, {})).iloc[0]
    assert (row.events_treat, row.n_treat, row.events_ctrl, row.n_ctrl) == (20, 50, 30, 50)
    assert not row.flipped and row.event == "relapse_trial_defined" and row.adjustment == ""


def test_shared_control_is_split_as_evenly_as_possible(tmp_path):
    out = by_id(normalise(raw_rows(tmp_path, *KRUPITSKY_2012), {"shared_control": "split"}))
    # control after the flip: 91 bad events in 102; halves 51 and 51; 91 = 46 + 45,
    # the odd event going to the first row in file order
    assert (out.loc["K_implant", "events_ctrl"], out.loc["K_implant", "n_ctrl"]) == (46, 51)
    assert (out.loc["K_oral", "events_ctrl"], out.loc["K_oral", "n_ctrl"]) == (45, 51)
    assert list(out["split_control"]) == [2, 2]
    assert list(out["sample_id"]) == ["K_implant", "K_oral"]  # independent after the split
    assert out["pooled"].all()
    assert "split, 46/51 here" in out.loc["K_implant", "adjustment"]


def test_three_way_split_of_a_bad_event_control(tmp_path):
    rows = [{"row_id": f"R{i}", "cluster_id": "C", "pooling_issue": "shared_control",
             "dose_mg": str(25 * i), "events_ctrl": "10", "n_ctrl": "100"} for i in (1, 2, 3)]
    out = by_id(normalise(raw_rows(tmp_path, *rows)))
    # 100 = 34 + 33 + 33 and 10 = 4 + 3 + 3
    assert list(out["n_ctrl"]) == [34, 33, 33]
    assert list(out["events_ctrl"]) == [4, 3, 3]
    assert list(out["n_treat"]) == [50, 50, 50]


def test_shared_control_keep_first_and_exclude(tmp_path):
    raw = raw_rows(tmp_path, *KRUPITSKY_2012)
    keep = by_id(normalise(raw, {"shared_control": "keep_first"}))
    assert keep.loc["K_implant", "pooled"] and not keep.loc["K_oral", "pooled"]
    assert keep.loc["K_implant", "n_ctrl"] == 102  # nothing split
    assert keep.loc["K_oral", "exclusion_reason"] == (
        "shares its control arm with K_implant (rules.shared_control: keep_first)")
    excl = by_id(normalise(raw, {"shared_control": "exclude"}))
    assert not excl["pooled"].any()


def test_shared_control_is_divided_only_among_rows_still_pooled(tmp_path):
    rows = (KRUPITSKY_2012[0], KRUPITSKY_2012[1] | {"pooling_issue": "shared_control;"
                                                                   "combination_treatment"})
    out = by_id(normalise(raw_rows(tmp_path, *rows), {"combination_treatment": "exclude"}))
    assert out.loc["K_implant", "n_ctrl"] == 102 and out.loc["K_implant", "split_control"] == 1
    assert not out.loc["K_oral", "pooled"]


TIMEPOINTS = ({"row_id": "wk12", "cluster_id": "T", "pooling_issue": "repeated_timepoint",
               "followup_weeks": "12"},
              {"row_id": "wk24", "cluster_id": "T", "pooling_issue": "repeated_timepoint",
               "followup_weeks": "24", "subgroup": "follow-up"})


@pytest.mark.parametrize("rule, pooled", [("earliest", {"wk12"}), ("latest", {"wk24"}),
                                          ("exclude", set())])
def test_repeated_timepoints(tmp_path, rule, pooled):
    out = normalise(raw_rows(tmp_path, *TIMEPOINTS), {"repeated_timepoints": rule})
    assert set(out.loc[out["pooled"], "row_id"]) == pooled


def test_repeated_timepoint_reason_names_the_row_used(tmp_path):
    out = by_id(normalise(raw_rows(tmp_path, *TIMEPOINTS)))
    assert out.loc["wk24", "exclusion_reason"] == (
        "same patients and outcome as wk12 at another time point "
        "(rules.repeated_timepoints: earliest)")


@pytest.mark.parametrize("code, rule, default_pooled", [
    ("post_randomisation_subgroup", "post_randomisation_subgroups", False),
    ("post_hoc_subgroup", "post_hoc_subgroups", False),
    ("combination_treatment", "combination_treatment", True),
])
def test_single_row_rules(tmp_path, code, rule, default_pooled):
    raw = raw_rows(tmp_path, {"pooling_issue": code})
    assert bool(normalise(raw).loc[0, "pooled"]) is default_pooled
    other = {"exclude": "keep", "keep": "exclude"}[resolve_rules({})[rule]]
    assert bool(normalise(raw, {rule: other}).loc[0, "pooled"]) is not default_pooled


def test_rerandomised_stages(tmp_path):
    rows = ({"row_id": "stage1", "cluster_id": "A", "pooling_issue": "multiple_outcomes"},
            {"row_id": "stage2", "cluster_id": "A", "pooling_issue": "rerandomised_stage",
             "subgroup": "stage 2"})
    raw = raw_rows(tmp_path, *rows)
    first = by_id(normalise(raw, {"rerandomised_stages": "first_stage"}))
    assert first.loc["stage1", "pooled"] and not first.loc["stage2", "pooled"]
    assert not normalise(raw, {"rerandomised_stages": "exclude"})["pooled"].any()


def test_ratio_row_gives_log_ratio_and_variance_from_the_ci(tmp_path):
    oslin = {"measure_type": "ratio_only", "outcome": "relapse_heavy_drinking",
             "events_treat": "", "n_treat": "", "events_ctrl": "", "n_ctrl": "",
             "ratio_type": "OR", "ratio": "0.69", "ratio_ci_low": "0.41", "ratio_ci_high": "1.18"}
    row = normalise(raw_rows(tmp_path, oslin)).iloc[0]
    z = NormalDist().inv_cdf(0.975)
    assert row.data_type == "ratio"
    assert row.log_ratio == pytest.approx(math.log(0.69), rel=1e-12)
    # se = (ln 1.18 - ln 0.41) / (2 z) = 1.0571125 / 3.9199280 = 0.2696764; var = 0.0727254
    assert row.var_log_ratio == pytest.approx(((math.log(1.18) - math.log(0.41)) / (2 * z)) ** 2,
                                              rel=1e-12)
    assert row.var_log_ratio == pytest.approx(0.0727254, abs=1e-7)


def test_favourable_odds_ratio_is_inverted(tmp_path):
    row = {"measure_type": "ratio_only", "outcome": "abstinence", "events_treat": "",
           "n_treat": "", "events_ctrl": "", "n_ctrl": "", "ratio_type": "OR", "ratio": "2",
           "ratio_ci_low": "1", "ratio_ci_high": "4"}
    out = normalise(raw_rows(tmp_path, row)).iloc[0]
    assert out.flipped and out.log_ratio == pytest.approx(-math.log(2), rel=1e-12)
    rr = normalise(raw_rows(tmp_path, row | {"ratio_type": "RR"})).iloc[0]
    assert not rr.pooled and "cannot be turned into" in rr.exclusion_reason


def test_percent_only_and_mean_only_rows_are_kept_but_not_pooled(tmp_path):
    rows = ({"row_id": "pct", "outcome": "response", "indication": "gambling",
             "measure_type": "binary_favourable_event_percent_only", "events_treat": "",
             "events_ctrl": "", "n_treat": "", "n_ctrl": "", "percent_treat": "75",
             "percent_ctrl": "24"},
            {"row_id": "mean", "outcome": "craving_unnamed_scale",
             "measure_type": "continuous_mean_only", "events_treat": "", "events_ctrl": "",
             "mean_treat": "1.41", "mean_ctrl": "3.42"})
    out = by_id(normalise(raw_rows(tmp_path, *rows)))
    assert (out.loc["pct", "percent_treat"], out.loc["pct", "percent_ctrl"]) == (25.0, 76.0)
    assert out.loc["pct", "exclusion_reason"] == "percentages only, no counts: cannot be pooled"
    assert out.loc["mean", "exclusion_reason"].startswith("means without SD")
    assert not out["pooled"].any()


def test_continuous_direction_is_recorded(tmp_path):
    row = {"outcome": "drinks_per_drinking_day", "measure_type": "continuous",
           "events_treat": "", "events_ctrl": "", "mean_treat": "4.9", "sd_treat": "2.28",
           "mean_ctrl": "5.9", "sd_ctrl": "2.51"}
    out = normalise(raw_rows(tmp_path, row)).iloc[0]
    assert out.higher_is_worse and not out.flipped
    assert (out.mean_treat, out.mean_ctrl) == (4.9, 5.9)  # lower is better already


def test_every_outcome_has_a_direction():
    schema = load_schema("raw_trials")
    table = schema["x-outcomes"]
    assert list(table) == schema["properties"]["outcome"]["enum"]
    for code, o in table.items():
        if o["kind"] == "continuous":
            assert isinstance(o["higher_is_worse"], bool), code
        else:
            assert isinstance(o["favourable"], bool), code
            assert o["favourable"] == (o["event"] != code), code


@pytest.mark.parametrize("text, derived", [("yes: 0.35*40=14", True), ("partly: control only", True),
                                           ("no (counts stated)", False),
                                           ("not derivable: split unknown", False)])
def test_derived_flag_from_the_derived_text(tmp_path, text, derived):
    out = normalise(raw_rows(tmp_path, {"derived": text})).iloc[0]
    assert bool(out.derived) is derived and out.derived_text == text


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown pooling rule"):
        resolve_rules({"shared_controls": "split"})
    with pytest.raises(ValueError, match="rules.shared_control"):
        resolve_rules({"shared_control": "halve"})


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=50))
def test_split_evenly_adds_up_and_differs_by_at_most_one(total, parts):
    shares = split_evenly(total, parts)
    assert sum(shares) == total and len(shares) == parts
    assert max(shares) - min(shares) <= 1 and shares == sorted(shares, reverse=True)


# --------------------------------------------------------------------------- real data, output

def test_notes_cautions_are_honoured_on_the_real_data():
    out = by_id(normalise(validate_raw(RAW)))
    not_pooled = {"Kiefer2003_heavy_wk24", "Volpicelli1992_relapse_samplers", "Trivedi2021_stage2",
                  "Ahmadi_completion_wk36", "Lee2001_any_drinking"}
    assert not out.loc[sorted(not_pooled), "pooled"].any()
    # Krupitsky 2012 placebo 11/102 retained -> 91/102 relapse-or-dropout, split 46/51 + 45/51
    assert out.loc["Krupitsky2012_implant", ["events_ctrl", "n_ctrl"]].tolist() == [46, 51]
    assert out.loc["Krupitsky2012_oral", ["events_ctrl", "n_ctrl"]].tolist() == [45, 51]
    assert out.loc["Lee2018_relapse", "comparator_type"] == "active"  # coded, not excluded
    assert out.loc["Lee2018_relapse", "pooled"]


def test_output_columns_and_order():
    out = normalise(validate_raw(RAW))
    assert list(out.columns) == list(comparison_columns())
    assert len(out) == 85  # 55 starter rows, 3 added with the same provenance, 19 harms, 8 network
    keys = list(zip(out["indication"], out["study_id"], out["row_id"]))
    assert keys == sorted(keys)


def test_write_is_deterministic_atomic_and_round_trips(tmp_path):
    out = normalise(validate_raw(RAW))
    a, b = tmp_path / "a" / "comparisons.csv", tmp_path / "b.csv"
    write_comparisons(out, a)
    write_comparisons(out.sample(frac=1, random_state=1).sort_index(), b)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in a.parent.iterdir()) == ["comparisons.csv"]  # no temp file left
    pd.testing.assert_frame_equal(read_comparisons(a), out)
    text = a.read_text("utf-8")
    assert "\r" not in text and ",true," in text and ",True," not in text
