"""Evidence tables: sensitivity analyses, summary of findings, subgroups, small-study effects.

Every table is a :class:`pandas.DataFrame` in a fixed row and column order,
built from the pipeline's outputs (the effects table of an analysis and its
typed :class:`~ntxmeta.result.AnalysisResult`). No model is fitted here:
every pooled number, sensitivity variant, subgroup and small-study test was
computed once by ``pool`` (:mod:`ntxmeta.analysis`). What is written here is
the arithmetic of presentation: back-transforms (the result's one
``Scale``), absolute effects from a relative effect and an assumed control
risk, the number needed to treat and the flags of a summary-of-findings
table.

Conventions
-----------
- Binary outcomes count bad events, so a ratio below 1 (a difference below 0)
  favours naltrexone (DESIGN.md).
- Ratio measures (RR, OR, ROM, and any fit with an ``exp`` block) are shown
  on their natural scale: ``exp`` of the estimate and of both CI limits.
- A variant that cannot be fitted is kept as a row with NaN numbers and a
  ``note`` that says why (no rows left, k = 1, a refusal of the engine).

Absolute effects (Guyatt et al. 2013; Cochrane Handbook ch. 14-15)
------------------------------------------------------------------
Assumed control risk (ACR) = median over the pooled rows of the control
arm's risk ``events_ctrl / n_ctrl``. Corresponding risk with naltrexone:

- RR:  CR = ACR x RR
- OR:  CR = OR ACR / (1 - ACR + OR ACR)
- RD:  CR = ACR + RD

each applied to the estimate and to both CI limits (the maps are monotone),
and capped to [0, 1] (a risk cannot leave it; GRADEpro does the same).
Absolute risk difference ARD = CR - ACR, reported per 1000. The number
needed to treat is 1 / |ARD|: NNTB when ARD < 0 (fewer bad events), NNTH
when ARD > 0. Its CI is the reciprocal of the ARD limits; when the ARD CI
includes 0 the NNT CI is the union of two pieces through infinity, written
"NNTB a to inf to NNTH b" with a = 1 / |ARD lower| and b = 1 / ARD upper
(Altman 1998). NNTs are rounded up to the next whole number (Cochrane
Handbook 15.4.4).

Flags (GRADE rules of thumb, applied mechanically; a reviewer judges)
--------------------------------------------------------------------
- imprecision: the CI includes no effect, or the optimal information size
  is not met: fewer than 300 events for binary outcomes (Guyatt et al.
  2011, GRADE 6) or fewer than 400 participants for continuous ones;
- inconsistency: I^2 > 50 %, or the prediction interval includes no effect
  while the CI does not (when both do, the spread is imprecision, already
  flagged; with tau^2 = 0 the PI is the CI and says nothing about
  inconsistency);
- small-study effects: Egger's regression test p < 0.10 when k >= 10,
  else "not assessed (k < 10)" (Sterne et al. 2011);
- the share of the main model's weight that comes from low-confidence rows.

References
----------
1. Altman DG. Confidence intervals for the number needed to treat.
   BMJ 1998;317:1309-12.
2. Guyatt GH, Oxman AD, Santesso N, et al. GRADE guidelines 12: preparing
   summary of findings tables - binary outcomes. J Clin Epidemiol
   2013;66:158-72.
3. Guyatt GH, Oxman AD, Kunz R, et al. GRADE guidelines 6: rating the
   quality of evidence - imprecision. J Clin Epidemiol 2011;64:1283-93.
4. Guyatt GH, Oxman AD, Kunz R, et al. GRADE guidelines 7: inconsistency.
   J Clin Epidemiol 2011;64:1294-302.
5. Sterne JAC, Sutton AJ, Ioannidis JPA, et al. Recommendations for
   examining and interpreting funnel plot asymmetry in meta-analyses of
   randomised controlled trials. BMJ 2011;343:d4002.
6. Higgins JPT, Thomas J, et al. (eds). Cochrane Handbook for Systematic
   Reviews of Interventions, version 6.4, 2023: ch. 10.10-10.11
   (subgroups, sensitivity), ch. 13.3.5 (small-study effects), ch. 14-15
   (summary of findings, NNT).
7. Viechtbauer W. Conducting meta-analyses in R with the metafor package.
   J Stat Softw 2010;36(3) (leave1out, regtest, ranktest, trimfill).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from . import grade
from .analysis import SMALL_STUDY_MIN_K, model_words, number_column, text_column
from .grade import LICENSED_ORAL_MG
from .plan import Config
from .result import AnalysisResult, Pooled, Scale

#: Binary measures that Mantel-Haenszel pools (metafor ``rma.mh``).
MH_MEASURES = ("RR", "OR", "RD")
#: Measures with an assumed control risk and absolute effects.
ABSOLUTE_MEASURES = ("RR", "OR", "RD")
#: Egger's test is read at the 10 % level (Egger et al. 1997; Sterne 2011).
EGGER_ALPHA = grade.SMALL_STUDY_ALPHA
#: GRADE optimal information size rules of thumb (Guyatt 2011, GRADE 6).
OIS_EVENTS = grade.OIS_EVENTS
OIS_PARTICIPANTS = grade.OIS_PARTICIPANTS
#: I^2 above this (percent) flags inconsistency (Cochrane Handbook 10.10.2:
#: "may represent substantial heterogeneity" from 50 %).
I2_INCONSISTENCY_PCT = grade.I2_SERIOUS_PCT
#: Cochran's Q is read at the 10 % level: it has low power with few studies
#: (Cochrane Handbook 6.5, 10.10.2), and a REML tau^2 of 0 (so I^2 = 0) can
#: sit beside a Q with p < 0.10.
Q_ALPHA = grade.Q_ALPHA
#: A risk difference this close to 0 is 0: its NNT is infinite. Far below any
#: risk a trial can estimate (one event in a billion participants).
ARD_ZERO = 1e-12
#: Slack when rounding an NNT up, so that 10.000000000001 (floating-point
#: noise from 1 / 0.1) stays 10.
NNT_ROUND_SLACK = 1e-9
PER = 1000
NOT_ASSESSED = f"not assessed (k < {SMALL_STUDY_MIN_K})"
#: Indications in the order a reader expects them; others follow alphabetically.
INDICATION_ORDER = ("alcohol", "opioid", "stimulant", "gambling")
INF = "\u221e"

SENSITIVITY_COLUMNS = ("analysis", "variant", "description", "model", "measure", "k",
                       "estimate", "ci_lb", "ci_ub", "pval", "tau2", "I2_pct", "note")
SOF_COLUMNS = ("indication", "analysis", "outcome", "comparator", "formulation", "time_frame",
               "measure", "model", "k", "studies", "participants",
               "events", "estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "I2_pct", "I2_q_pct",
               "q_pval", "tau2", "control_risk_source",
               "acr_per_1000", "cr_per_1000", "cr_lb_per_1000", "cr_ub_per_1000",
               "ard_per_1000", "ard_lb_per_1000", "ard_ub_per_1000", "nnt_kind", "nnt",
               "nnt_ci", "imprecision", "inconsistency", "small_study_effects",
               "low_confidence_weight_pct", "certainty", "certainty_level", "certainty_label",
               "statement", "footnotes", "prob_benefit_pct", "threshold",
               "prob_beyond_threshold_pct", "information_size", "status")
#: One row per analysis with a Bayesian model: priors, posteriors (shown scale), probabilities.
BAYES_COLUMNS = ("analysis", "title", "measure", "k", "tau_prior", "mu_prior", "mu_median",
                 "mu_cri_lb", "mu_cri_ub", "tau_median", "tau_cri_lb", "tau_cri_ub",
                 "pred_cri_lb", "pred_cri_ub", "prob_benefit_pct", "threshold",
                 "prob_beyond_threshold_pct", "freq_estimate", "freq_ci_lb", "freq_ci_ub")
#: One row per SoF row and GRADE domain: the rating, its reason, any override.
CERTAINTY_COLUMNS = ("indication", "analysis", "outcome", "domain", "levels", "reason",
                     "override", "rule_levels", "rule_reason")
SUBGROUP_COLUMNS = ("analysis", "subgroup", "level", "row", "k", "estimate", "ci_lb", "ci_ub",
                    "tau2", "I2_pct", "statistic", "df", "pval", "note")
SMALL_STUDY_COLUMNS = ("analysis", "k", "assessed", "egger_z", "egger_p", "egger_limit",
                       "egger_classic_t", "egger_classic_df", "egger_classic_p", "begg_tau",
                       "begg_p", "peters_t", "peters_p", "harbord_t", "harbord_p",
                       "trimfill_k0", "trimfill_side", "trimfill_estimate",
                       "trimfill_ci_lb", "trimfill_ci_ub", "note")


# --------------------------------------------------------------------------- small helpers


def _crosses(lb: float, ub: float, null: float) -> bool:
    """An interval that includes ``null`` (its limits both finite)."""
    return math.isfinite(lb) and math.isfinite(ub) and lb <= null <= ub


def _shown(result: AnalysisResult, fit: Pooled | None) -> tuple[float, float, float]:
    """Estimate and CI of a fit on the result's shown scale (NaN when there is no fit)."""
    if fit is None:
        return math.nan, math.nan, math.nan
    show = result.scale.show
    return float(show(fit.estimate)), float(show(fit.ci.low)), float(show(fit.ci.high))


