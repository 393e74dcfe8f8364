"""Validation of the raw trial tables (``data/raw/*.csv``) at the door.

Every problem in every file is found in one pass and reported at once, one
line each, in the form ::

    data/raw/alcohol.csv:12: column 'events_treat' = '12 (34%)': not a number; ...

``file:line`` is the physical line in the file (the header is line 1; a row
whose quoted text spans several lines is reported at its first line). The
rules come from ``schemas/raw_trials.schema.yaml`` (types, codes, ranges,
and what each ``measure_type`` needs); the checks that span cells or rows
(events <= n, a CI around its estimate, duplicate ids, clusters) are here.

Decisions about the file format (documented in ``data/raw/README.md``):

- UTF-8, with or without a byte-order mark. Any other encoding (Latin-1,
  Windows-1252, UTF-16) is refused with the line of the first bad byte:
  guessing an encoding could silently corrupt names and quotes.
- Comma-separated, double-quoted where a text holds a comma, a quote or a
  line break; inner quotes doubled. CRLF or LF line endings.
- Blank lines (and rows whose cells are all empty) are skipped; line
  numbers still count them.
- A header problem (missing, unknown or repeated column) stops the checks
  of that file's rows, whose messages would otherwise all be noise; a row
  that cannot be read (wrong number of cells, a broken quote) stops the
  checks between rows (duplicates, clusters), which would be judged on part
  of the data.

Why written here: pandas' ``read_csv`` reports neither physical line
numbers for multi-line rows nor the reasons a number does not parse, and
jsonschema's messages name no file or line; this module adds exactly that.
"""
from __future__ import annotations

import csv
import datetime
import difflib
import functools
import io
import math
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, TextIO

import jsonschema
import pandas as pd
import yaml

#: Columns added to the validated table: where each row came from.
SOURCE_COLUMNS = ("source_file", "source_line")
#: Words people write for a missing number; the cell should be empty instead.
MISSING_WORDS = {"n/a", "na", "nan", "none", "null", "-", "--", "?", "missing", "nr",
                 "not reported", "unknown"}
#: Similarity cut-off for "did you mean" (difflib ratio; 0.6 is its default).
SIMILARITY = 0.6
#: Largest size of a number in a raw table. No trial reports a count, mean or
#: ratio beyond it; a count above it would not fit pandas' Int64 after the
#: float parse, and a mean or SD beyond it overflows its square in the effect
#: size (SMD, its variance), so such a row would later drop out or crash.
MAX_MAGNITUDE = 1e9
#: Smallest size of a number other than 0: its square (a variance) stays a
#: normal float, never a subnormal one or 0 (1e-320 squared is 0).
MIN_MAGNITUDE = 1e-9
#: A number as the raw tables write it: ASCII digits, an optional sign and a
#: decimal point; no exponent, digit separator or other script's digits.
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
#: Columns that identify a row, a trial or a cluster: compared between rows,
#: so they take no spaces at either end and no line break or tab.
IDENTIFIER_COLUMNS = ("row_id", "study_id", "cluster_id")
#: Columns of prose copied from the source: line breaks and tabs are allowed.
PROSE_COLUMNS = ("author", "population", "comparator", "formulation_detail", "dose_detail",
                 "source_url_or_ref", "quote", "derived")
#: Problems shown per file and column (or config key) before the rest are
#: counted; ``ntxmeta validate --all`` prints them all.
SHOWN_PER_RULE = 20
#: Longest value shown in a message (the rest is cut; the length is said).
SHOWN_CHARS = 120


