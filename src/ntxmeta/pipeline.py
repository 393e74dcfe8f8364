"""The workflow's steps as functions: each reads files, calls the engine, writes files.

Snakemake rules (``workflow/rules/*.smk``) and the ``ntxmeta`` command line
call these and nothing else, so every step can be run and tested by hand.
Every output is written atomically (``ntxmeta.io``) and deterministically.

Steps
-----
ingest   data/raw/*.csv + config        -> data/processed/comparisons.csv
effects  comparisons + one analysis     -> data/processed/effects/{analysis}.csv
pool     effects + one analysis plan    -> results/analyses/{analysis}/{result,spec}.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import effects as ef
from .io import CSV_FLOAT, atomic_path, write_text
from .plan import AnalysisPlan
from .result import AnalysisResult, Scale

#: Columns of ``data/processed/effects/{analysis}.csv`` in order.
EFFECT_COLUMNS = (
    "row_id", "study_id", "label", "year", "subgroup", "indication", "outcome", "event",
    "outcome_definition", "timepoint", "analysis_population", "primary_outcome",
    "indirectness", "pooling_issue", "comparator_class", "comparator_type", "comparator", "formulation", "genotype", "dose_mg",
    "followup_weeks", "data_type", "events_treat", "n_treat", "events_ctrl", "n_ctrl",
    "mean_treat", "sd_treat", "mean_ctrl", "sd_ctrl", "log_ratio", "var_log_ratio",
    "yi", "vi", "sei", "ci_lb", "ci_ub", "role", "chosen_because", "exclusion_reason",
    "rob_d1_randomisation", "rob_d2_deviations", "rob_d3_missing_data", "rob_d4_measurement",
    "rob_d5_reporting", "rob_overall", "rob_reasons",
    "confidence", "derived", "derived_text", "flipped", "split_control", "adjustment", "source",
    "quote",
)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically with the project's fixed float format."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=CSV_FLOAT, lineterminator="\n")


# --------------------------------------------------------------------------- effects

def model_kind(rows: pd.DataFrame, measure: str) -> str:
    """How an analysis's rows enter the model: "binary", "continuous" or "generic".

    Arm-level binary (continuous) rows with a binary (continuous) measure are
    analysed from the arms, so that Mantel-Haenszel and Peto are available;
    anything else (ratio-only rows, or a mix) is analysed from yi and vi.
    """
    kinds = set(rows["data_type"]) if len(rows) else set()
    if measure in ef.BINARY_MEASURES and kinds <= {"binary"}:
        return "binary"
    if measure in ef.CONTINUOUS_MEASURES and kinds <= {"continuous"}:
        return "continuous"
    return "generic"


def _row_effects(rows: pd.DataFrame, measure: str, options: dict) -> tuple[np.ndarray, np.ndarray]:
    """yi, vi per row whatever its data type (arm-level or ratio-only)."""
    yi = np.full(len(rows), np.nan)
    vi = np.full(len(rows), np.nan)
    dt = rows["data_type"].to_numpy()
    num = lambda c: pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=float)  # noqa: E731
    b = dt == "binary"
    if b.any() and measure in ef.BINARY_MEASURES + ("GEN",):
        bm = measure if measure in ef.BINARY_MEASURES else "OR"
        es = ef.binary_effects(bm, *ef.cells_from_arms(num("events_treat")[b], num("n_treat")[b],
                                                       num("events_ctrl")[b], num("n_ctrl")[b]),
                               add=options["add"], to=options["to"], drop00=options["drop00"])
        yi[b], vi[b] = es.yi, es.vi
    c = dt == "continuous"
    if c.any():
        cm = measure if measure in ef.CONTINUOUS_MEASURES else "SMD"
        es = ef.continuous_effects(cm, num("mean_treat")[c], num("sd_treat")[c], num("n_treat")[c],
                                   num("mean_ctrl")[c], num("sd_ctrl")[c], num("n_ctrl")[c])
        yi[c], vi[c] = es.yi, es.vi
    r = dt == "ratio"
    if r.any():
        yi[r], vi[r] = num("log_ratio")[r], num("var_log_ratio")[r]
        if measure == "OR":  # a stratum of an interaction: only reported ORs are log ORs
            other = r & (rows["ratio_type"].astype(str).to_numpy() != "OR")
            yi[other], vi[other] = np.nan, np.nan
    return yi, vi


def row_effects(rows: pd.DataFrame, measure: str,
                options: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """yi, vi per row and why each row cannot enter a model ("" when it can)."""
    yi, vi = _row_effects(rows, measure, options)
    reasons = [_unusable_reason(r, measure, options, y, v)
               for r, y, v in zip(rows.to_dict("records"), yi, vi)]
    return yi, vi, reasons


def _unusable_reason(row: dict, measure: str, options: dict, yi: float, vi: float) -> str:
    """Why a row's effect size cannot enter a model, in words ("" when it can).

    A row that passed validation can still have no usable yi and vi for the
    analysis's measure and options; the models leave it out (``used`` false),
    and this reason says why in the effects table and the report.
    """
    if math.isfinite(yi) and math.isfinite(vi) and vi > 0:
        return ""
    dtype = row.get("data_type")
    cells = [pd.to_numeric(row.get(c), errors="coerce") for c in
             ("events_treat", "n_treat", "events_ctrl", "n_ctrl")]
    if dtype == "continuous" and measure == "ROM":
        low = [f"{c} = {row.get(c):g}" for c in ("mean_treat", "mean_ctrl")
               if pd.to_numeric(row.get(c), errors="coerce") <= 0]
        if low:
            return (f"the ratio of means (ROM) needs means above 0, and {' and '.join(low)}: "
                    "use MD or SMD for this outcome")
    if dtype == "binary" and all(map(math.isfinite, cells)):
        e1, n1, e2, n2 = cells
        both = (e1 == 0 and e2 == 0) or (e1 == n1 and e2 == n2)
        if both and options.get("drop00"):
            return ("no events in either arm (or only events): left out by drop00: true, "
                    "as metafor leaves it out")
        if options.get("to") == "none" and 0 in (e1, n1 - e1, e2, n2 - e2):
            return (f"a cell of its 2x2 table is 0 and to: none adds no continuity correction: "
                    f"{measure} has no finite value or no variance above 0")
    if math.isfinite(yi) and vi == 0:
        return f"its {measure} has a sampling variance of 0: it can be given no weight"
    return (f"its {measure} cannot be computed from its numbers "
            f"(yi = {yi:g}, vi = {vi:g}); check the row")


#: Columns of ``data/processed/left_out/{analysis}.csv``: the rows an analysis's
#: filters match that it does not use, and why.
LEFT_OUT_COLUMNS = ("row_id", "study_id", "label", "year", "outcome", "data_type", "source_file",
                    "source_line", "exclusion_reason")


#: A row whose variance is this many times smaller than the largest of its
#: analysis is left out with its reason: 1 / vi then holds all but 1e-12 of
#: the weight sum, and Q, tr P and the likelihood lose their digits to
#: cancellation (metafor warns "Ratio of largest to smallest sampling
#: variance extremely large" from 1e7 and returns such numbers: e.g. Q = 3
#: where the exact value is 4.8 for vi = 1e-19 beside 0.04 and 0.05).
VARIANCE_RATIO_MAX = 1e12


def _dominating_variances(reasons: list[str], vi: np.ndarray, measure: str) -> list[str]:
    """The reasons, with one added for each row whose variance is too small to weigh stably."""
    ok = np.array([not r for r in reasons], dtype=bool) & np.isfinite(vi) & (vi > 0)
    if ok.sum() < 2:
        return reasons
    top = float(vi[ok].max())
    out = list(reasons)
    for i in np.flatnonzero(ok & (vi * VARIANCE_RATIO_MAX < top)):
        out[i] = (f"its {measure} has a sampling variance of {vi[i]:.3g}, more than "
                  f"{VARIANCE_RATIO_MAX:.0e} times below the largest of this analysis "
                  f"({top:.3g}): it would take all the weight and the models could not be "
                  "computed stably; check its SD or CI")
    return out


def left_out_table(matching: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``select.matching_rows`` that the analysis does not use, with the reason.

    Every row the filters match is either in the effects table or here:
    rows left out by a pooling rule, by the data type its measure needs, or
    as another row of the same patients (the outcome hierarchy's choice).
    """
    rows = matching.loc[matching["role"].eq("").to_numpy()]
    return pd.DataFrame({c: rows[c] if c in rows else "" for c in LEFT_OUT_COLUMNS}).reset_index(
        drop=True)


