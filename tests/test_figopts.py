"""Figure options (config key ``figures``): typed, merged, honoured, and the print formats.

The figures are test_plots' hand-built five-study result, so each test
knows what it expects without computing a statistic. Sizes are checked on
the files a reader opens: the TIFF with Pillow (its dpi tag and pixel
size), the PDF with poppler (``pdftoppm``/``pdffonts``, installed by
.ci/run) and, independently of poppler, by reading its MediaBox and font
dictionaries, which matplotlib writes uncompressed. The config checks of
the key are in tests/malformed/config/figure_options.yaml (exact report).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from ntxmeta import plots, robplots, style
from ntxmeta.config import load_config
from ntxmeta.figopts import FigureOptions, PlotOptions, merge, parse_width
from ntxmeta.plan import Config
from test_forest_rob import _judged_effects
from test_plots import USED, WEIGHTS, _effects, _result, _row_y, _strings

MINIMAL = """analyses:
  aud_relapse_rr:
    title: "Relapse"
    filters: {indication: [alcohol], outcome: [relapse_trial_defined]}
    measure: RR
"""
#: Points per inch (PDF user space) and the TIFF resolution journals ask for.
PT_PER_IN = 72.0
TIFF_DPI = 600
#: A pixel size is the figure size times the dpi, rounded by Agg: within 1 px.
PIXEL_TOL = 1


# --------------------------------------------------------------------------- typing and merging


@pytest.mark.parametrize("value, inches", [("single", 3.5), ("one_and_half", 5.5), ("double", 7.0),
                                           ("90mm", 90 / 25.4), ("3.5in", 3.5), (" 178 mm", 178 / 25.4),
                                           (4, 4.0), (None, None)])
def test_widths(value, inches):
    assert parse_width(value) == pytest.approx(inches) if inches else parse_width(value) is None


@pytest.mark.parametrize("value", ["wide", "90", "90 cm", "1in", "600mm", True])
def test_bad_widths_say_the_rule(value):
    with pytest.raises(ValueError, match="width is"):
        parse_width(value)


def test_analysis_options_override_the_defaults_key_by_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + """    figures:
      font_size: 9
      forest: {labels: {favours_left: "Favours NTX"}}
figures:
  width: double
  formats: [png, svg, tiff]
  forest: {order: year, labels: {favours_right: "Favours placebo"}}
