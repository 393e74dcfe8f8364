"""Process time of ``ntxmeta analyse SPEC --only rma.REML`` on 1,000,000 studies.

Compared with a plain script that reads the same CSV with pandas and fits
REML with numpy (Fisher scoring from DerSimonian-Laird to 1e-10): both
run as fresh processes in the same run, each a few times; the measure is
the process time (user + sys of the child, interpreter start included),
and the medians are printed with their ratio. The CSV (seeded) lives in a
temporary folder.

    PYTHONPATH=src python bench/analyse_bench.py [--k 1000000] [--repeats 5] [--baseline DIR]

``--baseline DIR`` also runs the command with ``PYTHONPATH=DIR`` (another
version's ``src/``, e.g. ``git archive main src | tar -x -C /tmp/main``),
interleaved with the others, prints its median and ratio, and checks that
its result file is byte for byte the one of this version.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 20240611

PLAIN = r'''
import sys
import numpy as np
import pandas as pd
d = pd.read_csv(sys.argv[1])
y, v = d["yi"].to_numpy(float), d["vi"].to_numpy(float)
w = 1 / v
mu = (w * y).sum() / w.sum()
k = y.size
t = max(0.0, (((w * (y - mu) ** 2).sum()) - (k - 1)) / (w.sum() - (w * w).sum() / w.sum()))
for _ in range(100):
    w = 1 / (v + t)
    sw = w.sum()
    mu = (w * y).sum() / sw
    r = y - mu
    trp = sw - (w * w).sum() / sw
    trpp = (w * w).sum() - 2 * (w ** 3).sum() / sw + ((w * w).sum() / sw) ** 2
    new = max(0.0, t + (((w * r) ** 2).sum() - trp) / trpp)
    if abs(new - t) < 1e-10 * max(1.0, new):
        t = new
        break
    t = new
w = 1 / (v + t)
print(t, (w * y).sum() / w.sum(), (1 / w.sum()) ** 0.5)
'''


def write_case(folder: Path, k: int) -> Path:
    rng = np.random.default_rng(SEED)
    vi = rng.uniform(0.01, 0.2, k)
    yi = rng.normal(0.3, np.sqrt(vi + 0.05))
    with open(folder / "data.csv", "w", encoding="utf-8") as f:
        f.write("yi,vi\n")
        np.savetxt(f, np.column_stack([yi, vi]), delimiter=",", fmt="%.17g")
    spec = {"csv": "data.csv", "measure": "GEN", "columns": {"yi": "yi", "vi": "vi"}}
    (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    (folder / "plain.py").write_text(PLAIN, encoding="utf-8")
    return folder


def process_time(cmd: list[str], pythonpath: str | None = None) -> float:
    """user + sys seconds of one child process (interpreter start included)."""
    env = os.environ.copy()
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", default=None,
                    help="src/ folder of another version to time alongside (and compare output)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_case(Path(tmp), args.k)
        ours_cmd = [sys.executable, "-m", "ntxmeta.cli", "analyse", str(folder / "spec.json"),
                    "--only", "rma.REML", "--out", str(folder / "out.json")]
        plain_cmd = [sys.executable, str(folder / "plain.py"), str(folder / "data.csv")]
        base_cmd = ours_cmd[:-1] + [str(folder / "base.json")]
        ours, plain, base = [], [], []
        for _ in range(args.repeats):   # interleaved, so that load changes hit all alike
            ours.append(process_time(ours_cmd))
            plain.append(process_time(plain_cmd))
            if args.baseline:
                base.append(process_time(base_cmd, os.path.abspath(args.baseline)))
        same = (args.baseline is None
                or (folder / "out.json").read_bytes() == (folder / "base.json").read_bytes())
    mo, mp = statistics.median(ours), statistics.median(plain)
    print(f"k = {args.k:,}, {args.repeats} runs each (process time, user + sys); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"ntxmeta analyse --only rma.REML: median {mo:.3f} s  {[round(x, 3) for x in ours]}")
    if args.baseline:
        mb = statistics.median(base)
        print(f"baseline ({args.baseline}):  median {mb:.3f} s  {[round(x, 3) for x in base]}")
    print(f"pandas + numpy REML script:      median {mp:.3f} s  {[round(x, 3) for x in plain]}")
    print(f"ratio: {mo / mp:.2f}" + (f" (baseline {mb / mp:.2f})" if args.baseline else ""))
    if args.baseline:
        print("result files: " + ("byte for byte the same" if same else "DIFFERENT"))
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
