"""Exact boundaries: `last_nonpositive`, and the two limits built on it, `max_withdrawable`
(multi-asset, across collateral tiers) and the cross liquidation price (DESIGN §6.3, 6.11)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.margin import (
    AccountSnapshot,
    Market,
    PositionState,
    available_after_withdrawal,
    cross_liquidation_price,
    evaluate,
    max_withdrawable,
)
from ledger.rules.solve import last_nonpositive
from ledger.rules.terms import AssetTerms, CollateralTier, InstrumentTerms, Kind, Mode, RiskTier

numbers.install()

D = Decimal
AT = datetime(2025, 1, 1, tzinfo=UTC)
# Seed 000 ETH tiers with the scenario's explicit 0 above 400.
ETH = AssetTerms("ETH", collateral_tiers=tuple(
    CollateralTier(None if u is None else D(u), D(r))
    for u, r in (("100", "0.9"), ("200", "0.8"), ("300", "0.7"), ("400", "0.6"), (None, "0"))))
BTCUSDT = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D(1),
                          (RiskTier(D("10000000"), D("0.004"), D(125)),))


def market(mark: str, eth_index: str = "4000") -> Market:
    return Market(AT, {"ETH": ETH}, {"ETH": D(eth_index)}, {"BTCUSDT": BTCUSDT},
                  {"BTCUSDT": D(mark)})


def account(eth: str) -> AccountSnapshot:
    """`eth` ETH and a cross long of 200 BTC @30,000 at 10× (notional 6,000,000)."""
    position = PositionState("BTCUSDT", "cross", D(200), D(30000), leverage=D(10))
    return AccountSnapshot(Mode.MULTI_ASSET, {"ETH": D(eth)}, (position,))


# ----------------------------------------------------------------------------- last_nonpositive


def _tiered(x: Decimal) -> Decimal:
    """Slopes 0.6 to 50, 0.7 to 150, 0.8 above, minus 150: f(150) = 30 + 70 − 150 = −50."""
    return (D("0.6") * min(x, D(50)) + D("0.7") * min(max(x - 50, ZERO), D(100))
            + D("0.8") * max(x - 150, ZERO) - 150)


def test_secant_on_the_right_piece_is_exact() -> None:
    """Hints 50, 150, 250 bracket [150, 250]; 0.8 · (x − 150) = 50 → x = 212.5 exactly."""
    assert last_nonpositive(_tiered, ZERO, D(350), (D(50), D(150), D(250))) == D("212.5")


def test_without_hints_the_root_is_still_found() -> None:
    """Same function, no hints: 212.5, found by bracketing (within 1e-30 relative)."""
    root = last_nonpositive(_tiered, ZERO, D(350))
    assert _tiered(root) <= ZERO
    assert D("212.5") - root <= D("1e-27")


def test_a_non_terminating_root_is_taken_on_the_safe_side() -> None:
    """f(x) = 3x − 14: root 14/3 = 4.666…; the result has f ≤ 0 and is within the tolerance."""
    root = last_nonpositive(lambda x: 3 * x - 14, ZERO, D(10))
    assert 3 * root - 14 <= ZERO
    assert D(14) / D(3) - root <= D("1e-29")


def test_a_jump_is_bracketed() -> None:
    """Step at 5 (the orders rule has no deduction): sup{f ≤ 0} = 5, approached from below."""
    root = last_nonpositive(lambda x: D(-1) if x < 5 else D(1), ZERO, D(10))
    assert root < D(5)
    assert D(5) - root <= D("1e-28")


def test_a_flat_zero_piece_is_stepped_over() -> None:
    """f = x − 3 to 3, 0 on [3, 6], x − 6 beyond: sup{f ≤ 0} = 6, not the first zero at 3."""
    def f(x: Decimal) -> Decimal:
        return min(x - 3, ZERO) + max(x - 6, ZERO)

    root = last_nonpositive(f, ZERO, D(10))
    assert f(root) <= ZERO
    assert D(6) - root <= D("1e-28")


def test_the_bracket_must_straddle_the_root() -> None:
    with pytest.raises(AssertionError):
        last_nonpositive(lambda x: x + 1, ZERO, D(10))


# ----------------------------------------------------------------------------- max_withdrawable


def test_multi_asset_withdrawal_crosses_two_collateral_tiers() -> None:
    """350 ETH @4,000 (effective 270 · 4,000 = 1,080,000); cross long 200 BTC @30,000 at mark
    30,000, 10×: IM 600,000, UPL 0. Keep eff(e) = 600,000 → 150 ETH-equivalent:
    90 + 0.8 · (e − 100) = 150 → e = 175 (tier 2) → withdraw 350 − 175 = 175."""
    acct, mkt = account("350"), market("30000")
    assert evaluate(acct, mkt).margin.available_usd == D(480000)
    assert max_withdrawable(acct, mkt, "ETH") == D(175)
    assert available_after_withdrawal(acct, mkt, "ETH", D(175)) == ZERO


def test_multi_asset_withdrawal_with_a_negative_usdt_equity() -> None:
    """Mark 29,900: UPL 200 · (−100) = −20,000 USDT (no haircut); IM 200 · 29,900 / 10
    = 598,000. Keep eff(e) = 618,000 → 154.5: 90 + 0.8 · (e − 100) = 154.5 → e = 180.625
    → withdraw 350 − 180.625 = 169.375."""
    acct, mkt = account("350"), market("29900")
    assert max_withdrawable(acct, mkt, "ETH") == D("169.375")


def test_without_positions_the_whole_wallet_is_withdrawable() -> None:
    """Scenario seed000-collateral-tiers: alice's max_withdrawable.ETH = 350."""
    acct = AccountSnapshot(Mode.MULTI_ASSET, {"ETH": D(350)})
    assert max_withdrawable(acct, market("30000"), "ETH") == D(350)


