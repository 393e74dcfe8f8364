"""Run one :class:`~ntxmeta.plan.AnalysisPlan` on its effects table: the ``pool`` step's statistics.

``run_plan(plan, effects)`` fits what the plan asks for and nothing else,
each model once (:class:`FitCache`), and returns an
:class:`~ntxmeta.result.AnalysisResult`. Every statistic of the pipeline is
computed here, by the engine's functions; tables, figures and the report
only format the result.

Parts, each an engine call that matches metafor 3.8-1:

- main model: ``rma(method, test)`` of the plan on the rows with finite yi
  and vi (metafor's na.omit); the common-effect model ``rma(method="EE")``;
- sensitivity variants: tau^2 by REML, DL and PM; z and Hartung-Knapp;
  common effect by inverse variance, Mantel-Haenszel and Peto (arm-level
  binary rows); the main model on subsets (without low-confidence rows,
  without derived rows, placebo-controlled rows only, the config's
  sensitivity subsets); the leave-one-out range;
- leave-one-out and cumulative (by year) series (``diagnostics``);
- subgroups: per-level fits, Q between the levels' estimates (RevMan's test
  for subgroup differences, with its I^2), the mixed-effects QM;
- a meta-regression per moderator, with its fitted line on a grid;
- small-study effects: Egger (rma and classic), Begg's rank test, trim and
  fill; ``assessed`` only for k >= 10 (Sterne et al. 2011).

A part that the engine refuses (``ValueError``: too few studies, a
moderator without variance) is absent with its reason in a ``note``; an
unexpected exception in one part is recorded in ``failed`` and the other
parts go on, so one bad section never hides the rest.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from ._common import Interval, z_crit
from .plan import AnalysisPlan
from .result import (AnalysisResult, BayesResult, Coefficient, Heterogeneity, MetaRegression,
                     Pooled, Posterior, RegressionLine, Scale, Series, SmallStudy, SubgroupLevel, Subgroups, Test,
                     TrimFill, Variant)

#: Fewest studies for a funnel-plot-based test (Sterne et al. 2011, BMJ 343:d4002).
SMALL_STUDY_MIN_K = 10
#: Fewest studies for a prediction interval (Cochrane Handbook 10.10.4.3: a
#: PI from k = 2 has no degrees of freedom to speak of).
PI_MIN_K = 3
#: Fewest studies for leave-one-out (each fit keeps k - 1 >= 2 studies).
LEAVE_ONE_OUT_MIN_K = 3
#: Fewest studies with the moderator for a meta-regression with one
#: moderator (Cochrane Handbook 6.5, 10.11.5.1: "at least ten studies for
#: each characteristic modelled").
METAREG_MIN_K = 10
#: Points of the fitted line of a bubble plot.
LINE_POINTS = 101
COMMON = ("EE", "FE", "CE")


#: The tests in words.
TEST_WORDS = {"z": "z test", "knha": "Hartung-Knapp",
              "adhoc": "Hartung-Knapp (ad hoc variance floor)"}


def model_words(method: str, test: str) -> str:
    """A model in words, as the sensitivity table names it."""
    if method in COMMON:
        return "common effect, inverse variance"
    if method in ("MH", "Peto"):
        return f"common effect, {'Mantel-Haenszel' if method == 'MH' else 'Peto'}"
    return f"{method} random effects, {TEST_WORDS.get(test, test)}"


def i2_from_q(q: float, df: float) -> float:
    """I^2 from Cochran's Q in percent, max(0, (Q - df) / Q) (Higgins & Thompson 2002).

    RevMan 5's I^2; metafor's (and RevMan's since 2025) is tau^2 / (tau^2 +
    s^2), which is 0 whenever tau^2 is, however large Q. Both are shown.
    """
    if not (math.isfinite(q) and q > 0):
        return 0.0 if q == 0 else math.nan
    return max(0.0, 100.0 * (q - df) / q)


def number_column(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column of an effects table as floats (NaN where missing or not a number)."""
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def text_column(frame: pd.DataFrame, col: str) -> pd.Series:
    """A text column, lower case and stripped ("" where missing)."""
    if col not in frame:
        return pd.Series([""] * len(frame), index=frame.index)
    return frame[col].astype(object).where(frame[col].notna(), "").astype(str).str.strip().str.lower()


def _truthy(frame: pd.DataFrame, col: str) -> np.ndarray:
    return text_column(frame, col).isin({"true", "1", "yes"}).to_numpy()


def _exclude_mask(frame: pd.DataFrame, filters) -> tuple[np.ndarray, list[str]]:
    """Rows matching every (column, values) filter; the filter columns not in the table."""
    hit = np.ones(len(frame), dtype=bool)
    missing = []
    for col, values in filters:
        if col not in frame:
            missing.append(col)
            hit &= False
        elif col == "derived":  # a yes/no column, spelt True/yes/1
            hit &= _truthy(frame, col) == (str(values[0]) in ("true", "1", "yes"))
        else:
            hit &= text_column(frame, col).isin(set(values)).to_numpy()
    return hit, missing


