"""Risk of bias (RoB 2) as data: the judgements table, its checks, and design floors.

Three parts:

1. **The table** ``data/rob/risk_of_bias.csv`` (schema
   ``schemas/rob.schema.yaml``): one row per trial and outcome family (or
   ``all``) with the five RoB 2 domains, the overall judgement, a supporting
   quote per domain, one source and the assessor's note. :func:`check_rob`
   reads it with :func:`ntxmeta.validate.read_rows` and reports every problem
   as a :class:`~ntxmeta.validate.Problem` (``file:line: column 'x' = 'v':
   rule``), like the raw tables; :func:`validate_rob` raises
   :class:`~ntxmeta.validate.ValidationError` with all of them.
2. **The overall algorithm** (:func:`overall_judgement`), RoB 2's [1]_:
   high if any domain is high; otherwise not_assessed if any domain is not
   assessed; otherwise some_concerns if any domain has some concerns; low
   only if all five are low. ``not_assessed`` ranks above ``some_concerns``
   because a domain nobody assessed could be high: calling such a trial
   "some concerns" would be a guess.
3. **Design facts** (:func:`design_facts`): what a row of
   ``data/processed/comparisons.csv`` already says about its bias, as a
   floor per domain, and :func:`combine`, which takes the worse of the
   sourced judgement and the floor and records why (:func:`assess` does both
   for one comparison).

The design rules (each with its reason; a test shows each one fires):

- **Open-label comparator** (``comparator_type`` usual_care, no_medication
  or active: no placebo, so participants and carers know the arm; in these
  data the one active comparator, X:BOT's buprenorphine-naloxone, is
  open-label) -> D2 at least some_concerns: RoB 2 signalling questions
  2.1-2.2 answered "yes" leave D2 at best "some concerns" unless deviations
  are shown to be absent [1]_. Whether the outcome is objective does not
  enter D2 in RoB 2, so no outcome waives this floor.
- **Open-label comparator and an outcome assessment can sway**
  -> D4 at least some_concerns (RoB 2 question 4.3-4.4: assessors, or
  participants reporting their own outcome, know the arm). Waived for the
  outcomes in :data:`OBJECTIVE_OUTCOMES`, recorded without judgement: urine
  drug tests, re-incarceration (records) and retention or dropout (attendance
  records), for which RoB 2 question 4.4 ("could assessment have been
  influenced") is "no".
- **Completers or available-case analysis** (``analysis_population``
  completers, available_case; also missing_as_success, an imputation that
  counts the missing as the good outcome) -> D3 at least some_concerns
  (RoB 2 question 3.1: data not available for all or nearly all randomised).
- **Post-hoc subgroup** (``pooling_issue`` post_hoc_subgroup) or an outcome
  the trial does not call primary (``primary_outcome`` "no") -> D5 at least
  some_concerns (RoB 2 question 5.1: the result may not have been analysed
  as pre-specified).

A floor only raises: a sourced high stays high. A sourced not_assessed
domain with a floor takes the floor's judgement, which is then a lower
bound from the design alone; its reason says so, and the overall judgement
of such a trial stays not_assessed while any domain is not assessed.

References
----------
.. [1] Sterne JAC, Savovic J, Page MJ, et al. RoB 2: a revised tool for
   assessing risk of bias in randomised trials. BMJ 2019;366:l4898; and
   Higgins JPT et al. (eds), Cochrane Handbook version 6.4 (2023), ch. 8.
.. [2] McGuinness LA, Higgins JPT. Risk-of-bias VISualization (robvis).
   Res Synth Methods 2021;12:55-61 (the figures of :mod:`ntxmeta.robplots`).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jsonschema
import numpy as np
import pandas as pd

from .validate import (Problem, ValidationError, did_you_mean, identity, load_schema, one_of,
                       read_rows, text_problem)

__all__ = ["DOMAINS", "JUDGEMENTS", "OBJECTIVE_OUTCOMES", "OPEN_LABEL_COMPARATORS",
           "DomainJudgement", "Assessment", "overall_judgement", "overall_problem",
           "check_rob", "validate_rob", "design_facts", "combine", "assess", "assess_frame",
           "JUDGEMENT_COLUMNS", "has_judgements", "judgements_of", "weighted_shares"]

SCHEMA = load_schema("rob")
#: The five RoB 2 domains, in order.
DOMAINS: tuple[str, ...] = tuple(SCHEMA["x-domains"])
#: Column of the supporting quote of each domain.
SUPPORT = {d: spec["support"] for d, spec in SCHEMA["x-domains"].items()}
#: Short (D1...) and full names of the domains, for figures and reports.
SHORT = {d: spec["short"] for d, spec in SCHEMA["x-domains"].items()}
NAMES = {d: spec["name"] for d, spec in SCHEMA["x-domains"].items()}
#: Judgements, in the order figures list them.
JUDGEMENTS: tuple[str, ...] = ("low", "some_concerns", "high", "not_assessed")
#: Severity of the assessed judgements (worse is larger); not_assessed has none.
SEVERITY = {"low": 0, "some_concerns": 1, "high": 2}
#: Columns of the table, in file order.
COLUMNS: list[str] = list(SCHEMA["properties"])
PROSE = frozenset(SCHEMA["x-prose"])
#: Comparators without a placebo: participants and carers know the arm.
OPEN_LABEL_COMPARATORS = frozenset({"usual_care", "no_medication", "active"})
#: Outcomes recorded without anyone's judgement (urine tests, records), so
#: knowing the arm cannot sway their measurement (RoB 2 question 4.4).
OBJECTIVE_OUTCOMES = frozenset({"opioid_use_2consec_positive_UDT", "no_positive_or_missing_UDT_24wk",
                                "reincarceration", "treatment_completion", "dropout"})
#: Analysis populations that leave randomised participants out, or count the
#: missing as the good outcome.
INCOMPLETE_POPULATIONS = frozenset({"completers", "available_case", "missing_as_success"})
#: Judgement a design fact sets as the floor of its domain.
FLOOR = "some_concerns"
#: Least number of some_concerns domains for a reviewer's overall high.
MULTIPLE_CONCERNS = 2


# --------------------------------------------------------------------------- algorithm

def overall_judgement(domains: Mapping[str, str]) -> str:
    """The overall judgement the five domains give by the RoB 2 algorithm.

    Parameters
    ----------
    domains : mapping of domain -> judgement
        All of :data:`DOMAINS`, each one of :data:`JUDGEMENTS`.

    Returns
    -------
    str
        high if any domain is high; else not_assessed if any is not_assessed;
        else some_concerns if any is some_concerns; else low.
    """
    values = [domains[d] for d in DOMAINS]
    for judgement in ("high", "not_assessed", "some_concerns"):
        if judgement in values:
            return judgement
    return "low"


def overall_problem(domains: Mapping[str, str], overall: str, note: str = "") -> str | None:
    """Why ``overall`` contradicts the domains (see :func:`overall_judgement`), or None.

    A reviewer's overall high over at least :data:`MULTIPLE_CONCERNS`
    some_concerns domains (and none not assessed) is accepted when ``note``
    gives the reason (RoB 2: several concerns that together lower confidence
    substantially).
    """
    expected = overall_judgement(domains)
    if overall == expected:
        return None
    concerns = sum(domains[d] == "some_concerns" for d in DOMAINS)
    if overall == "high" and expected == "some_concerns" and concerns >= MULTIPLE_CONCERNS:
        if note.strip():
            return None
        return ("high over several some_concerns domains is a reviewer's judgement; say why in "
                "assessor_note, or write some_concerns")
    shown = ", ".join(f"{SHORT[d]} {domains[d]}" for d in DOMAINS)
    return f"the domains ({shown}) give {expected} by the RoB 2 algorithm; write {expected}"


# --------------------------------------------------------------------------- the table

def _row_problems(cells: dict, line: int, name: str, validator) -> tuple[dict, list[Problem]]:
    """The typed row (empty cells left out) and its problems."""
    out: list[Problem] = []
    bad: set[str] = set()

    def report(col: str, msg: str) -> None:
        bad.add(col)
        out.append(Problem(name, line, col, cells.get(col, ""), msg))

    typed: dict = {}
    for col in COLUMNS:
        text = cells.get(col, "")
        why = text_problem(text, identifier=col == "study_id", prose=col in PROSE) \
            if text.strip(" ") else None
        if why:
            report(col, why)
        elif text.strip():
            typed[col] = unicodedata.normalize("NFC", text)
    for col in SCHEMA["required"]:
        if col not in typed and col not in bad:
            enum = SCHEMA["properties"][col].get("enum")
            report(col, "required" + (f"; use one of {one_of(enum)}" if enum else "; fill it in"))
    for err in validator.iter_errors(typed):
        col = err.path[0] if err.path else None
        if col is None or col in bad:
            continue
        if err.validator == "enum":
            report(col, f"unknown code{did_you_mean(err.instance, err.validator_value)}; use one "
                   f"of {one_of(err.validator_value)}")
        else:
            report(col, err.message)
    for d in DOMAINS:
        judged = typed.get(d)
        if judged in SEVERITY and SUPPORT[d] not in typed and SUPPORT[d] not in bad:
            out.append(Problem(name, line, SUPPORT[d], "",
                               f"required: {d} is '{judged}', and a judgement needs the quote that "
                               "supports it; quote the source, or write not_assessed"))
    if all(d in typed and d not in bad for d in DOMAINS) and "overall" in typed \
            and "overall" not in bad:
        why = overall_problem(typed, typed["overall"], typed.get("assessor_note", ""))
        if why:
            report("overall", why)
    return typed, out


def check_rob(path: str | Path, known_studies: Iterable[str] | None = None
              ) -> tuple[pd.DataFrame, list[Problem]]:
    """Read and check the risk-of-bias table; return its typed rows and every problem.

    Parameters
    ----------
    path : path
        ``data/rob/risk_of_bias.csv``; reported as given.
    known_studies : iterable of str, optional
        The ``study_id`` values of the raw tables; a row for another trial is
        a problem (with a "did you mean"). Not checked when None.

    Returns
    -------
    frame : DataFrame
        One row per readable row, the schema's columns as text ("" where
        empty) and ``source_file``, ``source_line``. Meaningful only when
        there are no problems.
    problems : list of Problem
        In file order (line, then column).
    """
    name = str(path)
    problems: list[Problem] = []
    rows, complete = read_rows(Path(path), COLUMNS, problems, name)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    typed_rows: list[tuple[int, dict]] = []
    for row in rows:
        typed, found = _row_problems(row.cells, row.line, name, validator)
        problems += found
        typed_rows.append((row.line, typed))
    known = None if known_studies is None else {identity(s): s for s in known_studies}
    first: dict[tuple, int] = {}
    for line, t in typed_rows:
        sid = t.get("study_id")
        if sid is None:
            continue
        if known is not None and identity(sid) not in known:
            problems.append(Problem(name, line, "study_id", sid,
                                    f"no trial of data/raw/*.csv has this id"
                                    f"{did_you_mean(sid, known.values())}; use the raw tables' "
                                    "study_id"))
        key = (identity(sid), t.get("outcome_family"))
        if complete and key in first:
            problems.append(Problem(name, line, "study_id", sid,
                                    f"this trial and outcome_family are already judged at "
                                    f"{name}:{first[key]}; keep one row"))
        first.setdefault(key, line)
    colpos = {c: i for i, c in enumerate(COLUMNS)}
    problems.sort(key=lambda p: (p.line or 0, colpos.get(p.column, -1)))
    frame = pd.DataFrame([{c: t.get(c, "") for c in COLUMNS} for _, t in typed_rows],
                         columns=COLUMNS)
    frame["source_file"] = name
    frame["source_line"] = pd.array([line for line, _ in typed_rows], dtype="Int64")
    return frame, problems


def validate_rob(path: str | Path, known_studies: Iterable[str] | None = None) -> pd.DataFrame:
    """The typed risk-of-bias rows, or :class:`ValidationError` with every problem.

    See :func:`check_rob`.
    """
    frame, problems = check_rob(path, known_studies)
    if problems:
        raise ValidationError(problems)
    return frame


# --------------------------------------------------------------------------- design floors

@dataclass(frozen=True)
class DomainJudgement:
    """One domain of one comparison: the sourced judgement, the design floor, the result.

    Attributes
    ----------
    domain : str
        One of :data:`DOMAINS`.
    judgement : str
        What the figures and GRADE use: the worse of ``sourced`` and
        ``floor`` (the floor where ``sourced`` is not_assessed).
    sourced : str
        The judgement of risk_of_bias.csv (not_assessed if there is none).
    floor : str or None
        The least judgement the comparison's design implies, if any.
    reasons : tuple of str
        Why ``judgement`` is what it is (the design facts that set it).
    """

    domain: str
    judgement: str
    sourced: str
    floor: str | None
    reasons: tuple[str, ...] = ()

    @property
    def raised(self) -> bool:
        """The design floor made the judgement worse than (or filled) the sourced one."""
        return self.judgement != self.sourced


@dataclass(frozen=True)
class Assessment:
    """The risk of bias of one comparison: five domains and the overall judgement."""

    study_id: str
    outcome_family: str
    domains: Mapping[str, DomainJudgement]
    overall: str
    #: the risk_of_bias.csv row used ("" when the trial has none), as file:line
    source_row: str = ""

    def judgements(self) -> dict[str, str]:
        """Domain -> judgement, plus ``overall``."""
        return {**{d: j.judgement for d, j in self.domains.items()}, "overall": self.overall}


def _text(row: Mapping[str, Any], col: str) -> str:
    value = row.get(col, "")
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return str(value).strip()


def design_facts(comparisons_row: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The floors a comparison's design sets, per domain, with their reasons.

    Parameters
    ----------
    comparisons_row : mapping
        A row of ``data/processed/comparisons.csv`` (or of the raw tables):
        ``comparator_type``, ``outcome``, ``analysis_population``,
        ``pooling_issue`` (codes separated by ';') and ``primary_outcome``
        are read; missing or empty ones set no floor.

    Returns
    -------
    dict of domain -> (judgement, reason)
        Only the domains a rule applies to (the rules are in the module
        docstring); empty for a placebo-controlled, ITT, primary outcome.
    """
    comparator = _text(comparisons_row, "comparator_type")
    outcome = _text(comparisons_row, "outcome")
    population = _text(comparisons_row, "analysis_population")
    issues = set(_text(comparisons_row, "pooling_issue").split(";")) - {""}
    primary = _text(comparisons_row, "primary_outcome")
    floors: dict[str, tuple[str, str]] = {}
    if comparator in OPEN_LABEL_COMPARATORS:
        floors["d2_deviations"] = (FLOOR, f"open-label comparator ({comparator}): participants "
                                   "and carers know the arm (RoB 2 2.1-2.2)")
        if outcome not in OBJECTIVE_OUTCOMES:
            floors["d4_measurement"] = (FLOOR, f"open-label comparator ({comparator}) and an "
                                        f"outcome ({outcome or 'not given'}) whose assessment "
                                        "knowing the arm can sway (RoB 2 4.3-4.4)")
    if population in INCOMPLETE_POPULATIONS:
        floors["d3_missing_data"] = (FLOOR, f"analysis population {population}: outcome data not "
                                     "of all randomised (RoB 2 3.1)")
    d5 = []
    if "post_hoc_subgroup" in issues:
        d5.append("a post-hoc subgroup")
    if primary == "no":
        d5.append("not the trial's primary outcome")
    if d5:
        floors["d5_reporting"] = (FLOOR, " and ".join(d5) + ": the result may not be the "
                                  "pre-specified one (RoB 2 5.1)")
    return floors