# --------------------------------------------------------------------------- sensitivity


def sensitivity_table(result: AnalysisResult) -> pd.DataFrame:
    """The sensitivity variants of one analysis (``result.variants``), one row each.

    Rows in the order ``pool`` computed them: the main model; tau^2 by REML,
    DL and PM; Wald z and Hartung-Knapp; the common-effect inverse-variance,
    Mantel-Haenszel and Peto models; the main model without low-confidence
    rows, without derived rows, on placebo-controlled rows only, on each
    config subset; the leave-one-out range. ``estimate``, ``ci_lb``,
    ``ci_ub`` on the shown scale (RR, not log RR); ``tau2`` on the analysis
    scale; ``note`` says when a variant could not be computed.
    """
    rows = []
    for v in result.variants:
        # a variant of another measure (Peto's OR beside an RD) is shown on its own scale
        scale = Scale.of(v.measure) if v.measure and v.measure != result.measure else result.scale
        est, lb, ub = ((math.nan,) * 3 if v.fit is None else
                       tuple(float(scale.show(x)) for x in (v.fit.estimate, v.fit.ci.low,
                                                            v.fit.ci.high)))
        het = v.fit.heterogeneity if v.fit is not None else None
        measure = scale.name + (" (Peto)" if v.model.endswith("Peto") else "")
        rows.append({"analysis": result.title, "variant": v.name, "description": v.description,
                     "model": v.model, "measure": measure, "k": v.k, "estimate": est,
                     "ci_lb": lb, "ci_ub": ub,
                     "pval": v.fit.test_stat.pval if v.fit is not None else math.nan,
                     "tau2": het.tau2 if het else math.nan,
                     "I2_pct": het.i2_pct if het else math.nan, "note": v.note})
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


# --------------------------------------------------------------------------- summary of findings


def assumed_control_risk(effects: pd.DataFrame, used: np.ndarray) -> float:
    """Median control-arm risk ``events_ctrl / n_ctrl`` over the pooled rows with counts.

    NaN when no pooled row has control-arm counts (ratio-only data).
    """
    e, n = number_column(effects, "events_ctrl"), number_column(effects, "n_ctrl")
    ok = used & np.isfinite(e) & np.isfinite(n) & (n > 0)
    return float(np.median(e[ok] / n[ok])) if ok.any() else math.nan


