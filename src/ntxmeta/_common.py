"""Small shared pieces of the engine: named intervals, critical values,
the error type for analyses metafor refuses, and the section guard.

Kept in one place so that every module spells an interval, a level and a
refusal the same way (STYLE.md habit 6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _special as special


@dataclass(frozen=True)
class Interval:
    """A named interval; ``low`` <= ``high`` unless both are NaN."""

    low: float
    high: float


class MetaError(ValueError):
    """An analysis that cannot be computed for these data (metafor would stop).

    The message is written for a person: it names what is wrong.
    """


def z_crit(level: float) -> float:
    """Two-sided standard-normal critical value for a level in percent (95 -> 1.96).

    ``-scipy.special.ndtri(q)`` (reached through ``ntxmeta._special``): what
    ``scipy.stats.norm.isf(q)`` computes (its ``_isf``), without importing
    scipy.stats (~0.7 s of a short run).
    """
    return float(-special.ndtri((1.0 - level / 100.0) / 2.0))


def t_crit(level: float, df: float) -> float:
    """Two-sided Student-t critical value for a level in percent.

    ``-scipy.special.stdtrit(df, q)``: ``scipy.stats.t.isf(q, df)``'s ``_isf``
    (see ``z_crit``); NaN for df <= 0 as scipy.stats gives.
    """
    if not df > 0:
        return float("nan")
    return float(-special.stdtrit(df, (1.0 - level / 100.0) / 2.0))


def guarded(fn: Callable[..., dict], *args: Any, **kwargs: Any) -> dict:
    """Run a section builder; a ``ValueError`` becomes metafor's ``{"error": msg}``.

    Only ``ValueError`` (and so ``MetaError``) is caught: those are the
    documented refusals of an analysis. Anything else is a bug and propagates.
    """
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        return {"error": str(exc)}


def as_float_array(x: Any, name: str) -> np.ndarray:
    """A 1-D float array, or a ValueError naming the argument."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a
