"""Properties of portfolio margin (issue 7 acceptance; PORTFOLIO-MARGIN.md 10.3-10.12).

1. Replay: for a random portfolio feed, the state replayed at any T (a fresh reader, `state
   --at T`) shows the same `margin.risk_units` as the live state had at T: parameters, prices,
   holdings and tenors as of T (SQLite store, one per example).
2. The liquidation plan (pure: `liquidation_plan(AccountSnapshot, Market)` on generated books):
   every `ddh1` and `basis` step leaves its unit's net derivative cash delta Σ c_i unchanged;
   every `ddh2` step moves its unit's delta X_U toward 0 without crossing it, and the unit's
   ddh2 steps end at X_U = 0 when the positions on X_U's side hold at least |X_U| coins and the
   plan did not stop inside them.

Tolerance 10⁻²⁰: the pro-rata fractions H/L, H/S and inverse exposures q·F/M are 34-digit
quotients (the rules' own docstring says so); nothing else is rounded.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.numbers import ZERO, install
from ledger.rules.liquidation_plan import Leg, liquidation_plan
from ledger.rules.margin import AccountSnapshot, Market, PositionState, evaluate
from ledger.rules.portfolio import cash
from ledger.rules.positions import apply_fill
from ledger.rules.terms import (
    AssetTerms,
    InstrumentTerms,
    Kind,
    Mode,
    PortfolioTerms,
    RiskTier,
    RiskUnitTerms,
)

install()

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOLERANCE = D("1e-20")


def t(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- 1. replay

SYMBOLS = {  # symbol: (base, reference mark)
    "BTCUSDT": ("BTC", D(50000)),
    "BTCUSD": ("BTC", D(50000)),
    "BTC-FUT": ("BTC", D(50000)),
    "ETHUSDT": ("ETH", D(2000)),
}
TIERS = [{"up_to": "1000000000", "mmr": "0.004", "max_leverage": "100"}]


def setup_feed() -> list[dict[str, Any]]:
    """ann: 10 BTC and 100,000 USDT, portfolio mode. BTC-FUT expires 2025-12-26T08:00Z."""
    def perp(symbol: str, base: str, settle: str, size: str, kind: str) -> dict[str, Any]:
        return {"type": "instrument", "at": t(0), "symbol": symbol, "kind": kind,
                "base": base, "settle": settle, "contract_size": size, "risk_tiers": TIERS}

    return [
        {"type": "asset", "at": t(0), "asset": "USDT"},
        {"type": "asset", "at": t(0), "asset": "BTC"},
        {"type": "asset", "at": t(0), "asset": "ETH"},
        {"type": "index_price", "at": t(0), "asset": "BTC", "price": "50000"},
        {"type": "index_price", "at": t(0), "asset": "ETH", "price": "2000"},
        {"type": "risk_unit", "at": t(0), "asset": "BTC"},
        {"type": "risk_unit", "at": t(0), "asset": "ETH"},
        perp("BTCUSDT", "BTC", "USDT", "0.001", "linear_perpetual"),
        perp("BTCUSD", "BTC", "BTC", "100", "inverse_perpetual"),
        {**perp("BTC-FUT", "BTC", "USDT", "0.001", "linear_future"),
         "expiry": "2025-12-26T08:00:00Z"},
        perp("ETHUSDT", "ETH", "USDT", "0.01", "linear_perpetual"),
        *[{"type": "mark_price", "at": t(0), "symbol": s, "price": str(m)}
          for s, (_, m) in SYMBOLS.items()],
        {"type": "open_account", "at": t(0), "account": "ann", "mode": "multi_asset"},
        {"type": "deposit", "at": t(0), "id": "d1", "account": "ann", "asset": "BTC",
         "amount": "10"},
        {"type": "deposit", "at": t(0), "id": "d2", "account": "ann", "asset": "USDT",
         "amount": "100000"},
        {"type": "change_mode", "at": t(0), "account": "ann", "mode": "portfolio"},
    ]


moves = st.decimals(min_value=D("0.7"), max_value=D("1.3"), places=3)
rates = st.decimals(min_value=D("0"), max_value=D("0.02"), places=4)


@st.composite
def actions(draw: st.DrawFn) -> tuple[int, dict[str, Any]]:
    """One command (without `at`) and the seconds since the previous one (1 s … 20 days)."""
    gap = draw(st.sampled_from([1, 59, 3600, 86400, 7 * 86400, 20 * 86400]))
    kind = draw(st.sampled_from(["mark", "index", "risk_unit", "fill", "spot", "deposit"]))
    command: dict[str, Any]
    if kind == "mark":
        symbol = draw(st.sampled_from(sorted(SYMBOLS)))
        price = SYMBOLS[symbol][1] * draw(moves)
        command = {"type": "mark_price", "symbol": symbol, "price": str(price)}
    elif kind == "index":
        name = draw(st.sampled_from(["BTC", "ETH"]))
        base = D(50000) if name == "BTC" else D(2000)
        command = {"type": "index_price", "asset": name, "price": str(base * draw(moves))}
    elif kind == "risk_unit":
        shock = draw(st.sampled_from(["0.06", "0.12", "0.18", "0.25"]))
        command = {"type": "risk_unit", "asset": draw(st.sampled_from(["BTC", "ETH"])),
                   "price_shocks": ["-" + shock, "0", shock],
                   "extreme_shocks": ["-" + str(2 * D(shock)), str(2 * D(shock))],
                   "basis_rate": str(draw(rates)), "basis_annual_rate": str(draw(rates) * 10),
                   "min_charge_rate": str(draw(rates))}
    elif kind == "fill":
        symbol = draw(st.sampled_from(sorted(SYMBOLS)))
        command = {"type": "fill", "account": "ann", "symbol": symbol,
                   "side": draw(st.sampled_from(["buy", "sell"])),
                   "qty": str(draw(st.integers(min_value=1, max_value=3000))),
                   "price": str(SYMBOLS[symbol][1] * draw(moves)), "fee": "0"}
    elif kind == "spot":
        amount = draw(st.none() | st.decimals(min_value=D(0), max_value=D(15), places=2))
        command = {"type": "set_spot_in_use", "account": "ann",
                   "asset": draw(st.sampled_from(["BTC", "ETH"])),
                   "amount": None if amount is None else str(amount)}
    else:
        command = {"type": "deposit", "account": "ann",
                   "asset": draw(st.sampled_from(["BTC", "USDT"])),
                   "amount": str(draw(st.decimals(min_value=D("0.01"), max_value=D(5),
                                                  places=2)))}
    return gap, command


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(steps=st.lists(actions(), min_size=1, max_size=8))
def test_replay_at_any_time_gives_the_live_risk_units(
        sqlite_url: str, steps: list[tuple[int, dict[str, Any]]]) -> None:
    """Apply a random feed command by command; after each, the live state's risk units (and
    borrowing figures) are recorded at that `at`; a fresh reader's `state --at T` must show the
    same, for every T (the future's tenor, the risk_unit parameters, the prices and the spot
    setting in force at T)."""
    url = sqlite_url.removesuffix(".db") + f"-{uuid.uuid4().hex}.db"
    ledger = Ledger(url)
    for data in setup_feed():
        ledger.handle(parse_command(data))
    seconds = 0
    seen: list[tuple[int, dict[str, Any]]] = []
    for number, (gap, command) in enumerate(steps):
        seconds += gap
        data = {**command, "at": t(seconds)}
        if data["type"] in ("fill", "deposit"):
            data["id"] = f"x{number}"
        ledger.handle(parse_command(data))
        live = queries.state(ledger, "ann")
        assert live["as_of"] == t(seconds)
        seen.append((seconds, live["margin"]))
    reader = Ledger(url)
    for at, margin in seen:
        replayed = queries.state(reader, "ann", T0 + timedelta(seconds=at))["margin"]
        assert replayed["risk_units"] == margin["risk_units"], at
        assert (replayed["borrowing_mmr_usd"], replayed["borrowing_imr_usd"]) == (
            margin["borrowing_mmr_usd"], margin["borrowing_imr_usd"]), at


# ----------------------------------------------------------------------------- 2. the plan

MARCH = datetime(2025, 3, 28, 8, tzinfo=UTC)
JUNE = datetime(2025, 6, 27, 8, tzinfo=UTC)
ONE_TIER = (RiskTier(None, D("0.004"), D("100")),)


def terms(symbol: str, kind: Kind, base: str, settle: str, size: str, taker: Decimal,
          expiry: datetime | None = None) -> InstrumentTerms:
    return InstrumentTerms(symbol=symbol, kind=kind, base=base, settle=settle,
                           contract_size=D(size), risk_tiers=ONE_TIER, taker_fee_rate=taker,
                           expiry=expiry)


def instruments(taker: Decimal) -> dict[str, InstrumentTerms]:
    """Every kind of risk: USDT/USDC/USD margin currencies, perpetuals and two expiries.
    Inverse contracts pay no fee here: a fee paid in the unit's own coin lowers the holding
    and with it the automatic spot in use, so `close |X_U| coins` would end at −fee, not 0."""
    perp, inverse, fut = Kind.LINEAR_PERPETUAL, Kind.INVERSE_PERPETUAL, Kind.LINEAR_FUTURE
    listed = [
        terms("BTCUSDT", perp, "BTC", "USDT", "0.001", taker),
        terms("BTCUSDC", perp, "BTC", "USDC", "0.001", taker),
        terms("BTCUSD", inverse, "BTC", "BTC", "100", ZERO),
        terms("BTC-MAR", fut, "BTC", "USDT", "0.001", taker, MARCH),
        terms("BTC-JUN", fut, "BTC", "USDC", "0.001", taker, JUNE),
        terms("ETHUSDT", perp, "ETH", "USDT", "0.01", taker),
        terms("ETHUSDC", perp, "ETH", "USDC", "0.01", taker),
        terms("ETH-MAR", fut, "ETH", "USDT", "0.01", taker, MARCH),
    ]
    return {item.symbol: item for item in listed}


@st.composite
def books(draw: st.DrawFn) -> tuple[AccountSnapshot, Market]:
    taker = draw(st.sampled_from([ZERO, D("0.0005")]))
    listed = instruments(taker)
    btc = draw(st.decimals(min_value=D(20000), max_value=D(80000), places=0))
    eth = draw(st.decimals(min_value=D(1000), max_value=D(4000), places=0))
    indexes = {"BTC": btc, "ETH": eth,
               "USDT": draw(st.sampled_from([D(1), D("0.9995")])),
               "USDC": draw(st.sampled_from([D(1), D("1.0002")]))}
    basis = st.decimals(min_value=D("0.98"), max_value=D("1.02"), places=3)
    marks = {s: (btc if i.base == "BTC" else eth) * draw(basis) for s, i in listed.items()}
    chosen = draw(st.lists(st.sampled_from(sorted(listed)), min_size=1, max_size=8,
                           unique=True))
    positions = []
    for symbol in chosen:
        qty = draw(st.integers(min_value=-3000, max_value=3000).filter(lambda q: q != 0))
        entry = marks[symbol] * draw(basis)
        positions.append(PositionState(symbol, "cross", D(qty), entry))
    balances = {
        "USDT": draw(st.decimals(min_value=D(-100000), max_value=D(100000), places=2)),
        "USDC": draw(st.decimals(min_value=D(-50000), max_value=D(50000), places=2)),
        "BTC": draw(st.decimals(min_value=D(-1), max_value=D(8), places=4)),
        "ETH": draw(st.decimals(min_value=D(0), max_value=D(60), places=3)),
    }
    setting = st.none() | st.decimals(min_value=D(0), max_value=D(10), places=2)
    spot_in_use = {"BTC": draw(setting), "ETH": draw(setting)}
    target = draw(st.sampled_from([D("1.1"), D("2"), D("1000000"), D("1000000")]))
    market = Market(
        at=T0,
        assets={name: AssetTerms(name) for name in ("USDT", "USDC", "BTC", "ETH")},
        indexes=indexes, instruments=listed, marks=marks,
        risk_units={"BTC": RiskUnitTerms("BTC"), "ETH": RiskUnitTerms("ETH")},
        portfolio=PortfolioTerms(target_level=target),
    )
    snapshot = AccountSnapshot(mode=Mode.PORTFOLIO, balances=balances, positions=positions,
                               spot_in_use=spot_in_use)
    return snapshot, market


def close(account: AccountSnapshot, market: Market, leg: Leg) -> AccountSnapshot:
    """Apply one leg: close `leg.qty` contracts at the mark, realise the PnL, pay the fee."""
    held = next(p for p in account.positions if p.symbol == leg.symbol)
    item = market.instruments[leg.symbol]
    assert ZERO < leg.qty <= abs(held.qty) + TOLERANCE, (leg, held)
    assert leg.side == ("sell" if held.qty > ZERO else "buy"), (leg, held)
    assert leg.price == market.marks[leg.symbol]
    qty = min(leg.qty, abs(held.qty))
    outcome = apply_fill(held.qty, held.entry_price, -qty if held.qty > ZERO else qty,
                         leg.price, item.contract_size, item.is_inverse)
    balances = dict(account.balances)
    balances[item.settle] = balances.get(item.settle, ZERO) + outcome.realized_pnl - leg.fee
    positions = [p for p in account.positions if p.symbol != leg.symbol]
    if outcome.qty != ZERO:
        positions.append(replace(held, qty=outcome.qty, entry_price=outcome.entry_price))
    return replace(account, balances=balances, positions=positions)


def net_cash(account: AccountSnapshot, market: Market, unit: str) -> Decimal:
    """Σ c_i over the unit's derivative positions (10.3): linear q·F·M·I_settle, inverse q·F."""
    total = ZERO
    for held in account.positions:
        item = market.instruments[held.symbol]
        if item.base == unit:
            settle = D(1) if item.is_inverse else market.index(item.settle) or ZERO
            total += cash(held.qty, item.contract_size, market.marks[held.symbol], settle,
                          item.is_inverse)
    return total


