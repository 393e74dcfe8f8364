"""Faults and hostile text, on temporary copies of the whole project.

Faults
------
- Kill: the workflow (``snakemake --cores 2``) is killed with SIGKILL to its
  process group twice, once after the first ``result.json`` appears (before
  the summary table) and once while a figure is being written (a temporary
  PNG exists), then run again to completion. Every file under ``results/``
  and ``data/processed/`` (logs excluded) must be byte-identical to an
  uninterrupted run in another copy, and no temporary file may remain.
  After a kill Snakemake refuses to run twice over: the killed run's lock
  remains (``LockException``: the user types ``snakemake --unlock``), and the
  outputs of the killed jobs are marked incomplete
  (``IncompleteFilesException``: ``--rerun-incomplete``). The default profile
  should say ``rerun-incomplete: true`` so that after ``--unlock`` a plain
  re-run recomputes them; the copy gets that line if the project's profile
  lacks it.
- Killed rebuild: Snakemake alone (not its workers) is killed with SIGKILL
  while ``--forcerun figures`` writes a figure over a completed run: every
  previous output stays byte-identical, no temporary file is left (the
  workers delete theirs before they exit) and no process of the run lives on.
- Determinism: two clean runs in two copies give byte-identical results and
  processed data, PNG and SVG included.
- Atomic writes (``ntxmeta.io``): a failed write leaves the old file and no
  temporary; a killed writer's temporary is removed by the next write.

Hostile text
------------
Formula-like labels (``=HYPERLINK(..)``, ``+cmd``, ``-1+2``, ``@SUM(A1)``),
``<script>`` and ``"><img onerror=..>`` in labels and quotes of the raw CSV,
and in an analysis title of the config, must come out neutralised in every
CSV/Markdown table under ``results/tables/`` and escaped in every HTML and
SVG file; the quote may appear verbatim only in CSV files (plain text), the
label only in CSV and JSON files (data) and, until ``to_markdown`` escapes
markup (a strict xfail below), in Markdown tables. Unsafe analysis names, paths out
of the project, unknown path-like keys and YAML code tags are refused by
``ntxmeta validate`` and by snakemake before anything is written.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ntxmeta import io as nio
from test_cli_malformed import VALIDATE, snapshot
from test_workers import alive
from test_workflow import SNAKEMAKE, copy_project, project, run  # noqa: F401 (fixture)

#: Generated trees compared between runs (logs differ by design: they are not outputs).
OUTPUTS = ("results", "data/processed")
#: Upper bound of one workflow run on a loaded two-core machine (a run takes ~30 s).
RUN_TIMEOUT_S = 900
#: Polling interval while waiting for the moment to kill (a PNG takes ~0.1-0.5 s).
POLL_S = 0.005
PROFILE = Path("profiles/default/config.yaml")
#: How long the workers of a killed run may take to end (they check every
#: ORPHAN_CHECK_S = 0.5 s; a loaded machine may be slow to schedule them).
WORKER_GRACE_S = 120


def outputs(root: Path) -> dict[str, bytes]:
    return snapshot(root, OUTPUTS)


def temp_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for part in OUTPUTS
                  for p in (root / part).rglob(f".*{nio.TMP_SUFFIX}"))


def said(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The process with ``.text``: stdout and stderr (a dry run reports on stdout)."""
    proc.text = proc.stdout + proc.stderr
    return proc


def assert_same_tree(got: dict, want: dict) -> None:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    differ = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    assert not (missing or extra or differ), f"missing {missing}, extra {extra}, differ {differ}"


# --------------------------------------------------------------------------- determinism

@pytest.mark.workflow
def test_a_completed_run_leaves_no_temporary_files(project):
    assert temp_files(project) == []
    assert (project / "results/report.html").exists()


