"""The HTML report: it shows the run's files, escaped, and computes nothing.

* hostile study labels, quotes, sources, config titles and table cells are
  shown as text (no element, attribute or script can be injected);
* the page is self-contained: no script, no external resource, a CSP; the
  figures are the files it is given (not a folder it globs), embedded, or
  linked once they are larger in all than the inline budget;
* numbers are those of the inputs: the statistics block and the study
  weights of the typed result, on its scale (a ratio analysis shows
  ``exp`` of its estimate, checked with ``math.exp``, not with the report's
  own formatting); the evidence tables are the CSV files (a cell edited in
  a file shows up on the page, a formula-safety quote is taken off); no
  fitting function runs while the page is made;
* it renders in headless Chromium without console errors or requests
  beyond the page itself (and its linked figures), and shows the expected
  headings (a tiny Chrome DevTools Protocol client over
  ``--remote-debugging-pipe``, so no third-party driver is needed); a
  control page with a console error proves that the detector can fail;
* output is deterministic.

Fixtures are real pipeline outputs made in the test: small effects tables
(BCG trials as a risk-ratio analysis with a subgroup, a moderator, two
config sensitivity subsets and one unusable row; three reported ratios as
a generic analysis shown as ratios; a single continuous study) pooled by
``ntxmeta.analysis.run_plan``, the evidence tables written by
``ntxmeta.evidence.write_evidence_tables``, figures drawn with matplotlib.
Chromium: Debian's ``chromium`` package (CI installs it: ``apt-get install -y
chromium``); the browser tests are skipped, saying why, only when it is absent.
"""
from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import re
import select
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta import report as rp
from ntxmeta.analysis import run_plan
from ntxmeta.config import resolve
from ntxmeta.evidence import TABLE_DIGITS, write_evidence_tables
from ntxmeta.pipeline import EFFECT_COLUMNS, read_effects, write_csv
from ntxmeta.plan import Config
from ntxmeta.result import read_result

FIX = Path(__file__).parent / "fixtures" / "oracle"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
FORMULA = '=HYPERLINK("http://x.example.org")'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Seconds to wait for Chromium to answer a command or load the page.
CDP_TIMEOUT_S = 60.0
#: After the load event, how long to keep listening for late console errors.
SETTLE_S = 0.5
MINUS = "\u2212"
TITLE_RR = "Return to heavy drinking"
TITLE_GEN = f"Opioid relapse {SCRIPT}"


# --------------------------------------------------------------------------- fixtures


