"""Figures: every plot function on a hand-built ``AnalysisResult``, and once on a real one.

The fixture result is small and written out by hand (five rows, one not
pooled; two subgroups, one of a single study; a meta-regression with its
line; trim and fill; leave-one-out and cumulative series), so each test
knows the number it expects on the figure without computing a statistic.
The last test builds a result from the bcg_RR oracle data through
``ntxmeta.analysis.run_plan`` and checks the forest against metafor's
numbers in the oracle's out.json.

Texts are found as matplotlib Text artists; a table row's texts share its
y (data coordinates, one unit per row), which is how a test reads a row.
Figures are saved as SVG into memory (no 300-dpi PNG) except in one test.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.text import Text

from ntxmeta import plots, style
from ntxmeta._common import Interval
# Test as Stat: pytest would try to collect a class named Test
from ntxmeta.result import (AnalysisResult, Coefficient, Heterogeneity, MetaRegression, Pooled,
                            RegressionLine, Scale, Series, SmallStudy, SubgroupLevel, Subgroups)
from ntxmeta.result import Test as Stat
from ntxmeta.result import TrimFill

ORACLE = Path(__file__).parent / "fixtures" / "oracle"
MINUS = "\u2212"
Z95 = 1.959963984540054  # study CIs of the fixture's effects table


# --------------------------------------------------------------------------- fixture data


def _effects() -> pd.DataFrame:
    """Five studies; Eta is not pooled (``used`` False, as if left out by a pooling rule)."""
    yi = np.array([-0.5, -0.2, 0.1, -0.7, -0.3])
    vi = np.array([0.02, 0.04, 0.05, 0.08, 0.06])
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(5)],
        "label": ["Alpha", "Beta", "Gamma", "Delta", "Eta"],
        "year": [2001, 2003, 2005, 2008, 2010],
        "subgroup": ["oral", "oral", "oral", "xr_injection", "oral"],
        "yi": yi, "vi": vi, "sei": np.sqrt(vi),
        "ci_lb": yi - Z95 * np.sqrt(vi), "ci_ub": yi + Z95 * np.sqrt(vi),
        "events_treat": [10, 20, 15, 8, 5], "n_treat": [50, 80, 60, 40, 30],
        "events_ctrl": [16, 24, 14, 14, 6], "n_ctrl": [50, 80, 60, 40, 30],
        "confidence": ["high", "high", "low", "high", "high"],
        "dose_mg": [50, 50, 100, 380, np.nan],
        "data_type": "binary",
    })


WEIGHTS = (40.0, 25.0, 20.0, 15.0, math.nan)
USED = (True, True, True, True, False)


def _het(tau2=0.0004, i2=35.4, q=6.2, df=3, p=0.10) -> Heterogeneity:
    return Heterogeneity(q=q, q_df=df, q_pval=p, tau2=tau2, tau2_se=0.01, tau=math.sqrt(tau2),
                         i2_pct=i2, h2=1.5)


def _pooled(est, lb, ub, k, *, model="REML", test="z", pi=None, het=None, stat=None) -> Pooled:
    return Pooled(model=model, test=test, level=95.0, k=k, estimate=est, se=(ub - lb) / (2 * 1.96),
                  ci=Interval(lb, ub), test_stat=stat or Stat("z", -3.5, 0.0005), pi=pi,
                  heterogeneity=het)


def _series(kind, labels, est) -> Series:
    return Series(kind=kind, model="REML", test="z", labels=tuple(labels), k=tuple(range(1, len(labels) + 1))
                  if kind == "cumulative" else (3,) * len(labels),
                  estimate=tuple(est), ci_low=tuple(e - 0.3 for e in est),
                  ci_high=tuple(e + 0.3 for e in est), pval=(0.01,) * len(labels),
                  tau2=(0.0, 0.0004, 0.02, 0.05)[:len(labels)], i2_pct=(0.0, 10.0, 40.0, 35.4)[:len(labels)])


def _result(**changes) -> AnalysisResult:
    scale = Scale.of("RR")
    main = _pooled(-0.35, -0.55, -0.15, 4, pi=Interval(-0.9, 0.2), het=_het())
    oral = _pooled(-0.25, -0.5, 0.0, 3, het=_het(tau2=0.03, i2=50.0, q=4.0, df=2, p=0.14))
    delta = _pooled(-0.7, -1.25, -0.15, 1, het=_het(tau2=0.0, i2=0.0, q=0.0, df=0, p=1.0))
    grid = tuple(np.linspace(50, 380, 5))
    line = RegressionLine(x=grid, pred=tuple(-0.3 - 0.001 * (g - 50) for g in grid),
                          ci_low=tuple(-0.6 - 0.001 * (g - 50) for g in grid),
                          ci_high=tuple(0.0 - 0.001 * (g - 50) for g in grid))
    reg = MetaRegression(
        moderator="dose_mg", model="REML", test="z", level=95.0, k=4,
        coefficients=(Coefficient("intrcpt", -0.25, 0.1, Interval(-0.45, -0.05), Stat("z", -2.5, 0.012)),
                      Coefficient("dose_mg", -0.00123, 0.0009, Interval(-0.003, 0.0005), Stat("z", -1.37, 0.17))),
        tau2=0.0002, r2_pct=42.0, qm=Stat("QM", 1.87, 0.171, 1.0), qe=Stat("QE", 3.1, 0.21, 2.0),
        line=line, x=(50.0, 50.0, 100.0, 380.0, math.nan))
    trim = TrimFill(k0=2, side="left", fit=_pooled(-0.25, -0.5, 0.0, 6, het=_het()),
                    filled_yi=(0.05, 0.3), filled_vi=(0.08, 0.05))
    base = dict(
        name="toy_rr", title="Toy analysis: relapse", measure="RR", scale=scale, method="REML",
        test="z", level=95.0, status="pooled", k_rows=5, k_used=4, participants=460, events=122,
        main=main, common=_pooled(-0.38, -0.52, -0.24, 4, model="EE", het=_het()),
        weights_pct=WEIGHTS, used=USED,
        leave_one_out=_series("leave_one_out", ["Alpha", "Beta", "Gamma", "Delta"], [-0.3, -0.4, -0.45, -0.3]),
        cumulative=_series("cumulative", ["Alpha", "Beta", "Gamma", "Delta"], [-0.5, -0.4, -0.25, -0.35]),
        subgroups=Subgroups("formulation", (SubgroupLevel("oral", 3, oral), SubgroupLevel("xr_injection", 1, delta)),
                            between=Stat("Chi2", 2.34, 0.126, 1.0), between_i2_pct=57.3,
                            mixed_effects=Stat("QM", 1.98, 0.159, 1.0)),
        metaregression=(reg,),
        small_study=SmallStudy(k=4, assessed=False, egger=None, egger_limit=math.nan, egger_classic=None,
                               begg=None, trimfill=trim, note="not assessed (k < 10)"),
    )
    return AnalysisResult(**{**base, **changes})


@pytest.fixture(scope="module")
def effects() -> pd.DataFrame:
    return _effects()


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    return _result()


@pytest.fixture(scope="module")
def forest_ax(effects, result) -> Axes:
    return plots.forest(effects, result)


# --------------------------------------------------------------------------- helpers


def _render(ax):
    fig = ax.figure
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _texts(ax) -> list[Text]:
    """Every visible, non-empty Text artist of the figure (table, ticks, labels, title, legend)."""
    return ax.figure.findobj(lambda a: isinstance(a, Text) and a.get_visible() and a.get_text().strip())


def _strings(ax) -> list[str]:
    return [t.get_text() for t in _texts(ax)]


def _row(ax, first: str) -> list[str]:
    """The texts of the table row whose first cell starts with ``first``, left to right."""
    (y,) = {t.get_position()[1] for t in ax.texts if t.get_text().startswith(first)}
    return [t.get_text() for t in ax.texts if t.get_position()[1] == y]


def _row_y(ax, first: str) -> float:
    (y,) = {t.get_position()[1] for t in ax.texts if t.get_text().startswith(first)}
    return y


def _squares(ax) -> dict[float, float]:
    """Row y -> side in points of each study square."""
    return {ln.get_ydata()[0]: ln.get_markersize() for ln in ax.lines if ln.get_gid() == "study-square"}


def _diamonds(ax) -> list:
    return [p for p in ax.patches if p.get_gid() == "diamond"]


def _shown(est, lb, ub) -> str:
    """The '0.70 [0.58, 0.86]' a reader sees, from analysis-scale numbers of a ratio measure."""
    return "{} [{}, {}]".format(*(f"{math.exp(v):.2f}".replace("-", MINUS) for v in (est, lb, ub)))


def _svg(ax) -> bytes:
    """The figure as SVG bytes, as save_figure writes it (no PNG)."""
    buf = io.BytesIO()
    with style.styled():
        ax.figure.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


# --------------------------------------------------------------------------- forest


def test_forest_returns_axes_with_title_studies_and_favours(forest_ax, effects, result):
    assert isinstance(forest_ax, Axes)
    strings = _strings(forest_ax)
    assert result.title in strings
    for label in effects["label"]:
        assert any(s.startswith(label) for s in strings), label
    assert "RR [95% CI]" in strings
    joined = "\n".join(strings)
    assert "Favours naltrexone" in joined and "Favours control" in joined
    assert forest_ax.get_xscale() == "log"


def test_forest_diamond_label_is_the_main_estimate_on_the_shown_scale(forest_ax, result):
    m = result.main
    row = _row(forest_ax, "Random-effects model (REML), k = 4")
    assert _shown(m.estimate, m.ci.low, m.ci.high) in row
    assert "100.0%" in row  # the weights of the pooled rows
    assert "53" in row and "230" in row and "68" in row  # events and totals of the pooled rows (not Eta's)
    assert len(_diamonds(forest_ax)) == 2  # the oral subtotal and the main model (Delta is alone)


def test_forest_prediction_interval_heterogeneity_and_overall_test(forest_ax, result):
    pi = result.main.pi
    row = _row(forest_ax, "Prediction interval")
    assert f"[{math.exp(pi.low):.2f}, {math.exp(pi.high):.2f}]" in row
    strings = _strings(forest_ax)
    assert "Heterogeneity: \u03c4\u00b2 < 0.001; I\u00b2 = 35%; Q = 6.20, df = 3 (p = 0.10)" in strings
    assert not any("\u03c4\u00b2 = <" in s for s in strings)
    assert f"Test for overall effect: z = {MINUS}3.50 (p < 0.001)" in strings


def test_forest_squares_are_scaled_by_overall_weight(forest_ax, effects, result):
    squares = _squares(forest_ax)
    assert len(squares) == sum(result.used)  # Eta is not pooled: no square
    side = {lab: squares[_row_y(forest_ax, lab)] for lab in ("Alpha", "Beta", "Gamma", "Delta")}
    wmax = max(w for w, u in zip(result.weights_pct, result.used) if u)
    for i, lab in enumerate(("Alpha", "Beta", "Gamma", "Delta")):
        assert side[lab] ** 2 / side["Alpha"] ** 2 == pytest.approx(result.weights_pct[i] / wmax)
    # Delta is alone in its subgroup: drawn at its overall weight, not as the largest
    assert side["Delta"] < side["Gamma"] < side["Alpha"] == plots.SQUARE_MAX_PT


def test_forest_marks_rows_not_pooled(forest_ax):
    row = _row(forest_ax, "Eta")
    assert plots.NOT_POOLED in row
    y = _row_y(forest_ax, "Eta")
    assert y not in _squares(forest_ax)
    grey = [ln for ln in forest_ax.lines if len(ln.get_ydata()) == 2 and ln.get_ydata()[0] == y]
    assert grey and all(to_rgb(ln.get_color()) == to_rgb(style.MID) for ln in grey)


def test_forest_subgroup_blocks_subtotals_and_difference_tests(forest_ax, result):
    strings = _strings(forest_ax)
    assert "Oral" in strings and "XR injection" in strings and "Xr injection" not in strings
    oral = result.subgroups.levels[0].fit
    row = _row(forest_ax, "Subtotal (k = 3)")
    assert _shown(oral.estimate, oral.ci.low, oral.ci.high) in row
    assert "85.0%" in row  # overall weights of the block, summed
    assert "Subtotal (k = 1): not pooled (a single study)" in strings
    assert "Test for subgroup differences: Chi\u00b2 = 2.34, df = 1 (P = 0.13), I\u00b2 = 57%" in strings
    assert any(s.startswith("Mixed-effects model") and s.endswith("QM = 1.98, df = 1 (p = 0.16)")
               for s in strings)
    # blocks in the result's order, each study under its level's heading
    ys = [_row_y(forest_ax, s) for s in ("Oral", "Alpha", "Eta", "Subtotal (k = 3)", "XR injection", "Delta")]
    assert ys == sorted(ys)


def test_forest_marks_low_confidence(forest_ax):
    strings = _strings(forest_ax)
    assert any(s.startswith("Gamma") and s.endswith("\u2020") for s in strings)
    assert "\u2020 low-confidence data" in strings


def test_forest_without_main_estimate_has_no_diamond_and_says_why(effects):
    status = "no pooled estimate: a single study (k = 1); its own estimate is shown"
    res = _result(main=None, common=None, subgroups=None, status=status, k_used=1,
                  weights_pct=(100.0, math.nan, math.nan, math.nan, math.nan),
                  used=(True, False, False, False, False))
    ax = plots.forest(effects, res)
    assert _diamonds(ax) == []
    assert len(_squares(ax)) == 1
    words = " ".join(" ".join(_strings(ax)).split())  # notes wrap over lines
    assert "no pooled estimate (a single study (k = 1); its own estimate is shown)" in words
    assert "Prediction interval" not in words and "Test for overall effect" not in words


def test_forest_without_subgroups_and_pi_below_three_studies(effects):
    main = _pooled(-0.35, -0.55, -0.15, 2, pi=Interval(-0.9, 0.2), het=_het(df=1))
    ax = plots.forest(effects, _result(main=main, subgroups=None))
    strings = _strings(ax)
    assert "Prediction interval" not in strings
    assert "Oral" not in strings and not any(s.startswith("Test for subgroup") for s in strings)
    assert len(_squares(ax)) == 4 and len(_diamonds(ax)) == 1


def test_forest_hartung_knapp_and_common_effect_models(effects):
    knha = _pooled(-0.35, -0.6, -0.1, 4, test="knha", het=_het(), stat=Stat("t", -2.9, 0.062, 3.0))
    strings = _strings(plots.forest(effects, _result(main=knha, test="knha")))
    assert f"Test for overall effect (Hartung-Knapp): t = {MINUS}2.90, df = 3 (p = 0.06)" in strings
    ee = _pooled(-0.38, -0.52, -0.24, 4, model="EE", het=_het())
    strings = _strings(plots.forest(effects, _result(main=ee, method="EE", subgroups=None)))
    assert "Common-effect model, k = 4" in strings
    assert "Heterogeneity: I\u00b2 = 35%; Q = 6.20, df = 3 (p = 0.10)" in strings  # no tau^2


def test_forest_refuses_an_effects_table_of_other_rows(effects, result):
    with pytest.raises(ValueError, match="5 weights"):
        plots.forest(effects.iloc[:4], result)


def test_forest_texts_do_not_overlap(forest_ax):
    renderer = _render(forest_ax)
    # Shrink by half a pixel so that boxes that merely touch do not count.
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-0.5)) for t in _texts(forest_ax)]
    for i, (s1, b1) in enumerate(boxes):
        for s2, b2 in boxes[i + 1:]:
            assert not b1.overlaps(b2), f"{s1!r} overlaps {s2!r}"


def test_forest_cuts_long_labels(result):
    effects = _effects()
    effects.loc[0, "label"] = "A very long study label that would run into the data columns " * 3
    assert any(s.endswith("\u2026") for s in _strings(plots.forest(effects, result)))


@pytest.mark.parametrize("code, shown", [("xr_injection", "XR injection"), ("oral", "Oral"),
                                         ("no_medication", "No medication"),
                                         ("OPRM1_Asn40_homozygote", "OPRM1 Asn40 homozygote")])
def test_subgroup_level_labels(code, shown):
    assert plots._level_label(code) == shown


# --------------------------------------------------------------------------- cumulative, leave-one-out


def test_cumulative_rows_follow_the_series(effects, result):
    ax = plots.cumulative(result, effects=effects)
    s = result.cumulative
    for j, label in enumerate(s.labels):
        row = _row(ax, label)
        assert str(effects.loc[effects["label"] == label, "year"].iloc[0]) in row  # year by label
        assert str(s.k[j]) in row
        assert _shown(s.estimate[j], s.ci_low[j], s.ci_high[j]) in row
    assert "< 0.001" in _row(ax, "Beta")  # tau^2 of that fit
    assert "Each row: random-effects model (REML)" in _strings(ax)
    final = [c for c in ax.collections if c.get_linestyle()[0][1] is not None]  # the dashed final estimate
    assert final and np.allclose(final[0].get_segments()[0][:, 0], math.exp(s.estimate[-1]))


def test_cumulative_says_why_there_is_no_series(result):
    res = dataclasses.replace(result, cumulative=None, failed=("cumulative: RuntimeError: boom",))
    words = " ".join(" ".join(_strings(plots.cumulative(res))).split())
    assert "Cumulative meta-analysis not available (RuntimeError: boom)" in words


def test_leave_one_out_rows_and_main_diamond(result):
    ax = plots.leave_one_out(result)
    s = result.leave_one_out
    for j, label in enumerate(s.labels):
        assert _shown(s.estimate[j], s.ci_low[j], s.ci_high[j]) in _row(ax, label)
    m = result.main
    assert _shown(m.estimate, m.ci.low, m.ci.high) in _row(ax, "All studies (k = 4)")
    assert len(_diamonds(ax)) == 1
    ax = plots.leave_one_out(dataclasses.replace(result, leave_one_out=None, main=None,
                                                 status="no pooled estimate: no usable rows"))
    words = " ".join(" ".join(_strings(ax)).split())
    assert "Leave-one-out analysis not available (no usable rows)" in words and _diamonds(ax) == []


def test_table_columns_follow_a_given_axes(result):
    """Text columns hang off the Axes' edges, wherever the Axes is and whatever
    the figure's size (savefig's tight crop moves the Axes, not the canvas)."""
    ax = style.new_axes(11, 5, rect=(0.45, 0.15, 0.25, 0.8))
    assert plots.leave_one_out(result, ax=ax) is ax
    for size in ((11, 5), (16, 6)):
        ax.figure.set_size_inches(*size)
        renderer = _render(ax)
        boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
        assert boxes["Alpha"].x1 < ax.bbox.x0
        assert boxes["RR [95% CI]"].x0 > ax.bbox.x1


# --------------------------------------------------------------------------- funnel, bubble


def test_funnel_draws_pooled_studies_filled_and_trim_and_fill_open(effects, result):
    ax = plots.funnel(effects, result)
    markers = [ln for ln in ax.lines if ln.get_marker() == "o"]
    open_ = [ln for ln in markers if to_rgb(ln.get_markerfacecolor()) == (1, 1, 1)]
    filled = [ln for ln in markers if to_rgb(ln.get_markerfacecolor()) == (0, 0, 0)]
    tf = result.small_study.trimfill
    assert sum(len(ln.get_xdata()) for ln in open_) == len(tf.filled_yi)
    np.testing.assert_allclose(np.sort(np.concatenate([ln.get_xdata() for ln in open_])),
                               np.exp(np.sort(tf.filled_yi)))
    assert sum(len(ln.get_xdata()) for ln in filled) == sum(result.used)
    assert ax.yaxis_inverted() and ax.get_xscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"Pooled estimate (REML): {math.exp(result.main.estimate):.2f}" in legend
    assert f"Trim-and-fill estimate: {math.exp(tf.fit.estimate):.2f}" in legend
    assert "Asymmetry not assessed (k < 10)" in " ".join(legend).replace("\n", " ")
    assert ax.get_title(loc="left") == result.title


def test_funnel_says_when_trim_and_fill_is_missing(effects, result):
    small = dataclasses.replace(result.small_study, trimfill=None, assessed=True,
                                note="trim and fill did not converge")
    ax = plots.funnel(effects, dataclasses.replace(result, small_study=small))
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts()).replace("\n", " ")
    assert "Trim and fill not available (trim and fill did not converge)" in legend
    assert not [ln for ln in ax.lines if ln.get_marker() == "o" and to_rgb(ln.get_markerfacecolor()) == (1, 1, 1)]


def test_bubble_draws_the_result_line_and_points_sized_by_precision(effects, result):
    ax = plots.bubble(effects, result, "dose_mg")
    reg = result.regression("dose_mg")
    (line,) = [ln for ln in ax.lines if len(ln.get_xdata()) == len(reg.line.x)]
    np.testing.assert_allclose(line.get_xdata(), reg.line.x)
    np.testing.assert_allclose(line.get_ydata(), np.exp(reg.line.pred))
    (points,) = ax.collections[1:2] if len(ax.collections) > 1 else ax.collections
    offsets = points.get_offsets()
    keep = np.isfinite(reg.x)
    np.testing.assert_allclose(offsets[:, 0], np.asarray(reg.x)[keep])
    np.testing.assert_allclose(offsets[:, 1], np.exp(effects["yi"].to_numpy()[keep]))
    w = 1 / effects["vi"].to_numpy()[keep]
    np.testing.assert_allclose(points.get_sizes(), plots.BUBBLE_MAX_PT2 * w / w.max())
    text = "\n".join(t.get_text() for t in ax.texts)
    assert f"Slope (log RR) {MINUS}0.001 per mg (95% CI {MINUS}0.003 to 0.001), p = 0.17" in text
    assert "QM = 1.87, df = 1 (p = 0.17); residual \u03c4\u00b2 < 0.001; R\u00b2 = 42%" in text
    assert ax.get_xlabel() == "Dose (mg)" and ax.get_ylabel() == "Risk ratio (log scale)"


def test_bubble_without_a_fit_draws_the_studies_and_says_why(effects, result):
    reg = dataclasses.replace(result.regression("dose_mg"), coefficients=(), line=None, qm=None,
                              note="not computed: 2 studies with dose_mg (at least 3 needed)")
    ax = plots.bubble(effects, dataclasses.replace(result, metaregression=(reg,)), "dose_mg")
    assert any("at least 3 needed" in t.get_text().replace("\n", " ") for t in ax.texts)
    assert len(ax.collections[-1].get_offsets()) == 4
    with pytest.raises(ValueError, match="no meta-regression on 'year'"):
        plots.bubble(effects, result, "year")


# --------------------------------------------------------------------------- all figures: layout and files


def _all_figures(effects, result):
    yield "forest", plots.forest(effects, result)
    yield "funnel", plots.funnel(effects, result)
    yield "cumulative", plots.cumulative(result, effects=effects)
    yield "leave_one_out", plots.leave_one_out(result)
    yield "bubble", plots.bubble(effects, result, "dose_mg")


def test_laid_out_figures_fit_inside_their_own_size(effects, result):
    """Figures saved uncropped (plots.LAID_OUT) must hold all their ink, with white around it."""
    seen = set()
    for name, ax in _all_figures(effects, result):
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


def test_every_figure_is_svg_that_parses_and_repeats_byte_for_byte(effects, result):
    first = {name: _svg(ax) for name, ax in _all_figures(effects, result)}
    for name, svg in first.items():
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg"), name
        assert b"<dc:date>" not in svg
        assert "Toy analysis: relapse" in svg.decode(), name  # titles are text, not paths
    second = {name: _svg(ax) for name, ax in _all_figures(effects, result)}
    assert first == second


def test_save_figure_writes_png_and_svg(tmp_path, forest_ax):
    png, svg = style.save_figure(forest_ax.figure, tmp_path / "forest" / "toy", crop=False)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    ET.parse(svg)
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_figures_drawn_in_threads_equal_serial(effects, result):
    """Jobs run in threads: concurrent plotting must not mix up styles."""
    def draw(_: int) -> bytes:
        return _svg(plots.forest(effects, result))

    serial = draw(0)
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert all(b == serial for b in pool.map(draw, range(3)))


# --------------------------------------------------------------------------- a real result


def _bcg_effects() -> pd.DataFrame:
    """bcg_RR's data as an effects table (yi, vi, CIs from the oracle's escalc)."""
    folder = ORACLE / "bcg_RR"
    data = pd.read_csv(folder / "data.csv")
    esc = json.loads((folder / "out.json").read_text())["escalc"]
    yi, vi = np.array(esc["yi"], float), np.array(esc["vi"], float)
    return pd.DataFrame({
        "row_id": [f"bcg-{i + 1}" for i in range(len(data))], "label": data["author"],
        "year": data["year"], "subgroup": data["alloc"], "yi": yi, "vi": vi, "sei": np.sqrt(vi),
        "ci_lb": np.array(esc["ci.lb"], float), "ci_ub": np.array(esc["ci.ub"], float),
        "events_treat": data["ai"], "n_treat": data["n1i"], "events_ctrl": data["ci"],
        "n_ctrl": data["n2i"], "ablat": data["ablat"], "data_type": "binary", "confidence": "high",
    })


def test_figures_of_a_real_result_show_metafor_numbers():
    """run_plan on bcg_RR, then the figures: the numbers drawn are metafor's (out.json)."""
    from ntxmeta import analysis
    from ntxmeta.plan import AnalysisPlan, ModelOptions
    out = json.loads((ORACLE / "bcg_RR" / "out.json").read_text())
    plan = AnalysisPlan(name="bcg_RR", title="BCG vaccine", measure="RR",
                        options=ModelOptions("REML", "z", 95.0, 0.5, "only0", True), filters=(),
                        subgroup="alloc", moderators=("ablat",))
    effects = _bcg_effects()
    res = analysis.run_plan(plan, effects)
    fit = out["rma"]["REML"]
    ax = plots.forest(effects, res)
    assert _shown(fit["estimate"], fit["ci.lb"], fit["ci.ub"]) in _row(ax, "Random-effects model (REML), k = 13")
    strings = _strings(ax)
    assert f"I\u00b2 = {fit['I2']:.0f}%" in " ".join(strings)
    assert len(_squares(ax)) == 13
    for level in out["subgroup"]["by_level"]:
        assert level.capitalize() in strings
    qm = out["subgroup"]["mixed_effects"]["REML"]["QM"]
    assert any(s.startswith("Mixed-effects model") and f"QM = {qm:.2f}" in s for s in strings)
    assert any(s.startswith("Test for subgroup differences: Chi\u00b2 =") for s in strings)
    ax = plots.bubble(effects, res, "ablat")
    slope = out["metareg"]["REML"]["coefficients"]["estimate"][1]
    assert any(f"{slope:.3f}".replace("-", MINUS) in t.get_text() for t in ax.texts)
    for draw in (lambda: plots.funnel(effects, res), lambda: plots.cumulative(res, effects=effects),
                 lambda: plots.leave_one_out(res)):
        ET.fromstring(_svg(draw()))


