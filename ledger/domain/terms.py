"""Parameter sets as event data: rule dataclasses to plain dicts and back.

Reference events carry parameters as plain dicts (Decimals, strings, lists) so that they encode
with the library's JSON transcoder and keep their meaning if the rule classes change shape.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.rules.terms import (
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


def asset_to_dict(terms: AssetTerms) -> dict[str, Any]:
    return _with_conventions(terms, {
        "asset": terms.asset,
        "precision": terms.precision,
        "collateral_tiers": [[t.up_to, t.ratio] for t in terms.collateral_tiers],
        "tier_basis": terms.tier_basis.value,
        "interest": None if terms.interest is None else {
            "annual_rate": terms.interest.annual_rate,
            "free_amount": terms.interest.free_amount,
            "free_mode": terms.interest.free_mode.value,
        },
        "auto_exchange_threshold_usd": terms.auto_exchange_threshold_usd,
        "auto_exchange_discount": terms.auto_exchange_discount,
        "borrow_mmr_rate": terms.borrow_mmr_rate,
        "borrow_imr_rate": terms.borrow_imr_rate,
    })


# Issue 14: a convention is stored only when it differs from its default, so that the events
# of every feed written without one stay exactly as they were (same content, same hashes), and
# an event stored before the conventions existed reads back with the defaults.
def _with_conventions(terms: AssetTerms, data: dict[str, Any]) -> dict[str, Any]:
    if terms.interest is not None and terms.interest.accrual is not InterestAccrual.PER_SECOND:
        data["interest"]["accrual"] = terms.interest.accrual.value
    if terms.auto_exchange_trigger is not AutoExchangeTrigger.ABOVE:
        data["auto_exchange_trigger"] = terms.auto_exchange_trigger.value
    if terms.payment_rounding is not PaymentRounding.PAYER_PAYS_UP:
        data["payment_rounding"] = terms.payment_rounding.value
    if terms.bid_buffer != 0:
        data["bid_buffer"] = terms.bid_buffer
    if terms.ask_buffer != 0:
        data["ask_buffer"] = terms.ask_buffer
    return data


def asset_from_dict(data: dict[str, Any]) -> AssetTerms:
    interest = data.get("interest")
    return AssetTerms(
        asset=data["asset"],
        precision=int(data["precision"]),
        collateral_tiers=tuple(CollateralTier(up, ratio) for up, ratio in data["collateral_tiers"]),
        tier_basis=TierBasis(data["tier_basis"]),
        interest=None if interest is None else InterestTerms(
            annual_rate=interest["annual_rate"],
            free_amount=interest["free_amount"],
            free_mode=FreeMode(interest["free_mode"]),
            accrual=InterestAccrual(interest.get("accrual", "per_second")),
        ),
        auto_exchange_threshold_usd=data.get("auto_exchange_threshold_usd"),
        auto_exchange_discount=data.get("auto_exchange_discount"),
        borrow_mmr_rate=data["borrow_mmr_rate"],
        borrow_imr_rate=data["borrow_imr_rate"],
        # issue 14: absent from events recorded before (or without) the conventions
        auto_exchange_trigger=AutoExchangeTrigger(data.get("auto_exchange_trigger", "above")),
        payment_rounding=PaymentRounding(data.get("payment_rounding", "payer_pays_up")),
        bid_buffer=data.get("bid_buffer", Decimal(0)),
        ask_buffer=data.get("ask_buffer", Decimal(0)),
    )


def instrument_to_dict(terms: InstrumentTerms) -> dict[str, Any]:
    data: dict[str, Any] = {
        "symbol": terms.symbol,
        "kind": terms.kind.value,
        "base": terms.base,
        "settle": terms.settle,
        "contract_size": terms.contract_size,
        "risk_tiers": [[t.up_to, t.mmr, t.max_leverage, t.deduction] for t in terms.risk_tiers],
        "mm_basis": terms.mm_basis.value,
        "taker_fee_rate": terms.taker_fee_rate,
        "maker_fee_rate": terms.maker_fee_rate,
        "close_fee_in_mm": terms.close_fee_in_mm,
        "session_settlement": terms.session_settlement,
        "funding_interval_hours": terms.funding_interval_hours,
        "auto_add_amount": terms.auto_add_amount.value,
        "expiry": terms.expiry,
        "delivery_fee_rate": terms.delivery_fee_rate,
        **_option_to_dict(terms),
    }
    # issue 14: conventions stored only when they differ from the default (see above)
    if terms.funding_rate_basis is not FundingRateBasis.PER_INTERVAL:
        data["funding_rate_basis"] = terms.funding_rate_basis.value
    if terms.close_fee_basis is not CloseFeeBasis.ENTRY:
        data["close_fee_basis"] = terms.close_fee_basis.value
    if terms.price_tick is not None:
        data["price_tick"] = terms.price_tick
    if terms.im_includes_close_fee:
        data["im_includes_close_fee"] = True
    return data


def instrument_from_dict(data: dict[str, Any]) -> InstrumentTerms:
    expiry = data.get("expiry")
    return InstrumentTerms(
        symbol=data["symbol"],
        kind=Kind(data["kind"]),
        base=data["base"],
        settle=data["settle"],
        contract_size=data["contract_size"],
        risk_tiers=tuple(
            RiskTier(up_to=up, mmr=mmr, max_leverage=lev, deduction=ded)
            for up, mmr, lev, ded in data["risk_tiers"]
        ),
        mm_basis=MmBasis(data["mm_basis"]),
        taker_fee_rate=data["taker_fee_rate"],
        maker_fee_rate=data["maker_fee_rate"],
        close_fee_in_mm=bool(data["close_fee_in_mm"]),
        session_settlement=bool(data["session_settlement"]),
        funding_interval_hours=int(data["funding_interval_hours"]),
        auto_add_amount=AutoAddAmount(data["auto_add_amount"]),
        expiry=_expiry(expiry),
        delivery_fee_rate=data.get("delivery_fee_rate", Decimal(0)),
        funding_rate_basis=FundingRateBasis(data.get("funding_rate_basis", "per_interval")),
        # issue 14 (convB): absent from events recorded before the fields existed
        close_fee_basis=CloseFeeBasis(data.get("close_fee_basis", "entry")),
        price_tick=data.get("price_tick"),
        im_includes_close_fee=bool(data.get("im_includes_close_fee", False)),
        **_option_from_dict(data),
    )


# --- options (issue 15): stored only for kind "option", so other instruments' events are as
# before; a missing key takes the InstrumentTerms default.
_OPTION_FIELDS = ("option_type", "strike", "fee_cap_rate", "option_a", "option_b", "option_c")


def _option_to_dict(terms: InstrumentTerms) -> dict[str, Any]:
    if not terms.is_option:
        return {}
    data: dict[str, Any] = {name: getattr(terms, name) for name in _OPTION_FIELDS}
    data["margin_factor_tiers"] = [[up, factor] for up, factor in terms.margin_factor_tiers]
    return data


def _option_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    if data["kind"] != Kind.OPTION.value:
        return {}
    fields = {name: data[name] for name in _OPTION_FIELDS if name in data}
    if "margin_factor_tiers" in data:
        fields["margin_factor_tiers"] = tuple((up, f) for up, f in data["margin_factor_tiers"])
    return fields


def _expiry(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    raise TypeError(f"a stored expiry must be a time, not {value!r}")


def risk_unit_to_dict(terms: RiskUnitTerms) -> dict[str, Any]:
    data = {
        "asset": terms.asset,
        "price_shocks": list(terms.price_shocks),
        "extreme_shocks": list(terms.extreme_shocks),
        "extreme_factor": terms.extreme_factor,
        "basis_rate": terms.basis_rate,
        "basis_annual_rate": terms.basis_annual_rate,
        "spot_basis_rate": terms.spot_basis_rate,
        "min_charge_rate": terms.min_charge_rate,
        "min_charge_tiers": [[t.up_to, t.multiplier] for t in terms.min_charge_tiers],
        "depeg_bands": [[b.up_to, b.rate] for b in terms.depeg_bands],
    }
    options = {  # issue 15, docs/options.md
        "vol_shocks": list(terms.vol_shocks), "rate": terms.rate,
        "theta_days": terms.theta_days, "vega_rates": [list(p) for p in terms.vega_rates],
        "rate_shock": terms.rate_shock, "short_option_rate": terms.short_option_rate,
    }
    if _risk_unit_options(options) != _risk_unit_options(_DEFAULT_OPTIONS):
        data["options"] = options  # stored only when set: other units' events stay as they were
    return data


_DEFAULT_OPTIONS: dict[str, Any] = {
    "vol_shocks": RiskUnitTerms("").vol_shocks, "rate": RiskUnitTerms("").rate,
    "theta_days": RiskUnitTerms("").theta_days, "vega_rates": RiskUnitTerms("").vega_rates,
    "rate_shock": RiskUnitTerms("").rate_shock,
    "short_option_rate": RiskUnitTerms("").short_option_rate,
}


def risk_unit_from_dict(data: dict[str, Any]) -> RiskUnitTerms:
    return RiskUnitTerms(
        asset=data["asset"],
        price_shocks=tuple(data["price_shocks"]),
        extreme_shocks=tuple(data["extreme_shocks"]),
        extreme_factor=data["extreme_factor"],
        basis_rate=data["basis_rate"],
        basis_annual_rate=data["basis_annual_rate"],
        spot_basis_rate=data["spot_basis_rate"],
        min_charge_rate=data["min_charge_rate"],
        min_charge_tiers=tuple(MultiplierTier(up, m) for up, m in data["min_charge_tiers"]),
        depeg_bands=tuple(RateBand(up, r) for up, r in data["depeg_bands"]),
        **_risk_unit_options(data.get("options")),
    )


def _risk_unit_options(data: dict[str, Any] | None) -> dict[str, Any]:
    """The options part of a risk unit (issue 15); units stored before it take the defaults."""
    if not data:
        return {}
    return {
        "vol_shocks": tuple(data["vol_shocks"]), "rate": data["rate"],
        "theta_days": data["theta_days"],
        "vega_rates": tuple((years, shock) for years, shock in data["vega_rates"]),
        "rate_shock": data["rate_shock"], "short_option_rate": data["short_option_rate"],
    }


def portfolio_to_dict(terms: PortfolioTerms) -> dict[str, Any]:
    return {
        "min_equity_usd": terms.min_equity_usd,
        "imr_factor": terms.imr_factor,
        "liquidation_level": terms.liquidation_level,
        "target_level": terms.target_level,
    }


def portfolio_from_dict(data: dict[str, Any]) -> PortfolioTerms:
    return PortfolioTerms(
        min_equity_usd=data["min_equity_usd"],
        imr_factor=data["imr_factor"],
        liquidation_level=data["liquidation_level"],
        target_level=data["target_level"],
    )