#: ``pi`` option -> ``RMAFit.predict`` pi_type ("z" is metafor's default
#: after a z test; after knha/adhoc metafor's default is already t(k-1)).
PI_TYPES = {"t": "t", "riley": "riley", "z": "default"}


def pooled_from_fit(fit, *, with_pi: bool = True, pi: str = "z") -> Pooled:
    """An engine ``RMAFit`` (intercept only) as a :class:`Pooled`.

    ``pi`` is the prediction interval's kind (:data:`PI_TYPES`); none is
    given for a common-effect model or for fewer than :data:`PI_MIN_K` studies.
    """
    common = fit.method in COMMON
    if fit.df is None:
        stat = Test("z", float(fit.stat[0]), float(fit.pval[0]))
    else:
        stat = Test("t", float(fit.stat[0]), float(fit.pval[0]), float(fit.df))
    interval, kind, pi_df = None, "", None
    if with_pi and not common and fit.k >= PI_MIN_K:
        pr = fit.predict(PI_TYPES[pi])
        interval, kind = Interval(float(pr.pi.low), float(pr.pi.high)), pi
        pi_df = None if pr.pi_df is None else float(pr.pi_df)
    het = Heterogeneity(q=float(fit.QE), q_df=int(fit.QEdf), q_pval=float(fit.QEp),
                        tau2=float(fit.tau2), tau2_se=float(fit.se_tau2), tau=float(fit.tau),
                        i2_pct=float(fit.I2_pct), h2=float(fit.H2),
                        i2_q_pct=i2_from_q(float(fit.QE), float(fit.QEdf)))
    return Pooled(model=fit.method, test=fit.test, level=float(fit.level), k=int(fit.k),
                  estimate=float(fit.estimate), se=float(fit.se[0]),
                  ci=Interval(float(fit.ci_lb[0]), float(fit.ci_ub[0])), test_stat=stat,
                  pi=interval, heterogeneity=het, pi_kind=kind, pi_df=pi_df)


class FitCache:
    """Each (rows, estimator, test) model fitted once per analysis.

    The key is the bytes of the row mask: the main model, its variants and
    the subset analyses that keep every row share one fit. A Hartung-Knapp
    fit reuses the z fit's tau^2 when the engine offers ``with_test``.
    """

    def __init__(self, yi: np.ndarray, vi: np.ndarray, level: float, pool_k2: bool = True):
        self.yi, self.vi, self.level = yi, vi, level
        #: whether two studies get a random-effects fit (the plan's pool_k2)
        self.pool_k2 = pool_k2
        self._fits: dict = {}

    def refuses(self, k: int, method: str) -> bool:
        """The k = 2 rule: no random-effects model of two studies unless pool_k2."""
        return k == 2 and not self.pool_k2 and method not in COMMON

    def fit(self, mask: np.ndarray, method: str, test: str):
        from .rma import rma
        key = (mask.tobytes(), method, test)
        if key not in self._fits:
            base = (mask.tobytes(), method, "z")
            if test != "z" and base in self._fits and hasattr(self._fits[base], "with_test"):
                self._fits[key] = self._fits[base].with_test(test)
            else:
                self._fits[key] = rma(self.yi[mask], self.vi[mask], method=method, test=test,
                                      level=self.level)
        return self._fits[key]


class NotApplicable(Exception):
    """A part of an analysis that its data cannot have (said in the result's notes, not a failure)."""


class _Parts:
    """Runs the parts of one analysis, isolating unexpected failures."""

    def __init__(self):
        self.failed: list[str] = []

    def run(self, name: str, fn: Callable, *args):
        try:
            return fn(*args)
        except NotApplicable:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded in the result, not swallowed
            self.failed.append(f"{name}: {type(exc).__name__}: {exc}")
            return None


#: Why a k = 2 analysis has no random-effects estimate (``pool_k2: false``).
K2_NOTE = ("no random-effects estimate: two studies (k = 2) cannot estimate the between-study "
           "variance, and Hartung-Knapp on 1 df is unreliable; both studies and their "
           "common-effect estimate are shown (set pool_k2: true to pool them)")


K2_VARIANT = "two studies and pool_k2: false, no random-effects estimate"


def status_of(k_used: int, failed=(), pooled: bool = True, *, two_only: bool = False) -> str:
    """Why an analysis has, or has no, pooled estimate."""
    if k_used == 0:
        text = "no pooled estimate: no usable rows after the pooling rules"
    elif k_used == 1:
        text = "no pooled estimate: a single study (k = 1); its own estimate is shown"
    elif two_only:
        text = "no random-effects estimate: two studies (k = 2; pool_k2: false)"
    elif not pooled:
        text = "no pooled estimate: the main model failed"
    else:
        text = "pooled"
    if failed:
        text += "; FAILED parts: " + ", ".join(f.split(":")[0] for f in failed)
    return text


def _variant(cache: FitCache, used, mask, name, description, method, test, note="") -> Variant:
    sel = used & mask
    k = int(sel.sum())
    words = model_words(method, test)
    if k == 0:
        return Variant(name, description, words, 0, None, "not computed: no rows")
    if k == 1:
        return Variant(name, description, words, 1, None,
                       "not computed: a single study (k = 1), nothing to pool")
    if cache.refuses(k, method):
        return Variant(name, description, words, k, None, f"not computed: {K2_VARIANT}")
    try:
        fit = cache.fit(sel, method, test)
    except ValueError as exc:
        return Variant(name, description, words, k, None, f"not computed: {exc}")
    return Variant(name, description, words, k, pooled_from_fit(fit, with_pi=False), note)


