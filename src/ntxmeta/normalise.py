"""Validated raw rows -> ``data/processed/comparisons.csv``, one row per raw row.

What normalisation does, in order (DESIGN.md, "Conventions of the data"):

1. **Direction.** Binary outcomes are analysed as bad events. A row whose
   events are favourable (abstinence, response, retention; ``x-outcomes`` in
   ``schemas/raw_trials.schema.yaml``) is flipped to the complement:
   ``events = n - events`` in each arm (percent-only rows: ``100 - percent``;
   an odds ratio: ``log OR`` negated, since OR(not A) = 1 / OR(A)). ``event``
   names what is then counted, ``outcome`` keeps the code as entered and
   ``flipped`` says so. A continuous outcome with ``higher_is_worse: false``
   has its means negated, so that a negative difference favours naltrexone.
2. **Ratio-only rows.** ``log_ratio`` and ``var_log_ratio`` from the reported
   ratio and 95% CI (``ntxmeta.effects.log_or_from_ci``; Cochrane Handbook 6.3.2).
3. **Rows that cannot be pooled** as they stand (percentages only, means
   without SD, a favourable RR or HR that cannot be flipped) get
   ``pooled = false`` and the reason.
4. **Rules** (``rules`` of ``config/config.yaml``; defaults in
   ``schemas/config.schema.yaml``) for rows that would count patients twice
   or are not randomised comparisons, applied in this order:
   ``post_randomisation_subgroups``, ``post_hoc_subgroups``,
   ``combination_treatment``, ``sample_size_conflicts``, ``rerandomised_stages``,
   ``repeated_timepoints``, ``shared_control``. Each rule sees only the rows
   still pooled after the rules before it, so a shared control is divided
   only among the comparisons that are really pooled.
5. **Splitting a shared control** (Cochrane Handbook 23.3.4): the control
   arm's events and participants are each divided into as many parts as
   there are comparisons, as evenly as possible; integer division, and the
   remainder goes one by one to the first rows in file order (91 events in
   102 participants over 2 rows: 46/51 and 45/51). Means and SDs are kept.
   The split rows become independent (``sample_id`` = their ``row_id``).

Every raw row stays in the output; ``pooled`` and ``exclusion_reason`` say
whether analyses may use it. ``sample_id`` names the unit of independence:
an analysis uses at most one row per sample (``ntxmeta.select``).

The output is deterministic: rows sorted by indication, study_id and row_id;
floats written with 15 significant digits; booleans as ``true``/``false``;
written atomically (``ntxmeta.io``).

References
----------
1. Higgins JPT et al. (eds). Cochrane Handbook for Systematic Reviews of
   Interventions, version 6.4 (2023): 6.3.2 (SE from a CI), 23.3.4 (studies
   with more than two intervention groups: splitting the shared group).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import effects as ef
from .io import atomic_path
from .validate import load_schema

#: Float format of comparisons.csv: 15 significant digits, so that numbers
#: computed from it (log ratios, variances) lose nothing against the 1e-6
#: tolerance of the metafor comparison, and a re-run writes the same bytes.
FLOAT_FORMAT = "%.15g"
#: Level of the CIs reported on ratio-only rows (data/raw/README.md).
RATIO_CI_LEVEL = 95.0
#: Raw measure types and the data type of their comparison.
DATA_TYPES = {"binary": "binary", "binary_favourable_event": "binary",
              "binary_percent_only": "binary", "binary_favourable_event_percent_only": "binary",
              "continuous": "continuous", "continuous_mean_only": "continuous",
              "ratio_only": "ratio"}
#: Why rows of these measure types are never pooled.
UNPOOLABLE = {
    "binary_percent_only": "percentages only, no counts: cannot be pooled",
    "binary_favourable_event_percent_only": "percentages only, no counts: cannot be pooled",
    "continuous_mean_only": "means without SD: cannot be pooled without imputing an SD",
}


@dataclass(frozen=True)
class Outcome:
    """One outcome code and its direction (``x-outcomes`` of the raw schema).

    Attributes
    ----------
    code : str
    kind : {"binary", "continuous"}
    favourable : bool
        Binary: the events are good outcomes and are flipped before pooling.
    event : str
        What is counted after the flip (the code itself when not flipped).
    higher_is_worse : bool or None
        Continuous: a higher value is worse (None for binary codes).
    family : str
        Group of related codes.
    description : str
    """

    code: str
    kind: str
    favourable: bool
    event: str
    higher_is_worse: bool | None
    family: str
    description: str


def outcome_table() -> dict[str, Outcome]:
    """Every outcome code of the raw schema with its direction and family."""
    return {code: Outcome(code=code, kind=o["kind"], favourable=bool(o.get("favourable", False)),
                          event=o["event"], higher_is_worse=o.get("higher_is_worse"),
                          family=o["family"], description=o["description"])
            for code, o in load_schema("raw_trials")["x-outcomes"].items()}


def comparison_columns() -> dict[str, dict]:
    """The columns of comparisons.csv in order, with their schema entries."""
    return load_schema("comparisons")["properties"]


def rule_choices() -> dict[str, dict]:
    """Each pooling rule's schema entry (``enum`` and ``default``)."""
    return load_schema("config")["properties"]["rules"]["properties"]