def combine(sourced: Mapping[str, str], floors: Mapping[str, tuple[str, str]]
            ) -> dict[str, DomainJudgement]:
    """Per domain, the worse of the sourced judgement and the design floor, with why.

    Parameters
    ----------
    sourced : mapping of domain -> judgement
        From risk_of_bias.csv (a missing domain counts as not_assessed).
    floors : mapping of domain -> (judgement, reason)
        From :func:`design_facts`.

    Returns
    -------
    dict of domain -> DomainJudgement
        In :data:`DOMAINS` order. A floor worse than the sourced judgement
        replaces it (reason: the design fact); one no worse leaves it (reason
        kept, noted as "already"); a floor over not_assessed is a lower bound
        from the design alone and says so.
    """
    out: dict[str, DomainJudgement] = {}
    for d in DOMAINS:
        src = sourced.get(d) or "not_assessed"
        floor, why = floors.get(d, (None, ""))
        reasons: tuple[str, ...] = ()
        judgement = src
        if floor is not None:
            if src == "not_assessed":
                judgement = floor
                reasons = (f"{why}; otherwise not assessed, so at least {floor}",)
            elif SEVERITY[floor] > SEVERITY[src]:
                judgement = floor
                reasons = (f"{why}; raised from the sourced {src}",)
            else:
                reasons = (f"{why}; the sourced {src} is already at least {floor}",)
        out[d] = DomainJudgement(d, judgement, src, floor, reasons)
    return out


