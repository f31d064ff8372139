"""Reference-data commands: assets, instruments, prices, funding rates, risk units and
the portfolio-margin settings (contract: reference data; DESIGN §6).
"""


from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
)
from ledger.domain.ids import asset_id, instrument_id, portfolio_settings_id
from ledger.domain.reference import Asset, Instrument, Settings
from ledger.domain.terms import (
    asset_to_dict,
    instrument_to_dict,
    portfolio_to_dict,
    risk_unit_to_dict,
)
from ledger.errors import (
    InvalidInputError,
)
from ledger.numbers import ONE, ZERO, to_str
from ledger.rules.maintenance import derived_deductions
from ledger.rules.terms import (
    STABLECOINS,
    AssetTerms,
    AutoAddAmount,
    AutoExchangeTrigger,
    CloseFeeBasis,
    CollateralTier,
    FreeMode,
    FundingRateBasis,
    InstrumentTerms,
    InterestAccrual,
    InterestTerms,
    Kind,
    MmBasis,
    MultiplierTier,
    PaymentRounding,
    PortfolioTerms,
    RateBand,
    RiskTier,
    RiskUnitTerms,
    TierBasis,
)
from ledger.times import format_at


class ReferenceCommands(Handlers):
    """Reference-data commands."""

    def asset(self, cmd: c.AssetCmd) -> str:
        terms = AssetTerms(
            asset=cmd.asset,
            precision=cmd.precision,
            collateral_tiers=tuple(CollateralTier(t.up_to, t.ratio)
                                   for t in cmd.collateral_tiers or ()),
            tier_basis=TierBasis(cmd.tier_basis),
            interest=None if cmd.interest is None else InterestTerms(
                cmd.interest.annual_rate, cmd.interest.free_amount,
                FreeMode(cmd.interest.free_mode), InterestAccrual(cmd.interest.accrual)),
            auto_exchange_threshold_usd=cmd.auto_exchange_threshold_usd,
            auto_exchange_discount=cmd.auto_exchange_discount,
            borrow_mmr_rate=cmd.borrow_mmr_rate,
            borrow_imr_rate=cmd.borrow_imr_rate,
            auto_exchange_trigger=AutoExchangeTrigger(cmd.auto_exchange_trigger),  # issue 14
            payment_rounding=PaymentRounding(cmd.payment_rounding),  # issue 14
            bid_buffer=cmd.bid_buffer, ask_buffer=cmd.ask_buffer,  # issue 14 (convB)
        )
        existing = self.refs.asset(cmd.asset)
        if existing is None:
            aggregate = Asset.list(asset_id(cmd.asset), cmd.at, cmd.asset, asset_to_dict(terms))
            self.uow.register_stream("asset", aggregate.id, cmd.asset)
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, asset_to_dict(terms))
            aggregate = existing
        self.refs.record(aggregate, "asset", cmd.asset)
        return APPLIED

    def instrument(self, cmd: c.InstrumentCmd) -> str:
        given_tiers = cmd.risk_tiers or OPTION_RISK_TIERS  # only an option may omit them
        tiers = tuple(RiskTier(t.up_to, t.mmr, t.max_leverage) for t in given_tiers)
        deductions = derived_deductions(tiers)
        for given, derived in zip(given_tiers, deductions, strict=True):
            if given.deduction is not None and given.deduction != derived:
                raise InvalidInputError(
                    f"tier deduction {to_str(given.deduction)} differs from the derived "
                    f"{to_str(derived)}")
        tiers = tuple(RiskTier(t.up_to, t.mmr, t.max_leverage, d)
                      for t, d in zip(tiers, deductions, strict=True))
        self.refs.require_asset(cmd.settle)
        self.refs.require_asset(cmd.base)
        kind = Kind(cmd.kind)
        if kind is Kind.INVERSE_PERPETUAL and cmd.settle != cmd.base:
            raise InvalidInputError("an inverse perpetual settles in its base coin")
        existing = self.refs.instrument(cmd.symbol)
        previous = (self.refs.data.instruments[cmd.symbol].terms.values[-1]
                    if existing is not None else None)
        if kind is Kind.OPTION and cmd.settle != cmd.base and cmd.settle not in STABLECOINS:
            raise InvalidInputError(f"{cmd.symbol}: an option settles in its base coin "
                                    f"(coin-margined) or in USDT/USDC, not {cmd.settle}")
        if kind in (Kind.LINEAR_FUTURE, Kind.OPTION):
            assert cmd.expiry is not None
            if previous is None and cmd.expiry <= cmd.at:
                raise InvalidInputError(f"{cmd.symbol}: expiry {format_at(cmd.expiry)} is not "
                                        "after the listing time")
            if previous is not None and previous.expiry != cmd.expiry:
                raise InvalidInputError(f"{cmd.symbol}: a future's expiry may not change")
        if previous is not None and previous.kind is not kind:
            raise InvalidInputError(f"{cmd.symbol}: an instrument's kind may not change")
        if previous is not None and kind is Kind.OPTION:
            # What an option pays at expiry is fixed at listing: its holders bought that contract.
            for name, before, now in (("option_type", previous.option_type, cmd.option_type),
                                      ("strike", previous.strike, cmd.strike),
                                      ("contract_size", previous.contract_size,
                                       cmd.contract_size),
                                      ("base", previous.base, cmd.base),
                                      ("settle", previous.settle, cmd.settle)):
                if before != now:
                    raise InvalidInputError(f"{cmd.symbol}: an option's {name} may not change "
                                            f"(listed with {before}, not {now})")
        terms = InstrumentTerms(
            symbol=cmd.symbol, kind=kind, base=cmd.base, settle=cmd.settle,
            contract_size=cmd.contract_size, risk_tiers=tiers, mm_basis=MmBasis(cmd.mm_basis),
            taker_fee_rate=cmd.taker_fee_rate, maker_fee_rate=cmd.maker_fee_rate,
            close_fee_in_mm=cmd.close_fee_in_mm, session_settlement=cmd.session_settlement,
            funding_interval_hours=cmd.funding_interval_hours or 8,
            auto_add_amount=AutoAddAmount(cmd.auto_add_amount), expiry=cmd.expiry,
            delivery_fee_rate=cmd.delivery_fee_rate or ZERO,
            funding_rate_basis=FundingRateBasis(cmd.funding_rate_basis),  # issue 14
            # issue 14 (convB)
            close_fee_basis=CloseFeeBasis(cmd.close_fee_basis), price_tick=cmd.price_tick,
            im_includes_close_fee=cmd.im_includes_close_fee,
        )
        if kind is Kind.OPTION:
            terms = option_terms(terms, cmd)
        if existing is None:
            aggregate = Instrument.list(instrument_id(cmd.symbol), cmd.at, cmd.symbol,
                                        instrument_to_dict(terms))
            self.uow.register_stream("instrument", aggregate.id, cmd.symbol)
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, instrument_to_dict(terms))
            aggregate = existing
        self.refs.record(aggregate, "instrument", cmd.symbol)
        return APPLIED

    def mark_price(self, cmd: c.MarkPriceCmd) -> str:
        instrument = self.refs.existing_instrument(cmd.symbol)
        if cmd.mark_iv is not None and not self.refs.require_instrument(cmd.symbol).is_option:
            raise InvalidInputError(f"mark_iv: {cmd.symbol} is not an option")
        instrument.require_not_before(cmd.at)
        instrument.set_mark_price(cmd.at, cmd.price)
        if cmd.mark_iv is not None:  # `record` feeds one new event at a time
            self.refs.record(instrument, "instrument", cmd.symbol)
            instrument.set_mark_iv(cmd.at, cmd.mark_iv)
        self.refs.record(instrument, "instrument", cmd.symbol)
        return APPLIED

    def funding_rate(self, cmd: c.FundingRateCmd) -> str:
        terms = self.refs.require_instrument(cmd.symbol)
        if not terms.has_funding:
            raise InvalidInputError(f"{cmd.symbol} is a {terms.kind.value.replace('_', ' ')}: "
                                    "it has no funding rate")
        instrument = self.refs.existing_instrument(cmd.symbol)
        instrument.require_not_before(cmd.at)
        instrument.set_funding_rate(cmd.at, cmd.rate)
        self.refs.record(instrument, "instrument", cmd.symbol)
        return APPLIED

    def index_price(self, cmd: c.IndexPriceCmd) -> str:
        self.refs.require_asset(cmd.asset)
        asset = self.refs.asset(cmd.asset)
        assert asset is not None
        asset.require_not_before(cmd.at)
        asset.set_index_price(cmd.at, cmd.price)
        self.refs.record(asset, "asset", cmd.asset)
        return APPLIED

    def risk_unit(self, cmd: c.RiskUnitCmd) -> str:
        self.refs.require_asset(cmd.asset)
        defaults = RiskUnitTerms(cmd.asset)
        terms = RiskUnitTerms(
            asset=cmd.asset,
            price_shocks=tuple(cmd.price_shocks) if cmd.price_shocks else defaults.price_shocks,
            extreme_shocks=(tuple(cmd.extreme_shocks) if cmd.extreme_shocks
                            else defaults.extreme_shocks),
            extreme_factor=_or(cmd.extreme_factor, defaults.extreme_factor),
            basis_rate=_or(cmd.basis_rate, defaults.basis_rate),
            basis_annual_rate=_or(cmd.basis_annual_rate, defaults.basis_annual_rate),
            spot_basis_rate=_or(cmd.spot_basis_rate, defaults.spot_basis_rate),
            min_charge_rate=_or(cmd.min_charge_rate, defaults.min_charge_rate),
            min_charge_tiers=(tuple(MultiplierTier(t.up_to, t.multiplier)
                                    for t in cmd.min_charge_tiers)
                              if cmd.min_charge_tiers else defaults.min_charge_tiers),
            depeg_bands=(tuple(RateBand(b.up_to, b.rate) for b in cmd.depeg_bands)
                         if cmd.depeg_bands else defaults.depeg_bands),
            # options (issue 15, docs/options.md)
            vol_shocks=tuple(cmd.vol_shocks) if cmd.vol_shocks else defaults.vol_shocks,
            rate=_or(cmd.rate, defaults.rate),
            theta_days=_or(cmd.theta_days, defaults.theta_days),
            vega_rates=(tuple((v.years, v.shock) for v in cmd.vega_rates) if cmd.vega_rates
                        else defaults.vega_rates),
            rate_shock=_or(cmd.rate_shock, defaults.rate_shock),
            short_option_rate=_or(cmd.short_option_rate, defaults.short_option_rate),
        )
        asset = self.refs.asset(cmd.asset)
        assert asset is not None
        asset.require_not_before(cmd.at)
        asset.configure_risk_unit(cmd.at, risk_unit_to_dict(terms))
        self.refs.record(asset, "asset", cmd.asset)
        return APPLIED

    def portfolio_margin(self, cmd: c.PortfolioMarginCmd) -> str:
        terms = PortfolioTerms(cmd.min_equity_usd, cmd.imr_factor, cmd.liquidation_level,
                               cmd.target_level)
        existing = self.refs.settings()
        if existing is None:
            aggregate = Settings.list(portfolio_settings_id(), cmd.at, portfolio_to_dict(terms))
            self.uow.register_stream("settings", aggregate.id, "portfolio_margin")
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, portfolio_to_dict(terms))
            aggregate = existing
        self.refs.record(aggregate, "settings", "portfolio_margin")
        return APPLIED


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


# --- options (issue 15, docs/options.md) ----------------------------------------------------

OPTION_RISK_TIERS = (c.RiskTierIn(up_to=None, mmr=ZERO, max_leverage=ONE),)
"""An option's default tier: no perpetual-style MM (OKX option margin applies), leverage 1."""


def option_terms(terms: InstrumentTerms, cmd: c.InstrumentCmd) -> InstrumentTerms:
    """Return `terms` with the option fields of `cmd`, each missing one at its default."""
    assert cmd.option_type is not None and cmd.strike is not None
    fields: dict[str, object] = {"option_type": cmd.option_type, "strike": cmd.strike}
    for name in ("fee_cap_rate", "option_a", "option_b", "option_c"):
        if getattr(cmd, name) is not None:
            fields[name] = getattr(cmd, name)
    if cmd.margin_factor_tiers:
        fields["margin_factor_tiers"] = tuple((t.up_to, t.factor)
                                              for t in cmd.margin_factor_tiers)
    return replace(terms, **fields)  # type: ignore[arg-type]
