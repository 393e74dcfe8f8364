"""Effect sizes per study: the equivalent of metafor's ``escalc()``.

Why written here: neither statsmodels (``effectsize_2proportions`` and
``effectsize_smd`` exist, but with other continuity-correction and bias
conventions) nor pymare computes metafor's effect sizes with its
``add``/``to``/``drop00`` rules and the exact gamma-function Hedges
correction, and every downstream number depends on these inputs being
metafor's to the last digit. All functions are vectorised over studies.

Measures (matches metafor 3.8-1 ``escalc(measure=...)``)
--------------------------------------------------------
RR   log risk ratio      yi = log(a/n1) - log(c/n2),  vi = 1/a - 1/n1 + 1/c - 1/n2
OR   log odds ratio      yi = log(a d / (b c)),       vi = 1/a + 1/b + 1/c + 1/d
RD   risk difference     yi = p1 - p2,                vi = p1(1-p1)/n1 + p2(1-p2)/n2  (vtype "LS")
SMD  Hedges' g           yi = c(m) (m1-m2)/s_pooled,  vi = 1/n1 + 1/n2 + yi^2 / (2 (n1+n2))  (vtype "LS")
     with m = n1+n2-2 and the exact correction c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))
MD   mean difference     yi = m1 - m2,                vi = sd1^2/n1 + sd2^2/n2
ROM  log ratio of means  yi = log(m1/m2),             vi = sd1^2/(n1 m1^2) + sd2^2/(n2 m2^2)

Continuity correction (binary measures): ``to="only0"`` (default) adds
``add`` (default 1/2) to all four cells of every table with a zero cell;
``"all"`` to every table; ``"if0all"`` to every table if any has a zero
cell; ``"none"`` never. ``drop00=True`` sets tables with no events (or only
events) in both arms to NaN. These are metafor's defaults and rules.

References
----------
1. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3). metafor 3.8-1 ``escalc`` source.
2. Hedges LV (1981). Distribution theory for Glass's estimator of effect
   size and related estimators. J Educ Stat 6:107-128.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._common import z_crit
from ._special import gammaln

BINARY_MEASURES = ("RR", "OR", "RD")
CONTINUOUS_MEASURES = ("SMD", "MD", "ROM")
GENERIC_MEASURE = "GEN"
MEASURES = BINARY_MEASURES + CONTINUOUS_MEASURES + (GENERIC_MEASURE,)
CORRECTION_TARGETS = ("only0", "all", "if0all", "none")


@dataclass(frozen=True)
class EffectSizes:
    """Per-study effect sizes (one entry per input row; NaN where undefined).

    Attributes
    ----------
    measure : str
    yi, vi : ndarray, shape (k,)
        Effect size and its sampling variance, on the analysis scale
        (log scale for RR, OR, ROM).
    zero_cell, double_zero : ndarray of bool or None
        Binary measures only: a table with a zero cell; a table with no
        events (or only events) in both arms.
    """

    measure: str
    yi: np.ndarray
    vi: np.ndarray
    zero_cell: np.ndarray | None = None
    double_zero: np.ndarray | None = None
    #: where the flag is NA (R's three-valued logic on missing counts)
    zero_cell_na: np.ndarray | None = None
    double_zero_na: np.ndarray | None = None

    @property
    def sei(self) -> np.ndarray:
        return np.sqrt(self.vi)


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def cells_from_arms(ai, n1i, ci, n2i) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four cells (ai, bi, ci, di) of 2x2 tables given events and arm sizes."""
    ai, n1i, ci, n2i = _f(ai), _f(n1i), _f(ci), _f(n2i)
    return ai, n1i - ai, ci, n2i - ci


def zero_cell_flags(ai, bi, ci, di) -> tuple[np.ndarray, np.ndarray]:
    """(zero_cell, double_zero) flags of 2x2 tables, as metafor defines them."""
    ai, bi, ci, di = _f(ai), _f(bi), _f(ci), _f(di)
    zero = (ai == 0) | (bi == 0) | (ci == 0) | (di == 0)
    double = ((ai == 0) & (ci == 0)) | ((bi == 0) & (di == 0))
    return zero, double