def _rob_row(rob: pd.DataFrame, study_id: str, family: str) -> Mapping[str, Any] | None:
    """The row for the trial and family, else the trial's ``all`` row, else None."""
    if rob.empty:
        return None
    ids = rob["study_id"].map(identity)
    for fam in (family, "all"):
        hit = rob[(ids == identity(study_id)) & (rob["outcome_family"] == fam)]
        if len(hit):
            return hit.iloc[0].to_dict()
    return None


def assess(rob: pd.DataFrame, comparisons_row: Mapping[str, Any]) -> Assessment:
    """The risk of bias of one comparison: its sourced row combined with its design floors.

    Parameters
    ----------
    rob : DataFrame
        The validated risk_of_bias.csv (:func:`validate_rob`).
    comparisons_row : mapping
        A row of comparisons.csv: ``study_id``, ``outcome_family`` and the
        columns :func:`design_facts` reads.

    Returns
    -------
    Assessment
        Overall by :func:`overall_judgement` over the combined domains (a
        reviewer's overall high of the table is kept when it is worse).
    """
    study = _text(comparisons_row, "study_id")
    family = _text(comparisons_row, "outcome_family")
    row = _rob_row(rob, study, family)
    sourced = {d: (row or {}).get(d, "") or "not_assessed" for d in DOMAINS}
    domains = combine(sourced, design_facts(comparisons_row))
    overall = overall_judgement({d: j.judgement for d, j in domains.items()})
    if row is not None and row.get("overall") == "high":
        overall = "high"  # a reviewer's high over several concerns (overall_problem)
    where = "" if row is None else f"{row.get('source_file', '')}:{row.get('source_line', '')}"
    return Assessment(study, family, domains, overall, where)


