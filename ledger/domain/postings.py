"""Postings: the balanced lines every money event carries (DESIGN §3).

A posting is `(account, asset, amount)`; `amount` is signed (+ increases that account's balance).
The postings of one event sum to zero per asset. The counter-side lives in system accounts, whose
balances are a projection (no aggregate, so no hot spot).

Rounding (DESIGN §4): the account's line is rounded (what it pays up, what it receives down);
the system counter-account takes the exact amount, and `system:rounding` the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ledger.numbers import ZERO
from ledger.rules.rounding import payment_change
from ledger.rules.terms import PaymentRounding

SYSTEM_CUSTODY = "system:custody"
SYSTEM_FEES = "system:fees"
SYSTEM_FUNDING = "system:funding"
SYSTEM_INTEREST = "system:interest"
SYSTEM_CLEARING = "system:clearing"
SYSTEM_EXCHANGE = "system:exchange"
SYSTEM_ROUNDING = "system:rounding"
SYSTEM_INSURANCE = "system:insurance"
# Money between the two legs of a transfer (docs/sharding.md): the out-leg moves it here, the
# in-leg (or, when the destination refuses, the return leg) moves it out again.
SYSTEM_TRANSIT = "system:transit"

SYSTEM_ACCOUNTS = (
    SYSTEM_CUSTODY,
    SYSTEM_FEES,
    SYSTEM_FUNDING,
    SYSTEM_INTEREST,
    SYSTEM_CLEARING,
    SYSTEM_EXCHANGE,
    SYSTEM_ROUNDING,
    SYSTEM_INSURANCE,
    SYSTEM_TRANSIT,
)


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    amount: Decimal


def unbalanced(postings: Iterable[Posting]) -> dict[str, Decimal]:
    """Return the assets whose postings do not sum to zero, with their totals ({} if none)."""
    totals: dict[str, Decimal] = {}
    for posting in postings:
        totals[posting.asset] = totals.get(posting.asset, ZERO) + posting.amount
    return {asset: total for asset, total in totals.items() if total != ZERO}


def transfer(source: str, target: str, asset: str, amount: Decimal) -> list[Posting]:
    """Move an exact `amount` from `source` to `target` (deposits, withdrawals, transfers)."""
    assert amount > ZERO, amount
    return [Posting(source, asset, -amount), Posting(target, asset, amount)]


SYSTEM_PLACES = 18
SYSTEM_QUANTUM = Decimal(1).scaleb(-SYSTEM_PLACES)
"""System-side amounts carry 18 decimal places. An exact amount that does not terminate (an
inverse PnL, interest at annual_rate / 31,536,000) is cut there, half-even, which favours
nobody: the cut stays inside the system accounts (`system:rounding` takes the difference with
the account's line), and sums over any number of events stay exact within 34 digits."""


def rounded_change(
    account: str, counter: str, asset: str, exact: Decimal, places: int,
    rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP,
) -> list[Posting]:
    """Post a signed change of `account`'s balance, rounded against the account.

    The account gets the rounded change (credits down, debits up), `counter` the exact opposite,
    and `system:rounding` the difference, so the lines sum to zero exactly. Zero lines are left
    out. Example: −1.234567891 to alice (8 places) → alice −1.23456790, counter +1.234567891,
    rounding +0.000000009. The counter side is cut at SYSTEM_PLACES. A fee, funding payment
    or interest charge passes its asset's `payment_rounding` (issue 14): under `half_even`
    the account's line is the nearest step instead, the difference still to `system:rounding`.
    """
    posted = payment_change(exact, places, rounding)
    exact = exact.quantize(SYSTEM_QUANTUM, rounding=ROUND_HALF_EVEN)
    difference = exact - posted
    lines = []
    if posted != ZERO:
        lines.append(Posting(account, asset, posted))
    if exact != ZERO:
        lines.append(Posting(counter, asset, -exact))
    if difference != ZERO:
        lines.append(Posting(SYSTEM_ROUNDING, asset, difference))
    return lines


def amount_for(postings: Sequence[Posting], account: str, asset: str) -> Decimal:
    """Return the net change `postings` make to one account's balance of one asset."""
    return sum((p.amount for p in postings if p.account == account and p.asset == asset), ZERO)
