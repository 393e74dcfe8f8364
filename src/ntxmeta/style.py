"""One place for the look of every ntxmeta figure (STYLE.md habit 12).

The figures are meant for print: black ink on white, sizes in points that
survive a single-column reduction, and a greyscale-safe encoding (marker
shape, fill and line style carry meaning; colour never does alone).

Everything a plot function needs from matplotlib's global state is set
inside :func:`styled`: a seaborn ``ticks``/``paper`` base with our fonts,
sizes and ink on top, applied with :func:`matplotlib.rc_context`.
``rcParams`` is process-global, so :func:`styled` also holds a re-entrant
lock: two threads that plot at the same time (Snakemake runs jobs in
threads) take turns instead of reading each other's settings. Figures are
built with the object-oriented API (:class:`matplotlib.figure.Figure` on
an Agg canvas), never with pyplot.

Determinism (STYLE.md habit 10): SVGs get a fixed ``svg.hashsalt`` and no
date, so a figure diffs the same on every machine. Texts are laid out with
the DejaVu Sans font that ships with matplotlib (the PNG looks the same
everywhere) and written into the SVG as text (``svg.fonttype: none``), in
DejaVu Sans with a sans-serif fallback: a journal's editor can select and
edit them, the files are a third of the size, and saving takes about a
tenth less time than writing every glyph as a path. Labels are cut to
their column with DejaVu's widths, wider than those of the common
fallbacks, so a substituted font does not overflow a column.
:func:`save_figure` writes PNG and SVG, and on request PDF (the font
embedded as TrueType, ``pdf.fonttype: 42``, text selectable, as journals
ask) and TIFF (600 dpi, LZW, flattened onto white: RGB without an alpha
channel), each atomically (temp file, then ``os.replace``).

Text size: ``styled(font_scale=f)`` multiplies every text size (the rc
sizes and every :func:`font`) by ``f`` for the block; the default, 1,
gives the sizes below (``FigureOptions.font_size_pt`` / 8 pt).
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

import matplotlib as mpl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from .io import atomic_path

#: Font shipped inside matplotlib, hence identical on every machine.
FONT_FAMILY = "DejaVu Sans"
#: What an SVG asks for: DejaVu Sans, else the viewer's sans-serif font.
FONT_FAMILIES = [FONT_FAMILY, "sans-serif"]
#: Sizes in points. 7-8 pt is the smallest that journals accept after a
#: figure is printed at its final width.
FONT_SIZE = 8.0
SMALL_SIZE = 7.0
TITLE_SIZE = 9.0

#: Greyscale-safe ink. Meaning is carried by marker shape and fill and by
#: line style; these greys stay distinct when printed in black and white.
INK = "black"
DARK = "0.25"
MID = "0.55"
LIGHT = "0.80"
FAINT = "0.92"
SHADE = "0.67"   # darkest fill (funnel: p < 0.01); black markers stay legible on it
PAPER = "white"
#: Translucent ink for overlapping fills (bubbles), still grey when printed.
TRANSLUCENT = (0.0, 0.0, 0.0, 0.18)

#: Line widths in points.
LINE_WIDTH = 0.8
THIN_LINE = 0.5

#: Raster resolution of saved PNGs (journals ask for >= 300 dpi).
PNG_DPI = 300
#: TIFF: 600 dpi (journals' line art with text), LZW (lossless; every TIFF
#: reader has it).
TIFF_DPI = 600
TIFF_COMPRESSION = "tiff_lzw"
#: Every output format, in the order :func:`save_figure` writes them.
FORMATS = ("png", "svg", "pdf", "tiff")
#: zlib level of saved PNGs: 1 encodes a 300-dpi forest plot about 25%
#: faster than the default 6 (a third of the time of a PNG is zlib) for
#: files about 8% larger; PNG is lossless at every level.
PNG_COMPRESS_LEVEL = 1
#: White margin around the tight bounding box of a saved figure (inches).
PAD_IN = 0.05
#: Fixed salt for the ids matplotlib writes into an SVG, so that two runs
#: give the same bytes.
SVG_HASHSALT = "ntxmeta"

#: Risk-of-bias judgements (ntxmeta.robplots): the only colours of the
#: figures, from the Okabe-Ito palette, which stays distinct under the common
#: colour-vision deficiencies (blue / yellow / vermillion rather than robvis'
#: green / yellow / red), with a symbol on every dot so the judgement reads
#: in greyscale too (robvis' symbols: + low, - some concerns, x high, ? none).
ROB_COLOURS = {"low": "#0072B2", "some_concerns": "#F0E442", "high": "#D55E00",
               "not_assessed": "#FFFFFF"}
ROB_SYMBOLS = {"low": "+", "some_concerns": "\u2212", "high": "\u00d7", "not_assessed": "?"}
#: Symbol ink per judgement: white on the dark fills, black on the light ones.
ROB_SYMBOL_INK = {"low": "white", "some_concerns": INK, "high": "white", "not_assessed": INK}
ROB_WORDS = {"low": "Low", "some_concerns": "Some concerns", "high": "High",
             "not_assessed": "Not assessed"}

_RC = {
    **sns.axes_style("ticks"),
    **sns.plotting_context("paper"),
    "font.family": "sans-serif",
    "font.sans-serif": [FONT_FAMILY],
    "font.size": FONT_SIZE,
    "axes.titlesize": TITLE_SIZE,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": SMALL_SIZE,
    "ytick.labelsize": SMALL_SIZE,
    "legend.fontsize": SMALL_SIZE,
    "legend.title_fontsize": SMALL_SIZE,
    "legend.frameon": False,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.linewidth": LINE_WIDTH,
    "lines.linewidth": LINE_WIDTH,
    "patch.linewidth": LINE_WIDTH,
    "patch.edgecolor": INK,
    "xtick.major.width": LINE_WIDTH,
    "ytick.major.width": LINE_WIDTH,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.unicode_minus": True,
    "figure.facecolor": PAPER,
    "savefig.facecolor": PAPER,
    "svg.fonttype": "none",
    # PDF: TrueType fonts embedded whole-glyph (Type 42), not Type 3 bitmaps
    # of outlines: journals' preflight checks ask for embedded TrueType or
    # Type 1, and the text stays selectable.
    "pdf.fonttype": 42,
    # No hinting: it snaps glyph outlines to the pixel grid, which helps
    # small text on screens; at 300 dpi it changes nothing visible and costs
    # a fifth of the time of a PNG.
    "text.hinting": "no_hinting",
    "svg.hashsalt": SVG_HASHSALT,
    "path.simplify": False,
    # Labels and titles are data (trial labels, analysis titles), never
    # mathtext: a '$' or a backslash in them is printed as written instead of
    # being parsed (an unbalanced '$' raised ValueError mid-run).
    "text.parse_math": False,
}

_RC_LOCK = threading.RLock()
#: The rc sizes that ``font_scale`` multiplies.
_SIZE_KEYS = ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
              "ytick.labelsize", "legend.fontsize", "legend.title_fontsize")
_SCALE = threading.local()


def font_scale() -> float:
    """The text-size factor in force (:func:`styled`), 1 outside any block."""
    return getattr(_SCALE, "value", 1.0)


@contextlib.contextmanager
def styled(font_scale: float | None = None) -> Iterator[None]:
    """Apply the ntxmeta rcParams for the duration of the block.

    Holds a process-wide re-entrant lock while the settings are in force,
    so concurrent threads that plot take turns; nesting is allowed.
    ``font_scale`` multiplies every text size (rc sizes and :func:`font`)
    in the block; None keeps the factor of an enclosing block (1 at the top).
    """
    outer = getattr(_SCALE, "value", 1.0)
    scale = outer if font_scale is None else float(font_scale)
    rc = _RC if scale == 1.0 else {**_RC, **{k: _RC[k] * scale for k in _SIZE_KEYS}}
    with _RC_LOCK, mpl.rc_context(rc):
        _SCALE.value = scale
        try:
            yield
        finally:
            _SCALE.value = outer


def font(size: float = FONT_SIZE, weight: str = "normal", style: str = "normal") -> FontProperties:
    """The figure font at a size (points, times the :func:`styled` font scale), weight and style."""
    return FontProperties(family=FONT_FAMILIES, size=size * font_scale(), weight=weight, style=style)


def new_axes(width_in: float, height_in: float, rect: tuple[float, float, float, float] | None = None) -> Axes:
    """A styled Axes on a new Agg-backed Figure (no pyplot).

    Parameters
    ----------
    width_in, height_in : float
        Figure size in inches.
    rect : (left, bottom, width, height), optional
        Axes position in figure fractions; default: one subplot with the
        default margins.
    """
    with styled():
        fig = Figure(figsize=(width_in, height_in))
        FigureCanvasAgg(fig)
        return fig.add_axes(rect) if rect is not None else fig.add_subplot()


_MEASURING = threading.local()


def text_width_in(text: str, prop: FontProperties) -> float:
    """Width of ``text`` (plain, no mathtext) in inches when rendered by Agg.

    Measured with a 72-dpi Agg renderer kept per thread (thread-safe).
    """
    renderer = getattr(_MEASURING, "renderer", None)
    if renderer is None:
        renderer = _MEASURING.renderer = FigureCanvasAgg(Figure(dpi=72)).get_renderer()
    width_px, _, _ = renderer.get_text_width_height_descent(text, prop, ismath=False)
    return width_px / 72.0


def fit_text(text: str, max_in: float, prop: FontProperties) -> str:
    """``text`` cut at the end with an ellipsis so that it is at most ``max_in`` wide."""
    if text_width_in(text, prop) <= max_in:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if text_width_in(text[:mid].rstrip() + "\u2026", prop) <= max_in:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "\u2026"


def _save_tiff(fig: Figure, handle, dpi: int, bbox) -> None:
    """TIFF at ``dpi``: rendered by Agg, flattened onto white (RGB), LZW, dpi tag set (Pillow)."""
    import io as _io

    from PIL import Image
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox, metadata={"Software": None},
                pil_kwargs={"compress_level": 0})
    buffer.seek(0)
    with Image.open(buffer) as image:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, PAPER)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        flat.save(handle, format="TIFF", compression=TIFF_COMPRESSION, dpi=(dpi, dpi))


def save_figure(fig: Figure, stem: str | os.PathLike, *, crop: bool = True,
                formats: tuple[str, ...] = ("png", "svg"), dpi: int = PNG_DPI,
                tiff_dpi: int = TIFF_DPI) -> tuple[Path, ...]:
    """Write ``stem.png`` (300 dpi) and ``stem.svg`` (and PDF, TIFF), deterministically and atomically.

    Each file is written to a temporary file in the target folder and moved
    into place with :func:`os.replace`, so a reader never sees a partial
    figure. The SVG carries a fixed hash salt and no date, the PDF no date
    and no producer, so re-running on the same data changes no byte.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    stem : str or path-like
        Output path without extension; missing folders are created.
    crop : bool
        Crop to the drawn content plus :data:`PAD_IN` (measured once for
        every file). ``False`` saves the figure at its own size, for
        figures laid out to their content (``plots.LAID_OUT``) or to a
        requested width.
    formats : tuple of str
        Any of :data:`FORMATS`, written in that order: PNG at ``dpi``, SVG,
        PDF (TrueType fonts embedded), TIFF at ``tiff_dpi`` (LZW, RGB).
    dpi, tiff_dpi : int

    Returns
    -------
    tuple of Path
        One path per format, in :data:`FORMATS` order ((png, svg) by default).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown figure format {unknown[0]!r}; use any of {', '.join(FORMATS)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    options = {
        "png": {"format": "png", "dpi": dpi, "metadata": {"Software": None},
                "pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}},
        "svg": {"format": "svg", "metadata": {"Date": None, "Creator": None}},
        "pdf": {"format": "pdf", "metadata": {"CreationDate": None, "Creator": None,
                                              "Producer": None}},
        "tiff": None,
    }
    outputs = [(stem.with_name(f"{stem.name}.{f}"), f) for f in FORMATS if f in formats]
    with styled():
        bbox = None
        if crop:  # measured once for all files: bbox_inches="tight" lays out again for each
            fig.draw_without_rendering()
            bbox = fig.get_tightbbox().padded(PAD_IN)
        for path, kind in outputs:
            # ntxmeta.io: temp file beside the target (stale ones of killed
            # runs removed), umask permissions, then rename
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                if kind == "tiff":
                    _save_tiff(fig, handle, tiff_dpi, bbox)
                else:
                    fig.savefig(handle, bbox_inches=bbox, **options[kind])
    return tuple(path for path, _ in outputs)


def note_figure(text: str, *, width_in: float = 7.5) -> "Figure":
    """A one-line figure that says why a figure has nothing to draw (an analysis not pooled)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, 0.6))
    FigureCanvasAgg(fig)
    fig.text(0.02, 0.5, text, ha="left", va="center", fontsize=FONT_SIZE, color=INK, gid="note")
    return fig
