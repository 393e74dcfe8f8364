"""The evidence changelog: versions, row and analysis diffs, flags, and a worked example in a copy.

The unit tests build the four input tables by hand (so every expected
before/after number is written in the test); the workflow test adds one
trial row to a copy of the project, runs Snakemake, and checks that the
changelog names that row and exactly the analyses whose effects tables hold
it, with k and participants moved by that trial's counts.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ntxmeta import changelog as cl

COMPARISON_HEADER = ["row_id", "study_id", "label", "events_treat", "n_treat", "source_file",
                     "source_line"]
SUMMARY_HEADER = ["analysis", "title", "measure", "k", "participants", "estimate", "ci_lb", "ci_ub",
                  "pi_lb", "pi_ub", "tau2", "I2_pct", "pval", "model", "status"]


def _write(path: Path, header, rows) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


class Tables:
    """Hand-made comparisons / effects / summary / SoF tables of two analyses."""

    def __init__(self, root: Path):
        self.root = root
        (root / "effects").mkdir(exist_ok=True)
        self.rows = [["A1", "A", "Trial A", "10", "50", "raw.csv", "2"],
                     ["B1", "B", "Trial B", "12", "60", "raw.csv", "3"],
                     ["C1", "C", "Trial C", "5", "40", "raw.csv", "4"]]
        self.effects = {"rr_one": ["A1", "B1"], "smd_two": ["C1"]}
        self.summary = {
            "rr_one": ["rr_one", "One", "RR", "2", "220", "0.8", "0.6", "1.1", "0.5", "1.3", "0.01",
                       "20", "0.2", "REML", "pooled"],
            "smd_two": ["smd_two", "Two", "SMD", "1", "80", "", "", "", "", "", "", "", "", "REML",
                        "single study"]}
        self.certainty = {"rr_one": "Low", "smd_two": "Very low"}

    def paths(self):
        r = self.root
        comp = _write(r / "comparisons.csv", COMPARISON_HEADER, self.rows)
        eff = [_write(r / "effects" / f"{n}.csv", ["row_id"], [[x] for x in ids])
               for n, ids in self.effects.items()]
        summ = _write(r / "summary.csv", SUMMARY_HEADER, list(self.summary.values()))
        sof = _write(r / "sof.csv", ["analysis", "certainty_label"],
                     [[n, c] for n, c in self.certainty.items()])
        return comp, eff, summ, sof

    def update(self, date="2026-01-01"):
        comp, eff, summ, sof = self.paths()
        return cl.update(comp, eff, summ, sof, self.root / "changelog.json",
                         self.root / "changelog.md", tool_version="9.9", date=date)


@pytest.fixture
def tables(tmp_path):
    t = Tables(tmp_path)
    t.update()
    return t


def test_first_run_records_version_one_with_counts(tables):
    history = cl.read_history(tables.root / "changelog.json")
    (v,) = history["versions"]
    assert (v["version"], v["date"], v["tool_version"], v["first"]) == (1, "2026-01-01", "9.9", True)
    assert (v["n_rows"], v["n_analyses"]) == (3, 2)
    assert len(v["data_digest"]) == 64
    assert "Version 1 (2026-01-01, ntxmeta 9.9" in (tables.root / "changelog.md").read_text()


def test_nothing_changed_records_nothing_and_rewrites_nothing(tables):
    paths = [tables.root / "changelog.json", tables.root / "changelog.md"]
    before = [p.read_bytes() for p in paths]
    inode = [p.stat().st_ino for p in paths]
    for p in paths:
        os.utime(p, ns=(1, 1))
    history = tables.update(date="2026-02-02")
    assert len(history["versions"]) == 1
    assert [p.read_bytes() for p in paths] == before
    assert [p.stat().st_ino for p in paths] == inode          # not replaced by a new file
    assert all(p.stat().st_mtime_ns > 1 for p in paths)       # but touched: the job ran


def test_a_row_moving_line_is_not_a_change(tables):
    tables.rows = [[*r[:-1], str(int(r[-1]) + 10)] for r in tables.rows]
    assert len(tables.update()["versions"]) == 1


def test_added_row_names_the_row_and_only_the_analysis_it_moved(tables):
    tables.rows.append(["D1", "D", "Trial D", "8", "45", "raw.csv", "5"])
    tables.effects["rr_one"].append("D1")
    # the RR analysis now excludes the null and its certainty rises; the SMD one is untouched
    tables.summary["rr_one"] = ["rr_one", "One", "RR", "3", "310", "0.7", "0.55", "0.9", "0.4",
                                "1.2", "0.02", "30", "0.01", "REML", "pooled"]
    tables.certainty["rr_one"] = "Moderate"
    history = tables.update(date="2026-03-03")
    v = history["versions"][-1]
    assert (v["version"], v["first"]) == (2, False)
    assert v["rows"] == [{"row_id": "D1", "kind": "added", "where": "raw.csv line 5",
                          "label": "Trial D", "columns": []}]
    (moved,) = v["analyses"]
    assert moved["analysis"] == "rr_one"
    assert moved["rows"] == {"added": ["D1"]}
    assert (moved["before"]["k"], moved["after"]["k"]) == (2, 3)
    assert (moved["before"]["ci_ub"], moved["after"]["ci_ub"]) == (1.1, 0.9)
    assert (moved["before"]["tau2"], moved["after"]["tau2"]) == (0.01, 0.02)
    assert moved["flags"] == ["ci_now_excludes_null", "certainty_changed"]
    assert moved["certainty"] == ["Low", "Moderate"]
    md = (tables.root / "changelog.md").read_text()
    assert md.index("## Version 2") < md.index("## Version 1")   # newest first
    assert "- added: D1 (Trial D; raw.csv line 5)" in md and "CI no longer includes the null" in md
    assert "| 95% CI | 0.60 to 1.10 | 0.55 to 0.90 |" in md
    assert "smd_two" not in md.split("## Version 1")[0]


def test_changed_row_lists_its_columns_and_direction_flag(tables):
    tables.rows[0][3] = "30"           # A1's events_treat 10 -> 30
    tables.summary["rr_one"] = ["rr_one", "One", "RR", "2", "220", "1.2", "0.9", "1.6", "0.7",
                                "2.0", "0.01", "20", "0.3", "REML", "pooled"]
    v = tables.update()["versions"][-1]
    assert v["rows"][0]["kind"] == "changed"
    assert v["rows"][0]["columns"] == [["events_treat", "10", "30"]]
    (moved,) = v["analyses"]
    assert moved["rows"] == {"changed": ["A1"]}
    assert moved["flags"] == ["direction_changed"]


def test_removed_row_and_ci_now_includes_null_on_an_smd(tables):
    tables.summary["smd_two"] = ["smd_two", "Two", "SMD", "1", "80", "-0.5", "-0.9", "-0.1", "", "",
                                 "", "", "0.01", "REML", "single study"]
    tables.update()
    tables.rows = tables.rows[:2]
    tables.effects["smd_two"] = []
    tables.summary["smd_two"] = ["smd_two", "Two", "SMD", "0", "0", "-0.2", "-0.6", "0.2", "", "",
                                 "", "", "0.3", "REML", "no rows"]
    v = tables.update()["versions"][-1]
    assert [(r["row_id"], r["kind"]) for r in v["rows"]] == [("C1", "removed")]
    (moved,) = v["analyses"]
    assert moved["flags"] == ["ci_now_includes_null"]
    assert moved["status"] == ["single study", "no rows"]


def test_a_number_rounding_in_the_last_digit_is_not_a_change(tables):
    tables.summary["rr_one"][5] = "0.8000000000001"
    assert len(tables.update()["versions"]) == 1


def test_new_analysis_is_flagged(tables):
    tables.effects["rr_three"] = ["A1"]
    tables.summary["rr_three"] = ["rr_three", "Three", "RR", "1", "100", "0.9", "0.5", "1.5", "", "",
                                  "", "", "0.7", "REML", "single study"]
    v = tables.update()["versions"][-1]
    assert [(a["analysis"], a["flags"]) for a in v["analyses"]] == [("rr_three", ["new_analysis"])]


def _joint_json(path: Path, end: tuple, rows: list[str]) -> Path:
    """A time-point model's result.json: end of treatment (log RR, CI) as given, follow-up fixed."""
    from ntxmeta.joint import Estimate, JointResult
    ests = (Estimate("End of treatment", end[0], 0.1, end[1], end[2], 0.04, k=len(rows) - 1,
                     trials=len(rows) - 1),
            Estimate("After treatment (follow-up)", -0.1, 0.2, -0.5, 0.3, 0.6, k=1, trials=1))
    result = JointResult(name="tp", kind="timepoints", title="Time points", measure="RR",
                         method="REML", level=95.0, k=len(rows), trials=len(rows) - 1,
                         estimates=ests, variance={"sigma2 (between trials)": 0.02,
                                                   "sigma2 (within trials)": 0.0},
                         tests={}, rows=tuple((r, r[0], r, "x", 0.0, 0.1) for r in rows))
    path.write_text(result.to_json(), encoding="utf-8")
    return path


