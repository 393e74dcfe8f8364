"""``repr()`` of a million floats without a Python call per number.

``join_repr(x, sep)`` is ``sep.join(repr(float(v)) for v in x)``, byte for
byte, computed over the whole array with numpy. It exists because the oracle
adapter writes per-study vectors (weights, residuals) as shortest round-trip
floats, and CPython's ``float.__repr__`` (David Gay's ``dtoa`` in mode 0,
bignum arithmetic) costs ~1 us a number: a second for the weights of a
1e6-study analysis, most of ``ntxmeta analyse``'s time (bench/README.md).

What ``repr`` prints (CPython's ``float_repr_style == "short"``,
``Python/pystrtod.c``): the shortest decimal string that reads back as the
same double under round-half-even, and of the shortest ones the nearest to
the double; ``decpt`` (value = 0.d1d2...dn x 10**decpt) in [-3, 16] is
written in fixed notation ("0.00012", "1500.0"), otherwise as
"d1.d2...dn" + "e" + sign + at least two exponent digits ("1e-05",
"1.5e+16").

How it is computed here, per element, for 1e-280 <= |x| <= 1e280:

1. |x| = M 2**(E - 53), M the 53-bit integer mantissa. S = |x| 10**n = I + f
   (I an integer, 0 <= f < 1) with n chosen so that 10**16 <= S < 10**17
   (17 significant digits always round-trip), as a double-double: Dekker's
   exact product of |x| and the double nearest 10**n, plus |x| times the
   double nearest the rest of 10**n (a table made with exact rational
   arithmetic). Error below 1e-14 (units of the 17th digit); S is exact when
   10**n is a double (0 <= n <= 22), and for 1e17 <= |x| < 9e18 (integers:
   n = 0).
2. The round-trip interval: a decimal reads back as x iff it lies within
   G = 2**(E - 54) 10**n of S above, and G (G / 2 when M = 2**52, a power of
   two) below; the ends are included when M is even (round-half-even). lo and
   hi are the smallest and largest integers inside.
3. The shortest: the largest t such that a multiple of 10**t lies in
   [lo, hi] (floor(hi / 10**t) > floor((lo - 1) / 10**t)); of those
   multiples, the nearest to S, a tie going to the even last digit (dtoa's
   rounding of its last digit). Digits D = that multiple / 10**t.
4. Every decision (S's integer part, an end of the interval on an integer,
   a tie) that lies within ``AMBIGUOUS`` of its threshold and is not exact,
   and every |x| outside the range (zero, subnormals, huge numbers: their
   powers of ten or splits would leave the normal range), is given to
   ``repr()`` itself. ``AMBIGUOUS`` is 1e7 times the arithmetic's error, so a
   wrong decision would need an error bound that is wrong by that factor; of
   random bit patterns inside the range about 1 in 20,000 goes to ``repr()``
   (integers above 9e18 mostly), of the weights of bench/analyse_bench.py none.

tests/test_floattext.py compares with ``repr`` on random bit patterns over
the whole range, on the round-trip boundary cases (powers of two and ten,
short decimals, integers near 2**53, halfway cases) and on the data of
bench/analyse_bench.py.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Decisions closer than this (in units of the 17th significant digit) to their
#: threshold go to ``repr()``: the double-double arithmetic is good to < 1e-14.
AMBIGUOUS = 1e-7
#: Numbers outside [MIN_ABS, MAX_ABS] in absolute value go to ``repr()``: inside,
#: the powers of ten (10**-265 ... 10**297), their remainders and Veltkamp's
#: split (x 2**27) stay normal and finite.
MIN_ABS, MAX_ABS = 1e-280, 1e280
#: Range of n in 10**n of the table (with a margin of a few on each side).
N_MIN, N_MAX = -270, 300
#: Veltkamp's splitting constant for doubles, 2**27 + 1.
SPLIT = 134217729.0
#: Numbers per block of ``join_repr``: ``_shortest`` makes ~60 elementwise passes, and
#: on blocks of 16,384 (128 KiB per array) they run in the L2 cache (2 MiB per core on
#: the bench machine) instead of streaming 8 MB arrays from memory: 2x faster at 1e6
#: numbers (0.24 s -> 0.12 s for the digits, bench/README.md). Any size gives the same text.
BLOCK = 16384
#: Longest text repr() gives a double: "-1.2345678901234567e-100".
MAX_TEXT = 24
_POW10 = np.array([10**i for i in range(19)], dtype=np.int64)
#: From 1e17 to 9e18 a double is an integer that int64 holds, with room for a step of
#: 1e18: there S = |x| itself (n = 0), exact.
WHOLE_MIN, WHOLE_MAX = 1e17, 9e18


@lru_cache(maxsize=1)
def _pow10_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """10**n = hi + lo for n in [N_MIN, N_MAX] (hi the nearest double, lo the nearest
    double to the rest), and hi's Veltkamp split (hi = bh + bl, 26 bits each)."""
    hi, lo = [], []
    for n in range(N_MIN, N_MAX + 1):   # int arithmetic: exact; int / int and float(int) round
        if n >= 0:                      # correctly (as float(Fraction) does, 6x faster)
            exact = 10**n
            h = float(exact)
            rest = float(exact - int(h))
        else:                           # 10**n - h = (den - num 10**-n) / (den 10**-n), h = num / den
            d = 10**-n
            h = 1 / d
            num, den = h.as_integer_ratio()
            rest = (den - num * d) / (den * d)
        hi.append(h)
        lo.append(rest)
    hi_a, lo_a = np.array(hi), np.array(lo)
    c = SPLIT * hi_a
    bh = c - (c - hi_a)
    return hi_a, lo_a, bh, hi_a - bh


