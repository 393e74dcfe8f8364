"""Shared checks of the ``subgroup`` and ``metareg`` sections against metafor.

Two references per case, both made by metafor 3.8-1:

* ``fixtures/oracle/<case>/out.json`` (and ``fixtures/metafor_extra/<case>/
  out.json``, synthetic edge cases run through the same oracle.R): the
  oracle's fits with metafor's *default* control, except ``metareg.REML``,
  whose target is the tight twin ``metareg.REML_tight``. The default REML
  stops when the change in tau^2 falls below 1e-5, which can leave tau^2
  1 % from the root (bcg_RD, level "random");
* ``fixtures/metafor_tight/<case>.json`` (``make_tight.R``): the same
  sections, same key paths, with every fit converged to 1e-12.

A spec without ``options.control`` reproduces the first (the sections then
stop ML/REML/EB where metafor's default control stops, ``metareg.REML``
excepted): it must give 0 wrong and 0 missing under the oracle rule
(``oracle_util.compare``). A spec with ``"control": "full"`` (what the
pipeline writes) converges fully and must match the second to ``RTOL``
(1e-6).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from oracle_util import ATOL, FIXTURES, RTOL, _close, compare, load, normalise

EXTRA = FIXTURES.parent / "metafor_extra"
TIGHT = FIXTURES.parent / "metafor_tight"


def cases_with(section: str) -> list[Path]:
    """Case folders (oracle and extra) whose reference has ``section``, by globbing."""
    found = sorted(FIXTURES.glob("*/out.json")) + sorted(EXTRA.glob("*/out.json"))
    return [p.parent for p in found if section in load(p)]


def engine_result(case: Path, section: str, control: str | None = None) -> dict:
    """The engine's section for a case, as it reads back from the JSON file.

    ``control`` None runs the case's spec as it is (no ``options.control``);
    otherwise a copy of the spec with ``options.control = control`` (and the
    CSV path made absolute) is run, as the pipeline writes its specs.
    """
    from ntxmeta.analyse import analyse
    if control is None:
        return normalise(analyse(case / "spec.json", only=[section]))
    spec = json.loads((case / "spec.json").read_text(encoding="utf-8"))
    assert "control" not in spec.get("options", {}), f"{case.name}: spec already sets control"
    spec["csv"] = str((case / spec["csv"]).resolve())
    spec["options"] = {**spec.get("options", {}), "control": control}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        return normalise(analyse(path, only=[section]))


def check_against_oracle(case: Path, section: str, result: dict) -> int:
    """Assert 0 wrong and 0 missing under the oracle rule; return #values matched."""
    ref = load(case / "out.json")
    ours = compare(ref, result, sections=[section])
    assert section in ours.compared_top, f"{case.name}: nothing of {section} was compared"
    assert not ours.missing, f"{case.name} missing: {ours.missing[:10]}"
    assert not ours.wrong, f"{case.name} wrong (path, metafor, ntxmeta): {ours.wrong[:10]}"
    assert not ours.beyond, f"{case.name}: {ours.beyond} values where metafor raised an error"
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
