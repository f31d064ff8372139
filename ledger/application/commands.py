"""Commands: one frozen pydantic model per contract `type`, parsed strictly (contract/README.md).

A feed line is parsed with `json.loads(…, parse_float=JsonNumber, parse_int=JsonNumber)`, so a
JSON number keeps its literal text and is read exactly ("0.1" stays 0.1, never a float); an
exponent, NaN or Infinity is refused. Shape errors (unknown type or field, a missing field, a
malformed decimal or time, an amount that is not > 0) are `invalid_input`, checked here before
anything reads the store (DESIGN 6.11 check order).

Every figure has a documented range (the table in `ledger/numbers.py`): amounts (0, 10^15],
quantities (0, 10^12], prices (0, 10^9] with at most 12 places, contract_size (0, 10^6],
leverage [1, 1000], fee rates |r| ≤ 0.1, funding rates |r| ≤ 1, annual rates [0, 10], ratios
[0, 1], `at` from 2000-01-01 and before 2200-01-01 UTC. Names (account, id, asset, symbol) are
1–128 characters in NFC without control, format, surrogate, private-use or unassigned
characters and without a leading combining mark: refused, never normalised. Messages are the
ledger's own words and always name the field (`unknown field "foo"`, `missing field "qty"`,
`side must be one of: buy, sell`, `qty must be a decimal string …`); echoed input is cut to
SHOWN characters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ledger.domain.chain import canonical_bytes, text_hash
from ledger.errors import InvalidInputError
from ledger.numbers import (
    MAX_AMOUNT,
    MAX_CONTRACT_SIZE,
    MAX_LEVERAGE,
    MAX_NOTIONAL,
    MAX_PLACES,
    MAX_PRICE,
    MAX_QTY,
    MIN_LEVERAGE,
    ONE,
    PRECISION,
    PRICE_PLACES,
    ZERO,
    is_decimal_text,
    significant_places,
    to_str,
)
from ledger.times import parse_at

_DIGITS = re.compile(r"[0-9]+\Z")


class JsonNumber:
    """A JSON number's literal text, kept until a field says how to read it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number the ledger accepts")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {shown(key)}")
        result[key] = value
    return result


def load_line(text: str) -> Any:
    """Parse one feed line; JSON numbers become `JsonNumber`, NaN/Infinity and duplicate keys
    are refused (a repeated key would silently change the command)."""
    if text.startswith("\x00"):
        raise ValueError("the line is not UTF-8 text")
    return json.loads(
        text, parse_float=JsonNumber, parse_int=JsonNumber, parse_constant=_refuse_constant,
        object_pairs_hook=_unique_keys,
    )


SHOWN = 200
"""At most this many characters of an input are echoed in a message (a 75 MB line must not
become 45 MB of stderr)."""


def cut(text: str) -> str:
    """Return `text` cut to SHOWN characters (with "…"): for a raw `type` or `id` echoed in a
    rejection line (`feed._raw_identity`)."""
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def shown(value: Any) -> str:
    """Return `repr(value)` cut to SHOWN characters (with "…"), for echoing input in messages."""
    text = value.text if isinstance(value, JsonNumber) else repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def _power(bound: Decimal) -> str:
    """Print a bound as the docs do: 10^15 for a power of ten above 1000, else plainly."""
    exponent = bound.normalize().as_tuple()
    if bound >= 10_000 and exponent.digits == (1,):
        return f"10^{exponent.exponent}"
    return to_str(bound)


def _decimal(value: Any, places: int = MAX_PLACES) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    else:
        text = value.text if isinstance(value, JsonNumber) else value
        if not isinstance(text, str) or not is_decimal_text(text):
            raise ValueError(f"must be a decimal string (-?digits[.digits]), not {shown(text)}")
        number = Decimal(text)
    if not number.is_finite():
        raise ValueError("must be a finite decimal")
    if len(number.as_tuple().digits) > PRECISION:
        raise ValueError(f"has more than {PRECISION} significant digits")
    if significant_places(number) > places:
        raise ValueError(f"must have at most {places} decimal places")
    return number