def effects_frame(columns: dict) -> pd.DataFrame:
    """An effects table with every column of ``EFFECT_COLUMNS`` (NaN where not given), extras after."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({c: columns.get(c, [np.nan] * n) for c in EFFECT_COLUMNS})
    for c, v in columns.items():
        if c not in frame:
            frame[c] = v
    return frame


def bcg_effects() -> pd.DataFrame:
    """The 13 BCG trials as log risk ratios (by hand), hostile text, and a 14th row without numbers."""
    d = pd.read_csv(FIX / "bcg_RR" / "data.csv")
    a, n1, c, n2 = (d[x].to_numpy(dtype=float) for x in ("ai", "n1i", "ci", "n2i"))
    yi = np.log((a / n1) / (c / n2))
    vi = 1 / a - 1 / n1 + 1 / c - 1 / n2
    k = len(d)
    labels = list(d.author)
    labels[0] = f"Aronson {SCRIPT}"
    labels[1] = f"Ferguson {IMG}"
    quotes = [f"Quote {i}: 4 of 123 vaccinated; see & compare" for i in range(k)]
    quotes[0] = f"{SCRIPT} relapse in 8/35"
    quotes[2] = IMG
    sources = ["PMID 1345133 (https://pubmed.example.org/1345133)"] * k
    sources[1] = f'javascript:alert(1) {IMG} https://x.example.org/a"onmouseover=alert(1)'
    trial = d.trial.to_numpy()
    cols = {
        "row_id": [f"BCG{t:02d}" for t in trial], "study_id": list(d.author), "label": labels,
        "year": list(d.year), "subgroup": list(d.alloc), "indication": ["alcohol"] * k,
        "outcome": ["relapse"] * k,
        "comparator_type": list(np.where(trial % 3 == 0, "active", "placebo")),
        "formulation": ["oral"] * k, "dose_mg": [50] * k, "followup_weeks": [12] * k,
        "data_type": ["binary"] * k, "events_treat": list(a), "n_treat": list(n1),
        "events_ctrl": list(c), "n_ctrl": list(n2), "yi": list(yi), "vi": list(vi),
        "sei": list(np.sqrt(vi)), "ci_lb": list(yi - 1.959963984540054 * np.sqrt(vi)),
        "ci_ub": list(yi + 1.959963984540054 * np.sqrt(vi)),
        "confidence": list(np.where(trial % 4 == 0, "low", "high")),
        "derived": list(trial % 5 == 0), "flipped": [False] * k,
        "derived_text": ["yes: arm sizes from percentages <b>"] + [""] * (k - 1),
        "source": sources, "quote": quotes, "ablat": list(d.ablat.astype(float))}
    frame = effects_frame(cols)
    unusable = {c: np.nan for c in frame.columns}
    unusable.update(row_id="BCG99", study_id="Unusable", label="Unusable trial", year=1990,
                    subgroup="random", indication="alcohol", data_type="binary",
                    confidence="high", derived=False, flipped=False, source="s", quote="q",
                    derived_text="")
    return pd.concat([frame, pd.DataFrame([unusable])], ignore_index=True)


#: Three reported ratios (log ratio, its variance) of a generic analysis: shown as ratios.
GEN_LOG_RATIOS = ((0.405, 0.040), (0.262, 0.090), (0.531, 0.061))


def gen_effects() -> pd.DataFrame:
    k = len(GEN_LOG_RATIOS)
    y = [r[0] for r in GEN_LOG_RATIOS]
    v = [r[1] for r in GEN_LOG_RATIOS]
    return effects_frame({
        "row_id": [f"G{i}" for i in range(k)], "study_id": [f"g{i}" for i in range(k)],
        "label": ["Oslin 2003", "Anton 2008", "Ray 2012"], "year": [2003, 2008, 2012],
        "indication": ["opioid"] * k, "data_type": ["ratio"] * k, "log_ratio": y,
        "var_log_ratio": v, "yi": y, "vi": v,
        "ci_lb": [a - 1.959963984540054 * math.sqrt(b) for a, b in zip(y, v)],
        "ci_ub": [a + 1.959963984540054 * math.sqrt(b) for a, b in zip(y, v)],
        "confidence": ["high"] * k, "derived": [False] * k, "flipped": [False] * k,
        "source": ["s"] * k, "quote": ["q"] * k, "derived_text": [""] * k})


def one_effects() -> pd.DataFrame:
    return effects_frame({
        "row_id": ["S1"], "study_id": ["s1"], "label": ["Grant 2006"], "year": [2006],
        "indication": ["gambling"], "data_type": ["continuous"], "mean_treat": [10.0],
        "sd_treat": [4.0], "n_treat": [40], "mean_ctrl": [12.0], "sd_ctrl": [4.5], "n_ctrl": [38],
        "yi": [-0.46], "vi": [0.053], "ci_lb": [-0.911], "ci_ub": [-0.009], "confidence": ["high"],
        "derived": [False], "flipped": [False], "source": ["s"], "quote": ["q"],
        "derived_text": [""]})


def config() -> Config:
    return Config.from_resolved(resolve({
        "analyses": {
            "aud_heavy": {"title": TITLE_RR, "measure": "RR", "main": True, "subgroup": "alloc",
                          "moderators": ["ablat"], "filters": {"indication": ["alcohol"]}},
            "oud_gen": {"title": TITLE_GEN, "measure": "GEN", "main": True,
                        "filters": {"indication": ["opioid"]}},
            "gamb_one": {"title": "Gambling severity", "measure": "SMD",
                         "filters": {"indication": ["gambling"]}}},
        "sensitivity": {"no_alt": {"title": f"Without {IMG}", "exclude": {"subgroup": ["alternate"]}},
                        "evil": {"title": FORMULA, "exclude": {"subgroup": ["systematic"]}}}}))


def write_svg(path: Path, title: str = "forest", fmt: str = "svg") -> None:
    """A small figure made with matplotlib (independent of ntxmeta.plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0.3, 0.5, 0.9], [1, 2, 3], "s")
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The pipeline's files for three analyses, made once: effects, results, tables, figures."""
    root = tmp_path_factory.mktemp("run")
    cfg = config()
    for name, frame in (("aud_heavy", bcg_effects()), ("oud_gen", gen_effects()),
                        ("gamb_one", one_effects())):
        csv = root / "effects" / f"{name}.csv"
        write_csv(frame, csv)                       # as the effects step writes it
        result = run_plan(cfg.analyses[name], read_effects(csv))
        out = root / "analyses" / name / "result.json"
        out.parent.mkdir(parents=True)
        out.write_text(result.to_json(), encoding="utf-8")
    names = list(cfg.analyses)
    write_evidence_tables({n: str(root / "effects" / f"{n}.csv") for n in names},
                          {n: str(root / "analyses" / n / "result.json") for n in names}, cfg,
                          {s: (str(root / "tables" / f"{s}.csv"), str(root / "tables" / f"{s}.md"))
                           for s in TABLE_DIGITS})
    write_svg(root / "figures" / "forest" / "aud_heavy.svg")
    write_svg(root / "figures" / "forest" / "aud_heavy.png", fmt="png")
    write_svg(root / "figures" / "funnel" / "aud_heavy.svg", "funnel")
    write_svg(root / "figures" / "bubble" / "aud_heavy__ablat.svg", "bubble")
    write_svg(root / "figures" / "forest" / "oud_gen.svg")
    # on disk but not an input of the step: the report must not find it
    write_svg(root / "figures" / "cumulative" / "aud_heavy.svg", "stray")
    return root


