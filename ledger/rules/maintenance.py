"""Tiered maintenance margin with deductions, the open-orders rule, the close fee (DESIGN §6.2).

`MM = notional × mmr_n − deduction_n` with `deduction_n = deduction_{n−1} + up_to_{n−1} ×
(mmr_n − mmr_{n−1})`: the same as charging each band of the notional at its own rate (seed 004).

Examples: 3,500 on 1,000-wide bands at 2 / 2.5 / 3 / 3.5 % → 92.5; 400,000 on a table whose
tier 4 is 3.5 % with deduction 3,000 → 11,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ledger.numbers import ONE, ZERO
from ledger.rules.terms import RiskTier


def derived_deductions(tiers: Sequence[RiskTier]) -> list[Decimal]:
    """Return each tier's deduction: d_1 = 0, d_n = d_{n−1} + up_to_{n−1} × (mmr_n − mmr_{n−1}).

    Example (seed 004, ETHUSDC): 2 / 2.5 / 3 / 3.5 % at 100k / 200k / 300k → 0, 500, 1,500, 3,000.
    """
    deductions: list[Decimal] = []
    previous: RiskTier | None = None
    for tier in tiers:
        if previous is None:
            deductions.append(ZERO)
        else:
            assert previous.up_to is not None, "only the last tier may be open"
            deductions.append(deductions[-1] + previous.up_to * (tier.mmr - previous.mmr))
        previous = tier
    return deductions


def tier_index(notional: Decimal, tiers: Sequence[RiskTier]) -> int:
    """Return the index of the tier holding `notional` (≤ up_to); the last beyond its bound."""
    assert tiers, "an instrument has at least one risk tier"
    for index, tier in enumerate(tiers):
        if tier.up_to is None or notional <= tier.up_to:
            return index
    return len(tiers) - 1


def maintenance_margin(notional: Decimal, tiers: Sequence[RiskTier]) -> Decimal:
    """Return the maintenance margin of a position of `notional` (settle asset; inverse: coin).

    Progressive bands: notional × mmr_n − deduction_n (DESIGN §6.2, seed 004). Exact.
    Example: 3,500 on 1,000-wide bands at 2 / 2.5 / 3 / 3.5 % → 3,500 × 3.5 % − 30 = 92.5.
    """
    assert notional >= ZERO, notional
    tier = tiers[tier_index(notional, tiers)]
    return notional * tier.mmr - tier.deduction


def maintenance_margin_with_orders(
    position_notional: Decimal, order_notional: Decimal, tiers: Sequence[RiskTier]
) -> Decimal:
    """Return the requirement while orders on the increasing side rest (seed 004 case 2).

    (position + orders) × mmr(tier of position + orders), no deduction.
    Example: 200,000 + 150,000 at tier 4 (3.5 %) → 12,250.
    """
    total = position_notional + order_notional
    return total * tiers[tier_index(total, tiers)].mmr


def close_fee_in_mm(
    notional_at_entry: Decimal, leverage: Decimal, taker_fee_rate: Decimal, is_long: bool
) -> Decimal:
    """Return the estimated fee to close, added to MM when `close_fee_in_mm` (seed 004).

    Long: notional × (1 − 1/lev) × taker; short: notional × (1 + 1/lev) × taker.
    Example: short 100 @4,200, 10×, 0.055 % → 420,000 × 1.1 × 0.00055 = 254.1.
    """
    factor = ONE - ONE / leverage if is_long else ONE + ONE / leverage
    return notional_at_entry * factor * taker_fee_rate


def max_leverage(notional: Decimal, tiers: Sequence[RiskTier]) -> Decimal:
    """Return the highest leverage allowed for a position of `notional`."""
    return tiers[tier_index(notional, tiers)].max_leverage


def initial_leverage(tiers: Sequence[RiskTier]) -> Decimal:
    """Return the leverage an account starts with on a symbol: min(10, tier 1's maximum)."""
    return min(Decimal(10), tiers[0].max_leverage)