def assess_frame(rob: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison: ``row_id``, ``study_id``, ``label``, the domains, ``overall``, reasons.

    The frame :func:`ntxmeta.robplots.rob_traffic_light` and
    :func:`~ntxmeta.robplots.rob_summary` draw; ``reasons`` lists the
    design facts that set a domain ("D2: ...; D4: ...").
    """
    records = []
    for rec in comparisons.to_dict("records"):
        a = assess(rob, rec)
        reasons = "; ".join(f"{SHORT[d]}: {r}" for d, j in a.domains.items() for r in j.reasons)
        records.append({"row_id": _text(rec, "row_id"), "study_id": a.study_id,
                        "label": _text(rec, "label") or a.study_id, **a.judgements(),
                        "reasons": reasons})
    return pd.DataFrame(records, columns=["row_id", "study_id", "label", *DOMAINS, "overall",
                                          "reasons"])


#: The columns of each row's judgements, in the figures' order (domains, then overall).
JUDGEMENT_COLUMNS = tuple(f"rob_{d}" for d in DOMAINS) + ("rob_overall",)
#: comparisons.csv columns of each row's risk of bias (comparisons.schema.yaml).
ROB_COLUMNS = (*JUDGEMENT_COLUMNS, "rob_reasons")


def with_rob(comparisons: pd.DataFrame, rob: pd.DataFrame) -> pd.DataFrame:
    """comparisons with each row's risk of bias: the domains, ``rob_overall`` and the reasons.

    :func:`assess_frame` per row (the sourced judgement of its trial and
    outcome family, floored by the row's design facts), so that the effects
    step carries it into every analysis and the sensitivity analyses can
    keep the low-risk rows.
    """
    out = comparisons.copy()
    judged = assess_frame(rob, comparisons)
    for d in DOMAINS:
        out[f"rob_{d}"] = judged[d].to_numpy()
    out["rob_overall"] = judged["overall"].to_numpy()
    out["rob_reasons"] = judged["reasons"].to_numpy()
    return out


def has_judgements(effects: pd.DataFrame) -> bool:
    """Whether an effects table carries risk of bias (any of :data:`JUDGEMENT_COLUMNS`).

    Tables written before the risk-of-bias step have none; a table with the
    columns but no judgement in them is a table whose rows nobody assessed.
    """
    return any(c in effects.columns for c in JUDGEMENT_COLUMNS)


def judgements_of(effects: pd.DataFrame) -> pd.DataFrame:
    """Every row of an effects table as a risk-of-bias frame, in its order.

    ``row_id``, ``study_id``, ``label`` and the :data:`DOMAINS` and
    ``overall`` columns of :func:`assess_frame`, read from the effects
    table's ``rob_*`` columns (comparisons.csv, :func:`with_rob`); a
    missing column or an empty cell is ``not_assessed``.
    """
    rows = effects.reset_index(drop=True)
    frame = pd.DataFrame({"row_id": rows.get("row_id", ""),
                          "study_id": rows.get("study_id", ""),
                          "label": rows.get("label", rows.get("study_id", ""))},
                         index=rows.index)
    for name, col in zip((*DOMAINS, "overall"), JUDGEMENT_COLUMNS):
        frame[name] = (rows[col].fillna("not_assessed").astype(str) if col in rows
                       else "not_assessed")
    return frame


def rob_of_effects(effects: pd.DataFrame, result) -> tuple[pd.DataFrame, list[float]]:
    """The used rows of an analysis as a risk-of-bias frame, and their weights.

    :func:`judgements_of` the effects table; rows the models do not use are
    left out, and the weights are the result's (``weights_pct``), in the
    same order.
    """
    used = [bool(u) for u in result.used]
    frame = judgements_of(effects).loc[used].reset_index(drop=True)
    weights = [w for w, u in zip(result.weights_pct, used) if u]
    return frame, weights


def weighted_shares(rob_frame: pd.DataFrame, weights: Sequence[float]) -> pd.DataFrame:
    """Percent of the total weight per judgement, for each domain and overall.

    Parameters
    ----------
    rob_frame : DataFrame
        One row per study with the :data:`DOMAINS` columns and ``overall``.
    weights : sequence of float, shape (k,)
        The studies' weights, in the rows' order (any scale: percents or
        inverse variances). NaN (a study not pooled) counts as 0.

    Returns
    -------
    DataFrame
        Index ``[*DOMAINS, "overall"]``, columns :data:`JUDGEMENTS`, percents
        summing to 100 per row.

    Raises
    ------
    ValueError
        If the weights do not match the rows, are negative, or sum to 0.
    """
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(rob_frame),):
        raise ValueError(f"{w.size} weights for {len(rob_frame)} studies; give one per row")
    w = np.where(np.isnan(w), 0.0, w)
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and not negative")
    total = w.sum()
    if total <= 0:
        raise ValueError("the weights sum to 0: no study is pooled")
    cols = [*DOMAINS, "overall"]
    shares = {j: [100.0 * w[(rob_frame[c] == j).to_numpy()].sum() / total for c in cols]
              for j in JUDGEMENTS}
    return pd.DataFrame(shares, index=cols, columns=list(JUDGEMENTS))