def test_nothing_is_withdrawable_when_available_is_already_negative() -> None:
    """20 ETH (eff 18 · 4,000 = 72,000) against IM 600,000 → 0; a missing or empty asset → 0."""
    acct = account("20")
    assert max_withdrawable(acct, market("30000"), "ETH") == ZERO
    assert max_withdrawable(acct, market("30000"), "USDT") == ZERO


MONEY = st.decimals(places=8, allow_nan=False, allow_infinity=False,
                    min_value=D(0), max_value=D(600))


@settings(max_examples=50, deadline=None)
@given(
    MONEY,
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=D(-50000),
                max_value=D(200000)),
    st.decimals(places=0, allow_nan=False, allow_infinity=False, min_value=D(-60),
                max_value=D(60)),
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=D(20000),
                max_value=D(40000)),
    st.sampled_from(["ETH", "USDT"]),
)
def test_max_withdrawable_is_the_last_safe_amount(
    eth: Decimal, usdt: Decimal, qty: Decimal, mark: Decimal, asset: str
) -> None:
    """Invariant: withdrawing max_withdrawable leaves available ≥ 0; 1e-8 more either exceeds
    the wallet or makes available < 0. Never above the wallet."""
    positions = () if qty == 0 else (PositionState("BTCUSDT", "cross", qty, D(30000)),)
    acct = AccountSnapshot(Mode.MULTI_ASSET, {"ETH": eth, "USDT": usdt}, positions)
    mkt = market(str(mark))
    limit = max_withdrawable(acct, mkt, asset)
    wallet = acct.balances[asset]
    assert ZERO <= limit <= max(wallet, ZERO)
    if available_after_withdrawal(acct, mkt, asset, ZERO) < ZERO:
        assert limit == ZERO
        return
    assert available_after_withdrawal(acct, mkt, asset, limit) >= ZERO
    more = limit + D("0.00000001")
    assert more > wallet or available_after_withdrawal(acct, mkt, asset, more) < ZERO


# ----------------------------------------------------------------------------- cross price


def test_multi_asset_cross_liquidation_price_is_near_the_hand_root() -> None:
    """350 ETH (eff 1,080,000) + 200 · (P − 30,000) = 200 · P · 0.4 %
    → 199.2 P = 4,920,000 → P = 24,698.795180722891566265060240963855…"""
    price = cross_liquidation_price(account("350"), market("30000"), "BTCUSDT")
    assert price is not None
    assert abs(price - D("24698.79518072289156626506024096386")) <= D("1e-24")


def test_multi_asset_cross_liquidation_price_is_exact_to_34_digits() -> None:
    """Same account: within one unit of the 34th digit (1e-29) of 4,920,000 / 199.2."""
    price = cross_liquidation_price(account("350"), market("30000"), "BTCUSDT")
    assert price is not None
    assert abs(price - D("24698.79518072289156626506024096386")) <= D("1e-29")
