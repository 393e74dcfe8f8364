"""Risk-of-bias columns of the forest plot: a dot per trial and RoB 2 domain, RevMan-style.

The effects table is test_plots' five-study fixture with judgements written
out by hand below (Eta, row 4, is not pooled; Delta, row 3, is drawn last,
in its own subgroup block), so each test knows which dot belongs where and
what colour and symbol it carries without asking the code. Dots are found
by their ``gid`` (``rob:{effects row}:{column}``, the traffic light's
scheme), symbols by ``robsym:...``; a dot's row is the y of its trial's
label.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.transforms import Bbox

from ntxmeta import plots, style
from test_plots import _effects, _render, _result, _row_y, _strings, _svg, _texts

COLUMNS = ("d1_randomisation", "d2_deviations", "d3_missing_data", "d4_measurement",
           "d5_reporting", "overall")
HEADERS = ("D1", "D2", "D3", "D4", "D5", "O")
#: Per effects row (Alpha, Beta, Gamma, Delta, Eta): D1...D5, overall.
JUDGED = (
    ("low", "low", "low", "low", "low", "low"),
    ("low", "some_concerns", "low", "low", "low", "some_concerns"),
    ("some_concerns", "low", "high", "low", "not_assessed", "high"),
    ("not_assessed", "not_assessed", "not_assessed", "not_assessed", "not_assessed",
     "not_assessed"),
    ("high", "low", "some_concerns", "low", "low", "high"),  # not pooled: dots all the same
)
LABELS = ("Alpha 2001", "Beta 2003", "Gamma 2005", "Delta 2008", "Eta 2010")
#: What a reader sees: robvis' fills (Okabe-Ito) and symbols.
FILL = {"low": "#0072B2", "some_concerns": "#F0E442", "high": "#D55E00",
        "not_assessed": "#FFFFFF"}
SYMBOL = {"low": "+", "some_concerns": "\u2212", "high": "\u00d7", "not_assessed": "?"}


def _judged_effects(rows=JUDGED):
    eff = _effects()
    for c, col in enumerate(COLUMNS):
        eff[f"rob_{col}"] = [row[c] for row in rows]
    return eff


@pytest.fixture(scope="module")
def rob_ax():
    return plots.forest(_judged_effects(), _result())


def _dots(ax) -> dict[str, PathCollection]:
    return {c.get_gid(): c for c in ax.collections
            if isinstance(c, PathCollection) and (c.get_gid() or "").startswith("rob:")}


def _symbols(ax) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("robsym:")}


def _dot_xy(dot: PathCollection) -> tuple[float, float]:
    """The dot's centre in display pixels."""
    return tuple(dot.get_offset_transform().transform(dot.get_offsets()[0]))


def _dot_box(dot: PathCollection) -> Bbox:
    """The dot's square in display pixels (a collection has no window extent of its own)."""
    x, y = _dot_xy(dot)
    r = math.sqrt(dot.get_sizes()[0]) / 2 * dot.figure.dpi / 72  # sizes are points squared
    return Bbox([[x - r, y - r], [x + r, y + r]])


def test_a_dot_per_trial_and_domain_in_the_colour_and_symbol_of_its_judgement(rob_ax):
    dots, symbols = _dots(rob_ax), _symbols(rob_ax)
    assert len(dots) == len(symbols) == len(LABELS) * len(COLUMNS)
    for i, label in enumerate(LABELS):
        y = _row_y(rob_ax, label)
        for c, col in enumerate(COLUMNS):
            judgement = JUDGED[i][c]
            dot = dots[f"rob:{i}:{col}"]
            assert tuple(dot.get_facecolor()[0]) == to_rgba(FILL[judgement]), (label, col)
            assert symbols[f"robsym:{i}:{col}"] == SYMBOL[judgement], (label, col)
            assert dot.get_offsets()[0][1] == y, (label, col)  # on its trial's row


def test_the_columns_stand_right_of_the_weights_under_their_headers(rob_ax):
    renderer = _render(rob_ax)
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in rob_ax.texts}
    xs = [_dot_xy(_dots(rob_ax)[f"rob:0:{col}"])[0] for col in COLUMNS]
    assert xs == sorted(xs) and xs[0] > boxes["Weight"].x1
    for x, header in zip(xs, HEADERS):
        assert abs(x - (boxes[header].x0 + boxes[header].x1) / 2) < 1.0, header  # centred, 1 px
    assert boxes["Risk of bias"].x0 >= boxes["D1"].x0 - 1 and boxes["Risk of bias"].x1 <= boxes["O"].x1 + 1