def bounded(
    low: Decimal | None,
    high: Decimal,
    *,
    places: int = MAX_PLACES,
    low_open: bool = False,
    symmetric: bool = False,
    non_zero: bool = False,
) -> BeforeValidator:
    """A decimal in [low, high] ((low, high] when `low_open`); |x| ≤ high when `symmetric`."""

    def check(value: Any) -> Decimal:
        number = _decimal(value, places)
        if non_zero and number == ZERO:
            raise ValueError("must not be 0")
        if symmetric:
            if abs(number) > high:
                raise ValueError(f"must be between -{_power(high)} and {_power(high)}")
            return number
        assert low is not None
        if low_open and number <= low:
            raise ValueError(f"must be > {_power(low)}")
        if number < low:
            raise ValueError(f"must be ≥ {_power(low)}")
        if number > high:
            raise ValueError(f"must be at most {_power(high)}")
        return number

    return BeforeValidator(check)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    text = value.text if isinstance(value, JsonNumber) else value
    if not isinstance(text, str) or not _DIGITS.match(text) or len(text) > 4:
        raise ValueError(f"must be a non-negative integer (at most 4 digits), not {shown(text)}")
    return int(text)


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""The first business time the ledger accepts (`at`, `expiry`)."""
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Business times must be before this (200 years from EARLIEST bound interest and catch-up)."""


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time string")
    else:
        try:
            moment = parse_at(value if len(value) <= 64 else value[:64] + "…")
        except ValueError:
            raise ValueError(f"must be an RFC 3339 time with a zone, not {shown(value)}") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError("must be from 2000-01-01T00:00:00Z and before 2200-01-01T00:00:00Z")
    return moment


MAX_ITEMS = 100
"""Most items of a list field (tiers, bands, shocks)."""

MAX_NAME = 128
"""Longest account name, id, asset or symbol."""

_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character (zero-width, direction override, …)",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def _name(value: Any) -> str:
    """Names (account, id, asset, symbol) are refused, never normalised, outside the safe set:
    1 to 128 characters, NFC, no control, format, surrogate, private-use, unassigned or line
    separator character, no space at either end, no combining mark first."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters")
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    if value.isascii() and value.isprintable():
        return value  # printable ASCII: no refused category, NFC, no combining mark
    for char in value:
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            raise ValueError(f"must not hold {_REFUSED_CATEGORIES[category]} (U+{ord(char):04X})")
    if unicodedata.category(value[0]).startswith("M"):
        raise ValueError(f"must not start with a combining mark (U+{ord(value[0]):04X})")
    if not unicodedata.is_normalized("NFC", value):
        raise ValueError("must be in Unicode normal form NFC")
    return value


def _amount(*, signed: bool = False, non_zero: bool = False) -> BeforeValidator:
    if signed:
        return bounded(None, MAX_AMOUNT, symmetric=True, non_zero=non_zero)
    return bounded(ZERO, MAX_AMOUNT, low_open=True)


HUNDRED = Decimal(100)
TEN = Decimal(10)

Amount = Annotated[Decimal, _amount()]
"""Money a command moves: (0, 10^15], at most 18 places."""
SignedAmount = Annotated[Decimal, _amount(signed=True)]
NonZeroAmount = Annotated[Decimal, _amount(signed=True, non_zero=True)]
Limit = Annotated[Decimal, bounded(ZERO, MAX_AMOUNT)]
"""A money threshold or tier bound: [0, 10^15]."""
PositiveLimit = Annotated[Decimal, bounded(ZERO, MAX_AMOUNT, low_open=True)]
Qty = Annotated[Decimal, bounded(ZERO, MAX_QTY, low_open=True)]
Price = Annotated[Decimal, bounded(ZERO, MAX_PRICE, low_open=True, places=PRICE_PLACES)]
ContractSize = Annotated[
    Decimal, bounded(ZERO, MAX_CONTRACT_SIZE, low_open=True, places=PRICE_PLACES)]
Leverage = Annotated[Decimal, bounded(MIN_LEVERAGE, MAX_LEVERAGE)]
FeeRate = Annotated[Decimal, bounded(None, Decimal("0.1"), symmetric=True)]
DeliveryFeeRate = Annotated[Decimal, bounded(ZERO, Decimal("0.1"))]
FundingRate = Annotated[Decimal, bounded(None, ONE, symmetric=True)]
AnnualRate = Annotated[Decimal, bounded(ZERO, TEN)]
Fraction = Annotated[Decimal, bounded(ZERO, ONE)]
"""A ratio or rate in [0, 1] (collateral ratio, mmr, borrow rates, basis rates)."""
PositiveFraction = Annotated[Decimal, bounded(ZERO, ONE, low_open=True)]
BufferRate = Annotated[Decimal, bounded(ZERO, Decimal("0.5"))]
"""A bid or ask buffer in [0, 0.5] (issue 14: a valuation discount/premium on the index)."""
Shock = Annotated[Decimal, bounded(-ONE, TEN, low_open=True)]
Factor = Annotated[Decimal, bounded(ZERO, HUNDRED)]
"""A multiplier or level in [0, 100] (extreme_factor, multiplier, imr_factor, levels)."""
MarkIv = Annotated[Decimal, bounded(ZERO, TEN, low_open=True)]
"""An option's implied volatility in (0, 10]."""
Int = Annotated[int, BeforeValidator(_integer)]
At = Annotated[datetime, BeforeValidator(_time)]
Name = Annotated[str, BeforeValidator(_name)]


