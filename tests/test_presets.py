"""The three method presets against metafor 3.8-1 on every vendored oracle case.

References: tests/fixtures/presets/presets.json, made by make_presets.R from
each case's yi and vi (metafor's own escalc output in out.json) with a tight
control, so both sides are converged roots:

- cochrane2025: REML, Hartung-Knapp with the ad hoc floor (test="adhoc"),
  prediction interval t(k - 1) (predict(pi.type = "t"));
- revman5: DL, z, prediction interval t(k - 2) (predict(pi.type = "riley"));
- metafor: REML, z, z-based prediction interval (predict()).

Tolerance ``REL``: both fits are converged to 1e-12 in tau^2; what is left
is floating-point noise amplified by the REML root (1e-7 relative, 1e-10
absolute near zero). The floor binds (s2w < 1 before it) in bcg_k2_RR,
bcg_k3_RR, hackshaw1998_GEN, identical_GEN, nielweise2007_OR and
normand1999_ROM: there adhoc and knha differ, and the test checks both.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta.analysis import run_plan
from ntxmeta.config import resolve
from ntxmeta.plan import Config

REF = json.loads((Path(__file__).parent / "fixtures" / "presets" / "presets.json").read_text())
CASES = sorted(c for c in REF if c != "versions")
PRESETS = ("cochrane2025", "revman5", "metafor")
REL, ABS = 1e-7, 1e-10


def result(case: str, preset: str, **block):
    ref = REF[case]
    a = {"title": case, "measure": "GEN", "filters": {"indication": ["x"]}, "preset": preset,
         "level": ref["level"], "pool_k2": True, **block}
    plan = Config.from_resolved(resolve({"analyses": {case: a}})).analyses[case]
    k = len(ref["yi"])
    eff = pd.DataFrame({"study_id": [f"S{i}" for i in range(k)], "label": [f"S{i}" for i in range(k)],
                        "year": range(k), "data_type": "generic", "yi": ref["yi"], "vi": ref["vi"]})
    return run_plan(plan, eff, log_ratio_rows=False)


def close(a, b):
    return a == pytest.approx(b, rel=REL, abs=ABS)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("case", CASES)
def test_preset_equals_metafor(case, preset):
    want = REF[case][preset]
    main = result(case, preset).main
    assert main is not None
    got = {"estimate": main.estimate, "se": main.se, "ci.lb": main.ci.low, "ci.ub": main.ci.high,
           "pval": main.test_stat.pval, "stat": main.test_stat.statistic,
           "tau2": main.heterogeneity.tau2, "QE": main.heterogeneity.q}
    for key, value in got.items():
        assert close(value, want[key]), (key, value, want[key])
    if want["df"] is not None:
        assert main.test_stat.df == want["df"]
    if want["k"] >= 3:
        assert close(main.pi.low, want["pi.lb"]) and close(main.pi.high, want["pi.ub"])
    else:  # no prediction interval for k < 3, whatever metafor prints
        assert main.pi is None


@pytest.mark.parametrize("case", [c for c in CASES if REF[c]["cochrane2025"]["s2w"] == 1
                                  and REF[c]["REML_knha_no_floor"]["s2w"] < 1])
def test_the_ad_hoc_floor_widens_the_interval_where_it_binds(case):
    floor, plain = REF[case]["cochrane2025"], REF[case]["REML_knha_no_floor"]
    adhoc = result(case, "cochrane2025").main
    knha = result(case, "cochrane2025", test="knha").main
    assert close(knha.ci.low, plain["ci.lb"]) and close(adhoc.ci.low, floor["ci.lb"])
    assert adhoc.ci.high - adhoc.ci.low > knha.ci.high - knha.ci.low


def test_cochrane_default_gives_no_random_effects_estimate_for_k2():
    res = result("bcg_k2_RR", "cochrane2025", pool_k2=False)
    assert res.main is None and res.common is not None
    assert np.isfinite(res.common.estimate)
