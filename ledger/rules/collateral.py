"""Collateral valuation (DESIGN §6.1, seed 000 §3).

Coin equity `e = wallet + unrealised PnL of the cross positions settled in that coin`. Positive
equity counts tier by tier at each tier's ratio; quantity beyond the last tier counts 0 (the cap);
negative equity counts in full at the index (no haircut: a debt is a debt).

Example (seed 000): 350 ETH @4,000 on 100/200/300/400 at 90/80/70/60 % →
(100·0.9 + 100·0.8 + 100·0.7 + 50·0.6) · 4,000 = 1,080,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ledger.numbers import ZERO
from ledger.rules.terms import CollateralTier, TierBasis


def tiered_sum(amount: Decimal, tiers: Sequence[CollateralTier]) -> Decimal:
    """Return Σ_k max(0, min(amount, up_to_k) − up_to_{k−1}) × ratio_k (beyond the last: 0).

    An open top tier (`up_to` None) takes everything above the previous bound.
    Example: 350 on 100/200/300/400 at 0.9/0.8/0.7/0.6 → 270.
    """
    assert amount >= ZERO, amount
    total = ZERO
    lower = ZERO
    for tier in tiers:
        upper = amount if tier.up_to is None else min(amount, tier.up_to)
        if upper > lower:
            total += (upper - lower) * tier.ratio
        if tier.up_to is None or amount <= tier.up_to:
            return total
        lower = tier.up_to
    return total


def effective_collateral_usd(
    equity: Decimal,
    index_price: Decimal | None,
    tiers: Sequence[CollateralTier],
    tier_basis: TierBasis = TierBasis.QUANTITY,
) -> Decimal:
    """Return the USD a coin equity contributes to effective equity (DESIGN §6.1).

    No index price → 0 (DESIGN 6.11). No tiers → ratio 1 without cap. Negative equity counts
    in full at the index. Example: 350 ETH @4,000, seed 000 tiers → 1,080,000.
    """
    if index_price is None:
        return ZERO
    if equity <= ZERO or not tiers:
        return equity * index_price
    if tier_basis is TierBasis.QUANTITY:
        return tiered_sum(equity, tiers) * index_price
    return tiered_sum(equity * index_price, tiers)


def equity_usd(equity: Decimal, index_price: Decimal | None) -> Decimal:
    """Return the coin equity at the index, without haircut; 0 without an index (DESIGN 6.11)."""
    if index_price is None:
        return ZERO
    return equity * index_price


def collateral_breakpoints(
    tiers: Sequence[CollateralTier], index_price: Decimal | None, tier_basis: TierBasis
) -> list[Decimal]:
    """Return the coin equities at which `effective_collateral_usd` changes slope.

    Used to solve withdrawals exactly: between two of these (and 0) the function is linear.
    """
    points = [ZERO]
    if index_price is None or index_price == ZERO:
        return points
    for tier in tiers:
        if tier.up_to is None:
            break
        bound = tier.up_to if tier_basis is TierBasis.QUANTITY else tier.up_to / index_price
        points.append(bound)
    return points
