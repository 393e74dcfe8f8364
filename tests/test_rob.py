"""Risk of bias: the RoB 2 table and its checks, the overall algorithm, design floors, figures.

Every rule is tested on small hand-made rows whose expected judgement is
written in the test, so removing a rule from ``ntxmeta.rob`` fails a test
here. The committed table (data/rob/risk_of_bias.csv) is checked against the
raw trials: every trial has a row, and the table validates.
"""
from __future__ import annotations

import csv
import glob
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from ntxmeta import rob, robplots, style, validate
from ntxmeta.normalise import outcome_table

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "data" / "rob" / "risk_of_bias.csv"
RAW = sorted(glob.glob(str(ROOT / "data" / "raw" / "*.csv")))
ALL_LOW = {d: "low" for d in rob.DOMAINS}


def _raw_studies() -> set[str]:
    return set(pd.concat([pd.read_csv(p, dtype=str) for p in RAW])["study_id"])


def _row(**cells) -> dict:
    """A valid row: all domains low with support, overall low; ``cells`` override."""
    row = {c: "" for c in rob.COLUMNS}
    row.update(study_id="Latt2002", outcome_family="all", overall="low", source="Review X, table 2")
    for d in rob.DOMAINS:
        row[d] = "low"
        row[rob.SUPPORT[d]] = f"quote for {d}"
    row.update(cells)
    return row


def _write(tmp_path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    path = tmp_path / "risk_of_bias.csv"
    header = header or rob.COLUMNS
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header])
    return path


def _problems(tmp_path, rows, known=None, header=None) -> list[str]:
    _, problems = rob.check_rob(_write(tmp_path, rows, header), known)
    return [str(p) for p in problems]


# --------------------------------------------------------------------------- the committed table


def test_committed_table_validates_and_covers_every_raw_trial():
    studies = _raw_studies()
    frame = rob.validate_rob(TABLE, studies)
    assert set(frame["study_id"]) == studies  # every trial of the main analyses has a row
    assessed = frame[(frame[list(rob.DOMAINS)] != "not_assessed").any(axis=1)]
    assert sorted(assessed["study_id"]) == ["Guo2001", "Krupitsky2004", "San1991"]
    # sourced rows name their source and say how RoB 1 was mapped; the others say what was sought
    assert assessed["source"].str.contains("CD001333").all()
    assert assessed["assessor_note"].str.contains("RoB 1").all()
    rest = frame.drop(assessed.index)
    assert (rest["overall"] == "not_assessed").all()
    assert rest["source"].str.contains("README").all()


def test_schema_families_are_the_raw_schema_families_and_all():
    families = {o.family for o in outcome_table().values()}
    enum = rob.SCHEMA["properties"]["outcome_family"]["enum"]
    assert set(enum) == families | {"all"}
    assert rob.DOMAINS == ("d1_randomisation", "d2_deviations", "d3_missing_data",
                           "d4_measurement", "d5_reporting")


def test_readme_examples_are_what_validation_prints(tmp_path):
    """The messages shown in data/rob/README.md are the real ones."""
    readme = (ROOT / "data" / "rob" / "README.md").read_text("utf-8")
    rows = [_row(), _row(study_id="Anton1999", d1_randomisation="Low"),
            _row(study_id="Kiefer2003", d3_missing_data="high", d3_missing_data_support="",
                 overall="high"),
            _row(study_id="Gastpar2002", d3_missing_data="some_concerns"),
            _row(study_id="Latt2003"), _row(outcome_family="all")]
    got = _problems(tmp_path, rows, known=_raw_studies())
    assert len(got) == 5
    for line in got:
        shown = line.replace(str(tmp_path / "risk_of_bias.csv"), "data/rob/risk_of_bias.csv")
        assert shown in readme, shown


# --------------------------------------------------------------------------- validation


def test_a_valid_row_has_no_problem(tmp_path):
    assert _problems(tmp_path, [_row()]) == []