def control_risk_source(effects: pd.DataFrame, used: np.ndarray) -> str:
    """Where the assumed control risk comes from, in words (GRADE 12: say it)."""
    e, n = number_column(effects, "events_ctrl"), number_column(effects, "n_ctrl")
    ok = used & np.isfinite(e) & np.isfinite(n) & (n > 0)
    if not ok.any():
        return ""
    risks = e[ok] / n[ok] * PER
    trials = effects.loc[ok, "study_id"].nunique() if "study_id" in effects else int(ok.sum())
    return (f"median control-arm risk of the {trials} pooled "
            f"{'trial' if trials == 1 else 'trials'} with counts "
            f"(range {risks.min():.0f} to {risks.max():.0f} per 1000)")


#: What each comparator class is called in the summary of findings.
CLASS_WORDS = {"placebo": "placebo", "no_treatment": "usual care or no medication (open label)",
               "active": "active drug"}
#: How formulations are written.
FORMULATION_WORDS = {"oral": "oral", "xr_injection": "XR injection",
                     "depot_injection": "depot injection", "implant": "implant"}


def _distinct(effects: pd.DataFrame, used: np.ndarray, col: str) -> list[str]:
    if col not in effects:
        return []
    values = effects.loc[used, col].astype(object).where(effects.loc[used, col].notna(), "")
    return list(dict.fromkeys(str(v) for v in values if str(v) not in ("", "nan")))


def _question(effects: pd.DataFrame, used: np.ndarray) -> dict:
    """Comparator, formulation and time frame of the rows pooled: what the row is about."""
    classes = _distinct(effects, used, "comparator_class")
    comparator = "; ".join(CLASS_WORDS.get(c, c) for c in classes)
    if classes == ["active"]:
        comparator += ": " + "; ".join(_distinct(effects, used, "comparator"))
    forms = "; ".join(FORMULATION_WORDS.get(f, f) for f in _distinct(effects, used, "formulation"))
    weeks = number_column(effects, "followup_weeks")[used]
    weeks = weeks[np.isfinite(weeks)]
    span = ("" if not weeks.size else f"{weeks.min():g} weeks" if weeks.min() == weeks.max()
            else f"{weeks.min():g} to {weeks.max():g} weeks")
    when = "; ".join(w.replace("_", " ") for w in _distinct(effects, used, "timepoint"))
    return {"comparator": comparator, "formulation": forms,
            "time_frame": ", ".join(t for t in (span, when) if t)}


def corresponding_risk(acr: float, effect: float, measure: str) -> float:
    """Risk with naltrexone for a control risk ``acr`` and a relative effect on the natural scale.

    RR: acr x RR; OR: OR acr / (1 - acr + OR acr); RD: acr + RD. Capped to [0, 1].
    """
    if not (math.isfinite(acr) and math.isfinite(effect)):
        return math.nan
    if measure == "RR":
        risk = acr * effect
    elif measure == "OR":
        risk = effect * acr / (1.0 - acr + effect * acr)
    elif measure == "RD":
        risk = acr + effect
    else:
        raise ValueError(f"no absolute effect for measure {measure!r}; use one of {ABSOLUTE_MEASURES}")
    return min(1.0, max(0.0, risk))


def _nnt_round(x: float) -> int | float:
    return x if not math.isfinite(x) else int(math.ceil(x - NNT_ROUND_SLACK))


def number_needed_to_treat(ard: float, ard_lb: float, ard_ub: float) -> tuple[str, float, str]:
    """NNT from an absolute risk difference of bad events (risk with - without naltrexone).

    Returns
    -------
    kind : {"NNTB", "NNTH", ""}
        NNTB when ard < 0, NNTH when ard > 0, "" when ard is 0 or NaN.
    nnt : float
        1 / |ard| rounded up (inf when ard is 0; NaN when ard is NaN).
    ci : str
        "NNTB a to b", "NNTH a to b", or Altman's "NNTB a to inf to NNTH b"
        when the CI of ard includes 0 ("" when a limit is NaN).
    """
    if not math.isfinite(ard):
        return "", math.nan, ""
    kind = "NNTB" if ard < -ARD_ZERO else "NNTH" if ard > ARD_ZERO else ""
    nnt = _nnt_round(1.0 / abs(ard)) if kind else math.inf
    if not (math.isfinite(ard_lb) and math.isfinite(ard_ub)):
        return kind, nnt, ""

    def inv(x):
        return INF if abs(x) <= ARD_ZERO else str(_nnt_round(1.0 / abs(x)))

    if ard_ub < -ARD_ZERO:      # all benefit: larger |ard| = smaller NNT
        ci = f"NNTB {inv(ard_lb)} to {inv(ard_ub)}"
    elif ard_lb > ARD_ZERO:     # all harm
        ci = f"NNTH {inv(ard_ub)} to {inv(ard_lb)}"
    else:                       # through zero (Altman 1998)
        ci = f"NNTB {inv(ard_lb)} to {INF} to NNTH {inv(ard_ub)}"
    return kind, nnt, ci


def _indication(filt: tuple, effects: pd.DataFrame | None) -> str:
    if filt:
        return ", ".join(str(v) for v in filt)
    if effects is not None and "indication" in effects:
        vals = sorted({str(v) for v in effects["indication"].dropna()})
        if vals:
            return ", ".join(vals)
    return "unspecified"


def _indication_key(ind: str) -> tuple:
    return (INDICATION_ORDER.index(ind) if ind in INDICATION_ORDER else len(INDICATION_ORDER), ind)


