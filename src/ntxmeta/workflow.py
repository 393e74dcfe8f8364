"""What the Snakemake workflow asks of the package, as plain functions.

The package never imports Snakemake; the ``.smk`` files import this module
and call one function per rule. ``preflight`` runs when the Snakefile is
parsed, so every problem in ``data/raw/`` and ``config/`` is reported, all
at once, before any job runs; it also computes, per analysis, a digest of
the rows it selects (``select.selection_digest``), which the rules pass as
a ``params`` value: adding a trial row changes the digest of the analyses
that row belongs to, and only those are recomputed. The figure rules get a
digest of the figure options they draw with (:func:`figure_digest`), so a
figure option re-renders those figures and recomputes nothing.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .plan import Config


@dataclass(frozen=True)
class Preflight:
    """Validated configuration, the normalised comparisons and a digest per analysis."""

    config: Config
    comparisons: pd.DataFrame | None   # None in a cluster job (job_preflight)
    digests: dict
    raw_files: list[Path]    # the tables read: the config's raw_data glob
    config_path: str = "config/config.yaml"
    texts: object = None     # CanonicalColumns of comparisons, shared by the selections
    screening: tuple = ()    # data/screening/{records,studies}.csv, if the project has a log
    #: joint models: kind -> the comparisons without the rules the model handles
    #: (``normalise(modelled=kind)``), and name -> digest of its rows and options
    joint_tables: dict = field(default_factory=dict)
    joint_digests: dict = field(default_factory=dict)

    @property
    def analyses(self) -> list[str]:
        return self.config.names


def refuse_other_folder(project: str | Path, logfiles=()) -> None:
    """Stop a run started outside the project folder, leaving nothing behind there.

    Every path of the workflow is relative to the project folder. Snakemake
    has already opened its log under ``./.snakemake/log`` of the folder it
    was started in: that file (and the folders, when left empty) is removed
    before the message, so a mistaken run leaves no trace.
    """
    here = Path.cwd()
    for log in map(Path, logfiles):
        if log.parent == here / ".snakemake" / "log" and log.is_file():
            log.unlink()
    for folder in (here / ".snakemake" / "log", here / ".snakemake"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    print(f"ntxmeta: run the workflow from the project folder: cd {project} (or add "
          f"--directory {project}); nothing was run.", file=sys.stderr)
    raise SystemExit(1)


def raw_files(pattern: str, root: str | Path = ".") -> list[Path]:
    """Every file of the config's ``raw_data`` glob (relative to ``root``), sorted."""
    return sorted(p for p in Path(root).glob(pattern) if p.is_file())


def preflight(config_path: str | Path, root: str | Path = ".") -> Preflight:
    """Validate raw data and config; on any problem print all of them and exit 1.

    Called at parse time by ``workflow/rules/common.smk``: a ``SystemExit``
    with the messages on stderr, and no traceback, stops Snakemake before it
    schedules a job, so nothing is written.
    """
    from .config import check_inputs, raw_data_glob
    from .prisma import check_screening, screening_files
    from .select import CanonicalColumns, selection_digest
    from .validate import ValidationError
    pattern = raw_data_glob(config_path)
    raw = raw_files(pattern, root)
    problems = []
    raw_rows = None
    try:
        raw_rows, comparisons, resolved = check_inputs(raw, config_path, raw_where=pattern, root=root)
    except ValidationError as err:
        problems = err.problems
    # the screening log's problems are reported with the raw tables' (the check of its
    # included studies against data/raw's trials needs valid raw tables)
    screening = screening_files(root)
    problems = problems + check_screening(screening, raw_studies=raw_rows)[1]
    if problems:
        print(str(ValidationError(problems)), file=sys.stderr)
        print(f"ntxmeta: {len(problems)} problem(s) found; nothing was run.", file=sys.stderr)
        raise SystemExit(1) from None
    config = Config.from_resolved(resolved)
    texts = CanonicalColumns(comparisons)
    digests = {name: selection_digest(comparisons, plan.selection, texts)
               for name, plan in config.analyses.items()}
    tables, joint_digests = _joint_tables(config, resolved, raw_rows)
    return Preflight(config, comparisons, digests, raw, str(config_path), texts,
                     tuple(screening), tables, joint_digests)


