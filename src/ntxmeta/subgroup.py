"""Subgroup analyses: per-level fits, the mixed-effects test for subgroup
differences and the "Q between" test; the ``subgroup`` result section.

Three views of one question, each matching metafor 3.8-1 as the oracle
calls it:

* **per level**: ``rma(yi, vi, subset = group == L)`` for every level L;
* **mixed-effects model** (one tau^2 shared by all subgroups):
  ``rma(yi, vi, mods = ~ factor(group))``, design X = [1, 1{g = L_2}, ...,
  1{g = L_m}] with the first level (in byte order) as reference; the test
  for subgroup differences is its omnibus QM of the m - 1 group
  coefficients (chi^2(m - 1), or F(m - 1, k - m) under knha). For the
  common-effect model (EE) QM equals the classical fixed-effect
  Q-between = Q_total - sum_L Q_L (Borenstein et al. 2009 [1], ch. 19);
* **Q between from the subgroup estimates** (separate tau^2 per subgroup;
  RevMan's test for subgroup differences, Deeks et al. [2]):
  a common-effect model on the level estimates b_L with variances se_L^2::

      Q = sum_L (b_L - b_bar)^2 / se_L^2,  b_bar = sum(b_L / se_L^2) / sum(1 / se_L^2)

  with L - 1 df (``rma(yi = b, sei = se, method = "FE")``).

Levels are the distinct labels of the rows with a label and a finite yi
and vi, sorted by code point (= UTF-8 byte order = R's C-locale
``sort(method = "radix")``). Edge cases, as metafor: one level -> the
mixed-effects model fails ("contrasts can be applied only to factors with
2 or more levels") and so does Q between ("fewer than two subgroups with
an estimate"); a level with one study is fitted (tau^2 = 0, knha falls back
to z) and enters Q between; a shared tau^2 needs k >= m + 1 studies (EE:
k >= m).

Every ML/REML/EB fit (per level, the ones whose estimates feed Q between,
the mixed-effects model and the intercept-only fit of its pseudo-R^2)
takes ``control`` (``ntxmeta.rma.Control``): ``FULL`` (the functions'
default) converges fully, ``METAFOR_DEFAULT`` stops where metafor's default
control stops. The section takes it from the spec (``AnalysisData.control``:
metafor's default, since oracle.R made these references with the default
control and no tight twin, unless the spec says "full" as the pipeline's do).

Why written here: the fits are ``ntxmeta.rma`` (per level) and
``ntxmeta.metareg.fit_design`` (the factor model); statsmodels and pymare
offer no subgroup test in metafor's form. The work is O(k m^2) for m levels.

References
----------
1. Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction
   to Meta-Analysis. Wiley. Chapters 19-20 (subgroup analyses).
2. Deeks JJ, Higgins JPT, Altman DG (eds). Analysing data and undertaking
   meta-analyses. Cochrane Handbook for Systematic Reviews of
   Interventions, chapter 10 (test for subgroup differences).
3. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import oracle
from ._common import MetaError, guarded
from .data import AnalysisData
from .metareg import INTERCEPT, ModeratorFit, fit_design, modfit_dict
from .rma import FULL, Control, RMAFit, rma_shared
from .oracle.sections import fit_dict

#: Coefficient name prefix of a non-reference level (oracle.R: sub("^fgrp", "group=")).
GROUP_PREFIX = "group="
MSG_ONE_LEVEL = "contrasts can be applied only to factors with 2 or more levels"
MSG_FEW_ESTIMATES = "fewer than two subgroups with an estimate"

#: Estimators of the per-level fits and of Q between, in oracle.R's order.
SUBGROUP_METHODS = ("REML", "DL", "EE")
#: The mixed-effects fits of the section: (key, method, test).
MIXED_FITS = (("REML", "REML", "z"), ("DL", "DL", "z"), ("EE", "EE", "z"),
              ("REML_knha", "REML", "knha"), ("DL_knha", "DL", "knha"))


@dataclass(frozen=True)
class QBetween:
    """Test for subgroup differences from the subgroup estimates (common-effect Q)."""

    Q: float
    df: int
    pval: float
    levels: tuple


@dataclass(frozen=True)
class SubgroupAnalysis:
    """Subgroup analysis of one model (``method``, ``test``).

    Attributes
    ----------
    levels : tuple of str
        Levels in byte order; the first is the reference of ``mixed_effects``.
    k : dict of str -> int
        Studies per level.
    fits : dict of str -> RMAFit
        The model fitted within each level.
    mixed_effects : ModeratorFit or None
        ``rma(yi, vi, mods = ~ factor(group))``; None when metafor refuses it
        (the reason is in ``refusals["mixed_effects"]``).
    q_between : QBetween or None
        From the levels' z-test estimates and SEs of ``method``; None when
        fewer than two levels have one (``refusals["q_between"]``).
    used : ndarray of bool, shape (n,)
        Rows with a label and finite yi and vi.
    refusals : dict of str -> str
        metafor's message for each part it refuses.
    """

    method: str
    test: str
    levels: tuple
    k: dict
    fits: dict
    mixed_effects: ModeratorFit | None
    q_between: QBetween | None
    used: np.ndarray = field(repr=False)
    refusals: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- building blocks

def group_labels(groups) -> np.ndarray:
    """Labels as an object array of str, None where missing (None or float NaN)."""
    g = np.asarray(groups, dtype=object)
    if g.ndim != 1:
        raise ValueError(f"groups must be one-dimensional, got shape {g.shape}")
    missing = np.array([x is None or (isinstance(x, float) and math.isnan(x)) for x in g],
                       dtype=bool)
    out = np.empty(g.shape, dtype=object)
    out[~missing] = [str(x) for x in g[~missing]]
    out[missing] = None
    return out


def subgroup_rows(yi, vi, groups) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(labels, used mask, sorted levels): rows with a label and finite yi, vi."""
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    g = group_labels(groups)
    if not (y.shape == v.shape == g.shape):
        raise ValueError(f"yi, vi and groups differ in length ({y.size}, {v.size}, {g.size})")
    used = np.isfinite(y) & np.isfinite(v) & np.array([x is not None for x in g], dtype=bool)
    # str order is code-point order, which is UTF-8 byte order: R's C-locale sort
    return g, used, tuple(sorted(set(g[used])))


