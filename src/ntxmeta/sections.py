"""Result sections of one analysis under metafor's key paths.

This module is the one visible translation table from the engine's result
objects (``RMAFit``, ``Prediction``, ...) to the key names of the metafor
oracle (``estimate``, ``ci.lb``, ``tau2``, ``I2``, ``fit.stats.ML.ll``,
``predict_riley_t_km2.pi.lb``, ...). STYLE.md habit 6: our names inside
the package, metafor's names only here.
"""
from __future__ import annotations

import numpy as np

from ._common import guarded
from .data import AnalysisData
from .rma import METHODS, RMAFit, rma_shared

#: Methods reported in the ``rma`` and ``rma_knha`` sections, in metafor's order.
RMA_SECTION_METHODS = ("DL", "REML", "PM", "HE", "SJ", "ML", "EB", "HS", "HSk", "PMM",
                       "GENQ", "GENQM")
assert set(RMA_SECTION_METHODS) <= set(METHODS)


def per_row(values: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Spread values over the used rows back to one entry per input row (NaN elsewhere)."""
    out = np.full(used.shape, np.nan)
    out[used] = values
    return out


def prediction_dict(pred, with_df: bool) -> dict:
    d = {"pred": pred.pred, "se": pred.se, "ci.lb": pred.ci.low, "ci.ub": pred.ci.high,
         "pi.lb": pred.pi.low, "pi.ub": pred.pi.high}
    if with_df and pred.pi_df is not None:
        d["pi.df"] = pred.pi_df
    return d


def fit_dict(fit: RMAFit, *, used: np.ndarray | None = None, transf: str = "none",
             with_pred: bool = True, with_weights: bool = True) -> dict:
    """metafor's ``fit_sum``: the summary of an intercept-only fit."""
    d: dict = {"method": fit.method, "test": fit.test, "k": fit.k, "p": fit.p,
               "level": fit.level, "estimate": fit.estimate, "se": float(fit.se[0])}
    if fit.test == "z":
        d["zval"] = float(fit.stat[0])
    else:
        d["tval"] = float(fit.stat[0])
        d["df"] = fit.df
    d.update({"pval": float(fit.pval[0]), "ci.lb": float(fit.ci_lb[0]), "ci.ub": float(fit.ci_ub[0]),
              "tau2": fit.tau2, "se.tau2": fit.se_tau2, "tau": fit.tau, "I2": fit.I2_pct,
              "H2": fit.H2, "QE": fit.QE, "QEdf": fit.QEdf, "QEp": fit.QEp, "s2w": fit.s2w,
              "fit.stats": {"ML": fit.fit_ml.as_dict(), "REML": fit.fit_reml.as_dict()}})
    if with_weights:
        d["weights_pct"] = fit.weights_pct if used is None else per_row(fit.weights_pct, used)
    if with_pred and fit.p == 1:
        d["predict"] = prediction_dict(fit.predict("default"), with_df=fit.test != "z")
        d["predict_riley_t_km2"] = prediction_dict(fit.predict("riley"), with_df=True)
        d["predict_t_km1"] = prediction_dict(fit.predict("t"), with_df=True)
        if transf == "exp":
            pr = fit.predict("default")
            d["exp"] = {"estimate": np.exp(pr.pred), "ci.lb": np.exp(pr.ci.low),
                        "ci.ub": np.exp(pr.ci.high), "pi.lb": np.exp(pr.pi.low),
                        "pi.ub": np.exp(pr.pi.high)}
    return d


def fit_used(data: AnalysisData, method: str, test: str = "z") -> RMAFit:
    """``rma`` on the rows of an analysis that have an effect size, estimated once per
    analysis and method (``ntxmeta.rma.rma_shared``: the knha fit and confint's
    fits reuse the z fit's tau^2)."""
    u = data.used
    yi, vi = data.yi[u], data.vi[u]
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
