"""Debt interest accrued per second (DESIGN §6.8; seed 000 §4, seed 003 Q6).

Liability per coin `max(0, −e)`. Interest accrues on `liability − free_amount` (`excess`) or on
the whole liability once it exceeds the free amount (`full`), at `annual_rate / 31,536,000` per
second, over the intervals between the events that change the liability, the rate or the prices.

Example: 10,000 at 10 % for 3,600 s → 10,000 × 0.10 × 3,600 / 31,536,000 = 0.114155251141…
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from ledger.numbers import ZERO
from ledger.rules.positions import unrealized_pnl
from ledger.rules.terms import FreeMode, InterestTerms
from ledger.times import SECONDS_PER_YEAR


def liability(equity: Decimal) -> Decimal:
    """Return the debt of a coin: max(0, −equity)."""
    return -equity if equity < ZERO else ZERO


def interest_base(debt: Decimal, free_amount: Decimal, free_mode: FreeMode) -> Decimal:
    """Return the part of a debt that bears interest.

    `excess`: max(0, debt − free); `full`: the whole debt once it exceeds the free amount.
    Example: debt 1,500, free 1,000 → excess 500, full 1,500; debt 800 → 0 in both.
    """
    if free_mode is FreeMode.FULL:
        return debt if debt > free_amount else ZERO
    return max(ZERO, debt - free_amount)


def interest_accrued(debt: Decimal, terms: InterestTerms, elapsed_s: Decimal) -> Decimal:
    """Return the interest accrued on a constant debt over `elapsed_s` seconds (exact to 34
    digits; `annual_rate / 31,536,000` does not terminate, so nothing is rounded here).

    Example: 10,000 at 0.10 for 3,600 s → 0.1141552511415525114155251141552511.
    """
    if elapsed_s <= ZERO:
        return ZERO
    base = interest_base(debt, terms.free_amount, terms.free_mode)
    if base == ZERO:
        return ZERO
    return base * terms.annual_rate * elapsed_s / SECONDS_PER_YEAR


def coin_equity(
    wallet: Decimal, positions: Sequence[tuple[Decimal, Decimal, Decimal, Decimal, bool]]
) -> Decimal:
    """Return a coin's equity: wallet + unrealised PnL of the cross positions settled in it.

    `positions` are (qty, entry, mark, contract_size, inverse). DESIGN §6.1, §6.8.
    """
    total = wallet
    for qty, entry, mark, size, inverse in positions:
        total += unrealized_pnl(qty, entry, mark, size, inverse)
    return total


def accrued_over(segments: Iterable[tuple[Decimal, InterestTerms | None, Decimal]]) -> Decimal:
    """Return the interest accrued over consecutive intervals of constant debt and terms:
    Σ interest_accrued(debt_i, terms_i, seconds_i), exact (DESIGN §6.8: "piecewise over the
    intervals between the events that change the liability, the rate or the prices").

    Example: 10,000 for 1,800 s then 5,000 for 1,800 s at 10 % → 0.0570776… + 0.0285388…
    """
    total = ZERO
    for debt, terms, seconds in segments:
        if terms is not None:
            total += interest_accrued(debt, terms, seconds)
    return total


def lowest_equity(
    wallet: Decimal,
    positions: Iterable[tuple[Decimal, Decimal, Decimal, bool, Sequence[Decimal]]],
) -> Decimal:
    """Return the lowest coin equity the marks of an interval allow: the wallet plus, for each
    cross position settled in the coin, its unrealised PnL at its worst mark of the interval.
    At or above 0 the coin had no liability at any moment of it, so nothing accrued.

    `positions` holds (qty, entry, contract size, inverse, marks seen). Example: wallet 100,
    long 1 × 1 at entry 1,000 with marks 1,050 and 880 → 100 + (880 − 1,000) = −20.
    """
    return wallet + sum((min(unrealized_pnl(qty, entry, mark, size, inverse) for mark in marks)
                         for qty, entry, size, inverse, marks in positions), ZERO)
