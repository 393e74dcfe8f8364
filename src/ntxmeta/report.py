"""The evidence report: ``results/report.html``, one self-contained page.

The report step reads files and computes nothing: every number on the page
was computed by ``pool`` (:mod:`ntxmeta.analysis`) or by the tables step
(:mod:`ntxmeta.evidence`), and is only formatted here. Its inputs, all
given explicitly (the rule's declared inputs; nothing is globbed):

- the typed result of every analysis (``results/analyses/{analysis}/
  result.json``, :func:`ntxmeta.result.read_result`): the statistics block,
  the study weights (``weights_pct``, with ``used`` for the rows that were
  pooled) and the meta-regressions, each shown on the result's one
  :class:`~ntxmeta.result.Scale` (a ratio analysis as ratios, ``exp`` of
  its log estimates), as in ``summary.csv`` and the forest plot;
- the effects table of every analysis (``data/processed/effects/
  {analysis}.csv``): the study rows, their arm data, effect and CI, and
  their provenance (source, quote, how derived, raw row id);
- the four evidence tables as the tables step wrote them (``results/tables/
  {stem}.csv``, :func:`read_table`): the summary of findings and the
  sensitivity, subgroup and small-study tables of the page are those files,
  read back, never recomputed;
- the figure files of the run (:func:`figure_map`: ``figures/{kind}/
  {analysis}.svg`` and ``figures/bubble/{analysis}__{moderator}.svg``, SVG
  preferred over PNG).

The page reads top to bottom for a clinician: the summary of findings
first, then each analysis with its forest plot, statistics, study table
(every row with its source, quoted sentence and raw row id), sensitivity,
subgroup, small-study and meta-regression tables, and the other figures;
the methods last.

The page is safe to open from anywhere:

- every value from the data, the config or a table passes through
  :func:`esc` (``html.escape`` with quotes), so a label or quote containing
  ``<script>`` or ``"><img onerror=...>`` is shown as text;
- there is no JavaScript; disclosures are ``<details>`` elements and
  tooltips ``title`` attributes;
- figures are embedded as ``data:`` URIs of ``<img>`` elements (SVG, else
  PNG), where an SVG can run no script and load nothing; when they would
  make the page larger than :data:`INLINE_FIGURES_MAX_BYTES` (hundreds of
  analyses), they are linked instead, by relative path from the page to
  the figure files (still ``<img>``: no script, nothing loaded by an SVG),
  and the page says so at the top;
- a Content-Security-Policy (``default-src 'none'``) forbids scripts and
  any request beyond the embedded (or linked) images, as a second line of
  defence;
- links to sources are made only from ``http(s)://`` addresses found in
  the source text, escaped, and are followed only when a reader clicks.

Output is deterministic (no dates; rows in the tables' order or the
config's; fixed number formats) and written atomically
(:func:`ntxmeta.io.write_text`).
"""
from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd

from . import evidence as ev
from . import changelog as ch
from . import grade
from .analysis import PI_MIN_K, model_words
from .io import write_text
from .plan import AnalysisPlan, Config
from .joint import TIMES
from .result import MEASURE_NAMES, AnalysisResult, MetaRegression, Scale, read_result
from .tables import FORMULA_PREFIXES

#: The evidence tables the page shows, by file stem (the tables step writes them).
TABLE_STEMS = tuple(ev.TABLE_DIGITS)
#: The columns each evidence table must have (the tables step's column order).
TABLE_COLUMNS = {"summary_of_findings": ev.SOF_COLUMNS, "certainty": ev.CERTAINTY_COLUMNS,
                 "sensitivity": ev.SENSITIVITY_COLUMNS,
                 "subgroups": ev.SUBGROUP_COLUMNS, "small_study_effects": ev.SMALL_STUDY_COLUMNS,
                 "published_comparison": ev.PUBLISHED_COLUMNS, "bayes": ev.BAYES_COLUMNS,
                 "tsa": ev.TSA_COLUMNS}
#: Figure kinds, as the folders ``figures/{kind}/`` name them, in page order.
FIGURE_KINDS = ("forest", "rob_traffic_light", "rob_summary", "funnel", "cumulative",
                "leave_one_out", "bubble", "bayes_posterior", "bayes_forest", "tsa",
                "timepoints", "network_graph", "network_forest")
#: Figure file types, preferred first (an SVG stays sharp at any zoom).
FIGURE_EXTENSIONS = (".svg", ".png")
FIGURE_TITLES = {"tsa": "Trial sequential analysis: cumulative z-curve, monitoring boundaries, RIS",
                 "bayes_posterior": "Bayesian posterior: joint (mu, tau), mu and tau",
                 "bayes_forest": "Bayesian forest plot: observed and shrunken study effects",
                 "forest": "Forest plot", "funnel": "Contour-enhanced funnel plot",
                 "cumulative": "Cumulative meta-analysis by year",
                 "leave_one_out": "Leave-one-out analysis", "bubble": "Meta-regression (bubble plot)",
                 "rob_traffic_light": "Risk of bias (RoB 2) per trial",
                 "rob_summary": "Risk of bias (RoB 2), weighted by the trials' weights",
                 "timepoints": "Every time point: trials and the model's estimate at each",
                 "network_graph": "Network graph (edges: number of trials)",
                 "network_forest": "Network estimates against the reference, with P-scores"}
INDICATION_NAMES = {"alcohol": "Alcohol use disorder", "opioid": "Opioid use disorder",
                    "stimulant": "Stimulant use disorder", "gambling": "Gambling disorder"}
#: What a reader calls each shown measure (``Scale.name``: a generic analysis is "Ratio" or "Effect").
SHOWN_MEASURE_NAMES = {**MEASURE_NAMES, "Ratio": "Ratio", "Effect": "Effect size"}
CONTINUOUS_MEASURES = ("SMD", "MD", "ROM")
#: Names of an intercept among meta-regression coefficients (the slope is the other one).
INTERCEPTS = ("intrcpt", "intercept", "(Intercept)")
#: p-values below this are written "< 0.001".
P_FLOOR = 0.001
MINUS = "\u2212"
DASH = "\u2013"
#: Addresses made into links: http(s) only, up to a space, quote, bracket or angle bracket.
URL_RE = re.compile(r"https?://[^\s<>\"'()\[\]{}|\\^`]+")
URL_TRAILING = ".,;:!?"
PAGE_TITLE = "Naltrexone: evidence report"
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")
#: The policy of a page whose figures are linked files beside it (``'self'``
#: when it is served, ``file:`` when it is opened from disk).
CSP_LINKED = CSP.replace("img-src data:", "img-src data: 'self' file:")
#: Figures are inlined while all of them together are at most this large
#: (bytes of the files; base64 adds a third). A page of 200 analyses would
#: otherwise hold ~200 MB of figures, more than a browser opens comfortably.
INLINE_FIGURES_MAX_BYTES = 24 * 2**20

CSS = """
:root { color-scheme: light; --ink: #111; --mute: #555; --rule: #bbb; --faint: #f2f2f2; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 1.5rem 2rem 4rem; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; background: #fff; }
h1 { font-size: 1.9rem; margin: 0 0 .3rem; }
h2 { font-size: 1.45rem; margin: 2.6rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.2rem; margin: 2rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
p, li { max-width: 52rem; }
a { color: inherit; }
.lede { font-size: 1.05rem; color: var(--mute); margin-top: 0; }
nav ol { columns: 2; column-gap: 2.5rem; padding-left: 1.2rem; }
nav li { max-width: none; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .86rem; width: 100%; }
caption { text-align: left; font-weight: 600; padding: .2rem 0 .4rem; }
th, td { border-top: 1px solid var(--rule); padding: .3rem .45rem; text-align: left; vertical-align: top; }
thead th { border-top: 0; border-bottom: 2px solid var(--ink); font-weight: 600; }
tbody tr:nth-child(even) { background: var(--faint); }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.nowrap, th.nowrap { white-space: nowrap; }
ul.flags { margin: 0; padding-left: 1rem; }
ul.flags li { margin: 0; }
table.sof { table-layout: fixed; }
table.sof td { font-size: .84rem; overflow-wrap: anywhere; }
td.flags { min-width: 16rem; }
.flag-yes { font-weight: 600; }
.flag-yes::before { content: "\\25B2\\00a0"; font-size: .7em; }
.muted { color: var(--mute); }
.status { border-left: 4px solid var(--ink); padding: .3rem .8rem; background: var(--faint); }
dl.stats { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: .5rem 0 1rem; }
dl.stats dt { font-weight: 600; }
dl.stats dd { margin: 0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--mute); font-size: .85rem; }
details { margin: .1rem 0; }
details > summary { cursor: pointer; color: var(--mute); }
details[open] > summary { color: var(--ink); }
blockquote { margin: .3rem 0; padding: .2rem .7rem; border-left: 3px solid var(--rule); font-style: italic;
  overflow-wrap: anywhere; }
.source { overflow-wrap: anywhere; font-size: .8rem; }
table.studies td:first-child { min-width: 11rem; }
table.studies td:last-child { width: 38%; }
article { margin-top: 2.5rem; }
article + article { border-top: 1px solid var(--rule); }
.notes { font-size: .85rem; color: var(--mute); }
footer { margin-top: 3rem; font-size: .8rem; color: var(--mute); }
.scroll { overflow-x: auto; max-width: 100%; }
body { overflow-wrap: break-word; }
@media (max-width: 640px) {
  body { padding: 1rem .7rem 3rem; font-size: 14px; }
  h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; }
  nav ol { columns: 1; }
  table.sof { min-width: 58rem; }
  table.studies { min-width: 40rem; }
  dl.stats { grid-template-columns: 1fr; }
  dl.stats dd { margin-bottom: .3rem; }
}
@media print {
  @page { margin: 15mm; }
  details > *:not(summary) { display: block; }
  body { max-width: none; padding: 0; font-size: 10px; }
  nav { break-after: page; }
  article { break-before: page; }
  .scroll { overflow: visible; }
  table.sof, table.studies { min-width: 0; }
  thead { display: table-header-group; }
  tr, figure, img { break-inside: avoid; }
  a { text-decoration: none; }
  h2, h3, h4 { break-after: avoid; }
}
"""