def _binary_variant(effects, used, name, description, model, measure, level) -> Variant:
    """A Mantel-Haenszel ("MH") or Peto ("Peto") common-effect fit of the used rows' 2x2 tables."""
    from .binary import mantel_haenszel, peto
    fitter = mantel_haenszel if model == "MH" else (lambda *a, measure, **kw: peto(*a, **kw))
    cells = [number_column(effects, c) for c in ("events_treat", "n_treat", "events_ctrl", "n_ctrl")]
    has = used & np.all([np.isfinite(c) for c in cells], axis=0)
    k = int(has.sum())
    words = model_words(model, "z")
    own = "OR" if model == "Peto" else measure   # Peto's is always an odds ratio
    if k < 2:
        return Variant(name, description, words, k, None,
                       "not computed: no row has arm counts" if k == 0 else
                       "not computed: a single study (k = 1), nothing to pool", own)
    note = "" if k == used.sum() else (
        f"{k} of {int(used.sum())} pooled rows have arm counts; the others are left out")
    a, n1, c, n2 = (x[has] for x in cells)
    try:
        fit = fitter(a, ci=c, n1i=n1, n2i=n2, level=level, measure=measure)
    except ValueError as exc:
        return Variant(name, description, words, k, None, f"not computed: {exc}", own)
    h = fit.heterogeneity
    het = Heterogeneity(q=float(h.QE), q_df=int(h.df), q_pval=float(h.QEp), tau2=0.0,
                        tau2_se=math.nan, tau=0.0, i2_pct=float(h.I2_pct), h2=float(h.H2),
                        i2_q_pct=float(h.I2_pct))
    pooled = Pooled(model=model, test="z", level=level,
                    k=k, estimate=float(fit.estimate), se=float(fit.se), ci=fit.ci,
                    test_stat=Test("z", float(fit.zval), float(fit.pval)), heterogeneity=het)
    return Variant(name, description, words, k, pooled, note, own)


#: Mantel-Haenszel weight of each 2x2 table (RevMan; Cochrane Handbook 10.4.1):
#: RD n1 n2 / N, RR c n1 / N, OR b c / N.
MH_WEIGHTS = {"RD": lambda a, b, c, d: (a + b) * (c + d) / (a + b + c + d),
              "RR": lambda a, b, c, d: c * (a + b) / (a + b + c + d),
              "OR": lambda a, b, c, d: b * c / (a + b + c + d)}


def mantel_haenszel_main(effects: pd.DataFrame, used: np.ndarray, measure: str, level: float
                         ) -> tuple[Variant, np.ndarray]:
    """The Mantel-Haenszel main model of a ``pooling: mantel_haenszel`` analysis and its weights.

    The common effect of the arm counts with no continuity correction (a
    table with no events in either arm keeps its RD weight), as
    :func:`ntxmeta.binary.mantel_haenszel` (metafor ``rma.mh``) computes
    it; weights in percent of the MH weights, NaN off the model.
    """
    main = _binary_variant(effects, used, "main", f"Main model: Mantel-Haenszel {measure}",
                           "MH", measure, level)
    weights = np.full(len(effects), np.nan)
    cells = _cells(effects, used)
    if main.fit is not None and cells is not None:
        w = MH_WEIGHTS[measure](*cells)
        if w.sum() > 0:
            weights[used] = 100.0 * w / w.sum()
    return main, weights