def _egger_flag(result: AnalysisResult) -> str:
    """Small-study flag text: Harbord's test for 2x2 tables, else the rma-based Egger test.

    Sterne et al. 2011 advise against Egger's test for binary outcomes (the
    log odds ratio and its SE are correlated even without bias) and name
    Harbord's and Peters' tests instead.
    """
    ss = result.small_study
    if ss is None or not ss.assessed:
        return NOT_ASSESSED
    name, test = small_study_test(result)
    if test is None:
        return f"not available ({ss.note or 'Egger test refused'})"
    p = test.pval
    if not math.isfinite(p):
        return f"not available ({name} p is NA)"
    if p < EGGER_ALPHA:
        return f"yes: {name} p = {p:.3f} < {EGGER_ALPHA:.2f}"
    return f"no: {name} p = {p:.3f}"


def _low_confidence_weight(effects: pd.DataFrame, result: AnalysisResult) -> float:
    """Percent of the main model's weight on low-confidence rows."""
    w = np.asarray(result.weights_pct, dtype=float)
    low = text_column(effects, "confidence").eq("low").to_numpy()
    ok = np.isfinite(w)
    return float(w[ok & low].sum() / w[ok].sum() * 100) if ok.any() and w[ok].sum() > 0 else math.nan


def indirectness_flags(effects: pd.DataFrame) -> list[tuple[str, ...]]:
    """GRADE indirectness flags of each row, "domain: reason" (:mod:`ntxmeta.grade`).

    The raw ``indirectness`` entries, and two design facts: an oral dose
    other than the licensed 50 mg a day, and a combination with another
    active drug (``pooling_issue`` combination_treatment).
    """
    raw = (effects["indirectness"].astype(object).fillna("").astype(str) if "indirectness" in effects
           else [""] * len(effects))
    dose = number_column(effects, "dose_mg")
    oral = text_column(effects, "formulation").eq("oral").to_numpy()
    combo = text_column(effects, "pooling_issue").str.contains("combination_treatment").to_numpy()
    out = []
    for i, text in enumerate(raw):
        flags = [f.strip() for f in str(text).split(";") if f.strip()]
        if oral[i] and np.isfinite(dose[i]) and dose[i] != LICENSED_ORAL_MG:
            flags.append(f"intervention: oral {dose[i]:g} mg a day (licensed: "
                         f"{LICENSED_ORAL_MG:g} mg)")
        if combo[i]:
            flags.append("intervention: naltrexone combined with another active drug")
        out.append(tuple(flags))
    return out


def _single_trial(result: AnalysisResult, effects: pd.DataFrame, used: np.ndarray):
    """Estimate and CI of the one pooled trial (k = 1) on the shown scale: the effects
    step's own Wald interval of that row."""
    show = result.scale.show
    return tuple(float(show(number_column(effects, c)[used][0])) for c in ("yi", "ci_lb", "ci_ub"))


def small_study_test(result: AnalysisResult):
    """The small-study test a 2x2 analysis is read by (Harbord's), else Egger's: (name, Test)."""
    ss = result.small_study
    if ss is not None and ss.harbord is not None:
        return "Harbord", ss.harbord
    return "Egger", ss.egger if ss is not None else None


def grade_evidence(result: AnalysisResult, effects: pd.DataFrame, row: Mapping,
                   plain_outcome: str, mid=None) -> grade.Evidence:
    """What the GRADE rules read of one SoF row (its numbers and its pooled rows)."""
    used = np.asarray(result.used, dtype=bool)
    show = result.scale.show
    lb, ub = number_column(effects, "ci_lb")[used], number_column(effects, "ci_ub")[used]
    test = small_study_test(result)
    weights = np.asarray(result.weights_pct, dtype=float)[used]
    return grade.Evidence(
        outcome=plain_outcome, estimate=row["estimate"], ci=(row["ci_lb"], row["ci_ub"]),
        null=float(result.scale.null), k=result.k_used, binary=result.events is not None,
        events=row["events"], participants=row["participants"],
        pi=(row["pi_lb"], row["pi_ub"]), i2_pct=row["I2_pct"], i2_q_pct=row["I2_q_pct"],
        q_pval=row["q_pval"], weights=tuple(map(float, weights)),
        rob=tuple(text_column(effects, "rob_overall")[used]),
        indirect=tuple(f for f, u in zip(indirectness_flags(effects), used) if u),
        trial_ci=tuple(zip(map(float, show(lb)), map(float, show(ub)))),
        small_study_test=test[0], small_study_p=test[1].pval if test[1] is not None else math.nan,
        mid=mid)


def _with_certainty(row: dict, result: AnalysisResult, effects: pd.DataFrame, plan) -> dict:
    """The SoF row with its GRADE certainty, statement and footnotes."""
    outcome = plan.plain_outcome if plan is not None else result.title
    ev = grade_evidence(result, effects, row, outcome, plan.mid if plan is not None else None)
    c = grade.certainty(ev, plan.overrides if plan is not None else None)
    row.update(certainty=c.text, certainty_level=c.level, certainty_label=c.label,
               statement=c.statement,
               footnotes=" ".join(f"{grade.letter(i)}. {f}" for i, f in enumerate(c.footnotes)))
    row["_ratings"] = c.ratings
    return row


def sof_row(result: AnalysisResult, effects: pd.DataFrame, indications: tuple = (),
            plan=None) -> dict:
    """One summary-of-findings row for one analysis (see the module docstring).

    With the analysis's ``plan``, the GRADE certainty uses its minimal
    important difference, plain-language outcome and reviewer overrides.
    """
    row = _sof_numbers(result, effects, indications)
    if row["k"] == 0:
        row.update(certainty="not rated: no trial", certainty_label="", footnotes="",
                   statement="No trial answers this question.", _ratings=())
        return row
    return _with_certainty(row, result, effects, plan)