def test_forest_marks_flips_splits_outcomes_and_definitions(effects, result):
    eff = effects.assign(flipped=[True, False, False, False, False],
                         split_control=[1, 2, 1, 1, 1],
                         event=["not abstinent", "relapse", "relapse", "relapse", "relapse"],
                         followup_weeks=[12, 24, 24, 12, np.nan],
                         outcome_definition=["abstinent throughout 12 weeks", "", "", "", ""])
    ax = plots.forest(eff, result)
    words = " ".join(" ".join(_strings(ax)).split())
    alpha, beta = _row(ax, "Alpha 2001 \u2021"), _row(ax, "Beta 2003 \u00a7")  # the marks
    assert "12 wk: not abstinent" in alpha and "24 wk: relapse" in beta
    assert "\u2021 favourable events counted as their complement" in words
    assert "\u00a7 control arm shared with another comparison, split between them" in words
    assert "Alpha 2001: abstinent throughout 12 weeks" in words
    # unlike events: no summed events row, totals of participants stay
    totals = _row(ax, "Random-effects model (REML), k = 4")
    assert "53" not in totals and "230" in totals  # events 10+20+15+8 = 53 not summed; n 50+80+60+40


def test_forest_of_comparator_classes_has_no_overall_diamond(effects, result):
    res = _result(overall=False, notes=("no overall estimate: the comparator_class subgroups are "
                                        "different questions",))
    ax = plots.forest(effects, res)
    words = " ".join(" ".join(_strings(ax)).split())
    assert "No overall estimate: the subgroups are different comparisons" in words
    assert not any(s.startswith("Random-effects model") for s in _strings(ax))
    assert len(_diamonds(ax)) == 1  # the oral subtotal only


def test_forest_of_two_studies_shows_the_common_effect_and_why(effects):
    ee = _pooled(-0.38, -0.52, -0.24, 2, model="EE", het=_het(df=1))
    res = _result(main=None, common=ee, subgroups=None, k_used=2,
                  status="no random-effects estimate: two studies (k = 2; pool_k2: false)",
                  notes=("no random-effects estimate: two studies (k = 2) cannot estimate the "
                         "between-study variance",),
                  weights_pct=(60.0, 40.0, math.nan, math.nan, math.nan),
                  used=(True, True, False, False, False))
    words = " ".join(" ".join(_strings(plots.forest(effects, res))).split())
    assert "Common-effect model, k = 2" in words
    assert "No random-effects estimate: two studies (k = 2)" in words
    assert "Prediction interval" not in words
