"""The typed result of one pipeline analysis: what ``pool`` writes, what every later step reads.

``AnalysisResult`` holds the fits an :class:`~ntxmeta.plan.AnalysisPlan` asks
for (the main model, the common-effect model, the sensitivity variants,
leave-one-out and cumulative series, subgroups, meta-regressions, small-study
tests), under our own field names (STYLE.md habit 6: intervals named
``ci.low``/``ci.high``, units in names such as ``i2_pct``). metafor's key
paths live only in the oracle adapter (``ntxmeta analyse``).

Every number is on the analysis scale (log for ratio measures); the one
:class:`Scale` of the result says how to show it (``scale.show``), so the
summary table, the summary of findings, the figures and the report show an
analysis on the same scale: it is decided once, in ``pool``.

JSON: ``to_json``/``from_json`` round-trip exactly (shortest round-trip
floats; NaN as ``null``, infinities as ``"Inf"``/``"-Inf"``). The layout is
the dataclasses' fields, in order, so the schema is this module; its version
is :data:`SCHEMA`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ._common import Interval

#: Version of the result layout; a reader refuses any other.
SCHEMA = "ntxmeta.result/2"

#: Measures reported as ratios (estimates are log ratios, shown with exp).
RATIO_MEASURES = ("RR", "OR", "ROM", "ROR")
#: What a reader calls each measure (axis titles, table headers).
MEASURE_NAMES = {"RR": "Risk ratio", "OR": "Odds ratio", "RD": "Risk difference",
                 "SMD": "Standardised mean difference", "MD": "Mean difference",
                 "ROM": "Ratio of means", "ROR": "Ratio of odds ratios"}


@dataclass(frozen=True)
class Scale:
    """How the numbers of an analysis are shown.

    ``log``: estimates are log ratios, shown as ``exp`` (RR, OR, ROM, and a
    generic analysis whose rows are all log ratios from reported ratios and
    CIs). ``null`` is the no-effect value on the shown scale.
    """

    measure: str
    log: bool
    name: str        # short name: "RR", "SMD", "Ratio" (generic log ratio), "Effect"
    axis_label: str  # "Risk ratio (log scale)", ...

    @classmethod
    def of(cls, measure: str, *, log_ratio_rows: bool = False) -> "Scale":
        """The scale of a measure (``log_ratio_rows``: a generic analysis of log ratios)."""
        log = measure in RATIO_MEASURES or (measure == "GEN" and log_ratio_rows)
        if measure == "GEN":
            name, full = ("Ratio", "Ratio") if log else ("Effect", "Effect")
        else:
            name, full = measure, MEASURE_NAMES.get(measure, measure)
        return cls(measure, log, name, f"{full} (log scale)" if log else full)

    @property
    def null(self) -> float:
        return 1.0 if self.log else 0.0

    @property
    def back_transform(self) -> str:
        """metafor's ``transf`` for this scale: "exp" or "none"."""
        return "exp" if self.log else "none"

    def show(self, y):
        """Analysis scale -> shown scale (floats or arrays)."""
        return np.exp(y) if self.log else y


@dataclass(frozen=True)
class Test:
    """A test statistic: ``name`` is "z", "t", "Q", "QM", "Chi2", "tau" (Kendall)..."""

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    pval: float
    df: float | None = None
    df2: float | None = None   # the denominator df of an F test


@dataclass(frozen=True)
class Heterogeneity:
    """Between-study variance and Cochran's Q of a fit (I^2 and H^2 as metafor)."""

    q: float
    q_df: int
    q_pval: float
    tau2: float
    tau2_se: float
    tau: float
    i2_pct: float
    h2: float
    #: I^2 from Q, max(0, (Q - df) / Q) (Higgins & Thompson 2002), beside the
    #: model's I^2 (tau^2 / (tau^2 + s^2)), which is 0 whenever tau^2 is
    i2_q_pct: float = math.nan


@dataclass(frozen=True)
class Pooled:
    """One pooled estimate (analysis scale) with its test and intervals.

    ``model`` is the estimator ("REML", "DL", ..., "EE" for the inverse-variance
    common effect, "MH" or "Peto"); ``test`` "z" or "knha" (Hartung-Knapp, t
    with ``test_stat.df``). ``pi`` is the prediction interval (None for a
    common-effect model).
    """

    model: str
    test: str
    level: float
    k: int
    estimate: float
    se: float
    ci: Interval
    test_stat: Test
    pi: Interval | None = None
    heterogeneity: Heterogeneity | None = None
    #: how the prediction interval was formed ("t", "riley", "z"; "" if none)
    pi_kind: str = ""
    #: its degrees of freedom (None for z)
    pi_df: float | None = None


