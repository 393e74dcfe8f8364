"""The configuration: the malformed-config corpus, defaults, and the real config.

``tests/malformed/config/NAME.yaml`` are broken configs, ``NAME.expected``
the exact report, judged against the comparisons of the fixed four-row raw
table ``_raw_rows.csv`` (so that row counts in messages never change when
trials are added to data/raw). The expectations were written by hand.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ntxmeta.config import check_config, check_inputs, load_config
from ntxmeta.normalise import normalise
from ntxmeta.select import filter_mask, select_rows
from ntxmeta.validate import ValidationError, validate_raw

HERE = Path(__file__).parent
CORPUS = HERE / "malformed" / "config"
CASES = sorted(CORPUS.glob("*.yaml"))
ROOT = HERE.parent
RAW = sorted((ROOT / "data" / "raw").glob("*.csv"))
CONFIG = ROOT / "config" / "config.yaml"

MINIMAL = """analyses:
  aud_relapse_rr:
    title: "Relapse"
    filters: {indication: [alcohol], outcome: [relapse_trial_defined]}
    measure: RR
"""


@pytest.fixture(scope="module")
def corpus_comparisons():
    return normalise(validate_raw([CORPUS / "_raw_rows.csv"]))


def test_config_corpus_is_complete():
    assert len(CASES) >= 20
    assert [p.stem for p in CASES] == [p.stem for p in sorted(CORPUS.glob("*.expected"))]


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_malformed_config_gives_its_exact_report(case, corpus_comparisons, monkeypatch):
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ValidationError) as info:
        load_config(Path(case.name), corpus_comparisons)
    assert str(info.value) + "\n" == (CORPUS / f"{case.stem}.expected").read_text("utf-8")


def test_defaults_are_filled_in(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "    method: DL\n", "utf-8")
    cfg = load_config(path)
    # the default preset is Cochrane's current one (schema x-presets)
    assert cfg["defaults"] == {"preset": "cochrane2025", "method": "REML", "test": "adhoc",
                               "pi": "t", "pool_k2": False, "level": 95, "add": 0.5,
                               "to": "only0", "drop00": False}
    a = cfg["analyses"]["aud_relapse_rr"]
    assert a["method"] == "DL" and a["test"] == "adhoc" and a["moderators"] == [] and not a["main"]
    assert a["overall"] and a["outcome_hierarchy"][0] == {
        "analysis_population": ["itt_missing_event", "itt", "mitt", "available_case",
                                "completers", "missing_as_success"]}
    assert cfg["rules"] == {"shared_control": "split", "repeated_timepoints": "earliest",
                            "post_randomisation_subgroups": "exclude",
                            "post_hoc_subgroups": "exclude", "sample_size_conflicts": "sensitivity",
                            "rerandomised_stages": "first_stage",
                            "combination_treatment": "keep"}
    assert cfg["raw_data"] == "data/raw/*.csv" and cfg["sensitivity"] == {}


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("analyses: !!python/object/apply:os.system ['true']\n", "utf-8")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_config(path)


def test_raw_and_config_problems_are_reported_together(tmp_path):
    bad_config = tmp_path / "config.yaml"
    bad_config.write_text(MINIMAL.replace("measure: RR", "measure: RRR"), "utf-8")
    with pytest.raises(ValidationError) as info:
        check_inputs([HERE / "malformed" / "zero_n.csv"], bad_config)
    files = [Path(p.file).name for p in info.value.problems]
    assert files == ["zero_n.csv", "config.yaml"]


def test_empty_selection_is_reported_beside_other_config_problems(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL.replace("measure: RR", "measure: RRR") + """  nothing_rr:
    title: "Nothing"
    filters: {indication: [gambling], outcome: [relapse_heavy_drinking]}
    measure: RR
