"""The exact Bayesian random-effects fit against MCMC (PyMC NUTS) on the same model.

Run ``.venv/bin/python bench/bayes_mcmc.py`` (needs the ``bench`` extra:
``pip install -e '.[bench]'``, i.e. pymc and arviz; pytensor compiles C, so
a C compiler must be on the PATH). ``--draws``/``--chains`` change the run.

Model, identical on both sides:
  y_i ~ N(theta_i, v_i),  theta_i = mu + tau * eta_i,  eta_i ~ N(0, 1)
  (the non-centred parameterisation, which NUTS samples without the funnel
  of the centred one), tau ~ half-normal(TAU_SCALE), mu ~ N(0, MU_SD^2).
bayesmeta's default flat prior on mu is improper and cannot be sampled;
N(0, 100^2) stands in for it, on both sides, so the two fit exactly one
model. How far that is from the flat prior is printed too (with posterior
sds of ~0.1-0.5 on these data a prior sd of 100 moves every summary by
far less than the Monte Carlo error).

Data: three vendored metafor ``escalc`` tables of tests/fixtures/oracle/
(yi, vi exactly as metafor computed them): dat.bcg as log risk ratios
(k = 13), its first three trials (k = 3) and dat.normand1999 as SMDs
(k = 9).

For mu's median, mu's 95% equal-tailed interval ends, tau's median and
P(mu < 0) the table shows the exact value, the MCMC estimate, its Monte
Carlo standard error from arviz (``mcse(method="quantile", prob=p)`` for
the quantiles, ``mcse(method="mean")`` of the indicator mu < 0 for the
probability; when every draw falls on one side of 0 that is 0, and the
binomial sqrt(p (1 - p) / ESS) with the exact p and mu's tail ESS stands in,
marked (*)) and |exact - MCMC| / MCSE. A dataset passes when every
ratio is below PASS_Z (4: for a correct sampler |diff|/MCSE is roughly
standard normal, so 4 is exceeded with probability ~6e-5 per number).
The times are the exact fit (median of repeats, ms) and the whole MCMC
run (compile + tune + draws, s).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ntxmeta.bayes import FLAT, MuPrior, bayesmeta, halfnormal  # noqa: E402

#: Datasets: (name, fixture folder, measure label).
DATASETS = (("BCG, log RR (k = 13)", "bcg_RR"),
            ("BCG first 3, log RR (k = 3)", "bcg_k3_RR"),
            ("Normand 1999, SMD (k = 9)", "normand1999_SMD"))
#: Half-normal scale of tau (a weakly informative prior for log ratios and
#: SMDs: Friede et al. 2017; Röver et al. 2021).
TAU_SCALE = 0.5
#: The "flat" prior on mu, as a normal that MCMC can sample.
MU_SD = 100.0
#: |exact - MCMC| / MCSE below this passes (see the module docstring).
PASS_Z = 4.0
#: NUTS settings: target acceptance raised from PyMC's 0.8 so that the
#: small-tau region of the k = 3 posterior gives no divergences.
TARGET_ACCEPT = 0.95
TUNE = 2000
SEED = 20261204
#: Repeats of the exact fit for its median time.
EXACT_REPEATS = 20


def load(folder: str) -> tuple[np.ndarray, np.ndarray]:
    out = json.loads((ROOT / "tests" / "fixtures" / "oracle" / folder / "out.json").read_text())
    return np.asarray(out["escalc"]["yi"], float), np.asarray(out["escalc"]["vi"], float)


def exact(y, v):
    tp, mp = halfnormal(TAU_SCALE), MuPrior(0.0, MU_SD)
    times = []
    for _ in range(EXACT_REPEATS):
        t0 = time.perf_counter()
        fit = bayesmeta(y, v, tau_prior=tp, mu_prior=mp)
        times.append(time.perf_counter() - t0)
    flat = bayesmeta(y, v, tau_prior=tp, mu_prior=FLAT)
    return fit, flat, float(np.median(times))


def mcmc(y, v, chains: int, draws: int, cores: int):
    import pymc as pm
    t0 = time.perf_counter()
    with pm.Model():
        mu = pm.Normal("mu", 0.0, MU_SD)
        tau = pm.HalfNormal("tau", TAU_SCALE)
        eta = pm.Normal("eta", 0.0, 1.0, shape=y.size)
        pm.Normal("y", mu + tau * eta, np.sqrt(v), observed=y)
        idata = pm.sample(draws=draws, tune=TUNE, chains=chains, cores=cores,
                          target_accept=TARGET_ACCEPT, random_seed=SEED, progressbar=False,
                          compute_convergence_checks=False)
    seconds = time.perf_counter() - t0
    post = idata.posterior
    divergences = int(idata.sample_stats["diverging"].values.sum())
    return post["mu"].values, post["tau"].values, seconds, divergences


def _scalar(x) -> float:
    """arviz returns a 0-d or a 1-element array depending on the method."""
    return float(np.asarray(x).reshape(-1)[0])


def compare(name, y, v, chains, draws, cores) -> bool:
    import arviz as az
    fit, flat, t_exact = exact(y, v)
    mu_s, tau_s, t_mcmc, div = mcmc(y, v, chains, draws, cores)
    below = (mu_s < 0).astype(float)
    rows = [
        ("mu median", fit.mu.median, np.median(mu_s),
         float(az.mcse(mu_s, method="quantile", prob=0.5)), flat.mu.median),
        ("mu 2.5%", fit.mu.ci.low, np.quantile(mu_s, 0.025),
         float(az.mcse(mu_s, method="quantile", prob=0.025)), flat.mu.ci.low),
        ("mu 97.5%", fit.mu.ci.high, np.quantile(mu_s, 0.975),
         float(az.mcse(mu_s, method="quantile", prob=0.975)), flat.mu.ci.high),
        ("tau median", fit.tau.median, np.median(tau_s),
         float(az.mcse(tau_s, method="quantile", prob=0.5)), flat.tau.median),
        ("P(mu<0)", fit.prob_below_null, below.mean(),
         _scalar(az.mcse(below, method="mean")), flat.prob_below_null),
    ]
    mark = ""
    if rows[-1][3] == 0.0:  # every draw on one side of 0: the indicator has no variance
        tail_ess = float(az.ess(mu_s, method="tail"))
        p = fit.prob_below_null
        rows[-1] = (*rows[-1][:3], math.sqrt(p * (1 - p) / tail_ess), rows[-1][4])
        mark = (f"\n(*) all draws on one side of 0, so arviz's MCSE of the indicator is 0; "
                f"the binomial sqrt(p (1 - p) / ESS) with the exact p and mu's tail ESS "
                f"({tail_ess:.0f}) stands in for it.")
    ess = float(az.ess(mu_s)), float(az.ess(tau_s))
    rhat = float(az.rhat(mu_s)), float(az.rhat(tau_s))
    print(f"\n### {name}\n")
    print(f"{chains} chains x {draws} draws (+{TUNE} tuning), divergences {div}; "
          f"ESS mu {ess[0]:.0f}, tau {ess[1]:.0f}; R-hat mu {rhat[0]:.4f}, tau {rhat[1]:.4f}\n")
    print("| quantity | exact | MCMC | MCSE | abs diff / MCSE | flat-mu exact |")
    print("|---|---:|---:|---:|---:|---:|")
    ok = True
    for label, ex, mc, se, fl in rows:
        z = abs(ex - mc) / se if se > 0 else (0.0 if ex == mc else np.inf)
        ok &= bool(z < PASS_Z)
        star = " (*)" if mark and label == "P(mu<0)" else ""
        print(f"| {label} | {ex:.5f} | {mc:.5f} | {se:.5f}{star} | {z:.2f} | {fl:.5f} |")
    if mark:
        print(mark)
    print(f"\nexact {t_exact * 1e3:.1f} ms, MCMC {t_mcmc:.1f} s "
          f"(ratio {t_mcmc / t_exact:,.0f}x); "
          f"verdict: {'PASS' if ok else 'FAIL'} (every abs diff < {PASS_Z:g} MCSE)")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--cores", type=int, default=1,
                    help="processes for the chains (default 1: the machine is shared)")
    args = ap.parse_args(argv)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    import arviz
    import pymc
    import scipy
    print(f"Date {datetime.date.today()}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, pymc {pymc.__version__}, arviz {arviz.__version__}")
    print(f"Priors: tau ~ half-normal({TAU_SCALE:g}), mu ~ N(0, {MU_SD:g}^2) on both sides "
          "(stands in for the flat prior; last column: the exact fit with the flat prior)")
    results = [compare(name, *load(folder), args.chains, args.draws, args.cores)
               for name, folder in DATASETS]
    print(f"\nOverall: {'PASS' if all(results) else 'FAIL'} ({sum(results)}/{len(results)} datasets)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
