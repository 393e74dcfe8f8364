"""Evidence versions and a changelog: what each change of the data did to each analysis.

Each run of the ``changelog`` rule takes a *snapshot* of the evidence: every
comparison row (``data/processed/comparisons.csv``, keyed by ``row_id``), the
rows each analysis uses (``data/processed/effects/*.csv``), each analysis's
numbers on the shown scale (``results/tables/summary.csv``: k, estimate, CI,
PI, tau², I²) and its GRADE certainty (``summary_of_findings.csv``). When the
snapshot differs from the last recorded one, a new *version* is appended to
``results/changelog.json`` (data digest, date, tool version, what changed)
and ``results/changelog.md`` is written from it; when nothing differs, no
version is recorded and neither file is rewritten (only touched, so that
Snakemake sees the job done).

A change is reported per row (added, removed, changed with the columns that
changed; a row's line number in its file is not part of its content, so
inserting a row above it changes nothing) and per analysis that it moved
(its rows or any number changed), with before/after numbers and flags:

- ``ci_now_excludes_null`` / ``ci_now_includes_null``: the CI stopped or
  started crossing the null value (1 for ratios, 0 otherwise);
- ``direction_changed``: the estimate moved to the other side of the null;
- ``certainty_changed``: the GRADE certainty level changed;
- ``new_analysis`` / ``analysis_removed``.

Analyses the change did not touch are not listed. Living-review platforms
diff by hand; written here because no library keeps a version history of a
meta-analysis (pandas gives the table comparison, used below).

The date is today's (UTC) unless ``SOURCE_DATE_EPOCH`` is set (the
reproducible-builds convention), so that tests and rebuilds can fix it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .io import write_text
from .result import RATIO_MEASURES

#: Layout version of results/changelog.json; a reader refuses any other.
SCHEMA = "ntxmeta.changelog/1"

#: Columns of comparisons.csv that say where a row is, not what it is.
LOCATION_COLUMNS = ("source_line",)

#: Numbers of an analysis compared between versions (summary.csv columns, shown scale).
NUMBERS = ("k", "participants", "estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "tau2", "I2_pct",
           "pval")

#: Relative tolerance under which two numbers of an analysis are the same: the
#: tables are written with 10 significant digits (io.CSV_FLOAT), so a smaller
#: difference is a rounding artefact, not a change of the evidence.
SAME_REL = 1e-9

#: Shown-scale names whose null value is 1 (tables.summary_table's ``measure``).
RATIO_NAMES = frozenset(RATIO_MEASURES) | {"Ratio"}


def _text(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def joint_entries(result_json) -> dict:
    """A joint model's estimates as changelog analyses, ``"{model}: {estimate}"`` each.

    Every estimate of a joint model (a time point; a treatment against the
    network's reference) lists all the model's rows, since any row moves all
    of them (one variance, one V); numbers are on the shown scale, as in
    summary.csv, with the model's first variance component as ``tau2``.
    """
    from .joint import JointResult
    from .result import Scale
    r = JointResult.from_json(Path(result_json).read_text(encoding="utf-8"))
    scale = Scale.of(r.measure)
    rows = sorted({str(row[0]) for row in r.rows})
    tau2 = next(iter(r.variance.values()), None) if r.variance else None
    out = {}
    for e in r.estimates:
        numbers = dict.fromkeys(NUMBERS)
        numbers.update(k=float(e.k), estimate=float(scale.show(e.estimate)),
                       ci_lb=float(scale.show(e.ci_low)), ci_ub=float(scale.show(e.ci_high)),
                       pval=float(e.pval), tau2=None if tau2 is None else float(tau2))
        out[f"{r.name}: {e.label}"] = {
            "title": f"{r.title}: {e.label}", "measure": scale.name, "status": "pooled",
            "numbers": {c: (None if v is None or math.isnan(v) else v)
                        for c, v in numbers.items()},
            "rows": rows, "certainty": None}
    return out


def snapshot(comparisons_csv, effects_csvs, summary_csv, sof_csv=None, joint_jsons=()) -> dict:
    """The evidence of one run: rows, each analysis's rows, numbers and certainty.

    ``joint_jsons``: the joint models' result.json files (:func:`joint_entries`).
    Plain JSON types only, so that a snapshot stored in changelog.json
    compares equal to one taken from the same files.
    """
    table = _text(comparisons_csv)
    rows = {}
    for rec in table.to_dict("records"):
        where = f"{rec.get('source_file', '')} line {rec.get('source_line', '')}".strip()
        content = {c: v for c, v in rec.items() if c not in LOCATION_COLUMNS}
        rows[rec["row_id"]] = {"where": where, "content": content}
    used = {}
    for path in effects_csvs:
        frame = _text(path)
        used[Path(path).stem] = sorted(frame["row_id"]) if "row_id" in frame else []
    certainty = {}
    if sof_csv is not None and Path(sof_csv).is_file():
        for rec in _text(sof_csv).to_dict("records"):
            certainty[rec["analysis"]] = rec.get("certainty_label", "") or ""
    analyses = {}
    for rec in _text(summary_csv).to_dict("records"):
        name = rec["analysis"]
        analyses[name] = {
            "title": rec["title"], "measure": rec["measure"], "status": rec["status"],
            "numbers": {c: _number(rec[c]) for c in NUMBERS if c in rec},
            "rows": used.get(name, []),
            "certainty": certainty.get(name),
        }
    for path in joint_jsons:
        analyses.update(joint_entries(path))
    return {"rows": rows, "analyses": analyses}


def digest(snap: dict) -> str:
    """sha256 of the snapshot's rows (the data digest of a version)."""
    blob = json.dumps(snap["rows"], sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=SAME_REL, abs_tol=1e-12)


def _null(measure: str) -> float:
    return 1.0 if measure in RATIO_NAMES else 0.0


def _excludes_null(numbers: dict, null: float) -> bool | None:
    lo, hi = numbers.get("ci_lb"), numbers.get("ci_ub")
    if lo is None or hi is None:
        return None
    return lo > null or hi < null


def _side(numbers: dict, null: float) -> int | None:
    est = numbers.get("estimate")
    if est is None or est == null:
        return None
    return 1 if est > null else -1


@dataclass(frozen=True)
class RowChange:
    row_id: str
    kind: str            # "added", "removed", "changed"
    where: str
    label: str
    columns: tuple       # ((column, before, after), ...) for "changed"

    def to_dict(self) -> dict:
        return {"row_id": self.row_id, "kind": self.kind, "where": self.where, "label": self.label,
                "columns": [list(c) for c in self.columns]}


def row_changes(before: dict, after: dict) -> list[RowChange]:
    """Rows added, removed or changed between two snapshots' ``rows``, by row id."""
    out = []
    for rid in sorted(set(before) | set(after)):
        old, new = before.get(rid), after.get(rid)
        if old is None:
            out.append(RowChange(rid, "added", new["where"], new["content"].get("label", ""), ()))
        elif new is None:
            out.append(RowChange(rid, "removed", old["where"], old["content"].get("label", ""), ()))
        else:
            a, b = old["content"], new["content"]
            cols = tuple((c, a.get(c, ""), b.get(c, "")) for c in sorted(set(a) | set(b))
                         if a.get(c, "") != b.get(c, ""))
            if cols:
                out.append(RowChange(rid, "changed", new["where"], b.get("label", ""), cols))
    return out


def analysis_changes(before: dict, after: dict, changed_rows: set[str]) -> list[dict]:
    """Per analysis moved: before/after numbers, rows involved and flags.

    An analysis is moved when its row set changed, one of its rows changed,
    or a number, its status or its certainty changed; others are left out.
    """
    out = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            here = new or old
            out.append({"analysis": name, "title": here["title"], "measure": here["measure"],
                        "flags": ["new_analysis" if old is None else "analysis_removed"],
                        "rows": {"added": here["rows"] if old is None else [],
                                 "removed": here["rows"] if new is None else [], "changed": []},
                        "before": old and old["numbers"], "after": new and new["numbers"],
                        "certainty": [old and old["certainty"], new and new["certainty"]],
                        "status": [old and old["status"], new and new["status"]]})
            continue
        rows_old, rows_new = set(old["rows"]), set(new["rows"])
        rows = {"added": sorted(rows_new - rows_old), "removed": sorted(rows_old - rows_new),
                "changed": sorted(rows_new & rows_old & changed_rows)}
        numbers_moved = any(not _same(old["numbers"].get(c), new["numbers"].get(c)) for c in NUMBERS)
        if not (any(rows.values()) or numbers_moved or old["status"] != new["status"]
                or old["certainty"] != new["certainty"]):
            continue
        null = _null(new["measure"])
        flags = []
        ex_old, ex_new = _excludes_null(old["numbers"], null), _excludes_null(new["numbers"], null)
        if ex_old is not None and ex_new is not None and ex_old != ex_new:
            flags.append("ci_now_excludes_null" if ex_new else "ci_now_includes_null")
        side_old, side_new = _side(old["numbers"], null), _side(new["numbers"], null)
        if side_old is not None and side_new is not None and side_old != side_new:
            flags.append("direction_changed")
        if old["certainty"] != new["certainty"]:
            flags.append("certainty_changed")
        out.append({"analysis": name, "title": new["title"], "measure": new["measure"],
                    "flags": flags, "rows": rows, "before": old["numbers"], "after": new["numbers"],
                    "certainty": [old["certainty"], new["certainty"]],
                    "status": [old["status"], new["status"]]})
    return out


def today() -> str:
    """ISO date of this run: SOURCE_DATE_EPOCH's if set, else today's (UTC)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch
            else _dt.datetime.now(_dt.timezone.utc))
    return when.date().isoformat()


def read_history(path) -> dict:
    """changelog.json, or an empty history when there is none yet."""
    path = Path(path)
    if not path.is_file():
        return {"schema": SCHEMA, "versions": [], "current": None}
    history = json.loads(path.read_text(encoding="utf-8"))
    if history.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {history.get('schema')!r} is not {SCHEMA!r}; "
                         "move the file away to start a new history")
    return history


def record(history: dict, snap: dict, *, date: str, tool_version: str) -> bool:
    """Append a version to ``history`` when ``snap`` differs from its current snapshot.

    Returns whether a version was added. The first version records the
    evidence as it is (every row and analysis counted, none diffed).
    """
    current = history.get("current")
    number = len(history["versions"]) + 1
    version = {"version": number, "date": date, "tool_version": tool_version,
               "data_digest": digest(snap)}
    if current is None:
        version.update(first=True, n_rows=len(snap["rows"]), n_analyses=len(snap["analyses"]),
                       rows=[], analyses=[])
    else:
        rows = row_changes(current["rows"], snap["rows"])
        changed = {r.row_id for r in rows if r.kind == "changed"}
        moved = analysis_changes(current["analyses"], snap["analyses"], changed)
        if not rows and not moved:
            return False
        for change in moved:   # name the rows by their changes' kind
            change["rows"] = {k: v for k, v in change["rows"].items() if v}
        version.update(first=False, rows=[r.to_dict() for r in rows], analyses=moved)
    history["versions"].append(version)
    history["current"] = snap
    return True


def _fmt(x) -> str:
    if x is None:
        return "–"
    if float(x).is_integer() and abs(x) >= 1:
        return f"{int(x)}"
    return f"{x:.3g}" if abs(x) < 1e-2 else f"{x:.2f}"


def _interval(numbers: dict | None, low: str, high: str) -> str:
    if not numbers or numbers.get(low) is None:
        return "–"
    return f"{_fmt(numbers[low])} to {_fmt(numbers[high])}"


FLAG_WORDS = {"ci_now_excludes_null": "CI no longer includes the null",
              "ci_now_includes_null": "CI now includes the null",
              "direction_changed": "direction of the estimate changed",
              "certainty_changed": "certainty changed",
              "new_analysis": "new analysis", "analysis_removed": "analysis removed"}


def _md(text) -> str:
    """Data text as literal Markdown (a trial's label or quote may hold markup)."""
    from .tables import escape_markdown
    return escape_markdown(str(text))


def _analysis_md(change: dict) -> list[str]:
    b, a = change["before"], change["after"]
    flags = ", ".join(FLAG_WORDS[f] for f in change["flags"])
    lines = [f"#### {_md(change['analysis'])}: {_md(change['title'])}"
             + (f" — **{flags}**" if flags else ""), ""]
    rows = change["rows"]
    for kind in ("added", "removed", "changed"):
        if rows.get(kind):
            lines.append(f"- rows {kind}: " + ", ".join(_md(r) for r in rows[kind]))
    lines += ["", f"| {_md(change['measure'])} | before | after |", "|---|---|---|"]
    for label, key in (("k", "k"), ("participants", "participants"), ("estimate", "estimate")):
        lines.append(f"| {label} | {_fmt((b or {}).get(key))} | {_fmt((a or {}).get(key))} |")
    lines.append(f"| 95% CI | {_interval(b, 'ci_lb', 'ci_ub')} | {_interval(a, 'ci_lb', 'ci_ub')} |")
    lines.append(f"| 95% PI | {_interval(b, 'pi_lb', 'pi_ub')} | {_interval(a, 'pi_lb', 'pi_ub')} |")
    lines.append(f"| tau² | {_fmt((b or {}).get('tau2'))} | {_fmt((a or {}).get('tau2'))} |")
    lines.append(f"| I² (%) | {_fmt((b or {}).get('I2_pct'))} | {_fmt((a or {}).get('I2_pct'))} |")
    cb, ca = change["certainty"]
    if cb or ca:
        lines.append(f"| certainty | {_md(cb or '–')} | {_md(ca or '–')} |")
    sb, sa = change["status"]
    if sb != sa:
        lines.append(f"| status | {_md(sb or '–')} | {_md(sa or '–')} |")
    return lines + [""]


def _row_md(row: dict) -> str:
    text = f"- {row['kind']}: {_md(row['row_id'])} ({_md(row['label'])}; {_md(row['where'])})"
    if row["columns"]:
        text += ": " + "; ".join(f"{_md(c)} {_md(repr(b))} → {_md(repr(a))}"
                                 for c, b, a in row["columns"])
    return text


def to_markdown(history: dict) -> str:
    """The changelog for reading: newest version first."""
    lines = ["# Evidence changelog", "",
             "Each version is one `make` that changed the evidence (rows of data/raw/, or an "
             "analysis's numbers or certainty). Numbers are on the shown scale; analyses a "
             "change did not move are not listed. Machine-readable twin: `changelog.json`.", ""]
    for v in reversed(history["versions"]):
        lines += [f"## Version {v['version']} ({v['date']}, ntxmeta {v['tool_version']}, "
                  f"data {v['data_digest'][:12]})", ""]
        if v["first"]:
            lines += [f"First recorded evidence: {v['n_rows']} rows, {v['n_analyses']} analyses.", ""]
            continue
        if v["rows"]:
            lines += ["### Rows", ""] + [_row_md(r) for r in v["rows"]] + [""]
        if v["analyses"]:
            lines += ["### Analyses moved", ""]
            for change in v["analyses"]:
                lines += _analysis_md(change)
        else:
            lines += ["No analysis moved.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        os.utime(path)   # the job ran: its outputs are newer than its inputs
    else:
        write_text(path, text)


def update(comparisons_csv, effects_csvs, summary_csv, sof_csv, json_path, md_path, *,
           tool_version: str, date: str | None = None, figure_png=None, joint_jsons=()) -> dict:
    """Take a snapshot, record a version if the evidence changed, write both files.

    Returns the history. Files whose content would not change are only
    touched, never rewritten. ``figure_png``: also draw :func:`changes_figure`
    there (PNG and SVG beside it).
    """
    json_path, md_path = Path(json_path), Path(md_path)
    history = read_history(json_path)
    snap = snapshot(comparisons_csv, effects_csvs, summary_csv, sof_csv, joint_jsons)
    record(history, snap, date=date or today(), tool_version=tool_version)
    _write_if_changed(json_path, json.dumps(history, indent=1, ensure_ascii=False, sort_keys=True)
                      + "\n")
    _write_if_changed(md_path, to_markdown(history))
    if figure_png is not None:
        from .style import save_figure
        save_figure(changes_figure(history), str(Path(figure_png).with_suffix("")))
    return history


def last_changes(json_path) -> dict[str, dict]:
    """Per analysis, the newest version that moved it: {name: {version, date, change}}."""
    out: dict[str, dict] = {}
    for v in reversed(read_history(json_path)["versions"]):
        for change in v.get("analyses", []):
            out.setdefault(change["analysis"], {"version": v["version"], "date": v["date"],
                                                "change": change})
    return out


def latest(json_path) -> dict | None:
    """The newest version of a changelog (without the snapshot), or None."""
    history = read_history(json_path)
    return history["versions"][-1] if history["versions"] else None


#: Ticks of the ratio axis of :func:`changes_figure` (those inside its limits are drawn).
RATIO_TICKS = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


def changes_figure(history: dict):
    """What the newest change did: each analysis it moved, its CI before (open) and after (filled).

    Ratio measures on one log axis, differences (SMD, RD) on a linear one
    beside it; the first version, or a version that moved no analysis with
    numbers, gives a one-line figure saying so. Returns a Figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    from . import style
    version = history["versions"][-1] if history.get("versions") else None
    moved = [] if version is None or version.get("first") else [
        a for a in version["analyses"] if (a.get("before") or {}).get("estimate") is not None
        or (a.get("after") or {}).get("estimate") is not None]
    if not moved:
        what = ("first recorded evidence" if version and version.get("first")
                else "no analysis with an estimate moved")
        return style.note_figure(f"Evidence version {version['version'] if version else 0}: {what}.")
    groups = [(True, [a for a in moved if a["measure"] in RATIO_NAMES]),
              (False, [a for a in moved if a["measure"] not in RATIO_NAMES])]
    groups = [(log, rows) for log, rows in groups if rows]
    height = 0.9 + 0.45 * max(len(rows) for _, rows in groups)
    with style.styled():
        fig = Figure(figsize=(3.6 * len(groups) + 2.4, height))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        for ax, (log, rows) in zip(axes, groups):
            for i, a in enumerate(rows):
                y = len(rows) - 1 - i
                for numbers, dy, face, gid in ((a.get("before"), 0.15, "white", "before"),
                                               (a.get("after"), -0.15, style.INK, "after")):
                    if not numbers or numbers.get("estimate") is None:
                        continue
                    lo, hi = numbers.get("ci_lb"), numbers.get("ci_ub")
                    if lo is not None and hi is not None:
                        ax.plot([lo, hi], [y + dy] * 2, color=style.INK, lw=style.LINE_WIDTH,
                                gid=f"{gid}-ci")
                    ax.plot([numbers["estimate"]], [y + dy], "o", mfc=face, mec=style.INK,
                            ms=5, gid=gid)
            ax.axvline(1.0 if log else 0.0, color=style.MID, lw=style.THIN_LINE, ls=":")
            if log:   # plain tick labels (the figures' text is text, not mathtext)
                ax.set_xscale("log")
                lo, hi = ax.get_xlim()
                ticks = [t for t in RATIO_TICKS if lo <= t <= hi] or [1.0]
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([f"{a['analysis']} ({a['measure']})" for a in reversed(rows)])
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_xlabel("Ratio (log scale)" if log else "Difference")
        fig.suptitle(f"Evidence version {version['version']} ({version['date']}): "
                     "before (open) and after (filled), 95% CI", x=0.02, ha="left")
        fig.tight_layout()
    return fig
