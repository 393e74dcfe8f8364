"""Pipeline steps on constructed inputs: failure isolation, k = 0 and k = 1 analyses."""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from ntxmeta import analyse
from ntxmeta.pipeline import EFFECT_COLUMNS, pool
from ntxmeta.tables import summary_table


def effects_frame(rows):
    frame = pd.DataFrame([{c: np.nan for c in EFFECT_COLUMNS} | r for r in rows])
    frame["data_type"] = "binary"
    return frame


ROWS = [dict(row_id=f"r{i}", study_id=f"S{i}", label=f"Study {i}", year=2000 + i,
             events_treat=e1, n_treat=n1, events_ctrl=e2, n_ctrl=n2)
        for i, (e1, n1, e2, n2) in enumerate([(10, 50, 20, 50), (5, 40, 9, 41), (30, 100, 28, 99)])]
ANALYSIS = {"title": "t", "measure": "RR", "filters": {}}


def test_failure_in_one_section_is_reported_and_others_survive(monkeypatch):
    def broken(data, sub):
        raise ZeroDivisionError("simulated")
    monkeypatch.setitem(analyse.SECTIONS, "broken_section", broken)
    result, _ = pool(effects_frame(ROWS), "a", ANALYSIS, {}, "x.csv")
    assert result["broken_section"] == {"error": "internal failure: ZeroDivisionError: simulated",
                                        "failed": True}
    assert "FAILED sections: broken_section" in result["analysis"]["status"]
    assert result["rma"]["REML"]["k"] == 3  # the other sections are there
    row = summary_table([result]).iloc[0]
    assert "FAILED" in row["status"] and np.isfinite(row["estimate"])


def test_empty_and_single_study_analyses_say_why():
    empty, _ = pool(effects_frame(ROWS).iloc[:0], "e", ANALYSIS, {}, "x.csv")
    assert empty["analysis"]["status"].startswith("no pooled estimate: no usable rows")
    single, _ = pool(effects_frame(ROWS[:1]), "s", ANALYSIS, {}, "x.csv")
    assert "single study" in single["analysis"]["status"]
    # k = 1: the estimate is the study's own log RR (metafor's k = 1 convention)
    assert single["rma"]["REML"]["estimate"] == pytest.approx(np.log((10 / 50) / (20 / 50)), rel=1e-12)