def unit_delta(account: AccountSnapshot, market: Market, unit: str) -> Decimal:
    figures = evaluate(account, market, limits=False).margin.risk_units.get(unit)
    return ZERO if figures is None else figures.delta


def same_side_coins(account: AccountSnapshot, market: Market, unit: str, delta: Decimal
                    ) -> Decimal:
    """Σ |x_i| over the unit's positions whose exposure has the sign of `delta`."""
    total = ZERO
    for held in account.positions:
        item = market.instruments[held.symbol]
        if item.base != unit:
            continue
        mark = market.marks[held.symbol]
        x = held.qty * item.contract_size / mark if item.is_inverse else (
            held.qty * item.contract_size)
        if x * delta > ZERO:
            total += abs(x)
    return total


@settings(deadline=None)
@given(books())
def test_plan_steps_keep_net_cash_in_hedge_stages_and_close_the_delta_in_ddh2(
        book: tuple[AccountSnapshot, Market]) -> None:
    """Replay the plan's steps on the book; ddh1/basis: Σ c_i of the unit unchanged; ddh2:
    |X'| ≤ |X|, X'·X ≥ 0 (no crossing), and X = 0 after the unit's last ddh2 step when its
    side held ≥ |X| coins at the unit's turn and the plan went on past those steps (or ended
    short of the target). Stages come in order ddh1 → ddh2 → basis → general."""
    snapshot, market = book
    plan = liquidation_plan(snapshot, market)
    order = {"ddh1": 0, "ddh2": 1, "basis": 2, "general": 3}
    stages = [order[leg.stage] for leg in plan.legs]
    assert stages == sorted(stages)
    steps: dict[int, list[Leg]] = {}
    for leg in plan.legs:
        steps.setdefault(leg.step, []).append(leg)
    assert list(steps) == list(range(1, plan.steps + 1))

    account = snapshot
    ddh2_start: dict[str, tuple[Decimal, Decimal]] = {}  # unit: (X at its turn, side coins)
    ddh2_last: dict[str, tuple[int, Decimal]] = {}  # unit: (last ddh2 step, X after it)
    for number, legs in steps.items():
        stage, unit = legs[0].stage, legs[0].underlying
        assert all((leg.stage, leg.underlying) == (stage, unit) for leg in legs)
        cash_before = net_cash(account, market, unit)
        delta_before = unit_delta(account, market, unit)
        if stage == "ddh2" and unit not in ddh2_start:
            ddh2_start[unit] = (delta_before,
                                same_side_coins(account, market, unit, delta_before))
        for leg in legs:
            account = close(account, market, leg)
        if stage in ("ddh1", "basis"):
            assert abs(net_cash(account, market, unit) - cash_before) <= TOLERANCE, (
                number, stage, unit)
        if stage == "ddh2":
            assert len(legs) == 1
            delta_after = unit_delta(account, market, unit)
            assert abs(delta_after) <= abs(delta_before) + TOLERANCE, number
            assert delta_after * delta_before >= -TOLERANCE * abs(delta_before), number
            ddh2_last[unit] = (number, delta_after)
    for unit, (last_step, delta_after) in ddh2_last.items():
        start, side = ddh2_start[unit]
        finished = last_step < plan.steps or not plan.target_reached
        if finished and side >= abs(start):
            assert abs(delta_after) <= TOLERANCE, (unit, start, delta_after)
