"""The engine's API: ``rma(tau2=)``, ``RMAFit.with_test``, ``Control`` and ``fit_counter``.

References: ``fixtures/metafor_rma_api/rma_api.json``, written by
``make_rma_api.R`` with metafor 3.8-1 (dat.bcg, RR): ``rma(tau2=0.2)`` for
every estimator and both tests, and fits with studies of vi = 0 (every
estimator and test, metafor's default and a tight control, and edge cases:
HE <= 0, k = 1, two vi = 0, fixed tau^2, GENQ weights 1/vi). The suite does
not need R.

Tolerances: ``RTOL`` = 1e-9 for closed-form quantities at a fixed tau^2
(no iteration on either side: only the order of summation differs), and
for ``METAFOR_DEFAULT`` against metafor's default fits (the same Fisher
steps replayed); ``ITER_RTOL`` = 1e-9 for fully converged ML/REML/EB against
metafor's tight fits (threshold 1e-12 absolute on a tau^2 of ~0.03: its
iterate is within ~3e-11 relative of the root; measured 2.5e-12);
``with_test`` and a fixed tau^2 equal to an estimate are compared exactly
(``==``), since both run the same arithmetic at the same tau^2.
"""
from __future__ import annotations

import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from ntxmeta.analyse import loads
from ntxmeta.rma import (FULL, METAFOR_DEFAULT, METHODS, TESTS, ZERO_VI_REFUSED, Control,
                         estimate_tau2, fit_counter, metafor_fisher_tau2, rma, rma_batch)

REF = loads((Path(__file__).parent / "fixtures" / "metafor_rma_api" / "rma_api.json")
            .read_text(encoding="utf-8"))
BCG_Y = np.array(REF["bcg"]["yi"])
BCG_V = np.array(REF["bcg"]["vi"])
#: closed-form quantities at a fixed tau^2 (see the module docstring)
RTOL = 1e-9
#: fully converged ML/REML/EB against metafor's tight fits (see the module docstring)
ITER_RTOL = 1e-9
FIXED_TAU2 = 0.2
RANDOM = [m for m in METHODS if m not in ("EE", "GENQM")]  # GENQM: metafor lacks CompQuadForm here


def _weights(method, v):
    return 1 / v if method in ("GENQ", "GENQM") else None


# --------------------------------------------------------------------------- tau2=

@pytest.mark.parametrize("test", ["z", "knha"])
@pytest.mark.parametrize("method", RANDOM)
def test_fixed_tau2_matches_metafor(method, test):
    ref = REF["fixed_tau2"][f"{method}_{test}"]
    fit = rma(BCG_Y, BCG_V, method=method, test=test, tau2=FIXED_TAU2,
              weights=_weights(method, BCG_V))
    assert fit.tau2 == FIXED_TAU2
    assert fit.parms == ref["parms"] == 1           # no parameter for a fixed tau^2
    for ours, theirs in ((fit.estimate, "estimate"), (float(fit.se[0]), "se"),
                         (fit.ci.low, "ci.lb"), (fit.ci.high, "ci.ub"), (float(fit.pval[0]), "pval"),
                         (fit.se_tau2, "se.tau2"), (fit.I2_pct, "I2"), (fit.H2, "H2"),
                         (fit.QE, "QE")):
        assert ours == pytest.approx(ref[theirs], rel=RTOL), theirs
    for stats, key in ((fit.fit_ml, "ML"), (fit.fit_reml, "REML")):
        for name in ("ll", "dev", "AIC", "BIC", "AICc"):
            assert getattr(stats, name) == pytest.approx(ref["fit.stats"][key][name], rel=RTOL)


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "SJ", "HE", "EB", "GENQ"])
def test_fixed_tau2_at_the_estimate_is_the_fit(method):
    """tau2 = the estimate reproduces the fit bit for bit (but the parameter count)."""
    w = _weights(method, BCG_V)
    est = rma(BCG_Y, BCG_V, method=method, weights=w)
    fixed = rma(BCG_Y, BCG_V, method=method, weights=w, tau2=est.tau2)
    assert fixed.estimate == est.estimate
    assert fixed.ci == est.ci
    assert np.array_equal(fixed.se, est.se)
    assert fixed.se_tau2 == est.se_tau2
    assert fixed.parms == est.parms - 1
    assert fixed.fit_ml.ll == est.fit_ml.ll
    assert fixed.fit_ml.AIC == est.fit_ml.AIC - 2


