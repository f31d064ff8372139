"""Exact decimal arithmetic: the context, strict parsing, the two posting roundings, printing.

Money, prices, rates and quantities are `Decimal` with 34 significant digits (DESIGN §4). State
figures are never rounded; posted amounts are rounded once, by `round_paid` (up: the account pays
a little more, the exchange is favoured) or `round_received` (down: the account receives a little
less, the exchange is favoured), and the difference goes to `system:rounding`.
"""

from __future__ import annotations

import decimal
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
PRECISION = 34

_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")  # ASCII digits only, as JSON


def context() -> decimal.Context:
    """Return the ledger's decimal context: 34 digits, every dangerous condition trapped."""
    return decimal.Context(
        prec=PRECISION,
        rounding=decimal.ROUND_HALF_EVEN,
        Emax=999_999,
        Emin=-999_999,
        traps=[
            decimal.InvalidOperation,
            decimal.DivisionByZero,
            decimal.Overflow,
            decimal.FloatOperation,
        ],
    )


def install() -> None:
    """Install the ledger's decimal context in this thread (every entrypoint calls it)."""
    decimal.setcontext(context())
    # New threads (the projection runner, the scheduler) start from the default context.
    decimal.DefaultContext.prec = PRECISION
    decimal.DefaultContext.traps[decimal.FloatOperation] = True
    decimal.DefaultContext.traps[decimal.InvalidOperation] = True
    decimal.DefaultContext.traps[decimal.DivisionByZero] = True


def is_decimal_text(text: str) -> bool:
    """Tell whether `text` is `-?digits[.digits]` (no exponent, no NaN, no Infinity)."""
    return bool(_DECIMAL_TEXT.match(text))


def parse_decimal(text: str) -> Decimal:
    """Parse a contract decimal string exactly; raise ValueError for anything else."""
    if not isinstance(text, str) or not _DECIMAL_TEXT.match(text):
        raise ValueError(f"not a decimal: {text!r}")
    return Decimal(text)


def quantum(places: int) -> Decimal:
    """Return 10^-places, the smallest step of an amount with `places` decimals."""
    return ONE.scaleb(-places)


def round_paid(amount: Decimal, places: int) -> Decimal:
    """Round an amount the account pays up to `places` decimals (favours the exchange)."""
    assert amount >= ZERO, amount  # magnitudes only; apply the sign afterwards
    return amount.quantize(quantum(places), rounding=ROUND_CEILING)


def round_received(amount: Decimal, places: int) -> Decimal:
    """Round an amount the account receives down to `places` decimals (favours the exchange)."""
    assert amount >= ZERO, amount
    return amount.quantize(quantum(places), rounding=ROUND_FLOOR)


def round_signed(change: Decimal, places: int) -> Decimal:
    """Round a signed balance change: a credit down, a debit up (both favour the exchange).

    Example: +1.234567891 → 1.23456789; −1.234567891 → −1.23456790 (8 places).
    """
    if change >= ZERO:
        return round_received(change, places)
    return -round_paid(-change, places)


def decimal_places(value: Decimal) -> int:
    """Return how many decimal places `value` is written with (trailing zeros count)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), value
    return max(0, -exponent)


def significant_places(value: Decimal) -> int:
    """Return how many decimal places `value` needs (trailing zeros do not count)."""
    if value == ZERO:
        return 0
    return decimal_places(value.normalize())


def to_str(value: Decimal) -> str:
    """Print a decimal in plain notation without trailing zeros ("1E+2" never appears).

    Examples: Decimal("100") → "100"; Decimal("1.50") → "1.5"; Decimal("-0") → "0".
    """
    if value == ZERO:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def opt_str(value: Decimal | None) -> str | None:
    """Print an optional decimal: None stays None (a `null` in the contract's JSON)."""
    return None if value is None else to_str(value)
