"""Selecting the rows of one analysis, and the digest that triggers re-runs."""
from __future__ import annotations

import pandas as pd
import pytest

from ntxmeta.normalise import normalise, write_comparisons
from ntxmeta.select import canon, matching_rows, select_rows, selection_digest
from ntxmeta.validate import validate_raw
from test_normalise import RAW, raw_rows

RELAPSE_RR = {"title": "t", "measure": "RR",
              "filters": {"indication": ["alcohol"], "outcome": ["relapse_trial_defined"]}}


def test_filters_and_pooled_flag(tmp_path):
    rows = ({"row_id": "a1", "year": "2001"},
            {"row_id": "a2", "study_id": "T2", "year": "1999"},
            {"row_id": "op", "study_id": "T3", "indication": "opioid", "outcome": "opioid_relapse"},
            {"row_id": "pr", "study_id": "T4", "pooling_issue": "post_randomisation_subgroup"})
    comp = normalise(raw_rows(tmp_path, *rows))
    assert list(select_rows(comp, RELAPSE_RR)["row_id"]) == ["a2", "a1"]  # by year
    m = matching_rows(comp, RELAPSE_RR)
    assert list(m["row_id"]) == ["a2", "pr", "a1"]  # 1999, 2000 (template), 2001
    assert list(m["pooled"]) == [True, False, True]


def test_one_row_per_sample_preferring_the_first_listed_outcome(tmp_path):
    rows = ({"row_id": "drink", "cluster_id": "S", "pooling_issue": "multiple_outcomes",
             "outcome": "any_drinking"},
            {"row_id": "relapse", "cluster_id": "S", "pooling_issue": "multiple_outcomes"})
    comp = normalise(raw_rows(tmp_path, *rows))
    a = {**RELAPSE_RR, "filters": {"outcome": ["relapse_trial_defined", "any_drinking"]}}
    assert list(select_rows(comp, a)["row_id"]) == ["relapse"]
    b = {**RELAPSE_RR, "filters": {"outcome": ["any_drinking", "relapse_trial_defined"]}}
    assert list(select_rows(comp, b)["row_id"]) == ["drink"]
    reason = matching_rows(comp, b).set_index("row_id").loc["relapse", "exclusion_reason"]
    assert reason == ("same patients as drink, which this analysis uses (outcome any_drinking "
                      "is listed before relapse_trial_defined in the analysis's filters)")


def test_split_rows_of_a_shared_control_are_both_used(tmp_path):
    rows = [{"row_id": f"arm{i}", "cluster_id": "S", "pooling_issue": "shared_control",
             "dose_mg": str(50 * i)} for i in (1, 2)]
    comp = normalise(raw_rows(tmp_path, *rows))
    assert list(select_rows(comp, RELAPSE_RR)["row_id"]) == ["arm1", "arm2"]


def test_rows_without_the_measures_data_are_not_used(tmp_path):
    ratio = {"row_id": "or", "study_id": "T2", "measure_type": "ratio_only", "events_treat": "",
             "n_treat": "", "events_ctrl": "", "n_ctrl": "", "ratio_type": "OR", "ratio": "0.7",
             "ratio_ci_low": "0.4", "ratio_ci_high": "1.2"}
    comp = normalise(raw_rows(tmp_path, {"row_id": "counts"}, ratio))
    assert list(select_rows(comp, RELAPSE_RR)["row_id"]) == ["counts"]
    assert list(select_rows(comp, {**RELAPSE_RR, "measure": "GEN"})["row_id"]) == ["or"]
    reason = matching_rows(comp, RELAPSE_RR).set_index("row_id").loc["or", "exclusion_reason"]
    assert reason == "ratio row: measure RR needs binary data"


def test_sensitivity_exclusion(tmp_path):
    comp = normalise(raw_rows(tmp_path, {"row_id": "hi"},
                              {"row_id": "lo", "study_id": "T2", "confidence": "low",
                               "derived": "yes: from %"}))
    assert list(select_rows(comp, RELAPSE_RR, exclude={"confidence": ["low"]})["row_id"]) == ["hi"]
    assert list(select_rows(comp, RELAPSE_RR, exclude={"derived": [True]})["row_id"]) == ["hi"]


def test_selection_is_the_same_from_the_csv(tmp_path):
    comp = normalise(validate_raw(RAW))
    path = tmp_path / "comparisons.csv"
    write_comparisons(comp, path)
    back = pd.read_csv(path, keep_default_na=True)  # as a downstream step would read it
    analysis = {"title": "t", "measure": "RR", "filters": {"indication": ["opioid"],
                                                          "dose_mg": [380], "derived": [False]}}
    assert list(select_rows(back, analysis)["row_id"]) == list(select_rows(comp, analysis)["row_id"])
    assert selection_digest(back, analysis) == selection_digest(comp, analysis)


