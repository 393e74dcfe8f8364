"""Leave-one-out, influence and cumulative meta-analysis (ntxmeta.diagnostics).

Two kinds of evidence:

* the vendored metafor 3.8-1 references (``leave1out``, ``influence``,
  ``cumul`` of every case in tests/fixtures/oracle), compared with the rule of
  oracle_util (rtol 1e-4 for REML, which metafor ran with its default
  control, 1e-6 for DL). The sections replay metafor's default stopping
  rule, so metafor's failed fits (NA rows of nielweise2007_OR's cumul.REML)
  are matched too;
* independent computations: row i of a leave-one-out batch against a fresh
  ``ntxmeta.rma.rma`` fit without study i, row j of a cumulative batch
  against ``rma`` on the first j studies, the influence diagnostics against
  their definitions evaluated on such refits. ``rma`` fits one explicit
  data set with its own code (Fisher scoring from HE, O(k p^2) projections),
  while the batch uses power series in tau^2 and Newton steps, so agreement
  to REFIT_RTOL is a real check. Both converge to 1e-13 in tau^2.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import ntxmeta.diagnostics as dg
from ntxmeta.analyse import analyse_data
from ntxmeta.data import load_spec
from ntxmeta.rma import METAFOR_DEFAULT, rma
from oracle_util import cases, compare, load, normalise

CASES = cases()
SECTIONS = ("leave1out", "influence", "cumul")
#: Batch vs one-by-one refits: both are converged to 1e-13 in tau^2, so
#: only rounding in a different order of summation separates them.
REFIT_RTOL = 1e-9
REFIT_ATOL = 1e-12
#: Methods the batch computes itself (series) and those it takes from
#: rma_batch on explicit subsets.
ALL_METHODS = dg.SERIES_METHODS + dg.BATCH_METHODS


def _case_data(case):
    _, data = load_spec(case / "spec.json")
    u = data.used
    return data, data.yi[u], data.vi[u]


@pytest.fixture(scope="module")
def results():
    out = {}
    for case in CASES:
        _, data = load_spec(case / "spec.json")
        out[case.name] = normalise(analyse_data(data, only=",".join(SECTIONS)))
    return out


# --------------------------------------------------------------------------- metafor references

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sections_match_metafor(results, case):
    ref = load(case / "out.json")
    t = compare(ref, results[case.name], sections=list(SECTIONS))
    assert not t.missing, f"missing: {t.missing[:10]}"
    assert not t.wrong, f"wrong (path, metafor, ntxmeta): {t.wrong[:10]}"
    # no section of the reference silently drops out of the comparison
    present = {s for s in SECTIONS if isinstance(ref.get(s), dict)}
    assert present <= t.compared_top
    assert t.ok + t.errors_matched > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cumul_only_with_a_year_column(results, case):
    """No year column, no cumul section (the builder returns None)."""
    ref = load(case / "out.json")
    assert (ref.get("cumul") is not None) == isinstance(results[case.name].get("cumul"), dict)


def test_metafor_failures_are_na_rows(results):
    """metafor's Fisher scoring does not converge on 3 prefixes of nielweise2007_OR."""
    ref = load(CASES[0].parent / "nielweise2007_OR" / "out.json")["cumul"]["REML"]
    got = results["nielweise2007_OR"]["cumul"]["REML"]
    na_ref = [math.isnan(x) for x in ref["tau2"]]
    assert sum(na_ref) == 3
    for key in ("estimate", "se", "Q", "tau2", "I2"):
        assert [math.isnan(x) for x in got[key]] == na_ref


def test_metafor_mode_needs_the_full_fit_to_converge():
    """The first 7 nielweise2007_OR studies by year: metafor's rma(method="REML") itself
    stops with 'Fisher scoring algorithm did not converge' (checked in R 4.2.2,
    metafor 3.8-1), so leave1out(), influence() and cumul() of that fit fail too."""
    data, y, v = _case_data(CASES[0].parent / "nielweise2007_OR")
    idx = dg.stable_order(data.year[data.used])[:7]
    ys, vs = y[idx], v[idx]
    for fn in (dg.leave1out, dg.influence, dg.cumulative):
        with pytest.raises(ValueError, match="Fisher scoring algorithm did not converge"):
            fn(ys, vs, control=METAFOR_DEFAULT)
    full = dg.cumulative(ys, vs)  # fully converged: every row, the last one too
    _assert_fit_equal(_row(full, 6), rma(ys, vs), "first 7 studies")


# --------------------------------------------------------------------------- independent refits