def test_unknown_code_names_file_line_column_value_and_rule(tmp_path):
    (msg,) = _problems(tmp_path, [_row(), _row(study_id="Anton1999", d2_deviations="Some concerns")])
    path = tmp_path / "risk_of_bias.csv"
    assert msg.startswith(f"{path}:3: column 'd2_deviations' = 'Some concerns': unknown code")
    assert "did you mean 'some_concerns'" in msg


def test_judgement_needs_its_quote_but_not_assessed_does_not(tmp_path):
    bad = _row(d4_measurement_support="")
    fine = _row(study_id="Anton1999", d4_measurement="not_assessed", d4_measurement_support="",
                overall="not_assessed")
    (msg,) = _problems(tmp_path, [bad, fine])
    assert ":2: column 'd4_measurement_support' = '': required: d4_measurement is 'low'" in msg


def test_required_cells(tmp_path):
    got = _problems(tmp_path, [_row(source="", overall="")])
    assert any("column 'overall' = '': required; use one of low" in m for m in got)
    assert any("column 'source' = '': required; fill it in" in m for m in got)


@pytest.mark.parametrize("domains, overall", [
    ({}, "low"),
    ({"d3_missing_data": "some_concerns"}, "some_concerns"),
    ({"d1_randomisation": "some_concerns", "d5_reporting": "high"}, "high"),
    ({"d5_reporting": "not_assessed"}, "not_assessed"),
    ({"d5_reporting": "not_assessed", "d1_randomisation": "some_concerns"}, "not_assessed"),
    ({"d5_reporting": "not_assessed", "d3_missing_data": "high"}, "high"),
])
def test_overall_algorithm(domains, overall):
    assert rob.overall_judgement({**ALL_LOW, **domains}) == overall


def test_overall_that_contradicts_the_domains_is_an_error(tmp_path):
    rows = [_row(d3_missing_data="some_concerns"),                      # says low: wrong
            _row(study_id="Anton1999", d3_missing_data="high", overall="some_concerns"),
            _row(study_id="Kiefer2003", d5_reporting="not_assessed", overall="low"),
            _row(study_id="Gastpar2002", overall="high")]               # no concern at all
    got = _problems(tmp_path, rows)
    assert [m.split(": column")[0][-1] for m in got] == ["2", "3", "4", "5"]
    assert all("column 'overall'" in m for m in got)
    assert "give some_concerns by the RoB 2 algorithm; write some_concerns" in got[0]
    assert "write high" in got[1] and "write not_assessed" in got[2] and "write low" in got[3]


def test_reviewer_high_over_several_concerns_needs_a_note(tmp_path):
    two = {"d1_randomisation": "some_concerns", "d3_missing_data": "some_concerns", "overall": "high"}
    got = _problems(tmp_path, [_row(**two),
                               _row(study_id="Anton1999", assessor_note="D1 and D3 together", **two),
                               _row(study_id="Kiefer2003", assessor_note="one concern only",
                                    d1_randomisation="some_concerns", overall="high")])
    assert len(got) == 2
    assert ":2: column 'overall' = 'high': high over several some_concerns" in got[0]
    assert ":4: column 'overall' = 'high': the domains" in got[1]


def test_unknown_and_duplicate_trials(tmp_path):
    rows = [_row(), _row(study_id="Latt2003"), _row(study_id="latt 2002"),
            _row(outcome_family="heavy_drinking")]  # a family row beside the all row is fine
    got = _problems(tmp_path, rows, known={"Latt2002"})
    assert len(got) == 2
    assert ":3: column 'study_id' = 'Latt2003': no trial of data/raw/*.csv has this id " \
           "(did you mean 'Latt2002'?)" in got[0]
    assert ":4: column 'study_id' = 'latt 2002': this trial and outcome_family are already " \
           "judged at" in got[1]


