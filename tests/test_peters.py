"""``egger_test(predictor=...)``: every regtest predictor, Peters' test among them.

References: ``fixtures/regtest_predictors/predictors.json``, written by
``make_predictors.R`` with metafor 3.8-1: ``regtest()`` with predictor
"sei", "vi", "ni", "ninv", "sqrtni" and "sqrtninv", model "lm" and model
"rma" (REML z and knha, DL z; control threshold 1e-12), on log odds ratios
of dat.bcg and dat.nielweise2007 (zero cells, escalc's 1/2 added) with the
total sample sizes. Cases are discovered from the fixture. Peters' own
weighting (1/(1/E + 1/F)) has no metafor reference; it is checked against
an independent statsmodels WLS fit.

Tolerance: ``RTOL`` = 1e-8 relative. The lm fits are closed form (R's QR
and statsmodels' pinv agree to ~1e-13 on the oracle cases); the rma fits
iterate REML to a change of 1e-12 in tau^2 ~ 0.3 in metafor (~3e-12
relative) and fully here; 1/ni predictors make coefficients of ~1e3 whose
t values keep that relative accuracy. Interval ends are compared to
RTOL of |estimate| + 4 se (an end near 0 is a difference of such terms).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from ntxmeta.analyse import loads
from ntxmeta.bias import LIMIT_PREDICTORS, PREDICTORS, egger_test

REF = loads((Path(__file__).parent / "fixtures" / "regtest_predictors" / "predictors.json")
            .read_text(encoding="utf-8"))
#: see the module docstring
RTOL = 1e-8


def _case(key):
    parts = key.split("_")
    name, predictor, model = parts[:3]
    method, test = (parts[3], parts[4]) if model == "rma" else ("REML", "z")
    d = REF["data"][name]
    return np.array(d["yi"]), np.array(d["vi"]), np.array(d["ni"], dtype=float), predictor, \
        model, method, test


def _close(ours, theirs, scale=0.0):
    if math.isnan(theirs):
        return math.isnan(ours)
    return float(ours) == pytest.approx(theirs, rel=RTOL, abs=RTOL * scale)


@pytest.mark.parametrize("key", sorted(REF["tests"]))
def test_regtest_matches_metafor(key):
    y, v, ni, predictor, model, method, test = _case(key)
    ref = REF["tests"][key]
    res = egger_test(y, v, model=model, predictor=predictor, ni=ni, method=method, test=test)
    assert (res.model, res.predictor) == (ref["model"], ref["predictor"])
    assert _close(res.stat, ref["stat"]) and _close(res.pval, ref["pval"])
    assert (res.df if res.df is not None else math.nan) == pytest.approx(ref["ddf"], nan_ok=True)
    co = ref["coef"]
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("stat", "stat"),
                         ("pval", "pval")):
        assert np.allclose(getattr(res.coefficients, ours), co[theirs], rtol=RTOL, atol=0), theirs
    if model == "rma":
        assert res.fit.tau2 == pytest.approx(co["tau2"], rel=1e-8, abs=1e-12)
    scale = abs(co["estimate"][0]) + 4 * co["se"][0]
    assert _close(res.limit_estimate, ref["est"])
    assert _close(res.limit_ci.low, ref["ci.lb"], scale)
    assert _close(res.limit_ci.high, ref["ci.ub"], scale)
    # metafor reports a limit estimate exactly for the predictors that vanish as n -> inf
    assert math.isnan(ref["est"]) == (predictor not in LIMIT_PREDICTORS)


def test_every_predictor_and_model_is_in_the_reference():
    seen = {(k.split("_")[1], k.split("_")[2]) for k in REF["tests"]}
    assert seen == {(p, m) for p in PREDICTORS for m in ("lm", "rma")}
    # the predictors give different tests (a predictor silently ignored would not)
    stats = {REF["tests"][f"bcg_{p}_lm"]["stat"] for p in PREDICTORS}
    assert len(stats) == len(PREDICTORS)


def test_peters_weighting_against_statsmodels():
    """Peters et al.'s test: WLS of log OR on 1/n with weights 1/(1/E + 1/F), t(k - 2)."""
    d = REF["data"]["bcg"]
    a, b, c, dd = (np.array(d[x], dtype=float) for x in ("ai", "bi", "ci", "di"))
    n = a + b + c + dd
    E, F = a + c, b + dd
    y = np.log(a * dd / (b * c))           # no zero cells in dat.bcg
    X = sm.add_constant(1.0 / n)
    ref = sm.WLS(y, X, weights=1.0 / (1.0 / E + 1.0 / F)).fit()
    res = egger_test(y, 1.0 / E + 1.0 / F, model="lm", predictor="ninv", ni=n)
    assert res.stat == pytest.approx(ref.tvalues[1], rel=1e-10)
    assert res.pval == pytest.approx(ref.pvalues[1], rel=1e-10)
    assert res.limit_estimate == pytest.approx(ref.params[0], rel=1e-10)
    assert res.df == ref.df_resid == n.size - 2


def test_predictor_inputs_are_checked():
    y, v, ni = np.array([0.1, 0.3, 0.2, 0.5]), np.array([0.1, 0.2, 0.3, 0.4]), [10, 20, 30, 40]
    with pytest.raises(ValueError, match="No sample size information"):
        egger_test(y, v, predictor="ninv")
    with pytest.raises(ValueError, match="predictor must be one of"):
        egger_test(y, v, predictor="n")
    with pytest.raises(ValueError, match="ni must be finite and > 0"):
        egger_test(y, v, predictor="ni", ni=[10, 0, 30, 40])
    with pytest.raises(ValueError, match="one entry per study"):
        egger_test(y, v, predictor="ni", ni=[10, 20])
    with pytest.raises(ValueError, match="full rank"):     # metafor: ni without variance
        egger_test(y, v, predictor="ninv", ni=[20, 20, 20, 20], model="lm")
    # ni is ignored by the predictors that do not use it
    assert egger_test(y, v, ni=ni, model="lm").stat == egger_test(y, v, model="lm").stat