def _variants(plan: AnalysisPlan, effects: pd.DataFrame, cache: FitCache, used, scale: Scale,
              loo: Series | None, extra=None, main: Variant | None = None) -> tuple[Variant, ...]:
    o = plan.options
    every = np.ones(len(effects), dtype=bool)
    same = "same model as the main model"
    out = [_variant(cache, used, every, "main", "Main model", o.method, o.test)]
    if main is not None:  # Mantel-Haenszel main model; random effects as a sensitivity analysis
        out = [main, _variant(cache, used, every, "random_effects",
                              "Random-effects model (inverse variance)", o.method, o.test)]
    out += [_variant(cache, used, every, f"tau2_{m}", f"tau\u00b2 estimator {m}", m, o.test,
                     same if m == o.method else "") for m in plan.sensitivity_methods]
    out += [_variant(cache, used, every, f"test_{t}", TEST_DESCRIPTIONS[t], o.method, t,
                     same if t == o.test else "") for t in TEST_DESCRIPTIONS]
    out.append(_variant(cache, used, every, "common_EE", "Common effect (inverse variance)",
                        "EE", "z"))
    if (text_column(effects, "data_type") == "binary").any():
        mh_measure = plan.measure if plan.measure in ("RR", "OR", "RD") else "OR"
        out.append(_binary_variant(effects, used, "common_MH", f"Mantel-Haenszel {mh_measure}",
                                   "MH", mh_measure, o.level))
        out.append(_binary_variant(effects, used, "common_Peto", "Peto odds ratio", "Peto", "OR",
                                   o.level))
    subsets = list(plan.subsets)
    mh = (effects, plan.measure) if main is not None else None  # subsets refit the MH main model
    for s in subsets[:2]:  # the built-in ones, first
        out.append(_subset(cache, effects, used, s, o, mh))
    placebo = text_column(effects, "comparator_type").eq("placebo").to_numpy()
    out.append(_subset_mask(cache, used, placebo, "placebo_only", "Placebo-controlled rows only", o,
                            mh=mh))
    out += [_subset(cache, effects, used, s, o, mh) for s in subsets[2:]]
    rob = text_column(effects, "rob_overall")
    for name, description, keep in (
            ("rob_low", "Trials at low risk of bias only (RoB 2 overall)", rob.eq("low")),
            ("rob_not_high", "Without trials at high risk of bias (RoB 2 overall)",
             ~rob.eq("high"))):
        out.append(_subset_mask(cache, used, keep.to_numpy(), name, description, o,
                                "" if "rob_overall" in effects else
                                "no risk-of-bias column in the effects table", mh))
    if extra is not None and extra.any():
        ids = ", ".join(str(r) for r in effects.loc[extra, "row_id"])
        out.append(_variant(cache, used | extra, every, "with_sensitivity_rows",
                            f"With the rows kept out of the main model by a rule ({ids})",
                            o.method, o.test))
    if loo is not None and len(loo.estimate) >= 2:
        est = np.asarray(loo.estimate)
        # argmin/argmax take the first of tied studies: deterministic, in table order
        for tag, which, i in (("min", "lowest", int(np.nanargmin(est))),
                              ("max", "highest", int(np.nanargmax(est)))):
            fit = Pooled(model=loo.model, test=loo.test, level=o.level, k=int(loo.k[i]),
                         estimate=float(est[i]), se=math.nan,
                         ci=Interval(loo.ci_low[i], loo.ci_high[i]),
                         test_stat=Test("z" if o.test == "z" else "t", math.nan, loo.pval[i]),
                         heterogeneity=Heterogeneity(math.nan, 0, math.nan, loo.tau2[i], math.nan,
                                                     math.sqrt(max(loo.tau2[i], 0.0)),
                                                     loo.i2_pct[i], math.nan))
            out.append(Variant(f"leave1out_{tag}",
                               f"Leave-one-out: {which} estimate (without {loo.labels[i]})",
                               model_words(o.method, o.test), int(loo.k[i]), fit))
    return tuple(out)


#: The tests every sensitivity table compares.
TEST_DESCRIPTIONS = {"z": "Wald z test", "knha": "Hartung-Knapp test",
                     "adhoc": "Hartung-Knapp test with the ad hoc variance floor"}


def _subset_mask(cache, used, keep, name, description, o, note="", mh=None) -> Variant:
    """The main model on the rows kept; ``mh`` = (effects, measure) when the main model is
    Mantel-Haenszel, so that a subset is refitted as its main model was."""
    if not note and (used & keep).sum() == used.sum():
        note = "same rows as the main model"
    if mh is None:
        return _variant(cache, used, keep, name, description, o.method, o.test, note)
    v = _binary_variant(mh[0], used & keep, name, description, "MH", mh[1], o.level)
    return replace(v, note="; ".join(n for n in (v.note, note) if n))


def _subset(cache, effects, used, subset, o, mh=None) -> Variant:
    hit, missing = _exclude_mask(effects, subset.exclude)
    note = (f"filter column(s) {', '.join(missing)} not in the effects table: nothing excluded"
            if missing else "")
    return _subset_mask(cache, used, ~hit, subset.name, subset.title, o, note, mh)


def _series(kind: str, res, labels) -> Series:
    f = lambda a: tuple(float(x) for x in a)  # noqa: E731
    return Series(kind=kind, model=res.method, test=res.test, labels=tuple(labels),
                  k=tuple(int(x) for x in res.k), estimate=f(res.estimate), ci_low=f(res.ci_lb),
                  ci_high=f(res.ci_ub), pval=f(res.pval), tau2=f(res.tau2), i2_pct=f(res.I2_pct))


def _leave_one_out(y, v, labels, o) -> Series | None:
    if y.size < LEAVE_ONE_OUT_MIN_K:
        return None
    from .diagnostics import leave1out
    return _series("leave_one_out", leave1out(y, v, method=o.method, test=o.test, level=o.level),
                   labels)


def _cumulative(y, v, labels, years, o) -> Series | None:
    if y.size < 2:
        return None
    from .diagnostics import cumulative
    res = cumulative(y, v, years, method=o.method, test=o.test, level=o.level)
    return _series("cumulative", res, [labels[i] for i in res.order])