@dataclass(frozen=True)
class Problem:
    """One problem in one place of an input file.

    Attributes
    ----------
    file : str
        The path as given to the validator.
    line : int or None
        Physical line (1 = header or first line); None for the whole file.
    column : str or None
        Column (raw tables) or dotted key (config) at fault, if any.
    value : str or None
        The cell or value as written, if any.
    message : str
        What is wrong and how to fix it.
    kind : str
        "column" for tables, "key" for the config (wording of the line).
    """

    file: str
    line: int | None
    column: str | None
    value: str | None
    message: str
    kind: str = "column"

    def __str__(self) -> str:
        """One line; characters a reader cannot see are escaped, a long value is cut."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.column is None:
            line = f"{where}: {self.message}"
        elif self.value is None:
            line = f"{where}: {self.kind} '{self.column}': {self.message}"
        else:
            line = f"{where}: {self.kind} '{self.column}' = '{shown(self.value)}': {self.message}"
        return escaped(line)


def count_line(n: int) -> str:
    """The last line of a report: how many problems, and that nothing ran."""
    return f"ntxmeta: {n} problem(s) found; nothing was run."


class ValidationError(ValueError):
    """Raised with every problem found; ``str(err)`` is one line per problem."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__()

    def report(self, limit: int | None = SHOWN_PER_RULE) -> str:
        """The problems, one line each: the first ``limit`` of each file and column.

        A million bad rows would print a hundred megabytes; beyond ``limit``
        problems of one column (or config key) of one file, one line counts
        the rest and says how to see them all (``ntxmeta validate --all``,
        which passes ``limit=None``).
        """
        seen: dict[tuple, int] = {}
        lines = []
        for p in self.problems:
            rule = (p.file, p.column)
            seen[rule] = seen.get(rule, 0) + 1
            if limit is None or seen[rule] <= limit:
                lines.append(str(p))
        for (file, column), n in seen.items():
            if limit is not None and n > limit:
                where = f"column '{column}'" if column is not None else "the file"
                lines.append(escaped(f"{file}: {n - limit} more problem(s) of {where} not shown; "
                                     "run 'ntxmeta validate --all' to list every one"))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A schema shipped with the package: ``schemas/{name}.schema.yaml``.

    Parameters
    ----------
    name : {"raw_trials", "config", "comparisons"}
    """
    text = (resources.files("ntxmeta") / "schemas" / f"{name}.schema.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string.

    A choice that differs only in case wins; otherwise difflib's closest match.
    """
    choices = [str(c) for c in choices]
    same = [c for c in choices if c.lower() == str(value).lower()]
    close = same or difflib.get_close_matches(str(value), choices, n=1, cutoff=SIMILARITY)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(str(c) for c in choices)


# --------------------------------------------------------------------------- text

#: Characters that show as blank or nothing but are not a category C or Z
#: code point: Hangul fillers, the Mongolian vowel separator, the combining
#: grapheme joiner.
_FILLERS = frozenset("\u034f\u115f\u1160\u180e\u3164\uffa0")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _hidden(ch: str) -> bool:
    """A character a reader cannot see: control, format (zero-width), unassigned, odd space."""
    cat = unicodedata.category(ch)
    return cat[0] == "C" or cat in ("Zl", "Zp") or (cat == "Zs" and ch != " ") or ch in _FILLERS


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000
                                                 else f"\\U{code:08x}")


def escaped(text: str) -> str:
    """``text`` with every character a reader cannot see escaped (``\\x00``, ``\\u200b``)."""
    return "".join(_escape_char(ch) if _hidden(ch) else ch for ch in text)


def shown(text: str) -> str:
    """A value as quoted in a message: escaped, and cut after ``SHOWN_CHARS`` characters."""
    if len(text) > SHOWN_CHARS:
        return f"{escaped(text[:SHOWN_CHARS])}... ({len(text)} characters)"
    return escaped(text)


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def first_hidden(text: str, *, identifier: bool = False, prose: bool = False
                 ) -> tuple[int, str, str] | None:
    """(position from 1, character, what it is) of the first character refused in ``text``.

    Refused everywhere: control characters (NUL, form feed, vertical tab, ESC,
    DEL, C1; an SVG or XML file cannot hold them) and characters that cannot
    be seen (zero-width spaces and joiners, bidirectional controls, the BOM,
    unassigned code points). ``prose`` texts may hold line breaks and tabs;
    others may not. ``identifier`` texts also take no space other than U+0020.
    """
    for i, ch in enumerate(text, 1):
        if prose and ch in "\t\n\r":
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat in ("Zl", "Zp"):
            what = "line break" if ch in "\n\r" or cat in ("Zl", "Zp") else "control character"
            return i, ch, what
        if _hidden(ch) and (identifier or cat != "Zs"):
            return i, ch, "invisible character"
    return None


def text_problem(text: str, *, identifier: bool = False, prose: bool = False) -> str | None:
    """Why a text cannot be taken as written (see ``first_hidden``), or None.

    ``identifier`` texts (compared between rows) also take no space at either end.
    """
    found = first_hidden(text, identifier=identifier, prose=prose)
    if found:
        i, ch, what = found
        why = ("figures, tables and reports cannot hold it" if what != "invisible character"
               else "it makes two equal-looking texts differ")
        return f"{what} {_char_name(ch)} at character {i}; delete it ({why})"
    if identifier and text != text.strip():
        return "space at the start or end; delete it (an id is written the same way in every row)"
    return None


