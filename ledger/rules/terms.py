"""Parameter sets the rules read: assets, instruments and their tiers, as frozen values.

These are the parameters "in force at T" (DESIGN §2): the application looks them up in the
reference-data history and hands them to the rules. Nothing here reads a store or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from ledger.numbers import ZERO


class TierBasis(StrEnum):
    """What a collateral tier's `up_to` measures (DESIGN §6.1)."""

    QUANTITY = "quantity"  # coins (seed 000, the default)
    USD_VALUE = "usd_value"  # USD at the index price


class MmBasis(StrEnum):
    """The price at which a position's notional is measured for margin (DESIGN §6.2)."""

    MARK = "mark"  # default
    ENTRY = "entry"  # seed 002 / 004


class FreeMode(StrEnum):
    """How an interest-free amount is applied (DESIGN §6.8)."""

    EXCESS = "excess"  # interest on liability − free_amount (default)
    FULL = "full"  # interest on the whole liability once it exceeds free_amount


class AutoAddAmount(StrEnum):
    """What an automatic top-up adds (DESIGN §6.5)."""

    MAINTENANCE = "maintenance"  # the position's maintenance margin (seed 002)
    INITIAL = "initial"  # E·Q·F / leverage
    RESTORE_INITIAL_RATE = "restore_initial_rate"  # MEXC 2022 (issue 14)


class CloseFeeBasis(StrEnum):
    """Where the fee to close in MM is measured when `close_fee_in_mm` (issue 14)."""

    ENTRY = "entry"  # at the bankruptcy price estimated from entry and leverage (Bybit)
    LIQUIDATION_PRICE = "liquidation_price"  # at the liquidation price itself (Bitget)
    RESERVED = "reserved"  # reserved inside an isolated position's margin at opening (Phemex)


# --- exchange conventions (issue 14, convA): interest accrual, auto-exchange trigger,
# funding rate basis, payment rounding. Defaults are the ledger's behaviour before them.


class InterestAccrual(StrEnum):
    """How debt interest accrues in time (asset `interest.accrual`)."""

    PER_SECOND = "per_second"  # exactly, second by second (DESIGN §6.8; the default)
    HOURLY_SNAPSHOT = "hourly_snapshot"  # the debt held at each whole hour: one hour (BIT)
    STARTED_HOURS = "started_hours"  # every started hour of a borrowing (MEXC, RightBTC)
    HOURS_ROUNDED_UP = "hours_rounded_up"  # elapsed hours rounded up (Bitget)


class AutoExchangeTrigger(StrEnum):
    """When a negative coin's value triggers auto-exchange (asset `auto_exchange_trigger`)."""

    ABOVE = "above"  # worth more than the threshold (DESIGN 6.11; the default)
    AT_OR_ABOVE = "at_or_above"  # worth the threshold or more


class FundingRateBasis(StrEnum):
    """The period a funding rate is quoted for (instrument `funding_rate_basis`)."""

    PER_INTERVAL = "per_interval"  # per funding interval (the default)
    PER_8H = "per_8h"  # per 8 hours, scaled by funding_interval_hours / 8 (bit.com)


class PaymentRounding(StrEnum):
    """How fees, funding and interest are rounded to the asset's precision."""

    PAYER_PAYS_UP = "payer_pays_up"  # against the account (DESIGN §4; the default)
    HALF_EVEN = "half_even"  # to the nearest step, a tie to the even one

# --- end of the issue 14 (convA) conventions


class Kind(StrEnum):
    LINEAR_PERPETUAL = "linear_perpetual"
    INVERSE_PERPETUAL = "inverse_perpetual"
    LINEAR_FUTURE = "linear_future"
    OPTION = "option"  # issue 15, docs/options.md


class Mode(StrEnum):
    SINGLE_ASSET = "single_asset"
    MULTI_ASSET = "multi_asset"
    PORTFOLIO = "portfolio"


@dataclass(frozen=True, slots=True)
class CollateralTier:
    """Coins (or USD) up to `up_to` count at `ratio`; `None` is the open top tier."""

    up_to: Decimal | None
    ratio: Decimal


@dataclass(frozen=True, slots=True)
class RiskTier:
    """A maintenance-margin tier: notional up to `up_to` (settle asset; inverse: coin)."""

    up_to: Decimal | None
    mmr: Decimal
    max_leverage: Decimal
    deduction: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class InterestTerms:
    annual_rate: Decimal
    free_amount: Decimal = ZERO
    free_mode: FreeMode = FreeMode.EXCESS
    accrual: InterestAccrual = InterestAccrual.PER_SECOND  # issue 14


