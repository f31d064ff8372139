"""Debt interest accrued per second (DESIGN §6.8; seed 000 §4, seed 003 Q6).

Liability per coin `max(0, −e)`. Interest accrues on `liability − free_amount` (`excess`) or on
the whole liability once it exceeds the free amount (`full`), at `annual_rate / 31,536,000` per
second, over the intervals between the events that change the liability, the rate or the prices.

Example: 10,000 at 10 % for 3,600 s → 10,000 × 0.10 × 3,600 / 31,536,000 = 0.114155251141…
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from decimal import Decimal

from ledger.numbers import ZERO
from ledger.rules.positions import unrealized_pnl
from ledger.rules.terms import FreeMode, InterestAccrual, InterestTerms
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


# --- issue 14 (convA): interest accrued by whole hours ------------------------------------

HOUR_US = 3_600_000_000
"""One hour in microseconds (the unit of the segments' times)."""
ONE_HOUR_S = Decimal(3600)

Segment = tuple[int, int, Decimal, "InterestTerms | None"]
"""(start µs, stop µs, debt, asset interest terms) over [start, stop): constant debt and terms;
the last segment of a timeline is the point (end, end), the state at its end instant."""


def hourly_accrued(segments: Sequence[Segment], end: int) -> Decimal:
    """Return the interest the hour-based accrual policies have accrued by `end` (µs) over a
    timeline of constant-debt segments (exact; the charge rounds). Each counted hour accrues
    one hour's interest, `interest_accrued(debt, terms, 3,600 s)` (free amount and free mode
    apply), on the debt and terms in force at the instant that counts it:

    - `hourly_snapshot` (BIT, https://helpcenter.bit.com/hc/en-us/articles/10876258909721-Liability-and-Interest):
      at every whole UTC hour H ≤ end, the liability held at H (after the events at H).
      BIT's example (free 0.2 BTC, full; 0.01 %/h): borrow 1 at 5:30, repay 0.8 at 5:55,
      borrow 0.2 at 6:20 → 6:00: 0 (0.2 is within the free amount), 7:00: 0.4 × 0.01 % =
      0.00004, 8:00: 0.00004 → 0.00008 by 8:00.
    - `started_hours` (MEXC, https://blog.mexc.com/calculation-and-payment-of-interests-in-margin-trading/;
      RightBTC, https://rightbtc.zendesk.com/hc/en-us/articles/360046157651-How-to-calculate-interest-on-RightBTC):
      a borrowing starts at S, when its interest base turns positive; its hour k starts at
      S + (k − 1) h and counts as soon as it starts, the first at S (at borrowing), a last
      one starting at the very instant of repayment included: hours = ⌊elapsed / 1 h⌋ + 1.
      RightBTC: 10,000 USDT at 0.02 %/h, 10:10 → 11:10: 2 hours, 4 USDT. MEXC: 0.1 BTC at
      0.0033 %/h repaid within the first hour: 0.0000033; in the 20th hour: 0.000066.
    - `hours_rounded_up` (Bitget, https://www.bitget.com/support/articles/12560603799000):
      the same hours, counted only once some time has elapsed in them: hours =
      ⌈elapsed / 1 h⌉. Bitget: 10,000 USDT at 0.0126279 %/day, 00:10 → 02:30: 3 hours,
      10,000 × 0.0126279 % / 24 × 3 = 0.15784875.

    Hour k ≥ 2 accrues on the debt at its start (or, when repaid at that instant, the debt
    just before it). Who it favours: the exchange (a started hour is a whole hour), except
    `hourly_snapshot`, which favours a borrower who repays before the hour.
    A policy applies to the hours it is in force at (the terms of the counting instant).
    """
    total = ZERO
    if not segments:
        return total
    total += _snapshot_hours(segments, end)
    for run in _borrowings(segments):
        total += _run_hours(segments, run, end)
    return total


def _segment_at(segments: Sequence[Segment], moment: int) -> Segment:
    """The segment in force at `moment` (start ≤ moment < stop, or the final point);
    `segments` are contiguous and sorted, so a bisection on their starts finds it."""
    index = bisect_right(segments, moment, key=lambda segment: segment[0]) - 1
    segment = segments[max(index, 0)]
    return segment if moment < segment[1] else segments[-1]


def _snapshot_hours(segments: Sequence[Segment], end: int) -> Decimal:
    total = ZERO
    first = -(-segments[0][0] // HOUR_US) * HOUR_US  # the first whole hour at or after
    for moment in range(first, end + 1, HOUR_US):
        _, _, debt, terms = _segment_at(segments, moment)
        if terms is not None and terms.accrual is InterestAccrual.HOURLY_SNAPSHOT:
            total += interest_accrued(debt, terms, ONE_HOUR_S)
    return total


_ANCHORED = (InterestAccrual.STARTED_HOURS, InterestAccrual.HOURS_ROUNDED_UP)


def _bearing(segment: Segment) -> bool:
    _, _, debt, terms = segment
    return (terms is not None and terms.accrual in _ANCHORED
            and interest_base(debt, terms.free_amount, terms.free_mode) > ZERO)


def _borrowings(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """Index ranges [first, last] of the maximal runs of bearing segments: one borrowing
    each (the final point (end, end) may end a run or be a borrowing made at `end`)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, segment in enumerate(segments):
        if _bearing(segment):
            start = index if start is None else start
        elif start is not None:
            runs.append((start, index - 1))
            start = None
    if start is not None:
        runs.append((start, len(segments) - 1))
    return runs


def _run_hours(segments: Sequence[Segment], run: tuple[int, int], end: int) -> Decimal:
    """The hours of one borrowing counted by `end` (started_hours / hours_rounded_up)."""
    first, last = run
    stop = segments[last][1]  # the repayment instant, or `end` while it is still open
    total = ZERO
    moment = segments[first][0]  # S, the borrowing instant
    while moment <= min(stop, end):
        if moment < stop:
            segment = _segment_at(segments[first:last + 1], moment)
        else:  # at `end` (the final point) or repaid at this very instant: the debt before
            segment = segments[last]
        terms = segment[3]
        assert terms is not None
        started = terms.accrual is InterestAccrual.STARTED_HOURS
        counted = started or (moment < stop and moment < end)
        if counted:
            total += interest_accrued(segment[2], terms, ONE_HOUR_S)
        moment += HOUR_US
    return total