def group_design(labels: np.ndarray, levels: tuple) -> tuple[np.ndarray, list]:
    """Treatment-coded design of ``factor(group)``: intercept + one dummy per
    non-reference level, and metafor's coefficient names."""
    if len(levels) < 2:
        raise MetaError(MSG_ONE_LEVEL)
    dummies = np.column_stack([labels == lev for lev in levels[1:]]).astype(float)
    X = np.column_stack([np.ones(labels.size), dummies])
    return X, [INTERCEPT] + [GROUP_PREFIX + lev for lev in levels[1:]]


def mixed_effects_fit(yi, vi, labels, levels, *, method: str, test: str,
                      level: float, control: Control = FULL) -> ModeratorFit:
    """``rma(yi, vi, mods = ~ factor(group))`` on rows that all have a label
    (``control`` as ``ntxmeta.rma.rma``, also for the pseudo-R^2)."""
    X, names = group_design(np.asarray(labels, dtype=object), levels)
    return fit_design(yi, vi, X, names, method=method, test=test, level=level, control=control)


def q_between(estimates, ses, levels) -> QBetween:
    """Common-effect Q of the subgroup estimates; matches ``rma(yi=b, sei=se, method="FE")``.

    Raises ``MetaError`` with fewer than two estimates.
    """
    b = np.asarray(estimates, dtype=float)
    s = np.asarray(ses, dtype=float)
    if b.size < 2:
        raise MetaError(MSG_FEW_ESTIMATES)
    fit = rma_shared(b, s**2, method="EE")
    return QBetween(Q=fit.QE, df=fit.QEdf, pval=fit.QEp, levels=tuple(levels))


