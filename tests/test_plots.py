"""Figures: every plot function on the vendored metafor oracle cases.

The effects tables are built from each case's data.csv and the escalc
section of its out.json, and out.json itself is the result dict, so these
tests exercise the plots on exactly the key paths the engine writes.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.text import Text

from ntxmeta import plots, style

ORACLE = Path(__file__).parent / "fixtures" / "oracle"
#: spec column -> effects column, for the arm-level data
ARM_COLUMNS = {"ai": "events_treat", "n1i": "n_treat", "ci": "events_ctrl", "n2i": "n_ctrl",
               "m1i": "mean_treat", "sd1i": "sd_treat", "m2i": "mean_ctrl", "sd2i": "sd_ctrl"}


def _float(x):
    return math.nan if x is None or isinstance(x, str) else float(x)


def load_case(name: str) -> tuple[pd.DataFrame, dict, dict]:
    """(effects table, result dict, spec) of one oracle case."""
    folder = ORACLE / name
    spec = json.loads((folder / "spec.json").read_text())
    result = json.loads((folder / "out.json").read_text())
    data = pd.read_csv(folder / spec["csv"])
    esc = result["escalc"]
    k = len(data)
    labels = data[spec["study"]].astype(str) if spec.get("study") else [f"Study {i + 1}" for i in range(k)]
    effects = pd.DataFrame({
        "row_id": [f"{name}-{i + 1}" for i in range(k)],
        "study_id": [f"S{i + 1}" for i in range(k)],
        "label": labels,
        "year": data[spec["year"]] if spec.get("year") else np.nan,
        "yi": [_float(v) for v in esc["yi"]],
        "vi": [_float(v) for v in esc["vi"]],
        "sei": [_float(v) for v in esc["sei"]],
        "ci_lb": [_float(v) for v in esc["ci.lb"]],
        "ci_ub": [_float(v) for v in esc["ci.ub"]],
        "weight_pct": [_float(v) for v in result["rma"]["REML"]["weights_pct"]],
        "confidence": "high",
    })
    if spec.get("subgroup"):
        effects["subgroup"] = data[spec["subgroup"]].astype(str)
    if spec.get("moderator"):
        effects[spec["moderator"]] = data[spec["moderator"]]
    for src, dst in ARM_COLUMNS.items():
        if src in spec["columns"]:
            effects[dst] = data[spec["columns"][src]]
    return effects, result, spec


CASES = sorted(p.name for p in ORACLE.iterdir() if (p / "out.json").exists())
RATIO = {"RR", "OR", "ROM"}


def _render(ax):
    """Draw the figure and return its renderer (text extents need a draw)."""
    fig = ax.figure
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _texts(ax) -> list:
    """Every visible, non-empty Text artist of the figure (table, ticks, labels, title)."""
    found = ax.figure.findobj(lambda a: isinstance(a, Text) and a.get_visible() and a.get_text().strip())
    return found


def _strings(ax) -> list[str]:
    _render(ax)
    return [t.get_text() for t in _texts(ax)]


def _minus(s: str) -> str:
    return s.replace("-", "\u2212")


@pytest.fixture(scope="module")
def forests():
    """One forest per oracle case, drawn once for the module."""
    out = {}
    for case in CASES:
        effects, result, spec = load_case(case)
        out[case] = (plots.forest(effects, result, measure=spec["measure"], title=case), effects, result, spec)
    return out


@pytest.mark.parametrize("case", CASES)
def test_forest_shows_labels_pooled_estimate_i2_and_favours(forests, case):
    ax, effects, result, spec = forests[case]
    assert isinstance(ax, Axes)
    strings = _strings(ax)
    joined = "\n".join(strings)
    for label in effects["label"]:
        assert any(label in s for s in strings), f"{label!r} not in forest of {case}"
    fit = result["rma"]["REML"]
    est = fit["estimate"]
    shown = math.exp(est) if spec["measure"] in RATIO else est  # computed here, not read from exp.*
    assert _minus(f"{shown:.2f} [") in joined
    if fit["k"] > 1:
        assert f"I\u00b2 = {fit['I2']:.0f}%" in joined
    assert "Favours naltrexone" in joined and "Favours control" in joined


@pytest.mark.parametrize("case", CASES)
def test_forest_texts_do_not_overlap(forests, case):
    ax = forests[case][0]
    renderer = _render(ax)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(ax)]
    # Shrink by half a pixel so that boxes that merely touch do not count.
    shrunk = [(s, b.padded(-0.5)) for s, b in boxes]
    for i, (s1, b1) in enumerate(shrunk):
        for s2, b2 in shrunk[i + 1:]:
            assert not b1.overlaps(b2), f"{case}: {s1!r} overlaps {s2!r}"


def test_forest_subgroups_have_blocks_subtotals_and_difference_test(forests):
    ax, effects, result, _ = forests["bcg_RR"]
    strings = _strings(ax)
    for level in result["subgroup"]["levels"]:
        assert level.capitalize() in strings
    sizes = effects["subgroup"].value_counts()
    for level, k in sizes.items():
        assert f"Subtotal (k = {k})" in strings
        sub = result["subgroup"]["by_level"][level]["REML"]
        assert any(f"{math.exp(sub['estimate']):.2f} [" in s for s in strings)
    qm = result["subgroup"]["mixed_effects"]["REML"]["QM"]
    assert any(s.startswith("Test for subgroup differences") and f"{qm:.2f}" in s for s in strings)
    assert any(s.startswith("Prediction interval") for s in strings)


def test_forest_height_grows_with_rows(forests):
    small = forests["single_GEN"][0].figure.get_size_inches()[1]
    large = forests["hackshaw1998_GEN"][0].figure.get_size_inches()[1]
    assert large > 5 * small


def test_forest_says_why_there_is_no_pooled_estimate():
    effects, result, spec = load_case("normand1999_SMD")
    result = {**result, "rma": {"REML": {"error": "Fisher scoring algorithm did not converge."}}}
    ax = plots.forest(effects, result, measure=spec["measure"])
    words = " ".join(" ".join(_strings(ax)).split())  # notes wrap over lines
    assert "no pooled estimate (Fisher scoring algorithm did not converge.)" in words


def test_forest_reads_results_with_nan_for_na():
    """Results read back by the engine carry NaN where the JSON has "NA"; both must plot."""
    effects, result, spec = load_case("bcg_RR")
    result = json.loads(json.dumps(result).replace('"NA"', "NaN"))
    assert isinstance(plots.forest(effects, result, measure=spec["measure"]), Axes)


def test_forest_cuts_long_labels_and_marks_low_confidence():
    effects, result, spec = load_case("normand1999_SMD")
    effects.loc[0, "label"] = "A very long study label that would run into the data columns " * 3
    effects.loc[1, "confidence"] = "low"
    strings = _strings(plots.forest(effects, result, measure=spec["measure"]))
    assert any(s.endswith("\u2026") for s in strings)
    assert any(s.endswith("\u2020") and s.startswith(effects.loc[1, "label"]) for s in strings)
    assert "\u2020 low-confidence data" in strings


def _all_figures(case: str):
    """(name, Axes) of every figure that applies to a case."""
    effects, result, spec = load_case(case)
    m = spec["measure"]
    yield "forest", plots.forest(effects, result, measure=m, title=case)
    yield "funnel", plots.funnel(effects, result, measure=m, title=case)
    yield "cumulative", plots.cumulative(result, measure=m, effects=effects, title=case)
    yield "leave_one_out", plots.leave_one_out(result, measure=m, title=case)
    if spec.get("moderator"):
        yield "bubble", plots.bubble(effects, result, spec["moderator"], measure=m, title=case)


@pytest.mark.parametrize("case", ["bcg_RR", "normand1999_SMD", "single_GEN", "identical_GEN",
                                  "nielweise2007_OR", "normand1999_ROM"])
def test_laid_out_figures_fit_inside_their_own_size(case):
    """Figures saved uncropped (plots.LAID_OUT) must hold all their ink, with white around it."""
    seen = set()
    for name, ax in _all_figures(case):
        if name not in plots.LAID_OUT:
            continue
        fig = ax.figure
        with style.styled():
            fig.draw_without_rendering()
            ink = fig.get_tightbbox()
        width, height = fig.get_size_inches()
        margin = min(ink.x0, ink.y0, width - ink.x1, height - ink.y1)
        assert margin >= plots.MARGIN_IN / 2, (name, ink, (width, height))
        seen.add(name)
    assert seen == plots.LAID_OUT


@pytest.mark.parametrize("case", ["bcg_RR", "normand1999_SMD", "single_GEN", "identical_GEN"])
def test_every_figure_saves_png_and_identical_svg(tmp_path, case):
    for name, ax in _all_figures(case):
        assert isinstance(ax, Axes), name
        png, svg = style.save_figure(ax.figure, tmp_path / "a" / name)
        assert png.stat().st_size > 1000 and svg.stat().st_size > 1000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<dc:date>" not in svg.read_bytes()
    for name, ax in _all_figures(case):  # a second, independent run
        style.save_figure(ax.figure, tmp_path / "b" / name)
        assert (tmp_path / "a" / f"{name}.svg").read_bytes() == (tmp_path / "b" / f"{name}.svg").read_bytes(), name
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_figures_drawn_in_threads_equal_serial(tmp_path):
    """Jobs run in threads: concurrent plotting must not mix up styles."""
    effects, result, spec = load_case("normand1999_SMD")

    def draw(i: int) -> bytes:
        ax = plots.forest(effects, result, measure=spec["measure"], title="threads")
        _, svg = style.save_figure(ax.figure, tmp_path / f"t{i}")
        return svg.read_bytes()

    serial = draw(99)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(b == serial for b in pool.map(draw, range(4)))


def test_funnel_draws_trim_and_fill_studies_open():
    effects, result, spec = load_case("bcg_RR")
    ax = plots.funnel(effects, result, measure=spec["measure"])
    filled = sum(result["trimfill"]["REML"]["filled"])
    open_markers = [ln for ln in ax.lines if ln.get_marker() == "o" and to_rgb(ln.get_markerfacecolor()) == (1, 1, 1)]
    assert sum(len(ln.get_xdata()) for ln in open_markers) == filled
    assert ax.yaxis_inverted() and ax.get_xscale() == "log"


def test_funnel_says_when_trim_and_fill_failed():
    effects, result, spec = load_case("identical_GEN")
    ax = plots.funnel(effects, result, measure=spec["measure"])
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts()).replace("\n", " ")
    assert "did not converge" in legend


def test_bubble_band_uses_metafor_covariance():
    """The covariance rebuilt for the CI band gives back metafor's coefficient SEs."""
    effects, result, spec = load_case("bcg_RR")
    x, vi = effects[spec["moderator"]].to_numpy(float), effects["vi"].to_numpy(float)
    for fit in ("REML", "REML_knha"):
        reg = result["metareg"][fit]
        se = np.sqrt(np.diag(plots._metareg_vcov(reg, x, vi)))
        np.testing.assert_allclose(se, reg["coefficients"]["se"], rtol=1e-6)