def test_reader_problems_come_from_validate(tmp_path):
    header = [("d1_randomisaton" if c == "d1_randomisation" else c) for c in rob.COLUMNS]
    (msg,) = _problems(tmp_path, [_row()], header=header)
    assert ":1: column 'd1_randomisaton': unknown column (did you mean 'd1_randomisation'?)" in msg
    got = _problems(tmp_path, [_row(d1_randomisation_support="zero\u200bwidth")])
    assert "invisible character U+200B" in got[0]
    with pytest.raises(validate.ValidationError) as err:
        rob.validate_rob(_write(tmp_path, [_row(overall="high")]))
    assert "column 'overall' = 'high'" in str(err.value)


# --------------------------------------------------------------------------- design facts

BASE = {"study_id": "T1", "outcome_family": "relapse_or_use", "comparator_type": "placebo",
        "outcome": "opioid_relapse", "analysis_population": "itt", "pooling_issue": "",
        "primary_outcome": "yes"}


def test_a_placebo_itt_primary_row_sets_no_floor():
    assert rob.design_facts(BASE) == {}
    assert rob.design_facts({}) == {}  # columns absent (older tables): no floor


@pytest.mark.parametrize("comparator", sorted(rob.OPEN_LABEL_COMPARATORS))
def test_open_label_comparator_floors_d2_and_d4(comparator):
    floors = rob.design_facts({**BASE, "comparator_type": comparator})
    assert set(floors) == {"d2_deviations", "d4_measurement"}
    assert all(j == "some_concerns" for j, _ in floors.values())
    assert comparator in floors["d2_deviations"][1]


@pytest.mark.parametrize("outcome", sorted(rob.OBJECTIVE_OUTCOMES))
def test_objective_outcome_waives_d4_but_not_d2(outcome):
    floors = rob.design_facts({**BASE, "comparator_type": "usual_care", "outcome": outcome})
    assert set(floors) == {"d2_deviations"}


@pytest.mark.parametrize("population, floored", [
    ("completers", True), ("available_case", True), ("missing_as_success", True),
    ("itt", False), ("itt_missing_event", False), ("mitt", False), ("", False)])
def test_incomplete_analysis_population_floors_d3(population, floored):
    floors = rob.design_facts({**BASE, "analysis_population": population})
    assert ("d3_missing_data" in floors) is floored
    assert set(floors) <= {"d3_missing_data"}


@pytest.mark.parametrize("cells", [{"pooling_issue": "post_hoc_subgroup"},
                                   {"pooling_issue": "multiple_outcomes;post_hoc_subgroup"},
                                   {"primary_outcome": "no"}])
def test_post_hoc_or_secondary_outcome_floors_d5(cells):
    floors = rob.design_facts({**BASE, **cells})
    assert set(floors) == {"d5_reporting"}
    assert floors["d5_reporting"][0] == "some_concerns"


def test_not_primary_unknown_sets_no_d5_floor():
    assert rob.design_facts({**BASE, "primary_outcome": "", "pooling_issue": "shared_control"}) == {}


def test_combine_takes_the_worse_and_says_why():
    floors = rob.design_facts({**BASE, "comparator_type": "no_medication",
                               "analysis_population": "completers"})
    sourced = {**ALL_LOW, "d3_missing_data": "high", "d4_measurement": "not_assessed"}
    out = rob.combine(sourced, floors)
    assert list(out) == list(rob.DOMAINS)
    d2, d3, d4, d1 = (out[d] for d in ("d2_deviations", "d3_missing_data", "d4_measurement",
                                       "d1_randomisation"))
    assert (d2.sourced, d2.judgement, d2.raised) == ("low", "some_concerns", True)
    assert "raised from the sourced low" in d2.reasons[0] and "no_medication" in d2.reasons[0]
    assert (d3.judgement, d3.raised) == ("high", False)  # a floor never lowers
    assert "already at least some_concerns" in d3.reasons[0]
    assert d4.judgement == "some_concerns" and "otherwise not assessed" in d4.reasons[0]
    assert (d1.judgement, d1.floor, d1.reasons) == ("low", None, ())


