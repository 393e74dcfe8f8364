"""Mantel-Haenszel and Peto (``ntxmeta.binary``) against metafor 3.8-1 and by hand.

Conformance: every vendored oracle case whose measure is binary (RR, OR,
RD) is discovered by globbing; every number under ``common.MH.*`` and
``common.Peto`` of its ``out.json`` is compared with compare.py's rule,
|ours - metafor| <= 1e-9 + 1e-6 |metafor|: the references are written with
15 significant digits and these estimators are closed-form (no iteration),
so anything looser than 1e-6 would hide a wrong formula, not rounding. NA
in the reference must be NaN here; an ``{"error": ...}`` must be an error.
(Observed worst relative difference: 3e-12, a p-value of 2e-30.)

Independent checks: statsmodels' ``StratifiedTable`` (MH OR, its SE, the
MH test, Breslow-Day, Tarone, MH RR point estimate), scipy's hypergeometric
moments (Peto, CMH), per-table root finding (Breslow-Day expected counts),
and the single-table reductions of the variance formulas to escalc's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import StratifiedTable

from ntxmeta._common import MetaError
from ntxmeta.binary import (
    WARN_YI_NA, Tables, breslow_day, common_binary_section, mantel_haenszel, peto,
    peto_effects,
)
from ntxmeta.data import analysis_data, load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"
BINARY = ("RR", "OR", "RD")
#: compare.py's rule for closed-form results (see the module docstring).
RTOL, ATOL = 1e-6, 1e-9
#: Keys of the reference that carry no number to compare.
NOT_NUMBERS = {"warnings", "note", "measure"}
NA = {"NA": math.nan, "NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


def _binary_specs() -> list[Path]:
    specs = sorted(FIXTURES.glob("*/spec.json"))
    return [p for p in specs
            if str(json.loads(p.read_text())["measure"]).upper() in BINARY]


SPECS = _binary_specs()


def _load_reference(spec: Path) -> dict:
    def fix(o):
        if isinstance(o, dict):
            return {k: fix(v) for k, v in o.items()}
        if isinstance(o, list):
            return [fix(v) for v in o]
        if o is None:
            return math.nan
        return NA.get(o, o) if isinstance(o, str) else o
    ref = fix(json.loads((spec.parent / "out.json").read_text()))
    return {"MH": ref["common"]["MH"], "Peto": ref["common"]["Peto"]}


def _ours(spec: Path) -> dict:
    return common_binary_section(load_spec(spec)[1])


def _leaves(ref, path=()):
    """(path, value) for every leaf of the reference below ``path``."""
    if isinstance(ref, dict):
        if "error" in ref:
            yield path, ref
            return
        for key, val in ref.items():
            yield from _leaves(val, path + (key,))
    else:
        yield path, ref


def _get(d, path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            raise KeyError(".".join(path))
        d = d[key]
    return d


def _close(ref: float, ours) -> bool:
    ours = float(ours)
    if math.isnan(ref):
        return math.isnan(ours)
    if math.isinf(ref):
        return ours == ref
    return math.isfinite(ours) and abs(ours - ref) <= ATOL + RTOL * abs(ref)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_every_number_matches_metafor(spec):
    ref, ours = _load_reference(spec), _ours(spec)
    compared, wrong = 0, []
    for path, val in _leaves(ref):
        if path[-1] in NOT_NUMBERS:
            continue
        got = _get(ours, path)
        if isinstance(val, dict):  # metafor refused
            assert isinstance(got, dict) and "error" in got, f"{path}: metafor error, ours {got}"
            continue
        vals = val if isinstance(val, list) else [val]
        gots = list(np.atleast_1d(np.asarray(got, dtype=float)))
        assert len(gots) == len(vals), f"{'.'.join(path)}: length {len(gots)} vs {len(vals)}"
        for i, (r, g) in enumerate(zip(vals, gots)):
            compared += 1
            if not _close(float(r), g):
                wrong.append(f"{'.'.join(path)}[{i}]: metafor {r!r}, ours {g!r}")
    assert not wrong, "\n".join(wrong)
    # 4 fits x 13 scalars, 3 MH x 8 tests (NA for RR, RD), 3 exp blocks x 3,
    # 4 fits x yi, vi of k rows: the comparison can never silently shrink.
    k_rows = len(load_spec(spec)[1].slab)
    assert compared == 4 * 13 + 3 * 8 + 3 * 3 + 4 * 2 * k_rows


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_no_reference_key_is_missing(spec):
    """A key of metafor's output that we do not write would drop out of the comparison."""
    ref, ours = _load_reference(spec), _ours(spec)
    missing = []
    for path, _ in _leaves(ref):
        try:
            _get(ours, path)
        except KeyError:
            missing.append(".".join(path))
    assert not missing, f"absent from our output: {missing}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_labels_and_warnings_as_metafor(spec):
    ref, ours = _load_reference(spec), _ours(spec)
    for fit_path in [("MH", m) for m in BINARY] + [("Peto",)]:
        r, o = _get(ref, fit_path), _get(ours, fit_path)
        assert o["measure"] == r["measure"]
        assert o.get("warnings") == r.get("warnings"), ".".join(fit_path)