@pytest.fixture()
def project(made, tmp_path) -> dict:
    """A copy of the run's files (a test may edit them) and the report step's arguments."""
    root = tmp_path / "run"
    shutil.copytree(made, root)
    names = list(config().analyses)
    figures = [root / "figures" / p for p in ("forest/aud_heavy.png", "forest/aud_heavy.svg",
                                             "funnel/aud_heavy.svg", "bubble/aud_heavy__ablat.svg",
                                             "forest/oud_gen.svg")]
    return {"results": {n: root / "analyses" / n / "result.json" for n in names},
            "effects": {n: root / "effects" / f"{n}.csv" for n in names},
            "tables": {s: root / "tables" / f"{s}.csv" for s in TABLE_DIGITS},
            "figures": figures, "config": config(), "tmp": root}


def build(project: dict, name: str = "report.html", **kw) -> Path:
    out = project["tmp"] / name
    got = rp.write_report(project["results"], project["effects"], project["tables"],
                          project["figures"], project["config"], out, **kw)
    assert got == out
    return out


def page_of(project: dict, **kw) -> str:
    return build(project, **kw).read_text(encoding="utf-8")


def article(page: str, name: str) -> str:
    """The HTML of one analysis's section."""
    start = page.index(f'<article id="a-{name}">')
    return page[start:page.index("</article>", start)]


def dd(html_text: str, term: str) -> str:
    """The text of the ``<dd>`` after ``<dt>{term}</dt>`` (term as it is escaped on the page)."""
    m = re.search(re.escape(f"<dt>{term}</dt><dd>") + "(.*?)</dd>", html_text)
    assert m, term
    return m.group(1)


def cells(table_html: str) -> list[list[str]]:
    """The cells of each body row of the first table in ``table_html`` (cells hold no nested table)."""
    body = table_html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("<tr>")[1:]]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of h1-h4."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "h3", "h4"):
            self._in, self._buf = tag, []

    def handle_endtag(self, tag):
        if tag == self._in:
            self.headings.append("".join(self._buf).strip())
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._buf.append(data)


def parse(text: str) -> Elements:
    p = Elements()
    p.feed(text)
    return p


def fmt(x: float, digits: int = 2) -> str:
    """A number as the page writes it (true minus sign), from Python's own format."""
    return f"{x:.{digits}f}".replace("-", MINUS)


# --------------------------------------------------------------------------- escaping and structure


def test_hostile_text_is_shown_as_text(project):
    page = page_of(project)
    # the raw markup never appears; its escaped form does
    assert SCRIPT not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    els = parse(page)
    names = [t for t, _ in els.tags]
    assert "script" not in names and "iframe" not in names and "object" not in names
    for tag, attrs in els.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith(("data:image/svg+xml;base64,", "data:image/png;base64,"))
        if tag == "a":
            assert attrs["href"].startswith(("#", "https://", "http://")), attrs
            assert '"' not in attrs["href"] and "<" not in attrs["href"]
    # a javascript: pseudo-URL in a source stays text, never a link
    assert not any(a.get("href", "").lower().startswith("javascript") for t, a in els.tags if t == "a")
    # hostile config titles: the analysis (from the result) and a sensitivity subset (from the CSV)
    assert "Opioid relapse &lt;script&gt;" in page
    assert "Without &quot;&gt;&lt;img" in article(page, "aud_heavy")