def test_assess_prefers_the_family_row_and_keeps_unassessed_overall(tmp_path):
    rows = [_row(study_id="T1", outcome_family="all"),
            _row(study_id="T1", outcome_family="relapse_or_use", d3_missing_data="high",
                 overall="high"),
            _row(study_id="T2", d5_reporting="not_assessed", d5_reporting_support="",
                 overall="not_assessed")]
    table = rob.validate_rob(_write(tmp_path, rows))
    a = rob.assess(table, BASE)
    assert a.overall == "high" and a.source_row.endswith(":3")
    b = rob.assess(table, {**BASE, "outcome_family": "retention"})  # falls back to all
    assert b.overall == "low" and b.source_row.endswith(":2")
    c = rob.assess(table, {**BASE, "study_id": "T2", "comparator_type": "usual_care"})
    assert c.judgements()["d2_deviations"] == "some_concerns"
    assert c.overall == "not_assessed"  # D5 is still not assessed
    d = rob.assess(table, {**BASE, "study_id": "T9"})  # no row: nothing assessed
    assert set(d.judgements().values()) == {"not_assessed"} and d.source_row == ""


def test_assess_frame_of_the_real_rows():
    raw = validate.validate_raw(RAW)
    families = {k: o.family for k, o in outcome_table().items()}
    raw["outcome_family"] = raw["outcome"].map(families)
    frame = rob.assess_frame(rob.validate_rob(TABLE), raw)
    by_row = frame.set_index("row_id")
    assert by_row.loc["Guo2001_abstinence", "overall"] == "high"
    lee = by_row.loc["Lee2016_relapse"]  # usual care, self-reported relapse, secondary outcome
    assert (lee["d2_deviations"], lee["d4_measurement"], lee["d5_reporting"]) == \
           ("some_concerns",) * 3
    cornish = by_row.loc["Cornish1997_reincarceration"]  # records: D4 not floored
    assert (cornish["d2_deviations"], cornish["d4_measurement"]) == ("some_concerns", "not_assessed")


# --------------------------------------------------------------------------- figures


def _frame() -> pd.DataFrame:
    rows = [("Alpha", ["low", "low", "low", "low", "low"]),
            ("Beta", ["some_concerns", "low", "high", "low", "not_assessed"]),
            ("Gamma", ["not_assessed"] * 5),
            ("Delta", ["low", "some_concerns", "low", "some_concerns", "low"])]
    recs = []
    for label, js in rows:
        rec = {"label": label, **dict(zip(rob.DOMAINS, js))}
        rec["overall"] = rob.overall_judgement(rec)
        recs.append(rec)
    return pd.DataFrame(recs)


