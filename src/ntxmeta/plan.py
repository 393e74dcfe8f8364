"""The typed config, and what one analysis asks for (``AnalysisPlan``).

``Config.load(path)`` validates ``config/config.yaml`` once
(:func:`ntxmeta.config.load_config`: schema, vocabularies, every default
taken from the schema) and freezes it. Each analysis becomes an
:class:`AnalysisPlan`: its rows (filters), its measure and model, and every
part the pipeline computes for it (sensitivity variants, subgroups,
moderators). ``pool`` runs a plan (:func:`ntxmeta.analysis.run_plan`); no
later step reads the config's model options again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .figopts import FigureOptions

#: tau^2 estimators compared in every sensitivity table (Cochrane Handbook
#: 10.10.4.1: REML the default, DL the classic, PM the recommended alternative).
SENSITIVITY_METHODS = ("REML", "DL", "PM")
#: Built-in sensitivity subsets: name -> (title, exclude filters). A config
#: ``sensitivity`` subset with the same filters takes its place and title.
BUILTIN_SUBSETS = {
    "excl_low_confidence": ("Without low-confidence rows", (("confidence", ("low",)),)),
    "excl_derived": ("Without derived rows", (("derived", ("true",)),)),
}


@dataclass(frozen=True)
class ModelOptions:
    """The model options of an analysis (metafor's spelling; ``preset`` as resolved).

    ``pi`` is the prediction interval's kind (``RMAFit.predict`` pi_type:
    "t", "riley" or "z"); ``pool_k2`` whether two studies get a
    random-effects estimate.
    """

    method: str
    test: str
    level: float
    add: float
    to: str
    drop00: bool
    preset: str = "cochrane2025"
    pi: str = "t"
    pool_k2: bool = False

    @classmethod
    def of(cls, block: Mapping) -> "ModelOptions":
        return cls(method=str(block["method"]), test=str(block["test"]),
                   level=float(block["level"]), add=float(block["add"]), to=str(block["to"]),
                   drop00=bool(block["drop00"]), preset=str(block.get("preset", "cochrane2025")),
                   pi=str(block.get("pi", "t")), pool_k2=bool(block.get("pool_k2", False)))


Filters = tuple  # ((column, (value, ...)), ...), sorted by column


@dataclass(frozen=True)
class BayesOptions:
    """The Bayesian random-effects model of an analysis (``ntxmeta.bayes`` spellings).

    ``threshold`` is on the shown scale (RR 0.9), or None for no threshold.
    """

    tau_prior: str
    mu_prior: str = "flat"
    threshold: float | None = None


@dataclass(frozen=True)
class TSAOptions:
    """Trial sequential analysis settings (``ntxmeta.tsa``); ``control_risk`` None: the trials' median."""

    alpha: float = 0.05
    beta: float = 0.20
    rrr: float = 0.20
    spending: str = "obf"
    futility: bool = True
    control_risk: float | None = None


def _filters(block: Mapping) -> Filters:
    return tuple(sorted((str(c), tuple(str(v).strip().lower() for v in vals))
                        for c, vals in block.items()))


@dataclass(frozen=True)
class Subset:
    """A sensitivity subset: the main model without the rows matching ``exclude``."""

    name: str
    title: str
    exclude: Filters


