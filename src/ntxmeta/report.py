"""The evidence report: ``results/report.html`` and the evidence tables under ``results/tables/``.

Two workflow steps, each reading the pipeline's files and writing its own:

- :func:`write_evidence_tables` writes ``summary_of_findings``,
  ``sensitivity``, ``subgroups`` and ``small_study_effects`` as ``.csv``
  and ``.md`` (through :func:`ntxmeta.tables.write_table`, which neutralises
  spreadsheet formulas);
- :func:`write_report` writes one self-contained HTML page that a
  clinician reads top to bottom: the summary of findings first, then each
  analysis with its forest plot, statistics, study table (every row with its
  source, quoted sentence and raw row id), sensitivity, subgroup,
  small-study and meta-regression tables, and the other figures.

The page is safe to open from anywhere:

- every value from the data or the config passes through :func:`esc`
  (``html.escape`` with quotes), so a label or quote containing
  ``<script>`` or ``"><img onerror=...>`` is shown as text;
- there is no JavaScript; disclosures are ``<details>`` elements and
  tooltips ``title`` attributes;
- figures are embedded as ``data:`` URIs of ``<img>`` elements (SVG, else
  PNG), where an SVG can run no script and load nothing; when they would
  make the page larger than :data:`INLINE_FIGURES_MAX_BYTES` (hundreds of
  analyses), they are linked instead, by relative path from the page to
  ``results/figures/`` (still ``<img>``: no script, nothing loaded by an SVG),
  and the page says so at the top;
- a Content-Security-Policy (``default-src 'none'``) forbids scripts and
  any request beyond the embedded (or linked) images, as a second line of
  defence;
- links to sources are made only from ``http(s)://`` addresses found in
  the source text, escaped, and are followed only when a reader clicks.

Output is deterministic (no dates, sorted or config-ordered rows, fixed
number formats) and written atomically (:func:`ntxmeta.io.write_text`).
"""
from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from urllib.parse import quote
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from . import evidence as ev
from .analyse import load_result
from .io import write_text
from .tables import write_table

#: The four evidence tables: file stem -> Markdown digits per column.
TABLE_DIGITS = {
    "summary_of_findings": {"k": 0, "studies": 0, "participants": 0, "events": 0, "I2_pct": 0,
                            "tau2": 4, "acr_per_1000": 0, "cr_per_1000": 0, "cr_lb_per_1000": 0,
                            "cr_ub_per_1000": 0, "ard_per_1000": 0, "ard_lb_per_1000": 0,
                            "ard_ub_per_1000": 0, "nnt": 0, "low_confidence_weight_pct": 1},
    "sensitivity": {"k": 0, "pval": 4, "tau2": 4, "I2_pct": 1},
    "subgroups": {"k": 0, "pval": 4, "tau2": 4, "I2_pct": 1, "statistic": 2},
    "small_study_effects": {"k": 0, "egger_z": 2, "egger_p": 4, "egger_classic_t": 2,
                            "egger_classic_df": 0, "egger_classic_p": 4, "begg_tau": 3,
                            "begg_p": 4, "trimfill_k0": 0},
}
#: Figure kinds under ``results/figures/{kind}/{analysis}.{svg,png}``, in page order.
FIGURE_KINDS = ("forest", "funnel", "cumulative", "leave_one_out", "bubble")
FIGURE_TITLES = {"forest": "Forest plot", "funnel": "Contour-enhanced funnel plot",
                 "cumulative": "Cumulative meta-analysis by year",
                 "leave_one_out": "Leave-one-out analysis", "bubble": "Meta-regression (bubble plot)"}
INDICATION_NAMES = {"alcohol": "Alcohol use disorder", "opioid": "Opioid use disorder",
                    "stimulant": "Stimulant use disorder", "gambling": "Gambling disorder"}
MEASURE_NAMES = {"RR": "Risk ratio", "OR": "Odds ratio", "RD": "Risk difference",
                 "SMD": "Standardised mean difference", "MD": "Mean difference",
                 "ROM": "Ratio of means", "GEN": "Effect size"}
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
@media print { details > *:not(summary) { display: block; } body { max-width: none; font-size: 11px; }
  article { break-before: page; } }
