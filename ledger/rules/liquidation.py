"""Isolated liquidation price and the automatic top-up amount (DESIGN §6.5, seed 002).

An isolated position is liquidated when `position margin + unrealised PnL ≤ MM`.

`mm_basis = entry` (MM fixed at the entry notional), linear:
  long  LP = (MM − PM + E·Q·F) / (Q·F)        short LP = (E·Q·F − MM + PM) / (Q·F)
inverse (PnL and margins in coin, notional Q·F/P):
  long  LP = Q·F / (PM + Q·F/E − MM)          short LP = Q·F / (MM − PM + Q·F/E)
`mm_basis = mark`: the same equality with MM measured at LP; the tier is re-selected at LP and,
when it differs from the tier assumed, the next is tried until consistent.

Seed example: long 5,000 × 0.0001 BTC @18,000, 10×, MMR 0.4 %: PM 900, MM 36 →
LP (36 − 900 + 9,000) / 0.5 = 16,272; after +36: 16,200; after +14: 16,172.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ledger.numbers import ONE, ZERO
from ledger.rules.close_fee import entry_close_fee, fee_to_close
from ledger.rules.maintenance import maintenance_margin, tier_index
from ledger.rules.positions import notional, unrealized_pnl
from ledger.rules.terms import AutoAddAmount, CloseFeeBasis, MmBasis, RiskTier


@dataclass(frozen=True, slots=True)
class IsolatedPosition:
    """What the isolated liquidation price depends on (settle asset; inverse: coin)."""

    qty: Decimal  # signed contracts
    entry_price: Decimal
    contract_size: Decimal
    position_margin: Decimal
    leverage: Decimal
    inverse: bool
    tiers: tuple[RiskTier, ...]
    mm_basis: MmBasis
    close_fee_rate: Decimal | None = None  # the taker rate when close_fee_in_mm, else None
    close_fee_basis: CloseFeeBasis = CloseFeeBasis.ENTRY  # issue 14

    @property
    def is_long(self) -> bool:
        return self.qty > ZERO

    def close_fee(self) -> Decimal:
        """Return the fixed close-fee estimate in MM (DESIGN §6.2): the fee at the bankruptcy
        price (`entry`, `reserved`); 0 unless close_fee_in_mm, and 0 under
        `liquidation_price`, whose fee moves with the price (`price_fee_rate`)."""
        if self.close_fee_rate is None or self.close_fee_basis is CloseFeeBasis.LIQUIDATION_PRICE:
            return ZERO
        return entry_close_fee(self.qty, self.contract_size, self.entry_price, self.leverage,
                               self.close_fee_rate, self.inverse)

    @property
    def price_fee_rate(self) -> Decimal:
        """The taker rate charged on the notional at the tested price (`liquidation_price`
        basis, Bitget), else 0."""
        basis = self.close_fee_basis
        if self.close_fee_rate is None or basis is not CloseFeeBasis.LIQUIDATION_PRICE:
            return ZERO
        return self.close_fee_rate


def isolated_maintenance_margin(position: IsolatedPosition, mark: Decimal) -> Decimal:
    """Return the position's MM at the `mm_basis` price, close fee included (under
    `liquidation_price` the fee to close at `mark` itself)."""
    price = position.entry_price if position.mm_basis is MmBasis.ENTRY else mark
    size = notional(position.qty, position.contract_size, price, position.inverse)
    moving = fee_to_close(position.qty, position.contract_size, mark, position.price_fee_rate,
                          position.inverse)
    return maintenance_margin(size, position.tiers) + position.close_fee() + moving


def isolated_liquidation_price(position: IsolatedPosition, mark: Decimal) -> Decimal | None:
    """Return the mark at which PM + UPL = MM, or None when there is no such positive price.

    Example (seed 002): long 0.5 BTC @18,000, PM 900, MM 36 (entry basis) → 16,272.
    """
    if position.qty == ZERO:
        return None
    if position.mm_basis is MmBasis.ENTRY:
        fixed = maintenance_margin(notional(position.qty, position.contract_size,
                                            position.entry_price, position.inverse),
                                   position.tiers) + position.close_fee()
        return _entry_basis_price(position, fixed)
    return _mark_basis_price(position, mark)


def _entry_basis_price(position: IsolatedPosition, mm: Decimal) -> Decimal | None:
    """Solve PM + UPL(P) = MM (+ Q·F·P·t under `liquidation_price`, t the taker rate)."""
    qf = abs(position.qty) * position.contract_size
    pm, entry, t = position.position_margin, position.entry_price, position.price_fee_rate
    if position.inverse:
        if position.is_long:
            denominator = pm + qf / entry - mm
            return qf * (ONE + t) / denominator if denominator > ZERO else None
        denominator = mm - pm + qf / entry
        return qf * (ONE - t) / denominator if denominator > ZERO else None
    if position.is_long:
        price = (mm - pm + entry * qf) / (qf * (ONE - t))
    else:
        price = (entry * qf - mm + pm) / (qf * (ONE + t))
    return price if price > ZERO else None


def _price_in_tier(position: IsolatedPosition, tier: RiskTier) -> Decimal | None:
    """Solve PM + UPL(P) = N(P)·mmr − deduction + close fee for P, with the tier held fixed.

    Under `liquidation_price` (Bitget) the fee is N(P)·taker, so mmr becomes mmr + taker: a
    long's denominator is Q·F·(1 − mmr − taker)."""
    qf = abs(position.qty) * position.contract_size
    pm, entry, fee = position.position_margin, position.entry_price, position.close_fee()
    mmr, deduction = tier.mmr + position.price_fee_rate, tier.deduction
    if position.inverse:
        if position.is_long:
            denominator = pm + qf / entry + deduction - fee
            price = qf * (ONE + mmr) / denominator if denominator > ZERO else None
        else:
            denominator = qf / entry - pm + fee - deduction
            price = qf * (ONE - mmr) / denominator if denominator > ZERO else None
        return price
    if position.is_long:
        price = (qf * entry - pm + fee - deduction) / (qf * (ONE - mmr))
    else:
        price = (pm + qf * entry + deduction - fee) / (qf * (ONE + mmr))
    return price if price > ZERO else None


