"""What the Snakemake workflow asks of the package, as plain functions.

The package never imports Snakemake; the ``.smk`` files import this module
and call one function per rule. ``preflight`` runs when the Snakefile is
parsed, so every problem in ``data/raw/`` and ``config/`` is reported, all
at once, before any job runs; it also computes, per analysis, a digest of
the rows it selects (``select.selection_digest``), which the rules pass as
a ``params`` value: adding a trial row changes the digest of the analyses
that row belongs to, and only those are recomputed.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import normalise as nm
from .config import check_inputs, raw_data_glob
from .pipeline import effects_table, write_csv, write_pool
from .select import CanonicalColumns, select_rows, selection_digest
from .validate import ValidationError

COMPARISONS = Path("data/processed/comparisons.csv")


@dataclass(frozen=True)
class Preflight:
    """Validated configuration, the normalised comparisons and a digest per analysis."""

    config: dict
    comparisons: pd.DataFrame
    digests: dict
    texts: CanonicalColumns  # of comparisons, for the effects jobs' selections
    raw_files: list[Path]    # the tables read: the config's raw_data glob

    @property
    def analyses(self) -> list[str]:
        return sorted(self.config["analyses"])


def raw_files(pattern: str, root: str | Path = ".") -> list[Path]:
    """Every file of the config's ``raw_data`` glob (relative to ``root``), sorted."""
    return sorted(p for p in Path(root).glob(pattern) if p.is_file())


def preflight(config_path: str | Path, root: str | Path = ".") -> Preflight:
    """Validate raw data and config; on any problem print all of them and exit 1.

    Called at parse time by ``workflow/rules/common.smk``: a ``SystemExit``
    with the messages on stderr, and no traceback, stops Snakemake before it
    schedules a job, so nothing is written.
    """
    pattern = raw_data_glob(config_path)
    raw = raw_files(pattern, root)
    try:
        _, comparisons, config = check_inputs(raw, config_path, raw_where=pattern)
    except ValidationError as err:
        print(str(err), file=sys.stderr)
        print(f"ntxmeta: {len(err.problems)} problem(s) found; nothing was run.", file=sys.stderr)
        raise SystemExit(1) from None
    texts = CanonicalColumns(comparisons)
    digests = {name: selection_digest(comparisons, {**config.get("defaults", {}), **a}, texts)
               for name, a in config["analyses"].items()}
    return Preflight(config, comparisons, digests, texts, raw)


