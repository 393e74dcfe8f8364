"""Quiet runs: Snakemake's output reduced to one progress line per finished step.

``snakemake --cores 2 2>&1 | python -m ntxmeta.progress`` (the Makefile's
``make``) prints ``[ 3/105] pool aud_heavy_drinking_rr`` when a job ends, passes every
line it does not know through unchanged (so that every error message, a
validation error of data/raw/ above all, still reaches the user), and ends
with where the results are and where the complete log is (Snakemake writes
it under ``.snakemake/log/`` on every run; each step's own log is under
``logs/``). The package starts no process: the Makefile pipes the run into
it and ``set -o pipefail`` keeps Snakemake's exit status. ``NTXMETA_VERBOSE=1``
passes the whole output through instead (``make VERBOSE=1``).

Snakemake's ``--quiet`` can only drop whole categories (the rule blocks
with their wildcards, or the progress counts), and its logger plugins are
a separate package per format; a line filter over its documented output
is the smaller thing, so it is written here.
"""
from __future__ import annotations

import os
import re
import sys
import time


_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
_STEPS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done$")
_LOG = re.compile(r"^Complete log\(s\): (.*)$")
#: Lines of Snakemake's run output that say nothing a user of `make` needs.
_NOISE = re.compile(
    r"^(Using workflow specific profile|Assuming unrestricted shared filesystem|SNAKEMAKE$|=+$|"
    r"Building DAG of jobs|Using shell:|Provided cores:|Rules claiming more threads|Job stats:|"
    r"job\s+count$|-+\s+-+$|total\s+\d+$|Select jobs to execute|Execute \d+ jobs|"
    r"\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]$|Elapsed time:|Reasons:|"
    r"Some jobs were triggered by provenance|If you prefer that only modification time|"
    r"If you are sure that a change for a certain output file|Rules with provenance triggered jobs|"
    r"Adding .+ \([\d.]+ (?:[KMG]?B|bytes)\)\.$|Loading script code for rule|"
    r"Downloading resources and rendering HTML|"
    r"\s+(input|output|log|jobid|reason|wildcards|resources|threads|priority|benchmark): )")
_BANNER_LINE = re.compile(r"^  [A-Z][\w ()]*: ")
_STATS_ROW = re.compile(r"^\w+\s+\d+$")


class Filter:
    """Turn Snakemake's output lines into progress lines; unknown lines pass through."""

    def __init__(self, write):
        self.write = write
        self.jobs: dict[str, str] = {}      # jobid -> "rule wildcard values"
        self._rule: str | None = None
        self._jobid: str | None = None
        self._finished: str | None = None
        self.steps = 0
        self.log: str | None = None
        self.nothing = False
        self.report = False
        self._in_banner = False

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        if text == "SNAKEMAKE":
            self._in_banner = True
            return
        if self._in_banner:
            if _BANNER_LINE.match(text) or text.startswith("=") or not text.strip():
                return
            self._in_banner = False
        if m := _RULE.match(text):
            self._rule, self._jobid = m.group(1), None
            return
        if (m := _JOBID.match(text)) and self._rule:   # Snakemake prints it before the wildcards
            self._jobid = m.group(1)
            self.jobs[self._jobid] = self._rule
            return
        if (m := _WILDCARDS.match(text)) and self._jobid:
            values = " ".join(v.split("=", 1)[-1] for v in m.group(1).split(", "))
            self.jobs[self._jobid] = f"{self._rule} {values}"
            return
        if m := _FINISHED.match(text):
            self._finished = self.jobs.get(m.group(1), m.group(2))
            return
        if m := _STEPS.match(text):
            done, total = m.groups()
            self.steps = int(total)
            if self._finished != "all":
                width = len(total)
                self.write(f"[{done:>{width}}/{total}] {self._finished or 'step'}\n")
            self._finished = None
            return
        if m := _LOG.match(text):
            self.log = m.group(1)
            return
        if text.startswith("Creating report"):
            self.report = True
            return
        if text.startswith("Report created"):
            self.write("Snakemake's report created.\n")
            return
        if text.startswith("Nothing to be done"):
            self.nothing = True
            return
        if not text.strip() or _NOISE.match(text) or _STATS_ROW.match(text):
            return
        self.write(text + "\n")


#: Lines by which Snakemake (or the preflight) says a run stopped.
_STOPPED = re.compile(r"^(Exiting because a job execution failed|WorkflowError|Error in rule|"
                      r"ntxmeta: \d+ problem\(s\) found|.*Error:)")


def run(lines, out=sys.stdout, report: str | None = None) -> bool:
    """Filter a run's output ``lines`` (an iterable of text lines); whether it stopped.

    ``report``: the page to point to at the end (the Makefile passes the
    workflow's own path; the package names no output path). The run's exit
    status is the shell's (``set -o pipefail`` in the Makefile): this filter
    only decides the closing line.
    """
    hint = f"{report} (tables and figures beside it)" if report else "the workflow's outputs"
    start = time.monotonic()
    filt = Filter(out.write)
    stopped = False
    for text in lines:
        stopped = stopped or bool(_STOPPED.match(text))
        filt.line(text)
        out.flush()
    where = f"full log: {os.path.relpath(filt.log)}; " if filt.log else ""
    if stopped:
        out.write(f"Stopped with errors (above). {where}each step's log is under logs/.\n")
    elif filt.nothing:
        out.write(f"Nothing to be done: the results are up to date in {hint}.\n")
    else:
        out.write(f"Done in {time.monotonic() - start:.0f} s. Results: {hint}; "
                  f"{where}each step's log is under logs/.\n")
    return stopped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print("usage: COMMAND 2>&1 | python -m ntxmeta.progress [--report PAGE]\n\n"
              "Read a Snakemake run's output on standard input and print one line per finished\n"
              "step instead; errors pass through; at the end, where PAGE is. Example:\n"
              "  snakemake --cores 2 2>&1 | python -m ntxmeta.progress --report report.html")
        return 0
    report = argv[1] if len(argv) >= 2 and argv[0] == "--report" else None
    if os.environ.get("NTXMETA_VERBOSE"):
        for text in sys.stdin:
            sys.stdout.write(text)
        return 0
    return 1 if run(sys.stdin, report=report) else 0


if __name__ == "__main__":
    sys.exit(main())