""", "utf-8")
    plan = Config.from_resolved(load_config(path)).analyses["aud_relapse_rr"]
    fig = plan.figures
    assert fig.width_in == 7.0 and fig.font_size_pt == 9.0
    assert fig.formats == ("png", "svg", "tiff") and fig.print_formats == ("tiff",)
    forest = fig.plot("forest")
    assert forest.order == "year"
    assert (forest.labels.favours_left, forest.labels.favours_right) == ("Favours NTX", "Favours placebo")
    assert fig.plot("funnel") == PlotOptions()


def test_defaults_are_todays_figures(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL, "utf-8")
    plan = Config.from_resolved(load_config(path)).analyses["aud_relapse_rr"]
    assert plan.figures == FigureOptions()
    assert plan.figures.formats == ("png", "svg") and plan.figures.width_in is None


def test_figure_options_are_not_part_of_the_selection(tmp_path):
    """The selection digest (effects and pool re-run trigger) must not see figure options."""
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL, "utf-8")
    plain = Config.from_resolved(load_config(path)).analyses["aud_relapse_rr"]
    path.write_text(MINIMAL + "figures: {width: single}\n", "utf-8")
    styled = Config.from_resolved(load_config(path)).analyses["aud_relapse_rr"]
    assert plain.selection == styled.selection
    assert plain.figures.digest() != styled.figures.digest()


def test_merge_replaces_lists_and_merges_mappings():
    out = merge({"formats": ["png", "svg", "pdf"], "forest": {"order": "year", "ticks": [0.5, 1]}},
                {"formats": ["png", "svg"], "forest": {"ticks": [1, 2]}})
    assert out == {"formats": ["png", "svg"], "forest": {"order": "year", "ticks": [1, 2]}}


# --------------------------------------------------------------------------- options honoured


def _opts(**block) -> FigureOptions:
    return FigureOptions.of(block)


def test_limits_and_ticks_of_the_effect_axis():
    opts = _opts(forest={"limits": [0.2, 5], "ticks": [0.2, 0.5, 1, 2, 5]},
                 funnel={"limits": [0.25, 4]})
    ax = plots.forest(_effects(), _result(), options=opts)
    assert ax.get_xlim() == pytest.approx((0.2, 5))
    assert list(ax.get_xticks()) == pytest.approx([0.2, 0.5, 1, 2, 5])
    funnel = plots.funnel(_effects(), _result(), options=opts)
    assert funnel.get_xlim() == pytest.approx((0.25, 4))
    # nice 1-2-5 ticks within the limits when none are given
    assert list(funnel.get_xticks()) == pytest.approx([0.5, 1, 2])


@pytest.mark.parametrize("order, labels", [
    ("entered", ["Alpha", "Beta", "Gamma", "Eta"]),
    ("year", ["Alpha", "Beta", "Gamma", "Eta"]),
    # weights 40, 25, 20 (Eta not pooled: last)
    ("weight", ["Alpha", "Beta", "Gamma", "Eta"]),
    # yi -0.5, -0.2, 0.1, -0.3
    ("effect", ["Alpha", "Eta", "Beta", "Gamma"]),
])
def test_forest_order_within_the_oral_block(order, labels):
    eff = _effects()
    if order in ("year", "weight"):  # entered in reverse, so that the order must be made
        eff = eff.iloc[::-1].reset_index(drop=True)
        res = _result(weights_pct=tuple(reversed(WEIGHTS)), used=tuple(reversed(USED)))
    else:
        res = _result()
    ax = plots.forest(eff, res, options=_opts(forest={"order": order}))
    ys = {name: _row_y(ax, name) for name in labels}
    assert sorted(labels, key=ys.get) == labels


def test_forest_columns_shown():
    full = _strings(plots.forest(_judged_effects(), _result()))
    assert {"Events", "Weight", "Time: outcome", "D1"} <= set(full)
    few = _strings(plots.forest(_judged_effects(), _result(), options=_opts(forest={"columns": ["effect"]})))
    assert not {"Events", "Total", "Weight", "Time: outcome", "D1", "O"} & set(few)
    assert "RR [95% CI]" in few and "Study" in few
    assert not any(s.startswith("Risk of bias (RoB 2)") for s in few)  # no key without the dots


def test_labels_replace_favours_and_axis_title():
    opts = _opts(forest={"labels": {"favours_left": "Favours XR-NTX", "favours_right": "Favours TAU",
                                    "axis_title": "Relapse, risk ratio"}},
                 funnel={"labels": {"axis_title": "RR"}})
    strings = _strings(plots.forest(_effects(), _result(), options=opts))
    assert "\u2190 Favours XR-NTX" in strings and "Favours TAU \u2192" in strings
    assert "Relapse, risk ratio" in strings and "Risk ratio (log scale)" not in strings
    assert plots.funnel(_effects(), _result(), options=opts).get_xlabel() == "RR"


def test_font_size_scales_every_text():
    def sizes(ax):
        return sorted({round(t.get_fontsize(), 3) for t in ax.figure.findobj(
            lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text") and a.get_text().strip())})
    base = sizes(plots.forest(_judged_effects(), _result()))
    big = sizes(plots.forest(_judged_effects(), _result(), options=_opts(font_size=10)))
    assert big == pytest.approx([s * 10 / 8 for s in base])


def _rob_frame():
    from ntxmeta.rob import judgements_of
    return judgements_of(_judged_effects()).assign(label=["A", "B", "C", "D", "E"])


def _is_grey(colour) -> bool:
    r, g, b = to_rgb(colour)
    return abs(r - g) < 1e-3 and abs(g - b) < 1e-3


def test_greyscale_and_colours():
    eff, res = _judged_effects(), _result()
    colour = plots.forest(eff, res)
    dots = [c for c in colour.collections if (c.get_gid() or "").startswith("rob:")]
    assert not all(_is_grey(c.get_facecolor()[0]) for c in dots)  # Okabe-Ito blue etc. by default
    grey = plots.forest(eff, res, options=_opts(greyscale=True))
    dots = [c for c in grey.collections if (c.get_gid() or "").startswith("rob:")]
    assert dots and all(_is_grey(c.get_facecolor()[0]) for c in dots)
    light = robplots.rob_traffic_light(_rob_frame(), options=_opts(greyscale=True))
    assert all(_is_grey(c.get_facecolor()[0]) for c in light.collections)
    navy = plots.forest(_effects(), res, options=_opts(colours={"study": "navy", "pooled": "#D55E00"}))
    squares = [ln for ln in navy.lines if ln.get_gid() == "study-square"]
    assert squares and all(to_rgb(ln.get_markerfacecolor()) == to_rgb("navy") for ln in squares)
    assert all(to_rgb(p.get_facecolor()) == to_rgb("#D55E00") for p in navy.patches if p.get_gid() == "diamond")


def test_a_width_too_narrow_for_the_columns_says_what_it_needs():
    with pytest.raises(ValueError, match=r"needs at least \d+\.\d\d in"):
        plots.forest(_judged_effects(), _result(), options=_opts(width="single"))


# --------------------------------------------------------------------------- files


def _media_box_pt(pdf: bytes) -> tuple[float, float]:
    (box,) = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+([0-9.]+)\s*\]", pdf)
    return float(box[0]), float(box[1])


@pytest.mark.parametrize("kind, width", [("forest", "double"), ("funnel", "single"),
                                         ("leave_one_out", "150mm")])
def test_pdf_and_tiff_have_the_requested_size(tmp_path, kind, width):
    # at 8 pt the forest with every column is 8.6 in wide: double column (7 in) without the outcomes
    opts = _opts(width=width, formats=["png", "svg", "pdf", "tiff"],
                 forest={"columns": ["effect", "weight"]})
    draw = {"forest": lambda: plots.forest(_effects(), _result(), options=opts),
            "funnel": lambda: plots.funnel(_effects(), _result(), options=opts),
            "leave_one_out": lambda: plots.leave_one_out(_result(), options=opts)}
    fig = draw[kind]().figure
    crop = kind not in plots.LAID_OUT and kind not in plots.WIDTH_FITTED
    paths = style.save_figure(fig, tmp_path / kind, crop=crop, formats=opts.formats,
                              tiff_dpi=opts.tiff_dpi)
    assert [p.suffix for p in paths] == [".png", ".svg", ".pdf", ".tiff"]
    width_in = parse_width(width)
    height_in = fig.get_size_inches()[1]
    assert fig.get_size_inches()[0] == pytest.approx(width_in)
    with Image.open(tmp_path / f"{kind}.tiff") as tiff:
        assert tiff.info["dpi"] == pytest.approx((TIFF_DPI, TIFF_DPI))
        assert tiff.info["compression"] == "tiff_lzw" and tiff.mode == "RGB"
        assert abs(tiff.size[0] - width_in * TIFF_DPI) <= PIXEL_TOL
        assert abs(tiff.size[1] - height_in * TIFF_DPI) <= PIXEL_TOL
    pdf = (tmp_path / f"{kind}.pdf").read_bytes()
    assert _media_box_pt(pdf) == pytest.approx((width_in * PT_PER_IN, height_in * PT_PER_IN), abs=0.01)
    # every font embedded as TrueType (a FontFile2 stream per font), none as Type 3
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert pdf.count(b"/FontFile2") == len(re.findall(rb"/Type\s*/FontDescriptor\b", pdf))


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed (.ci/run installs it)")
def test_pdf_opens_in_poppler_with_the_requested_size_and_fonts_embedded(tmp_path):
    opts = _opts(width="double", formats=["png", "svg", "pdf"], forest={"columns": ["effect", "weight", "rob"]})
    fig = plots.forest(_judged_effects(), _result(), options=opts).figure
    style.save_figure(fig, tmp_path / "forest", crop=False, formats=opts.formats)
    pdf = tmp_path / "forest.pdf"
    # rendered at 72 dpi, a pixel is a point: the page is 7 in = 504 pt wide
    subprocess.run(["pdftoppm", "-r", "72", "-png", "-singlefile", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True, timeout=60)
    with Image.open(tmp_path / "page.png") as page:
        assert abs(page.size[0] - 7 * PT_PER_IN) <= PIXEL_TOL
        assert abs(page.size[1] - fig.get_size_inches()[1] * PT_PER_IN) <= PIXEL_TOL
        assert np.asarray(page.convert("L")).min() < 50  # ink was drawn
    fonts = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True, text=True,
                           timeout=60).stdout.splitlines()[2:]
    assert fonts and all("TrueType" in line and line.split()[-5] == "yes" for line in fonts), fonts


def test_pdf_is_deterministic(tmp_path):
    fig = plots.forest(_effects(), _result()).figure
    first = style.save_figure(fig, tmp_path / "a", crop=False, formats=("pdf",))[0].read_bytes()
    second = style.save_figure(fig, tmp_path / "b", crop=False, formats=("pdf",))[0].read_bytes()
    assert first == second and b"CreationDate" not in first


# --------------------------------------------------------------------------- display names


def _schema_keys(node) -> set[str]:
    """Every key name of the config schema (a note may name one: "set pool_k2: true")."""
    out = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out |= set(value)
            out |= _schema_keys(value)
    elif isinstance(node, list):
        for item in node:
            out |= _schema_keys(item)
    return out


@pytest.fixture(scope="module")
def committed_figure_texts(tmp_path_factory, request):
    """Every text of the forest, funnel, cumulative, leave-one-out and bubble plots of
    every analysis of config/config.yaml, on the committed data/raw, but the titles
    (the config's own words)."""
    from ntxmeta import workflow as ntx
    from ntxmeta.pipeline import read_effects
    from ntxmeta.result import read_result
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("committed")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        pf = ntx.preflight("config/config.yaml")
    finally:
        mp.undo()
    texts: dict[str, set[str]] = {}
    for name in pf.analyses:
        plan = pf.config.analyses[name]
        eff_path, res_path = out / f"{name}.csv", out / f"{name}.json"
        ntx.effects(pf, plan, eff_path)
        ntx.pool(str(eff_path), plan, str(res_path), str(out / f"{name}.spec.json"))
        eff, res = read_effects(eff_path), read_result(res_path)
        axes = [plots.forest(eff, res), plots.funnel(eff, res), plots.cumulative(res, effects=eff),
                plots.leave_one_out(res)] + [plots.bubble(eff, res, m) for m in plan.moderators]
        texts[name] = {t.get_text() for ax in axes for t in ax.figure.findobj(
            lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))} - {plan.title}
    return texts


