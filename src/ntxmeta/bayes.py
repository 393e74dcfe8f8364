"""Exact Bayesian random-effects meta-analysis by numerical integration (no MCMC).

The equivalent of R's bayesmeta (Röver 2020): the normal-normal hierarchical
model, whose posterior is reduced to a one-dimensional integral over the
heterogeneity tau and computed by quadrature.

Why written by hand
-------------------
No Python library computes it: PyMARE's ``StanMetaRegression`` and
statsmodels need MCMC (Stan/PyMC, seconds per fit, Monte Carlo error of
~1e-2), and bayesmeta is R-only. With one latent dimension the posterior is a
one-dimensional integral, so quadrature gives the answer to ~1e-8 in
milliseconds, with no sampler to tune or check for convergence.

Model
-----
y_i | theta_i ~ N(theta_i, v_i),  theta_i | mu, tau ~ N(mu, tau^2), so
y_i | mu, tau ~ N(mu, v_i + tau^2), i = 1..k, v_i > 0 known.
Priors: tau ~ half-normal(s), half-Cauchy(s), log-normal(m, sigma) (Turner
et al. 2015 predictive priors are log-normal on tau^2 = log-normal on tau
with m/2, sigma/2: ``turner_prior(outcome_type, comparison_type)``, their
Table IV) or uniform(0, upper); mu ~ flat (improper, bayesmeta's
default) or N(m0, s0^2), independent of tau.

Integrating out mu given tau (derivation)
-----------------------------------------
Write w_i = 1/(v_i + tau^2). For the flat prior,
  p(y | tau) = int prod_i N(y_i; mu, 1/w_i) dmu
             = (2 pi)^(-(k-1)/2) prod_i w_i^(1/2) W^(-1/2) exp(-Q/2),
  W = sum w_i,  M = sum w_i y_i / W,  Q = sum w_i (y_i - M)^2
(complete the square in mu: sum w_i (y_i - mu)^2 = Q + W (mu - M)^2), and
mu | tau, y ~ N(M, 1/W). A normal prior N(m0, s0^2) has exactly the form of
one more likelihood factor N(m0; mu, s0^2), so it enters as an extra
"observation" y_0 = m0 with weight w_0 = 1/s0^2 in W, M and Q. Its weight is
NOT 1/(s0^2 + tau^2): the prior is on mu itself, not on a study effect. The
factor w_0^(1/2) does not depend on tau and is dropped with the other
constants. Hence
  log p(tau | y) = log p(tau) + 1/2 sum_{i>=1} log w_i - 1/2 log W - Q/2 + c.
Given tau, everything else is normal:
  mu | tau, y        ~ N(M, 1/W)
  theta_new | tau, y ~ N(M, 1/W + tau^2)                       (predictive)
  theta_i | tau, y   ~ N(B_i M + (1 - B_i) y_i, (1 - B_i) v_i + B_i^2 / W),
                       B_i = v_i / (v_i + tau^2)                (shrinkage)
(the last from theta_i | mu, tau, y_i ~ N(B_i mu + (1-B_i) y_i, (1-B_i) v_i)
and mu | tau, y above). So each marginal posterior is a continuous mixture of
normals over p(tau | y), computed as a finite mixture over quadrature nodes:
  P(mu <= m | y) = int Phi((m - M(tau)) sqrt(W(tau))) p(tau | y) dtau.

Quadrature
----------
On z = log tau every prior offered has exponentially decaying tails (the
density in z carries the Jacobian tau, so it falls like tau at 0; above, a
half-Cauchy tail tau^-2 times the likelihood's tau^-(k-1) is e^(-k z)), so the
integrand is smooth and negligible outside a finite interval. That interval
is located on a coarse grid (``COARSE_STEP`` over ``COARSE_SPAN`` around the
data's scale, united with prior quantiles so that a narrow, point-mass-like
prior is not stepped over) as where log p(z | y) is within ``LOG_CUT`` of its
maximum; it is then covered by ``N_PANELS`` equal panels of ``GL_ORDER``-point
Gauss-Legendre (exact for polynomials of degree 19 per panel). A uniform
prior's upper bound is a panel edge, so the kink lies between panels.
Quantiles are found by safeguarded Newton steps on the exact mixture CDF
(the tau CDF integrates the last, partial panel with its own Gauss-Legendre
rule), so they are not limited by the spacing of the nodes. Agreement with a
brute-force 2-D grid is tested to 1e-4 (measured <= 7.5e-6) and with a 4x
finer quadrature to 1e-8 (tests/test_bayes.py).

Speed: ~10 ms a fit (k = 7, one core of a busy 2-core machine), mostly the
~50 quantile searches on the 800-component mixtures (~4 Newton steps each,
started from a tabulated CDF). The 2k quantiles of the per-study intervals
(``study_ci``) are solved together, one vectorised Newton iteration for all
studies: ~1 ms more at k = 7, ~40 ms more at k = 200 (17 -> 58 ms).

Edge cases: k = 1 is allowed (the posterior of tau is then nearly its prior);
a half-Cauchy posterior of tau has a tail ~ tau^-(k + 1) (flat mu prior;
tau^-(k + 2) with a normal one), so its mean is reported as inf when k < 2
(k < 1 normal) and its sd as inf when k < 3 (k < 2), and so are the mean (NaN,
undefined) and sd (inf) of the predictive effect and, with the flat prior,
of mu; medians and intervals always exist;
v_i must be finite and > 0; the shortest interval is the shortest single
interval of the given probability (for a multimodal posterior the highest
density region may be a union of intervals; bayesmeta's ``post.interval
(method="shortest")`` also returns one interval). For tau, whose density may
be highest at 0, the shortest interval may start at 0.

References
----------
1. Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta
   R package. J Stat Softw 93(6). doi:10.18637/jss.v093.i06
2. Röver C, Friede T (2017). Discrete approximation of a mixture
   distribution via restricted divergence. J Comput Graph Stat 26:217-222.
3. Turner RM, Jackson D, Wei Y, Thompson SG, Higgins JPT (2015). Predictive
   distributions for between-study heterogeneity and simple methods for their
   application in Bayesian meta-analysis. Stat Med 34:984-998.
4. Gelman A (2006). Prior distributions for variance parameters in
   hierarchical models. Bayesian Anal 1:515-534 (half-Cauchy).
5. Friede T, Röver C, Wandel S, Neuenschwander B (2017). Meta-analysis of
   few small studies in orphan diseases. Res Synth Methods 8:79-91
   (half-normal priors for k = 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize, special

from ._common import Interval, MetaError, as_float_array

#: Gauss-Legendre points per panel (exact for polynomials of degree 2n - 1 = 19).
GL_ORDER = 10
#: Panels over the located range of log tau: 800 nodes. Against 1600 panels
#: every summary of the tested cases (k = 2, 7, 200; narrow and heavy-tailed
#: priors) agrees to < 1e-9 from 60 panels on (< 1e-13 from 100);
#: test_quadrature_is_converged checks 4x as many.
N_PANELS = 80
#: Where the integrand is cut: log density more than this below its maximum
#: (e^-46 ~ 1e-20 of the peak), far below the 1e-6 relative accuracy asked.
LOG_CUT = 46.0
#: Coarse grid that locates the posterior's range on z = log tau: this step ...
COARSE_STEP = 0.1
#: ... over this many units of log tau below and above the data's scale
#: (e^-60 .. e^40 times sqrt(median v)): beyond any tau a data set supports.
COARSE_SPAN = (-60.0, 40.0)
#: Standard-normal scores whose prior quantiles join the coarse grid (a prior
#: narrower than COARSE_STEP, e.g. a point-mass-like log-normal, is then found).
PRIOR_SCORES = np.linspace(-8.0, 8.0, 161)
#: Each panel-range edge is narrowed EDGE_ROUNDS times by EDGE_REFINE points
#: (to 1/32^3 ~ 3e-5 of a coarse step).
EDGE_REFINE = 32
EDGE_ROUNDS = 3
#: Quantile root finding stops when the bracket is this narrow (absolute, on
#: the scale searched) or the CDF is within QUANTILE_PTOL of the target.
QUANTILE_XTOL = 1e-12
QUANTILE_PTOL = 1e-13
#: Iteration cap of the safeguarded Newton quantile search (bisection alone
#: needs ~60 steps from the widest bracket).
QUANTILE_MAXITER = 200
#: Where (in posterior sds around the mean) a mixture's CDF is tabulated to
#: bracket and start its quantile searches.
TABLE_SCORES = np.linspace(-10.0, 10.0, 81)
#: Tolerance on the lower tail probability when searching the shortest interval.
SHORTEST_PTOL = 1e-10
#: Points of the density grids returned for plotting.
DENSITY_POINTS = 201

_GL_X, _GL_W = np.polynomial.legendre.leggauss(GL_ORDER)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- priors

@dataclass(frozen=True)
class TauPrior:
    """A proper prior on tau >= 0: its log density and quantile function.

    Build with ``halfnormal``, ``halfcauchy``, ``lognormal`` or ``uniform``
    (or ``parse_tau_prior("halfnormal:0.5")``). ``upper`` is the end of the
    support (inf except for the uniform).
    """

    name: str
    params: tuple[float, ...]
    logpdf: Callable[[np.ndarray], np.ndarray]
    ppf: Callable[[np.ndarray], np.ndarray]
    upper: float = math.inf
    #: p(tau) ~ tau^-tail_power as tau -> inf (inf: lighter than any power)
    tail_power: float = math.inf

    def __str__(self) -> str:
        return f"{self.name}:" + ":".join(f"{p:g}" for p in self.params)

    def pdf(self, tau) -> np.ndarray:
        """Density at ``tau`` (0 outside the support)."""
        with np.errstate(divide="ignore"):
            return np.exp(self.logpdf(np.asarray(tau, dtype=float)))


def _positive(value: float, what: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def halfnormal(scale: float) -> TauPrior:
    """Half-normal: p(tau) = 2/(s sqrt(2 pi)) exp(-tau^2 / (2 s^2)), tau >= 0."""
    s = _positive(scale, "half-normal scale")
    c = math.log(2.0) - math.log(s) - _LOG_SQRT_2PI

    def logpdf(t):
        with np.errstate(divide="ignore"):
            return np.where(t >= 0, c - 0.5 * (t / s) ** 2, -np.inf)
    return TauPrior("halfnormal", (s,), logpdf,
                    lambda u: s * math.sqrt(2.0) * special.erfinv(u))


def halfcauchy(scale: float) -> TauPrior:
    """Half-Cauchy: p(tau) = 2 / (pi s (1 + (tau/s)^2)), tau >= 0."""
    s = _positive(scale, "half-Cauchy scale")
    c = math.log(2.0 / (math.pi * s))

    def logpdf(t):
        return np.where(t >= 0, c - np.log1p((t / s) ** 2), -np.inf)
    return TauPrior("halfcauchy", (s,), logpdf, lambda u: s * np.tan(0.5 * math.pi * u),
                    tail_power=2.0)


def lognormal(mu: float, sigma: float) -> TauPrior:
    """Log-normal: log tau ~ N(mu, sigma^2).

    Turner et al. (2015) give log tau^2 ~ N(m, s^2), i.e. ``lognormal(m/2, s/2)``.
    """
    if not math.isfinite(mu):
        raise ValueError(f"log-normal mu must be a finite number, got {mu!r}")
    sg = _positive(sigma, "log-normal sigma")

    def logpdf(t):
        with np.errstate(divide="ignore", invalid="ignore"):
            lt = np.log(np.where(t > 0, t, 1.0))
            return np.where(t > 0, -lt - math.log(sg) - _LOG_SQRT_2PI
                            - 0.5 * ((lt - mu) / sg) ** 2, -np.inf)
    return TauPrior("lognormal", (float(mu), sg), logpdf,
                    lambda u: np.exp(mu + sg * special.ndtri(u)))


def uniform(upper: float) -> TauPrior:
    """Uniform on [0, upper]."""
    b = _positive(upper, "uniform upper bound")
    c = -math.log(b)

    def logpdf(t):
        return np.where((t >= 0) & (t <= b), c, -np.inf)
    return TauPrior("uniform", (b,), logpdf, lambda u: b * np.asarray(u), upper=b)


#: Turner et al. (2015) outcome types, in the order of their Table IV.
TURNER_OUTCOMES = (
    "all-cause mortality",
    "obstetric outcomes",
    "cause-specific mortality / major morbidity event / composite (mortality or morbidity)",
    "resource use / hospital stay / process",
    "surgical / device related success / failure",
    "withdrawals / drop-outs",
    "internal / structure-related outcomes",
    "general physical health indicators",
    "adverse events",
    "infection / onset of new disease",
    "signs / symptoms reflecting continuation / end of condition",
    "pain",
    "quality of life / functioning (dichotomized)",
    "mental health indicators",
    "biological markers (dichotomized)",
    "subjective outcomes (various)",
)
#: Turner et al. (2015) intervention comparison types (Table IV columns).
TURNER_COMPARISONS = (
    "pharmacological vs placebo / control",
    "pharmacological vs pharmacological",
    "non-pharmacological vs placebo / control",
    "non-pharmacological vs pharmacological",
    "non-pharmacological vs non-pharmacological",
)
# Table IV of Turner et al. (2015), log tau^2 ~ N(m, s^2) for log odds ratios:
# one column per comparison type (TURNER_COMPARISONS), one entry per outcome
# type (TURNER_OUTCOMES). Transcribed from bayesmeta's ``TurnerEtAlParameters``
# (R/bayesmeta.R, "see Tab.IV"; Röver 2020) and checked entry by entry against
# a second transcription, rnmamod's ``table_tau2_prior("OR")`` (Spineli):
# both agree on all 160 numbers.
_TURNER_M = (
    (-3.95, -3.52, -3.71, -2.34, -2.14, -2.99, -2.71, -2.29, -1.87, -2.49, -2.06, -1.83,
     -2.54, -2.12, -1.77, -2.70),
    (-4.18, -3.75, -3.95, -2.58, -2.37, -3.23, -2.94, -2.53, -2.10, -2.73, -2.29, -2.06,
     -2.78, -2.35, -2.00, -2.93),
    (-4.17, -3.74, -3.93, -2.56, -2.36, -3.21, -2.93, -2.51, -2.10, -2.71, -2.28, -2.05,
     -2.77, -2.34, -1.99, -2.92),
    (-2.92, -2.49, -2.68, -1.31, -1.11, -1.96, -1.67, -1.26, -0.84, -1.46, -1.03, -0.80,
     -1.51, -1.09, -0.74, -1.67),
    (-3.50, -3.08, -3.27, -1.90, -1.69, -2.55, -2.26, -1.85, -1.43, -2.05, -1.61, -1.38,
     -2.10, -1.67, -1.33, -2.26),
)
_TURNER_S = (
    (1.34, 1.74, 1.74, 1.74, 1.74, 1.74, 1.74, 1.53, 1.52, 1.52, 1.51, 1.52, 1.54, 1.53, 1.52, 1.52),
    (1.41, 1.79, 1.79, 1.79, 1.79, 1.79, 1.79, 1.58, 1.58, 1.58, 1.58, 1.58, 1.60, 1.60, 1.58, 1.58),
    (1.55, 1.91, 1.91, 1.91, 1.91, 1.91, 1.92, 1.72, 1.71, 1.71, 1.71, 1.71, 1.73, 1.72, 1.71, 1.71),
    (1.02, 1.50, 1.51, 1.50, 1.50, 1.51, 1.51, 1.25, 1.24, 1.24, 1.24, 1.25, 1.27, 1.27, 1.24, 1.25),
    (1.26, 1.68, 1.68, 1.68, 1.68, 1.68, 1.68, 1.46, 1.45, 1.45, 1.45, 1.45, 1.47, 1.47, 1.45, 1.45),
)
#: (outcome type, comparison type) -> (m, s) of log tau^2 ~ N(m, s^2).
TURNER_2015 = {(o, c): (_TURNER_M[j][i], _TURNER_S[j][i])
               for j, c in enumerate(TURNER_COMPARISONS) for i, o in enumerate(TURNER_OUTCOMES)}


def turner_prior(outcome_type: str, comparison_type: str) -> TauPrior:
    """Turner et al. (2015) predictive prior for tau of a log odds ratio, as a TauPrior.

    Turner et al. give log tau^2 ~ N(m, s^2) by outcome type and type of
    comparison (their Table IV, ``TURNER_2015``); tau = sqrt(tau^2) then has
    log tau ~ N(m/2, (s/2)^2), so this returns ``lognormal(m / 2, s / 2)``.
    Example: ``turner_prior("subjective outcomes (various)",
    "pharmacological vs placebo / control")`` is Table IV's
    log tau^2 ~ N(-2.70, 1.52^2), i.e. ``lognormal(-1.35, 0.76)``.

    Parameters
    ----------
    outcome_type : str
        One of ``TURNER_OUTCOMES`` (case and spaces around "/" ignored).
    comparison_type : str
        One of ``TURNER_COMPARISONS`` ("vs." accepted for "vs").

    Notes
    -----
    The values are for log odds ratios in a general setting; Turner et al.
    suggest them for log risk ratios too as an approximation. For
    standardised mean differences Rhodes et al. (2015) give log-t (5 df)
    predictive distributions, which are not a log-normal and are not
    offered here.
    """
    def key(text: str) -> str:
        t = " ".join(str(text).lower().replace("vs.", "vs").split())
        return t.replace(" / ", "/").replace("/ ", "/").replace(" /", "/")
    outcomes = {key(o): o for o in TURNER_OUTCOMES}
    comparisons = {key(c): c for c in TURNER_COMPARISONS}
    o, c = outcomes.get(key(outcome_type)), comparisons.get(key(comparison_type))
    if o is None:
        raise ValueError(f"Turner prior: unknown outcome type {outcome_type!r}; one of: "
                         + "; ".join(TURNER_OUTCOMES))
    if c is None:
        raise ValueError(f"Turner prior: unknown comparison type {comparison_type!r}; one of: "
                         + "; ".join(TURNER_COMPARISONS))
    m, sd = TURNER_2015[(o, c)]
    return lognormal(m / 2.0, sd / 2.0)


@dataclass(frozen=True)
class MuPrior:
    """Prior on mu: flat (``sd`` is None, bayesmeta's default) or N(mean, sd^2)."""

    mean: float = 0.0
    sd: float | None = None

    def __str__(self) -> str:
        return "flat" if self.sd is None else f"normal:{self.mean:g}:{self.sd:g}"


FLAT = MuPrior()

#: Spellings of the command line: name -> (constructor, parameter names).
TAU_PRIORS = {"halfnormal": (halfnormal, ("SCALE",)), "halfcauchy": (halfcauchy, ("SCALE",)),
              "lognormal": (lognormal, ("MU", "SIGMA")), "uniform": (uniform, ("UPPER",))}


def _spec_numbers(spec: str, names: tuple[str, ...], form: str, what: str) -> list[float]:
    parts = spec.split(":")[1:]
    if len(parts) != len(names):
        raise ValueError(f"{what} {spec!r}: expected {form}")
    out = []
    for name, text in zip(names, parts):
        try:
            out.append(float(text))
        except ValueError:
            raise ValueError(f"{what} {spec!r}: {name} = {text!r} is not a number; "
                             f"expected {form}") from None
    return out


def parse_tau_prior(spec: str, *, what: str = "tau prior") -> TauPrior:
    """``halfnormal:SCALE``, ``halfcauchy:SCALE``, ``lognormal:MU:SIGMA`` or ``uniform:UPPER``.

    A bad spec raises a one-line ValueError that starts with ``what`` and the
    spec (the command line passes ``what="--tau-prior"``).
    """
    name = spec.split(":")[0].strip().lower()
    forms = (", ".join(f"{n}:" + ":".join(p) for n, (_, p) in TAU_PRIORS.items())
             + " or turner:OUTCOME TYPE:COMPARISON TYPE")
    if name == "turner":   # Turner et al. 2015's Table IV by name (no colons in its names)
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"{what} {spec!r}: expected turner:OUTCOME TYPE:COMPARISON TYPE")
        try:
            prior = turner_prior(parts[1], parts[2])
        except ValueError as exc:
            raise ValueError(f"{what} {spec!r}: {exc}") from None
        return prior
    if name not in TAU_PRIORS:
        raise ValueError(f"{what} {spec!r}: unknown family {name!r}; write one of {forms}")
    make, names = TAU_PRIORS[name]
    numbers = _spec_numbers(spec, names, f"{name}:" + ":".join(names), what)
    try:
        return make(*numbers)
    except ValueError as exc:
        raise ValueError(f"{what} {spec!r}: {exc}") from None


