"""Exact decimal arithmetic: the context, strict parsing, the posting roundings, printing.

Money, prices, rates and quantities are `Decimal` with 34 significant digits (DESIGN §4). State
figures are never rounded; posted amounts are rounded once, by `round_paid` (up: the account pays
a little more, the exchange is favoured) or `round_received` (down: the account receives a little
less, the exchange is favoured), and the difference goes to `system:rounding`. An asset whose
`payment_rounding` is `half_even` (issue 14) has its fees, funding and interest rounded by a
third helper, `round_half_even` (to the nearest step, favouring nobody on average).

Input bounds (issue 10). Every figure the ledger posts is quantised on the system side to 18
places (`postings.SYSTEM_PLACES`) inside 34 significant digits, so a posted figure must stay
below 10^16 (16 integer digits + 18 places = 34); a balance must stay exact in 34 digits. The
commands therefore refuse (`invalid_input`, naming the field and the bound) any figure outside:

| figure                                                          | range                 | places |
|-----------------------------------------------------------------|-----------------------|--------|
| amounts: deposit, withdraw, transfer, repay, set_spot_in_use    | (0, 10^15]            | ≤ 18   |
| adjust_isolated_margin amount; a fill's fee (signed)            | |x| ≤ 10^15           | ≤ 18   |
| free_amount, auto_exchange_threshold_usd, min_equity_usd, up_to | [0, 10^15]            | ≤ 18   |
| qty (fill, order)                                               | (0, 10^12]            | ≤ 18   |
| price (fill, order, mark_price, index_price)                    | [10^-12, 10^9]        | ≤ 12   |
| contract_size                                                   | [10^-12, 10^6]        | ≤ 12   |
| leverage, max_leverage                                          | [1, 1000]             | ≤ 18   |
| taker/maker fee rates                                           | |r| ≤ 0.1             | ≤ 18   |
| delivery_fee_rate                                               | [0, 0.1]              | ≤ 18   |
| funding rate                                                    | |r| ≤ 1               | ≤ 18   |
| interest annual_rate                                            | [0, 10]               | ≤ 18   |
| ratio, mmr, borrow_*_rate, auto_exchange_discount, other rates  | [0, 1]                | ≤ 18   |
| price shocks                                                    | (−1, 10]              | ≤ 18   |
| extreme_factor, multiplier, imr_factor, levels                  | [0, 100]              | ≤ 18   |
| `at` (UTC)                                                      | [2000-01-01, 2200-01-01)       |
| account, id, asset, symbol (NFC, no Cc/Cf/Cs/Co/Cn, …)          | 1–128 characters               |

Why these bounds (34 significant digits; the system side of a posting has 18 places):
- an amount: 15 integer digits + 18 places = 33 significant digits, exact;
- a balance: a sum of amounts; a posting that would take it beyond 34 exact digits is refused
  by the account (`exact_sum`, `invalid_input`), never rounded. 100 deposits of 10^15 make
  10^17, exact; in an 18-place asset, ten of 10^15 − 10^-18 are the most that stay exact;
- a fill's notional: linear `qty × contract_size × price` ≤ 10^12 × 10^6 × 10^9 = 10^27,
  inverse `qty × contract_size / price` ≤ 10^12 × 10^6 / 10^-12 = 10^30. Each factor is
  bounded alone at entry (realistic ranges: 10^12 contracts of a meme coin, a contract of
  10^6 units, a price of 10^9), but their product is not within 10^16, so a fill must also be
  checked against MAX_NOTIONAL = 10^15 once its instrument is known
  (`commands.notional_error`, a reference-data check the service makes): a fee is then at
  most 10^15 × 0.1 = 10^14 and a funding payment at most 10^15 × a rate of 1 (at the fill's
  price; a later mark moves it);
- interest: debt × annual_rate (≤ 10) × years; `at` before 2200 and from 2000 keeps the years
  ≤ 200 (the 9999-12-31 charge of the issue was ~7,974 years of interest: 7,980,295.78 USDT
  on ~10,000);
- rates, ratios and factors are ≤ 100, so a product with one of them grows by 2 digits at most.
"""

from __future__ import annotations

import decimal
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
PRECISION = 34

MAX_AMOUNT = Decimal(10) ** 15
"""Largest amount a command may carry (deposit, withdraw, transfer, fee, …)."""
MAX_QTY = Decimal(10) ** 12
"""Largest quantity in contracts of a fill or an order."""
MAX_PRICE = Decimal(10) ** 9
"""Largest price (fill, order, mark, index); the smallest is 10^-PRICE_PLACES."""
PRICE_PLACES = 12
MAX_CONTRACT_SIZE = Decimal(10) ** 6
MAX_NOTIONAL = Decimal(10) ** 15
"""Largest notional of one fill or order in its settle asset (checked with the instrument)."""
MAX_PLACES = 18
"""Most decimal places of an input figure (the largest asset precision)."""
MAX_LEVERAGE = Decimal(1000)
MIN_LEVERAGE = ONE

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
    step = _QUANTA.get(places)
    if step is None:
        step = _QUANTA[places] = ONE.scaleb(-places)
    return step


_QUANTA: dict[int, Decimal] = {}  # the steps are few and immutable: each is built once


def round_paid(amount: Decimal, places: int) -> Decimal:
    """Round an amount the account pays up to `places` decimals (favours the exchange)."""
    assert amount >= ZERO, amount  # magnitudes only; apply the sign afterwards
    return amount.quantize(quantum(places), rounding=ROUND_CEILING)


def round_received(amount: Decimal, places: int) -> Decimal:
    """Round an amount the account receives down to `places` decimals (favours the exchange)."""
    assert amount >= ZERO, amount
    return amount.quantize(quantum(places), rounding=ROUND_FLOOR)


def round_half_even(amount: Decimal, places: int) -> Decimal:
    """Round a paid or received amount to the nearest step of `places` decimals, a tie to the
    even step (favours nobody on average; asset policy `payment_rounding: half_even`, issue 14).

    The third posting rounding, on purpose beside `round_paid`/`round_received`: it is used
    only when an asset asks for it. Examples (2 places): 1.125 → 1.12, 1.115 → 1.12,
    1.1251 → 1.13.
    """
    assert amount >= ZERO, amount
    return amount.quantize(quantum(places), rounding=ROUND_HALF_EVEN)


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
    text = str(value)  # plain notation unless the exponent is positive or the value tiny
    if "E" in text:
        if value == ZERO:
            return "0"
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text  # a zero prints alike whatever its sign and places


def opt_str(value: Decimal | None) -> str | None:
    """Print an optional decimal: None stays None (a `null` in the contract's JSON)."""
    return None if value is None else to_str(value)


def exact_sum(left: Decimal, right: Decimal) -> Decimal | None:
    """Return `left + right` when it is exact in 34 significant digits, else None.

    Examples: 10^16 + 0.000000000000000001 needs 35 digits → None (the ledger context would
    round it silently to 10^16); 9,999,999,999,999,999.999999999999999999 +
    0.000000000000000001 = 10^16 exactly → 10^16.
    """
    try:
        return _EXACT.add(left, right)
    except decimal.Inexact:
        return None


_EXACT = context()
_EXACT.traps[decimal.Inexact] = True  # not Rounded: dropping trailing zeros loses nothing