def test_discovered_cases_cover_the_edge_cases():
    """The glob must reach a zero-cell case with a double-zero table and k = 2 and k = 3.

    Found by content, not by name, so that renaming a fixture cannot drop one.
    """
    assert SPECS, f"no binary oracle cases under {FIXTURES}"
    ks, double_zero = set(), False
    for spec in SPECS:
        cells = load_spec(spec)[1].cells
        ks.add(len(cells.ai))
        double_zero |= bool(np.any((cells.ai == 0) & (cells.ci == 0)))
    assert {2, 3} <= ks
    assert double_zero


def test_double_zero_table_counts_in_k_not_in_k_yi():
    spec = next(s for s in SPECS if np.any(
        (lambda c: (c.ai == 0) & (c.ci == 0))(load_spec(s)[1].cells)))
    section = _ours(spec)
    for fit in (*section["MH"].values(), section["Peto"]):
        assert fit["k"] == fit["k.yi"] + 1
        assert np.isnan(np.asarray(fit["yi"], dtype=float)).sum() == 1
        assert fit["warnings"] == [WARN_YI_NA]


# --------------------------------------------------------------------------- by hand

# Three tables, all cells > 0 and both outcomes in every table: here
# statsmodels and metafor agree on what Breslow-Day includes (all k tables,
# df = k - 1); with a degenerate table statsmodels gives NaN (see below).
A = np.array([12.0, 5, 30])
B = np.array([88.0, 45, 170])
C = np.array([20.0, 9, 33])
D = np.array([80.0, 41, 117])


def _stratified():
    return StratifiedTable(np.array([[A, B], [C, D]]))


def test_mh_or_matches_statsmodels():
    fit, st = mantel_haenszel(A, B, C, D, measure="OR"), _stratified()
    assert fit.estimate == pytest.approx(st.logodds_pooled, rel=1e-12)
    assert fit.se == pytest.approx(st.logodds_pooled_se, rel=1e-12)
    lo, hi = st.logodds_pooled_confint(alpha=0.05)
    assert (fit.ci.low, fit.ci.high) == pytest.approx((lo, hi), rel=1e-12)


def test_mh_rr_point_matches_statsmodels():
    # statsmodels has the MH RR but no variance for it; the SE is checked below.
    fit = mantel_haenszel(A, B, C, D, measure="RR")
    assert fit.exp_estimate == pytest.approx(_stratified().riskratio_pooled, rel=1e-12)


def test_cmh_tests_match_statsmodels_and_hypergeometric_moments():
    fit = mantel_haenszel(A, B, C, D, measure="OR")
    # statsmodels' test_null_odds is metafor's "MH" (variance with N - 1). Its
    # p-value is 1 - cdf, fine at this size (~1e-2), not for the 1e-30 of bcg.
    sm = _stratified().test_null_odds(correction=True)
    assert fit.cmh_exact.statistic == pytest.approx(sm.statistic, rel=1e-12)
    assert fit.cmh_exact.pval == pytest.approx(sm.pvalue, rel=1e-9)
    # metafor's "CO" uses the N (not N - 1) variance, which statsmodels lacks.
    n1, n2 = A + B, C + D
    obs_minus_exp, var_n = 0.0, 0.0
    for a, m1, N, r1 in zip(A, A + C, n1 + n2, n1):
        h = stats.hypergeom(int(N), int(m1), int(r1))
        obs_minus_exp += a - h.mean()
        var_n += h.var() * (N - 1) / N
    co = (abs(obs_minus_exp) - 0.5) ** 2 / var_n
    assert fit.cmh.statistic == pytest.approx(co, rel=1e-12)
    assert fit.cmh.pval == pytest.approx(stats.chi2.sf(co, 1), rel=1e-12)
    uncorrected = mantel_haenszel(A, B, C, D, measure="OR", correct=False)
    assert uncorrected.cmh.statistic == pytest.approx(obs_minus_exp**2 / var_n, rel=1e-12)


