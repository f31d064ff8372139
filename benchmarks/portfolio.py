"""Bench case: margin for 10,000 portfolio accounts with 20 positions each (issue 7).

Five underlyings, each with a USDT linear perpetual, a USDC-settled call option (issue 15: a
quarter of the positions are options, re-priced by Black-76 over the price × vol grid), a
linear future and an inverse perpetual (4 × 5 = 20 positions per account), plus coin balances
(spot in use, automatic or fixed) and a USDT balance that is negative for some accounts
(borrowing). Every account is evaluated with the same pure rules the ledger uses for `state`
(`rules.margin.evaluate`), so the figure measures the real path, not a copy of it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.rules import margin as rules
from ledger.rules.terms import (
    AssetTerms,
    CollateralTier,
    InstrumentTerms,
    Kind,
    Mode,
    RiskTier,
    RiskUnitTerms,
)

AT = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
UNDERLYINGS = {"BTC": Decimal(60000), "ETH": Decimal(3000), "SOL": Decimal(150),
               "XRP": Decimal("0.6"), "LTC": Decimal(90)}
TIERS = (RiskTier(None, Decimal("0.004"), Decimal(100)),)


def market() -> rules.Market:
    instruments: dict[str, InstrumentTerms] = {}
    marks: dict[str, Decimal] = {}
    expiry = AT + timedelta(days=73)
    for coin, price in UNDERLYINGS.items():
        size = Decimal("0.001") if coin == "BTC" else Decimal(1)
        for symbol, kind, settle, contract in (
            (f"{coin}USDT", Kind.LINEAR_PERPETUAL, "USDT", size),
            (f"{coin}USDC", Kind.OPTION, "USDC", size),
            (f"{coin}USDT-FUT", Kind.LINEAR_FUTURE, "USDT", size),
            (f"{coin}USD", Kind.INVERSE_PERPETUAL, coin, Decimal(10)),
        ):
            instruments[symbol] = InstrumentTerms(
                symbol=symbol, kind=kind, base=coin, settle=settle, contract_size=contract,
                risk_tiers=TIERS, taker_fee_rate=Decimal("0.0005"),
                expiry=expiry if kind in (Kind.LINEAR_FUTURE, Kind.OPTION) else None,
                option_type="call" if kind is Kind.OPTION else None,
                strike=price * Decimal("1.1") if kind is Kind.OPTION else None)
            marks[symbol] = (price / 20 if kind is Kind.OPTION
                             else price * (1 + Decimal(len(symbol) % 5) / 10000))
    assets = {coin: AssetTerms(coin, collateral_tiers=(CollateralTier(Decimal(1000000),
                                                                      Decimal("0.9")),
                                                       CollateralTier(None, Decimal(0))))
              for coin in UNDERLYINGS}
    assets["USDT"] = AssetTerms("USDT")
    assets["USDC"] = AssetTerms("USDC")
    indexes = dict(UNDERLYINGS)
    indexes["USDT"] = Decimal("0.9995")
    ivs = {f"{coin}USDC": Decimal("0.6") for coin in UNDERLYINGS}
    return rules.Market(at=AT, assets=assets, indexes=indexes, instruments=instruments,
                        marks=marks, risk_units={c: RiskUnitTerms(c) for c in UNDERLYINGS},
                        ivs=ivs)


def accounts(count: int, seed: int = 11) -> list[rules.AccountSnapshot]:
    rng = random.Random(seed)
    books = []
    symbols = [(coin, suffix) for coin in UNDERLYINGS for suffix in ("USDT", "USDC", "USDT-FUT",
                                                                       "USD")]
    for _ in range(count):
        positions = []
        for coin, suffix in symbols:
            qty = Decimal(rng.randint(-500, 500) or 1)
            entry = UNDERLYINGS[coin] * (1 + Decimal(rng.randint(-50, 50)) / 1000)
            positions.append(rules.PositionState(symbol=coin + suffix, margin_type="cross",
                                                 qty=qty, entry_price=entry))
        balances = {coin: Decimal(rng.randint(0, 20)) for coin in UNDERLYINGS}
        balances["USDT"] = Decimal(rng.randint(-20000, 200000))
        balances["USDC"] = Decimal(rng.randint(0, 50000))
        spot = {"BTC": Decimal(rng.randint(0, 5))} if rng.random() < 0.3 else {}
        books.append(rules.AccountSnapshot(mode=Mode.PORTFOLIO, balances=balances,
                                           positions=positions, spot_in_use=spot))
    return books


def bench_portfolio(out: Callable[[str], None], count: int = 10_000) -> dict[str, Any]:
    prices = market()
    books = accounts(count)
    started = time.perf_counter()
    total = Decimal(0)
    for book in books:
        total += rules.margin_figures(book, prices).maintenance_margin_usd
    elapsed = time.perf_counter() - started
    positions = sum(len(book.positions) for book in books)
    out(f"portfolio margin: {count:,} accounts, {positions:,} positions, 5 underlyings in "
        f"{elapsed:.2f} s ({elapsed / count * 1e6:.0f} µs per account); Σ MMR {total:,.2f}")
    return {"accounts": count, "positions": positions, "seconds": round(elapsed, 3)}
