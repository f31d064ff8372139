"""Funding payments, USDC session settlement and funding times (DESIGN §6.6, §6.7; scenarios
funding-8h and usdc-session-settlement)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO, round_paid, round_received
from ledger.rules.funding import funding_change, is_funding_time, session_settlement_change

numbers.install()

D = Decimal
SIZE = D("0.0001")  # BTCUSDT: 20,000 contracts = 2 BTC


def test_long_pays_a_positive_rate_at_the_mark() -> None:
    """2 BTC · 30,000 (mark, not the 29,500 entry) · 0.01 % = 6: the long pays, −6."""
    assert funding_change(D(20000), SIZE, D(30000), D("0.0001"), inverse=False) == D(-6)


def test_short_receives_a_positive_rate() -> None:
    assert funding_change(D(-20000), SIZE, D(30000), D("0.0001"), inverse=False) == D(6)


def test_negative_rate_reverses_the_direction() -> None:
    """Rate −0.01 %: the long receives 6, the short pays 6."""
    assert funding_change(D(20000), SIZE, D(30000), D("-0.0001"), inverse=False) == D(6)
    assert funding_change(D(-20000), SIZE, D(30000), D("-0.0001"), inverse=False) == D(-6)


def test_inverse_funding_is_in_coin() -> None:
    """Inverse, 100 contracts of 100 USD at mark 50,000, 0.01 %:
    100 · 100 / 50,000 · 0.0001 = 0.2 · 0.0001 = 0.00002 BTC, paid by the long."""
    assert funding_change(D(100), D(100), D(50000), D("0.0001"), inverse=True) == D("-0.00002")
    assert funding_change(D(-100), D(100), D(50000), D("0.0001"), inverse=True) == D("0.00002")


def test_flat_position_pays_nothing() -> None:
    assert funding_change(ZERO, SIZE, D(30000), D("0.0001"), inverse=False) == ZERO


@settings(max_examples=50, deadline=None)
@given(
    st.decimals(places=0, allow_nan=False, allow_infinity=False, min_value=D(1),
                max_value=D(10**7)),
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=D(1),
                max_value=D(200000)),
    st.decimals(places=6, allow_nan=False, allow_infinity=False, min_value=D("-0.01"),
                max_value=D("0.01")),
    st.booleans(),
)
def test_long_and_short_legs_cancel_and_rounding_favours_the_exchange(
    qty: Decimal, mark: Decimal, rate: Decimal, inverse: bool
) -> None:
    """Invariant: the long's change is minus the short's; posted at 8 places, the payer's
    rounding up and the receiver's rounding down leave the exchange ≥ 0."""
    long_change = funding_change(qty, SIZE, mark, rate, inverse)
    short_change = funding_change(-qty, SIZE, mark, rate, inverse)
    assert long_change == -short_change
    paid = round_paid(abs(long_change), 8)
    received = round_received(abs(long_change), 8)
    assert paid - received >= ZERO


def test_session_settlement_moves_the_session_pnl() -> None:
    """0.1 BTC · (52,000 − 50,250) = 175 to the wallet (scenario, 08:00)."""
    assert session_settlement_change(D(100), D("0.001"), D(52000), D(50250)) == D(175)


def test_session_settlement_of_a_short_and_a_loss() -> None:
    """Short 0.1 from 50,250 at 52,000: −0.1 · 1,750 = −175; long at 50,000: 0.1 · −250 = −25."""
    assert session_settlement_change(D(-100), D("0.001"), D(52000), D(50250)) == D(-175)
    assert session_settlement_change(D(100), D("0.001"), D(50000), D(50250)) == D(-25)


def _at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2025, 1, 1, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize("hour", [0, 8, 16])
def test_8h_funding_times_are_00_08_16(hour: int) -> None:
    assert is_funding_time(_at(hour), 8)


@pytest.mark.parametrize("hour", [1, 4, 7, 9, 12, 15, 17, 20, 23])
def test_other_hours_are_not_8h_funding_times(hour: int) -> None:
    assert not is_funding_time(_at(hour), 8)


@pytest.mark.parametrize("hour", [0, 4, 8, 12, 16, 20])
def test_4h_funding_times(hour: int) -> None:
    assert is_funding_time(_at(hour), 4)


@pytest.mark.parametrize("at", [_at(8, 0, 1), _at(8, 1), _at(8, 0, 0, 1), _at(4, 30)])
def test_a_time_off_the_hour_is_no_funding_time(at: datetime) -> None:
    assert not is_funding_time(at, 8)
    assert not is_funding_time(at, 4)


def test_1h_interval_funds_every_hour() -> None:
    assert all(is_funding_time(_at(hour), 1) for hour in range(24))


# --- issue 14: funding_rate_basis ------------------------------------------------------------


def test_a_rate_quoted_per_interval_applies_as_it_is() -> None:
    from ledger.rules.funding import funding_rate_for_interval
    from ledger.rules.terms import FundingRateBasis

    assert funding_rate_for_interval(D("0.0001"), 4, FundingRateBasis.PER_INTERVAL) == D("0.0001")


def test_a_rate_quoted_per_8h_is_scaled_to_the_interval_as_bit_com_publishes() -> None:
    """bit.com (https://support.bit.com/hc/en-us/articles/360051992953-How-is-Funding-Rate-calculated-):
    Time Fraction = funding period / 8 hours, payment = rate × size × time fraction. BIT's
    funding page (https://helpcenter.bitexch.io/en/articles/9777699-funding-mechanism) prints
    "0.03% daily (0.01% per 8 hours)": 0.0001 per 8 h over a 24 h interval → 0.0003. No
    published payment example was found; the hourly and 4-hour figures are hand computations
    of the same rule: 0.0001 × 1/8 = 0.0000125, 0.0001 × 4/8 = 0.00005."""
    from ledger.rules.funding import funding_rate_for_interval
    from ledger.rules.terms import FundingRateBasis

    per_8h = FundingRateBasis.PER_8H
    assert funding_rate_for_interval(D("0.0001"), 24, per_8h) == D("0.0003")
    assert funding_rate_for_interval(D("0.0001"), 8, per_8h) == D("0.0001")
    assert funding_rate_for_interval(D("0.0001"), 1, per_8h) == D("0.0000125")
    assert funding_rate_for_interval(D("0.0001"), 4, per_8h) == D("0.00005")
    # 2 BTC at 30,000 funded every 4 h at 0.01 % per 8 h: the long pays 2 × 30,000 × 0.00005 = 3.
    rate = funding_rate_for_interval(D("0.0001"), 4, per_8h)
    assert funding_change(D(20000), SIZE, D(30000), rate, inverse=False) == D(-3)
