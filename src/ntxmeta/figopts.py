"""Figure options (config key ``figures``), typed and frozen: :class:`FigureOptions`.

The config's top-level ``figures`` holds the defaults of every analysis;
``analyses.<name>.figures`` overrides them key by key (a figure kind's
block and its ``labels`` and the ``colours`` are merged key by key, lists
replace). :func:`merge` does that on the validated YAML mappings and
:meth:`FigureOptions.of` types the result. Every option has a default that
reproduces the figures as they were before the options existed
(``FigureOptions()``): width sized to the content, 8-pt text, PNG at
300 dpi and SVG, the greys of :mod:`ntxmeta.style`, the forest in the
order of the effects table with every column.

:meth:`FigureOptions.digest` is what the workflow passes to the figure rules
as a ``params`` value: a change of one analysis' options re-renders only
its figures, a change of the defaults re-renders every figure and no model.

Widths: journals give figure widths as a column (single 3.5 in = 89 mm,
1.5 columns 5.5 in, double 7 in = 178 mm; e.g. the BMJ's, Elsevier's and
Nature's artwork guides agree within a millimetre), or in millimetres.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

__all__ = ["FigureOptions", "PlotOptions", "FigureLabels", "parse_width", "merge",
           "WIDTH_PRESETS_IN", "KINDS", "ORDERS", "FOREST_COLUMNS", "FORMATS", "COLOUR_KEYS",
           "grey"]

#: Width presets in inches (journal column widths).
WIDTH_PRESETS_IN = {"single": 3.5, "one_and_half": 5.5, "double": 7.0}
MM_PER_IN = 25.4
#: Least and largest width accepted: below 2 in no figure has room for an
#: axis beside its labels; above 20 in it is a poster, not a journal figure.
MIN_WIDTH_IN = 2.0
MAX_WIDTH_IN = 20.0
_WIDTH_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(mm|in)\s*$")
#: Figure kinds with a block of their own options.
KINDS = ("forest", "funnel", "cumulative", "leave_one_out", "bubble")
#: Orders of the forest's study rows: as the effects table has them (the
#: order of the raw tables), by year, by weight (largest first, as RevMan
#: sorts by weight) or by effect (smallest first).
ORDERS = ("entered", "year", "weight", "effect")
#: Forest columns that may be hidden (the study label is always shown):
#: time and outcome, the arm-level data, the effect with its CI, the weight,
#: the risk-of-bias dots.
FOREST_COLUMNS = ("outcome", "arms", "effect", "weight", "rob")
#: Output formats. PNG and SVG are always written: the HTML report shows the
#: SVG and Snakemake's report the PNG.
FORMATS = ("png", "svg", "pdf", "tiff")
REQUIRED_FORMATS = ("png", "svg")
#: Colours that may be set: study squares and lines, pooled diamonds, and
#: the four risk-of-bias judgements.
COLOUR_KEYS = ("study", "pooled", "rob_low", "rob_some_concerns", "rob_high", "rob_not_assessed")
#: Raster resolutions: PNG as before; TIFF at 600 dpi, what journals ask of
#: line art with text (e.g. Elsevier, PLOS: 300-600 dpi, 600 for combination art).
PNG_DPI = 300
TIFF_DPI = 600
FONT_SIZE_PT = 8.0


def parse_width(value: Any) -> float | None:
    """A configured width in inches: a preset, a number (inches), "90mm" or "3.5in".

    Returns None for None (the figure is sized to its content). Raises
    ValueError (with the rule) for anything else or a width outside
    [MIN_WIDTH_IN, MAX_WIDTH_IN].
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a width is single, one_and_half, double, or a number with unit "
                         "(90mm, 3.5in)")
    if isinstance(value, (int, float)):
        inches = float(value)
    elif isinstance(value, str) and value.strip() in WIDTH_PRESETS_IN:
        inches = WIDTH_PRESETS_IN[value.strip()]
    else:
        m = _WIDTH_RE.match(str(value))
        if not m:
            raise ValueError("a width is single (3.5 in), one_and_half (5.5 in), double (7 in), "
                             "or a number with unit mm or in (90mm, 3.5in)")
        inches = float(m.group(1)) / (MM_PER_IN if m.group(2) == "mm" else 1.0)
    if not MIN_WIDTH_IN <= inches <= MAX_WIDTH_IN:
        raise ValueError(f"a width is from {MIN_WIDTH_IN:g} to {MAX_WIDTH_IN:g} in "
                         f"({MIN_WIDTH_IN * MM_PER_IN:.0f} to {MAX_WIDTH_IN * MM_PER_IN:.0f} mm); "
                         f"this is {inches:.2f} in")
    return inches


def grey(colour) -> str:
    """A colour as the grey of its luminance (ITU-R BT.601 weights 0.299, 0.587, 0.114)."""
    from matplotlib.colors import to_rgb
    r, g, b = to_rgb(colour)
    return f"{0.299 * r + 0.587 * g + 0.114 * b:.3f}"


@dataclass(frozen=True)
class FigureLabels:
    """Texts that replace the computed ones (None: as computed).

    ``favours_left``/``favours_right``: the words beside the line of no
    effect, without the arrow ("Favours naltrexone"); ``axis_title``: the
    effect axis' title ("Risk ratio (log scale)").
    """

    favours_left: str | None = None
    favours_right: str | None = None
    axis_title: str | None = None


