"""The screening log (``data/screening/``) and its PRISMA 2020 flow diagram.

Three parts:

1. **The log**: ``records.csv`` (one row per source searched or list
   consulted, with the records it gave; schema
   ``schemas/screening_records.schema.yaml``) and ``studies.csv`` (one row
   per record that passed deduplication, with the furthest stage of the flow
   it reached and the reason it was excluded; schema
   ``schemas/screening_studies.schema.yaml``). :func:`check_screening` reads
   both with :func:`ntxmeta.validate.read_rows` and reports every problem as
   a :class:`~ntxmeta.validate.Problem` (``file:line: column 'x' = 'v':
   rule``), so that the preflight reports them with the raw-table problems.
2. **Consistency with data/raw**: the studies the log includes must be
   exactly the trials (``study_id``) of ``data/raw/*.csv``. A trial included
   in one and not in the other is a problem that names the trial and both
   files (ids compared by :func:`ntxmeta.validate.identity`).
3. **The diagram**: :func:`counts_of` derives every box of the PRISMA 2020
   flow [1]_ from the log (nothing is typed twice), into the frozen
   :class:`PrismaCounts`; :func:`prisma_figure` draws the flow;
   :func:`write_prisma` saves PNG, SVG (byte-for-byte repeatable) and PDF.

A count nobody recorded (the hits of a search that were never counted) is
``None`` and the diagram says "not recorded"; a total over sources with one
such count is also not recorded. The diagram is the one-column template of
PRISMA 2020 (identification, screening, included) with every source listed,
with its kind, in the identification box: the log's stages (screened,
sought, assessed, included) are those of that column; the template's second
column ("other methods") starts at "reports sought" and has no screening
stage, which this log records for every source.

Counts (``S`` = rows of studies.csv, by ``stage``):

- records identified, per source: ``records_identified`` of records.csv;
- records removed before screening: sum of ``duplicates_removed``;
- records screened = ``len(S)``; records excluded = stage ``screened``;
- reports sought = stages sought, assessed, included; not retrieved = sought;
- reports assessed = stages assessed, included; excluded = assessed, counted
  per ``exclusion_reason``;
- studies included = distinct ``study_id`` (by identity) at stage included;
  reports of included studies = rows at stage included.

Where a source's records and duplicates are both recorded, its rows in
studies.csv must number ``records_identified - duplicates_removed`` (every
record kept is logged); a mismatch is a problem of records.csv.

Why written here: no Python package draws PRISMA 2020 diagrams from a table
(R has PRISMA2020 [2]_, a Shiny app over DiagrammeR); the boxes are a dozen
rectangles and arrows in matplotlib, with the figure style of
:mod:`ntxmeta.style`.

References
----------
.. [1] Page MJ, McKenzie JE, Bossuyt PM, et al. The PRISMA 2020 statement:
   an updated guideline for reporting systematic reviews. BMJ
   2021;372:n71 (Figure 1, the flow diagram for new systematic reviews).
.. [2] Haddaway NR, Page MJ, Pritchard CC, McGuinness LA. PRISMA2020: an R
   package and Shiny app for producing PRISMA 2020-compliant flow diagrams.
   Campbell Syst Rev 2022;18:e1230.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import jsonschema
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from .validate import (Problem, ValidationError, did_you_mean, identity, load_schema, one_of,
                       parse_number, read_rows, text_problem)

__all__ = ["SCREENING_DIR", "RECORDS_FILE", "STUDIES_FILE", "STAGES", "REASONS", "SourceCount",
           "PrismaCounts", "ScreeningLog", "check_screening", "validate_screening", "counts_of",
           "read_counts", "prisma_figure", "write_prisma", "screening_files", "NOT_RECORDED"]

#: The folder of the screening log, relative to the project folder.
SCREENING_DIR = "data/screening"
RECORDS_FILE = "records.csv"
STUDIES_FILE = "studies.csv"
RECORDS_SCHEMA = load_schema("screening_records")
STUDIES_SCHEMA = load_schema("screening_studies")
#: Stages of studies.csv in flow order, and whether each needs an exclusion reason.
STAGES: dict[str, str] = {s: v["reason"] for s, v in STUDIES_SCHEMA["x-stages"].items()}
#: Exclusion reasons and the words the diagram shows for them.
REASONS: dict[str, str] = dict(STUDIES_SCHEMA["x-reasons"])
#: What the diagram writes for a count nobody recorded.
NOT_RECORDED = "not recorded"
#: Words of each records.csv method in the identification box.
METHOD_WORDS = {"database": "database", "register": "register", "website": "website search",
                "organisation": "organisation", "citation_search": "citation search",
                "curated_list": "curated list"}


def screening_files(root: str | Path = ".") -> list[Path]:
    """records.csv and studies.csv of ``root/data/screening``, or [] if the folder does not exist.

    A project without a screening log has no PRISMA diagram; one with the
    folder needs both files (a missing one is a problem of the check).
    """
    folder = Path(root) / SCREENING_DIR
    return [folder / RECORDS_FILE, folder / STUDIES_FILE] if folder.is_dir() else []


# --------------------------------------------------------------------------- the log

@dataclass(frozen=True)
class ScreeningLog:
    """The validated log: records.csv and studies.csv as text tables ("" where empty)."""

    records: pd.DataFrame
    studies: pd.DataFrame


def _typed_rows(path: Path, name: str, schema: dict, problems: list[Problem]
                ) -> tuple[list[tuple[int, dict]], bool, bool]:
    """Rows of one log table, typed (empty cells left out), with their problems appended.

    Returns the rows (an invalid cell left out of its row, as if empty),
    whether every row could be read, and whether every cell is valid too.
    """
    columns = list(schema["properties"])
    if not path.is_file():
        problems.append(Problem(name, None, None, None,
                                "missing: the screening log needs records.csv and studies.csv "
                                "(see data/screening/README.md)"))
        return [], False, False
    rows, complete = read_rows(path, columns, problems, name)
    validator = jsonschema.Draft202012Validator(schema)
    integers = set(schema.get("x-integers", ()))
    prose, ids = set(schema.get("x-prose", ())), set(schema.get("x-identifiers", ()))
    out = []
    for row in rows:
        bad: set[str] = set()

        def report(col: str, msg: str, value: str | None = None) -> None:
            bad.add(col)
            problems.append(Problem(name, row.line, col,
                                    row.cells.get(col, "") if value is None else value, msg))

        typed: dict = {}
        for col in columns:
            text = row.cells.get(col, "")
            why = (text_problem(text, identifier=col in ids, prose=col in prose)
                   if text.strip(" ") else None)
            if why:
                report(col, why)
            elif col in integers:
                value, why = parse_number(text, integer=True)
                if why:
                    report(col, why)
                elif value is not None:
                    typed[col] = int(value)
            elif text.strip():
                typed[col] = unicodedata.normalize("NFC", text)
        for col in schema["required"]:
            if col not in typed and col not in bad:
                enum = schema["properties"][col].get("enum")
                report(col, "required" + (f"; use one of {one_of(enum)}" if enum else "; fill it in"))
        for err in validator.iter_errors(typed):
            col = err.path[0] if err.path else None
            if col is None or col in bad:
                continue
            prop, limit = schema["properties"][col], err.validator_value
            if err.validator == "enum":
                msg = f"unknown code{did_you_mean(err.instance, limit)}; use one of {one_of(limit)}"
            elif err.validator == "pattern":
                msg = f"not allowed here: {prop.get('x-hint', 'must match ' + limit)}"
            elif err.validator == "maxLength":
                msg = f"longer than {limit} characters; shorten it"
            elif err.validator == "minimum":
                msg = "must not be negative"
            else:
                msg = err.message
            report(col, msg)
        out.append((row.line, typed, bad))
    clean = complete and not any(b for *_, b in out)
    valid = [(line, {c: v for c, v in typed.items() if c not in bad}) for line, typed, bad in out]
    return valid, complete, clean


def _unique(rows, col: str, name: str, problems: list[Problem]) -> dict[str, int]:
    """First line of each value of ``col`` (by identity); a repeat is a problem."""
    first: dict[str, int] = {}
    for line, t in rows:
        v = t.get(col)
        if v is None:
            continue
        if identity(v) in first:
            problems.append(Problem(name, line, col, v, f"already used at {name}:{first[identity(v)]}; "
                                    "give each row its own id"))
        else:
            first[identity(v)] = line
    return first


def _frame(rows, schema: dict, name: str) -> pd.DataFrame:
    columns = list(schema["properties"])
    frame = pd.DataFrame([{c: t.get(c) for c in columns} for _, t in rows], columns=columns)
    for col in columns:
        if col in schema.get("x-integers", ()):
            frame[col] = pd.array(frame[col], dtype="Int64")
        else:
            frame[col] = frame[col].fillna("").astype(str)
    frame["source_file"] = name
    frame["source_line"] = pd.array([line for line, _ in rows], dtype="Int64")
    return frame


def check_screening(paths: Iterable[str | Path] | None = None, *,
                    raw_studies: pd.DataFrame | None = None, root: str | Path = "."
                    ) -> tuple[ScreeningLog | None, list[Problem]]:
    """Read and check the screening log; return it and every problem.

    Parameters
    ----------
    paths : (records.csv, studies.csv), optional
        Default :func:`screening_files` of ``root``; each path is reported as
        given. An empty list (no data/screening folder) returns (None, []).
    raw_studies : DataFrame, optional
        The validated raw rows (``study_id``, ``source_file``,
        ``source_line``). When given, the included studies must be exactly
        its trials: an included study_id that no raw table has is a problem
        of studies.csv naming data/raw; a raw trial that the log does not
        include is a problem at the trial's first raw row naming
        studies.csv. Not checked when None (the raw tables had problems).

    Returns
    -------
    log : ScreeningLog or None
        Meaningful only when there are no problems.
    problems : list of Problem
        records.csv first, then studies.csv, then the raw tables, each by
        line.
    """
    paths = [Path(p) for p in (screening_files(root) if paths is None else paths)]
    if not paths:
        return None, []
    records_path, studies_path = paths
    rec_name, stu_name = str(records_path), str(studies_path)
    problems: list[Problem] = []
    records, rec_read, rec_ok = _typed_rows(records_path, rec_name, RECORDS_SCHEMA, problems)
    studies, stu_read, stu_ok = _typed_rows(studies_path, stu_name, STUDIES_SCHEMA, problems)
    # source ids can be checked when every row of records.csv was read and has its id
    ids_known = rec_read and all("source_id" in t for _, t in records)
    sources = _unique(records, "source_id", rec_name, problems)
    _unique(studies, "record_id", stu_name, problems)
    for line, t in records:
        got, dup = t.get("records_identified"), t.get("duplicates_removed")
        if dup is not None and got is None:
            problems.append(Problem(rec_name, line, "duplicates_removed", str(dup),
                                    "needs records_identified: duplicates are removed from the "
                                    "records a source gave; record both, or clear it"))
        elif dup is not None and dup > got:
            problems.append(Problem(rec_name, line, "duplicates_removed", str(dup),
                                    f"more than records_identified = {got}; check both counts"))
    per_source: Counter = Counter()
    for line, t in studies:
        sid, stage, reason = t.get("source_id"), t.get("stage"), t.get("exclusion_reason")
        if sid is not None and ids_known and identity(sid) not in sources:
            known = [t2["source_id"] for _, t2 in records if "source_id" in t2]
            problems.append(Problem(stu_name, line, "source_id", sid,
                                    f"no row of {rec_name} has this source_id"
                                    f"{did_you_mean(sid, known)}; use one of {one_of(known)}"))
        elif sid is not None:
            per_source[identity(sid)] += 1
        rule = STAGES.get(stage)
        if rule == "required" and reason is None:
            problems.append(Problem(stu_name, line, "exclusion_reason", "",
                                    f"required: stage '{stage}' is an exclusion; give its reason "
                                    f"({one_of(REASONS)})"))
        elif rule == "forbidden" and reason is not None:
            problems.append(Problem(stu_name, line, "exclusion_reason", reason,
                                    f"stage '{stage}' takes no exclusion reason; clear it (or "
                                    "correct the stage)"))
    if rec_ok and stu_ok:
        for line, t in records:
            got, dup = t.get("records_identified"), t.get("duplicates_removed")
            if got is None or dup is None or dup > got:
                continue
            logged = per_source[identity(t["source_id"])]
            if logged != got - dup:
                problems.append(Problem(rec_name, line, "records_identified", str(got),
                                        f"{got} records less {dup} duplicates leave {got - dup}, but "
                                        f"{stu_name} has {logged} row(s) of source "
                                        f"'{t['source_id']}'; every record kept is a row there"))
    # the included studies can be compared with data/raw's trials when every row of
    # studies.csv was read and has a valid study_id (a row whose stage is invalid
    # may or may not include its study: that study is left out of the comparison)
    if raw_studies is not None and stu_read and all("study_id" in t for _, t in studies):
        problems += _consistency(studies, stu_name, raw_studies)
    if problems:
        return None, problems
    return ScreeningLog(_frame(records, RECORDS_SCHEMA, rec_name),
                        _frame(studies, STUDIES_SCHEMA, stu_name)), problems


def _consistency(studies, stu_name: str, raw: pd.DataFrame) -> list[Problem]:
    """The included studies against the trials of the raw tables, both ways."""
    out: list[Problem] = []
    first_raw: dict[str, tuple[str, int, str]] = {}
    for sid, file, line in zip(raw["study_id"], raw["source_file"], raw["source_line"]):
        first_raw.setdefault(identity(sid), (str(file), int(line), sid))
    raw_files = one_of(sorted({f for f, _, _ in first_raw.values()}))
    unsure = {identity(t["study_id"]) for _, t in studies if "stage" not in t}
    included: dict[str, int] = {}
    for line, t in studies:
        if t.get("stage") == "included" and "study_id" in t:
            included.setdefault(identity(t["study_id"]), line)
            if identity(t["study_id"]) not in first_raw:
                names = [s for _, _, s in first_raw.values()]
                out.append(Problem(stu_name, line, "study_id", t["study_id"],
                                   f"included in the screening log, but no trial of {raw_files} "
                                   f"has this study_id{did_you_mean(t['study_id'], names)}; add "
                                   "the trial's rows there, or correct the stage or id"))
    for key, (file, line, sid) in first_raw.items():
        if key not in included and key not in unsure:
            out.append(Problem(file, line, "study_id", sid,
                               f"a trial of the raw tables that {stu_name} does not include; add "
                               "its record there with stage included (or remove the trial's rows)"))
    return out


def validate_screening(paths=None, *, raw_studies: pd.DataFrame | None = None,
                       root: str | Path = ".") -> ScreeningLog | None:
    """The validated log, or :class:`ValidationError` with every problem (see :func:`check_screening`)."""
    log, problems = check_screening(paths, raw_studies=raw_studies, root=root)
    if problems:
        raise ValidationError(problems)
    return log


# --------------------------------------------------------------------------- counts

@dataclass(frozen=True)
class SourceCount:
    """Records one source gave (``records`` None: not recorded)."""

    source: str
    method: str
    records: int | None
    duplicates_removed: int | None


@dataclass(frozen=True)
class PrismaCounts:
    """Every number of the PRISMA 2020 flow diagram, derived from the screening log.

    Attributes
    ----------
    sources : tuple of SourceCount
        Identification, per source in records.csv order.
    records_screened, records_excluded : int
    screening_reasons : tuple of (str, int)
        Records excluded at screening per reason (words of :data:`REASONS`).
    reports_sought, reports_not_retrieved, reports_assessed : int
    reports_excluded : tuple of (str, int)
        Reports excluded after assessment, per reason, most frequent first.
    studies_included, reports_included : int
    """

    sources: tuple[SourceCount, ...]
    records_screened: int
    records_excluded: int
    screening_reasons: tuple[tuple[str, int], ...]
    reports_sought: int
    reports_not_retrieved: int
    reports_assessed: int
    reports_excluded: tuple[tuple[str, int], ...]
    studies_included: int
    reports_included: int

    @property
    def records_identified(self) -> int | None:
        """Sum over sources; None if any source's count was not recorded."""
        counts = [s.records for s in self.sources]
        return None if any(c is None for c in counts) else sum(counts)

    @property
    def duplicates_removed(self) -> int | None:
        """Sum over sources; None if any source's count was not recorded."""
        counts = [s.duplicates_removed for s in self.sources]
        return None if any(c is None for c in counts) else sum(counts)

    @property
    def reports_excluded_total(self) -> int:
        return sum(n for _, n in self.reports_excluded)