def _joint_tables(config: Config, resolved: dict, raw_rows) -> tuple[dict, dict]:
    """The comparisons each kind of joint model selects from, and each model's digest
    (``config.check_inputs`` has checked that every model can use its rows)."""
    from . import joint
    from .config import joint_tables
    tables = joint_tables(resolved, raw_rows)
    return tables, {name: joint.digest(joint.select(tables[plan.kind], plan), plan)
                    for name, plan in config.joint.items()}


def job_preflight(config_path: str | Path, root: str | Path = ".") -> Preflight:
    """What a job submitted to a cluster needs: the config, not the whole preflight.

    The submitting run validated everything before it scheduled a job; a job
    process (``snakemake --mode remote``) parses the workflow again, and
    needs only the plans (its inputs are files). ``comparisons`` is None and
    ``digests`` empty: the ingest job computes the comparisons itself.
    """
    from .prisma import screening_files
    config = Config.load(config_path)
    return Preflight(config, None, {}, raw_files(config.raw_data, root), str(config_path),
                     screening=tuple(screening_files(root)))


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


# --------------------------------------------------------------------------- the steps
# Each step reads only the files of the step before it (paths given by the
# rule's input and output) and writes its outputs atomically.

def ingest(pf: Preflight, out: str | Path) -> None:
    """data/raw/*.csv -> data/processed/comparisons.csv (validated when the Snakefile was read)."""
    from .normalise import write_comparisons
    if pf.comparisons is None:  # a cluster job (job_preflight): validate and normalise here
        pf = preflight(pf.config_path)
    write_comparisons(pf.comparisons, out)


_comparisons_lock = threading.Lock()
_comparisons_cache: dict = {}


def read_comparisons_cached(path: str | Path):
    """``comparisons.csv`` and its canonical columns, parsed once per process and file version.

    The effects jobs of one run all read the same file; with hundreds of
    analyses parsing it once matters. The key is (path, mtime, size).
    """
    from .normalise import read_comparisons
    from .select import CanonicalColumns
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    with _comparisons_lock:
        if key not in _comparisons_cache:
            _comparisons_cache.clear()
            table = read_comparisons(path)
            _comparisons_cache[key] = (table, CanonicalColumns(table))
        return _comparisons_cache[key]


def effects(comparisons, plan, out: str | Path, left_out: str | Path | None = None) -> None:
    """comparisons + one analysis plan -> data/processed/effects/{analysis}.csv (no model fit).

    ``comparisons`` is the path of comparisons.csv (the command line), or a
    ``Preflight`` whose validated table is the one ingest writes (the
    workflow: see ``rule_effects``). ``left_out`` (data/processed/left_out/
    {analysis}.csv) receives the rows the filters match that the analysis
    does not use, each with its reason.
    """
    from .pipeline import effects_table, left_out_table, write_csv
    from .select import CanonicalColumns, matching_rows
    if isinstance(comparisons, Preflight):
        table, texts = comparisons.comparisons, comparisons.texts
    else:
        table, texts = read_comparisons_cached(comparisons)
    matching = matching_rows(table, plan.selection, texts=texts or CanonicalColumns(table))
    rows = matching.loc[matching["role"].ne("").to_numpy()].reset_index(drop=True)
    write_csv(effects_table(rows, plan), out)
    if left_out is not None:
        write_csv(left_out_table(matching), left_out)


def pool(effects_csv: str | Path, plan, result_json: str | Path, spec_json: str | Path) -> None:
    """effects -> results/analyses/{analysis}/result.json (typed result) and spec.json."""
    from .pipeline import write_pool
    write_pool(effects_csv, plan, result_json, spec_json)


def summary(result_jsons, csv_path, md_path) -> None:
    """All result.json -> results/tables/summary.{csv,md}."""
    from .tables import write_summary
    write_summary(list(result_jsons), csv_path, md_path)


#: The layout of result.json: a pool job's param, so that a new layout re-runs every pool job.
from .result import SCHEMA as RESULT_SCHEMA  # noqa: E402

#: The tables of the joint models (rule joint_tables).
from .joint import TABLES as JOINT_TABLES  # noqa: E402

#: Figure kinds drawn for every analysis (bubble plots are per moderator).
FIGURES = ("forest", "funnel", "cumulative", "leave_one_out", "bayes_posterior", "bayes_forest")
#: Risk-of-bias figures, drawn for every main analysis (rule rob_figures).
ROB_FIGURES = ("rob_traffic_light", "rob_summary")


