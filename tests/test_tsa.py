"""Trial sequential analysis (ntxmeta.tsa): boundaries, RIS, D^2, z-curve, CI, figure.

References the tests compare against (none is a number this code produced):

- Published Lan-DeMets O'Brien-Fleming-type boundaries, two-sided alpha =
  0.05, printed to 3 decimals:
  * K = 5 equal looks: 4.877, 3.357, 2.680, 2.290, 2.031, the classic values
    of the Lan-DeMets program (Reboussin, DeMets, Kim & Lan 2000, Control
    Clin Trials 21:190; DeMets & Lan 1994, Stat Med 13:1341) as the brief
    quotes them. The printed tables themselves could not be retrieved here;
    rpact 3.3.4 gives the same 3 decimals (tests/fixtures/tsa/
    rpact_bounds.json, case obf_equal5_two_sided), so the numbers rest on
    that independent implementation.
  * K = 4 equal looks: 4.332634, 2.963129, 2.35902, 2.014057, from the
    tests of the R package GroupSeq (rpahl/GroupSeq,
    tests/testthat/test-GroupSeq.R, "computeAlphaLevel"); its 5th decimals
    differ from rpact's by up to 3.3e-5 (a coarser integration there), so
    only the 3 decimals the literature prints are compared.
  * Pocock-type, K = 5: 2.438, 2.427, 2.410, 2.397, 2.386 (rpact fixture
    pocock_equal5_two_sided; the same 3 decimals as the brief's list).
  * One-sided OBF-type, alpha = 0.05, t = (.25, .5, .75, 1): spending
    8.85754e-5 at t = .25 and Z = 3.74955, 2.53993, 2.01604, 1.72014
    (PharmCat/SeqBounds.jl README.md, a grid with h = 0.05 whose 5th
    decimals are off by up to 4e-5 against rpact; compared to 3 decimals).
- rpact 3.3.4 ``getDesignGroupSequential`` boundaries at equal and unequal
  looks (fixture made by tests/fixtures/tsa/make_fixtures.R).
- The TSA manual's worked example (Thorlund et al. 2011, the smoking
  cessation example): control event proportion 14%, a 20% relative benefit
  increment, alpha 5%, beta 20%, no heterogeneity correction: "the required
  information size to 5218 patients".
- Independent computations in this file: the crossing probabilities of the
  correlated z-statistics (corr(Z_i, Z_j) = sqrt(t_i / t_j)) by scipy's
  multivariate normal CDF; DerSimonian-Laird by its closed form; RIS and D^2
  by their formulas.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ntxmeta import tsa as T

FIXTURES = Path(__file__).parent / "fixtures" / "tsa"
RPACT = json.loads((FIXTURES / "rpact_bounds.json").read_text())

#: Agreement with rpact: both integrate numerically. At GRID_R = 32 this
#: code agrees with rpact to < 1e-7 on 4-5 looks and to 1.4e-6 on ten close
#: looks with boundaries of 4-5 (where the grid's log-spaced tails are
#: coarse; at r = 100 the difference falls to 9e-8, so it is this code's
#: grid error). 2e-6 is the brief's "accurate to ~1e-6".
RPACT_TOL = 2e-6
#: scipy's multivariate normal CDF (Genz QMC) at abseps = 5e-7 has a
#: random error of about that size; 5e-6 is far above it and far below any
#: boundary error that would matter (an error of 1e-3 in a boundary moves
#: the crossing probability by ~1e-5 at z = 2).
MVN_TOL = 5e-6


def _rounded(x, nd=3):
    return [round(float(v), nd) for v in x]


# --------------------------------------------------------------------------- published boundaries

def test_obf_five_equal_looks_equal_published_values():
    b = T.sequential_bounds(np.arange(1, 6) / 5, alpha=0.05, spending="OBF", sides=2)
    assert _rounded(b.upper) == [4.877, 3.357, 2.680, 2.290, 2.031]
    assert np.allclose(b.lower, -np.array(b.upper))


def test_obf_four_equal_looks_equal_groupseq_values():
    b = T.sequential_bounds(np.arange(1, 5) / 4)
    assert _rounded(b.upper) == _rounded([4.332634, 2.963129, 2.35902, 2.014057])


def test_pocock_five_equal_looks_equal_published_values():
    b = T.sequential_bounds(np.arange(1, 6) / 5, spending="Pocock")
    assert _rounded(b.upper) == [2.438, 2.427, 2.410, 2.397, 2.386]


def test_one_sided_obf_equals_seqbounds_readme():
    b = T.sequential_bounds([0.25, 0.5, 0.75, 1.0], alpha=0.05, sides=1)
    assert b.alpha_spent[0] == pytest.approx(8.85754e-5, rel=1e-5)
    assert _rounded(b.upper) == _rounded([3.74955, 2.53993, 2.01604, 1.72014])
    assert all(math.isinf(x) and x < 0 for x in b.lower)


@pytest.mark.parametrize("case", RPACT["cases"], ids=[c["name"] for c in RPACT["cases"]])
def test_boundaries_equal_rpact(case):
    b = T.sequential_bounds(case["t"], alpha=case["alpha"], spending=case["spending"],
                            sides=case["sides"])
    ref = np.array(case["upper"], dtype=float)
    assert np.allclose(b.upper, ref, rtol=0, atol=RPACT_TOL)


def test_every_fixture_case_is_compared():
    # the parametrised test above globs the fixture; none may silently drop out
    names = [c["name"] for c in RPACT["cases"]]
    assert len(names) == len(set(names)) == 6


# --------------------------------------------------------------------------- spending

def test_spending_functions_by_formula():
    t = np.array([0.05, 0.3, 0.5, 1.0, 1.4])
    tc = np.minimum(t, 1)
    # two-sided, alpha/2 per side (ldbounds convention)
    obf = 2 * (2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - 0.025 / 2) / np.sqrt(tc)))
    assert np.allclose(T.spending_function(t, 0.05, "OBF", sides=2), obf, rtol=1e-12)
    one = 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - 0.2 / 2) / np.sqrt(tc))
    assert np.allclose(T.spending_function(t, 0.2, "OBF", sides=1), one, rtol=1e-12)
    poc = 0.05 * np.log(1 + (np.e - 1) * tc)
    assert np.allclose(T.spending_function(t, 0.05, "Pocock", sides=2), poc, rtol=1e-12)
    assert T.spending_function(0.0, 0.05)[()] == 0.0
    assert T.spending_function(1.0, 0.05, sides=2)[()] == pytest.approx(0.05, rel=1e-13)


def _mvn_rect(t, lo, hi, mean=None):
    t = np.asarray(t, float)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    mvn = stats.multivariate_normal(mean=np.zeros(t.size) if mean is None else mean, cov=cov,
                                    allow_singular=False, abseps=5e-7, releps=0, maxpts=10**6,
                                    seed=12345)
    return float(mvn.cdf(np.asarray(hi, float), lower_limit=np.asarray(lo, float)))


@pytest.mark.parametrize("spending", T.SPENDING)
@pytest.mark.parametrize("t", [[0.2, 0.4, 0.6, 0.8, 1.0], [0.11, 0.35, 0.42, 0.77, 0.93]])
def test_alpha_spent_equals_spending_function_by_mvn(spending, t):
    b = T.sequential_bounds(t, alpha=0.05, spending=spending, sides=2)
    target = T.spending_function(t, 0.05, spending, sides=2)
    up = np.array(b.upper)
    for k in range(1, len(t) + 1):
        stay = _mvn_rect(t[:k], -up[:k], up[:k])
        assert 1 - stay == pytest.approx(target[k - 1], abs=MVN_TOL)


def test_one_sided_alpha_spent_by_mvn():
    t = [0.3, 0.55, 0.8, 1.0]
    b = T.sequential_bounds(t, alpha=0.025, sides=1)
    target = T.spending_function(t, 0.025, "OBF", sides=1)
    up = np.array(b.upper)
    for k in range(1, len(t) + 1):
        stay = _mvn_rect(t[:k], np.full(k, -np.inf), up[:k])
        assert 1 - stay == pytest.approx(target[k - 1], abs=MVN_TOL)


def test_futility_beta_spent_equals_spending_function_by_mvn():
    t = [0.25, 0.5, 0.7, 0.9]
    b = T.sequential_bounds(t, alpha=0.05, sides=2)
    f = np.array(T.futility_bounds(b, beta=0.2))
    up = np.array(b.upper)
    theta = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    mean = theta * np.sqrt(t)
    target = T.spending_function(t, 0.2, "OBF", sides=1)
    spent = 0.0
    for k in range(1, len(t) + 1):
        lo = np.concatenate([f[:k - 1], [-np.inf]])
        hi = np.concatenate([up[:k - 1], [f[k - 1]]])
        spent += _mvn_rect(t[:k], lo, hi, mean[:k])
        assert spent == pytest.approx(target[k - 1], abs=MVN_TOL)
    assert np.all(np.diff(f) > 0) and np.all(f < up)


def test_futility_closes_at_the_final_analysis():
    b = T.sequential_bounds([0.3, 0.6, 1.0])
    f = T.futility_bounds(b, beta=0.2)
    assert f[-1] == b.upper[-1]


# --------------------------------------------------------------------------- RIS and D^2

def test_ris_equals_tsa_manual_worked_example():
    # manual: Pc = 14%, 20% relative benefit increment (Pe = 16.8%), alpha 5%, beta 20%
    # -> 5218. Our parameterisation is a reduction: from 16.8% down to 14% is RRR = 1/6,
    # the same two proportions, so the same pbar and delta.
    ris = T.required_information_size(control_risk=0.168, rrr=1 - 0.14 / 0.168,
                                      alpha=0.05, beta=0.2)
    assert math.ceil(ris) == 5218


def test_ris_binary_and_continuous_by_hand():
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    pc, rrr = 0.3, 0.25
    pe = pc * (1 - rrr)
    pbar = (pc + pe) / 2
    hand = 4 * (za + zb) ** 2 * pbar * (1 - pbar) / (pc - pe) ** 2
    assert T.required_information_size(control_risk=pc, rrr=rrr) == pytest.approx(hand, rel=1e-12)
    za1 = stats.norm.ppf(0.95)
    hand1 = 4 * (za1 + zb) ** 2 * pbar * (1 - pbar) / (pc - pe) ** 2
    assert T.required_information_size(control_risk=pc, rrr=rrr, sides=1) == pytest.approx(
        hand1, rel=1e-12)
    hand_c = 4 * (za + stats.norm.ppf(0.9)) ** 2 * 12.0 ** 2 / 5.0 ** 2
    assert T.required_information_size(mid=5.0, sd=12.0, beta=0.1) == pytest.approx(hand_c,
                                                                                   rel=1e-12)


def _dl(y, v):
    w = 1 / v
    mu = np.sum(w * y) / w.sum()
    q = np.sum(w * (y - mu) ** 2)
    c = w.sum() - np.sum(w ** 2) / w.sum()
    tau2 = max(0.0, (q - (y.size - 1)) / c) if y.size > 1 else 0.0
    ws = 1 / (v + tau2)
    return np.sum(ws * y) / ws.sum(), math.sqrt(1 / ws.sum()), tau2, q


# a heterogeneous binary example: log RR, variances, participants, control arms
Y = np.array([-0.51, 0.12, -0.35, -0.02, -0.60, 0.25, -0.18])
V = np.array([0.09, 0.04, 0.06, 0.02, 0.12, 0.05, 0.03])
N = np.array([120, 260, 180, 420, 90, 200, 330])
YEAR = np.array([2004, 1998, 2010, 2004, np.nan, 2001, 2015])
EC = np.array([30, 50, 40, 100, 25, 44, 70])
NC = N // 2


def test_d2_by_hand_and_not_below_i2():
    est, se, tau2, q = _dl(Y, V)
    v_f = 1 / np.sum(1 / V)
    d2_hand = (se ** 2 - v_f) / se ** 2
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC)
    assert tau2 > 0
    assert r.d2 == pytest.approx(d2_hand, rel=1e-10)
    i2 = max(0.0, (q - (Y.size - 1)) / q)
    assert r.d2 >= i2          # Wetterslev et al. 2009: diversity >= heterogeneity
    pc = EC.sum() / NC.sum()
    assert r.control_risk == pytest.approx(pc, rel=1e-14)
    ris = T.required_information_size(control_risk=pc, rrr=0.2)
    assert r.ris == pytest.approx(ris, rel=1e-14)
    assert r.ris_adjusted == pytest.approx(ris / (1 - d2_hand), rel=1e-10)
    med = T.tsa(Y, V, N, events_ctrl=EC, n_ctrl=NC, control_risk="median")
    assert med.control_risk == pytest.approx(np.median(EC / NC), rel=1e-14)
    off = T.tsa(Y, V, N, events_ctrl=EC, n_ctrl=NC, heterogeneity_adjusted=False)
    assert off.d2 == r.d2 and off.ris_adjusted == off.ris


def test_common_effect_tsa_has_no_diversity():
    r = T.tsa(Y, V, N, events_ctrl=EC, n_ctrl=NC, method="EE")
    assert r.d2 == 0.0 and r.ris_adjusted == r.ris
    for j, lk in enumerate(r.looks):
        w = 1 / V[:j + 1]
        est = np.sum(w * Y[:j + 1]) / w.sum()
        assert lk.z == pytest.approx(est * math.sqrt(w.sum()), rel=1e-10, abs=1e-12)


def test_diversity_zero_without_heterogeneity():
    assert T.diversity(0.01, 0.01) == 0.0
    assert T.diversity(0.02, 0.015) == pytest.approx(0.25)


# --------------------------------------------------------------------------- z-curve, looks, CI

def test_cumulative_z_in_chronological_order_by_hand():
    r = T.tsa(Y, V, N, year=YEAR, labels=list("ABCDEFG"), events_ctrl=EC, n_ctrl=NC)
    # by year, ties (2004: A then D) in input order, the missing year (E) last
    order = [1, 5, 0, 3, 2, 6, 4]
    assert [lk.label for lk in r.looks] == [list("ABCDEFG")[i] for i in order]
    n_cum = np.cumsum(N[order])
    for j, lk in enumerate(r.looks):
        est, se, _, _ = _dl(Y[order][:j + 1], V[order][:j + 1])
        assert lk.estimate == pytest.approx(est, rel=1e-9, abs=1e-12)
        assert lk.z == pytest.approx(est / se, rel=1e-9, abs=1e-12)
        assert lk.n_cum == n_cum[j]
        assert lk.info_fraction == pytest.approx(n_cum[j] / r.ris_adjusted, rel=1e-12)


def test_boundaries_at_the_looks_and_beyond_the_ris():
    # a small RIS (large RRR) so that the information passes it after a few trials
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, rrr=0.45)
    t = np.array([lk.info_fraction for lk in r.looks])
    first = int(np.flatnonzero(t >= 1)[0])
    assert 0 < first < len(t) - 1
    t_b = np.r_[t[:first], 1.0]
    b = T.sequential_bounds(t_b)
    got = np.array([lk.upper for lk in r.looks])
    assert np.allclose(got[:first + 1], b.upper, rtol=0, atol=1e-12)
    # past the RIS the conventional boundary applies
    assert np.allclose(got[first + 1:], stats.norm.ppf(0.975), rtol=0, atol=1e-12)
    assert np.allclose([lk.lower for lk in r.looks][:first + 1], -np.array(b.upper))
    # once the RIS is reached the adjusted CI is the conventional one
    c = stats.norm.ppf(0.975)
    assert r.critical_value == pytest.approx(c, rel=1e-12)
    assert r.ci_adjusted.low == pytest.approx(r.estimate - c * r.se, rel=1e-12)
    assert r.conclusion in ("firm evidence of effect", T.CONCLUSIONS[2])


def test_adjusted_ci_by_hand_before_the_ris():
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, rrr=0.1)
    assert r.info_fraction < 1
    est, se, _, _ = _dl(Y, V)
    # the boundary at the last look, recomputed from the looks' information fractions
    b = T.sequential_bounds([lk.info_fraction for lk in r.looks]).upper[-1]
    assert r.critical_value == pytest.approx(b, rel=1e-12)
    assert r.critical_value > stats.norm.ppf(0.975)
    assert r.ci_adjusted.low == pytest.approx(est - b * se, rel=1e-9)
    assert r.ci_adjusted.high == pytest.approx(est + b * se, rel=1e-9)
    assert r.conclusion == "not conclusive" and r.crossed is None


def test_crossing_gives_firm_evidence():
    # consistent, precise benefit: crosses the lower boundary early
    y = np.full(6, -0.5)
    v = np.full(6, 0.01)
    n = np.full(6, 400)
    r = T.tsa(y, v, n, events_ctrl=np.full(6, 80), n_ctrl=np.full(6, 200))
    first = next(i for i, lk in enumerate(r.looks) if lk.z <= lk.lower)
    assert r.crossed.boundary == "lower" and r.crossed.look == first
    assert r.conclusion == "firm evidence of effect"
    row = T.table_row(r)
    assert row["crossed"] == f"lower at {r.looks[first].label}"
    assert row["ris"] == math.ceil(r.ris_adjusted)
    assert row["ci_adjusted_high"] == pytest.approx(math.exp(r.ci_adjusted.high))


def test_futility_wedge_crossed():
    # no effect at all, large trials: inside the wedge before the RIS
    y = np.array([0.01, -0.01, 0.0, 0.005, -0.004, 0.002])
    v = np.full(6, 0.004)
    n = np.full(6, 300)
    r = T.tsa(y, v, n, events_ctrl=np.full(6, 60), n_ctrl=np.full(6, 150), rrr=0.2,
              futility=True)
    assert r.crossed is not None and r.crossed.boundary == "futility"
    lk = r.looks[r.crossed.look]
    assert abs(lk.z) < lk.futility_upper and lk.futility_lower == -lk.futility_upper
    assert r.conclusion == "futility boundary crossed"


def test_continuous_smd_uses_mid():
    y = np.array([-0.2, -0.3, -0.1])
    v = np.array([0.02, 0.03, 0.025])
    n = np.array([200, 150, 180])
    r = T.tsa(y, v, n, measure="SMD", mid=0.3)
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    assert r.ris == pytest.approx(4 * (za + zb) ** 2 / 0.3 ** 2, rel=1e-12)
    assert math.isnan(r.control_risk) and r.mid == 0.3 and r.sd == 1.0


def test_one_sided_tsa_tests_benefit():
    y = np.full(4, -0.1)
    v = np.full(4, 0.02)
    r = T.tsa(y, v, np.full(4, 300), events_ctrl=np.full(4, 60), n_ctrl=np.full(4, 150),
              sides=1, futility=True, rrr=0.15)
    t = [lk.info_fraction for lk in r.looks]
    assert t[-1] < 1
    b = T.sequential_bounds(t, sides=1, alpha=0.05)
    f = T.futility_bounds(b, beta=0.2)
    assert all(math.isnan(lk.upper) for lk in r.looks)
    # benefit is z < 0: the monitoring boundary is below, the futility boundary above
    assert np.allclose([lk.lower for lk in r.looks], -np.array(b.upper))
    assert np.allclose([lk.futility_lower for lk in r.looks], -np.array(f))
    assert math.isinf(r.ci_adjusted.low) and r.ci_adjusted.low < 0
    assert r.ci_adjusted.high == pytest.approx(r.estimate + b.upper[-1] * r.se, rel=1e-12)


def test_json_round_trip():
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, futility=True)
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = T.TSAResult.from_dict(json.loads(text))
    assert back.to_dict() == d
    assert isinstance(back.looks[0], T.TSALook)
    assert back.ci_adjusted.low == r.ci_adjusted.low


def test_twenty_trials_well_under_100_ms():
    rng = np.random.default_rng(7)
    k = 20
    n = rng.integers(40, 400, k)
    y = rng.normal(-0.15, 0.25, k)
    v = 4.0 / n
    T.tsa(y, v, n, events_ctrl=n // 4, n_ctrl=n // 2, futility=True)  # warm up imports
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        T.tsa(y, v, n, events_ctrl=n // 4, n_ctrl=n // 2, futility=True, rrr=0.1)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.1


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, message", [
    (dict(yi=[], vi=[], n=[]), "at least one trial"),
    (dict(alpha=0.0), "alpha must be in \\(0, 1\\)"),
    (dict(alpha=1.5), "alpha must be in \\(0, 1\\)"),
    (dict(beta=1.0), "beta must be in \\(0, 1\\)"),
    (dict(rrr=0.0), "rrr .* must be in \\(0, 1\\)"),
    (dict(rrr=1.2), "rrr .* must be in \\(0, 1\\)"),
    (dict(spending="linear"), "spending must be one of"),
    (dict(sides=3), "sides must be 1 or 2"),
    (dict(n=[100, 0, 50]), "trial 2 has n = 0.0"),
    (dict(vi=[0.1, -0.1, 0.1]), "trial 2 has vi"),
    (dict(measure="SMD"), "needs mid"),
    (dict(events_ctrl=None), "needs events_ctrl"),
    (dict(control_risk=1.2), "control_risk must be in \\(0, 1\\)"),
    (dict(labels=["a"]), "labels has 1 entries for 3 trials"),
])
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    args = dict(yi=[-0.1, 0.2, -0.3], vi=[0.1, 0.1, 0.1], n=[100, 120, 50],
                events_ctrl=[10, 12, 5], n_ctrl=[50, 60, 25])
    args.update(kwargs)
    yi, vi, n = args.pop("yi"), args.pop("vi"), args.pop("n")
    with pytest.raises(ValueError, match=message):
        T.tsa(yi, vi, n, **args)


@pytest.mark.parametrize("t, message", [
    ([0.2, 0.2, 0.5], "strictly increasing: look 2"),
    ([0.5, 0.3], "strictly increasing"),
    ([0.0, 0.5], "must lie in \\(0, 1\\]"),
    ([0.5, 1.2], "must lie in \\(0, 1\\]"),
    ([], "at least one look"),
])
def test_bad_information_fractions(t, message):
    with pytest.raises(ValueError, match=message):
        T.sequential_bounds(t)


# --------------------------------------------------------------------------- figure

def _by_gid(fig):
    ax = fig.axes[0]
    return {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}


def test_figure_draws_the_tsa_elements():
    from ntxmeta.tsaplots import plot_tsa
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, futility=True, rrr=0.35)
    fig = plot_tsa(r, title="Relapse", favours=("Favours naltrexone", "Favours placebo"))
    lines = _by_gid(fig)
    zc = lines["z_curve"]
    assert np.allclose(zc.get_xdata(), np.r_[0, [lk.n_cum for lk in r.looks]])
    assert np.allclose(zc.get_ydata(), np.r_[0, [lk.z for lk in r.looks]])
    assert zc.get_marker() == "o"
    ris = lines["ris"]
    assert np.allclose(ris.get_xdata(), r.ris_adjusted)
    assert f"RIS = {math.ceil(r.ris_adjusted):,}" in [t.get_text() for t in fig.axes[0].texts]
    c = stats.norm.ppf(0.975)
    assert np.allclose(lines["conventional_upper"].get_ydata(), c)
    assert lines["conventional_upper"].get_linestyle() == "--"
    assert np.allclose(lines["conventional_lower"].get_ydata(), -c)
    up = np.array([lk.upper for lk in r.looks])
    n_cum = np.array([lk.n_cum for lk in r.looks])
    reached = np.flatnonzero(n_cum >= r.ris_adjusted)
    # the line runs to the look that reached the RIS; later looks are bars at their own x
    ok = np.isfinite(up) & (np.arange(len(up)) <= (reached[0] if reached.size else len(up)))
    assert np.allclose(lines["boundary_upper"].get_ydata(), up[ok])
    assert np.allclose(lines["boundary_upper"].get_xdata(),
                       np.minimum([lk.n_cum for lk in r.looks], r.ris_adjusted)[ok])
    assert lines["boundary_upper"].get_linestyle() == "-"
    assert np.allclose(lines["boundary_lower"].get_ydata(), -up[ok])
    fu = np.array([lk.futility_upper for lk in r.looks])
    assert np.allclose(lines["futility_upper"].get_ydata(), fu[np.isfinite(fu)])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(s.startswith("RIS = ") for s in legend)
    assert fig.axes[0].get_title() == "Relapse"


def test_figure_without_futility_has_no_wedge():
    from ntxmeta.tsaplots import plot_tsa
    r = T.tsa(Y, V, N, events_ctrl=EC, n_ctrl=NC)
    lines = _by_gid(plot_tsa(r))
    assert "futility_upper" not in lines and "boundary_upper" in lines


def test_hartung_knapp_z_curve_and_t_critical_value_past_the_ris():
    """With test="knha" the z-curve uses the HK standard error (rma_batch, checked against
    metafor) and, once the RIS is reached, the boundary is t with k - 1 df."""
    from ntxmeta.rma import rma
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, rrr=0.45, test="knha",
              method="REML")
    order = np.argsort(YEAR, kind="stable")
    ys, vs = Y[order], V[order]
    for i, lk in enumerate(r.looks):
        if i == 0:
            continue
        fit = rma(ys[:i + 1], vs[:i + 1], method="REML", test="knha")
        assert lk.z == pytest.approx(fit.estimate / fit.se, rel=1e-9)
    t = np.array([lk.info_fraction for lk in r.looks])
    first = int(np.flatnonzero(t >= 1)[0])
    for i in range(first + 1, len(t)):
        assert r.looks[i].upper == pytest.approx(stats.t.ppf(0.975, i), rel=1e-12)
    assert r.critical_value == pytest.approx(stats.t.ppf(0.975, len(t) - 1), rel=1e-12)
    # before the RIS: the spending boundary, never below the t value of that look
    b = T.sequential_bounds(np.r_[t[:first], 1.0])
    for i in range(first + 1):
        tq = stats.t.ppf(0.975, i) if i > 0 else stats.norm.ppf(0.975)
        assert r.looks[i].upper == pytest.approx(max(b.upper[i], tq), rel=1e-12)
    # D^2 stays the Wald one
    wald = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, rrr=0.45, method="REML")
    assert r.d2 == pytest.approx(wald.d2, rel=1e-12)


def test_figure_draws_the_boundary_of_looks_past_the_ris_at_their_own_x():
    from ntxmeta.tsaplots import plot_tsa
    r = T.tsa(Y, V, N, year=YEAR, events_ctrl=EC, n_ctrl=NC, rrr=0.45)
    t = np.array([lk.info_fraction for lk in r.looks])
    first = int(np.flatnonzero(t >= 1)[0])
    fig = plot_tsa(r)
    lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines() if ln.get_gid()}
    past = lines["conventional_past_ris_upper"]
    assert list(past.get_xdata()) == [lk.n_cum for lk in r.looks[first + 1:]]
    assert np.allclose(past.get_ydata(), stats.norm.ppf(0.975))
    assert max(lines["boundary_upper"].get_xdata()) == pytest.approx(r.ris_adjusted)