def test_no_figure_of_the_committed_analyses_shows_a_raw_code(committed_figure_texts):
    """No word with an underscore (dose_mg, ae_nausea, xr_injection) except the config's own keys
    (a note may say "set pool_k2: true"), and no code of the display-name table written with
    spaces instead ("ae nausea", as the forest wrote it before)."""
    from ntxmeta.labels import LABELS
    from ntxmeta.validate import load_schema
    allowed = _schema_keys(load_schema("config"))
    # codes whose display name is more than the code with spaces ("ae nausea" -> "Nausea"),
    # not those that read as English already ("not abstinent")
    spaced = {code.replace("_", " ") for code, name in LABELS.items()
              if "_" in code and code.replace("_", " ").lower() != name.lower()}
    seen = 0
    for name, texts in committed_figure_texts.items():
        for text in texts:
            seen += 1
            words = {w.strip("():;,.[]") for w in re.findall(r"\S*_\S*", text)}
            assert words <= allowed, (name, text)
            assert not any(s in text for s in spaced), (name, text)
    assert seen > 1000 and len(committed_figure_texts) >= 20


def test_display_names_are_shown(committed_figure_texts):
    every = set().union(*committed_figure_texts.values())
    assert "Follow-up (weeks)" in every                              # bubble axis
    assert "XR injection" in every and "Oral" in every               # subgroup headings
    assert any(t.endswith(" wk: nausea") for t in every)             # forest "Time: outcome"