def figures(kinds: list[str], effects_csv, result_json, png_paths: list,
            moderator: str | None = None, options=None,
            formats: tuple[str, ...] = ("png", "svg")) -> None:
    """effects + result -> results/figures/{kind}/{analysis}[__{moderator}].{png,svg,...}.

    One figure per kind in ``kinds`` (see :data:`FIGURES`, and ``bubble``),
    drawn with the analysis' ``options`` (:class:`ntxmeta.figopts.FigureOptions`,
    default the defaults) and saved in each of ``formats`` at the matching
    path of ``png_paths`` with that extension; the two input files are read
    once. Formatting only: every number drawn is in the result. A figure of
    a requested width is saved at exactly that width (not cropped).
    """
    from . import plots
    from .figopts import DEFAULT
    from .pipeline import read_effects
    from .result import read_result
    from .style import note_figure, save_figure
    options = DEFAULT if options is None else options
    eff = read_effects(effects_csv)
    result = read_result(result_json)
    if any(k in ROB_FIGURES for k in kinds):
        from . import robplots
        from .rob import rob_of_effects
        rob_frame, rob_weights = rob_of_effects(eff, result)
    if "tsa" in kinds:
        from . import tsaplots
    if any(k.startswith("bayes_") for k in kinds):
        from . import bayesplots
        bayes = result.bayes
        used = [bool(u) for u in result.used]
        why = ("No Bayesian model: " + plots.missing_reason(result, "bayes")
               if bayes is None else "")
    opts = {"options": options}
    draw = {
        "tsa": lambda: (
            tsaplots.plot_tsa(result.tsa, scale_name=result.scale.name) if result.tsa is not None
            else note_figure("No trial sequential analysis: "
                             + (next((n for n in result.notes if "sequential" in n), "")
                                or plots.missing_reason(result, "tsa")))),
        "bayes_posterior": lambda: (
            bayesplots.posterior_figure(bayes, scale=result.scale) if bayes is not None
            else note_figure(why)),
        "bayes_forest": lambda: (
            bayesplots.shrinkage_forest(bayes, list(eff["label"].astype(str)[used]),
                                        eff["yi"].to_numpy(float)[used],
                                        eff["vi"].to_numpy(float)[used], scale=result.scale)
            if bayes is not None else note_figure(why)),
        "rob_traffic_light": lambda: robplots.rob_traffic_light(rob_frame, **opts),
        "rob_summary": lambda: robplots.rob_summary(rob_frame, rob_weights, **opts),
        "forest": lambda: plots.forest(eff, result, **opts),
        "funnel": lambda: plots.funnel(eff, result, **opts),
        "cumulative": lambda: plots.cumulative(result, effects=eff, **opts),
        "leave_one_out": lambda: plots.leave_one_out(result, **opts),
        "bubble": lambda: plots.bubble(eff, result, moderator, **opts),
    }
    # sized to a width: saved as laid out (the funnel and bubble plots fit
    # their Axes to it; the risk-of-bias figures keep their own size, cropped)
    for kind, png_path in zip(kinds, png_paths, strict=True):
        if kind not in draw:
            raise ValueError(f"unknown figure kind {kind!r}")
        drawn = draw[kind]()
        fig = getattr(drawn, "figure", drawn)   # plots draw on Axes, bayesplots return a Figure
        crop = kind not in plots.LAID_OUT and not (options.width_in is not None
                                                   and kind in plots.WIDTH_FITTED)
        save_figure(fig, str(Path(png_path).with_suffix("")), crop=crop, formats=tuple(formats),
                    dpi=options.dpi, tiff_dpi=options.tiff_dpi)


def by_analysis(paths, kind: str) -> dict[str, str]:
    """Paths keyed by analysis: ``effects/{analysis}.csv`` (stem) or ``{analysis}/result.json`` (folder)."""
    return {(Path(p).stem if kind == "effects" else Path(p).parent.name): str(p) for p in paths}


