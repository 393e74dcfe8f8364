"""The screening log and its PRISMA 2020 flow diagram.

* the project's log is valid and its included studies are exactly the
  trials of data/raw (a planted mismatch in a tmp copy fails, both ways,
  naming the trial and both files);
* a broken log is reported like the raw tables (file:line: column = value:
  rule), together with the raw-table problems, by the preflight;
* the counts of the diagram are recomputed here from the CSV files with
  the csv module (not with the module's reader) and must be the counts the
  figure's text artists carry;
* every box lies inside the figure and no two boxes overlap (measured on
  the drawn Rectangles), each box's text lies inside its box (measured by
  the renderer);
* PNG, SVG and PDF are written, and a second write gives the same SVG and
  PDF bytes.
"""
from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ntxmeta import prisma
from ntxmeta.validate import Problem, validate_raw

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "data/screening"
RAW = sorted((ROOT / "data/raw").glob("*.csv"))


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def copy_log(tmp_path: Path) -> tuple[Path, Path]:
    dest = tmp_path / "data/screening"
    shutil.copytree(LOG, dest)
    return dest / "records.csv", dest / "studies.csv"


def write_rows(path: Path, table: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(table)


@pytest.fixture(scope="module")
def raw():
    return validate_raw(RAW)


# --------------------------------------------------------------------------- the log and data/raw

def test_project_log_is_valid_and_includes_exactly_the_raw_trials(raw):
    log, problems = prisma.check_screening([LOG / "records.csv", LOG / "studies.csv"],
                                           raw_studies=raw)
    assert problems == [], "\n".join(map(str, problems))
    included = {r["study_id"] for r in rows(LOG / "studies.csv") if r["stage"] == "included"}
    trials = {r["study_id"] for p in RAW for r in rows(p)}
    assert included == trials and len(trials) > 30


def test_a_trial_included_in_the_log_but_not_in_data_raw_is_an_error(raw, tmp_path):
    records, studies = copy_log(tmp_path)
    table = rows(studies)
    table.append(dict(table[0], record_id="Planted2099", study_id="Planted2099"))
    write_rows(studies, table)
    _, problems = prisma.check_screening([records, studies], raw_studies=raw)
    assert len(problems) == 1, problems
    p = problems[0]
    assert (p.file, p.line, p.column, p.value) == (str(studies), len(table) + 1, "study_id",
                                                   "Planted2099")
    assert "data/raw" in p.message and "included in the screening log" in p.message


def test_a_raw_trial_that_the_log_does_not_include_is_an_error(raw, tmp_path):
    records, studies = copy_log(tmp_path)
    table = rows(studies)
    dropped = next(r for r in table if r["study_id"] == "Latt2002")
    write_rows(studies, [r for r in table if r is not dropped])
    _, problems = prisma.check_screening([records, studies], raw_studies=raw)
    assert len(problems) == 1, problems
    p = problems[0]
    first = raw.loc[raw["study_id"].eq("Latt2002")].iloc[0]
    assert (p.file, p.line, p.column, p.value) == (first["source_file"], first["source_line"],
                                                   "study_id", "Latt2002")
    assert str(studies) in p.message
    # an included record demoted to "assessed" is the same mismatch
    dropped.update(stage="assessed", exclusion_reason="population")
    write_rows(studies, table)
    _, problems = prisma.check_screening([records, studies], raw_studies=raw)
    assert [(p.value, p.column) for p in problems] == [("Latt2002", "study_id")]


def test_ids_are_compared_as_the_raw_tables_compare_them(raw, tmp_path):
    records, studies = copy_log(tmp_path)
    table = rows(studies)
    next(r for r in table if r["study_id"] == "Latt2002")["study_id"] = "latt 2002"
    write_rows(studies, table)
    assert prisma.check_screening([records, studies], raw_studies=raw)[1] == []


def test_broken_log_is_reported_cell_by_cell(tmp_path):
    records, studies = copy_log(tmp_path)
    rec = rows(records)
    rec[0]["records_identified"] = "12 (approx)"
    rec[1].update(records_identified="", duplicates_removed="3")
    rec[2]["method"] = "websit"
    write_rows(records, rec)
    stu = rows(studies)
    stu[0]["stage"] = "assessed"          # needs a reason
    stu[1]["exclusion_reason"] = "population"  # included: no reason
    stu[2]["source_id"] = "starter_serch"
    stu[3]["record_id"] = stu[4]["record_id"]
    write_rows(studies, stu)
    _, problems = prisma.check_screening([records, studies])
    got = {(Path(p.file).name, p.line, p.column) for p in problems}
    assert got == {("records.csv", 2, "records_identified"), ("records.csv", 3, "duplicates_removed"),
                   ("records.csv", 4, "method"), ("studies.csv", 2, "exclusion_reason"),
                   ("studies.csv", 3, "exclusion_reason"), ("studies.csv", 4, "source_id"),
                   ("studies.csv", 6, "record_id")}, problems
    text = "\n".join(map(str, problems))
    assert "records.csv:4: column 'method' = 'websit': unknown code (did you mean 'website'?)" in text
    assert "(did you mean 'starter_search'?)" in text
    assert all(isinstance(p, Problem) for p in problems)


def test_recorded_counts_must_match_the_rows_of_the_source(tmp_path):
    records, studies = copy_log(tmp_path)
    rec = rows(records)
    n = sum(r["source_id"] == "harms_search" for r in rows(studies))
    rec[3].update(records_identified=str(n + 10), duplicates_removed="10")
    write_rows(records, rec)
    assert prisma.check_screening([records, studies])[1] == []
    rec[3]["duplicates_removed"] = "9"
    write_rows(records, rec)
    (p,) = prisma.check_screening([records, studies])[1]
    assert (p.line, p.column) == (5, "records_identified") and f"leave {n + 1}" in p.message


def test_preflight_reports_log_problems_with_the_raw_problems(tmp_path, capsys, monkeypatch):
    for part in ("config", "data/raw", "data/rob", "data/reference", "data/screening"):
        shutil.copytree(ROOT / part, tmp_path / part)
    studies = tmp_path / "data/screening/studies.csv"
    table = rows(studies)
    table[0]["stage"] = "includd"
    write_rows(studies, table)
    raw = tmp_path / "data/raw/alcohol.csv"
    raw.write_text(raw.read_text("utf-8").replace(",Latt 2002,", ",,", 1), "utf-8")
    monkeypatch.chdir(tmp_path)
    from ntxmeta.workflow import preflight
    with pytest.raises(SystemExit):
        preflight("config/config.yaml")
    err = capsys.readouterr().err
    assert "data/raw/alcohol.csv:" in err and "column 'label'" in err
    assert "data/screening/studies.csv:2: column 'stage' = 'includd': unknown code" in err
    assert re.search(r"ntxmeta: 2 problem\(s\) found; nothing was run", err)


# --------------------------------------------------------------------------- counts and figure

def expected_counts() -> dict:
    """The boxes of the flow, from the CSV files with the csv module (independent of the module)."""
    rec, stu = rows(LOG / "records.csv"), rows(LOG / "studies.csv")
    stage = Counter(r["stage"] for r in stu)
    return {
        "sources": [(r["source"], r["records_identified"] or None) for r in rec],
        "screened": len(stu),
        "excluded": stage["screened"],
        "sought": len(stu) - stage["screened"],
        "not_retrieved": stage["sought"],
        "assessed": stage["assessed"] + stage["included"],
        "reasons": Counter(r["exclusion_reason"] for r in stu if r["stage"] == "assessed"),
        "studies": len({r["study_id"] for r in stu if r["stage"] == "included"}),
        "reports": stage["included"],
    }


@pytest.fixture(scope="module")
def drawn():
    counts = prisma.read_counts(LOG / "records.csv", LOG / "studies.csv")
    fig = prisma.prisma_figure(counts)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    texts = {t.get_gid(): t for t in ax.texts}
    boxes = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("prisma:")}
    return fig, ax, texts, boxes


