"""``rma_batch`` (many intercept-only analyses at once) against ``rma`` and metafor.

Three independent checks:

* every vendored oracle case, stacked into one NaN-padded batch, against
  metafor 3.8-1's tightly converged fits (``rma_tight``/``rma_knha_tight``)
  with the tolerances of ``oracle_util`` (rtol 1e-6, atol 1e-9);
* random ragged batches (k = 1 and k = 2 rows, rows with Q = 0, z and knha,
  two levels, every estimator rma_batch offers) against a loop of ``rma()``
  and ``RMAFit.predict()``, to rtol 1e-10: the batch must be the same model,
  not an approximation of it (atol 1e-12 for quantities that are 0 in exact
  arithmetic, e.g. Q of identical effects, where both carry rounding noise);
* analyses where metafor's Fisher scoring oscillates (it stops with "did
  not converge" at its default settings): the REML tau^2 must be the root
  of the REML score, checked with the dense k x k projection matrix, and
  equal metafor's tightly converged value where that converges.

Timing is not tested here (see bench/).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from ntxmeta import rma as rma_mod
from ntxmeta.rma import BatchFit, rma, rma_batch
from oracle_util import ATOL, RTOL, cases, load

BATCH_METHODS = ("REML", "ML", "DL", "EE", "PM", "PMM", "HE", "SJ", "EB", "HS", "HSk")
#: batch field -> metafor key path inside a fit summary
ORACLE_KEYS = {"estimate": ("estimate",), "se": ("se",), "ci_lb": ("ci.lb",), "ci_ub": ("ci.ub",),
               "pval": ("pval",), "tau2": ("tau2",), "I2_pct": ("I2",), "H2": ("H2",),
               "QE": ("QE",), "QEp": ("QEp",), "pi_lb": ("predict", "pi.lb"),
               "pi_ub": ("predict", "pi.ub")}
LOOP_RTOL, LOOP_ATOL = 1e-10, 1e-12


def _padded(rows):
    """(m, max k) arrays of the rows' (yi, vi), NaN-padded."""
    width = max(len(y) for y, _ in rows)
    Y = np.full((len(rows), width), np.nan)
    V = np.full((len(rows), width), np.nan)
    for i, (y, v) in enumerate(rows):
        Y[i, :len(y)] = y
        V[i, :len(v)] = v
    return Y, V


def _oracle_rows():
    rows, refs = [], []
    for case in cases():
        ref = load(case / "out.json")
        yi, vi = np.asarray(ref["escalc"]["yi"], float), np.asarray(ref["escalc"]["vi"], float)
        keep = np.isfinite(yi) & np.isfinite(vi)
        rows.append((yi[keep], vi[keep]))
        refs.append((case.name, ref))
    return rows, refs


def _close(a, b, rtol, atol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | (a == b) | (np.abs(a - b) <= atol + rtol * np.abs(b))


@pytest.mark.parametrize("test", ["z", "knha"])
@pytest.mark.parametrize("method", [m for m in BATCH_METHODS if m != "EE"])
def test_oracle_cases_in_one_batch_match_metafor(method, test):
    rows, refs = _oracle_rows()
    # a shuffled order, so that padding and position in the chunk play no role
    order = np.random.default_rng(7).permutation(len(rows))
    Y, V = _padded([rows[i] for i in order])
    fit = rma_batch(Y, V, method=method, test=test)
    section = "rma_tight" if test == "z" else "rma_knha_tight"
    compared = 0
    for pos, i in enumerate(order):
        name, ref = refs[i]
        summary = ref[section].get(method)
        if summary is None or "error" in summary:
            continue
        assert fit.k[pos] == summary["k"], name
        for field, path in ORACLE_KEYS.items():
            want = summary
            for p in path:
                want = want[p]
            got = getattr(fit, field)[pos]
            assert _close(got, want, RTOL, ATOL), (name, method, test, field, got, want)
            compared += 1
    assert compared >= 8 * len(ORACLE_KEYS)


def _random_rows(rng, n):
    """Ragged analyses with k = 1, 2, small and moderate k, some with identical effects (Q = 0)."""
    rows = []
    for i in range(n):
        k = int(rng.choice([1, 2, 2, 3, 5, 10, 25]))
        v = rng.uniform(0.01, 0.5, k)
        mu = rng.normal(0, 2)
        y = rng.normal(mu, np.sqrt(rng.uniform(0, 0.4) + v))
        if i % 9 == 0:
            y[:] = y[0]                       # Q = 0
        rows.append((y, v))
    return rows


def _expected(rows, method, test, level):
    cols = {f: [] for f in BatchFit.ARRAYS}
    for y, v in rows:
        f = rma(y, v, method=method, test=test, level=level)
        pr = f.predict()
        vals = {"k": f.k, "estimate": f.estimate, "se": f.se[0], "ci_lb": f.ci_lb[0],
                "ci_ub": f.ci_ub[0], "pval": f.pval[0], "tau2": f.tau2, "I2_pct": f.I2_pct,
                "H2": f.H2, "QE": f.QE, "QEp": f.QEp, "pi_lb": pr.pi.low, "pi_ub": pr.pi.high}
        for c in cols:
            cols[c].append(vals[c])
    return {c: np.asarray(v, float) for c, v in cols.items()}


@pytest.mark.parametrize("level", [95.0, 90.0])
@pytest.mark.parametrize("test", ["z", "knha"])
@pytest.mark.parametrize("method", BATCH_METHODS)
def test_random_ragged_batch_equals_loop_of_rma(method, test, level):
    rng = np.random.default_rng(zlib.crc32(f"{method}/{test}/{level}".encode()))
    rows = _random_rows(rng, 120)
    Y, V = _padded(rows)
    fit = rma_batch(Y, V, method=method, test=test, level=level)
    want = _expected(rows, method, test, level)
    for field in BatchFit.ARRAYS:
        got = getattr(fit, field)
        ok = _close(got, want[field], LOOP_RTOL, LOOP_ATOL)
        bad = np.flatnonzero(~ok)
        assert ok.all(), (field, bad[:5], got[bad[:5]], want[field][bad[:5]])
    if method == "EE":
        assert np.isnan(fit.pi_lb).all()   # metafor gives no prediction interval here
    one = fit.k == 1
    assert (fit.tau2[one] == 0).all() and (fit.I2_pct[one] == 0).all() and (fit.H2[one] == 1).all()


def test_chunks_give_the_same_result(monkeypatch):
    rows = _random_rows(np.random.default_rng(3), 200)
    Y, V = _padded(rows)
    whole = rma_batch(Y, V, method="REML", test="knha")
    monkeypatch.setattr(rma_mod, "_BATCH_CHUNK", 3 * Y.shape[1])   # 3 rows a chunk
    chunked = rma_batch(Y, V, method="REML", test="knha")
    for field in BatchFit.ARRAYS:   # equal up to the order of floating-point summation
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-13,
                                   atol=1e-15, err_msg=field)


