"""ntxmeta against metafor 3.8-1 on every vendored oracle case (tests/fixtures/oracle).

Cases are discovered by globbing; tolerances are explained in oracle_util.
Each test runs the real command line (``ntxmeta analyse``) and compares
the JSON it writes, so the CLI, the JSON encoding and the engine are all
under test.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from oracle_util import cases, compare, load

CASES = cases()
#: Every top-level section of the references, each built by the engine.
ENGINE_SECTIONS = ("escalc", "rma", "rma_knha", "common")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    got = {}
    for case in CASES:
        target = out / f"{case.name}.json"
        subprocess.run([sys.executable, "-m", "ntxmeta.cli", "analyse", str(case / "spec.json"),
                        "--out", str(target)], check=True)
        got[case.name] = load(target)
    return got


def test_cases_are_vendored():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("section", ENGINE_SECTIONS)
def test_section_matches_metafor(results, case, section):
    ref = load(case / "out.json")
    assert section in ref, f"{case.name} has no {section} section"
    t = compare(ref, results[case.name], sections=[section])
    assert not t.missing, f"missing: {t.missing[:10]}"
    assert not t.wrong, f"wrong (path, metafor, ntxmeta): {t.wrong[:10]}"
    assert t.ok > 0