def test_fixed_tau2_skips_the_ll0check_and_is_refused_when_negative():
    # identical effects: every estimator gives 0; a fixed tau^2 stays as given
    y, v = np.full(5, 0.3), np.array([0.1, 0.2, 0.1, 0.3, 0.2])
    assert rma(y, v, method="REML").tau2 == 0
    assert rma(y, v, method="REML", tau2=0.05).tau2 == 0.05
    assert rma(y, v, method="EE", tau2=0.05).tau2 == 0        # metafor ignores it for EE
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="tau2"):
            rma(y, v, tau2=bad)


# --------------------------------------------------------------------------- with_test

@pytest.mark.parametrize("control", [FULL, METAFOR_DEFAULT], ids=["full", "metafor"])
@pytest.mark.parametrize("method", METHODS)
def test_with_test_equals_a_fresh_fit(method, control):
    w = _weights(method, BCG_V)
    z = rma(BCG_Y, BCG_V, method=method, weights=w, control=control)
    fresh = rma(BCG_Y, BCG_V, method=method, test="knha", weights=w, control=control)
    derived = z.with_test("knha")
    for f in ("estimate", "ci", "tau2", "se_tau2", "I2_pct", "H2", "QE", "s2w", "df", "parms",
              "QM", "QMp", "test"):
        a, b = getattr(derived, f), getattr(fresh, f)
        assert a == b or (a != a and b != b), f        # NaN (se.tau2 of EE) counts as equal
    for f in ("se", "pval", "stat", "weights_pct"):
        assert np.array_equal(getattr(derived, f), getattr(fresh, f), equal_nan=True), f
    assert derived.fit_reml == fresh.fit_reml
    assert derived.with_test("z").ci == z.ci
    assert z.with_test("z") is z


def test_with_test_on_a_meta_regression_and_k1():
    X = np.column_stack([np.ones(BCG_Y.size), np.arange(BCG_Y.size)])
    z = rma(BCG_Y, BCG_V, X=X)
    fresh = rma(BCG_Y, BCG_V, X=X, test="knha")
    assert np.array_equal(z.with_test("knha").se, fresh.se)
    assert z.with_test("knha").QMp == fresh.QMp
    one = rma(BCG_Y[:1], BCG_V[:1])
    assert one.with_test("knha").test == "z"        # metafor: knha needs k > 1
    with pytest.raises(ValueError, match="test must be"):
        z.with_test("t")


# --------------------------------------------------------------------------- Control

def test_control_constants_are_metafors():
    # metafor 3.8-1 rma(): control=list(threshold=1e-5, maxiter=100, tol=.Machine$double.eps^0.25)
    assert METAFOR_DEFAULT.threshold == 1e-5
    assert METAFOR_DEFAULT.maxiter == 100
    assert METAFOR_DEFAULT.tol == np.finfo(float).eps ** 0.25
    assert METAFOR_DEFAULT.replay and not FULL.replay