# Analyses of k = 10 (vi ~ U(0.01, 0.2), yi ~ N(0.3, 0.1 + vi)) where metafor 3.8-1's
# Fisher scoring oscillates and stops with "did not converge" at its default control.
# TIGHT: metafor's rma(method="REML", control=list(threshold=1e-12, tol=1e-12,
# maxiter=10000)) converges for the first two (tau2 below); the third fails even so.
OSCILLATING = [
    ([0.18038401055590497, 0.4259937943824904, -0.12695562954255935, 0.18413952035486175,
      0.5719131135700288, 0.7670946010864567, 0.5189413415552588, 0.3936027748671397,
      0.6329941794118557, 0.38473893392110375],
     [0.07787001130819617, 0.05077330123043021, 0.023034926318256543, 0.1497411510479378,
      0.1926233690773839, 0.14060379241698828, 0.18241217083378355, 0.1753697188459875,
      0.13275033014230458, 0.10929645318969247], 0.0404556854048155),
    ([0.38053369792779734, 0.9116782817155584, 0.12265389182070699, 0.2330137335191701,
      0.9746570948305355, 0.48703751371412796, 0.46719731291204536, 0.1290923079101915,
      0.44096314774970946, 0.40743481063799797],
     [0.08158117077666567, 0.11653052307559257, 0.019035505686677768, 0.138034362787043,
      0.19895394517991108, 0.07719932314696046, 0.14589829331851326, 0.17490260921202636,
      0.06549639786137501, 0.13501584427851365], 0.0148767159628262),
    ([0.5553764513206159, 0.2519457547378847, 0.10082165161481288, 0.05540093579183275,
      0.35822047453103956, 0.1923927232975775, 0.6951996531717236, 0.40292190707464604,
      0.16304308408849988, 0.35420515548241177],
     [0.11160030512977824, 0.1682417370084501, 0.17507760054186086, 0.07795182851002452,
      0.13786819210791965, 0.035020533533026796, 0.019399118955317533, 0.15695956309791448,
      0.05140945316262764, 0.08698201633661455], None),
]


def _reml_score_dense(y, v, t):
    """y'PPy - tr P with the explicit k x k projection (independent of the engine's sums)."""
    W = np.diag(1 / (v + t))
    X = np.ones((len(y), 1))
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    return y @ P @ P @ y - np.trace(P), np.trace(P @ P)


@pytest.mark.parametrize("case", range(len(OSCILLATING)))
def test_reml_converges_where_fisher_scoring_oscillates(case):
    y, v, tight = (np.asarray(a, float) if a is not None else None for a in OSCILLATING[case])
    fit = rma_batch(y[None], v[None], method="REML")
    t = fit.tau2[0]
    assert t > 0
    score, info = _reml_score_dense(y, v, t)
    assert abs(score / info) < 1e-10 * max(1.0, t)     # the Fisher step there is ~0
    assert rma(y, v).tau2 == pytest.approx(t, rel=1e-12)
    if tight is not None:
        assert t == pytest.approx(float(tight), rel=RTOL)


def test_bad_input_is_refused():
    Y = np.array([[0.1, 0.2, np.nan], [0.3, 0.1, 0.2]])
    V = np.array([[0.01, 0.02, np.nan], [0.01, 0.02, 0.03]])
    with pytest.raises(ValueError, match="vi must be >= 0"):
        rma_batch(Y, np.where(np.isfinite(V), -V, V))
    with pytest.raises(ValueError, match="at least one study"):
        rma_batch(np.vstack([Y, np.full(3, np.nan)]), np.vstack([V, np.full(3, np.nan)]))
    with pytest.raises(ValueError, match=r"\(m, k\)"):
        rma_batch(Y[0], V[0])
    with pytest.raises(ValueError, match="weights"):
        rma_batch(Y, V, method="GENQ")
    with pytest.raises(ValueError, match="test must be"):
        rma_batch(Y, V, test="t")