@pytest.mark.workflow
def test_two_clean_runs_are_byte_identical(project, tmp_path):
    dest = copy_project(tmp_path)
    proc = run(dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = outputs(project), outputs(dest)
    assert any(k.endswith(".png") for k in want) and any(k.endswith(".svg") for k in want)
    assert_same_tree(got, want)


@pytest.mark.workflow
def test_outputs_get_the_umask_permissions(project):
    mask = os.umask(0o022)
    os.umask(mask)
    wrong = [p.relative_to(project).as_posix() for part in OUTPUTS
             for p in (project / part).rglob("*")
             if p.is_file() and p.stat().st_mode & 0o777 != 0o666 & ~mask]
    assert wrong == []


# --------------------------------------------------------------------------- kill

def ensure_rerun_incomplete(root: Path) -> bool:
    """Give the copy's default profile ``rerun-incomplete: true``; False if it had it already."""
    text = (root / PROFILE).read_text("utf-8")
    if re.search(r"^rerun-incomplete:\s*true\s*$", text, re.M):
        return False
    (root / PROFILE).write_text(text.rstrip("\n") + "\nrerun-incomplete: true\n", "utf-8")
    return True


def kill_when(root: Path, ready) -> str:
    """Start the workflow, SIGKILL its process group as soon as ``ready(root)``; its output."""
    log = root / f"killed_{time.monotonic_ns()}.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(SNAKEMAKE + ["--cores", "2"], cwd=root, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not ready(root):
                assert proc.poll() is None, "the run ended before the moment to kill it"
                assert time.monotonic() < deadline, "no moment to kill the run came"
                time.sleep(POLL_S)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    log.unlink()
    return text


def some_result_but_no_summary(root: Path) -> bool:
    return (any((root / "results/analyses").glob("*/result.json"))
            and not (root / "results/tables/summary.csv").exists())


def figure_being_written(root: Path) -> bool:
    return any((root / "results/figures").glob(f"*/.*.png.*{nio.TMP_SUFFIX}"))


@pytest.fixture(scope="module")
def killed_and_resumed(project, tmp_path_factory):
    """A copy killed twice mid-run, then run again to completion."""
    dest = copy_project(tmp_path_factory.mktemp("killed"))
    added = ensure_rerun_incomplete(dest)
    kill_when(dest, some_result_but_no_summary)
    unlock(dest)
    kill_when(dest, figure_being_written)
    leftovers = temp_files(dest)
    unlock(dest)
    final = run(dest)
    return dest, added, leftovers, final


def unlock(root: Path) -> None:
    """What the user types after a kill: the killed run's lock stays (LockException)."""
    proc = run(root, "--unlock")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.workflow
def test_kill_twice_then_rerun_gives_the_uninterrupted_outputs(project, killed_and_resumed):
    dest, added, leftovers, final = killed_and_resumed
    assert leftovers, "the second kill was meant to catch a figure being written"
    assert final.returncode == 0, final.stderr[-3000:]
    assert "IncompleteFilesException" not in said(final).text
    got = {k: v for k, v in outputs(dest).items() if not k.endswith(nio.TMP_SUFFIX)}
    assert_same_tree(got, outputs(project))


@pytest.mark.workflow
def test_rerun_after_kill_leaves_no_temporary_files(killed_and_resumed):
    dest, _, _, final = killed_and_resumed
    assert final.returncode == 0
    assert temp_files(dest) == []


def project_processes(root: Path) -> list[int]:
    """Ids of this user's live processes started for ``root``: its path in their command
    line, or their working folder inside it (a spawned worker's command line names no path)."""
    me, found = os.getuid(), []
    root = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != me or not alive(int(entry.name)):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink(entry / "cwd")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # ended while we looked, or not ours to read
        if root in cmdline or cwd == root or cwd.startswith(root + os.sep):
            found.append(int(entry.name))
    return sorted(found)


@pytest.mark.workflow
def test_a_killed_rebuild_leaves_the_previous_outputs_and_no_process(project, tmp_path):
    """SIGKILL of Snakemake alone while ``--forcerun figures`` writes a figure.

    Snakemake cannot tidy up after SIGKILL; its worker processes see their
    parent gone and end on their own. Afterwards every output of the
    completed run is byte-identical (the figure being drawn is not half
    written, and no output was deleted before its job ran: ``update()``),
    no temporary file is left beside an output (a worker removes the ones it
    was writing before it exits), and no process of the run is alive.
    """
    dest = tmp_path / "project"
    shutil.copytree(project, dest, symlinks=True)  # a completed run, .snakemake included
    before = outputs(dest)
    assert any(k.startswith("results/figures/forest/") for k in before)
    log = dest / "killed.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(SNAKEMAKE + ["--cores", "2", "--forcerun", "figures"], cwd=dest,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not figure_being_written(dest):
            assert proc.poll() is None, "the rebuild ended before a figure was being written"
            assert time.monotonic() < deadline, "no figure was written in time"
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGKILL)  # Snakemake only: its workers are left to notice
        proc.wait()
        deadline = time.monotonic() + WORKER_GRACE_S
        while project_processes(dest) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = project_processes(dest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in project_processes(dest):  # leave nothing behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert not left, f"process(es) {left} outlived the killed run"
    assert temp_files(dest) == []
    assert_same_tree(outputs(dest), before)


# --------------------------------------------------------------------------- atomic writes

@pytest.mark.workflow
def test_a_failed_rebuild_leaves_the_previous_outputs_as_they_were(tmp_path):
    """A job that fails (here: on a corrupted input) leaves its previous outputs byte for byte.

    Snakemake deletes a job's outputs before it runs and after it fails; the
    rules' outputs are ``update()`` (not deleted first) and the profile says
    ``keep-incomplete`` (not deleted after), while every file is written to a
    temporary and renamed, so an output is always the old file or the new one.
    A full disk fails a job the same way (the write raises before the rename).
    """
    dest = copy_project(tmp_path)
    assert run(dest).returncode == 0
    # one failing job at a time: the report (a table it reads), then a pool job (its effects)
    for rule, rel, data in (("report", "results/tables/subgroups.csv", b"analysis,bogus\n"),
                            ("pool", "data/processed/effects/aud_any_drinking_rr.csv",
                             b"\xff\xfe not a table\n")):
        (dest / rel).write_bytes(data)
        before = {k: v for k, v in outputs(dest).items() if k != rel}
        proc = said(subprocess.run(SNAKEMAKE + ["--cores", "2"], cwd=dest, capture_output=True,
                                   text=True, timeout=RUN_TIMEOUT_S))
        assert proc.returncode != 0
        assert set(re.findall(r"Error in rule (\w+)", proc.text)) == {rule}, proc.text[-3000:]
        assert "Removing output files of failed job" not in proc.text
        assert_same_tree({k: v for k, v in outputs(dest).items() if k != rel}, before)
    assert temp_files(dest) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n", "utf-8")
    with pytest.raises(RuntimeError):
        with nio.atomic_path(target) as tmp:
            tmp.write_text("half", "utf-8")
            raise RuntimeError("killed mid-write")
    assert target.read_text("utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_dead_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "result.json"
    stale = tmp_path / f".result.json.{dead.pid}.abc123{nio.TMP_SUFFIX}"
    live = tmp_path / f".result.json.{os.getppid()}.def456{nio.TMP_SUFFIX}"
    other = tmp_path / f".spec.json.{dead.pid}.ghi789{nio.TMP_SUFFIX}"
    for p in (stale, live, other):
        p.write_text("partial", "utf-8")
    nio.write_text(target, "{}\n")
    assert target.read_text("utf-8") == "{}\n"
    assert not stale.exists()
    assert live.exists() and other.exists()  # a live writer; another target


def test_outputs_get_ordinary_permissions(tmp_path):
    target = tmp_path / "x.txt"
    nio.write_text(target, "x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------- hostile text

FORMULAS = ['=HYPERLINK("http://x")', "+cmd", "-1+2", "@SUM(A1)"]
LABEL_TAG = "<script>alert(1)</script>"
QUOTE_TAGS = ' "><img src=x onerror=alert(2)> <script>alert(3)</script>'
TITLE = '=HYPERLINK("http://y") <script>alert(4)</script>'
HOSTILE_ANALYSIS = "aud_heavy_drinking_rr"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Markup that must never appear unescaped in HTML, SVG or Markdown.
RAW_MARKUP = ("<script>alert", "<img src=x")
#: The quote's markup as written (CSV doubles the quote, which keeps this substring).
RAW_QUOTE = '"><img src=x onerror=alert(2)>'


def make_hostile(root: Path) -> list[str]:
    """Hostile labels and quotes in rows of one analysis, a hostile title in the config."""
    raw = root / "data/raw/alcohol.csv"
    with open(raw, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    chosen = [r for r in rows if r["outcome"] in ("relapse_heavy_drinking", "any_heavy_drinking")
              and r["measure_type"] == "binary" and r["followup_weeks"] != "24"]
    labels = FORMULAS + [LABEL_TAG]
    assert len(chosen) >= len(labels)
    for row, label in zip(chosen, labels):
        row["label"] = label
        row["quote"] = label + QUOTE_TAGS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    raw.write_text(out.getvalue(), "utf-8")
    config = root / "config/config.yaml"
    text = config.read_text("utf-8")
    title = re.search(rf"(?m)^  {HOSTILE_ANALYSIS}:\n    title: .*$", text)
    assert title, "the analysis moved in config.yaml"
    quoted = TITLE.replace('"', '\\"')
    config.write_text(text.replace(title.group(0),
                                   f'  {HOSTILE_ANALYSIS}:\n    title: "{quoted}"'), "utf-8")
    return labels


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("hostile"))
    labels = make_hostile(dest)
    proc = run(dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dest, labels


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table_cells(path: Path) -> list[str]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return [cell for row in csv.reader(fh) for cell in row]
    cells = []
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line):
            cells += [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    return cells


@pytest.mark.workflow
def test_tables_neutralise_formulas(hostile):
    dest, _ = hostile
    tables = sorted((dest / "results/tables").glob("*.csv")) + sorted(
        (dest / "results/tables").glob("*.md"))
    assert len(tables) >= 10
    for path in tables:
        for cell in table_cells(path):
            assert is_number(cell) or not cell.startswith(FORMULA_START), (path.name, cell)
    summary = (dest / "results/tables/summary.csv").read_text("utf-8")
    assert "'=HYPERLINK(\"\"http://y\"\")" in summary  # the title got through, neutralised


@pytest.mark.workflow
def test_hostile_text_reaches_data_files_verbatim_and_nothing_else_unescaped(hostile):
    dest, _ = hostile
    where_quote, where_label = set(), set()
    for part in OUTPUTS:
        for path in (dest / part).rglob("*"):
            if not path.is_file() or path.suffix in (".png", ".pdf", ".tif", ".tiff"):
                continue   # images: no text a reader could run
            text = path.read_text("utf-8")
            rel = path.relative_to(dest).as_posix()
            if RAW_QUOTE in text:
                where_quote.add(rel)
            if LABEL_TAG in text:
                where_label.add(rel)
            if path.suffix in (".html", ".svg"):
                for markup in RAW_MARKUP:
                    assert markup not in text, (rel, markup)
    assert {"data/processed/comparisons.csv",
            f"data/processed/effects/{HOSTILE_ANALYSIS}.csv"} <= where_quote
    # data files only: the tables, and the changelog's record of each row (JSON)
    assert all(rel.endswith(".csv") or rel == "results/changelog.json" for rel in where_quote), \
        where_quote
    assert all(rel.endswith((".csv", ".json", ".md")) for rel in where_label), where_label
    report = (dest / "results/report.html").read_text("utf-8")
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in report  # the quote is shown, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report  # and the label
    forest = (dest / f"results/figures/forest/{HOSTILE_ANALYSIS}.svg").read_text("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in forest


@pytest.mark.workflow
def test_markdown_tables_escape_markup(hostile):
    dest, _ = hostile
    for path in sorted((dest / "results").rglob("*.md")):
        text = path.read_text("utf-8")
        for markup in RAW_MARKUP:
            assert markup not in text, (path.name, markup)


UNSAFE_NAMES = ["../../escape", "a/b", "/abs", "..", "ok.csv", "Upper", "with space", "-rf"]
OUTSIDE_PATHS = ["../elsewhere/*.csv", "/etc/*.csv", "data/../../x/*.csv", "C:\\x\\*.csv"]


def _config_with(names: list[str], raw_data: str | None = None, extra: str = "") -> str:
    lines = [f"raw_data: '{raw_data}'"] if raw_data else []
    lines += [extra] if extra else []
    lines.append("analyses:")
    for name in names:
        lines += [f"  '{name}':", "    title: x", "    filters: {indication: [alcohol]}",
                  "    measure: RR"]
    return "\n".join(lines) + "\n"


def _validate(root: Path, config_text: str) -> subprocess.CompletedProcess:
    (root / "bad.yaml").write_text(config_text, "utf-8")
    return subprocess.run(VALIDATE + ["--config", "bad.yaml"], cwd=root, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture
def raw_only(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    shutil.copy2(Path(__file__).parent / "malformed/config/_raw_rows.csv", tmp_path / "data/raw")
    return tmp_path


def test_unsafe_analysis_names_and_outside_paths_are_refused(raw_only):
    names = UNSAFE_NAMES + ["fine_name"]
    lines = []
    for path in OUTSIDE_PATHS:
        proc = _validate(raw_only, _config_with(names, raw_data=path,
                                                extra="results_dir: /tmp/elsewhere"))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[0] == (f"bad.yaml:1: key 'raw_data' = '{path}':"
                            " must stay inside the project: give a path relative to the project "
                            "folder, without '..'")
        assert lines[1].startswith("bad.yaml:2: key 'results_dir': unknown key;")
    refused = [line for line in lines if "analysis names become file names" in line]
    assert [line.split("'")[1] for line in refused] == [f"analyses.{n}" for n in UNSAFE_NAMES]
    assert lines[-1] == f"ntxmeta: {len(UNSAFE_NAMES) + 2} problem(s) found; nothing was run."


def test_yaml_code_tags_run_nothing(raw_only):
    proc = _validate(raw_only, "analyses: !!python/object/apply:os.system ['touch PWNED']\n")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not valid YAML" in proc.stderr
    assert not (raw_only / "PWNED").exists()


@pytest.mark.workflow
@pytest.mark.parametrize("config_text", [
    _config_with(["../../../pwned"]),
    "analyses: !!python/object/apply:os.system ['touch PWNED']\n",
], ids=["path_in_name", "yaml_tag"])
def test_snakemake_refuses_hostile_configs_before_writing(config_text, tmp_path):
    parent = tmp_path
    dest = copy_project(tmp_path / "project")
    (dest / "config/config.yaml").write_text(config_text, "utf-8")
    around = sorted(p.name for p in parent.iterdir())
    proc = run(dest)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert sorted(p.name for p in parent.iterdir()) == around
    assert outputs(dest) == {}
    assert not list(tmp_path.rglob("PWNED")) and not list(tmp_path.rglob("pwned*"))


def test_no_shell_anywhere():
    """No rule runs a shell command and the package starts no process: a value from the
    data or config cannot reach a shell."""
    root = Path(__file__).resolve().parents[1]
    rules = [root / "Snakefile", *sorted((root / "workflow/rules").glob("*.smk"))]
    for path in rules:
        assert not re.search(r"^\s*shell\s*:", path.read_text("utf-8"), re.M), path
    for path in sorted((root / "src/ntxmeta").rglob("*.py")):
        text = path.read_text("utf-8")
        for call in ("subprocess", "os.system", "os.popen", "shell=True", "yaml.load(",
                     "yaml.unsafe_load", "eval(", "exec("):
            assert call not in text, (path.name, call)