def resolve_rules(rules: dict | None) -> dict[str, str]:
    """The rules with defaults filled in; ``ValueError`` for an unknown key or value."""
    choices = rule_choices()
    rules = dict(rules or {})
    unknown = sorted(set(rules) - set(choices))
    if unknown:
        raise ValueError(f"unknown pooling rule(s) {unknown}; known: {sorted(choices)}")
    out = {}
    for key, spec in choices.items():
        value = rules.get(key, spec["default"])
        if value not in spec["enum"]:
            raise ValueError(f"rules.{key} = {value!r}; use one of {spec['enum']}")
        out[key] = value
    return out


# --------------------------------------------------------------------------- steps

def _issues(df: pd.DataFrame, code: str) -> pd.Series:
    """Rows whose pooling_issue list holds ``code``."""
    return df["pooling_issue"].str.split(";").apply(lambda codes: code in codes)


def _orient(df: pd.DataFrame) -> pd.DataFrame:
    """Data type, event, family, the flip of favourable events and continuous directions."""
    table = outcome_table()
    out = df.copy()
    info = out["outcome"].map(table)
    out["data_type"] = out["measure_type"].map(DATA_TYPES)
    out["event"] = [o.event for o in info]
    out["outcome_family"] = [o.family for o in info]
    cont = out["data_type"] == "continuous"
    out["higher_is_worse"] = pd.array([o.higher_is_worse if c else pd.NA
                                       for o, c in zip(info, cont)], dtype="boolean")
    fav = np.array([o.favourable for o in info]) & (out["data_type"] != "continuous").to_numpy()
    reverse = (cont & ~out["higher_is_worse"].fillna(True)).to_numpy()
    out["flipped"] = fav | reverse
    notes = [""] * len(out)
    for arm in ("treat", "ctrl"):
        ev, n, pct = out[f"events_{arm}"], out[f"n_{arm}"], out[f"percent_{arm}"]
        out[f"events_{arm}"] = ev.where(~fav, n - ev)
        out[f"percent_{arm}"] = pct.where(~fav, 100.0 - pct)
        out[f"mean_{arm}"] = out[f"mean_{arm}"].where(~reverse, -out[f"mean_{arm}"])
    for i in np.flatnonzero(fav & (out["data_type"] == "binary").to_numpy()):
        r, o = df.iloc[i], out.iloc[i]
        if pd.notna(r["events_treat"]) and pd.notna(r["events_ctrl"]):
            notes[i] = (f"favourable events flipped to {o['event']}: "
                        f"{r['events_treat']}/{r['n_treat']} -> {o['events_treat']}/{o['n_treat']} "
                        f"(naltrexone), {r['events_ctrl']}/{r['n_ctrl']} -> "
                        f"{o['events_ctrl']}/{o['n_ctrl']} (control)")
        else:
            notes[i] = f"favourable percentages flipped to {o['event']}"
    for i in np.flatnonzero(reverse):
        notes[i] = "means negated: higher_is_worse is false"
    out["adjustment"] = notes
    return out