def parse_mu_prior(spec: str | None, *, what: str = "mu prior") -> MuPrior:
    """None or ``flat`` -> flat; ``normal:MEAN:SD`` -> N(MEAN, SD^2)."""
    if spec is None or spec.strip().lower() == "flat":
        return FLAT
    if spec.split(":")[0].strip().lower() != "normal":
        raise ValueError(f"{what} {spec!r}: write normal:MEAN:SD or flat")
    mean, sd = _spec_numbers(spec, ("MEAN", "SD"), "normal:MEAN:SD", what)
    if not math.isfinite(mean):
        raise ValueError(f"{what} {spec!r}: MEAN must be a finite number")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"{what} {spec!r}: SD must be a finite number > 0")
    return MuPrior(mean, sd)


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Summary:
    """Posterior summary of one scalar.

    ``ci``: equal-tailed interval at ``level``; ``shortest``: the shortest
    single interval of that probability.
    """

    median: float
    mean: float
    sd: float
    ci: Interval
    shortest: Interval


@dataclass(frozen=True)
class BayesFit:
    """Result of ``bayesmeta``.

    Attributes
    ----------
    k : int
    tau_prior, mu_prior : str
        As spelled on the command line (``halfnormal:0.5``, ``flat``).
    level : float
        Credible level in percent of every interval.
    mu, tau, pred : Summary
        Overall effect, heterogeneity and the effect in a new study.
    prob_below_null : float
        P(mu < 0 | y) (benefit, for a log ratio of harmful events).
    threshold, prob_below_threshold : float
        P(mu < threshold | y).
    study_mean, study_sd : ndarray, shape (k,)
        Posterior mean and sd of each study's true effect theta_i (shrinkage).
    study_ci : tuple of Interval, length k
        Equal-tailed credible interval at ``level`` of each theta_i: exact
        quantiles of the mixture over tau of the normals theta_i | tau, y
        (module docstring), like mu's.
    tau_grid, tau_density, mu_grid, mu_density : ndarray, shape (DENSITY_POINTS,)
        Marginal posterior densities for plotting.
    tau_prior_density : ndarray, shape (DENSITY_POINTS,)
        The prior p(tau) on ``tau_grid`` (for overlaying prior and posterior).
    cond_mu_mean, cond_mu_sd : ndarray, shape (DENSITY_POINTS,)
        M(tau) = E(mu | tau, y) and 1/sqrt(W(tau)) = sd(mu | tau, y) on
        ``tau_grid``: mu | tau, y is normal, so the joint posterior is
        p(mu, tau | y) = p(tau | y) N(mu; M(tau), 1/W(tau)) exactly
        (``joint_density``).
    log_evidence : float
        log int p(tau) p(y | tau) dtau less the constants that do not depend
        on tau (2 pi, the mu prior's 1/sd): comparable between tau priors
        for the same data and mu prior only (Bayes factors between them).
    """

    k: int
    tau_prior: str
    mu_prior: str
    level: float
    mu: Summary
    tau: Summary
    pred: Summary
    prob_below_null: float
    threshold: float
    prob_below_threshold: float
    study_mean: np.ndarray
    study_sd: np.ndarray
    tau_grid: np.ndarray
    tau_density: np.ndarray
    mu_grid: np.ndarray
    mu_density: np.ndarray
    log_evidence: float
    study_ci: tuple[Interval, ...]
    tau_prior_density: np.ndarray
    cond_mu_mean: np.ndarray
    cond_mu_sd: np.ndarray

    def joint_density(self, mu=None) -> np.ndarray:
        """p(mu, tau | y) on ``tau_grid`` x ``mu`` (default ``mu_grid``), shape (n_tau, n_mu).

        Exact: p(tau | y) N(mu; M(tau), 1/W(tau)) (module docstring), from
        ``tau_density``, ``cond_mu_mean`` and ``cond_mu_sd``; normalised
        over (mu, tau) on the whole plane, not on the grid.
        """
        from .result import joint_posterior
        return joint_posterior(self.tau_density, self.cond_mu_mean, self.cond_mu_sd,
                               self.mu_grid if mu is None else mu)

    def to_dict(self) -> dict:
        """Flat JSON-ready keys: ``mu.median``, ``mu.ci95`` = [low, high], ..."""
        lv = f"{self.level:g}"
        out: dict = {"k": self.k, "tau_prior": self.tau_prior, "mu_prior": self.mu_prior}
        for name in ("mu", "tau", "pred"):
            s: Summary = getattr(self, name)
            out[f"{name}.median"] = s.median
            out[f"{name}.mean"] = s.mean
            out[f"{name}.sd"] = s.sd
            out[f"{name}.ci{lv}"] = [s.ci.low, s.ci.high]
            out[f"{name}.shortest{lv}"] = [s.shortest.low, s.shortest.high]
        out["prob_below_null"] = self.prob_below_null
        out["threshold"] = self.threshold
        out["prob_below_threshold"] = self.prob_below_threshold
        out["study.mean"] = self.study_mean.tolist()
        out["study.sd"] = self.study_sd.tolist()
        return out


