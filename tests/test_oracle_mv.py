"""ntxmeta.multilevel against metafor 3.8-1 ``rma.mv`` (and clubSandwich 0.5.8 CR2)
on every vendored case of tests/fixtures/oracle_mv (made by its make_mv.R).

Cases are discovered by globbing. Each case's model is built from its
``spec`` and data.csv alone: V with this package's helpers (``vcalc``,
``rvars_vcov``, ``shared_arm_vcov`` + ``arm_var``), not from the V that R
built (that one is only used to check the helpers), the random effects as
``Nested``/``Structured``, the design from the X.* columns. Every number of
every section (rma.mv, confint, anova, CR2) is compared by
``oracle_util.compare``, the rule of the univariate conformance tests:
relative ``RTOL = 1e-6`` with absolute ``ATOL = 1e-9`` (these sections have
no looser class there, and need none: profile-CI bounds and CR2 df agree
at the same 1e-6). tests/fixtures/oracle_mv/NOTES.md says what agrees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta import multilevel as ml
from oracle_util import LOOSE_ATOL, LOOSE_RTOL, SKIP_TOP, compare, load

FIXTURES = Path(__file__).parent / "fixtures" / "oracle_mv"
CASES = sorted(p.parent for p in FIXTURES.glob("*/out.json"))
#: Sections of a reference that are inputs, not results.
INPUT_KEYS = {"inputs"}
#: V from our helpers against the V metafor built: both are the same few
#: arithmetic operations on the same numbers, so only rounding may differ.
V_RTOL = 1e-12

#: Values where ntxmeta differs from metafor, and why. In each, ntxmeta's
#: fit has the higher (restricted) log-likelihood, which the tests below
#: check: metafor's optimisers stop short on a flat likelihood.
KNOWN_DIFFERENCES = {
    # year slope of AL ~ 1e-3, determined to 3e-9 in absolute terms: metafor's
    # best fit (nlm polish) has a log-likelihood 3e-13 below ours
    ("berkey1998_UN_ML_year", "rma.mv.coefficients.estimate"),
    ("berkey1998_UN_ML_year", "rma.mv.coefficients.stat"),
    ("berkey1998_UN_ML_year", "CR2.estimate"),
    ("berkey1998_UN_ML_year", "CR2.tstat"),
    # metafor's rho profile stays on a local maximum with tau^2.2 > 0; the
    # profile with tau^2.2 -> 0 is higher and never leaves the 95% region
    # down to rho = -1 (checked in test_profile_difference_is_metafors)
    ("berkey1998_UN_ML_year", "confint.rho.ci.lb"),
    # HAR: tau^2.4 1.4e-6 relative off; metafor's log-likelihood 2e-11 below ours
    ("ishak2007_HAR", "rma.mv.tau2"),
    ("ishak2007_HAR", "confint.tau^2.4.estimate"),
}


def _random(d: pd.DataFrame, r: dict):
    if r["type"] == "none":
        return None
    if r["type"] == "nested":
        return ml.Nested(outer=d[r["outer"]].to_numpy(),
                         inner=d[r["inner"]].to_numpy() if "inner" in r else None)
    return ml.Structured(inner=d[r["inner"]].to_numpy(), outer=d[r["outer"]].to_numpy(),
                         struct=r["struct"], rho=r.get("rho"))


def _V(d: pd.DataFrame, v: dict) -> np.ndarray:
    if v["type"] == "diag":
        return np.diag(d[v["vi"]].to_numpy(float))
    if v["type"] == "rvars":
        return ml.rvars_vcov(d[v["cluster"]].to_numpy(), [d[c].to_numpy(float) for c in v["rvars"]])
    if v["type"] == "ar":
        return ml.vcalc(d[v["vi"]].to_numpy(float), d[v["cluster"]].to_numpy(),
                        time=d[v["time"]].to_numpy(float), phi=v["phi"])
    if v["type"] == "shared_arm":
        if v["measure"] == "OR":
            sv = ml.arm_var("OR", x=d[v["x"]], n=d[v["n"]], add=v["add"])
        else:
            sv = ml.arm_var(v["measure"], sd=d[v["sd"]], n=d[v["n"]])
        return ml.shared_arm_vcov(d[v["vi"]].to_numpy(float), d[v["cluster"]].to_numpy(), sv)
    raise AssertionError(f"unknown V type {v['type']}")


def _case(case: Path):
    ref = load(case / "out.json")
    spec = ref["spec"]
    d = pd.read_csv(case / "data.csv")
    xcols = [c for c in d.columns if c.startswith(spec["X"])]
    return ref, spec, d, _V(d, spec["V"]), d[xcols].to_numpy(float), [c[2:] for c in xcols]


def _results(case: Path):
    ref, spec, d, V, X, names = _case(case)
    y = d[spec["yi"]].to_numpy(float)
    fit = ml.rma_mv(y, V, X=X, random=_random(d, spec["random"]), method=spec["method"],
                    test=spec["test"], names=names)
    got = {"rma.mv": fit.as_dict()}
    if "confint" in ref:
        got["confint"] = ml.confint_dict(ml.confint(fit))
    if "anova" in ref:
        red = ml.rma_mv(y, V, X=X, random=_random(d, spec["reduced"]["random"]),
                        method=spec["method"], test=spec["test"])
        got["anova"] = ml.anova(fit, red).as_dict()
    if "CR2" in ref:
        got["CR2"] = ml.cr2(fit, d[spec["cluster"]].to_numpy()).as_dict()
    if "wald" in ref:
        got["wald"] = ml.wald(fit, ref["wald"]["L"]).as_dict()
    return fit, got


@pytest.fixture(scope="module")
def results():
    return {case.name: _results(case) for case in CASES}


def _reference(case: Path) -> dict:
    return {k: v for k, v in load(case / "out.json").items() if k not in INPUT_KEYS}


def test_cases_are_vendored():
    """At least six datasets (the issue's minimum), each with its data and script."""
    assert (FIXTURES / "make_mv.R").exists()
    datasets = {c.name.split("_")[0] for c in CASES}
    assert len(datasets) >= 6 and len(CASES) >= 14, datasets
    assert all((c / "data.csv").exists() for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_section_matches_metafor(results, case):
    t = compare(_reference(case), results[case.name][1])
    assert not t.missing, f"missing: {t.missing[:10]}"
    wrong = {(case.name, path) for path, _, _ in t.wrong}
    unexpected = sorted(wrong - KNOWN_DIFFERENCES)
    assert not unexpected, [w for w in t.wrong if (case.name, w[0]) in unexpected][:10]
    vanished = {p for c, p in KNOWN_DIFFERENCES if c == case.name} - {p for _, p in wrong}
    assert not vanished, f"known differences no longer differ, remove them: {vanished}"
    assert t.ok > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_reference_section_is_left_out(results, case):
    ref = _reference(case)
    sections = {k for k, v in ref.items() if k not in SKIP_TOP and isinstance(v, dict)}
    t = compare(ref, results[case.name][1])
    assert sections <= t.compared_top, sections - t.compared_top
    assert {"rma.mv", "confint", "CR2"} <= sections


@pytest.mark.parametrize("case", sorted({c for c, _ in KNOWN_DIFFERENCES}))
def test_known_differences_are_metafors_convergence(results, case):
    """Where we differ, our log-likelihood is the higher one, and the values
    still agree to the univariate oracle's loose tolerance (iterative fits
    without a tight reference: LOOSE_RTOL 1e-4)."""
    fit, got = results[case]
    ref = _reference(FIXTURES / case)
    assert fit.ll >= ref["rma.mv"]["fit.stats"][fit.method]["ll"]
    paths = [p for c, p in KNOWN_DIFFERENCES if c == case]
    t = compare(ref, got, sections=paths)
    for path, a, b in t.wrong:
        if path == "confint.rho.ci.lb":
            continue  # a different local maximum: next test
        a, b = np.atleast_1d(a), np.atleast_1d(b)
        assert np.allclose(b, a, rtol=LOOSE_RTOL, atol=LOOSE_ATOL), (path, a, b)


def test_profile_difference_is_metafors(results):
    """metafor's lower bound for rho (-0.668) lies inside our profile's 95%
    region: the profile log-likelihood there (tau^2.2 free to go to 0) is
    within chi^2_1(0.95)/2 of the maximum, so it is not where the profile
    crosses the cut-off; metafor's profile refits stay with tau^2.2 > 0."""
    fit, _ = results["berkey1998_UN_ML_year"]
    ref = _reference(FIXTURES / "berkey1998_UN_ML_year")
    lb = ref["confint"]["rho"]["ci.lb"]
    assert 2 * (fit.ll - ml.profile_ll(fit, "rho", lb)) < 3.841458820694124
    assert 2 * (fit.ll - ml.profile_ll(fit, "rho", -1.0)) < 3.841458820694124


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_V_helpers_match_metafor(case):
    """vcalc / rvars_vcov / shared_arm_vcov + arm_var build the V metafor built."""
    ref, _, _, V, _, _ = _case(case)
    Vr = np.array(ref["inputs"]["V"], dtype=float)
    np.testing.assert_allclose(V, Vr, rtol=V_RTOL, atol=0)


def test_vcalc_rho_is_the_assumed_correlation():
    v = np.array([0.04, 0.09, 0.01, 0.16])
    V = ml.vcalc(v, ["a", "a", "b", "b"], rho=0.6)
    assert V[0, 1] == pytest.approx(0.6 * 0.2 * 0.3) and V[0, 2] == 0 and V[2, 3] == pytest.approx(0.6 * 0.1 * 0.4)
    np.testing.assert_allclose(np.diag(V), v)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="struct"):
        ml.Structured(inner=[1, 2], outer=[1, 1], struct="XYZ")
    with pytest.raises(ValueError, match="method"):
        ml.rma_mv([0.1, 0.2], [0.1, 0.1], method="DL")
    with pytest.raises(ValueError, match="V must"):
        ml.rma_mv([0.1, 0.2], np.eye(3))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_block_sums_equal_the_dense_computation(case):
    """The engine sums over the independent blocks of M; the k x k computation
    (metafor's) of ll, score, information and Var(beta) at an arbitrary point
    gives the same numbers (rounding only: BLOCK_RTOL); and the average
    information equals 1/2 y'P D_i P D_j P y from the k x k P of metafor's
    formula."""
    BLOCK_RTOL = 1e-10
    _, spec, d, V, X, _ = _case(case)
    model = ml._Model(V, _random(d, spec["random"]))
    y = d[spec["yi"]].to_numpy(float)
    ldx = float(np.linalg.slogdet(X.T @ X)[1])
    rng = np.random.default_rng(1)
    th = np.array([p.to_theta(p.fixed) if p.fixed is not None else rng.uniform(-3, 0.5)
                   for p in model.pars])
    for reml in (True, False):
        a = ml._evaluate_blocks(model, y, X, ldx, th, reml, True)
        b = ml._evaluate_dense(model, y, X, ldx, th, reml, True)
        for f in ("ll_ml", "ll_reml", "beta", "vb", "grad", "info", "ai", "s2"):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=BLOCK_RTOL,
                                       atol=BLOCK_RTOL * np.max(np.abs(getattr(b, f))), err_msg=f)
        M, D, _ = model.build(th)
        W = np.linalg.inv(M)
        P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
        u = P @ y  # = W r, r the GLS residuals
        mid = P  # the observed information needs P in the middle for ML too
        free = [i for i, q in enumerate(model.pars) if q.fixed is None]
        ai = np.array([[0.5 * u @ D[i] @ mid @ D[j] @ u for j in free] for i in free])
        np.testing.assert_allclose(b.ai[np.ix_(free, free)], ai, rtol=1e-8, atol=1e-10 * np.abs(ai).max())