def evidence_tables(effects_paths, result_paths, config: Config, outputs: dict,
                    published_path: str | None = None) -> None:
    """Effects + results (+ published estimates) -> the evidence tables (results/tables/*.csv, .md)."""
    from .evidence import write_evidence_tables
    write_evidence_tables(by_analysis(effects_paths, "effects"), by_analysis(result_paths, "results"),
                          config, outputs, published_path)


def report(result_paths, effects_paths, table_paths: dict, figure_paths, config: Config,
           out: str | Path, left_out_paths=(), changelog: str | Path | None = None,
           prisma_path: str | None = None, changes_figure: str | None = None,
           joint_paths=()) -> None:
    """Results, effects, tables and figures (and the PRISMA diagram, the joint
    models' results) -> results/report.html."""
    from .report import write_report
    write_report(by_analysis(result_paths, "results"), by_analysis(effects_paths, "effects"),
                 table_paths, list(map(str, figure_paths)), config, out,
                 left_out=by_analysis(left_out_paths, "effects"), changelog=changelog,
                 prisma=prisma_path, changes_figure=changes_figure,
                 joint=by_analysis(joint_paths, "results"))


def changelog(comparisons, effects_paths, summary_csv, sof_csv, json_path, md_path,
              figure_png=None, joint_paths=()) -> None:
    """Comparisons, effects, the summary tables and the joint models' results ->
    results/changelog.{json,md} (and the figure of what the newest version moved)."""
    from . import __version__
    from .changelog import update
    update(comparisons, list(effects_paths), summary_csv, sof_csv, json_path, md_path,
           tool_version=__version__, figure_png=figure_png, joint_jsons=list(joint_paths))


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


#: Environment variable that overrides the number of worker processes
#: (``bench/workflow_bench.py compare`` sets it to 0 to measure what the
#: workers buy).
WORKERS_ENV = "NTXMETA_WORKERS"


def use_workers(n: int) -> None:
    """Run :func:`offload`-ed steps in ``n`` worker processes (0 or 1: in the caller).

    The Snakefile calls it with the cores of a local run; a job submitted to
    a cluster runs in a process of its own and calls it with 0. A pool
    already started keeps its size. ``$NTXMETA_WORKERS``, when set, wins.
    """
    global _workers
    _workers = int(os.environ.get(WORKERS_ENV, n))


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
    finish its step and write outputs after the run is gone. A worker that
    ends so first deletes the temporary files it was writing: the killed
    run leaves its previous outputs and nothing beside them.
    """
    from .io import abandon_writes, set_commit_guard

    def end() -> None:
        abandon_writes()
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        end()

    def parent_alive() -> None:
        if os.getppid() != parent:
            end()  # the run is gone: put nothing in place

    set_commit_guard(parent_alive)
    threading.Thread(target=watch, name="ntxmeta-orphan-check", daemon=True).start()


# --------------------------------------------------------------------------- rule adapters
# One call per rule's run: block (Snakemake's linter asks for short run
# directives); each logs its step and calls the step function above with
# the rule's own input and output paths.

def rule_ingest(pf: Preflight, output, log: str) -> None:
    with logged(log, "ingest"):
        ingest(pf, output[0])


def rule_effects(pf: Preflight, output, wildcards, log: str) -> None:
    """The effects job selects from the comparisons validated at parse time (the table
    ingest writes), not from comparisons.csv: Snakemake never checks the params of a
    job downstream of a job that runs, so with comparisons.csv as input the selection
    digest could not re-run just the analyses a new row belongs to."""
    if pf.comparisons is None:  # a cluster job: validate here (job_preflight has no table)
        pf = preflight(pf.config_path)
    with logged(log, "effects"):
        effects(pf, pf.config.analyses[wildcards.analysis], output.effects, output.left_out)


def rule_pool(pf: Preflight, input, output, wildcards, log: str) -> None:
    with logged(log, "pool"):
        offload(pool, str(input[0]), pf.config.analyses[wildcards.analysis], str(output.result),
                str(output.spec))


def rule_figures(pf: Preflight, input, output, wildcards, log: str) -> None:
    """The figures of :data:`FIGURES` for one analysis (outputs ``{kind}_png``, ``{kind}_svg``),
    drawn with the analysis' figure options."""
    pngs = [str(output[f"{kind}_png"]) for kind in FIGURES]
    options = pf.config.analyses[wildcards.analysis].figures
    with logged(log, "figures"):
        offload(figures, list(FIGURES), str(input.effects), str(input.result), pngs, None, options)