# --------------------------------------------------------------------------- core

def _conditional(y: np.ndarray, v: np.ndarray, tau: np.ndarray, mu_prior: MuPrior):
    """Per tau: log p(y | tau) (up to a constant), M = E(mu | tau, y), W = 1/Var(mu | tau, y).

    Shapes: tau (n,) -> three (n,) arrays. See the module docstring.
    """
    w = 1.0 / (v[None, :] + tau[:, None] ** 2)
    half_log_w = 0.5 * np.log(w).sum(axis=1)
    if mu_prior.sd is not None:
        w0 = 1.0 / mu_prior.sd ** 2
        w = np.concatenate([w, np.full((tau.size, 1), w0)], axis=1)
        y = np.append(y, mu_prior.mean)
    W = w.sum(axis=1)
    M = (w * y[None, :]).sum(axis=1) / W
    Q = (w * (y[None, :] - M[:, None]) ** 2).sum(axis=1)
    return half_log_w - 0.5 * np.log(W) - 0.5 * Q, M, W


def _quantile(cdf_pdf: Callable[[float], tuple[float, float]], p: float,
              lo: float, hi: float, x0: float) -> float:
    """x with cdf(x) = p on [lo, hi] (cdf(lo) <= p <= cdf(hi)): Newton kept in the bracket.

    ``cdf_pdf(x)`` returns (cdf, density). A Newton step that leaves the
    bracket (or a zero density) is replaced by bisection, so convergence is
    guaranteed; near the root Newton is quadratic.
    """
    x = min(max(x0, lo), hi)
    for _ in range(QUANTILE_MAXITER):
        F, d = cdf_pdf(x)
        f = F - p
        if abs(f) <= QUANTILE_PTOL:
            return float(x)
        if f > 0:
            hi = x
        else:
            lo = x
        if hi - lo <= QUANTILE_XTOL * max(1.0, abs(x)):
            return float(0.5 * (lo + hi))
        step = x - f / d if d > 0 else math.nan
        x = step if lo < step < hi else 0.5 * (lo + hi)
    return float(x)