def flat(text) -> str:
    """A box's text as one line (wrapping undone)."""
    return " ".join(text.get_text().split())


def test_drawn_counts_are_the_logs(drawn):
    _, _, texts, _ = drawn
    want = expected_counts()
    ident = flat(texts["prisma:identified"])
    for source, n in want["sources"]:
        assert f"{source} " in ident and f"(n = {n or 'not recorded'})" in ident
    assert "Total (n = not recorded)" in ident  # the search hits were never counted
    assert "(n = not recorded)" in flat(texts["prisma:removed"])
    assert flat(texts["prisma:screened"]) == f"Records screened (n = {want['screened']})"
    assert flat(texts["prisma:excluded"]).startswith(f"Records excluded (n = {want['excluded']})")
    assert flat(texts["prisma:sought"]) == f"Reports sought for retrieval (n = {want['sought']})"
    assert flat(texts["prisma:not_retrieved"]) == f"Reports not retrieved (n = {want['not_retrieved']})"
    assert flat(texts["prisma:assessed"]) == (
        f"Reports assessed for eligibility (n = {want['assessed']})")
    excluded = flat(texts["prisma:reports_excluded"])
    assert excluded.startswith(f"Reports excluded (n = {sum(want['reasons'].values())})")
    for reason, n in want["reasons"].items():
        assert f"{prisma.REASONS[reason]} (n = {n})" in excluded
    assert flat(texts["prisma:included"]) == (f"Studies included in review (n = {want['studies']}) "
                                              f"Reports of included studies (n = {want['reports']})")
    # and the flow adds up: sought = screened - excluded, assessed = sought - not retrieved
    assert want["sought"] == want["screened"] - want["excluded"]
    assert want["assessed"] == want["sought"] - want["not_retrieved"]