def identity(text: str) -> str:
    """The form in which two identifiers are compared: NFKC, case-folded, without spaces.

    ``Latt2002``, ``latt2002``, ``Latt 2002`` and a full-width ``Ｌａｔｔ2002``
    are one trial; two rows of it must differ in another way.
    """
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class _Row:
    line: int
    cells: dict


#: Byte-order marks of the encodings that are refused by name (UTF-32 first:
#: its little-endian mark begins with UTF-16's).
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
#: Bytes looked at to recognise UTF-16/32 without a BOM by its NUL bytes.
_SNIFF_BYTES = 4096


def _wide_encoding(data: bytes) -> str | None:
    """'UTF-16' or 'UTF-32' (with how it was recognised) if the bytes are so encoded, else None.

    Without a byte-order mark, text in these encodings that is mostly ASCII
    has a NUL byte at every second (UTF-16) or three in every four (UTF-32)
    places; a few stray NULs in UTF-8 text are left to the cell checks.
    """
    for bom, enc in _WIDE_BOMS:
        if data.startswith(bom):
            return f"{enc} (it starts with a {enc} byte-order mark)"
    head = data[:_SNIFF_BYTES - _SNIFF_BYTES % 4]
    if len(head) < 4 or b"\x00" not in head:
        return None
    nul = [head[k::4].count(0) / len(head[k::4]) for k in range(4)]
    many = [f > 0.5 for f in nul]
    if sum(many) == 3:
        return "UTF-32 (three in four of its bytes are NUL)"
    if many in ([False, True, False, True], [True, False, True, False]):
        return "UTF-16 (every second byte is NUL)"
    return None


def outside_project(path: str | Path, root: str | Path | None = None) -> Path | None:
    """Where a path of the project really leads, if that is outside the project; else None.

    A path written inside ``root`` (default: the current folder, the project
    root of every command) that resolves elsewhere is a symbolic link out of
    the project. A path given outside ``root`` is the caller's choice and is
    not judged.
    """
    root = Path(os.path.abspath(root if root is not None else os.curdir))
    if not Path(os.path.abspath(path)).is_relative_to(root):
        return None
    real = Path(path).resolve()
    return None if real.is_relative_to(root.resolve()) else real


def _decode(path: Path, name: str, problems: list[Problem]) -> str | None:
    """The file's text (BOM stripped), or None after recording why it is unreadable."""
    real = outside_project(path)
    if real is not None:
        problems.append(Problem(name, None, None, None,
                                f"a link to a file outside the project ({real}); it is not read: "
                                "copy the table into the project folder instead"))
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(name, None, None, None, f"cannot be read ({exc.strerror})"))
        return None
    wide = _wide_encoding(data)
    if wide:
        problems.append(Problem(name, 1, None, None, f"not UTF-8 text: the file is {wide}; "
                                "save it as UTF-8 (Excel: 'CSV UTF-8')"))
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        problems.append(Problem(
            name, line, None, None,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be decoded; the file looks "
            "Latin-1 or Windows-1252 encoded): save it as UTF-8 (Excel: 'CSV UTF-8')"))
        return None
    if not text.strip():
        problems.append(Problem(name, 1, None, None,
                                "the file is empty; it needs the header line and at least one row "
                                "(see data/raw/README.md)"))
        return None
    return text


