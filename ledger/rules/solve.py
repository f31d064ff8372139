"""Exact boundaries of monotone piecewise-linear functions, without float search.

`max_withdrawable` (DESIGN §6.3, PORTFOLIO-MARGIN §10.8) and the liquidation price of a cross
position (DESIGN 6.11) are both "the last x at which a monotone, piecewise-linear function of x
is still on the safe side". On the linear piece that holds the root, one secant step lands on it
exactly (to 34 digits); Illinois-style regula falsi gets the bracket onto that piece quickly and
keeps working, by bracketing, where the function jumps (the open-orders rule of §6.2 has no
deduction, so its requirement jumps at tier bounds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from ledger.numbers import ZERO

_RELATIVE_TOLERANCE = Decimal("1e-30")
_MAX_STEPS = 400


def last_nonpositive(
    f: Callable[[Decimal], Decimal],
    lo: Decimal,
    hi: Decimal,
    hints: Iterable[Decimal] = (),
) -> Decimal:
    """Return sup{x in [lo, hi] : f(x) ≤ 0} for f non-decreasing with f(lo) ≤ 0 < f(hi).

    `hints` are points where f may change slope (tier bounds); bracketing on them first puts
    the search on one linear piece, where the secant is exact. The result always satisfies
    f(result) ≤ 0, so a withdrawal of that size is always allowed.
    """
    a, b = lo, hi
    fa, fb = f(a), f(b)
    assert fa <= ZERO < fb, (a, fa, b, fb)
    for point in sorted(p for p in hints if a < p < b):
        value = f(point)
        if value <= ZERO:
            a, fa = point, value
        else:
            b, fb = point, value
            break
    side = 0
    # Illinois weights: the stale end's value is halved so both ends keep moving.
    wa, wb = fa, fb
    for _ in range(_MAX_STEPS):
        c = a - wa * (b - a) / (wb - wa)
        if not a < c < b:
            c = (a + b) / 2
        fc = f(c)
        if fc == ZERO:
            # The root itself; beyond it f may stay 0 on a flat piece: step over it.
            if _flat_to(f, c, b):
                return b if f(b) <= ZERO else _flat_end(f, c, b)
            return c
        if fc < ZERO:
            a, fa, wa = c, fc, fc
            if side == -1:
                wb = wb / 2
            side = -1
        else:
            b, fb, wb = c, fc, fc
            if side == 1:
                wa = wa / 2
            side = 1
        if b - a <= _RELATIVE_TOLERANCE * _scale(a, b):
            break
    # The bracket now lies on one linear piece: its secant is the root to 34 digits.
    return a - fa * (b - a) / (fb - fa)


def _scale(a: Decimal, b: Decimal) -> Decimal:
    scale = max(abs(a), abs(b))
    return scale if scale > ZERO else Decimal(1)


def _flat_to(f: Callable[[Decimal], Decimal], c: Decimal, b: Decimal) -> bool:
    """Tell whether f stays at 0 a little to the right of the root c (a flat piece)."""
    step = (b - c) * Decimal("1e-12")
    return step > ZERO and f(c + step) <= ZERO


def _flat_end(f: Callable[[Decimal], Decimal], a: Decimal, b: Decimal) -> Decimal:
    """Return the end of a flat zero piece starting at a (bisection on the flat/positive edge)."""
    for _ in range(_MAX_STEPS):
        m = (a + b) / 2
        if f(m) <= ZERO:
            a = m
        else:
            b = m
        if b - a <= _RELATIVE_TOLERANCE * _scale(a, b):
            break
    return a

