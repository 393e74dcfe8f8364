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
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from .. import effects as ef
from ..binary import common_binary_section
from ..data import AnalysisData, load_spec
from ..rma import shared_fits
from .sections import RMA_SECTION_METHODS, common_ee_section, rma_section

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
    for item in (i.strip() for i in items if i.strip()):
        top, _, rest = item.partition(".")
        if top not in SECTIONS:
            raise ValueError(f"unknown section {top!r}; sections are {sorted(SECTIONS)}")
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
    _load_extensions()
    with shared_fits():   # each model estimated once per analysis (ntxmeta.rma.rma_shared)
        return _analyse_data(data, only, isolate)


def _analyse_data(data: AnalysisData, only, isolate: bool) -> dict:
    wanted = _parse_only(only)
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


def _sections_in_order():
    return list(SECTIONS.items())


_EXTENSIONS = ("confint", "bias", "diagnostics", "subgroup", "metareg")


def _load_extensions() -> None:
    """Import the modules that register further sections (each calls ``register``)."""
    import importlib
    import importlib.util
    for mod in _EXTENSIONS:
        if importlib.util.find_spec(f"ntxmeta.{mod}") is not None:
            importlib.import_module(f"ntxmeta.{mod}")


def analyse(spec_path: str | Path, *, only=None) -> dict:
    """Read a spec and its CSV and compute the result dictionary."""
    spec, data = load_spec(spec_path)
    out = analyse_data(data, only=only)
    out["spec"] = spec
    return out


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
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


def dumps(result: dict) -> str:
    """JSON text of a result: metafor's "NA"/"Inf" strings for non-finite numbers,
    shortest round-trip floats, sorted nowhere (section order is meaningful)."""
    return json.dumps(_jsonable(result), indent=1, allow_nan=False) + "\n"


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