def zero_cell_na(ai, bi, ci, di) -> tuple[np.ndarray, np.ndarray]:
    """Where metafor's zero-cell flags are NA: R's ``|`` and ``&`` on missing counts.

    ``zero_cell`` = ai == 0 | bi == 0 | ci == 0 | di == 0 is NA when no known
    cell is 0 and one is missing (NA | TRUE is TRUE); ``double_zero`` =
    (ai == 0 & ci == 0) | (bi == 0 & di == 0) is NA when neither pair is
    known to be both 0 and a pair is not known to be non-zero.
    """
    cells = [_f(c) for c in (ai, bi, ci, di)]
    zero = [c == 0 for c in cells]
    na = [np.isnan(c) for c in cells]
    zero_na = ~(zero[0] | zero[1] | zero[2] | zero[3]) & (na[0] | na[1] | na[2] | na[3])

    def pair(i, j):   # (x == 0 & y == 0): TRUE, FALSE or NA
        true = zero[i] & zero[j]
        false = (~zero[i] & ~na[i]) | (~zero[j] & ~na[j])
        return true, ~true & ~false

    t1, n1 = pair(0, 2)
    t2, n2 = pair(1, 3)
    double_na = ~(t1 | t2) & (n1 | n2)
    return zero_na, double_na


def corrected_tables(zero, double, *, to: str = "only0", drop00: bool = False) -> np.ndarray:
    """Which 2x2 tables get the continuity correction (metafor's ``to``), from their
    :func:`zero_cell_flags`: every table ("all"), those with a zero cell ("only0"),
    every table if any has one ("if0all"), none ("none"); a double-zero table
    dropped by ``drop00`` is never corrected."""
    zero, double = np.asarray(zero, dtype=bool), np.asarray(double, dtype=bool)
    kept = zero & ~(drop00 & double)
    return {"all": np.ones(zero.shape, dtype=bool), "only0": kept,
            "if0all": np.full(zero.shape, bool(kept.any())),
            "none": np.zeros(zero.shape, dtype=bool)}[to]


def binary_effects(measure: str, ai, bi, ci, di, *, add: float = 0.5,
                   to: str = "only0", drop00: bool = False) -> EffectSizes:
    """Log RR, log OR or RD from 2x2 cells, with metafor's continuity rules.

    Parameters
    ----------
    measure : {"RR", "OR", "RD"}
    ai, bi, ci, di : array_like, shape (k,)
        Events and non-events in the naltrexone (1) and control (2) arms.
    add : float
        Continuity correction, added according to ``to``.
    to : {"only0", "all", "if0all", "none"}
    drop00 : bool
        Set tables with no events (or only events) in both arms to NaN.

    Returns
    -------
    EffectSizes
        ``yi``/``vi`` are NaN (not an error) where a measure is undefined,
        e.g. log RR of a double-zero table with ``to="none"``; metafor then
        omits the study from the model, and so do we.
    """
    measure = measure.upper()
    if measure not in BINARY_MEASURES:
        raise ValueError(f"binary measure must be one of {BINARY_MEASURES}, got {measure!r}")
    if to not in CORRECTION_TARGETS:
        raise ValueError(f"to must be one of {CORRECTION_TARGETS}, got {to!r}")
    ai, bi, ci, di = (_f(x).copy() for x in (ai, bi, ci, di))
    for name, x in zip(("ai", "bi", "ci", "di"), (ai, bi, ci, di)):
        if np.any(x < 0):
            raise ValueError(f"{name} has negative cell counts (events > arm size?)")
    zero, double = zero_cell_flags(ai, bi, ci, di)
    zero_na, double_na = zero_cell_na(ai, bi, ci, di)
    if drop00:
        for x in (ai, bi, ci, di):
            x[double] = np.nan
    corr = corrected_tables(zero, double, to=to, drop00=drop00)
    ai, bi, ci, di = (np.where(corr, x + add, x) for x in (ai, bi, ci, di))
    n1, n2 = ai + bi, ci + di
    p1, p2 = ai / n1, ci / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "RR":
            yi = np.log(p1) - np.log(p2)
            vi = 1 / ai - 1 / n1 + 1 / ci - 1 / n2
        elif measure == "OR":
            yi = np.log(p1 / (1 - p1)) - np.log(p2 / (1 - p2))
            vi = 1 / ai + 1 / bi + 1 / ci + 1 / di
        else:
            yi = p1 - p2
            vi = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    bad = ~np.isfinite(yi) | ~np.isfinite(vi)
    yi, vi = np.where(bad, np.nan, yi), np.where(bad, np.nan, vi)
    return EffectSizes(measure, yi, vi, zero, double, zero_na, double_na)