def _assert_fit_equal(row, fit, what):
    got = {"estimate": row["estimate"], "se": row["se"], "pval": row["pval"],
           "ci_lb": row["ci_lb"], "ci_ub": row["ci_ub"], "tau2": row["tau2"], "Q": row["Q"],
           "Qp": row["Qp"], "I2": row["I2"], "H2": row["H2"], "stat": row["stat"]}
    want = {"estimate": fit.estimate, "se": fit.se[0], "pval": fit.pval[0],
            "ci_lb": fit.ci_lb[0], "ci_ub": fit.ci_ub[0], "tau2": fit.tau2, "Q": fit.QE,
            "Qp": fit.QEp, "I2": fit.I2_pct, "H2": fit.H2, "stat": fit.stat[0]}
    for key, w in want.items():
        np.testing.assert_allclose(got[key], w, rtol=REFIT_RTOL, atol=REFIT_ATOL,
                                   err_msg=f"{what}: {key}")


def _row(res, i):
    return {"estimate": res.estimate[i], "se": res.se[i], "pval": res.pval[i],
            "ci_lb": res.ci_lb[i], "ci_ub": res.ci_ub[i], "tau2": res.tau2[i], "Q": res.Q[i],
            "Qp": res.Qp[i], "I2": res.I2_pct[i], "H2": res.H2[i], "stat": res.stat[i]}


def _check_leave1out(y, v, method, test="z", level=95.0):
    res = dg.leave1out(y, v, method=method, test=test, level=level)
    assert res.k.tolist() == [y.size - 1] * y.size
    for i in range(y.size):
        fit = rma(np.delete(y, i), np.delete(v, i), method=method, test=test, level=level)
        _assert_fit_equal(_row(res, i), fit, f"{method} {test} without study {i}")


def _check_cumulative(y, v, order, method, test="z"):
    res = dg.cumulative(y, v, order, method=method, test=test)
    idx = res.order
    for j in range(y.size):
        fit = rma(y[idx[:j + 1]], v[idx[:j + 1]], method=method, test=test)
        _assert_fit_equal(_row(res, j), fit, f"{method} {test} first {j + 1} studies")


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "single_GEN"],
                         ids=[c.name for c in CASES if c.name != "single_GEN"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_leave1out_equals_refits(case, method):
    _, y, v = _case_data(case)
    _check_leave1out(y, v, method)


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "single_GEN"],
                         ids=[c.name for c in CASES if c.name != "single_GEN"])
@pytest.mark.parametrize("method", ("REML", "DL"))
def test_leave1out_knha_equals_refits(case, method):
    _, y, v = _case_data(case)
    _check_leave1out(y, v, method, test="knha", level=90.0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_cumulative_equals_refits_in_year_order(case, method):
    data, y, v = _case_data(case)
    year = data.year[data.used] if data.year is not None else None
    _check_cumulative(y, v, year, method)


def _simulated(k, seed, tau2=0.1):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, k)
    return rng.normal(0.3, np.sqrt(tau2 + v)), v


@pytest.mark.parametrize("method", ("REML", "ML", "EB", "DL", "HE"))
def test_large_batches_equal_refits(method):
    """k = 600: cumulative analyses beyond CUMUL_DIRECT_BELOW use the series."""
    y, v = _simulated(600, seed=3)
    rows = [0, 1, 57, 255, 256, 300, 599]
    loo = dg.leave1out(y, v, method=method)
    cum = dg.cumulative(y, v, method=method)
    for i in rows:
        _assert_fit_equal(_row(loo, i), rma(np.delete(y, i), np.delete(v, i), method=method),
                          f"leave-one-out {i}")
        _assert_fit_equal(_row(cum, i), rma(y[:i + 1], v[:i + 1], method=method),
                          f"cumulative {i}")


def test_chunked_prefix_moments_equal_refits(monkeypatch):
    """Tiny blocks and no moment cache force many chunks, carries and direct blocks."""
    monkeypatch.setattr(dg, "MOMENT_CACHE_ENTRIES", 0)
    monkeypatch.setattr(dg, "BLOCK_ENTRIES", 97)
    monkeypatch.setattr(dg, "CHUNK_MAX", 13)
    monkeypatch.setattr(dg, "CUMUL_DIRECT_BELOW", 5)
    y, v = _simulated(120, seed=4)
    _check_cumulative(y, v, None, "REML")
    _check_leave1out(y, v, "REML")


def test_direct_sums_only_equal_refits(monkeypatch):
    """RHO_MAX = 0 sends every analysis off the centre to direct summation."""
    monkeypatch.setattr(dg, "RHO_MAX", 0.0)
    y, v = _simulated(40, seed=5)
    _check_leave1out(y, v, "REML")
    _check_cumulative(y, v, None, "REML")


