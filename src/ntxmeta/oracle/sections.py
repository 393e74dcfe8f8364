"""Result sections of one analysis under metafor's key paths, composed from the engine.

The names come from one table, ``ntxmeta.oracle.keys`` (our field ->
metafor's key: ``estimate``, ``ci.lb``, ``I2``, ``fit.stats.ML.ll``,
``predict_riley_t_km2.pi.lb``, ...). STYLE.md habit 6: our names inside the
package, metafor's names only in the oracle adapter.
"""
from __future__ import annotations

import numpy as np

from .._common import guarded
from ..data import AnalysisData
from ..rma import METHODS, RMAFit, rma_shared
from . import keys

#: Methods reported in the ``rma`` and ``rma_knha`` sections, in metafor's order.
RMA_SECTION_METHODS = ("DL", "REML", "PM", "HE", "SJ", "ML", "EB", "HS", "HSk", "PMM",
                       "GENQ", "GENQM")
assert set(RMA_SECTION_METHODS) <= set(METHODS)


def per_row(values: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Spread values over the used rows back to one entry per input row (NaN elsewhere)."""
    if used.all():   # nothing to spread: a copy (k = 1e6: 2 ms against 10 ms for full + mask)
        return np.array(values, dtype=float)
    out = np.full(used.shape, np.nan)
    out[used] = values
    return out


def _field(obj, name: str):
    """``obj.name`` (dotted: ``ci.low``); the first entry of a per-coefficient array."""
    for part in name.split("."):
        obj = getattr(obj, part)
    return float(obj[0]) if isinstance(obj, np.ndarray) else obj


def prediction_dict(pred, with_df: bool) -> dict:
    d = {theirs: _field(pred, ours) for ours, theirs in keys.PREDICTION}
    if with_df and pred.pi_df is not None:
        d[keys.PREDICTION_DF[1]] = pred.pi_df
    return d


def fit_dict(fit: RMAFit, *, used: np.ndarray | None = None, transf: str = "none",
             with_pred: bool = True, with_weights: bool = True) -> dict:
    """metafor's ``fit_sum``: the summary of an intercept-only fit (``keys`` tables)."""
    d: dict = {theirs: _field(fit, ours) for ours, theirs in keys.FIT_HEAD}
    d[keys.STAT_KEY[fit.test]] = float(fit.stat[0])
    if fit.test != "z":
        d[keys.DF_KEY[1]] = fit.df
    d.update({theirs: _field(fit, ours) for ours, theirs in keys.FIT_TAIL})
    d["fit.stats"] = {theirs: {col: getattr(getattr(fit, ours), row)
                               for row, col in keys.FIT_STATS_ROWS}
                      for ours, theirs in keys.FIT_STATS}
    if with_weights:
        d[keys.WEIGHTS_KEY[1]] = fit.weights_pct if used is None else per_row(fit.weights_pct, used)
    if with_pred and fit.p == 1:
        for pi_type, key in keys.PREDICTIONS:
            d[key] = prediction_dict(fit.predict(pi_type),
                                     with_df=pi_type != "default" or fit.test != "z")
        if transf == "exp":
            pr = fit.predict("default")
            d["exp"] = {theirs: np.exp(_field(pr, ours)) for ours, theirs in keys.EXP}
    return d


def fit_used(data: AnalysisData, method: str, test: str = "z") -> RMAFit:
    """``rma`` on the rows of an analysis that have an effect size, estimated once per
    analysis and method (``ntxmeta.rma.rma_shared``: the knha fit and confint's
    fits reuse the z fit's tau^2)."""
    u = data.used
    yi, vi = data.yi[u], data.vi[u]
    with np.errstate(divide="ignore"):   # vi = 0: infinite weights, which rma refuses (metafor too)
        weights = 1.0 / vi if method in ("GENQ", "GENQM") else None
    return rma_shared(yi, vi, method=method, test=test, level=data.level, weights=weights)


def rma_section(data: AnalysisData, test: str, methods=RMA_SECTION_METHODS) -> dict:
    """The ``rma`` (test="z") or ``rma_knha`` section: one fit per estimator."""
    return {m: guarded(lambda m=m: fit_dict(fit_used(data, m, test), used=data.used,
                                            transf=data.transf))
            for m in methods}


def common_ee_section(data: AnalysisData) -> dict:
    """``common.EE``: the inverse-variance common-effect model."""
    return guarded(lambda: fit_dict(fit_used(data, "EE"), used=data.used, transf=data.transf))