def hedges_correction(m) -> np.ndarray:
    """Exact small-sample correction c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)).

    NaN for m <= 1 (metafor's ``.cmicalc``).
    """
    m = _f(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.exp(gammaln(m / 2) - 0.5 * np.log(m / 2) - gammaln((m - 1) / 2))
    return np.where(m <= 1, np.nan, c)


def continuous_effects(measure: str, m1i, sd1i, n1i, m2i, sd2i, n2i, *,
                       vtype: str = "LS") -> EffectSizes:
    """SMD (Hedges' g), MD or log ROM from arm means, SDs and sizes (vtype "LS").

    Negative values mean a lower mean in arm 1 (naltrexone); the pipeline
    orients outcomes before calling this so that negative favours naltrexone.
    """
    measure = measure.upper()
    if measure not in CONTINUOUS_MEASURES:
        raise ValueError(f"continuous measure must be one of {CONTINUOUS_MEASURES}, got {measure!r}")
    if vtype != "LS":
        raise ValueError(f"only vtype='LS' is implemented, got {vtype!r}")
    m1, s1, n1, m2, s2, n2 = (_f(x) for x in (m1i, sd1i, n1i, m2i, sd2i, n2i))
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "MD":
            yi = m1 - m2
            vi = s1**2 / n1 + s2**2 / n2
        elif measure == "ROM":
            yi = np.log(m1 / m2)
            vi = s1**2 / (n1 * m1**2) + s2**2 / (n2 * m2**2)
        else:
            mi = n1 + n2 - 2
            sdp = np.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / mi)
            yi = hedges_correction(mi) * (m1 - m2) / sdp
            vi = 1 / n1 + 1 / n2 + yi**2 / (2 * (n1 + n2))
    bad = ~np.isfinite(yi) | ~np.isfinite(vi)
    return EffectSizes(measure, np.where(bad, np.nan, yi), np.where(bad, np.nan, vi))


def generic_effects(yi, vi=None, sei=None) -> EffectSizes:
    """Effect sizes given directly (``yi`` with ``vi`` or ``sei``)."""
    if (vi is None) == (sei is None):
        raise ValueError("give exactly one of vi and sei with generic effect sizes")
    yi = _f(yi)
    vi = _f(vi) if vi is not None else _f(sei) ** 2
    return EffectSizes(GENERIC_MEASURE, yi, vi)


def log_or_from_ci(or_, lower, upper, *, level: float = 95.0) -> tuple[np.ndarray, np.ndarray]:
    """Log odds ratio and its variance from a reported ratio and its CI.

    se = (log(upper) - log(lower)) / (2 z), z the level's normal quantile
    (Cochrane Handbook 6.3.2). Works for any ratio measure.
    """
    or_, lo, hi = _f(or_), _f(lower), _f(upper)
    se = (np.log(hi) - np.log(lo)) / (2 * z_crit(level))
    return np.log(or_), se**2


def _r_logical(flags: np.ndarray, na: np.ndarray | None):
    """Flags as metafor reports them: NA (NaN here) where R's logic gives NA."""
    if na is None or not na.any():
        return flags
    return [math.nan if n else bool(f) for f, n in zip(flags.tolist(), na.tolist())]


def escalc_section(es: EffectSizes, slab, *, level: float, options: dict) -> dict:
    """The ``escalc`` block of a result, under metafor's key names."""
    crit = z_crit(level)
    sei = es.sei
    out: dict = {
        "measure": es.measure,
        "yi": es.yi, "vi": es.vi, "sei": sei,
        "ci.lb": es.yi - crit * sei, "ci.ub": es.yi + crit * sei,
        "slab": list(slab),
    }
    if es.zero_cell is not None:
        out.update(add=options.get("add", 0.5), to=options.get("to", "only0"),
                   drop00=options.get("drop00", False),
                   zero_cell=_r_logical(es.zero_cell, es.zero_cell_na),
                   double_zero=_r_logical(es.double_zero, es.double_zero_na))
    return out
