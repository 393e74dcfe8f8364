"""The whole workflow, end to end, on a temporary copy of the project.

Checks what a user sees: one command produces every output; the summary's
numbers agree with an independent computation from the raw CSV; a re-run
does nothing; a changed row re-runs only its analysis; a malformed raw file
stops the run with the promised message and writes nothing; the workflow
is lint- and snakefmt-clean.
"""
from __future__ import annotations

import csv
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PARTS = ("Snakefile", "Makefile", "pyproject.toml", "workflow", "config", "data/raw",
                 "data/reference", "data/rob", "data/screening", "profiles")
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.workflow


def copy_project(dest: Path) -> Path:
    for part in PROJECT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, symlinks=True)
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    # the schemas folder may be a link into the package: keep it resolvable
    return dest


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(SNAKEMAKE + ["--cores", "2", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def jobs_run(proc: subprocess.CompletedProcess) -> list[str]:
    """Rule names of the jobs a run executed (Snakemake's log lines, or make's progress lines)."""
    text = proc.stdout + proc.stderr
    return [line.split()[1].rstrip(":") for line in text.splitlines()
            if line.startswith(("rule ", "localrule ")) or re.match(r"\[\s*\d+/\d+\] ", line)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("project"))
    proc = run(dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dest


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reml_independent(yi: np.ndarray, vi: np.ndarray) -> tuple[float, float, float]:
    """REML tau^2 by direct maximisation of the restricted likelihood (scipy), then the
    inverse-variance estimate: independent of ntxmeta's Fisher scoring."""
    def neg_restricted_ll(t):
        w = 1 / (vi + t)
        mu = np.sum(w * yi) / np.sum(w)
        return 0.5 * (np.sum(np.log(vi + t)) + np.log(np.sum(w)) + np.sum(w * (yi - mu) ** 2))
    res = optimize.minimize_scalar(neg_restricted_ll, bounds=(0, 10), method="bounded",
                                   options={"xatol": 1e-12})
    t = res.x if neg_restricted_ll(res.x) < neg_restricted_ll(0.0) else 0.0
    w = 1 / (vi + t)
    mu = np.sum(w * yi) / np.sum(w)
    se = math.sqrt(1 / np.sum(w))
    return mu, se, t


def test_every_output_exists(project):
    analyses = sorted(p.name for p in (project / "results/analyses").iterdir())
    assert len(analyses) >= 9
    for a in analyses:
        assert (project / f"data/processed/effects/{a}.csv").stat().st_size > 0
        assert (project / f"results/analyses/{a}/result.json").stat().st_size > 0
        for ext in ("png", "svg"):
            assert (project / f"results/figures/forest/{a}.{ext}").stat().st_size > 0
    assert (project / "data/processed/comparisons.csv").exists()
    assert (project / "results/tables/summary.md").read_text().startswith("| analysis")


def test_joint_models_are_run_and_reported(project):
    """Every time-point and network model of the config: its effects, result, figures and
    tables, and its section of the report; numbers as in its result (ratios shown)."""
    import yaml

    from ntxmeta.joint import read_result
    cfg = yaml.safe_load((project / "config/config.yaml").read_text(encoding="utf-8"))
    names = {**{n: "timepoints" for n in cfg["timepoints"]},
             **{n: "network" for n in cfg["networks"]}}
    assert len(names) >= 3
    report = (project / "results/report.html").read_text(encoding="utf-8")
    assert 'id="time-points-and-networks"' in report
    kinds = {"timepoints": ("timepoints",), "network": ("network_graph", "network_forest")}
    for name, kind in names.items():
        effects = read_csv(project / f"data/processed/joint/{name}.csv")
        result = read_result(project / f"results/joint/{name}/result.json")
        assert result.kind == kind and result.k == sum(r["yi"] != "" for r in effects)
        for fig in kinds[kind]:
            assert (project / f"results/figures/{fig}/{name}.svg").stat().st_size > 0
        assert f'id="a-{name}"' in report
        first = result.estimates[0]
        assert f"{math.exp(first.estimate):.2f} ({math.exp(first.ci_low):.2f} to " \
               f"{math.exp(first.ci_high):.2f})" in report, name
    tp = read_csv(project / "results/tables/timepoints.csv")
    assert {r["row"] for r in tp} >= {"End of treatment", "After treatment (follow-up)"}
    ranks = read_csv(project / "results/tables/network_ranking.csv")
    assert {r["network"] for r in ranks} == {n for n, k in names.items() if k == "network"}


def test_command_line_steps_give_the_workflows_outputs(project, tmp_path):
    """`ntxmeta ingest/effects/pool/summary` by hand, in a fresh copy, write what the workflow wrote."""
    cli = [sys.executable, "-m", "ntxmeta.cli"]
    analysis = "aud_any_drinking_rr"
    by_hand = copy_project(tmp_path)
    effects = f"data/processed/effects/{analysis}.csv"
    result, spec = (f"results/analyses/{analysis}/{f}.json" for f in ("result", "spec"))
    steps = [
        ["ingest"],
        ["effects", "--analysis", analysis, "--out", effects],
        ["pool", "--analysis", analysis, "--effects", effects, "--out", result, "--spec", spec],
        ["summary", result, "--csv", "summary.csv", "--md", "summary.md"],
    ]
    for step in steps:
        proc = subprocess.run(cli + step, cwd=by_hand, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (step[0], proc.stderr[-2000:])
    for path in ("data/processed/comparisons.csv", effects, result, spec):
        assert (by_hand / path).read_bytes() == (project / path).read_bytes(), path
    row = [r for r in read_csv(project / "results/tables/summary.csv") if r["analysis"] == analysis]
    assert read_csv(by_hand / "summary.csv") == row


def test_summary_matches_independent_computation_from_raw(project):
    """AUD return to heavy drinking: log RR and REML recomputed from the raw CSV.

    The rows are chosen here by hand from data/raw/alcohol.csv, following the
    config's filters (alcohol, placebo; outcome relapse_heavy_drinking or
    any_heavy_drinking) and the repeated-time-point rule (Kiefer 2003: the
    week-12 row, not the week-24 follow-up of the same patients), its
    naltrexone arm only (its acamprosate and combined arms are network rows).
    """
    raw = read_csv(project / "data/raw/alcohol.csv")
    chosen = [r for r in raw
              if r["outcome"] in ("relapse_heavy_drinking", "any_heavy_drinking")
              and r["measure_type"] == "binary" and r["followup_weeks"] != "24"
              and r["treatment"] == "" and r["comparator_type"] == "placebo"]
    assert {r["study_id"] for r in chosen} == {"Anton1999", "Gastpar2002", "Kiefer2003",
                                               "Kranzler2004_depot", "COMBINE_Anton2006",
                                               "Krystal2001_VA_CSP425"}
    a = np.array([float(r["events_treat"]) for r in chosen])
    n1 = np.array([float(r["n_treat"]) for r in chosen])
    c = np.array([float(r["events_ctrl"]) for r in chosen])
    n2 = np.array([float(r["n_ctrl"]) for r in chosen])
    yi = np.log(a / n1) - np.log(c / n2)
    vi = 1 / a - 1 / n1 + 1 / c - 1 / n2
    mu, se, tau2 = reml_independent(yi, vi)
    # the default preset (cochrane2025): Hartung-Knapp with the ad hoc floor,
    # se x sqrt(max(1, q / (k - 1))), q = sum w (y - mu)^2, and t with k - 1 df
    k = len(yi)
    w = 1 / (vi + tau2)
    se *= math.sqrt(max(1.0, float(np.sum(w * (yi - mu) ** 2)) / (k - 1)))
    z = stats.t.ppf(0.975, k - 1)
    row = next(r for r in read_csv(project / "results/tables/summary.csv")
               if r["analysis"] == "aud_heavy_drinking_rr")
    assert int(row["k"]) == 6
    # summary.csv carries 10 significant digits; the independent optimiser is
    # converged to ~1e-9 in tau^2, so 1e-6 relative leaves a margin of 1000.
    assert float(row["estimate"]) == pytest.approx(math.exp(mu), rel=1e-6)
    assert float(row["ci_lb"]) == pytest.approx(math.exp(mu - z * se), rel=1e-6)
    assert float(row["ci_ub"]) == pytest.approx(math.exp(mu + z * se), rel=1e-6)
    assert float(row["tau2"]) == pytest.approx(tau2, rel=1e-5, abs=1e-9)
    assert int(row["participants"]) == int(n1.sum() + n2.sum())


def test_rerun_does_nothing_and_one_row_reruns_one_analysis(project):
    proc = run(project)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    raw = project / "data/raw/alcohol.csv"
    text = raw.read_text(encoding="utf-8")
    rows = read_csv(raw)
    latt = next(r for r in rows if r["study_id"] == "Latt2002")
    assert latt["events_treat"] == "19"
    edited = text.replace(latt["quote"], latt["quote"], 1)  # same text, then one count
    lines = edited.splitlines(keepends=True)
    idx = next(i for i, line in enumerate(lines) if line.startswith(latt["row_id"] + ","))
    cells = next(csv.reader([lines[idx]]))
    cells[list(rows[0].keys()).index("events_treat")] = "20"
    out = []
    csv.writer(_Collect(out), lineterminator="\n").writerow(cells)
    lines[idx] = out[0]
    raw.write_text("".join(lines), encoding="utf-8")
    try:
        proc = run(project, "--dry-run")
        assert proc.returncode == 0, proc.stderr[-2000:]
        ran = proc.stdout + proc.stderr
        effects_jobs = [line for line in ran.splitlines() if "wildcards: analysis=" in line]
        analyses = {line.split("analysis=", 1)[1].split(",")[0].strip() for line in effects_jobs}
        assert analyses == {"aud_relapse_trial_defined_rr"}
    finally:
        raw.write_text(text, encoding="utf-8")


class _Collect:
    def __init__(self, sink):
        self.sink = sink

    def write(self, s):
        self.sink.append(s)


def test_malformed_raw_stops_before_any_job(tmp_path):
    dest = copy_project(tmp_path)
    raw = dest / "data/raw/alcohol.csv"
    rows = read_csv(raw)
    header = list(rows[0].keys())
    lines = raw.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = next(csv.reader([lines[1]]))
    n_treat = cells[header.index("n_treat")]
    cells[header.index("events_treat")] = str(int(n_treat) + 5)
    out = []
    csv.writer(_Collect(out), lineterminator="\n").writerow(cells)
    lines[1] = out[0]
    raw.write_text("".join(lines), encoding="utf-8")
    proc = run(dest)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert f"alcohol.csv:2: column 'events_treat' = '{int(n_treat) + 5}'" in proc.stderr
    assert not (dest / "results").exists() or not any((dest / "results").rglob("*.*"))
    assert not (dest / "data/processed").exists() or not any((dest / "data/processed").rglob("*.*"))


def snapshot(root: Path) -> dict:
    """Every file the workflow writes (data/processed, results, logs, the RO-Crate): mtime and bytes."""
    out = {}
    crate = root / "ro-crate-metadata.json"
    if crate.is_file():
        out[crate.name] = (crate.stat().st_mtime_ns, crate.read_bytes())
    for part in ("data/processed", "results", "logs"):
        for p in sorted((root / part).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


def test_second_make_runs_no_job_and_rewrites_no_file(project):
    """`make` (workflow and Snakemake's report) twice: the second run touches nothing."""
    make = ["make", f"BIN={Path(sys.executable).parent}", "STAMP=", "CORES=2"]
    first = subprocess.run(make, cwd=project, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert (project / "results/snakemake_report.html").stat().st_size > 0
    before = snapshot(project)
    second = subprocess.run(make, cwd=project, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Nothing to be done" in second.stdout + second.stderr
    assert jobs_run(second) == []
    assert "snakemake_report.html is up to date" in second.stdout
    assert snapshot(project) == before


def test_every_output_shows_an_analysis_on_the_same_scale(project):
    """summary.csv, the summary of findings, the forest plot and the report agree on the scale.

    Ratios (RR, and the OPRM1 ratio of odds ratios from reported stratum ORs)
    are shown as exp of the pooled log ratio everywhere.
    """
    from ntxmeta.result import read_result
    sof = {r["analysis"]: r for r in read_csv(project / "results/tables/summary_of_findings.csv")}
    summary = {r["analysis"]: r for r in read_csv(project / "results/tables/summary.csv")}
    report = (project / "results/report.html").read_text(encoding="utf-8")
    # the interaction of Oslin 2015 (one trial, not pooled): OR 1.10 / OR 0.69, shown as a ratio
    effects = read_csv(project / "data/processed/effects/oprm1_interaction_ror.csv")
    assert [r["data_type"] for r in effects] == ["interaction"]
    ror = math.exp(float(effects[0]["yi"]))
    assert ror == pytest.approx(1.10 / 0.69, rel=1e-9)
    forest = (project / "results/figures/forest/oprm1_interaction_ror.svg").read_text("utf-8")
    assert f"{ror:.2f}" in forest
    for name in ("oud_relapse_placebo_rr", "aud_heavy_drinking_rr"):
        res = read_result(project / f"results/analyses/{name}/result.json")
        log = True
        shown = math.exp(res.main.estimate) if log else res.main.estimate
        assert float(summary[name]["estimate"]) == pytest.approx(shown, rel=1e-9), name
        if name in sof:
            assert float(sof[name]["estimate"]) == pytest.approx(shown, rel=1e-9), name
        text = f"{shown:.2f}".replace("-", "\u2212")
        forest = (project / f"results/figures/forest/{name}.svg").read_text(encoding="utf-8")
        assert text in forest, (name, text)
        assert f"{shown:.2f}" in report or text in report, (name, text)


def test_lint_and_format_clean():
    lint = subprocess.run(SNAKEMAKE + ["--lint"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    assert snakefmt, "snakefmt is a test dependency (pyproject [test])"
    files = ["Snakefile", *sorted(str(p) for p in (ROOT / "workflow/rules").glob("*.smk"))]
    fmt = subprocess.run([snakefmt, "--check", *files], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_snakemake_report_has_every_figure_and_table_with_captions(project):
    proc = subprocess.run(SNAKEMAKE + ["--report", "results/snakemake_report.html"], cwd=project,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (project / "results/snakemake_report.html").read_text(encoding="utf-8")
    captions = {p.stem: p.read_text(encoding="utf-8").strip()
                for p in (ROOT / "workflow/report").glob("*.rst")}
    for name, caption in captions.items():
        assert caption.split(":")[0] in html, f"caption {name} missing"
    for png in (project / "results/figures").rglob("*.png"):
        assert png.name in html, f"{png.name} not in the report"
    for table in ("summary.csv", "summary_of_findings.csv"):
        assert table in html


def test_raw_data_glob_of_the_config_is_where_the_tables_are_read(tmp_path):
    """`raw_data: data/trials/*.csv` moves the inputs: validate and the workflow read them there."""
    dest = copy_project(tmp_path)
    trials = dest / "data/trials"
    shutil.move(dest / "data/raw", trials)
    (dest / "data/raw").mkdir()
    config = dest / "config/config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "raw_data: data/raw/*.csv" in text
    validate = [sys.executable, "-m", "ntxmeta.cli", "validate"]
    proc = subprocess.run(validate, cwd=dest, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "data/raw/*.csv: no CSV files found" in proc.stderr
    config.write_text(text.replace("raw_data: data/raw/*.csv", "raw_data: data/trials/*.csv"),
                      encoding="utf-8")
    proc = subprocess.run(validate, cwd=dest, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = run(dest, "--dry-run", "data/processed/comparisons.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ingest_inputs = re.search(r"rule ingest:\n\s+input: ([^\n]+)", proc.stdout).group(1)
    tables = sorted(p.relative_to(dest).as_posix() for p in trials.glob("*.csv"))
    inputs = ingest_inputs.split(", ")
    assert tables and sorted(i for i in inputs if i.startswith("data/trials/")) == tables
    assert set(inputs) - set(tables) == {"config/config.yaml", "data/rob/risk_of_bias.csv"}


def test_a_run_from_another_folder_is_refused_and_leaves_nothing_there(tmp_path):
    dest = copy_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(SNAKEMAKE + ["-s", str(dest / "Snakefile"), "--cores", "1"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"run the workflow from the project folder: cd {dest}" in proc.stderr
    assert list(elsewhere.iterdir()) == []
    assert not (dest / "results").exists() or not any((dest / "results").rglob("*.*"))
