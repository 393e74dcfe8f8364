"""Evidence tables: sensitivity analyses, summary of findings, subgroups, small-study effects.

Every table is a :class:`pandas.DataFrame` in a fixed row and column order,
built from the pipeline's outputs (the effects table of an analysis and its
``result.json`` under metafor's key paths). No statistic is computed here
that the engine already offers: pooled fits come from
:func:`ntxmeta.rma.rma`, Mantel-Haenszel and Peto fits from
:func:`ntxmeta.binary.mantel_haenszel` and :func:`ntxmeta.binary.peto`,
leave-one-out fits from :func:`ntxmeta.diagnostics.leave1out`, and subgroup
and small-study numbers from the result sections.
What is written here is the arithmetic of presentation: back-transforms,
absolute effects from a relative effect and an assumed control risk, the
number needed to treat and the flags of a summary-of-findings table.

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

from .binary import mantel_haenszel, peto
from .diagnostics import leave1out
from .pipeline import RATIO_MEASURES, analysis_options
from .rma import rma

#: Binary measures that Mantel-Haenszel pools (metafor ``rma.mh``).
MH_MEASURES = ("RR", "OR", "RD")
#: Measures with an assumed control risk and absolute effects.
ABSOLUTE_MEASURES = ("RR", "OR", "RD")
#: Estimators compared in the sensitivity table (Cochrane Handbook 10.10.4.1:
#: REML is the default, DL the classic, PM the recommended alternative).
SENSITIVITY_METHODS = ("REML", "DL", "PM")
#: Fewest studies for a funnel-plot-based test (Sterne et al. 2011).
SMALL_STUDY_MIN_K = 10
#: Egger's test is read at the 10 % level (Egger et al. 1997; Sterne 2011).
EGGER_ALPHA = 0.10
#: GRADE optimal information size rules of thumb (Guyatt 2011, GRADE 6).
OIS_EVENTS = 300
OIS_PARTICIPANTS = 400
#: I^2 above this (percent) flags inconsistency (Cochrane Handbook 10.10.2:
#: "may represent substantial heterogeneity" from 50 %).
I2_INCONSISTENCY_PCT = 50.0
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
SOF_COLUMNS = ("indication", "analysis", "outcome", "measure", "k", "studies", "participants",
               "events", "estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "I2_pct", "tau2",
               "acr_per_1000", "cr_per_1000", "cr_lb_per_1000", "cr_ub_per_1000",
               "ard_per_1000", "ard_lb_per_1000", "ard_ub_per_1000", "nnt_kind", "nnt",
               "nnt_ci", "imprecision", "inconsistency", "small_study_effects",
               "low_confidence_weight_pct", "status")
SUBGROUP_COLUMNS = ("analysis", "subgroup", "level", "row", "k", "estimate", "ci_lb", "ci_ub",
                    "tau2", "I2_pct", "statistic", "df", "pval", "note")
SMALL_STUDY_COLUMNS = ("analysis", "k", "assessed", "egger_z", "egger_p", "egger_limit",
                       "egger_classic_t", "egger_classic_df", "egger_classic_p", "begg_tau",
                       "begg_p", "trimfill_k0", "trimfill_side", "trimfill_estimate",
                       "trimfill_ci_lb", "trimfill_ci_ub", "note")


# --------------------------------------------------------------------------- small helpers


def _num(x: Any) -> float:
    """A float, or NaN for anything that is not a finite-or-infinite number."""
    if isinstance(x, (list, tuple)):
        x = x[0] if x else math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric column as floats (NaN where missing or not a number)."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A text column, lower case and stripped ("" where missing)."""
    if name not in frame:
        return pd.Series([""] * len(frame), index=frame.index)
    return frame[name].astype(object).where(frame[name].notna(), "").astype(str).str.strip().str.lower()