@dataclass(frozen=True)
class Variant:
    """A sensitivity analysis: the main question asked another way (or of fewer rows)."""

    name: str
    description: str
    model: str          # in words: "REML random effects, z test"
    k: int
    fit: Pooled | None
    note: str = ""
    #: the variant's own measure when it differs from the analysis's (Peto's OR beside an
    #: RD analysis; a Mantel-Haenszel RR of an OR analysis); "" = the analysis's scale
    measure: str = ""


@dataclass(frozen=True)
class Series:
    """Leave-one-out (each study left out) or cumulative (studies added in order) fits."""

    kind: str                  # "leave_one_out" | "cumulative"
    model: str
    test: str
    labels: tuple[str, ...]    # the study left out / the study added
    k: tuple[int, ...]
    estimate: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    pval: tuple[float, ...]
    tau2: tuple[float, ...]
    i2_pct: tuple[float, ...]


@dataclass(frozen=True)
class SubgroupLevel:
    level: str
    k: int
    fit: Pooled | None
    note: str = ""


@dataclass(frozen=True)
class Subgroups:
    """Estimates per level of a subgroup column, and the tests for subgroup differences.

    ``between``: Cochran's Q between the levels' separate random-effects
    estimates (RevMan's "test for subgroup differences", with I^2 of that Q);
    ``mixed_effects``: the omnibus QM of a meta-regression on the level
    indicators with one common tau^2 (metafor's ``rma(mods = ~ factor)``).
    """

    column: str
    levels: tuple[SubgroupLevel, ...]
    between: Test | None
    between_i2_pct: float
    mixed_effects: Test | None
    note: str = ""


@dataclass(frozen=True)
class Coefficient:
    name: str
    estimate: float
    se: float
    ci: Interval
    test_stat: Test


@dataclass(frozen=True)
class RegressionLine:
    """The fitted line of a one-moderator meta-regression over a grid, with its CI."""

    x: tuple[float, ...]
    pred: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]


@dataclass(frozen=True)
class MetaRegression:
    moderator: str
    model: str
    test: str
    level: float
    k: int
    coefficients: tuple[Coefficient, ...]
    tau2: float
    r2_pct: float
    qm: Test | None
    qe: Test | None
    line: RegressionLine | None
    x: tuple[float, ...]        # the moderator per effects row (NaN where missing or unused)
    note: str = ""


@dataclass(frozen=True)
class TrimFill:
    k0: int
    side: str
    fit: Pooled
    filled_yi: tuple[float, ...]
    filled_vi: tuple[float, ...]


@dataclass(frozen=True)
class SmallStudy:
    """Funnel-plot asymmetry: Egger's regression test, Begg's rank test, trim and fill."""

    k: int
    assessed: bool
    egger: Test | None
    egger_limit: float
    egger_classic: Test | None
    begg: Test | None
    trimfill: TrimFill | None
    note: str = ""
    #: binary outcomes (2x2 tables): Peters' test (log OR on 1/N, weights
    #: 1/(1/E + 1/F)) and Harbord's score test, which avoid Egger's built-in
    #: correlation of log OR and its SE
    peters: Test | None = None
    harbord: Test | None = None


@dataclass(frozen=True)
class Posterior:
    """Posterior summary of one scalar: ``ci`` equal-tailed, ``shortest`` the shortest interval."""

    median: float
    mean: float
    sd: float
    ci: Interval
    shortest: Interval


def joint_posterior(tau_density, cond_mean, cond_sd, mu) -> np.ndarray:
    """p(mu, tau | y) = p(tau | y) N(mu; M(tau), 1/W(tau)) on ``tau`` x ``mu``, shape (n_tau, n_mu).

    The normal-normal model's mu | tau, y is normal (``ntxmeta.bayes``), so the
    joint posterior is this product exactly; one formula for the engine's fit
    and for a result read back from JSON.
    """
    m = np.asarray(mu, dtype=float)
    mean, sd = np.asarray(cond_mean, dtype=float), np.asarray(cond_sd, dtype=float)
    z = (m[None, :] - mean[:, None]) / sd[:, None]
    return (np.asarray(tau_density, dtype=float)[:, None] * np.exp(-0.5 * z * z)
            / (sd[:, None] * math.sqrt(2.0 * math.pi)))