def _ratios(out: pd.DataFrame, reasons: list[list[str]]) -> None:
    """log ratio and its variance from the reported 95% CI (flipped for favourable ORs)."""
    out["log_ratio"] = np.nan
    out["var_log_ratio"] = np.nan
    rows = np.flatnonzero((out["data_type"] == "ratio").to_numpy())
    if not len(rows):
        return
    sub = out.iloc[rows]
    log_r, var = ef.log_or_from_ci(sub["ratio"], sub["ratio_ci_low"], sub["ratio_ci_high"],
                                   level=RATIO_CI_LEVEL)
    fav = np.array([o.favourable for o in sub["outcome"].map(outcome_table())])
    log_r = np.where(fav, -log_r, log_r)
    out.loc[out.index[rows], "log_ratio"] = log_r
    out.loc[out.index[rows], "var_log_ratio"] = var
    for i, is_fav, rtype in zip(rows, fav, sub["ratio_type"]):
        if is_fav and rtype == "OR":
            out.iloc[i, out.columns.get_loc("flipped")] = True
            out.iloc[i, out.columns.get_loc("adjustment")] = (
                f"favourable outcome: log OR negated to {out['event'].iloc[i]}")
        elif is_fav:
            reasons[i].append(f"a favourable {rtype} cannot be turned into the bad event's "
                              f"{rtype}: cannot be pooled")


def _exclude(mask, reasons: list[list[str]], why: str) -> None:
    """Record ``why`` for every row in ``mask``."""
    for i in np.flatnonzero(np.asarray(mask)):
        reasons[i].append(why)


def _pooled(reasons: list[list[str]]) -> np.ndarray:
    return np.array([not r for r in reasons])


#: What else, beside cluster and outcome, keeps rows of one issue apart: a control arm
#: is shared at one time point; a time series is one comparison's (its arms).
GROUP_BY = {"shared_control": ("followup_weeks",),
            "repeated_timepoint": ("treatment", "formulation", "comparator_type",
                                   "comparator_drug", "genotype")}


def _groups(out: pd.DataFrame, code: str, reasons: list[list[str]]) -> list[list[int]]:
    """Positions of still-pooled rows coded ``code``, grouped by cluster and outcome (and
    :data:`GROUP_BY`), file order."""
    mask = _issues(out, code).to_numpy() & _pooled(reasons)
    pos = np.flatnonzero(mask)
    cols = ["cluster_id", "outcome", *GROUP_BY.get(code, ())]
    keys = list(zip(*(out[c].astype(str).iloc[pos] for c in cols)))
    groups: dict[tuple, list[int]] = {}
    for p, k in zip(pos, keys):
        groups.setdefault(k, []).append(p)
    order = lambda p: (out["source_file"].iloc[p], out["source_line"].iloc[p])  # noqa: E731
    return [sorted(g, key=order) for g in groups.values()]


