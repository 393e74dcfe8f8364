"""The ``rma.mv`` section of the oracle adapter: a multilevel spec to metafor's key paths.

A spec with an ``"rma.mv"`` object (instead of ``measure``/``columns``) is a
multilevel / multivariate model, ``ntxmeta.multilevel.rma_mv``; ``ntxmeta
analyse SPEC.json --out OUT.json`` then writes the sections of the rma.mv
oracle (tests/fixtures/oracle_mv/make_mv.R): ``rma.mv``, and on request
``confint``, ``anova``, ``wald`` and ``CR2``, under the key paths of its
``out.json``, composed through ``ntxmeta.oracle.keys`` (``MV_*``).

Spec (each key mirrors an argument of metafor 3.8-1's call)
------------------------------------------------------------
::

    {"name": "assink2016_deltype",
     "csv": "data.csv",                        // relative to the spec's folder
     "rma.mv": {
       "yi": "yi",                             // rma.mv(yi, ...)
       "V": "vi",                              // V = vi: a column of sampling variances, or
            // {"vcalc": {"vi": "vi", "cluster": "study", "rho": 0.6}}
            // {"vcalc": {"vi": "vi", "cluster": "study", "time1": "time", "phi": 0.97}}
            // {"vcalc": {"vi": 1, "cluster": "author", "rvars": ["v1i", "v2i"]}}
            // {"shared_arm": {"vi": "vi", "cluster": "study", "measure": "OR",
            //                 "x": "xi.2", "n": "ni.2", "add": 0.5}}   (or "sd", "n" for MD)
       "mods": ["X.deltypegeneral", "X.deltypeovert"],  // mods = cbind(...): numeric columns
       "intercept": true,                      // intercept = TRUE (metafor's default)
       "random": "~ 1 | study/esid",           // random =; a list for several terms
       "struct": "CS",                         // struct = (for "~ inner | outer")
       "rho": 0.5,                             // rho = (fixed correlation; omit to estimate)
       "method": "REML", "test": "z", "level": 95,
       "confint": true,                        // confint(res): profile-likelihood CIs
       "anova": {"random": "~ 1 | study"},     // anova(res, reduced): the same call with
                                               // these keys replaced ("random": null: none)
       "wald": [[0, 1, -1]],                   // anova(res, X = L): rows of L
       "cluster": "study"                      // clubSandwich coef_test(res, "CR2", cluster=)
     }}

``V``: ``vcalc`` is metafor's ``vcalc(vi, cluster, rho=, time1=, phi=)`` or,
with ``rvars``, ``vcalc(vi = 1, cluster, rvars = c(...))`` (rows that carry
their covariances); ``shared_arm`` is the multi-arm covariance of contrasts
sharing a control arm (``ntxmeta.multilevel.shared_arm_vcov`` with
``arm_var``; in R a ``bldiag`` of per-study matrices). ``random`` terms:
``~ 1 | outer`` and ``~ 1 | outer/inner`` (``Nested``), ``~ inner | outer``
(``Structured`` with ``struct`` and ``rho``). ``mods`` are model-matrix
columns (e.g. R's ``model.matrix`` written to the CSV); the coefficients
are named ``intrcpt`` and the column names, as metafor names the columns
of a matrix ``mods``. Not supported (as ``rma_mv``): ``W=``, ``R=``, more
than one ``~ inner | outer`` term, formulas in ``mods``.

Output: ``name``, ``k_rows``, then the sections, then ``spec``; ``only``
selects sections (``rma.mv`` is always fitted). A refusal of the engine
(ValueError) becomes ``{"error": ...}`` in its section, as in the
univariate adapter.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import multilevel as ml
from .._common import guarded
from . import keys

#: The sections an rma.mv spec can produce, in output order.
MV_SECTIONS = ("rma.mv", "confint", "anova", "wald", "CR2")
#: The keys of a spec's ``rma.mv`` object.
SPEC_KEYS = {"yi", "V", "mods", "intercept", "random", "struct", "rho", "method", "test",
             "level", "confint", "anova", "wald", "cluster"}
#: The keys ``anova`` may replace in the reduced model's call.
REDUCED_KEYS = {"random", "struct", "rho", "mods", "intercept"}
_FORMULA = re.compile(r"^\s*~\s*([^|\s]+)\s*\|\s*([^|]*[^|\s])\s*$")


class SpecError(ValueError):
    """A malformed rma.mv spec; the message names the file, the key and the value."""


def _fail(where: str, key: str, value, rule: str):
    raise SpecError(f"{where}: rma.mv.{key} = {value!r}: {rule}")


def _column(frame: pd.DataFrame, name, where: str, key: str, numeric: bool = True) -> np.ndarray:
    if not isinstance(name, str) or name not in frame.columns:
        _fail(where, key, name, f"not a column of the CSV (columns: {list(frame.columns)})")
    col = frame[name]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0]) + 2   # header is line 1
        _fail(where, key, name, f"missing value on CSV line {row} (rma.mv takes complete rows)")
    if numeric:
        try:
            return col.to_numpy(float)
        except (TypeError, ValueError):
            _fail(where, key, name, "must be a numeric column")
    return col.to_numpy()


def _V(frame: pd.DataFrame, v, where: str) -> np.ndarray:
    if isinstance(v, str):
        return _column(frame, v, where, "V")
    if not (isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ("vcalc", "shared_arm")):
        _fail(where, "V", v, 'must be a column name, {"vcalc": {...}} or {"shared_arm": {...}}')
    kind, a = next(iter(v.items()))
    key = f"V.{kind}"
    if not isinstance(a, dict):
        _fail(where, key, a, "must be an object of vcalc's / shared_arm's arguments")
    col = lambda name, numeric=True: _column(frame, a.get(name), where, f"{key}.{name}",  # noqa: E731
                                             numeric)
    cluster = col("cluster", numeric=False)
    if kind == "shared_arm":
        measure = a.get("measure")
        if measure == "MD":
            sv = ml.arm_var("MD", sd=col("sd"), n=col("n"))
        elif measure in ("OR", "RR"):
            sv = ml.arm_var(measure, x=col("x"), n=col("n"), add=float(a.get("add", 0.0)))
        else:
            _fail(where, f"{key}.measure", measure, "must be OR, RR or MD")
        return ml.shared_arm_vcov(col("vi"), cluster, sv)
    if "rvars" in a:
        if a.get("vi", 1) != 1:
            _fail(where, f"{key}.vi", a.get("vi"), "must be 1 with rvars (vcalc(vi = 1, rvars =))")
        rv = a["rvars"]
        if not isinstance(rv, list) or not rv:
            _fail(where, f"{key}.rvars", rv, "must be a list of column names")
        return ml.rvars_vcov(cluster, [_column(frame, c, where, f"{key}.rvars") for c in rv])
    time = col("time1") if "time1" in a else None
    return ml.vcalc(col("vi"), cluster, rho=a.get("rho"), time=time, phi=a.get("phi"))


def _random(frame: pd.DataFrame, call: dict, where: str):
    terms = call.get("random")
    if terms is None:
        return None
    many = isinstance(terms, list)
    out = []
    for f in (terms if many else [terms]):
        m = _FORMULA.match(f) if isinstance(f, str) else None
        if m is None:
            _fail(where, "random", f, 'must be "~ 1 | outer", "~ 1 | outer/inner" or '
                                      '"~ inner | outer" (or a list of them)')
        lhs, rhs = m.groups()
        if lhs == "1":
            parts = [part.strip() for part in rhs.split("/")]
            if len(parts) > 2:
                _fail(where, "random", f, "at most two nested levels (outer/inner)")
            cols = [_column(frame, c, where, "random", numeric=False) for c in parts]
            out.append(ml.Nested(outer=cols[0], inner=cols[1] if len(cols) == 2 else None))
        elif "/" in rhs or " " in rhs:
            _fail(where, "random", f, '"~ inner | outer" takes one grouping column')
        else:
            struct = call.get("struct", "CS")
            if struct not in ml.STRUCTS:
                _fail(where, "struct", struct, f"must be one of {ml.STRUCTS}")
            out.append(ml.Structured(inner=_column(frame, lhs, where, "random", numeric=False),
                                     outer=_column(frame, rhs, where, "random", numeric=False),
                                     struct=struct, rho=call.get("rho")))
    return tuple(out) if many else out[0]


def _design(frame: pd.DataFrame, call: dict, where: str) -> tuple[np.ndarray, list[str]]:
    mods = call.get("mods", [])
    if isinstance(mods, str):
        mods = [mods]
    if not isinstance(mods, list):
        _fail(where, "mods", mods, "must be a list of numeric column names")
    intercept = call.get("intercept", True)
    if not isinstance(intercept, bool):
        _fail(where, "intercept", intercept, "must be true or false")
    cols = [_column(frame, c, where, "mods") for c in mods]
    if intercept:
        cols.insert(0, np.ones(len(frame)))
    if not cols:
        _fail(where, "mods", mods, "no coefficients: give mods or intercept = true")
    return np.column_stack(cols), (["intrcpt"] if intercept else []) + list(mods)


def _fit(frame: pd.DataFrame, call: dict, where: str, yi: np.ndarray, V: np.ndarray) -> ml.MVFit:
    X, names = _design(frame, call, where)
    return ml.rma_mv(yi, V, X=X, random=_random(frame, call, where),
                     method=call.get("method", "REML"), test=call.get("test", "z"),
                     level=call.get("level", 95), names=names)


# --------------------------------------------------------------------------- sections

def _value(obj, name: str):
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _plain(x):
    """Tuples and arrays as lists (QMdf's missing df2 as NaN, metafor's NA)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return [float("nan") if v is None else _plain(v) for v in x]
    return x


