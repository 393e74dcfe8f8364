"""GRADE certainty of the evidence, per summary-of-findings row: computed where a rule decides.

The five GRADE domains are rated from the pooled result, the effects table
and the config, each by a written rule below, each with its reason; a
reviewer's override (config ``grade.overrides``) replaces a computed rating
and is shown as an override, with its reason, beside what the rule gave.
Randomised trials start at high certainty (4); each level rated down
lowers it by one, to very low (1) at most (GRADE 3, Balshem 2011).

Why written here: no Python or R package rates certainty from pooled data
(GRADEpro and RevMan record a reviewer's judgement; metaumbrella's rules
are for umbrella reviews of published estimates), so the rules are ours,
each one taken from the GRADE guidance it cites.

Rules
-----
Weights are the main model's percent weights of the pooled rows.

Risk of bias (GRADE 4, Guyatt 2011; Pollock 2016; CINeMA, Nikolakopoulou 2020)
    Shares of the weight by RoB 2 overall judgement. Two levels when trials
    at high risk carry at least :data:`ROB_HIGH_SERIOUS_PCT` (50 %) of the
    weight (most of the information is at high risk). One level when
    high-risk trials carry more than :data:`ROB_HIGH_PCT` (25 %; Pollock's
    algorithm), or when trials not at low risk (high, some concerns, or not
    assessed) carry more than :data:`ROB_MAJORITY_PCT` (50 %; CINeMA's
    majority rule). A trial nobody assessed counts as not at low risk: its
    risk is unknown, and "no concerns" would be a guess.
Inconsistency (GRADE 7, Guyatt 2011; Cochrane Handbook 10.10.2)
    One level when I^2 (the model's, or from Q) exceeds 50 %, or Q has
    p < 0.10, or the prediction interval includes no effect while the CI
    does not. Two levels when I^2 exceeds 75 % and the trials' own CIs
    lie on opposite sides of no effect (some trials clearly benefit, others
    clearly harm). Not assessable with one trial (no downgrade; the
    imprecision of a single trial is rated there).
Indirectness (GRADE 8, Guyatt 2011)
    Rows carry flags by domain (population, intervention, comparator,
    outcome): from the raw ``indirectness`` column ("domain: reason"; a
    reviewer's reading of the trial report) and from design facts (an oral
    dose other than 50 mg a day, a combination with another active drug).
    One level when flagged rows carry at least :data:`INDIRECT_PCT` (50 %)
    of the weight; two when two or more domains each do.
Imprecision (GRADE 6, Guyatt 2011; GRADE 34, Zeng 2022)
    Thresholds: no effect and, when the config gives one, the minimal
    important difference on each side (``grade.mid`` by measure, or the
    analysis's ``mid``). Two levels when the CI includes both MIDs
    (appreciable benefit and appreciable harm). One level when the CI
    includes no effect, or, when it does not, when the optimal information
    size is not met (:data:`OIS_EVENTS` events for binary outcomes,
    :data:`OIS_PARTICIPANTS` participants for continuous ones; GRADE 6's
    rules of thumb for a 25 % relative risk reduction and an SMD of 0.2).
Publication bias (GRADE 5, Guyatt 2011; Sterne 2011)
    With at least 10 trials: one level when the small-study test (Harbord's
    for 2x2 tables, else Egger's) has p < 0.10. With fewer it is not
    assessable: no downgrade, and the footnote says so.

Plain-language statements (GRADE 26, Santesso 2020)
    By certainty and by whether the point estimate is an important effect
    (beyond the MID; without a MID, a CI that excludes no effect): high
    "naltrexone reduces X", moderate "probably reduces", low "may reduce",
    very low "the evidence is very uncertain about the effect of naltrexone
    on X"; "(probably, may) result(s) in little to no difference in X" when
    the estimate is not an important effect.

References
----------
1. Balshem H, et al. GRADE guidelines 3: rating the quality of evidence.
   J Clin Epidemiol 2011;64:401-6.
2. Guyatt GH, et al. GRADE guidelines 4-8 (risk of bias, publication bias,
   imprecision, inconsistency, indirectness). J Clin Epidemiol
   2011;64:407-15, 1277-82, 1283-93, 1294-302, 1303-10.
3. Pollock A, et al. An algorithm was developed to assign GRADE levels of
   evidence to comparisons within systematic reviews. J Clin Epidemiol
   2016;70:106-10.
4. Nikolakopoulou A, et al. CINeMA: an approach for assessing confidence
   in the results of a network meta-analysis. PLoS Med 2020;17:e1003082.
5. Zeng L, et al. GRADE guidance 34: update on rating imprecision using a
   minimally contextualized approach. J Clin Epidemiol 2022;150:216-24.
6. Santesso N, et al. GRADE guidelines 26: informative statements to
   communicate the findings of systematic reviews of interventions.
   J Clin Epidemiol 2020;119:126-35.
7. Sterne JAC, et al. Recommendations for examining and interpreting funnel
   plot asymmetry in meta-analyses of randomised controlled trials. BMJ
   2011;343:d4002.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from .analysis import SMALL_STUDY_MIN_K

#: The five domains, in GRADEpro's order, and their names in footnotes.
DOMAINS = {"risk_of_bias": "Risk of bias", "inconsistency": "Inconsistency",
           "indirectness": "Indirectness", "imprecision": "Imprecision",
           "publication_bias": "Publication bias"}
#: Indirectness flag domains (GRADE 8: PICO).
INDIRECT_DOMAINS = ("population", "intervention", "comparator", "outcome")

ROB_HIGH_SERIOUS_PCT = 50.0
ROB_HIGH_PCT = 25.0
ROB_MAJORITY_PCT = 50.0
I2_SERIOUS_PCT = 50.0
I2_VERY_SERIOUS_PCT = 75.0
Q_ALPHA = 0.10
INDIRECT_PCT = 50.0
OIS_EVENTS = 300
OIS_PARTICIPANTS = 400
SMALL_STUDY_ALPHA = 0.10
#: The licensed oral dose (mg a day) for alcohol and opioid use disorder.
LICENSED_ORAL_MG = 50.0

START = 4
LABELS = {4: "High", 3: "Moderate", 2: "Low", 1: "Very low"}
PLUS, EMPTY = "\u2295", "\u25ef"
LEVEL_WORDS = {1: "one level", 2: "two levels"}


@dataclass(frozen=True)
class Evidence:
    """What the rules read of one SoF row: the estimate on the shown scale and its rows.

    ``weights``, ``rob``, ``indirect`` and ``trial_ci`` have one entry per
    pooled row (the order does not matter). ``indirect`` holds each row's
    flags as ``"domain: reason"`` strings. ``mid`` is (lower, upper) on the
    shown scale, around ``null``; None when the config gives none.
    """

    outcome: str
    estimate: float
    ci: tuple[float, float]
    null: float
    k: int
    binary: bool
    events: float = math.nan
    participants: float = math.nan
    pi: tuple[float, float] = (math.nan, math.nan)
    i2_pct: float = math.nan
    i2_q_pct: float = math.nan
    q_pval: float = math.nan
    weights: tuple[float, ...] = ()
    rob: tuple[str, ...] = ()
    indirect: tuple[tuple[str, ...], ...] = ()
    trial_ci: tuple[tuple[float, float], ...] = ()
    small_study_test: str = ""
    small_study_p: float = math.nan
    mid: tuple[float, float] | None = None


@dataclass(frozen=True)
class Rating:
    """One domain: levels rated down (0, 1, 2), why, and whether a reviewer overrode the rule."""

    domain: str
    levels: int
    reason: str
    override: bool = False
    rule_levels: int | None = None  # what the rule gave, when overridden
    rule_reason: str = ""


@dataclass(frozen=True)
class Certainty:
    """The certainty of one SoF row: level 1-4, its ratings, footnotes and statement."""

    level: int
    ratings: tuple[Rating, ...]
    statement: str
    footnotes: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return LABELS[self.level]

    @property
    def symbols(self) -> str:
        return PLUS * self.level + EMPTY * (START - self.level)

    @property
    def text(self) -> str:
        """GRADEpro's cell: the symbols, the label and the footnote letters."""
        marks = ",".join(letter(i) for i in range(len(self.footnotes)))
        return f"{self.symbols} {self.label}" + (f" ({marks})" if marks else "")