def _absolute(result: AnalysisResult, effects: pd.DataFrame, used: np.ndarray,
              est: float, lb: float, ub: float) -> dict:
    """Assumed control risk, corresponding risk, ARD per 1000 and NNT of an estimate and CI.

    A pooled risk difference is itself the absolute effect (GRADE 12): its
    ARD is the RD, not a corresponding risk capped to [0, 1] minus the ACR.
    """
    measure = result.measure
    acr = assumed_control_risk(effects, used)
    cr = [corresponding_risk(acr, x, measure) for x in (est, lb, ub)]
    ard = [est, lb, ub] if measure == "RD" else [c - acr for c in cr]
    # NNT counts bad events: a gain in good events is a fall in bad ones
    kind, nnt, nnt_ci = (number_needed_to_treat(-ard[0], -ard[2], -ard[1])
                         if result.good_events else number_needed_to_treat(*ard))
    return dict(control_risk_source=control_risk_source(effects, used), acr_per_1000=acr * PER,
                cr_per_1000=cr[0] * PER, cr_lb_per_1000=cr[1] * PER, cr_ub_per_1000=cr[2] * PER,
                ard_per_1000=ard[0] * PER, ard_lb_per_1000=ard[1] * PER,
                ard_ub_per_1000=ard[2] * PER, nnt_kind=kind, nnt=nnt, nnt_ci=nnt_ci)


def _sof_numbers(result: AnalysisResult, effects: pd.DataFrame, indications: tuple = ()) -> dict:
    """The numbers of one summary-of-findings row (estimates, absolute effects, flags)."""
    measure = result.measure
    used = np.asarray(result.used, dtype=bool)
    if used.size != len(effects):
        raise ValueError(f"{result.name}: result has {used.size} rows, effects table {len(effects)}; "
                         "re-run the pool step")
    n = number_column(effects, "n_treat") + number_column(effects, "n_ctrl")
    binary = result.events is not None
    row: dict = {c: math.nan for c in SOF_COLUMNS}
    studies = effects.loc[used, "study_id"].nunique() if "study_id" in effects else int(used.sum())
    row.update(indication=_indication(indications, effects), analysis=result.name,
               outcome=result.title, measure=result.scale.name, k=result.k_used,
               studies=int(studies),
               participants=float(np.nansum(n[used])) if np.isfinite(n[used]).any() else math.nan,
               events=float(result.events) if binary else math.nan,
               nnt_kind="", nnt_ci="", status=result.status, model="",
               control_risk_source="")
    row.update(_question(effects, used))
    fit = result.main
    if fit is None and result.k_used == 2 and result.common is not None:
        fit = result.common  # k = 2 without random-effects pooling: the common effect, so named
    if fit is None and result.k_used == 1:
        est, lb, ub = _single_trial(result, effects, used)
        row.update(estimate=est, ci_lb=lb, ci_ub=ub, model="a single trial (k = 1): its own "
                   "estimate, not pooled", imprecision="not assessed (k = 1)",
                   inconsistency="not assessed (k = 1)", small_study_effects=NOT_ASSESSED)
        if result.measure in ABSOLUTE_MEASURES:
            row.update(_absolute(result, effects, used, est, lb, ub))
        return row
    if fit is None:
        row.update(imprecision="not assessed", inconsistency="not assessed",
                   small_study_effects=NOT_ASSESSED if row["k"] < SMALL_STUDY_MIN_K else "not assessed")
        return row
    row["model"] = (model_words(fit.model, fit.test) if fit is result.main
                    else "common effect, inverse variance (k = 2: no random-effects estimate)")
    scale = result.scale
    null = scale.null
    est, lb, ub = _shown(result, fit)
    pi_lb, pi_ub = ((float(scale.show(fit.pi.low)), float(scale.show(fit.pi.high)))
                    if fit.pi is not None else (math.nan, math.nan))
    het = fit.heterogeneity
    i2, tau2 = het.i2_pct, het.tau2
    row.update(estimate=est, ci_lb=lb, ci_ub=ub, pi_lb=pi_lb, pi_ub=pi_ub, I2_pct=i2,
               I2_q_pct=het.i2_q_pct, q_pval=het.q_pval, tau2=tau2)
    if measure in ABSOLUTE_MEASURES:
        row.update(_absolute(result, effects, used, est, lb, ub))
    null_txt = "1" if scale.log else "0"
    why_imp = []
    if _crosses(lb, ub, null):
        why_imp.append(f"CI includes {null_txt}")
    if binary and math.isfinite(row["events"]) and row["events"] < OIS_EVENTS:
        why_imp.append(f"{row['events']:.0f} events (< {OIS_EVENTS})")
    if not binary and math.isfinite(row["participants"]) and row["participants"] < OIS_PARTICIPANTS:
        why_imp.append(f"{row['participants']:.0f} participants (< {OIS_PARTICIPANTS})")
    row["imprecision"] = "yes: " + "; ".join(why_imp) if why_imp else "no"
    why_inc = []
    if math.isfinite(i2) and i2 > I2_INCONSISTENCY_PCT:
        why_inc.append(f"I\u00b2 = {i2:.0f}% (> {I2_INCONSISTENCY_PCT:.0f}%)")
    elif math.isfinite(het.i2_q_pct) and het.i2_q_pct > I2_INCONSISTENCY_PCT:
        why_inc.append(f"I\u00b2 from Q = {het.i2_q_pct:.0f}% (> {I2_INCONSISTENCY_PCT:.0f}%)")
    if math.isfinite(het.q_pval) and het.q_pval < Q_ALPHA and het.q_df > 0:
        why_inc.append(f"Q = {het.q:.1f} on {het.q_df} df, p = {het.q_pval:.2g} (< {Q_ALPHA:.2f})")
    if _crosses(pi_lb, pi_ub, null) and not _crosses(lb, ub, null):
        why_inc.append(f"prediction interval includes {null_txt} (the CI does not)")
    row["inconsistency"] = "yes: " + "; ".join(why_inc) if why_inc else "no"
    row["small_study_effects"] = _egger_flag(result)
    row["low_confidence_weight_pct"] = _low_confidence_weight(effects, result)
    return row