class _NormalMixture:
    """sum_j q_j N(m_j, s_j^2): CDF, density and quantiles (the marginals of mu, theta).

    Quantile searches start from a table of the exact CDF at ``TABLE_SCORES``
    standard deviations around the mean: the bracket is the table cell that
    holds p, and Newton needs 2-3 steps from the linear interpolate.
    """

    def __init__(self, q: np.ndarray, m: np.ndarray, s: np.ndarray):
        self.q, self.m, self.s = q, m, s
        self.mean = float(q @ m)
        self.sd = float(math.sqrt(max(q @ (s ** 2 + m ** 2) - self.mean ** 2, 0.0)))
        self.lo = float(np.min(m - 40.0 * s))
        self.hi = float(np.max(m + 40.0 * s))
        xs = self.mean + self.sd * TABLE_SCORES
        self._tx = np.concatenate([[self.lo], xs[(xs > self.lo) & (xs < self.hi)], [self.hi]])
        self._tF = special.ndtr((self._tx[:, None] - m[None, :]) / s[None, :]) @ q
        self._tF[0], self._tF[-1] = 0.0, 1.0

    def cdf(self, x: float) -> float:
        return float(self.q @ special.ndtr((x - self.m) / self.s))

    def cdf_pdf(self, x: float) -> tuple[float, float]:
        z = (x - self.m) / self.s
        return (float(self.q @ special.ndtr(z)),
                float(self.q @ (np.exp(-0.5 * z * z) / self.s)) / math.sqrt(2.0 * math.pi))

    def pdf(self, x) -> np.ndarray | float:
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        z = (xs[:, None] - self.m[None, :]) / self.s[None, :]
        d = (np.exp(-0.5 * z * z) / self.s[None, :]) @ self.q / math.sqrt(2.0 * math.pi)
        return float(d[0]) if np.ndim(x) == 0 else d

    def ppf(self, p: float) -> float:
        if p <= 0.0:
            return -math.inf
        if p >= 1.0:
            return math.inf
        j = int(np.clip(np.searchsorted(self._tF, p, side="right") - 1, 0, self._tx.size - 2))
        lo, hi = float(self._tx[j]), float(self._tx[j + 1])
        dF = self._tF[j + 1] - self._tF[j]
        frac = (p - self._tF[j]) / dF if dF > 0 else 0.5
        return _quantile(self.cdf_pdf, p, lo, hi, lo + min(max(frac, 0.0), 1.0) * (hi - lo))