def test_dominant_study_is_summed_directly():
    """A study with nearly all the weight: 'full minus own' would cancel."""
    y, v = _simulated(30, seed=6, tau2=0.0)
    v[7] = 1e-7
    _check_leave1out(y, v, "REML")
    _check_leave1out(y, v, "DL")


def test_outlier_far_from_centre():
    """An outlier moves tau^2 far from the full-data value when it is left out."""
    y, v = _simulated(50, seed=7, tau2=0.01)
    y[3] = 4.0
    _check_leave1out(y, v, "REML")
    _check_cumulative(y, v, None, "REML")


@pytest.mark.parametrize("shape", ("drift", "outlier"))
def test_lattice_centres_equal_refits(monkeypatch, shape):
    """tau^2 far from the full-data value for hundreds of analyses: lattice centres serve them."""
    made = []
    add = dg._SubsetSums._add_lattice_centres

    def spy(self, t, rows):
        out = add(self, t, rows)
        made.append(len(self._lattice))
        return out

    monkeypatch.setattr(dg._SubsetSums, "_add_lattice_centres", spy)
    monkeypatch.setattr(dg, "LATTICE_BREAK_EVEN", 1)  # at k = 700 they would rarely pay
    rng = np.random.default_rng(9)
    k = 700
    v = rng.uniform(0.01, 0.2, k)
    if shape == "drift":  # homogeneous first half, heterogeneous second half
        y = np.r_[rng.normal(0.3, np.sqrt(v[:k // 2])), rng.normal(0.3, np.sqrt(0.5 + v[k // 2:]))]
    else:
        y = rng.normal(0.3, np.sqrt(0.01 + v))
        y[300] = 30.0
    cum = dg.cumulative(y, v)
    assert max(made, default=0) >= 2
    for j in range(dg.CUMUL_DIRECT_BELOW, k, 3):
        _assert_fit_equal(_row(cum, j), rma(y[:j + 1], v[:j + 1]), f"{shape}: first {j + 1}")
    loo = dg.leave1out(y, v)
    for i in (0, 299, 300, 301, k - 1):
        _assert_fit_equal(_row(loo, i), rma(np.delete(y, i), np.delete(v, i)), f"{shape}: -{i}")


def test_identical_effects_give_q_zero():
    y, v = np.full(6, 0.3), np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    res = dg.leave1out(y, v)
    np.testing.assert_allclose(res.Q, 0.0, atol=1e-20)
    np.testing.assert_array_equal(res.tau2, 0.0)
    np.testing.assert_allclose(res.estimate, 0.3, rtol=1e-15)


# --------------------------------------------------------------------------- influence

@pytest.mark.parametrize("case", [c for c in CASES if c.name != "single_GEN"],
                         ids=[c.name for c in CASES if c.name != "single_GEN"])
@pytest.mark.parametrize("test", ("z", "knha"))
def test_influence_from_refits(case, test):
    """Each diagnostic from its definition, with the deleted fits done one by one by rma()."""
    _, y, v = _case_data(case)
    full = rma(y, v, test=test)
    vb = full.se[0] ** 2
    if not vb > 0:
        with pytest.raises(ValueError, match="variance of the pooled estimate is 0"):
            dg.influence(y, v, test=test)
        return
    inf = dg.influence(y, v, test=test)
    k = y.size
    w = 1 / (v + full.tau2)
    for i in range(k):
        d = rma(np.delete(y, i), np.delete(v, i), test=test)
        s2w = d.s2w
        hat = w[i] / w.sum()
        dfb = full.estimate - d.estimate
        resid = y[i] - d.estimate
        resid = 0.0 if abs(resid) < 100 * np.finfo(float).eps else resid
        want = {
            "rstudent": resid / math.sqrt(s2w * (v[i] + d.tau2) + d.se[0] ** 2),
            "dffits": dfb / math.sqrt(s2w * hat * (d.tau2 + v[i])),
            "dfbetas": dfb / math.sqrt(s2w / np.sum(1 / (v + d.tau2))),
            "cook_d": dfb**2 / vb,
            "cov_r": d.se[0] ** 2 / vb,
            "tau2_del": d.tau2, "QE_del": d.QE, "hat": hat, "weight_pct": 100 * hat,
        }
        for key, val in want.items():
            np.testing.assert_allclose(getattr(inf, key)[i], val, rtol=REFIT_RTOL, atol=1e-12,
                                       err_msg=f"{case.name} study {i} {key}")
    flags = ((np.abs(inf.dffits) > 3 * math.sqrt(1 / (k - 1)))
             | (inf.cook_d > 0.454936423119572)  # chi^2_1 median
             | (inf.hat > 3 / k) | (np.abs(inf.dfbetas) > 1))
    assert inf.is_infl.filled(False).tolist() == flags.tolist()


def test_r_or_is_three_valued():
    nan = np.nan
    x = np.array([1.0, nan, nan, 1.0])
    got = dg._r_or(np.array([True, False, False, False]), x,
                   np.array([False, True, False, False]), np.array([0.0, 0.0, 0.0, 0.0]))
    assert got.filled(False).tolist() == [True, True, False, False]
    assert got.mask.tolist() == [False, False, True, False]


# --------------------------------------------------------------------------- refusals and order

def test_k1_refusals_as_metafor():
    with pytest.raises(ValueError, match="Stopped because k = 1."):
        dg.leave1out([0.2], [0.01])
    with pytest.raises(ValueError, match="Stopped because k = 1."):
        dg.influence([0.2], [0.01])
    one = dg.cumulative([0.2], [0.01])  # metafor's cumul() accepts k = 1
    assert one.estimate.tolist() == [0.2]
    assert (one.Q[0], one.Qp[0], one.tau2[0], one.I2_pct[0], one.H2[0]) == (0, 1, 0, 0, 1)
    np.testing.assert_allclose(one.se, 0.1)


def test_k2_leave1out_are_one_study_fits():
    res = dg.leave1out([0.1, 0.5], [0.01, 0.04], test="knha")
    np.testing.assert_allclose(res.estimate, [0.5, 0.1])
    np.testing.assert_allclose(res.se, [0.2, 0.1])
    assert res.df is not None and np.all(np.isnan(res.df))  # knha falls back to z
    np.testing.assert_array_equal(res.Qp, 1.0)


@pytest.mark.parametrize("bad, match", [
    (dict(yi=[0.1, np.nan], vi=[0.1, 0.1]), "finite"),
    (dict(yi=[0.1, 0.2], vi=[0.1, 0.0]), "> 0"),
    (dict(yi=[0.1, 0.2], vi=[0.1]), "equal length"),
    (dict(yi=[], vi=[]), "no studies"),
    (dict(yi=[0.1, 0.2], vi=[0.1, 0.1], method="GENQ"), "user weights"),
    (dict(yi=[0.1, 0.2], vi=[0.1, 0.1], method="XX"), "unknown method"),
    (dict(yi=[0.1, 0.2], vi=[0.1, 0.1], test="t"), "test must be"),
    (dict(yi=[0.1, 0.2], vi=[0.1, 0.1], level=0), "level"),
])
def test_bad_input_is_a_clear_error(bad, match):
    for fn in (dg.leave1out, dg.influence, dg.cumulative):
        with pytest.raises(ValueError, match=match):
            fn(**bad)


def test_control_must_be_a_control_object():
    """The strings of a spec are translated where the spec is read, not here."""
    for fn in (dg.leave1out, dg.influence, dg.cumulative):
        with pytest.raises(TypeError, match="Control"):
            fn([0.1, 0.2], [0.1, 0.1], control="metafor")


def test_stable_order_ties_and_missing_last():
    keys = [2001, np.nan, 1999, 2001, 1999, np.nan, 2000]
    assert dg.stable_order(keys).tolist() == [2, 4, 6, 0, 3, 1, 5]
    with pytest.raises(ValueError, match="order has"):
        dg.cumulative([0.1, 0.2], [0.1, 0.1], [2000])


# --------------------------------------------------------------------------- cost

def test_work_is_linear_in_k(monkeypatch):
    """k = 5,000: only a handful of analyses are summed directly (O(k) each)."""
    counted = {"loo": 0, "cumul": 0}
    direct = dg._SubsetSums._direct

    def spy(self, rows, t, T, L, out):
        counted[self.kind] = counted.get(self.kind, 0) + int(
            rows.size * self.k if self.kind == "loo" else (rows + 1).sum())
        return direct(self, rows, t, T, L, out)

    monkeypatch.setattr(dg._SubsetSums, "_direct", spy)
    y, v = _simulated(5000, seed=8)
    dg.leave1out(y, v)
    dg.cumulative(y, v)
    # numbers touched by direct sums, over all iterations: a few k, not k^2 = 2.5e7
    assert counted["loo"] <= 20 * 5000
    assert counted["cumul"] <= 40 * dg.CUMUL_DIRECT_BELOW**2
