"""The engine's API: ``rma(tau2=)``, ``RMAFit.with_test``, ``Control`` and ``fit_counter``.

References: ``fixtures/metafor_rma_api/rma_api.json``, written by
``make_rma_api.R`` with metafor 3.8-1 (dat.bcg, RR): ``rma(tau2=0.2)`` for
every estimator and both tests, and fits with one study of vi = 0. The suite
does not need R.

Tolerances: ``RTOL`` = 1e-9 for closed-form quantities at a fixed tau^2
(no iteration on either side: only the order of summation differs);
``with_test`` and a fixed tau^2 equal to an estimate are compared exactly
(``==``), since both run the same arithmetic at the same tau^2.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from ntxmeta.analyse import loads
from ntxmeta.rma import (FULL, METAFOR_DEFAULT, METHODS, Control, estimate_tau2, fit_counter,
                         metafor_fisher_tau2, rma, rma_batch)

REF = loads((Path(__file__).parent / "fixtures" / "metafor_rma_api" / "rma_api.json")
            .read_text(encoding="utf-8"))
BCG_Y = np.array(REF["bcg"]["yi"])
BCG_V = np.array(REF["bcg"]["vi"])
#: closed-form quantities at a fixed tau^2 (see the module docstring)
RTOL = 1e-9
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
