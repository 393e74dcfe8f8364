"""Hostile input of issue 18 that the malformed corpus cannot hold.

The corpus (``tests/malformed/``) covers each class as a file with its
report; here are the cases that need a file system or a figure:

- a raw table that is a symbolic link out of the project is refused without
  reading it (``shutil.copy2`` in the corpus test would copy the target);
- labels and titles that pass validation but are markup, mathtext or
  backslashes draw every figure, and every SVG written is well-formed XML;
- a target name near NAME_MAX still gets a temporary file (``ntxmeta.io``);
- ``ntxmeta validate --all`` lists what the default report counts;
- rows that pass validation but whose effect size cannot be computed for
  an analysis's measure and options (a ratio of means with a mean <= 0, a
  table left out by ``drop00``, a zero cell with ``to: none``, a variance
  of 0) go from ``comparisons.csv`` to ``result.json`` and the report with
  their reason: none drops out silently.
"""
from __future__ import annotations

import csv
import html
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ntxmeta import io as nio
from ntxmeta import style
from ntxmeta.validate import check_raw, first_hidden
from test_cli_malformed import CONFIG_RAW, MALFORMED, TIMEOUT_S, VALIDATE, bare_project, snapshot
from test_plots import _all_figures

#: Texts that pass the door (no control or invisible character) but are
#: syntax somewhere downstream: mathtext, TeX, XML/HTML, Markdown, quotes.
HOSTILE_LABELS = ["$\\alpha$ Latt", "$\\nosuchcommand{$ x", "50$ and 20$", "\\frac{1}{0} \\", "<script>&amp;</script>",
                  "]]> <!-- x", "![i](http://x) [l](u)", "O'Malley \"2015\"", "Ünïcødé 😀"]


def test_hostile_labels_pass_the_door():
    assert all(first_hidden(t) is None for t in HOSTILE_LABELS)


@pytest.mark.parametrize("which", ["hand-made", "bcg_RR"])
def test_every_figure_with_hostile_labels_is_valid_xml(tmp_path, which):
    import test_plots
    from ntxmeta.analysis import run_plan
    from ntxmeta.plan import AnalysisPlan, ModelOptions
    if which == "bcg_RR":
        effects = test_plots._bcg_effects().assign(dose_mg=50.0)
        plan = AnalysisPlan(name="bcg", title="BCG", measure="RR",
                            options=ModelOptions("REML", "z", 95.0, 0.5, "only0", False),
                            filters=(), subgroup="alloc", moderators=("dose_mg", "ablat"))
        effects["label"] = [HOSTILE_LABELS[i % len(HOSTILE_LABELS)] + f" {i}"
                            for i in range(len(effects))]
        effects["subgroup"] = [HOSTILE_LABELS[i % 3] for i in range(len(effects))]
        result = run_plan(plan, effects)
    else:
        effects, result = test_plots._effects(), test_plots._result()
        effects["label"] = [HOSTILE_LABELS[i % len(HOSTILE_LABELS)] for i in range(len(effects))]
    saved = []
    for name, ax in _all_figures(effects, result):
        ax.set_title(HOSTILE_LABELS[0] + " " + HOSTILE_LABELS[2])
        saved.append(style.save_figure(ax.figure, tmp_path / name)[1])
    assert len(saved) >= 4
    for svg in saved:
        root = ET.parse(svg).getroot()  # raises on invalid XML
        text = "".join(root.itertext())
        assert "$\\alpha$" in text, svg.name  # drawn as written, not as mathtext


def test_a_raw_table_linked_from_outside_is_refused_unread(tmp_path):
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-LINE,x\n", "utf-8")
    project = bare_project(tmp_path / "project", CONFIG_RAW, MALFORMED / "config" / "level_nan.yaml",
                           "config/config.yaml")
    (project / "data/raw" / CONFIG_RAW.name).unlink()
    (project / "data/raw/linked.csv").symlink_to(secret)
    before = snapshot(project)
    proc = subprocess.run(VALIDATE, cwd=project, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"data/raw/linked.csv: a link to a file outside the project ({secret.resolve()}); it is "
        "not read: copy the table into the project folder instead")
    assert "TOP-SECRET" not in proc.stderr + proc.stdout
    assert snapshot(project) == before