def test_digest_changes_only_for_analyses_a_new_row_belongs_to(tmp_path):
    base = ({"row_id": "a1"}, {"row_id": "o1", "study_id": "T3", "indication": "opioid",
                                "outcome": "opioid_relapse"})
    opioid = {"title": "t", "measure": "RR", "filters": {"indication": ["opioid"]}}
    before = normalise(raw_rows(tmp_path, *base))
    after = normalise(raw_rows(tmp_path, *base, {"row_id": "a2", "study_id": "T2"}))
    assert selection_digest(after, RELAPSE_RR) != selection_digest(before, RELAPSE_RR)
    assert selection_digest(after, opioid) == selection_digest(before, opioid)
    assert selection_digest(before, {**opioid, "method": "DL"}) != selection_digest(before, opioid)


@pytest.mark.parametrize("value, text", [(True, "true"), (False, "false"), (380, "380"),
                                         (380.0, "380"), (0.1, "0.1"), (None, ""),
                                         (float("nan"), ""), (pd.NA, ""), ("oral", "oral")])
def test_canon(value, text):
    assert canon(value) == text


def test_unknown_filter_column_is_a_key_error(tmp_path):
    comp = normalise(raw_rows(tmp_path, {}))
    with pytest.raises(KeyError, match="indicaton"):
        select_rows(comp, {**RELAPSE_RR, "filters": {"indicaton": ["alcohol"]}})


def test_real_analysis_uses_one_row_per_trial(tmp_path):
    comp = normalise(validate_raw(RAW))
    oud = {"title": "t", "measure": "RR", "filters": {
        "indication": ["opioid"],
        "outcome": ["opioid_relapse", "opioid_use_2consec_positive_UDT", "retained_without_relapse"]}}
    rows = select_rows(comp, oud)
    assert rows["sample_id"].is_unique
    # Krupitsky 2004 reports relapse and retained-without-relapse on the same 52 patients
    assert "Krupitsky2004_relapse" in set(rows["row_id"])
    assert "Krupitsky2004_retained" not in set(rows["row_id"])



def test_filter_tells_values_apart_by_type_not_only_by_equality():
    """Cells are canonicalised once per distinct value: True == 1 in Python, yet they differ."""
    import numpy as np
    from ntxmeta.select import filter_mask
    table = pd.DataFrame({"c": pd.Series([True, 1, 1.0, "1", None, np.nan, "true", 380, "380.0"],
                                         dtype=object)})
    assert filter_mask(table, {"c": [True]}).tolist() == [1, 0, 0, 0, 0, 0, 1, 0, 0]
    assert filter_mask(table, {"c": [1]}).tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert filter_mask(table, {"c": ["380"]}).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0]


HIERARCHY = [{"analysis_population": ["itt_missing_event", "itt", "mitt", "available_case",
                                      "completers", "missing_as_success"]},
             {"primary_outcome": ["yes", "no"]},
             {"timepoint": ["end_of_treatment", "follow_up"]}]


def _pair(tmp_path, first: dict, second: dict):
    rows = ({"row_id": "first", "cluster_id": "S", "pooling_issue": "multiple_outcomes",
             "outcome": "any_drinking", **first},
            {"row_id": "second", "cluster_id": "S", "pooling_issue": "multiple_outcomes", **second})
    return normalise(raw_rows(tmp_path, *rows))


@pytest.mark.parametrize("column, preferred, other", [
    ("analysis_population", "itt_missing_event", "missing_as_success"),
    ("analysis_population", "itt", "completers"),
    ("primary_outcome", "yes", "no"),
    ("timepoint", "end_of_treatment", "follow_up"),
])
def test_outcome_hierarchy_overrides_list_order(tmp_path, column, preferred, other):
    """The Krupitsky 2011 case: the ITT composite (missing = positive) beats a post-hoc
    outcome counting missing urines as negative, whatever the order of the outcome list."""
    comp = _pair(tmp_path, {column: other}, {column: preferred})
    # the outcome list prefers the row the hierarchy puts second ...
    a = {**RELAPSE_RR, "filters": {"outcome": ["any_drinking", "relapse_trial_defined"]},
         "outcome_hierarchy": HIERARCHY}
    m = matching_rows(comp, a).set_index("row_id")
    assert list(select_rows(comp, a)["row_id"]) == ["second"]
    assert m.loc["second", "chosen_because"] == (
        f"over first: {column} {preferred} is preferred to {other} (outcome_hierarchy)")
    assert m.loc["first", "exclusion_reason"].startswith("same patients as second")
    # ... and without the hierarchy the list order decides again
    assert list(select_rows(comp, {**a, "outcome_hierarchy": []})["row_id"]) == ["first"]


