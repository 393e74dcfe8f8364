"""Joint models (ntxmeta.joint): every time point of a trial, and networks of treatments.

References, none of them produced by the code under test:

* metafor 3.8-1 ``rma.mv`` (and clubSandwich 0.5.8 ``coef_test(vcov = "CR2")``)
  on the project's own effects tables, the three CSVs of
  tests/fixtures/joint written by the joint_effects rule:
  ``metafor_reference.json`` from ``make_joint.R`` beside them. Compared at
  the oracle's ``RTOL = 1e-6``, ``ATOL = 1e-9`` (tests/oracle_util.py).
* The time-point model of the AUD rows has a ridge: one trial (Kiefer 2003)
  reports both time points, so the likelihood cannot split the
  heterogeneity between the trial and the estimate level (metafor's free
  fit and ours stop at different points of equal logLik). metafor's logLik
  of the free fit and its fits at the two ends of the ridge
  (``sigma2 = c(NA, 0)``, ``c(0, NA)``) are the reference there.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from oracle_util import ATOL, RTOL
from test_normalise import raw_rows

from ntxmeta import joint, jointplots
from ntxmeta import multilevel as ml
from ntxmeta.normalise import normalise
from ntxmeta.validate import ValidationError

FIX = Path(__file__).parent / "fixtures" / "joint"
REF = json.loads((FIX / "metafor_reference.json").read_text())
TP, OUD, AUD = "aud_heavy_drinking_timepoints", "oud_relapse_network", "aud_heavy_drinking_network"


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float),
                               rtol=RTOL, atol=ATOL)


def fixture(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / f"{name}.csv", keep_default_na=False, na_values=[""])


def plan(kind: str, name: str, **kw) -> joint.JointPlan:
    return joint.JointPlan(name=name, kind=kind, title=name, measure="RR", filters=(), **kw)


@pytest.fixture(scope="module")
def timepoints():
    return joint.fit(fixture(TP), plan("timepoints", TP))


def tp_design(d: pd.DataFrame):
    d = d.loc[np.isfinite(d["yi"])]
    t = d["timepoint"].to_numpy(str)
    X = np.column_stack([(t == c).astype(float) for c in joint.TIMES])
    trial = d["trial"].to_numpy(str)
    return (d["yi"].to_numpy(float), ml.vcalc(d["vi"].to_numpy(float), trial, rho=0.5),
            dict(X=X, random=ml.Nested(outer=trial, inner=d["row_id"].to_numpy(str))))


# --------------------------------------------------------------------------- time points

def test_the_ridge_is_found_and_both_ends_match_metafor():
    yi, V, kw = tp_design(fixture(TP))
    free = ml.rma_mv(yi, V, **kw)
    close(free.ll, REF["free"]["logLik"])
    for ref, s2 in zip(REF["splits"], ([np.nan, 0.0], [0.0, np.nan])):
        f = ml.rma_mv(yi, V, **kw, sigma2=s2)
        close(f.sigma2, ref["sigma2"])
        close(f.beta, ref["beta"])
        close(f.se, ref["se"])
        close(f.ll, ref["logLik"])
        assert f.parms == 3      # two coefficients and the one estimated variance
    assert joint._split_ridge(yi, V, free, kw) is not None


def test_time_point_model_matches_metafor(timepoints):
    ref = REF["timepoints"]
    close([e.estimate for e in timepoints.estimates], ref["beta"])
    close([e.se for e in timepoints.estimates], ref["se"])
    close([e.ci_low for e in timepoints.estimates], ref["ci.lb"])
    close([e.ci_high for e in timepoints.estimates], ref["ci.ub"])
    close([e.pval for e in timepoints.estimates], ref["pval"])
    close(list(timepoints.variance.values()), ref["sigma2"])
    d = timepoints.tests["difference"]
    close([d["estimate"], d["se"], d["pval"]], [ref["diff"], ref["diff_se"], ref["diff_p"]])
    by_rho = {s["rho"]: s for s in timepoints.sensitivity}
    for r in ref["rho"]:
        s = by_rho[r["rho"]]
        close([s[c][0] for c in joint.TIMES], r["beta"])
        close([s[c][1] for c in joint.TIMES], r["ci.lb"])
        close([s[c][2] for c in joint.TIMES], r["ci.ub"])
    cr2 = by_rho["CR2"]
    close([cr2[c][3] for c in joint.TIMES], ref["cr2_df"])
    # the CR2 interval is beta +- t(df) * se: recover se from its half-width
    from scipy import stats
    half = [(cr2[c][2] - cr2[c][1]) / 2 / stats.t.ppf(0.975, cr2[c][3]) for c in joint.TIMES]
    close(half, ref["cr2_se"])
    assert any("cannot tell between-trial from within-trial" in n for n in timepoints.notes)


def test_an_identified_split_is_not_called_a_ridge():
    """Four trials each with both time points and a clearly trial-level spread:
    the likelihood has one maximum, so the free fit is kept."""
    rng = np.random.default_rng(7)
    trial = np.repeat([f"T{i}" for i in range(6)], 2)
    time = np.tile(list(joint.TIMES), 6)
    u = np.repeat(rng.normal(0, 0.4, 6), 2)
    yi = -0.2 + u + rng.normal(0, 0.25, 12)
    d = pd.DataFrame({"row_id": [f"{t}_{c}" for t, c in zip(trial, time)], "trial": trial,
                      "label": trial, "timepoint": time, "yi": yi, "vi": 0.02})
    y, V, kw = tp_design(d)
    free = ml.rma_mv(y, V, **kw)
    assert joint._split_ridge(y, V, free, kw) is None
    r = joint.fit(d, plan("timepoints", "synthetic"))
    close([e.estimate for e in r.estimates], free.beta)
    assert not any("cannot tell" in n for n in r.notes)


def test_fixed_sigma2_is_checked():
    yi, V, kw = tp_design(fixture(TP))
    with pytest.raises(ValueError, match="2 Nested levels"):
        ml.rma_mv(yi, V, **kw, sigma2=[0.0])
    with pytest.raises(ValueError, match=">= 0"):
        ml.rma_mv(yi, V, **kw, sigma2=[-1.0, np.nan])


# --------------------------------------------------------------------------- networks

@pytest.mark.parametrize("name,key", [(OUD, "oud_network"), (AUD, "aud_network")])
def test_network_matches_metafor(name, key):
    r = joint.fit(fixture(name), plan("network", name, nodes="formulation"
                                      if name == OUD else "drug"))
    ref = REF[key]
    by = {e.label: e for e in r.estimates}
    ests = [by[f"{t} vs placebo"] for t in ref["treatments"]]
    close([e.estimate for e in ests], ref["beta"])
    close([e.se for e in ests], ref["se"])
    close([e.ci_low for e in ests], ref["ci.lb"])
    close([e.ci_high for e in ests], ref["ci.ub"])
    close(list(r.variance.values()), [ref["tau2"]])
    # the league table, shown as ratios, holds exp of the pair effects
    t = list(r.treatments)
    eff = np.asarray(r.matrices["effect"])
    for e in r.pairs:
        b, a = e.label.split(" vs ")
        close(eff[t.index(a), t.index(b)], e.estimate)


def test_result_round_trips_through_json(timepoints):
    again = joint.JointResult.from_json(timepoints.to_json())
    assert again.estimates == timepoints.estimates
    assert again.notes == timepoints.notes
    net = joint.fit(fixture(AUD), plan("network", AUD))
    assert joint.JointResult.from_json(net.to_json()).pairs == net.pairs


def test_a_two_treatment_network_is_refused_with_its_nodes():
    rows = fixture(AUD)
    rows = rows.loc[rows["treat1"].eq("naltrexone")].assign(role="main", treatment="",
                                                            comparator_drug="")
    msg = joint.problem(rows, plan("network", "two"))
    assert "has 2 treatments (naltrexone, placebo)" in msg
    assert joint.problem(rows.iloc[:2], plan("timepoints", "few")).startswith(
        "time-point model 'few' selects 2 rows")


def test_an_active_comparator_without_its_drug_has_no_node():
    with pytest.raises(Exception, match="needs comparator_drug"):
        joint.control_node({"row_id": "X", "comparator_type": "active", "comparator_drug": ""})
    assert joint.control_node({"comparator_type": "active",
                               "comparator_drug": "buprenorphine"}) == "buprenorphine"
    assert joint.control_node({"comparator_type": "no_medication"}) == \
        joint.control_node({"comparator_type": "usual_care"})


# --------------------------------------------------------------------------- rows

KIEFER = [dict(row_id=f"K_{arm}_wk{w}", study_id="K2003", cluster_id="K2003",
               treatment=arm if arm != "ntx" else "", followup_weeks=str(w),
               timepoint="end_of_treatment" if w == 12 else "follow_up",
               pooling_issue="repeated_timepoint;shared_control",
               events_treat=str(e), n_treat="40", events_ctrl=str(c), n_ctrl="40",
               outcome="relapse_heavy_drinking")
          for arm, w, e, c in [("ntx", 12, 14, 30), ("ntx", 24, 20, 33),
                               ("acamprosate", 12, 20, 30), ("acamprosate", 24, 22, 33)]]


def test_pairwise_tables_keep_naltrexone_alone_and_one_time_point(tmp_path):
    out = normalise(raw_rows(tmp_path, *KIEFER)).set_index("row_id")
    assert bool(out.loc["K_ntx_wk12", "pooled"])
    assert not out.loc["K_ntx_wk24", "pooled"]
    for r in ("K_acamprosate_wk12", "K_acamprosate_wk24"):
        assert not out.loc[r, "pooled"]
        assert "in network analyses only" in out.loc[r, "exclusion_reason"]


def test_a_joint_model_keeps_what_it_models(tmp_path):
    raw = raw_rows(tmp_path, *KIEFER)
    tp = normalise(raw, modelled="timepoints").set_index("row_id")
    assert tp.loc[["K_ntx_wk12", "K_ntx_wk24"], "pooled"].all()
    assert not tp.loc["K_acamprosate_wk12", "pooled"]
    net = normalise(raw, modelled="network").set_index("row_id")
    # both arms at week 12, the placebo arm whole (not split): the model shares it
    assert net.loc[["K_ntx_wk12", "K_acamprosate_wk12"], "pooled"].all()
    assert (net.loc[["K_ntx_wk12", "K_acamprosate_wk12"], "n_ctrl"].astype(float) == 40).all()
    assert not net.loc["K_ntx_wk24", "pooled"]


def test_a_comparator_drug_on_a_placebo_row_is_an_error_with_its_place(tmp_path):
    with pytest.raises(ValidationError) as info:
        raw_rows(tmp_path, {"comparator_drug": "buprenorphine"})
    text = str(info.value)
    assert "rows.csv:2: column 'comparator_drug' = 'buprenorphine'" in text
    assert "only an active comparator has a drug" in text


# --------------------------------------------------------------------------- outputs

def test_time_point_table_shows_ratios_of_the_stored_estimates(timepoints):
    t = joint.timepoints_table([timepoints])
    main = t.loc[t["assumption"].eq("main model")].set_index("row")
    for e in timepoints.estimates:
        close(main.loc[e.label, "RR"], np.exp(e.estimate))
        close(main.loc[e.label, "ci_low"], np.exp(e.ci_low))
    d = timepoints.tests["difference"]
    close(main.iloc[-1]["RR"], np.exp(d["estimate"]))
    assert set(t["assumption"]) >= {"rho = 0", "rho = 0.8", "CR2 cluster-robust"}


def test_figures_draw_every_row_and_model_estimate(timepoints, tmp_path):
    fig = jointplots.draw(timepoints, "timepoints")
    path = tmp_path / "tp.svg"
    fig.savefig(path)
    svg = path.read_text()
    for row_id, *_ in timepoints.rows:
        assert f'id="estimate:{row_id}"' in svg
    for e in timepoints.estimates:
        assert f'id="pooled:{e.label}"' in svg
    net = joint.fit(fixture(OUD), plan("network", OUD, nodes="formulation"))
    for kind in ("network_graph", "network_forest"):
        jointplots.draw(net, kind).savefig(tmp_path / f"{kind}.svg")
        assert (tmp_path / f"{kind}.svg").stat().st_size > 0


def test_a_network_of_two_treatments_is_a_config_problem_with_its_line(tmp_path):
    """`ntxmeta validate` (check_inputs) finds what a joint model cannot use, not the
    workflow alone, and names the config line of the model's filters."""
    import yaml
    from ntxmeta.config import check_inputs
    root = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((root / "config/config.yaml").read_text(encoding="utf-8"))
    cfg["networks"] = {"two": {"title": "Two", "measure": "RR", "filters": {
        "indication": ["alcohol"], "comparator_class": ["placebo"],
        "outcome": ["relapse_trial_defined"]}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t == "  two:") + 3
    with pytest.raises(ValidationError) as info:
        check_inputs(sorted((root / "data/raw").glob("*.csv")), path, root=root)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (line, "networks.two.filters")
    assert "network 'two' has 2 treatments (naltrexone, placebo)" in problem.message


def test_joint_plan_defaults_are_the_schemas():
    """A JointPlan built in code has the defaults a config block gets (config.resolve)."""
    from ntxmeta.validate import load_schema
    spec = load_schema("config")["$defs"]["joint"]["properties"]
    p = plan("timepoints", "x")
    assert (p.method, p.rho, list(p.rhos), p.reference, p.nodes) == tuple(
        spec[k]["default"] for k in ("method", "rho", "rhos", "reference", "nodes"))
