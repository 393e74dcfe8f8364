"""One analysis's input: the spec format of the metafor oracle, read into arrays.

A spec (JSON) names a CSV, a measure, the columns, and optional study label,
year, subgroup and moderator columns, with metafor's escalc options::

    {"csv": "data.csv", "measure": "RR",
     "columns": {"ai": "ai", "n1i": "n1i", "ci": "ci", "n2i": "n2i"},
     "study": "author", "year": "year", "subgroup": "alloc",
     "moderator": "ablat", "options": {"add": 0.5, "to": "only0", "level": 95}}

``AnalysisData`` is what every section builder receives. Rows whose yi or vi
is not finite are kept in the per-row arrays (metafor reports them as NA)
and left out of the models through ``used``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import effects as ef
from .rma import FULL, METAFOR_DEFAULT, Control

#: ``columns`` keys each kind of measure needs (either set for binary).
BINARY_COLUMNS = (("ai", "n1i", "ci", "n2i"), ("ai", "bi", "ci", "di"))
CONTINUOUS_COLUMNS = ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")
#: ``options.control`` of a spec -> the engine's ``Control``: "metafor" (the
#: default) reproduces metafor's default stopping rule in the sections whose
#: references used it; "full" converges every fit fully (the pipeline's
#: choice). The one place where the string becomes a ``Control``.
SPEC_CONTROLS = {"metafor": METAFOR_DEFAULT, "full": FULL}


@dataclass(frozen=True)
class Cells:
    """2x2 cells per row: events/non-events in arm 1 (ai, bi) and arm 2 (ci, di)."""

    ai: np.ndarray
    bi: np.ndarray
    ci: np.ndarray
    di: np.ndarray


class RowNumbers:
    """Stand-in for the labels "1" ... "k" of a spec without a study column."""

    def __init__(self, k: int):
        self.k = k

    def __reduce__(self):
        return RowNumbers, (self.k,)


class _Labels:
    """``AnalysisData.slab``: a tuple; ``RowNumbers`` become one on first reading.

    Row-number labels are a million strings at k = 1e6 (0.25 s) that
    ``--only rma.REML`` never reads, so they are made when a section does.
    """

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            raise AttributeError(self.slot[1:])   # no default: the field stays required
        value = obj.__dict__[self.slot]
        if isinstance(value, RowNumbers):
            value = tuple(map(str, range(1, value.k + 1)))
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class AnalysisData:
    """Arrays for one analysis, one entry per input row.

    Attributes
    ----------
    name : str
    measure : str
        RR, OR, RD, SMD, MD, ROM or GEN.
    es : EffectSizes
    slab : tuple of str
        Unique study labels (duplicates get " #2", ... as metafor's make.unique).
    level : float
        Confidence level in percent.
    transf : str
        "exp" to report back-transformed estimates (default for RR, OR, ROM).
    year, moderator : ndarray or None
    group : ndarray of object or None
        Subgroup labels (None where missing).
    moderator_name, subgroup_name, year_name : str or None
    cells : Cells or None
        Binary measures only (uncorrected counts, for MH and Peto).
    options : dict
        The spec's options as given.
    control : Control
        ``options.control`` translated (``SPEC_CONTROLS``): how the sections
        that reproduce metafor's default-control references stop ML/REML/EB.
    """

    name: str
    measure: str
    es: ef.EffectSizes
    slab: tuple = _Labels()
    level: float = 95.0
    transf: str = "none"
    year: np.ndarray | None = None
    group: np.ndarray | None = None
    moderator: np.ndarray | None = None
    moderator_name: str | None = None
    subgroup_name: str | None = None
    year_name: str | None = None
    cells: Cells | None = None
    options: dict = field(default_factory=dict)
    control: Control = METAFOR_DEFAULT

    @property
    def yi(self) -> np.ndarray:
        return self.es.yi

    @property
    def vi(self) -> np.ndarray:
        return self.es.vi

    @property
    def used(self) -> np.ndarray:
        """Rows that enter the models: finite yi and vi (metafor's na.omit)."""
        return np.isfinite(self.es.yi) & np.isfinite(self.es.vi)


def make_unique(labels) -> tuple:
    """R's ``make.unique(x, sep=" #")``: later duplicates get " #1", " #2", ..."""
    taken = set(labels)
    if len(taken) == len(labels):   # nothing to rename (the common case; 1 s at k = 1e6 otherwise)
        return tuple(labels)
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        if lab not in seen:
            seen[lab] = 0
            out.append(lab)
            continue
        n = seen[lab]
        while True:
            n += 1
            cand = f"{lab} #{n}"
            if cand not in taken:
                break
        seen[lab] = n
        taken.add(cand)
        out.append(cand)
    return tuple(out)


def _numeric(frame: pd.DataFrame, col: str, spec_name: str) -> np.ndarray:
    if col not in frame.columns:
        raise ValueError(f"{spec_name}: column '{col}' not in the CSV (has {list(frame.columns)})")
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def subgroup_labels(column: pd.Series) -> np.ndarray:
    """Labels of a subgroup column as R's ``factor()`` names its levels; None where missing.

    pandas reads a column of integer codes with an empty cell as floats (1.0,
    NaN), where R's read.csv keeps integers: such codes are written "1", "2",
    not "1.0" (metafor's subgroup levels, tests/test_subgroup.py).
    """
    values = column.tolist()
    integral = column.dtype.kind == "f" and all(
        math.isnan(v) or float(v).is_integer() for v in values)
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        else:
            out.append(str(int(v)) if integral else str(v))
    return np.array(out, dtype=object)


def analysis_data(frame: pd.DataFrame, spec: dict) -> AnalysisData:
    """Build ``AnalysisData`` from a data frame and a spec dictionary."""
    name = spec.get("name", "analysis")
    measure = str(spec["measure"]).upper()
    if measure == "GENERIC":
        measure = ef.GENERIC_MEASURE
    if measure not in ef.MEASURES:
        raise ValueError(f"{name}: unknown measure {measure!r}; use one of {ef.MEASURES}")
    cols = spec.get("columns", {})
    opts = dict(spec.get("options") or {})
    if opts.get("control", "metafor") not in SPEC_CONTROLS:
        raise ValueError(f"{name}: options.control must be one of {tuple(SPEC_CONTROLS)}, "
                         f"got {opts['control']!r}")
    control = SPEC_CONTROLS[opts.get("control", "metafor")]
    level = float(opts.get("level", 95))
    transf = opts.get("transf", "exp" if measure in ("RR", "OR", "ROM") else "none")
    get = lambda key: _numeric(frame, cols[key], name)  # noqa: E731 - local shorthand
    cells = None
    if measure in ef.BINARY_MEASURES:
        if all(c in cols for c in BINARY_COLUMNS[1]):
            ai, bi, ci, di = (get(c) for c in BINARY_COLUMNS[1])
        elif all(c in cols for c in BINARY_COLUMNS[0]):
            ai, bi, ci, di = ef.cells_from_arms(*(get(c) for c in BINARY_COLUMNS[0]))
        else:
            raise ValueError(f"{name}: binary measure {measure} needs columns ai, n1i, ci, n2i")
        cells = Cells(ai, bi, ci, di)
        es = ef.binary_effects(measure, ai, bi, ci, di, add=float(opts.get("add", 0.5)),
                               to=opts.get("to", "only0"), drop00=bool(opts.get("drop00", False)))
    elif measure in ef.CONTINUOUS_MEASURES:
        missing = [c for c in CONTINUOUS_COLUMNS if c not in cols]
        if missing:
            raise ValueError(f"{name}: measure {measure} needs columns {missing}")
        es = ef.continuous_effects(measure, *(get(c) for c in CONTINUOUS_COLUMNS),
                                   vtype=opts.get("vtype", "LS"))
    else:
        if "yi" not in cols or ("vi" not in cols and "sei" not in cols):
            raise ValueError(f"{name}: generic measure needs columns yi and vi (or sei)")
        es = ef.generic_effects(get("yi"), vi=get("vi") if "vi" in cols else None,
                                sei=get("sei") if "vi" not in cols else None)
    k = len(frame)
    study = spec.get("study")
    # row numbers are unique already: make_unique only for a study column
    slab = make_unique([str(s) for s in frame[study]]) if study else RowNumbers(k)
    year = _numeric(frame, spec["year"], name) if spec.get("year") else None
    moderator = _numeric(frame, spec["moderator"], name) if spec.get("moderator") else None
    group = None
    if spec.get("subgroup"):
        group = subgroup_labels(frame[spec["subgroup"]])
    return AnalysisData(name=name, measure=measure, es=es, slab=slab, level=level,
                        transf=transf, year=year, group=group, moderator=moderator,
                        moderator_name=spec.get("moderator"), subgroup_name=spec.get("subgroup"),
                        year_name=spec.get("year"),
                        cells=cells, options=opts, control=control)


def load_spec(path: str | Path) -> tuple[dict, AnalysisData]:
    """Read a spec JSON and its CSV (relative to the spec's folder)."""
    path = Path(path)
    spec = json.loads(path.read_text(encoding="utf-8"))
    frame = pd.read_csv(path.parent / spec["csv"], keep_default_na=True)
    spec.setdefault("name", path.parent.name)
    return spec, analysis_data(frame, spec)
