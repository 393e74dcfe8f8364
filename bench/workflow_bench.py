"""Time the Snakemake workflow end to end: wall time, CPU time and peak memory.

Two benchmarks, each on a fresh copy of the project in a temporary folder
(the working tree is never touched)::

    .venv/bin/python bench/workflow_bench.py naltrexone [--repeat 3]
    .venv/bin/python bench/workflow_bench.py registry [--trials 10000 --analyses 200]

``naltrexone``: the real data. Per repeat, from an empty ``results/``: the
workflow (``snakemake --cores 2``, as ``make`` runs it), Snakemake's own
report (``make report``), a re-run with nothing changed, and a re-run after
one trial row is added to ``data/raw/alcohol.csv`` (a copy of Latt 2002
under a new id, so it belongs to ``aud_relapse_rr`` only); the analyses
whose jobs ran are listed, to show that only that one re-ran.

``compare``: the cold run of this working tree against another commit
(``--against REV``, default ``HEAD~1``: ``git archive`` of it into a
temporary folder, its ``src/`` first on PYTHONPATH), alternating the two
``--repeat`` times on the same machine in the same run, and this tree once
more with ``NTXMETA_WORKERS=0`` (every step in the Snakemake process, no
worker processes): medians and the ratios, so a change of speed and what
the worker processes buy are measured, not assumed. ``--inputs own`` (the
default) runs each tree on its own config and data; ``--inputs registry``
runs both on the same inputs, the synthetic registry as the older tree's
``make_registry.py`` writes it (``--trials``, ``--analyses``, ``--seed``),
for a like-for-like time when the two trees' inputs differ.

``registry``: the synthetic registry of ``bench/make_registry.py`` (10,000
trials in 200 analyses by default), the whole workflow, figures included,
then a re-run with nothing changed.

Each command is a child process waited for with ``os.wait4``: its wall
time, its user + system CPU time (with the descendants it waited for) and
its peak memory are printed, with the targets of issue 7. Peak memory is
the largest sum of the resident memory (RSS) of the process and all its
descendants, sampled every 0.2 s from /proc (worker processes count); where
/proc is missing, the largest single process (``ru_maxrss``). Extra Snakemake arguments
go after ``--``, e.g. ``-- --profile profiles/cluster-generic`` (jobs run
as separate processes, detached: their CPU time and memory are not in
the numbers, the wall time is).
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import make_registry  # noqa: E402  (a sibling script, not a package)
from ntxmeta.workflow import FIGURES  # noqa: E402

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: Targets of issue 7 (seconds, and GB of peak memory).
TARGET_COLD_S = 30.0
TARGET_NOOP_S = 3.0
TARGET_REGISTRY_S = 300.0
TARGET_REGISTRY_GB = 2.0
KB_PER_GB = 1024 * 1024
#: Added to the benchmark copy only: a copy of an existing row under new ids.
NEW_ROW_SOURCE = "Latt2002_relapse"


#: Seconds between two samples of the memory of a command's process tree.
SAMPLE_S = 0.2


class TreeMemory(threading.Thread):
    """Largest total RSS (KB) of a process and its descendants, sampled from /proc."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.done = pid, 0, threading.Event()

    @staticmethod
    def _table() -> dict[int, tuple[int, int]]:
        """pid -> (parent pid, RSS in KB) of every process we can read."""
        page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            out[int(entry.name)] = (int(fields[1]), int(fields[21]) * page_kb)
        return out

    def run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            table = self._table()
            tree, frontier = {self.pid}, [self.pid]
            children: dict[int, list[int]] = {}
            for pid, (ppid, _) in table.items():
                children.setdefault(ppid, []).append(pid)
            while frontier:
                for child in children.get(frontier.pop(), []):
                    if child not in tree:
                        tree.add(child)
                        frontier.append(child)
            self.peak_kb = max(self.peak_kb, sum(table[p][1] for p in tree if p in table))


