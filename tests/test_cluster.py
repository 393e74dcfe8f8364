"""The distributed path: the workflow through a cluster executor, byte for byte.

Two copies of the project run the whole workflow: one locally
(``snakemake --cores 2``, profiles/default: every job in a thread of one
process), one through ``snakemake-executor-plugin-cluster-generic`` with
``profiles/cluster-generic``, whose submit script starts every job as a
detached ``snakemake`` process of its own, in its own session, as a batch
system would (the jobs share nothing but files). Checked:

- every output file (data/processed and results) is byte-identical to the
  local run's: comparisons, effects, result.json, spec.json, the tables,
  the report and the figures (PNG and SVG are written deterministically);
- every job of the workflow was submitted, and ran in a process of its own:
  one process id per submission, none of them the main Snakemake process,
  each log showing Snakemake in remote mode running exactly the rule it
  was submitted for, with profiles/default's ``force-use-threads`` in
  force (no job spawned a further process);
- the main process ran no rule itself (apart from the target ``all``).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from test_workflow import SNAKEMAKE, copy_project  # the same copy of the project

JOBS_DIR = ".snakemake/cluster-generic"
#: Generous limit for one whole run on a busy 2-core machine (seconds).
RUN_TIMEOUT = 900
#: Folders whose every file must agree between the two runs.
OUTPUT_DIRS = ("data/processed", "results")

pytestmark = pytest.mark.workflow


def snakemake(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run Snakemake in ``cwd``; return the finished process and its process id."""
    proc = subprocess.Popen(SNAKEMAKE + list(args), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"snakemake {' '.join(args)} did not finish in {RUN_TIMEOUT} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), proc.pid


def outputs(project: Path) -> dict[str, bytes]:
    files = {}
    for d in OUTPUT_DIRS:
        for path in sorted((project / d).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[path.relative_to(project).as_posix()] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    local = copy_project(tmp_path_factory.mktemp("local"))
    cluster = copy_project(tmp_path_factory.mktemp("cluster"))
    proc_local, _ = snakemake(local, "--cores", "2")
    assert proc_local.returncode == 0, proc_local.stdout[-3000:]
    proc_cluster, main_pid = snakemake(cluster, "--profile", "profiles/cluster-generic")
    assert proc_cluster.returncode == 0, proc_cluster.stdout[-5000:]
    return local, cluster, proc_cluster, main_pid


def test_results_byte_identical_to_local_run(runs):
    local, cluster, _, _ = runs
    a, b = outputs(local), outputs(cluster)
    assert sorted(a) == sorted(b)
    kinds = {Path(p).suffix for p in a}
    assert {".csv", ".json", ".md", ".png", ".svg", ".html"} <= kinds
    assert any(p.startswith("results/figures/forest/") for p in a)
    differ = [p for p in a if a[p] != b[p]]
    assert not differ, f"{len(differ)} file(s) differ from the local run, e.g. {differ[:5]}"


def submissions(main_output: str) -> dict[str, str]:
    """External job id -> Snakemake job id, from the main process's log."""
    found = re.findall(r"Submitted (?:group )?job (\S+) with external jobid '([^']+)'",
                       main_output)
    return {ext: job for job, ext in found}


def test_every_job_ran_in_a_process_of_its_own(runs):
    _, cluster, proc, main_pid = runs
    main = proc.stdout
    subs = submissions(main)
    # The main process scheduled: every job but the target rule `all` was submitted.
    scheduled = re.findall(r"^\[.*\]\n(?:local)?rule (\w+):", main, flags=re.M)
    assert subs and len(subs) == len([r for r in scheduled if r != "all"])
    assert not re.search(r"^localrule (?!all:)\w+:", main, flags=re.M), \
        "the main process ran a rule itself"
    jobs = cluster / JOBS_DIR
    pids = {}
    ran = []
    for ext in subs:
        pid = int((jobs / f"{ext}.pid").read_text().strip())
        assert (jobs / f"{ext}.exit").read_text().strip() == "0"
        log = (jobs / f"{ext}.log").read_text()
        # the job's own Snakemake, in remote mode, with threads for its run: block
        command = next(line for line in log.splitlines() if "Command:" in line)
        assert "--mode remote" in command and "--target-jobs" in command
        assert "--force-use-threads" in command, "profiles/default's threads were lost"
        rules = re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M)
        assert len(rules) == 1, rules
        assert f"--allowed-rules {rules[0]}" in command
        # no further process was spawned for the rule (it would say `--mode subprocess`)
        assert "--mode subprocess" not in log
        pids[ext] = pid
        ran.extend(rules)
    assert main_pid not in pids.values()
    assert os.getpid() not in pids.values()
    assert len(set(pids.values())) == len(pids), "two submissions shared a process"
    assert sorted(ran) == sorted(r for r in scheduled if r != "all")
    for rule in ("ingest", "effects", "pool", "figures", "bubble", "summary_table",
                 "evidence_tables", "report"):
        assert rule in ran


def test_rerun_through_the_cluster_profile_does_nothing(runs):
    _, cluster, _, _ = runs
    proc, _ = snakemake(cluster, "--profile", "profiles/cluster-generic")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout
    assert not submissions(proc.stdout)


def test_slurm_profile_plans_the_workflow_in_groups_of_ten_analyses(tmp_path):
    """profiles/slurm is read by snakemake-executor-plugin-slurm and packs 10 analyses per sbatch.

    No SLURM here: a dry run shows the plugin accepts the profile and what
    it would submit (12 analyses -> 2 group submissions plus the 4 jobs
    that gather every analysis).
    """
    project = copy_project(tmp_path / "slurm")
    proc, _ = snakemake(project, "--profile", "profiles/slurm", "--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Using profiles profiles/slurm" in proc.stdout
    analyses = len(re.findall(r"^\s*rule pool:", proc.stdout, flags=re.M))
    groups = proc.stdout.count("Group job analysis")
    assert analyses >= 11 and groups == -(-analyses // 10), (analyses, groups)