def _single(effects: pd.DataFrame, mask: np.ndarray, level: float) -> Pooled | None:
    """One row's own estimate and Wald CI (the first step of a cumulative series)."""
    y, v = float(number_column(effects, "yi")[mask][0]), float(number_column(effects, "vi")[mask][0])
    if not (math.isfinite(y) and math.isfinite(v) and v > 0):
        return None
    se, z = math.sqrt(v), z_crit(level)
    het = Heterogeneity(q=0.0, q_df=0, q_pval=1.0, tau2=0.0, tau2_se=math.nan, tau=0.0,
                        i2_pct=0.0, h2=1.0, i2_q_pct=0.0)
    from scipy.special import ndtr
    return Pooled(model="MH", test="z", level=level, k=1, estimate=y, se=se,
                  ci=Interval(y - z * se, y + z * se),
                  test_stat=Test("z", y / se, float(2 * ndtr(-abs(y / se)))), heterogeneity=het)


def _mh_series(kind: str, effects: pd.DataFrame, used: np.ndarray, labels, years,
               measure: str, level: float) -> Series | None:
    """Leave-one-out or cumulative Mantel-Haenszel fits of a ``pooling: mantel_haenszel`` analysis.

    The series ask the main question of fewer trials, so they refit the main
    model (MH, arm counts, no continuity correction), not random effects:
    each pooled row left out in turn, or rows added by year (ties in input
    order, missing years last, as ``diagnostics.cumulative``).
    """
    from .diagnostics import stable_order
    rows = np.flatnonzero(used)
    if kind == "leave_one_out":
        if rows.size < LEAVE_ONE_OUT_MIN_K:
            return None
        masks = [used & (np.arange(len(used)) != j) for j in rows]
        shown = list(labels)
    else:
        if rows.size < 2:
            return None
        order = stable_order(np.asarray(years, dtype=float))
        masks = [np.isin(np.arange(len(used)), rows[order[:i + 1]]) for i in range(rows.size)]
        shown = [labels[i] for i in order]
    fits = [_binary_variant(effects, m, kind, "", "MH", measure, level).fit if m.sum() > 1
            else _single(effects, m, level) for m in masks]
    nan = math.nan
    return Series(kind=kind, model="MH", test="z", labels=tuple(shown),
                  k=tuple(int(m.sum()) for m in masks),
                  estimate=tuple(f.estimate if f else nan for f in fits),
                  ci_low=tuple(f.ci.low if f else nan for f in fits),
                  ci_high=tuple(f.ci.high if f else nan for f in fits),
                  pval=tuple(f.test_stat.pval if f else nan for f in fits),
                  tau2=tuple(0.0 if f else nan for f in fits),
                  i2_pct=tuple(f.heterogeneity.i2_pct if f else nan for f in fits))


def _subgroups(plan, effects, used, yi, vi, o) -> Subgroups | None:
    if not plan.subgroup:
        return None
    from .subgroup import group_labels, subgroup_analysis
    groups = group_labels(effects["subgroup"].where(effects["subgroup"].astype(str) != "", None)
                          .to_numpy(dtype=object) if "subgroup" in effects else [None] * len(effects))
    groups = np.where(used, groups, None)
    sa = subgroup_analysis(yi, vi, groups, method=o.method, test=o.test, level=o.level)
    levels = []
    for lev in sa.levels:
        fit = sa.fits.get(lev)
        k = int(sa.k.get(lev, 0))
        note = sa.refusals.get(lev, "")
        if k == 2 and not o.pool_k2 and fit is not None and o.method not in COMMON:
            fit, note = None, K2_VARIANT
        levels.append(SubgroupLevel(str(lev), k, pooled_from_fit(fit, pi=o.pi)
                                    if fit is not None and k >= 1 else None, note))
    between, i2 = None, math.nan
    if sa.q_between is not None:
        qb = sa.q_between
        between = Test("Chi2", float(qb.Q), float(qb.pval), float(qb.df))
        i2 = max(0.0, 100.0 * (qb.Q - qb.df) / qb.Q) if qb.Q > 0 else 0.0
    mixed = None
    if sa.mixed_effects is not None:
        f = sa.mixed_effects.fit
        mixed = _omnibus(f)
    note = "; ".join(v for k, v in sa.refusals.items() if k in ("mixed_effects", "q_between"))
    return Subgroups(plan.subgroup, tuple(levels), between, i2, mixed, note)


def _omnibus(fit) -> Test:
    """The omnibus test of the moderators: QM (chi^2, z tests) or F (df1, df2) under knha."""
    dfs = [float(d) for d in np.atleast_1d(fit.QMdf) if d is not None and np.isfinite(float(d))]
    if fit.df is None:
        return Test("QM", float(fit.QM), float(fit.QMp), dfs[0] if dfs else None)
    return Test("F", float(fit.QM), float(fit.QMp), dfs[0] if dfs else None,
                dfs[1] if len(dfs) > 1 else None)


