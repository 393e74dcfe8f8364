"""The configuration (``config/config.yaml``): read, checked, defaults filled in.

The config holds science only (STYLE.md habit 4): which rows form each
analysis, its measure and model, the pooling rules and the sensitivity
subsets. Its schema, ``schemas/config.schema.yaml``, documents every key;
``config/README.md`` explains them with examples.

Every problem is reported at once, in the form of the raw-table problems
(``ntxmeta.validate.Problem``), with the line of the key in the YAML file::

    config/config.yaml:14: key 'analyses.aud_rr.measure' = 'RRR': unknown value ...

Checks beyond the schema: analysis names safe as file names; paths that
stay inside the project; filter, subgroup and moderator columns that exist
in comparisons.csv (with "did you mean"); filter values in the closed
vocabularies; and, given the comparisons, that each analysis's filters
match at least one row (k = 0 or 1 after the pooling rules is allowed: the
analysis then reports why it has no pooled estimate).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path, PurePosixPath
from typing import Iterable

import jsonschema
import pandas as pd
import yaml

from .normalise import comparison_columns, normalise, outcome_table, resolve_rules
from .select import CanonicalColumns, filter_mask
from .validate import (Problem, ValidationError, check_raw, did_you_mean, load_schema,
                       one_of, text_problem)

#: Keys that are about running, not science: they belong on the command line.
OPERATIONAL_KEYS = ("cores", "threads", "jobs", "resources", "executor", "profile", "mem_mb",
                    "tmpdir", "conda")
#: The model options shared by ``defaults`` and each analysis.
MODEL_OPTIONS = ("preset", "method", "test", "pi", "pool_k2", "level", "add", "to", "drop00")
#: The options a preset sets (``x-presets`` of the config schema).
PRESET_OPTIONS = ("method", "test", "pi", "pool_k2")
#: Deepest nesting of mappings and lists accepted in the config. The schema
#: needs 5 (analyses.NAME.filters.COLUMN.[values]); PyYAML's composer recurses
#: once per level and raises RecursionError near a thousand.
MAX_DEPTH = 20


# --------------------------------------------------------------------------- YAML

class UnsafeYAML(yaml.YAMLError):
    """YAML that is refused before it is built: anchors, aliases, nesting too deep."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _guard(text: str) -> None:
    """Refuse anchors and aliases (``&a``, ``*a``, ``<<: *a``) and nesting deeper than MAX_DEPTH.

    Read from PyYAML's event stream, which is parsed without recursion and
    without building anything: a kilobyte of nested aliases ("billion
    laughs") would otherwise expand to gigabytes, and a deep nesting would
    exhaust the composer's recursion. The config needs neither.
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise UnsafeYAML(line, "YAML anchors and aliases (&name, *name, <<: *name) are not "
                             "allowed; write each value out in full")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeYAML(line, f"nested more than {MAX_DEPTH} levels deep; the config "
                                 "needs at most 5 (see config/README.md)")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml(text: str):
    """``yaml.safe_load`` of config text after ``_guard``; raises ``yaml.YAMLError``."""
    _guard(text)
    return yaml.safe_load(text)


_parsed_cache: dict = {}


def _parsed(path: str | Path):
    """(text, data) of a config file, read and parsed once per file version.

    The raw-data glob, the pooling rules and the full check all need the
    config before and while it is validated; one read serves the three
    (keyed by path, modification time and size). Errors are raised again
    on every call, as the first read raised them.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _parsed_cache:
        _parsed_cache.clear()
        try:
            text = path.read_text(encoding="utf-8-sig")
            _parsed_cache[key] = (text, load_yaml(text), None)
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            _parsed_cache[key] = (None, None, exc)
    text, data, exc = _parsed_cache[key]
    if exc is not None:
        raise exc
    return text, copy.deepcopy(data)