@contextmanager
def logged(path: str | Path, step: str):
    """Record a step's start, end or failure in its Snakemake log file.

    Steps run in threads of one process (profiles/default), so stdout is not
    redirected (that would be process-wide); the log names what ran and how
    it ended, and a failure's message.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{step}: started\n")
        try:
            yield
        except BaseException as exc:
            fh.write(f"{step}: failed: {exc}\n")
            raise
        fh.write(f"{step}: done\n")


def ingest(pf: Preflight, out: str | Path) -> None:
    """data/raw/*.csv -> data/processed/comparisons.csv (validated when the Snakefile was read)."""
    nm.write_comparisons(pf.comparisons, out)


def effects(pf: Preflight, analysis: str, out: str | Path) -> None:
    """Validated comparisons -> data/processed/effects/{analysis}.csv."""
    a = pf.config["analyses"][analysis]
    rows = select_rows(pf.comparisons, a, texts=pf.texts)
    write_csv(effects_table(rows, a, pf.config.get("defaults", {})), out)


def pool(effects_csv: str | Path, config: dict, analysis: str, result_json: str | Path,
         spec_json: str | Path) -> None:
    """effects -> results/analyses/{analysis}/result.json and spec.json."""
    write_pool(effects_csv, analysis, config["analyses"][analysis], config.get("defaults", {}),
               result_json, spec_json)


def summary(result_jsons, csv_path, md_path) -> None:
    """All result.json -> results/tables/summary.{csv,md}."""
    from .tables import write_summary
    write_summary(list(result_jsons), csv_path, md_path)


#: Figure kinds drawn for every analysis (bubble plots are per moderator).
FIGURES = ("forest", "funnel", "cumulative", "leave_one_out")


def figures(kinds: list[str], effects_csv, result_json, config: dict, analysis: str,
            png_paths: list, moderator: str | None = None) -> None:
    """effects + result -> results/figures/{kind}/{analysis}[__{moderator}].png and .svg.

    One figure per kind in ``kinds`` (see :data:`FIGURES`, and ``bubble``),
    saved at the matching path of ``png_paths`` and beside it as SVG; the
    two input files are read once.
    """
    from . import plots
    from .analyse import load_result
    from .style import save_figure
    effects = pd.read_csv(effects_csv, keep_default_na=True)
    result = load_result(result_json)
    a = config["analyses"][analysis]
    meta = result["analysis"]
    common = dict(measure=a["measure"], transf=result_transf(result), method=meta["method"],
                  title=a.get("title", analysis))
    draw = {
        "forest": lambda: plots.forest(effects, result, test=meta["test"], **common),
        "funnel": lambda: plots.funnel(effects, result, **common),
        "cumulative": lambda: plots.cumulative(result, effects=effects, **common),
        "leave_one_out": lambda: plots.leave_one_out(result, **common),
        "bubble": lambda: plots.bubble(effects, result, moderator, test=meta["test"], **common),
    }
    for kind, png_path in zip(kinds, png_paths, strict=True):
        if kind not in draw:
            raise ValueError(f"unknown figure kind {kind!r}")
        ax = draw[kind]()
        save_figure(ax.figure, str(Path(png_path).with_suffix("")), crop=kind not in plots.LAID_OUT)


def result_transf(result: dict) -> str:
    """The back-transformation the analysis reports in (its spec's ``transf``)."""
    return result.get("spec", {}).get("options", {}).get("transf", "none")


# --------------------------------------------------------------------------- worker processes
# profiles/default runs every job as a thread of the one Snakemake process
# (a process per job would parse the workflow again, ~2.5 s each). Threads
# share one interpreter lock, so the heavy steps (pool, figures, evidence
# tables, report) are handed to a pool of worker processes, one per core:
# the threads wait, the workers compute. concurrent.futures does the
# pooling; what is ours is when to use it (a local run with more than one
# core) and that a worker never outlives the run that started it.

#: Seconds between a worker's checks that the run which started it is alive.
ORPHAN_CHECK_S = 0.5

_workers = 0
_executor: ProcessPoolExecutor | None = None
_executor_lock = threading.Lock()


def use_workers(n: int) -> None:
    """Run :func:`offload`-ed steps in ``n`` worker processes (0 or 1: in the caller).

    The Snakefile calls it with the cores of a local run; a job submitted to
    a cluster runs in a process of its own and calls it with 0. A pool
    already started keeps its size.
    """
    global _workers
    _workers = int(n)


def offload(fn, *args):
    """``fn(*args)`` in a worker process when :func:`use_workers` asked for them.

    ``fn`` and ``args`` must pickle (module-level functions, plain values).
    An exception in the worker is raised here, with the worker's traceback
    as its cause. The pool starts on first use (a run with nothing to do
    starts none) with the ``spawn`` method: the caller has threads, which
    ``fork`` would copy in whatever state they are.
    """
    global _executor
    if _workers < 2:
        return fn(*args)
    with _executor_lock:
        if _executor is None:
            _executor = ProcessPoolExecutor(_workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_exit_with_parent, initargs=(os.getpid(),))
    return _executor.submit(fn, *args).result()


def _exit_with_parent(parent: int) -> None:
    """Worker initialiser: end this worker as soon as ``parent`` has ended.

    A run killed with SIGKILL cannot stop its workers; each would otherwise
    finish its step and write outputs after the run is gone.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="ntxmeta-orphan-check", daemon=True).start()


# --------------------------------------------------------------------------- rule adapters
# One call per rule's run: block (Snakemake's linter asks for short run
# directives); each logs its step and calls the step function above.

def rule_ingest(pf: Preflight, output, log: str) -> None:
    with logged(log, "ingest"):
        ingest(pf, output[0])


def rule_effects(pf: Preflight, output, wildcards, log: str) -> None:
    with logged(log, "effects"):
        effects(pf, wildcards.analysis, output[0])


def rule_pool(input, output, wildcards, log: str, config: dict) -> None:
    with logged(log, "pool"):
        offload(pool, str(input[0]), dict(config), wildcards.analysis, str(output.result),
                str(output.spec))


def rule_figures(input, output, wildcards, log: str, config: dict) -> None:
    """The figures of :data:`FIGURES` for one analysis (outputs ``{kind}_png``, ``{kind}_svg``)."""
    pngs = [str(output[f"{kind}_png"]) for kind in FIGURES]
    with logged(log, "figures"):
        offload(figures, list(FIGURES), str(input.effects), str(input.result), dict(config),
                wildcards.analysis, pngs)


def rule_bubble(input, output, wildcards, log: str, config: dict) -> None:
    with logged(log, "bubble"):
        offload(figures, ["bubble"], str(input.effects), str(input.result), dict(config),
                wildcards.analysis, [str(output.png)], wildcards.moderator)


def rule_summary(input, output, log: str) -> None:
    with logged(log, "summary_table"):
        summary(input, output.csv, output.md)


def bubble_targets(config: dict) -> list[tuple[str, str]]:
    """(analysis, moderator) pairs that get a bubble plot: every configured moderator."""
    return [(name, m) for name, a in sorted(config["analyses"].items())
            for m in (a.get("moderators") or [])]


def rule_evidence_tables(input, log: str, config: dict) -> None:
    from .report import write_evidence_tables
    with logged(log, "evidence_tables"):
        offload(write_evidence_tables, list(map(str, input.effects)), list(map(str, input.results)),
                dict(config), "results/tables")


def rule_report(input, output, log: str, config: dict) -> None:
    # The report computes the evidence tables itself (from the same inputs):
    # it runs beside rule evidence_tables instead of after it.
    from .report import write_report
    with logged(log, "report"):
        offload(write_report, list(map(str, input.effects)), list(map(str, input.results)),
                "results/figures", dict(config), str(output[0]))