def good_events(rows: pd.DataFrame) -> pd.DataFrame:
    """Binary rows counting the favourable event (``events: good``): each flip undone or made.

    comparisons.csv counts bad events (favourable ones flipped: not
    abstinent, no response). An analysis of response counts responders:
    events = n - events in each arm, a reported OR's log negated, and
    ``event`` and ``flipped`` say what is counted now.
    """
    out = rows.copy()
    binary = (out["data_type"] == "binary").to_numpy()
    ratio = (out["data_type"] == "ratio").to_numpy() & (out.get("ratio_type") == "OR").to_numpy()
    for arm in ("treat", "ctrl"):
        ev, n = (pd.to_numeric(out[f"{c}_{arm}"], errors="coerce") for c in ("events", "n"))
        out[f"events_{arm}"] = np.where(binary, n - ev, ev)
    out["log_ratio"] = np.where(ratio, -pd.to_numeric(out["log_ratio"], errors="coerce"),
                                out["log_ratio"])
    swap = binary | ratio
    was = out["flipped"].astype(str).str.lower().isin(("true", "1"))
    out["event"] = [(o if f else f"no {e}") if s else e
                    for o, e, f, s in zip(out["outcome"], out["event"], was, swap)]
    out["flipped"] = np.where(swap, ~was, was)
    return out


