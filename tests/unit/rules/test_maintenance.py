"""Tiered maintenance margin, deductions, the open-orders rule and the close fee
(DESIGN §6.2, seed 004, scenarios seed004-tiered-mm / -open-orders / -close-fee-in-mm)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.maintenance import (
    close_fee_in_mm,
    derived_deductions,
    initial_leverage,
    maintenance_margin,
    maintenance_margin_with_orders,
    max_leverage,
    tier_index,
)
from ledger.rules.terms import RiskTier

numbers.install()

D = Decimal

# Seed 004 ETHUSDC: 2 / 2.5 / 3 / 3.5 % at 100k / 200k / 300k / 1M, deductions by hand:
# 0; 100,000·0.005 = 500; 500 + 200,000·0.005 = 1,500; 1,500 + 300,000·0.005 = 3,000.
ETH = (
    RiskTier(D("100000"), D("0.02"), D("50"), D("0")),
    RiskTier(D("200000"), D("0.025"), D("40"), D("500")),
    RiskTier(D("300000"), D("0.03"), D("30"), D("1500")),
    RiskTier(D("1000000"), D("0.035"), D("25"), D("3000")),
)
# Seed 004 XYZ: the same rates on 1,000-wide bands; deductions 0, 5, 15, 30 by hand.
XYZ = (
    RiskTier(D("1000"), D("0.02"), D("50"), D("0")),
    RiskTier(D("2000"), D("0.025"), D("40"), D("5")),
    RiskTier(D("3000"), D("0.03"), D("30"), D("15")),
    RiskTier(D("4000"), D("0.035"), D("25"), D("30")),
)


def _without_deductions(tiers: tuple[RiskTier, ...]) -> tuple[RiskTier, ...]:
    return tuple(RiskTier(t.up_to, t.mmr, t.max_leverage) for t in tiers)


def test_derived_deductions_of_the_seed_004_eth_table() -> None:
    assert derived_deductions(_without_deductions(ETH)) == [D(0), D(500), D(1500), D(3000)]


def test_derived_deductions_of_the_xyz_table() -> None:
    assert derived_deductions(_without_deductions(XYZ)) == [D(0), D(5), D(15), D(30)]


def test_derived_deductions_allow_an_open_last_tier() -> None:
    """0.5 % to 50,000, then 1 % open: d_2 = 50,000 · 0.005 = 250."""
    tiers = (RiskTier(D("50000"), D("0.005"), D("100")), RiskTier(None, D("0.01"), D("50")))
    assert derived_deductions(tiers) == [D(0), D(250)]


def test_seed_004_3500_on_1000_wide_bands_is_92_5() -> None:
    """1,000·2 % + 1,000·2.5 % + 1,000·3 % + 500·3.5 % = 20 + 25 + 30 + 17.5 = 92.5
    = 3,500 · 3.5 % − 30."""
    assert maintenance_margin(D("3500"), XYZ) == D("92.5")


def test_seed_004_case_1_400000_is_11000() -> None:
    """400,000 · 3.5 % − 3,000 = 14,000 − 3,000 = 11,000."""
    assert maintenance_margin(D("400000"), ETH) == D("11000")


def test_seed_004_case_2_200000_is_4500() -> None:
    """200,000 is tier 2 (≤ 200,000): 200,000 · 2.5 % − 500 = 4,500."""
    assert maintenance_margin(D("200000"), ETH) == D("4500")


def test_seed_004_case_2_after_the_fill_350000_is_9250() -> None:
    """350,000 · 3.5 % − 3,000 = 12,250 − 3,000 = 9,250."""
    assert maintenance_margin(D("350000"), ETH) == D("9250")


def test_zero_notional_needs_no_margin() -> None:
    assert maintenance_margin(ZERO, ETH) == ZERO


def test_notional_equal_to_up_to_is_in_that_tier() -> None:
    """200,000 is tier 2 (index 1, max leverage 40); 200,000.01 is tier 3 (30×)."""
    assert tier_index(D("200000"), ETH) == 1
    assert tier_index(D("200000.01"), ETH) == 2
    assert max_leverage(D("200000"), ETH) == D("40")
    assert max_leverage(D("200000.01"), ETH) == D("30")


def test_last_tier_applies_beyond_its_up_to() -> None:
    """1,200,000 > 1,000,000: still tier 4: 1,200,000 · 3.5 % − 3,000 = 42,000 − 3,000 = 39,000."""
    assert tier_index(D("1200000"), ETH) == 3
    assert maintenance_margin(D("1200000"), ETH) == D("39000")
    assert max_leverage(D("1200000"), ETH) == D("25")


def test_orders_rule_uses_the_combined_tier_without_deduction() -> None:
    """Seed 004 case 2: (200,000 + 150,000) · 3.5 % (tier of 350,000), no deduction = 12,250."""
    assert maintenance_margin_with_orders(D("200000"), D("150000"), ETH) == D("12250")


def test_orders_rule_jumps_at_a_tier_bound() -> None:
    """No deduction, so the requirement jumps: 200,000 → 2.5 % = 5,000; 200,000.01 → 3 %
    = 6,000.0003."""
    assert maintenance_margin_with_orders(D("150000"), D("50000"), ETH) == D("5000")
    assert maintenance_margin_with_orders(D("150000"), D("50000.01"), ETH) == D("6000.0003")


def test_orders_rule_while_flat_is_the_orders_alone() -> None:
    """Flat with a 50,000 order: 50,000 · 2 % = 1,000."""
    assert maintenance_margin_with_orders(ZERO, D("50000"), ETH) == D("1000")


def test_close_fee_of_a_short_uses_one_plus_one_over_leverage() -> None:
    """Seed 004: short 100 @4,200, 10×, 0.055 %: 420,000 · 1.1 · 0.00055 = 254.1."""
    assert close_fee_in_mm(D("420000"), D("10"), D("0.00055"), is_long=False) == D("254.1")


def test_close_fee_of_a_long_uses_one_minus_one_over_leverage() -> None:
    """Same long: 420,000 · 0.9 · 0.00055 = 207.9; with the MM 11,700 → 11,907.9."""
    fee = close_fee_in_mm(D("420000"), D("10"), D("0.00055"), is_long=True)
    assert fee == D("207.9")
    assert maintenance_margin(D("420000"), ETH) + fee == D("11907.9")


def test_seed_004_displayed_short_mm_is_11954_1() -> None:
    """420,000 · 3.5 % − 3,000 = 11,700, plus 254.1 = 11,954.1 (seed shows 11,954)."""
    fee = close_fee_in_mm(D("420000"), D("10"), D("0.00055"), is_long=False)
    assert maintenance_margin(D("420000"), ETH) + fee == D("11954.1")


@pytest.mark.parametrize(("tier1_max", "expected"), [("50", "10"), ("5", "5"), ("10", "10")])
def test_initial_leverage_is_min_of_10_and_tier_1(tier1_max: str, expected: str) -> None:
    tiers = (RiskTier(None, D("0.01"), D(tier1_max)),)
    assert initial_leverage(tiers) == D(expected)


def _progressive(notional: Decimal, tiers: tuple[RiskTier, ...]) -> Decimal:
    """Independent band sum: each band of the notional at its own rate (last tier open)."""
    total, lower = ZERO, ZERO
    for k, tier in enumerate(tiers):
        last = k == len(tiers) - 1
        upper = notional if last or tier.up_to is None else min(notional, tier.up_to)
        if upper > lower:
            total += (upper - lower) * tier.mmr
        if not last and tier.up_to is not None:
            lower = tier.up_to
    return total


@settings(max_examples=50, deadline=None)
@given(st.decimals(places=2, allow_nan=False, allow_infinity=False,
                   min_value=D(0), max_value=D("2000000")))
def test_mm_with_deduction_equals_the_progressive_band_sum(notional: Decimal) -> None:
    """DESIGN §6.2: notional · mmr_n − deduction_n ≡ Σ band · band mmr."""
    assert maintenance_margin(notional, ETH) == _progressive(notional, ETH)


@settings(max_examples=50, deadline=None)
@given(st.decimals(places=2, allow_nan=False, allow_infinity=False,
                   min_value=D(0), max_value=D("2000000")),
       st.decimals(places=2, allow_nan=False, allow_infinity=False,
                   min_value=D(0), max_value=D("500000")))
def test_orders_rule_never_asks_less_than_the_position_alone(pos: Decimal, orders: Decimal) -> None:
    """(p + o) · mmr(p + o) ≥ Σ bands of p, since mmr never falls with notional."""
    assert maintenance_margin_with_orders(pos, orders, ETH) >= maintenance_margin(pos, ETH)