def test_breslow_day_and_tarone_match_statsmodels():
    fit = mantel_haenszel(A, B, C, D, measure="OR")
    bd, ta = _stratified().test_equal_odds(), _stratified().test_equal_odds(adjust=True)
    assert fit.k_pos == 3 and fit.breslow_day.df == 2
    assert fit.breslow_day.statistic == pytest.approx(bd.statistic, rel=1e-10)
    assert fit.breslow_day.pval == pytest.approx(bd.pvalue, rel=1e-8)
    assert fit.tarone.statistic == pytest.approx(ta.statistic, rel=1e-10)
    assert fit.tarone.pval == pytest.approx(ta.pvalue, rel=1e-8)


def test_breslow_day_expected_counts_by_root_finding():
    """The closed form equals the root of A (n2 - m1 + A) = psi (n1 - A)(m1 - A), table by table."""
    psi = float(np.exp(mantel_haenszel(A, B, C, D, measure="OR").estimate))
    n1, n2, m1 = A + B, C + D, A + C
    stat = 0.0
    for a, r1, r2, m in zip(A, n1, n2, m1):
        lo, hi = max(0.0, m - r2), min(r1, m)
        root = optimize.brentq(lambda x: x * (r2 - m + x) - psi * (r1 - x) * (m - x),
                               lo, hi, xtol=1e-14, rtol=1e-15)
        var = 1 / (1 / root + 1 / (r1 - root) + 1 / (m - root) + 1 / (r2 - m + root))
        stat += (a - root) ** 2 / var
    fit = mantel_haenszel(A, B, C, D, measure="OR")
    assert fit.breslow_day.statistic == pytest.approx(stat, rel=1e-9)


def test_breslow_day_drops_degenerate_tables_where_statsmodels_does_not():
    """A double-zero table: metafor (and we) leave it out, statsmodels' statistic is NaN."""
    a, b, c, d = (np.append(x, v) for x, v in zip((A, B, C, D), (0, 50, 0, 60)))
    fit = mantel_haenszel(a, b, c, d, measure="OR")
    assert fit.k == 4 and fit.k_pos == 3 and fit.breslow_day.df == 2
    assert fit.breslow_day.statistic == pytest.approx(
        mantel_haenszel(A, B, C, D, measure="OR").breslow_day.statistic, rel=1e-12)
    with np.errstate(all="ignore"):
        sm = StratifiedTable(np.array([[a, b], [c, d]])).test_equal_odds()
    assert np.isnan(sm.statistic)


def test_breslow_day_at_psi_one_is_the_independence_expectation():
    # metafor special-cases psi == 1 (A = n1 m1 / N); the closed form needs no case.
    a, b, c, d = np.array([3.0, 7]), np.array([7.0, 3]), np.array([7.0, 3]), np.array([3.0, 7])
    t_fit = mantel_haenszel(a, b, c, d, measure="OR")
    assert t_fit.estimate == 0.0
    bd, _, k_pos = breslow_day(Tables(a, b, c, d), 1.0)
    expected = (a + b) * (a + c) / (a + b + c + d)
    var = 1 / (1 / expected + 1 / (a + b - expected) + 1 / (a + c - expected)
               + 1 / (d - a + expected))
    assert k_pos == 2
    assert bd.statistic == pytest.approx(np.sum((a - expected) ** 2 / var), rel=1e-14)


@pytest.mark.parametrize("measure", BINARY)
def test_single_table_reduces_to_escalc(measure):
    """k = 1 without zero cells: the MH estimate and variance are the study's own yi, vi.

    (RBG -> 1/a + 1/b + 1/c + 1/d; Greenland-Robins -> 1/a - 1/n1 + 1/c - 1/n2;
    Sato -> p1 q1 / n1 + p2 q2 / n2.)
    """
    fit = mantel_haenszel([7], [20], [3], [25], measure=measure)
    assert fit.estimate == pytest.approx(fit.yi[0], rel=1e-13)
    assert fit.se**2 == pytest.approx(fit.vi[0], rel=1e-13)
    assert fit.heterogeneity.QE == 0 and fit.heterogeneity.QEp == 1
    assert fit.heterogeneity.I2_pct == 0 and fit.heterogeneity.H2 == 1