def test_outcome_hierarchy_unknown_values_come_last(tmp_path):
    comp = _pair(tmp_path, {}, {"analysis_population": "completers"})
    a = {**RELAPSE_RR, "filters": {"outcome": ["any_drinking", "relapse_trial_defined"]},
         "outcome_hierarchy": HIERARCHY}
    assert list(select_rows(comp, a)["row_id"]) == ["second"]


def test_post_hoc_subgroups_are_out_of_main_analyses_by_default(tmp_path):
    rows = ({"row_id": "itt", "study_id": "A"},
            {"row_id": "posthoc", "study_id": "B", "pooling_issue": "post_hoc_subgroup"})
    comp = normalise(raw_rows(tmp_path, *rows))
    assert list(select_rows(comp, RELAPSE_RR)["row_id"]) == ["itt"]
    reason = comp.set_index("row_id").loc["posthoc", "exclusion_reason"]
    assert "post-hoc subgroup (rules.post_hoc_subgroups: exclude)" in reason
    kept = normalise(raw_rows(tmp_path, *rows), {"post_hoc_subgroups": "keep"})
    assert sorted(select_rows(kept, RELAPSE_RR)["row_id"]) == ["itt", "posthoc"]


def test_sample_size_conflict_goes_to_a_sensitivity_analysis_only(tmp_path):
    rows = ({"row_id": "ok", "study_id": "A"},
            {"row_id": "guo", "study_id": "B", "pooling_issue": "sample_size_conflict"})
    comp = normalise(raw_rows(tmp_path, *rows))
    row = comp.set_index("row_id").loc["guo"]
    assert not row["pooled"] and row["sensitivity_only"]
    assert "sample-size conflict" in row["exclusion_reason"]
    sel = select_rows(comp, RELAPSE_RR).set_index("row_id")
    assert sel.loc["ok", "role"] == "main" and sel.loc["guo", "role"] == "sensitivity"
    gone = normalise(raw_rows(tmp_path, *rows), {"sample_size_conflicts": "exclude"})
    assert list(select_rows(gone, RELAPSE_RR)["row_id"]) == ["ok"]
    kept = normalise(raw_rows(tmp_path, *rows), {"sample_size_conflicts": "keep"})
    assert set(select_rows(kept, RELAPSE_RR)["role"]) == {"main"}


def test_every_matching_row_is_used_or_left_out_with_its_reason(tmp_path):
    """The effects step writes the rows it does not use beside the ones it does
    (data/processed/left_out/{analysis}.csv): no row drops out silently."""
    from ntxmeta.config import resolve
    from ntxmeta.plan import Config
    from ntxmeta.workflow import effects
    rows = ({"row_id": "used", "study_id": "A"},
            {"row_id": "other_outcome", "study_id": "B", "cluster_id": "B",
             "pooling_issue": "multiple_outcomes", "outcome": "any_drinking"},
            {"row_id": "chosen", "study_id": "B", "cluster_id": "B",
             "pooling_issue": "multiple_outcomes"},
            {"row_id": "ratio", "study_id": "C", "measure_type": "ratio_only", "events_treat": "",
             "n_treat": "", "events_ctrl": "", "n_ctrl": "", "ratio_type": "OR", "ratio": "0.8",
             "ratio_ci_low": "0.5", "ratio_ci_high": "1.2"},
            {"row_id": "sampled", "study_id": "D", "pooling_issue": "post_randomisation_subgroup"})
    comp = tmp_path / "comparisons.csv"
    write_comparisons(normalise(raw_rows(tmp_path, *rows)), comp)
    a = {"title": "t", "measure": "RR", "preset": "metafor",
         "filters": {"outcome": ["relapse_trial_defined", "any_drinking"]}}
    plan = Config.from_resolved(resolve({"analyses": {"x": a}})).analyses["x"]
    effects(str(comp), plan, tmp_path / "effects.csv", tmp_path / "left_out.csv")
    used = set(pd.read_csv(tmp_path / "effects.csv")["row_id"])
    left = pd.read_csv(tmp_path / "left_out.csv", keep_default_na=False).set_index("row_id")
    assert used == {"used", "chosen"}
    assert set(left.index) == {"other_outcome", "ratio", "sampled"}
    assert left.loc["other_outcome", "exclusion_reason"].startswith("same patients as chosen")
    assert left.loc["ratio", "exclusion_reason"] == "ratio row: measure RR needs binary data"
    assert "post-randomisation subgroup" in left.loc["sampled", "exclusion_reason"]
    assert left.loc["ratio", "source_line"]  # where to find the row
