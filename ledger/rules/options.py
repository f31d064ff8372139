"""Options: Black-76 prices and greeks in Decimal, OKX's unified-account option margin.

docs/options.md. Pure functions, no float anywhere: the normal CDF is an erf series in Decimal
and exp, ln and sqrt are Decimal's own methods, so every machine records the same digits.

Precision. Each function computes inside a local context of `WORK_DIGITS` (34 + 16 guard digits,
every trap of the ledger's context) and returns its result rounded half-even to the ledger's 34
significant digits (`PRECISION`). The erf series below has only positive terms (no cancellation)
and stops once a term is below 10^-WORK_DIGITS of the sum; so a result is correct to the
34 digits the ledger keeps except where the model itself cancels (a deep in-the-money price is
a difference of two large products: its absolute error stays below 10^-30 of the forward).

Black-76 (Black, "The pricing of commodity contracts", JFE 3, 1976), forward F, strike K, years
to expiry T, volatility σ, continuously compounded rate r:

    d1 = (ln(F/K) + σ²T/2) / (σ√T),  d2 = d1 − σ√T,  D = e^(−rT)
    call = D·(F·N(d1) − K·N(d2)),     put = D·(K·N(−d2) − F·N(−d1))
    delta = ∂V/∂F = D·N(d1) (call), −D·N(−d1) (put)
    gamma = ∂²V/∂F² = D·n(d1) / (F·σ√T)
    vega  = ∂V/∂σ = D·F·n(d1)·√T                 (per 1.00 of volatility)
    volga = ∂²V/∂σ² = vega · d1·d2 / σ
    theta = ∂V/∂t = −∂V/∂T = −D·F·n(d1)·σ / (2√T) + r·V   (per year; calendar time passing)
    rho   = ∂V/∂r = −T·V

At T = 0 (or σ = 0) the option is worth its discounted intrinsic value and the greeks are those
of the limit (delta 1/0 or −1/0, the rest 0).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

from ledger.numbers import PRECISION, ZERO, context

WORK_DIGITS = PRECISION + 16
"""Digits of the working context; results are rounded to the ledger's 34 (`PRECISION`)."""

ONE = Decimal(1)
TWO = Decimal(2)
HALF = Decimal("0.5")
ERF_SATURATION = Decimal(10)
"""|x| at or beyond which erf(x) = ±1 in 50 digits (erfc(10) ≈ 2.1·10^-45)."""


class OptionType(StrEnum):
    CALL = "call"
    PUT = "put"


_WORK = context()
_WORK.prec = WORK_DIGITS
_LEDGER = context()


def _work() -> decimal.Context:
    """Return the working context: the ledger's traps, `WORK_DIGITS` digits."""
    return _WORK


def _out(value: Decimal) -> Decimal:
    """Round a working value to the ledger's 34 digits (half-even, the ledger's context)."""
    return _LEDGER.plus(value)


@lru_cache(maxsize=1)
def _pi() -> Decimal:
    """Return π to WORK_DIGITS + 5 digits by Machin's formula, 16·atan(1/5) − 4·atan(1/239)."""
    with decimal.localcontext(_work()) as ctx:
        ctx.prec = WORK_DIGITS + 5

        def atan_inv(n: int) -> Decimal:
            total = ZERO
            power = ONE / n  # 1/n^(2k+1)
            square = Decimal(n * n)
            k = 0
            eps = Decimal(10) ** -(ctx.prec + 2)
            while power > eps:
                term = power / (2 * k + 1)
                total = total + term if k % 2 == 0 else total - term
                power = power / square
                k += 1
            return total

        return 16 * atan_inv(5) - 4 * atan_inv(239)


def _erf_work(x: Decimal) -> Decimal:
    """erf(x) in the working context (the caller holds it).

    erf(x) = 2/√π · e^(−x²) · Σ_{n≥0} 2^n x^(2n+1) / (1·3·5·…·(2n+1)) (Abramowitz & Stegun
    7.1.6): every term positive, so no cancellation; odd in x; ±1 beyond `ERF_SATURATION`.
    """
    if x < ZERO:
        return -_erf_work(-x)
    if x == ZERO:
        return ZERO
    if x >= ERF_SATURATION:
        return ONE
    square = x * x
    term = x
    total = x
    n = 0
    eps = Decimal(10) ** -(WORK_DIGITS + 2)
    while term > total * eps:
        n += 1
        term = term * 2 * square / (2 * n + 1)
        total += term
    return 2 / _pi().sqrt() * (-square).exp() * total


def erf(x: Decimal) -> Decimal:
    """Return erf(x) to 34 digits. Example: erf(1) = 0.8427007929497148693412206350826093."""
    with decimal.localcontext(_work()):
        value = _erf_work(x)
    return _out(value)


def _cdf_work(x: Decimal) -> Decimal:
    return (ONE + _erf_work(x / TWO.sqrt())) / 2


def _pdf_work(x: Decimal) -> Decimal:
    return (-(x * x) / 2).exp() / (2 * _pi()).sqrt()