# --------------------------------------------------------------------------- text and numbers


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def esc(value: Any) -> str:
    """HTML-escape any value (text, number, None) for element content or a quoted attribute."""
    if _missing(value):
        return ""
    return html.escape(str(value), quote=True)


def _attrs(attrs: Mapping[str, Any]) -> str:
    parts = []
    for key, val in attrs.items():
        if val is None or val is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f' {name}="{esc(val)}"')
    return "".join(parts)


def tag(name: str, inner: str = "", **attrs: Any) -> str:
    """An element whose ``inner`` is already HTML and whose attributes are escaped here."""
    return f"<{name}{_attrs(attrs)}>{inner}</{name}>"


def _float(x: Any) -> float:
    """A cell as a float: numbers as they are, text parsed ("" and non-numbers are NaN)."""
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    if isinstance(x, (int, float, np.integer, np.floating)):
        return float(x)
    try:
        return float(str(x).strip())
    except ValueError:
        return math.nan


def _text(x: Any) -> str:
    """A cell as text ("" when missing)."""
    return "" if _missing(x) else str(x)


def _truthy(x: Any) -> bool:
    return str(x).strip().lower() in ("true", "yes", "1")


def _finite(x: Any) -> bool:
    return math.isfinite(_float(x))


def num(x: Any, digits: int = 2) -> str:
    """A number with a fixed number of decimals and a true minus sign; "NA" when missing."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    v = _float(x)
    if not math.isfinite(v):
        if math.isinf(v):
            return "\u221e" if v > 0 else MINUS + "\u221e"
        return "NA"
    text = f"{v:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def pval(p: Any) -> str:
    """p formatted for reading: "< 0.001" or three decimals."""
    v = _float(p)
    if not math.isfinite(v):
        return "NA"
    return f"< {P_FLOOR}" if v < P_FLOOR else f"{v:.3f}"


def p_is(p: Any) -> str:
    """"p = 0.042" or "p < 0.001"."""
    text = pval(p)
    return "p " + text if text.startswith("<") else "p = " + text


def interval(est: Any, lb: Any, ub: Any, digits: int = 2) -> str:
    """"0.49 (0.34 to 0.70)"; "NA" when the estimate is missing."""
    if not _finite(est):
        return "NA"
    return f"{num(est, digits)} ({num(lb, digits)} to {num(ub, digits)})"


def _level(level: float) -> str:
    """A confidence level as a percent: 95.0 -> "95", 97.5 -> "97.5"."""
    return f"{float(level):g}"


def linkify(text: Any) -> str:
    """Escaped text in which http(s) addresses become links (href escaped too)."""
    text = _text(text)
    out, pos = [], 0
    for m in URL_RE.finditer(text):
        url = m.group(0).rstrip(URL_TRAILING)
        out.append(esc(text[pos:m.start()]))
        out.append(tag("a", esc(url), href=url, rel="noopener noreferrer nofollow"))
        pos = m.start() + len(url)
    out.append(esc(text[pos:]))
    return "".join(out)


def _anchor(name: str) -> str:
    """An element id from an analysis name (names are [a-z0-9_]; anything else is replaced)."""
    return "a-" + re.sub(r"[^A-Za-z0-9_-]", "-", str(name))


def indication_name(code: str) -> str:
    return INDICATION_NAMES.get(code, str(code).replace("_", " ").capitalize())


def _table(head: Sequence[tuple[str, str]], rows: Iterable[Sequence[str]], caption: str = "",
           cls: str | None = None, widths: Sequence[int] | None = None) -> str:
    """A table from (header text, css class) pairs and rows of cell HTML; optional column widths in %."""
    th = "".join(tag("th", esc(h), class_=c or None, scope="col") for h, c in head)
    cols = tag("colgroup", "".join(f'<col style="width:{int(w)}%">' for w in widths)) if widths else ""
    body = "".join(tag("tr", "".join(tag("td", cell, class_=c or None)
                                     for cell, (_, c) in zip(row, head))) for row in rows)
    cap = tag("caption", esc(caption)) if caption else ""
    # in a box of its own that scrolls sideways on a narrow screen, so the page never does
    return tag("div", tag("table", cap + cols + tag("thead", tag("tr", th)) + tag("tbody", body),
                          class_=cls), class_="scroll")


def _flag(text: Any) -> str:
    text = _text(text)
    return tag("span", esc(text), class_="flag-yes" if text.startswith("yes") else None)


# --------------------------------------------------------------------------- inputs


def unneutralise(value: Any) -> Any:
    """A table cell as it was before the tables writer made it formula-safe.

    :func:`ntxmeta.tables.neutralise` prefixes text starting with ``=``,
    ``+``, ``-``, ``@``, tab or carriage return with a single quote; this
    takes that quote back off. (A text that itself began with a quote and a
    formula character is shown without its quote: the written cell cannot
    tell the two apart.)
    """
    if isinstance(value, str) and value[:1] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def read_table(path: str | Path, stem: str | None = None) -> pd.DataFrame:
    """An evidence table as the tables step wrote it: every cell as its text.

    Cells are read as strings (``""`` where empty), so the page shows text
    as written (a subgroup level "01" stays "01", "NA" stays "NA") and each
    number is parsed where it is formatted (``%.10g`` in the file); the
    formula-safety quote is taken off (:func:`unneutralise`). With ``stem``
    (a key of :data:`TABLE_COLUMNS`) the table must have that table's columns.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    if stem is not None:
        missing = [c for c in TABLE_COLUMNS[stem] if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: not a {stem} table (missing column(s) {', '.join(missing)}); "
                             "re-run the tables step")
    return frame.astype(object).map(unneutralise)


def _bubble_analysis(stem: str, analyses: Sequence[str]) -> tuple[str, str]:
    """(analysis, moderator) of a bubble figure stem ``{analysis}__{moderator}``.

    The longest known analysis name that prefixes the stem wins (a name may
    itself contain "__"); without one, the stem is split at its first "__".
    """
    known = sorted((a for a in analyses if stem.startswith(a + "__")), key=len, reverse=True)
    if known:
        return known[0], stem[len(known[0]) + 2:]
    analysis, sep, moderator = stem.partition("__")
    if not (sep and analysis and moderator):
        raise ValueError(f"bubble figure {stem!r}: expected {{analysis}}__{{moderator}}")
    return analysis, moderator


def _figure_order(key: str) -> tuple:
    kind, _, moderator = key.partition(":")
    return FIGURE_KINDS.index(kind), moderator


def figure_map(paths: Iterable[str | Path], analyses: Sequence[str] = ()
               ) -> dict[str, dict[str, Path]]:
    """The figures of a run by analysis: ``{analysis: {kind or "bubble:{moderator}": path}}``.

    Parameters
    ----------
    paths : iterable of path
        Every figure file of the run (PNG and SVG), laid out as
        ``.../{kind}/{analysis}.{svg,png}`` and
        ``.../bubble/{analysis}__{moderator}.{svg,png}``.
    analyses : sequence of str, optional
        The analysis names, to split a bubble stem whose analysis name
        contains "__".

    Returns
    -------
    dict
        Analyses sorted by name; each one's figures in page order
        (:data:`FIGURE_KINDS`, bubble plots by moderator), the SVG where
        both files exist.

    Raises
    ------
    ValueError
        A file of another type, or in a folder that is not a figure kind.
    """
    out: dict[str, dict[str, Path]] = {}
    for p in map(Path, paths):
        ext = p.suffix.lower()
        if ext not in FIGURE_EXTENSIONS:
            raise ValueError(f"{p}: not a figure file ({' or '.join(FIGURE_EXTENSIONS)})")
        kind = p.parent.name
        if kind not in FIGURE_KINDS:
            raise ValueError(f"{p}: unknown figure kind {kind!r} (the report shows "
                             f"{', '.join(FIGURE_KINDS)}; add a new kind to report.FIGURE_KINDS)")
        if kind == "bubble":
            analysis, moderator = _bubble_analysis(p.stem, analyses)
            key = f"bubble:{moderator}"
        else:
            analysis, key = p.stem, kind
        slot = out.setdefault(analysis, {})
        old = slot.get(key)
        if old is None or FIGURE_EXTENSIONS.index(ext) < FIGURE_EXTENSIONS.index(old.suffix.lower()):
            slot[key] = p
    return {a: dict(sorted(f.items(), key=lambda kv: _figure_order(kv[0])))
            for a, f in sorted(out.items())}


# --------------------------------------------------------------------------- figures