"""


# --------------------------------------------------------------------------- text and numbers


def esc(value: Any) -> str:
    """HTML-escape any value (text, number, None) for element content or a quoted attribute."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
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


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def num(x: Any, digits: int = 2) -> str:
    """A number with a fixed number of decimals and a true minus sign; "NA" when missing."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if not _finite(x):
        if isinstance(x, (int, float, np.integer, np.floating)) and math.isinf(float(x)):
            return "\u221e" if x > 0 else MINUS + "\u221e"
        return "NA"
    text = f"{float(x):.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def pval(p: Any) -> str:
    """p formatted for reading: "< 0.001" or three decimals."""
    if not _finite(p):
        return "NA"
    return f"< {P_FLOOR}" if p < P_FLOOR else f"{p:.3f}"


def p_is(p: Any) -> str:
    """"p = 0.042" or "p < 0.001"."""
    text = pval(p)
    return "p " + text if text.startswith("<") else "p = " + text


def interval(est: Any, lb: Any, ub: Any, digits: int = 2) -> str:
    """"0.49 (0.34 to 0.70)"; "NA" when the estimate is missing."""
    if not _finite(est):
        return "NA"
    return f"{num(est, digits)} ({num(lb, digits)} to {num(ub, digits)})"


def linkify(text: Any) -> str:
    """Escaped text in which http(s) addresses become links (href escaped too)."""
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
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
    return tag("table", cap + cols + tag("thead", tag("tr", th)) + tag("tbody", body), class_=cls)


def _flag(text: Any) -> str:
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return tag("span", esc(text), class_="flag-yes" if text.startswith("yes") else None)


# --------------------------------------------------------------------------- inputs


def _keyed(paths: Mapping[str, str | Path] | Sequence[str | Path], kind: str) -> dict[str, Path]:
    """Paths keyed by analysis name: a mapping as given, or names from the paths.

    ``effects``: ``data/processed/effects/{analysis}.csv`` (the file stem);
    ``results``: ``results/analyses/{analysis}/result.json`` (the folder).
    """
    if isinstance(paths, Mapping):
        return {str(k): Path(v) for k, v in paths.items()}
    out = {}
    for p in map(Path, paths):
        out[p.stem if kind == "effects" else p.parent.name] = p
    return out


def _load_config(config: Mapping | str | Path) -> Mapping:
    if isinstance(config, Mapping):
        return config
    return yaml.safe_load(Path(config).read_text(encoding="utf-8"))


def load_inputs(effects_paths, result_paths) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Read every effects table and result.json, keyed by analysis name."""
    effects = {n: pd.read_csv(p, keep_default_na=True) for n, p in _keyed(effects_paths, "effects").items()}
    results = {}
    for n, p in _keyed(result_paths, "results").items():
        res = load_result(p)
        res.setdefault("name", n)
        results[n] = res
    return effects, results


def analysis_order(config: Mapping, results: Mapping[str, Mapping],
                   effects: Mapping[str, pd.DataFrame]) -> list[str]:
    """Analyses by indication (alcohol, opioid, stimulant, gambling, others) and then config order."""
    analyses = config.get("analyses", {})
    names = [n for n in analyses if n in results] + sorted(n for n in results if n not in analyses)
    pos = {n: i for i, n in enumerate(names)}
    ind = {n: ev._indication(n, analyses.get(n, {}), effects.get(n)) for n in names}
    return sorted(names, key=lambda n: (ev._indication_key(ind[n]), pos[n]))


def _transf(result: Mapping) -> str | None:
    """The back-transform the pipeline chose for an analysis (its spec option), if recorded."""
    spec = result.get("spec")
    opts = spec.get("options") if isinstance(spec, Mapping) else None
    return opts.get("transf") if isinstance(opts, Mapping) else None


def evidence_tables(effects: Mapping[str, pd.DataFrame], results: Mapping[str, Mapping],
                    config: Mapping) -> dict[str, pd.DataFrame]:
    """The four evidence tables (see :mod:`ntxmeta.evidence`), keyed by file stem.

    The sensitivity table covers every analysis with an effects table, in
    report order.
    """
    analyses = config.get("analyses", {})
    defaults = config.get("defaults", {}) or {}
    subsets = config.get("sensitivity", {}) or {}
    order = analysis_order(config, results, effects)
    sens = [ev.sensitivity_table(effects[n], analyses[n], defaults, name=n, subsets=subsets,
                                 transf=_transf(results[n]))
            for n in order if n in effects and n in analyses]
    sens_frame = (pd.concat(sens, ignore_index=True) if sens
                  else pd.DataFrame(columns=list(ev.SENSITIVITY_COLUMNS)))
    return {
        "summary_of_findings": ev.summary_of_findings(effects, results, config),
        "sensitivity": sens_frame,
        "subgroups": ev.subgroup_table(results, config),
        "small_study_effects": ev.small_study_table(results),
    }