def test_every_study_row_has_its_source_and_quote(project):
    page = page_of(project)
    rows = sum(len(read_effects(p)) for p in project["effects"].values())
    for p in project["effects"].values():
        for rid in read_effects(p).row_id:
            assert f"raw row: {rid}" in page
    assert page.count("<details><summary>Source</summary>") == rows
    assert "Quote 5: 4 of 123 vaccinated; see &amp; compare" in page
    assert '<a href="https://pubmed.example.org/1345133"' in page
    assert "how derived: yes: arm sizes from percentages &lt;b&gt;" in page


def test_summary_of_findings_comes_first_then_analyses_in_indication_order(project):
    page = page_of(project)
    els = parse(page)
    assert ("meta", {"http-equiv": "Content-Security-Policy", "content": rp.CSP}) in els.tags
    assert "default-src 'none'" in rp.CSP
    for tag, attrs in els.tags:    # nothing is fetched: only data: images, no stylesheets or scripts
        assert tag not in ("link", "script", "iframe", "embed", "object")
        assert "src" not in attrs or attrs["src"].startswith("data:")
    h = els.headings
    assert h[0] == rp.PAGE_TITLE
    assert h.index("Summary of findings") < h.index("Alcohol use disorder") < h.index(
        "Opioid use disorder") < h.index("Analyses")
    assert h.index("Analyses") < h.index(TITLE_RR) < h.index(TITLE_GEN) < h.index(
        "Gambling severity") < h.index("Methods")
    sof = page[page.index('id="summary-of-findings"'):page.index('id="analyses"')]
    assert 'href="#a-aud_heavy"' in sof and 'href="#a-oud_gen"' in sof
    assert 'href="#a-gamb_one"' not in sof                 # not a main analysis
    assert page.index('id="summary-of-findings"') < page.index('<article id="a-aud_heavy">')
    assert rp.esc(rp.METHODS_TEXT[0]) in page
    # a single study: the status says why there is no pooled estimate
    one = article(page, "gamb_one")
    assert 'class="status"' in one and "a single study (k = 1)" in one
    assert "Forest plot: not available." in one
    assert "not assessed (k &lt; 10)" in article(page, "oud_gen")


# --------------------------------------------------------------------------- numbers from the inputs


def test_ratio_analysis_is_shown_as_exp_of_the_result(project):
    page = page_of(project)
    for name, label in (("oud_gen", "Pooled ratio (95% CI)"), ("aud_heavy", "Pooled risk ratio (95% CI)")):
        res = read_result(project["results"][name])
        assert res.scale.log
        m = res.main
        shown = dd(article(page, name), label)
        assert shown.startswith(f"{math.exp(m.estimate):.2f} ({math.exp(m.ci.low):.2f} to "
                                f"{math.exp(m.ci.high):.2f})"), shown
        pi = dd(article(page, name), "95% prediction interval")
        assert pi == f"{math.exp(m.pi.low):.2f} to {math.exp(m.pi.high):.2f}"
    # the study rows of the generic analysis: ratios too, not log ratios
    gen = article(page, "oud_gen")
    study_rows = cells(gen[gen.index('<table class="studies">'):])
    assert len(study_rows) == len(GEN_LOG_RATIOS)
    for row, (y, _v) in zip(study_rows, GEN_LOG_RATIOS):
        assert row[3].startswith(f"{math.exp(y):.2f} ("), row[3]
    assert "Ratio (95% CI)" in gen and "Pooled ratio (95% CI)" in gen


def test_study_weights_and_pooled_rows_come_from_the_result(project):
    page = page_of(project)
    res = read_result(project["results"]["aud_heavy"])
    assert res.used[-1] is False and sum(res.used) == 13
    sec = article(page, "aud_heavy")
    rows = cells(sec[sec.index('<table class="studies">'):])
    assert len(rows) == len(res.weights_pct) == 14
    want = [f"{w:.1f}%" if u else "\u2013" for w, u in zip(res.weights_pct, res.used)]
    assert [r[4] for r in rows] == want
    assert "not pooled" in rows[-1][0] and not any("not pooled" in r[0] for r in rows[:-1])
    h = res.main.heterogeneity
    assert dd(sec, "Heterogeneity").startswith(f"\u03c4\u00b2 = {h.tau2:.4f}, I\u00b2 = {h.i2_pct:.0f}%")


