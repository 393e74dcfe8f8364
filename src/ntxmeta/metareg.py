"""Meta-regression (mixed-effects models): the equivalent of metafor's
``rma(yi, vi, mods = ~ moderator)``, and the ``metareg`` result section.

Model (Viechtbauer 2010 [1]; Thompson & Higgins 2002 [2])
---------------------------------------------------------
y_i = x_i' beta + u_i + e_i with u_i ~ N(0, tau^2) (one tau^2 for all
studies, the residual heterogeneity) and e_i ~ N(0, v_i); x_i holds an
intercept and the moderator(s). Everything about the fit itself (tau^2 by
any estimator, beta = (X'WX)^-1 X'Wy, knha, QE, I^2, H^2) comes from
``ntxmeta.rma.rma(..., X=X)``; this module adds what ``rma.uni`` does
around it for a model with moderators:

* rows with a missing yi, vi or moderator are left out (metafor's
  ``na.omit``, with its warning);
* *redundant predictors* are dropped as R's ``lm(yi ~ X - 1)`` finds them
  (pivoted QR with tolerance 1e-7), with metafor's warning "Redundant
  predictors dropped from the model." A moderator with no variance is
  therefore **not** an error in metafor: it is dropped and the model becomes
  intercept-only (its QM then tests the intercept and R^2 is not computed);
* metafor's refusals: more coefficients than studies (``p > k`` for EE,
  ``p + 1 > k`` when tau^2 is estimated) and a design whose X'X has an
  eigenvalue <= 1e-7 ("Model matrix not of full rank");
* ``control`` (``ntxmeta.rma.Control``): ``FULL`` (the default of the
  functions) converges tau^2 fully; ``METAFOR_DEFAULT`` stops ML/REML/EB
  where metafor's default control stops (``ntxmeta.rma.metafor_fisher_tau2``).
  The ``metareg`` section takes it from the spec (``AnalysisData.control``:
  metafor's default, to reproduce metafor's output, unless the spec says
  ``"control": "full"`` as the pipeline's do), except for ``REML`` and
  ``REML_tight``, which always converge fully: oracle.R's target for
  ``REML`` is its tight fit;
* the omnibus test of the moderators QM (chi^2 with m df, or under knha
  F = QM/m with (m, k - p) df), from ``rma``;
* the pseudo-R^2 (Raudenbush 2009 [3]; metafor's default ``r2def = "1"``),
  in percent::

      R2 = max(0, 100 (tau2_RE - tau2_ME) / tau2_RE)

  with tau2_RE from the intercept-only model of the same estimator on the
  same studies (fitted with the same ``control``); R2 = 0 when tau2_RE is
  identically 0, NA when the intercept-only fit fails. With
  ``control=METAFOR_DEFAULT`` both tau^2 are metafor's default-control iterates
  and the rule applies as written. With ``control=FULL`` one artefact of
  metafor is reproduced: its ML, REML and EB iterations approach a maximum
  on the boundary from above without reaching it when they start at HE > 0,
  so metafor's tau2_RE is then a tiny eps > 0, not 0, and R2 = 100 when the
  model with moderators has tau2_ME exactly 0 (its HE start is 0). When
  both models sit on the boundary from a positive start, metafor's R2 is a
  ratio of two unconverged iterates that changes with its convergence
  settings; ``FULL`` reports 0, metafor's rule for tau2_RE = 0 (see
  ``_pseudo_r2``), ``METAFOR_DEFAULT`` replays its default-control ratio. For a
  common-effect model (EE/FE/CE)
  metafor uses instead the adjusted R^2 of the weighted least-squares
  regression (``summary(lm(yi ~ X, weights = 1/vi))$adj.r.squared``)::

      R2_w = MSS / (MSS + RSS),  R2 = max(0, 100 (1 - (1 - R2_w) (k - 1) / (k - p)))

  with RSS = sum w r^2 (= QE) and MSS = sum w (yhat - ybar_w)^2; 0 when
  all yi are equal; NaN when k = p (R's 0 * Inf on an exact fit).

Why written here: the fit is ``ntxmeta.rma`` (O(k p^2), no k x k matrix;
its docstring says why pymare and statsmodels are not used for it).
Around it, statsmodels' WLS gives the EE model's adjusted R^2 (the tests
check that it agrees) but refitting only for that would double the cost,
as the R^2 is two sums over residuals that ``rma`` already has; pymare
0.0.13 fits meta-regressions (with Knapp-Hartung) but has no pseudo-R^2,
reports the Q-based I^2 rather than metafor's tau^2-based one for
random-effects models, and neither drops redundant predictors nor refuses
where metafor does.

References
----------
1. Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
   package. J Stat Softw 36(3).
2. Thompson SG, Higgins JPT (2002). How should meta-regression analyses be
   undertaken and interpreted? Stat Med 21:1559-1573.
3. Raudenbush SW (2009). Analyzing effect sizes: random-effects models. In
   Cooper, Hedges, Valentine (eds), The Handbook of Research Synthesis and
   Meta-Analysis, 2nd ed., 295-315.
4. Knapp G, Hartung J (2003). Improved tests for a random effects
   meta-regression with a single covariate. Stat Med 22:2693-2710.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import oracle
from ._common import Interval, MetaError, guarded, t_crit, z_crit
from .data import AnalysisData
from .rma import COMMON_ALIASES, FULL, Control, RMAFit, estimate_tau2, rma_shared

#: R's ``lm.fit`` tolerance for its pivoted QR (``qr(x, tol = 1e-7)``): a
#: column whose norm after projection on the columns before it falls below
#: this fraction of its own norm is redundant (LINPACK ``dqrdc2``).
LM_QR_TOL = 1e-7
#: metafor's ``control$evtol``: X'X with an eigenvalue at or below this is
#: "not of full rank" (checked after the redundant columns are dropped).
EVTOL = 1e-7
#: Estimators that metafor iterates from max(0, HE) with step halving at 0
#: (Fisher scoring); see ``_metafor_exact_zero``.
ITERATIVE_FROM_HE = ("ML", "REML", "EB")
#: Name of the intercept coefficient, as metafor spells it.
INTERCEPT = "intrcpt"

MSG_TOO_FEW = "Number of parameters to be estimated is larger than the number of observations."
MSG_NOT_FULL_RANK = "Model matrix not of full rank. Cannot fit model."
WARN_REDUNDANT = "Redundant predictors dropped from the model."
WARN_NA = "Studies with NAs omitted from model fitting."

#: The fits of the ``metareg`` section, in oracle.R's order: (key, method,
#: test, always_full). ``REML_tight`` is oracle.R's tightly converged REML
#: fit, and ``REML`` is compared with it (compare.py's target), so both
#: converge fully whatever the spec says; the others follow the spec's
#: ``control`` (``AnalysisData.control``).
METAREG_FITS = (("REML", "REML", "z", True), ("REML_knha", "REML", "knha", False),
                ("REML_tight", "REML", "z", True), ("DL", "DL", "z", False),
                ("EE", "EE", "z", False))


@dataclass(frozen=True)
class LinePrediction:
    """Predicted effects at new moderator values (arrays of one length).

    ``ci`` and ``pi`` hold arrays; ``pi`` is NaN for a common-effect model.
    """

    pred: np.ndarray
    se: np.ndarray
    ci: Interval
    pi: Interval


@dataclass(frozen=True)
class ModeratorFit:
    """A mixed-effects meta-regression (metafor's ``rma`` with ``mods``).

    Attributes
    ----------
    names : tuple of str
        Coefficient names, ``"intrcpt"`` first (after redundant ones were dropped).
    fit : RMAFit
        The model: ``beta``, ``se``, ``stat``, ``pval``, ``ci_lb``/``ci_ub``,
        ``vb``, ``tau2``, ``se_tau2``, ``I2_pct``, ``H2``, ``QE``, ``QM``,
        ``QMdf``, ``QMp``, ``s2w``, ``df``, ``X`` (the design of the used rows).
    R2_pct : float
        Pseudo-R^2 in percent (adjusted weighted R^2 for EE); NaN where
        metafor gives NA/NaN or does not compute it (intercept-only model).
    used : ndarray of bool, shape (n,)
        Which input rows entered the model.
    warnings : tuple of str
        metafor's warnings for this fit (rows omitted, predictors dropped).
    """

    names: tuple
    fit: RMAFit
    R2_pct: float
    used: np.ndarray
    warnings: tuple = ()

    @property
    def k(self) -> int:
        return self.fit.k

    @property
    def p(self) -> int:
        return self.fit.p

    @property
    def coefficients(self) -> pd.DataFrame:
        """One row per coefficient: estimate, se, stat, pval, ci.low, ci.high (and df)."""
        f = self.fit
        table = pd.DataFrame({"estimate": f.beta, "se": f.se, "stat": f.stat, "pval": f.pval,
                              "ci.low": f.ci_lb, "ci.high": f.ci_ub}, index=list(self.names))
        if f.df is not None:
            table["df"] = f.df
        return table

    def predict(self, mods) -> LinePrediction:
        """Predicted effect at moderator values (metafor's ``predict(fit, newmods=)``).

        Parameters
        ----------
        mods : array_like, shape (n,) or (n, p - 1)
            Values of the moderators (without the intercept), in the order
            of ``names[1:]``.

        Notes
        -----
        pred = x'beta, se = sqrt(x' vb x); CI with z (t(k - p) under knha);
        PI with sqrt(se^2 + tau^2), as metafor's default ``pi.type``.
        """
        x = np.asarray(mods, dtype=float)
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.p - 1:
            raise ValueError(f"mods must have {self.p - 1} column(s), got shape {np.shape(mods)}")
        Xn = np.column_stack([np.ones(len(x)), x])
        f = self.fit
        pred = Xn @ f.beta
        se = np.sqrt(np.einsum("ni,ij,nj->n", Xn, f.vb, Xn))
        if f.df is None:
            crit = z_crit(f.level)
        else:
            crit = t_crit(f.level, f.df) if f.df > 0 else np.nan
        half_pi = (np.full(pred.shape, np.nan) if f.method in COMMON_ALIASES
                   else crit * np.sqrt(se**2 + f.tau2))
        return LinePrediction(pred, se, Interval(pred - crit * se, pred + crit * se),
                              Interval(pred - half_pi, pred + half_pi))


# --------------------------------------------------------------------------- fitting

def redundant_columns(X: np.ndarray) -> np.ndarray:
    """Mask of the columns R's ``lm(y ~ X - 1)`` would report as NA (aliased).

    Columns are taken left to right (LINPACK ``dqrdc2``'s limited pivoting):
    a column is redundant when the norm of its part orthogonal to the kept
    columns is below ``LM_QR_TOL`` times its own norm (1 for a zero column).
    O(k p^2).
    """
    k, p = X.shape
    basis = np.empty((k, 0))
    drop = np.zeros(p, dtype=bool)
    for j in range(p):
        col = X[:, j]
        ref = np.linalg.norm(col)
        resid = col - basis @ (basis.T @ col)
        resid = resid - basis @ (basis.T @ resid)   # re-orthogonalise once (stability)
        norm = np.linalg.norm(resid)
        if norm < LM_QR_TOL * (ref if ref > 0 else 1.0):
            drop[j] = True
        else:
            basis = np.column_stack([basis, resid / norm])
    return drop


def _pseudo_r2(fit: RMAFit, yi: np.ndarray, vi: np.ndarray, method: str, test: str,
               control: Control = FULL) -> float:
    """metafor's R^2 in percent for a model with an intercept and moderators (see module doc).

    The intercept-only reference fit uses the same ``control`` as ``fit``
    (metafor passes its ``control`` on to it). Under ``control=METAFOR_DEFAULT``
    both tau^2 are metafor's own iterates, so its rule applies as written:
    0 when tau2_RE is identically 0, else max(0, 100 (tau2_RE - tau2_ME) /
    tau2_RE), tiny unconverged iterates included.
    """
    if fit.method in COMMON_ALIASES:
        if np.var(yi) == 0:
            return 0.0
        w = 1.0 / vi
        fitted = fit.X @ fit.beta
        rss = float((w * (yi - fitted) ** 2).sum())
        mss = float((w * (fitted - (w * fitted).sum() / w.sum()) ** 2).sum())
        if fit.k == fit.p:   # exact fit: R's adjusted R^2 is 0 * Inf = NaN
            return np.nan
        r2 = mss / (mss + rss)
        return max(0.0, 100 * (1 - (1 - r2) * (fit.k - 1) / (fit.k - fit.p)))
    try:
        tau2_re = rma_shared(yi, vi, method=method, test=test, level=fit.level,
                             control=control).tau2
    except ValueError:
        return np.nan   # metafor: R2 <- NA when the model without moderators fails
    if control.replay:
        return 0.0 if tau2_re == 0 else max(0.0, 100 * (tau2_re - fit.tau2) / tau2_re)
    re_zero = _metafor_exact_zero(method, tau2_re, yi, vi, None)
    if re_zero:
        return 0.0
    if tau2_re > 0:
        return max(0.0, 100 * (tau2_re - fit.tau2) / tau2_re)
    # tau2_RE is on the boundary, but metafor's iterate there is a tiny eps > 0
    if fit.tau2 == 0 and _metafor_exact_zero(method, 0.0, yi, vi, fit.X):
        return 100.0    # metafor: (eps - 0) / eps, whatever eps is
    # tau2_ME > 0 gives (eps - tau2_ME) / eps < 0, i.e. 0. With both on the
    # boundary metafor's value is (eps_RE - eps_ME) / eps_RE, a ratio of two
    # unconverged iterates that changes with its control settings (e.g. 75 %
    # with threshold 1e-12, 0 % with the default 1e-5); the converged model
    # has tau2_RE = 0, for which metafor's own rule is R2 = 0.
    return 0.0


def _metafor_exact_zero(method: str, tau2: float, yi, vi, X) -> bool:
    """Is metafor's tau^2 for this model identically 0 (not just tiny)?

    metafor's ML, REML and EB start from max(0, HE) and halve any step that
    would leave [0, inf). Started at 0 with a non-positive step they stay at
    exactly 0; started above 0 they approach a boundary maximum from above
    and stop at a tiny positive value (below ``control$threshold``), which
    metafor's ``identical(tau2.RE, 0)`` does not treat as 0. ``rma`` here
    converges to the boundary itself (tau^2 = 0), so the starting value
    decides which of the two metafor reports. Other estimators are floored
    at exactly 0.
    """
    if tau2 != 0:
        return False
    if method not in ITERATIVE_FROM_HE:
        return True
    return float(estimate_tau2(yi, vi, method="HE", X=X)) == 0


def fit_design(yi, vi, X, names, *, method: str = "REML", test: str = "z",
               level: float = 95.0, warnings: tuple = (), control: Control = FULL) -> ModeratorFit:
    """Fit ``rma`` with a design matrix the way ``rma.uni`` treats ``mods``.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effects and sampling variances of the studies to use (finite, vi > 0).
    X : array_like, shape (k, p)
        Design with the intercept in column 0.
    names : sequence of str, length p
        Coefficient names (``names[0]`` is the intercept).
    method, test, level, control
        As ``ntxmeta.rma.rma``; ``control`` also applies to the
        intercept-only fit of the pseudo-R^2.
    warnings : tuple of str
        Warnings already raised by the caller (kept on the result).

    Returns
    -------
    ModeratorFit
        ``used`` is all-True (length k); callers that filtered rows replace it.

    Raises
    ------
    ValueError
        metafor's refusals: ``p > k`` (EE) or ``p + 1 > k`` (tau^2
        estimated), X'X with an eigenvalue <= ``EVTOL``, and whatever
        ``rma`` refuses (vi <= 0, non-finite values, unknown method).
    """
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    X = np.asarray(X, dtype=float)
    names = tuple(names)
    if X.ndim != 2 or X.shape != (y.size, len(names)):
        raise ValueError(f"X must have shape (k, p) = ({y.size}, {len(names)}), got {X.shape}")
    if y.size == 0:
        raise ValueError("no studies with an effect size and moderator values")
    drop = redundant_columns(X)
    if drop.any():
        X = X[:, ~drop]
        names = tuple(n for n, d in zip(names, drop) if not d)
        warnings = warnings + (WARN_REDUNDANT,)
    k, p = X.shape
    int_only = p == 1
    if not (int_only and k == 1):
        needed = p if method in COMMON_ALIASES else p + 1
        if needed > k:
            raise MetaError(MSG_TOO_FEW)
    if np.any(np.linalg.eigvalsh(X.T @ X) <= EVTOL):
        raise MetaError(MSG_NOT_FULL_RANK)
    fit = rma_shared(y, v, method=method, test=test, level=level, X=None if int_only else X,
              control=control)
    if int_only:   # rma with X=None is the same model; keep the design for predict()
        fit = dataclasses.replace(fit, X=X)
    R2 = np.nan if int_only else _pseudo_r2(fit, y, v, method, test, control)
    return ModeratorFit(names=names, fit=fit, R2_pct=float(R2), used=np.ones(k, dtype=bool),
                        warnings=warnings)


def meta_regression(yi, vi, moderators, *, method: str = "REML", test: str = "z",
                    level: float = 95.0, names=None, control: Control = FULL) -> ModeratorFit:
    """Mixed-effects meta-regression; matches metafor 3.8-1 ``rma(yi, vi, mods = ~ x)``.

    Parameters
    ----------
    yi, vi : array_like, shape (n,)
        Effect sizes and sampling variances, one per row.
    moderators : array_like, shape (n,) or (n, q)
        Numeric moderator(s); an intercept is added.
    method : str
        tau^2 estimator (``ntxmeta.rma.METHODS``; "EE" for a common-effect
        meta-regression). GENQ/GENQM need weights and are not offered here.
    test : {"z", "knha", "adhoc"}
        Wald z tests, or Knapp-Hartung t(k - p) tests and F(m, k - p) for QM.
    level : float
        Confidence level in percent.
    names : sequence of str, optional
        Moderator names (default "mod", or "mod1", "mod2", ...).
    control : Control
        ``FULL`` converges tau^2 fully (the model's and the pseudo-R^2's
        intercept-only one); ``METAFOR_DEFAULT`` stops ML/REML/EB where
        metafor's default control stops, to reproduce its default output
        (see ``ntxmeta.rma.metafor_fisher_tau2``).

    Returns
    -------
    ModeratorFit
        ``names`` = ("intrcpt", *moderator names); ``used`` marks the rows
        with finite yi, vi and moderators (the others are omitted with
        metafor's warning).

    Raises
    ------
    ValueError
        Mismatched shapes; fewer studies than metafor needs (k < p + 1 when
        tau^2 is estimated, k < p for EE); a design not of full rank.

    Notes
    -----
    A moderator without variance is dropped as metafor drops it (warning
    "Redundant predictors dropped from the model."), which leaves an
    intercept-only model with R2 = NaN. See the module docstring for R^2.
    """
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    M = np.asarray(moderators, dtype=float)
    M = M[:, None] if M.ndim == 1 else M
    if y.ndim != 1 or v.shape != y.shape or M.ndim != 2 or M.shape[0] != y.size:
        raise ValueError(f"yi, vi and moderators must have one row each per study "
                         f"(got {y.shape}, {v.shape}, {np.shape(moderators)})")
    if names is None:
        names = ["mod"] if M.shape[1] == 1 else [f"mod{j + 1}" for j in range(M.shape[1])]
    names = [str(n) for n in names]
    if len(names) != M.shape[1]:
        raise ValueError(f"{len(names)} names for {M.shape[1]} moderators")
    used = np.isfinite(y) & np.isfinite(v) & np.all(np.isfinite(M), axis=1)
    warns = (WARN_NA,) if not used.all() else ()
    X = np.column_stack([np.ones(int(used.sum())), M[used]])
    res = fit_design(y[used], v[used], X, [INTERCEPT, *names], method=method, test=test,
                     level=level, warnings=warns, control=control)
    return dataclasses.replace(res, used=used)


# --------------------------------------------------------------------------- sections

def modfit_dict(res: ModeratorFit) -> dict:
    """metafor's ``modfit_sum`` layout (oracle.R) of a model with moderators."""
    f = res.fit
    coefs = {"names": list(res.names), "estimate": f.beta, "se": f.se, "stat": f.stat,
             "pval": f.pval, "ci.lb": f.ci_lb, "ci.ub": f.ci_ub,
             "df": None if f.df is None else f.df}
    qmdf = [f.QMdf[0], np.nan if f.QMdf[1] is None else f.QMdf[1]]
    d = {"method": f.method, "test": f.test, "k": f.k, "p": f.p, "coefficients": coefs,
         "QM": f.QM, "QMdf": qmdf, "QMp": f.QMp, "QE": f.QE, "QEdf": f.QEdf, "QEp": f.QEp,
         "tau2": f.tau2, "se.tau2": f.se_tau2, "I2": f.I2_pct, "H2": f.H2, "R2": res.R2_pct,
         "s2w": f.s2w}
    if res.warnings:
        d["warnings"] = list(res.warnings)
    return d


def metareg_section(data: AnalysisData, sub: set[str] | None) -> dict | None:
    """The ``metareg`` section: REML, REML_knha, REML_tight, DL and EE fits on
    the rows with a finite moderator (None when the analysis has no moderator).

    The fits are made as oracle.R made its references: ``REML`` and
    ``REML_tight`` converge fully; the others use the spec's control
    (``AnalysisData.control``: metafor's default stopping rule unless the
    spec says ``"control": "full"``).
    """
    if data.moderator is None:
        return None
    control = data.control
    name = data.moderator_name or "mod"
    out: dict = {"moderator": name}
    done: dict = {}
    for key, method, test, always_full in METAREG_FITS:
        if sub is not None and key not in sub:
            continue
        how = (method, test, FULL if always_full else control)
        if how not in done:
            done[how] = guarded(lambda m=method, t=test, c=how[2]: modfit_dict(meta_regression(
                data.yi, data.vi, data.moderator, method=m, test=t, level=data.level,
                names=[name], control=c)))
        out[key] = done[how]
    return out


oracle.register("metareg", metareg_section)
