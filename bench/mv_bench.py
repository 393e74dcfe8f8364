"""Speed of ntxmeta.multilevel.rma_mv against metafor 3.8-1 rma.mv, in one run.

    .venv/bin/python bench/mv_bench.py            # with metafor if Rscript is installed
    .venv/bin/python bench/mv_bench.py --no-metafor

Cases: four vendored oracle cases (tests/fixtures/oracle_mv: three-level,
multivariate UN, AR(1) over time points, contrast-based network) and a
synthetic three-level model (200 districts x 5 schools, k = 1,000; seeded),
and one of k = 100,000 for ntxmeta alone.
For each: the fit, the profile-likelihood CIs of every component
(``confint``) and the CR2 tests (``cr2``; clubSandwich ``coef_test``).
Median wall time over repeats after a warm-up (metafor: median of 3 in R's
``system.time``; confint once). Ratio = metafor time / ntxmeta time. Before
the synthetic case is timed, the two fits' sigma^2 are checked to agree
(metafor's default nlminb control: rel.tol 1e-10, so 1e-4 relative).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from ntxmeta import multilevel as ml  # noqa: E402
from test_oracle_mv import FIXTURES, _case, _random  # noqa: E402

CASES = ("konstantopoulos2011_REML", "berkey1998_UN", "ishak2007_AR",
         "hasselblad1998_network_REML")
#: metafor's default control stops at nlminb rel.tol 1e-10: its sigma^2 agree to ~1e-5.
SIGMA2_RTOL = 1e-4


def timeit(fn, reps=5):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def synthetic(path: Path):
    rng = np.random.default_rng(20261204)
    district = np.repeat(np.arange(200), 5)
    school = np.tile(np.arange(5), 200)
    vi = rng.uniform(0.01, 0.2, 1000)
    yi = (0.2 + rng.normal(0, 0.25, 200)[district] + rng.normal(0, 0.18, 1000)
          + rng.normal(0, np.sqrt(vi)))
    d = pd.DataFrame({"district": district, "school": school, "yi": yi, "vi": vi})
    d.to_csv(path, index=False)
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-metafor", action="store_true")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    synth = synthetic(tmp / "synth.csv")
    ours = {}
    for name in CASES:
        ref, spec, d, V, X, names = _case(FIXTURES / name)
        y = d[spec["yi"]].to_numpy(float)
        rnd = _random(d, spec["random"])
        fit_fn = lambda: ml.rma_mv(y, V, X=X, random=rnd, method=spec["method"])  # noqa: E731
        fit = fit_fn()
        cl = d[spec["cluster"]].to_numpy()
        ours[name] = {"fit": timeit(fit_fn), "confint": timeit(lambda: ml.confint(fit), 1),
                      "CR2": timeit(lambda: ml.cr2(fit, cl))}
    rnd = ml.Nested(outer=synth.district.to_numpy(), inner=synth.school.to_numpy())
    sfit = ml.rma_mv(synth.yi.to_numpy(), synth.vi.to_numpy(), random=rnd)
    ours["synthetic_3level"] = {"fit": timeit(lambda: ml.rma_mv(synth.yi.to_numpy(),
                                                                 synth.vi.to_numpy(), random=rnd), 3)}
    # ntxmeta only: k = 100,000 (20,000 districts x 5 schools); metafor's dense
    # k x k matrices would need 80 GB
    rng = np.random.default_rng(20261205)
    dist = np.repeat(np.arange(20000), 5)
    vi = rng.uniform(0.01, 0.2, 100000)
    yi = 0.2 + rng.normal(0, 0.25, 20000)[dist] + rng.normal(0, 0.18, 100000) + rng.normal(0, np.sqrt(vi))
    big = ml.Nested(outer=dist, inner=np.tile(np.arange(5), 20000))
    ours["synthetic_3level_k100000"] = {"fit": timeit(lambda: ml.rma_mv(yi, vi, random=big), 1)}
    theirs = {}
    if not a.no_metafor and shutil.which("Rscript"):
        out = tmp / "r.json"
        subprocess.run(["Rscript", str(ROOT / "bench" / "mv_bench.R"), str(FIXTURES),
                        str(tmp / "synth.csv"), str(out)], check=True)
        theirs = json.loads(out.read_text())
        s2 = np.array(theirs["synthetic_3level"]["sigma2"])
        ok = np.allclose(sfit.sigma2, s2, rtol=SIGMA2_RTOL)
        print(f"synthetic sigma2: ntxmeta {sfit.sigma2} metafor {s2} -> "
              f"{'agree' if ok else 'DIFFER'} (rtol {SIGMA2_RTOL})")
    elif not a.no_metafor:
        print("Rscript not found: metafor not timed")
    print(f"{'case':32s} {'step':8s} {'ntxmeta':>10s} {'metafor':>10s} {'ratio':>7s}")
    for name, steps in ours.items():
        for step, t in steps.items():
            r = theirs.get(name, {}).get(step)
            rs = f"{r:10.4f}" if r is not None else f"{'-':>10s}"
            ratio = f"{r / t:6.1f}x" if r else ""
            print(f"{name:32s} {step:8s} {t:10.4f} {rs} {ratio:>7s}")


if __name__ == "__main__":
    main()