def _svg(ax) -> bytes:
    buf = io.BytesIO()
    with style.styled():
        ax.figure.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def test_traffic_light_dot_colour_and_symbol_per_cell():
    frame = _frame()
    ax = robplots.rob_traffic_light(frame)
    dots = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
    symbols = {t.get_gid(): t for t in ax.texts if (t.get_gid() or "").startswith("robsym:")}
    assert len(dots) == len(symbols) == len(frame) * len(robplots.COLUMNS)
    for i, rec in enumerate(frame.to_dict("records")):
        for x, col in enumerate(robplots.COLUMNS):
            dot = dots[f"rob:{i}:{col}"]
            assert tuple(dot.get_offsets()[0]) == (x, i)
            assert tuple(dot.get_facecolor()[0]) == to_rgba(style.ROB_COLOURS[rec[col]])
            assert symbols[f"robsym:{i}:{col}"].get_text() == style.ROB_SYMBOLS[rec[col]]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(frame["label"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["D1", "D2", "D3", "D4", "D5", "Overall"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["+  Low", "\u2212  Some concerns", "\u00d7  High", "?  Not assessed"]
    key = next(t for t in ax.texts if t.get_gid() == "rob:key").get_text()
    assert "D3: Missing outcome data" in key


def test_colours_are_distinct_and_symbols_carry_the_judgement():
    assert len(set(style.ROB_COLOURS.values())) == len(rob.JUDGEMENTS)
    assert len(set(style.ROB_SYMBOLS.values())) == len(rob.JUDGEMENTS)


def test_summary_segments_are_the_weighted_shares():
    frame = _frame()
    weights = [40.0, 30.0, 20.0, np.nan]  # Delta not pooled: no weight
    ax = robplots.rob_summary(frame, weights)
    bars = {p.get_gid(): p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid()}
    assert len(bars) == len(robplots.COLUMNS) * len(rob.JUDGEMENTS)
    expected = {  # worked by hand: Alpha 4/9, Beta 3/9, Gamma 2/9 of the weight
        ("d1_randomisation", "low"): 400 / 9, ("d1_randomisation", "some_concerns"): 300 / 9,
        ("d1_randomisation", "not_assessed"): 200 / 9, ("d3_missing_data", "high"): 300 / 9,
        ("d5_reporting", "not_assessed"): 500 / 9, ("overall", "high"): 300 / 9,
        ("overall", "low"): 400 / 9, ("d2_deviations", "some_concerns"): 0.0}
    for (col, j), share in expected.items():
        bar = bars[f"robsum:{col}:{j}"]
        assert bar.get_width() == pytest.approx(share)
        assert tuple(bar.get_facecolor()) == to_rgba(style.ROB_COLOURS[j])
    for y, col in enumerate(robplots.COLUMNS):
        row = [bars[f"robsum:{col}:{j}"] for j in rob.JUDGEMENTS]
        assert sum(b.get_width() for b in row) == pytest.approx(100.0)
        assert [b.get_x() for b in row] == pytest.approx(np.cumsum([0] + [b.get_width()
                                                                         for b in row[:-1]]))
        assert row[0].get_y() + row[0].get_height() / 2 == pytest.approx(y)


def test_summary_refuses_weights_that_do_not_fit():
    with pytest.raises(ValueError, match="3 weights for 4 studies"):
        robplots.rob_summary(_frame(), [1, 2, 3])
    with pytest.raises(ValueError, match="sum to 0"):
        robplots.rob_summary(_frame(), [0, 0, np.nan, 0])


def test_figures_refuse_a_frame_without_judgements():
    with pytest.raises(ValueError, match="no column overall"):
        robplots.rob_traffic_light(_frame().drop(columns="overall"))
    with pytest.raises(ValueError, match="holds 'Low'"):
        robplots.rob_traffic_light(_frame().assign(d1_randomisation="Low"))


def test_figures_draw_on_a_given_axes_and_return_it():
    ax = style.new_axes(4, 3, (0.4, 0.3, 0.5, 0.6))
    assert robplots.rob_traffic_light(_frame(), ax=ax) is ax
    ax2 = style.new_axes(4, 3, (0.4, 0.3, 0.5, 0.6))
    assert robplots.rob_summary(_frame(), [1, 1, 1, 1], ax=ax2) is ax2


def test_svgs_parse_keep_cell_ids_and_repeat_byte_for_byte(tmp_path):
    frame = _frame()
    for draw, cell in ((lambda: robplots.rob_traffic_light(frame), "rob:1:d3_missing_data"),
                       (lambda: robplots.rob_summary(frame, [1, 2, 3, 4]), "robsum:overall:low")):
        first, second = _svg(draw()), _svg(draw())
        assert first == second
        root = ET.fromstring(first)
        assert root.tag.endswith("svg")
        ids = {el.get("id") for el in root.iter()}
        assert cell in ids
        assert b"<dc:date>" not in first
    png, svg = style.save_figure(robplots.rob_traffic_light(frame).figure, tmp_path / "rob")
    assert png.stat().st_size > 0
    ET.parse(svg)
