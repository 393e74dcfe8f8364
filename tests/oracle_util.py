"""Comparison of a result dictionary with a vendored metafor reference.

The rule is the one of the oracle's ``compare.py`` (not imported: the
project never reads ../shared at test time), restated here:

* target: where the reference holds a tightly converged fit of the same
  model (``rma_tight``, ``rma_knha_tight``, ``confint.M_tight``,
  ``metareg.REML_tight``) that one is compared, because we converge fully;
* ``RTOL = 1e-6`` relative, ``ATOL = 1e-9`` absolute: metafor's tight fits
  stop at a change of 1e-12 in tau^2, so 1e-6 leaves room only for
  floating-point differences in the order of summation;
* iterative fits that have no tight reference (REML/ML/EB/PM/... inside
  subgroup, leave1out, influence, cumul, trimfill, regtest, confint of
  other models) get ``LOOSE_RTOL = 1e-4``, ``LOOSE_ATOL = 1e-7``, because
  metafor stopped them at a change of 1e-5 in tau^2 (or uniroot's 1.2e-4);
* NA in the reference must be NaN/"NA" in the result; a metafor error must
  be met by ``{"error": ...}`` at the same path; a value where metafor
  failed is counted as "beyond", not wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ntxmeta.analyse import dumps, load_result, loads

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"
RTOL, ATOL = 1e-6, 1e-9
LOOSE_RTOL, LOOSE_ATOL = 1e-4, 1e-7
SKIP_TOP = {"oracle", "spec", "versions", "rma_note", "confint_note"}
NON_NUMERIC_KEYS = {"note", "warnings", "method", "test", "measure", "to", "model", "predictor",
                    "side", "lb.sign", "ub.sign", "slab", "names", "levels", "moderator"}
ITERATIVE = {"REML", "ML", "EB", "PM", "PMM", "HS", "HSk", "SJ"}


def load(path: Path):
    """A reference (or result) JSON, "NA"/"Inf" strings and null as floats."""
    return load_result(path)


def normalise(result: dict):
    """A result dictionary as it would read back from its JSON file."""
    return loads(dumps(result))


def cases():
    return sorted(p.parent for p in FIXTURES.glob("*/out.json"))


@dataclass
class Tally:
    ok: int = 0
    beyond: int = 0
    errors_matched: int = 0
    wrong: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    compared_top: set = field(default_factory=set)


def _get(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None, False
        d = d[p]
    return d, True


def _tight(path, ref):
    alts = []
    if path[0] in ("rma", "rma_knha"):
        alts.append([path[0] + "_tight"] + path[1:])
    if path[0] == "confint" and len(path) > 1:
        alts.append(["confint", path[1] + "_tight"] + path[2:])
    if path[0] == "metareg" and len(path) > 1 and path[1] == "REML":
        alts.append(["metareg", "REML_tight"] + path[2:])
    for a in alts:
        if _get(ref, a)[1]:
            return a
    return None


def _loose(path):
    if path[0] in ("subgroup", "leave1out", "influence", "cumul", "trimfill", "regtest",
                   "confint", "metareg", "rma", "rma_knha"):
        return any(any(part == m or part.startswith(m + "_") or part.endswith("_" + m)
                       for m in ITERATIVE) for part in path)
    return False


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _close(a, b, rtol, atol):
    a = float(a) if isinstance(a, bool) else a
    b = float(b) if isinstance(b, bool) else b
    if not _num(b):
        return False
    if math.isnan(a):
        return math.isnan(b)
    if math.isinf(a):
        return a == b
    if math.isnan(b) or math.isinf(b):
        return False
    return abs(a - b) <= atol + rtol * abs(a)


def compare(ref, cand, sections=None) -> Tally:
    """Walk every number of ``ref`` and look it up in ``cand``."""
    t = Tally()

    def selected(path):
        if not sections:
            return True
        return any(path[:min(len(s.split(".")), len(path))] == s.split(".")[:len(path)]
                   for s in sections)

    def walk(node, path):
        if path and (path[0] in SKIP_TOP or not selected(path) or path[-1].endswith("_tight")):
            return
        if isinstance(node, dict):
            if "error" in node and path:
                c, ok = _get(cand, path)
                if ok and isinstance(c, dict) and "error" in c:
                    t.errors_matched += 1
                elif ok:
                    t.beyond += 1
                else:
                    t.missing.append(".".join(path) + " (metafor: error)")
                t.compared_top.add(path[0])
                return
            for key, val in node.items():
                if key not in NON_NUMERIC_KEYS:
                    walk(val, path + [key])
            return
        vals = node if isinstance(node, list) else [node]
        if not all(_num(v) or isinstance(v, bool) for v in vals):
            return
        t.compared_top.add(path[0])
        tp = _tight(path, ref)
        target = _get(ref, tp)[0] if tp else node
        rtol, atol = (LOOSE_RTOL, LOOSE_ATOL) if (tp is None and _loose(path)) else (RTOL, ATOL)
        c, ok = _get(cand, path)
        if not ok:
            t.missing.append(".".join(path))
            return
        tv = target if isinstance(target, list) else [target]
        cv = c if isinstance(c, list) else [c]
        if len(tv) != len(cv):
            t.wrong.append((".".join(path), f"len {len(tv)}", f"len {len(cv)}"))
            return
        bad = [(a, b) for a, b in zip(tv, cv) if not _close(a, b, rtol, atol)]
        if bad:
            t.wrong.append((".".join(path), bad[0][0], bad[0][1]))
        else:
            t.ok += 1

    walk(ref, [])
    return t
