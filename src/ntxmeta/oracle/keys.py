"""The one table from the engine's names to metafor's key paths (STYLE.md habit 6).

Our names live in the result objects (``RMAFit``, ``Prediction``,
``FitStats``, ``Tau2CI``); metafor's names are those of the oracle's
``out.json`` (oracle.R's ``fit_sum``, ``ci_sum``). ``ntxmeta.oracle.sections``
composes the sections from these tables only. Order matters: it is the
order of the keys in the JSON output.
"""
from __future__ import annotations

#: RMAFit field -> metafor key of ``fit_sum`` (an intercept-only fit), before
#: the test statistic. Arrays (se, pval, ...) report their first entry.
FIT_HEAD = (("method", "method"), ("test", "test"), ("k", "k"), ("p", "p"), ("level", "level"),
            ("estimate", "estimate"), ("se", "se"))
#: The statistic's key by test, and the t test's degrees of freedom.
STAT_KEY = {"z": "zval", "knha": "tval", "adhoc": "tval"}
DF_KEY = ("df", "df")
#: After the statistic.
FIT_TAIL = (("pval", "pval"), ("ci_lb", "ci.lb"), ("ci_ub", "ci.ub"), ("tau2", "tau2"),
            ("se_tau2", "se.tau2"), ("tau", "tau"), ("I2_pct", "I2"), ("H2", "H2"), ("QE", "QE"),
            ("QEdf", "QEdf"), ("QEp", "QEp"), ("s2w", "s2w"))
#: RMAFit's fit statistics -> metafor's ``fit.stats`` columns.
FIT_STATS = (("fit_ml", "ML"), ("fit_reml", "REML"))
FIT_STATS_ROWS = (("ll", "ll"), ("dev", "dev"), ("AIC", "AIC"), ("BIC", "BIC"), ("AICc", "AICc"))
#: Per-study weights (percent).
WEIGHTS_KEY = ("weights_pct", "weights_pct")
#: Prediction field (dotted: an Interval's end) -> metafor's ``predict()`` key.
PREDICTION = (("pred", "pred"), ("se", "se"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"),
              ("pi.low", "pi.lb"), ("pi.high", "pi.ub"))
PREDICTION_DF = ("pi_df", "pi.df")
#: pi_type of ``RMAFit.predict`` -> the section key oracle.R gives it.
PREDICTIONS = (("default", "predict"), ("riley", "predict_riley_t_km2"), ("t", "predict_t_km1"))
#: Back-transformed (``transf="exp"``) summary: Prediction field -> key.
EXP = (("pred", "estimate"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"), ("pi.low", "pi.lb"),
       ("pi.high", "pi.ub"))
#: Tau2CI row -> metafor's row name of ``confint()$random``.
CONFINT_ROWS = (("tau2", "tau^2"), ("tau", "tau"), ("I2_pct", "I^2(%)"), ("H2", "H^2"))

# --------------------------------------------------------------------------- rma.mv
# ``ntxmeta.multilevel``'s result objects -> the key paths of the rma.mv oracle
# (tests/fixtures/oracle_mv/make_mv.R: fit_section, ci_section, anova_section,
# wald_section, cr2_section). Used by ``ntxmeta.oracle.mv``.

#: MVFit field -> metafor key, before the coefficients.
MV_HEAD = (("method", "method"), ("test", "test"), ("k", "k"), ("p", "p"), ("parms", "parms"))
#: The ``coefficients`` table: MVFit field (dotted: an Interval's end, per coefficient)
#: -> metafor key (``stat`` is zval or tval, by ``test``; ``df`` only under t).
MV_COEFFICIENTS = (("names", "names"), ("beta", "estimate"), ("se", "se"), ("stat", "stat"),
                   ("pval", "pval"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"))
MV_DF = ("df", "df")
#: After the coefficients (``QMdf`` is (m, df2), df2 NA under z).
MV_TAIL = (("vb", "vcov"), ("QE", "QE"), ("QEdf", "QEdf"), ("QEp", "QEp"), ("QM", "QM"),
           ("QMdf", "QMdf"), ("QMp", "QMp"))
#: Variance components, written only where the model has them (metafor's withS, withG).
MV_COMPONENTS = (("sigma2", "sigma2"), ("tau2", "tau2"), ("rho", "rho"))
#: ProfileCI -> metafor's ``confint()$random`` columns.
MV_CONFINT = (("estimate", "estimate"), ("ci.low", "ci.lb"), ("ci.high", "ci.ub"))
#: LRTest field -> metafor's ``anova(full, reduced)`` key; FitStats rows as a vector.
MV_ANOVA = (("LRT", "LRT"), ("pval", "pval"), ("df", "df"), ("parms_f", "parms.f"),
            ("parms_r", "parms.r"), ("fit_f", "fit.stats.f"), ("fit_r", "fit.stats.r"),
            ("QE_f", "QE.f"), ("QE_r", "QE.r"))
#: WaldTest field -> metafor's ``anova(fit, X = L)`` key.
MV_WALD = (("L", "L"), ("estimate", "estimate"), ("se", "se"), ("stat", "stat"),
           ("pval", "pval"), ("QM", "QM"), ("QMdf", "QMdf"), ("QMp", "QMp"))
#: CR2Test field -> clubSandwich ``coef_test(vcov = "CR2")`` column.
MV_CR2 = (("names", "names"), ("beta", "estimate"), ("se", "SE"), ("tstat", "tstat"),
          ("df", "df"), ("pval", "pval"))