def _line_map(node: yaml.Node, path: tuple = (), lines: dict | None = None,
              dups: list | None = None) -> tuple[dict, list]:
    """Line (1-based) of every key and list item, and keys written twice."""
    lines = {(): 1} if lines is None else lines
    dups = [] if dups is None else dups
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            p = path + (key.value,)
            if p in lines:
                dups.append((p, key.start_mark.line + 1))
            lines[p] = key.start_mark.line + 1
            _line_map(value, p, lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), lines, dups)
    return lines, dups


def key_name(path: Iterable) -> str:
    """A key path as written in messages: ``analyses.x.moderators[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(value) -> str:
    """A value as it would be written in YAML, on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(value)]
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return str(value)


class _Reporter:
    """Collects config problems with the line of their key."""

    def __init__(self, name: str, lines: dict):
        self.name, self.lines, self.problems = name, lines, []

    def line(self, path: tuple) -> int:
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def __call__(self, path: tuple, message: str, value=None, *, show_value: bool = True) -> None:
        self.problems.append(Problem(self.name, self.line(tuple(path)),
                                     key_name(path) if path else None,
                                     _shown(value) if show_value and path else None, message,
                                     kind="key"))


def _read(path: Path, name: str) -> tuple[dict | None, list[Problem], dict]:
    """The parsed YAML, its problems, and the line map."""
    try:
        text, data = _parsed(path)
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(name, None, None, None, f"cannot be read as UTF-8 text ({exc})")], {}
    except yaml.YAMLError:
        text, data = path.read_text(encoding="utf-8-sig"), None
    try:
        if data is None:
            data = load_yaml(text)  # raises the same error again, for its report below
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnsafeYAML as exc:
        return None, [Problem(name, exc.line, None, None, exc.message)], {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None:
            what = f"{context} started on line {start.line + 1}: {what}"
        return None, [Problem(name, line, None, None,
                              f"not valid YAML ({what}); check the indentation and quoting")], {}
    if not isinstance(data, dict):
        return None, [Problem(name, 1, None, None, "the config must be a mapping of keys "
                              "(defaults, rules, sensitivity, analyses); see config/README.md")], {}
    lines, dups = _line_map(node)
    problems = [Problem(name, line, key_name(p), None,
                        "written twice; YAML keeps only the last one, so delete one", kind="key")
                for p, line in dups]
    return data, problems, lines


# --------------------------------------------------------------------------- schema

def _walk(value, path: tuple = ()):
    """(key path, value) of every scalar of the config, keys included as values of their path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,), key
            yield from _walk(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, path + (i,))
    else:
        yield path, value


def _value_problems(data: dict, report: _Reporter) -> set[tuple]:
    """Numbers that are not finite (``.nan``, ``.inf``) and texts with hidden characters.

    JSON-schema compares NaN with every bound as false, so ``level: .nan``
    passed it and blanked every interval. Returns the paths reported, which
    the schema's own messages then leave alone.
    """
    bad = set()
    for path, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            report(path, "must be a finite number", value)
            bad.add(path)
        elif isinstance(value, str) and value.strip(" "):
            why = text_problem(value)
            if why:
                report(path, why, value)
                bad.add(path)
    return bad


def _schema_problems(data: dict, report: _Reporter, skip: set[tuple] = frozenset()) -> None:
    schema = load_schema("config")
    for err in jsonschema.Draft202012Validator(schema).iter_errors(data):
        path = tuple(err.absolute_path)
        v, limit = err.validator, err.validator_value
        if path in skip or (isinstance(err.instance, str) and path + (err.instance,) in skip):
            continue
        if "propertyNames" in err.absolute_schema_path:
            where = "analysis" if path[-1:] == ("analyses",) else "name"
            rule = (f"at most {limit} characters" if v == "maxLength" else "use lower case "
                    "letters, digits and '_', starting with a letter or digit")
            report(path + (err.instance,), f"{where} names become file names: {rule}",
                   show_value=False)
        elif v == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            for key in err.instance:
                if key in known:
                    continue
                if key in OPERATIONAL_KEYS:
                    msg = ("not science: give cores, resources and executors on the command "
                           "line (snakemake --cores N) or in a profile, not in the config")
                else:
                    msg = f"unknown key{did_you_mean(key, known)}; known keys: {one_of(known)}"
                report(path + (key,), msg, show_value=False)
        elif v == "required":
            missing = [k for k in limit if k not in err.instance]
            for key in missing:
                report(path, f"missing the required key '{key}'", show_value=False)
        elif v == "enum":
            report(path, f"unknown value{did_you_mean(err.instance, limit)}; use one of "
                   f"{one_of(limit)}", err.instance)
        elif v == "type":
            kinds = [limit] if isinstance(limit, str) else limit
            words = {"object": "a mapping of keys", "array": "a list", "string": "text",
                     "number": "a number", "boolean": "true or false", "integer": "a whole number"}
            report(path, f"must be {' or '.join(words.get(k, k) for k in kinds)}", err.instance)
        elif v in ("minProperties", "minItems"):
            report(path, "must not be empty", err.instance)
        elif v in ("exclusiveMinimum", "exclusiveMaximum"):
            side = "greater" if v == "exclusiveMinimum" else "less"
            report(path, f"must be {side} than {limit}", err.instance)
        elif v == "minimum":
            report(path, f"must be at least {limit}", err.instance)
        else:
            report(path, err.message, err.instance)


# --------------------------------------------------------------------------- meaning

def vocabularies() -> dict[str, list]:
    """The closed vocabulary of each comparisons column that has one."""
    raw = load_schema("raw_trials")["properties"]
    vocab = {col: spec["enum"] for col, spec in raw.items() if "enum" in spec}
    outcomes = outcome_table().values()
    vocab["data_type"] = comparison_columns()["data_type"]["enum"]
    vocab["comparator_class"] = comparison_columns()["comparator_class"]["enum"]
    vocab["event"] = sorted({o.event for o in outcomes})
    vocab["outcome_family"] = sorted({o.family for o in outcomes})
    return vocab


def _column_type(spec: dict) -> str:
    return spec["type"][0] if isinstance(spec["type"], list) else spec["type"]


def _check_filters(path: tuple, filters, report: _Reporter) -> bool:
    """Filter columns and values; True if the filters can be applied."""
    if not isinstance(filters, dict):
        return False
    columns = comparison_columns()
    vocab = vocabularies()
    ok = True
    for col, values in filters.items():
        if col not in columns:
            report(path + (col,), f"not a column of comparisons.csv{did_you_mean(col, columns)}",
                   show_value=False)
            ok = False
            continue
        if not isinstance(values, list):
            ok = False
            continue
        kind = _column_type(columns[col])
        for i, value in enumerate(values):
            if col in vocab and value not in vocab[col]:
                report(path + (col, i), f"unknown value for {col}{did_you_mean(value, vocab[col])}"
                       f"; use one of {one_of(vocab[col])}", value)
                ok = False
            elif kind == "boolean" and not isinstance(value, bool):
                report(path + (col, i), f"{col} is true or false", value)
                ok = False
    return ok


def inside_project(path: str) -> bool:
    """Whether a path (or glob) of the config stays inside the project folder."""
    pure = PurePosixPath(path.replace("\\", "/"))
    return not (pure.is_absolute() or ".." in pure.parts or path[1:3] == ":\\")


def raw_data_glob(config_path: str | Path) -> str:
    """The config's ``raw_data`` glob, read before the config is validated.

    The raw tables are validated together with the config, so their glob is
    needed first; where the file, its YAML or the key is unusable, the
    schema's default is used and validation reports the problem.
    """
    default = load_schema("config")["properties"]["raw_data"]["default"]
    try:
        _, data = _parsed(config_path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return default
    value = data.get("raw_data") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value and inside_project(value) else default


def _check_meaning(data: dict, report: _Reporter) -> set[str]:
    """Paths, columns and vocabularies; the names of analyses whose filters can be applied."""
    for key in ("raw_data", "risk_of_bias"):
        where = data.get(key)
        if isinstance(where, str) and not inside_project(where):
            report((key,), "must stay inside the project: give a path relative to the "
                   "project folder, without '..'", where)
    columns = comparison_columns()
    for name, sens in (data.get("sensitivity") or {}).items():
        if isinstance(sens, dict):
            _check_filters(("sensitivity", name, "exclude"), sens.get("exclude"), report)
    seen = {n: "analyses" for n in (data.get("analyses") or {})
            if isinstance(data.get("analyses"), dict)}
    for key in ("timepoints", "networks"):   # joint models: filters, and one name per output
        models = data.get(key)
        for name, m in (models.items() if isinstance(models, dict) else ()):
            if name in seen:
                report((key, name), f"the name is already used under '{seen[name]}': the "
                       "report and the figures need one name per model; rename one", name)
            seen.setdefault(name, key)
            if isinstance(m, dict):
                _check_filters((key, name, "filters"), m.get("filters"), report)
    usable = set()
    analyses = data.get("analyses")
    for name, a in (analyses.items() if isinstance(analyses, dict) else ()):
        if not isinstance(a, dict):
            continue
        base = ("analyses", name)
        if _check_filters(base + ("filters",), a.get("filters"), report) and "measure" in a:
            usable.add(name)
        sub = a.get("subgroup")
        if isinstance(sub, str) and sub not in columns:
            report(base + ("subgroup",), f"not a column of comparisons.csv"
                   f"{did_you_mean(sub, columns)}", sub)
        _check_question(base, a, report)
        numeric = [c for c, s in columns.items() if _column_type(s) in ("integer", "number")]
        mods = a.get("moderators")
        for i, mod in enumerate(mods if isinstance(mods, list) else []):
            if isinstance(mod, str) and mod not in numeric:
                hint = "" if mod in columns else did_you_mean(mod, numeric)
                report(base + ("moderators", i), f"not a numeric column of comparisons.csv"
                       f"{hint}; use one of {one_of(numeric)}", mod)
    _check_grade(data, analyses if isinstance(analyses, dict) else {}, report)
    _check_bayes(data, analyses if isinstance(analyses, dict) else {}, report)
    _check_figures(data, analyses if isinstance(analyses, dict) else {}, report)
    return usable


def _check_bayes(data: dict, analyses: dict, report: _Reporter) -> None:
    """Every prior spelled as ``ntxmeta bayes`` reads it (``halfnormal:0.5``, ``normal:0:2``)."""
    from .bayes import parse_mu_prior, parse_tau_prior
    blocks = [(("bayes",), data.get("bayes"))] + [(("analyses", n, "bayes"), a.get("bayes"))
                                                  for n, a in analyses.items() if isinstance(a, dict)]
    for where, block in blocks:
        if not isinstance(block, dict):
            continue
        priors = block.get("tau_prior")
        items = (priors.items() if isinstance(priors, dict)
                 else [(None, priors)] if priors is not None else [])
        for measure, spec in items:
            if isinstance(spec, str):
                path = where + ("tau_prior",) + ((measure,) if measure else ())
                try:
                    parse_tau_prior(spec, what="tau prior")
                except ValueError as exc:
                    report(path, str(exc), spec, show_value=False)
        spec = block.get("mu_prior")
        if isinstance(spec, str):
            try:
                parse_mu_prior(spec, what="mu prior")
            except ValueError as exc:
                report(where + ("mu_prior",), str(exc), spec, show_value=False)


def _numbers(value) -> bool:
    return isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                           for x in value)


def _check_figure_block(base: tuple, block, report: _Reporter) -> None:
    """One ``figures`` mapping: width, formats, colours, and each kind's limits and ticks."""
    from matplotlib.colors import is_color_like

    from .figopts import KINDS, REQUIRED_FORMATS, parse_width
    if not isinstance(block, dict):
        return
    if "width" in block and isinstance(block["width"], (str, int, float)):
        try:
            parse_width(block["width"])
        except ValueError as err:
            report(base + ("width",), str(err), block["width"])
    formats = block.get("formats")
    if isinstance(formats, list):
        missing = [f for f in REQUIRED_FORMATS if f not in formats]
        if missing:
            report(base + ("formats",), f"png and svg are always written (the HTML report shows "
                   f"the SVG, Snakemake's report the PNG): add {' and '.join(missing)}", formats)
    for key, colour in (block.get("colours") or {}).items() if isinstance(block.get("colours"), dict) else ():
        if isinstance(colour, str) and not is_color_like(colour):
            report(base + ("colours", key), "not a colour: give a name (black, navy), "
                   "\"#rrggbb\" or a grey from \"0\" (black) to \"1\" (white)", colour)
    for kind in KINDS:
        plot = block.get(kind)
        if not isinstance(plot, dict):
            continue
        lim, ticks = plot.get("limits"), plot.get("ticks")
        if _numbers(lim) and len(lim) == 2 and not lim[0] < lim[1]:
            report(base + (kind, "limits"), "limits are [low, high] with low < high", lim)
            lim = None
        if _numbers(ticks) and any(b <= a for a, b in zip(ticks, ticks[1:])):
            report(base + (kind, "ticks"), "ticks must increase", ticks)
        elif _numbers(lim) and len(lim) == 2 and _numbers(ticks) and ticks and not (
                lim[0] <= ticks[0] and ticks[-1] <= lim[1]):
            report(base + (kind, "ticks"), f"ticks must lie within the limits "
                   f"[{_shown(lim[0])}, {_shown(lim[1])}]", ticks)


def _check_figures(data: dict, analyses: dict, report: _Reporter) -> None:
    """The ``figures`` defaults and each analysis' own; ratio axes positive.

    A ratio (RR, OR, ...) is drawn on a log axis: its limits and ticks must
    be above 0. Checked for each analysis on its options merged with the
    defaults, and reported where the value was written.
    """
    from .figopts import KINDS
    defaults = data.get("figures") if isinstance(data.get("figures"), dict) else {}
    _check_figure_block(("figures",), defaults, report)
    said = set()
    for name, a in analyses.items():
        if not isinstance(a, dict):
            continue
        own = a.get("figures") if isinstance(a.get("figures"), dict) else {}
        _check_figure_block(("analyses", name, "figures"), own, report)
        if a.get("measure") in NULL_ZERO or not isinstance(a.get("measure"), str):
            continue
        for kind in KINDS:
            for key in ("limits", "ticks"):
                mine = own.get(kind) if isinstance(own.get(kind), dict) else {}
                theirs = defaults.get(kind) if isinstance(defaults.get(kind), dict) else {}
                where, value = ((("analyses", name, "figures", kind, key), mine[key]) if key in mine
                                else (("figures", kind, key), theirs.get(key)))
                if _numbers(value) and any(v <= 0 for v in value) and where not in said:
                    said.add(where)
                    whose = "" if where[0] == "analyses" else f" (analysis {name} is one)"
                    report(where, f"a ratio ({a['measure']}) is drawn on a log axis: {key} must be "
                           f"above 0{whose}", value)


def _check_mid(where: tuple, mid, report: _Reporter, null: float) -> None:
    if (isinstance(mid, list) and len(mid) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in mid)
            and not mid[0] < null < mid[1]):
        report(where, f"a minimal important difference is [lower, upper] around no effect "
               f"({null:g}): lower < {null:g} < upper", mid)


