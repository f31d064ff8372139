"""The options scenarios' expected figures, recomputed by a second, independent implementation.

tests/scenarios/options-pm-hedged and options-pm-ddh2 expect figures that need Black-76: they
were computed by this file's float implementation (math.erf, closed-form greeks, written from
docs/options.md, not from ledger/rules), and this test holds the scenarios' numbers to it, so a
change to either side is caught. Tolerances: the scenarios' `tol` (float carries ~15 digits).
Run `python tests/unit/rules/test_options_scenarios.py` to print the figures.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
YEARS = 90 / 365  # 2025-01-01T00:00Z → 2025-04-01T00:00Z, from the first instant
YEARS_DAY2 = 89 / 365  # from 2025-01-02T00:00Z
PRICE_SHOCKS = (-0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12)
EXTREME = (-0.24, 0.24)
VOL_SHOCKS = (-0.3, 0.0, 0.3)


def ncdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def npdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def b76(kind: str, f: float, k: float, t: float, s: float) -> dict[str, float]:
    """Black-76 with r = 0: price and greeks (per unit of the underlying)."""
    d1 = (math.log(f / k) + s * s * t / 2) / (s * math.sqrt(t))
    d2 = d1 - s * math.sqrt(t)
    if kind == "call":
        price, delta = f * ncdf(d1) - k * ncdf(d2), ncdf(d1)
    else:
        price, delta = k * ncdf(-d2) - f * ncdf(-d1), -ncdf(-d1)
    vega = f * npdf(d1) * math.sqrt(t)
    return {"price": price, "delta": delta, "vega": vega, "volga": vega * d1 * d2 / s,
            "theta": -f * npdf(d1) * s / (2 * math.sqrt(t)), "rho": -t * price}


def unit(options: list[tuple[str, float, float, float]], perp_coins: float, perp_mark: float,
         holding: float, index: float, t: float) -> dict[str, float]:
    """One BTC unit as docs/options.md defines it; options = (kind, strike, units, vol)."""
    greeks = [b76(kind, index, k, t, vol) for kind, k, _, vol in options]
    option_delta = sum(u * g["delta"] for (_, _, u, _), g in zip(options, greeks, strict=True))
    spot = min(max(0.0, holding), max(0.0, -(perp_coins + option_delta)))
    linear = perp_coins + spot

    def pnl(s: float, v: float) -> float:
        total = linear * index * s
        for (kind, k, u, vol), g in zip(options, greeks, strict=True):
            total += u * (b76(kind, index * (1 + s), k, t, vol * (1 + v))["price"] - g["price"])
        return total

    mr1 = max(0.0, *(-pnl(s, v) for s in PRICE_SHOCKS for v in VOL_SHOCKS))
    mr6 = 0.5 * max(0.0, *(-pnl(s, v) for s in EXTREME for v in VOL_SHOCKS))
    mr2 = max(0.0, -sum(u * g["theta"] / 365 for (_, _, u, _), g in zip(options, greeks,
                                                                          strict=True)))
    shock = 0.25 if t <= 0.0833 else 0.2 if t <= 0.25 else 0.15 if t <= 1 else 0.1
    up = down = 0.0
    for (_, _, u, vol), g in zip(options, greeks, strict=True):
        move = shock * vol
        up += u * (g["vega"] * move + g["volga"] * move * move / 2)
        down += u * (-g["vega"] * move + g["volga"] * move * move / 2)
    mr3 = max(0.0, -min(up, down))
    mr5 = abs(sum(u * g["rho"] for (_, _, u, _), g in zip(options, greeks, strict=True))) * 0.01
    mr8 = 0.003 * sum(-u for _, _, u, _ in options if u < 0) * index
    mr4 = abs(perp_coins * perp_mark) * 0.002
    gross = abs(perp_coins * perp_mark) + sum(
        abs(u * g["delta"] * index) for (_, _, u, _), g in zip(options, greeks, strict=True))
    mr7 = 0.0045 * gross  # below 10,000: tier multiplier 1
    mmr = max(max(mr1, mr2, mr6) + mr3 + mr4 + mr5, mr7 + mr8)
    return {"mr1": mr1, "mr2": mr2, "mr3": mr3, "mr4": mr4, "mr5": mr5, "mr6": mr6,
            "mr7": mr7, "mr8": mr8, "mmr": mmr, "imr": 1.3 * mmr,
            "delta": linear + option_delta, "spot_in_use": spot}


def expected() -> dict[str, dict[str, float]]:
    alice = unit([("call", 66000, -1.0, 0.6)], 0.0, 60000, 1.0, 60000, YEARS)
    carol = unit([("put", 54000, -1.0, 0.6)], -0.25, 60000, 0.0, 60000, YEARS)
    dave = unit([("put", 54000, -1.0, 0.6)], -0.01, 45000, 0.0, 45000, YEARS_DAY2)
    hedge = dave["delta"] / 0.001  # contracts of the 0.001-BTC perpetual to sell
    # After the hedge: the perpetual holds -0.01 - delta BTC at 45,000, entry 60,000 for the
    # first 0.01 and 45,000 for the rest; the fee 0.05 % of the hedge's notional is paid.
    fee = hedge * 0.001 * 45000 * 0.0005
    after = unit([("put", 54000, -1.0, 0.6)], -0.01 - dave["delta"], 45000, 0.0, 45000,
                 YEARS_DAY2)
    equity_after = 4650 - fee
    return {"alice": alice, "carol": carol, "dave": dave,
            "ddh2": {"qty": hedge, "fee": fee, "level_after": equity_after / after["mmr"]}}


def _numeric_checks(name: str) -> list[dict[str, Any]]:
    data = json.loads((SCENARIOS / name / "expect.json").read_text())
    return [check for check in data["checks"] if "path" in check or "event" in check]


def _close(actual: float, check: dict[str, Any], expected_text: str) -> None:
    tol = float(check.get("tol", "0"))
    assert abs(actual - float(Decimal(expected_text))) <= tol + 1e-9 * abs(actual), (
        check, actual)


def test_hedged_scenario_matches_the_float_recomputation() -> None:
    figures = expected()
    checked = 0
    for check in _numeric_checks("options-pm-hedged"):
        path = check.get("path", "")
        if path.startswith("margin.risk_units.BTC."):
            field = path.rsplit(".", 1)[1]
            _close(figures[check["account"]][field], check, check["equals"])
            checked += 1
    assert checked == 24


def test_ddh2_scenario_matches_the_float_recomputation() -> None:
    figures = expected()
    checked = 0
    for check in _numeric_checks("options-pm-ddh2"):
        path = check.get("path", "")
        if path.startswith("margin.risk_units.BTC."):
            _close(figures["dave"][path.rsplit(".", 1)[1]], check, check["equals"])
        event = check.get("event", {})
        if event.get("type") == "LiquidationStepPlanned" and "qty" in event:
            _close(figures["ddh2"]["qty"], {"tol": check.get("tol", "0")}, event["qty"])
            _close(figures["ddh2"]["fee"], {"tol": check.get("tol", "0")}, event["fee"])
            _close(figures["ddh2"]["level_after"], {"tol": check.get("tol", "0")},
                   event["margin_level_after"])
            checked += 1
    assert checked == 1


if __name__ == "__main__":
    print(json.dumps(expected(), indent=1))


def test_long_option_unit_charges_match_the_float_recomputation() -> None:
    """A long call pays time decay (MR2 > 0) and no short-option minimum (MR8 = 0); a long
    put and a short call in one expiry net their vega in MR3 (docs/options.md)."""
    from datetime import UTC, datetime

    from ledger import numbers
    from ledger.rules.options import OptionType
    from ledger.rules.portfolio import OptionHolding, option_charges, option_grid_loss
    from ledger.rules.terms import RiskUnitTerms

    numbers.install()
    expiry = datetime(2025, 4, 1, tzinfo=UTC)
    years = Decimal(90) / 365

    def holding(kind: OptionType, strike: int, units: int) -> OptionHolding:
        return OptionHolding(kind, Decimal(strike), expiry, years, Decimal(units),
                             Decimal(60000), Decimal("0.6"), Decimal(1), Decimal(60000))

    terms = RiskUnitTerms("BTC")
    book = [holding(OptionType.CALL, 66000, 2)]
    mr2, mr3, mr5, mr8 = option_charges(book, terms)
    reference = unit([("call", 66000, 2.0, 0.6)], 0.0, 60000, 0.0, 60000, YEARS)
    theta = b76("call", 60000, 66000, YEARS, 0.6)["theta"]
    assert mr2 > 0 and abs(float(mr2) - (-2 * theta / 365)) < 1e-9
    assert abs(float(mr2) - reference["mr2"]) < 1e-9
    assert abs(float(mr3) - reference["mr3"]) < 1e-7 and abs(float(mr5) - reference["mr5"]) < 1e-9
    assert mr8 == 0
    loss = option_grid_loss(Decimal(0), Decimal(60000), book, terms.price_shocks, terms)
    assert abs(float(loss) - reference["mr1"]) < 1e-7
    spread = [holding(OptionType.PUT, 54000, 1), holding(OptionType.CALL, 66000, -1)]
    _, mr3_spread, _, mr8_spread = option_charges(spread, terms)
    reference = unit([("put", 54000, 1.0, 0.6), ("call", 66000, -1.0, 0.6)], 0.0, 60000, 0.0,
                     60000, YEARS)
    assert abs(float(mr3_spread) - reference["mr3"]) < 1e-7
    assert mr8_spread == Decimal("0.003") * 60000
    loss = option_grid_loss(Decimal(0), Decimal(60000), spread, terms.price_shocks, terms)
    assert abs(float(loss) - reference["mr1"]) < 1e-7


def test_ddh2_without_a_perpetual_buys_back_options_for_their_premium() -> None:
    """An options book with no perpetual to hedge with: ddh2 falls back to closing the
    positions whose delta has the unit's sign (the short put is bought back at its mark, the
    taker fee on its premium)."""
    from datetime import UTC, datetime

    from ledger import numbers
    from ledger.rules import margin as rules
    from ledger.rules.liquidation_plan import liquidation_plan
    from ledger.rules.terms import (
        AssetTerms,
        InstrumentTerms,
        Kind,
        Mode,
        RiskTier,
        RiskUnitTerms,
    )

    numbers.install()
    symbol = "BTC-USDT-250401-54000-P"
    put = InstrumentTerms(symbol=symbol, kind=Kind.OPTION, base="BTC", settle="USDT",
                          contract_size=Decimal("0.01"),
                          risk_tiers=(RiskTier(None, Decimal(0), Decimal(1)),),
                          taker_fee_rate=Decimal("0.0003"),
                          expiry=datetime(2025, 4, 1, tzinfo=UTC), option_type="put",
                          strike=Decimal(54000))
    market = rules.Market(
        at=datetime(2025, 1, 2, tzinfo=UTC), assets={"USDT": AssetTerms("USDT")},
        indexes={"BTC": Decimal(45000), "USDT": Decimal(1)}, instruments={symbol: put},
        marks={symbol: Decimal(11000)}, risk_units={"BTC": RiskUnitTerms("BTC")},
        ivs={symbol: Decimal("0.6")})
    book = rules.AccountSnapshot(
        mode=Mode.PORTFOLIO, balances={"USDT": Decimal(15500)},
        positions=[rules.PositionState(symbol, "cross", Decimal(-100), Decimal(3500))])
    figures = rules.margin_figures(book, market)
    assert figures.effective_equity_usd == Decimal(4500)  # 15,500 − 100 × 0.01 × 11,000
    assert figures.margin_level is not None and figures.margin_level < 1
    plan = liquidation_plan(book, market)
    first = plan.legs[0]
    assert (first.stage, first.symbol, first.side, first.price) == (
        "ddh2", symbol, "buy", Decimal(11000))
    # The put alone makes the unit's delta (+0.6798… BTC): its |x| equals |X|, so it closes
    # whole (10.10: a position whole while its |x| ≤ what remains): 100 contracts, fee
    # 100 × 0.01 × 11,000 × 0.03 % = 3.3; nothing is left to require.
    assert first.qty == Decimal(100) and first.fee == Decimal("3.3")
    assert first.margin_level_after is None and plan.target_reached and plan.steps == 1
    delta = b76("put", 45000, 54000, YEARS_DAY2, 0.6)["delta"]
    assert abs(float(figures.risk_units["BTC"].delta) + delta) < 1e-12