def test_bubble_uses_the_model_of_its_moderator():
    """The pipeline stores one meta-regression per moderator under metareg_by."""
    effects, result, spec = load_case("bcg_RR")
    effects["year_copy"] = effects["year"]
    other = {**result, "metareg_by": {"year_copy": {"REML": {"error": "no model for this one"}}}}
    ax = plots.bubble(effects, other, "year_copy", measure=spec["measure"])
    assert any("no model for this one" in t.get_text().replace("\n", " ") for t in ax.texts)
    ax = plots.bubble(effects, result, spec["moderator"], measure=spec["measure"])
    slope = result["metareg"]["REML"]["coefficients"]["estimate"][1]
    assert any(_minus(f"{slope:.3f}") in t.get_text() for t in ax.texts)


def test_table_columns_follow_a_given_axes():
    """Text columns hang off the Axes' edges, wherever the Axes is and whatever
    the figure's size (savefig's tight crop moves the Axes, not the canvas)."""
    effects, result, spec = load_case("bcg_RR")
    ax = style.new_axes(11, 5, rect=(0.45, 0.15, 0.25, 0.8))
    assert plots.leave_one_out(result, measure=spec["measure"], ax=ax) is ax
    for size in ((11, 5), (16, 6)):
        ax.figure.set_size_inches(*size)
        renderer = _render(ax)
        boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
        assert boxes["Aronson"].x1 < ax.bbox.x0
        assert boxes["RR [95% CI]"].x0 > ax.bbox.x1


def test_forest_with_knapp_hartung_shows_t_and_f_tests():
    effects, result, spec = load_case("bcg_RR")
    strings = _strings(plots.forest(effects, result, measure=spec["measure"], test="knha"))
    fit = result["rma_knha"]["REML"]
    assert any(f"{math.exp(fit['ci.lb']):.2f}" in s for s in strings)  # the t-based CI, not the z one
    assert any(s.startswith("Test for overall effect: t =") and f"df = {fit['df']}" in s for s in strings)
    assert any(s.startswith("Test for subgroup differences: F =") and "df = 2, 10" in s for s in strings)


def test_forest_keeps_studies_without_a_subgroup():
    effects, result, spec = load_case("bcg_RR")
    effects.loc[0, "subgroup"] = np.nan
    strings = _strings(plots.forest(effects, result, measure=spec["measure"]))
    assert "No subgroup" in strings
    assert any(s.startswith(effects.loc[0, "label"]) for s in strings)