def _check_grade(data: dict, analyses: dict, report: _Reporter) -> None:
    """MIDs around no effect, MH pooling of a binary measure, overrides of known analyses."""
    grade = data.get("grade") if isinstance(data.get("grade"), dict) else {}
    for measure, mid in (grade.get("mid") or {}).items():
        _check_mid(("grade", "mid", measure), mid, report, 0.0 if measure in NULL_ZERO else 1.0)
    for name in (grade.get("overrides") or {}):
        if name not in analyses:
            report(("grade", "overrides", name), f"not an analysis of this config"
                   f"{did_you_mean(name, list(analyses))}", name)
    for name, a in analyses.items():
        if not isinstance(a, dict):
            continue
        measure = a.get("measure")
        if "mid" in a:
            _check_mid(("analyses", name, "mid"), a["mid"], report,
                       0.0 if measure in NULL_ZERO else 1.0)
        if a.get("pooling") == "mantel_haenszel" and measure not in ("RR", "OR", "RD"):
            report(("analyses", name, "pooling"), "Mantel-Haenszel pools 2x2 tables: use "
                   "measure RR, OR or RD, or pooling: inverse_variance", "mantel_haenszel")


#: Measures whose no-effect value is 0 (differences); ratios have 1.
NULL_ZERO = ("RD", "SMD", "MD")


