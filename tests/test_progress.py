"""Quiet runs: Snakemake's output as one line per finished step, errors passed through.

The canned output (fixtures/progress/snakemake_9_run.txt) is Snakemake
9.27's own output of a four-job run of this workflow; the other tests run
the filter on a copy of the project.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from ntxmeta.progress import Filter, main, run

FIXTURE = Path(__file__).parent / "fixtures" / "progress" / "snakemake_9_run.txt"


def _filtered(lines) -> list[str]:
    out = []
    filt = Filter(out.append)
    for line in lines:
        filt.line(line)
    return out, filt


def test_a_four_job_run_prints_three_step_lines_and_keeps_the_log_path():
    text = FIXTURE.read_text()
    assert len(text.splitlines()) > 80          # what Snakemake prints for 4 jobs
    out, filt = _filtered(text.splitlines(keepends=True))
    assert out == ["[1/4] summary_table\n", "[2/4] changelog\n", "[3/4] report\n"]
    assert filt.log is None or filt.log.endswith(".snakemake.log")


def test_wildcards_name_the_analysis_and_unknown_lines_pass_through():
    lines = ["rule pool:", "    input: a.csv", "    output: b.json", "    jobid: 7",
             "    reason: Missing output files", "    wildcards: analysis=aud_heavy_drinking_rr",
             "Finished jobid: 7 (Rule: pool)", "1 of 9 steps (11%) done",
             "data/raw/alcohol.csv:2: column 'events_treat' = '99' is more than n_treat",
             "Nothing to be done (all requested files are present and up to date)."]
    out, filt = _filtered(lines)
    assert out == ["[1/9] pool aud_heavy_drinking_rr\n",
                   "data/raw/alcohol.csv:2: column 'events_treat' = '99' is more than n_treat\n"]
    assert filt.nothing


def test_the_closing_line_says_done_nothing_or_stopped():
    buf = io.StringIO()
    assert run(["1 of 1 steps (100%) done\n"], out=buf, report="results/report.html") is False
    assert buf.getvalue().splitlines()[-1].startswith("Done in ")
    assert "Results: results/report.html" in buf.getvalue()
    buf = io.StringIO()
    assert run(["Nothing to be done (all requested files are present and up to date).\n"],
               out=buf, report="r.html") is False
    assert buf.getvalue() == ("Nothing to be done: the results are up to date in r.html "
                              "(tables and figures beside it).\n")
    buf = io.StringIO()
    assert run(["Error in rule pool:\n", "    jobid: 3\n"], out=buf) is True
    assert buf.getvalue().splitlines() == [
        "Error in rule pool:", "Stopped with errors (above). each step's log is under logs/."]


def _piped(cmd, cwd):
    """``cmd 2>&1 | python -m ntxmeta.progress --report results/report.html``, as make runs it."""
    run_ = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    filt = subprocess.run([sys.executable, "-m", "ntxmeta.progress", "--report",
                           "results/report.html"], cwd=cwd, stdin=run_.stdout,
                          capture_output=True, text=True, timeout=900)
    run_.stdout.close()
    return run_.wait(timeout=900), filt


def test_help_has_an_example(capsys):
    assert main(["--help"]) == 0
    assert "example:" in capsys.readouterr().out.lower()


@pytest.mark.workflow
def test_make_run_is_quiet_and_a_data_error_still_reaches_the_user(tmp_path):
    from test_workflow import ROOT, copy_project
    project = copy_project(tmp_path)
    makefile = (ROOT / "Makefile").read_text()
    assert "@$(BIN)/snakemake --cores $(CORES) 2>&1 $(QUIET)" in makefile   # make run pipes it
    assert ".SHELLFLAGS := -o pipefail -c" in makefile                     # and keeps its status
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "results/tables/summary.csv"]
    status, proc = _piped(cmd, project)
    assert status == 0 and proc.returncode == 0, proc.stdout[-3000:]
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line.startswith("[")]
    assert len(steps) == len(lines) - 1 > 20           # one line per step and the closing line
    assert any(line.split("] ", 1)[1].startswith("pool ") for line in steps)
    assert "results/report.html" in lines[-1] and ".snakemake/log/" in lines[-1]

    raw = project / "data/raw/alcohol.csv"
    rows = list(csv.reader(io.StringIO(raw.read_text())))
    col = rows[0].index("events_treat")
    rows[1][col] = str(int(rows[1][rows[0].index("n_treat")]) + 5)    # more events than patients
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    raw.write_text(buf.getvalue())
    status, proc = _piped(cmd, project)
    assert status != 0 and proc.returncode != 0
    assert f"alcohol.csv:2: column 'events_treat' = '{rows[1][col]}'" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("Stopped with errors")


def test_snakemakes_report_is_one_line_not_a_line_per_file():
    lines = ["Creating report...", "Loading script code for rule report",
             "Adding forest.png (123.4 KB).", "Adding changelog.md (364 bytes).",
             "Downloading resources and rendering HTML.", "Report created."]   # Snakemake 9.27's
    out, filt = _filtered(lines)
    assert out == ["Snakemake's report created.\n"] and filt.report
