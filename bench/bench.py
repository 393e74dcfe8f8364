"""Time ntxmeta against pymare, statsmodels and metafor on the same data.

Run ``make bench`` (``.venv/bin/python bench/bench.py``); ``--quick`` for a
short run (k <= 1e5, batch of 10,000 only, fewer repeats). What is timed,
and how, is described in bench/README.md. In short:

* data: one seeded generator, vi ~ U(0.01, 0.2), yi ~ N(0.3, 0.1 + vi)
  (as shared/oracle/timing.R), the same arrays for every tool;
* single fits at k = 1e3 ... 1e6: ntxmeta ``rma`` (everything: estimate, se,
  CI, tau^2, se(tau^2), I^2, H^2, Q, fit statistics, weights; knha for REML),
  pymare (Dataset + fit_dataset + summary: fe stats and heterogeneity),
  statsmodels ``combine_effects`` (DL; "iterated" is Paule-Mandel, timed
  against ntxmeta's PM) and metafor ``rma()`` in an R subprocess at
  k <= ``METAFOR_MAX_K`` (its REML is O(k^3));
* batches of analyses of k = 10: ntxmeta ``rma_batch`` against pymare's
  2-D path (one call for all analyses);
* leave-one-out and cumulative REML at k = 10,000 (``ntxmeta.diagnostics``,
  when that module is present);
* before times are compared, every peer's tau^2 is checked against
  ntxmeta's, within the peer's own convergence tolerance (printed);
* median wall time over repeats; peak memory of one extra, untimed call
  (tracemalloc for Python; R's gc() "max used" for metafor).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntxmeta.rma import _q_at, rma, rma_batch

HERE = Path(__file__).resolve().parent
SEED = 1
#: metafor's rma.uni builds k x k matrices: REML is O(k^3) (170 s at k = 1e4
#: on this machine, see shared/oracle/timing_results.txt), so it is timed only here.
METAFOR_MAX_K = 2_000
#: seconds of repeated calls per measurement (at least MIN_REPS, at most MAX_REPS calls)
BUDGET_S = 1.0
MIN_REPS, MAX_REPS = 3, 25
#: calls slower than this are timed once (see ``timed``)
SLOW_S = 5.0

# Tolerances of the tau^2 check: each peer's own convergence criterion.
#: closed-form estimators (DL): only the order of summation differs
CLOSED_RTOL = 1e-9
#: pymare REML: bounded_scalar_min stops when the bracket is xtol = 1e-6 of the
#: bracket its scan started with (a few % of the whole range of tau^2)
PYMARE_REML_RTOL = 1e-5
#: statsmodels "iterated" (Paule-Mandel) stops when |Q(tau^2) - (k - 1)| < 1e-5;
#: we check that criterion itself, with ntxmeta's Q
STATSMODELS_PM_QTOL = 1e-5
#: metafor (default control) stops Fisher scoring when tau^2 changes by < 1e-5
METAFOR_ATOL = 1e-5


def generic_data(shape, seed=SEED):
    """vi ~ U(0.01, 0.2), yi ~ N(0.3, 0.1 + vi): the data of shared/oracle/timing.R."""
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.01, 0.2, shape)
    yi = rng.normal(0.3, np.sqrt(0.1 + vi))
    return yi, vi


@dataclass
class Row:
    case: str
    tool: str
    seconds: float | None
    peak_mb: float | None
    tau2: object = None
    check: str = ""
    note: str = ""
    reps: int = 0
    ratio: float | None = None
    fastest: float | None = None


@dataclass
class Results:
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, row: Row):
        self.rows.append(row)
        ref = next((r for r in self.rows if r.case == row.case and r.tool.startswith("ntxmeta")),
                   None)
        if (ref is not None and row.seconds and ref.seconds and row is not ref
                and not row.check.startswith("tau2 FAIL")):
            row.ratio = row.seconds / ref.seconds
        shown = "-" if row.seconds is None else fmt_time(row.seconds)
        print(f"  {row.case:<32} {row.tool:<34} {shown:>10}  {row.check}", flush=True)


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def timed(fn, budget=BUDGET_S, min_reps=MIN_REPS, max_reps=MAX_REPS):
    """(median wall time, number of timed calls, last result, fastest call) of repeated
    calls after one warm-up call.

    A call that takes longer than ``SLOW_S`` is timed once, on its first run
    (warming up matters nothing at that length, and it keeps the run short).
    """
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    if first > SLOW_S:
        return first, 1, out, first
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times), out, float(np.min(times))


def peak_mb(fn) -> float:
    """Peak memory (MB) allocated during one call, as traced by tracemalloc."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