#: Moderators whose unit differs by formulation (mg a day for oral
#: naltrexone, mg per injection or implant for long-acting forms).
PER_FORMULATION_UNITS = ("dose_mg",)


def _one_value(a: dict, column: str) -> bool:
    values = (a.get("filters") or {}).get(column)
    return isinstance(values, list) and len(values) == 1


def _check_question(base: tuple, a: dict, report: _Reporter) -> None:
    """A main analysis answers one question: one comparator class; a dose in one unit.

    Placebo, no treatment or usual care, and an active drug are different
    comparisons (Cochrane Handbook 6.5, 9.3): pooling them gives a number
    no clinician can use. A dose moderator across formulations would put
    50 mg a day and 380 mg a month on one axis.
    """
    if a.get("main") is True and not _one_value(a, "comparator_class"):
        report(base + ("filters",), "a main analysis pools one comparator class: add "
               "comparator_class: [placebo], [no_treatment] or [active] to its filters "
               "(give each class its own analysis)", show_value=False)
    mods = a.get("moderators")
    for i, mod in enumerate(mods if isinstance(mods, list) else []):
        if mod in PER_FORMULATION_UNITS and not _one_value(a, "formulation"):
            report(base + ("moderators", i), f"{mod} is mg a day for oral naltrexone and mg per "
                   "injection or implant otherwise: use it as a moderator only with "
                   "formulation filtered to one value", mod)