def test_boxes_inside_the_figure_apart_and_holding_their_text(drawn):
    fig, ax, texts, boxes = drawn
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    extents = {k: b.get_window_extent(renderer) for k, b in boxes.items()}
    assert len(extents) == 9
    for key, e in extents.items():
        assert page.x0 <= e.x0 and e.x1 <= page.x1 and page.y0 <= e.y0 and e.y1 <= page.y1, key
        t = texts[key].get_window_extent(renderer)
        assert e.x0 <= t.x0 and t.x1 <= e.x1 and e.y0 <= t.y0 and t.y1 <= e.y1, key
    keys = sorted(extents)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not extents[a].overlaps(extents[b]), (a, b)
    for p in ax.patches:  # phase bands too
        if (p.get_gid() or "").startswith("prisma-phase:"):
            e = p.get_window_extent(renderer)
            assert page.x0 <= e.x0 and e.y0 >= page.y0 and e.y1 <= page.y1
            label = texts[p.get_gid()].get_window_extent(renderer)
            assert e.y0 <= label.y0 and label.y1 <= e.y1, p.get_gid()


def test_a_count_not_recorded_is_said_so_and_a_recorded_one_shown(tmp_path):
    records, studies = copy_log(tmp_path)
    rec = rows(records)
    for r in rec:
        n = sum(s["source_id"] == r["source_id"] for s in rows(studies))
        r.update(records_identified=str(n + 2), duplicates_removed="2")
    write_rows(records, rec)
    counts = prisma.read_counts(records, studies)
    total = sum(int(r["records_identified"]) for r in rec)
    assert counts.records_identified == total and counts.duplicates_removed == 2 * len(rec)
    lines = prisma.box_texts(counts)
    assert f"Total (n = {total})" in lines["identified"]
    assert "not recorded" not in " ".join(lines["identified"] + lines["removed"])


def test_write_prisma_png_svg_pdf_repeatable(tmp_path):
    out = tmp_path / "a/prisma.png"
    paths = prisma.write_prisma(LOG / "records.csv", LOG / "studies.csv", out)
    assert [p.suffix for p in paths] == [".png", ".svg", ".pdf"]
    first = {p.suffix: p.read_bytes() for p in paths}
    assert first[".png"].startswith(b"\x89PNG") and first[".pdf"].startswith(b"%PDF")
    svg = first[".svg"].decode("utf-8")
    assert "Records screened (n = " in svg  # text kept as text
    prisma.write_prisma(LOG / "records.csv", LOG / "studies.csv", out)
    assert {p.suffix: p.read_bytes() for p in paths} == first


def test_an_invalid_stage_hides_no_other_mismatch(raw, tmp_path):
    records, studies = copy_log(tmp_path)
    table = rows(studies)
    next(r for r in table if r["study_id"] == "Latt2002")["stage"] = "includd"
    table = [r for r in table if r["study_id"] != "Krupitsky2012"]
    table.append(dict(table[0], record_id="Planted2099", study_id="Planted2099"))
    write_rows(studies, table)
    _, problems = prisma.check_screening([records, studies], raw_studies=raw)
    got = [(Path(p.file).name, p.column, p.value) for p in problems]
    # Latt2002's stage is unknown, so whether it is included is not judged
    assert got == [("studies.csv", "stage", "includd"), ("studies.csv", "study_id", "Planted2099"),
                   ("opioid.csv", "study_id", "Krupitsky2012")]