def _metaregression(effects, used, yi, vi, moderator, o) -> MetaRegression:
    x = number_column(effects, moderator)
    ok = used & np.isfinite(x)
    k = int(ok.sum())
    empty = dict(coefficients=(), tau2=math.nan, r2_pct=math.nan, qm=None, qe=None, line=None,
                 x=tuple(float(v) for v in np.where(ok, x, np.nan)))
    if k < METAREG_MIN_K:
        return MetaRegression(moderator, o.method, o.test, o.level, k, **empty,
                              note=f"not computed: {k} studies with {moderator} "
                                   f"(at least {METAREG_MIN_K} needed)")
    from .metareg import meta_regression
    try:
        reg = meta_regression(yi[ok], vi[ok], x[ok], method=o.method, test=o.test, level=o.level,
                              names=(moderator,))
    except ValueError as exc:
        return MetaRegression(moderator, o.method, o.test, o.level, k, **empty,
                              note=f"not computed: {exc}")
    f = reg.fit
    coefs = tuple(Coefficient(str(n), float(f.beta[i]), float(f.se[i]),
                              Interval(float(f.ci_lb[i]), float(f.ci_ub[i])),
                              Test("z" if f.df is None else "t", float(f.stat[i]), float(f.pval[i]),
                                   None if f.df is None else float(f.df)))
                  for i, n in enumerate(reg.names))
    line = None
    if reg.p == 2:
        grid = np.linspace(float(np.min(x[ok])), float(np.max(x[ok])), LINE_POINTS)
        pr = reg.predict(grid)
        line = RegressionLine(tuple(map(float, grid)), tuple(map(float, pr.pred)),
                              tuple(map(float, pr.ci.low)), tuple(map(float, pr.ci.high)))
    qm = _omnibus(f)
    qe = Test("QE", float(f.QE), float(f.QEp), float(f.QEdf))
    return MetaRegression(moderator, o.method, o.test, o.level, k, coefs, float(f.tau2),
                          float(reg.R2_pct), qm, qe, line, empty["x"],
                          note="; ".join(reg.warnings))


def _cells(effects: pd.DataFrame, used: np.ndarray) -> tuple | None:
    """2x2 cells (a, b, c, d) of the used rows when every one has arm counts, else None."""
    e1, n1, e2, n2 = (number_column(effects, c)[used]
                      for c in ("events_treat", "n_treat", "events_ctrl", "n_ctrl"))
    if not (np.isfinite([e1, n1, e2, n2]).all() and
            (text_column(effects, "data_type")[used] == "binary").all()):
        return None
    return e1, n1 - e1, e2, n2 - e2


def _binary_bias_tests(cells, o) -> tuple[Test | None, Test | None, list[str]]:
    """Peters' and Harbord's tests of a binary analysis (Sterne et al. 2011 recommend them
    over Egger's for odds ratios: log OR and its SE are correlated under the null)."""
    from .bias import egger_test, harbord_test
    from .effects import binary_effects
    a, b, c, d = cells
    notes = []
    try:  # Peters et al. 2006: log OR on 1/N, weights 1/(1/E + 1/F) (E, F: events, non-events)
        lor = binary_effects("OR", a, b, c, d, add=o.add, to=o.to).yi
        with np.errstate(divide="ignore"):  # a table with no events has no Peters weight
            pv = 1 / (a + c) + 1 / (b + d)
        pt = egger_test(lor, pv, model="lm", predictor="ninv", ni=a + b + c + d, level=o.level)
        peters = Test("t", pt.stat, pt.pval, pt.df)
    except ValueError as exc:
        peters = None
        notes.append(f"Peters: {exc}")
    try:
        ht = harbord_test(a, b, c, d, level=o.level)
        harbord = Test("t", ht.stat, ht.pval, ht.df)
    except ValueError as exc:
        harbord = None
        notes.append(f"Harbord: {exc}")
    return peters, harbord, notes


def _small_study(y, v, o, cells=None) -> SmallStudy | None:
    k = int(y.size)
    if k < 3:
        return None
    from .bias import egger_test, rank_test, trim_and_fill
    notes = []

    def attempt(fn):
        try:
            return fn()
        except ValueError as exc:
            notes.append(str(exc))
            return None

    method = o.method if o.method not in COMMON else "EE"
    eg = attempt(lambda: egger_test(y, v, model="rma", method=method, test=o.test, level=o.level))
    egc = attempt(lambda: egger_test(y, v, model="lm", level=o.level))
    rk = attempt(lambda: rank_test(y, v))
    tf = attempt(lambda: trim_and_fill(y, v, method=method, level=o.level))
    egger = None if eg is None else Test("z" if eg.df is None else "t", eg.stat, eg.pval, eg.df)
    classic = None if egc is None else Test("t", egc.stat, egc.pval, egc.df)
    begg = None if rk is None else Test("tau", rk.tau, rk.pval)
    trim = None
    if tf is not None:
        fy = np.asarray(tf.yi_all)[np.asarray(tf.filled, dtype=bool)]
        fv = np.asarray(tf.vi_all)[np.asarray(tf.filled, dtype=bool)]
        trim = TrimFill(int(tf.k0), str(tf.side), pooled_from_fit(tf.fit),
                        tuple(map(float, fy)), tuple(map(float, fv)))
    peters = harbord = None
    if cells is not None:
        peters, harbord, more = _binary_bias_tests(cells, o)
        notes += more
    assessed = k >= SMALL_STUDY_MIN_K
    note = "; ".join(notes) if assessed else f"not assessed (k < {SMALL_STUDY_MIN_K})"
    return SmallStudy(k, assessed, egger, float(eg.limit_estimate) if eg else math.nan, classic,
                      begg, trim, note, peters, harbord)