def test_a_joint_model_is_in_the_changelog_estimate_by_estimate(tables):
    joint = tables.root / "tp.json"
    comp, eff, summ, sof = tables.paths()
    json_path, md_path = tables.root / "changelog.json", tables.root / "changelog.md"
    _joint_json(joint, (-0.2, -0.4, 0.0), ["A1", "B1"])
    first = cl.update(comp, eff, summ, sof, json_path, md_path, tool_version="9.9",
                      date="2026-02-01", joint_jsons=[joint])["versions"][-1]
    # the joint model is new to a changelog that had only the pairwise analyses
    assert {a["analysis"]: a["flags"] for a in first["analyses"]} == {
        "tp: End of treatment": ["new_analysis"], "tp: After treatment (follow-up)": ["new_analysis"]}
    # a trial added to the model moves both of its estimates; shown on the ratio scale
    tables.rows.append(["D1", "D", "Trial D", "8", "45", "raw.csv", "5"])
    comp, eff, summ, sof = tables.paths()
    _joint_json(joint, (-0.3, -0.5, -0.1), ["A1", "B1", "D1"])
    v = cl.update(comp, eff, summ, sof, json_path, md_path, tool_version="9.9",
                  date="2026-02-02", joint_jsons=[joint])["versions"][-1]
    assert [r["row_id"] for r in v["rows"]] == ["D1"]
    moved = {a["analysis"]: a for a in v["analyses"]}
    assert set(moved) == {"tp: End of treatment", "tp: After treatment (follow-up)"}
    end = moved["tp: End of treatment"]
    assert end["rows"] == {"added": ["D1"]}
    assert end["measure"] == "RR"
    assert (end["before"]["k"], end["after"]["k"]) == (1, 2)
    assert end["before"]["estimate"] == pytest.approx(math.exp(-0.2), rel=1e-12)
    assert end["after"]["ci_ub"] == pytest.approx(math.exp(-0.1), rel=1e-12)
    assert end["after"]["tau2"] == 0.02
    assert end["flags"] == ["ci_now_excludes_null"]   # upper limit exp(0) = 1 -> exp(-0.1)
    assert "tp: End of treatment" in md_path.read_text()