def effects_table(rows: pd.DataFrame, plan: AnalysisPlan) -> pd.DataFrame:
    """One row per study of an analysis: arm data, yi, vi, CI and provenance.

    No model is fitted here: weights belong to a model and come with the
    result of the pool step (``AnalysisResult.weights_pct``). A row without
    a finite yi and a variance above 0 keeps its place with yi and vi empty
    and its reason in ``exclusion_reason``: the models leave it out, and no
    row drops out silently (a variance of 0 would otherwise stop the models).
    """
    o = plan.options
    if plan.events == "good":
        rows = good_events(rows)
    if plan.measure == "ROR":  # one row per trial: the genotype x treatment interaction
        from .interaction import interaction_rows
        rows = interaction_rows(rows, *_row_effects(rows, "OR", vars(o)))
    out = pd.DataFrame({c: rows[c] if c in rows else np.nan for c in EFFECT_COLUMNS})
    if plan.measure == "ROR":
        extra = [c for c in rows.columns if c.endswith(("_carrier", "_homozygote"))]
        out = pd.concat([out, rows[extra + ["interaction_note"]]], axis=1)
    sg = plan.subgroup
    out["subgroup"] = rows[sg].astype(object).where(rows[sg].notna(), "") if sg else ""
    for m in plan.moderators:
        if m not in EFFECT_COLUMNS and m in rows:
            out[m] = rows[m]
    if plan.measure == "ROR":
        yi, vi = rows["yi"].to_numpy(dtype=float), rows["vi"].to_numpy(dtype=float)
        reasons = [str(n) for n in rows["interaction_note"]]
    else:
        yi, vi, reasons = row_effects(rows, plan.measure, vars(o))
    reasons = _dominating_variances(reasons, vi, plan.measure)
    unusable = np.array([bool(r) for r in reasons], dtype=bool)
    yi, vi = np.where(unusable, np.nan, yi), np.where(unusable, np.nan, vi)
    if "role" in rows:  # a sensitivity-only row says why it is not in the main model
        kept = rows["exclusion_reason"].astype(object).where(rows["exclusion_reason"].notna(), "")
        reasons = [r or (str(k) if role == "sensitivity" else "")
                   for r, k, role in zip(reasons, kept, rows["role"])]
    out["exclusion_reason"] = reasons
    crit = ef.z_crit(o.level)
    out["yi"], out["vi"] = yi, vi
    out["sei"] = np.sqrt(vi)
    out["ci_lb"], out["ci_ub"] = yi - crit * np.sqrt(vi), yi + crit * np.sqrt(vi)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- pool