def _check_selections(data: dict, names: Iterable[str], comparisons: pd.DataFrame,
                      report: _Reporter) -> None:
    """An analysis whose filters match no row of comparisons is an error."""
    texts = CanonicalColumns(comparisons)
    for name in sorted(names):
        filters = data["analyses"][name]["filters"]
        if filter_mask(comparisons, filters, texts).any():
            continue
        alone = ", ".join(f"{col} alone matches {int(filter_mask(comparisons, {col: v}, texts).sum())}"
                          for col, v in filters.items())
        report(("analyses", name, "filters"), f"analysis '{name}' selects no row of "
               f"comparisons.csv ({alone}); fix the values or remove the analysis", filters)


def resolve(data: dict) -> dict:
    """The config with every default of the schema filled in (a new dict).

    Each analysis gets the model options: its own keys, then its own
    ``preset``'s, then ``defaults`` (whose own keys go over its preset's,
    ``x-presets`` of the schema); ``moderators`` ([]), ``main`` (false),
    ``overall`` (true) and the ``outcome_hierarchy``.
    """
    schema = load_schema("config")
    props, defs, presets = schema["properties"], schema["$defs"], schema["x-presets"]
    cfg = copy.deepcopy(data)
    cfg.setdefault("raw_data", props["raw_data"]["default"])
    cfg.setdefault("risk_of_bias", props["risk_of_bias"]["default"])
    given = cfg.get("defaults", {})
    preset = given.get("preset", defs["preset"]["default"])
    cfg["defaults"] = {k: given.get(k, presets[preset].get(k, defs[k].get("default")))
                       for k in MODEL_OPTIONS}
    cfg["defaults"]["preset"] = preset
    rules = props["rules"]["properties"]
    cfg["rules"] = {k: cfg.get("rules", {}).get(k, spec["default"]) for k, spec in rules.items()}
    cfg.setdefault("sensitivity", {})
    cfg.setdefault("outcome_hierarchy", props["outcome_hierarchy"].get("default")
                   or defs["outcome_hierarchy"]["default"])
    for a in cfg["analyses"].values():
        if "preset" in a:  # its own preset, then its own keys
            for k in PRESET_OPTIONS:
                a.setdefault(k, presets[a["preset"]][k])
        for k in MODEL_OPTIONS:
            a.setdefault(k, cfg["defaults"][k])
        a.setdefault("moderators", [])
        a.setdefault("main", False)
        a.setdefault("overall", True)
        a.setdefault("events", "bad")
        a.setdefault("pooling", "inverse_variance")
        a.setdefault("outcome_hierarchy", cfg["outcome_hierarchy"])
    joint = defs["joint"]["properties"]
    for key in ("timepoints", "networks"):   # the schema's defaults, model options from defaults
        for block in (cfg.setdefault(key, {}) or {}).values():
            for k in ("level", "add", "to", "drop00"):
                block.setdefault(k, cfg["defaults"][k])
            for k, spec in joint.items():
                if "default" in spec:
                    block.setdefault(k, copy.deepcopy(spec["default"]))
    grade = cfg.setdefault("grade", {})
    grade.setdefault("mid", {})
    grade.setdefault("overrides", {})
    for key in ("bayes", "tsa"):   # the schema's defaults, under what the config gives
        given = cfg.get(key) or {}
        cfg[key] = {k: ({**v, **given.get(k, {})} if isinstance(v, dict) else given.get(k, v))
                    for k, v in props[key]["x-defaults"].items()}
        cfg[key].update({k: v for k, v in given.items() if k not in cfg[key]})
    from .figopts import merge
    cfg.setdefault("figures", {})
    for a in cfg["analyses"].values():  # its own figure options over the defaults, key by key
        a["figures"] = merge(cfg["figures"], a.get("figures"))
    return cfg


