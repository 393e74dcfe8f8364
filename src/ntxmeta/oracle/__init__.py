"""The metafor oracle adapter: one analysis from a spec to a result under metafor's key paths.

``ntxmeta analyse SPEC.json`` runs this. The sections are composed from the
engine (``ntxmeta.rma`` and the modules that register further sections)
through one table of names, ``ntxmeta.oracle.keys``; ``ntxmeta.analyse``
re-exports this module for the callers that import it from there.

``analyse(spec_path)`` reads a spec in the format of the metafor oracle
cases, computes every section the engine offers and returns a dictionary
laid out as the oracle's ``out.json`` (so that ``compare.py`` can check it).
``only`` restricts the work to named sections or dotted sub-sections
(``rma.REML``, ``common.EE``), so a user with a huge table pays only for
what they ask.

A spec with an ``"rma.mv"`` object (a multilevel / multivariate model,
metafor's ``rma.mv``) goes to ``ntxmeta.oracle.mv`` instead, which writes
the sections of the rma.mv oracle (tests/fixtures/oracle_mv): ``rma.mv``,
``confint``, ``anova``, ``wald``, ``CR2``. Its spec mirrors metafor's call::

    {"csv": "data.csv",
     "rma.mv": {"yi": "yi", "V": "vi", "mods": ["x"], "intercept": true,
                "random": "~ 1 | study/esid", "struct": "CS", "rho": null,
                "method": "REML", "test": "z", "confint": true,
                "anova": {"random": "~ 1 | study"}, "wald": [[0, 1]],
                "cluster": "study"}}

(every key and the V forms: ``ntxmeta.oracle.mv``'s docstring).
"""
from __future__ import annotations

import json
import math
import re
import secrets
from pathlib import Path
from typing import Callable

import numpy as np

from .. import effects as ef
from ..data import AnalysisData, load_spec
from ..rma import shared_fits
from .floattext import join_repr_bytes
from .sections import RMA_SECTION_METHODS, common_ee_section, rma_section


def is_mv_spec(spec) -> bool:
    """A spec of a multilevel model (an ``"rma.mv"`` object), not the univariate format."""
    return isinstance(spec, dict) and "rma.mv" in spec


Builder = Callable[[AnalysisData, "set[str] | None"], dict]


def _rma(test: str) -> Builder:
    def build(data: AnalysisData, sub: set[str] | None) -> dict:
        methods = [m for m in RMA_SECTION_METHODS if sub is None or m in sub]
        return rma_section(data, test, methods)
    return build


def _common(data: AnalysisData, sub: set[str] | None) -> dict:
    out: dict = {}
    if sub is None or "EE" in sub:
        out["EE"] = common_ee_section(data)
    if data.cells is not None and (sub is None or sub & {"MH", "Peto"}):
        from ..binary import common_binary_section  # local: scipy.stats, only for MH/Peto
        out.update({key: val for key, val in common_binary_section(data).items()
                    if sub is None or key in sub})
    return out


def _escalc(data: AnalysisData, sub: set[str] | None) -> dict:
    return ef.escalc_section(data.es, data.slab, level=data.level, options=data.options)


#: Top-level sections in output order, each with its builder.
SECTIONS: dict[str, Builder] = {
    "escalc": _escalc,
    "rma": _rma("z"),
    "rma_knha": _rma("knha"),
    "common": _common,
}


def register(name: str, builder: Builder) -> None:
    """Add a top-level section (used by modules that extend the engine)."""
    SECTIONS[name] = builder


def _parse_only(only: str | list[str] | None) -> dict[str, set[str] | None] | None:
    if not only:
        return None
    items = only.split(",") if isinstance(only, str) else list(only)
    wanted: dict[str, set[str] | None] = {}
    known = set(SECTIONS) | set(EXTENSION_SECTIONS)
    for item in (i.strip() for i in items if i.strip()):
        top, _, rest = item.partition(".")
        if top not in known:
            raise ValueError(f"unknown section {top!r}; sections are {sorted(known)}")
        if not rest:
            wanted[top] = None
        elif wanted.get(top, set()) is not None:
            wanted.setdefault(top, set()).add(rest.split(".")[0])
    return wanted