def test_metaregression_block_is_the_results_on_its_scale(project):
    page = page_of(project)
    res = read_result(project["results"]["aud_heavy"])
    reg = res.regression("ablat")
    slope = next(c for c in reg.coefficients if c.name == "ablat")
    sec = article(page, "aud_heavy")
    block = sec[sec.index("<h4>Meta-regression</h4>"):]
    row = cells(block)[0]
    assert row[0] == "ablat" and row[1] == str(reg.k)
    assert row[2] == f"{fmt(slope.estimate, 4)} ({fmt(slope.ci.low, 4)} to {fmt(slope.ci.high, 4)})"
    assert row[3] == (f"{math.exp(slope.estimate):.3f} ({math.exp(slope.ci.low):.3f} to "
                      f"{math.exp(slope.ci.high):.3f})")
    assert row[5] == fmt(reg.tau2, 4) and row[6] == f"{reg.r2_pct:.0f}"
    assert "RR ratio per unit" in block


def test_report_fits_nothing(project, monkeypatch):
    """Every fitting entry point raises while the page is made: the report only reads and formats."""
    import ntxmeta.analysis
    import ntxmeta.bias
    import ntxmeta.binary
    import ntxmeta.diagnostics
    import ntxmeta.evidence
    import ntxmeta.metareg
    import ntxmeta.rma
    import ntxmeta.subgroup

    def refuse(*_a, **_k):
        raise AssertionError("the report step called a fitting function")

    for mod, names in ((ntxmeta.rma, ["rma"]), (ntxmeta.analysis, ["run_plan", "FitCache"]),
                       (ntxmeta.evidence, ["evidence_tables", "summary_of_findings",
                                           "sensitivity_table", "subgroup_table",
                                           "small_study_table", "sof_row", "write_evidence_tables"]),
                       (ntxmeta.metareg, ["meta_regression"]),
                       (ntxmeta.bias, ["egger_test", "rank_test", "trim_and_fill"]),
                       (ntxmeta.diagnostics, ["leave1out", "cumulative"]),
                       (ntxmeta.subgroup, ["subgroup_analysis"]),
                       (ntxmeta.binary, ["mantel_haenszel", "peto"])):
        for n in names:
            monkeypatch.setattr(mod, n, refuse)
    page = page_of(project)
    assert TITLE_RR in page
    # nor did it keep a reference of its own to one of them
    assert not {"rma", "run_plan", "evidence_tables", "summary_of_findings", "load_inputs",
                "write_evidence_tables", "TABLE_DIGITS", "analysis_order"} & set(vars(rp))


def test_evidence_tables_are_read_from_their_csv_files(project):
    tables = project["tables"]
    sof = pd.read_csv(tables["summary_of_findings"], dtype=str, keep_default_na=False)
    sof.loc[sof.analysis == "aud_heavy", "estimate"] = "9.87"
    sof.to_csv(tables["summary_of_findings"], index=False)
    sens = pd.read_csv(tables["sensitivity"], dtype=str, keep_default_na=False)
    sens.loc[(sens.analysis == "oud_gen") & (sens.variant == "main"), "note"] = "edited in the CSV <b>"
    sens.to_csv(tables["sensitivity"], index=False)
    page = page_of(project)
    sof_html = page[page.index('id="summary-of-findings"'):page.index('id="analyses"')]
    assert "RR 9.87" in sof_html
    assert "edited in the CSV &lt;b&gt;" in article(page, "oud_gen")


def test_formula_quote_of_the_csv_is_taken_off(project):
    written = pd.read_csv(project["tables"]["sensitivity"], dtype=str, keep_default_na=False)
    assert ("'" + FORMULA) in set(written.description)          # the writer made it safe
    sec = article(page_of(project), "aud_heavy")
    assert "=HYPERLINK(&quot;http://x.example.org&quot;)" in sec
    assert "&#x27;=HYPERLINK" not in sec and "'=HYPERLINK" not in sec
    assert rp.unneutralise("'-5 rows") == "-5 rows" and rp.unneutralise("'quoted") == "'quoted"


def test_a_result_that_does_not_match_its_effects_table_is_refused(project):
    eff = read_effects(project["effects"]["oud_gen"]).iloc[:2]
    write_csv(eff, project["effects"]["oud_gen"])
    with pytest.raises(ValueError, match="oud_gen: result has 3 rows, effects table 2; re-run the pool step"):
        build(project)


def test_a_missing_table_is_refused(project):
    del project["tables"]["subgroups"]
    with pytest.raises(ValueError, match="subgroups"):
        build(project)