@dataclass
class Run:
    """One command: wall seconds, CPU seconds (user + system), peak memory in KB, exit status."""

    name: str
    wall: float
    cpu: float
    maxrss_kb: int
    status: int
    log: Path

    def line(self) -> str:
        return (f"{self.name:<28} wall {self.wall:7.2f} s   cpu {self.cpu:7.2f} s   "
                f"peak {self.maxrss_kb / 1024:7.0f} MB" + ("" if self.status == 0 else
                                                         f"   FAILED ({self.status}), see {self.log}"))


def timed(name: str, cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> Run:
    """Run ``cmd`` in ``cwd``, output to ``log``; measure it with ``os.wait4``."""
    with open(log, "w", encoding="utf-8") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        sampler = TreeMemory(proc.pid) if os.path.isdir("/proc/self") else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if sampler:
            sampler.done.set()
            sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    peak = max(usage.ru_maxrss, sampler.peak_kb if sampler else 0)
    return Run(name, wall, usage.ru_utime + usage.ru_stime, peak, proc.returncode, log)


def snakemake(name: str, project: Path, extra: list[str], *args: str, env: dict | None = None) -> Run:
    log = project / f"bench_{name.replace(' ', '_').replace('/', '_')}.log"
    return timed(name, SNAKEMAKE + ["--cores", "2", *extra, *args], project, log, env)


def analyses_run(log: Path) -> set[str]:
    """Analyses of the jobs a run executed (their ``wildcards: analysis=...`` lines)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"wildcards: analysis=([a-z0-9_]+)", text))


def add_one_row(project: Path) -> str:
    """Append a copy of NEW_ROW_SOURCE to data/raw/alcohol.csv under new ids; return its row_id."""
    raw = project / "data/raw/alcohol.csv"
    with open(raw, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    row = dict(next(r for r in rows if r["row_id"] == NEW_ROW_SOURCE))
    row.update(row_id="Bench2099_relapse", study_id="Bench2099", label="Bench (added row)",
               year="2020", quote="A row added by bench/workflow_bench.py.")
    with open(raw, "a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n").writerow(row)
    return row["row_id"]


def copy_project(dest: Path) -> Path:
    """A copy of the project with the real data (workflow, config, data/raw, profiles)."""
    make_registry.copy_project(dest)
    for part in ("config", "data/raw"):
        shutil.copytree(ROOT / part, dest / part, dirs_exist_ok=True)
    return dest


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}; {os.cpu_count()} CPUs; Python {platform.python_version()}; "
            f"load average {load:.2f} at start")


def bench_naltrexone(args, extra: list[str]) -> int:
    runs: dict[str, list[Run]] = {}
    failed = 0
    for rep in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ntxmeta-wfbench-") as tmp:
            project = copy_project(Path(tmp))
            steps = [("cold run", ()), ("snakemake report", ("--report",
                                                             "results/snakemake_report.html")),
                     ("re-run, nothing changed", ())]
            for name, more in steps:
                r = snakemake(name, project, extra, *more)
                runs.setdefault(name, []).append(r)
                print(f"[{rep + 1}] {r.line()}", flush=True)
                failed += r.status != 0
            add_one_row(project)
            r = snakemake("re-run, one row added", project, extra)
            runs.setdefault(r.name, []).append(r)
            ran = sorted(analyses_run(r.log))
            print(f"[{rep + 1}] {r.line()}   analyses re-run: {', '.join(ran) or 'none'}",
                  flush=True)
            failed += r.status != 0 or ran != ["aud_relapse_rr"]
    print(f"\nmedians over {args.repeat} repeat(s); {machine()}")
    targets = {"cold run": TARGET_COLD_S, "re-run, nothing changed": TARGET_NOOP_S}
    for name, rs in runs.items():
        wall = statistics.median(r.wall for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        peak = max(r.maxrss_kb for r in rs) / 1024
        target = f"   target < {targets[name]:.0f} s" if name in targets else ""
        print(f"  {name:<26} wall {wall:7.2f} s (min {min(r.wall for r in rs):.2f})   "
              f"cpu {cpu:7.2f} s   peak {peak:6.0f} MB{target}")
    return 1 if failed else 0


def tree_at(rev: str, dest: Path) -> Path:
    """The files of commit ``rev`` (``git archive``) in ``dest``."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


#: What a compared tree needs to run ``snakemake`` (``data/processed`` is rebuilt).
TREE_PARTS = ("Snakefile", "workflow", "config", "data", "profiles")


def copy_tree_parts(tree: Path, project: Path, inputs: Path | None) -> None:
    """Copy ``tree``'s workflow and inputs into ``project``.

    With ``inputs`` (the registry) only the workflow is the tree's, as in
    ``make_registry.copy_project``: config and data/raw come from ``inputs``
    and the tree's own data (risk of bias, screening) is left out, since it
    names the real trials.
    """
    project.mkdir(parents=True)
    registry_parts = ("Snakefile", "workflow", "profiles", "data/reference")
    for part in TREE_PARTS if inputs is None else registry_parts:
        src = tree / part
        if src.is_dir():
            shutil.copytree(src, project / part, ignore=shutil.ignore_patterns("processed"))
        elif src.exists():
            shutil.copy2(src, project / part)
    if inputs is not None:
        for part in ("config", "data/raw"):
            shutil.copytree(inputs / part, project / part)


def registry_inputs(old: Path, dest: Path, args) -> Path:
    """The synthetic registry as the *older* tree writes it, readable by both trees.

    Neither tree reads the other's own inputs (today's rows have columns the
    older schema rejects; today's config checks refuse the older config), so a
    like-for-like cold run needs inputs both accept: the older
    ``make_registry.py`` (run with its own ``src/``) writes them, and its
    ``main: true`` flags are dropped, since a main analysis must now filter one
    comparator class (the flag only marks an analysis for the summary of
    findings; the models fitted are the same).
    """
    code = ("import sys; from pathlib import Path; sys.path.insert(0, 'bench'); "
            "import make_registry as m; "
            f"m.write_registry(Path({str(dest)!r}), trials={args.trials}, "
            f"analyses={args.analyses}, seed={args.seed}, copy=False)")
    subprocess.run([sys.executable, "-c", code], cwd=old, check=True,
                   env={**os.environ, "PYTHONPATH": str(old / "src")})
    config = dest / "config/config.yaml"
    config.write_text("".join(line for line in config.read_text(encoding="utf-8")
                              .splitlines(keepends=True) if line.strip() != "main: true"),
                      encoding="utf-8")
    return dest


def jobs_done(log: Path) -> str:
    """Snakemake's last ``N of M steps (100%) done`` count in ``log``, or ``?``."""
    found = re.findall(r"(\d+) of \d+ steps \(\d+%\) done", log.read_text(errors="replace"))
    return found[-1] if found else "?"


def bench_compare(args, extra: list[str]) -> int:
    """Cold runs of this tree, of ``--against`` and of this tree without worker processes."""
    runs: dict[str, list[Run]] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="ntxmeta-cmp-") as tmp:
        old = tree_at(args.against, Path(tmp) / "old")
        inputs = registry_inputs(old, Path(tmp) / "inputs", args) if args.inputs == "registry" \
            else None
        trees = {f"this tree": (ROOT, {}), f"{args.against}": (old, {}),
                 "this tree, NTXMETA_WORKERS=0": (ROOT, {"NTXMETA_WORKERS": "0"})}
        for rep in range(args.repeat):
            for name, (tree, env_more) in trees.items():
                project = Path(tmp) / f"run{rep}_{len(runs.get(name, []))}_{abs(hash(name))}"
                copy_tree_parts(tree, project, inputs)
                env = {**os.environ, "PYTHONPATH": str(tree / "src"), **env_more}
                r = snakemake(name, project, extra, env=env)
                runs.setdefault(name, []).append(r)
                failed += r.status != 0
                outputs = sum(1 for f in (project / "results").rglob("*") if f.is_file())
                print(f"[{rep + 1}] {r.line()}   jobs {jobs_done(r.log)}, files in results/ "
                      f"{outputs}", flush=True)
    print(f"\nmedians over {args.repeat} repeat(s); {machine()}")
    med = {n: (statistics.median(r.wall for r in rs), statistics.median(r.cpu for r in rs))
           for n, rs in runs.items()}
    base_wall, base_cpu = med["this tree"]
    for name, (wall, cpu) in med.items():
        print(f"  {name:<32} wall {wall:7.2f} s ({wall / base_wall:4.2f}x this tree)   "
              f"cpu {cpu:7.2f} s ({cpu / base_cpu:4.2f}x)")
    return 1 if failed else 0