def check_config(path: str | Path, comparisons: pd.DataFrame | None = None,
                 raw: pd.DataFrame | None = None) -> tuple[dict | None, list[Problem]]:
    """The resolved config (None if unreadable) and every problem found in it.

    Parameters
    ----------
    path : path
        The YAML file; reported as given.
    comparisons : DataFrame, optional
        If given, each analysis must match at least one of its rows.
    raw : DataFrame, optional
        The validated raw rows: if given, each joint model (``timepoints``,
        ``networks``) must place its rows and have enough of them.
    """
    name = str(path)
    data, problems, lines = _read(Path(path), name)
    if data is None:
        return None, problems
    report = _Reporter(name, lines)
    bad_values = _value_problems(data, report)
    _schema_problems(data, report, bad_values)
    usable = {a for a in _check_meaning(data, report)
              if not any(p[:2] == ("analyses", a) for p in bad_values)}
    if comparisons is not None and isinstance(data.get("analyses"), dict):
        _check_selections(data, usable, comparisons, report)
    cfg = resolve(data) if not (problems or report.problems) else None
    if cfg is not None and raw is not None:
        _check_joint(cfg, raw, report)
    problems = sorted(problems + report.problems, key=lambda p: (p.line or 0, p.column or ""))
    return (cfg if not problems else None), problems


