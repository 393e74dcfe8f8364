"""Figure options in the workflow: a change re-renders only the figures it concerns.

On a temporary copy of the project with two analyses of the real config
(one main, with bubble plots; one not), the workflow is run once; then
the config's figure options are changed and ``snakemake -n`` lists the
jobs the change makes: one analysis' options re-render that analysis'
figures only, the defaults re-render every figure, and neither re-runs an
effects or pool job (ingest, which reads the config file, runs on any
edit of it; it writes the same comparisons.csv, which no effects job
reads: the effects jobs select from the validated table by their digest).
Print formats add one job per figure and format,
which a real run then writes.
"""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from test_workflow import ROOT, copy_project, run

pytestmark = pytest.mark.workflow

KEEP = ("aud_heavy_drinking_rr", "aud_dropout_rr")   # main with moderators; plain
FIGURE_RULES = {"figures", "rob_figures", "bubble", "figure_print", "bubble_print"}
MODEL_RULES = {"effects", "pool", "summary_table", "evidence_tables"}
#: Jobs of any config edit: ingest has the config file as input; the RO-Crate lists the
#: config (and every output) with its checksum.
ANY_EDIT = {("ingest", ""), ("report", ""), ("crate", "")}


def _config() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text("utf-8"))
    cfg["analyses"] = {k: cfg["analyses"][k] for k in KEEP}
    cfg["grade"]["overrides"] = {k: v for k, v in cfg["grade"].get("overrides", {}).items() if k in KEEP}
    return cfg


def _write(project, cfg: dict) -> None:
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")


def _planned(proc: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, analysis) of every job a dry run lists ("" for jobs of no analysis)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, rule = set(), None
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            if rule is not None:
                jobs.add((rule, ""))
            rule = m.group(1)
            continue
        m = re.match(r"^\s+wildcards: .*\banalysis=(\w+)", line)
        if m and rule is not None:
            jobs.add((rule, m.group(1)))
            rule = None
        elif not line.strip() and rule is not None:
            jobs.add((rule, ""))
            rule = None
    return jobs - {("all", "")}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("figopts"))
    _write(dest, _config())
    proc = run(dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _planned(run(dest, "-n")) == set()  # nothing left to do
    return dest


def test_one_analysis_figure_option_re_renders_only_its_figures(project):
    cfg = _config()
    cfg["analyses"]["aud_dropout_rr"]["figures"] = {"font_size": 9}
    _write(project, cfg)
    jobs = _planned(run(project, "-n"))
    assert jobs == {("figures", "aud_dropout_rr")} | ANY_EDIT


def test_one_forest_option_of_a_main_analysis_re_renders_its_forest_job_only(project):
    """Not its risk-of-bias figures nor its bubble plots (each job has its own digest)."""
    cfg = _config()
    cfg["analyses"]["aud_heavy_drinking_rr"]["figures"] = {"forest": {"order": "year"}}
    _write(project, cfg)
    assert _planned(run(project, "-n")) == {("figures", "aud_heavy_drinking_rr")} | ANY_EDIT


def test_a_bubble_option_re_renders_the_bubble_plots_only(project):
    cfg = _config()
    cfg["analyses"]["aud_heavy_drinking_rr"]["figures"] = {"bubble": {"ticks": [0.5, 1, 2]}}
    _write(project, cfg)
    jobs = _planned(run(project, "-n"))
    assert jobs == {("bubble", "aud_heavy_drinking_rr")} | ANY_EDIT


def test_default_figure_options_re_render_every_figure_and_no_model(project):
    cfg = _config()
    cfg["figures"] = {"greyscale": True}
    _write(project, cfg)
    jobs = _planned(run(project, "-n"))
    assert not {r for r, _ in jobs} & MODEL_RULES
    assert {("figures", a) for a in KEEP} | {("rob_figures", "aud_heavy_drinking_rr"),
                                             ("bubble", "aud_heavy_drinking_rr")} <= jobs
    assert {r for r, _ in jobs} == {"figures", "rob_figures", "bubble"} | {r for r, _ in ANY_EDIT}


def test_print_formats_are_written_for_the_analysis_that_asks(project):
    cfg = _config()
    cfg["analyses"]["aud_dropout_rr"]["figures"] = {"formats": ["png", "svg", "pdf"]}
    _write(project, cfg)
    # a PDF more re-renders no PNG or SVG: one job per figure, none else
    jobs = _planned(run(project, "-n"))
    assert jobs == {("figure_print", "aud_dropout_rr"), ("ingest", ""), ("crate", "")}
    cfg["analyses"]["aud_dropout_rr"]["figures"] = {"formats": ["png", "svg", "pdf", "tiff"],
                                                    "width": "double", "forest": {"columns": ["effect", "weight"]}}
    _write(project, cfg)
    proc = run(project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind in ("forest", "funnel", "cumulative", "leave_one_out"):
        for ext in ("pdf", "tiff"):
            assert (project / f"results/figures/{kind}/aud_dropout_rr.{ext}").stat().st_size > 0
    assert not list((project / "results/figures").rglob("aud_heavy_drinking_rr.pdf"))
    # and a run after it has nothing to do
    assert _planned(run(project, "-n")) == set()
