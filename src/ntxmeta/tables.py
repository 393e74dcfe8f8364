"""Summary tables across analyses, as CSV (for reuse) and Markdown (for reading).

Cells are data: a text cell starting with ``=``, ``+``, ``-`` or ``@`` is
prefixed with a single quote in exports so that a spreadsheet does not run
it as a formula (OWASP "CSV injection"); numbers are never altered.
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import model_words
from .io import CSV_FLOAT, atomic_path, write_text
from .result import AnalysisResult, read_result

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

SUMMARY_COLUMNS = ("analysis", "title", "measure", "k", "participants", "estimate", "ci_lb",
                   "ci_ub", "pi_lb", "pi_ub", "tau2", "I2_pct", "pval", "model", "status")


def neutralise(value):
    """Prefix text that a spreadsheet would read as a formula with a single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot act as spreadsheet formulas."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    return out


def summary_table(results: list[AnalysisResult]) -> pd.DataFrame:
    """One row per analysis: k, participants, pooled estimate, CI, PI (shown scale), tau2, I2, p.

    ``measure`` is the shown scale's name ("RR"; "Ratio" for a generic
    analysis of log ratios, shown as ratios like everywhere else).
    """
    rows = []
    for res in sorted(results, key=lambda r: r.name):
        m, show = res.main, res.scale.show
        row = {"analysis": res.name, "title": res.title, "measure": res.scale.name,
               "k": res.k_used, "participants": res.participants,
               "model": model_words(res.method, res.test), "status": res.status}
        if m is not None:
            pi = m.pi
            row.update(estimate=float(show(m.estimate)), ci_lb=float(show(m.ci.low)),
                       ci_ub=float(show(m.ci.high)),
                       pi_lb=float(show(pi.low)) if pi else np.nan,
                       pi_ub=float(show(pi.high)) if pi else np.nan,
                       tau2=m.heterogeneity.tau2, I2_pct=m.heterogeneity.i2_pct,
                       pval=m.test_stat.pval)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _fmt(x, digits=2):
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return ""
        return f"{x:.{digits}f}"
    return str(x)


#: Characters that Markdown reads as syntax in a table cell (links and images
#: ``[..](..)``, ``![..](..)``, emphasis, code, strike-through, the cell
#: separator, and the backslash that escapes them all).
MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]()!~|])")
#: Line breaks and control characters, which would end or corrupt a table row.
LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def escape_markdown(text: str) -> str:
    """Text as literal Markdown: HTML escaped (<, >, &), syntax backslash-escaped, one line."""
    text = html.escape(LINE_BREAKS.sub(" ", text), quote=False)
    return MARKDOWN_SYNTAX.sub(r"\\\1", text)


def to_markdown(frame: pd.DataFrame, digits: dict | None = None) -> str:
    """A GitHub-flavoured Markdown table; every cell's text through ``escape_markdown``."""
    digits = digits or {}
    head = "| " + " | ".join(escape_markdown(str(c)) for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [head, sep]
    for _, row in frame.iterrows():
        cells = [escape_markdown(_fmt(neutralise(row[c]), digits.get(c, 2))) for c in frame.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, csv_path: str | Path, md_path: str | Path,
                digits: dict | None = None) -> None:
    """Write a table as CSV and Markdown, atomically, formula-safe."""
    with atomic_path(csv_path) as tmp:
        safe_frame(frame).to_csv(tmp, index=False, float_format=CSV_FLOAT, lineterminator="\n")
    write_text(md_path, to_markdown(frame, digits))


def write_summary(result_paths: list[str | Path], csv_path: str | Path, md_path: str | Path) -> None:
    results = [read_result(p) for p in result_paths]
    write_table(summary_table(results), csv_path, md_path,
                digits={"tau2": 4, "pval": 4, "I2_pct": 1, "k": 0, "participants": 0})