def test_no_dots_on_summary_rows(rob_ax):
    rows = {dot.get_offsets()[0][1] for dot in _dots(rob_ax).values()}
    assert rows == {_row_y(rob_ax, label) for label in LABELS}
    for summary in ("Subtotal (k = 3)", "Random-effects model (REML), k = 4", "Prediction interval",
                    "Oral", "XR injection"):
        assert _row_y(rob_ax, summary) not in rows, summary


def test_the_key_names_the_domains_and_the_symbols(rob_ax):
    words = " ".join(" ".join(_strings(rob_ax)).split())  # notes wrap
    assert ("Risk of bias (RoB 2): D1: Randomisation process; D2: Deviations from intended "
            "interventions; D3: Missing outcome data; D4: Measurement of the outcome; "
            "D5: Selection of the reported result; O: Overall") in words
    assert "+ Low, \u2212 Some concerns, \u00d7 High, ? Not assessed" in words
    for header in (*HEADERS, "Risk of bias"):
        assert header in _strings(rob_ax)


def test_without_rob_columns_the_forest_is_drawn_as_before():
    eff, res = _effects(), _result()
    ax = plots.forest(eff, res)
    assert _dots(ax) == {} and _symbols(ax) == {}
    strings = _strings(ax)
    assert "Risk of bias" not in strings and "D1" not in strings
    assert not any("Randomisation process" in s for s in strings)
    with_rob = plots.forest(_judged_effects(), res)
    widened = with_rob.figure.get_size_inches()[0] - ax.figure.get_size_inches()[0]
    # six columns, each at least a 10-pt dot wide, and the gaps between them
    assert widened >= 6 * 10 / 72 + plots.COL_GAP_IN


def test_rows_nobody_assessed_still_show_question_marks():
    eff = _judged_effects([("not_assessed",) * 6] * 5)
    eff.loc[1, "rob_overall"] = math.nan  # an empty cell of the CSV
    eff = eff.drop(columns="rob_d5_reporting")  # a column missing: not assessed either
    ax = plots.forest(eff, _result())
    dots, symbols = _dots(ax), _symbols(ax)
    assert len(dots) == len(LABELS) * len(COLUMNS)
    assert {tuple(d.get_facecolor()[0]) for d in dots.values()} == {to_rgba("#FFFFFF")}
    assert set(symbols.values()) == {"?"}


def test_an_unknown_judgement_is_refused_with_its_value():
    eff = _judged_effects()
    eff.loc[2, "rob_d3_missing_data"] = "Serious"
    with pytest.raises(ValueError, match="toy_rr: .*d3_missing_data holds 'Serious'"):
        plots.forest(eff, _result())


def test_nothing_overlaps_and_everything_fits_in_the_figure(rob_ax):
    renderer = _render(rob_ax)
    texts = [t for t in _texts(rob_ax) if not (t.get_gid() or "").startswith("robsym:")]
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-0.5)) for t in texts]
    boxes += [(gid, _dot_box(dot).padded(-0.5)) for gid, dot in _dots(rob_ax).items()]
    for i, (s1, b1) in enumerate(boxes):
        for s2, b2 in boxes[i + 1:]:
            assert not b1.overlaps(b2), f"{s1!r} overlaps {s2!r}"
    fig = rob_ax.figure
    with style.styled():
        fig.draw_without_rendering()
        ink = fig.get_tightbbox()
    width, height = fig.get_size_inches()
    assert min(ink.x0, ink.y0, width - ink.x1, height - ink.y1) >= plots.MARGIN_IN / 2


def test_the_svg_names_every_dot_and_repeats_byte_for_byte(rob_ax):
    svg = _svg(rob_ax)
    ids = {el.get("id") for el in ET.fromstring(svg).iter()}
    assert {f"rob:{i}:{col}" for i in range(len(LABELS)) for col in COLUMNS} <= ids
    assert svg == _svg(plots.forest(_judged_effects(), _result()))