def embed_image(path: Path, alt: str) -> str:
    """An ``<img>`` with the file inlined as a base64 ``data:`` URI (no request, no script)."""
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{esc(alt)}">'


def link_image(path: Path, alt: str, link_from: Path) -> str:
    """An ``<img>`` of a figure file, by its path relative to the folder ``link_from``."""
    src = quote(Path(os.path.relpath(path, link_from)).as_posix())
    return f'<img src="{esc(src)}" alt="{esc(alt)}" loading="lazy">'


def _figure(path: Path | None, kind: str, title: str, link_from: Path | None) -> str:
    what = FIGURE_TITLES[kind]
    if path is None:
        return tag("p", esc(f"{what}: not available."), class_="muted")
    alt = f"{what}: {title}"
    img = embed_image(path, alt) if link_from is None else link_image(path, alt, link_from)
    return tag("figure", img + tag("figcaption", esc(what)))


# --------------------------------------------------------------------------- summary of findings


def _per_1000(x: Any) -> str:
    """An absolute difference per 1000 in words: "8 fewer", "5 more", "0"."""
    if not _finite(x):
        return "NA"
    n = round(_float(x))
    return "0" if n == 0 else f"{abs(n):,} {'fewer' if n < 0 else 'more'}"


def _count(x: Any) -> str:
    return f"{_float(x):,.0f}" if _finite(x) else "NA"


#: Column widths of the summary-of-findings tables (percent), the same for every
#: indication so that the tables line up one under the other.
SOF_WIDTHS_PCT = (12, 9, 11, 18, 9, 10, 15, 16)


def _no_absolute(measure: str) -> str:
    """Why a pooled row of the summary of findings has no absolute effects."""
    if measure in ev.ABSOLUTE_MEASURES:
        return "no control-arm risks"
    if measure in CONTINUOUS_MEASURES:
        return "not applicable (continuous outcome)"
    return "not applicable (no arm-level risks)"


def _sof_row(r: Mapping[str, str], ratings: Sequence = ()) -> list[str]:
    """The cells of one summary-of-findings row (``r``: the CSV row, text cells)."""
    measure = _text(r["measure"])
    question = "; ".join(f"{name}: {_text(r.get(key, ''))}" for name, key in (
        ("vs", "comparator"), ("naltrexone", "formulation"), ("time", "time_frame"))
        if _text(r.get(key, "")))
    outcome = (tag("a", esc(r["outcome"]), href="#" + _anchor(r["analysis"])) +
               tag("div", esc(question), class_="muted") +
               tag("div", esc(SHOWN_MEASURE_NAMES.get(measure, measure)), class_="muted"))
    pooled = _finite(r["estimate"])
    k, studies_n = _float(r["k"]), _float(r["studies"])
    events = f"; {_count(r['events'])} events" if _finite(r["events"]) else ""
    comparisons = (f" ({num(k, 0)} comparisons)" if math.isfinite(k) and math.isfinite(studies_n)
                   and k != studies_n else "")
    studies = esc(f"{num(studies_n, 0)} {'study' if studies_n == 1 else 'studies'}{comparisons}") + \
        "<br>" + tag("span", esc(f"{_count(r['participants'])} participants{events}"), class_="muted")
    rel = (esc(f"{measure} {num(r['estimate'])}") + "<br>" +
           esc(f"({num(r['ci_lb'])} to {num(r['ci_ub'])})") +
           tag("div", esc(_text(r.get("model", ""))), class_="muted") +
           _bayes_line(r, measure) + _tsa_line(r) if pooled
           else tag("span", esc(r["status"]), class_="muted"))
    if pooled and _finite(r["acr_per_1000"]):
        absolute = "<br>".join([
            esc(f"Without naltrexone: {num(r['acr_per_1000'], 0)} per 1000"),
            esc(f"With naltrexone: {num(r['cr_per_1000'], 0)} per 1000 "
                f"({num(r['cr_lb_per_1000'], 0)} to {num(r['cr_ub_per_1000'], 0)})"),
            tag("strong", esc(f"{_per_1000(r['ard_per_1000'])} per 1000")) + " " +
            esc(f"(from {_per_1000(r['ard_lb_per_1000'])} to {_per_1000(r['ard_ub_per_1000'])})"),
            tag("span", esc("Control risk: " + _text(r.get("control_risk_source", ""))),
                class_="muted")])
        nnt = (esc(f"{r['nnt_kind']} {num(r['nnt'], 0)}") + "<br>" +
               tag("span", esc(f"({r['nnt_ci']})"), class_="muted")) if _text(r["nnt_kind"]) \
            else "no difference"
    elif pooled:
        absolute, nnt = tag("span", esc(_no_absolute(measure)), class_="muted"), DASH
    else:
        absolute, nnt = DASH, DASH
    i2q = (f" (from Q: {num(r['I2_q_pct'], 0)}%)" if _finite(r.get("I2_q_pct", ""))
           and num(r["I2_q_pct"], 0) != num(r["I2_pct"], 0) else "")
    pi = (esc(f"PI {num(r['pi_lb'])} to {num(r['pi_ub'])}") if _finite(r["pi_lb"])
          else tag("span", esc("no PI (k < 3)" if _float(r["k"]) < 3 else "no PI"), class_="muted"))
    het = (esc(f"I\u00b2 = {num(r['I2_pct'], 0)}%{i2q}") + "<br>" + pi if pooled else DASH)
    low = (f"{num(r['low_confidence_weight_pct'], 0)}%" if _finite(r["low_confidence_weight_pct"])
           else "NA")
    flags = tag("ul", "".join(tag("li", esc(f"{name}: ") + _flag(r[key])) for name, key in (
        ("Imprecision", "imprecision"), ("Inconsistency", "inconsistency"),
        ("Small-study effects", "small_study_effects"))) +
        tag("li", esc(f"Weight from low-confidence rows: {low}")), class_="flags")
    return [outcome, studies, rel, absolute, nnt, het, flags, _certainty_cell(r, ratings)]


def _bayes_line(r: Mapping[str, str], measure: str) -> str:
    """"Bayesian: P(benefit) 98%; P(RR < 0.9) 84%" from the SoF row (nothing without a model)."""
    if not _finite(r.get("prob_benefit_pct", "")):
        return ""
    text = f"Bayesian: P(benefit) {num(r['prob_benefit_pct'], 0)}%"
    if _finite(r.get("threshold", "")) and _finite(r.get("prob_beyond_threshold_pct", "")):
        text += f"; P(beyond {measure} {num(r['threshold'])}) {num(r['prob_beyond_threshold_pct'], 0)}%"
    return tag("div", esc(text), class_="muted bayes")


def _change_line(change: Mapping | None) -> str:
    """"Changed in evidence version 3 (2026-01-02): rows added ...; k 6 -> 7; RR 0.83 -> 0.80"."""
    if not change:
        return ""
    c = change["change"]
    before, after = c.get("before") or {}, c.get("after") or {}
    bits = [f"rows {kind}: {', '.join(ids)}" for kind, ids in (c.get("rows") or {}).items() if ids]
    for key, label in (("k", "k"), ("estimate", _text(c.get("measure", "")))):
        if before.get(key) is not None or after.get(key) is not None:
            digits = 0 if key == "k" else 2
            if num(before.get(key), digits) != num(after.get(key), digits):
                bits.append(f"{label} {num(before.get(key), digits)} \u2192 "
                            f"{num(after.get(key), digits)}")
    bits += [ch.FLAG_WORDS[f] for f in c.get("flags", ()) if f in ch.FLAG_WORDS]
    text = (f"Changed in evidence version {change['version']} ({change['date']}): "
            + "; ".join(bits) + ".")
    return tag("p", esc(text) + " " + tag("a", "Changelog", href="changelog.md"),
               class_="muted change")


def _tsa_line(r: Mapping[str, str]) -> str:
    """The information size and the TSA's conclusion, from the SoF row (nothing without a TSA)."""
    text = _text(r.get("information_size", ""))
    return tag("div", esc("TSA: " + text), class_="muted tsa") if text else ""


def _tsa_block(row: Mapping | None, figures: Mapping[str, Path], title: str,
               link_from: Path | None) -> str:
    """The trial sequential analysis of one analysis (``tsa.csv``) and its figure."""
    if row is None:
        return ""
    m = _text(row["measure"])
    size = (f"control risk {num(row['control_risk'], 3)}, relative risk reduction "
            f"{num(100 * _float(row['rrr']), 0)}%" if _finite(row["rrr"])
            else f"minimal important difference {num(row['mid'])}")
    cells = [("Settings", f"{size}; alpha {num(row['alpha'], 3)}, beta {num(row['beta'], 3)}; "
                          f"{_text(row['spending'])}-type alpha spending"),
             ("Required information size (D\u00b2-adjusted)",
              f"{num(row['ris'], 0)} participants (D\u00b2 = {num(row['d2_pct'], 0)}%)"),
             ("Accrued", f"{num(row['n_accrued'], 0)} participants ({num(row['ris_pct'], 0)}% "
                         "of the RIS)"),
             ("Final z and its boundary", f"{num(row['z_final'])} (boundary \u00b1"
                                          f"{num(row['boundary_final'])})"),
             ("Boundary crossed", _text(row["crossed"]) or "none"),
             (f"TSA-adjusted 95% CI ({m})",
              f"{num(row['ci_adjusted_low'])} to {num(row['ci_adjusted_high'])}"),
             ("Conclusion", _text(row["conclusion"]))]
    body = _table([("Quantity", ""), ("Value", "")], [[esc(a), esc(b)] for a, b in cells])
    figure = _figure(figures["tsa"], "tsa", title, link_from) if "tsa" in figures else ""
    return tag("h4", "Trial sequential analysis") + body + figure