class Command(BaseModel):
    """Every command has `type` and `at`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    TYPE: ClassVar[str] = ""
    type: str
    at: At

    ADDED_DEFAULTS: ClassVar[dict[str, Any]] = {}
    """Fields added after stores were written, with their defaults: left out of the content
    while at their default, so a command re-run against an older store keeps its digest."""

    FLAT: ClassVar[bool] = False
    """Every field is a plain value (no nested model, no list): the content is the model's
    own dict, as `model_dump` would copy it."""

    def content(self) -> dict[str, Any]:
        """Return the parsed content, defaults applied (what "same content" compares)."""
        if self.FLAT and not self.ADDED_DEFAULTS:
            return dict(self.__dict__)
        data = dict(self.__dict__) if self.FLAT else self.model_dump()
        for name, default in self.ADDED_DEFAULTS.items():
            if data.get(name) == default:
                del data[name]
        interest = data.get("interest")
        if isinstance(interest, dict) and interest.get("accrual") == "per_second":
            del interest["accrual"]  # issue 14: as the content was before `accrual`
        return data


class Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- reference


class CollateralTierIn(Part):
    up_to: PositiveLimit | None
    ratio: Fraction


class InterestIn(Part):
    annual_rate: AnnualRate
    free_amount: Limit = ZERO
    free_mode: Literal["excess", "full"] = "excess"
    accrual: Literal["per_second", "hourly_snapshot", "started_hours",
                     "hours_rounded_up"] = "per_second"  # issue 14


def _check_bounds(bounds: list[Decimal | None], what: str) -> None:
    if any(bound is None for bound in bounds[:-1]):
        raise ValueError(f"only the last {what} may have up_to null")
    closed = [bound for bound in bounds if bound is not None]
    if any(a >= b for a, b in zip(closed, closed[1:], strict=False)):
        raise ValueError(f"{what} up_to must strictly increase")


class AssetCmd(Command):
    TYPE = "asset"
    asset: Name
    precision: Int = 8
    collateral_tiers: Annotated[list[CollateralTierIn], Field(max_length=MAX_ITEMS)] | None = None
    tier_basis: Literal["quantity", "usd_value"] = "quantity"
    interest: InterestIn | None = None
    auto_exchange_threshold_usd: Limit | None = None
    auto_exchange_discount: PositiveFraction | None = None
    borrow_mmr_rate: Fraction = Decimal("0.02")
    borrow_imr_rate: Fraction = Decimal("0.1")
    # exchange conventions (issue 14)
    auto_exchange_trigger: Literal["above", "at_or_above"] = "above"
    payment_rounding: Literal["payer_pays_up", "half_even"] = "payer_pays_up"
    bid_buffer: BufferRate = ZERO  # Binance multi-assets bid/ask buffers
    ask_buffer: BufferRate = ZERO
    ADDED_DEFAULTS = {"auto_exchange_trigger": "above", "payment_rounding": "payer_pays_up",
                      "bid_buffer": ZERO, "ask_buffer": ZERO}

    @model_validator(mode="after")
    def _check(self) -> AssetCmd:
        if self.precision > 18:
            raise ValueError("precision must be between 0 and 18")
        if self.collateral_tiers:
            _check_bounds([t.up_to for t in self.collateral_tiers], "collateral tier")
        return self


class RiskTierIn(Part):
    up_to: PositiveLimit | None
    mmr: Fraction
    max_leverage: Leverage
    deduction: Limit | None = None

    @model_validator(mode="after")
    def _mmr_below_one(self) -> RiskTierIn:
        if self.mmr >= 1:
            raise ValueError("mmr must be below 1")
        return self


class FactorTierIn(Part):
    """An option margin-factor tier: short contracts up to `up_to` → `factor` (issue 15)."""

    up_to: PositiveLimit | None
    factor: Factor


class InstrumentCmd(Command):
    TYPE = "instrument"
    symbol: Name
    kind: Literal["linear_perpetual", "inverse_perpetual", "linear_future", "option"]
    base: Name
    settle: Name
    contract_size: ContractSize
    risk_tiers: Annotated[list[RiskTierIn], Field(max_length=MAX_ITEMS)] | None = None
    mm_basis: Literal["mark", "entry"] = "mark"
    taker_fee_rate: FeeRate = ZERO
    maker_fee_rate: FeeRate = ZERO
    close_fee_in_mm: bool = False
    session_settlement: bool = False
    funding_interval_hours: Int | None = None
    auto_add_amount: Literal["maintenance", "initial", "restore_initial_rate"] = "maintenance"
    expiry: At | None = None
    delivery_fee_rate: DeliveryFeeRate | None = None
    # exchange conventions (issue 14)
    funding_rate_basis: Literal["per_interval", "per_8h"] = "per_interval"
    close_fee_basis: Literal["entry", "liquidation_price", "reserved"] = "entry"
    price_tick: Price | None = None
    im_includes_close_fee: bool = False
    ADDED_DEFAULTS = {"funding_rate_basis": "per_interval", "close_fee_basis": "entry",
                      "price_tick": None, "im_includes_close_fee": False}
    # options (issue 15, docs/options.md): required for kind "option", refused otherwise
    option_type: Literal["call", "put"] | None = None
    strike: Price | None = None
    fee_cap_rate: Fraction | None = None
    option_a: Fraction | None = None
    option_b: Fraction | None = None
    option_c: Fraction | None = None
    margin_factor_tiers: Annotated[list[FactorTierIn], Field(max_length=MAX_ITEMS)] | None = None
    ADDED_DEFAULTS = {**ADDED_DEFAULTS, **dict.fromkeys(
        ("option_type", "strike", "fee_cap_rate", "option_a", "option_b", "option_c",
         "margin_factor_tiers"))}

    @model_validator(mode="after")
    def _check(self) -> InstrumentCmd:
        if self.kind == "option":
            return self._check_option()
        if any(getattr(self, name) is not None for name in OPTION_ONLY):
            raise ValueError(f"{', '.join(OPTION_ONLY)} are for kind option only")
        if not self.risk_tiers:
            raise ValueError("risk_tiers must not be empty")
        _check_bounds([t.up_to for t in self.risk_tiers], "risk tier")
        hours = self.funding_interval_hours
        if self.kind == "linear_future":
            if self.expiry is None:
                raise ValueError("a linear_future needs an expiry")
            if self.session_settlement or hours is not None:
                raise ValueError("a linear_future has no funding and no session settlement")
        else:
            if self.expiry is not None:
                raise ValueError("a perpetual has no expiry")
            if self.delivery_fee_rate is not None:
                raise ValueError("a perpetual has no delivery fee")
            if hours is not None and (hours < 1 or 24 % hours):
                raise ValueError("funding_interval_hours must divide 24")
        if self.session_settlement and self.kind != "linear_perpetual":
            raise ValueError("session settlement is for linear perpetuals")
        return self

    def _check_option(self) -> InstrumentCmd:
        if self.option_type is None:
            raise ValueError("an option needs option_type (call or put)")
        if self.strike is None:
            raise ValueError("an option needs a strike > 0")
        if self.expiry is None:
            raise ValueError("an option needs an expiry")
        if self.session_settlement or self.funding_interval_hours is not None:
            raise ValueError("an option has no funding and no session settlement")
        if self.risk_tiers:
            _check_bounds([t.up_to for t in self.risk_tiers], "risk tier")
        if self.margin_factor_tiers:
            _check_bounds([t.up_to for t in self.margin_factor_tiers], "margin factor tier")
        return self


OPTION_ONLY = ("option_type", "strike", "fee_cap_rate", "option_a", "option_b", "option_c",
               "margin_factor_tiers")


class MarkPriceCmd(Command):
    TYPE = "mark_price"
    FLAT = True
    symbol: Name
    price: Price
    mark_iv: MarkIv | None = None  # options
    ADDED_DEFAULTS = {"mark_iv": None}


class IndexPriceCmd(Command):
    TYPE = "index_price"
    FLAT = True
    asset: Name
    price: Price


class FundingRateCmd(Command):
    TYPE = "funding_rate"
    symbol: Name
    rate: FundingRate


class MultiplierTierIn(Part):
    up_to: PositiveLimit | None
    multiplier: Factor


class RateBandIn(Part):
    up_to: PositiveLimit | None
    rate: Fraction


class VegaRateIn(Part):
    """MR3: tenors up to `years` shock the volatility by `shock` (relative; issue 15)."""

    years: PositiveLimit
    shock: Fraction


class RiskUnitCmd(Command):
    TYPE = "risk_unit"
    asset: Name
    price_shocks: Annotated[list[Shock], Field(max_length=MAX_ITEMS)] | None = None
    extreme_shocks: Annotated[list[Shock], Field(max_length=MAX_ITEMS)] | None = None
    extreme_factor: Factor | None = None
    basis_rate: Fraction | None = None
    basis_annual_rate: AnnualRate | None = None
    spot_basis_rate: Fraction | None = None
    min_charge_rate: Fraction | None = None
    min_charge_tiers: Annotated[list[MultiplierTierIn], Field(max_length=MAX_ITEMS)] | None = None
    depeg_bands: Annotated[list[RateBandIn], Field(max_length=MAX_ITEMS)] | None = None
    # options (issue 15, docs/options.md)
    vol_shocks: Annotated[list[Shock], Field(min_length=1, max_length=MAX_ITEMS)] | None = None
    rate: Fraction | None = None
    theta_days: Factor | None = None
    vega_rates: Annotated[list[VegaRateIn], Field(min_length=1, max_length=MAX_ITEMS)] | None = None
    rate_shock: Fraction | None = None
    short_option_rate: Fraction | None = None
    ADDED_DEFAULTS = dict.fromkeys(
        ("vol_shocks", "rate", "theta_days", "vega_rates", "rate_shock", "short_option_rate"))

    @model_validator(mode="after")
    def _check(self) -> RiskUnitCmd:
        for shocks in (self.price_shocks, self.extreme_shocks):
            if shocks is not None:
                if not shocks:
                    raise ValueError("a shock list must not be empty")
        if self.min_charge_tiers is not None:
            _check_bounds([t.up_to for t in self.min_charge_tiers], "min charge tier")
        if self.depeg_bands is not None:
            _check_bounds([b.up_to for b in self.depeg_bands], "depeg band")
        if self.vega_rates is not None:
            _check_bounds([v.years for v in self.vega_rates], "vega rate years")
        return self


class PortfolioMarginCmd(Command):
    TYPE = "portfolio_margin"
    min_equity_usd: Limit = Decimal("10000")
    imr_factor: Factor = Decimal("1.3")
    liquidation_level: Factor = Decimal("1")
    target_level: Factor = Decimal("1.1")

    @model_validator(mode="after")
    def _check(self) -> PortfolioMarginCmd:
        if self.imr_factor < 1:
            raise ValueError("imr_factor must be ≥ 1")
        if not ZERO < self.liquidation_level <= self.target_level:
            raise ValueError("need 0 < liquidation_level ≤ target_level")
        return self


# ----------------------------------------------------------------------------- accounts

Mode = Literal["single_asset", "multi_asset", "portfolio"]


class OpenAccountCmd(Command):
    TYPE = "open_account"
    account: Name
    mode: Mode

    @model_validator(mode="after")
    def _not_a_system_name(self) -> OpenAccountCmd:
        if self.account.startswith("system:"):
            raise ValueError("names starting with 'system:' are the ledger's own accounts")
        return self


class ChangeModeCmd(Command):
    TYPE = "change_mode"
    account: Name
    mode: Mode


class DepositCmd(Command):
    TYPE = "deposit"
    FLAT = True
    id: Name
    account: Name
    asset: Name
    amount: Amount


class WithdrawCmd(Command):
    TYPE = "withdraw"
    FLAT = True
    id: Name
    account: Name
    asset: Name
    amount: Amount


class TransferCmd(Command):
    TYPE = "transfer"
    FLAT = True
    id: Name
    from_: Name
    to: Name
    asset: Name
    amount: Amount

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _rename_from(cls, data: Any) -> Any:
        if isinstance(data, dict) and "from" in data:
            data = dict(data)
            data["from_"] = data.pop("from")
        elif isinstance(data, dict) and "from_" in data:
            raise ValueError('unknown field "from_"')
        return data

    @model_validator(mode="after")
    def _check(self) -> TransferCmd:
        if self.from_ == self.to:
            raise ValueError("a transfer needs two different accounts")
        return self


class FillCmd(Command):
    TYPE = "fill"
    FLAT = True
    id: Name
    account: Name
    symbol: Name
    side: Literal["buy", "sell"]
    qty: Qty
    price: Price
    liquidity: Literal["taker", "maker"] = "taker"
    fee: SignedAmount | None = None
    margin_type: Literal["cross", "isolated"] = "cross"
    leverage: Leverage | None = None
    liquidation: bool = False


class OrderIn(Part):
    qty: Qty
    price: Price


class OpenOrdersCmd(Command):
    TYPE = "open_orders"
    account: Name
    symbol: Name
    buy: OrderIn | None = None
    sell: OrderIn | None = None


class AdjustIsolatedMarginCmd(Command):
    TYPE = "adjust_isolated_margin"
    id: Name
    account: Name
    symbol: Name
    amount: NonZeroAmount


class SetAutoAddMarginCmd(Command):
    TYPE = "set_auto_add_margin"
    account: Name
    symbol: Name
    enabled: bool


class SetLeverageCmd(Command):
    TYPE = "set_leverage"
    account: Name
    symbol: Name
    leverage: Leverage


class RepayCmd(Command):
    TYPE = "repay"
    id: Name
    account: Name
    asset: Name
    amount: Amount
    with_asset: Name


class SetSpotInUseCmd(Command):
    TYPE = "set_spot_in_use"
    account: Name
    asset: Name
    amount: Limit | None


# ----------------------------------------------------------------------------- periodic


class PeriodicCmd(Command):
    id: Name | None = None


class SettleFundingCmd(PeriodicCmd):
    TYPE = "settle_funding"


class ChargeInterestCmd(PeriodicCmd):
    TYPE = "charge_interest"


class CheckMarginCmd(PeriodicCmd):
    TYPE = "check_margin"


class SettleDeliveryCmd(PeriodicCmd):
    TYPE = "settle_delivery"


COMMANDS: dict[str, type[Command]] = {
    model.TYPE: model
    for model in (
        AssetCmd, InstrumentCmd, MarkPriceCmd, IndexPriceCmd, FundingRateCmd, RiskUnitCmd,
        PortfolioMarginCmd, OpenAccountCmd, ChangeModeCmd, DepositCmd, WithdrawCmd, TransferCmd,
        FillCmd, OpenOrdersCmd, AdjustIsolatedMarginCmd, SetAutoAddMarginCmd, SetLeverageCmd,
        RepayCmd, SetSpotInUseCmd, SettleFundingCmd, ChargeInterestCmd, CheckMarginCmd,
        SettleDeliveryCmd,
    )
}


def parse_command(data: Any) -> Command:
    """Return the command a decoded feed line holds, or raise `InvalidInputError`."""
    if not isinstance(data, dict):
        raise InvalidInputError("a command is a JSON object")
    kind = data.get("type")
    model = COMMANDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        if "type" not in data:
            raise InvalidInputError('missing field "type"')
        raise InvalidInputError(f"unknown command type {shown(kind)}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInputError(_describe(error)) from None


def _path(loc: tuple[Any, ...]) -> str:
    """Print an error location as the feed writes it: `risk_tiers[0].mmr`, `from`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = "from" if part == "from_" else str(part)
            text += f".{name}" if text else name
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def _choices(expected: str) -> str:
    """"'buy' or 'sell'" (pydantic's wording) → "buy, sell"."""
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