def rule_rob_figures(pf: Preflight, input, output, wildcards, log: str) -> None:
    """The risk-of-bias figures of one main analysis (outputs ``{kind}_png``)."""
    pngs = [str(output[f"{kind}_png"]) for kind in ROB_FIGURES]
    options = pf.config.analyses[wildcards.analysis].figures
    with logged(log, "rob_figures"):
        offload(figures, list(ROB_FIGURES), str(input.effects), str(input.result), pngs, None, options)


def rule_figure_print(pf: Preflight, input, output, wildcards, log: str) -> None:
    """One figure in one print format (PDF or TIFF; rules figure_print and bubble_print)."""
    kind = wildcards.get("kind", "bubble")
    options = pf.config.analyses[wildcards.analysis].figures
    with logged(log, f"figure {kind} ({wildcards.ext})"):
        offload(figures, [kind], str(input.effects), str(input.result), [str(output[0])],
                wildcards.get("moderator"), options, (wildcards.ext,))


def figure_digest(config: Config, analysis: str, kinds: tuple[str, ...],
                  formats: tuple[str, ...] = ("png", "svg")) -> str:
    """The digest of the figure options that figures of ``kinds`` in ``formats`` of one
    analysis depend on (a figure rule's params: its re-run trigger)."""
    return config.analyses[analysis].figures.digest(tuple(kinds), tuple(formats))


def print_figure_targets(config: Config) -> list[tuple[str, str, str]]:
    """The PDF and TIFF files the figure options ask for, as (kind, stem, ext): every
    figure of an analysis (its bubble plots ``bubble``/``{analysis}__{moderator}``,
    and its risk-of-bias figures when it is a main analysis) in each of its print
    formats. The Snakefile makes the paths."""
    out = []
    for name in config.names:
        plan = config.analyses[name]
        for ext in plan.figures.print_formats:
            kinds = FIGURES + (ROB_FIGURES if plan.main else ())
            out += [(kind, name, ext) for kind in kinds]
            out += [("bubble", f"{name}__{m}", ext) for m in plan.moderators]
    return out


def tsa_targets(config: Config) -> list[str]:
    """Analyses with a trial sequential analysis planned (main, binary or with a MID)."""
    return [name for name in config.names if config.analyses[name].tsa is not None]


def rule_tsa_figure(input, output, log: str) -> None:
    with logged(log, "tsa_figure"):
        offload(figures, ["tsa"], str(input.effects), str(input.result), [str(output.png)])


def rob_targets(config: Config) -> list[str]:
    """The analyses that get risk-of-bias figures: the main ones."""
    return [name for name in config.names if config.analyses[name].main]


def rule_bubble(pf: Preflight, input, output, wildcards, log: str) -> None:
    options = pf.config.analyses[wildcards.analysis].figures
    with logged(log, "bubble"):
        offload(figures, ["bubble"], str(input.effects), str(input.result), [str(output.png)],
                wildcards.moderator, options)


def rule_summary(input, output, log: str) -> None:
    with logged(log, "summary_table"):
        summary(input, output.csv, output.md)


def bubble_targets(config: Config) -> list[tuple[str, str]]:
    """(analysis, moderator) pairs that get a bubble plot: every configured moderator."""
    return [(name, m) for name in config.names for m in config.analyses[name].moderators]


#: Table stems of the evidence_tables rule, in its output order.
EVIDENCE_TABLES = ("summary_of_findings", "certainty", "sensitivity", "subgroups", "small_study_effects",
                   "published_comparison", "bayes", "tsa")


def rule_evidence_tables(pf: Preflight, input, output, log: str) -> None:
    outputs = {stem: (str(output[f"{stem}_csv"]), str(output[f"{stem}_md"]))
               for stem in EVIDENCE_TABLES}
    with logged(log, "evidence_tables"):
        offload(evidence_tables, list(map(str, input.effects)), list(map(str, input.results)),
                pf.config, outputs, str(input.published))


def rule_report(pf: Preflight, input, output, log: str) -> None:
    tables = {stem: str(input[f"{stem}"]) for stem in EVIDENCE_TABLES}
    prisma = _paths(getattr(input, "prisma", []))
    with logged(log, "report"):
        offload(report, list(map(str, input.results)), list(map(str, input.effects)), tables,
                list(map(str, input.figures)), pf.config, str(output[0]),
                list(map(str, input.left_out)), str(input.changelog),
                prisma[0] if prisma else None, str(input.changes),
                _paths(getattr(input, "joint", [])))


