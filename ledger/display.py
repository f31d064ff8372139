"""Figures for people: the one place where the CLI's tables round numbers (issue 13).

The ledger's figures are exact (STYLE §4): a margin ratio or an entry price can carry 34
digits, and `--json` prints them exactly as they are. Tables are for reading, so every figure a
table shows goes through this module, which rounds **half-even, for display only** (nothing
printed here is ever parsed back, posted or compared):

- a price (entry, mark, liquidation price) to the decimal places of the mark in force for its
  instrument (`price(value, mark)`): a mark quoted to 0.1 shows entries to 0.1;
- an amount in an asset (balance, debt, equity, PnL, margin in the settle asset) to that
  asset's `precision` (`amount(value, places)`), trailing zeros dropped: 100 BTC shows as 100;
- a USD figure (equity, margins, available) to cents, 2 places (`usd`);
- a dimensionless ratio (margin ratio, margin level) to 4 places (`ratio`);
- any other decimal, e.g. in an event's details, to at most 8 places (`figure`);
- an undefined figure (None, a JSON null: no price yet, no liquidation price) as `—`.

Rounding uses its own context (precision 100), so a large figure never trips the ledger's
34-digit context, and a rounded zero never shows as "-0".
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal

UNDEFINED = "—"
USD_PLACES = 2
RATIO_PLACES = 4
OTHER_PLACES = 8
_WIDE = Context(prec=100, rounding=ROUND_HALF_EVEN)
_DECIMAL = re.compile(r"-?\d+\.\d+")  # integers (versions, ids) print as they are


def rounded(value: Decimal | str | None, places: int, *, strip: bool = False) -> str:
    """Return `value` rounded half-even to `places` decimals (display only), `—` for None.

    `strip` drops trailing zeros (and a bare point). Example: 0.000096153846… at 4 → 0.0001.
    """
    if value is None:
        return UNDEFINED
    number = value if isinstance(value, Decimal) else Decimal(value)
    shown = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=_WIDE)
    if shown.is_zero():
        shown = abs(shown)
    text = format(shown, "f")
    if strip and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def places_of(value: Decimal | str) -> int:
    """Return the decimal places a price is quoted to: "63429.5" → 1, "60000" → 0."""
    exponent = (value if isinstance(value, Decimal) else Decimal(value)).as_tuple().exponent
    assert isinstance(exponent, int), value  # a finite price
    return max(0, -exponent)


def price(value: Decimal | str | None, mark: Decimal | str | None) -> str:
    """Return a price rounded to the places of the mark in force (as given if no mark)."""
    if value is None:
        return UNDEFINED
    if mark is None:
        return figure(value)
    return rounded(value, places_of(mark))


def amount(value: Decimal | str | None, places: int) -> str:
    """Return an amount in an asset rounded to the asset's precision, trailing zeros dropped."""
    return rounded(value, places, strip=True)


def usd(value: Decimal | str | None) -> str:
    """Return a USD figure to cents."""
    return rounded(value, USD_PLACES)


def ratio(value: Decimal | str | None) -> str:
    """Return a dimensionless ratio to 4 places."""
    return rounded(value, RATIO_PLACES)


def figure(value: object) -> str:
    """Return any value for a table: a decimal with a fraction to at most 8 places, None as
    `—`, the rest as it prints."""
    if value is None:
        return UNDEFINED
    if isinstance(value, Decimal) or (isinstance(value, str) and _DECIMAL.fullmatch(value)):
        return rounded(value, OTHER_PLACES, strip=True)
    return str(value)