def _records(text: str, name: str, problems: list[Problem]
             ) -> tuple[list[tuple[int, list[str]]], bool]:
    """(first physical line, fields) of every record, blank ones skipped; False if cut short."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out = []
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if any(f.strip() for f in fields):
                out.append((start, fields))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            limit = csv.field_size_limit()
            msg = (f"a cell of {_longest_cell(text, end + 1)} characters, more than the "
                   f"{limit} a cell may hold: shorten it (keep long texts in the source), or "
                   "close the double quote that runs on from this line")
            line = end + 1
        elif "unexpected end of data" in str(exc):
            msg = ("a double quote opened on this line is never closed; close it, and double "
                   "any quote inside a quoted text (\"\")")
            line = end + 1
        else:
            msg = ("misplaced double quote: a text that contains quotes must be quoted as a "
                   "whole, with the inner quotes doubled (\"\")")
            line = reader.line_num
        problems.append(Problem(name, line, None, None, msg))
        return out, False
    return out, True


_QUOTED_CELL = re.compile(r'"((?:[^"]+|"")*)"?')
_BARE_CELL = re.compile(r"[^,\r\n]*")


def _longest_cell(text: str, line: int) -> int:
    """Characters in the longest cell of the record that starts on physical line ``line``.

    Used when the csv module gives up on a cell over its field-size limit
    without saying how long it is.
    """
    pos = 0
    for _ in range(line - 1):
        pos = text.find("\n", pos) + 1
    longest = 0
    while True:
        quoted = text.startswith('"', pos)
        m = (_QUOTED_CELL if quoted else _BARE_CELL).match(text, pos)
        cell = m.group(1).replace('""', '"') if quoted else m.group(0)
        longest, pos = max(longest, len(cell)), m.end()
        if not text.startswith(",", pos):
            return longest
        pos += 1


def _check_header(header: list[str], columns: list[str], name: str,
                  problems: list[Problem], optional: Iterable[str] = ()) -> bool:
    """Record header problems; True if the header is usable.

    ``optional`` columns (the schema's ``x-optional-columns``) may be left
    out of the header: tables written before they existed stay valid.
    """
    if len(header) == 1 and any(d in header[0] for d in ";\t|"):
        delim = next(d for d in ";\t|" if d in header[0])
        shown = {"\t": "tab"}.get(delim, f"'{delim}'")
        problems.append(Problem(name, 1, None, None,
                                f"the columns are separated by {shown}; use commas "
                                "(save as 'CSV (comma delimited)')"))
        return False
    n = len(problems)
    for col in sorted({c for c in header if header.count(c) > 1}, key=header.index):
        problems.append(Problem(name, 1, col, None, "appears twice in the header; keep one"))
    missing = [c for c in columns if c not in header and c not in optional]
    renamed = set()
    for col in dict.fromkeys(c for c in header if c not in columns):
        close = difflib.get_close_matches(col, missing, n=1, cutoff=SIMILARITY)
        hidden = first_hidden(col, identifier=True)
        if hidden:
            i, ch, what = hidden
            msg = (f"unknown column: it holds the {what} {_char_name(ch)} at character {i}"
                   + (f" (did you mean '{close[0]}'?)" if close else "") + "; delete it")
            renamed.update(close)
        elif close:
            renamed.add(close[0])
            msg = f"unknown column (did you mean '{close[0]}'?); rename it"
        else:
            msg = "unknown column; remove it (the columns are listed in data/raw/README.md)"
        problems.append(Problem(name, 1, col, None, msg))
    for col in missing:
        if col not in renamed:
            problems.append(Problem(name, 1, col, None,
                                    "missing from the header; add the column (its cells may be "
                                    "empty unless the row needs them)"))
    return len(problems) == n


def read_rows(path: Path, columns: list[str], problems: list[Problem],
              name: str | None = None, optional: Iterable[str] = ()) -> tuple[list[_Row], bool]:
    """The rows of one CSV as text cells keyed by column, with their first line.

    Problems that make the file or a row unreadable are appended to
    ``problems``; the flag is False if any row could not be read.
    """
    name = name if name is not None else str(path)
    before = len(problems)
    text = _decode(path, name, problems)
    if text is None:
        return [], False
    records, complete = _records(text, name, problems)
    if not records:
        return [], False
    (_, header), body = records[0], records[1:]
    if not _check_header(header, columns, name, problems, optional):
        return [], False
    if not body and complete:
        problems.append(Problem(name, 1, None, None,
                                "the file has a header but no rows; add rows or delete the file"))
    rows = []
    for line, fields in body:
        if len(fields) != len(header):
            why = ("a text with a comma must be in double quotes" if len(fields) > len(header)
                   else "a cell is missing, or a line break split the row")
            problems.append(Problem(name, line, None, None,
                                    f"the row has {len(fields)} cells but the header has "
                                    f"{len(header)}: {why}"))
            continue
        rows.append(_Row(line, dict(zip(header, fields))))
    return rows, len(problems) == before


# --------------------------------------------------------------------------- cells

def _plain(value: float) -> str:
    """A number written out in plain decimal digits (``2.6e1`` -> ``26``)."""
    text = f"{value:.15f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _not_plain(s: str) -> str | None:
    """Why a cell that looks like a number is not written as a plain decimal one, or None."""
    if any(ch.isdigit() and not ch.isascii() for ch in s):
        digits = "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in s)
        return (f"not a plain decimal number: it has digits that are not ASCII 0-9 (full-width "
                f"or another script's); type it as {digits}")
    if re.fullmatch(r"[+-]?\d+(_\d+)+(\.\d+)?", s, re.ASCII):
        return f"not a plain decimal number: '_' between digits; write {s.replace('_', '')}"
    base = re.fullmatch(r"[+-]?0([xob])[0-9a-f_]+", s.lower())
    if base:
        kind = {"x": "hexadecimal", "o": "octal", "b": "binary"}[base.group(1)]
        try:
            return f"not a plain decimal number: {kind} notation; write it in decimal ({int(s, 0)})"
        except ValueError:
            return f"not a number ({kind}-like); write it in decimal digits"
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)e[+-]?\d+", s.lower(), re.ASCII):
        value = float(s)
        if not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE and value != 0:
            return _magnitude(value)
        return f"not a plain decimal number: scientific notation; write {_plain(value)}"
    return None


def _magnitude(value: float) -> str | None:
    """Why a number is too large or too small for the effect-size arithmetic, or None."""
    size = abs(value)
    if size > MAX_MAGNITUDE:
        return (f"too large: at most {MAX_MAGNITUDE:.0f} (no trial reports more, and larger "
                "numbers overflow the effect-size arithmetic); check the number")
    if 0 < size < MIN_MAGNITUDE:
        return (f"too small: a number other than 0 is at least {_plain(MIN_MAGNITUDE)} "
                "(its square would underflow in the variance); check the number")
    return None


def parse_number(text: str, *, integer: bool) -> tuple[float | int | None, str | None]:
    """A cell as a number: (value, None), (None, None) if empty, or (None, why not).

    Only plain decimal numbers are read: ASCII digits, an optional sign and
    decimal point (``12``, ``-0.5``, ``.69``). Python's ``float`` would also
    take ``6_3`` (63), full-width digits, ``2.6e1``, ``inf`` and ``nan``; each
    is refused with the plain way to write it. Sizes are bounded by
    ``MAX_MAGNITUDE`` and, other than 0, ``MIN_MAGNITUDE``.

    Parameters
    ----------
    text : str
        The cell as written.
    integer : bool
        The column holds counts: a fractional value is refused.
    """
    s = text.strip()
    if not s:
        return None, None
    if s.lower() in MISSING_WORDS:
        return None, "not a number; leave the cell empty for a missing value"
    if not PLAIN_NUMBER.fullmatch(s):
        lead = re.match(r"[+-]?\d+(?:\.\d+)?(?![\w.])", s, re.ASCII)
        if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", s, re.ASCII):
            return None, (f"not a number; write it without thousands separators "
                          f"({s.replace(',', '')})")
        if re.fullmatch(r"[+-]?\d+,\d+", s, re.ASCII):
            return None, f"not a number; use '.' as the decimal mark ({s.replace(',', '.')})"
        if s.endswith("%"):
            return None, ("not a number; write the number without '%' (percentages go in "
                          "percent_treat and percent_ctrl)")
        if s.lower().lstrip("+-") in ("inf", "infinity"):
            return None, "not a finite number"
        why = _not_plain(s)
        if why:
            return None, why
        if lead:
            return None, (f"not a number; write the number alone ({lead.group(0)}) and keep the "
                          "rest in quote or derived")
        return None, "not a number"
    value = float(s)
    why = _magnitude(value)
    if why:
        return None, why
    if integer:
        if not value.is_integer():
            return None, "must be a whole number (a count of participants)"
        return int(value), None
    return value, None


class _RowChecker:
    """Checks of one row against the raw schema and the rules between its cells."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.props = schema["properties"]
        self.columns = list(self.props)
        self.numeric = {c: p["type"] for c, p in self.props.items()
                        if p["type"] in ("number", "integer")}
        self.validator = jsonschema.Draft202012Validator(schema)
        self.measure_types = schema["x-measure-types"]
        self.outcomes = schema["x-outcomes"]
        issue = self.props["pooling_issue"]
        self.issue_codes = issue["x-codes"]
        self.needs_cluster = issue["x-needs-cluster"]
        self.this_year = datetime.date.today().year

    def check(self, row: _Row, name: str) -> tuple[dict, list[Problem]]:
        """The typed row (empty cells left out) and its problems."""
        cells = row.cells
        out: list[Problem] = []
        bad: set[str] = set()

        def report(col: str, msg: str, value: str | None = None) -> None:
            bad.add(col)
            out.append(Problem(name, row.line, col, cells.get(col, "") if value is None else value,
                               msg))

        typed: dict = {}
        for col in self.columns:
            text = cells.get(col, "")
            why = text_problem(text, identifier=col in IDENTIFIER_COLUMNS,
                               prose=col in PROSE_COLUMNS) if text.strip(" ") else None
            if why:
                report(col, why)
            elif col in self.numeric:
                value, why = parse_number(text, integer=self.numeric[col] == "integer")
                if why:
                    report(col, why)
                elif value is not None:
                    typed[col] = value
            elif text.strip():
                typed[col] = unicodedata.normalize("NFC", text)
        for col in self.schema["required"]:
            if col not in typed and col not in bad:
                enum = self.props[col].get("enum")
                report(col, "required" + (f"; use one of {one_of(enum)}" if enum else
                                          "; fill it in"))
        self._check_issues(typed, report)
        for err in self.validator.iter_errors(typed):
            col = err.path[0] if err.path else None
            if col is None or col in bad:
                continue
            report(col, self._schema_message(col, err))
        self._check_measure_type(typed, bad, report)
        self._check_values(typed, bad, report)
        return typed, out

    def _check_issues(self, typed: dict, report) -> None:
        text = typed.get("pooling_issue")
        if text is None:
            if "cluster_id" in typed:
                report("pooling_issue", "empty, but the row has a cluster_id; say why it shares "
                       f"patients ({one_of(self.issue_codes)})")
            return
        codes = text.split(";")
        unknown = [c for c in codes if c not in self.issue_codes]
        if unknown:
            report("pooling_issue", f"unknown code '{unknown[0]}'"
                   f"{did_you_mean(unknown[0], self.issue_codes)}; use one or more of "
                   f"{one_of(self.issue_codes)}, separated by ';'")
            return
        need = [c for c in codes if c in self.needs_cluster]
        if need and "cluster_id" not in typed:
            report("cluster_id", f"required: pooling_issue '{need[0]}' needs the cluster_id that "
                   "links this row to the rows it shares patients with")

    def _schema_message(self, col: str, err: jsonschema.ValidationError) -> str:
        prop = self.props[col]
        v, limit = err.validator, err.validator_value
        if v == "enum":
            return f"unknown code{did_you_mean(err.instance, limit)}; use one of {one_of(limit)}"
        if v == "pattern":
            return f"not allowed here: {prop.get('x-hint', 'must match ' + limit)}"
        if v == "maxLength":
            return f"longer than {limit} characters; shorten it"
        if v == "minimum":
            return "must not be negative" if limit == 0 else f"must be at least {limit}"
        if v == "exclusiveMinimum":
            return f"must be greater than {limit}"
        if v == "maximum":
            return f"must be at most {limit}"
        return err.message

    def _check_measure_type(self, typed: dict, bad: set, report) -> None:
        mtype = typed.get("measure_type")
        spec = self.measure_types.get(mtype)
        if spec is None:
            return
        for col in spec["required"]:
            if col not in typed and col not in bad:
                report(col, f"required: measure_type '{mtype}' needs "
                       f"{one_of(spec['required'])}")
        for col in spec["empty"]:
            if col in typed and col not in bad:
                report(col, f"measure_type '{mtype}' takes no value here; clear the cell or "
                       "change measure_type")
        outcome = self.outcomes.get(typed.get("outcome"))
        if outcome is None or "measure_type" in bad:
            return
        if outcome["kind"] != spec["outcome_kind"]:
            fit = [m for m, s in self.measure_types.items() if s["outcome_kind"] == outcome["kind"]]
            report("measure_type", f"outcome '{typed['outcome']}' is {outcome['kind']}; use "
                   f"{' or '.join(fit)}")
        elif "favourable" in spec and spec["favourable"] != outcome["favourable"]:
            fit = [m for m, s in self.measure_types.items()
                   if s.get("favourable") == outcome["favourable"]]
            what = "favourable (good) events" if outcome["favourable"] else "bad events"
            report("measure_type", f"outcome '{typed['outcome']}' counts {what}; use "
                   f"{' or '.join(fit)}")

    def _check_values(self, typed: dict, bad: set, report) -> None:
        for arm in ("treat", "ctrl"):
            e, n = f"events_{arm}", f"n_{arm}"
            if e in typed and n in typed and not {e, n} & bad and typed[e] > typed[n]:
                report(e, f"larger than {n} = {typed[n]}; events cannot exceed the arm size")
            sd = f"sd_{arm}"
            if sd in typed and typed.get(n) == 1 and not {sd, n} & bad:
                # the SMD's small-sample correction has n_treat + n_ctrl - 2 degrees of
                # freedom: with one participant per arm the row dropped out of pooling
                report(n, f"1, but the row gives {sd}: an SD needs at least 2 participants; "
                       "check the arm size")
        lo, hi, est = (typed.get(c) for c in ("ratio_ci_low", "ratio_ci_high", "ratio"))
        ci_ok = not {"ratio_ci_low", "ratio_ci_high", "ratio"} & bad
        if ci_ok and lo is not None and hi is not None:
            if lo > hi:
                report("ratio_ci_low", f"above ratio_ci_high = {hi:g}; swap the two limits")
            elif not math.log(hi) > math.log(lo):  # equal, or too close to give a variance
                report("ratio_ci_high", f"equal to ratio_ci_low = {lo:g}: a CI of zero width "
                       "gives the ratio no variance; check the two limits")
            elif est is not None and not lo <= est <= hi:
                report("ratio", f"outside its 95% CI ({lo:g} to {hi:g}); check the three numbers")
        if ("comparator_drug" in typed and "comparator_drug" not in bad
                and typed.get("comparator_type") != "active"):
            report("comparator_drug", f"given, but comparator_type is "
                   f"'{typed.get('comparator_type', '')}'; only an active comparator has a drug "
                   "(clear the cell or set comparator_type to active)")
        year = typed.get("year")
        if year is not None and "year" not in bad and year > self.this_year:
            report("year", "in the future; give the year of publication")


def _key(typed: dict) -> tuple:
    """What makes a comparison unique: trial, outcome, subgroup, time and arms.

    Texts are compared by ``identity`` (case, spacing and Unicode forms aside).
    """
    cols = ("study_id", "outcome", "subgroup", "genotype", "followup_weeks", "formulation",
            "dose_mg", "comparator", "treatment", "comparator_drug")
    return tuple(identity(v) if isinstance(v, str) else v for v in map(typed.get, cols))


def _check_across_rows(rows: list[tuple[str, int, dict]]) -> list[Problem]:
    """Problems between rows: duplicate ids and comparisons, clusters that do not hold."""
    out: list[Problem] = []
    first_id: dict = {}
    first_key: dict = {}
    clusters: dict[str, list[tuple[str, int, dict]]] = {}
    for name, line, t in rows:
        rid = t.get("row_id")
        if rid is not None:
            if identity(rid) in first_id:
                out.append(Problem(name, line, "row_id", rid, f"already used at "
                                   f"{first_id[identity(rid)]}; give each row its own id"))
            else:
                first_id[identity(rid)] = f"{name}:{line}"
        key = _key(t)
        if key in first_key:
            out.append(Problem(name, line, "study_id", t.get("study_id", ""),
                               f"the same comparison (study_id, outcome, subgroup, genotype, "
                               f"followup_weeks and arms) is already at {first_key[key]}; delete "
                               "one, or say in subgroup how they differ"))
        else:
            first_key[key] = f"{name}:{line}"
        if "cluster_id" in t:
            clusters.setdefault(t["cluster_id"], []).append((name, line, t))
    for cid, members in clusters.items():
        if len(members) == 1:
            name, line, _ = members[0]
            out.append(Problem(name, line, "cluster_id", cid,
                               "no other row has this cluster_id; a cluster links rows that "
                               "share patients, so give the rows the same id or clear it"))
            continue
        out += _check_cluster(cid, members)
    return out


def _issues(t: dict) -> set[str]:
    return set(t.get("pooling_issue", "").split(";")) - {""}


def _check_cluster(cid: str, members: list[tuple[str, int, dict]]) -> list[Problem]:
    """Shared controls must agree; repeated time points need their weeks; stages a first stage."""
    out: list[Problem] = []
    groups: dict[tuple, list] = {}
    for m in members:
        for issue in _issues(m[2]) & {"shared_control", "repeated_timepoint"}:
            # a control arm is shared at one time point (a trial's arms at week 12 and
            # at week 24 are each shared by its comparisons of that week)
            weeks = m[2].get("followup_weeks") if issue == "shared_control" else None
            groups.setdefault((issue, m[2].get("outcome"), weeks), []).append(m)
    for (issue, outcome, _), group in groups.items():
        if len(group) == 1:
            name, line, _ = group[0]
            out.append(Problem(name, line, "pooling_issue", group[0][2]["pooling_issue"],
                               f"'{issue}', but no other row of cluster '{cid}' with outcome "
                               f"'{outcome}' is coded so; code the rows it pairs with too"))
            continue
        name0, line0, t0 = group[0]
        for name, line, t in group[1:]:
            cols = (("events_ctrl", "n_ctrl") if issue == "shared_control" else ())
            for col in cols:
                if t.get(col) != t0.get(col):
                    out.append(Problem(name, line, col, str(t.get(col, "")),
                                       f"differs from {col} = {t0.get(col, '')} at "
                                       f"{name0}:{line0}, which shares this control arm"))
        if issue == "repeated_timepoint":
            for name, line, t in group:
                if "followup_weeks" not in t:
                    out.append(Problem(name, line, "followup_weeks", "",
                                       "required: pooling_issue 'repeated_timepoint' needs the "
                                       "time point to choose between the rows"))
    stages = [m for m in members if "rerandomised_stage" in _issues(m[2])]
    if stages and len(stages) == len(members):
        name, line, t = members[0]
        out.append(Problem(name, line, "pooling_issue", t["pooling_issue"],
                           f"every row of cluster '{cid}' is a re-randomised stage; the first "
                           "stage must be a row without 'rerandomised_stage'"))
    return out


# --------------------------------------------------------------------------- public

def check_raw(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, list[Problem]]:
    """Read and check the raw tables; return the typed rows and every problem.

    Parameters
    ----------
    paths : iterable of path
        The CSV files, in the order to read them. Each path is reported as given.

    Returns
    -------
    frame : DataFrame
        One row per readable row (in file order), the schema's columns with
        pandas dtypes (Int64 counts and years, float numbers, str text, ""
        where empty) and ``source_file``, ``source_line``. Meaningful only
        when there are no problems.
    problems : list of Problem
        Sorted by file (in the given order), line and column.
    """
    schema = load_schema("raw_trials")
    checker = _RowChecker(schema)
    problems: list[Problem] = []
    typed_rows: list[tuple[str, int, dict]] = []
    all_read = True
    for path in paths:
        name = str(path)
        rows, complete = read_rows(Path(path), checker.columns, problems, name,
                                   schema.get("x-optional-columns", ()))
        all_read &= complete
        for row in rows:
            typed, found = checker.check(row, name)
            problems += found
            typed_rows.append((name, row.line, typed))
    if all_read:  # with rows missing, clusters and duplicates would be judged on part of the data
        problems += _check_across_rows(typed_rows)
    order = {str(p): i for i, p in enumerate(paths)}
    colpos = {c: i for i, c in enumerate(checker.columns)}
    problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line or 0,
                                 colpos.get(p.column, -1)))
    return _frame(typed_rows, schema), problems