def analyse_data(data: AnalysisData, *, only=None, isolate: bool = False) -> dict:
    """Every requested section for one analysis, as a dictionary.

    With ``isolate=True`` (the pipeline's setting) an unexpected exception in
    one section does not stop the others: that section becomes
    ``{"error": "...", "failed": true}`` and its name is listed under
    ``failed_sections``, so the failure is reported, never hidden. A refusal
    of the kind metafor makes (ValueError) is an ordinary ``{"error": ...}``
    from the section itself.
    """
    wanted = _parse_only(only)
    _load_extensions(None if wanted is None else set(wanted))
    with shared_fits():   # each model estimated once per analysis (ntxmeta.rma.rma_shared)
        return _analyse_data(data, wanted, isolate)


def _analyse_data(data: AnalysisData, wanted, isolate: bool) -> dict:
    out: dict = {"name": data.name, "measure": data.measure, "k_rows": int(data.yi.size),
                 "k_used": int(data.used.sum())}
    failed = []
    for name, build in _sections_in_order():
        if wanted is not None and name not in wanted:
            continue
        sub = None if wanted is None else wanted[name]
        if not isolate:
            section = build(data, sub)
        else:
            try:
                section = build(data, sub)
            except Exception as exc:  # noqa: BLE001 - recorded in the result, not swallowed
                section = {"error": f"internal failure: {type(exc).__name__}: {exc}",
                           "failed": True}
                failed.append(name)
        if section is not None:  # None: the section does not apply (no year, no subgroup...)
            out[name] = section
    if failed:
        out["failed_sections"] = failed
    return out


#: Output order of the sections (oracle.R's), whatever order their modules were
#: imported in; sections registered by others follow in registration order.
SECTION_ORDER = ("escalc", "rma", "rma_knha", "common", "confint", "regtest", "ranktest",
                 "trimfill", "leave1out", "influence", "cumul", "metareg", "subgroup")


def _sections_in_order():
    rank = {name: i for i, name in enumerate(SECTION_ORDER)}
    return sorted(SECTIONS.items(), key=lambda kv: rank.get(kv[0], len(rank)))


_EXTENSIONS = ("confint", "bias", "diagnostics", "subgroup", "metareg")
#: The sections each extension module registers: ``--only`` imports only the
#: modules it needs (confint loads pymare, bias statsmodels: seconds of a run
#: that asks for ``rma.REML``). tests/test_oracle_adapter.py checks the map.
EXTENSION_SECTIONS = {"confint": "confint", "regtest": "bias", "ranktest": "bias",
                      "trimfill": "bias", "leave1out": "diagnostics", "influence": "diagnostics",
                      "cumul": "diagnostics", "metareg": "metareg", "subgroup": "subgroup"}


def _load_extensions(sections: set[str] | None = None) -> None:
    """Import the modules that register further sections (each calls ``register``):
    all of them, or those of ``sections``, in ``_EXTENSIONS`` order (the output order)."""
    import importlib
    needed = None if sections is None else {EXTENSION_SECTIONS[s] for s in sections
                                            if s in EXTENSION_SECTIONS}
    for mod in _EXTENSIONS:
        if needed is None or mod in needed:
            importlib.import_module(f"ntxmeta.{mod}")


def analyse(spec_path: str | Path, *, only=None) -> dict:
    """Read a spec and its CSV and compute the result dictionary.

    A spec with an ``"rma.mv"`` object is a multilevel model: its sections
    (``rma.mv``, ``confint``, ``anova``, ``wald``, ``CR2``) come from
    ``ntxmeta.oracle.mv.analyse_mv`` (spec format in that module's docstring);
    any other spec is the univariate oracle format, unchanged.
    """
    if is_mv_spec(json.loads(Path(spec_path).read_text(encoding="utf-8"))):
        from .mv import analyse_mv_file   # local: only multilevel specs need it
        return analyse_mv_file(spec_path, only=only)
    spec, data = load_spec(spec_path)
    out = analyse_data(data, only=only)
    out["spec"] = spec
    return out


#: Float vectors at least this long are written by ``_vector_text`` instead of the
#: json module (whose encoder costs ~7 us a number: 7 s for the per-study
#: weights of a 1e6-study analysis); shorter ones are not worth the detour.
VECTOR_MIN = 64


