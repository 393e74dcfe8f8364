"""The workflow's steps as functions: each reads files, calls the engine, writes files.

Snakemake rules (``workflow/rules/*.smk``) and the ``ntxmeta`` command line
call these and nothing else, so every step can be run and tested by hand.
Every output is written atomically (``ntxmeta.io``) and deterministically.

Steps
-----
ingest   data/raw/*.csv + config        -> data/processed/comparisons.csv
effects  comparisons + one analysis     -> data/processed/effects/{analysis}.csv
pool     effects + one analysis         -> results/analyses/{analysis}/{result,spec}.json
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import effects as ef
from .analyse import SECTIONS, analyse_data, dumps
from .data import analysis_data
from .io import atomic_path, write_text

#: Float format of every generated CSV: 10 significant digits, enough to
#: recompute any pooled number to 1e-8 and short enough to diff.
CSV_FLOAT = "%.10g"

#: Columns of ``data/processed/effects/{analysis}.csv`` in order.
EFFECT_COLUMNS = (
    "row_id", "study_id", "label", "year", "subgroup", "indication", "outcome",
    "comparator_type", "formulation", "genotype", "dose_mg", "followup_weeks", "data_type", "events_treat", "n_treat", "events_ctrl", "n_ctrl",
    "mean_treat", "sd_treat", "mean_ctrl", "sd_ctrl", "log_ratio", "var_log_ratio",
    "yi", "vi", "sei", "ci_lb", "ci_ub", "weight_pct", "confidence", "derived",
    "derived_text", "flipped", "source", "quote",
)
RATIO_MEASURES = ("RR", "OR", "ROM")


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
    return yi, vi


def analysis_options(analysis: dict, defaults: dict) -> dict:
    """The statistical options of one analysis: its own keys over the config defaults."""
    keys = ("method", "test", "level", "add", "to", "drop00")
    base = {"method": "REML", "test": "z", "level": 95, "add": 0.5, "to": "only0", "drop00": False}
    base.update({k: defaults[k] for k in keys if k in defaults})
    base.update({k: analysis[k] for k in keys if k in analysis})
    return base


def effects_table(rows: pd.DataFrame, analysis: dict, defaults: dict) -> pd.DataFrame:
    """One row per study of an analysis: arm data, yi, vi, CI, weight and provenance.

    ``weight_pct`` is the study's weight in the analysis's main model.
    """
    opts = analysis_options(analysis, defaults)
    measure = analysis["measure"]
    out = pd.DataFrame({c: rows[c] if c in rows else np.nan for c in EFFECT_COLUMNS})
    sg = analysis.get("subgroup")
    out["subgroup"] = rows[sg].astype(object).where(rows[sg].notna(), "") if sg else ""
    yi, vi = _row_effects(rows, measure, opts)
    crit = ef.z_crit(opts["level"])
    out["yi"], out["vi"] = yi, vi
    out["sei"] = np.sqrt(vi)
    out["ci_lb"], out["ci_ub"] = yi - crit * np.sqrt(vi), yi + crit * np.sqrt(vi)
    used = np.isfinite(yi) & np.isfinite(vi)
    weight = np.full(len(rows), np.nan)
    if used.sum() >= 1:
        from .rma import rma
        fit = rma(yi[used], vi[used], method=opts["method"], test="z", level=opts["level"])
        weight[used] = fit.weights_pct
    out["weight_pct"] = weight
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- pool

def back_transform(measure: str, effects: pd.DataFrame) -> str:
    """"exp" when results are reported as ratios: RR, OR, ROM, or generic log ratios."""
    ratio_rows = len(effects) > 0 and set(effects["data_type"]) == {"ratio"}
    return "exp" if measure in RATIO_MEASURES or ratio_rows else "none"


def analysis_spec(analysis_name: str, analysis: dict, defaults: dict, effects: pd.DataFrame,
                  effects_csv: str) -> dict:
    """A spec in the metafor-oracle format that reproduces the analysis from its effects file.

    ``Rscript oracle.R spec.json out.json`` on it gives metafor's numbers for
    every section, to check the pipeline against metafor on the real data.
    """
    opts = analysis_options(analysis, defaults)
    measure = analysis["measure"]
    kind = model_kind(effects, measure)
    if kind == "binary":
        columns = {"ai": "events_treat", "n1i": "n_treat", "ci": "events_ctrl", "n2i": "n_ctrl"}
        spec_measure = measure
    elif kind == "continuous":
        columns = {"m1i": "mean_treat", "sd1i": "sd_treat", "n1i": "n_treat",
                   "m2i": "mean_ctrl", "sd2i": "sd_ctrl", "n2i": "n_ctrl"}
        spec_measure = measure
    else:
        columns = {"yi": "yi", "vi": "vi"}
        spec_measure = "GEN"
    transf = back_transform(measure, effects)
    spec = {"name": analysis_name, "csv": effects_csv, "measure": spec_measure,
            "columns": columns, "study": "label", "year": "year",
            "options": {"add": opts["add"], "to": opts["to"], "drop00": opts["drop00"],
                        "level": opts["level"], "transf": transf,
                        # every fit converged fully (the oracle format's default
                        # reproduces metafor's default stopping rule instead)
                        "control": "full"}}
    if analysis.get("subgroup"):
        spec["subgroup"] = "subgroup"
    mods = analysis.get("moderators") or []
    if mods:
        spec["moderator"] = mods[0]
    return spec


def status_of(k_used: int) -> str:
    """Why an analysis has, or has no, pooled estimate."""
    if k_used == 0:
        return "no pooled estimate: no usable rows after the pooling rules"
    if k_used == 1:
        return "no pooled estimate: a single study (k = 1); its own estimate is shown"
    return "pooled"


def pool(effects: pd.DataFrame, analysis_name: str, analysis: dict, defaults: dict,
         effects_csv: str) -> tuple[dict, dict]:
    """Every result of one analysis (metafor key paths) and its oracle spec."""
    spec = analysis_spec(analysis_name, analysis, defaults, effects, effects_csv)
    opts = analysis_options(analysis, defaults)
    meta = {"title": analysis.get("title", analysis_name), "measure": analysis["measure"],
            "method": opts["method"], "test": opts["test"], "level": opts["level"],
            "k_rows": int(len(effects))}
    if len(effects) == 0:
        meta.update(k_used=0, status=status_of(0))
        return {"name": analysis_name, "analysis": meta, "spec": spec}, spec
    data = analysis_data(effects, spec)
    result = analyse_data(data, isolate=True)
    k_used = int(data.used.sum())
    status = status_of(k_used)
    if result.get("failed_sections"):
        status += "; FAILED sections: " + ", ".join(result["failed_sections"])
    meta.update(k_used=k_used, status=status,
                participants=int(np.nansum(pd.to_numeric(effects["n_treat"], errors="coerce"))
                                 + np.nansum(pd.to_numeric(effects["n_ctrl"], errors="coerce"))))
    mods = analysis.get("moderators") or []
    if len(mods) > 1 and "metareg" in SECTIONS:
        result["metareg_by"] = {
            m: SECTIONS["metareg"](dataclasses.replace(
                data, moderator=pd.to_numeric(effects[m], errors="coerce").to_numpy(dtype=float),
                moderator_name=m), None)
            for m in mods}
    result["analysis"] = meta
    result["spec"] = spec
    return result, spec


def headline(result: dict) -> dict:
    """The main model's numbers of a result, on the analysis and natural scales."""
    meta = result["analysis"]
    fit = result.get("rma" if meta["test"] == "z" else "rma_knha", {}).get(meta["method"], {})
    if meta.get("k_used", 0) < 1 or "error" in fit or not fit:
        return {}
    exp = meta["measure"] in RATIO_MEASURES
    tr = (lambda x: math.exp(x) if isinstance(x, float) and math.isfinite(x) else x) if exp else (lambda x: x)  # noqa: E731
    pred = fit.get("predict", {})
    return {"estimate": tr(fit["estimate"]), "ci_lb": tr(fit["ci.lb"]), "ci_ub": tr(fit["ci.ub"]),
            "pi_lb": tr(pred.get("pi.lb", math.nan)), "pi_ub": tr(pred.get("pi.ub", math.nan)),
            "pval": fit["pval"], "tau2": fit["tau2"], "I2_pct": fit["I2"], "QE": fit["QE"],
            "QEp": fit["QEp"], "k": fit["k"]}


def write_pool(effects_csv: str | Path, analysis_name: str, analysis: dict, defaults: dict,
               result_json: str | Path, spec_json: str | Path) -> None:
    """The ``pool`` step: read an effects file, write result.json and spec.json."""
    effects = pd.read_csv(effects_csv, keep_default_na=True)
    rel = Path(*([".."] * len(Path(spec_json).parent.parts))) / Path(effects_csv)
    result, spec = pool(effects, analysis_name, analysis, defaults, rel.as_posix())
    write_text(spec_json, json.dumps(spec, indent=1) + "\n")
    write_text(result_json, dumps(result))