def analysis_spec(plan: AnalysisPlan, effects: pd.DataFrame, effects_csv: str) -> dict:
    """A spec in the metafor-oracle format that reproduces the analysis from its effects file.

    ``Rscript oracle.R spec.json out.json`` on it gives metafor's numbers for
    every section, to check the pipeline against metafor on the real data.
    """
    o = plan.options
    kind = model_kind(effects, plan.measure)
    if kind == "binary":
        columns = {"ai": "events_treat", "n1i": "n_treat", "ci": "events_ctrl", "n2i": "n_ctrl"}
        spec_measure = plan.measure
    elif kind == "continuous":
        columns = {"m1i": "mean_treat", "sd1i": "sd_treat", "n1i": "n_treat",
                   "m2i": "mean_ctrl", "sd2i": "sd_ctrl", "n2i": "n_ctrl"}
        spec_measure = plan.measure
    else:
        columns = {"yi": "yi", "vi": "vi"}
        spec_measure = "GEN"
    scale = Scale.of(plan.measure, log_ratio_rows=log_ratio_rows(effects))
    spec = {"name": plan.name, "csv": effects_csv, "measure": spec_measure,
            "columns": columns, "study": "label", "year": "year",
            "options": {"add": o.add, "to": o.to, "drop00": o.drop00,
                        "level": o.level, "transf": scale.back_transform,
                        # every fit converged fully (the oracle format's default
                        # reproduces metafor's default stopping rule instead)
                        "control": "full"}}
    if plan.subgroup:
        spec["subgroup"] = "subgroup"
    if plan.moderators:
        spec["moderator"] = plan.moderators[0]
    return spec


def log_ratio_rows(effects: pd.DataFrame) -> bool:
    """A generic analysis whose rows are all log ratios from reported ratios (shown as ratios)."""
    return len(effects) > 0 and set(effects["data_type"]) == {"ratio"}


def pool(effects: pd.DataFrame, plan: AnalysisPlan, effects_csv: str) -> tuple[AnalysisResult, dict]:
    """The typed result of one analysis and its oracle spec."""
    from .analysis import run_plan
    result = run_plan(plan, effects, log_ratio_rows=log_ratio_rows(effects))
    return result, analysis_spec(plan, effects, effects_csv)


def read_effects(path: str | Path) -> pd.DataFrame:
    """``data/processed/effects/{analysis}.csv`` as written by :func:`effects_table`."""
    return pd.read_csv(path, keep_default_na=True)


def write_pool(effects_csv: str | Path, plan: AnalysisPlan, result_json: str | Path,
               spec_json: str | Path) -> None:
    """The ``pool`` step: read an effects file, write result.json and spec.json."""
    effects = read_effects(effects_csv)
    rel = Path(*([".."] * len(Path(spec_json).parent.parts))) / Path(effects_csv)
    result, spec = pool(effects, plan, rel.as_posix())
    write_text(spec_json, json.dumps(spec, indent=1) + "\n")
    write_text(result_json, result.to_json())
