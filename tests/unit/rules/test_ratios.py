"""Account ratios: margin ratio, margin level, liquidation and call thresholds, available
(DESIGN §6.3 and 6.11; seed 001, seed 003, scenario seed004-open-orders)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.ratios import (
    available,
    is_at_call_level,
    is_past_liquidation,
    margin_level,
    margin_ratio,
)
from ledger.rules.terms import MARGIN_CALL_LEVEL

numbers.install()

D = Decimal


def test_margin_ratio_of_seed_004_after_the_fill() -> None:
    """MM 9,250 / equity 50,000 = 0.185."""
    assert margin_ratio(D(9250), D(50000)) == D("0.185")


def test_margin_ratio_with_open_orders() -> None:
    """MM 12,250 / equity 100,000 = 0.1225."""
    assert margin_ratio(D(12250), D(100000)) == D("0.1225")


def test_margin_level_is_the_inverse() -> None:
    """50,000 / 9,250 = 200 / 37 = 5.405405…, 34 digits (the 35th is 4 → down)."""
    assert margin_level(D(50000), D(9250)) == D("5." + "405" * 11)


@pytest.mark.parametrize(("mm", "equity"), [("0", "1000"), ("0", "0"), ("-1", "10")])
def test_margin_ratio_is_null_without_requirement(mm: str, equity: str) -> None:
    assert margin_ratio(D(mm), D(equity)) is None


@pytest.mark.parametrize("equity", ["0", "-1", "-50000"])
def test_margin_ratio_is_null_when_equity_is_not_positive(equity: str) -> None:
    assert margin_ratio(D(100), D(equity)) is None


def test_margin_level_may_be_zero_or_negative_and_is_null_without_requirement() -> None:
    """−500 / 250 = −2; 0 / 250 = 0; MM 0 → null (DESIGN 6.11)."""
    assert margin_level(D(-500), D(250)) == D(-2)
    assert margin_level(ZERO, D(250)) == ZERO
    assert margin_level(D(1000), ZERO) is None


def test_past_liquidation_at_ratio_one_and_above() -> None:
    """MM 1,000 vs equity 1,000: ratio 1 → past; equity 1,000.01 → not past."""
    assert is_past_liquidation(D(1000), D(1000))
    assert is_past_liquidation(D(1001), D(1000))
    assert not is_past_liquidation(D(1000), D("1000.01"))


@pytest.mark.parametrize("equity", ["0", "-0.01", "-1000"])
def test_past_liquidation_when_equity_is_not_positive(equity: str) -> None:
    """DESIGN 6.11: MM > 0 and effective equity ≤ 0 counts as past liquidation."""
    assert is_past_liquidation(D(100), D(equity))


def test_no_requirement_is_never_past_liquidation() -> None:
    assert not is_past_liquidation(ZERO, D(-1000))
    assert not is_past_liquidation(ZERO, ZERO)


def test_call_level_at_0_8() -> None:
    """MM 800 / equity 1,000 = 0.8 → at the call level; MM 799.99 → 0.79999 → not."""
    assert MARGIN_CALL_LEVEL == D("0.8")
    assert is_at_call_level(D(800), D(1000), MARGIN_CALL_LEVEL)
    assert not is_at_call_level(D("799.99"), D(1000), MARGIN_CALL_LEVEL)
    assert is_at_call_level(D(1), ZERO, MARGIN_CALL_LEVEL)
    assert not is_at_call_level(ZERO, D(-5), MARGIN_CALL_LEVEL)


def test_available_is_equity_minus_initial_margin() -> None:
    """Scenario seed004-open-orders: 100,000 − (20,000 + 15,000) = 65,000; may be negative."""
    assert available(D(100000), D(35000)) == D(65000)
    assert available(D(30000), D(35000)) == D(-5000)


MONEY = st.decimals(places=8, allow_nan=False, allow_infinity=False,
                    min_value=D("-1000000"), max_value=D("1000000"))


@settings(max_examples=50, deadline=None)
@given(MONEY, MONEY)
def test_past_liquidation_agrees_with_the_ratio(mm: Decimal, equity: Decimal) -> None:
    """Invariant: past ⇔ (MM > 0 and (ratio is null or ratio ≥ 1)); calls come no later."""
    ratio = margin_ratio(mm, equity)
    expected = mm > ZERO and (ratio is None or ratio >= 1)
    assert is_past_liquidation(mm, equity) == expected
    if expected:
        assert is_at_call_level(mm, equity, MARGIN_CALL_LEVEL)