# --------------------------------------------------------------------------- figures


def test_figure_map_prefers_svg_and_reads_bubble_moderators(tmp_path):
    f = tmp_path / "figures"
    got = rp.figure_map([f / "forest/a.png", f / "forest/a.svg", f / "funnel/a.png",
                         f / "bubble/a__dose_mg.svg", f / "bubble/a__dose_mg.png",
                         f / "bubble/a__year.svg", f / "leave_one_out/b__c.svg",
                         f / "bubble/b__c__year.svg"], analyses=["a", "b__c"])
    assert got == {"a": {"forest": f / "forest/a.svg", "funnel": f / "funnel/a.png",
                         "bubble:dose_mg": f / "bubble/a__dose_mg.svg",
                         "bubble:year": f / "bubble/a__year.svg"},
                   "b__c": {"leave_one_out": f / "leave_one_out/b__c.svg",
                            "bubble:year": f / "bubble/b__c__year.svg"}}
    assert list(got["a"]) == ["forest", "funnel", "bubble:dose_mg", "bubble:year"]   # page order
    with pytest.raises(ValueError, match="unknown figure kind 'radar'"):
        rp.figure_map([f / "radar/a.svg"])
    with pytest.raises(ValueError, match="not a figure file"):
        rp.figure_map([f / "forest/a.pdf"])


def test_figures_are_the_given_files_embedded_svg_first(project):
    page = page_of(project)
    srcs = [a["src"] for t, a in parse(page).tags if t == "img"]
    # forest, funnel and bubble of aud_heavy, forest of oud_gen; the PNG loses to its SVG,
    # and the cumulative plot on disk is not an input, so it is not shown
    assert len(srcs) == 4 and all(s.startswith("data:image/svg+xml;base64,") for s in srcs)
    stray = base64.b64encode((project["tmp"] / "figures/cumulative/aud_heavy.svg").read_bytes()).decode()
    assert stray not in page
    forest = base64.b64encode((project["tmp"] / "figures/forest/aud_heavy.svg").read_bytes()).decode()
    assert forest in article(page, "aud_heavy")
    assert "More figures (2)" in article(page, "aud_heavy")
    assert "are linked, not embedded" not in page


def test_figures_above_the_budget_are_linked(project):
    shown = [p for p in project["figures"] if p.suffix == ".svg"]
    total = sum(p.stat().st_size for p in shown)
    at = page_of(project, inline_max_bytes=total)          # at the budget: still embedded
    assert at.count("data:image/svg+xml;base64,") == 4
    page = page_of(project, inline_max_bytes=total - 1)    # one byte over: linked
    els = parse(page)
    assert "data:image" not in page and "are linked, not embedded" in page
    assert ("meta", {"http-equiv": "Content-Security-Policy", "content": rp.CSP_LINKED}) in els.tags
    srcs = sorted(a["src"] for t, a in els.tags if t == "img")
    assert srcs == sorted(p.relative_to(project["tmp"]).as_posix() for p in shown)


def test_report_is_deterministic(project):
    a = build(project, "a.html").read_bytes()
    b = build(project, "b.html").read_bytes()
    assert a == b
    # no date or time of day anywhere in the page
    assert not re.search(rb"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", a.replace(b"base64,", b"").split(b"<style>")[0])


