# Shared definitions: validation before any job runs, the analyses, input functions.
from pathlib import Path

from ntxmeta import workflow as ntx

# Validates data/raw/ and config/ now, at parse time, before Snakemake reads
# the config (its message for invalid YAML names no line): on any problem
# every message is printed and Snakemake stops before scheduling a job.
PROJECT = Path(workflow.main_snakefile).parent
if Path.cwd().resolve() != PROJECT.resolve():
    ntx.refuse_other_folder(PROJECT, workflow.logger_manager.get_logfile())
CONFIG_FILE = workflow.configfiles[0] if workflow.configfiles else "config/config.yaml"
# A job on a cluster node parses the workflow again: it needs the plans only.
PREFLIGHT = (
    ntx.job_preflight(CONFIG_FILE)
    if workflow.remote_exec
    else ntx.preflight(CONFIG_FILE)
)
ANALYSES = PREFLIGHT.analyses


def local_workers():
    """Worker processes for the heavy steps: one per core of a local run.

    Jobs run as threads of this process (profiles/default), which share one
    interpreter; a job submitted to a cluster (or run as a subprocess) is a
    process of its own, and computes in it.
    """
    if workflow.remote_exec or workflow.subprocess_exec or not workflow.local_exec:
        return 0
    return workflow.resource_settings.cores or 0


ntx.use_workers(local_workers())


wildcard_constraints:
    analysis="[a-z0-9][a-z0-9_]*",
    joint="[a-z0-9][a-z0-9_]*",
    moderator="[a-z0-9][a-z0-9_]*",


def selection_digest(wildcards):
    """Digest of the rows and options of one analysis (re-run trigger)."""
    return PREFLIGHT.digests.get(wildcards.analysis, "")


# Digests of the figure options each figure job depends on (its re-run
# trigger): an option of one analysis or one figure kind re-renders those
# figures only; the effects and pool jobs never see them.
def figures_digest(wildcards):
    return ntx.figure_digest(PREFLIGHT.config, wildcards.analysis, ntx.FIGURES)


def rob_figures_digest(wildcards):
    return ntx.figure_digest(PREFLIGHT.config, wildcards.analysis, ntx.ROB_FIGURES)


def bubble_digest(wildcards):
    return ntx.figure_digest(PREFLIGHT.config, wildcards.analysis, ("bubble",))


def print_digest(wildcards):
    """One figure (kind, or bubble) in one print format (PDF or TIFF)."""
    kind = wildcards.get("kind", "bubble")
    return ntx.figure_digest(
        PREFLIGHT.config, wildcards.analysis, (kind,), (wildcards.ext,)
    )


def rob_table(wildcards):
    """The risk-of-bias table (config key risk_of_bias), if there is one: its
    judgements go into comparisons (without it every domain is not assessed)."""
    path = PREFLIGHT.config.risk_of_bias
    return [path] if Path(path).is_file() else []


def raw_csvs(wildcards):
    """The raw tables of the config's raw_data glob (default data/raw/*.csv)."""
    return [str(p) for p in PREFLIGHT.raw_files]


def joint_digest(wildcards):
    """Digest of the rows and options of one joint model (re-run trigger)."""
    return PREFLIGHT.joint_digests.get(wildcards.joint, "")


JOINTS = list(PREFLIGHT.config.joint)


def joint_results(wildcards):
    return expand("results/joint/{joint}/result.json", joint=JOINTS)


def joint_outputs(wildcards):
    """Every joint model's result, figures and tables (none without joint models)."""
    if not JOINTS:
        return []
    return (
        joint_results(wildcards)
        + joint_figure_files(wildcards)
        + expand(
            "results/tables/{stem}.{ext}", stem=ntx.JOINT_TABLES, ext=["csv", "md"]
        )
    )


def joint_figure_files(wildcards):
    return [
        f"results/figures/{kind}/{name}.{ext}"
        for kind, name in ntx.joint_kind_figures(PREFLIGHT)
        for ext in ("png", "svg")
    ]


def analysis_results(wildcards):
    return expand("results/analyses/{analysis}/result.json", analysis=ANALYSES)


def analysis_effects(wildcards):
    return expand("data/processed/effects/{analysis}.csv", analysis=ANALYSES)


def analysis_left_out(wildcards):
    return expand("data/processed/left_out/{analysis}.csv", analysis=ANALYSES)


def figure_files(wildcards):
    pairs = ntx.bubble_targets(PREFLIGHT.config)
    return (
        expand(
            "results/figures/{kind}/{analysis}.{ext}",
            kind=ntx.FIGURES,
            analysis=ANALYSES,
            ext=["png", "svg"],
        )
        + [
            f"results/figures/bubble/{a}__{m}.{ext}"
            for a, m in pairs
            for ext in ("png", "svg")
        ]
        + expand(
            "results/figures/{kind}/{analysis}.{ext}",
            kind=ntx.ROB_FIGURES,
            analysis=ntx.rob_targets(PREFLIGHT.config),
            ext=["png", "svg"],
        )
        + expand(
            "results/figures/tsa/{analysis}.{ext}",
            analysis=ntx.tsa_targets(PREFLIGHT.config),
            ext=["png", "svg"],
        )
    )


def prisma_files(wildcards):
    """The PRISMA flow diagram (PNG, SVG, PDF), if the project has a screening log."""
    if not PREFLIGHT.screening:
        return []
    return expand("results/figures/prisma/prisma.{ext}", ext=["png", "svg", "pdf"])


def prisma_svg(wildcards):
    """The diagram the HTML report shows (none without a screening log)."""
    return ["results/figures/prisma/prisma.svg"] if PREFLIGHT.screening else []


def crate_workflow_files(wildcards):
    """The Snakefile first, then every file of workflow/: the crate's workflow."""
    return ["Snakefile"] + [str(p) for p in ntx.crate_workflow_files(PROJECT)]


def crate_inputs(wildcards):
    """The config and every file of the data folders that the run reads (crate inputs)."""
    return [CONFIG_FILE] + [str(p) for p in ntx.crate_data_files(PREFLIGHT)]


def crate_outputs(wildcards):
    """Every output of the run: the targets of all and the per-analysis tables and specs."""
    return (
        all_outputs(wildcards)
        + analysis_effects(wildcards)
        + analysis_left_out(wildcards)
        + expand("results/analyses/{analysis}/spec.json", analysis=ANALYSES)
        + expand("data/processed/joint/{joint}.csv", joint=JOINTS)
        + expand("data/processed/joint_left_out/{joint}.csv", joint=JOINTS)
    )


def print_figure_files(wildcards):
    """The PDF and TIFF files the config's figure options ask for (rule figure_print)."""
    return [
        f"results/figures/{kind}/{stem}.{ext}"
        for kind, stem, ext in ntx.print_figure_targets(PREFLIGHT.config)
    ]


def all_outputs(wildcards):
    return (
        ["data/processed/comparisons.csv"]
        + expand("results/analyses/{analysis}/result.json", analysis=ANALYSES)
        + figure_files(wildcards)
        + print_figure_files(wildcards)
        + [
            "results/tables/summary.csv",
            "results/tables/summary.md",
            "results/report.html",
            "results/changelog.md",
        ]
        + rules.evidence_tables.output
        + prisma_files(wildcards)
        + joint_outputs(wildcards)
    )


def evidence_table_csvs(wildcards):
    """The CSV of each evidence table, named by its stem (the report reads them)."""
    return {stem: f"results/tables/{stem}.csv" for stem in ntx.EVIDENCE_TABLES}
