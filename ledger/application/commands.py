"""Commands: one frozen pydantic model per contract `type`, parsed strictly (contract/README.md).

A feed line is parsed with `json.loads(…, parse_float=JsonNumber, parse_int=JsonNumber)`, so a
JSON number keeps its literal text and is read exactly ("0.1" stays 0.1, never a float); an
exponent, NaN or Infinity is refused. Shape errors (unknown type or field, a missing field, a
malformed decimal or time, an amount that is not > 0) are `invalid_input`, checked here before
anything reads the store (DESIGN 6.11 check order).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ledger.errors import InvalidInputError
from ledger.numbers import PRECISION, ZERO, is_decimal_text
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
            raise ValueError(f"duplicate key {key!r}")
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


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    text = value.text if isinstance(value, JsonNumber) else value
    if not isinstance(text, str) or not is_decimal_text(text):
        raise ValueError(f"not a decimal (-?digits[.digits]): {text!r}")
    number = Decimal(text)
    if len(number.as_tuple().digits) > PRECISION:
        raise ValueError(f"more than {PRECISION} significant digits: {text}")
    return number


def _positive(value: Any) -> Decimal:
    number = _decimal(value)
    if number <= ZERO:
        raise ValueError(f"must be > 0: {number}")
    return number


def _non_negative(value: Any) -> Decimal:
    number = _decimal(value)
    if number < ZERO:
        raise ValueError(f"must be ≥ 0: {number}")
    return number


def _non_zero(value: Any) -> Decimal:
    number = _decimal(value)
    if number == ZERO:
        raise ValueError("must not be 0")
    return number


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not an integer")
    if isinstance(value, int):
        return value
    text = value.text if isinstance(value, JsonNumber) else value
    if not isinstance(text, str) or not _DIGITS.match(text):
        raise ValueError(f"not a non-negative integer: {text!r}")
    return int(text)


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("a time must be an RFC 3339 string")
    return parse_at(value)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    if any(ord(char) < 32 or 0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise ValueError("must hold no control characters or lone surrogates")
    if len(value) > 200:
        raise ValueError("must be at most 200 characters")
    return value


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
Positive = Annotated[Decimal, BeforeValidator(_positive)]
NonNegative = Annotated[Decimal, BeforeValidator(_non_negative)]
NonZero = Annotated[Decimal, BeforeValidator(_non_zero)]
Int = Annotated[int, BeforeValidator(_integer)]
At = Annotated[datetime, BeforeValidator(_time)]
Name = Annotated[str, BeforeValidator(_name)]


class Command(BaseModel):
    """Every command has `type` and `at`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    TYPE: ClassVar[str] = ""
    type: str
    at: At

    def content(self) -> dict[str, Any]:
        """Return the parsed content, defaults applied (what "same content" compares)."""
        return self.model_dump()


class Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- reference


class CollateralTierIn(Part):
    up_to: Positive | None
    ratio: NonNegative

    @model_validator(mode="after")
    def _ratio_at_most_one(self) -> CollateralTierIn:
        if self.ratio > 1:
            raise ValueError("a collateral ratio is at most 1")
        return self


class InterestIn(Part):
    annual_rate: NonNegative
    free_amount: NonNegative = ZERO
    free_mode: Literal["excess", "full"] = "excess"


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
    collateral_tiers: list[CollateralTierIn] | None = None
    tier_basis: Literal["quantity", "usd_value"] = "quantity"
    interest: InterestIn | None = None
    auto_exchange_threshold_usd: NonNegative | None = None
    auto_exchange_discount: Positive | None = None
    borrow_mmr_rate: NonNegative = Decimal("0.02")
    borrow_imr_rate: NonNegative = Decimal("0.1")

    @model_validator(mode="after")
    def _check(self) -> AssetCmd:
        if self.precision > 18:
            raise ValueError("precision must be between 0 and 18")
        if self.collateral_tiers:
            _check_bounds([t.up_to for t in self.collateral_tiers], "collateral tier")
        if self.auto_exchange_discount is not None and self.auto_exchange_discount > 1:
            raise ValueError("auto_exchange_discount must be in (0, 1]")
        return self


class RiskTierIn(Part):
    up_to: Positive | None
    mmr: NonNegative
    max_leverage: Positive
    deduction: NonNegative | None = None

    @model_validator(mode="after")
    def _mmr_below_one(self) -> RiskTierIn:
        if self.mmr >= 1:
            raise ValueError("mmr must be below 1")
        return self


class InstrumentCmd(Command):
    TYPE = "instrument"
    symbol: Name
    kind: Literal["linear_perpetual", "inverse_perpetual", "linear_future"]
    base: Name
    settle: Name
    contract_size: Positive
    risk_tiers: list[RiskTierIn]
    mm_basis: Literal["mark", "entry"] = "mark"
    taker_fee_rate: Dec = ZERO
    maker_fee_rate: Dec = ZERO
    close_fee_in_mm: bool = False
    session_settlement: bool = False
    funding_interval_hours: Int | None = None
    auto_add_amount: Literal["maintenance", "initial"] = "maintenance"
    expiry: At | None = None
    delivery_fee_rate: NonNegative | None = None

    @model_validator(mode="after")
    def _check(self) -> InstrumentCmd:
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