def _by_reason(rows: pd.DataFrame) -> tuple[tuple[str, int], ...]:
    counts = Counter(rows["exclusion_reason"])
    order = list(REASONS)
    return tuple((REASONS[r], n) for r, n in sorted(counts.items(),
                                                     key=lambda kv: (-kv[1], order.index(kv[0]))))


def counts_of(log: ScreeningLog) -> PrismaCounts:
    """The boxes of the flow from a validated log (see the module docstring for each count)."""
    rec, stu = log.records, log.studies

    def opt(v) -> int | None:
        return None if pd.isna(v) else int(v)

    sources = tuple(SourceCount(r.source, r.method, opt(r.records_identified),
                                opt(r.duplicates_removed)) for r in rec.itertuples())
    stage = stu["stage"]
    included = stu.loc[stage.eq("included")]
    return PrismaCounts(
        sources=sources,
        records_screened=len(stu),
        records_excluded=int(stage.eq("screened").sum()),
        screening_reasons=_by_reason(stu.loc[stage.eq("screened")]),
        reports_sought=int(stage.isin(["sought", "assessed", "included"]).sum()),
        reports_not_retrieved=int(stage.eq("sought").sum()),
        reports_assessed=int(stage.isin(["assessed", "included"]).sum()),
        reports_excluded=_by_reason(stu.loc[stage.eq("assessed")]),
        studies_included=len({identity(s) for s in included["study_id"]}),
        reports_included=len(included),
    )