# --------------------------------------------------------------------------- headless Chromium


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4).

    Messages are JSON objects terminated by a NUL byte; commands to a page go
    through a flattened session (``Target.attachToTarget(flatten=True)``).
    """

    def __init__(self, profile: Path):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # put the child's ends out of the way of fds 3 and 4 before dup2 onto them
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "--enable-logging=stderr",
                "--v=0", "about:blank"]
        actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, str(self.log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   (os.POSIX_SPAWN_DUP2, hi_r, 3), (os.POSIX_SPAWN_DUP2, hi_w, 4)]
        self.pid = os.posix_spawn(CHROMIUM, args, os.environ, file_actions=actions)
        os.close(hi_r)
        os.close(hi_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _recv(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time; see " + str(self.log))
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe; see " + str(self.log))
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + CDP_TIMEOUT_S
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = CDP_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._recv(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._recv(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            os.kill(self.pid, 9)
        finally:
            os.waitpid(self.pid, 0)
            os.close(self._r)
            os.close(self._w)


def render(page: Path, profile: Path, screenshot: Path | None = None, width: int = 1280,
           probe: str | None = None) -> dict:
    """Load a file in headless Chromium; return console errors, requests, headings (and a screenshot).

    ``probe``: a JavaScript expression whose JSON value is returned as ``probe``.
    """
    browser = Chromium(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        browser.drain(SETTLE_S)
        found = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify([...document.querySelectorAll('h1,h2,h3')].map(h => h.textContent.trim()))",
            "returnByValue": True}, session=session)
        headings = json.loads(found["result"]["value"])
        # every image, lazy ones made eager: its width once decoded (0: it did not load)
        loaded = browser.send("Runtime.evaluate", {
            "expression": "Promise.all([...document.images].map(i => { i.loading = 'eager'; "
                          "return i.decode().then(() => i.naturalWidth, () => 0); }))",
            "awaitPromise": True, "returnByValue": True}, session=session)
        image_widths = loaded["result"]["value"]
        probed = (json.loads(browser.send("Runtime.evaluate", {
            "expression": f"JSON.stringify({probe})", "returnByValue": True},
            session=session)["result"]["value"]) if probe else None)
        browser.drain(SETTLE_S)
        if screenshot is not None:
            metrics = browser.send("Page.getLayoutMetrics", session=session)
            size = metrics["cssContentSize"]
            shot = browser.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}},
                session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    errors = []
    for ev in browser.events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            errors.append("exception: " + p.get("exceptionDetails", {}).get("text", ""))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append("log: " + p["entry"].get("text", ""))
    requests = [ev["params"]["request"]["url"] for ev in browser.events
                if ev.get("method") == "Network.requestWillBeSent"]
    return {"errors": errors, "requests": requests, "headings": headings, "image_widths": image_widths,
            "probe": probed}


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")


@pytest.mark.browser
@needs_chromium
def test_detector_sees_console_errors_and_requests(tmp_path):
    """Control: a page that logs an error and fetches an image must be caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>t</title></head><body><h1>Bad</h1>"
                    "<img src='missing.png'><script>console.error('boom')</script></body></html>")
    seen = render(page, tmp_path / "profile")
    assert any("boom" in e for e in seen["errors"]), seen
    assert any(u.endswith("missing.png") for u in seen["requests"]), seen
    assert seen["headings"] == ["Bad"]
    # a script that the report's CSP would block is reported too
    page.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                    f'content="{rp.CSP}"><title>t</title></head><body><h1>CSP</h1>'
                    "<script>document.title = 'ran'</script></body></html>")
    seen = render(page, tmp_path / "profile2")
    assert any("Content Security Policy" in e for e in seen["errors"]), seen


@pytest.mark.browser
@needs_chromium
def test_report_renders_in_chromium_without_errors(project):
    out = build(project)
    shot = project["tmp"] / "report.png"
    seen = render(out, project["tmp"] / "profile", screenshot=shot)
    assert seen["errors"] == []
    # the only request is the page itself: figures are data: URIs, no script runs
    assert [u for u in seen["requests"] if not u.startswith("data:")] == [out.resolve().as_uri()]
    h = seen["headings"]
    assert h[:3] == [rp.PAGE_TITLE, "Contents", "Summary of findings"]
    for expected in ("Alcohol use disorder", "Opioid use disorder", "Analyses",
                     TITLE_RR, TITLE_GEN, "Gambling severity", "Methods"):
        assert expected in h, (expected, h)
    assert shot.stat().st_size > 10_000       # a page was painted, not a blank
    assert seen["image_widths"] and all(w > 0 for w in seen["image_widths"])


#: What the browser shows in each row of the summary of findings: the certainty cell, as rendered.
SOF_CERTAINTY_JS = ("[...document.querySelectorAll('table.sof tbody tr')].map(tr => "
                    "{ const c = tr.querySelector('.certainty'); "
                    "return c ? [c.innerText.trim(), c.getBoundingClientRect().width] : null; })")


@pytest.mark.browser
@needs_chromium
def test_every_sof_row_shows_its_certainty_in_chromium(project):
    """The rendered page (not the HTML string) shows a GRADE certainty in every SoF row, visibly,
    and it is the one the tables step wrote for that row."""
    out = build(project)
    seen = render(out, project["tmp"] / "profile", probe=SOF_CERTAINTY_JS)
    assert seen["errors"] == []
    sof = pd.read_csv(project["tables"]["summary_of_findings"])
    cells = seen["probe"]
    assert len(cells) == len(sof) > 0 and all(c is not None for c in cells), cells
    pattern = re.compile(r"^[\u2295\u25ef]{4} (High|Moderate|Low|Very low)( \([a-z,]+\))?$")
    for (text, width), want in zip(cells, sof["certainty"]):
        assert pattern.match(text), text
        assert width > 0 and text == want
    # each symbol count matches its label (4 high ... 1 very low)
    for text, _ in cells:
        label = pattern.match(text).group(1)
        assert text.count("\u2295") == {"High": 4, "Moderate": 3, "Low": 2, "Very low": 1}[label]