# --------------------------------------------------------------------------- peers

def ntx_single(method):
    test = "knha" if method == "REML" else "z"
    return lambda y, v: rma(y, v, method=method, test=test).tau2


def pymare_single(method):
    from pymare import Dataset
    from pymare.estimators import DerSimonianLaird, VarianceBasedLikelihoodEstimator

    def fit(y, v):
        est = DerSimonianLaird() if method == "DL" else VarianceBasedLikelihoodEstimator(method="REML")
        est.fit_dataset(Dataset(y, v))
        res = est.summary()
        res.get_fe_stats()
        res.get_heterogeneity_stats()
        return float(np.ravel(est.params_["tau2"])[0])
    return fit


def statsmodels_single(method):
    from statsmodels.stats.meta_analysis import combine_effects
    re = {"DL": "dl", "PM": "iterated"}[method]
    return lambda y, v: float(combine_effects(y, v, method_re=re).tau2)


def check_tau2(tool, method, y, v, got, ref):
    """The tau^2 check line for a peer, against ntxmeta's tau^2 on the same data.

    ``got``/``ref`` are one value or one per analysis (batches, with y and v
    of shape (m, k)); a line says how many analyses are beyond the peer's
    own tolerance.
    """
    got = np.atleast_1d(np.asarray(got, float))
    ref = np.atleast_1d(np.asarray(ref, float))
    diff = np.abs(got - ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.maximum(np.abs(ref), 1e-300)
    if method == "DL":
        ok, crit = rel <= CLOSED_RTOL, f"rel <= {CLOSED_RTOL:g} (closed form)"
    elif tool == "pymare":
        scale = np.maximum(ref, np.mean(v, axis=-1))
        ok = diff <= PYMARE_REML_RTOL * scale
        crit = f"|diff| <= {PYMARE_REML_RTOL:g} max(tau2, mean v) (xtol 1e-6 of its bracket)"
    elif tool == "statsmodels":
        q, _ = _q_at(got, np.asarray(y)[None], np.asarray(v)[None], np.ones((1, np.size(y))), None)
        dev = np.abs(q - (np.size(y) - 1))
        ok = dev < STATSMODELS_PM_QTOL
        crit = f"its own stop: |Q(tau2) - (k-1)| = {float(np.max(dev)):.1e} < {STATSMODELS_PM_QTOL:g}"
    else:  # metafor
        ok = diff <= METAFOR_ATOL
        crit = f"|diff| <= {METAFOR_ATOL:g} (its threshold)"
    ok = ok & np.isfinite(got)
    worst = float(np.nanmax(rel)) if np.any(np.isfinite(rel)) else float("nan")
    if ok.all():
        return f"tau2 ok: max rel diff {worst:.1e}; {crit}"
    n_bad = int((~ok).sum())
    where = "" if got.size == 1 else f"{n_bad:,} of {got.size:,} analyses "
    return f"tau2 FAIL: {where}peer {float(got[~ok][0]):.6g} vs {float(ref[~ok][0]):.6g}; {crit}"


def metafor_available() -> str | None:
    """None if metafor can be run, else the reason it cannot."""
    if shutil.which("Rscript") is None:
        return "Rscript not found: metafor skipped"
    r = subprocess.run(["Rscript", "-e", "suppressPackageStartupMessages(library(metafor))"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "R package metafor not installed: metafor skipped"
    return None


def run_metafor(jobs, tmp: Path):
    """jobs: list of (label, y, v, method, reps) -> {label: (median s, fastest s, tau2, peak MB)},
    and the versions line."""
    lines = []
    for label, y, v, method, reps in jobs:
        csv = tmp / f"{label}.csv"
        np.savetxt(csv, np.column_stack([y, v]), delimiter=",", header="yi,vi", comments="",
                   fmt="%.17g")
        lines.append(f"{label}\t{csv}\t{method}\t{reps}")
    spec = tmp / "jobs.tsv"
    spec.write_text("\n".join(lines) + "\n")
    r = subprocess.run(["Rscript", str(HERE / "metafor_bench.R"), str(spec)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"metafor_bench.R failed:\n{r.stderr}")
    out, versions = {}, ""
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "RESULT":
            out[parts[1]] = tuple(float(x) for x in parts[2:6])
        elif parts and parts[0] == "VERSIONS":
            versions = " ".join(parts[1:])
    return out, versions


# --------------------------------------------------------------------------- benchmark parts

def bench_single(res: Results, sizes, methods, metafor_reason, tmp):
    jobs = []
    data = {}
    for k in sizes:
        y, v = generic_data(k)
        data[k] = (y, v)
        for method in methods:
            case = f"{method} k={k:,}"
            secs, reps, t_ntx, fastest = timed(lambda: ntx_single(method)(y, v))
            mem = peak_mb(lambda: ntx_single(method)(y, v))
            label = "ntxmeta rma" + (" (knha)" if method == "REML" else "")
            res.add(Row(case, label, secs, mem, t_ntx, reps=reps, fastest=fastest))
            peers = []
            if method in ("DL", "REML"):
                peers.append(("pymare", pymare_single(method)))
            if method in ("DL", "PM"):
                peers.append(("statsmodels", statsmodels_single(method)))
            for tool, fn in peers:
                budget = BUDGET_S if k < 10**6 else 2 * BUDGET_S
                secs, reps, t, fastest = timed(lambda: fn(y, v), budget=budget)
                mem = peak_mb(lambda: fn(y, v))
                name = {"pymare": "pymare " + ("DerSimonianLaird" if method == "DL" else "VBLE(REML)"),
                        "statsmodels": "statsmodels combine_effects"
                        + (" dl" if method == "DL" else " iterated")}[tool]
                res.add(Row(case, name, secs, mem, t, check_tau2(tool, method, y, v, t, t_ntx),
                            reps=reps, fastest=fastest))
            if metafor_reason is None and k <= METAFOR_MAX_K:
                reps = 3 if method == "REML" else 10
                jobs.append((f"{method}_{k}", y, v, method, reps))
    if metafor_reason is not None:
        res.notes.append(metafor_reason)
        print("  " + metafor_reason)
        return
    out, versions = run_metafor(jobs, tmp)
    res.notes.append(f"metafor: {versions}")
    for label, y, v, method, reps in jobs:
        k = int(label.split("_")[1])
        case = f"{method} k={k:,}"
        secs, fastest, tau2, mb = out[label]
        t_ntx = next(r.tau2 for r in res.rows if r.case == case and r.tool.startswith("ntxmeta"))
        res.add(Row(case, "metafor rma (R)", secs, mb, tau2,
                    check_tau2("metafor", method, y, v, tau2, t_ntx), reps=reps, fastest=fastest))


def bench_batch(res: Results, counts, k=10):
    from pymare.estimators import VarianceBasedLikelihoodEstimator
    for m in counts:
        Y, V = generic_data((m, k), seed=SEED + 1)
        case = f"batch {m:,} x k={k} REML knha"
        budget = BUDGET_S if m <= 10**5 else 0.0
        min_reps = MIN_REPS if m <= 10**5 else 1
        secs, reps, fit, fastest = timed(lambda: rma_batch(Y, V, method="REML", test="knha"),
                                budget=budget, min_reps=min_reps)
        mem = peak_mb(lambda: rma_batch(Y, V, method="REML", test="knha"))
        res.add(Row(case, "ntxmeta rma_batch", secs, mem, fit.tau2, reps=reps, fastest=fastest))
        X = np.ones((k, 1))

        def pymare_fit():
            est = VarianceBasedLikelihoodEstimator(method="REML")
            est.fit(Y.T, V.T, X)
            return np.ravel(est.params_["tau2"])
        secs, reps, t, fastest = timed(pymare_fit, budget=budget, min_reps=min_reps)
        mem = peak_mb(pymare_fit)
        res.add(Row(case, "pymare VBLE(REML) 2-D fit", secs, mem, t,
                    check_tau2("pymare", "REML", Y, V, t, fit.tau2), reps=reps, fastest=fastest))


def bench_diagnostics(res: Results, k=10_000):
    try:
        from ntxmeta import diagnostics
    except ImportError:
        msg = "ntxmeta.diagnostics not present: leave-one-out/cumulative not timed"
        res.notes.append(msg)
        print("  " + msg)
        return
    y, v = generic_data(k)
    for name in ("leave1out", "cumulative"):
        fn = getattr(diagnostics, name, None)
        if fn is None:
            res.notes.append(f"ntxmeta.diagnostics.{name} missing")
            continue
        secs, reps, _, fastest = timed(lambda: fn(y, v, method="REML"), budget=2 * BUDGET_S)
        mem = peak_mb(lambda: fn(y, v, method="REML"))
        res.add(Row(f"{name} REML k={k:,}", f"ntxmeta diagnostics.{name}", secs, mem, reps=reps,
                    fastest=fastest))


# --------------------------------------------------------------------------- report

def machine() -> dict:
    info = {"date": datetime.date.today().isoformat(), "nproc": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo
                           if line.startswith("model name"))
        mem = Path("/proc/meminfo").read_text().split()
        info["memory"] = f"{int(mem[1]) / 2**20:.1f} GiB"
    except (OSError, StopIteration, IndexError, ValueError):
        info.setdefault("cpu", platform.processor() or "unknown")
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    import scipy
    import statsmodels
    import pymare
    info["scipy"], info["statsmodels"], info["pymare"] = (scipy.__version__, statsmodels.__version__,
                                                          pymare.__version__)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):
        info["blas"] = "unknown"
    info["load"] = "%.2f %.2f %.2f" % os.getloadavg()
    return info


TARGETS = [  # (case, tool prefix, seconds, MB or None, text)
    ("REML k=1,000,000", "ntxmeta", 0.050, 100.0, "one REML fit (knha) at k = 1e6 < 50 ms, < 100 MB"),
    ("DL k=1,000,000", "ntxmeta", 0.015, None, "one DL fit at k = 1e6 < 15 ms"),
    ("batch 10,000 x k=10 REML knha", "ntxmeta", 0.030, None, "10,000 x k = 10 REML knha < 30 ms"),
    ("batch 1,000,000 x k=10 REML knha", "ntxmeta", 5.0, None, "1,000,000 x k = 10 REML knha < 5 s"),
    ("leave1out REML k=10,000", "ntxmeta", 1.0, None, "leave-one-out REML k = 1e4 < 1 s"),
    ("cumulative REML k=10,000", "ntxmeta", 1.0, None, "cumulative REML k = 1e4 < 1 s"),
]


def report(res: Results, info: dict):
    print("\n## Machine\n")
    for key, val in info.items():
        print(f"- {key}: {val}")
    for note in res.notes:
        print(f"- {note}")
    print("\n## Results (median wall time; ratio = peer time / ntxmeta time)\n")
    print("| case | tool | median | fastest | reps | ratio | peak MB | tau^2 check |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in res.rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.1f}x"
        if r.check.startswith("tau2 FAIL"):
            ratio = "(not comparable)"
        mem = "" if r.peak_mb is None else f"{r.peak_mb:.1f}"
        secs = "-" if r.seconds is None else fmt_time(r.seconds)
        fast = "-" if r.fastest is None else fmt_time(r.fastest)
        print(f"| {r.case} | {r.tool} | {secs} | {fast} | {r.reps} | {ratio} | {mem} | {r.check} |")
    print("\n## Targets\n")
    for case, tool, limit, mb, text in TARGETS:
        row = next((r for r in res.rows if r.case == case and r.tool.startswith(tool)), None)
        if row is None:
            print(f"- {text}: not measured in this run")
            continue
        met = row.seconds < limit and (mb is None or row.peak_mb < mb)
        mem = "" if mb is None else f", {row.peak_mb:.1f} MB"
        fast = "" if row.fastest is None else f" (fastest {fmt_time(row.fastest)})"
        print(f"- {text}: median {fmt_time(row.seconds)}{fast}{mem} -> {'met' if met else 'NOT met'}")
    fails = [r for r in res.rows if r.check.startswith("tau2 FAIL")]
    print(f"\ntau^2 checks: {sum(1 for r in res.rows if r.check)} made, {len(fails)} failed"
          + "".join(f"\n- {r.case}, {r.tool}: {r.check}" for r in fails))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="k <= 1e5, batch of 10,000 only, shorter timing budget")
    ap.add_argument("--no-metafor", action="store_true", help="skip metafor even if R has it")
    args = ap.parse_args(argv)
    global BUDGET_S
    if args.quick:
        BUDGET_S = 0.3
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    counts = [10**4] if args.quick else [10**4, 10**6]
    info = machine()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: load average {info['load']} exceeds {os.cpu_count()} cores: "
              "other processes share the CPU and times will be inflated", flush=True)
    reason = "metafor skipped (--no-metafor)" if args.no_metafor else metafor_available()
    res = Results()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        print("single fits", flush=True)
        bench_single(res, sizes, ("DL", "REML", "PM"), reason, Path(tmp))
    print("batches", flush=True)
    bench_batch(res, counts)
    print("diagnostics", flush=True)
    bench_diagnostics(res)
    info["total bench time"] = f"{time.perf_counter() - t0:.0f} s"
    report(res, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