def read_counts(records_csv: str | Path, studies_csv: str | Path) -> PrismaCounts:
    """Counts of the log at these paths (validated; the raw-table check is the preflight's)."""
    return counts_of(validate_screening([records_csv, studies_csv]))


# --------------------------------------------------------------------------- figure

#: Layout in inches. The widths hold the longest source name of the log at
#: the figure font (8 pt); boxes grow downwards with their text.
PHASE_W_IN = 0.32      # the phase band at the left (Identification, ...)
MAIN_W_IN = 3.0        # the flow's column
SIDE_W_IN = 2.9        # the excluded/removed column
GAP_X_IN = 0.35        # between band, columns
GAP_Y_IN = 0.30        # between rows (room for an arrow)
PAD_IN = 0.07          # text inside a box
MARGIN_IN = 0.08       # figure edge
LINE_SPACING = 1.25    # matplotlib's default linespacing is 1.2; 1.25 keeps accents clear


def _n(value: int | None) -> str:
    return f"(n = {NOT_RECORDED})" if value is None else f"(n = {value:,})"


#: A count stays on one line with its words: "(n = 30)" is never split.
_TOKENS = re.compile(r"\(n = [^)]*\)|\S+")
#: Indent of a listed item (a source, a reason) and of its wrapped lines.
ITEM_INDENT, WRAP_INDENT = "  ", "      "


