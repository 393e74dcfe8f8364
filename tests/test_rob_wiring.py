"""The risk-of-bias table reaches comparisons.csv, the effects tables and the sensitivity analyses."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ntxmeta.config import check_inputs
from ntxmeta.validate import ValidationError

ROOT = Path(__file__).parent.parent
RAW = sorted((ROOT / "data" / "raw").glob("*.csv"))


def test_sourced_judgements_and_design_floors_reach_comparisons():
    _, comp, cfg = check_inputs(RAW, ROOT / "config" / "config.yaml", root=ROOT)
    assert cfg["risk_of_bias"] == "data/rob/risk_of_bias.csv"
    rows = comp.set_index("row_id")
    # Guo 2001: Minozzi 2011's table has incomplete outcome data at high risk -> overall high
    assert rows.loc["Guo2001_abstinence", "rob_d3_missing_data"] == "high"
    assert rows.loc["Guo2001_abstinence", "rob_overall"] == "high"
    # an open-label trial (Lee 2016, usual care) has its deviations domain floored, said why
    assert "D2" in rows.loc["Lee2016_relapse", "rob_reasons"]
    assert set(comp["rob_overall"]) <= {"low", "some_concerns", "high", "not_assessed"}


def test_a_missing_table_named_in_the_config_is_an_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config" / "config.yaml").read_text("utf-8")
                      + "\nrisk_of_bias: data/rob/nowhere.csv\n", "utf-8")
    with pytest.raises(ValidationError, match="risk-of-bias table .* is missing"):
        check_inputs(RAW, config, root=ROOT)


def test_without_the_default_table_every_row_is_not_assessed(tmp_path):
    shutil.copytree(ROOT / "data" / "raw", tmp_path / "data" / "raw")
    raw = sorted((tmp_path / "data" / "raw").glob("*.csv"))
    _, comp, _ = check_inputs(raw, ROOT / "config" / "config.yaml", root=tmp_path)
    assert set(comp["rob_overall"]) == {"not_assessed"}


def test_the_figures_read_the_used_rows_and_their_weights():
    import math

    import pandas as pd

    from ntxmeta.rob import DOMAINS, rob_of_effects

    class Result:  # the two fields rob_of_effects reads
        used = (True, False, True)
        weights_pct = (70.0, math.nan, 30.0)

    eff = pd.DataFrame({"row_id": ["a", "b", "c"], "study_id": ["A", "B", "C"],
                        "label": ["A 1", "B 2", "C 3"], "rob_overall": ["high", "low", None],
                        **{f"rob_{d}": ["high", "low", "low"] for d in DOMAINS}})
    frame, weights = rob_of_effects(eff, Result())
    assert list(frame["label"]) == ["A 1", "C 3"] and weights == [70.0, 30.0]
    assert list(frame["overall"]) == ["high", "not_assessed"]
    assert list(frame[DOMAINS[0]]) == ["high", "low"]