def _truthy(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A yes/no column (bool, or text true/yes/1) as a bool array; missing is False."""
    return _text(frame, name).isin(("true", "yes", "1", "1.0")).to_numpy()


def _section(result: Mapping | None, *path: str) -> tuple[Mapping | None, str | None]:
    """The sub-dictionary at ``path``, or None and why it is not there."""
    node: Any = result
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None, f"no {'.'.join(path)} in the result"
        node = node[key]
    if isinstance(node, Mapping) and "error" in node:
        return None, str(node["error"])
    return (node, None) if isinstance(node, Mapping) else (None, f"{'.'.join(path)} is not a section")


def is_ratio(measure: str, fit: Mapping | None = None, transf: str | None = None) -> bool:
    """Whether estimates are shown back-transformed with exp (RR, OR, ROM, or an ``exp`` fit)."""
    if transf is not None:
        return transf == "exp"
    return measure in RATIO_MEASURES or (isinstance(fit, Mapping) and "exp" in fit)


def natural(x: float, ratio: bool) -> float:
    """exp(x) for ratio measures, x otherwise (NaN stays NaN)."""
    return math.exp(x) if ratio and math.isfinite(x) else x


def null_value(ratio: bool) -> float:
    """No effect on the displayed scale: 1 for ratios, 0 for differences."""
    return 1.0 if ratio else 0.0


def _crosses(lb: float, ub: float, null: float) -> bool:
    """An interval that includes ``null`` (its limits both finite)."""
    return math.isfinite(lb) and math.isfinite(ub) and lb <= null <= ub


def _fmt(x: float, digits: int = 2) -> str:
    return "NA" if not math.isfinite(x) else f"{x:.{digits}f}"


def main_fit(result: Mapping) -> tuple[Mapping | None, str | None]:
    """The main model's section of a result: ``rma[_knha].<method>`` from its metadata."""
    meta = result.get("analysis", {})
    method, test = meta.get("method", "REML"), meta.get("test", "z")
    return _section(result, "rma_knha" if test == "knha" else "rma", method)


def _fit_key(meta: Mapping) -> str:
    """The key of the main model in sections keyed REML/DL/EE[_knha] (subgroups)."""
    return meta.get("method", "REML") + ("_knha" if meta.get("test", "z") == "knha" else "")


def _names(items: Mapping | Iterable[Mapping]) -> dict[str, Mapping]:
    """Results keyed by analysis name (a mapping as given, or a list of results with "name")."""
    if isinstance(items, Mapping):
        return dict(items)
    return {r["name"]: r for r in items}


def used_rows(effects: pd.DataFrame) -> np.ndarray:
    """Rows that enter the models: finite yi and vi (as the pipeline and metafor's na.omit)."""
    yi, vi = _column(effects, "yi"), _column(effects, "vi")
    return np.isfinite(yi) & np.isfinite(vi) & (vi > 0)


# --------------------------------------------------------------------------- sensitivity


def _row(variant: str, description: str, model: str, measure: str, k: int, *,
         estimate=math.nan, ci=(math.nan, math.nan), pval=math.nan, tau2=math.nan,
         i2=math.nan, note: str = "") -> dict:
    return {"variant": variant, "description": description, "model": model, "measure": measure,
            "k": int(k), "estimate": estimate, "ci_lb": ci[0], "ci_ub": ci[1], "pval": pval,
            "tau2": tau2, "I2_pct": i2, "note": note}


def _model_name(method: str, test: str) -> str:
    if method in ("EE", "FE", "CE"):
        return "common effect, inverse variance"
    return f"{method} random effects, {'Hartung-Knapp' if test == 'knha' else 'z test'}"


def _k_note(k: int) -> str | None:
    if k == 0:
        return "not computed: no rows"
    if k == 1:
        return "not computed: a single study (k = 1), nothing to pool"
    return None


def _rma_row(variant: str, description: str, yi: np.ndarray, vi: np.ndarray, *, method: str,
             test: str, level: float, measure: str, ratio: bool, note: str = "") -> dict:
    """One sensitivity row from an ``rma()`` fit (or a note saying why there is none)."""
    model = _model_name(method, test)
    k = int(yi.size)
    why = _k_note(k)
    if why:
        return _row(variant, description, model, measure, k, note=why)
    try:
        fit = rma(yi, vi, method=method, test=test, level=level)
    except ValueError as exc:
        return _row(variant, description, model, measure, k, note=f"not computed: {exc}")
    return _row(variant, description, model, measure, k,
                estimate=natural(fit.estimate, ratio),
                ci=(natural(fit.ci.low, ratio), natural(fit.ci.high, ratio)),
                pval=float(fit.pval[0]), tau2=fit.tau2, i2=fit.I2_pct, note=note)


def _binary_row(variant: str, description: str, fitter: Callable, effects: pd.DataFrame,
                used: np.ndarray, *, measure: str, level: float, label: str) -> dict:
    """A Mantel-Haenszel or Peto row from the arm counts of the pooled rows."""
    cells = [_column(effects, c) for c in ("events_treat", "n_treat", "events_ctrl", "n_ctrl")]
    has = used & np.all([np.isfinite(c) for c in cells], axis=0)
    k = int(has.sum())
    note = "" if k == used.sum() else (
        f"{k} of {int(used.sum())} pooled rows have arm counts; the others are left out")
    why = _k_note(k)
    if why:
        return _row(variant, description, label, measure, k,
                    note=why if k else "not computed: no row has arm counts")
    a, n1, c, n2 = (x[has] for x in cells)
    try:
        fit = fitter(a, ci=c, n1i=n1, n2i=n2, level=level)
    except ValueError as exc:
        return _row(variant, description, label, measure, k, note=f"not computed: {exc}")
    ratio = fit.ratio
    return _row(variant, description, label, measure, k,
                estimate=natural(fit.estimate, ratio),
                ci=(natural(fit.ci.low, ratio), natural(fit.ci.high, ratio)), pval=fit.pval,
                tau2=0.0, i2=fit.heterogeneity.I2_pct, note=note)


def _exclude_mask(effects: pd.DataFrame, filters: Mapping[str, list]) -> tuple[np.ndarray, list[str]]:
    """Rows matching every filter of a config ``exclude`` block; the filter keys not in the table."""
    hit = np.ones(len(effects), dtype=bool)
    missing = []
    for col, values in filters.items():
        if col not in effects:
            missing.append(col)
            hit &= False
            continue
        wanted = {str(v).strip().lower() for v in values}
        hit &= _text(effects, col).isin(wanted).to_numpy()
    return hit, missing


#: Sensitivity subsets every analysis gets: variant -> (title, exclude filters).
#: A config ``sensitivity`` subset with the same filters replaces one of them.
BUILTIN_EXCLUSIONS = {
    "excl_low_confidence": ("Without low-confidence rows", {"confidence": ["low"]}),
    "excl_derived": ("Without derived rows", {"derived": [True]}),
}


def _filter_key(filters: Mapping[str, list]) -> tuple:
    """A filter block in canonical form (columns sorted, values as lower-case text)."""
    return tuple(sorted((str(c), tuple(sorted(str(v).strip().lower() for v in vals)))
                        for c, vals in filters.items()))


def ratio_scale(measure: str, effects: pd.DataFrame, transf: str | None = None) -> bool:
    """Whether an analysis is shown back-transformed with exp.

    ``transf`` ("exp" or "none", the spec option the pipeline wrote) decides
    when given; otherwise the pipeline's rule (``pipeline.analysis_spec``):
    ratio measures (RR, OR, ROM), and generic analyses whose rows are all
    log ratios taken from reported ratios and CIs.
    """
    if transf is not None:
        return transf == "exp"
    kinds = set(_text(effects, "data_type"))
    return measure in RATIO_MEASURES or (len(effects) > 0 and kinds == {"ratio"})


def sensitivity_table(effects: pd.DataFrame, analysis: Mapping, defaults: Mapping | None = None, *,
                      name: str | None = None, subsets: Mapping[str, Mapping] | None = None,
                      transf: str | None = None) -> pd.DataFrame:
    """Sensitivity analyses of one analysis, one row per variant.

    Rows, in this order: the main model; tau^2 by REML, DL and PM (main
    test); Wald z and Hartung-Knapp (main estimator); the common-effect
    inverse-variance model; Mantel-Haenszel (the analysis's measure, or OR
    for a generic one) and Peto's OR when the outcome is binary; the main
    model without low-confidence rows, without derived rows, and on
    placebo-controlled rows only; one row per config ``sensitivity`` subset;
    and the leave-one-out range: the lowest and the highest pooled estimate
    when one study is left out, naming that study.

    Parameters
    ----------
    effects : DataFrame
        ``data/processed/effects/{analysis}.csv``: ``yi``, ``vi``, arm counts,
        ``confidence``, ``derived``, ``comparator_type``, ``label``.
    analysis : mapping
        The analysis's config block (``measure``, optional model options).
    defaults : mapping, optional
        The config's ``defaults``.
    name : str, optional
        Written into the ``analysis`` column.
    subsets : mapping, optional
        The config's ``sensitivity`` block: ``{key: {title, exclude: filters}}``.
        A subset whose filters are those of a built-in row (``BUILTIN_EXCLUSIONS``)
        gives that row its title instead of a second, identical row.
    transf : {"exp", "none"}, optional
        Show estimates back-transformed; default: see :func:`ratio_scale`.

    Returns
    -------
    DataFrame
        Columns ``SENSITIVITY_COLUMNS``; ``estimate``, ``ci_lb``, ``ci_ub`` on
        the natural scale (RR, not log RR); ``tau2`` on the analysis scale
        (0 for common-effect models); ``I2_pct`` in percent; ``note`` says
        when a variant could not be computed, or left rows out.

    Notes
    -----
    Each fit is a direct :func:`ntxmeta.rma.rma` (or ``mantel_haenszel`` /
    ``peto``) call, so a row equals metafor 3.8-1's ``rma()``, ``rma.mh()``,
    ``rma.peto()`` on the same rows; the leave-one-out rows equal the
    extremes of ``leave1out(fit)`` (:func:`ntxmeta.diagnostics.leave1out`).
    Edge cases: k = 0 or 1 rows are kept with a note; leave-one-out needs
    k >= 3 (each fit keeps k - 1 >= 2 studies). Cost: about 12 O(k) fits
    and one batched leave-one-out.
    """
    defaults = defaults or {}
    opts = analysis_options(dict(analysis), dict(defaults))
    method, test, level = opts["method"], opts["test"], float(opts["level"])
    measure = str(analysis["measure"])
    ratio = ratio_scale(measure, effects, transf or analysis.get("transf"))
    used = used_rows(effects)
    yi_all, vi_all = _column(effects, "yi"), _column(effects, "vi")

    def fit_rows(mask, variant, description, *, m=method, t=test, note=""):
        sel = used & mask
        if note == "" and sel.sum() == used.sum() and mask is not everything:
            note = "same rows as the main model"
        return _rma_row(variant, description, yi_all[sel], vi_all[sel], method=m, test=t,
                        level=level, measure=measure, ratio=ratio, note=note)

    everything = np.ones(len(effects), dtype=bool)
    rows = [fit_rows(everything, "main", "Main model")]
    same = "same model as the main model"
    rows += [fit_rows(everything, f"tau2_{m}", f"tau\u00b2 estimator {m}", m=m,
                      note=same if m == method else "") for m in SENSITIVITY_METHODS]
    rows += [fit_rows(everything, f"test_{t}", "Hartung-Knapp test" if t == "knha" else "Wald z test",
                      t=t, note=same if t == test else "") for t in ("z", "knha")]
    rows.append(fit_rows(everything, "common_EE", "Common effect (inverse variance)", m="EE", t="z"))
    if (_text(effects, "data_type") == "binary").any():
        mh_measure = measure if measure in MH_MEASURES else "OR"

        def mh(*args, **kw):
            return mantel_haenszel(*args, measure=mh_measure, **kw)

        rows.append(_binary_row("common_MH", f"Mantel-Haenszel {mh_measure}", mh, effects, used,
                                measure=mh_measure, level=level,
                                label="common effect, Mantel-Haenszel"))
        rows.append(_binary_row("common_Peto", "Peto odds ratio", peto, effects, used,
                                measure="OR (Peto)", level=level, label="common effect, Peto"))
    subsets = dict(subsets or {})
    same_as = {_filter_key(s.get("exclude", {})): key for key, s in sorted(subsets.items())}
    for variant, (title, filters) in BUILTIN_EXCLUSIONS.items():
        # a config subset with the same filter takes this place (with its title), not a second row
        key = same_as.get(_filter_key(filters))
        # derived may be spelt True/yes/1: read it as a yes/no column
        hit = _truthy(effects, "derived") if variant == "excl_derived" else _exclude_mask(effects, filters)[0]
        rows.append(fit_rows(~hit, variant, str(subsets.pop(key).get("title", title)) if key else title))
    placebo = _text(effects, "comparator_type").eq("placebo").to_numpy()
    rows.append(fit_rows(placebo, "placebo_only", "Placebo-controlled rows only"))
    for key, subset in sorted(subsets.items()):
        hit, missing = _exclude_mask(effects, subset.get("exclude", {}))
        note = (f"filter column(s) {', '.join(missing)} not in the effects table: nothing excluded"
                if missing else "")
        rows.append(fit_rows(~hit, f"subset_{key}", str(subset.get("title", key)), note=note))
    rows += _leave_one_out_rows(effects, used, method=method, test=test, level=level,
                                measure=measure, ratio=ratio)
    out = pd.DataFrame(rows)
    out.insert(0, "analysis", name or analysis.get("title", ""))
    return out[list(SENSITIVITY_COLUMNS)]


def _leave_one_out_rows(effects: pd.DataFrame, used: np.ndarray, *, method: str, test: str,
                        level: float, measure: str, ratio: bool) -> list[dict]:
    """Lowest and highest pooled estimate with one study left out (metafor ``leave1out``).

    The fits come from :func:`ntxmeta.diagnostics.leave1out` (all k subsets
    at once, fully converged like :func:`ntxmeta.rma.rma`).
    """
    idx = np.flatnonzero(used)
    model = _model_name(method, test)
    if idx.size < 3:
        note = f"not computed: leave-one-out needs k >= 3 (k = {idx.size})"
        k = max(idx.size - 1, 0)
        return [_row("leave1out_min", "Leave-one-out: lowest estimate", model, measure, k, note=note),
                _row("leave1out_max", "Leave-one-out: highest estimate", model, measure, k, note=note)]
    labels = (effects["label"].astype(str).to_numpy()[idx] if "label" in effects
              else np.array([str(i + 1) for i in idx]))
    try:
        loo = leave1out(_column(effects, "yi")[idx], _column(effects, "vi")[idx], method=method,
                        test=test, level=level)
    except ValueError as exc:
        note = f"not computed: {exc}"
        return [_row(v, f"Leave-one-out: {w} estimate", model, measure, idx.size - 1, note=note)
                for v, w in (("leave1out_min", "lowest"), ("leave1out_max", "highest"))]
    out = []
    # argmin/argmax take the first of tied studies: deterministic, in table order
    for variant, word, j in (("leave1out_min", "lowest", int(np.nanargmin(loo.estimate))),
                             ("leave1out_max", "highest", int(np.nanargmax(loo.estimate)))):
        out.append(_row(variant, f"Leave-one-out: {word} estimate (without {labels[j]})", model,
                        measure, int(loo.k[j]), estimate=natural(float(loo.estimate[j]), ratio),
                        ci=(natural(float(loo.ci_lb[j]), ratio), natural(float(loo.ci_ub[j]), ratio)),
                        pval=float(loo.pval[j]), tau2=float(loo.tau2[j]), i2=float(loo.I2_pct[j])))
    return out


# --------------------------------------------------------------------------- summary of findings


def assumed_control_risk(effects: pd.DataFrame) -> float:
    """Median control-arm risk ``events_ctrl / n_ctrl`` over the pooled rows with counts.

    NaN when no pooled row has control-arm counts (ratio-only data).
    """
    used = used_rows(effects)
    e, n = _column(effects, "events_ctrl"), _column(effects, "n_ctrl")
    ok = used & np.isfinite(e) & np.isfinite(n) & (n > 0)
    return float(np.median(e[ok] / n[ok])) if ok.any() else math.nan


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


def _indication(name: str, analysis: Mapping, effects: pd.DataFrame | None) -> str:
    filt = (analysis.get("filters") or {}).get("indication")
    if filt:
        return ", ".join(str(v) for v in filt)
    if effects is not None and "indication" in effects:
        vals = sorted({str(v) for v in effects["indication"].dropna()})
        if vals:
            return ", ".join(vals)
    return "unspecified"


def _indication_key(ind: str) -> tuple:
    return (INDICATION_ORDER.index(ind) if ind in INDICATION_ORDER else len(INDICATION_ORDER), ind)


def _egger_flag(result: Mapping, k: int, method: str) -> tuple[str, float]:
    """Small-study flag text and Egger's p (rma-based regtest of the main estimator)."""
    if k < SMALL_STUDY_MIN_K:
        return NOT_ASSESSED, math.nan
    reg, why = _section(result, "regtest", f"rma_{method}")
    if reg is None:
        reg, why = _section(result, "regtest", "rma_REML")
    if reg is None:
        return f"not available ({why})", math.nan
    p = _num(reg.get("pval"))
    if not math.isfinite(p):
        return "not available (Egger p is NA)", p
    if p < EGGER_ALPHA:
        return f"yes: Egger p = {p:.3f} < {EGGER_ALPHA:.2f}", p
    return f"no: Egger p = {p:.3f}", p


def _low_confidence_weight(effects: pd.DataFrame, fit: Mapping) -> float:
    """Percent of the main model's weight on low-confidence rows.

    Per-row weights from the fit (``weights_pct``, one entry per effects row,
    NaN for rows not used), else the effects table's ``weight_pct``.
    """
    w = np.asarray([_num(x) for x in fit.get("weights_pct", [])], dtype=float)
    if w.size != len(effects):
        w = _column(effects, "weight_pct")
    low = _text(effects, "confidence").eq("low").to_numpy()
    ok = np.isfinite(w)
    return float(w[ok & low].sum() / w[ok].sum() * 100) if ok.any() and w[ok].sum() > 0 else math.nan


def sof_row(name: str, effects: pd.DataFrame, result: Mapping, analysis: Mapping) -> dict:
    """One summary-of-findings row for one analysis (see the module docstring)."""
    meta = result.get("analysis", {})
    measure = str(meta.get("measure", analysis.get("measure", "")))
    used = used_rows(effects)
    n = _column(effects, "n_treat") + _column(effects, "n_ctrl")
    ev = _column(effects, "events_treat") + _column(effects, "events_ctrl")
    binary = measure in ABSOLUTE_MEASURES or (_text(effects, "data_type")[used] == "binary").all()
    row: dict = {c: math.nan for c in SOF_COLUMNS}
    studies = effects.loc[used, "study_id"].nunique() if "study_id" in effects else int(used.sum())
    row.update(indication=_indication(name, analysis, effects), analysis=name,
               outcome=meta.get("title", analysis.get("title", name)), measure=measure,
               k=int(used.sum()), studies=int(studies),
               participants=float(np.nansum(n[used])) if np.isfinite(n[used]).any() else math.nan,
               events=float(np.nansum(ev[used])) if binary and np.isfinite(ev[used]).any() else math.nan,
               nnt_kind="", nnt_ci="", status=meta.get("status", ""))
    fit, why = main_fit(result)
    if fit is None or not _num(fit.get("k")) >= 2:
        reason = meta.get("status") or why or "no pooled estimate"
        row.update(imprecision="not assessed", inconsistency="not assessed",
                   small_study_effects=NOT_ASSESSED if row["k"] < SMALL_STUDY_MIN_K else "not assessed",
                   status=reason if reason != "pooled" else "no pooled estimate (k < 2)")
        return row
    ratio = is_ratio(measure, fit)
    null = null_value(ratio)
    est, lb, ub = (natural(_num(fit.get(k)), ratio) for k in ("estimate", "ci.lb", "ci.ub"))
    pred = fit.get("predict", {}) if isinstance(fit.get("predict"), Mapping) else {}
    pi_lb, pi_ub = (natural(_num(pred.get(k)), ratio) for k in ("pi.lb", "pi.ub"))
    i2, tau2 = _num(fit.get("I2")), _num(fit.get("tau2"))
    row.update(estimate=est, ci_lb=lb, ci_ub=ub, pi_lb=pi_lb, pi_ub=pi_ub, I2_pct=i2, tau2=tau2)
    if measure in ABSOLUTE_MEASURES:
        acr = assumed_control_risk(effects)
        cr = [corresponding_risk(acr, x, measure) for x in (est, lb, ub)]
        ard = [c - acr for c in cr]
        kind, nnt, nnt_ci = number_needed_to_treat(*ard)
        row.update(acr_per_1000=acr * PER, cr_per_1000=cr[0] * PER, cr_lb_per_1000=cr[1] * PER,
                   cr_ub_per_1000=cr[2] * PER, ard_per_1000=ard[0] * PER,
                   ard_lb_per_1000=ard[1] * PER, ard_ub_per_1000=ard[2] * PER,
                   nnt_kind=kind, nnt=nnt, nnt_ci=nnt_ci)
    # imprecision
    why_imp = []
    if _crosses(lb, ub, null):
        why_imp.append(f"CI includes {'1' if ratio else '0'}")
    if binary and math.isfinite(row["events"]) and row["events"] < OIS_EVENTS:
        why_imp.append(f"{row['events']:.0f} events (< {OIS_EVENTS})")
    if not binary and math.isfinite(row["participants"]) and row["participants"] < OIS_PARTICIPANTS:
        why_imp.append(f"{row['participants']:.0f} participants (< {OIS_PARTICIPANTS})")
    row["imprecision"] = "yes: " + "; ".join(why_imp) if why_imp else "no"
    # inconsistency
    why_inc = []
    if math.isfinite(i2) and i2 > I2_INCONSISTENCY_PCT:
        why_inc.append(f"I\u00b2 = {i2:.0f}% (> {I2_INCONSISTENCY_PCT:.0f}%)")
    if _crosses(pi_lb, pi_ub, null) and not _crosses(lb, ub, null):
        why_inc.append(f"prediction interval includes {'1' if ratio else '0'} (the CI does not)")
    row["inconsistency"] = "yes: " + "; ".join(why_inc) if why_inc else "no"
    row["small_study_effects"] = _egger_flag(result, row["k"], meta.get("method", "REML"))[0]
    row["low_confidence_weight_pct"] = _low_confidence_weight(effects, fit)
    return row


def summary_of_findings(effects_by_analysis: Mapping[str, pd.DataFrame],
                        results_by_analysis: Mapping[str, Mapping], config: Mapping) -> pd.DataFrame:
    """Summary-of-findings table: one row per main analysis, grouped by indication.

    Parameters
    ----------
    effects_by_analysis : mapping of str to DataFrame
        Effects table of each analysis.
    results_by_analysis : mapping of str to dict
        ``result.json`` of each analysis (as read by ``ntxmeta.analyse.load_result``).
    config : mapping
        The project config; analyses with ``main: true`` are summarised
        (all analyses when none is marked main).

    Returns
    -------
    DataFrame
        Columns ``SOF_COLUMNS``, rows ordered by indication (alcohol, opioid,
        stimulant, gambling, then others) and then by config order. Relative
        effects and PIs on the natural scale; risks and differences per 1000;
        ``nnt`` rounded up; flags as text ("no", or "yes: <why>").
    """
    analyses = config.get("analyses", {})
    names = [n for n in analyses if n in results_by_analysis]
    main = [n for n in names if analyses[n].get("main")]
    rows = [sof_row(n, effects_by_analysis.get(n, pd.DataFrame()), results_by_analysis[n], analyses[n])
            for n in (main or names)]
    order = {n: i for i, n in enumerate(names)}
    rows.sort(key=lambda r: (_indication_key(r["indication"]), order[r["analysis"]]))
    return pd.DataFrame(rows, columns=list(SOF_COLUMNS))


# --------------------------------------------------------------------------- subgroups


def subgroup_table(results: Mapping[str, Mapping] | Iterable[Mapping],
                   config: Mapping | None = None) -> pd.DataFrame:
    """Per-subgroup fits and the tests for subgroup differences of every analysis with subgroups.

    For each analysis whose result has a ``subgroup`` section: one ``level``
    row per subgroup (k, estimate and CI on the natural scale, tau^2, I^2
    from ``subgroup.by_level.<L>.<method>[_knha]``), then a ``test`` row
    with the mixed-effects test (QM, df, p of ``subgroup.mixed_effects``,
    a common tau^2; an F test under knha) and a ``Q_between`` row with the
    RevMan-style Q between separate subgroup estimates
    (``subgroup.Q_between.from_<method>_subgroup_estimates``). Sections that
    are missing or ``{"error": ...}`` give a row with the reason in ``note``.
    Analyses in name order, levels in the result's order (C-locale sorted).
    The ``subgroup`` column names the comparisons column that defines the
    subgroups: the analysis's ``subgroup`` key in ``config`` when given.
    """
    analyses = (config or {}).get("analyses", {})
    rows = []
    for name, res in sorted(_names(results).items()):
        sg, why = _section(res, "subgroup")
        if sg is None:
            continue
        meta = res.get("analysis", {})
        key = _fit_key(meta)
        main, _ = main_fit(res)
        ratio = is_ratio(str(meta.get("measure", "")), main)
        column = str(analyses.get(name, {}).get("subgroup") or meta.get("subgroup") or sg.get("column", ""))
        levels = list(sg.get("levels", [])) or sorted((sg.get("by_level") or {}).keys())
        for lev in levels:
            lev_sec = (sg.get("by_level") or {}).get(lev, {})
            lev_key = key if key in lev_sec else key.replace(meta.get("method", "REML"), "REML", 1)
            fit, why = _section(sg, "by_level", lev, lev_key)
            base = {"analysis": name, "subgroup": column, "level": str(lev), "row": "level",
                    "k": _num(lev_sec.get("k") if isinstance(lev_sec, Mapping) else math.nan)}
            if fit is None:
                rows.append({**base, "note": f"no fit: {why}"})
                continue
            rows.append({**base, "k": _num(fit.get("k")),
                         "estimate": natural(_num(fit.get("estimate")), ratio),
                         "ci_lb": natural(_num(fit.get("ci.lb")), ratio),
                         "ci_ub": natural(_num(fit.get("ci.ub")), ratio),
                         "tau2": _num(fit.get("tau2")), "I2_pct": _num(fit.get("I2")),
                         "note": _model_name(fit.get("method", ""), fit.get("test", "z"))})
        me_key = key if key in (sg.get("mixed_effects") or {}) else key.replace(
            meta.get("method", "REML"), "REML", 1)   # the oracle layout: REML, DL, EE (+ _knha)
        test, why = _section(sg, "mixed_effects", me_key)
        base = {"analysis": name, "subgroup": column, "level": "Test for subgroup differences"}
        if test is None:
            rows.append({**base, "row": "test", "note": f"not available: {why}"})
        else:
            stat = "F" if test.get("test") == "knha" else "QM"
            dfs = test.get("QMdf", [math.nan])
            dfs = [_num(d) for d in (dfs if isinstance(dfs, list) else [dfs])]
            df_txt = ", ".join(f"{d:.0f}" for d in dfs if math.isfinite(d))
            rows.append({**base, "row": "test", "k": _num(test.get("k")),
                         "statistic": _num(test.get("QM")), "df": df_txt,
                         "pval": _num(test.get("QMp")),
                         "note": f"mixed-effects model, common tau\u00b2 ({stat} test)"})
        q_method = meta.get("method", "REML")
        if f"from_{q_method}_subgroup_estimates" not in (sg.get("Q_between") or {}):
            q_method = "REML"   # the oracle layout has REML, DL and EE only
        qb, why = _section(sg, "Q_between", f"from_{q_method}_subgroup_estimates")
        note_src = f"from {q_method} subgroup estimates"
        base = {"analysis": name, "subgroup": column, "level": "Q between subgroups"}
        if qb is None:
            rows.append({**base, "row": "Q_between", "note": f"not available: {why}"})
        else:
            rows.append({**base, "row": "Q_between", "statistic": _num(qb.get("Q")),
                         "df": f"{_num(qb.get('df')):.0f}", "pval": _num(qb.get("pval")),
                         "note": f"RevMan-style, separate tau\u00b2 per subgroup, {note_src}"})
    return pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS))