def bench_registry(args, extra: list[str]) -> int:
    tmp = Path(args.dest) if args.dest else Path(tempfile.mkdtemp(prefix="ntxmeta-registry-"))
    try:
        summary = make_registry.write_registry(tmp, trials=args.trials, analyses=args.analyses,
                                               seed=args.seed)
        print(f"registry: {summary['trials']} trials, {summary['analyses']} analyses, "
              f"{summary['figures']} figures (x 2 formats) in {tmp}", flush=True)
        cold = snakemake("whole workflow", tmp, extra)
        print(cold.line(), flush=True)
        noop = snakemake("re-run, nothing changed", tmp, extra)
        print(noop.line(), flush=True)
        pngs = len(list((tmp / "results/figures").rglob("*.png")))
        svgs = len(list((tmp / "results/figures").rglob("*.svg")))
        # the figures of every analysis (FIGURES) and its bubble plots; the main
        # analyses' risk-of-bias and sequential-analysis figures come on top
        per_analysis = sum(len(list((tmp / "results/figures" / kind).glob("*.png")))
                           for kind in (*FIGURES, "bubble"))
        print(f"\n{pngs} PNG and {svgs} SVG figures, {per_analysis} of them per analysis "
              f"({summary['figures']} expected); {machine()}")
        print(f"  whole workflow: wall {cold.wall:.1f} s (target < {TARGET_REGISTRY_S:.0f} s), "
              f"cpu {cold.cpu:.1f} s, peak {cold.maxrss_kb / KB_PER_GB:.2f} GB "
              f"(target < {TARGET_REGISTRY_GB:.0f} GB)")
        ok = cold.status == 0 and noop.status == 0 and per_analysis == summary["figures"]
        return 0 if ok else 1
    finally:
        if not args.keep and not args.dest:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="which", required=True)
    n = sub.add_parser("naltrexone", help="the real data: cold run, report, no-op, one new row")
    n.add_argument("--repeat", type=int, default=3)
    r = sub.add_parser("registry", help="the synthetic registry of bench/make_registry.py")
    r.add_argument("--trials", type=int, default=make_registry.DEFAULT_TRIALS)
    r.add_argument("--analyses", type=int, default=make_registry.DEFAULT_ANALYSES)
    r.add_argument("--seed", type=int, default=make_registry.DEFAULT_SEED)
    r.add_argument("--dest", help="folder for the registry copy (kept); default a temporary one")
    r.add_argument("--keep", action="store_true", help="keep the temporary folder")
    c = sub.add_parser("compare", help="cold run: this tree vs another commit, and without workers")
    c.add_argument("--against", default="HEAD~1", help="commit to compare with")
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--inputs", choices=("own", "registry"), default="own",
                   help="own: each tree its own config and data; registry: the synthetic "
                        "registry as --against writes it, the same for both")
    c.add_argument("--trials", type=int, default=500, help="registry trials (--inputs registry)")
    c.add_argument("--analyses", type=int, default=12, help="registry analyses")
    c.add_argument("--seed", type=int, default=make_registry.DEFAULT_SEED)
    args = p.parse_args(argv)
    bench = {"naltrexone": bench_naltrexone, "registry": bench_registry, "compare": bench_compare}
    return bench[args.which](args, extra)


if __name__ == "__main__":
    raise SystemExit(main())