""", "utf-8")
    with pytest.raises(ValidationError) as info:
        check_inputs([CORPUS / "_raw_rows.csv"], path)
    assert [p.column for p in info.value.problems] == ["analyses.aud_relapse_rr.measure",
                                                       "analyses.nothing_rr.filters"]


def test_a_filter_matching_rows_that_are_not_pooled_is_allowed(tmp_path, corpus_comparisons):
    path = tmp_path / "config.yaml"  # Oslin is a ratio row: no RR estimate, but not an error
    path.write_text(MINIMAL.replace("relapse_trial_defined", "relapse_heavy_drinking"), "utf-8")
    cfg = load_config(path, corpus_comparisons)
    assert select_rows(corpus_comparisons, cfg["analyses"]["aud_relapse_rr"]).empty


# --------------------------------------------------------------------------- the real config

@pytest.fixture(scope="module")
def real():
    return check_inputs(RAW, CONFIG)


def test_real_config_defines_the_analyses_the_review_needs(real):
    _, _, cfg = real
    analyses = cfg["analyses"]
    needed = {"aud_heavy_drinking_rr": "RR", "aud_any_drinking_rr": "RR",
              "aud_heavy_drinking_days_smd": "SMD", "aud_drinks_per_drinking_day_smd": "SMD",
              "craving_smd": "SMD", "oud_relapse_placebo_rr": "RR",
              "oud_relapse_no_treatment_rr": "RR", "oud_relapse_active_rr": "RR",
              "oud_retention_rr": "RR", "stimulant_response_rr": "RR",
              "gambling_response_rr": "RR", "oprm1_interaction_ror": "ROR"}
    assert {name: analyses[name]["measure"] for name in needed} == needed
    assert analyses["oud_relapse_by_comparator_rr"]["subgroup"] == "comparator_class"
    # no main analysis mixes comparator classes
    for name, a in analyses.items():
        if a["main"]:
            assert len(a["filters"]["comparator_class"]) == 1, name


PRESET_CASES = [  # (defaults block, analysis block) -> method, test, pi, pool_k2
    ("", "", ("REML", "adhoc", "t", False)),
    ("defaults: {preset: revman5}\n", "", ("DL", "z", "riley", True)),
    ("defaults: {preset: metafor}\n", "", ("REML", "z", "z", True)),
    ("defaults: {preset: revman5, method: PM}\n", "", ("PM", "z", "riley", True)),
    ("defaults: {preset: revman5}\n", "    preset: cochrane2025\n", ("REML", "adhoc", "t", False)),
    ("defaults: {preset: revman5}\n", "    preset: metafor\n    test: knha\n",
     ("REML", "knha", "z", True)),
    ("", "    pool_k2: true\n", ("REML", "adhoc", "t", True)),
]


@pytest.mark.parametrize("defaults, own, expected", PRESET_CASES)
def test_presets_set_method_test_pi_and_k2_and_own_keys_win(tmp_path, defaults, own, expected):
    path = tmp_path / "config.yaml"
    path.write_text(defaults + MINIMAL + own, "utf-8")
    a = load_config(path)["analyses"]["aud_relapse_rr"]
    assert (a["method"], a["test"], a["pi"], a["pool_k2"]) == expected


@pytest.mark.parametrize("extra, message, fix, key, value", [
    # a main analysis answers one question: one comparator class
    ("    main: true\n", "a main analysis pools one comparator class",
     "comparator_class: [placebo], ", "main", True),
    # dose_mg is mg a day for oral naltrexone and mg per injection otherwise
    ("    moderators: [dose_mg]\n", "dose_mg is mg a day for oral naltrexone",
     "formulation: [oral], ", "moderators", ["dose_mg"]),
])
def test_one_question_rules_are_config_errors_until_the_filters_fix_them(tmp_path, extra, message,
                                                                        fix, key, value):
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + extra, "utf-8")
    with pytest.raises(ValidationError, match=message):
        load_config(path)
    path.write_text(MINIMAL.replace("filters: {", "filters: {" + fix) + extra, "utf-8")
    assert load_config(path)["analyses"]["aud_relapse_rr"][key] == value


def test_every_real_analysis_matches_rows(real):
    _, comparisons, cfg = real
    for name, a in cfg["analyses"].items():
        assert filter_mask(comparisons, a["filters"]).any(), name


def test_real_config_holds_no_paths_outside_the_project(real):
    _, _, cfg = real
    assert not Path(cfg["raw_data"]).is_absolute() and ".." not in Path(cfg["raw_data"]).parts
    assert sorted(ROOT.glob(cfg["raw_data"])) == RAW