def _bayes_block(row: Mapping | None, figures: Mapping[str, Path], title: str,
                 link_from: Path | None) -> str:
    """The Bayesian random-effects model of one analysis (``bayes.csv``) and its figures."""
    if row is None:
        return ""
    m = _text(row["measure"])
    cells = [("Priors", f"tau ~ {_text(row['tau_prior'])}; mu ~ {_text(row['mu_prior'])}"),
             (f"Overall effect ({m}), posterior median (95% CrI)",
              interval(row["mu_median"], row["mu_cri_lb"], row["mu_cri_ub"])),
             ("Frequentist estimate (95% CI)",
              interval(row["freq_estimate"], row["freq_ci_lb"], row["freq_ci_ub"])),
             ("Between-trial SD tau (95% CrI)",
              interval(row["tau_median"], row["tau_cri_lb"], row["tau_cri_ub"], 3)),
             (f"Effect in a new trial ({m}), 95% CrI",
              f"{num(row['pred_cri_lb'])} to {num(row['pred_cri_ub'])}"),
             ("Probability that naltrexone is beneficial", f"{num(row['prob_benefit_pct'], 1)}%")]
    if _finite(row.get("threshold", "")):
        cells.append((f"Probability of an effect beyond {m} {num(row['threshold'])}",
                      f"{num(row['prob_beyond_threshold_pct'], 1)}%"))
    body = _table([("Quantity", ""), ("Value", "")], [[esc(a), esc(b)] for a, b in cells])
    figs = "".join(_figure(figures.get(k), k, title, link_from)
                   for k in ("bayes_posterior", "bayes_forest") if k in figures)
    return tag("h4", "Bayesian random-effects model") + body + figs


def _ratings(rows: pd.DataFrame) -> list:
    """The GRADE ratings of one SoF row, as ``certainty.csv`` holds them."""
    return [grade.Rating(_text(r["domain"]), int(_float(r["levels"])), _text(r["reason"]),
                         _truthy(r["override"]),
                         int(_float(r["rule_levels"])) if _finite(r["rule_levels"]) else None,
                         _text(r["rule_reason"])) for r in rows.to_dict("records")]


def _certainty_cell(r: Mapping[str, str], ratings: Sequence) -> str:
    """GRADE certainty (symbols, label, footnote letters), the statement and the footnotes
    (written from the ratings by :func:`ntxmeta.grade.footnote`, as the tables step wrote them)."""
    notes = [n for n in map(grade.footnote, ratings) if n]
    return (tag("div", esc(_text(r.get("certainty", ""))), class_="certainty") +
            tag("div", esc(_text(r.get("statement", "")))) +
            (tag("details", tag("summary", "Footnotes") +
                 tag("ol", "".join(tag("li", esc(n)) for n in notes), class_="footnotes"))
             if notes else ""))


def _sof_tables(sof: pd.DataFrame, certainty: pd.DataFrame) -> str:
    """The summary of findings (``summary_of_findings.csv``), one table per indication, in its row order."""
    if sof.empty:
        return tag("p", "No analysis has results yet.", class_="muted")
    head = [("Outcome", ""), ("Studies", ""), ("Relative effect (95% CI)", ""),
            ("Anticipated absolute effects (95% CI)", ""), ("NNT (95% CI)", ""),
            ("Heterogeneity", ""), ("Flags", "flags"), ("Certainty of the evidence (GRADE)", "")]
    parts = []
    for ind, block in sof.groupby("indication", sort=False):
        rows = [_sof_row(r, _ratings(_rows_of(certainty, r["analysis"])))
                for r in block.to_dict("records")]
        parts.append(tag("h3", esc(indication_name(ind)),
                         id="sof-" + re.sub(r"[^a-z0-9_-]", "-", str(ind).lower())))
        parts.append(_table(head, rows, cls="sof", widths=SOF_WIDTHS_PCT))
    return "".join(parts)


SOF_NOTES = (
    "Binary outcomes count bad events (relapse, heavy drinking, use); favourable events were "
    "replaced by their complement, so a ratio below 1 favours naltrexone. Continuous outcomes "
    "are standardised mean differences in which a negative value favours naltrexone.",
    "Risk without naltrexone: the median risk of the control arms of the pooled studies. "
    "Risk with naltrexone: that risk combined with the pooled relative effect and its CI "
    "(RR: multiplied; OR: through the odds). Difference = risk with minus risk without, per 1000.",
    "NNT: number needed to treat for one more patient to benefit (NNTB) or be harmed (NNTH), "
    "rounded up; when the CI of the difference includes 0 its CI runs from NNTB through "
    "\u221e to NNTH (Altman, BMJ 1998;317:1309).",
    "Certainty of the evidence (GRADE): \u2295\u2295\u2295\u2295 high, \u2295\u2295\u2295\u25ef "
    "moderate, \u2295\u2295\u25ef\u25ef low, \u2295\u25ef\u25ef\u25ef very low; randomised "
    "trials start high and are rated down by the rules of the methods section; the footnotes "
    "give every reason and every reviewer override. The statements use GRADE's standard "
    "wording (Santesso et al., J Clin Epidemiol 2020;119:126).",
    "Imprecision: CI includes no effect, or fewer than 300 events (400 participants for "
    "continuous outcomes). Inconsistency: I\u00b2 above 50% or a prediction interval (PI) that "
    "includes no effect while the CI does not. Small-study effects: Egger's test p < 0.10, assessed only with 10 or "
    "more studies. These flags are computed, not judged: they point a reviewer to what to read.",
)


# --------------------------------------------------------------------------- one analysis


def _measure_name(result: AnalysisResult) -> str:
    """"Risk ratio", "Standardised mean difference", "Ratio" (a generic analysis of log ratios)..."""
    return result.scale.axis_label.removesuffix(" (log scale)")


def _participants(result: AnalysisResult) -> str:
    if result.k_used == 0:
        return "none (no pooled rows)"
    if result.participants <= 0:
        return "not reported (effect sizes only)"
    return _count(result.participants)


def _status_box(result: AnalysisResult) -> str:
    if result.status == "pooled":
        return ""
    failed = (tag("ul", "".join(tag("li", esc(f)) for f in result.failed))
              if result.failed else "")
    return tag("div", tag("p", esc(result.status)) + failed, class_="status")


def _stats_block(result: AnalysisResult) -> str:
    """k, participants, the pooled estimate (shown scale), PI, heterogeneity, model, common effect."""
    show = result.scale.show
    k = f"{result.k_used}" + (f" of {result.k_rows} rows" if result.k_rows != result.k_used else "")
    items = [("Studies (k)", esc(k)), ("Participants", esc(_participants(result)))]
    fit = result.main
    if fit is None:
        if result.status == "pooled":     # otherwise the status box says why
            items.append(("Pooled estimate", esc("not available")))
        return tag("dl", "".join(tag("dt", esc(a)) + tag("dd", b) for a, b in items), class_="stats")
    level = _level(fit.level)
    t = fit.test_stat
    stat = f"{t.name} = {num(t.statistic)}" + (f" (df = {num(t.df, 0)})" if t.df is not None else "")
    if fit.pi is not None:
        pi = f"{num(show(fit.pi.low))} to {num(show(fit.pi.high))}"
    else:
        pi = "not computed" + (f" (k < {PI_MIN_K})" if fit.k < PI_MIN_K else "")
    het = fit.heterogeneity
    items += [
        (f"Pooled {_measure_name(result).lower()} ({level}% CI)",
         esc(interval(show(fit.estimate), show(fit.ci.low), show(fit.ci.high))) +
         esc(f"; {stat}, {p_is(t.pval)}")),
        (f"{level}% prediction interval", esc(pi)),
    ]
    if het is not None:
        items.append(("Heterogeneity", esc(
            f"\u03c4\u00b2 = {num(het.tau2, 4)}, I\u00b2 = {num(het.i2_pct, 0)}%, "
            f"Q = {num(het.q)} (df = {het.q_df}, {p_is(het.q_pval)})")))
    items.append(("Model", esc(model_words(fit.model, fit.test))))
    if result.common is not None:
        c = result.common
        items.append(("Common-effect estimate",
                      esc(interval(show(c.estimate), show(c.ci.low), show(c.ci.high)))))
    return tag("dl", "".join(tag("dt", esc(a)) + tag("dd", b) for a, b in items), class_="stats")


def _arm(r: Mapping, arm: str) -> str:
    e, n = r.get(f"events_{arm}"), r.get(f"n_{arm}")
    m, sd = r.get(f"mean_{arm}"), r.get(f"sd_{arm}")
    if _finite(e) and _finite(n):
        return f"{num(e, 0)}/{num(n, 0)}"
    if _finite(m) and _finite(sd) and _finite(n):
        return f"{num(m)} ({num(sd)}), n = {num(n, 0)}"
    return DASH