def test_mh_rd_is_sato_not_greenland_robins_1985():
    """metafor uses the Sato-Greenland-Robins (1989) variance; GR (1985)'s differs for k > 1."""
    fit = mantel_haenszel(A, B, C, D, measure="RD")
    n1, n2 = A + B, C + D
    N, W = n1 + n2, np.sum(n1 * n2 / (n1 + n2))
    p = np.sum((n1**2 * C - n2**2 * A + n1 * n2 * (n2 - n1) / 2) / N**2)
    q = np.sum((A * (n2 - C) + C * (n1 - A)) / (2 * N))
    rd = np.sum((A * n2 - C * n1) / N) / W
    assert fit.estimate == pytest.approx(rd, rel=1e-13)
    assert fit.se**2 == pytest.approx((rd * p + q) / W**2, rel=1e-12)
    gr85 = np.sum((A * B * n2**3 + C * D * n1**3) / (n1 * n2 * N**2)) / W**2
    assert abs(fit.se**2 - gr85) > 1e-6 * gr85


def test_mh_rr_variance_by_hand():
    """Greenland-Robins (1985) variance of log RR, table by table."""
    num = r = s = 0.0
    for a, b, c, d in zip(A, B, C, D):
        n1, n2, N = a + b, c + d, a + b + c + d
        num += (n1 * n2 * (a + c) - a * c * N) / N**2
        r += a * n2 / N
        s += c * n1 / N
    fit = mantel_haenszel(A, B, C, D, measure="RR")
    assert fit.estimate == pytest.approx(math.log(r / s), rel=1e-13)
    assert fit.se == pytest.approx(math.sqrt(num / (r * s)), rel=1e-13)


def test_peto_by_hypergeometric_moments():
    o_e, v = [], []
    for a, m1, N, r1 in zip(A, A + C, A + B + C + D, A + B):
        h = stats.hypergeom(int(N), int(m1), int(r1))
        o_e.append(a - h.mean())
        v.append(h.var())
    o_e, v = np.array(o_e), np.array(v)
    fit = peto(A, B, C, D)
    assert fit.estimate == pytest.approx(o_e.sum() / v.sum(), rel=1e-12)
    assert fit.se == pytest.approx(v.sum() ** -0.5, rel=1e-12)
    assert fit.yi == pytest.approx(o_e / v, rel=1e-12)
    assert fit.vi == pytest.approx(1 / v, rel=1e-12)
    q = np.sum(o_e**2 / v) - o_e.sum() ** 2 / v.sum()
    assert fit.heterogeneity.QE == pytest.approx(q, rel=1e-10)
    assert fit.k_pos == 3 and fit.k_yi == 3


def test_peto_effects_get_the_continuity_correction():
    yi, vi = peto_effects([0, 0], [10, 10], [2, 0], [8, 10])
    a, b, c, d = 0.5, 10.5, 2.5, 8.5          # only0: 1/2 to all four cells
    n1, n2, N, m1 = a + b, c + d, a + b + c + d, a + c
    var = m1 * (b + d) * n1 * n2 / (N**2 * (N - 1))
    assert yi[0] == pytest.approx((a - m1 * n1 / N) / var, rel=1e-13)
    assert vi[0] == pytest.approx(1 / var, rel=1e-13)
    assert np.isnan(yi[1]) and np.isnan(vi[1])  # double zero: dropped (drop00=True)


# --------------------------------------------------------------------------- NA and refusals


def test_or_with_no_discordant_product_is_na_like_metafor():
    # every table has a = 0: R = 0, so metafor's estimate, BD and TA are NA, k.pos = 0
    fit = mantel_haenszel([0, 0], [10, 12], [3, 4], [7, 8], measure="OR")
    assert np.isnan(fit.estimate) and np.isnan(fit.se) and np.isnan(fit.ci.low)
    assert np.isnan(fit.breslow_day.statistic) and fit.k_pos == 0
    assert np.isfinite(fit.cmh.statistic)  # CO needs only events somewhere
    assert np.isnan(fit.heterogeneity.QE)
    d = common_binary_section_from_cells([0, 0], [10, 12], [3, 4], [7, 8])["MH"]["OR"]
    assert np.isnan(d["estimate"]) and d["k.pos"] == 0


def test_rr_with_no_events_in_one_arm_is_na():
    fit = mantel_haenszel([0, 0], [10, 12], [3, 4], [7, 8], measure="RR")
    assert np.isnan(fit.estimate) and fit.k_pos is None and fit.cmh is None


