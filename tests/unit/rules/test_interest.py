"""Debt interest per second (DESIGN §6.8; seed 000 §4; scenario interest-per-second)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO, round_paid
from ledger.rules.interest import interest_accrued, interest_base, liability
from ledger.rules.terms import FreeMode, InterestTerms

numbers.install()

D = Decimal
TEN_PERCENT = InterestTerms(annual_rate=D("0.10"))
YEAR_S = D(31_536_000)


def test_one_hour_at_ten_percent_keeps_34_digits() -> None:
    """10,000 · 0.10 · 3,600 / 31,536,000 = 3,600,000 / 31,536,000 = 0.11415525114155251141…
    (period 114155251141552511415525…), 34 significant digits, the 35th is 4 → down."""
    accrued = interest_accrued(D(10000), TEN_PERCENT, D(3600))
    assert accrued == D("0.1141552511415525114155251141552511")


def test_one_hour_at_ten_percent_is_charged_rounded_up() -> None:
    """0.114155251… charged at 8 places → 0.11415526 (the account pays: up)."""
    assert round_paid(interest_accrued(D(10000), TEN_PERCENT, D(3600)), 8) == D("0.11415526")


def test_a_whole_year_charges_the_annual_rate() -> None:
    """10,000 · 0.10 · 31,536,000 / 31,536,000 = 1,000 exactly."""
    assert interest_accrued(D(10000), TEN_PERCENT, YEAR_S) == D(1000)


def test_no_time_no_interest() -> None:
    assert interest_accrued(D(10000), TEN_PERCENT, ZERO) == ZERO
    assert interest_accrued(D(10000), TEN_PERCENT, D(-5)) == ZERO


def test_no_debt_no_interest() -> None:
    assert interest_accrued(ZERO, TEN_PERCENT, D(3600)) == ZERO


@pytest.mark.parametrize(
    ("debt", "mode", "base"),
    [
        ("1500", FreeMode.EXCESS, "500"),  # 1,500 − 1,000
        ("1500", FreeMode.FULL, "1500"),  # above the free amount: all of it
        ("800", FreeMode.EXCESS, "0"),  # below the free amount
        ("800", FreeMode.FULL, "0"),
        ("1000", FreeMode.EXCESS, "0"),  # exactly the free amount
        ("1000", FreeMode.FULL, "0"),  # "exceeds" is strict
    ],
)
def test_interest_base_by_free_mode(debt: str, mode: FreeMode, base: str) -> None:
    assert interest_base(D(debt), D(1000), mode) == D(base)


def test_excess_mode_over_a_year() -> None:
    """Debt 1,500, free 1,000, 10 %, one year: 500 · 0.10 = 50."""
    terms = InterestTerms(D("0.10"), free_amount=D(1000), free_mode=FreeMode.EXCESS)
    assert interest_accrued(D(1500), terms, YEAR_S) == D(50)


def test_full_mode_over_a_year() -> None:
    """Debt 1,500 > free 1,000, full: 1,500 · 0.10 = 150."""
    terms = InterestTerms(D("0.10"), free_amount=D(1000), free_mode=FreeMode.FULL)
    assert interest_accrued(D(1500), terms, YEAR_S) == D(150)


@pytest.mark.parametrize("mode", [FreeMode.EXCESS, FreeMode.FULL])
def test_debt_within_the_free_amount_accrues_nothing(mode: FreeMode) -> None:
    terms = InterestTerms(D("0.10"), free_amount=D(1000), free_mode=mode)
    assert interest_accrued(D(800), terms, YEAR_S) == ZERO


def test_liability_is_the_negative_part_of_equity() -> None:
    assert liability(D("-1500")) == D("1500")
    assert liability(D("250")) == ZERO
    assert liability(ZERO) == ZERO


@settings(max_examples=50, deadline=None)
@given(
    st.decimals(places=8, allow_nan=False, allow_infinity=False, min_value=D(0),
                max_value=D(10**9)),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_accrual_is_additive_over_intervals(debt: Decimal, first: int, second: int) -> None:
    """Constant debt: accrual over t1 + t2 = accrual over t1 + accrual over t2 (to rounding
    of the non-terminating / 31,536,000: within 1e-25 relative)."""
    whole = interest_accrued(debt, TEN_PERCENT, D(first + second))
    parts = (interest_accrued(debt, TEN_PERCENT, D(first))
             + interest_accrued(debt, TEN_PERCENT, D(second)))
    assert abs(whole - parts) <= max(whole, D(1)) * D("1e-25")


def test_lowest_equity_takes_each_position_at_its_worst_mark() -> None:
    # wallet 100, long 1 contract of size 1 from 1,000; marks 1,050 then 880: 100 − 120 = −20.
    from ledger.rules.interest import lowest_equity

    long = (Decimal("1"), Decimal("1000"), Decimal("1"), False,
            [Decimal("1050"), Decimal("880")])
    assert lowest_equity(Decimal("100"), [long]) == Decimal("-20")
    # A short of 2 from 1,000 is worst at 1,050: −100 more.
    short = (Decimal("-2"), Decimal("1000"), Decimal("1"), False,
             [Decimal("1050"), Decimal("880")])
    assert lowest_equity(Decimal("100"), [long, short]) == Decimal("-120")
    assert lowest_equity(Decimal("100"), []) == Decimal("100")