class MarkPriceCmd(Command):
    TYPE = "mark_price"
    symbol: Name
    price: Positive


class IndexPriceCmd(Command):
    TYPE = "index_price"
    asset: Name
    price: Positive


class FundingRateCmd(Command):
    TYPE = "funding_rate"
    symbol: Name
    rate: Dec


class MultiplierTierIn(Part):
    up_to: Positive | None
    multiplier: NonNegative


class RateBandIn(Part):
    up_to: Positive | None
    rate: NonNegative


class RiskUnitCmd(Command):
    TYPE = "risk_unit"
    asset: Name
    price_shocks: list[Dec] | None = None
    extreme_shocks: list[Dec] | None = None
    extreme_factor: NonNegative | None = None
    basis_rate: NonNegative | None = None
    basis_annual_rate: NonNegative | None = None
    spot_basis_rate: NonNegative | None = None
    min_charge_rate: NonNegative | None = None
    min_charge_tiers: list[MultiplierTierIn] | None = None
    depeg_bands: list[RateBandIn] | None = None

    @model_validator(mode="after")
    def _check(self) -> RiskUnitCmd:
        for shocks in (self.price_shocks, self.extreme_shocks):
            if shocks is not None:
                if not shocks:
                    raise ValueError("a shock list must not be empty")
                if any(s <= -1 for s in shocks):
                    raise ValueError("a shock must be above −100 %")
        if self.min_charge_tiers is not None:
            _check_bounds([t.up_to for t in self.min_charge_tiers], "min charge tier")
        if self.depeg_bands is not None:
            _check_bounds([b.up_to for b in self.depeg_bands], "depeg band")
        return self


class PortfolioMarginCmd(Command):
    TYPE = "portfolio_margin"
    min_equity_usd: NonNegative = Decimal("10000")
    imr_factor: Dec = Decimal("1.3")
    liquidation_level: Dec = Decimal("1")
    target_level: Dec = Decimal("1.1")

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
    id: Name
    account: Name
    asset: Name
    amount: Positive


class WithdrawCmd(Command):
    TYPE = "withdraw"
    id: Name
    account: Name
    asset: Name
    amount: Positive


class TransferCmd(Command):
    TYPE = "transfer"
    id: Name
    from_: Name
    to: Name
    asset: Name
    amount: Positive

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _rename_from(cls, data: Any) -> Any:
        if isinstance(data, dict) and "from" in data:
            data = dict(data)
            data["from_"] = data.pop("from")
        elif isinstance(data, dict) and "from_" in data:
            raise ValueError("unknown field from_")
        return data

    @model_validator(mode="after")
    def _check(self) -> TransferCmd:
        if self.from_ == self.to:
            raise ValueError("a transfer needs two different accounts")
        return self


class FillCmd(Command):
    TYPE = "fill"
    id: Name
    account: Name
    symbol: Name
    side: Literal["buy", "sell"]
    qty: Positive
    price: Positive
    liquidity: Literal["taker", "maker"] = "taker"
    fee: Dec | None = None
    margin_type: Literal["cross", "isolated"] = "cross"
    leverage: Positive | None = None
    liquidation: bool = False


class OrderIn(Part):
    qty: Positive
    price: Positive


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
    amount: NonZero


class SetAutoAddMarginCmd(Command):
    TYPE = "set_auto_add_margin"
    account: Name
    symbol: Name
    enabled: bool


class SetLeverageCmd(Command):
    TYPE = "set_leverage"
    account: Name
    symbol: Name
    leverage: Positive


class RepayCmd(Command):
    TYPE = "repay"
    id: Name
    account: Name
    asset: Name
    amount: Positive
    with_asset: Name


class SetSpotInUseCmd(Command):
    TYPE = "set_spot_in_use"
    account: Name
    asset: Name
    amount: NonNegative | None


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
        raise InvalidInputError(f"unknown command type {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInputError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]).replace("from_", "from")
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_line(text: str) -> Command:
    """Parse one feed line (JSON) into a command, or raise `InvalidInputError`."""
    try:
        data = load_line(text)
    except (ValueError, RecursionError) as error:
        raise InvalidInputError(f"not a JSON object: {error}") from None
    return parse_command(data)


def idempotency_key(command: Command) -> str | None:
    """Return the idempotency key of a money command: (type, account — `from` for a transfer,
    id); periodic commands are keyed by their `at`; other commands have none."""
    if isinstance(command, TransferCmd):
        return f"transfer|{command.from_}|{command.id}"
    if isinstance(command, PeriodicCmd):
        return f"{command.type}|@{command.at.isoformat()}"
    identifier = getattr(command, "id", None)
    account = getattr(command, "account", None)
    if identifier is None or account is None:
        return None
    return f"{command.type}|{account}|{identifier}"


def repeat_key(command: Command, digest: str) -> str:
    """Return the key that recognises a repeat of a command without an id (reference data,
    settings): the same type, `at` and content. A feed re-run after a crash is then
    acknowledged line by line instead of recording prices or settings twice."""
    return f"{command.type}|@{command.at.isoformat()}|{digest}"