def test_peto_refuses_when_an_outcome_never_occurs():
    with pytest.raises(MetaError, match="never occurred"):
        peto([0, 0], [10, 12], [0, 0], [7, 8])
    section = common_binary_section_from_cells([0, 0], [10, 12], [0, 0], [7, 8])
    assert "error" in section["Peto"]
    assert np.isnan(section["MH"]["OR"]["estimate"])  # MH answers with NA instead
    rd = section["MH"]["RD"]  # RD = 0 with se 0: z = 0/0 is NaN in R, the CI [0, 0]
    assert rd["estimate"] == 0 and np.isnan(rd["zval"]) and np.isnan(rd["pval"])
    assert rd["ci.lb"] == rd["ci.ub"] == 0 and rd["k.yi"] == 0 and rd["QEp"] == 1


def test_cmh_with_a_zero_variance_is_infinite_as_in_r():
    # one all-event and one event-free table: both outcomes occur, but no table
    # has both, so the CMH variance is 0 and R gives CO = Inf, COp = 0
    fit = mantel_haenszel([2, 0], [0, 5], [3, 0], [0, 4], measure="OR")
    assert fit.cmh.statistic == np.inf and fit.cmh.pval == 0


def test_missing_cells_are_omitted_with_metafors_warning():
    fit = mantel_haenszel(np.append(A, np.nan), np.append(B, 5), np.append(C, 1),
                          np.append(D, 4), measure="OR")
    ref = mantel_haenszel(A, B, C, D, measure="OR")
    assert fit.k == 3 and fit.estimate == ref.estimate and len(fit.yi) == 4
    assert "Tables with NAs omitted from model fitting." in fit.warnings
    with pytest.raises(MetaError, match="k = 0"):
        mantel_haenszel([np.nan], [1], [1], [1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(ai=[1, 2], bi=[3], ci=[1, 2], di=[3, 4]), "differ in length"),
    (dict(ai=[1, -2], bi=[3, 4], ci=[1, 2], di=[3, 4]), "negative"),
    (dict(ai=[1, 9], n1i=[5, 8], ci=[1, 2], n2i=[5, 5]), "more events than participants"),
    (dict(ai=[], bi=[], ci=[], di=[]), "k = 0"),
    (dict(ai=[1], bi=[2], ci=[1]), "exactly one of di and n2i"),
    (dict(ai=[1], bi=[2], ci=[1], di=[np.inf]), "infinite"),
])
def test_bad_input_is_a_clear_value_error(kwargs, match):
    for fn in (mantel_haenszel, peto):
        with pytest.raises(ValueError, match=match):
            fn(**kwargs)


def test_bad_measure_is_refused():
    with pytest.raises(ValueError, match="measure"):
        mantel_haenszel(A, B, C, D, measure="IRR")


def test_arm_sizes_and_cells_give_the_same_fit():
    by_n = mantel_haenszel(A, n1i=A + B, ci=C, n2i=C + D, measure="RD")
    assert by_n.estimate == mantel_haenszel(A, B, C, D, measure="RD").estimate


def test_section_needs_tables():
    frame = pd.DataFrame({"yi": [0.1, 0.2], "vi": [0.01, 0.02]})
    generic = analysis_data(frame, {"measure": "GEN", "columns": {"yi": "yi", "vi": "vi"}})
    with pytest.raises(ValueError, match="2x2"):
        common_binary_section(generic)


def common_binary_section_from_cells(ai, bi, ci, di):
    """The section for bare cells (via the public AnalysisData builder)."""
    frame = pd.DataFrame({"ai": ai, "bi": bi, "ci": ci, "di": di})
    spec = {"measure": "OR", "columns": {c: c for c in ("ai", "bi", "ci", "di")}}
    return common_binary_section(analysis_data(frame, spec))


def test_zero_cell_flags_are_na_for_missing_counts():
    """metafor computes the flags with R's three-valued logic: NA | TRUE is TRUE."""
    import math as _math

    from ntxmeta import effects as _ef
    nan = float("nan")
    ai, bi, ci, di = ([3, nan, 0, nan], [5, 4, 6, 4], [2, 3, nan, 0], [7, 6, 5, nan])
    es = _ef.binary_effects("RR", ai, bi, ci, di)
    sec = _ef.escalc_section(es, ["a", "b", "c", "d"], level=95, options={})
    zc, dz = sec["zero_cell"], sec["double_zero"]
    assert zc[0] is False and _math.isnan(zc[1]) and zc[2] is True and zc[3] is True
    assert dz[0] is False and dz[1] is False and _math.isnan(dz[2]) and _math.isnan(dz[3])