_TYPE_WORDS = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "none_required": "must be null",
}


def describe_error(item: Any) -> str:
    """Say one pydantic error in the ledger's words, naming the field (issue 13)."""
    kind = item.get("type", "")
    where = _path(tuple(item.get("loc", ())))
    context = item.get("ctx") or {}
    if kind == "extra_forbidden":
        return f'unknown field "{where}"'
    if kind == "missing":
        return f'missing field "{where}"'
    if kind == "literal_error":
        return f"{where} must be one of: {_choices(str(context.get('expected', '')))}"
    if kind == "too_long":
        return f"{where} must hold at most {context.get('max_length')} items"
    if kind in _TYPE_WORDS:
        return f"{where} {_TYPE_WORDS[kind]}"
    if kind in ("value_error", "assertion_error"):
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        message = message.removeprefix("Assertion failed, ")
        return f"{where} {message}" if where else message
    return f"{where} is not valid" if where else "the command is not valid"


def _describe(error: ValidationError) -> str:
    return "; ".join(describe_error(item) for item in error.errors()[:3])


def parse_line(text: str) -> Command:
    """Parse one feed line (JSON) into a command, or raise `InvalidInputError`.

    The hottest commands (fills, prices, money movements) take a fast path first
    (`fast_command`); whatever it is not sure of goes the full way, which alone words errors."""
    command = fast_command(text)
    if command is not None:
        return command
    return parse_line_strictly(text)


