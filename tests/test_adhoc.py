"""``test="adhoc"``: Hartung-Knapp with the ad hoc correction s2w = max(1, s2w).

References: ``fixtures/adhoc/adhoc.json``, written by ``make_adhoc.R`` with
metafor 3.8-1 (control threshold 1e-12): ``rma(test=)`` for "z", "knha" and
"adhoc" with every estimator rma_batch offers, on dat.bcg log RR (k = 13,
s2w > 1 under REML: adhoc = knha), its first two studies (k = 2, t(1)),
homogeneous effects (tau^2 = 0, s2w = 0.015: the floor binds) and identical
effects (RSS below eps: knha s2w = 0, adhoc 1); ``predict()`` with pi.type
"default", "riley" and "t"; ``leave1out()`` of REML and DL fits,
``influence()`` and ``cumul()`` of REML fits; a meta-regression on absolute
latitude. Cases are discovered from the fixture.
The suite does not need R.

Tolerance: ``RTOL`` = 1e-9 relative. Closed-form estimators differ from
metafor only in the order of summation (~1e-15); the iterative ones (REML,
ML, EB, PM, PMM) are converged fully here and to a change of 1e-12 in
tau^2 ~ 0.3 by metafor (~3e-12 relative). Interval ends are compared to
1e-9 of the size of their terms (|estimate| + crit se), as an end near 0
is a difference of two such numbers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ntxmeta.analyse import loads
from ntxmeta.diagnostics import cumulative, influence, leave1out
from ntxmeta.rma import TESTS, rma, rma_batch

REF = loads((Path(__file__).parent / "fixtures" / "adhoc" / "adhoc.json").read_text(encoding="utf-8"))
#: see the module docstring
RTOL = 1e-9
FIT_FIELDS = (("estimate", "estimate"), ("se", "se"), ("stat", "stat"), ("pval", "pval"),
              ("ci_lb", "ci.lb"), ("ci_ub", "ci.ub"), ("s2w", "s2w"), ("tau2", "tau2"),
              ("QM", "QM"), ("QMp", "QMp"))
PRED_FIELDS = (("pred", "pred"), ("se", "se"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"),
               ("pi.low", "pi.lb"), ("pi.high", "pi.ub"))


def _data(name):
    d = REF["data"][name]
    return np.array(d["yi"]), np.array(d["vi"])


def _close(ours, theirs, scale=0.0):
    ours = float(ours)
    if math.isnan(theirs) or math.isinf(theirs):
        return ours == theirs or (math.isnan(theirs) and math.isnan(ours))
    return ours == pytest.approx(theirs, rel=RTOL, abs=RTOL * scale)


def _first(x):
    return x[0] if isinstance(x, np.ndarray) else x


def _fit_keys():
    return sorted(REF["fits"])


@pytest.mark.parametrize("key", _fit_keys())
def test_fit_and_predictions_match_metafor(key):
    name, method, test = key.rsplit("_", 2)
    ref = REF["fits"][key]
    y, v = _data(name)
    fit = rma(y, v, method=method, test=test)
    assert fit.test == ref["test"]
    assert fit.df == (None if math.isnan(ref["ddf"]) else ref["ddf"])
    ends = abs(ref["estimate"]) + 15 * math.hypot(ref["se"], ref["tau2"] ** 0.5)
    for ours, theirs in FIT_FIELDS:
        scale = ends if ours.startswith("ci") else 0.0
        assert _close(_first(getattr(fit, ours)), ref[theirs], scale), (theirs, getattr(fit, ours))
    for pi_type in ("default", "riley", "t"):
        pr, pref = fit.predict(pi_type), ref[f"predict_{pi_type}"]
        for ours, theirs in PRED_FIELDS:
            obj = pr
            for part in ours.split("."):
                obj = getattr(obj, part)
            scale = ends if "." in ours else 0.0
            if math.isnan(pref[theirs]):     # metafor: no PI for a common-effect model
                assert method == "EE" and theirs.startswith("pi") and math.isnan(obj)
                continue
            assert _close(obj, pref[theirs], scale), (pi_type, theirs, obj, pref[theirs])
        want_df = None if math.isnan(pref["pi.ddf"]) else pref["pi.ddf"]
        assert pr.pi_df == want_df, (pi_type, pr.pi_df, want_df)


def test_the_fixture_has_the_cases_that_tell_adhoc_from_knha():
    """Every test and estimator is there, the floor binds in some fits and not in others."""
    keys = {tuple(k.rsplit("_", 2)) for k in REF["fits"]}
    datasets = {d for d, _, _ in keys}
    assert datasets == set(REF["data"])
    assert {t for _, _, t in keys} == set(TESTS)
    binds = [k for k, f in REF["fits"].items() if k.endswith("_knha") and f["s2w"] < 1]
    free = [k for k, f in REF["fits"].items() if k.endswith("_knha") and f["s2w"] > 1]
    assert binds and free
    for k in binds:
        assert REF["fits"][k[:-5] + "_adhoc"]["s2w"] == 1
    for k in free:
        assert REF["fits"][k[:-5] + "_adhoc"]["se"] == REF["fits"][k]["se"]
    assert any(REF["fits"][f"bcg_k2_{m}_adhoc"]["ddf"] == 1 for m in ("REML", "DL"))


@pytest.mark.parametrize("name", sorted(REF["data"]))
def test_with_test_and_rma_batch_give_the_adhoc_fit(name):
    y, v = _data(name)
    Y = np.vstack([y, np.r_[y[:-1], np.nan]]) if y.size > 2 else y[None, :]
    V = np.vstack([v, np.r_[v[:-1], np.nan]]) if y.size > 2 else v[None, :]
    for method in ("REML", "DL", "PM", "SJ", "EE"):
        fresh = rma(y, v, method=method, test="adhoc")
        derived = rma(y, v, method=method).with_test("adhoc")
        assert (derived.ci, derived.s2w, derived.pval[0]) == (fresh.ci, fresh.s2w, fresh.pval[0])
        assert derived.with_test("knha").s2w == rma(y, v, method=method, test="knha").s2w
        b = rma_batch(Y, V, method=method, test="adhoc")
        ref = REF["fits"][f"{name}_{method}_adhoc"]
        for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("pval", "pval")):
            assert _close(getattr(b, ours)[0], ref[theirs]), (method, theirs)
        pref = ref["predict_default"]
        if method != "EE":
            assert _close(b.pi_lb[0], pref["pi.lb"], abs(ref["estimate"]) + 15 * ref["se"])
        if Y.shape[0] > 1:      # the padded row: as rma on its studies
            one = rma(y[:-1], v[:-1], method=method, test="adhoc")
            assert b.se[1] == pytest.approx(float(one.se[0]), rel=1e-10)


def _arrays_close(ours, theirs, what, scale=None, floor=1e-12):
    """Elementwise to ``RTOL`` (of ``scale`` if given); ``floor``: the absolute noise of
    values that are 0 in exact arithmetic (a study's residual at the estimate, tau^2 of
    homogeneous data, where metafor's iterate stops within 1e-12 of 0)."""
    theirs = np.array(theirs, dtype=float)
    tol = np.maximum(RTOL * (np.abs(theirs) if scale is None else scale), floor)
    assert np.all(np.abs(np.asarray(ours, dtype=float) - theirs) <= tol), (what, ours, theirs)


SUBSET_FITS = {"leave1out": leave1out, "cumul": cumulative}
#: absolute floors other than 1e-12: tau^2 and I^2 of homogeneous subsets are 0 in exact
#: arithmetic and ~1e-12 (I^2: ~1e-10 %) in metafor's iterate; p-values of Q reach 1e-27
FLOORS = {"tau2": 1e-10, "I2_pct": 1e-10, "Qp": 0.0}
#: ours -> metafor's key; cumul's reference has no Q, I^2, H^2
SUBSET_FIELDS = {"leave1out": (("estimate", "estimate"), ("se", "se"), ("stat", "stat"),
                               ("pval", "pval"), ("ci_lb", "ci.lb"), ("ci_ub", "ci.ub"),
                               ("tau2", "tau2"), ("Q", "Q"), ("Qp", "Qp"), ("I2_pct", "I2"),
                               ("H2", "H2"))}
SUBSET_FIELDS["cumul"] = SUBSET_FIELDS["leave1out"][:7]


@pytest.mark.parametrize("section, key", [(s, k) for s in SUBSET_FITS for k in sorted(REF[s])])
def test_leave1out_and_cumul_match_metafor(section, key):
    name, method, test = key.rsplit("_", 2)
    y, v = _data(name)
    got = SUBSET_FITS[section](y, v, method=method, test=test)
    ref = REF[section][key]
    assert set(ref) == {theirs for _, theirs in SUBSET_FIELDS[section]}   # none left out
    scale = np.abs(np.array(ref["estimate"])) + 15 * np.array(ref["se"])
    for ours, theirs in SUBSET_FIELDS[section]:
        _arrays_close(getattr(got, ours), ref[theirs], theirs,
                      scale if ours.startswith("ci") else None,
                      FLOORS.get(ours, 1e-12))


@pytest.mark.parametrize("key", sorted(REF["influence"]))
def test_influence_matches_metafor(key):
    name, method, test = key.rsplit("_", 2)
    y, v = _data(name)
    got = influence(y, v, method=method, test=test)
    ref = REF["influence"][key]
    for ours, theirs in (("rstudent", "rstudent"), ("dffits", "dffits"), ("cook_d", "cook.d"),
                         ("cov_r", "cov.r"), ("tau2_del", "tau2.del"), ("QE_del", "QE.del"),
                         ("hat", "hat"), ("weight_pct", "weight"), ("dfbetas", "dfbetas")):
        _arrays_close(getattr(got, ours), ref[theirs], theirs)


@pytest.mark.parametrize("test", ["knha", "adhoc"])
def test_meta_regression_matches_metafor(test):
    d = REF["data"]["bcg"]
    y, v = np.array(d["yi"]), np.array(d["vi"])
    X = np.column_stack([np.ones(y.size), d["ablat"]])
    fit = rma(y, v, X=X, test=test)
    ref = REF["metareg"][test]
    for ours, theirs in (("beta", "estimate"),) + FIT_FIELDS[1:]:
        got = getattr(fit, ours)
        want = np.atleast_1d(np.array(ref[theirs], dtype=float))
        assert np.allclose(np.atleast_1d(got), want, rtol=RTOL, atol=0), theirs
    assert fit.QMdf == (1, y.size - 2)
