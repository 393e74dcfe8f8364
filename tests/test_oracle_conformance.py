"""ntxmeta against metafor 3.8-1 on every vendored oracle case (tests/fixtures/oracle).

Cases are discovered by globbing and every top-level section of every
reference is compared (tolerances and targets are explained in
oracle_util); tests/fixtures/oracle/NOTES.md says what agrees and why. Each
case runs the real command line (``ntxmeta analyse``) and compares the JSON
it writes, so the CLI, the JSON encoding and the engine are all under test.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from oracle_util import SKIP_TOP, cases, compare, load

CASES = cases()

#: Values where ntxmeta deliberately differs from metafor, with the reason.
#: The test fails if any other value differs, and also if one of these stops
#: differing (then it should be removed from this list).
KNOWN_DIFFERENCES = {
    # yi are all exactly 0.3: the weighted regression of yi on sei fits
    # exactly, so metafor's lm() reports a t of 3.6e16 from residuals of
    # rounding noise (~1e-17); ntxmeta reports NaN (0/0) instead of noise.
    ("identical_GEN", "regtest.lm_classic_egger.stat"),
    ("identical_GEN", "regtest.lm_classic_egger.pval"),
    ("identical_GEN", "regtest.lm_classic_egger.fit.tval"),
    ("identical_GEN", "regtest.lm_classic_egger.fit.pval"),
}


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


def reference_sections(ref: dict) -> list[str]:
    """Top-level result sections; ``*_tight`` are comparison targets, not outputs."""
    return sorted(k for k, v in ref.items()
                  if k not in SKIP_TOP and isinstance(v, dict) and not k.endswith("_tight"))


def test_cases_are_vendored():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_section_matches_metafor(results, case):
    ref = load(case / "out.json")
    t = compare(ref, results[case.name])
    assert not t.missing, f"missing: {t.missing[:10]}"
    wrong = {(case.name, path) for path, _, _ in t.wrong}
    unexpected = sorted(wrong - KNOWN_DIFFERENCES)
    assert not unexpected, f"wrong (path, metafor, ntxmeta): {[w for w in t.wrong if (case.name, w[0]) in unexpected][:10]}"
    vanished = {p for c, p in KNOWN_DIFFERENCES if c == case.name} - {p for _, p in wrong}
    assert not vanished, f"known differences no longer differ, remove them: {vanished}"
    assert t.ok > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_reference_section_is_left_out(results, case):
    """Every section of the reference is compared and present in our output."""
    ref = load(case / "out.json")
    sections = reference_sections(ref)
    t = compare(ref, results[case.name])
    assert set(sections) <= t.compared_top, set(sections) - t.compared_top
    assert set(sections) <= set(results[case.name]), set(sections) - set(results[case.name])