#: Elements that run off the page: right edge past the viewport, not inside a box that scrolls.
OVERFLOW_JS = ("({page: document.documentElement.scrollWidth, view: window.innerWidth, "
               "off: [...document.body.querySelectorAll('*')].filter(e => !e.closest('.scroll') && "
               "e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + "
               "e.className).slice(0, 10), "
               "boxes: [...document.querySelectorAll('.scroll')].filter(b => "
               "b.getBoundingClientRect().right > window.innerWidth + 1).length})")


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("width", [400, 1280])
def test_report_fits_the_screen_at_400_and_1280_px(project, width):
    """Nothing runs off the page: wide tables scroll inside their own box (issue: any screen)."""
    out = build(project)
    shot = project["tmp"] / f"report_{width}.png"
    seen = render(out, project["tmp"] / f"profile{width}", screenshot=shot, width=width,
                  probe=OVERFLOW_JS)
    got = seen["probe"]
    assert seen["errors"] == []
    assert got["view"] == width and got["page"] <= width, got
    assert got["off"] == [] and got["boxes"] == 0, got
    assert shot.stat().st_size > 10_000


def test_tables_sit_in_scroll_boxes_and_print_has_its_stylesheet(project):
    page = page_of(project)
    tables = [t for t, _ in parse(page).tags if t == "table"]
    assert tables and page.count('<div class="scroll"><table') == len(tables)
    assert "@media print" in page and "@media (max-width: 640px)" in page


@pytest.mark.browser
@needs_chromium
def test_large_figure_sets_are_linked_and_still_shown(project):
    """Over the inline budget the figures are files beside the page: each one loads, none is blocked."""
    out = build(project, inline_max_bytes=0)
    page = out.read_text(encoding="utf-8")
    assert "data:image" not in page and "are linked, not embedded" in page
    srcs = [a["src"] for t, a in parse(page).tags if t == "img"]
    assert srcs and all(s.startswith("figures/") for s in srcs)
    seen = render(out, project["tmp"] / "profile")
    assert seen["errors"] == []               # the CSP lets the linked figures in, nothing else
    assert len(seen["image_widths"]) == len(srcs) and all(w > 0 for w in seen["image_widths"])
    figures_uri = (project["tmp"] / "figures").resolve().as_uri()
    assert all(u.startswith(figures_uri) for u in seen["requests"][1:]), seen["requests"]


def test_rows_matched_but_not_used_are_listed_with_their_reason(project):
    left = project["tmp"] / "left_out_aud_heavy.csv"
    left.write_text("row_id,study_id,label,year,outcome,data_type,source_file,source_line,"
                    "exclusion_reason\nX_wk24,X,Kiefer 2003 (wk 24),2003,relapse_heavy_drinking,"
                    "binary,data/raw/alcohol.csv,9,repeated time point of the same patients "
                    "<wk 24>\n", encoding="utf-8")
    page = page_of(project, name="left_out.html", left_out={"aud_heavy": left})
    part = article(page, "aud_heavy")
    assert "Matched by the filters but not used (1)" in part
    assert "repeated time point of the same patients &lt;wk 24&gt;" in part  # escaped
    assert "Matched by the filters but not used" not in article(page, "oud_gen")


def test_prisma_diagram_is_its_own_section_before_the_methods(project):
    """The study-selection section embeds the PRISMA SVG it is given, right before the methods."""
    from ntxmeta.prisma import write_prisma
    log = Path(__file__).resolve().parents[1] / "data/screening"
    png, svg, _ = write_prisma(log / "records.csv", log / "studies.csv",
                               project["tmp"] / "figures/prisma/prisma.png")
    page = page_of(project, prisma=svg)
    heads = parse(page).headings
    assert heads.index("Study selection") == heads.index("Methods") - 1
    section = page[page.index('id="study-selection"'):page.index('id="methods"')]
    assert base64.b64encode(svg.read_bytes()).decode("ascii") in section
    assert "not recorded" in section and 'href="#study-selection"' in page
    assert 'id="study-selection"' not in page_of(project)  # no diagram given, no section