def _mixture_ppf_columns(q: np.ndarray, m: np.ndarray, s: np.ndarray, p: float,
                         mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The p-quantile of each column's mixture sum_j q_j N(m_jc, s_jc^2), all columns at once.

    The same safeguarded Newton iteration as ``_quantile`` (Newton kept in
    a bracket, bisection when a step leaves it; the same stopping rules),
    vectorised over the k columns (one per study): building a
    ``_NormalMixture`` CDF table per study made a k = 200 fit ten times
    slower. Started from the normal with the mixture's mean and sd; the
    bracket is every component's mean -/+ 40 sds.
    """
    lo = np.min(m - 40.0 * s, axis=0)
    hi = np.max(m + 40.0 * s, axis=0)
    x = np.clip(mean + sd * special.ndtri(p), lo, hi)
    done = np.zeros(x.shape, dtype=bool)
    for _ in range(QUANTILE_MAXITER):
        z = (x[None, :] - m) / s
        F = q @ special.ndtr(z)
        d = q @ (np.exp(-0.5 * z * z) / s) / math.sqrt(2.0 * math.pi)
        f = F - p
        done |= np.abs(f) <= QUANTILE_PTOL
        hi = np.where(~done & (f > 0), x, hi)
        lo = np.where(~done & (f <= 0), x, lo)
        narrow = ~done & (hi - lo <= QUANTILE_XTOL * np.maximum(1.0, np.abs(x)))
        x = np.where(narrow, 0.5 * (lo + hi), x)
        done |= narrow
        if done.all():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(d > 0, x - f / d, np.nan)
        inside = (lo < step) & (step < hi)
        x = np.where(done, x, np.where(inside, step, 0.5 * (lo + hi)))
    return x


class _TauPosterior:
    """p(tau | y) as normalised composite Gauss-Legendre weights on z = log tau."""

    def __init__(self, logpost_z: Callable[[np.ndarray], np.ndarray], edges: np.ndarray):
        self._lp = logpost_z
        self.edges = edges
        half = 0.5 * np.diff(edges)
        mid = 0.5 * (edges[:-1] + edges[1:])
        z = (mid[:, None] + half[:, None] * _GL_X[None, :])
        lp = logpost_z(z.ravel()).reshape(z.shape)
        self.shift = float(np.max(lp))
        g = np.exp(lp - self.shift) * (half[:, None] * _GL_W[None, :])
        self.norm = float(g.sum())
        self.panel_mass = g.sum(axis=1) / self.norm
        self.cum = np.concatenate([[0.0], np.cumsum(self.panel_mass)])
        self.z = z.ravel()
        self.q = g.ravel() / self.norm

    def pdf_z(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        return np.exp(self._lp(np.atleast_1d(z)) - self.shift).reshape(z.shape) / self.norm

    def cdf_z(self, z: float) -> float:
        if z <= self.edges[0]:
            return 0.0
        if z >= self.edges[-1]:
            return 1.0
        j = int(np.searchsorted(self.edges, z, side="right")) - 1
        a = self.edges[j]
        half = 0.5 * (z - a)
        nodes = a + half * (_GL_X + 1.0)
        return float(self.cum[j] + half * (_GL_W @ self.pdf_z(nodes)))

    def cdf_pdf_z(self, z: float) -> tuple[float, float]:
        return self.cdf_z(z), float(self.pdf_z(z))

    def ppf_z(self, p: float) -> float:
        """Quantile on z: bracketed by the panel whose exact CDF range holds p."""
        j = int(np.clip(np.searchsorted(self.cum, p, side="right") - 1, 0, self.cum.size - 2))
        lo, hi = float(self.edges[j]), float(self.edges[j + 1])
        frac = (p - self.cum[j]) / max(self.panel_mass[j], np.finfo(float).tiny)
        return _quantile(self.cdf_pdf_z, p, lo, hi,
                         lo + min(max(frac, 0.0), 1.0) * (hi - lo))

    def ppf(self, p: float) -> float:
        if p <= 0.0:
            return 0.0
        return math.exp(self.edges[-1]) if p >= 1.0 else math.exp(self.ppf_z(p))

    def pdf(self, tau: float) -> float:
        """Density in tau (the z density over the Jacobian tau)."""
        return float(self.pdf_z(math.log(tau))) / tau if tau > 0 else math.nan


def _shortest(ppf: Callable[[float], float], pdf: Callable[[float], float], prob: float,
              lower_bounded: bool) -> Interval:
    """Shortest interval [ppf(a), ppf(a + prob)] over a in [0, 1 - prob].

    At the optimum of a unimodal density the two ends have equal density
    (d/da of the width is 1/f(high) - 1/f(low)), so a is the root of
    f(ppf(a + prob)) - f(ppf(a)), found by Brent's method. With
    ``lower_bounded`` (tau >= 0) and a density that is higher at the upper
    end for every a (decreasing from 0), the interval is [0, ppf(prob)].
    """
    def gap(a):
        return pdf(ppf(a + prob)) - pdf(ppf(a))
    a_lo, a_hi = SHORTEST_PTOL, 1.0 - prob - SHORTEST_PTOL
    g_lo = 1.0 if not lower_bounded else gap(a_lo)
    if lower_bounded and g_lo <= 0:
        return Interval(0.0, ppf(prob))
    if gap(a_hi) >= 0:   # density increasing throughout: the upper tail
        return Interval(ppf(1.0 - prob), ppf(1.0))
    a = optimize.brentq(gap, a_lo, a_hi, xtol=SHORTEST_PTOL, rtol=4 * np.finfo(float).eps)
    return Interval(ppf(a), ppf(a + prob))


def _summary(ppf, pdf, mean: float, sd: float, level: float,
             lower_bounded: bool = False) -> Summary:
    alpha = 1.0 - level / 100.0
    return Summary(median=ppf(0.5), mean=mean, sd=sd,
                   ci=Interval(ppf(alpha / 2), ppf(1 - alpha / 2)),
                   shortest=_shortest(ppf, pdf, level / 100.0, lower_bounded))


def _locate(logpost_z: Callable[[np.ndarray], np.ndarray], v: np.ndarray,
            prior: TauPrior) -> np.ndarray:
    """Panel edges covering where log p(z | y) is within LOG_CUT of its maximum."""
    base = 0.5 * math.log(float(np.median(v)))
    wide = base + np.arange(COARSE_SPAN[0], COARSE_SPAN[1] + COARSE_STEP, COARSE_STEP)
    with np.errstate(divide="ignore"):
        from_prior = np.log(np.asarray(prior.ppf(special.ndtr(PRIOR_SCORES)), dtype=float))
    coarse = np.unique(np.concatenate([wide, from_prior[np.isfinite(from_prior)]]))
    if math.isfinite(prior.upper):
        coarse = np.unique(np.append(coarse[coarse < math.log(prior.upper)],
                                     math.log(prior.upper)))
    lp = logpost_z(coarse)
    cut = np.max(lp) - LOG_CUT
    keep = np.flatnonzero(lp > cut)
    lo = _edge(logpost_z, cut, coarse[max(keep[0] - 1, 0)], coarse[keep[0]])
    hi = _edge(logpost_z, cut, coarse[min(keep[-1] + 1, coarse.size - 1)], coarse[keep[-1]])
    return np.linspace(lo, hi, N_PANELS + 1)


def _edge(logpost_z, cut: float, outside: float, inside: float) -> float:
    """Narrow [outside, inside] to within EDGE_REFINE^-EDGE_ROUNDS of where lp crosses ``cut``.

    Without this a posterior narrower than a coarse step (a point-mass-like
    prior) would be spread over a range of many coarse steps and fall into
    one panel. The returned edge stays on the outside of the crossing.
    """
    for _ in range(EDGE_ROUNDS):
        zs = np.linspace(outside, inside, EDGE_REFINE + 1)
        above = np.flatnonzero(logpost_z(zs) > cut)
        if above.size == 0 or above[0] == 0:
            break
        outside, inside = zs[above[0] - 1], zs[above[0]]
    return float(outside)


def bayesmeta(yi, vi, *, tau_prior: TauPrior, mu_prior: MuPrior = FLAT, level: float = 95.0,
              threshold: float = 0.0, n_panels: int | None = None) -> BayesFit:
    """Bayesian random-effects meta-analysis: the posterior by quadrature over tau.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect estimates and their sampling variances (finite, vi > 0), k >= 1.
    tau_prior : TauPrior
        ``halfnormal(s)``, ``halfcauchy(s)``, ``lognormal(m, sigma)``, ``uniform(b)``.
    mu_prior : MuPrior
        ``FLAT`` (default, as bayesmeta's ``mu.prior`` default) or ``MuPrior(mean, sd)``.
    level : float
        Credible level in percent.
    threshold : float
        ``prob_below_threshold`` = P(mu < threshold | y).
    n_panels : int, optional
        Gauss-Legendre panels (default ``N_PANELS``); for convergence checks.

    Returns
    -------
    BayesFit
        See the module docstring for the formulas. The same quantities as
        bayesmeta's (Röver 2020) ``summary``, ``post.interval``,
        ``pposterior`` and ``theta``, but NOT checked against bayesmeta: R
        with bayesmeta is not available here, so the tests compare with an
        independent brute-force 2-D grid instead.
    """
    y = as_float_array(yi, "yi")
    v = as_float_array(vi, "vi")
    if y.shape != v.shape:
        raise ValueError(f"yi and vi differ in length ({y.size} and {v.size})")
    if y.size == 0:
        raise MetaError("no studies: a meta-analysis needs k >= 1")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise ValueError("yi and vi must be finite")
    if np.any(v <= 0):
        raise ValueError("sampling variances vi must be > 0")
    if not 0 < level < 100:
        raise ValueError(f"level must be in (0, 100) percent, got {level!r}")

    def logpost_z(z):
        tau = np.exp(z)
        ll, _, _ = _conditional(y, v, tau, mu_prior)
        with np.errstate(invalid="ignore"):
            out = tau_prior.logpdf(tau) + ll + z
        return np.where(np.isnan(out), -np.inf, out)

    edges = _locate(logpost_z, v, tau_prior)
    if n_panels is not None:
        edges = np.linspace(edges[0], edges[-1], n_panels + 1)
    post = _TauPosterior(logpost_z, edges)
    tau = np.exp(post.z)
    _, M, W = _conditional(y, v, tau, mu_prior)
    S = 1.0 / np.sqrt(W)
    q = post.q

    mu_mix = _NormalMixture(q, M, S)
    pred_mix = _NormalMixture(q, M, np.sqrt(S ** 2 + tau ** 2))
    tau_mean = float(q @ tau)
    tau_sd = float(math.sqrt(max(q @ tau ** 2 - tau_mean ** 2, 0.0)))
    # p(tau | y) ~ tau^-(tail_power + k - 1) (flat mu; one more with a normal
    # mu prior, whose W tends to 1/sd^2); E tau^r exists iff r < that - 1.
    tail = tau_prior.tail_power + y.size - (1 if mu_prior.sd is None else 0)
    mean_exists, var_exists = tail > 2.0, tail > 3.0
    if not mean_exists:
        tau_mean = math.inf
        pred_mix.mean = math.nan
        if mu_prior.sd is None:
            mu_mix.mean = math.nan
    if not var_exists:
        tau_sd = pred_mix.sd = math.inf
        if mu_prior.sd is None:
            mu_mix.sd = math.inf

    B = v[None, :] / (v[None, :] + tau[:, None] ** 2)
    th_m = B * M[:, None] + (1.0 - B) * y[None, :]
    th_v = (1.0 - B) * v[None, :] + B ** 2 / W[:, None]
    study_mean = q @ th_m
    study_sd = np.sqrt(np.maximum(q @ (th_v + th_m ** 2) - study_mean ** 2, 0.0))
    alpha = 1.0 - level / 100.0
    th_s = np.sqrt(th_v)
    study_lo = _mixture_ppf_columns(q, th_m, th_s, alpha / 2, study_mean, study_sd)
    study_hi = _mixture_ppf_columns(q, th_m, th_s, 1 - alpha / 2, study_mean, study_sd)
    study_ci = [Interval(float(a), float(b)) for a, b in zip(study_lo, study_hi)]

    mu_s = _summary(mu_mix.ppf, mu_mix.pdf, mu_mix.mean, mu_mix.sd, level)
    tau_s = _summary(post.ppf, post.pdf, tau_mean, tau_sd, level, lower_bounded=True)
    pred_s = _summary(pred_mix.ppf, pred_mix.pdf, pred_mix.mean, pred_mix.sd, level)

    tau_top = min(post.ppf(0.995) * 1.2, tau_prior.upper)
    tau_grid = np.linspace(0.0, tau_top, DENSITY_POINTS)
    ll0, cond_M, cond_W = _conditional(y, v, tau_grid, mu_prior)
    with np.errstate(divide="ignore"):
        tau_density = np.exp(tau_prior.logpdf(tau_grid) + ll0 - post.shift) / post.norm
    mu_grid = np.linspace(mu_mix.ppf(0.0005), mu_mix.ppf(0.9995), DENSITY_POINTS)

    def frozen(a):
        a = np.asarray(a, dtype=float)
        a.setflags(write=False)
        return a

    return BayesFit(
        k=int(y.size), tau_prior=str(tau_prior), mu_prior=str(mu_prior), level=float(level),
        mu=mu_s, tau=tau_s, pred=pred_s,
        prob_below_null=mu_mix.cdf(0.0), threshold=float(threshold),
        prob_below_threshold=mu_mix.cdf(float(threshold)),
        study_mean=frozen(study_mean), study_sd=frozen(study_sd),
        tau_grid=frozen(tau_grid), tau_density=frozen(tau_density),
        mu_grid=frozen(mu_grid), mu_density=frozen(mu_mix.pdf(mu_grid)),
        log_evidence=post.shift + math.log(post.norm),
        study_ci=tuple(study_ci), tau_prior_density=frozen(tau_prior.pdf(tau_grid)),
        cond_mu_mean=frozen(cond_M), cond_mu_sd=frozen(1.0 / np.sqrt(cond_W)))


# --------------------------------------------------------------------------- input

def _cell(path: str, line: int, column: str, text: str, *, variance: bool) -> float:
    """One cell as a finite number (a variance: > 0), or a ValueError naming the place."""
    from .validate import Problem
    s = text.strip()
    rule = None
    try:
        value = float(s)
    except ValueError:
        value = math.nan
        rule = ("empty cell: every study needs a value (drop the row)" if not s
                else "not a number")
    if rule is None and not math.isfinite(value):
        rule = "must be a finite number"
    if rule is None and variance and value <= 0:
        rule = "a sampling variance must be > 0"
    if rule is not None:
        raise ValueError(str(Problem(path, line, column, text, rule)))
    return value


def read_effects(path, yi: str, vi: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns ``yi`` and ``vi`` of a CSV (header on line 1) as float arrays.

    Errors are one line, as ``ntxmeta.validate.Problem``: ``FILE:LINE:
    column 'vi' = '-0.1': a sampling variance must be > 0``.
    """
    import csv
    from .validate import Problem
    name = str(path)
    try:
        return _read_effects(path, name, yi, vi, csv)
    except UnicodeDecodeError as exc:
        raise ValueError(str(Problem(name, None, None, None,
                                     f"not UTF-8 text (byte {exc.start}); save the file as "
                                     "UTF-8"))) from None


def _read_effects(path, name: str, yi: str, vi: str, csv) -> tuple[np.ndarray, np.ndarray]:
    from .validate import Problem
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(str(Problem(name, None, None, None,
                                         f"empty file; expected a header with {yi} and {vi}")))
        header = [h.strip() for h in header]
        for col in (yi, vi):
            if col not in header:
                raise ValueError(str(Problem(name, 1, col, None,
                                             "no such column; the header has "
                                             + ", ".join(header))))
        iy, iv = header.index(yi), header.index(vi)
        ys, vs = [], []
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise ValueError(str(Problem(name, line, None, None,
                                             f"{len(row)} cells, the header has {len(header)}")))
            ys.append(_cell(name, line, yi, row[iy], variance=False))
            vs.append(_cell(name, line, vi, row[iv], variance=True))
    if not ys:
        raise ValueError(str(Problem(name, None, None, None, "no study rows after the header")))
    return np.array(ys), np.array(vs)