def _posterior(s) -> Posterior:
    return Posterior(s.median, s.mean, s.sd, s.ci, s.shortest)


def _bayes(options, y: np.ndarray, v: np.ndarray, scale: Scale, good: bool, level: float
           ) -> BayesResult:
    """The Bayesian model of the pooled rows; benefit and the threshold on naltrexone's side.

    Benefit is mu < 0 on the analysis scale (bad events, outcomes oriented so
    that negative favours naltrexone), mu > 0 for an analysis of favourable
    events; a shown-scale threshold becomes the analysis scale (log for
    ratios) and, for favourable events, is mirrored (RR 0.9 -> RR > 1/0.9).
    """
    from .bayes import bayesmeta, parse_mu_prior, parse_tau_prior
    thr = None
    if options.threshold is not None:
        thr = float(np.log(options.threshold)) if scale.log else float(options.threshold)
        thr = -thr if good else thr
    fit = bayesmeta(y, v, tau_prior=parse_tau_prior(options.tau_prior),
                    mu_prior=parse_mu_prior(options.mu_prior), level=level,
                    threshold=0.0 if thr is None else thr)
    below = fit.prob_below_null
    beyond = None if thr is None else (1.0 - fit.prob_below_threshold if good
                                       else fit.prob_below_threshold)
    floats = lambda a: tuple(map(float, a))  # noqa: E731
    return BayesResult(
        k=fit.k, tau_prior=fit.tau_prior, mu_prior=fit.mu_prior, level=fit.level, mu=_posterior(fit.mu),
        tau=_posterior(fit.tau), pred=_posterior(fit.pred),
        prob_benefit=float(1.0 - below if good else below), threshold=thr,
        prob_beyond_threshold=None if beyond is None else float(beyond),
        study_mean=floats(fit.study_mean), study_sd=floats(fit.study_sd),
        mu_grid=floats(fit.mu_grid), mu_density=floats(fit.mu_density),
        tau_grid=floats(fit.tau_grid), tau_density=floats(fit.tau_density),
        prob_below_null=float(below), study_ci=tuple(fit.study_ci),
        tau_prior_density=floats(fit.tau_prior_density), cond_mu_mean=floats(fit.cond_mu_mean),
        cond_mu_sd=floats(fit.cond_mu_sd))


#: Config spellings of the alpha-spending families -> ntxmeta.tsa's.
SPENDING = {"obf": "OBF", "pocock": "Pocock"}


def _tsa(plan: AnalysisPlan, effects: pd.DataFrame, used: np.ndarray, method: str, test: str):
    """The trial sequential analysis of the pooled rows, in chronological order.

    The z-curve uses the analysis's own estimator and test (Hartung-Knapp
    under cochrane2025), so the TSA claims no more than the primary
    analysis; the common effect for a Mantel-Haenszel analysis. Every pooled
    row needs its arm sizes (the information is participants);
    a continuous outcome detects its minimal important difference on the
    benefit side (negative favours naltrexone: ``|mid[0]|``).
    """
    from .tsa import control_risk_of, tsa
    t = plan.tsa
    n = (number_column(effects, "n_treat") + number_column(effects, "n_ctrl"))[used]
    if not np.all(np.isfinite(n) & (n > 0)):
        raise NotApplicable("a pooled row reports no arm sizes")
    binary = plan.measure in ("RR", "OR", "RD")
    if binary and t.control_risk is None:  # the data, not the code, make it inapplicable
        try:
            control_risk_of("median", number_column(effects, "events_ctrl")[used],
                         number_column(effects, "n_ctrl")[used])
        except ValueError as err:
            raise NotApplicable(f"{err} (set control_risk in the tsa block)") from None
    labels = effects["label"].astype(str).to_numpy()[used] if "label" in effects else None
    return tsa(number_column(effects, "yi")[used], number_column(effects, "vi")[used], n,
               year=number_column(effects, "year")[used], labels=labels,
               events_ctrl=number_column(effects, "events_ctrl")[used] if binary else None,
               n_ctrl=number_column(effects, "n_ctrl")[used] if binary else None,
               measure=plan.measure,
               control_risk="median" if t.control_risk is None else t.control_risk,
               rrr=t.rrr, mid=None if binary else abs(plan.mid[0]), alpha=t.alpha,
               beta=t.beta, spending=SPENDING[t.spending], futility=t.futility, method=method,
               test=test)


