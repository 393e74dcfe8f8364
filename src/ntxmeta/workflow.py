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

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import normalise as nm
from .config import check_inputs
from .pipeline import effects_table, write_csv, write_pool
from .select import select_rows, selection_digest
from .validate import ValidationError

RAW_DIR = Path("data/raw")
COMPARISONS = Path("data/processed/comparisons.csv")


@dataclass(frozen=True)
class Preflight:
    """Validated configuration, the normalised comparisons and a digest per analysis."""

    config: dict
    comparisons: pd.DataFrame
    digests: dict

    @property
    def analyses(self) -> list[str]:
        return sorted(self.config["analyses"])


def raw_files(root: str | Path = ".") -> list[Path]:
    """Every CSV in data/raw/, sorted (the workflow reads them all)."""
    return sorted((Path(root) / RAW_DIR).glob("*.csv"))


def preflight(config_path: str | Path, root: str | Path = ".") -> Preflight:
    """Validate raw data and config; on any problem print all of them and exit 1.

    Called at parse time by ``workflow/rules/common.smk``: a ``SystemExit``
    with the messages on stderr, and no traceback, stops Snakemake before it
    schedules a job, so nothing is written.
    """
    try:
        _, comparisons, config = check_inputs(raw_files(root), config_path)
    except ValidationError as err:
        print(str(err), file=sys.stderr)
        print(f"ntxmeta: {len(err.problems)} problem(s) found; nothing was run.", file=sys.stderr)
        raise SystemExit(1) from None
    digests = {name: selection_digest(comparisons, {**config.get("defaults", {}), **a})
               for name, a in config["analyses"].items()}
    return Preflight(config, comparisons, digests)


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


def ingest(config_path: str | Path, out: str | Path, root: str | Path = ".") -> None:
    """data/raw/*.csv -> data/processed/comparisons.csv."""
    pf = preflight(config_path, root)
    nm.write_comparisons(pf.comparisons, out)


def effects(pf: Preflight, analysis: str, out: str | Path) -> None:
    """Validated comparisons -> data/processed/effects/{analysis}.csv."""
    a = pf.config["analyses"][analysis]
    rows = select_rows(pf.comparisons, a)
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


def figure(kind: str, effects_csv, result_json, config: dict, analysis: str, png_path,
           moderator: str | None = None) -> None:
    """effects + result -> results/figures/{kind}/{analysis}[__{moderator}].png and .svg."""
    from . import plots
    from .analyse import load_result
    from .style import save_figure
    effects = pd.read_csv(effects_csv, keep_default_na=True)
    result = load_result(result_json)
    a = config["analyses"][analysis]
    meta = result["analysis"]
    common = dict(measure=a["measure"], transf=result_transf(result), method=meta["method"],
                  title=a.get("title", analysis))
    if kind == "forest":
        ax = plots.forest(effects, result, test=meta["test"], **common)
    elif kind == "funnel":
        ax = plots.funnel(effects, result, **common)
    elif kind == "cumulative":
        ax = plots.cumulative(result, effects=effects, **common)
    elif kind == "leave_one_out":
        ax = plots.leave_one_out(result, **common)
    elif kind == "bubble":
        ax = plots.bubble(effects, result, moderator, test=meta["test"], **common)
    else:
        raise ValueError(f"unknown figure kind {kind!r}")
    save_figure(ax.figure, str(Path(png_path).with_suffix("")))


def result_transf(result: dict) -> str:
    """The back-transformation the analysis reports in (its spec's ``transf``)."""
    return result.get("spec", {}).get("options", {}).get("transf", "none")


# --------------------------------------------------------------------------- rule adapters
# One call per rule's run: block (Snakemake's linter asks for short run
# directives); each logs its step and calls the step function above.

def rule_ingest(input, output, log: str, config_path: str) -> None:
    with logged(log, "ingest"):
        ingest(config_path, output[0])


def rule_effects(pf: Preflight, output, wildcards, log: str) -> None:
    with logged(log, "effects"):
        effects(pf, wildcards.analysis, output[0])


def rule_pool(input, output, wildcards, log: str, config: dict) -> None:
    with logged(log, "pool"):
        pool(input[0], config, wildcards.analysis, output.result, output.spec)


def rule_figure(kind: str, input, output, wildcards, log: str, config: dict) -> None:
    with logged(log, kind):
        figure(kind, input.effects, input.result, config, wildcards.analysis, output.png,
               moderator=getattr(wildcards, "moderator", None))


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
        write_evidence_tables(list(input.effects), list(input.results), config, "results/tables")


def rule_report(input, output, log: str, config: dict) -> None:
    from .report import write_report
    with logged(log, "report"):
        write_report(list(input.effects), list(input.results), "results/figures", config, output[0])