def _rule_treatment(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """Rows whose experimental arm is not naltrexone alone: network analyses only."""
    other = out["treatment"].fillna("").astype(str).ne("").to_numpy()
    for i in np.flatnonzero(other):
        reasons[i].append(f"experimental arm is {out['treatment'].iloc[i]}, not naltrexone "
                          "alone: in network analyses only")


def _rule_subgroups_and_combinations(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """post_randomisation_subgroups, post_hoc_subgroups, combination_treatment: row by row."""
    simple = (("post_randomisation_subgroup", "post_randomisation_subgroups", "exclude",
               "post-randomisation subgroup, not a randomised comparison"),
              ("post_hoc_subgroup", "post_hoc_subgroups", "exclude", "post-hoc subgroup"),
              ("combination_treatment", "combination_treatment", "exclude",
               "naltrexone combined with another active drug"))
    for code, rule, value, what in simple:
        if rules[rule] == value:
            _exclude(_issues(out, code), reasons, f"{what} (rules.{rule}: {value})")


def _rule_conflicts(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """sample_size_conflicts: unresolved sample sizes out of main analyses (or of all)."""
    choice = rules["sample_size_conflicts"]
    if choice == "keep":
        return
    mask = _issues(out, "sample_size_conflict").to_numpy() & _pooled(reasons)
    what = ("unresolved sample-size conflict between sources: in the sensitivity analysis "
            "only" if choice == "sensitivity" else "unresolved sample-size conflict between sources")
    _exclude(mask, reasons, f"{what} (rules.sample_size_conflicts: {choice})")
    if choice == "sensitivity":
        out.loc[mask, "sensitivity_only"] = True


def _rule_stages(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """rerandomised_stages: drop the later stages, or every stage of such a trial."""
    later = _issues(out, "rerandomised_stage")
    if rules["rerandomised_stages"] == "first_stage":
        _exclude(later, reasons, "re-randomised later stage of the same trial "
                 "(rules.rerandomised_stages: first_stage)")
        return
    clusters = set(out.loc[later, "cluster_id"])
    _exclude(out["cluster_id"].isin(clusters), reasons,
             "trial with a re-randomised stage (rules.rerandomised_stages: exclude)")


def _rule_timepoints(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """repeated_timepoints: one time point per cluster and outcome (by followup_weeks)."""
    choice = rules["repeated_timepoints"]
    for group in _groups(out, "repeated_timepoint", reasons):
        if len(group) < 2:
            continue
        if choice == "exclude":
            _exclude(np.isin(np.arange(len(out)), group), reasons,
                     "repeated time point of the same patients (rules.repeated_timepoints: "
                     "exclude)")
            continue
        weeks = [out["followup_weeks"].iloc[p] for p in group]
        pick = int(np.argmin(weeks) if choice == "earliest" else np.argmax(weeks))
        kept = out["row_id"].iloc[group[pick]]
        for j, p in enumerate(group):
            if j != pick:
                reasons[p].append(f"same patients and outcome as {kept} at another time point "
                                  f"(rules.repeated_timepoints: {choice})")


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` divided into ``parts`` integers as evenly as possible.

    Integer division; the remainder goes one by one to the first parts
    (Cochrane Handbook 23.3.4). ``split_evenly(91, 2) == [46, 45]``.
    """
    base, rest = divmod(int(total), int(parts))
    return [base + (1 if i < rest else 0) for i in range(parts)]


def _rule_shared_control(out: pd.DataFrame, rules: dict, reasons: list) -> None:
    """shared_control: split the shared arm, keep the first row, or exclude them all."""
    choice = rules["shared_control"]
    for group in _groups(out, "shared_control", reasons):
        if len(group) < 2:
            continue
        ids = [out["row_id"].iloc[p] for p in group]
        if choice == "split" and all(out["data_type"].iloc[p] != "ratio" for p in group):
            _split(out, group, ids)
        elif choice == "exclude":
            for p in group:
                reasons[p].append("shares its control arm with "
                                  f"{', '.join(i for i in ids if i != out['row_id'].iloc[p])} "
                                  "(rules.shared_control: exclude)")
        else:
            why = ("rules.shared_control: keep_first" if choice == "keep_first"
                   else "a ratio-only row cannot be split; the first row is kept")
            for p in group[1:]:
                reasons[p].append(f"shares its control arm with {ids[0]} ({why})")


def _split(out: pd.DataFrame, group: list[int], ids: list[str]) -> None:
    """Divide the control arm shared by the rows at ``group`` (in place); see ``split_evenly``."""
    m = len(group)
    first = out.iloc[group[0]]
    n_parts = split_evenly(first["n_ctrl"], m)
    has_events = pd.notna(first["events_ctrl"])
    e_parts = split_evenly(first["events_ctrl"], m) if has_events else [None] * m
    shown = f"{first['events_ctrl']}/{first['n_ctrl']}" if has_events else f"n = {first['n_ctrl']}"
    for p, n_i, e_i in zip(group, n_parts, e_parts):
        idx = out.index[p]
        out.loc[idx, "n_ctrl"] = n_i
        if has_events:
            out.loc[idx, "events_ctrl"] = e_i
        out.loc[idx, "split_control"] = m
        out.loc[idx, "sample_id"] = out.loc[idx, "row_id"]
        part = f"{e_i}/{n_i}" if has_events else f"n = {n_i}"
        note = (f"control arm shared by {m} rows ({', '.join(ids)}): {shown} split, {part} "
                "here (Cochrane Handbook 23.3.4)")
        old = out.loc[idx, "adjustment"]
        out.loc[idx, "adjustment"] = f"{old}; {note}" if old else note


RULES = (_rule_treatment, _rule_subgroups_and_combinations, _rule_conflicts, _rule_stages,
         _rule_timepoints, _rule_shared_control)
#: The rules a joint model does without (``normalise(modelled=...)``): a multilevel
#: model of every time point keeps them all; a network keeps the arms of a
#: multi-arm trial whole (their covariance is modelled) and every treatment.
MODELLED = {"timepoints": (_rule_timepoints,),
            "network": (_rule_treatment, _rule_shared_control)}


# --------------------------------------------------------------------------- public

def normalise(raw: pd.DataFrame, rules: dict | None = None, modelled: str | None = None
              ) -> pd.DataFrame:
    """The comparisons table of validated raw rows under the pooling rules.

    Parameters
    ----------
    raw : DataFrame
        As returned by ``ntxmeta.validate.validate_raw`` (typed, with
        ``source_file`` and ``source_line``).
    rules : dict, optional
        The ``rules`` of the config; missing keys take the schema's defaults.
    modelled : "timepoints" or "network", optional
        The table a joint model selects from: the rules it models itself
        (:data:`MODELLED`) are not applied, so every time point (or every
        arm of a multi-arm trial, whole) stays pooled.

    Returns
    -------
    DataFrame
        One row per raw row, the columns of ``schemas/comparisons.schema.yaml``
        in order, sorted by indication, study_id and row_id.

    Raises
    ------
    ValueError
        An unknown rule or rule value.
    """
    rules = resolve_rules(rules)
    out = _orient(raw.reset_index(drop=True))
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    for i, mtype in enumerate(out["measure_type"]):
        if mtype in UNPOOLABLE:
            reasons[i] = [UNPOOLABLE[mtype]]
    _ratios(out, reasons)
    out["sample_id"] = out["cluster_id"].where(out["cluster_id"] != "", out["row_id"])
    out["split_control"] = 1
    out["sensitivity_only"] = False
    classes = load_schema("raw_trials")["properties"]["comparator_type"]["x-class"]
    out["comparator_class"] = out["comparator_type"].map(classes)
    for col in comparison_columns():  # filled by rob.with_rob from data/rob (check_inputs)
        if col.startswith("rob_"):
            out[col] = "" if col == "rob_reasons" else "not_assessed"
    skipped = MODELLED[modelled] if modelled else ()
    for rule in RULES:
        if rule not in skipped:
            rule(out, rules, reasons)
    out["pooled"] = _pooled(reasons)
    out["exclusion_reason"] = ["; ".join(r) for r in reasons]
    out["derived_text"] = out["derived"]
    out["derived"] = out["derived_text"].str.lower().str.startswith(("yes", "partly"))
    out["source"] = out["source_url_or_ref"]
    return _typed(out)


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    """Schema column order and dtypes; rows sorted."""
    cols = comparison_columns()
    frame = pd.DataFrame({c: out[c] for c in cols})
    for col, spec in cols.items():
        kind = spec["type"][0] if isinstance(spec["type"], list) else spec["type"]
        nullable = isinstance(spec["type"], list)
        if kind == "integer":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
        elif kind == "number":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        elif kind == "boolean":
            frame[col] = frame[col].astype("boolean" if nullable else bool)
        else:
            frame[col] = frame[col].fillna("").astype(str)
    frame = frame.sort_values(["indication", "study_id", "row_id"], kind="mergesort")
    return frame.reset_index(drop=True)


def _text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Booleans as true/false, missing as empty; numbers left to the float format."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == bool or str(out[col].dtype) == "boolean":
            out[col] = out[col].map({True: "true", False: "false"}).fillna("").astype(str)
    return out


def write_comparisons(df: pd.DataFrame, path: str | Path) -> None:
    """Write comparisons.csv deterministically and atomically.

    UTF-8, LF line endings, the schema's columns in order, floats with
    ``FLOAT_FORMAT``, booleans ``true``/``false``, empty cells for missing values.
    """
    missing = [c for c in comparison_columns() if c not in df.columns]
    if missing:
        raise ValueError(f"comparisons table lacks columns {missing}")
    frame = _text_frame(df[list(comparison_columns())])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n",
                     encoding="utf-8")


def read_comparisons(path: str | Path) -> pd.DataFrame:
    """Read comparisons.csv back with the schema's dtypes (the inverse of ``write_comparisons``)."""
    text = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    booleans = {"true": True, "false": False}
    for col, spec in comparison_columns().items():
        kind = spec["type"][0] if isinstance(spec["type"], list) else spec["type"]
        if kind == "boolean":
            text[col] = text[col].map(booleans)
    return _typed(text)