def summary_of_findings(effects_by_analysis: Mapping[str, pd.DataFrame],
                        results: Mapping[str, AnalysisResult], config: Config) -> pd.DataFrame:
    """Summary-of-findings table: one row per main analysis, grouped by indication.

    Analyses with ``main: true`` are summarised (all analyses when none is
    marked main). Rows ordered by indication (alcohol, opioid, stimulant,
    gambling, then others) and then by name. Relative effects and PIs on the
    shown scale; risks and differences per 1000; ``nnt`` rounded up; flags
    as text ("no", or "yes: <why>").
    """
    return _sof_and_certainty(effects_by_analysis, results, config)[0]


def _bayes_numbers(result: AnalysisResult) -> dict:
    """P(benefit) and P(beyond the threshold) in percent, the threshold on the shown scale."""
    b = result.bayes
    if b is None:
        return {"prob_benefit_pct": math.nan, "threshold": math.nan,
                "prob_beyond_threshold_pct": math.nan}
    return {"prob_benefit_pct": 100.0 * b.prob_benefit,
            "threshold": math.nan if b.threshold is None else float(result.scale.show(b.threshold)),
            "prob_beyond_threshold_pct": (math.nan if b.prob_beyond_threshold is None
                                          else 100.0 * b.prob_beyond_threshold)}


#: One row per trial sequential analysis (``ntxmeta.tsa.table_row`` and its settings).
TSA_COLUMNS = ("analysis", "title", "measure", "k", "spending", "alpha", "beta", "control_risk",
               "rrr", "mid", "d2_pct", "ris", "n_accrued", "ris_pct", "z_final", "boundary_final",
               "crossed", "ci_adjusted_low", "ci_adjusted_high", "conclusion")


def tsa_table(results: Mapping[str, AnalysisResult], order) -> pd.DataFrame:
    """The trial sequential analysis of every analysis that has one (settings, RIS, conclusion)."""
    from .tsa import table_row
    rows = []
    for n in order:
        t = results[n].tsa
        if t is None:
            continue
        rows.append({"analysis": n, "title": results[n].title, "measure": results[n].scale.name,
                     "k": len(t.looks), "spending": t.spending, "alpha": t.alpha, "beta": t.beta,
                     "control_risk": t.control_risk, "rrr": t.rrr, "mid": t.mid, **table_row(t)})
    return pd.DataFrame(rows, columns=list(TSA_COLUMNS))


def information_size_text(t) -> str:
    """"RIS 1,631 (D² 85%); 919 accrued (56%): RIS not reached; firm evidence of effect" (SoF)."""
    if t is None:
        return ""
    from .tsa import table_row
    r = table_row(t)
    said = r["conclusion"].startswith("RIS reached")
    reached = "" if said else ("RIS reached; " if t.info_fraction >= 1 else "RIS not reached; ")
    return (f"RIS {r['ris']:,} (D\u00b2 {r['d2_pct']:.0f}%); {r['n_accrued']:,} accrued "
            f"({r['ris_pct']:.0f}%): {reached}{r['conclusion']}")


def bayes_table(results: Mapping[str, AnalysisResult], order) -> pd.DataFrame:
    """The Bayesian random-effects model of every analysis that has one, beside the frequentist fit.

    Posterior medians and equal-tailed credible intervals on the shown scale
    (tau on the analysis scale: the between-trial SD of log ratios, SMDs or
    risk differences).
    """
    rows = []
    for n in order:
        res = results[n]
        b = res.bayes
        if b is None:
            continue
        show = res.scale.show
        est, lb, ub = _shown(res, res.main)
        rows.append({"analysis": n, "title": res.title, "measure": res.scale.name,
                     "k": res.k_used, "tau_prior": b.tau_prior, "mu_prior": b.mu_prior,
                     "mu_median": float(show(b.mu.median)), "mu_cri_lb": float(show(b.mu.ci.low)),
                     "mu_cri_ub": float(show(b.mu.ci.high)), "tau_median": b.tau.median,
                     "tau_cri_lb": b.tau.ci.low, "tau_cri_ub": b.tau.ci.high,
                     "pred_cri_lb": float(show(b.pred.ci.low)),
                     "pred_cri_ub": float(show(b.pred.ci.high)), **_bayes_numbers(res),
                     "freq_estimate": est, "freq_ci_lb": lb, "freq_ci_ub": ub})
    return pd.DataFrame(rows, columns=list(BAYES_COLUMNS))