def parse_line_strictly(text: str) -> Command:
    """Parse one feed line through the command models (the reference path, and the only one
    that reports errors)."""
    try:
        data = load_line(text)
    except (ValueError, RecursionError) as error:
        message = str(error)
        if len(message) > SHOWN:
            message = message[:SHOWN] + "…"
        raise InvalidInputError(f"not a JSON object: {message}") from None
    return parse_command(data)


# ----------------------------------------------------------------------------- fast path
#
# Issue 11: most of a feed is fills and prices, and the pydantic models cost more than the
# rest of parsing. `fast_command` accepts a flat line of a hot type when every field passes the
# very checks the model runs (the same functions: `_name`, `_time`, the `bounded` checks) and
# builds the model without running them again. It never decides a refusal: on anything it is
# not sure of it answers None and the line goes through `parse_line_strictly`, which words the
# error. A property test (tests/properties/test_fast_path.py) compares both on random lines.

Check = Any  # a field check: returns the value to keep or raises ValueError


def _check_of(annotated: Any) -> Check:
    """The check function of an `Annotated[..., BeforeValidator(check)]` field type."""
    return annotated.__metadata__[0].func


def _optional(check: Check) -> Check:
    def optional(value: Any) -> Any:
        return None if value is None else check(value)

    return optional