def _fit_stats_row(fs) -> list:
    return [getattr(fs, row) for row, _ in keys.FIT_STATS_ROWS]


def fit_section(fit: ml.MVFit) -> dict:
    """The ``rma.mv`` section (make_mv.R's ``fit_section``), from ``keys.MV_*``."""
    d: dict = {theirs: _value(fit, ours) for ours, theirs in keys.MV_HEAD}
    coef = {}
    for ours, theirs in keys.MV_COEFFICIENTS:
        if "." in ours:   # an Interval's end, per coefficient
            coef[theirs] = [_value(ci, ours.split(".")[1]) for ci in fit.ci]
        else:
            coef[theirs] = list(_plain(_value(fit, ours)))
    if fit.df is not None:
        coef[keys.MV_DF[1]] = [fit.df] * fit.p
    d["coefficients"] = coef
    d.update({theirs: _plain(_value(fit, ours)) for ours, theirs in keys.MV_TAIL})
    for ours, theirs in keys.MV_COMPONENTS:
        val = _value(fit, ours)
        if val.size or (ours == "rho" and fit.tau2.size):
            d[theirs] = val.tolist()
    d["fit.stats"] = {theirs: {col: getattr(_value(fit, ours), row)
                               for row, col in keys.FIT_STATS_ROWS}
                      for ours, theirs in keys.FIT_STATS}
    return d