@dataclass(frozen=True)
class PlotOptions:
    """Options of one figure kind.

    ``limits``: (low, high) of the effect axis on the shown scale (a risk
    ratio, not its log); ``ticks``: its ticks (shown scale); ``order``: of
    the forest's study rows (:data:`ORDERS`); ``columns``: the forest's
    columns shown (:data:`FOREST_COLUMNS`; None: all).
    """

    limits: tuple[float, float] | None = None
    ticks: tuple[float, ...] | None = None
    order: str = "entered"
    labels: FigureLabels = field(default_factory=FigureLabels)
    columns: tuple[str, ...] | None = None

    @classmethod
    def of(cls, block: Mapping | None) -> "PlotOptions":
        block = block or {}
        lim, ticks, cols = block.get("limits"), block.get("ticks"), block.get("columns")
        return cls(limits=None if lim is None else (float(lim[0]), float(lim[1])),
                   ticks=None if ticks is None else tuple(float(t) for t in ticks),
                   order=str(block.get("order", "entered")),
                   labels=FigureLabels(**{k: str(v) for k, v in (block.get("labels") or {}).items()}),
                   columns=None if cols is None else tuple(str(c) for c in cols))

    def shows(self, column: str) -> bool:
        """Whether the forest shows ``column`` (one of :data:`FOREST_COLUMNS`)."""
        return self.columns is None or column in self.columns


DEFAULT_PLOT = PlotOptions()


@dataclass(frozen=True)
class FigureOptions:
    """The figure options of one analysis (defaults merged with its own).

    ``width_in``: figure width in inches (None: sized to the content, as
    before); ``font_size_pt``: the body text (notes, tick labels and legends
    are 1 pt smaller, titles 1 pt larger, as at the default 8 pt);
    ``formats``: files written (:data:`FORMATS`); ``dpi``: of PNG;
    ``tiff_dpi``: of TIFF; ``greyscale``: every colour as its grey;
    ``colours``: ((key, colour), ...) of :data:`COLOUR_KEYS`; ``kinds``:
    ((kind, PlotOptions), ...).
    """

    width_in: float | None = None
    font_size_pt: float = FONT_SIZE_PT
    formats: tuple[str, ...] = REQUIRED_FORMATS
    dpi: int = PNG_DPI
    tiff_dpi: int = TIFF_DPI
    greyscale: bool = False
    colours: tuple[tuple[str, str], ...] = ()
    kinds: tuple[tuple[str, PlotOptions], ...] = ()

    @classmethod
    def of(cls, block: Mapping | None) -> "FigureOptions":
        """From a validated (merged) ``figures`` mapping."""
        block = block or {}
        return cls(width_in=parse_width(block.get("width")),
                   font_size_pt=float(block.get("font_size", FONT_SIZE_PT)),
                   formats=tuple(f for f in FORMATS if f in block.get("formats", REQUIRED_FORMATS)),
                   dpi=int(block.get("dpi", PNG_DPI)), tiff_dpi=int(block.get("tiff_dpi", TIFF_DPI)),
                   greyscale=bool(block.get("greyscale", False)),
                   colours=tuple(sorted((str(k), str(v)) for k, v in (block.get("colours") or {}).items())),
                   kinds=tuple((k, PlotOptions.of(block[k])) for k in KINDS if k in block))

    def plot(self, kind: str) -> PlotOptions:
        """The options of one figure kind (defaults when it has none)."""
        return dict(self.kinds).get(kind, DEFAULT_PLOT)

    @property
    def font_scale(self) -> float:
        """Body text size relative to the default 8 pt."""
        return self.font_size_pt / FONT_SIZE_PT

    def colour(self, key: str, default) -> Any:
        """The colour of ``key`` (configured, else ``default``), grey when ``greyscale``."""
        value = dict(self.colours).get(key, default)
        return grey(value) if self.greyscale else value

    @property
    def print_formats(self) -> tuple[str, ...]:
        """The formats beyond PNG and SVG (PDF, TIFF): the print rules' outputs."""
        return tuple(f for f in self.formats if f not in REQUIRED_FORMATS)

    def digest(self, kinds: tuple[str, ...] | None = None,
               formats: tuple[str, ...] | None = None) -> str:
        """A short digest of the options that figures of ``kinds`` in ``formats`` depend on.

        The figure rules' re-run trigger: width, font size, greyscale and
        colours always; the plot options of ``kinds`` only (None: all), the
        PNG dpi only for PNG and the TIFF dpi only for TIFF (None: every
        format), so that asking for a PDF, or changing the bubble plots'
        ticks, re-renders no forest.
        """
        fields = asdict(self)
        fields.pop("formats")
        if formats is not None:
            if "png" not in formats:
                fields.pop("dpi")
            if "tiff" not in formats:
                fields.pop("tiff_dpi")
        if kinds is not None:
            fields["kinds"] = [[k, asdict(p)] for k, p in self.kinds if k in kinds]
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT = FigureOptions()


def merge(defaults: Mapping | None, own: Mapping | None) -> dict:
    """An analysis' ``figures`` mapping: ``own`` over ``defaults``, key by key.

    Mappings (a kind's block, its ``labels``, ``colours``) are merged
    recursively; any other value (a list such as ``formats`` or ``ticks``)
    replaces the default's.
    """
    out = dict(defaults or {})
    for key, value in (own or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