def _study_table(result: AnalysisResult, effects: pd.DataFrame) -> str:
    """One row per effects row: arms, effect and CI (shown scale), the main model's weight, provenance."""
    if effects.empty:
        return tag("p", "No study rows.", class_="muted")
    show = result.scale.show
    weights, used = result.weights_pct, result.used
    head = [("Study", ""), ("Naltrexone", "num"), ("Control", "num"),
            (f"{result.scale.name} ({_level(result.level)}% CI)", "num"), ("Weight", "num"),
            ("Confidence", ""), ("Source and quote", "")]
    rows = []
    for i, r in enumerate(effects.to_dict("records")):
        effect = interval(*(show(_float(r.get(c))) for c in ("yi", "ci_lb", "ci_ub")))
        year = _float(r.get("year"))
        year_txt = num(year, 0) if math.isfinite(year) else ""
        year = f" ({year_txt})" if year_txt and year_txt not in _text(r.get("label")) else ""
        quote_text = _text(r.get("quote"))
        label = tag("span", esc(f"{_text(r.get('label'))}{year}"), title=quote_text or None)
        marks = []
        if not used[i]:
            why = _text(r.get("exclusion_reason")).strip()
            marks.append(f"not pooled: {why}" if why else "not pooled (no usable effect size)")
        if _truthy(r.get("derived")):
            marks.append("numbers derived")
        if _truthy(r.get("flipped")):
            marks.append("favourable events flipped to their complement")
        extra = tag("div", esc("; ".join(marks)), class_="muted") if marks else ""
        derived_text = _text(r.get("derived_text")).strip()
        src = tag("details",
                  tag("summary", "Source") +
                  tag("blockquote", esc(quote_text) if quote_text
                      else tag("span", "no quote recorded", class_="muted")) +
                  tag("div", linkify(r.get("source")), class_="source") +
                  (tag("div", esc(f"how derived: {derived_text}"), class_="muted source")
                   if derived_text else "") +
                  tag("div", esc(f"raw row: {_text(r.get('row_id'))}"), class_="muted source"))
        weight = f"{num(weights[i], 1)}%" if used[i] and math.isfinite(weights[i]) else DASH
        rows.append([label + extra, esc(_arm(r, "treat")), esc(_arm(r, "ctrl")), esc(effect),
                     esc(weight), esc(r.get("confidence", "")), src])
    return _table(head, rows, cls="studies")


def _frame_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """A table from a DataFrame of table cells: (column, header, format); format is "text",
    "nowrap" (text kept on one line), "p" or a number of decimals."""
    head = [(h, {"text": "", "nowrap": "nowrap"}.get(f, "num")) for _, h, f in columns]
    rows = []
    for r in frame.to_dict("records"):
        cells = []
        for col, _, f in columns:
            v = r.get(col)
            if f in ("text", "nowrap"):
                cells.append(esc(_text(v)))
            elif f == "p":
                cells.append(esc(pval(v) if _finite(v) else ""))
            else:
                cells.append(esc(num(v, int(f)) if _finite(v) else ""))
        rows.append(cells)
    return _table(head, rows)