@dataclass(frozen=True)
class AnalysisPlan:
    """What one analysis asks for.

    ``filters`` keep the config's mapping (the row selection reads it as
    given); ``subsets`` are the built-in and config sensitivity subsets, in
    table order.
    """

    name: str
    title: str
    measure: str
    options: ModelOptions
    filters: Filters = field(repr=False)  # ((column, (value, ...)), ...) in config order
    subgroup: str | None = None
    moderators: tuple[str, ...] = ()
    main: bool = False
    subsets: tuple[Subset, ...] = ()
    sensitivity_methods: tuple[str, ...] = SENSITIVITY_METHODS
    #: a diamond across subgroups (never for comparator-class subgroups)
    overall: bool = True
    #: ((column, (value, ...)), ...): which row of a sample is used, criteria in order
    hierarchy: Filters = ()
    #: "bad" (relapse, no response: RR < 1 favours naltrexone) or "good" (response)
    events: str = "bad"
    #: "inverse_variance" (random effects) or "mantel_haenszel" (common effect, harms)
    pooling: str = "inverse_variance"
    #: GRADE: minimal important differences (lower, upper) on the shown scale, or None
    mid: tuple | None = None
    #: GRADE: the outcome as the plain-language statement names it
    plain_outcome: str = ""
    #: GRADE: reviewer overrides, ((domain, levels, reason), ...)
    grade_overrides: tuple = ()
    #: the exact Bayesian random-effects model, or None (no tau prior for the measure)
    bayes: BayesOptions | None = None
    #: trial sequential analysis, or None (not a main analysis, or no difference to detect)
    tsa: TSAOptions | None = None
    #: figure options (the config's ``figures`` defaults merged with the
    #: analysis' own); not part of ``selection``: a change re-renders figures only
    figures: FigureOptions = field(default_factory=FigureOptions)

    @property
    def overrides(self) -> dict:
        """The reviewer overrides as :func:`ntxmeta.grade.certainty` takes them."""
        return {d: {"levels": n, "reason": r} for d, n, r in self.grade_overrides}

    @property
    def selection(self) -> dict:
        """The analysis block as :mod:`ntxmeta.select` reads it (filters and options)."""
        return {"filters": {k: list(v) for k, v in self.filters}, "measure": self.measure,
                **vars(self.options), "subgroup": self.subgroup, "moderators": list(self.moderators),
                "main": self.main, "title": self.title, "overall": self.overall,
                "events": self.events, "pooling": self.pooling,
                "outcome_hierarchy": [[c, list(v)] for c, v in self.hierarchy],
                "bayes": self.bayes and vars(self.bayes), "tsa": self.tsa and vars(self.tsa),
                "subsets": [[s.name, s.title, [[c, list(v)] for c, v in s.exclude]]
                            for s in self.subsets]}

    def filter_values(self, column: str) -> tuple:
        """The values a filter allows in ``column`` (empty when the column is not filtered)."""
        return next((v for c, v in self.filters if c == column), ())


#: Subgroup columns whose levels are different questions: no overall estimate.
QUESTION_COLUMNS = ("comparator_class", "comparator_type")


def outcome_hierarchy(items) -> Filters:
    """The config's ``outcome_hierarchy`` (a list of {column: values}) as filters."""
    return tuple((str(c), tuple(str(v) for v in vals)) for item in items for c, vals in item.items())


def _subsets(sensitivity: Mapping) -> tuple[Subset, ...]:
    """Built-in subsets (a config subset with the same filters replaces one), then the others."""
    config = {key: Subset(key, str(s["title"]), _filters(s["exclude"]))
              for key, s in sorted(sensitivity.items())}
    by_filters = {s.exclude: key for key, s in config.items()}
    out = []
    for name, (title, filters) in BUILTIN_SUBSETS.items():
        key = by_filters.get(filters)
        out.append(Subset(name, config.pop(key).title if key else title, filters))
    return tuple(out) + tuple(Subset(f"subset_{s.name}", s.title, s.exclude)
                              for s in config.values())


def _mid(value) -> tuple | None:
    return None if value is None else (float(value[0]), float(value[1]))


#: Measures a trial sequential analysis is run for without a minimal important difference;
#: an SMD gets one when it has a MID (other continuous measures lack a known SD).
TSA_BINARY = ("RR", "OR", "RD")
TSA_CONTINUOUS = ("SMD",)


def _bayes(a: Mapping, defaults: Mapping) -> BayesOptions | None:
    """An analysis's Bayesian options: its own ``bayes`` keys over the measure's defaults."""
    own, measure = a.get("bayes") or {}, str(a["measure"])
    prior = own.get("tau_prior", (defaults.get("tau_prior") or {}).get(measure))
    if prior is None:
        return None
    threshold = own.get("threshold", (defaults.get("threshold") or {}).get(measure))
    return BayesOptions(str(prior), str(own.get("mu_prior", defaults.get("mu_prior", "flat"))),
                        None if threshold is None else float(threshold))


