"""The HTML report and the evidence-table files.

* hostile study labels, quotes, sources and config titles are shown as text
  (no element, attribute or script can be injected);
* the page is self-contained: no script, no external resource, a CSP;
* it renders in headless Chromium without console errors or requests
  beyond the page itself, and shows the expected headings (a tiny Chrome
  DevTools Protocol client over ``--remote-debugging-pipe``, so no
  third-party driver is needed); a control page with a console error
  proves that the detector can fail;
* output is deterministic, and the tables are written as CSV and Markdown
  with formula-looking cells neutralised.

Fixtures: the vendored metafor case ``bcg_RR`` (13 BCG trials) dressed up as
an analysis (its ``data.csv`` as arm counts, its ``out.json`` as the result).
Chromium: Debian's ``chromium`` package (CI installs it: ``apt-get install -y
chromium``); the browser tests are skipped, saying why, only when it is absent.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntxmeta import report as rp
from ntxmeta.analyse import dumps, load_result

FIX = Path(__file__).parent / "fixtures" / "oracle"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Seconds to wait for Chromium to answer a command or load the page.
CDP_TIMEOUT_S = 60.0
#: After the load event, how long to keep listening for late console errors.
SETTLE_S = 0.5


# --------------------------------------------------------------------------- fixtures


def bcg_effects() -> pd.DataFrame:
    """bcg_RR as a pipeline effects table, with hostile text in the labels, quotes and sources."""
    d = pd.read_csv(FIX / "bcg_RR" / "data.csv")
    ref = load_result(FIX / "bcg_RR" / "out.json")
    k = len(d)
    labels = list(d.author)
    labels[0] = f"Aronson {SCRIPT}"
    labels[1] = f"Ferguson {IMG}"
    quotes = [f"Quote {i}: 4 of 123 vaccinated; see & compare" for i in range(k)]
    quotes[0] = f"{SCRIPT} relapse in 8/35"
    quotes[2] = IMG
    sources = ["PMID 1345133 (https://pubmed.example.org/1345133)"] * k
    sources[1] = f'javascript:alert(1) {IMG} https://x.example.org/a"onmouseover=alert(1)'
    return pd.DataFrame({
        "row_id": [f"BCG{i:02d}" for i in d.trial], "study_id": d.author, "label": labels,
        "year": d.year, "subgroup": d.alloc, "indication": "alcohol", "outcome": "relapse",
        "comparator_type": np.where(d.trial % 3 == 0, "active", "placebo"),
        "formulation": "oral", "genotype": "", "dose_mg": 50, "followup_weeks": 12,
        "data_type": "binary", "events_treat": d.ai, "n_treat": d.n1i, "events_ctrl": d.ci,
        "n_ctrl": d.n2i, "yi": ref["escalc"]["yi"], "vi": ref["escalc"]["vi"],
        "sei": ref["escalc"]["sei"], "ci_lb": ref["escalc"]["ci.lb"], "ci_ub": ref["escalc"]["ci.ub"],
        "weight_pct": ref["rma"]["REML"]["weights_pct"],
        "confidence": np.where(d.trial % 4 == 0, "low", "high"), "derived": d.trial % 5 == 0,
        "flipped": False, "source": sources, "quote": quotes,
        "derived_text": ["yes: arm sizes from percentages <b>"] + [""] * (k - 1)})


def bcg_result(title: str = "Return to heavy drinking") -> dict:
    res = load_result(FIX / "bcg_RR" / "out.json")
    res["name"] = "aud_heavy"
    res["analysis"] = {"title": title, "measure": "RR", "method": "REML", "test": "z", "level": 95,
                       "k_used": 13, "participants": 357347, "status": "pooled"}
    return res


def bcg_config(title: str = "Return to heavy drinking") -> dict:
    return {"defaults": {"method": "REML", "test": "z"},
            "analyses": {"aud_heavy": {"title": title, "measure": "RR", "main": True,
                                       "subgroup": "alloc", "filters": {"indication": ["alcohol"]}},
                         "oud_small": {"title": f"Opioid relapse {SCRIPT}", "measure": "RR",
                                       "main": True, "filters": {"indication": ["opioid"]}}},
            "sensitivity": {"no_alt": {"title": f"Without {IMG}", "exclude": {"subgroup": ["alternate"]}}}}


def small_case() -> tuple[pd.DataFrame, dict]:
    """bcg_k3_RR (k = 3) as a second analysis: no small-study assessment, one subgroup level."""
    d = pd.read_csv(FIX / "bcg_k3_RR" / "data.csv")
    ref = load_result(FIX / "bcg_k3_RR" / "out.json")
    eff = pd.DataFrame({"row_id": [f"K3{i}" for i in range(len(d))], "study_id": d.author,
                        "label": d.author, "year": d.year, "indication": "opioid",
                        "comparator_type": "placebo", "data_type": "binary",
                        "events_treat": d.ai, "n_treat": d.n1i, "events_ctrl": d.ci, "n_ctrl": d.n2i,
                        "yi": ref["escalc"]["yi"], "vi": ref["escalc"]["vi"],
                        "ci_lb": ref["escalc"]["ci.lb"], "ci_ub": ref["escalc"]["ci.ub"],
                        "confidence": "high", "derived": False, "flipped": False,
                        "source": "s", "quote": "q"})
    ref["name"] = "oud_small"
    ref["analysis"] = {"title": f"Opioid relapse {SCRIPT}", "measure": "RR", "method": "REML",
                       "test": "z", "level": 95, "k_used": 3, "participants": 1000, "status": "pooled"}
    return eff, ref


def write_svg(path: Path) -> None:
    """A small figure made with matplotlib (independent of ntxmeta.plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0.3, 0.5, 0.9], [1, 2, 3], "s")
    ax.set_title("forest")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})