def norm_cdf(x: Decimal) -> Decimal:
    """Return N(x) = (1 + erf(x/√2)) / 2 to 34 digits. Example: N(1.96) ≈ 0.9750021048517795."""
    with decimal.localcontext(_work()):
        value = _cdf_work(x)
    return _out(value)


def norm_pdf(x: Decimal) -> Decimal:
    """Return n(x) = e^(−x²/2)/√(2π) to 34 digits. Example: n(0) = 0.3989422804014326779…"""
    with decimal.localcontext(_work()):
        value = _pdf_work(x)
    return _out(value)


@dataclass(frozen=True, slots=True)
class Greeks:
    """Black-76 value and sensitivities of one unit of the underlying (see module docstring)."""

    price: Decimal
    delta: Decimal
    gamma: Decimal
    vega: Decimal
    volga: Decimal
    theta: Decimal
    rho: Decimal


@lru_cache(maxsize=65536)
def black76(
    option_type: OptionType,
    forward: Decimal,
    strike: Decimal,
    years: Decimal,
    vol: Decimal,
    rate: Decimal = ZERO,
) -> Greeks:
    """Return the Black-76 price and greeks (module docstring), each to 34 digits.

    Cached: the pricing of one instrument under one market state is shared by every account
    (portfolio margin prices each option once per scenario, not once per position).
    Example (Hull, Options, Futures and Other Derivatives, 5th ed., pp. 287-288; MathWorks
    `blkprice(20, 20, 0.09, 4/12, 0.25)`): F = K = 20, r = 9 %, T = 4/12, σ = 25 % → call = put
    = 1.1166 (to the four printed digits).
    """
    assert forward > ZERO and strike > ZERO, (forward, strike)
    assert years >= ZERO and vol >= ZERO, (years, vol)
    call = option_type is OptionType.CALL
    with decimal.localcontext(_work()):
        discount = (-rate * years).exp()
        if years == ZERO or vol == ZERO:
            intrinsic = max(ZERO, forward - strike) if call else max(ZERO, strike - forward)
            price = discount * intrinsic
            if call:
                delta = discount if forward > strike else ZERO
            else:
                delta = -discount if forward < strike else ZERO
            return Greeks(_out(price), _out(delta), ZERO, ZERO, ZERO, _out(rate * price),
                          _out(-years * price))
        root = years.sqrt()
        spread = vol * root
        d1 = ((forward / strike).ln() + vol * vol * years / 2) / spread
        d2 = d1 - spread
        if call:
            price = discount * (forward * _cdf_work(d1) - strike * _cdf_work(d2))
            delta = discount * _cdf_work(d1)
        else:
            price = discount * (strike * _cdf_work(-d2) - forward * _cdf_work(-d1))
            delta = -discount * _cdf_work(-d1)
        density = _pdf_work(d1)
        gamma = discount * density / (forward * spread)
        vega = discount * forward * density * root
        volga = vega * d1 * d2 / vol
        theta = -discount * forward * density * vol / (2 * root) + rate * price
        rho = -years * price
    return Greeks(_out(price), _out(delta), _out(gamma), _out(vega), _out(volga), _out(theta),
                  _out(rho))


def intrinsic(option_type: OptionType, underlying: Decimal, strike: Decimal) -> Decimal:
    """Return the intrinsic value per unit: max(0, S − K) (call), max(0, K − S) (put).

    Example: call K 50,000 at S 52,000 → 2,000; put at the same → 0.
    """
    if option_type is OptionType.CALL:
        return max(ZERO, underlying - strike)
    return max(ZERO, strike - underlying)


def otm_amount(option_type: OptionType, forward: Decimal, strike: Decimal) -> Decimal:
    """Return how far out of the money the option is: max(0, K − F) call, max(0, F − K) put.

    OKX "Option Margin" note 3 (the same-expiry forward against the strike).
    Example: call K 6,000 at forward 5,900 → 100.
    """
    if option_type is OptionType.CALL:
        return max(ZERO, strike - forward)
    return max(ZERO, forward - strike)


# --- OKX unified-account option margin (non-portfolio), docs/options.md ----------------------


@dataclass(frozen=True, slots=True)
class OptionMarginTerms:
    """OKX's option-margin parameters (help page "Option Margin", BTCUSD column).

    a = 0.1, b = 0.15, c = 0.03 for BTC (ETH c = 0.05); `factor_tiers` are (up_to contracts
    short, margin factor), the last tier open; OKX publishes them per underlying, 1 at tier 1.
    """

    a: Decimal = Decimal("0.1")
    b: Decimal = Decimal("0.15")
    c: Decimal = Decimal("0.03")
    factor_tiers: tuple[tuple[Decimal | None, Decimal], ...] = ((None, ONE),)


def margin_factor(short_contracts: Decimal, tiers: tuple[tuple[Decimal | None, Decimal], ...]
                  ) -> Decimal:
    """Return the margin factor of the tier holding `short_contracts` (the first whose up_to
    is ≥ it; the last tier is open). Example: tiers (10,000 → 1), (None → 1.02): 20,000 → 1.02.
    """
    assert tiers, "at least one tier"
    for up_to, factor in tiers:
        if up_to is None or short_contracts <= up_to:
            return factor
    return tiers[-1][1]