def joint_tables(cfg: dict, raw: pd.DataFrame) -> dict:
    """kind -> the comparisons a joint model of that kind selects from: the raw rows
    under the pooling rules except those the model handles (``normalise(modelled=)``)."""
    kinds = {"timepoints": "timepoints", "networks": "network"}
    return {kind: normalise(raw, cfg["rules"], modelled=kind)
            for key, kind in kinds.items() if cfg.get(key)}


def _check_joint(cfg: dict, raw: pd.DataFrame, report: _Reporter) -> None:
    """A joint model must place every row it selects and have enough of them."""
    from .joint import JointPlan, problem, select
    from .plan import outcome_hierarchy
    tables = joint_tables(cfg, raw)
    hierarchy = outcome_hierarchy(cfg["outcome_hierarchy"])
    for key, kind in (("timepoints", "timepoints"), ("networks", "network")):
        for name, block in (cfg.get(key) or {}).items():
            plan = JointPlan.of(name, kind, block, hierarchy)
            try:
                why = problem(select(tables[kind], plan), plan)
            except ValueError as err:   # MetaError: a row the model cannot place
                why = str(err)
            if why:
                report((key, name, "filters"), why, show_value=False)


def load_config(path: str | Path, comparisons: pd.DataFrame | None = None) -> dict:
    """The config with defaults filled in, or ``ValidationError`` with every problem.

    Parameters
    ----------
    path : path
        ``config/config.yaml``.
    comparisons : DataFrame, optional
        The normalised comparisons: if given, an analysis whose filters match
        no row is an error.

    Returns
    -------
    dict
        Keys ``raw_data``, ``defaults``, ``rules``, ``sensitivity``,
        ``analyses``; see ``resolve``.
    """
    cfg, problems = check_config(path, comparisons)
    if problems:
        raise ValidationError(problems)
    return cfg


