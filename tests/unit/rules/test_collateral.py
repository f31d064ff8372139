"""Collateral valuation (DESIGN §6.1, seed 000 §3, scenario seed000-collateral-tiers)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.collateral import (
    collateral_breakpoints,
    effective_collateral_usd,
    equity_usd,
    tiered_sum,
)
from ledger.rules.terms import CollateralTier, TierBasis

numbers.install()

D = Decimal


def tiers(*rows: tuple[str | None, str]) -> tuple[CollateralTier, ...]:
    return tuple(CollateralTier(None if up is None else D(up), D(r)) for up, r in rows)


# Seed 000 §3: ETH ≤100 90 %, ≤200 80 %, ≤300 70 %, ≤400 60 % (no open top tier).
ETH = tiers(("100", "0.9"), ("200", "0.8"), ("300", "0.7"), ("400", "0.6"))
# The scenario's ETH table: the same with an explicit last tier of ratio 0 above 400.
ETH_CAPPED = ETH + tiers((None, "0"))
# Seed 000 §3: MX ≤10,000 95 %, ≤20,000 80 %, ≤30,000 70 % (no open top tier).
MX = tiers(("10000", "0.95"), ("20000", "0.8"), ("30000", "0.7"))


def test_seed_000_350_eth_at_4000_is_1080000() -> None:
    """(100·0.9 + 100·0.8 + 100·0.7 + 50·0.6) · 4,000 = 270 · 4,000 = 1,080,000 (seed 000)."""
    assert tiered_sum(D("350"), ETH) == D("270")
    assert effective_collateral_usd(D("350"), D("4000"), ETH) == D("1080000")
    assert effective_collateral_usd(D("350"), D("4000"), ETH_CAPPED) == D("1080000")


def test_quantity_tiers_do_not_move_with_the_price() -> None:
    """Same 270 ETH-equivalent at 5,000: 270 · 5,000 = 1,350,000 (scenario, 01:00)."""
    assert effective_collateral_usd(D("350"), D("5000"), ETH_CAPPED) == D("1350000")


def test_450_eth_above_an_explicit_zero_tier_hit_the_cap() -> None:
    """bob: (90 + 80 + 70 + 60 + 50·0) · 4,000 = 300 · 4,000 = 1,200,000."""
    assert effective_collateral_usd(D("450"), D("4000"), ETH_CAPPED) == D("1200000")


def test_quantity_beyond_the_last_closed_tier_counts_zero() -> None:
    """carol: 32,000 MX @2, tiers up to 30,000 only: the 2,000 above count 0 (DESIGN 6.1).
    (10,000·0.95 + 10,000·0.8 + 10,000·0.7) · 2 = (9,500 + 8,000 + 7,000) · 2 = 49,000."""
    assert effective_collateral_usd(D("32000"), D("2"), MX) == D("49000")
    assert effective_collateral_usd(D("450"), D("4000"), ETH) == D("1200000")


def test_equity_exactly_on_a_bound_takes_that_tier_fully() -> None:
    """200 ETH: 100·0.9 + 100·0.8 = 170 → 170 · 4,000 = 680,000."""
    assert effective_collateral_usd(D("200"), D("4000"), ETH) == D("680000")


def test_negative_equity_is_not_haircut() -> None:
    """A debt counts in full at the index: −2.5 ETH · 4,000 = −10,000 (seed 000 §3)."""
    assert effective_collateral_usd(D("-2.5"), D("4000"), ETH) == D("-10000")


def test_zero_equity_counts_zero() -> None:
    assert effective_collateral_usd(ZERO, D("4000"), ETH) == ZERO


def test_no_index_price_counts_nothing() -> None:
    """DESIGN 6.11: an asset without an index counts 0 (positive or negative equity)."""
    assert effective_collateral_usd(D("350"), None, ETH) == ZERO
    assert effective_collateral_usd(D("-5"), None, ETH) == ZERO
    assert equity_usd(D("350"), None) == ZERO


def test_no_tiers_means_ratio_one_without_cap() -> None:
    """USDT (no tiers): 1,000 · 1 = 1,000; without tiers there is no cap: 5,000,000 · 2."""
    assert effective_collateral_usd(D("1000"), D("1"), ()) == D("1000")
    assert effective_collateral_usd(D("5000000"), D("2"), ()) == D("10000000")


def test_usd_value_basis_measures_the_bounds_in_usd() -> None:
    """Bounds in USD: ≤100,000 at 90 %, ≤200,000 at 80 %, above at 50 %.
    40 ETH @4,000 = 160,000 USD → 100,000·0.9 + 60,000·0.8 = 90,000 + 48,000 = 138,000.
    (The quantity basis would read 40 coins as all in tier 1: 40·0.9·4,000 = 144,000.)"""
    usd = tiers(("100000", "0.9"), ("200000", "0.8"), (None, "0.5"))
    assert effective_collateral_usd(D("40"), D("4000"), usd, TierBasis.USD_VALUE) == D("138000")
    assert effective_collateral_usd(D("40"), D("4000"), usd, TierBasis.QUANTITY) == D("144000")


def test_usd_value_basis_open_top_tier() -> None:
    """100 ETH @4,000 = 400,000 USD → 90,000 + 80,000 + 200,000·0.5 = 270,000."""
    usd = tiers(("100000", "0.9"), ("200000", "0.8"), (None, "0.5"))
    assert effective_collateral_usd(D("100"), D("4000"), usd, TierBasis.USD_VALUE) == D("270000")


def test_equity_usd_is_not_haircut() -> None:
    """Scenario: alice 350 · 4,000 = 1,400,000; carol 32,000 · 2 + 1,000 = 65,000."""
    assert equity_usd(D("350"), D("4000")) == D("1400000")
    assert equity_usd(D("32000"), D("2")) + equity_usd(D("1000"), D("1")) == D("65000")


def test_breakpoints_are_the_tier_bounds_in_coins() -> None:
    """Quantity: 0, 100, 200, 300, 400 (the open tier adds none); USD basis: bound / index,
    100,000 / 4,000 = 25 and 200,000 / 4,000 = 50; no index: just 0."""
    assert collateral_breakpoints(ETH_CAPPED, D("4000"), TierBasis.QUANTITY) == [
        D(0), D(100), D(200), D(300), D(400)]
    usd = tiers(("100000", "0.9"), ("200000", "0.8"), (None, "0.5"))
    assert collateral_breakpoints(usd, D("4000"), TierBasis.USD_VALUE) == [D(0), D(25), D(50)]
    assert collateral_breakpoints(ETH, None, TierBasis.QUANTITY) == [D(0)]


COINS = st.decimals(places=8, allow_nan=False, allow_infinity=False,
                    min_value=D(0), max_value=D("1000"))


def _bands(amount: Decimal) -> Decimal:
    """Independent band sum for the ETH table: each 100-coin band at its own ratio."""
    ratios = (D("0.9"), D("0.8"), D("0.7"), D("0.6"))
    total = ZERO
    for k, ratio in enumerate(ratios):
        band = min(max(amount - 100 * k, ZERO), D(100))
        total += band * ratio
    return total


@settings(max_examples=50, deadline=None)
@given(COINS)
def test_tiered_sum_equals_the_band_sum(amount: Decimal) -> None:
    assert tiered_sum(amount, ETH) == _bands(amount)


@settings(max_examples=50, deadline=None)
@given(COINS, COINS)
def test_more_equity_never_counts_less_nor_more_than_its_value(a: Decimal, b: Decimal) -> None:
    """Monotone and haircut: 0 ≤ eff(a) ≤ eff(b) ≤ b · index for a ≤ b."""
    low, high = min(a, b), max(a, b)
    price = D("4000")
    eff_low = effective_collateral_usd(low, price, ETH_CAPPED)
    eff_high = effective_collateral_usd(high, price, ETH_CAPPED)
    assert ZERO <= eff_low <= eff_high <= high * price