def _frame(rows: list[tuple[str, int, dict]], schema: dict) -> pd.DataFrame:
    props = schema["properties"]
    data = {c: [t.get(c) for _, _, t in rows] for c in props}
    frame = pd.DataFrame(data, columns=list(props))
    for col, p in props.items():
        if p["type"] == "integer":
            frame[col] = pd.array(frame[col], dtype="Int64")
        elif p["type"] == "number":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        else:
            frame[col] = frame[col].fillna("").astype(str)
    frame["source_file"] = [n for n, _, _ in rows]
    frame["source_line"] = pd.array([line for _, line, _ in rows], dtype="Int64")
    return frame


def validate_raw(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The typed raw rows of all files, or ``ValidationError`` with every problem.

    Parameters
    ----------
    paths : iterable of path
        The CSV files (``data/raw/*.csv``); at least one.

    Returns
    -------
    DataFrame
        See ``check_raw``.

    Raises
    ------
    ValidationError
        With all problems of all files, one line each.
    """
    paths = list(paths)
    if not paths:
        raise ValidationError([Problem("data/raw", None, None, None,
                                       "no CSV files found; add the trial tables")])
    frame, problems = check_raw(paths)
    if problems:
        raise ValidationError(problems)
    return frame


def main(raw_paths: Iterable[str | Path], config_path: str | Path | None = None, *,
         out: TextIO | None = None) -> int:
    """Validate raw tables (and the config, if given); print problems; return an exit code.

    For a command line: prints one line per problem and a count to ``out``
    (stderr by default), never a traceback. Returns 0 if all is well, 1 if not.
    """
    out = out if out is not None else sys.stderr
    from .config import check_inputs  # late import: ntxmeta.config builds on this module
    try:
        if config_path is None:
            validate_raw(raw_paths)
        else:
            check_inputs(raw_paths, config_path)
    except ValidationError as err:
        print(err.report(), file=out)
        print(count_line(len(err.problems)), file=out)
        return 1
    return 0