@pytest.fixture()
def project(tmp_path: Path) -> dict:
    """Effects, results and figures on disk as the workflow lays them out."""
    eff_dir, res_dir, fig_dir = tmp_path / "effects", tmp_path / "analyses", tmp_path / "figures"
    eff_dir.mkdir()
    bcg_effects().to_csv(eff_dir / "aud_heavy.csv", index=False)
    k3_eff, k3_res = small_case()
    k3_eff.to_csv(eff_dir / "oud_small.csv", index=False)
    for name, res in (("aud_heavy", bcg_result()), ("oud_small", k3_res)):
        (res_dir / name).mkdir(parents=True)
        (res_dir / name / "result.json").write_text(dumps(res))
    write_svg(fig_dir / "forest" / "aud_heavy.svg")
    write_svg(fig_dir / "funnel" / "aud_heavy.svg")
    return {"effects": sorted(eff_dir.glob("*.csv")), "results": sorted(res_dir.glob("*/result.json")),
            "figures": fig_dir, "config": bcg_config(), "tmp": tmp_path}


def build(project: dict, name: str = "report.html") -> Path:
    out = project["tmp"] / name
    rp.write_report(project["effects"], project["results"], project["figures"], project["config"], out)
    return out


# --------------------------------------------------------------------------- HTML structure


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


def test_hostile_text_is_shown_as_text(project):
    page = build(project).read_text(encoding="utf-8")
    # the raw markup never appears; its escaped form does
    assert SCRIPT not in page and "<img src=x" not in page
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
    # hostile config titles (analysis and sensitivity subset) are escaped too
    assert "Opioid relapse &lt;script&gt;" in page
    assert "Without &quot;&gt;&lt;img" in page


def test_every_study_row_has_its_source_and_quote(project):
    page = build(project).read_text(encoding="utf-8")
    eff = bcg_effects()
    for rid in eff.row_id:
        assert f"raw row: {rid}" in page
    assert page.count("<details><summary>Source</summary>") == len(eff) + len(small_case()[0])
    assert "Quote 5: 4 of 123 vaccinated; see &amp; compare" in page
    assert '<a href="https://pubmed.example.org/1345133"' in page
    assert "how derived: yes: arm sizes from percentages &lt;b&gt;" in page     # when the table has it