@dataclass(frozen=True)
class BayesResult:
    """The exact Bayesian random-effects model of an analysis (``ntxmeta.bayes.bayesmeta``).

    On the analysis scale. ``prob_benefit``: P(mu on the side that favours
    naltrexone); ``threshold`` (analysis scale, on the benefit side) and
    ``prob_beyond_threshold``: P(mu beyond it), None without a threshold.
    ``study_mean``/``study_sd``: each pooled study's shrunken effect, in the
    order of the used rows; the densities on ``tau_grid``/``mu_grid`` are
    what the figures draw (``joint_density`` rebuilds the joint posterior
    from them exactly), so no figure refits the model.
    """

    k: int
    tau_prior: str
    mu_prior: str
    level: float
    mu: Posterior
    tau: Posterior
    pred: Posterior
    prob_benefit: float
    threshold: float | None
    prob_beyond_threshold: float | None
    study_mean: tuple[float, ...]
    study_sd: tuple[float, ...]
    mu_grid: tuple[float, ...]
    mu_density: tuple[float, ...]
    tau_grid: tuple[float, ...]
    tau_density: tuple[float, ...]
    prob_below_null: float = math.nan
    study_ci: tuple[Interval, ...] = ()
    tau_prior_density: tuple[float, ...] = ()
    cond_mu_mean: tuple[float, ...] = ()
    cond_mu_sd: tuple[float, ...] = ()

    def joint_density(self, mu=None) -> np.ndarray:
        """The joint posterior on ``tau_grid`` x ``mu`` (default ``mu_grid``)."""
        return joint_posterior(self.tau_density, self.cond_mu_mean, self.cond_mu_sd,
                               self.mu_grid if mu is None else mu)


@dataclass(frozen=True)
class TSALook:
    """One look of the TSA: the meta-analysis of the first trials up to this one.

    ``upper``/``lower``: the alpha-spending boundaries (past the RIS the conventional z);
    ``futility_upper``/``futility_lower``: the inner wedge (NaN when not
    computed or while empty). ``info_fraction = n_cum / ris_adjusted`` (may
    exceed 1).
    """

    label: str
    year: float
    n_cum: float
    info_fraction: float
    estimate: float
    se: float
    z: float
    upper: float
    lower: float
    futility_upper: float
    futility_lower: float


@dataclass(frozen=True)
class Crossing:
    """Which boundary the z-curve crossed first, and at which look (0-based)."""

    boundary: str      # "upper", "lower" (monitoring boundaries) or "futility"
    look: int
    label: str


@dataclass(frozen=True)
class TSAResult:
    """A trial sequential analysis of one meta-analysis (analysis scale: log for RR/OR).

    ``ris`` is the unadjusted, ``ris_adjusted`` the D^2-adjusted RIS
    (``= ris`` when ``heterogeneity_adjusted`` is False; ``d2`` is reported
    either way), both unrounded;
    ``control_risk``/``rrr`` are NaN for a continuous outcome, ``mid``/``sd``
    NaN for a binary one. ``ci_adjusted`` is the TSA-adjusted CI at the
    last look, ``critical_value`` the boundary it used.
    """

    measure: str
    method: str
    sides: int
    spending: str
    alpha: float
    beta: float
    control_risk: float
    control_risk_rule: str
    rrr: float
    mid: float
    sd: float
    ris: float
    ris_adjusted: float
    d2: float
    heterogeneity_adjusted: bool
    futility: bool
    n_total: float
    info_fraction: float
    estimate: float
    se: float
    critical_value: float
    ci_adjusted: Interval
    looks: tuple[TSALook, ...]
    crossed: Crossing | None
    conclusion: str

    def to_dict(self) -> dict:
        """Plain JSON-able dict (NaN as None, infinities as "Inf"/"-Inf")."""
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TSAResult":
        return _decode(cls, data)


