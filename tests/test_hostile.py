"""Hostile input of issue 18 that the malformed corpus cannot hold.

The corpus (``tests/malformed/``) covers each class as a file with its
report; here are the cases that need a file system or a figure:

- a raw table that is a symbolic link out of the project is refused without
  reading it (``shutil.copy2`` in the corpus test would copy the target);
- labels and titles that pass validation but are markup, mathtext or
  backslashes draw every figure, and every SVG written is well-formed XML;
- a target name near NAME_MAX still gets a temporary file (``ntxmeta.io``);
- ``ntxmeta validate --all`` lists what the default report counts.
"""
from __future__ import annotations

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