def subgroup_analysis(yi, vi, groups, *, method: str = "REML", test: str = "z",
                      level: float = 95.0, control: Control = FULL) -> SubgroupAnalysis:
    """Per-level fits, the mixed-effects subgroup test and Q between; matches
    metafor 3.8-1 ``rma(..., subset = group == L)``, ``rma(yi, vi, mods = ~
    factor(group))`` and ``rma(yi = b, sei = se, method = "FE")``.

    Parameters
    ----------
    yi, vi : array_like, shape (n,)
        Effect sizes and sampling variances, one per row.
    groups : array_like, shape (n,)
        Subgroup labels (converted with ``str``; None/NaN = missing, row left out).
    method, test, level
        As ``ntxmeta.rma.rma``; used for the per-level fits and the
        mixed-effects model. Q between always uses the z-test SEs of the
        per-level fits of ``method`` (as oracle.R).
    control : Control
        How every ML/REML/EB fit stops (per level, the ones whose estimates
        feed Q between, the mixed-effects model and its pseudo-R^2): ``FULL``
        converges fully, ``METAFOR_DEFAULT`` stops where metafor's default
        control stops (``ntxmeta.rma.metafor_fisher_tau2``).

    Returns
    -------
    SubgroupAnalysis

    Raises
    ------
    ValueError
        Mismatched lengths, no usable rows, or a per-level fit that ``rma``
        refuses. The refusals of metafor for the mixed-effects model and Q
        between (one level, too few studies) are recorded in ``refusals``.
    """
    g, used, levels = subgroup_rows(yi, vi, groups)
    if not levels:
        raise ValueError("no rows with a subgroup label and a finite effect size")
    y = np.asarray(yi, dtype=float)[used]
    v = np.asarray(vi, dtype=float)[used]
    lab = g[used]
    fits, ks, est, se = {}, {}, [], []
    for lev in levels:
        rows = lab == lev
        ks[lev] = int(rows.sum())
        fits[lev] = rma_shared(y[rows], v[rows], method=method, test=test, level=level,
                               control=control)
        zfit = fits[lev].with_test("z")   # Q between uses the z-test SEs
        est.append(zfit.estimate)
        se.append(float(zfit.se[0]))
    refusals: dict = {}
    mixed = qb = None
    try:
        mixed = mixed_effects_fit(y, v, lab, levels, method=method, test=test, level=level,
                                  control=control)
    except MetaError as exc:
        refusals["mixed_effects"] = str(exc)
    try:
        qb = q_between(est, se, levels)
    except MetaError as exc:
        refusals["q_between"] = str(exc)
    return SubgroupAnalysis(method=method, test=test, levels=levels, k=ks, fits=fits,
                            mixed_effects=mixed, q_between=qb, used=used, refusals=refusals)


# --------------------------------------------------------------------------- section

def _q_between_dict(q: QBetween) -> dict:
    return {"Q": q.Q, "df": q.df, "pval": q.pval, "levels": list(q.levels)}


def subgroup_section(data: AnalysisData, sub: set[str] | None) -> dict | None:
    """The ``subgroup`` section as oracle.R writes it (None without a subgroup column).

    Every fit uses the spec's control (``AnalysisData.control``):
    metafor's default stopping rule, as the oracle's references (which
    have no tight twin here), unless the spec says ``"control": "full"``.
    """
    if data.group is None:
        return None
    control = data.control
    g, used, levels = subgroup_rows(data.yi, data.vi, data.group)
    y, v, lab = data.yi[used], data.vi[used], g[used]
    lvl = data.level
    out: dict = {"column": data.subgroup_name, "levels": list(levels)}
    want = (lambda part: sub is None or part in sub)  # noqa: E731 - local shorthand
    estimates: dict = {m: {} for m in SUBGROUP_METHODS}
    if want("by_level") or want("Q_between"):
        by_level = {}
        for lev in levels:
            rows = lab == lev
            one: dict = {"k": int(rows.sum())}
            for m in SUBGROUP_METHODS:
                fit = _guarded_fit(y[rows], v[rows], m, "z", lvl, control)
                one[m] = (fit if isinstance(fit, dict)
                          else fit_dict(fit, transf=data.transf))
                if not isinstance(fit, dict):
                    estimates[m][lev] = (fit.estimate, float(fit.se[0]))
                if m != "EE":
                    one[m + "_knha"] = guarded(lambda r=rows, m=m: fit_dict(
                        rma_shared(y[r], v[r], method=m, test="knha", level=lvl, control=control),
                        transf=data.transf))
            by_level[lev] = one
        if want("by_level"):
            out["by_level"] = by_level
    if want("mixed_effects"):
        out["mixed_effects"] = {
            key: guarded(lambda m=m, t=t: modfit_dict(
                mixed_effects_fit(y, v, lab, levels, method=m, test=t, level=lvl,
                                  control=control)))
            for key, m, t in MIXED_FITS}
    if want("Q_between"):
        out["Q_between"] = {
            f"from_{m}_subgroup_estimates": guarded(lambda e=estimates[m]: _q_between_dict(
                q_between([b for b, _ in e.values()], [s for _, s in e.values()], list(e))))
            for m in SUBGROUP_METHODS}
    return out


def _guarded_fit(y, v, method, test, level, control) -> RMAFit | dict:
    """``rma`` or metafor's ``{"error": msg}`` when it refuses."""
    try:
        return rma_shared(y, v, method=method, test=test, level=level, control=control)
    except ValueError as exc:
        return {"error": str(exc)}


oracle.register("subgroup", subgroup_section)