def _with_interval(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["effect"] = [interval(e, a, b) if _finite(e) else "" for e, a, b in
                     zip(out["estimate"], out["ci_lb"], out["ci_ub"])]
    return out


def _sensitivity_block(sens: pd.DataFrame, result: AnalysisResult) -> str:
    """The analysis's rows of ``sensitivity.csv``."""
    if sens.empty or not any(_finite(v) for v in sens["estimate"]):
        if result.k_used < 2:
            return tag("p", esc(f"Not computed: sensitivity analyses need at least two studies "
                                f"(k = {result.k_used})."), class_="muted")
        if sens.empty:
            return tag("p", "No sensitivity analyses.", class_="muted")
    return _frame_table(_with_interval(sens), [
        ("description", "Analysis", "text"), ("model", "Model", "text"),
        ("measure", "Measure", "nowrap"), ("k", "k", "0"),
        ("effect", "Estimate (95% CI)", "nowrap"),
        ("tau2", "\u03c4\u00b2", "3"), ("I2_pct", "I\u00b2 (%)", "0"), ("note", "Note", "text")])


def _subgroup_block(sub: pd.DataFrame) -> str:
    """The analysis's rows of ``subgroups.csv`` (nothing when it has no subgroups)."""
    if sub.empty:
        return ""
    col = _text(sub["subgroup"].iloc[0])
    return tag("h4", esc(f"Subgroups by {col}" if col else "Subgroups")) + _frame_table(
        _with_interval(sub),
        [("level", "Subgroup", "text"), ("k", "k", "0"), ("effect", "Estimate (95% CI)", "nowrap"),
         ("I2_pct", "I\u00b2 (%)", "0"), ("statistic", "Statistic", "2"), ("df", "df", "nowrap"),
         ("pval", "p", "p"), ("note", "Note", "text")])


def _small_study_block(row: Mapping | None) -> str:
    """The analysis's row of ``small_study_effects.csv``."""
    if row is None:
        return tag("p", "not available", class_="muted")
    if not _truthy(row.get("assessed")):
        return tag("p", esc(f"Small-study effects: {_text(row.get('note')) or ev.NOT_ASSESSED}."),
                   class_="muted")
    k0 = _float(row["trimfill_k0"])
    items = [
        ("Egger (random-effects regression on SE)", f"z = {num(row['egger_z'])}, {p_is(row['egger_p'])}"),
        ("Egger (classic, weighted regression)",
         f"t = {num(row['egger_classic_t'])} (df = {num(row['egger_classic_df'], 0)}), "
         f"{p_is(row['egger_classic_p'])}"),
        ("Begg rank correlation", f"Kendall \u03c4 = {num(row['begg_tau'], 3)}, {p_is(row['begg_p'])}"),
        *[(name, f"t = {num(row[f'{key}_t'])}, {p_is(row[f'{key}_p'])}")
          for name, key in (("Harbord (score test, 2x2 tables)", "harbord"),
                            ("Peters (log OR on 1/N, 2x2 tables)", "peters"))
          if _finite(row.get(f"{key}_t", ""))],
        ("Trim-and-fill",
         f"{num(k0, 0)} {'study' if k0 == 1 else 'studies'} filled "
         f"({_text(row['trimfill_side']) or 'NA'} side); adjusted estimate "
         f"{interval(row['trimfill_estimate'], row['trimfill_ci_lb'], row['trimfill_ci_ub'])}"),
    ]
    body = "".join(tag("dt", esc(a)) + tag("dd", esc(b)) for a, b in items)
    note = tag("p", esc(row["note"]), class_="notes") if _text(row.get("note")) else ""
    return tag("dl", body, class_="stats") + note


def _slope(reg: MetaRegression):
    """The moderator's coefficient (by name, else the one coefficient that is no intercept)."""
    slope = next((c for c in reg.coefficients if c.name == reg.moderator), None)
    if slope is None:
        others = [c for c in reg.coefficients if c.name not in INTERCEPTS]
        slope = others[0] if len(others) == 1 else None
    return slope


def _metareg_block(result: AnalysisResult) -> str:
    """``result.metaregression``: the slope per moderator (and, for a ratio, per-unit ratio), QM, tau^2, R^2."""
    if not result.metaregression:
        return ""
    scale = result.scale
    log = scale.log
    rows = []
    for reg in result.metaregression:
        slope = _slope(reg)
        if slope is None:
            why = reg.note or ("not computed" if not reg.coefficients else "more than one slope")
            rows.append([esc(reg.moderator), esc(reg.k)] + [""] * (6 if log else 5) +
                        [esc(model_words(reg.model, reg.test)), esc(why)])
            continue
        cells = [esc(reg.moderator), esc(reg.k), esc(interval(slope.estimate, slope.ci.low,
                                                               slope.ci.high, 4))]
        if log:
            cells.append(esc(interval(scale.show(slope.estimate), scale.show(slope.ci.low),
                                      scale.show(slope.ci.high), 3)))
        qm = (f"{reg.qm.name} = {num(reg.qm.statistic)} (df = {num(reg.qm.df, 0)})"
              if reg.qm is not None else "NA")
        cells += [esc(pval(slope.test_stat.pval)), esc(num(reg.tau2, 4)), esc(num(reg.r2_pct, 0)),
                  esc(qm), esc(model_words(reg.model, reg.test)), esc(reg.note)]
        rows.append(cells)
    level = _level(result.metaregression[0].level)
    head = [("Moderator", ""), ("k", "num"),
            (f"Slope{f' (log {scale.name})' if log else ''} ({level}% CI)", "num")]
    if log:
        head.append((f"{scale.name} ratio per unit ({level}% CI)", "num"))
    head += [("p", "num"), ("Residual \u03c4\u00b2", "num"), ("R\u00b2 (%)", "num"),
             ("Omnibus test", "nowrap"), ("Model", ""), ("Note", "")]
    note = "Change in the effect per unit of the moderator"
    if log:
        note += (f" (slope on the log scale; exp(slope), the {scale.name} ratio per unit, is the "
                 f"factor by which the {scale.name} changes per unit of the moderator)")
    return tag("h4", "Meta-regression") + tag("p", esc(note + "."), class_="notes") + _table(head, rows)


def _rows_of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table[table["analysis"] == name]


def _left_out_block(left_out: pd.DataFrame | None) -> str:
    """The rows the analysis's filters match but it does not use, each with its reason."""
    if left_out is None or left_out.empty:
        return ""
    rows = [[esc(_text(r["label"]) or _text(r["row_id"])), esc(_text(r["outcome"])),
             esc(_text(r["exclusion_reason"]) or "not used")] for r in left_out.to_dict("records")]
    return tag("details", tag("summary", esc(f"Matched by the filters but not used ({len(rows)})"))
               + _table([("Row", ""), ("Outcome", ""), ("Why not used", "")], rows),
               class_="left-out")


def _certainty_block(rows: pd.DataFrame) -> str:
    """The GRADE ratings of one analysis, a domain a row (only analyses in the SoF have them)."""
    if rows.empty:
        return ""
    body = [[esc(grade.DOMAINS.get(_text(r["domain"]), _text(r["domain"]))),
             esc(num(r["levels"], 0)),
             esc(_text(r["reason"])) + (tag("div", esc(
                 f"Reviewer override; the rule rated down {num(r['rule_levels'], 0)}: "
                 f"{_text(r['rule_reason'])}"), class_="muted") if _truthy(r["override"]) else "")]
            for r in rows.to_dict("records")]
    return tag("h4", "Certainty of the evidence (GRADE)") + _table(
        [("Domain", ""), ("Levels rated down", "num"), ("Why", "")], body, cls="certainty")


#: Figure kinds shown inside their own section of an analysis, not under "More figures".
IN_SECTIONS = ("bayes_posterior", "bayes_forest", "tsa")


def _analysis_section(plan: AnalysisPlan, result: AnalysisResult, effects: pd.DataFrame,
                      tables: Mapping[str, pd.DataFrame], figures: Mapping[str, Path],
                      link_from: Path | None, left_out: pd.DataFrame | None = None,
                      change: Mapping | None = None) -> str:
    name, title = result.name, result.title
    ind = ev._indication(plan.filter_values("indication"), effects)
    parts = [tag("h3", esc(title)),
             tag("p", esc(f"{indication_name(ind)} \u00b7 {_measure_name(result)} \u00b7 "
                          f"analysis '{name}'"), class_="muted"),
             _status_box(result),
             _change_line(change),
             _stats_block(result),
             _figure(figures.get("forest"), "forest", title, link_from),
             tag("h4", "Studies") + _study_table(result, effects),
             _left_out_block(left_out),
             tag("h4", "Sensitivity analyses") +
             _sensitivity_block(_rows_of(tables["sensitivity"], name), result),
             _subgroup_block(_rows_of(tables["subgroups"], name))]
    ss = _rows_of(tables["small_study_effects"], name)
    parts.append(tag("h4", "Small-study effects") +
                 _small_study_block(ss.iloc[0].to_dict() if len(ss) else None))
    parts.append(_metareg_block(result))
    parts.append(_certainty_block(_rows_of(tables["certainty"], name)))
    tsa = _rows_of(tables["tsa"], name)
    parts.append(_tsa_block(tsa.iloc[0].to_dict() if len(tsa) else None, figures, title, link_from))
    bayes = _rows_of(tables["bayes"], name)
    parts.append(_bayes_block(bayes.iloc[0].to_dict() if len(bayes) else None, figures, title,
                              link_from))
    more = [_figure(path, key.partition(":")[0], title, link_from) for key, path in figures.items()
            if key not in ("forest",) + IN_SECTIONS]
    if more:
        parts.append(tag("details", tag("summary", esc(f"More figures ({len(more)})")) + "".join(more)))
    return tag("article", "".join(parts), id=_anchor(name))


# --------------------------------------------------------------------------- the page


#: How each method preset is described in the methods section.
PRESET_TEXT = {
    "cochrane2025": (
        "Random-effects models follow Cochrane's current methods (endorsed 2022, in RevMan since "
        "January 2025): the between-study variance \u03c4\u00b2 by restricted maximum likelihood "
        "(REML); the confidence interval of the pooled effect by Hartung-Knapp-Sidik-Jonkman, "
        "with the ad hoc variance floor (the interval is never narrower than the Wald interval; "
        "Knapp & Hartung 2003, R\u00f6ver et al. 2015; metafor test=\"adhoc\"); prediction "
        "intervals from a t distribution with k \u2212 1 degrees of freedom."),
    "revman5": (
        "Random-effects models follow RevMan 5 (Cochrane Handbook 5.1, 9.4.3.1 and 9.5.4): "
        "DerSimonian-Laird \u03c4\u00b2, Wald z intervals, prediction intervals from a t "
        "distribution with k \u2212 2 degrees of freedom."),
    "metafor": (
        "Random-effects models use R metafor's defaults: REML \u03c4\u00b2, Wald z intervals and "
        "z-based prediction intervals."),
}
METHODS_TEXT = (
    "Effect sizes and every model are computed as R's metafor 3.8-1 computes them (checked "
    "against it on public datasets). Ratio measures are pooled on the log scale and shown "
    "back-transformed.",
    "Each main analysis answers one question: one comparator class (placebo; usual care or no "
    "medication; an active drug), so no pooled number mixes them; a plot whose subgroups are "
    "comparator classes shows no overall estimate. Where a trial gives several rows for the same "
    "patients, the outcome hierarchy of the configuration chooses one (intention to treat with "
    "missing counted as events first, the trial's primary outcome first, end of treatment before "
    "follow-up); post-hoc subgroups are left out; rows with an unresolved sample-size conflict "
    "enter a sensitivity analysis only.",
    "Two studies get no random-effects estimate (their common-effect estimate is shown); no "
    "prediction interval is given for fewer than three studies. I\u00b2 is shown from the model "
    "(\u03c4\u00b2-based) and from Cochran's Q, and inconsistency is flagged when either exceeds "
    "50% or Q has p < 0.10.",
    "Sensitivity analyses refit the main model with other estimators (DerSimonian-Laird, "
    "Paule-Mandel), the Wald and Hartung-Knapp tests, common-effect models (inverse variance, "
    "Mantel-Haenszel, Peto), without low-confidence or derived rows, and with each study left "
    "out in turn (the lowest and highest estimates are shown).",
    "Every pooled analysis also gets an exact Bayesian random-effects model (the normal-normal "
    "hierarchical model, integrated numerically as R's bayesmeta does, not by MCMC): by default "
    "a half-normal prior with scale 0.5 on the between-trial SD \u03c4 of log ratios and SMDs "
    "(0.1 for risk differences) and a flat prior on the overall effect; the report gives the "
    "posterior median and 95% credible interval, the probability that naltrexone is "
    "beneficial (the overall effect on its side of no effect) and that the effect passes the "
    "configured threshold (RR 0.9, SMD \u22120.2).",
    "Each main analysis of a binary outcome, and of an SMD with a minimal important difference, "
    "gets a trial sequential analysis (Wetterslev et al. 2008; the Copenhagen TSA manual, "
    "Thorlund et al. 2011): the required information size from the median control-arm risk, a "
    "relative risk reduction of 20%, alpha 5% and beta 20%, adjusted for the diversity D\u00b2 "
    "of the meta-analysis; Lan-DeMets O'Brien-Fleming-type alpha-spending boundaries and "
    "beta-spending futility boundaries on the cumulative z-curve of the trials in chronological "
    "order, with the analysis's own standard errors (Hartung-Knapp), and boundaries never "
    "below the analysis's own critical value (t with k \u2212 1 df; past the information "
    "size, that value); the TSA-adjusted CI uses the boundary at the information accrued.",
    "Subgroup differences are tested as RevMan does (Chi\u00b2 between the separate subgroup "
    "estimates, with its I\u00b2), and with a mixed-effects model sharing one \u03c4\u00b2 "
    "(footnote). Meta-regression and small-study effects (Egger's regression test, Begg's rank "
    "correlation, trim-and-fill) need 10 or more studies (Cochrane Handbook 10.11.5.1; Sterne "
    "et al., BMJ 2011;343:d4002).",
)


#: The GRADE rules (ntxmeta.grade), as the methods section lists them.
GRADE_RULES = (
    ("Risk of bias", f"rated down two levels when trials at high risk (RoB 2 overall) carry at "
     f"least {grade.ROB_HIGH_SERIOUS_PCT:.0f}% of the weight; one level when they carry more than "
     f"{grade.ROB_HIGH_PCT:.0f}% (Pollock et al. 2016), or when trials not at low risk - some "
     f"concerns, high, or not assessed - carry more than {grade.ROB_MAJORITY_PCT:.0f}% (CINeMA's "
     "majority rule). A trial nobody assessed counts as not at low risk."),
    ("Inconsistency", f"one level when I\u00b2 (from the model or from Q) exceeds "
     f"{grade.I2_SERIOUS_PCT:.0f}%, Q has p < {grade.Q_ALPHA:.2f}, or the prediction interval "
     f"includes no effect while the CI does not; two when I\u00b2 exceeds "
     f"{grade.I2_VERY_SERIOUS_PCT:.0f}% and trials' CIs lie on opposite sides of no effect; not "
     "assessable with one trial."),
    ("Indirectness", f"one level when rows flagged indirect in one domain (population, "
     f"intervention, comparator, outcome) carry at least {grade.INDIRECT_PCT:.0f}% of the weight, "
     "two when two domains do. Flags come from the trial tables' indirectness column and from "
     f"design facts: an oral dose other than {grade.LICENSED_ORAL_MG:g} mg a day, a combination "
     "with another active drug."),
    ("Imprecision", "two levels when the CI includes both minimal important differences "
     "(appreciable benefit and harm); one when it includes no effect, or when the optimal "
     f"information size is not met ({grade.OIS_EVENTS} events, {grade.OIS_PARTICIPANTS} "
     "participants for continuous outcomes; GRADE 6, GRADE 34)."),
    ("Publication bias", f"one level when a small-study test (Harbord's for 2x2 tables, else "
     f"Egger's) has p < {grade.SMALL_STUDY_ALPHA:.2f} with at least {grade.SMALL_STUDY_MIN_K} "
     "trials; not assessable with fewer."),
)


def _grade_methods(config: Config) -> str:
    """The GRADE rules, the minimal important differences and every reviewer override."""
    rules = tag("ul", "".join(tag("li", tag("strong", esc(d + ": ")) + esc(t)) for d, t in GRADE_RULES))
    mids = sorted({(p.measure, p.mid) for p in config.analyses.values() if p.main and p.mid})
    mid_text = ("Minimal important differences: " + "; ".join(
        f"{m} {lo:g} and {hi:g}" for m, (lo, hi) in mids) + "." if mids else
        "No minimal important difference is configured: imprecision is judged against no effect.")
    overrides = [(n, d, lv, why) for n, p in config.analyses.items() for d, lv, why in p.grade_overrides]
    over = (tag("ul", "".join(tag("li", esc(f"{n}, {grade.DOMAINS.get(d, d).lower()}: rated down "
                                             f"{lv} level(s): {why}")) for n, d, lv, why in overrides))
            if overrides else tag("p", esc("Reviewer overrides: none (every rating is the rule's).")))
    return (tag("h3", "Certainty of the evidence (GRADE)", id="grade") +
            tag("p", esc("Randomised trials start at high certainty; each domain is rated down by a "
                         "written rule (src/ntxmeta/grade.py), and a reviewer may override a "
                         "rating in the configuration (grade.overrides), with the reason, shown "
                         "beside what the rule gave:")) + rules + tag("p", esc(mid_text)) +
            (tag("h4", "Reviewer overrides") if overrides else "") + over)


def _methods(config: Config, published: pd.DataFrame | None) -> str:
    """The methods section: the preset in words, the rules, GRADE, and the published comparison."""
    presets = sorted({p.options.preset for p in config.analyses.values()})
    text = [PRESET_TEXT[p] for p in presets if p in PRESET_TEXT] + list(METHODS_TEXT)
    out = "".join(tag("p", esc(t)) for t in text) + _grade_methods(config)
    if published is not None and not published.empty:
        head = [("Our analysis", ""), ("Published review", ""), ("Published estimate", "num"),
                ("Ours", "num"), ("Why they differ", "")]
        rows = []
        for r in published.to_dict("records"):
            pub = (f"{_text(r['published_measure'])} {num(r['published_estimate'])}"
                   + (f" ({num(r['published_ci_lb'])} to {num(r['published_ci_ub'])})"
                      if _finite(r["published_ci_lb"]) else ""))
            ours = (f"{_text(r['measure'])} {num(r['estimate'])} ({num(r['ci_lb'])} to "
                    f"{num(r['ci_ub'])}), {num(r['studies'], 0)} trials"
                    if _finite(r["estimate"]) else f"not pooled ({num(r['studies'], 0)} trials)")
            rows.append([esc(_text(r["analysis"])),
                         esc(f"{_text(r['review'])}: {_text(r['outcome'])}"),
                         esc(pub), esc(ours), esc(_text(r["reason_for_difference"]))])
        out += tag("h3", "Our headline estimates against published reviews", id="published")
        out += _table(head, rows, cls="published")
    return out


#: What the study-selection section says under the PRISMA diagram.
SELECTION_NOTE = (
    "Every count is derived from the screening log (data/screening/records.csv, one row per "
    "source; studies.csv, one row per record with the furthest stage it reached and the reason it "
    "was excluded). The trials are a hand-curated set found with a search tool over web pages and "
    "code, not a systematic search of bibliographic databases: the hits of those searches were "
    "never counted, so the diagram says \u201cnot recorded\u201d for them. The included studies "
    "are exactly the trials of data/raw/*.csv (checked before anything runs). How the log was made "
    "is in data/screening/README.md.")


def _shown_ci(scale: Scale, est: float, lo: float, hi: float) -> str:
    return interval(*(float(scale.show(v)) for v in (est, lo, hi)))


def _joint_block(r, figs: Mapping[str, Path], link_from: Path | None) -> str:
    """One joint model: its estimates, tests, sensitivity and figures (formatting only)."""
    scale = Scale.of(r.measure)
    lvl = _level(r.level)
    parts = [tag("h3", esc(r.title), id=_anchor(r.name)),
             tag("p", esc(f"{r.k} estimates from {r.trials} trials; {r.method}; "
                          + "; ".join(f"{k} = {v:.4f}" for k, v in r.variance.items()) + "."))]
    net = r.kind == "network"
    head = [("Estimate", ""), (f"{scale.name} ({lvl} CI)", "num"), ("p", "num")] + (
        [("Trials with direct evidence", "num")] if net else
        [("Estimates", "num"), ("Trials", "num")])
    rows = [[esc(e.label), _shown_ci(scale, e.estimate, e.ci_low, e.ci_high), pval(e.pval)]
            + ([esc(e.k)] if net else [esc(e.k), esc(e.trials)])
            for e in (r.pairs if net else r.estimates)]
    parts.append(_table(head, rows, caption="Every pair (network estimate)" if net
                        else "The model's estimate at each time point"))
    for t in r.tests.values():
        extra = (f"; {scale.name} " + _shown_ci(scale, t["estimate"], t["ci_low"], t["ci_high"])
                 if "estimate" in t else f"; statistic {num(t['stat'])} on {t['df']} df")
        parts.append(tag("p", esc(f"{t['what']}{extra}, {p_is(t['pval'])}.")))
    if r.kind == "timepoints" and r.sensitivity:
        codes = [c for c in r.sensitivity[0] if c != "rho"]
        head = [("Within-trial correlation", "")] + [(f"{TIMES.get(c, c)} ({lvl} CI)", "num")
                                                    for c in codes]
        rows = [[esc("CR2 cluster-robust (any correlation)" if s["rho"] == "CR2"
                     else f"rho = {s['rho']:g}")]
                + [_shown_ci(scale, *s[c][:3]) for c in codes]
                for s in r.sensitivity]
        parts.append(_table(head, rows, caption="Sensitivity to the assumed correlation"))
    if net:
        rank = sorted(r.ranking, key=lambda x: -x["pscore"])
        parts.append(_table([("Treatment", ""), ("P-score", "num"), ("SUCRA", "num")],
                            [[esc(x["treatment"]), num(x["pscore"]), num(x["sucra"])]
                             for x in rank], caption="Ranking (lower risk is better)"))
        splits = r.node_split
        if splits:
            parts.append(_table(
                [("Comparison", ""), ("Direct", "num"), ("Indirect", "num"), ("p", "num")],
                [[esc(f"{s['treat2']} vs {s['treat1']}"), num(float(scale.show(s["direct"]))),
                  num(float(scale.show(s["indirect"]))), pval(s["pval"])] for s in splits],
                caption="Node-splitting: direct and indirect evidence"))
        cols = [("Trial", "label"), ("Arms", "arms"), ("Population", "population"),
                ("Control", "comparator"), ("Naltrexone", "formulation_detail"),
                ("Dose", "dose_detail"), ("Weeks", "followup_weeks"), ("Outcome", "outcome"),
                ("Counted", "analysis_population")]
        parts.append(_table([(h, "") for h, _ in cols],
                            [[esc(t.get(c, "")) for _, c in cols] for t in r.transitivity],
                            caption="Transitivity: are the trials alike but for the treatments?"))
        if r.league:
            parts.append(_table([("", "")] * len(r.league[0]),
                                [[esc(c) for c in row] for row in r.league],
                                caption="League table: below the diagonal the network estimate "
                                        "of the column vs the row treatment; above it the direct "
                                        "estimate of the row vs the column"))
    parts += [tag("p", esc(n), class_="muted") for n in r.notes]
    parts += [_figure(figs.get(k), k, r.title, link_from) for k in figs]
    return tag("article", "".join(parts), class_="analysis")


def _joint_section(joint: Mapping, figures: Mapping, link_from: Path | None) -> str:
    intro = ("What the pairwise analyses cannot use: every time point of a trial in one "
             "multilevel model (does the effect last after treatment stops?), and networks of "
             "every treatment the trials compare, multi-arm trials whole. Fitted with ntxmeta's "
             "rma.mv, which matches metafor 3.8-1 (tests/fixtures/oracle_mv).")
    return tag("section", tag("h2", "Time points and networks", id="time-points-and-networks")
               + tag("p", esc(intro))
               + "".join(_joint_block(r, figures.get(n, {}), link_from)
                         for n, r in joint.items()))


def _selection_section(path: Path, link_from: Path | None) -> str:
    """The study-selection section: the PRISMA 2020 flow diagram and what its counts rest on."""
    alt = "PRISMA 2020 flow diagram of the study selection"
    img = embed_image(path, alt) if link_from is None else link_image(path, alt, link_from)
    return tag("section", tag("h2", "Study selection", id="study-selection")
               + tag("figure", img + tag("figcaption", esc("PRISMA 2020 flow diagram")))
               + tag("p", esc(SELECTION_NOTE), class_="notes"))


def render_report(results: Mapping[str, AnalysisResult], effects: Mapping[str, pd.DataFrame],
                  tables: Mapping[str, pd.DataFrame], figures: Mapping[str, Mapping[str, Path]],
                  config: Config, *, page_dir: str | Path = ".",
                  inline_max_bytes: int | None = None,
                  left_out: Mapping[str, pd.DataFrame] | None = None,
                  version: Mapping[str, Any] | None = None,
                  prisma: str | Path | None = None,
                  changes: Mapping[str, Mapping] | None = None,
                  changes_figure: str | Path | None = None,
                  joint: Mapping | None = None) -> str:
    """The report page as a string (see the module docstring); formats, computes nothing.

    Parameters
    ----------
    results : mapping of analysis name to AnalysisResult
    effects : mapping of analysis name to DataFrame
        Each analysis's effects table, one row per entry of its result's
        ``weights_pct`` and ``used``.
    tables : mapping of table stem to DataFrame
        The four tables of :data:`TABLE_STEMS`, as :func:`read_table` reads them.
    figures : mapping of analysis name to {kind or "bubble:{moderator}": path}
        As :func:`figure_map` makes it; an analysis without a forest plot
        says so.
    config : Config
        The analyses shown (those with a result), in
        :func:`ntxmeta.evidence.analysis_order`.
    page_dir : path
        The folder the page will be written to: figures too large to inline
        (over ``inline_max_bytes`` in all, default
        :data:`INLINE_FIGURES_MAX_BYTES`) are linked relative to it.
    version : mapping, optional
        The newest evidence version (:func:`ntxmeta.changelog.latest`): the
        header names it and links ``changelog.md`` beside the page.
    changes : mapping of analysis name to mapping, optional
        The newest version that moved each analysis
        (:func:`ntxmeta.changelog.last_changes`), shown in its section.
    prisma : path, optional
        The PRISMA 2020 flow diagram (``results/figures/prisma/prisma.svg``):
        shown in a section "Study selection" before the methods.

    Raises
    ------
    ValueError
        A table missing, or a result whose rows do not match its effects table.
    """
    missing = [s for s in TABLE_STEMS if s not in tables]
    if missing:
        raise ValueError(f"report: evidence table(s) {', '.join(missing)} not given")
    limit = INLINE_FIGURES_MAX_BYTES if inline_max_bytes is None else inline_max_bytes
    order = ev.analysis_order(config, results, effects)
    frames = {n: effects.get(n, pd.DataFrame()) for n in order}
    for n in order:
        if len(results[n].used) != len(frames[n]):
            raise ValueError(f"{n}: result has {len(results[n].used)} rows, effects table "
                             f"{len(frames[n])}; re-run the pool step")
    figs = {n: dict(figures.get(n, {})) for n in order}
    figure_bytes = sum(p.stat().st_size for f in figs.values() for p in f.values())
    link_from = Path(page_dir) if figure_bytes > limit else None
    toc = [tag("li", tag("a", "Summary of findings", href="#summary-of-findings"))]
    toc += [tag("li", tag("a", esc(results[n].title), href="#" + _anchor(n))) for n in order]
    joint = dict(joint or {})
    if joint:
        toc.append(tag("li", tag("a", "Time points and networks",
                                 href="#time-points-and-networks")))
    if prisma is not None:
        toc.append(tag("li", tag("a", "Study selection", href="#study-selection")))
    toc.append(tag("li", tag("a", "Methods", href="#methods")))
    intro = ("A meta-analysis of randomised trials of naltrexone, built by ntxmeta from the trial "
             "tables in data/raw/ and the analyses in config/config.yaml. Every number below can be "
             "traced to a quoted sentence of a trial report: open \u201cSource\u201d in any study row.")
    if link_from is not None:
        intro += (f" The figures ({figure_bytes / 2**20:,.0f} MB) are linked, not embedded: keep the "
                  "figures/ folder beside this page.")
    body = [tag("header", tag("h1", esc(PAGE_TITLE)) + tag("p", esc(intro), class_="lede")
                + _version_line(version)
                + (tag("details", tag("summary", "What the newest evidence version changed")
                       + embed_image(Path(changes_figure), "What the newest evidence version "
                                     "changed"), class_="changes")
                   if changes_figure and version else "")),
            tag("nav", tag("h2", "Contents") + tag("ol", "".join(toc)), aria_label="Contents"),
            tag("section", tag("h2", "Summary of findings", id="summary-of-findings") +
                _sof_tables(tables["summary_of_findings"], tables["certainty"]) +
                tag("div", "".join(tag("p", esc(t)) for t in SOF_NOTES), class_="notes")),
            tag("section", tag("h2", "Analyses", id="analyses") + "".join(
                _analysis_section(config.analyses[n], results[n], frames[n], tables, figs[n],
                                  link_from, (left_out or {}).get(n), (changes or {}).get(n))
                for n in order)),
            *([_joint_section(joint, figures, link_from)] if joint else []),
            *([_selection_section(Path(prisma), link_from)] if prisma is not None else []),
            tag("section", tag("h2", "Methods", id="methods") +
                _methods(config, tables.get("published_comparison"))),
            tag("footer", esc("Generated by ntxmeta. The statistics match R's metafor 3.8-1; "
                              "the same inputs give the same page byte for byte."))]
    head = ('<meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" '
            f'content="{esc(CSP if link_from is None else CSP_LINKED)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(PAGE_TITLE)}</title><style>{CSS}</style>")
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n"


def _version_line(version: Mapping[str, Any] | None) -> str:
    """The header's evidence version and the link to the changelog (none without a version)."""
    if not version:
        return ""
    text = (f"Evidence version {int(version['version'])} of {version['date']} (data digest "
            f"{str(version['data_digest'])[:12]}, ntxmeta {version['tool_version']}). ")
    return tag("p", esc(text) + tag("a", "What changed: the changelog", href="changelog.md"),
               class_="version", id="evidence-version")


def write_report(results: Mapping[str, str | Path], effects: Mapping[str, str | Path],
                 tables: Mapping[str, str | Path], figures: Sequence[str | Path], config: Config,
                 out_path: str | Path, *, inline_max_bytes: int | None = None,
                 left_out: Mapping[str, str | Path] | None = None,
                 changelog: str | Path | None = None,
                 prisma: str | Path | None = None,
                 changes_figure: str | Path | None = None,
                 joint: Mapping[str, str | Path] | None = None) -> Path:
    """The report step: ``results/report.html`` from the files of the run (reads, computes nothing).

    Parameters
    ----------
    results : mapping of analysis name to path
        ``results/analyses/{analysis}/result.json`` (:func:`ntxmeta.result.read_result`).
    effects : mapping of analysis name to path
        ``data/processed/effects/{analysis}.csv``.
    tables : mapping of table stem to path
        ``results/tables/{stem}.csv`` for each stem of :data:`TABLE_STEMS`
        (``summary_of_findings``, ``sensitivity``, ``subgroups``,
        ``small_study_effects``), as the tables step wrote them.
    figures : sequence of path
        Every figure file of the run, PNG and SVG (the rule's inputs; see
        :func:`figure_map`); a missing one is said to be "not available".
    config : Config
    out_path : path
        Usually ``results/report.html``; written atomically.
    inline_max_bytes : int, optional
        Figures larger than this in all are linked, not embedded (see
        :func:`render_report`).
    left_out : mapping of analysis name to path, optional
        ``data/processed/left_out/{analysis}.csv``: rows the filters match
        that the analysis does not use, with the reason (listed per analysis).
    changelog : path, optional
        ``results/changelog.json``: its newest version goes into the header.
    changes_figure : path, optional
        The figure of what the newest version moved, under the header's version line.
    prisma : path, optional
        ``results/figures/prisma/prisma.svg``, shown before the methods.
    joint : mapping of model name to path, optional
        ``results/joint/{name}/result.json`` of the time-point and network
        models, shown in a section of their own with their figures.
    """
    from .changelog import last_changes, latest
    from .joint import read_result as read_joint
    from .pipeline import read_effects
    missing = [s for s in TABLE_STEMS if s not in tables]
    if missing:
        raise ValueError(f"report: no path for evidence table(s) {', '.join(missing)}")
    typed = {}
    for name, path in results.items():
        res = read_result(path)
        if res.name != name:
            raise ValueError(f"{path}: the result of analysis {res.name!r}, given as {name!r}")
        typed[str(name)] = res
    page = render_report(typed, {str(n): read_effects(p) for n, p in effects.items()},
                         {s: read_table(tables[s], s) for s in TABLE_STEMS},
                         figure_map(figures, list(config.analyses)), config,
                         page_dir=Path(out_path).parent, inline_max_bytes=inline_max_bytes,
                         left_out={str(n): pd.read_csv(p, dtype=str, keep_default_na=False)
                                   for n, p in (left_out or {}).items()},
                         version=latest(changelog) if changelog else None, prisma=prisma,
                         changes=last_changes(changelog) if changelog else None,
                         changes_figure=changes_figure,
                         joint={str(n): read_joint(p) for n, p in (joint or {}).items()})
    write_text(out_path, page)
    return Path(out_path)