@dataclass(frozen=True)
class AnalysisResult:
    """Everything ``pool`` computed for one analysis (see the module docstring).

    ``weights_pct`` and ``used`` have one entry per row of the analysis's
    effects table, in its order (NaN weight / False where a row does not
    enter the models).
    """

    name: str
    title: str
    measure: str
    scale: Scale
    method: str
    test: str
    level: float
    status: str
    k_rows: int
    k_used: int
    participants: int
    events: int | None
    main: Pooled | None
    common: Pooled | None
    weights_pct: tuple[float, ...]
    used: tuple[bool, ...]
    variants: tuple[Variant, ...] = ()
    leave_one_out: Series | None = None
    cumulative: Series | None = None
    subgroups: Subgroups | None = None
    metaregression: tuple[MetaRegression, ...] = ()
    small_study: SmallStudy | None = None
    failed: tuple[str, ...] = ()
    #: the method preset the analysis ran with ("cochrane2025", "revman5", "metafor")
    preset: str = ""
    #: whether an overall estimate across subgroups is shown (False when they
    #: are different questions, e.g. comparator classes)
    overall: bool = True
    #: rules that changed what is shown, in words (k = 2, no prediction interval, ...)
    notes: tuple[str, ...] = ()
    #: the analysis counts favourable events (RR > 1 favours naltrexone)
    good_events: bool = False
    #: the exact Bayesian random-effects model (None: not pooled, or no tau prior)
    bayes: BayesResult | None = None
    #: the trial sequential analysis (None: not planned, or no trial with a size)
    tsa: TSAResult | None = None
    schema: str = field(default=SCHEMA)

    @property
    def pooled(self) -> bool:
        return self.main is not None

    def regression(self, moderator: str) -> MetaRegression | None:
        return next((r for r in self.metaregression if r.moderator == moderator), None)

    def to_json(self) -> str:
        return json.dumps(_encode(self), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "AnalysisResult":
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not an ntxmeta result of schema {SCHEMA!r} "
                             f"(found {data.get('schema')!r}); re-run the pool step")
        return _decode(cls, data)


def read_result(path) -> AnalysisResult:
    """Read ``results/analyses/{analysis}/result.json``."""
    from pathlib import Path
    return AnalysisResult.from_json(Path(path).read_text(encoding="utf-8"))


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of ``result.json``, derived from the dataclasses.

    ``workflow/schemas/result.schema.json`` is this, written out for readers
    (``tests/test_result_schema.py`` keeps the two equal). Floats may be
    ``null`` (NaN) or "Inf"/"-Inf"; optional parts are ``null``.
    """
    defs: dict = {}

    def of(tp) -> dict:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return {"anyOf": [of(args[0]), {"type": "null"}]}
        if origin is tuple:
            return {"type": "array", "items": of(typing.get_args(tp)[0])}
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}  # placeholder against recursion
                hints = _hints(tp)
                fields = dataclasses.fields(tp)
                defs[name] = {
                    "type": "object", "additionalProperties": False,
                    "description": (tp.__doc__ or "").strip().split("\n")[0],
                    "required": [f.name for f in fields],
                    "properties": {f.name: of(hints[f.name]) for f in fields}}
            return {"$ref": f"#/$defs/{name}"}
        if tp is float:
            return {"anyOf": [{"type": "number"}, {"type": "null"}, {"enum": ["Inf", "-Inf"]}]}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is str:
            return {"type": "string"}
        raise TypeError(f"no JSON type for {tp!r}")

    root = of(AnalysisResult)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://ntxmeta.invalid/schemas/result.schema.json",
            "title": f"ntxmeta analysis result ({SCHEMA})", **root, "$defs": defs}


# --------------------------------------------------------------------------- JSON codec
# Written here rather than taken from a library: the standard library's json
# has no dataclass support, and the packages that add it (dacite, pydantic,
# cattrs) are not dependencies of the project; what we need is ~40 lines.

_INF = {"Inf": math.inf, "-Inf": -math.inf}


def _encode(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return {f.name: _encode(getattr(o, f.name)) for f in dataclasses.fields(o)}
    if isinstance(o, (list, tuple, np.ndarray)):
        return [_encode(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        x = float(o)
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "Inf" if x > 0 else "-Inf"
        return x
    return o


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _decode(args[0], value)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_decode(inner, v) for v in value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{f.name: _decode(hints[f.name], value[f.name])
                     for f in dataclasses.fields(tp) if f.name in value})
    if tp is float:
        if value is None:
            return math.nan
        return _INF.get(value, value) if isinstance(value, str) else float(value)
    return value