def test_page_is_self_contained_and_ordered(project):
    page = build(project).read_text(encoding="utf-8")
    els = parse(page)
    assert ("meta", {"http-equiv": "Content-Security-Policy", "content": rp.CSP}) in els.tags
    assert "default-src 'none'" in rp.CSP
    for tag, attrs in els.tags:    # nothing is fetched: only data: images, no stylesheets or scripts
        assert tag not in ("link", "script", "iframe", "embed", "object")
        assert "src" not in attrs or attrs["src"].startswith("data:")
    # the summary of findings comes first, then the analyses in indication order
    h = els.headings
    assert h[0] == rp.PAGE_TITLE
    assert h.index("Summary of findings") < h.index("Return to heavy drinking") < h.index(
        f"Opioid relapse {SCRIPT}") < h.index("Methods")
    assert h.index("Alcohol use disorder") < h.index("Opioid use disorder") < h.index("Analyses")
    # the forest figure is embedded; the missing ones are said to be missing
    assert page.count("data:image/svg+xml;base64,") == 2
    assert "Forest plot: not available." in page     # oud_small has no figures
    assert "not assessed (k &lt; 10)" in page


def test_report_is_deterministic(project):
    a = build(project, "a.html").read_bytes()
    b = build(project, "b.html").read_bytes()
    assert a == b
    # no date or time of day anywhere in the page
    import re
    assert not re.search(rb"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", a.replace(b"base64,", b"").split(b"<style>")[0])


def test_evidence_tables_are_written_as_csv_and_markdown(project):
    out = project["tmp"] / "tables"
    written = rp.write_evidence_tables(project["effects"], project["results"], project["config"], out)
    stems = ["summary_of_findings", "sensitivity", "subgroups", "small_study_effects"]
    assert sorted(p.name for p in written) == sorted(f"{s}.{e}" for s in stems for e in ("csv", "md"))
    sof = pd.read_csv(out / "summary_of_findings.csv")
    assert list(sof.analysis) == ["aud_heavy", "oud_small"]          # alcohol before opioid
    sens = pd.read_csv(out / "sensitivity.csv")
    assert set(sens.analysis) == {"aud_heavy", "oud_small"}
    # the config's hostile title starts with "W", so it is kept as is; a formula would be neutralised
    assert (sens.description == f"Without {IMG}").any()
    md = (out / "sensitivity.md").read_text()
    assert md.startswith("| analysis | variant |")
    small = pd.read_csv(out / "small_study_effects.csv").set_index("analysis")
    assert small.loc["oud_small", "note"] == "not assessed (k < 10)"
    assert small.loc["aud_heavy", "egger_p"] == pytest.approx(0.421784535672228, rel=1e-9)


def test_formula_cells_are_neutralised_in_the_tables(project):
    cfg = bcg_config()
    cfg["sensitivity"] = {"evil": {"title": "=HYPERLINK(\"http://x\")", "exclude": {"subgroup": ["alternate"]}}}
    out = project["tmp"] / "tables"
    rp.write_evidence_tables(project["effects"], project["results"], cfg, out)
    sens = pd.read_csv(out / "sensitivity.csv")
    assert (sens.description == "'=HYPERLINK(\"http://x\")").any()


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


def render(page: Path, profile: Path, screenshot: Path | None = None, width: int = 1280) -> dict:
    """Load a file in headless Chromium; return console errors, requests, headings (and a screenshot)."""
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
    return {"errors": errors, "requests": requests, "headings": headings, "image_widths": image_widths}


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
                     "Return to heavy drinking", f"Opioid relapse {SCRIPT}", "Methods"):
        assert expected in h, (expected, h)
    assert shot.stat().st_size > 10_000       # a page was painted, not a blank
    assert seen["image_widths"] and all(w > 0 for w in seen["image_widths"])


@pytest.mark.browser
@needs_chromium
def test_large_figure_sets_are_linked_and_still_shown(project):
    """Over the inline budget the figures are files beside the page: each one loads, none is blocked."""
    out = project["tmp"] / "report.html"
    rp.write_report(project["effects"], project["results"], project["figures"], project["config"],
                    out, inline_max_bytes=0)
    page = out.read_text(encoding="utf-8")
    assert "data:image" not in page and "are linked, not embedded" in page
    srcs = [a["src"] for t, a in parse(page).tags if t == "img"]
    assert srcs and all(s.startswith("figures/") for s in srcs)
    seen = render(out, project["tmp"] / "profile")
    assert seen["errors"] == []               # the CSP lets the linked figures in, nothing else
    assert len(seen["image_widths"]) == len(srcs) and all(w > 0 for w in seen["image_widths"])
    figures_uri = (project["tmp"] / "figures").resolve().as_uri()
    assert all(u.startswith(figures_uri) for u in seen["requests"][1:]), seen["requests"]