def test_block_path_fit_equals_dense_fit(monkeypatch):
    """A three-level model with k > DENSE_MAX_K (fitted by block sums) gives
    the fit of the k x k path."""
    rng = np.random.default_rng(7)
    k = 240
    district = np.repeat(np.arange(60), 4)
    school = np.tile(np.arange(4), 60)
    vi = rng.uniform(0.01, 0.2, k)
    yi = 0.2 + rng.normal(0, 0.3, 60)[district] + rng.normal(0, 0.2, k) + rng.normal(0, np.sqrt(vi))
    X = np.column_stack([np.ones(k), rng.normal(size=k)])
    rnd = ml.Nested(outer=district, inner=school)
    assert k > ml.DENSE_MAX_K
    blocks = ml.rma_mv(yi, vi, X=X, random=rnd)
    monkeypatch.setattr(ml, "DENSE_MAX_K", 10**9)
    dense = ml.rma_mv(yi, vi, X=X, random=rnd)
    for f in ("beta", "se", "sigma2"):
        np.testing.assert_allclose(getattr(blocks, f), getattr(dense, f), rtol=1e-8)
    assert blocks.fit_reml.ll == pytest.approx(dense.fit_reml.ll, rel=1e-12)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_one_level_model_is_the_univariate_random_effects_model(method):
    """``~ 1 | study`` with one estimate per study is rma.uni's model: sigma^2
    is tau^2, and estimate, se, QE and every fit statistic are those of
    ntxmeta.rma (itself checked against metafor's tight fits on dat.bcg),
    metafor's fit.stats conventions included (the same parms = p + 1)."""
    from ntxmeta.rma import rma
    ref = load(Path(__file__).parent / "fixtures" / "oracle" / "bcg_RR" / "out.json")
    yi, vi = np.array(ref["escalc"]["yi"], float), np.array(ref["escalc"]["vi"], float)
    X = np.column_stack([np.ones(len(yi)), np.arange(len(yi)) / 10.0])
    uni = rma(yi, vi, method=method, X=X)
    mv = ml.rma_mv(yi, vi, X=X, random=ml.Nested(outer=np.arange(len(yi))), method=method)
    assert mv.sigma2[0] == pytest.approx(uni.tau2, rel=1e-8)
    np.testing.assert_allclose(mv.beta, uni.beta, rtol=1e-8)
    np.testing.assert_allclose(mv.se, uni.se, rtol=1e-8)
    assert mv.QE == pytest.approx(uni.QE, rel=1e-10) and mv.QM == pytest.approx(uni.QM, rel=1e-8)
    for a, b in ((mv.fit_ml, uni.fit_ml), (mv.fit_reml, uni.fit_reml)):
        for f in ("ll", "dev", "AIC", "BIC", "AICc"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-9), f


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_observed_information_is_the_hessian(case):
    """2 AI - I - s(D_ij), the Hessian the optimiser uses, equals minus the
    central differences of the analytic score (and the score those of ll)."""
    FD_STEP, FD_RTOL = 1e-5, 1e-5  # central differences: error ~ step^2
    _, spec, d, V, X, _ = _case(case)
    model = ml._Model(V, _random(d, spec["random"]))
    y = d[spec["yi"]].to_numpy(float)
    ldx = float(np.linalg.slogdet(X.T @ X)[1])
    rng = np.random.default_rng(3)
    th = np.array([p.to_theta(p.fixed) if p.fixed is not None else rng.uniform(-3, 0.5)
                   for p in model.pars])
    free = [i for i, p in enumerate(model.pars) if p.fixed is None]
    for reml in (True, False):
        e = ml._evaluate_dense(model, y, X, ldx, th, reml, True)
        H = (2 * e.ai - e.info - e.s2)[np.ix_(free, free)]
        fd = np.empty_like(H)
        gfd = np.empty(len(free))
        for n, j in enumerate(free):
            tp, tm = th.copy(), th.copy()
            tp[j] += FD_STEP
            tm[j] -= FD_STEP
            ep = ml._evaluate_dense(model, y, X, ldx, tp, reml, True)
            em = ml._evaluate_dense(model, y, X, ldx, tm, reml, True)
            fd[:, n] = -(ep.grad - em.grad)[free] / (2 * FD_STEP)
            ll = (lambda q: q.ll_reml if reml else q.ll_ml)
            gfd[n] = (ll(ep) - ll(em)) / (2 * FD_STEP)
        scale = np.abs(H).max()
        np.testing.assert_allclose(H, fd, rtol=FD_RTOL, atol=FD_RTOL * scale)
        np.testing.assert_allclose(e.grad[free], gfd, rtol=FD_RTOL,
                                   atol=FD_RTOL * np.abs(gfd).max())


def test_rho_sensitivity_refits_with_each_assumed_correlation():
    """rho = 0 is the model with independent estimates; each fit is the one
    with V = vcalc(rho); on dat.berkey1998's estimates a positive assumed
    correlation between PD and AL changes the fit."""
    _, spec, d, _, X, names = _case(FIXTURES / "berkey1998_UN")
    y, vi, trial = d["yi"].to_numpy(float), d["vi"].to_numpy(float), d["trial"].to_numpy()
    rnd = _random(d, spec["random"])
    sens = ml.rho_sensitivity(y, vi, trial, rhos=(0.0, 0.5), X=X, random=rnd)
    indep = ml.rma_mv(y, vi, X=X, random=rnd)
    np.testing.assert_allclose(sens.fits[0].beta, indep.beta, rtol=1e-10)
    at_half = ml.rma_mv(y, ml.vcalc(vi, trial, rho=0.5), X=X, random=rnd)
    np.testing.assert_allclose(sens.fits[1].beta, at_half.beta, rtol=1e-12)
    assert not np.allclose(sens.fits[1].beta, indep.beta, rtol=1e-3)
    assert [r["rho"] for r in sens.table()] == [0.0, 0.5]