def test_control_is_a_control_and_changes_only_iterative_fits():
    with pytest.raises(TypeError, match="Control"):
        rma(BCG_Y, BCG_V, control="metafor")
    with pytest.raises(ValueError, match="FULL"):
        rma(BCG_Y, BCG_V, control=Control(threshold=1e-3, maxiter=5, tol=1e-3, replay=False))
    dl_m, dl = rma(BCG_Y, BCG_V, method="DL", control=METAFOR_DEFAULT), rma(BCG_Y, BCG_V, method="DL")
    assert (dl_m.tau2, dl_m.ci, dl_m.se_tau2) == (dl.tau2, dl.ci, dl.se_tau2)
    # a replayed control with metafor's tight settings lands on the converged value
    tight = Control(threshold=1e-12, maxiter=10_000, tol=1e-12, replay=True)
    assert rma(BCG_Y, BCG_V, control=tight).tau2 == pytest.approx(rma(BCG_Y, BCG_V).tau2,
                                                                  rel=1e-9)
    # and a loose one stops early, as metafor does (a few Fisher steps from HE)
    loose = Control(threshold=1e-1, maxiter=100, tol=1e-12, replay=True)
    assert abs(rma(BCG_Y, BCG_V, control=loose).tau2 - rma(BCG_Y, BCG_V).tau2) > 1e-6
    one_step = Control(threshold=0.0, maxiter=1, tol=1e-12, replay=True)
    with pytest.raises(ValueError, match="did not converge"):
        metafor_fisher_tau2("REML", BCG_Y, BCG_V, control=one_step)
    assert float(estimate_tau2(BCG_Y, BCG_V, control=METAFOR_DEFAULT)) == \
        metafor_fisher_tau2("REML", BCG_Y, BCG_V)


# --------------------------------------------------------------------------- fit counter

def test_fit_counter_counts_estimates_fixed_fits_and_batches():
    with fit_counter() as outer:
        rma(BCG_Y, BCG_V, method="REML")
        with fit_counter() as inner:
            fit = rma(BCG_Y, BCG_V, method="DL")
            fit.with_test("knha")
            rma(BCG_Y, BCG_V, tau2=0.1)
            rma_batch(np.vstack([BCG_Y, BCG_Y]), np.vstack([BCG_V, BCG_V]))
        estimate_tau2(BCG_Y, BCG_V, method="PM")
    assert (inner.count, inner.fixed, inner.batch) == (1, 2, 1)
    assert inner.by_method == {"DL": 1}
    assert (outer.count, outer.fixed, outer.batch) == (3, 2, 1)
    assert outer.by_method == {"REML": 1, "DL": 1, "PM": 1}
    rma(BCG_Y, BCG_V)                     # closed counters see nothing more
    assert outer.count == 3


