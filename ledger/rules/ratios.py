"""Account ratios (DESIGN §6.3, seed 001 and seed 003).

`margin_ratio = MM / effective_equity` (liquidation at ≥ 1), `margin_level = effective_equity /
MM` (portfolio convention, liquidation at ≤ 1), `available = effective_equity − initial margin`.

Example (seed 004 case 2 after the fill): MM 9,250, equity 50,000 → ratio 0.185, level 5.405…
"""

from __future__ import annotations

from decimal import Decimal

from ledger.numbers import ZERO


def margin_ratio(maintenance_usd: Decimal, effective_equity_usd: Decimal) -> Decimal | None:
    """Return MM / effective equity, or None when undefined: no requirement, or effective
    equity ≤ 0 (contract: `null`)."""
    if maintenance_usd <= ZERO or effective_equity_usd <= ZERO:
        return None
    return maintenance_usd / effective_equity_usd


def margin_level(effective_equity_usd: Decimal, maintenance_usd: Decimal) -> Decimal | None:
    """Return effective equity / MM (may be 0 or negative), or None when MM is 0."""
    if maintenance_usd <= ZERO:
        return None
    return effective_equity_usd / maintenance_usd


def is_past_liquidation(maintenance_usd: Decimal, effective_equity_usd: Decimal) -> bool:
    """Tell whether margin_ratio ≥ 1, counting MM > 0 with equity ≤ 0 as past (DESIGN 6.11)."""
    if maintenance_usd <= ZERO:
        return False
    if effective_equity_usd <= ZERO:
        return True
    return maintenance_usd >= effective_equity_usd


def is_at_call_level(
    maintenance_usd: Decimal, effective_equity_usd: Decimal, call_level: Decimal
) -> bool:
    """Tell whether margin_ratio ≥ the call level (MM > 0 with equity ≤ 0 counts as at it)."""
    if maintenance_usd <= ZERO:
        return False
    if effective_equity_usd <= ZERO:
        return True
    return maintenance_usd >= effective_equity_usd * call_level


def available(effective_equity_usd: Decimal, initial_margin_usd: Decimal) -> Decimal:
    """Return effective equity − initial margin (positions, orders, isolated margin)."""
    return effective_equity_usd - initial_margin_usd