def _tsa(a: Mapping, defaults: Mapping, mid) -> TSAOptions | None:
    """Main analyses of a binary measure, or with a minimal important difference."""
    measure = str(a["measure"])
    if not a.get("main") or not (measure in TSA_BINARY
                                 or (measure in TSA_CONTINUOUS and mid is not None)):
        return None
    keys = {**defaults, **(a.get("tsa") or {})}
    return TSAOptions(**{k: keys[k] for k in TSAOptions.__dataclass_fields__ if k in keys})


def _after_colon(title: str) -> str:
    """The outcome part of a title ("...: return to heavy drinking"), lower-cased first letter."""
    text = title.rsplit(": ", 1)[-1].strip()
    return text[:1].lower() + text[1:]


@dataclass(frozen=True)
class Config:
    """The validated config, frozen: raw-data glob, pooling rules, the plans."""

    raw_data: str
    defaults: ModelOptions
    rules: Mapping     # read-only by convention (plain dicts pickle for worker processes)
    analyses: Mapping  # name -> AnalysisPlan, in config order
    #: the risk-of-bias table, relative to the project folder
    risk_of_bias: str = "data/rob/risk_of_bias.csv"
    #: name -> joint.JointPlan (config ``timepoints`` and ``networks``), in config order
    joint: Mapping = field(default_factory=dict)

    @classmethod
    def from_resolved(cls, cfg: Mapping) -> "Config":
        """From :func:`ntxmeta.config.resolve`'s dict (every default filled in)."""
        subsets = _subsets(cfg.get("sensitivity") or {})
        grade = cfg.get("grade") or {}
        plans = {}
        for name in cfg["analyses"]:  # config order: the order of the summary of findings
            a = cfg["analyses"][name]
            mid = _mid(a.get("mid", grade.get("mid", {}).get(str(a["measure"]))))
            plans[name] = AnalysisPlan(
                name=name, title=str(a.get("title", name)), measure=str(a["measure"]),
                options=ModelOptions.of(a),
                filters=tuple((str(k), tuple(v)) for k, v in a["filters"].items()),
                subgroup=a.get("subgroup") or None, moderators=tuple(a.get("moderators") or ()),
                main=bool(a.get("main", False)), subsets=subsets,
                overall=bool(a.get("overall", True)) and (a.get("subgroup") not in QUESTION_COLUMNS),
                hierarchy=outcome_hierarchy(a.get("outcome_hierarchy") or ()),
                events=str(a.get("events", "bad")),
                pooling=str(a.get("pooling", "inverse_variance")),
                mid=mid, bayes=_bayes(a, cfg.get("bayes") or {}),
                tsa=_tsa(a, cfg.get("tsa") or {}, mid),
                plain_outcome=str(a.get("plain_outcome") or _after_colon(str(a.get("title", name)))),
                grade_overrides=tuple((str(d), int(o["levels"]), str(o["reason"]))
                                      for d, o in (grade.get("overrides", {}).get(name) or {}).items()),
                figures=FigureOptions.of(a.get("figures")))
        from .joint import JointPlan
        hierarchy = outcome_hierarchy(cfg.get("outcome_hierarchy") or ())
        joint = {name: JointPlan.of(name, kind, block, hierarchy)
                 for key, kind in (("timepoints", "timepoints"), ("networks", "network"))
                 for name, block in (cfg.get(key) or {}).items()}
        return cls(raw_data=str(cfg["raw_data"]), defaults=ModelOptions.of(cfg["defaults"]),
                   rules=dict(cfg["rules"]), analyses=plans,
                   risk_of_bias=str(cfg.get("risk_of_bias", "data/rob/risk_of_bias.csv")),
                   joint=joint)

    @classmethod
    def load(cls, path: str | Path, comparisons=None) -> "Config":
        """Validate and freeze a config file (``ValidationError`` with every problem)."""
        from .config import load_config
        return cls.from_resolved(load_config(path, comparisons))

    @property
    def names(self) -> list[str]:
        """Analysis names, sorted (the workflow's job order)."""
        return sorted(self.analyses)