def test_fit_counter_sees_other_threads():
    with fit_counter() as fits:
        threads = [threading.Thread(target=rma, args=(BCG_Y, BCG_V)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert fits.count == 4


# --------------------------------------------------------------------------- reuse in an analysis

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"


def _sections_fits(spec, only):
    from ntxmeta.analyse import analyse
    with fit_counter() as fits:
        analyse(spec, only=only)
    return fits


@pytest.mark.parametrize("case", sorted(p.parent.name for p in FIXTURES.glob("*/spec.json")))
def test_each_estimator_is_estimated_once_per_analysis(case, monkeypatch):
    """rma, rma_knha, common and confint ask for 29 fits; 13 estimates serve them.

    Without reuse (``rma_shared`` made a plain ``rma``: every request fits, as
    before with_test existed) the same sections estimate at least twice as often.
    """
    import ntxmeta.rma as engine
    only = ["rma", "rma_knha", "common", "confint"]
    spec = FIXTURES / case / "spec.json"
    now = _sections_fits(spec, only)
    assert all(n == 1 for n in now.by_method.values()), now.by_method
    monkeypatch.setattr(engine, "_shared", engine.contextvars.ContextVar("off", default=None))
    monkeypatch.setattr(engine, "shared_fits", engine.contextlib.nullcontext)
    import ntxmeta.oracle as an
    monkeypatch.setattr(an, "shared_fits", engine.contextlib.nullcontext)
    before = _sections_fits(spec, only)
    assert now.count * 2 <= before.count, (now, before)


# --------------------------------------------------------------------------- vi = 0

VI0_Y = np.array(REF["vi0"]["yi"])
VI0_V = np.array(REF["vi0"]["vi"])
#: what each fit's summary in the fixture is compared on (ours -> metafor's key)
VI0_FIELDS = (("estimate", "estimate"), ("se0", "se"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"),
              ("pval0", "pval"), ("stat0", "stat"), ("tau2", "tau2"), ("se_tau2", "se.tau2"),
              ("s2w", "s2w"), ("pi.low", "pi.lb"), ("pi.high", "pi.ub"))


def _ours(fit, name):
    pred = fit.predict()
    if name.startswith("pi."):
        return getattr(pred.pi, name[3:])
    if name.startswith("ci."):
        return getattr(fit.ci, name[3:])
    if name.endswith("0"):
        return float(getattr(fit, name[:-1])[0])
    return getattr(fit, name)


def _same(ours, theirs, rtol, scale=0.0):
    """Equal to ``rtol`` relative; ``scale``: the size of the terms of a difference
    (an interval end b +- crit se near 0 is accurate to rtol (|b| + crit se), not rtol
    of itself)."""
    if isinstance(theirs, float) and math.isnan(theirs):
        return math.isnan(ours)
    return ours == pytest.approx(theirs, rel=rtol, abs=rtol * scale)


def _check_fit_or_refusal(call, ref, rtol):
    """``call()`` gives metafor's fit ``ref`` to ``rtol``, or refuses with its message."""
    if "error" in ref:
        with pytest.raises(ValueError, match="^" + re.escape(ref["error"])):
            call()
        return
    fit = call()
    assert fit.k == ref["k"] and fit.parms == ref["parms"]
    assert fit.df == (None if math.isnan(ref["ddf"]) else ref["ddf"])
    ends = abs(ref["estimate"]) + 3 * math.hypot(ref["se"], ref["tau2"] ** 0.5)
    for ours, theirs in VI0_FIELDS:
        scale = ends if ours[:3] in ("ci.", "pi.") else 0.0
        assert _same(_ours(fit, ours), ref[theirs], rtol, scale), (theirs, _ours(fit, ours),
                                                                   ref[theirs])
    # no Q-test, I^2 or H^2 with a vi = 0 (metafor: NA)
    for ours, theirs in (("QE", "QE"), ("QEp", "QEp"), ("I2_pct", "I2"), ("H2", "H2")):
        assert math.isnan(ref[theirs]) and math.isnan(getattr(fit, ours)), theirs
    assert np.allclose(fit.weights_pct, ref["weights"], rtol=rtol, atol=0)
    for stats, key in ((fit.fit_ml, "ML"), (fit.fit_reml, "REML")):
        for name in ("ll", "dev", "AIC", "BIC", "AICc"):
            assert _same(getattr(stats, name), ref["fit.stats"][key][name], rtol), (key, name)


def _vi0_call(key, control):
    method, test = key.rsplit("_", 1)
    w = np.ones(VI0_Y.size) if method in ("GENQ", "GENQM") else None   # as make_rma_api.R
    return lambda: rma(VI0_Y, VI0_V, method=method, test=test, weights=w, control=control)


@pytest.mark.parametrize("key", sorted(REF["vi0_fits_tight"]))
def test_zero_vi_fits_and_refusals_match_metafor_tight(key):
    method = key.rsplit("_", 1)[0]
    rtol = ITER_RTOL if method in ("REML", "ML", "EB") else RTOL
    _check_fit_or_refusal(_vi0_call(key, FULL), REF["vi0_fits_tight"][key], rtol)


@pytest.mark.parametrize("key", sorted(REF["vi0_fits"]))
def test_zero_vi_metafor_default_control_replays_metafor(key):
    """metafor's default control stops REML 3e-5 relative off the root here: replayed."""
    _check_fit_or_refusal(_vi0_call(key, METAFOR_DEFAULT), REF["vi0_fits"][key], RTOL)


def test_zero_vi_reference_covers_every_method_and_test():
    """No estimator or test drops out of the comparison (GENQM: metafor lacks CompQuadForm)."""
    for section in ("vi0_fits", "vi0_fits_tight"):
        keys = {tuple(k.rsplit("_", 1)) for k in REF[section]}
        assert keys == {(m, t) for m in METHODS if m != "GENQM" for t in TESTS}
        refused = {m for m, t in keys if "error" in REF[section][f"{m}_{t}"]}
        assert refused == set(ZERO_VI_REFUSED) | {"EE"}
    # the default fit differs visibly from the tight one: the two tests check different things
    assert abs(REF["vi0_fits"]["REML_z"]["tau2"] / REF["vi0_fits_tight"]["REML_z"]["tau2"] - 1) > 1e-5


def _edge_call(key):
    edges = REF["vi0_edges"]
    if key.startswith("fixed_"):
        _, method, t2 = key.split("_")
        return lambda: rma(VI0_Y, VI0_V, method=method, tau2=float(t2))
    if key == "GENQ_inverse_vi":
        with np.errstate(divide="ignore"):
            w = 1 / VI0_V
        return lambda: rma(VI0_Y, VI0_V, method="GENQ", weights=w)
    if key == "k1_REML":
        return lambda: rma([0.2], [0.0], method="REML")
    data, method = key.rsplit("_", 1)
    y, v = np.array(edges[data]["yi"]), np.array(edges[data]["vi"])
    return lambda: rma(y, v, method=method, weights=np.ones(y.size) if method == "GENQ" else None)


@pytest.mark.parametrize("key", sorted(k for k, v in REF["vi0_edges"].items() if "yi" not in v))
def test_zero_vi_edge_cases_match_metafor(key):
    ref = REF["vi0_edges"][key]
    if key == "GENQ_inverse_vi":     # metafor: "Infinite weights not allowed."
        assert ref["error"] == "Infinite weights not allowed."
        with pytest.raises(ValueError, match="weights must be finite"):
            _edge_call(key)()
        return
    _check_fit_or_refusal(_edge_call(key), ref, RTOL)


def test_zero_vi_with_test_equals_a_fresh_fit_and_negative_vi_is_refused():
    for method in ("REML", "HE", "EB"):
        z = rma(VI0_Y, VI0_V, method=method)
        for test in ("knha", "adhoc"):
            fresh = rma(VI0_Y, VI0_V, method=method, test=test)
            derived = z.with_test(test)
            assert (derived.ci, derived.s2w, derived.tau2) == (fresh.ci, fresh.s2w, fresh.tau2)
    with pytest.raises(ValueError, match="vi must be >= 0"):
        rma(VI0_Y, np.where(VI0_V == 0, -0.01, VI0_V))


def test_zero_vi_rows_of_rma_batch_are_metafors_fits():
    # a vi = 0 row between full and padded rows of the vectorised path
    Y = np.vstack([VI0_Y, BCG_Y[:6], np.r_[BCG_Y[6:11], np.nan]])
    V = np.vstack([VI0_V, BCG_V[:6], np.r_[BCG_V[6:11], 0.0]])
    for test in TESTS:
        b = rma_batch(Y, V, method="REML", test=test)
        ref = REF["vi0_fits_tight"][f"REML_{test}"]
        for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_lb", "ci.lb"),
                             ("pval", "pval"), ("tau2", "tau2"), ("pi_lb", "pi.lb"),
                             ("pi_ub", "pi.ub")):
            assert getattr(b, ours)[0] == pytest.approx(ref[theirs], rel=ITER_RTOL), theirs
        assert np.isnan([b.QE[0], b.QEp[0], b.I2_pct[0], b.H2[0]]).all()
        for i in (1, 2):          # the other rows: the vectorised path, as rma on the row
            used = np.isfinite(Y[i])
            fit = rma(Y[i][used], V[i][used], method="REML", test=test)
            assert b.estimate[i] == pytest.approx(fit.estimate, rel=1e-10)
            assert b.QE[i] == pytest.approx(fit.QE, rel=1e-10)
    with pytest.raises(ValueError, match="^analysis 0 .*DL estimator cannot be used"):
        rma_batch(Y, V, method="DL")
    with pytest.raises(ValueError, match="^analysis 0 .*Division by zero"):
        rma_batch(Y, V, method="EE")


def test_zero_vi_through_ntxmeta_analyse(tmp_path):
    """The oracle adapter passes a vi = 0 study on: metafor's fits and refusals, no warnings."""
    import json
    import warnings

    from ntxmeta.oracle import analyse, dumps
    rows = "\n".join(f"s{i},{y!r},{v!r}" for i, (y, v) in
                     enumerate(zip(REF["vi0"]["yi"], REF["vi0"]["vi"])))
    (tmp_path / "data.csv").write_text("study,yi,vi\n" + rows + "\n", encoding="utf-8")
    (tmp_path / "spec.json").write_text(json.dumps(
        {"name": "vi0_GEN", "csv": "data.csv", "measure": "GEN",
         "columns": {"yi": "yi", "vi": "vi"}, "study": "study"}), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = loads(dumps(analyse(tmp_path / "spec.json",
                                  only=["rma", "rma_knha", "common", "confint"])))
    for section, test in (("rma", "z"), ("rma_knha", "knha")):
        for method, got in out[section].items():
            ref = REF["vi0_fits_tight"].get(f"{method}_{test}")
            if ref is None or method == "GENQ":   # GENQM: no reference; GENQ: weights 1/vi
                assert "error" in got, method
            elif "error" in ref:
                assert got["error"] == ref["error"], method
            else:
                rtol = ITER_RTOL if method in ("REML", "ML", "EB") else RTOL
                for key in ("estimate", "se", "pval", "tau2", "se.tau2", "s2w"):
                    assert got[key] == pytest.approx(ref[key], rel=rtol), (method, key)
                assert all(math.isnan(got[key]) for key in ("QE", "QEp", "I2", "H2"))
    assert out["rma"]["GENQ"]["error"].startswith("weights must be finite")  # weights 1/vi
    assert out["common"]["EE"]["error"].startswith(REF["vi0_fits"]["EE_z"]["error"])
    assert out["confint"]["REML"]["error"] == (
        "Cannot compute CI for tau^2 when there are non-positive sampling variances in the data.")


def test_shared_fit_key_is_the_exact_content():
    """rma_shared's key hashes a sample of the arrays but compares every element's bits."""
    from ntxmeta.rma import _ContentKey
    y = np.linspace(0.0, 1.0, 10_001)
    key = _ContentKey((y, y + 1, None, None))
    assert key == _ContentKey((y.copy(), y + 1, None, None))
    assert hash(key) == hash(_ContentKey((list(y), y + 1, None, None)))
    other = y.copy()
    other[1] = np.nextafter(other[1], 2.0)   # row 1 is outside the hashed sample
    assert hash(_ContentKey((other, y + 1, None, None))) == hash(key)
    assert key != _ContentKey((other, y + 1, None, None))
    assert key != _ContentKey((y, y + 1, np.ones((y.size, 1)), None))
    assert _ContentKey((np.array([0.0]),)) != _ContentKey((np.array([-0.0]),))
    assert _ContentKey((np.array([np.nan]),)) == _ContentKey((np.array([np.nan]),))
    stored = key.stored()
    y[5000] = 99.0                        # the caller changes its array afterwards
    assert stored.arrays[0][5000] == 0.5 and stored != _ContentKey((y, y + 1, None, None))


def test_shared_fits_reuse_a_fit_of_equal_data_and_not_of_other_data():
    from ntxmeta.rma import fit_counter, rma_shared, shared_fits
    y, v = np.array([0.1, 0.4, -0.2, 0.3]), np.array([0.05, 0.02, 0.04, 0.03])
    with fit_counter() as fits, shared_fits():
        a = rma_shared(y, v, method="REML")
        b = rma_shared(y.copy(), v.copy(), method="REML", test="knha")
        c = rma_shared(y + 1e-12, v, method="REML")
    assert fits.by_method == {"REML": 2}
    assert a.tau2 == b.tau2 and a.beta[0] != c.beta[0]