def _sof_and_certainty(effects_by_analysis, results, config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary of findings and its GRADE ratings (one row per analysis and domain)."""
    names = [n for n in config.analyses if n in results]
    main = [n for n in names if config.analyses[n].main]
    rows = [{**sof_row(results[n], effects_by_analysis.get(n, pd.DataFrame()),
                       config.analyses[n].filter_values("indication"), config.analyses[n]),
             **_bayes_numbers(results[n]), "information_size": information_size_text(results[n].tsa),
             "analysis": n}
            for n in (main or names)]
    order = {n: i for i, n in enumerate(names)}
    rows.sort(key=lambda r: (_indication_key(r["indication"]), order[r["analysis"]]))
    ratings = [{"indication": r["indication"], "analysis": r["analysis"], "outcome": r["outcome"],
                "domain": x.domain, "levels": x.levels, "reason": x.reason, "override": x.override,
                "rule_levels": x.rule_levels if x.override else math.nan,
                "rule_reason": x.rule_reason} for r in rows for x in r.pop("_ratings")]
    return (pd.DataFrame(rows, columns=list(SOF_COLUMNS)),
            pd.DataFrame(ratings, columns=list(CERTAINTY_COLUMNS)))


# --------------------------------------------------------------------------- subgroups


def subgroup_table(results: Mapping[str, AnalysisResult]) -> pd.DataFrame:
    """Per-subgroup estimates and the tests for subgroup differences of every analysis with subgroups.

    For each analysis with subgroups: one ``level`` row per subgroup (k,
    estimate and CI on the shown scale, tau^2, I^2), then a ``test`` row with
    the mixed-effects test (QM with a common tau^2; F under knha) and a
    ``Q_between`` row with RevMan's test for subgroup differences (Q between
    the separate subgroup estimates). Analyses in name order.
    """
    rows = []
    for name, res in sorted(results.items()):
        sg = res.subgroups
        if sg is None:
            continue
        for lev in sg.levels:
            base = {"analysis": name, "subgroup": sg.column, "level": lev.level, "row": "level",
                    "k": lev.k}
            if lev.fit is None:
                rows.append({**base, "note": f"no fit: {lev.note or 'not computed'}"})
                continue
            est, lb, ub = _shown(res, lev.fit)
            rows.append({**base, "estimate": est, "ci_lb": lb, "ci_ub": ub,
                         "tau2": lev.fit.heterogeneity.tau2, "I2_pct": lev.fit.heterogeneity.i2_pct,
                         "note": model_words(lev.fit.model, lev.fit.test)})
        base = {"analysis": name, "subgroup": sg.column, "level": "Test for subgroup differences"}
        me = sg.mixed_effects
        if me is None:
            rows.append({**base, "row": "test", "note": f"not available: {sg.note or 'not computed'}"})
        else:
            dfs = ", ".join(f"{d:.0f}" for d in (me.df, me.df2) if d is not None)
            rows.append({**base, "row": "test", "k": res.k_used, "statistic": me.statistic,
                         "df": dfs, "pval": me.pval,
                         "note": f"mixed-effects model, common tau\u00b2 ({me.name} test)"})
        base = {"analysis": name, "subgroup": sg.column, "level": "Q between subgroups"}
        if sg.between is None:
            rows.append({**base, "row": "Q_between", "note": f"not available: {sg.note or 'not computed'}"})
        else:
            rows.append({**base, "row": "Q_between", "statistic": sg.between.statistic,
                         "df": f"{sg.between.df:.0f}", "pval": sg.between.pval,
                         "I2_pct": sg.between_i2_pct,
                         "note": f"RevMan-style, separate tau\u00b2 per subgroup, from "
                                 f"{res.method} subgroup estimates"})
    return pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS))


# --------------------------------------------------------------------------- small-study effects


def small_study_row(name: str, res: AnalysisResult) -> dict:
    """Egger (rma and classic), Begg and trim-and-fill of one analysis, or why not."""
    row: dict = {c: math.nan for c in SMALL_STUDY_COLUMNS}
    k = res.k_used
    row.update(analysis=name, k=k, assessed=k >= SMALL_STUDY_MIN_K, trimfill_side="", note="")
    ss = res.small_study
    if k < SMALL_STUDY_MIN_K or ss is None:
        row["note"] = NOT_ASSESSED if k < SMALL_STUDY_MIN_K else "not computed"
        return row
    show = res.scale.show
    if ss.egger is not None:
        row.update(egger_z=ss.egger.statistic, egger_p=ss.egger.pval,
                   egger_limit=float(show(ss.egger_limit)))
    if ss.egger_classic is not None:
        row.update(egger_classic_t=ss.egger_classic.statistic, egger_classic_df=ss.egger_classic.df,
                   egger_classic_p=ss.egger_classic.pval)
    if ss.begg is not None:
        row.update(begg_tau=ss.begg.statistic, begg_p=ss.begg.pval)
    if ss.peters is not None:
        row.update(peters_t=ss.peters.statistic, peters_p=ss.peters.pval)
    if ss.harbord is not None:
        row.update(harbord_t=ss.harbord.statistic, harbord_p=ss.harbord.pval)
    if ss.trimfill is not None:
        est, lb, ub = _shown(res, ss.trimfill.fit)
        row.update(trimfill_k0=ss.trimfill.k0, trimfill_side=ss.trimfill.side,
                   trimfill_estimate=est, trimfill_ci_lb=lb, trimfill_ci_ub=ub)
    row["note"] = ss.note
    return row


def small_study_table(results: Mapping[str, AnalysisResult]) -> pd.DataFrame:
    """Small-study effects of every analysis (name order), "not assessed (k < 10)" below k = 10.

    Egger's regression test as metafor's ``regtest(fit)`` (z test), the
    classic weighted-lm Egger test (t with k - 2 df), Begg's rank
    correlation (Kendall tau), trim and fill (L0: k0 filled studies, the
    adjusted estimate and CI on the shown scale). ``egger_limit`` is the
    limit estimate (the effect as the standard error goes to 0).
    """
    rows = [small_study_row(n, r) for n, r in sorted(results.items())]
    return pd.DataFrame(rows, columns=list(SMALL_STUDY_COLUMNS))


# --------------------------------------------------------------------------- the tables step

#: The four evidence tables: file stem -> Markdown digits per column.
TABLE_DIGITS = {
    "summary_of_findings": {"k": 0, "studies": 0, "participants": 0, "events": 0, "I2_pct": 0,
                            "tau2": 4, "acr_per_1000": 0, "cr_per_1000": 0, "cr_lb_per_1000": 0,
                            "cr_ub_per_1000": 0, "ard_per_1000": 0, "ard_lb_per_1000": 0,
                            "ard_ub_per_1000": 0, "nnt": 0, "low_confidence_weight_pct": 1,
                            "I2_q_pct": 0, "q_pval": 4, "certainty_level": 0,
                            "prob_benefit_pct": 1, "prob_beyond_threshold_pct": 1},
    "certainty": {"levels": 0, "rule_levels": 0},
    "tsa": {"k": 0, "alpha": 3, "beta": 3, "control_risk": 3, "rrr": 2, "mid": 2, "d2_pct": 0,
            "ris": 0, "n_accrued": 0, "ris_pct": 0, "z_final": 2, "boundary_final": 2},
    "bayes": {"k": 0, "prob_benefit_pct": 1, "prob_beyond_threshold_pct": 1, "tau_median": 3,
              "tau_cri_lb": 3, "tau_cri_ub": 3},
    "sensitivity": {"k": 0, "pval": 4, "tau2": 4, "I2_pct": 1},
    "published_comparison": {"k": 0, "studies": 0},
    "subgroups": {"k": 0, "pval": 4, "tau2": 4, "I2_pct": 1, "statistic": 2},
    "small_study_effects": {"k": 0, "egger_z": 2, "egger_p": 4, "egger_classic_t": 2,
                            "egger_classic_df": 0, "egger_classic_p": 4, "begg_tau": 3,
                            "begg_p": 4, "trimfill_k0": 0, "peters_t": 2, "peters_p": 4,
                            "harbord_t": 2, "harbord_p": 4},
}


def analysis_order(config: Config, results: Mapping[str, AnalysisResult],
                   effects: Mapping[str, pd.DataFrame]) -> list[str]:
    """Analyses by indication (alcohol, opioid, stimulant, gambling, others) and then name."""
    names = [n for n in config.analyses if n in results]
    pos = {n: i for i, n in enumerate(names)}
    ind = {n: _indication(config.analyses[n].filter_values("indication"), effects.get(n))
           for n in names}
    return sorted(names, key=lambda n: (_indication_key(ind[n]), pos[n]))


PUBLISHED_COLUMNS = ("analysis", "review", "outcome", "comparison", "published_measure",
                     "published_estimate", "published_ci_lb", "published_ci_ub", "published_k",
                     "measure", "estimate", "ci_lb", "ci_ub", "k", "studies",
                     "reason_for_difference", "source")


def published_comparison(published: pd.DataFrame, results: Mapping[str, AnalysisResult],
                         effects: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Our headline estimates beside published ones, with the reason for each difference.

    ``published`` is ``data/reference/published_estimates.csv``: each
    review's estimate as quoted, and, for the rows we compare, the analysis
    (``our_analysis``) and a reason for the difference written by a reviewer
    (data, not computed). Our side is the main estimate on the shown scale,
    or nothing when the analysis has none (its status says why).
    """
    rows = []
    for rec in published.to_dict("records"):
        name = str(rec.get("our_analysis") or "")
        if not name or name == "nan" or name not in results:
            continue
        res = results[name]
        eff = effects.get(name, pd.DataFrame())
        used = np.asarray(res.used, dtype=bool)
        studies = (eff.loc[used, "study_id"].nunique() if "study_id" in eff and len(eff) == used.size
                   else res.k_used)
        row = {"analysis": name, "review": rec["review"], "outcome": rec["outcome"],
               "comparison": rec["comparison"], "published_measure": rec["measure"],
               "published_estimate": rec["estimate"], "published_ci_lb": rec["ci_low"],
               "published_ci_ub": rec["ci_high"], "published_k": rec.get("k_trials"),
               "measure": res.scale.name, "k": res.k_used, "studies": int(studies),
               "reason_for_difference": rec["reason_for_difference"], "source": rec["source"]}
        if res.main is not None:
            est, lb, ub = _shown(res, res.main)
            row.update(estimate=est, ci_lb=lb, ci_ub=ub)
        else:
            row.update(estimate=math.nan, ci_lb=math.nan, ci_ub=math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(PUBLISHED_COLUMNS))