@dataclass(frozen=True, slots=True)
class AssetTerms:
    """An asset's parameters (contract: `asset` command)."""

    asset: str
    precision: int = 8
    collateral_tiers: tuple[CollateralTier, ...] = ()
    tier_basis: TierBasis = TierBasis.QUANTITY
    interest: InterestTerms | None = None
    auto_exchange_threshold_usd: Decimal | None = None
    auto_exchange_discount: Decimal | None = None
    borrow_mmr_rate: Decimal = Decimal("0.02")
    borrow_imr_rate: Decimal = Decimal("0.1")
    # exchange conventions (issue 14, convA)
    auto_exchange_trigger: AutoExchangeTrigger = AutoExchangeTrigger.ABOVE
    payment_rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP
    # exchange conventions (issue 14, convB): Binance multi-assets bid/ask valuation
    bid_buffer: Decimal = ZERO
    ask_buffer: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class InstrumentTerms:
    """An instrument's parameters (contract: `instrument` command)."""

    symbol: str
    kind: Kind
    base: str
    settle: str
    contract_size: Decimal
    risk_tiers: tuple[RiskTier, ...]
    mm_basis: MmBasis = MmBasis.MARK
    taker_fee_rate: Decimal = ZERO
    maker_fee_rate: Decimal = ZERO
    close_fee_in_mm: bool = False
    session_settlement: bool = False
    funding_interval_hours: int = 8
    auto_add_amount: AutoAddAmount = AutoAddAmount.MAINTENANCE
    expiry: datetime | None = None
    delivery_fee_rate: Decimal = ZERO
    # exchange conventions (issue 14, convA)
    funding_rate_basis: FundingRateBasis = FundingRateBasis.PER_INTERVAL
    # exchange conventions (issue 14, convB)
    close_fee_basis: CloseFeeBasis = CloseFeeBasis.ENTRY
    price_tick: Decimal | None = None
    im_includes_close_fee: bool = False
    # --- options (issue 15, docs/options.md); None / defaults for every other kind
    option_type: str | None = None  # "call" or "put"
    strike: Decimal | None = None  # in the settle asset (USD for a coin-margined option)
    fee_cap_rate: Decimal = Decimal("0.125")  # fee ≤ this fraction of the premium (OKX)
    option_a: Decimal = Decimal("0.1")  # OKX option margin a, b, c (BTC column)
    option_b: Decimal = Decimal("0.15")
    option_c: Decimal = Decimal("0.03")
    margin_factor_tiers: tuple[tuple[Decimal | None, Decimal], ...] = ((None, Decimal(1)),)

    @property
    def is_inverse(self) -> bool:
        return self.kind is Kind.INVERSE_PERPETUAL

    @property
    def is_future(self) -> bool:
        return self.kind is Kind.LINEAR_FUTURE

    @property
    def is_option(self) -> bool:
        return self.kind is Kind.OPTION

    @property
    def coin_margined(self) -> bool:
        """An option premium paid in its base coin (OKX's BTCUSD options)."""
        return self.settle == self.base

    @property
    def has_funding(self) -> bool:
        return self.kind not in (Kind.LINEAR_FUTURE, Kind.OPTION)


@dataclass(frozen=True, slots=True)
class MultiplierTier:
    """MR7 minimum-charge tier: raw charge up to `up_to` USD is multiplied by `multiplier`."""

    up_to: Decimal | None
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class RateBand:
    """MR9 depeg band: hedged value up to `up_to` USD is charged at `rate`."""

    up_to: Decimal | None
    rate: Decimal


def _d(text: str) -> Decimal:
    return Decimal(text)


DEFAULT_PRICE_SHOCKS = tuple(
    _d(s) for s in ("-0.12", "-0.08", "-0.04", "0", "0.04", "0.08", "0.12")
)
DEFAULT_EXTREME_SHOCKS = (_d("-0.24"), _d("0.24"))
DEFAULT_MIN_CHARGE_TIERS = tuple(
    MultiplierTier(None if up is None else _d(up), _d(m))
    for up, m in (
        ("10000", "1"),
        ("70000", "2"),
        ("170000", "4"),
        ("300000", "6"),
        ("470000", "8"),
        ("700000", "10"),
        (None, "12"),
    )
)
DEFAULT_DEPEG_BANDS = (
    RateBand(_d("1000000"), _d("0.0075")),
    RateBand(_d("5000000"), _d("0.0175")),
    RateBand(None, _d("0.025")),
)


DEFAULT_VOL_SHOCKS = (_d("-0.3"), _d("0"), _d("0.3"))
DEFAULT_VEGA_RATES = ((_d("0.0833"), _d("0.25")), (_d("0.25"), _d("0.2")), (_d("1"), _d("0.15")),
                      (_d("100"), _d("0.1")))


@dataclass(frozen=True, slots=True)
class RiskUnitTerms:
    """Portfolio-margin parameters of one underlying (PORTFOLIO-MARGIN.md §10.9)."""

    asset: str
    price_shocks: tuple[Decimal, ...] = DEFAULT_PRICE_SHOCKS
    extreme_shocks: tuple[Decimal, ...] = DEFAULT_EXTREME_SHOCKS
    extreme_factor: Decimal = Decimal("0.5")
    basis_rate: Decimal = Decimal("0.002")
    basis_annual_rate: Decimal = Decimal("0.05")
    spot_basis_rate: Decimal = ZERO
    min_charge_rate: Decimal = Decimal("0.0045")
    min_charge_tiers: tuple[MultiplierTier, ...] = DEFAULT_MIN_CHARGE_TIERS
    depeg_bands: tuple[RateBand, ...] = DEFAULT_DEPEG_BANDS
    # --- options (issue 15, docs/options.md)
    vol_shocks: tuple[Decimal, ...] = DEFAULT_VOL_SHOCKS  # relative moves of the implied vol
    rate: Decimal = ZERO  # Black-76 discount rate r
    theta_days: Decimal = Decimal(1)  # MR2: one day of decay
    vega_rates: tuple[tuple[Decimal, Decimal], ...] = DEFAULT_VEGA_RATES  # MR3 (years, shock)
    rate_shock: Decimal = Decimal("0.01")  # MR5: parallel move of r
    short_option_rate: Decimal = Decimal("0.003")  # MR8: per unit of |short| × index


@dataclass(frozen=True, slots=True)
class PortfolioTerms:
    """Ledger-wide portfolio-margin levels (PORTFOLIO-MARGIN.md §10.9)."""

    min_equity_usd: Decimal = Decimal("10000")
    imr_factor: Decimal = Decimal("1.3")
    liquidation_level: Decimal = Decimal("1")
    target_level: Decimal = Decimal("1.1")


MARGIN_CALL_LEVEL = Decimal("0.8")  # DESIGN §6.3: "the margin-call level is 0.8 in this version"
STABLECOINS = ("USDT", "USDC")  # index 1 until one is sent (contract: index_price)