def confint_section(fit: ml.MVFit) -> dict:
    """``confint(res)``: per component; with a single variance component also
    its square root (``sigma``/``tau``), as metafor prints it."""
    cis = ml.confint(fit, level=fit.level)
    row = lambda c, f=lambda x: x: {theirs: f(_value(c, ours))  # noqa: E731
                                    for ours, theirs in keys.MV_CONFINT}
    out = {c.name: row(c) for c in cis}
    if len(cis) == 1 and not cis[0].name.startswith("rho"):
        out[cis[0].name.replace("^2", "")] = row(cis[0], np.sqrt)
    return out


def anova_section(test: ml.LRTest) -> dict:
    out = {}
    for ours, theirs in keys.MV_ANOVA:
        val = _value(test, ours)
        out[theirs] = _fit_stats_row(val) if ours.startswith("fit_") else val
    return out


def wald_section(test: ml.WaldTest) -> dict:
    return {theirs: _plain(_value(test, ours)) for ours, theirs in keys.MV_WALD}


def cr2_section(test: ml.CR2Test) -> dict:
    return {theirs: list(_plain(_value(test, ours))) for ours, theirs in keys.MV_CR2}


# --------------------------------------------------------------------------- entry

def analyse_mv(spec: dict, folder: str | Path, *, only=None, where: str = "spec") -> dict:
    """Fit the model of an rma.mv spec and compute its requested sections.

    ``folder``: where ``spec["csv"]`` is; ``where``: the spec's name in error
    messages (its path). ``only``: a comma-separated string or list of
    sections of ``MV_SECTIONS``.
    """
    call = spec["rma.mv"]
    if not isinstance(call, dict):
        raise SpecError(f"{where}: rma.mv must be an object, got {call!r}")
    unknown = set(call) - SPEC_KEYS
    if unknown:
        raise SpecError(f"{where}: rma.mv has unknown keys {sorted(unknown)}; "
                        f"keys are {sorted(SPEC_KEYS)}")
    wanted = None
    if only:
        wanted = {s.strip() for s in (only.split(",") if isinstance(only, str) else only)
                  if s.strip()}
        bad = wanted - set(MV_SECTIONS)
        if bad:
            raise ValueError(f"unknown section(s) {sorted(bad)}; rma.mv sections are "
                             f"{list(MV_SECTIONS)}")
    if not isinstance(spec.get("csv"), str):
        raise SpecError(f"{where}: csv = {spec.get('csv')!r}: must name the data CSV "
                        "(relative to the spec's folder)")
    frame = pd.read_csv(Path(folder) / spec["csv"], keep_default_na=True)
    yi = _column(frame, call.get("yi"), where, "yi")
    V = _V(frame, call.get("V"), where)
    out: dict = {"name": spec.get("name", Path(folder).name), "k_rows": int(len(frame))}

    def want(name):
        return wanted is None or name in wanted

    try:
        fit = _fit(frame, call, where, yi, V)
    except SpecError:
        raise
    except ValueError as exc:   # the engine refuses these data (metafor would stop)
        out["rma.mv"] = {"error": str(exc)}
        out["spec"] = spec
        return out
    if want("rma.mv"):
        out["rma.mv"] = fit_section(fit)
    if call.get("confint") and want("confint"):
        out["confint"] = guarded(confint_section, fit)
    if "anova" in call and want("anova"):
        red = call["anova"]
        if not isinstance(red, dict) or not red or set(red) - REDUCED_KEYS:
            _fail(where, "anova", red, f"must be an object replacing some of {sorted(REDUCED_KEYS)}")
        out["anova"] = guarded(lambda: anova_section(
            ml.anova(fit, _fit(frame, {**call, **red}, where, yi, V))))
    if "wald" in call and want("wald"):
        out["wald"] = guarded(lambda: wald_section(ml.wald(fit, call["wald"])))
    if "cluster" in call and want("CR2"):
        cluster = _column(frame, call["cluster"], where, "cluster", numeric=False)
        out["CR2"] = guarded(lambda: cr2_section(ml.cr2(fit, cluster)))
    out["spec"] = spec
    return out


def analyse_mv_file(spec_path: str | Path, *, only=None) -> dict:
    """Read an rma.mv spec file and analyse it (see the module docstring)."""
    path = Path(spec_path)
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec.setdefault("name", path.parent.name)
    return analyse_mv(spec, path.parent, only=only, where=str(path))