def letter(i: int) -> str:
    """Footnote letters a, b, ..., z, aa, ab, ..."""
    return chr(97 + i) if i < 26 else letter(i // 26 - 1) + chr(97 + i % 26)


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _includes(ci: tuple[float, float], x: float) -> bool:
    return _finite(*ci, x) and ci[0] <= x <= ci[1]


def _shares(weights: Sequence[float], hit: Sequence[bool]) -> float:
    """Percent of the total weight on the rows where ``hit``."""
    total = sum(w for w in weights if _finite(w))
    return 100.0 * sum(w for w, h in zip(weights, hit) if h and _finite(w)) / total if total > 0 else math.nan


# --------------------------------------------------------------------------- the five rules


def rate_risk_of_bias(ev: Evidence) -> Rating:
    w = ev.weights
    high = _shares(w, [r == "high" for r in ev.rob])
    not_low = _shares(w, [r != "low" for r in ev.rob])
    unknown = _shares(w, [r in ("not_assessed", "") for r in ev.rob])
    if not math.isfinite(high):
        return Rating("risk_of_bias", 0, "no weights to rate")
    shares = (f"weight at high risk {high:.0f}%, not at low risk {not_low:.0f}%"
              + (f" (not assessed {unknown:.0f}%)" if unknown > 0 else ""))
    if high >= ROB_HIGH_SERIOUS_PCT:
        return Rating("risk_of_bias", 2, f"{shares}: most of the weight from trials at high risk "
                                         f"of bias (>= {ROB_HIGH_SERIOUS_PCT:.0f}%)")
    if high > ROB_HIGH_PCT:
        return Rating("risk_of_bias", 1, f"{shares}: more than {ROB_HIGH_PCT:.0f}% of the weight "
                                         "from trials at high risk of bias")
    if not_low > ROB_MAJORITY_PCT:
        why = ("risk of bias not assessed (no sourced RoB 2 judgement) or with concerns"
               if unknown > 0 else "trials with some concerns or at high risk")
        return Rating("risk_of_bias", 1, f"{shares}: most of the weight from {why}")
    return Rating("risk_of_bias", 0, f"{shares}")


def _opposite_trials(trial_ci, null) -> bool:
    below = any(_finite(lo, hi) and hi < null for lo, hi in trial_ci)
    above = any(_finite(lo, hi) and lo > null for lo, hi in trial_ci)
    return below and above


def rate_inconsistency(ev: Evidence) -> Rating:
    if ev.k < 2:
        return Rating("inconsistency", 0, "not assessable: a single trial")
    i2 = max((x for x in (ev.i2_pct, ev.i2_q_pct) if _finite(x)), default=math.nan)
    why = []
    if _finite(i2) and i2 > I2_SERIOUS_PCT:
        why.append(f"I\u00b2 = {i2:.0f}% (> {I2_SERIOUS_PCT:.0f}%)")
    if _finite(ev.q_pval) and ev.q_pval < Q_ALPHA:
        why.append(f"Q p = {ev.q_pval:.2g} (< {Q_ALPHA:.2f})")
    if _includes(ev.pi, ev.null) and not _includes(ev.ci, ev.null):
        why.append("the prediction interval includes no effect, the CI does not")
    if not why:
        return Rating("inconsistency", 0, f"I\u00b2 = {i2:.0f}%" if _finite(i2) else "no heterogeneity statistic")
    if _finite(i2) and i2 > I2_VERY_SERIOUS_PCT and _opposite_trials(ev.trial_ci, ev.null):
        return Rating("inconsistency", 2, "; ".join(why) + f"; I\u00b2 > {I2_VERY_SERIOUS_PCT:.0f}% "
                      "and trials' CIs on opposite sides of no effect")
    return Rating("inconsistency", 1, "; ".join(why))


def rate_indirectness(ev: Evidence) -> Rating:
    flagged = {}
    for d in INDIRECT_DOMAINS:
        hit = [any(f.split(":", 1)[0].strip() == d for f in flags) for flags in ev.indirect]
        share = _shares(ev.weights, hit)
        if _finite(share) and share > 0:
            reasons = sorted({f.split(":", 1)[1].strip() for flags in ev.indirect for f in flags
                              if f.split(":", 1)[0].strip() == d and ":" in f})
            flagged[d] = (share, reasons)
    if not flagged:
        return Rating("indirectness", 0, "no indirectness flag on the pooled rows")
    words = "; ".join(f"{d} ({s:.0f}% of the weight: {', '.join(r)})" for d, (s, r) in flagged.items())
    serious = [d for d, (s, _) in flagged.items() if s >= INDIRECT_PCT]
    if len(serious) >= 2:
        return Rating("indirectness", 2, f"{words}: two or more domains on >= {INDIRECT_PCT:.0f}% "
                                         "of the weight")
    if serious:
        return Rating("indirectness", 1, f"{words}: >= {INDIRECT_PCT:.0f}% of the weight indirect")
    return Rating("indirectness", 0, f"{words}: less than {INDIRECT_PCT:.0f}% of the weight, "
                                     "not rated down")


def rate_imprecision(ev: Evidence) -> Rating:
    if not _finite(*ev.ci):
        return Rating("imprecision", 0, "no confidence interval")
    lo, hi = ev.ci
    ci = f"CI {lo:.2f} to {hi:.2f}"
    if ev.mid is not None and _includes(ev.ci, ev.mid[0]) and _includes(ev.ci, ev.mid[1]):
        return Rating("imprecision", 2, f"{ci} includes both minimal important differences "
                                        f"({ev.mid[0]:g} and {ev.mid[1]:g}): appreciable benefit "
                                        "and appreciable harm")
    mids = "" if ev.mid is not None else " (no minimal important difference in the config)"
    if _includes(ev.ci, ev.null):
        return Rating("imprecision", 1, f"{ci} includes no effect ({ev.null:g}){mids}")
    if ev.binary and _finite(ev.events) and ev.events < OIS_EVENTS:
        return Rating("imprecision", 1, f"{ev.events:.0f} events, fewer than the optimal "
                                        f"information size ({OIS_EVENTS})")
    if not ev.binary and _finite(ev.participants) and ev.participants < OIS_PARTICIPANTS:
        return Rating("imprecision", 1, f"{ev.participants:.0f} participants, fewer than the "
                                        f"optimal information size ({OIS_PARTICIPANTS})")
    size = f"{ev.events:.0f} events" if ev.binary else f"{ev.participants:.0f} participants"
    return Rating("imprecision", 0, f"{ci} excludes no effect; {size}{mids}")


def rate_publication_bias(ev: Evidence) -> Rating:
    if ev.k < SMALL_STUDY_MIN_K:
        return Rating("publication_bias", 0, f"not assessable: {ev.k} trials (a small-study test "
                                             f"needs at least {SMALL_STUDY_MIN_K})")
    if not _finite(ev.small_study_p):
        return Rating("publication_bias", 0, "not assessable: no small-study test result")
    test = ev.small_study_test or "small-study"
    if ev.small_study_p < SMALL_STUDY_ALPHA:
        return Rating("publication_bias", 1, f"{test} test p = {ev.small_study_p:.3f} "
                                             f"(< {SMALL_STUDY_ALPHA:.2f}): small-study effects")
    return Rating("publication_bias", 0, f"{test} test p = {ev.small_study_p:.3f}: not detected")


RULES = {"risk_of_bias": rate_risk_of_bias, "inconsistency": rate_inconsistency,
         "indirectness": rate_indirectness, "imprecision": rate_imprecision,
         "publication_bias": rate_publication_bias}


# --------------------------------------------------------------------------- certainty


def _overridden(rating: Rating, override: Mapping | None) -> Rating:
    if not override:
        return rating
    return Rating(rating.domain, int(override["levels"]), str(override["reason"]), override=True,
                  rule_levels=rating.levels, rule_reason=rating.reason)


def _rated(levels: int) -> str:
    return f"rated down {LEVEL_WORDS[levels]}" if levels else "not rated down"


def footnote(r: Rating) -> str | None:
    """The footnote of one rating: every downgrade, every override, what was not assessable."""
    name = DOMAINS[r.domain]
    if r.override:
        return (f"{name}: {_rated(r.levels)} (reviewer override): {r.reason}; "
                f"the rule: {_rated(r.rule_levels or 0)}, {r.rule_reason}")
    if r.levels:
        return f"{name}: {_rated(r.levels)}: {r.reason}"
    if r.reason.startswith("not assessable"):
        return f"{name}: {r.reason}"
    return None


def effect_direction(ev: Evidence) -> str:
    """"decrease", "increase" or "none" (not an important effect); "" with no estimate."""
    if not _finite(ev.estimate):
        return ""
    if ev.mid is not None:
        if ev.estimate < ev.mid[0]:
            return "decrease"
        if ev.estimate > ev.mid[1]:
            return "increase"
        return "none"
    if _includes(ev.ci, ev.null) or not _finite(*ev.ci):
        return "none"
    return "decrease" if ev.estimate < ev.null else "increase"


#: GRADE 26 (Santesso 2020, table 2): certainty -> (important effect, little or no difference).
STATEMENTS = {
    4: ("naltrexone {verb_s} {outcome}", "naltrexone results in little to no difference in {outcome}"),
    3: ("naltrexone probably {verb_s} {outcome}",
        "naltrexone probably results in little to no difference in {outcome}"),
    2: ("naltrexone may {verb} {outcome}", "naltrexone may result in little to no difference in {outcome}"),
    1: ("the evidence is very uncertain about the effect of naltrexone on {outcome}",) * 2,
}
VERBS = {"decrease": ("reduce", "reduces"), "increase": ("increase", "increases")}


def plain_statement(level: int, direction: str, outcome: str) -> str:
    """GRADE's standard wording for a certainty level and an effect (GRADE 26)."""
    if not direction:
        return f"no pooled estimate of the effect of naltrexone on {outcome}"
    important, none = STATEMENTS[level]
    text = none if direction == "none" else important
    verb, verb_s = VERBS.get(direction, ("", ""))
    out = text.format(verb=verb, verb_s=verb_s, outcome=outcome)
    return out[0].upper() + out[1:] + "."


def certainty(ev: Evidence, overrides: Mapping[str, Mapping] | None = None) -> Certainty:
    """Rate the five domains, apply the overrides, and word the result.

    ``overrides`` maps a domain to ``{"levels": 0-2, "reason": str}``.
    """
    overrides = overrides or {}
    unknown = set(overrides) - set(DOMAINS)
    if unknown:
        raise ValueError(f"unknown GRADE domain(s) {sorted(unknown)}; use {list(DOMAINS)}")
    ratings = tuple(_overridden(RULES[d](ev), overrides.get(d)) for d in DOMAINS)
    level = max(1, START - sum(r.levels for r in ratings))
    notes = tuple(n for n in (footnote(r) for r in ratings) if n)
    return Certainty(level, ratings, plain_statement(level, effect_direction(ev), ev.outcome), notes)