def test_a_changelog_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "changelog.json"
    path.write_text(json.dumps({"schema": "other/1", "versions": []}))
    with pytest.raises(ValueError, match="schema 'other/1' is not 'ntxmeta.changelog/1'"):
        cl.read_history(path)


def test_date_comes_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")   # 2023-11-14T22:13:20Z
    assert cl.today() == "2023-11-14"


# --------------------------------------------------------------------------- in a copy of the project

@pytest.mark.workflow
def test_adding_a_trial_row_writes_a_changelog_of_that_row_and_its_analyses(tmp_path):
    from test_workflow import copy_project, read_csv
    project = copy_project(tmp_path)
    target = "results/changelog.json"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", target]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}   # 2026-01-01
    first = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary_before = {r["analysis"]: r for r in read_csv(project / "results/tables/summary.csv")}

    raw = project / "data/raw/alcohol.csv"
    rows = read_csv(raw)
    anton = next(r for r in rows if r["row_id"] == "Anton1999_heavy")
    new = {**anton, "row_id": "Newtrial2026_heavy", "study_id": "Newtrial2026",
           "label": "Newtrial 2026", "author": "Test A", "year": "2026",
           "events_treat": "30", "n_treat": "100", "events_ctrl": "45", "n_ctrl": "100"}
    with open(raw, "a", encoding="utf-8", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(anton), lineterminator="\n").writerow(new)
    # a new trial is also a record of the screening log (checked against data/raw)
    with open(project / "data/screening/studies.csv", "a", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow(
            ["Newtrial2026", "Newtrial2026", "starter_search", "Test 2026", "included", "",
             "test trial"])
    env["SOURCE_DATE_EPOCH"] = "1767312000"                    # 2026-01-02
    second = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stderr[-3000:]

    history = json.loads((project / target).read_text())
    assert [v["date"] for v in history["versions"]] == ["2026-01-01", "2026-01-02"]
    v = history["versions"][-1]
    assert [(r["row_id"], r["kind"]) for r in v["rows"]] == [("Newtrial2026_heavy", "added")]
    holding = {p.stem for p in (project / "data/processed/effects").glob("*.csv")
               if "Newtrial2026_heavy" in {r["row_id"] for r in read_csv(p)}}
    assert "aud_heavy_drinking_rr" in holding
    # the joint models holding the row move too, each estimate as "{model}: {estimate}"
    joint = {p.stem for p in (project / "data/processed/joint").glob("*.csv")
             if "Newtrial2026_heavy" in {r["row_id"] for r in read_csv(p)}}
    assert joint == {"aud_heavy_drinking_timepoints", "aud_heavy_drinking_network"}
    assert {a["analysis"] for a in v["analyses"] if ": " not in a["analysis"]} == holding
    assert {a["analysis"].split(": ")[0] for a in v["analyses"] if ": " in a["analysis"]} == joint
    for a in v["analyses"]:
        if ": " in a["analysis"]:
            assert a["rows"] == {"added": ["Newtrial2026_heavy"]}
            continue
        old = summary_before[a["analysis"]]
        assert a["rows"] == {"added": ["Newtrial2026_heavy"]}
        assert a["before"]["k"] == float(old["k"])
        assert a["after"]["k"] == float(old["k"]) + 1
        assert a["after"]["participants"] == float(old["participants"]) + 200
        assert a["before"]["estimate"] == pytest.approx(float(old["estimate"]), rel=1e-12)
    md = (project / "results/changelog.md").read_text()
    assert "Newtrial2026\\_heavy" in md and "aud\\_heavy\\_drinking\\_rr" in md   # escaped
    assert "oud_relapse_placebo_rr" not in md.split("## Version 1")[0]


def test_report_header_names_the_version_and_links_the_changelog():
    from ntxmeta.report import _version_line
    line = _version_line({"version": 3, "date": "2026-01-02", "data_digest": "ab" * 32,
                          "tool_version": "0.1.0"})
    assert "Evidence version 3 of 2026-01-02 (data digest abababababab, ntxmeta 0.1.0)" in line
    assert 'href="changelog.md"' in line
    assert _version_line(None) == ""


@pytest.mark.parametrize("keep", [True, False])
def test_make_clean_keeps_the_changelog_only_when_asked(tmp_path, keep):
    from test_workflow import ROOT
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    for rel in ("results/changelog.json", "results/changelog.md", "results/tables/summary.csv",
                "data/processed/comparisons.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    args = ["make", "clean"] + (["KEEP_CHANGELOG=1"] if keep else [])
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    kept = ["results/changelog.json", "results/changelog.md"] if keep else []
    assert left == sorted(["Makefile", "data/processed/.gitkeep", "results/.gitkeep", *kept])


def test_each_analysis_section_says_what_its_last_change_was(tables):
    from ntxmeta.report import _change_line
    tables.rows.append(["D1", "D", "Trial D", "8", "45", "raw.csv", "5"])
    tables.effects["rr_one"].append("D1")
    tables.summary["rr_one"] = ["rr_one", "One", "RR", "3", "310", "0.7", "0.55", "0.9", "0.4",
                                "1.2", "0.02", "30", "0.01", "REML", "pooled"]
    tables.update(date="2026-03-03")
    changes = cl.last_changes(tables.root / "changelog.json")
    assert set(changes) == {"rr_one"}                    # smd_two never moved after version 1
    line = _change_line(changes["rr_one"])
    assert ("Changed in evidence version 2 (2026-03-03): rows added: D1; k 2 \u2192 3; "
            "RR 0.80 \u2192 0.70; CI no longer includes the null.") in line
    assert _change_line(None) == ""


def test_markup_in_a_changed_row_is_escaped_in_the_markdown(tables):
    tables.rows[0][2] = "<script>alert(1)</script>"
    tables.update()
    md = (tables.root / "changelog.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_the_changes_figure_draws_each_moved_analysis_before_and_after(tables):
    from ntxmeta.changelog import changes_figure
    first = changes_figure(cl.read_history(tables.root / "changelog.json"))
    assert [t.get_text() for t in first.texts] == ["Evidence version 1: first recorded evidence."]
    tables.summary["rr_one"] = ["rr_one", "One", "RR", "2", "220", "0.7", "0.55", "0.9", "0.4",
                                "1.2", "0.02", "30", "0.01", "REML", "pooled"]
    fig = changes_figure(tables.update())
    (ax,) = fig.axes
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    assert list(lines["before"].get_xdata()) == [0.8] and list(lines["after"].get_xdata()) == [0.7]
    assert list(lines["before-ci"].get_xdata()) == [0.6, 1.1]
    assert list(lines["after-ci"].get_xdata()) == [0.55, 0.9]
    assert ax.get_xscale() == "log"
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels and all("$" not in t and float(t) > 0 for t in labels)   # plain ratio ticks
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rr_one (RR)"]