def _mark_basis_price(position: IsolatedPosition, mark: Decimal) -> Decimal | None:
    """Try the tier of the current notional, then the tier found at the price, until they agree."""
    tiers = position.tiers
    current = notional(position.qty, position.contract_size, mark, position.inverse)
    index = tier_index(current, tiers)
    tried: set[int] = set()
    while index not in tried:
        tried.add(index)
        price = _price_in_tier(position, tiers[index])
        if price is None:
            return None
        size = notional(position.qty, position.contract_size, price, position.inverse)
        found = tier_index(size, tiers)
        if found == index:
            return price
        index = found
    # The tiers disagree in a cycle (a boundary case): take any tier that is self-consistent.
    for index, tier in enumerate(tiers):
        candidate = _price_in_tier(position, tier)
        if candidate is None:
            continue
        size = notional(position.qty, position.contract_size, candidate, position.inverse)
        if tier_index(size, tiers) == index:
            return candidate
    return None


def is_at_liquidation(position: IsolatedPosition, mark: Decimal) -> bool:
    """Tell whether the mark is at or beyond the liquidation price (long: ≤, short: ≥)."""
    price = isolated_liquidation_price(position, mark)
    if price is None:
        return False
    return mark <= price if position.is_long else mark >= price


def auto_top_up_amount(
    position: IsolatedPosition, mark: Decimal, policy: AutoAddAmount, available: Decimal
) -> Decimal:
    """Return what an automatic top-up adds: the position's MM (`maintenance`, seed 002:
    E·Q·F·MMR, tier and deduction included) or E·Q·F/leverage (`initial`), at most what is
    available (never below 0). Example (seed 002): 36, then the 14 that is left."""
    if policy is AutoAddAmount.MAINTENANCE:
        wanted = isolated_maintenance_margin(position, mark)
    elif policy is AutoAddAmount.RESTORE_INITIAL_RATE:
        wanted = restore_initial_rate_amount(position, mark)
    else:
        wanted = notional(position.qty, position.contract_size, position.entry_price,
                          position.inverse) / position.leverage
    return max(ZERO, min(wanted, available))


def restore_initial_rate_amount(position: IsolatedPosition, fair: Decimal) -> Decimal:
    """Return what restores the initial margin rate 1/leverage at the fair price (MEXC, 2022:
    "Feature: Auto-margin Addition", support.mexc.com article 360052856411, mirrored at
    https://www.coincarp.com/exchange/announcement/mexc-360052856411-feature-auto-margin-addition).

    (PM + added + UPL) / (fair·Q·F) = 1/lev, so added = fair·Q·F/lev − UPL − PM
    (inverse, in coin: Q·F/(lev·fair) − UPL − PM). May be ≤ 0 (nothing to add).
    Example: 5,000 × 0.0001 BTC @18,000, 10×, fair 16,288.98: 814.449 + 855.51 − PM.
    """
    value = notional(position.qty, position.contract_size, fair, position.inverse)
    upl = unrealized_pnl(position.qty, position.entry_price, fair, position.contract_size,
                         position.inverse)
    return value / position.leverage - upl - position.position_margin


def tiers_sorted(tiers: Sequence[RiskTier]) -> bool:
    """Tell whether tier bounds strictly increase and only the last is open."""
    bounds = [tier.up_to for tier in tiers]
    if any(bound is None for bound in bounds[:-1]):
        return False
    closed = [bound for bound in bounds if bound is not None]
    return all(a < b for a, b in zip(closed, closed[1:], strict=False))