def _wrap(line: str, max_in: float, prop) -> list[str]:
    """Greedy word wrap of one line to ``max_in`` inches at the font ``prop`` (measured).

    A line that starts with :data:`ITEM_INDENT` is a listed item: its
    wrapped lines are indented further (:data:`WRAP_INDENT`).
    """
    from .style import text_width_in
    item = line.startswith(ITEM_INDENT)
    out, cur = [], ITEM_INDENT if item else ""
    for w in _TOKENS.findall(line):
        trial = f"{cur} {w}" if cur.strip() else cur + w
        if cur.strip() and text_width_in(trial, prop) > max_in:
            out.append(cur)
            cur = (WRAP_INDENT if item else "") + w
        else:
            cur = trial
    out.append(cur)
    return out


def box_texts(counts: PrismaCounts) -> dict[str, list[str]]:
    """The lines of every box of the diagram, keyed by box (before wrapping)."""
    ident = ["Records identified from:"]
    ident += [f"  {s.source} ({METHOD_WORDS[s.method]}) {_n(s.records)}" for s in counts.sources]
    if len(counts.sources) > 1:
        ident.append(f"Total {_n(counts.records_identified)}")
    excluded = [f"Records excluded {_n(counts.records_excluded)}"]
    excluded += [f"  {r} (n = {n:,})" for r, n in counts.screening_reasons]
    reports_ex = [f"Reports excluded {_n(counts.reports_excluded_total)}"]
    reports_ex += [f"  {r} (n = {n:,})" for r, n in counts.reports_excluded]
    return {
        "identified": ident,
        "removed": ["Records removed before screening:",
                    f"  Duplicate records removed {_n(counts.duplicates_removed)}"],
        "screened": [f"Records screened {_n(counts.records_screened)}"],
        "excluded": excluded,
        "sought": [f"Reports sought for retrieval {_n(counts.reports_sought)}"],
        "not_retrieved": [f"Reports not retrieved {_n(counts.reports_not_retrieved)}"],
        "assessed": [f"Reports assessed for eligibility {_n(counts.reports_assessed)}"],
        "reports_excluded": reports_ex,
        "included": [f"Studies included in review {_n(counts.studies_included)}",
                     f"Reports of included studies {_n(counts.reports_included)}"],
    }