def run_plan(plan: AnalysisPlan, effects: pd.DataFrame, *, log_ratio_rows: bool | None = None
             ) -> AnalysisResult:
    """Every part of one analysis, each model fitted once.

    Parameters
    ----------
    plan : AnalysisPlan
    effects : DataFrame
        ``data/processed/effects/{analysis}.csv``: ``yi``, ``vi``, ``label``,
        ``year``, ``subgroup``, arm counts, moderators, provenance.
    log_ratio_rows : bool, optional
        A generic analysis whose rows are log ratios (shown as ratios); by
        default, when every row has ``data_type`` "ratio".
    """
    o = plan.options
    yi, vi = number_column(effects, "yi"), number_column(effects, "vi")
    finite = np.isfinite(yi) & np.isfinite(vi)
    extra = text_column(effects, "role").eq("sensitivity").to_numpy()  # sensitivity-only rows
    used = finite & ~extra
    if log_ratio_rows is None:
        log_ratio_rows = len(effects) > 0 and set(text_column(effects, "data_type")) == {"ratio"}
    scale = Scale.of(plan.measure, log_ratio_rows=log_ratio_rows)
    k_used = int(used.sum())
    parts = _Parts()
    cache = FitCache(yi, vi, o.level, o.pool_k2)
    from .data import make_unique  # metafor's slab: duplicate labels get " #1", " #2"
    labels = list(make_unique([str(s) for s in effects["label"]] if "label" in effects
                              else [str(i + 1) for i in range(len(effects))]))
    weights = np.full(len(effects), np.nan)
    main = common = None
    notes = []
    two_only = cache.refuses(k_used, o.method)
    mh = None
    if k_used >= 2 and plan.pooling == "mantel_haenszel":
        mh, weights = mantel_haenszel_main(effects, used, plan.measure, o.level)
        ee = parts.run("common", cache.fit, used, "EE", "z")
        common = None if ee is None else pooled_from_fit(ee)
        main, two_only = mh.fit, False
        if main is None:
            notes.append(f"no Mantel-Haenszel estimate: {mh.note}")
    elif k_used >= 2:
        ee = parts.run("common", cache.fit, used, "EE", "z")
        common = None if ee is None else pooled_from_fit(ee)
        fit = None if two_only else parts.run("main", cache.fit, used, o.method, o.test)
        if fit is not None:
            main = pooled_from_fit(fit, pi=o.pi)
            weights[used] = fit.weights_pct
        elif two_only and ee is not None:
            weights[used] = ee.weights_pct
            notes.append(K2_NOTE)
        if main is not None and main.pi is None and k_used < PI_MIN_K:
            notes.append(f"no prediction interval: fewer than {PI_MIN_K} studies")
    elif k_used == 1:
        weights[used] = 100.0
    y, v = yi[used], vi[used]
    used_labels = [lab for lab, u in zip(labels, used) if u]
    loo = cum = sub = small = None
    regs: tuple = ()
    variants: tuple = ()
    if k_used >= 2:
        years = number_column(effects, "year")[used]
        if mh is not None:   # the main question of fewer trials: MH, as the main model
            loo = parts.run("leave_one_out", _mh_series, "leave_one_out", effects, used,
                            used_labels, years, plan.measure, o.level)
            cum = parts.run("cumulative", _mh_series, "cumulative", effects, used, used_labels,
                            years, plan.measure, o.level)
        else:
            loo = parts.run("leave_one_out", _leave_one_out, y, v, used_labels, o)
            cum = parts.run("cumulative", _cumulative, y, v, used_labels, years, o)
        variants = parts.run("sensitivity", _variants, plan, effects, cache, used, scale, loo,
                             finite & extra, mh) or ()
        sub = parts.run("subgroups", _subgroups, plan, effects, used, yi, vi, o)
        regs = tuple(r for r in (parts.run(f"metareg_{m}", _metaregression, effects, used, yi, vi, m, o)
                                 for m in plan.moderators) if r is not None)
        small = parts.run("small_study", _small_study, y, v, o, _cells(effects, used))
    bayes = None
    if main is not None and plan.bayes is not None:
        bayes = parts.run("bayes", _bayes, plan.bayes, y, v, scale, plan.events == "good", o.level)
    tsa = None
    if plan.tsa is not None and k_used >= 2:
        try:
            tsa = parts.run("tsa", _tsa, plan, effects, used, *(("EE", "z") if mh is not None
                                                                 else (o.method, o.test)))
        except NotApplicable as exc:
            notes.append(f"no trial sequential analysis: {exc}")
    # participants of the pooled rows that report arm sizes (effect-size-only rows add none)
    n = np.nansum(number_column(effects, "n_treat")[used]) + np.nansum(number_column(effects, "n_ctrl")[used])
    ev = number_column(effects, "events_treat")[used].sum() + number_column(effects, "events_ctrl")[used].sum()
    binary = k_used > 0 and (text_column(effects, "data_type")[used] == "binary").all()
    if plan.subgroup and not plan.overall:
        notes.append(f"no overall estimate: the {plan.subgroup} subgroups are different "
                     "questions")
    return AnalysisResult(
        name=plan.name, title=plan.title, measure=plan.measure, scale=scale, method=o.method,
        test=o.test, level=o.level,
        status=status_of(k_used, parts.failed, main is not None, two_only=two_only),
        preset=o.preset, overall=plan.overall, notes=tuple(notes),
        good_events=plan.events == "good",
        k_rows=int(len(effects)), k_used=k_used,
        participants=int(n),
        events=int(ev) if binary and np.isfinite(ev) else None,
        main=main, common=common, weights_pct=tuple(map(float, weights)),
        used=tuple(bool(u) for u in used), variants=variants, leave_one_out=loo,
        cumulative=cum, subgroups=sub, metaregression=regs, small_study=small,
        bayes=bayes, tsa=tsa, failed=tuple(parts.failed))
