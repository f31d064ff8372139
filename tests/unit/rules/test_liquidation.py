"""Isolated liquidation price and automatic top-up (DESIGN §6.5; seed 002, seed 004; scenarios
seed002-isolated-auto-topup and seed004-tiered-mm)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.liquidation import (
    IsolatedPosition,
    auto_top_up_amount,
    is_at_liquidation,
    isolated_liquidation_price,
    isolated_maintenance_margin,
    tiers_sorted,
)
from ledger.rules.positions import unrealized_pnl
from ledger.rules.terms import AutoAddAmount, MmBasis, RiskTier

numbers.install()

D = Decimal
ENTRY, MARK = MmBasis.ENTRY, MmBasis.MARK
MAINTENANCE, INITIAL = AutoAddAmount.MAINTENANCE, AutoAddAmount.INITIAL


def flat(mmr: str) -> tuple[RiskTier, ...]:
    return (RiskTier(None, D(mmr), D(100)),)


# Seed 004 tables with hand-derived deductions (see test_maintenance).
XYZ = tuple(RiskTier(D(u), D(m), D(25), D(d)) for u, m, d in (
    ("1000", "0.02", "0"), ("2000", "0.025", "5"), ("3000", "0.03", "15"), ("4000", "0.035", "30")))
ETH = tuple(RiskTier(D(u), D(m), D(25), D(d)) for u, m, d in (
    ("100000", "0.02", "0"), ("200000", "0.025", "500"), ("300000", "0.03", "1500"),
    ("1000000", "0.035", "3000")))

# Seed 002: long 5,000 × 0.0001 BTC @18,000, 10×, MMR 0.4 %, entry basis: PM 900, MM 36.
SEED_002 = IsolatedPosition(qty=D(5000), entry_price=D(18000), contract_size=D("0.0001"),
                            position_margin=D(900), leverage=D(10), inverse=False,
                            tiers=flat("0.004"), mm_basis=ENTRY)


def test_seed_002_liquidation_price_is_16272() -> None:
    """MM = 9,000 · 0.4 % = 36; LP = (36 − 900 + 9,000) / 0.5 = 8,136 / 0.5 = 16,272."""
    assert isolated_maintenance_margin(SEED_002, D(18000)) == D(36)
    assert isolated_liquidation_price(SEED_002, D(18000)) == D(16272)


def test_seed_002_after_the_first_top_up_is_16200() -> None:
    """PM 936: (36 − 936 + 9,000) / 0.5 = 8,100 / 0.5 = 16,200."""
    after = replace(SEED_002, position_margin=D(936))
    assert isolated_liquidation_price(after, D(16272)) == D(16200)


def test_seed_002_after_the_second_top_up_is_16172() -> None:
    """PM 950: (36 − 950 + 9,000) / 0.5 = 8,086 / 0.5 = 16,172."""
    after = replace(SEED_002, position_margin=D(950))
    assert isolated_liquidation_price(after, D(16200)) == D(16172)


def test_entry_basis_price_does_not_move_with_the_mark() -> None:
    assert isolated_liquidation_price(SEED_002, D(25000)) == D(16272)


def test_seed_002_top_ups_are_36_then_the_14_left_then_nothing() -> None:
    """E·Q·F·MMR = 36 with 50 available → 36; 14 available → 14; 0 → 0; negative → 0."""
    assert auto_top_up_amount(SEED_002, D(16272), MAINTENANCE, D(50)) == D(36)
    second = replace(SEED_002, position_margin=D(936))
    assert auto_top_up_amount(second, D(16200), MAINTENANCE, D(14)) == D(14)
    third = replace(SEED_002, position_margin=D(950))
    assert auto_top_up_amount(third, D(16172), MAINTENANCE, ZERO) == ZERO
    assert auto_top_up_amount(third, D(16172), MAINTENANCE, D(-3)) == ZERO


def test_initial_policy_adds_the_initial_margin() -> None:
    """E·Q·F / leverage = 9,000 / 10 = 900, capped by what is available (50)."""
    assert auto_top_up_amount(SEED_002, D(16272), INITIAL, D(5000)) == D(900)
    assert auto_top_up_amount(SEED_002, D(16272), INITIAL, D(50)) == D(50)


def test_is_at_liquidation_at_or_beyond_the_price() -> None:
    assert is_at_liquidation(SEED_002, D(16272))
    assert is_at_liquidation(SEED_002, D(16000))
    assert not is_at_liquidation(SEED_002, D("16272.01"))


def test_seed_004_xyz_liquidation_price_is_32_425() -> None:
    """100 @35, 10×: PM 350, MM 92.5; LP = (92.5 − 350 + 3,500) / 100 = 3,242.5 / 100."""
    xyz = IsolatedPosition(D(100), D(35), D(1), D(350), D(10), False, XYZ, ENTRY)
    assert isolated_maintenance_margin(xyz, D(33)) == D("92.5")
    assert isolated_liquidation_price(xyz, D(33)) == D("32.425")


def test_seed_004_eth_liquidation_price_is_3710() -> None:
    """100 @4,000, 10×: PM 40,000, MM 11,000; LP = (11,000 − 40,000 + 400,000) / 100 = 3,710."""
    eth = IsolatedPosition(D(100), D(4000), D(1), D(40000), D(10), False, ETH, ENTRY)
    assert isolated_liquidation_price(eth, D(3800)) == D(3710)
    assert auto_top_up_amount(eth, D(3710), MAINTENANCE, D(1000000)) == D(11000)


def test_short_liquidation_price_entry_basis() -> None:
    """Short 2 BTC @30,000, 10×: PM 6,000, MM 60,000 · 0.5 % = 300;
    LP = (60,000 − 300 + 6,000) / 2 = 32,850. Check: 6,000 + 2 · (30,000 − 32,850) = 300."""
    short = IsolatedPosition(D(-20000), D(30000), D("0.0001"), D(6000), D(10), False,
                             flat("0.005"), ENTRY)
    assert isolated_liquidation_price(short, D(30000)) == D(32850)
    assert not is_at_liquidation(short, D("32849.99"))
    assert is_at_liquidation(short, D(32850))


def test_short_with_close_fee_in_mm() -> None:
    """Seed 004 short 100 ETH @4,200, 10×, taker 0.055 %: MM 11,700 + 254.1 = 11,954.1;
    PM 42,000; LP = (420,000 − 11,954.1 + 42,000) / 100 = 450,045.9 / 100 = 4,500.459."""
    short = IsolatedPosition(D(-100), D(4200), D(1), D(42000), D(10), False, ETH, ENTRY,
                             close_fee_rate=D("0.00055"))
    assert isolated_maintenance_margin(short, D(4200)) == D("11954.1")
    assert isolated_liquidation_price(short, D(4200)) == D("4500.459")


# Inverse, size 100 USD, MMR 2 %, 10×: long 108 @54,000 → Q·F = 10,800 USD, 0.2 BTC at entry,
# PM 0.02, MM 0.004. Short 92 @46,000 → 9,200 USD, 0.2 BTC, PM 0.02, MM 0.004.
INV_LONG = IsolatedPosition(D(108), D(54000), D(100), D("0.02"), D(10), True, flat("0.02"), ENTRY)
INV_SHORT = IsolatedPosition(D(-92), D(46000), D(100), D("0.02"), D(10), True, flat("0.02"),
                             ENTRY)


def test_inverse_long_entry_basis() -> None:
    """LP = Q·F / (PM + Q·F/E − MM) = 10,800 / (0.02 + 0.2 − 0.004) = 10,800 / 0.216 = 50,000.
    Check: 0.02 + 10,800 · (1/54,000 − 1/50,000) = 0.02 + 0.2 − 0.216 = 0.004 = MM."""
    assert isolated_maintenance_margin(INV_LONG, D(54000)) == D("0.004")
    assert isolated_liquidation_price(INV_LONG, D(54000)) == D(50000)
    assert auto_top_up_amount(INV_LONG, D(50000), MAINTENANCE, D(1)) == D("0.004")
    assert auto_top_up_amount(INV_LONG, D(50000), INITIAL, D(1)) == D("0.02")


def test_inverse_short_entry_basis() -> None:
    """LP = Q·F / (MM − PM + Q·F/E) = 9,200 / (0.004 − 0.02 + 0.2) = 9,200 / 0.184 = 50,000.
    Check: 0.02 − 9,200 · (1/46,000 − 1/50,000) = 0.02 − 0.016 = 0.004 = MM."""
    assert isolated_liquidation_price(INV_SHORT, D(46000)) == D(50000)


def test_inverse_long_mark_basis() -> None:
    """MM = (Q·F/P) · mmr: 0.02 + 0.2 − 10,800/P = 0.02 · 10,800/P → P = 10,800 · 1.02 / 0.22
    = 11,016 / 0.22 = 50,072.7272… (34 digits)."""
    marked = replace(INV_LONG, mm_basis=MARK)
    assert isolated_liquidation_price(marked, D(54000)) == D("50072.72727272727272727272727272727")


def test_no_liquidation_price() -> None:
    """Long with PM 9,100 > notional 9,000 + MM: (36 − 9,100 + 9,000) / 0.5 < 0 → None.
    Inverse short with PM 0.25: 0.004 − 0.25 + 0.2 < 0 → None. Flat → None."""
    assert isolated_liquidation_price(replace(SEED_002, position_margin=D(9100)), D(1)) is None
    assert isolated_liquidation_price(replace(INV_SHORT, position_margin=D("0.25")), D(1)) is None
    assert isolated_liquidation_price(replace(SEED_002, qty=ZERO), D(18000)) is None
    assert not is_at_liquidation(replace(SEED_002, position_margin=D(9100)), D(1))


def test_mark_basis_single_tier_equals_the_closed_form_for_a_long() -> None:
    """Seed 002 on mark basis: (E·Q·F − PM) / (Q·F·(1 − mmr)) = (9,000 − 900) / (0.5 · 0.996)
    = 8,100 / 0.498 = 16,265.06024096385542168674698795181… (34 digits)."""
    marked = replace(SEED_002, mm_basis=MARK)
    assert isolated_liquidation_price(marked, D(18000)) == D("16265.06024096385542168674698795181")


def test_mark_basis_short_single_tier() -> None:
    """Short 2 @30,000, PM 6,660, 1 %: P = (PM + E·Q·F) / (Q·F·(1 + mmr)) = 66,660 / 2.02
    = 33,000. Check: 6,660 − 2 · 3,000 = 660 = 66,000 · 1 %."""
    short = IsolatedPosition(D(-2), D(30000), D(1), D(6660), D(10), False, flat("0.01"), MARK)
    assert isolated_liquidation_price(short, D(30000)) == D(33000)


def test_mark_basis_reselects_a_lower_tier_at_the_liquidation_price() -> None:
    """Tiers: ≤10,000 at 1 %, above at 2 % (deduction 10,000 · 1 % = 100). Long 1 @12,000,
    PM 2,199: entry notional 12,000 is tier 2. Tier 2 held: 12,000 − 2,199 − 100 = 0.98 P →
    P = 9,701 / 0.98 = 9,898.98…, whose notional is tier 1. Tier 1: 12,000 − 2,199 = 0.99 P →
    P = 9,801 / 0.99 = 9,900 ≤ 10,000: consistent. Check: 2,199 − 2,100 = 99 = 9,900 · 1 %."""
    tiers = (RiskTier(D(10000), D("0.01"), D(100)), RiskTier(None, D("0.02"), D(50), D(100)))
    position = IsolatedPosition(D(1), D(12000), D(1), D(2199), D(5), False, tiers, MARK)
    assert isolated_liquidation_price(position, D(12000)) == D(9900)
    assert isolated_maintenance_margin(position, D(9900)) == D(99)
    assert isolated_maintenance_margin(position, D(12000)) == D(140)  # 240 − 100


def test_tiers_sorted() -> None:
    assert tiers_sorted(ETH)
    assert tiers_sorted(flat("0.01"))
    assert not tiers_sorted((ETH[1], ETH[0]))
    assert not tiers_sorted((RiskTier(None, D("0.01"), D(1)), ETH[0]))


@settings(max_examples=50, deadline=None)
@given(
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=D(100),
                max_value=D(10000)),
    st.decimals(places=0, allow_nan=False, allow_infinity=False, min_value=D(1),
                max_value=D(150)),
    st.sampled_from([D(2), D(5), D(10), D(20), D(25)]),
    st.booleans(),
)
def test_mark_basis_price_balances_margin_and_maintenance(
    entry: Decimal, qty: Decimal, leverage: Decimal, is_long: bool
) -> None:
    """Invariant on the tiered ETH table: at LP, PM + UPL(LP) = MM(LP) (to 34-digit rounding),
    and the closed form of the tier holding LP's notional gives LP: long
    (Q·E − PM − d) / (Q·(1 − mmr)), short (PM + Q·E + d) / (Q·(1 + mmr))."""
    signed = qty if is_long else -qty
    pm = qty * entry / leverage
    position = IsolatedPosition(signed, entry, D(1), pm, leverage, False, ETH, MARK)
    price = isolated_liquidation_price(position, entry)
    if price is None:
        return
    gap = pm + unrealized_pnl(signed, entry, price, D(1), False) - isolated_maintenance_margin(
        position, price)
    assert abs(gap) <= D("1e-20") * qty * entry
    assert (price < entry) == is_long
    size = qty * price
    tier = next((t for t in ETH if t.up_to is not None and size <= t.up_to), ETH[-1])
    if is_long:
        closed = (qty * entry - pm - tier.deduction) / (qty * (1 - tier.mmr))
    else:
        closed = (pm + qty * entry + tier.deduction) / (qty * (1 + tier.mmr))
    assert price == closed