def _rules_if_valid(path: str | Path) -> dict | None:
    """The config's resolved pooling rules, or None if they cannot be read (reported elsewhere)."""
    try:
        _, data = _parsed(path)
        return resolve_rules(data.get("rules") if isinstance(data, dict) else None)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError):
        return None


def check_inputs(raw_paths: Iterable[str | Path], config_path: str | Path,
                 raw_where: str = "data/raw", root: str | Path = "."
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Raw tables and config checked together; every problem of both raised at once.

    ``raw_where`` names where the raw tables were looked for (the config's
    ``raw_data`` glob) when none was found.

    Returns
    -------
    raw : DataFrame
        The validated raw rows.
    comparisons : DataFrame
        ``normalise(raw, config["rules"])`` with each row's risk of bias
        (``rob.with_rob``: the config's ``risk_of_bias`` table, relative to
        ``root``, floored by the row's design facts).
    config : dict
        The resolved config.

    Raises
    ------
    ValidationError
        Raw-table problems first (by file and line), then config problems.
        Whether each analysis selects a row is checked whenever the raw
        tables and the rules are valid, even if other keys have problems.
    """
    raw_paths = list(raw_paths)
    if not raw_paths:
        raw, raw_problems = None, [Problem(raw_where, None, None, None,
                                           "no CSV files found; add the trial tables")]
    else:
        raw, raw_problems = check_raw(raw_paths)
    rules = _rules_if_valid(config_path)
    comparisons = normalise(raw, rules) if not raw_problems and rules is not None else None
    cfg, cfg_problems = check_config(config_path, comparisons,
                                     raw if comparisons is not None else None)
    rob_problems = []
    if cfg is not None and raw is not None and not raw_problems:
        from .rob import COLUMNS as ROB_TABLE_COLUMNS, check_rob, with_rob
        rob_path = Path(root) / cfg["risk_of_bias"]
        default = load_schema("config")["properties"]["risk_of_bias"]["default"]
        if rob_path.is_file():
            rob, rob_problems = check_rob(rob_path, known_studies=raw["study_id"])
        elif cfg["risk_of_bias"] == default:  # no table yet: every domain not assessed
            rob = pd.DataFrame(columns=[*ROB_TABLE_COLUMNS, "source_file", "source_line"])
        else:
            rob_problems = [Problem(cfg["risk_of_bias"], None, None, None,
                                    "the risk-of-bias table (config key risk_of_bias) is missing; "
                                    "restore it or give its path (data/rob/README.md)")]
        if not rob_problems and comparisons is not None:
            comparisons = with_rob(comparisons, rob)
    if raw_problems or cfg_problems or rob_problems:
        raise ValidationError(raw_problems + cfg_problems + rob_problems)
    return raw, comparisons, cfg
