"""``ntxmeta analyse SPEC.json`` on the rma.mv oracle cases (tests/fixtures/oracle_mv).

Each case has a ``spec.json`` beside its metafor reference (the spec format
of ``ntxmeta.oracle.mv``, written from make_mv.R's call: the same V, random
terms, struct, rho, method, test, reduced model, L and cluster). The adapter
(in-process, ``ntxmeta.oracle.analyse``) and the command line (``python -m
ntxmeta.cli analyse``) must give a JSON whose every number agrees with
metafor 3.8-1's ``out.json`` by ``oracle_util.compare`` at its tolerances
(``RTOL = 1e-6``, ``ATOL = 1e-9``), with the same known differences as
tests/test_oracle_mv.py (metafor's incomplete convergence, explained there
and in the fixtures' NOTES.md), and every reference section present.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ntxmeta.oracle as oracle
from ntxmeta.oracle import mv
from oracle_util import SKIP_TOP, compare, load, normalise
from test_oracle_mv import INPUT_KEYS, KNOWN_DIFFERENCES

FIXTURES = Path(__file__).parent / "fixtures" / "oracle_mv"
CASES = sorted(p.parent for p in FIXTURES.glob("*/out.json"))


def _reference(case: Path) -> dict:
    return {k: v for k, v in load(case / "out.json").items() if k not in INPUT_KEYS}


@pytest.fixture(scope="module")
def in_process():
    return {case.name: normalise(oracle.analyse(case / "spec.json")) for case in CASES}


def _check(case: Path, got: dict) -> None:
    ref = _reference(case)
    t = compare(ref, got)
    assert not t.missing, f"missing: {t.missing[:10]}"
    wrong = {(case.name, path) for path, _, _ in t.wrong}
    unexpected = sorted(wrong - KNOWN_DIFFERENCES)
    assert not unexpected, [w for w in t.wrong if (case.name, w[0]) in unexpected][:10]
    vanished = {p for c, p in KNOWN_DIFFERENCES if c == case.name} - {p for _, p in wrong}
    assert not vanished, f"known differences no longer differ: {vanished}"
    sections = {k for k, v in ref.items() if k not in SKIP_TOP and isinstance(v, dict)}
    assert sections <= t.compared_top, sections - t.compared_top
    assert sections <= set(got), sections - set(got)
    assert t.ok > 0


def test_every_case_has_a_spec():
    assert len(CASES) >= 14
    assert all((c / "spec.json").exists() for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adapter_matches_metafor(in_process, case):
    _check(case, in_process[case.name])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_command_line_matches_metafor(in_process, case, tmp_path):
    """The real command line: its JSON file agrees with metafor, and is the
    in-process result's text byte for byte (``oracle.dumps``)."""
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, "-m", "ntxmeta.cli", "analyse", str(case / "spec.json"),
                    "--out", str(out)], check=True)
    got = load(out)
    _check(case, got)
    assert out.read_text(encoding="utf-8") == oracle.dumps(oracle.analyse(case / "spec.json"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_coefficient_names_are_the_model_matrix_columns(in_process, case):
    """Names are not numbers, so compare() skips them: R's model-matrix
    column names, written to data.csv as X.<name>, name our coefficients."""
    ref = load(case / "out.json")["rma.mv"]["coefficients"]["names"]
    ref = [ref] if isinstance(ref, str) else ref   # jsonlite's auto_unbox of a single name
    got = in_process[case.name]["rma.mv"]["coefficients"]["names"]
    assert got == [n if n == "intrcpt" else f"X.{n}" for n in ref]


def test_only_selects_sections():
    case = FIXTURES / "assink2016_deltype"
    got = oracle.analyse(case / "spec.json", only="rma.mv,wald")
    assert [k for k in got if k in mv.MV_SECTIONS] == ["rma.mv", "wald"]
    with pytest.raises(ValueError, match="rma.mv sections"):
        oracle.analyse(case / "spec.json", only="rma.REML")


def _spec(tmp_path: Path, **change) -> Path:
    spec = json.loads((FIXTURES / "assink2016_deltype" / "spec.json").read_text())
    spec["csv"] = str(FIXTURES / "assink2016_deltype" / "data.csv")
    spec["rma.mv"].update(change)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("change, message", [
    ({"random": "~ 1 | study / esid / x"}, r"rma.mv.random = .*at most two nested levels"),
    ({"random": "~ 1 + x | study"}, r"rma.mv.random = .*must be"),
    ({"random": "~ deltype | study/esid"}, r"rma.mv.random = .*one grouping column"),
    ({"random": "~ 1 | nosuch"}, r"rma.mv.random = 'nosuch': not a column"),
    ({"V": {"vcalc": {"vi": "vi"}}}, r"rma.mv.V.vcalc.cluster = None: not a column"),
    ({"V": {"bldiag": {}}}, r"rma.mv.V = .*must be a column name"),
    ({"mods": ["deltype"]}, r"rma.mv.mods = 'deltype': must be a numeric column"),
    ({"intercept": "yes"}, r"rma.mv.intercept = 'yes': must be true or false"),
    ({"struct": "XYZ", "random": "~ deltype | study"}, r"rma.mv.struct = 'XYZ'"),
    ({"anova": {"method": "ML"}}, r"rma.mv.anova = .*replacing some of"),
    ({"weights": "vi"}, r"unknown keys \['weights'\]"),
    ({"V": {"vcalc": "vi"}}, r"rma.mv.V.vcalc = 'vi': must be an object"),
])
def test_spec_errors_name_file_key_and_value(tmp_path, change, message):
    path = _spec(tmp_path, **change)
    with pytest.raises(mv.SpecError, match=message) as err:
        oracle.analyse(path)
    assert str(path) in str(err.value)


def test_spec_without_csv_is_refused(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"rma.mv": {"yi": "yi", "V": "vi"}}))
    with pytest.raises(mv.SpecError, match=r"csv = None: must name the data CSV"):
        oracle.analyse(path)


def test_engine_refusal_is_an_error_section(tmp_path):
    """A model the engine refuses (as metafor: method="DL" is not an rma.mv
    method) becomes {"error": ...} in the section, not a crash."""
    got = oracle.analyse(_spec(tmp_path, method="DL"))
    assert "method" in got["rma.mv"]["error"]
