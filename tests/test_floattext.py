"""``ntxmeta.oracle.floattext.join_repr`` gives repr()'s bytes for every double.

The reference is CPython's own ``repr`` (David Gay's dtoa, the format the
json module writes): each case compares the whole joined text. The cases
cover the whole exponent range (random bit patterns), the places where a
shortest-digits algorithm goes wrong (powers of two, whose interval is
lopsided; powers of ten and their neighbours, where the digit count
changes; short decimals and integers, whose interval ends and ties fall on
exact decimals; the edges of the fast path's range) and numbers like the
weights the oracle writes.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntxmeta.oracle import floattext
from ntxmeta.oracle.floattext import join_repr

RNG = np.random.default_rng(20240611)
N = 200_000


def _reference(x: np.ndarray, sep: str = ", ") -> str:
    return sep.join(map(repr, np.asarray(x, dtype=float).tolist()))


def _assert_same(x: np.ndarray, sep: str = ", ") -> None:
    got, want = join_repr(x, sep), _reference(x, sep)
    if got != want:
        g, w = got.split(sep), want.split(sep)
        bad = [(i, g[i], w[i]) for i in range(min(len(g), len(w))) if g[i] != w[i]][:5]
        raise AssertionError(f"{len(g)} vs {len(w)} numbers; first differences {bad}")


def _bits(n: int) -> np.ndarray:
    return RNG.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True).view(np.float64)


CASES = {
    "random bit patterns (all exponents, both signs, nan and inf)": lambda: _bits(N),
    "weights in percent, as the oracle writes them": lambda: (
        lambda w: 100 * w / w.sum())(1 / (RNG.uniform(0.01, 0.2, N) + 0.05)),
    "normal numbers scaled by 1e-30 ... 1e30": lambda: (
        RNG.normal(0, 1, N) * 10.0 ** RNG.integers(-30, 30, N)),
    "short decimals": lambda: RNG.integers(-10**6, 10**6, N) / 10.0 ** RNG.integers(0, 7, N),
    "short decimals with any exponent": lambda: np.array(
        [float(f"{RNG.integers(1, 10**RNG.integers(1, 18))}e{RNG.integers(-320, 309)}")
         for _ in range(20_000)]),
    "integers up to 2**62": lambda: RNG.integers(-2**62, 2**62, N).astype(np.float64),
    "integers next to 2**53": lambda: np.arange(2**53 - 3000, 2**53 + 3000).astype(float),
    "multiples of 1/8": lambda: np.arange(-20_000, 20_000) / 8.0,
    "1e15 ... 1e17 (exact S, ties)": lambda: RNG.uniform(1e15, 1e17, N),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_join_repr_is_repr(name):
    _assert_same(CASES[name]())


def _neighbours(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):        # the largest double's neighbour is inf
        return np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf), -x])


def test_powers_of_two_and_ten_and_their_neighbours():
    p2 = np.ldexp(1.0, np.arange(-1074, 1024))
    p10 = np.array([float(f"1e{i}") for i in range(-323, 309)])
    _assert_same(_neighbours(p2))
    _assert_same(_neighbours(p10))


def test_edges_of_the_fast_range_and_special_values():
    edges = np.array([floattext.MIN_ABS, floattext.MAX_ABS, floattext.WHOLE_MIN,
                      floattext.WHOLE_MAX, 1e16, 1e17, 5e-324, 2.2250738585072014e-308,
                      1.7976931348623157e308, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 1e-4, 1e-5, 1e15,
                      9999999999999998.0, 0.000123, 1.5e16, 123456789012345678.0])
    _assert_same(np.concatenate([_neighbours(edges), [0.0, -0.0, np.nan, np.inf, -np.inf]]))


def test_separator_and_metafor_spelling_of_non_finite_values():
    x = np.array([1.5, np.nan, np.inf, -np.inf, -0.0, 1e-300, 2.5e-7])
    want = ',\n    '.join(['1.5', '"NA"', '"Inf"', '"-Inf"', '-0.0', '1e-300', '2.5e-07'])
    assert join_repr(x, ",\n    ", nan='"NA"', inf='"Inf"', ninf='"-Inf"') == want
    assert join_repr(np.array([])) == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1,
                max_size=50))
def test_any_list_of_floats(values):
    _assert_same(np.array(values, dtype=float))


@pytest.mark.parametrize("block", [1, 2, 5])
def test_block_boundaries_change_nothing(monkeypatch, block):
    # join_repr lays out BLOCK numbers at a time: a block of one number, or a block
    # boundary between a special value and a number, must give repr's text all the same
    monkeypatch.setattr(floattext, "BLOCK", block)
    x = np.array([1.5, np.nan, 0.1, -0.0, 1e300, 5e-324, 2.5e-7, np.inf, 123.0, -np.inf, 1 / 3])
    _assert_same(x)
    _assert_same(x, ",\n    ")


def test_power_of_ten_table_is_exact():
    # hi: the double nearest 10**n; lo: the double nearest 10**n - hi (exact rationals)
    from fractions import Fraction
    hi, lo, bh, bl = floattext._pow10_table()
    for i, n in enumerate(range(floattext.N_MIN, floattext.N_MAX + 1)):
        exact = Fraction(10) ** n
        assert hi[i] == float(exact) and lo[i] == float(exact - Fraction(hi[i])), n
    assert np.array_equal(bh + bl, hi)