def test_a_link_inside_the_project_is_followed(tmp_path, monkeypatch):
    shutil.copy2(CONFIG_RAW, tmp_path / "real.csv")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    monkeypatch.chdir(tmp_path)
    frame, problems = check_raw([Path("link.csv")])
    assert problems == [] and len(frame) == 4


@pytest.mark.parametrize("length", [200, 230, 255])
def test_a_target_name_up_to_name_max_gets_its_temporary_file(tmp_path, length):
    target = tmp_path / ("x" * (length - 4) + ".svg")
    nio.write_text(target, "<svg/>")
    assert target.read_text() == "<svg/>"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    with nio.atomic_path(target) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.name.startswith(nio.temp_prefix(target))


def test_validate_all_lists_every_problem(tmp_path):
    case = MALFORMED / "many_bad_rows.csv"
    project = bare_project(tmp_path, case, Path(__file__).parents[1] / "config" / "config.yaml",
                           "config/config.yaml")
    capped = subprocess.run(VALIDATE, cwd=project, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    full = subprocess.run(VALIDATE + ["--all"], cwd=project, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert capped.returncode == full.returncode == 1
    assert "run 'ntxmeta validate --all'" in capped.stderr
    lines = full.stderr.splitlines()
    assert len(lines) == 26 and lines[-1] == "ntxmeta: 25 problem(s) found; nothing was run."
    assert capped.stderr.splitlines()[-1] == lines[-1]


# --------------------------------------------------------------------------- dropped rows

def _raw_rows() -> tuple[list[str], dict, dict]:
    """Header, a binary row and a continuous row of the corpus's valid table."""
    with open(CONFIG_RAW, newline="", encoding="utf-8") as fh:
        rows = {r["row_id"]: r for r in csv.DictReader(fh)}
    header = list(next(iter(rows.values())))
    return header, rows["Latt2002_relapse"], rows["OMalley2015_phdd"]


def _row(template: dict, name: str, **cells) -> dict:
    return {**template, "row_id": name, "study_id": name, "label": name, "cluster_id": "",
            "pooling_issue": "", **{k: str(v) for k, v in cells.items()}}


#: Rows of the test registry: (row_id, template, cells); good rows unless named in DROPPED.
REGISTRY = [
    ("bin_a", "binary", dict(events_treat=10, n_treat=50, events_ctrl=20, n_ctrl=50)),
    ("bin_b", "binary", dict(events_treat=5, n_treat=40, events_ctrl=9, n_ctrl=41)),
    ("bin_c", "binary", dict(events_treat=30, n_treat=100, events_ctrl=28, n_ctrl=99)),
    ("bin_no_events", "binary", dict(events_treat=0, n_treat=30, events_ctrl=0, n_ctrl=30)),
    ("bin_one_zero", "binary", dict(events_treat=0, n_treat=30, events_ctrl=4, n_ctrl=30)),
    ("cont_a", "continuous", dict(mean_treat=21.6, mean_ctrl=22.9)),
    ("cont_b", "continuous", dict(mean_treat=18.0, mean_ctrl=25.5)),
    ("cont_c", "continuous", dict(mean_treat=30.2, mean_ctrl=29.0)),
    ("cont_negative", "continuous", dict(mean_treat=-2.5, mean_ctrl=3)),
    ("cont_zero", "continuous", dict(mean_treat=4, mean_ctrl=0)),
]
ZERO_CELL = ("a cell of its 2x2 table is 0 and to: none adds no continuity correction: "
             "{m} has no finite value or no variance above 0")
#: Per analysis: its measure and options, and the reason expected for each row it cannot use
#: (written out here, not taken from the code).
DROPPED = {
    "rom": ("ROM", {}, {
        "cont_negative": "the ratio of means (ROM) needs means above 0, and mean_treat = -2.5: "
                         "use MD or SMD for this outcome",
        "cont_zero": "the ratio of means (ROM) needs means above 0, and mean_ctrl = 0: "
                     "use MD or SMD for this outcome"}),
    "rr_drop00": ("RR", {"drop00": True}, {
        "bin_no_events": "no events in either arm (or only events): left out by drop00: true, "
                         "as metafor leaves it out"}),
    "or_no_correction": ("OR", {"to": "none"}, {
        "bin_no_events": ZERO_CELL.format(m="OR"), "bin_one_zero": ZERO_CELL.format(m="OR")}),
    # a variance of 0 (no events in either arm, no correction) once stopped every model
    "rd_no_correction": ("RD", {"to": "none"}, {"bin_no_events": ZERO_CELL.format(m="RD")}),
}


@pytest.fixture(scope="module")
def dropped_project(tmp_path_factory):
    """comparisons.csv, effects and result.json of each analysis of DROPPED, by the workflow's steps."""
    import yaml

    from ntxmeta import workflow
    root = tmp_path_factory.mktemp("dropped")
    header, binary, continuous = _raw_rows()
    templates = {"binary": binary, "continuous": continuous}
    (root / "data/raw").mkdir(parents=True)
    with open(root / "data/raw/rows.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_row(templates[kind], name, **cells) for name, kind, cells in REGISTRY)
    outcome = {"binary": binary["outcome"], "continuous": continuous["outcome"]}
    analyses = {name: {"title": name, "measure": measure,
                       "filters": {"outcome": [outcome["continuous" if measure == "ROM"
                                                       else "binary"]]}, **options}
                for name, (measure, options, _) in DROPPED.items()}
    (root / "config").mkdir()
    (root / "config/config.yaml").write_text(yaml.safe_dump({"analyses": analyses}), "utf-8")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        pf = workflow.preflight("config/config.yaml")
        workflow.ingest(pf, "data/processed/comparisons.csv")
        for name in DROPPED:
            plan = pf.config.analyses[name]
            effects = f"data/processed/effects/{name}.csv"
            workflow.effects("data/processed/comparisons.csv", plan, effects)
            workflow.pool(effects, plan, f"results/analyses/{name}/result.json",
                          f"results/analyses/{name}/spec.json")
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("analysis", sorted(DROPPED))
def test_every_row_the_effects_step_cannot_use_keeps_its_reason(dropped_project, analysis):
    from ntxmeta.pipeline import read_effects
    from ntxmeta.report import _study_table
    from ntxmeta.result import read_result
    _, _, expected = DROPPED[analysis]
    kind = "continuous" if analysis == "rom" else "binary"
    with open(dropped_project / "data/processed/comparisons.csv", newline="", encoding="utf-8") as fh:
        matching = sorted(r["row_id"] for r in csv.DictReader(fh) if r["data_type"] == kind)
    assert matching == sorted(n for n, k, _ in REGISTRY if k == kind)
    effects = read_effects(dropped_project / f"data/processed/effects/{analysis}.csv")
    result = read_result(dropped_project / f"results/analyses/{analysis}/result.json")
    assert sorted(effects["row_id"]) == matching  # every row reaches the effects table
    reasons = dict(zip(effects["row_id"], effects["exclusion_reason"].fillna("")))
    assert {r: why for r, why in reasons.items() if why} == expected
    used = dict(zip(effects["row_id"], result.used))
    assert {r for r, u in used.items() if not u} == set(expected)  # left out = has a reason
    assert effects.loc[effects["row_id"].isin(list(expected)), ["yi", "vi"]].isna().all().all()
    assert result.status == "pooled" and result.k_rows == len(matching)
    assert result.k_used == len(matching) - len(expected)
    shown = _study_table(result, effects)
    for why in expected.values():
        assert html.escape(f"not pooled: {why}", quote=False) in shown