#: The rows of the flow: (main box, side box or None), and the phase of each row.
ROWS = (("identified", "removed"), ("screened", "excluded"), ("sought", "not_retrieved"),
        ("assessed", "reports_excluded"), ("included", None))
PHASES = (("Identification", (0, 0)), ("Screening", (1, 3)), ("Included", (4, 4)))


def prisma_figure(counts: PrismaCounts) -> Figure:
    """The PRISMA 2020 flow diagram of ``counts``: boxes, arrows, phase bands.

    Layout of the template [1]_ (one column of databases/registers, here
    every source): the flow runs down the main column (identified,
    screened, sought, assessed, included), each stage's losses to the right
    (removed before screening, excluded, not retrieved, excluded with
    reasons), the phases (Identification, Screening, Included) as bands at
    the left. Box heights follow their wrapped text; the figure's height
    follows the boxes. Every box is a :class:`~matplotlib.patches.Rectangle`
    whose ``gid`` is ``prisma:{box}`` (phase bands ``prisma-phase:{name}``)
    and whose text is a Text artist with the same gid, so tests and editors
    can find each box.
    """
    from .style import FAINT, INK, LINE_WIDTH, font, styled, text_width_in
    prop = font()
    line_h = prop.get_size_in_points() * LINE_SPACING / 72.0
    texts = box_texts(counts)
    x_phase = MARGIN_IN
    x_main = x_phase + PHASE_W_IN + GAP_X_IN / 2
    x_side = x_main + MAIN_W_IN + GAP_X_IN
    width = x_side + SIDE_W_IN + MARGIN_IN
    wrapped = {}
    for key, lines in texts.items():
        w = (MAIN_W_IN if key in {m for m, _ in ROWS} else SIDE_W_IN) - 2 * PAD_IN
        wrapped[key] = [piece for ln in lines for piece in _wrap(ln, w, prop)]
    heights = {k: len(v) * line_h + 2 * PAD_IN for k, v in wrapped.items()}
    row_h = [max(heights[m], heights[s] if s else 0.0) for m, s in ROWS]
    bold = font(weight="bold")
    for name, (first, last) in PHASES:  # a band is at least as tall as its rotated name
        need = text_width_in(name, bold) + 2 * PAD_IN
        have = sum(row_h[first:last + 1]) + GAP_Y_IN * (last - first)
        row_h[last] += max(0.0, need - have)
    height = 2 * MARGIN_IN + sum(row_h) + GAP_Y_IN * (len(ROWS) - 1)
    tops, y = [], height - MARGIN_IN
    for h in row_h:
        tops.append(y)
        y -= h + GAP_Y_IN
    with styled():
        fig = Figure(figsize=(width, height))
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(0, height)
        ax.set_axis_off()
        boxes: dict[str, tuple[float, float, float, float]] = {}

        def draw_box(key: str, x: float, top: float, w: float, h: float) -> None:
            ax.add_patch(Rectangle((x, top - h), w, h, facecolor="white", edgecolor=INK,
                                   linewidth=LINE_WIDTH, gid=f"prisma:{key}"))
            ax.text(x + PAD_IN, top - PAD_IN, "\n".join(wrapped[key]), ha="left", va="top",
                    fontproperties=prop, linespacing=LINE_SPACING, gid=f"prisma:{key}")
            boxes[key] = (x, top - h, w, h)

        for (main, side), top, h in zip(ROWS, tops, row_h):
            draw_box(main, x_main, top, MAIN_W_IN, heights[main])
            if side:
                draw_box(side, x_side, top, SIDE_W_IN, heights[side])
        for name, (first, last) in PHASES:
            top, bottom = tops[first], tops[last] - row_h[last]
            ax.add_patch(Rectangle((x_phase, bottom), PHASE_W_IN, top - bottom, facecolor=FAINT,
                                   edgecolor=INK, linewidth=LINE_WIDTH, gid=f"prisma-phase:{name}"))
            ax.text(x_phase + PHASE_W_IN / 2, (top + bottom) / 2, name, rotation=90, ha="center",
                    va="center", fontproperties=bold, gid=f"prisma-phase:{name}")

        def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=8,
                                         linewidth=LINE_WIDTH, color=INK, shrinkA=0, shrinkB=0,
                                         gid="prisma-arrow"))

        mid_x = x_main + MAIN_W_IN / 2
        for (main, side), (nxt, _) in zip(ROWS, ROWS[1:]):
            x, y0, _, _ = boxes[main]
            arrow((mid_x, y0), (mid_x, boxes[nxt][1] + boxes[nxt][3]))
        for main, side in ROWS:
            if side:
                x, y0, w, h = boxes[main]
                sx, sy, _, sh = boxes[side]
                y_mid = y0 + h / 2 if h <= sh else sy + sh / 2
                y_mid = min(y_mid, y0 + h - PAD_IN, sy + sh - PAD_IN)
                arrow((x + w, y_mid), (sx, y_mid))
    return fig


def write_prisma(records_csv: str | Path, studies_csv: str | Path, png_path: str | Path) -> list[Path]:
    """The log -> ``prisma.png`` (300 dpi), ``prisma.svg`` and ``prisma.pdf`` beside it.

    SVG and PDF carry no date (style.save_figure; PDF ``CreationDate``
    removed), so a re-run on the same log changes no byte. Written
    atomically.
    """
    from .io import atomic_path
    from .style import save_figure, styled
    fig = prisma_figure(read_counts(records_csv, studies_csv))
    stem = Path(png_path).with_suffix("")
    png, svg = save_figure(fig, stem, crop=False)
    pdf = stem.with_name(stem.name + ".pdf")
    with styled(), atomic_path(pdf) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="pdf", metadata={"CreationDate": None, "Creator": None,
                                                    "Producer": None})
    return [png, svg, pdf]
