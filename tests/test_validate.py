"""Validation of the raw tables: the malformed corpus, line numbers, the real data.

Each ``tests/malformed/NAME.csv`` is a broken raw table and ``NAME.expected``
the exact report it must produce (one line per problem). The expected lines
were written by hand, case by case, before the validator was run on them;
their wording is the contract that users and the end-to-end test rely on.
"""
from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ntxmeta.validate import (MAX_MAGNITUDE, MIN_MAGNITUDE, Problem, ValidationError, check_raw,
                              main, parse_number, validate_raw)

HERE = Path(__file__).parent
MALFORMED = HERE / "malformed"
RAW = sorted((HERE.parent / "data" / "raw").glob("*.csv"))
CASES = sorted(MALFORMED.glob("*.csv"))


def test_corpus_is_large_and_complete():
    expected = sorted(MALFORMED.glob("*.expected"))
    assert len(CASES) >= 40
    assert [p.stem for p in CASES] == [p.stem for p in expected]


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_malformed_file_gives_its_exact_report(case, monkeypatch):
    monkeypatch.chdir(MALFORMED)
    name = Path(case.name)
    with pytest.raises(ValidationError) as info:
        validate_raw([name])
    assert str(info.value) + "\n" == (MALFORMED / f"{case.stem}.expected").read_text("utf-8")


def test_problems_of_several_files_come_together_in_file_order(tmp_path):
    opioid = (HERE.parent / "data" / "raw" / "opioid.csv").read_text("utf-8").splitlines(True)
    line = next(i for i, text in enumerate(opioid, 1) if text.startswith("Lee2016_relapse,"))
    opioid[line - 1] = opioid[line - 1].replace(",2016,", ",2999,", 1)
    second = tmp_path / "opioid.csv"
    second.write_text("".join(opioid), "utf-8")
    first = MALFORMED / "zero_n.csv"
    _, problems = check_raw([first, second])
    assert [str(p) for p in problems] == [
        f"{first}:2: column 'n_ctrl' = '0': must be at least 1",
        f"{second}:{line}: column 'year' = '2999': in the future; give the year of publication",
    ]


def test_duplicates_are_found_across_files(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(RAW[0].read_bytes())
    b.write_bytes(RAW[0].read_bytes())
    _, problems = check_raw([a, b])
    first_row = validate_raw([RAW[0]]).iloc[0]
    assert str(problems[0]) == (f"{b}:2: column 'row_id' = '{first_row.row_id}': already used at "
                                f"{a}:2; give each row its own id")


def test_real_data_is_valid_and_complete():
    raw = validate_raw(RAW)
    # 27 rows of trials.csv + 28 of additions.csv + 3 added later + 19 harms rows + 8 network
    # and time-point rows (Kiefer 2003 acamprosate and combined arms x 2, Rubio 2001, Tanum 2017,
    # Mokri 2016, Krupitsky 2011 weeks 5-24)
    assert len(raw) == 85
    mokri = raw.set_index("row_id").loc["Mokri2016_abstinence"]
    # Addiction 2016 abstract: "16% (8/51) in the BNX group and 8% (4/51) in the NTX group"
    assert (mokri.events_treat, mokri.n_treat, mokri.events_ctrl, mokri.n_ctrl) == (4, 51, 8, 51)
    nausea = raw.set_index("row_id").loc["Springer2017_XRNTX_ae_nausea"]
    # PMC5407009 Table 5: nausea 13 (19%) XR-NTX vs 3 (9%) placebo, arms 67/33
    assert (nausea.events_treat, nausea.n_treat, nausea.events_ctrl, nausea.n_ctrl) == (13, 67, 3, 33)
    assert raw["row_id"].is_unique
    latt = raw.set_index("row_id").loc["Latt2002_relapse"]
    # MJA abstract: "19 of 56 patients (33.9%) ... compared with 27 of 51"
    assert (latt.events_treat, latt.n_treat, latt.events_ctrl, latt.n_ctrl) == (19, 56, 27, 51)
    oslin = raw.set_index("row_id").loc["Oslin2015_heavy_Asp40"]
    assert (oslin.ratio, oslin.ratio_ci_low, oslin.ratio_ci_high) == (1.10, 0.52, 2.31)


def test_source_lines_point_at_the_rows():
    raw = validate_raw(RAW)
    for path in RAW:
        lines = path.read_text("utf-8").splitlines()
        rows = raw[raw["source_file"] == str(path)]
        for rid, line in zip(rows["row_id"], rows["source_line"]):
            assert lines[line - 1].startswith(rid + ",")


def test_bom_and_crlf_are_accepted(tmp_path):
    text = RAW[0].read_text("utf-8")
    path = tmp_path / "crlf_bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert validate_raw([path]).drop(columns="source_file").equals(
        validate_raw([RAW[0]]).drop(columns="source_file"))


def test_quoted_commas_stay_in_their_cell():
    raw = validate_raw(RAW).set_index("row_id")
    assert raw.loc["Latt2002_relapse", "author"] == "Latt NC, Jurd S, Houseman J, Wutzke SE"


def test_no_files_is_a_problem():
    with pytest.raises(ValidationError, match="no CSV files found"):
        validate_raw([])


def test_main_prints_every_problem_and_a_count_and_returns_1(monkeypatch):
    monkeypatch.chdir(MALFORMED)
    out = io.StringIO()
    assert main([Path("many_problems.csv")], out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[:-1] == (MALFORMED / "many_problems.expected").read_text("utf-8").splitlines()
    assert lines[-1] == "ntxmeta: 5 problem(s) found; nothing was run."
    assert "Traceback" not in out.getvalue()


def test_main_is_silent_and_returns_0_on_good_data():
    out = io.StringIO()
    assert main(RAW, out=out) == 0
    assert out.getvalue() == ""


def test_problem_lines():
    assert str(Problem("a.csv", 3, "n_treat", "x", "not a number")) == \
        "a.csv:3: column 'n_treat' = 'x': not a number"
    assert str(Problem("a.csv", 1, "genotype", None, "missing")) == "a.csv:1: column 'genotype': missing"
    assert str(Problem("a.csv", None, None, None, "cannot be read")) == "a.csv: cannot be read"
    assert str(Problem("c.yaml", 7, "analyses.x.measure", "RRR", "unknown", kind="key")) == \
        "c.yaml:7: key 'analyses.x.measure' = 'RRR': unknown"


def test_validation_error_carries_the_problems():
    problems = [Problem("a.csv", 2, "x", "1", "bad"), Problem("a.csv", 3, None, None, "worse")]
    err = ValidationError(problems)
    assert err.problems == problems
    assert str(err) == err.report() == "a.csv:2: column 'x' = '1': bad\na.csv:3: worse"


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_integers_parse_as_written(n):
    assert parse_number(f" {n} ", integer=True) == (n, None)


@given(st.floats(min_value=MIN_MAGNITUDE, max_value=MAX_MAGNITUDE) | st.just(0.0),
       st.booleans())
def test_plain_decimal_numbers_in_range_parse_as_written(x, negative):
    x = -x if negative else x
    plain = format(Decimal(repr(x)), "f")  # repr's digits, never in scientific notation
    assert parse_number(plain, integer=False) == (x, None)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_any_float_is_read_or_refused_with_a_reason(x):
    value, why = parse_number(repr(x), integer=False)
    assert (value == x and why is None) or (value is None and why)


def test_empty_cell_is_missing_not_a_problem():
    assert parse_number("  ", integer=True) == (None, None)