def _scaled(a: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """a 10**n as a double-double (s, s_lo), and 10**n's hi and lo."""
    hi_t, lo_t, bh_t, bl_t = _pow10_table()
    i = n - N_MIN
    ph, pl, bh, bl = hi_t[i], lo_t[i], bh_t[i], bl_t[i]
    p = a * ph
    c = SPLIT * a
    ah = c - (c - a)
    al = a - ah
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl   # Dekker: a ph = p + err exactly
    lo = err + a * pl
    s = p + lo
    return s, lo - (s - p), ph, pl


def _near_integer(v: np.ndarray) -> np.ndarray:
    frac = v - np.floor(v)
    return (frac < AMBIGUOUS) | (frac > 1 - AMBIGUOUS)


def _exact_sum(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Whether s = fl(a + b) is a + b exactly (Knuth's two-sum error is zero)."""
    bb = s - a
    return ((a - (s - bb)) + (b - bb)) == 0


def _shortest(a: np.ndarray):
    """Digits D (no trailing zeros), their count, decpt and a 'give to repr()' flag, each a > 0."""
    frac, ex = np.frexp(a)
    n = 16 - np.floor(np.log10(a)).astype(np.int64)
    s, s_lo, ph, pl = _scaled(a, n)
    # log10 may be off by one next to a power of ten: put S in [1e16, 1e17)
    big = (s > 1e17) | ((s == 1e17) & (s_lo >= 0))
    small = (s < 1e16) | ((s == 1e16) & (s_lo < 0))
    fix = np.flatnonzero(big | small)
    if fix.size:
        n[fix] += np.where(big[fix], -1, 1)
        s[fix], s_lo[fix], ph[fix], pl[fix] = _scaled(a[fix], n[fix])
    whole_x = (a >= WHOLE_MIN) & (a < WHOLE_MAX)
    if whole_x.any():
        n[whole_x], s[whole_x], s_lo[whole_x], ph[whole_x], pl[whole_x] = 0, a[whole_x], 0, 1, 0
    doubt = ((s >= 1e17) | (s < 1e16)) & ~whole_x
    whole = np.floor(s_lo)
    f = s_lo - whole                                   # S = I + f, 0 <= f < 1
    I = s.astype(np.int64) + whole.astype(np.int64)    # s is integral (> 2**53)
    doubt |= (pl != 0) & _near_integer(f)
    # the interval [S - g_down, S + g_up], ends included when the mantissa is even
    g_up = np.ldexp(ph, ex - 54) + np.ldexp(pl, ex - 54)
    g_down = np.where(frac == 0.5, g_up / 2, g_up)
    top, bottom = f + g_up, f - g_down
    # an end on an integer: decided where S and the sum are exact (10**n a double), else repr
    near_top, near_bottom = _near_integer(top), _near_integer(bottom)
    hi = I + np.floor(top).astype(np.int64)            # largest integer inside
    lo = I + np.ceil(bottom).astype(np.int64)          # smallest integer inside
    exact = pl == 0
    on = np.flatnonzero((near_top | near_bottom) & exact)
    if on.size:
        ft, fb, fo = top[on], bottom[on], f[on]
        odd = (np.ldexp(frac[on], 53).astype(np.int64) & 1) == 1
        top_on = _exact_sum(fo, g_up[on], ft) & (ft == np.floor(ft))
        bottom_on = _exact_sum(fo, -g_down[on], fb) & (fb == np.floor(fb))
        near_top[on] &= ~top_on
        near_bottom[on] &= ~bottom_on
        hi[on] -= top_on & odd                          # an odd mantissa excludes its ends
        lo[on] += bottom_on & odd
    doubt |= near_top | near_bottom
    doubt |= hi < lo
    # the most trailing zeros a number inside can have: the largest t with
    # floor(hi / 10**t) > floor((lo - 1) / 10**t)
    # (a multiple of 10**(t + 1) is one of 10**t: once false, the test stays false, so
    # t is the number of t = 1, 2, ... for which it holds)
    dropped = np.zeros(a.size, dtype=np.int64)
    qa, qb = lo - 1, hi.copy()
    for _ in range(18):
        qa //= 10
        qb //= 10
        ok = qb > qa
        if not ok.any():
            break
        dropped += ok
    # of the numbers with that many trailing zeros inside, the nearest to S
    p = _POW10[dropped]
    q, r = np.divmod(I, p)
    above_half = (r - p // 2) + np.where(dropped == 0, f - 0.5, f)   # S / p - q - 1/2
    # a tie: the even last digit (dtoa's round-half-even), decided where S is exact
    tie = exact & (above_half == 0)
    doubt |= (np.abs(above_half) < AMBIGUOUS) & ~tie
    up = (above_half > 0) | (tie & (q % 2 == 1))
    digits = q + up      # the nearest multiple of p; if outside, the one inside beside it
    digits += digits * p < lo
    digits -= digits * p > hi
    while True:          # none expected: a multiple of 10 p inside would have been found
        z = np.flatnonzero((digits % 10 == 0) & (digits > 0))
        if not z.size:
            break
        digits[z] //= 10
        dropped[z] += 1
    nd = np.searchsorted(_POW10, digits, side="right")
    doubt |= (nd < 1) | (nd > 17)
    return digits, nd, nd + dropped - n, doubt


#: Layout codes: 0..19 fixed notation with decpt = code - 3; 20..23 exponent
#: notation (+2: negative exponent, +1: three exponent digits); then specials.
_FIXED, _EXP = 20, 4
_LAYOUTS = _FIXED + _EXP
_SPECIAL_NAN, _SPECIAL_INF, _SPECIAL_NINF, _SPECIAL_ZERO, _SPECIAL_NZERO, _SPECIAL_REPR = range(
    2 * 18 * _LAYOUTS, 2 * 18 * _LAYOUTS + 6)
#: Bytes of the per-number source row: 17 digits, then the exponent's 3 digits.
_EXP_COL = 17
#: v in [0, 10000) -> its 4 ASCII digits as a little-endian uint32 (first digit first).
_DIGITS4 = (np.arange(10000)[:, None] // np.array([1000, 100, 10, 1]) % 10 + 48).astype(
    np.uint8).view("<u4").ravel()


def _template(key: int, sep: bytes, nan: bytes, inf: bytes, ninf: bytes) -> list:
    """The text of a layout: literal bytes, and (first, count) runs of source bytes."""
    specials = {_SPECIAL_NAN: nan, _SPECIAL_INF: inf, _SPECIAL_NINF: ninf,
                _SPECIAL_ZERO: b"0.0", _SPECIAL_NZERO: b"-0.0"}
    if key in specials:
        return [specials[key] + sep]
    neg, rest = divmod(key, 18 * _LAYOUTS)
    nd, code = divmod(rest, _LAYOUTS)
    out: list = [b"-"] if neg else []
    if code < _FIXED:
        decpt = code - 3
        if decpt <= 0:                      # 0.00ddd
            out += [b"0." + b"0" * -decpt, (0, nd), sep]
        elif decpt < nd:                    # dd.ddd
            out += [(0, decpt), b".", (decpt, nd - decpt), sep]
        else:                               # ddd00.0
            out += [(0, nd), b"0" * (decpt - nd) + b".0" + sep]
    else:                                   # d.ddde-05
        minus, three = divmod(code - _FIXED, 2)
        out += [(0, 1)] + ([b".", (1, nd - 1)] if nd > 1 else [])
        out += [b"e-" if minus else b"e+", (_EXP_COL, 3) if three else (_EXP_COL + 1, 2), sep]
    return out


def _source(digits: np.ndarray, nd: np.ndarray, decpt: np.ndarray) -> np.ndarray:
    """(m, 20) uint8 rows: the 17 digits left-aligned (ASCII), then |decpt - 1| in 3 digits."""
    left = digits * _POW10[17 - np.clip(nd, 1, 17)]
    last, left = left % 10, left // 10        # 16 digits left, in four groups of 4
    words = np.empty((digits.size, 5), dtype="<u4")
    for col in (3, 2, 1):
        words[:, col] = _DIGITS4[left % 10000]
        left //= 10000
    words[:, 0] = _DIGITS4[left]
    e = np.minimum(np.abs(decpt - 1), 999)
    words[:, 4] = (_DIGITS4[e] & np.uint32(0xFFFFFF00)) | (last + 48).astype(np.uint32)
    return words.view(np.uint8)


def join_repr(x, sep: str = ", ", *, nan: str = "nan", inf: str = "inf",
              ninf: str = "-inf") -> str:
    """``sep.join(map(repr, x.tolist()))`` for a float64 vector, computed with numpy.

    ``nan``, ``inf`` and ``ninf`` replace repr's spelling of the non-finite
    values (the oracle writes metafor's ``"NA"``, ``"Inf"``, ``"-Inf"``).
    """
    return join_repr_bytes(x, sep, nan=nan, inf=inf, ninf=ninf).decode("ascii")


def join_repr_bytes(x, sep: str = ", ", *, nan: str = "nan", inf: str = "inf",
                    ninf: str = "-inf") -> bytes:
    """``join_repr``'s text as ASCII bytes (for a writer: no str made and encoded again)."""
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return b""
    bsep = sep.encode("ascii")
    texts = [t.encode("ascii") for t in (nan, inf, ninf)]
    blocks = [_block_text(x[i:i + BLOCK], bsep, texts) for i in range(0, x.size, BLOCK)]
    blocks[-1] = blocks[-1][:len(blocks[-1]) - len(bsep)]   # no separator after the last
    return b"".join(blocks)


def _block_text(x: np.ndarray, bsep: bytes, texts: list) -> bytes:
    """The text of each number of x followed by bsep (``join_repr``'s work on one block)."""
    a = np.abs(x)
    neg = np.signbit(x)
    fast = (a >= MIN_ABS) & (a <= MAX_ABS)       # False for nan, inf, zero
    every = bool(fast.all())
    idx = None if every else np.flatnonzero(fast)
    af = a if every else a[idx]
    digits, nd, decpt, doubt = _shortest(af)
    rows = _source(digits, nd, decpt)
    fixed = (decpt >= -3) & (decpt <= 16)
    code = np.where(fixed, decpt + 3, _FIXED + 2 * (decpt < 1) + (np.abs(decpt - 1) >= 100))
    fkey = (((neg if every else neg[idx]) * 18 + nd) * _LAYOUTS + code).astype(np.int16)
    fkey[doubt] = _SPECIAL_REPR
    if every:
        key, src = fkey, rows
    else:
        key = np.full(x.size, _SPECIAL_REPR, dtype=np.int16)
        key[np.isnan(x)] = _SPECIAL_NAN
        key[np.isinf(x) & ~neg] = _SPECIAL_INF
        key[np.isinf(x) & neg] = _SPECIAL_NINF
        key[(x == 0) & ~neg] = _SPECIAL_ZERO
        key[(x == 0) & neg] = _SPECIAL_NZERO
        key[idx] = fkey
        src = np.zeros((x.size, rows.shape[1]), dtype=np.uint8)
        src[idx] = rows

    # lay out each layout's numbers together (sorted by layout), then back in order
    single = bool((key == key[0]).all())
    order = None if single else np.argsort(key, kind="stable")
    skey, ssrc = (key, src) if single else (key[order], src[order])
    text = np.zeros((x.size, MAX_TEXT + len(bsep)), dtype=np.uint8)
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    for lo, hi in zip(starts.tolist(), np.r_[starts[1:], x.size].tolist()):
        k = int(skey[lo])
        if k == _SPECIAL_REPR:
            where = range(lo, hi) if single else order[lo:hi].tolist()
            for pos, i in zip(range(lo, hi), where):
                b = repr(float(x[i])).encode("ascii") + bsep
                text[pos, :len(b)] = np.frombuffer(b, dtype=np.uint8)
            continue
        pos, block, sblock = 0, text[lo:hi], ssrc[lo:hi]
        for part in _template(k, bsep, *texts):
            if isinstance(part, bytes):
                block[:, pos:pos + len(part)] = np.frombuffer(part, dtype=np.uint8)
                pos += len(part)
            else:
                first, count = part
                block[:, pos:pos + count] = sblock[:, first:first + count]
                pos += count
    if not single:
        unsorted = np.empty_like(text)
        unsorted[order] = text
        text = unsorted
    return text[text != 0].tobytes()
