"""Shared checks of the ``subgroup`` and ``metareg`` sections against metafor.

Two references per case, both made by metafor 3.8-1:

* ``fixtures/oracle/<case>/out.json`` (and ``fixtures/metafor_extra/<case>/
  out.json``, synthetic edge cases run through the same oracle.R): the
  oracle's fits with metafor's *default* control. Its REML stops when the
  change in tau^2 falls below 1e-5, which can leave tau^2 up to 1 % from
  the root (bcg_RD, level "random") -- further than the comparison's 1e-4
  tolerance for iterative fits;
* ``fixtures/metafor_tight/<case>.json`` (``make_tight.R``): the same
  sections, same key paths, with every fit converged to 1e-12.

The engine converges fully, so the rule is: every number matches the tight
reference to ``RTOL`` (1e-6), and matches the oracle under its own rule
(``oracle_util.compare``) except exactly where metafor's default fit
itself differs from its tight fit beyond that rule.
"""
from __future__ import annotations

from pathlib import Path

from oracle_util import ATOL, FIXTURES, RTOL, _close, compare, load, normalise

EXTRA = FIXTURES.parent / "metafor_extra"
TIGHT = FIXTURES.parent / "metafor_tight"


def cases_with(section: str) -> list[Path]:
    """Case folders (oracle and extra) whose reference has ``section``, by globbing."""
    found = sorted(FIXTURES.glob("*/out.json")) + sorted(EXTRA.glob("*/out.json"))
    return [p.parent for p in found if section in load(p)]


def engine_result(case: Path, section: str) -> dict:
    """The engine's section for a case, as it reads back from the JSON file."""
    from ntxmeta.analyse import analyse
    return normalise(analyse(case / "spec.json", only=[section]))


def check_against_oracle(case: Path, section: str, result: dict) -> int:
    """Assert the oracle rule (with metafor's own convergence gaps); return #values matched."""
    ref = load(case / "out.json")
    tight = load(TIGHT / f"{case.name}.json")
    ours = compare(ref, result, sections=[section])
    assert section in ours.compared_top, f"{case.name}: nothing of {section} was compared"
    assert not ours.missing, f"{case.name} missing: {ours.missing[:10]}"
    # where metafor's default fit is off its own converged fit
    metafor_gap = {w[0] for w in compare(ref, tight, sections=[section]).wrong}
    unexplained = [w for w in ours.wrong if w[0] not in metafor_gap]
    assert not unexplained, f"{case.name} wrong (path, metafor, ntxmeta): {unexplained[:10]}"
    return ours.ok + ours.errors_matched


def check_against_tight(case: Path, section: str, result: dict) -> int:
    """Every number of the tight reference at RTOL/ATOL, strings equal, errors met."""
    tight = load(TIGHT / f"{case.name}.json")
    assert section in tight, f"{case.name}: tight reference lacks {section}"
    bad: list = []
    count = 0

    def walk(ref, got, path):
        nonlocal count
        if isinstance(ref, dict):
            if "error" in ref:
                if not (isinstance(got, dict) and "error" in got):
                    bad.append((path, "metafor error: " + str(ref["error"]), got))
                count += 1
                return
            if not isinstance(got, dict):
                bad.append((path, "dict", got))
                return
            for key, val in ref.items():
                if key not in got:
                    bad.append((f"{path}.{key}", "missing", None))
                else:
                    walk(val, got[key], f"{path}.{key}")
            return
        a = ref if isinstance(ref, list) else [ref]
        b = got if isinstance(got, list) else [got]
        if len(a) != len(b):
            bad.append((path, a, b))
            return
        for x, y in zip(a, b):
            same = (x == y) if isinstance(x, str) else _close(x, y, RTOL, ATOL)
            if not same:
                bad.append((path, x, y))
                return
        count += 1

    walk(tight[section], result[section], section)
    assert not bad, f"{case.name} vs tight metafor (path, metafor, ntxmeta): {bad[:10]}"
    return count