def _jsonable(o, vectors: list | None = None, token: str = ""):
    """Plain JSON values; with ``vectors``, long float arrays become placeholder strings
    (``token`` + index) and are collected there for ``_vector_text``."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v, vectors, token) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v, vectors, token) for v in o]
    if isinstance(o, np.ndarray):
        if (vectors is not None and o.ndim == 1 and o.dtype == np.float64
                and o.size >= VECTOR_MIN):
            vectors.append(o)
            return f"{token}{len(vectors) - 1}"
        return [_jsonable(v, vectors, token) for v in o.tolist()]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        x = float(o)
        if math.isnan(x):
            return "NA"
        if math.isinf(x):
            return "Inf" if x > 0 else "-Inf"
        return x
    return o


def _vector_text(x: np.ndarray, indent: int, encoded: bool = False) -> list:
    """The pieces of a float vector exactly as ``json.dumps(..., indent=1)`` lays out
    ``_jsonable(x)`` on a line indented by ``indent``: ``float.__repr__`` (json's own
    float format, the shortest round-trip string), "NA"/"Inf"/"-Inf" for non-finite
    values; str pieces, or ASCII bytes with ``encoded``.

    The numbers' text comes from ``floattext.join_repr_bytes`` (repr's bytes, computed
    over the whole array: 0.2 s for 1e6 numbers against 1.6 s for repr of the list)."""
    sep = ",\n" + " " * (indent + 1)
    body = join_repr_bytes(x, sep, **_NON_FINITE_TEXT)
    pieces = ["[\n", " " * (indent + 1), body, "\n", " " * indent, "]"]
    if encoded:
        return [p if isinstance(p, bytes) else p.encode("ascii") for p in pieces]
    return [p.decode("ascii") if isinstance(p, bytes) else p for p in pieces]


#: metafor's spelling of the non-finite values in a vector (json's, via ``_jsonable``).
_NON_FINITE_TEXT = {"nan": '"NA"', "inf": '"Inf"', "ninf": '"-Inf"'}


def dumps(result: dict) -> str:
    """JSON text of a result: metafor's "NA"/"Inf" strings for non-finite numbers,
    shortest round-trip floats, sorted nowhere (section order is meaningful).

    Byte for byte ``json.dumps(_jsonable(result), indent=1) + "\n"``; long
    float vectors are laid out by ``_vector_text`` (tests/test_oracle_adapter.py
    compares the two).
    """
    return "".join(_pieces(result, encoded=False))


def dumps_bytes(result: dict) -> bytes:
    """``dumps(result).encode("utf-8")``, without making the str (27 MB at k = 1e6)."""
    return b"".join(_pieces(result, encoded=True))


def _pieces(result: dict, encoded: bool) -> list:
    vectors: list = []
    token = f"@@ntxmeta-vector-{secrets.token_hex(8)}-"
    text = json.dumps(_jsonable(result, vectors, token), indent=1, allow_nan=False) + "\n"
    if not vectors:
        return [text.encode("utf-8") if encoded else text]
    parts, pos = [], 0
    for m in re.finditer(f'"{re.escape(token)}(\\d+)"', text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        indent = 0
        while text[line_start + indent] == " ":
            indent += 1
        head = text[pos:m.start()]
        parts += [head.encode("utf-8") if encoded else head,
                  *_vector_text(vectors[int(m.group(1))], indent, encoded)]
        pos = m.end()
    parts.append(text[pos:].encode("utf-8") if encoded else text[pos:])
    return parts


_NON_FINITE = {"NA": math.nan, "NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


def _restore(o):
    if isinstance(o, dict):
        return {k: _restore(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_restore(v) for v in o]
    if isinstance(o, str) and o in _NON_FINITE:
        return _NON_FINITE[o]
    return math.nan if o is None else o


def loads(text: str) -> dict:
    """Parse a result JSON (``dumps``, or metafor's reference): "NA"/"Inf" strings and null become floats."""
    return _restore(json.loads(text))


def load_result(path: str | Path) -> dict:
    """Read a result JSON written by ``dumps`` (see :func:`loads`)."""
    return loads(Path(path).read_text(encoding="utf-8"))