def short_option_imr(
    option_type: OptionType,
    forward: Decimal,
    strike: Decimal,
    mark: Decimal,
    index: Decimal,
    factor: Decimal,
    terms: OptionMarginTerms,
    coin_margined: bool,
) -> Decimal:
    """Return a short option's initial margin per unit of the underlying, in the settle asset.

    OKX: `max(a, b − OTM/F) · factor + mark` (coin-margined, in coin); USD(T)-margined
    `max(a, b − OTM/F) · factor · index + mark`. A long option needs none.
    Example (OKX's BTCUSD example, as copied by third parties): OTM 100, forward 5,900, factor
    1.02, mark 0.0575 BTC → (0.15 − 100/5,900) · 1.02 + 0.0575 = 0.19321186… BTC per BTC,
    × 0.1 BTC per contract = 0.01932 BTC (printed).
    """
    ratio = max(terms.a, terms.b - otm_amount(option_type, forward, strike) / forward)
    if coin_margined:
        return ratio * factor + mark
    return ratio * factor * index + mark


def short_option_mmr(
    option_type: OptionType,
    mark: Decimal,
    index: Decimal,
    factor: Decimal,
    terms: OptionMarginTerms,
    coin_margined: bool,
) -> Decimal:
    """Return a short option's maintenance margin per unit of the underlying (settle asset).

    OKX: call `c · factor + mark`; put `max(c, c · mark) · factor + mark` (coin-margined);
    USD(T)-margined: call `c · factor · index + mark`, put `max(c · index, c · mark) · factor
    + mark`. Example: BTC call, c 0.03, factor 1, mark 0.05 BTC → 0.08 BTC per BTC.
    """
    if coin_margined:
        base = terms.c if option_type is OptionType.CALL else max(terms.c, terms.c * mark)
        return base * factor + mark
    if option_type is OptionType.CALL:
        return terms.c * factor * index + mark
    return max(terms.c * index, terms.c * mark) * factor + mark


# --- cash flows (issue 15, docs/options.md) --------------------------------------------------


def option_fee(
    qty: Decimal, contract_size: Decimal, price: Decimal, underlying: Decimal, rate: Decimal,
    cap_rate: Decimal, coin_margined: bool,
) -> Decimal:
    """Return an option fill's fee in the settle asset, exact (posting rounds it up).

    OKX: `min(rate × underlying value, cap_rate × premium)`. Underlying value: `qty × size ×
    underlying` (USD(T)-margined; `underlying` is the base's price in the settle asset) or
    `qty × size` coins (coin-margined); premium `qty × size × price`. A negative rate (maker
    rebate) is not capped. Example: 10 × 0.01 BTC at 1,000 USDT, underlying 60,000, 0.03 % →
    min(0.1 × 60,000 × 0.0003 = 1.8, 0.125 × 100 = 12.5) = 1.8; at a price of 5 → cap
    0.125 × 0.5 = 0.0625.
    """
    value = qty * contract_size if coin_margined else qty * contract_size * underlying
    fee = value * rate
    if fee <= ZERO:
        return fee
    return min(fee, cap_rate * qty * contract_size * price)


def option_payout(terms: Any, price: Decimal) -> Decimal:
    """Return what one unit of the base pays the holder at expiry, in the settle asset.

    USD(T)-margined: the intrinsic value at the delivery price `price` (the base's price in
    the settle asset). Coin-margined (strike in USD, settled in coin): intrinsic / price.
    Example: call K 50,000 settled at 52,000 → 2,000 USDT, or 2,000 / 52,000 BTC.
    """
    value = intrinsic(OptionType(terms.option_type), price, terms.strike)
    return value / price if terms.coin_margined else value


@lru_cache(maxsize=65536)
def implied_vol(
    option_type: OptionType, forward: Decimal, strike: Decimal, years: Decimal, price: Decimal,
    rate: Decimal = ZERO,
) -> Decimal | None:
    """Return the Black-76 volatility that prices the option at `price`, or None if no
    volatility in (0, 10] does (a price at or below the discounted intrinsic value, or above
    the forward). Bisection in Decimal to 10^-12 of volatility (60 halvings of 10): used only
    when a mark arrives without `mark_iv` and margin needs a shocked price (docs/options.md).
    Example: the Hull case priced at 1.116641456558943478 → 0.25.
    """
    if years <= ZERO:
        return None
    low, high = Decimal("0.000001"), Decimal(10)
    if not black76(option_type, forward, strike, years, low, rate).price < price:
        return None
    if not price < black76(option_type, forward, strike, years, high, rate).price:
        return None
    tolerance = Decimal("1e-12")
    while high - low > tolerance:
        middle = (low + high) / 2
        if black76(option_type, forward, strike, years, middle, rate).price < price:
            low = middle
        else:
            high = middle
    return ((low + high) / 2).quantize(tolerance)