def _literal(*allowed: str) -> Check:
    def literal(value: Any) -> Any:
        if type(value) is not str or value not in allowed:
            raise ValueError("not allowed")
        return value

    return literal


def _strict_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("not a bool")
    return value


def _any_text(value: Any) -> str:
    if type(value) is not str:
        raise ValueError("not a string")
    return value


def _remembered(check: Check, size: int = 4096) -> Check:
    """The same check, remembering its answers for recent texts (a feed repeats its prices,
    quantities and names; a `Decimal` is immutable, so sharing one is safe)."""
    answers: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        answer = answers.get(value) if type(value) is str else None
        if answer is None:
            answer = check(value)
            if type(value) is str:
                if len(answers) >= size:
                    answers.clear()
                answers[value] = answer
        return answer

    return remembered


def _fast_name(value: Any) -> Any:
    """`_name` with its common case first: printable ASCII without spaces at either end."""
    if (type(value) is str and 0 < len(value) <= MAX_NAME and value.isascii()
            and value.isprintable() and value[0] != " " and value[-1] != " "):
        return value
    return _name(value)


@dataclass(frozen=True)
class _FastModel:
    model: type[Command]
    checks: dict[str, Check]  # by JSON name (`from` for `from_`)
    required: frozenset[str]  # JSON names
    defaults: dict[str, Any]  # field name → default, in the model's field order