def _text_as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as ``object`` dtype.

    ``ntxmeta.tables.safe_frame`` neutralises formula cells only in columns
    whose dtype is ``object``; pandas >= 3 gives text columns its ``str``
    dtype, which that check misses. Casting here keeps the exports safe
    whatever the pandas version.
    """
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    return frame.astype({c: object for c in text})


def write_evidence_tables(effects_paths, result_paths, config, out_dir: str | Path) -> list[Path]:
    """Workflow step: the four evidence tables as CSV and Markdown under ``out_dir``.

    Parameters
    ----------
    effects_paths : sequence of path, or mapping of analysis name to path
        ``data/processed/effects/{analysis}.csv`` (a name is the file stem).
    result_paths : sequence of path, or mapping of analysis name to path
        ``results/analyses/{analysis}/result.json`` (a name is the folder).
    config : mapping, or path of a YAML file (loaded with ``yaml.safe_load``)
    out_dir : path
        Usually ``results/tables``.

    Returns
    -------
    list of Path
        The eight files written: ``{summary_of_findings, sensitivity,
        subgroups, small_study_effects}.{csv,md}``.
    """
    effects, results = load_inputs(effects_paths, result_paths)
    tables = evidence_tables(effects, results, _load_config(config))
    out_dir = Path(out_dir)
    written = []
    for stem, frame in tables.items():
        csv, md = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
        write_table(_text_as_object(frame), csv, md, digits=TABLE_DIGITS[stem])
        written += [csv, md]
    return written


# --------------------------------------------------------------------------- figures


def figure_paths(figure_dir: str | Path, analysis: str) -> dict[str, Path]:
    """The figures of one analysis that exist: kind -> SVG (preferred) or PNG path."""
    out = {}
    for kind in FIGURE_KINDS:
        # bubble plots are one per moderator: bubble/{analysis}__{moderator}
        stems = ([p.stem for p in sorted((Path(figure_dir) / kind).glob(f"{analysis}__*.svg"))]
                 if kind == "bubble" else [analysis])
        for stem in stems:
            for ext in ("svg", "png"):
                p = Path(figure_dir) / kind / f"{stem}.{ext}"
                if p.is_file():
                    out[kind if stem == analysis else f"{kind}:{stem.split('__', 1)[1]}"] = p
                    break
    return out


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


# --------------------------------------------------------------------------- sections


def _per_1000(x: Any) -> str:
    """An absolute difference per 1000 in words: "8 fewer", "5 more", "0"."""
    if not _finite(x):
        return "NA"
    n = round(float(x))
    return "0" if n == 0 else f"{abs(n):,} {'fewer' if n < 0 else 'more'}"


def _count(x: Any) -> str:
    return f"{float(x):,.0f}" if _finite(x) else "NA"


#: Column widths of the summary-of-findings tables (percent), the same for every
#: indication so that the tables line up one under the other.
SOF_WIDTHS_PCT = (13, 11, 12, 21, 10, 12, 21)


def _sof_tables(sof: pd.DataFrame) -> str:
    if sof.empty:
        return tag("p", "No analysis has results yet.", class_="muted")
    head = [("Outcome", ""), ("Studies", ""), ("Relative effect (95% CI)", ""),
            ("Anticipated absolute effects (95% CI)", ""), ("NNT (95% CI)", ""),
            ("Heterogeneity", ""), ("Flags", "flags")]
    parts = []
    for ind, block in sof.groupby("indication", sort=False):
        rows = []
        for r in block.to_dict("records"):
            outcome = (tag("a", esc(r["outcome"]), href="#" + _anchor(r["analysis"])) +
                       tag("div", esc(MEASURE_NAMES.get(r["measure"], r["measure"])), class_="muted"))
            pooled = _finite(r["estimate"])
            events = f"; {_count(r['events'])} events" if _finite(r["events"]) else ""
            studies = esc(f"{r['k']} {'study' if r['k'] == 1 else 'studies'}") + "<br>" + tag(
                "span", esc(f"{_count(r['participants'])} participants{events}"), class_="muted")
            rel = (esc(f"{r['measure']} {num(r['estimate'])}") + "<br>" +
                   esc(f"({num(r['ci_lb'])} to {num(r['ci_ub'])})") if pooled
                   else tag("span", esc(r["status"]), class_="muted"))
            if pooled and _finite(r["acr_per_1000"]):
                absolute = "<br>".join([
                    esc(f"Without naltrexone: {num(r['acr_per_1000'], 0)} per 1000"),
                    esc(f"With naltrexone: {num(r['cr_per_1000'], 0)} per 1000 "
                        f"({num(r['cr_lb_per_1000'], 0)} to {num(r['cr_ub_per_1000'], 0)})"),
                    tag("strong", esc(f"{_per_1000(r['ard_per_1000'])} per 1000")) + " " +
                    esc(f"(from {_per_1000(r['ard_lb_per_1000'])} to {_per_1000(r['ard_ub_per_1000'])})")])
                nnt = (esc(f"{r['nnt_kind']} {num(r['nnt'], 0)}") + "<br>" +
                       tag("span", esc(f"({r['nnt_ci']})"), class_="muted")) if r["nnt_kind"] else "no difference"
            elif pooled:
                absolute = tag("span", esc("not applicable (continuous outcome)" if r["measure"] not in ev.ABSOLUTE_MEASURES
                                           else "no control-arm risks"), class_="muted")
                nnt = DASH
            else:
                absolute, nnt = DASH, DASH
            het = (esc(f"I\u00b2 = {num(r['I2_pct'], 0)}%") + "<br>" +
                   esc(f"PI {num(r['pi_lb'])} to {num(r['pi_ub'])}") if pooled else DASH)
            low = f"{num(r['low_confidence_weight_pct'], 0)}%" if _finite(r["low_confidence_weight_pct"]) else "NA"
            flags = tag("ul", "".join(tag("li", esc(f"{name}: ") + _flag(r[key])) for name, key in (
                ("Imprecision", "imprecision"), ("Inconsistency", "inconsistency"),
                ("Small-study effects", "small_study_effects"))) +
                tag("li", esc(f"Weight from low-confidence rows: {low}")), class_="flags")
            rows.append([outcome, studies, rel, absolute, nnt, het, flags])
        parts.append(tag("h3", esc(indication_name(ind)), id="sof-" + re.sub(r"[^a-z0-9_-]", "-", str(ind).lower())))
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
    "Imprecision: CI includes no effect, or fewer than 300 events (400 participants for "
    "continuous outcomes). Inconsistency: I\u00b2 above 50% or a prediction interval (PI) that "
    "includes no effect while the CI does not. Small-study effects: Egger's test p < 0.10, assessed only with 10 or "
    "more studies. These flags are computed, not judged: they point a reviewer to what to read.",
)


def _measure_name(measure: str, ratio: bool) -> str:
    """"Risk ratio", ...; a generic measure on the ratio scale is a "Ratio"."""
    return "Ratio" if measure == "GEN" and ratio else MEASURE_NAMES.get(measure, measure)


def _participants(effects: pd.DataFrame) -> str:
    """Participants in the pooled rows, or why there is no count."""
    used = ev.used_rows(effects)
    n = ev._column(effects, "n_treat") + ev._column(effects, "n_ctrl")
    ok = used & np.isfinite(n)
    if not ok.any():
        return "not reported (effect sizes only)"
    missing = int(used.sum() - ok.sum())
    return _count(n[ok].sum()) + (f" (not reported for {missing} of {int(used.sum())} studies)" if missing else "")


def _stats_block(result: Mapping, measure: str, effects: pd.DataFrame) -> str:
    meta = result.get("analysis", {})
    fit, why = ev.main_fit(result)
    k = meta.get("k_used", "NA")
    items = [("Studies (k)", esc(k)), ("Participants", esc(_participants(effects)))]
    if fit is None or not ev._num(fit.get("k")) >= 2:
        if str(meta.get("status", "pooled")) == "pooled":     # otherwise the status box says why
            items.append(("Pooled estimate", esc(f"not available ({why or 'k < 2'})")))
    else:
        ratio = ev.is_ratio(measure, fit, _transf(result))
        nat = [ev.natural(ev._num(fit.get(x)), ratio) for x in ("estimate", "ci.lb", "ci.ub")]
        pred = fit.get("predict", {}) if isinstance(fit.get("predict"), Mapping) else {}
        pi = [ev.natural(ev._num(pred.get(x)), ratio) for x in ("pi.lb", "pi.ub")]
        stat = "t" if fit.get("test") == "knha" else "z"
        stat_v = ev._num(fit.get("tval" if stat == "t" else "zval"))
        level = ev._num(fit.get("level", 95))
        items += [
            (f"Pooled {_measure_name(measure, ratio).lower()} ({level:.0f}% CI)",
             esc(interval(*nat)) + esc(f"; {stat} = {num(stat_v)}, {p_is(ev._num(fit.get('pval')))}")),
            (f"{level:.0f}% prediction interval", esc(f"{num(pi[0])} to {num(pi[1])}")),
            ("Heterogeneity", esc(f"\u03c4\u00b2 = {num(ev._num(fit.get('tau2')), 4)}, "
                                  f"I\u00b2 = {num(ev._num(fit.get('I2')), 0)}%, "
                                  f"Q = {num(ev._num(fit.get('QE')))} (df = {num(ev._num(fit.get('QEdf')), 0)}, "
                                  f"{p_is(ev._num(fit.get('QEp')))})")),
            ("Model", esc(ev._model_name(fit.get("method", meta.get("method", "")), fit.get("test", "z")))),
        ]
        ci_tau, _ = ev._section(result, "confint", str(fit.get("method", "")))
        if ci_tau is not None:
            t2, i2 = ci_tau.get("tau^2", {}), ci_tau.get("I^2(%)", {})
            items.append(("Uncertainty in heterogeneity (Q-profile)",
                          esc(f"\u03c4\u00b2 {num(ev._num(t2.get('ci.lb')), 4)} to "
                              f"{num(ev._num(t2.get('ci.ub')), 4)}; I\u00b2 "
                              f"{num(ev._num(i2.get('ci.lb')), 0)}% to {num(ev._num(i2.get('ci.ub')), 0)}%")))
        ee, _ = ev._section(result, "common", "EE")
        if ee is not None:
            nat = [ev.natural(ev._num(ee.get(x)), ratio) for x in ("estimate", "ci.lb", "ci.ub")]
            items.append(("Common-effect estimate", esc(interval(*nat))))
    body = "".join(tag("dt", esc(a)) + tag("dd", b) for a, b in items)
    return tag("dl", body, class_="stats")


def _arm(r: Mapping, arm: str) -> str:
    e, n = r.get(f"events_{arm}"), r.get(f"n_{arm}")
    m, sd = r.get(f"mean_{arm}"), r.get(f"sd_{arm}")
    if _finite(e) and _finite(n):
        return f"{num(e, 0)}/{num(n, 0)}"
    if _finite(m) and _finite(sd) and _finite(n):
        return f"{num(m)} ({num(sd)}), n = {num(n, 0)}"
    return DASH


def _study_table(effects: pd.DataFrame, result: Mapping, measure: str) -> str:
    if effects.empty:
        return tag("p", "No study rows.", class_="muted")
    fit, _ = ev.main_fit(result)
    ratio = ev.is_ratio(measure, fit, _transf(result))
    weights = (fit or {}).get("weights_pct") if fit else None
    w = ([ev._num(x) for x in weights] if isinstance(weights, list) and len(weights) == len(effects)
         else list(pd.to_numeric(effects.get("weight_pct", pd.Series(np.nan, index=effects.index)),
                                 errors="coerce")))
    head = [("Study", ""), ("Naltrexone", "num"), ("Control", "num"),
            (f"{'Ratio' if measure == 'GEN' and ratio else measure} (95% CI)", "num"), ("Weight", "num"), ("Confidence", ""), ("Source and quote", "")]
    rows = []
    for i, r in enumerate(effects.to_dict("records")):
        yi, lb, ub = (ev._num(r.get(c)) for c in ("yi", "ci_lb", "ci_ub"))
        effect = interval(*(ev.natural(x, ratio) for x in (yi, lb, ub)))
        year_txt = num(ev._num(r.get("year")), 0) if _finite(ev._num(r.get("year"))) else ""
        year = f" ({year_txt})" if year_txt and year_txt not in str(r.get("label", "")) else ""
        quote = "" if pd.isna(r.get("quote")) else str(r.get("quote"))
        label = tag("span", esc(f"{r.get('label', '')}{year}"), title=quote or None)
        marks = []
        if str(r.get("derived")).strip().lower() in ("true", "yes", "1"):
            marks.append("numbers derived")
        if str(r.get("flipped")).strip().lower() in ("true", "yes", "1"):
            marks.append("favourable events flipped to their complement")
        extra = tag("div", esc("; ".join(marks)), class_="muted") if marks else ""
        src = tag("details",
                  tag("summary", "Source") +
                  tag("blockquote", esc(quote) if quote else tag("span", "no quote recorded", class_="muted")) +
                  tag("div", linkify(r.get("source")), class_="source") +
                  (tag("div", esc(f"how derived: {r['derived_text']}"), class_="muted source")
                   if isinstance(r.get("derived_text"), str) and r["derived_text"].strip() else "") +
                  tag("div", esc(f"raw row: {r.get('row_id', '')}"), class_="muted source"))
        weight = f"{num(w[i], 1)}%" if i < len(w) and _finite(w[i]) else DASH
        rows.append([label + extra, esc(_arm(r, "treat")), esc(_arm(r, "ctrl")), esc(effect), esc(weight),
                     esc(r.get("confidence", "")), src])
    return _table(head, rows, cls="studies")


def _frame_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    """A table from a DataFrame: (column, header, format); format is "text", "nowrap"
    (text kept on one line), "p" or a number of decimals."""
    head = [(h, {"text": "", "nowrap": "nowrap"}.get(f, "num")) for _, h, f in columns]
    rows = []
    for r in frame.to_dict("records"):
        cells = []
        for col, _, f in columns:
            v = r.get(col)
            if f in ("text", "nowrap"):
                cells.append(esc("" if v is None or (isinstance(v, float) and math.isnan(v)) else v))
            elif f == "p":
                cells.append(esc(pval(v) if _finite(v) else ""))
            else:
                cells.append(esc(num(v, int(f)) if _finite(v) else ""))
        rows.append(cells)
    return _table(head, rows)


def _with_interval(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["effect"] = [interval(e, a, b) if _finite(e) else "" for e, a, b in
                     zip(out.estimate, out.ci_lb, out.ci_ub)]
    return out


def _sensitivity_block(sens: pd.DataFrame) -> str:
    if sens.empty:
        return tag("p", "No sensitivity analyses.", class_="muted")
    if not sens["estimate"].notna().any():
        main = sens.iloc[0]
        return tag("p", esc(f"Not computed: sensitivity analyses need at least two studies "
                            f"(k = {main['k']})."), class_="muted")
    frame = _with_interval(sens)
    return _frame_table(frame, [("description", "Analysis", "text"), ("model", "Model", "text"),
                                ("measure", "Measure", "nowrap"), ("k", "k", "0"),
                                ("effect", "Estimate (95% CI)", "nowrap"),
                                ("tau2", "\u03c4\u00b2", "3"), ("I2_pct", "I\u00b2 (%)", "0"),
                                ("note", "Note", "text")])


def _subgroup_block(sub: pd.DataFrame) -> str:
    if sub.empty:
        return ""
    frame = _with_interval(sub)
    col = str(frame["subgroup"].iloc[0])
    return tag("h4", esc(f"Subgroups by {col}" if col else "Subgroups")) + _frame_table(
        frame, [("level", "Subgroup", "text"), ("k", "k", "0"), ("effect", "Estimate (95% CI)", "nowrap"),
                ("I2_pct", "I\u00b2 (%)", "0"), ("statistic", "Statistic", "2"), ("df", "df", "nowrap"),
                ("pval", "p", "p"), ("note", "Note", "text")])


def _small_study_block(row: Mapping) -> str:
    if not row.get("assessed"):
        return tag("p", esc(f"Small-study effects: {row.get('note') or ev.NOT_ASSESSED}."), class_="muted")
    items = [
        ("Egger (random-effects regression on SE)", f"z = {num(row['egger_z'])}, {p_is(row['egger_p'])}"),
        ("Egger (classic, weighted regression)",
         f"t = {num(row['egger_classic_t'])} (df = {num(row['egger_classic_df'], 0)}), "
         f"{p_is(row['egger_classic_p'])}"),
        ("Begg rank correlation", f"Kendall \u03c4 = {num(row['begg_tau'], 3)}, {p_is(row['begg_p'])}"),
        ("Trim-and-fill", f"{num(row['trimfill_k0'], 0)} {'study' if row['trimfill_k0'] == 1 else 'studies'} filled ({row['trimfill_side'] or 'NA'} side); "
                          f"adjusted estimate {interval(row['trimfill_estimate'], row['trimfill_ci_lb'], row['trimfill_ci_ub'])}"),
    ]
    body = "".join(tag("dt", esc(a)) + tag("dd", esc(b)) for a, b in items)
    note = tag("p", esc(row["note"]), class_="notes") if row.get("note") else ""
    return tag("dl", body, class_="stats") + note


def _metareg_block(result: Mapping, measure: str) -> str:
    fits = []
    by = result.get("metareg_by")
    if isinstance(by, Mapping) and by:
        fits = list(by.items())
    elif isinstance(result.get("metareg"), Mapping):
        fits = [(result["metareg"].get("moderator", "moderator"), result["metareg"])]
    if not fits:
        return ""
    meta = result.get("analysis", {})
    key = ev._fit_key(meta)
    rows = []
    for mod, sec in fits:
        fit, why = ev._section(sec, key) if isinstance(sec, Mapping) else (None, "not computed")
        if fit is None and isinstance(sec, Mapping) and "error" not in sec:
            fit, why = ev._section(sec, "REML")
        if fit is None:
            rows.append([esc(mod), "", "", "", "", "", esc(f"not computed: {why}")])
            continue
        co = fit.get("coefficients", {})
        i = 1 if len(co.get("estimate", [])) > 1 else 0
        get = lambda k: ev._num((co.get(k) or [math.nan] * 2)[i]) if isinstance(co.get(k), list) else math.nan  # noqa: E731
        rows.append([esc(mod), esc(num(fit.get("k"), 0)), esc(num(get("estimate"), 4)),
                     esc(f"{num(get('ci.lb'), 4)} to {num(get('ci.ub'), 4)}"), esc(pval(get("pval"))),
                     esc(num(ev._num(fit.get("R2")), 0)), esc(f"{fit.get('method', '')} {fit.get('test', '')}")])
    head = [("Moderator", ""), ("k", "num"), ("Slope", "num"), ("95% CI", "num"), ("p", "num"),
            ("R\u00b2 (%)", "num"), ("Model", "")]
    scale = " (slope on the log scale: exp(slope) is the ratio per unit)" if ev.is_ratio(measure) else ""
    return tag("h4", "Meta-regression") + tag("p", esc("Change in the effect per unit of the moderator" + scale + "."),
                                                class_="notes") + _table(head, rows)


def _analysis_section(name: str, analysis: Mapping, effects: pd.DataFrame, result: Mapping,
                      tables: Mapping[str, pd.DataFrame], figures: Mapping[str, Path],
                      link_from: Path | None) -> str:
    meta = result.get("analysis", {})
    title = str(meta.get("title") or analysis.get("title") or name)
    measure = str(meta.get("measure") or analysis.get("measure", ""))
    ind = ev._indication(name, analysis, effects)
    ratio = ev.is_ratio(measure, ev.main_fit(result)[0], _transf(result))
    parts = [tag("h3", esc(title)),
             tag("p", esc(f"{indication_name(ind)} \u00b7 {_measure_name(measure, ratio)} \u00b7 "
                          f"analysis '{name}'"), class_="muted")]
    status = str(meta.get("status", ""))
    if status and status != "pooled":
        parts.append(tag("p", esc(status), class_="status"))
    parts.append(_stats_block(result, measure, effects))
    parts.append(_figure(figures.get("forest"), "forest", title, link_from))
    parts.append(tag("h4", "Studies") + _study_table(effects, result, measure))
    sens = tables["sensitivity"]
    parts.append(tag("h4", "Sensitivity analyses") + _sensitivity_block(sens[sens["analysis"] == name]))
    sub = tables["subgroups"]
    parts.append(_subgroup_block(sub[sub["analysis"] == name]))
    ss = tables["small_study_effects"]
    ss_row = ss[ss["analysis"] == name]
    parts.append(tag("h4", "Small-study effects") +
                 (_small_study_block(ss_row.iloc[0].to_dict()) if len(ss_row) else
                  tag("p", "not available", class_="muted")))
    parts.append(_metareg_block(result, measure))
    more = [_figure(figures[k], k.split(":")[0], title, link_from) for k in figures
            if k.split(":")[0] in FIGURE_KINDS[1:]]
    if more:
        parts.append(tag("details", tag("summary", esc(f"More figures ({len(more)})")) + "".join(more)))
    return tag("article", "".join(parts), id=_anchor(name))


def render_report(effects: Mapping[str, pd.DataFrame], results: Mapping[str, Mapping],
                  figure_dir: str | Path | None, config: Mapping,
                  tables: Mapping[str, pd.DataFrame] | None = None, *, page_dir: str | Path = ".",
                  inline_max_bytes: int | None = None) -> str:
    """The report page as a string (see the module docstring).

    ``page_dir`` is the folder the page will be written to: figures too
    large to inline (over ``inline_max_bytes`` in all, default
    :data:`INLINE_FIGURES_MAX_BYTES`) are linked relative to it.
    """
    limit = INLINE_FIGURES_MAX_BYTES if inline_max_bytes is None else inline_max_bytes
    tables = tables or evidence_tables(effects, results, config)
    analyses = config.get("analyses", {})
    order = analysis_order(config, results, effects)
    figures = {n: figure_paths(figure_dir, n) if figure_dir else {} for n in order}
    figure_bytes = sum(p.stat().st_size for f in figures.values() for p in f.values())
    link_from = Path(page_dir) if figure_bytes > limit else None
    toc = [tag("li", tag("a", "Summary of findings", href="#summary-of-findings"))]
    toc += [tag("li", tag("a", esc(results[n].get("analysis", {}).get("title")
                                   or analyses.get(n, {}).get("title") or n), href="#" + _anchor(n)))
            for n in order]
    toc.append(tag("li", tag("a", "Methods", href="#methods")))
    intro = ("A meta-analysis of randomised trials of naltrexone, built by ntxmeta from the trial "
             "tables in data/raw/ and the analyses in config/config.yaml. Every number below can be "
             "traced to a quoted sentence of a trial report: open \u201cSource\u201d in any study row.")
    if link_from is not None:
        intro += (f" The figures ({figure_bytes / 2**20:,.0f} MB) are linked, not embedded: keep the "
                  "figures/ folder beside this page.")
    body = [tag("header", tag("h1", esc(PAGE_TITLE)) + tag("p", esc(intro), class_="lede")),
            tag("nav", tag("h2", "Contents") + tag("ol", "".join(toc)), aria_label="Contents"),
            tag("section", tag("h2", "Summary of findings", id="summary-of-findings") +
                _sof_tables(tables["summary_of_findings"]) +
                tag("div", "".join(tag("p", esc(t)) for t in SOF_NOTES), class_="notes")),
            tag("section", tag("h2", "Analyses", id="analyses") + "".join(
                _analysis_section(n, analyses.get(n, {}), effects.get(n, pd.DataFrame()), results[n],
                                  tables, figures[n], link_from)
                for n in order)),
            tag("section", tag("h2", "Methods", id="methods") + "".join(tag("p", esc(t)) for t in METHODS_TEXT)),
            tag("footer", esc("Generated by ntxmeta. The statistics match R's metafor 3.8-1; "
                              "the same inputs give the same page byte for byte."))]
    head = ('<meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" '
            f'content="{esc(CSP if link_from is None else CSP_LINKED)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(PAGE_TITLE)}</title><style>{CSS}</style>")
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n"


METHODS_TEXT = (
    "Effect sizes and pooling follow R's metafor 3.8-1: random-effects models with the "
    "between-study variance \u03c4\u00b2 estimated by restricted maximum likelihood (REML) unless "
    "an analysis says otherwise, Wald or Hartung-Knapp tests, and prediction intervals for the "
    "effect in a new setting. Ratio measures are pooled on the log scale and shown back-transformed.",
    "Sensitivity analyses refit the main model with other estimators (DerSimonian-Laird, "
    "Paule-Mandel), the Hartung-Knapp test, common-effect models (inverse variance, "
    "Mantel-Haenszel, Peto), without low-confidence or derived rows, on placebo-controlled "
    "rows only, and with each study left out in turn (the lowest and highest estimates are shown).",
    "Subgroup differences are tested with a mixed-effects model that shares one \u03c4\u00b2 "
    "across subgroups, and with the Q-between statistic from separate subgroup estimates. "
    "Small-study effects (Egger's regression test, Begg's rank correlation, trim-and-fill) are "
    "assessed only with 10 or more studies (Sterne et al., BMJ 2011;343:d4002).",
)


def write_report(effects_paths, result_paths, figure_dir: str | Path | None, config,
                 out_path: str | Path, *, inline_max_bytes: int | None = None) -> Path:
    """Workflow step: ``results/report.html`` from the effects, results and figures.

    Parameters
    ----------
    effects_paths : sequence of path, or mapping of analysis name to path
        ``data/processed/effects/{analysis}.csv``.
    result_paths : sequence of path, or mapping of analysis name to path
        ``results/analyses/{analysis}/result.json``.
    figure_dir : path or None
        ``results/figures``; figures are looked up as
        ``{figure_dir}/{forest,funnel,cumulative,leave_one_out,bubble}/{analysis}.svg``
        (else ``.png``); a missing one is said to be "not available".
    config : mapping, or path of a YAML file
    out_path : path
        Usually ``results/report.html``; written atomically.
    inline_max_bytes : int, optional
        Figures larger than this in all are linked, not embedded (see
        :func:`render_report`).
    """
    effects, results = load_inputs(effects_paths, result_paths)
    page = render_report(effects, results, figure_dir, _load_config(config),
                         page_dir=Path(out_path).parent, inline_max_bytes=inline_max_bytes)
    write_text(out_path, page)
    return Path(out_path)
