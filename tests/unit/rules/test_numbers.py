"""ledger.numbers: strict parsing, the two posting roundings and who they favour, plain printing
(DESIGN §4, STYLE §4)."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import (
    ZERO,
    decimal_places,
    is_decimal_text,
    parse_decimal,
    quantum,
    round_paid,
    round_received,
    round_signed,
    significant_places,
    to_str,
)

numbers.install()

D = Decimal
AMOUNTS = st.decimals(places=12, allow_nan=False, allow_infinity=False,
                      min_value=D(0), max_value=D("1000000000"))


# ----------------------------------------------------------------------------- context


def test_context_has_34_digits_and_traps_float_mixing() -> None:
    """34 significant digits: 1/3 prints 34 threes; Decimal(0.1) and Decimal < 0.5 raise."""
    assert D(1) / D(3) == D("0." + "3" * 34)
    with pytest.raises(decimal.FloatOperation):
        D(0.1)
    with pytest.raises(decimal.FloatOperation):
        _ = D(1) < 0.5


def test_context_traps_division_by_zero() -> None:
    with pytest.raises(decimal.DivisionByZero):
        D(1) / D(0)


# ----------------------------------------------------------------------------- roundings


def test_round_paid_rounds_up_so_the_account_pays_a_little_more() -> None:
    """0.114155251… paid at 8 places → 0.11415526 (ceiling: the exchange is favoured)."""
    assert round_paid(D("0.1141552511415525"), 8) == D("0.11415526")
    assert round_paid(D("0.000000001"), 8) == D("0.00000001")


def test_round_received_rounds_down_so_the_account_receives_a_little_less() -> None:
    """1.234567891 received at 8 places → 1.23456789; 0.000000009 → 0."""
    assert round_received(D("1.234567891"), 8) == D("1.23456789")
    assert round_received(D("0.000000009"), 8) == ZERO


def test_exact_amounts_are_not_moved_by_either_rounding() -> None:
    assert round_paid(D("6"), 8) == D("6")
    assert round_received(D("175.12345678"), 8) == D("175.12345678")


def test_round_signed_credits_down_and_debits_up() -> None:
    """Docstring example: +1.234567891 → 1.23456789; −1.234567891 → −1.23456790 (8 places).
    Both directions favour the exchange: the balance ends lower than exact either way."""
    assert round_signed(D("1.234567891"), 8) == D("1.23456789")
    assert round_signed(D("-1.234567891"), 8) == D("-1.23456790")
    assert round_signed(D("-6"), 8) == D("-6")


def test_round_paid_refuses_a_negative_magnitude() -> None:
    """Magnitudes only: the sign is applied afterwards (an internal invariant, so `assert`)."""
    with pytest.raises(AssertionError):
        round_paid(D("-1"), 8)


@settings(max_examples=50, deadline=None)
@given(AMOUNTS)
def test_paid_is_never_below_and_received_never_above_the_exact_amount(amount: Decimal) -> None:
    """Invariant: received ≤ exact ≤ paid, and each is within one quantum (10^-8)."""
    paid, received = round_paid(amount, 8), round_received(amount, 8)
    assert received <= amount <= paid
    assert paid - amount < quantum(8)
    assert amount - received < quantum(8)
    assert decimal_places(paid) == 8


@settings(max_examples=50, deadline=None)
@given(AMOUNTS)
def test_round_signed_never_rounds_in_the_accounts_favour(amount: Decimal) -> None:
    """Invariant: round_signed(x) ≤ x for credits and debits alike."""
    assert round_signed(amount, 8) <= amount
    assert round_signed(-amount, 8) <= -amount


# ----------------------------------------------------------------------------- printing


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("1E+2"), "100"),
        (D("100"), "100"),
        (D("1.50"), "1.5"),
        (D("1.000"), "1"),
        (D("-0"), "0"),
        (D("-0.000"), "0"),
        (D("0E-8"), "0"),
        (D("1E-10"), "0.0000000001"),
        (D("-2.5E+3"), "-2500"),
        (D("16272.000"), "16272"),
    ],
)
def test_to_str_prints_plain_notation_without_trailing_zeros(value: Decimal, text: str) -> None:
    assert to_str(value) == text


@settings(max_examples=50, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=D("-1e20"),
                   max_value=D("1e20")))
def test_to_str_never_prints_an_exponent_and_parses_back(value: Decimal) -> None:
    text = to_str(value)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text) == value


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", ["0", "-0", "16272", "0.0001", "-6", "123456789.123456789"])
def test_parse_decimal_accepts_plain_decimals_exactly(text: str) -> None:
    assert parse_decimal(text) == D(text)
    assert is_decimal_text(text)


def test_parse_decimal_keeps_more_digits_than_the_context() -> None:
    """Parsing is exact: 40 digits stay 40 digits (the context rounds arithmetic, not input)."""
    text = "1234567890123456789012345678901234567890"
    assert parse_decimal(text) == D(text)
    assert to_str(parse_decimal(text)) == text


@pytest.mark.parametrize(
    "text",
    ["1.2.3", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e5", "1E5", " 1", "1 ", "",
     ".5", "1.", "+1", "1_000", "0x10", "--1", "1\n"],
)
def test_parse_decimal_refuses_anything_but_plain_decimals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)
    assert not is_decimal_text(text)


@pytest.mark.parametrize("value", [1, 1.5, None])
def test_parse_decimal_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValueError):
        parse_decimal(value)  # type: ignore[arg-type]


def test_parse_decimal_refuses_non_ascii_digits() -> None:
    with pytest.raises(ValueError):
        parse_decimal("\u0661\u0662")


# ----------------------------------------------------------------------------- places


def test_decimal_places_counts_trailing_zeros_and_significant_places_does_not() -> None:
    assert decimal_places(D("1.50")) == 2
    assert significant_places(D("1.50")) == 1
    assert decimal_places(D("100")) == 0
    assert significant_places(D("0.00")) == 0
    assert quantum(8) == D("0.00000001")