_FIELD_CHECKS: dict[str, _FastModel] = {}


def _fast(model: type[Command], checks: dict[str, Check]) -> None:
    """Register a model for the fast path: a check per field (every field of the model, the
    JSON name of each: `from` for `from_`)."""
    fields = model.model_fields
    names = {"from" if name == "from_" else name for name in fields}
    assert names == set(checks), (model, names ^ set(checks))
    assert not model.__pydantic_post_init__ and model.model_config.get("extra") == "forbid"
    required = frozenset("from" if name == "from_" else name
                         for name, info in fields.items() if info.is_required())
    defaults = {name: (None if info.is_required() else info.get_default())
                for name, info in fields.items()}
    _FIELD_CHECKS[model.TYPE] = _FastModel(model, checks, required, defaults)


def _construct(spec: _FastModel, values: dict[str, Any]) -> Command:
    """Build a model from checked values as `model_construct` does (defaults for the fields
    not given, which are not in `model_fields_set`), without its generic alias handling."""
    command = object.__new__(spec.model)
    fields_set = set(values)
    data = {name: values[name] if name in fields_set else default
            for name, default in spec.defaults.items()}
    object.__setattr__(command, "__dict__", data)
    object.__setattr__(command, "__pydantic_fields_set__", fields_set)
    object.__setattr__(command, "__pydantic_extra__", None)
    object.__setattr__(command, "__pydantic_private__", None)
    return command


_NAME = _remembered(_fast_name)
_AT = _time
_TYPE = _any_text
_QTY = _remembered(_check_of(Qty))
_PRICE = _remembered(_check_of(Price))
_AMOUNT = _remembered(_check_of(Amount))
_fast(FillCmd, {
    "type": _TYPE, "at": _AT, "id": _NAME, "account": _NAME, "symbol": _NAME,
    "side": _literal("buy", "sell"), "qty": _QTY, "price": _PRICE,
    "liquidity": _literal("taker", "maker"),
    "fee": _optional(_remembered(_check_of(SignedAmount))),
    "margin_type": _literal("cross", "isolated"),
    "leverage": _optional(_remembered(_check_of(Leverage))), "liquidation": _strict_bool})
_fast(MarkPriceCmd, {"type": _TYPE, "at": _AT, "symbol": _NAME, "price": _PRICE,
                     "mark_iv": _optional(_remembered(_check_of(MarkIv)))})
_fast(IndexPriceCmd, {"type": _TYPE, "at": _AT, "asset": _NAME, "price": _PRICE})
_fast(DepositCmd, {"type": _TYPE, "at": _AT, "id": _NAME, "account": _NAME, "asset": _NAME,
                   "amount": _AMOUNT})
_fast(WithdrawCmd, {"type": _TYPE, "at": _AT, "id": _NAME, "account": _NAME, "asset": _NAME,
                    "amount": _AMOUNT})
_fast(TransferCmd, {"type": _TYPE, "at": _AT, "id": _NAME, "from": _NAME, "to": _NAME,
                    "asset": _NAME, "amount": _AMOUNT})