# --------------------------------------------------------------------------- small-study effects


def small_study_row(name: str, res: Mapping) -> dict:
    """Egger (rma and classic), Begg and trim-and-fill of one analysis, or why not."""
    meta = res.get("analysis", {})
    method = meta.get("method", "REML")
    main, _ = main_fit(res)
    k_used = _num(meta.get("k_used", main.get("k") if main else 0))
    k = int(k_used) if math.isfinite(k_used) else 0
    row: dict = {c: math.nan for c in SMALL_STUDY_COLUMNS}
    row.update(analysis=name, k=k, assessed=k >= SMALL_STUDY_MIN_K, trimfill_side="", note="")
    if k < SMALL_STUDY_MIN_K:
        row["note"] = NOT_ASSESSED
        return row
    ratio = is_ratio(str(meta.get("measure", "")), main)
    notes = []
    reg_key = f"rma_{method}" if f"rma_{method}" in (res.get("regtest") or {}) else "rma_REML"
    reg, why = _section(res, "regtest", reg_key)
    if reg is None:
        notes.append(f"Egger: {why}")
    else:
        row.update(egger_z=_num(reg.get("stat")), egger_p=_num(reg.get("pval")),
                   egger_limit=natural(_num(reg.get("limit_estimate")), ratio))
        if reg_key != f"rma_{method}":
            notes.append(f"Egger from a REML fit ({method} not available)")
    lm, why = _section(res, "regtest", "lm_classic_egger")
    if lm is None:
        notes.append(f"classic Egger: {why}")
    else:
        row.update(egger_classic_t=_num(lm.get("stat")), egger_classic_df=_num(lm.get("df")),
                   egger_classic_p=_num(lm.get("pval")))
    rk, why = _section(res, "ranktest", "default")
    if rk is None:
        notes.append(f"Begg: {why}")
    else:
        row.update(begg_tau=_num(rk.get("tau")), begg_p=_num(rk.get("pval")))
    tf_key = method if method in (res.get("trimfill") or {}) else "REML"
    tf, why = _section(res, "trimfill", tf_key)
    if tf is None:
        notes.append(f"trim-and-fill: {why}")
    else:
        row.update(trimfill_k0=_num(tf.get("k0")), trimfill_side=str(tf.get("side", "")),
                   trimfill_estimate=natural(_num(tf.get("estimate")), ratio),
                   trimfill_ci_lb=natural(_num(tf.get("ci.lb")), ratio),
                   trimfill_ci_ub=natural(_num(tf.get("ci.ub")), ratio))
        if tf_key != method:
            notes.append(f"trim-and-fill with REML ({method} not available)")
    row["note"] = "; ".join(notes)
    return row


def small_study_table(results: Mapping[str, Mapping] | Iterable[Mapping]) -> pd.DataFrame:
    """Small-study effects of every analysis (name order), "not assessed (k < 10)" below k = 10.

    Egger's regression test as metafor's ``regtest(fit)`` (mixed-effects
    model on the standard error, z test; ``regtest.rma_<method>``) and the
    classic weighted-lm Egger test (``regtest.lm_classic_egger``, t with
    k - 2 df); Begg's rank correlation (``ranktest.default``: Kendall tau,
    exact p unless ties); trim-and-fill (``trimfill.<method>``: L0 estimator,
    k0 filled studies on the side metafor chose, the adjusted estimate and
    CI on the natural scale). ``egger_limit`` is the limit estimate (the
    effect as the standard error goes to 0).
    """
    rows = [small_study_row(n, r) for n, r in sorted(_names(results).items())]
    return pd.DataFrame(rows, columns=list(SMALL_STUDY_COLUMNS))
