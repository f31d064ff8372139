"""Funding payments and USDC session settlement (DESIGN §6.6, §6.7; seed 004 Q4).

Funding every `funding_interval_hours` from 00:00 UTC: `Q × F × mark × rate` (inverse
`Q × F / mark × rate`, in coin); rate > 0: longs pay, shorts receive. Session settlement moves
`Q × F × (mark − entry)` to the wallet and resets the entry to the mark.

Examples: 2 BTC × 30,000 × 0.01 % = 6 (the long pays 6); session UPL 0.1 × (52,000 − 50,250) = 175.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.rules.terms import FundingRateBasis

HOURS_PER_QUOTE_8H = 8


def funding_change(
    qty: Decimal, contract_size: Decimal, mark: Decimal, rate: Decimal, inverse: bool
) -> Decimal:
    """Return the signed change of the holder's balance at a funding time (exact).

    Negative when the holder pays: a long pays a positive rate. Example: +20,000 × 0.0001 ×
    30,000 × 0.0001 → −6.
    """
    if inverse:
        return -(qty * contract_size / mark * rate)
    return -(qty * contract_size * mark * rate)


def funding_rate_for_interval(
    rate: Decimal, interval_hours: int, basis: FundingRateBasis
) -> Decimal:
    """Return the rate applied at one funding time of an instrument funded every
    `interval_hours` (issue 14, instrument `funding_rate_basis`).

    `per_interval` (the default): the rate is quoted for the interval and applies as it is.
    `per_8h` (bit.com): the rate is quoted per 8 hours and scaled by the interval's share of
    8 hours, `rate × interval_hours / 8` (exact: 8 = 2³, so the quotient terminates).
    bit.com, "How is Funding Rate calculated?":
    https://support.bit.com/hc/en-us/articles/360051992953-How-is-Funding-Rate-calculated-
    ("Time Fraction = Funding Rate Time Period / 8 hours; Funding Payment = Funding Rate ×
    Position Size × Time Fraction"); BIT's funding page prints 0.01 % per 8 hours as 0.03 %
    daily. Example: 0.0001 per 8 h, funded hourly → 0.0000125; daily → 0.0003.
    Who it favours: nobody; it only says which period a quoted rate covers.
    """
    if basis is FundingRateBasis.PER_INTERVAL:
        return rate
    return rate * interval_hours / HOURS_PER_QUOTE_8H


def session_settlement_change(
    qty: Decimal, contract_size: Decimal, mark: Decimal, entry: Decimal
) -> Decimal:
    """Return the session PnL moved to the wallet: Q × F × (mark − entry) (linear only)."""
    return qty * contract_size * (mark - entry)


def is_funding_time(at: datetime, interval_hours: int) -> bool:
    """Tell whether `at` is a funding time: a whole multiple of the interval from 00:00 UTC."""
    if at.minute or at.second or at.microsecond:
        return False
    return at.hour % interval_hours == 0

