"""The OPRM1 analysis is a genotype x treatment interaction: per trial the log ratio of
odds ratios (carriers over homozygotes), pooled across trials.

Every expected number is computed by hand in the test from the quoted
figures (Oslin 2015's stratum ORs and CIs; made-up 2x2 tables), not read
from the code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from ntxmeta.analysis import run_plan
from ntxmeta.normalise import normalise
from ntxmeta.pipeline import effects_table
from ntxmeta.plan import AnalysisPlan, ModelOptions
from ntxmeta.select import select_rows
from test_normalise import raw_rows

#: qnorm(0.975): the 95% CI half-width in SEs.
Z975 = 1.959963984540054
#: Exact arithmetic on the same floats: only rounding separates code and hand.
TOL = 1e-12
CARRIER, HOMO = "OPRM1_Asp40_carrier", "OPRM1_Asn40_homozygote"


def plan(**over) -> AnalysisPlan:
    options = ModelOptions(method="REML", test="z", level=95.0, add=0.5, to="only0",
                           drop00=False, preset="metafor", pi="z", pool_k2=False)
    return AnalysisPlan(name="oprm1", title="OPRM1", measure="ROR", options=options,
                        filters=(("genotype", (CARRIER, HOMO)),), **over)


def stratum_or(row_id, study, genotype, ratio, low, high, outcome="relapse_heavy_drinking"):
    return {"row_id": row_id, "study_id": study, "genotype": genotype, "cluster_id": study,
            "pooling_issue": "multiple_outcomes", "outcome": outcome,
            "measure_type": "ratio_only", "events_treat": "", "n_treat": "", "events_ctrl": "",
            "n_ctrl": "", "ratio_type": "OR", "ratio": ratio, "ratio_ci_low": low,
            "ratio_ci_high": high}


def stratum_cells(row_id, study, genotype, a, n1, c, n2):
    return {"row_id": row_id, "study_id": study, "genotype": genotype, "cluster_id": study,
            "pooling_issue": "multiple_outcomes", "events_treat": str(a), "n_treat": str(n1),
            "events_ctrl": str(c), "n_ctrl": str(n2)}


def effects_of(tmp_path, *rows, p=None):
    p = p or plan()
    comp = normalise(raw_rows(tmp_path, *rows))
    return effects_table(select_rows(comp, p.selection), p), p


def ci_var(low, high):
    return ((math.log(high) - math.log(low)) / (2 * Z975)) ** 2


def test_oslin_2015_log_ror_and_se_match_the_hand_computation(tmp_path):
    """Oslin 2015 (JAMA Psychiatry 72:430): heavy drinking OR 1.10 (0.52-2.31) in Asp40
    carriers, 0.69 (0.41-1.18) in Asn40 homozygotes."""
    eff, _ = effects_of(tmp_path, stratum_or("asp", "Oslin2015", CARRIER, "1.10", "0.52", "2.31"),
                        stratum_or("asn", "Oslin2015", HOMO, "0.69", "0.41", "1.18"))
    assert len(eff) == 1  # one row per trial, not one per stratum
    row = eff.iloc[0]
    log_ror = math.log(1.10) - math.log(0.69)
    var = ci_var(0.52, 2.31) + ci_var(0.41, 1.18)
    assert abs(row["yi"] - log_ror) < TOL and abs(row["vi"] - var) < TOL
    assert abs(row["sei"] - math.sqrt(var)) < TOL
    assert abs(math.exp(row["yi"]) - 1.10 / 0.69) < TOL  # ROR 1.59: no better response in carriers
    assert row["row_id"] == "asp+asn"


def test_log_ror_from_2x2_cells_per_genotype_and_arm(tmp_path):
    # carriers: 10/40 vs 20/40 relapse; homozygotes: 30/60 vs 33/60
    eff, _ = effects_of(tmp_path, stratum_cells("c", "T", CARRIER, 10, 40, 20, 40),
                        stratum_cells("h", "T", HOMO, 30, 60, 33, 60))
    lor_c = math.log((10 * 20) / (30 * 20))
    lor_h = math.log((30 * 27) / (30 * 33))
    v_c = 1 / 10 + 1 / 30 + 1 / 20 + 1 / 20
    v_h = 1 / 30 + 1 / 30 + 1 / 33 + 1 / 27
    row = eff.iloc[0]
    assert abs(row["yi"] - (lor_c - lor_h)) < TOL and abs(row["vi"] - (v_c + v_h)) < TOL
    assert row["n_treat"] == 100 and row["n_ctrl"] == 100  # participants of both strata


def test_a_trial_with_one_stratum_is_listed_with_its_reason_and_not_pooled(tmp_path):
    eff, p = effects_of(tmp_path, stratum_cells("c", "T", CARRIER, 10, 40, 20, 40),
                        stratum_cells("h", "T", HOMO, 30, 60, 33, 60),
                        {**stratum_cells("only", "U", CARRIER, 5, 30, 9, 30), "cluster_id": "",
                         "pooling_issue": ""})
    lone = eff.set_index("study_id").loc["U"]
    assert np.isnan(lone["yi"]) and "needs one row for each of" in lone["exclusion_reason"]
    res = run_plan(p, eff)
    assert res.k_used == 1
    assert dict(zip(eff["study_id"], res.used)) == {"T": True, "U": False}


def test_interaction_is_pooled_across_trials_by_inverse_variance(tmp_path):
    eff, p = effects_of(
        tmp_path, stratum_cells("c1", "T1", CARRIER, 10, 40, 20, 40),
        stratum_cells("h1", "T1", HOMO, 30, 60, 33, 60),
        stratum_cells("c2", "T2", CARRIER, 12, 50, 15, 50),
        stratum_cells("h2", "T2", HOMO, 25, 70, 30, 70),
        stratum_or("c3", "T3", CARRIER, "0.80", "0.40", "1.60"),
        stratum_or("h3", "T3", HOMO, "0.90", "0.50", "1.62"))
    y, v = eff["yi"].to_numpy(), eff["vi"].to_numpy()
    w = 1 / v
    common = float(np.sum(w * y) / np.sum(w))
    res = run_plan(p, eff)
    assert res.k_used == 3
    assert abs(res.common.estimate - common) < 1e-12
    assert abs(res.common.se - math.sqrt(1 / np.sum(w))) < 1e-12
    assert res.scale.name == "ROR" and res.scale.log


def test_genotype_averaged_pooling_is_not_what_ror_computes(tmp_path):
    """Pooling the two strata as two studies gives the drug effect averaged over genotypes
    (the old, wrong estimand); the interaction is their difference."""
    eff, _ = effects_of(tmp_path, stratum_or("asp", "Oslin2015", CARRIER, "1.10", "0.52", "2.31"),
                        stratum_or("asn", "Oslin2015", HOMO, "0.69", "0.41", "1.18"))
    y = np.log([1.10, 0.69])
    w = 1 / np.array([ci_var(0.52, 2.31), ci_var(0.41, 1.18)])
    averaged = float(np.sum(w * y) / np.sum(w))
    assert eff.iloc[0]["yi"] == pytest.approx(y[0] - y[1], abs=TOL)
    assert abs(eff.iloc[0]["yi"] - averaged) > 0.3
