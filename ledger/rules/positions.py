"""Position arithmetic: fills, entry price, realised and unrealised PnL, notional, fees (§6.4).

Quantities are signed contracts (long > 0). A contract is `contract_size` coins for a linear
contract (PnL in the settle asset) and `contract_size` USD for an inverse one (PnL in coin).

Examples: long 0.1 @50,000 + 0.1 @50,500 → entry 50,250; closing 0.1 @50,700 realises 45.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.numbers import ZERO


def sign(value: Decimal) -> int:
    return (value > ZERO) - (value < ZERO)


@dataclass(frozen=True, slots=True)
class FillOutcome:
    """What a fill does to a one-way position."""

    qty: Decimal  # signed contracts after the fill
    entry_price: Decimal  # entry after the fill (0 when flat)
    closed_qty: Decimal  # contracts closed (magnitude)
    opened_qty: Decimal  # contracts opened or added (magnitude)
    realized_pnl: Decimal  # exact, settle asset (inverse: coin)


def average_entry(
    qty: Decimal, entry: Decimal, added: Decimal, price: Decimal, inverse: bool
) -> Decimal:
    """Return the entry after adding `added` contracts at `price` to `qty` at `entry`.

    Linear: quantity-weighted mean; inverse: harmonic mean (DESIGN §6.4). Not rounded (a
    non-terminating quotient keeps 34 digits).
    """
    held, more = abs(qty), abs(added)
    if held == ZERO:
        return price
    if inverse:
        return (held + more) / (held / entry + more / price)
    return (held * entry + more * price) / (held + more)


def realized_pnl(
    closed: Decimal, entry: Decimal, price: Decimal, contract_size: Decimal, side: int,
    inverse: bool,
) -> Decimal:
    """Return the PnL of closing `closed` contracts (magnitude) of a position on `side` (±1).

    Linear: closed × size × (price − entry) × side; inverse: closed × size × (1/entry − 1/price)
    × side, in coin, computed as `inverse_pnl` (one division, last). Example: long, closed
    100 × 0.001 @50,700 from 50,250 → 45.
    """
    if inverse:
        return inverse_pnl(closed * side, contract_size, entry, price)
    return closed * contract_size * (price - entry) * side


def inverse_pnl(qty: Decimal, contract_size: Decimal, entry: Decimal, price: Decimal) -> Decimal:
    """Return the PnL in coin of `qty` signed inverse contracts from `entry` to `price`.

    q × size × (1/entry − 1/price) = q × size × (price − entry) / (entry × price) (DESIGN §6.4),
    evaluated in the second form: products and a difference are exact, and the one quotient
    comes last, so an exact result stays exact. The first form rounds 1/entry and 1/price to
    34 digits each before subtracting: short 105 × 0.125 from 3 to 7 gives
    −2.499999999999999999999999999999999 instead of −2.5 (= −13.125 × 4 / 21).
    Example: short 105 contracts of 0.125 USD, entry 3, mark 7 → −2.5 coin.
    """
    return qty * contract_size * (price - entry) / (entry * price)


def apply_fill(
    qty: Decimal, entry: Decimal, fill_qty: Decimal, price: Decimal, contract_size: Decimal,
    inverse: bool,
) -> FillOutcome:
    """Return the position after a fill of signed `fill_qty` at `price`: open, add, reduce,
    close or flip (flip = close, then open the rest at the fill price)."""
    assert fill_qty != ZERO, fill_qty
    if qty == ZERO or sign(qty) == sign(fill_qty):
        new_entry = average_entry(qty, entry, fill_qty, price, inverse)
        return FillOutcome(qty + fill_qty, new_entry, ZERO, abs(fill_qty), ZERO)
    closed = min(abs(qty), abs(fill_qty))
    pnl = realized_pnl(closed, entry, price, contract_size, sign(qty), inverse)
    new_qty = qty + fill_qty
    if new_qty == ZERO:
        return FillOutcome(ZERO, ZERO, closed, ZERO, pnl)
    if sign(new_qty) == sign(qty):
        return FillOutcome(new_qty, entry, closed, ZERO, pnl)
    return FillOutcome(new_qty, price, closed, abs(new_qty), pnl)


def unrealized_pnl(
    qty: Decimal, entry: Decimal, mark: Decimal, contract_size: Decimal, inverse: bool
) -> Decimal:
    """Return the floating PnL at `mark` (settle asset; inverse: coin). Exact.

    Linear: q × size × (mark − entry); inverse: q × size × (1/entry − 1/mark), computed as
    `inverse_pnl` (one division, last). Example: 100 × 0.001 × (51,000 − 50,250) = 75.
    """
    if qty == ZERO:
        return ZERO
    if inverse:
        return inverse_pnl(qty, contract_size, entry, mark)
    return qty * contract_size * (mark - entry)


def notional(qty: Decimal, contract_size: Decimal, price: Decimal, inverse: bool) -> Decimal:
    """Return |q| × size × price (linear, settle asset) or |q| × size / price (inverse, coin)."""
    if inverse:
        return abs(qty) * contract_size / price
    return abs(qty) * contract_size * price


def fill_fee(
    qty: Decimal, contract_size: Decimal, price: Decimal, rate: Decimal, inverse: bool
) -> Decimal:
    """Return the fee of a fill without an explicit one: notional × rate (exact, not rounded).

    Example: 100 ETH × 4,200 × 0.055 % = 231.
    """
    return notional(qty, contract_size, price, inverse) * rate


def isolated_margin_for(
    qty: Decimal, contract_size: Decimal, price: Decimal, leverage: Decimal, inverse: bool
) -> Decimal:
    """Return the margin an isolated position allocates for `qty` contracts opened at `price`.

    E·Q·F / leverage (inverse: F·Q / (E · leverage), in coin). Example: 18,000 × 0.5 / 10 = 900.
    """
    return notional(qty, contract_size, price, inverse) / leverage


def isolated_margin_after(
    margin: Decimal, held_qty: Decimal, closed_qty: Decimal, opened_qty: Decimal,
    contract_size: Decimal, price: Decimal, leverage: Decimal, inverse: bool,
) -> Decimal:
    """Return an isolated position's margin after a fill: what closes releases its share pro
    rata, what opens allocates `isolated_margin_for` at the fill price (DESIGN 6.11).

    Example: 900 held for 10 contracts, 4 closed and none opened → 900 × 6 / 10 = 540; all
    10 closed → 0; then 5 opened at 18,000 × 0.1 at 10× → 540 + 900 = 1,440.
    """
    if closed_qty:
        remaining = abs(held_qty) - closed_qty
        margin = margin * remaining / abs(held_qty) if remaining > ZERO else ZERO
    if opened_qty:
        margin += isolated_margin_for(opened_qty, contract_size, price, leverage, inverse)
    return margin
