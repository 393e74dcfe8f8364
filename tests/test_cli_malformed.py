"""The malformed corpus through the real commands a user types.

``tests/test_validate.py`` and ``tests/test_config.py`` check the corpus at
the function level; here every file of ``tests/malformed/`` (globbed, so a
new case is picked up without editing this file) goes through the real
command line, in a temporary copy of the project:

- raw tables: the copy's ``data/raw/`` holds only the malformed file, and
  ``python -m ntxmeta.cli validate`` is run from the copy's root, so that the
  command finds ``data/raw`` relative to the current directory and names the
  file ``data/raw/NAME.csv`` (the ``.expected`` files name it ``NAME.csv``,
  as the function-level test runs in ``tests/malformed/``);
- configs: ``data/raw/`` holds the corpus's four-row table ``_raw_rows.csv``
  (against which the expectations were written) and the command is
  ``validate --config NAME.yaml``.

Each run must print exactly the expected report on stderr, then the count
line, nothing on stdout and no traceback, exit with 1, and change no byte
of the copy (``results/`` and ``data/processed/`` included). A few cases
also go through ``snakemake``, which validates at parse time and must stop
before any job with the same lines.

The CLI runs are started together in a thread pool (each is a separate
process costing about a second of imports), so the file takes about a
minute on two cores instead of two.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_workflow import ROOT, SNAKEMAKE, copy_project

MALFORMED = Path(__file__).parent / "malformed"
CONFIG_CORPUS = MALFORMED / "config"
RAW_CASES = sorted(MALFORMED.glob("*.csv"))
CONFIG_CASES = sorted(CONFIG_CORPUS.glob("*.yaml"))
#: The four valid rows the config expectations were written against.
CONFIG_RAW = CONFIG_CORPUS / "_raw_rows.csv"
VALIDATE = [sys.executable, "-m", "ntxmeta.cli", "validate"]
#: Cases also run through snakemake: several problems in one file, an
#: encoding, a delimiter, a file with no rows, a problem between rows, and
#: three config problems (an unsafe analysis name; an analysis selecting
#: nothing; YAML that does not parse, which Snakemake would report without a line).
SNAKEMAKE_RAW = ("many_problems", "latin1", "semicolons", "header_only", "duplicate_row_id")
SNAKEMAKE_CONFIG = ("unsafe_analysis_name", "selects_no_row", "invalid_yaml")
#: Generous per-command limit (a validate run takes about 1.5 s alone).
TIMEOUT_S = 300


def snapshot(root: Path, parts: tuple[str, ...] = (".",)) -> dict[str, bytes]:
    """Every entry under ``root/part`` (relative path -> bytes; folders and links marked)."""
    out = {}
    for part in parts:
        for path in sorted((root / part).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = b"<link>" + os.readlink(path).encode()
            elif path.is_dir():
                out[rel] = b"<dir>"
            else:
                out[rel] = path.read_bytes()
    return out


def output_dirs(root: Path) -> dict[str, bytes]:
    """What a run could write: results/, data/processed/ and logs/."""
    return snapshot(root, ("results", "data/processed", "logs"))


def bare_project(dest: Path, raw: Path, config: Path, config_name: str) -> Path:
    """A copy holding just what ``validate`` reads, plus empty output folders."""
    (dest / "data" / "raw").mkdir(parents=True)
    shutil.copy2(raw, dest / "data" / "raw" / raw.name)
    (dest / config_name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(config, dest / config_name)
    for out in ("results", "data/processed"):
        (dest / out).mkdir(parents=True, exist_ok=True)
        (dest / out / ".gitkeep").write_bytes(b"")
    return dest


def expected_raw(case: Path) -> str:
    """The report of a raw case as the CLI prints it: the file under data/raw/."""
    text = (MALFORMED / f"{case.stem}.expected").read_text("utf-8")
    return text.replace(case.name, f"data/raw/{case.name}")


def expected_config(case: Path, as_name: str) -> str:
    text = (CONFIG_CORPUS / f"{case.stem}.expected").read_text("utf-8")
    return text.replace(case.name, as_name)


#: The line of a capped report that counts the problems it does not show.
NOT_SHOWN = re.compile(r": (\d+) more problem\(s\) of .* not shown; ")


def count_line(report: str) -> str:
    """The count a report ends with: its lines, plus the problems its capped lines count."""
    n = 0
    for line in report.splitlines():
        hidden = NOT_SHOWN.search(line)
        n += int(hidden.group(1)) if hidden else 1
    return f"ntxmeta: {n} problem(s) found; nothing was run.\n"


def _run_validate(job):
    dest, args = job
    before = snapshot(dest)
    proc = subprocess.run(VALIDATE + args, cwd=dest, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    return proc, before, snapshot(dest)


@pytest.fixture(scope="module")
def validate_runs(tmp_path_factory):
    """Every corpus file through ``ntxmeta validate``, run concurrently."""
    base = tmp_path_factory.mktemp("cli")
    jobs = {}
    for case in RAW_CASES:
        dest = bare_project(base / f"raw_{case.stem}", case, ROOT / "config" / "config.yaml",
                            "config/config.yaml")
        jobs[case] = (dest, [])
    for case in CONFIG_CASES:
        dest = bare_project(base / f"config_{case.stem}", CONFIG_RAW, case, case.name)
        jobs[case] = (dest, ["--config", case.name])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(jobs, pool.map(_run_validate, jobs.values())))
    return results


def test_corpus_is_globbed_and_large():
    assert len(RAW_CASES) >= 40 and len(CONFIG_CASES) >= 20
    for case in RAW_CASES:
        assert (MALFORMED / f"{case.stem}.expected").exists(), case
    for case in CONFIG_CASES:
        assert (CONFIG_CORPUS / f"{case.stem}.expected").exists(), case


def _check_failed_run(proc, expected: str, before: dict, after: dict) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == expected + count_line(expected)
    assert after == before, "the command changed files of the project"


@pytest.mark.parametrize("case", RAW_CASES, ids=[p.stem for p in RAW_CASES])
def test_validate_cli_on_malformed_raw_table(case, validate_runs):
    proc, before, after = validate_runs[case]
    _check_failed_run(proc, expected_raw(case), before, after)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[p.stem for p in CONFIG_CASES])
def test_validate_cli_on_malformed_config(case, validate_runs):
    proc, before, after = validate_runs[case]
    _check_failed_run(proc, expected_config(case, case.name), before, after)


def test_validate_cli_accepts_the_real_project(tmp_path):
    """The real data and config pass, from the project root, with a one-line verdict."""
    dest = copy_project(tmp_path)
    proc = subprocess.run(VALIDATE + ["--config", "config/config.yaml"], cwd=dest,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ntxmeta validate: data/raw and config/config.yaml are valid (")
    assert proc.stderr == ""


def test_validate_cli_on_a_missing_config_and_no_raw_files(tmp_path):
    """Nothing to read: both problems in one report, exit 1, no traceback."""
    proc = subprocess.run(VALIDATE + ["--config", "nowhere.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "data/raw/*.csv: no CSV files found; add the trial tables"
    assert lines[1].startswith("nowhere.yaml: cannot be read as UTF-8 text")
    assert lines[2] == "ntxmeta: 2 problem(s) found; nothing was run."
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- snakemake

def _snakemake_stops(dest: Path, expected: str) -> None:
    before = output_dirs(dest)
    proc = subprocess.run(SNAKEMAKE + ["--cores", "2"], cwd=dest, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    report = (expected + count_line(expected)).splitlines()
    lines = proc.stderr.splitlines()
    start = lines.index(report[0]) if report[0] in lines else -1
    assert lines[start:start + len(report)] == report, proc.stderr
    assert output_dirs(dest) == before, "snakemake wrote outputs from invalid input"


def _workflow_copy(dest: Path) -> Path:
    copy_project(dest)
    shutil.rmtree(dest / "data" / "raw")
    (dest / "data" / "raw").mkdir()
    for out in ("results", "data/processed"):
        (dest / out).mkdir(parents=True, exist_ok=True)
        (dest / out / ".gitkeep").write_bytes(b"")
    return dest


@pytest.mark.workflow
@pytest.mark.parametrize("kind, stem", [("raw", s) for s in SNAKEMAKE_RAW]
                         + [("config", s) for s in SNAKEMAKE_CONFIG])
def test_snakemake_stops_on_malformed_input(kind, stem, tmp_path):
    dest = _workflow_copy(tmp_path)
    if kind == "raw":
        case = MALFORMED / f"{stem}.csv"
        shutil.copy2(case, dest / "data" / "raw" / case.name)
        expected = expected_raw(case)
    else:
        case = CONFIG_CORPUS / f"{stem}.yaml"
        shutil.copy2(CONFIG_RAW, dest / "data" / "raw" / CONFIG_RAW.name)
        shutil.copy2(case, dest / "config" / "config.yaml")
        expected = expected_config(case, "config/config.yaml")
    _snakemake_stops(dest, expected)