def fast_command(text: str) -> Command | None:
    """Return the command of a well-formed flat line of a hot type, or None (then the line
    takes the full path, `parse_line_strictly`, which decides and words any refusal)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, lone surrogates, …: the full path decides
        return None
    if type(data) is not dict:
        return None
    kind = data.get("type")
    spec = _FIELD_CHECKS.get(kind) if type(kind) is str else None
    if spec is None:
        return None
    # orjson keeps the last of repeated keys where the full path refuses the line. With no
    # quote or backslash in any key or text value, every `"` of the line delimits one: four per
    # text member, two per other member; a repeated key adds more than the object holds.
    checks = spec.checks  # the keys allowed: none holds a quote or a backslash
    values: dict[str, Any] = {}
    quotes = 0
    try:
        for key, value in data.items():
            check = checks.get(key)
            if check is None:
                return None
            form = type(value)
            if form is str:
                if '"' in value or "\\" in value:
                    return None
                quotes += 4
            elif value is None or form is bool:
                quotes += 2
            else:
                return None  # a number (the full path keeps its literal text), a list, …
            values[key] = check(value)
    except (ValueError, TypeError, ArithmeticError):
        return None
    if quotes != text.count('"') or not spec.required <= values.keys():
        return None
    if "from" in values:
        values["from_"] = values.pop("from")
        if values["from_"] == values["to"]:
            return None
    return _construct(spec, values)


# ----------------------------------------------------------------------------- keys

KEY_SEPARATOR = "|"
"""Between a key's command type and the rest: the types hold no `|`, so `type|` is a stable
prefix per type (`ledger_commands` is searched by it: `check_margin|@`)."""


def _parts(*parts: str) -> str:
    """Encode user text injectively: a JSON array (`["a|b","c"]` ≠ `["a","b|c"]`).

    Printable text without `"` or `\\` is what JSON writes as it is (the common case, built
    directly: the same text as `json.dumps`, at a fraction of the cost)."""
    for part in parts:
        if not part.isprintable() or '"' in part or "\\" in part:
            return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return '["' + '","'.join(parts) + '"]'


def idempotency_key(command: Command) -> str | None:
    """Return the idempotency key of a money command: (type, account — `from` for a transfer,
    id); periodic commands are keyed by their `at`; other commands have none.

    Encoding (injective, one stable prefix per type):
    - money commands: `deposit|["alice","d1"]` — account and id as a JSON array, so names
      holding `|` cannot collide (`a|b`+`c` and `a`+`b|c` were both `deposit|a|b|c`);
    - periodic commands: `check_margin|@2025-01-01T08:00:00+00:00` (no user text; unchanged,
      so `command_times("check_margin|@")` still finds them);
    - `repeat_key`: `mark_price|@<at>|<digest>` (no user text; unchanged).
    Stores written before revision 0004 held `deposit|alice|d1`; 0004 rewrites them.
    """
    if isinstance(command, TransferCmd):
        return f"transfer{KEY_SEPARATOR}{_parts(command.from_, command.id)}"
    if isinstance(command, PeriodicCmd):
        return periodic_prefix(command.type) + command.at.isoformat()
    identifier = getattr(command, "id", None)
    account = getattr(command, "account", None)
    if identifier is None or account is None:
        return None
    return f"{command.type}{KEY_SEPARATOR}{_parts(account, identifier)}"


def identity(command: Command) -> tuple[str, str, str]:
    """Return (canonical content, its SHA-256, idempotency key) of a command: what the
    service compares a repeat by and stores with it (computed once per command)."""
    content = canonical_bytes(command.content())
    digest = text_hash(content)
    return content.decode(), digest, idempotency_key(command) or repeat_key(command, digest)


def periodic_prefix(kind: str) -> str:
    """Return the key prefix of every periodic command of a type (`check_margin|@`)."""
    return f"{kind}{KEY_SEPARATOR}@"


def repeat_key(command: Command, digest: str) -> str:
    """Return the key that recognises a repeat of a command without an id (reference data,
    settings): the same type, `at` and content. A feed re-run after a crash is then
    acknowledged line by line instead of recording prices or settings twice."""
    return f"{command.type}{KEY_SEPARATOR}@{command.at.isoformat()}{KEY_SEPARATOR}{digest}"


# ----------------------------------------------------------------------------- helpers for
# checks that need reference data (the service calls them; DESIGN 6.11 check order)


def notional_error(
    qty: Decimal, contract_size: Decimal, price: Decimal, *, inverse: bool, field: str = "qty"
) -> str | None:
    """Return why a fill, a position or an order is too large once its instrument is known,
    or None (call with `terms.is_inverse`).

    Linear: `qty × contract_size × price`; inverse: `qty × contract_size / price` (in coin).
    Each factor is bounded at entry, the product is not: 10^12 × 10^6 × 10^9 = 10^27 would post
    fees and PnL beyond the 34 digits the ledger carries (numbers.py). Example: 10 contracts of
    0.0001 BTC at 30,000 = 30 USDT → None; 10^12 at 10^6 × 10^9 → a message.
    """
    size = qty * contract_size
    notional = size / price if inverse else size * price
    if notional > MAX_NOTIONAL:
        operator = "/" if inverse else "×"
        return (f"{field}: the notional {field} × contract_size {operator} price is "
                f"{to_str(notional) if notional < 10**40 else 'above 10^40'}; it must be at most "
                f"{_power(MAX_NOTIONAL)}")
    return None


def differing_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return the fields whose parsed values differ between two contents (`Command.content()`),
    sorted; nested values are compared whole. For an `id_conflict` message:
    `id 'd1' was used by a different command (amount differs)`."""
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