def evidence_tables(effects: Mapping[str, pd.DataFrame], results: Mapping[str, AnalysisResult],
                    config: Config, published: pd.DataFrame | None = None
                    ) -> dict[str, pd.DataFrame]:
    """The evidence tables, keyed by file stem (sensitivity rows in report order)."""
    order = analysis_order(config, results, effects)
    sens = [sensitivity_table(results[n]).assign(analysis=n) for n in order]
    sens_frame = (pd.concat(sens, ignore_index=True) if sens
                  else pd.DataFrame(columns=list(SENSITIVITY_COLUMNS)))
    sof, certainty = _sof_and_certainty(effects, results, config)
    return {
        "summary_of_findings": sof,
        "certainty": certainty,
        "sensitivity": sens_frame,
        "subgroups": subgroup_table(results),
        "bayes": bayes_table(results, order),
        "tsa": tsa_table(results, order),
        "small_study_effects": small_study_table(results),
        "published_comparison": published_comparison(
            published if published is not None else pd.DataFrame(columns=["our_analysis"]),
            results, effects),
    }


def _text_as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as ``object`` dtype, so that ``tables.safe_frame`` neutralises
    formula cells whatever the pandas version (pandas >= 3 gives text its ``str`` dtype)."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    return frame.astype({c: object for c in text})


def write_evidence_tables(effects_paths: Mapping[str, str], result_paths: Mapping[str, str],
                          config: Config, outputs: Mapping[str, tuple[str, str]],
                          published_path: str | None = None) -> None:
    """The tables step: the four evidence tables as CSV and Markdown, at the given paths.

    ``effects_paths`` and ``result_paths`` map analysis names to files;
    ``outputs`` maps each table stem of :data:`TABLE_DIGITS` to its (csv, md) paths.
    """
    from .pipeline import read_effects
    from .result import read_result
    from .tables import write_table
    effects = {n: read_effects(p) for n, p in effects_paths.items()}
    results = {n: read_result(p) for n, p in result_paths.items()}
    published = (pd.read_csv(published_path, dtype=str, keep_default_na=False)
                 if published_path else None)
    for stem, frame in evidence_tables(effects, results, config, published).items():
        csv, md = outputs[stem]
        write_table(_text_as_object(frame), csv, md, digits=TABLE_DIGITS[stem])