def rule_changelog(input, output, log: str) -> None:
    with logged(log, "changelog"):
        changelog(str(input.comparisons), list(map(str, input.effects)), str(input.summary),
                  str(input.sof), str(output.json), str(output.md), str(output.png),
                  _paths(input.joint))


def _paths(value) -> list[str]:
    """A rule's named input as a list of paths (Snakemake gives one path as a string)."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


def prisma(records_csv, studies_csv, png_path) -> None:
    """data/screening/{records,studies}.csv -> results/figures/prisma/prisma.{png,svg,pdf}."""
    from .prisma import write_prisma
    write_prisma(records_csv, studies_csv, png_path)


def rule_prisma(input, output, log: str) -> None:
    with logged(log, "prisma"):
        offload(prisma, str(input.records), str(input.studies), str(output.png))


#: Folders of the data a run reads, listed in the crate beside the config
#: (every file in them, documentation included).
CRATE_DATA_DIRS = ("data/raw", "data/screening", "data/rob", "data/reference")


def crate_workflow_files(project: str | Path = ".") -> list[Path]:
    """Every file of ``workflow/`` (relative, sorted; linked folders not followed)."""
    base = Path(project)
    return sorted(p.relative_to(base) for p in (base / "workflow").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def crate_data_files(pf: Preflight, root: str | Path = ".") -> list[Path]:
    """The data files of the crate: the raw tables read, and every file of :data:`CRATE_DATA_DIRS`."""
    base = Path(root)
    found = {Path(p) for p in pf.raw_files}
    for folder in CRATE_DATA_DIRS:
        found |= {p.relative_to(base) if p.is_absolute() else p
                  for p in (base / folder).glob("*") if p.is_file() and not p.name.startswith(".")}
    return sorted(found)


def crate(workflow_files, inputs, outputs, out) -> None:
    """The files of the run -> ro-crate-metadata.json at the project folder (the crate's root)."""
    from .crate import write_crate
    write_crate(Path(out).parent, out, workflow_files=workflow_files, inputs=inputs,
                outputs=outputs)


# --------------------------------------------------------------------------- joint models
# Time-point and network models (config timepoints, networks; ntxmeta.joint):
# effects -> result.json -> figures; the tables gather every model.

def joint_kind_figures(pf: Preflight) -> list[tuple[str, str]]:
    """(figure kind, model) of every joint model's figures."""
    from .jointplots import KINDS
    return [(kind, name) for name, plan in pf.config.joint.items() for kind in KINDS[plan.kind]]


def rule_joint_effects(pf: Preflight, output, wildcards, log: str) -> None:
    """A joint model's rows, from the comparisons without the rules it models (parse time)."""
    from . import joint
    from .pipeline import left_out_table, write_csv
    if pf.comparisons is None:  # a cluster job: validate here
        pf = preflight(pf.config_path)
    plan = pf.config.joint[wildcards.joint]
    with logged(log, "joint effects"):
        rows = joint.select(pf.joint_tables[plan.kind], plan)
        write_csv(joint.effects_table(rows, plan), output.effects)
        write_csv(left_out_table(rows), output.left_out)


def rule_joint_pool(pf: Preflight, input, output, wildcards, log: str) -> None:
    from .joint import write
    with logged(log, "joint pool"):
        write(str(input[0]), pf.config.joint[wildcards.joint], str(output[0]))


def rule_joint_figure(input, output, wildcards, log: str) -> None:
    from .jointplots import write_figures
    with logged(log, "joint figure"):
        write_figures(str(input[0]), {wildcards.jkind: str(output.png)})


def rule_joint_tables(input, output, log: str) -> None:
    from .joint import write_tables
    with logged(log, "joint tables"):
        write_tables(_paths(input), {s: (output[f"{s}_csv"], output[f"{s}_md"])
                                     for s in JOINT_TABLES})


def rule_crate(input, output, log: str) -> None:
    with logged(log, "crate"):
        crate(_paths(input.workflow), _paths(input.inputs), _paths(input.outputs), str(output[0]))
