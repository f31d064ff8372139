"""Properties of the ledger over random command streams (hypothesis; DESIGN §9).

A stream is a fixed market and four accounts, then random steps at non-decreasing times:
deposits, withdrawals, transfers, fills (buy and sell, cross and isolated, on two linear
perpetuals — one USDC-settled with session settlement, funded every 4 h — and one inverse),
mark and index price moves, open orders, funding rates, `settle_funding` at the funding times,
`charge_interest` on whole hours, `check_margin`, repayments, auto top-up switches and mode
changes; times now and then carry a fraction of a second or another offset than Z. Many
commands are rejected (withdrawals above the limits, coin-settled fills in multi_asset mode,
mode changes with positions): the invariants hold over what was applied.

Invariants, one test each:
(a) conservation: every event's postings sum to zero per asset; every account's balance is the
    sum of its own posting lines; Σ balances + Σ system postings = 0 per asset;
(b) replay: the live application's state equals a fresh application's (from the store);
(c) prefix: the state at T equals the state at T of a store fed only the commands up to T;
(d) idempotency: sending every applied command with an `id` again is acknowledged and changes
    nothing; periodic commands sent again change nothing (in the same process and a new one).

(a) and (d) draw on SQLite, (b) and (c) on SQLite and PostgreSQL; a hand-written stream that
reaches auto-exchange, repayment, automatic top-up, funding, session settlement and interest
runs every invariant on both backends. At the end: regression tests for the bugs (b) found.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.feed import RunReport, run_feed
from ledger.application.service import ACKNOWLEDGED, SNAPSHOT_EVERY, Ledger
from ledger.numbers import ZERO
from ledger.times import format_at, parse_at

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ACCOUNTS = {"a": "single_asset", "b": "single_asset", "m": "multi_asset", "n": "multi_asset"}
PRECISION = {"USDT": 8, "USDC": 6, "BTC": 8, "ETH": 8}
PERIODIC = ("settle_funding", "charge_interest", "check_margin")


def _at(moment: datetime) -> str:
    return format_at(moment)


MARKET: list[dict[str, Any]] = [
    {"type": "asset", "at": _at(T0), "asset": "USDT", "precision": 8,
     "interest": {"annual_rate": "0.10", "free_amount": "100"},
     "auto_exchange_threshold_usd": "500", "auto_exchange_discount": "0.975"},
    {"type": "asset", "at": _at(T0), "asset": "USDC", "precision": 6,
     "interest": {"annual_rate": "0.08", "free_amount": "0", "free_mode": "full"}},
    {"type": "asset", "at": _at(T0), "asset": "BTC", "precision": 8,
     "collateral_tiers": [{"up_to": "2", "ratio": "0.95"}, {"up_to": "10", "ratio": "0.9"},
                          {"up_to": None, "ratio": "0"}]},
    {"type": "asset", "at": _at(T0), "asset": "ETH", "precision": 8,
     "collateral_tiers": [{"up_to": "50", "ratio": "0.9"}, {"up_to": None, "ratio": "0.5"}]},
    {"type": "index_price", "at": _at(T0), "asset": "BTC", "price": "30000"},
    {"type": "index_price", "at": _at(T0), "asset": "ETH", "price": "2000"},
    {"type": "instrument", "at": _at(T0), "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.0001", "taker_fee_rate": "0.0005",
     "maker_fee_rate": "0.0002",
     "risk_tiers": [{"up_to": "100000", "mmr": "0.004", "max_leverage": "125"},
                    {"up_to": "500000", "mmr": "0.006", "max_leverage": "50"},
                    {"up_to": None, "mmr": "0.01", "max_leverage": "20"}]},
    {"type": "instrument", "at": _at(T0), "symbol": "ETHUSDC", "kind": "linear_perpetual",
     "base": "ETH", "settle": "USDC", "contract_size": "0.01", "taker_fee_rate": "0.00055",
     "maker_fee_rate": "0.0001", "close_fee_in_mm": True, "session_settlement": True,
     "funding_interval_hours": 4,
     "risk_tiers": [{"up_to": "50000", "mmr": "0.01", "max_leverage": "50"},
                    {"up_to": None, "mmr": "0.02", "max_leverage": "25"}]},
    {"type": "instrument", "at": _at(T0), "symbol": "BTCUSD", "kind": "inverse_perpetual",
     "base": "BTC", "settle": "BTC", "contract_size": "100", "taker_fee_rate": "0.0006",
     "risk_tiers": [{"up_to": "20", "mmr": "0.005", "max_leverage": "100"},
                    {"up_to": None, "mmr": "0.01", "max_leverage": "50"}]},
    {"type": "mark_price", "at": _at(T0), "symbol": "BTCUSDT", "price": "30000"},
    {"type": "mark_price", "at": _at(T0), "symbol": "ETHUSDC", "price": "2000"},
    {"type": "mark_price", "at": _at(T0), "symbol": "BTCUSD", "price": "30000"},
    *({"type": "open_account", "at": _at(T0), "account": name, "mode": mode}
      for name, mode in ACCOUNTS.items()),
]

SYMBOLS = {  # symbol: (underlying, contracts per fill at most)
    "BTCUSDT": ("BTC", 60000),
    "ETHUSDC": ("ETH", 20000),
    "BTCUSD": ("BTC", 3000),
}
AMOUNTS = {  # asset: (smallest, largest, places drawn)
    "USDT": (Decimal("0.01"), Decimal("40000"), 8),
    "USDC": (Decimal("0.01"), Decimal("40000"), 6),
    "BTC": (Decimal("0.00001"), Decimal("3"), 8),
    "ETH": (Decimal("0.0001"), Decimal("40"), 8),
}
STEPS = (
    ["deposit"] * 3 + ["withdraw"] * 3 + ["transfer"] * 2 + ["fill"] * 6 + ["mark"] * 3
    + ["index"] * 2 + ["rate"] * 2 + ["settle_funding"] * 2 + ["check_margin"] * 2
    + ["round_trip"] * 2 + ["orders", "charge_interest", "change_mode", "auto_add", "repay"]
)


def amounts(asset: str) -> st.SearchStrategy[Decimal]:
    """Money of `asset` at its precision, small or large (hypothesis favours the bounds)."""
    low, high, places = AMOUNTS[asset]
    middle = high / 100
    return st.one_of(*(st.decimals(min_value=a, max_value=b, places=places, allow_nan=False,
                                   allow_infinity=False) for a, b in ((low, middle),
                                                                       (middle, high))))


def contracts(most: int) -> st.SearchStrategy[str]:
    """A quantity in contracts, small or large."""
    return st.one_of(st.integers(1, most // 100), st.integers(most // 100, most)).map(str)


small = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("300"), places=2,
                   allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=Decimal("-0.003"), max_value=Decimal("0.003"), places=6,
                   allow_nan=False, allow_infinity=False)


def near(price: Decimal, draw: Any, spread: int = 30) -> Decimal:
    """A price within ±spread/1000 of `price`, to 0.1."""
    offset: int = draw(st.integers(-spread, spread))
    moved = price * (1000 + offset) / 1000
    return moved.quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def written(moment: datetime, draw: Any) -> str:
    """`moment` as RFC 3339, mostly in UTC with Z, sometimes with another offset."""
    offset = draw(st.sampled_from([None, None, None, timedelta(hours=1),
                                   -timedelta(hours=5, minutes=30)]))
    if offset is None:
        return _at(moment)
    local = moment.astimezone(timezone(offset))
    return local.isoformat()


def next_boundary(moment: datetime, hours: int) -> datetime:
    """The first whole multiple of `hours` from 00:00 UTC at or after `moment`."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(hours=hours)
    candidate = day
    while candidate < moment:
        candidate += step
    return candidate


@st.composite
def streams(draw: Any, min_steps: int = 8, max_steps: int = 40,
            padded: str | None = None) -> list[dict[str, Any]]:
    """The fixed market, an opening deposit per account, then random steps in time order;
    with `padded`, a small deposit to that account after every step (a long stream)."""
    clock = T0
    marks = {"BTCUSDT": Decimal(30000), "ETHUSDC": Decimal(2000), "BTCUSD": Decimal(30000)}
    index = {"BTC": Decimal(30000), "ETH": Decimal(2000)}
    commands: list[dict[str, Any]] = [dict(c) for c in MARKET]
    serial = 0

    def new_id(prefix: str) -> str:
        nonlocal serial
        serial += 1
        return f"{prefix}{serial}"

    names = sorted(ACCOUNTS)
    held: dict[str, dict[str, Decimal]] = {name: {} for name in names}  # deposits, roughly

    def deposit(name: str, asset: str, at: str) -> None:
        amount = draw(amounts(asset))
        held[name][asset] = held[name].get(asset, ZERO) + amount
        commands.append({"type": "deposit", "at": at, "id": new_id("d"), "account": name,
                         "asset": asset, "amount": str(amount)})

    def taken(name: str) -> tuple[str, Decimal]:
        """An asset the account was given and a share of it, 1 % to 130 % (some too much)."""
        if not held[name] or draw(st.integers(0, 5)) == 0:
            asset = draw(st.sampled_from(sorted(AMOUNTS)))
            return asset, draw(amounts(asset))
        asset = draw(st.sampled_from(sorted(held[name])))
        share = held[name][asset] * draw(st.integers(1, 130)) / 100
        amount = share.quantize(Decimal(1).scaleb(-PRECISION[asset]), rounding=ROUND_DOWN)
        return asset, max(amount, AMOUNTS[asset][0])

    for name in names:  # multi_asset accounts start with coins and a cent: losses make debt
        if ACCOUNTS[name] == "single_asset":
            deposit(name, draw(st.sampled_from(["USDT", "USDC", "BTC"])), _at(T0))
        else:
            deposit(name, draw(st.sampled_from(["BTC", "ETH"])), _at(T0))
            held[name]["USDT"] = Decimal("0.01")
            commands.append({"type": "deposit", "at": _at(T0), "id": new_id("d"),
                             "account": name, "asset": "USDT", "amount": "0.01"})
    for _ in range(draw(st.integers(min_steps, max_steps))):
        if padded is not None:
            commands.append({"type": "deposit", "at": _at(clock), "id": new_id("p"),
                             "account": padded, "asset": "USDT", "amount": "0.01"})
        clock += timedelta(minutes=draw(st.sampled_from([0, 0, 1, 7, 30, 45, 90, 150])))
        if draw(st.integers(0, 9)) == 0:  # now and then a time with a fraction of a second
            clock += timedelta(microseconds=draw(st.integers(1, 999_999)))
        kind = draw(st.sampled_from(STEPS))
        account = draw(st.sampled_from(names))
        at = written(clock, draw)
        if kind == "deposit":
            deposit(account, draw(st.sampled_from(sorted(AMOUNTS))), at)
        elif kind == "withdraw":
            asset, amount = taken(account)
            commands.append({"type": "withdraw", "at": at, "id": new_id("w"),
                             "account": account, "asset": asset, "amount": str(amount)})
        elif kind == "transfer":
            asset, amount = taken(account)
            other = draw(st.sampled_from([n for n in names if n != account]))
            commands.append({"type": "transfer", "at": at, "id": new_id("t"), "from": account,
                             "to": other, "asset": asset, "amount": str(amount)})
        elif kind == "repay":  # mostly by the multi_asset accounts, which run into debt
            account = draw(st.sampled_from(["m", "n", account]))
            asset = draw(st.sampled_from(["USDT", "USDT", "USDC"]))
            commands.append({"type": "repay", "at": at, "id": new_id("r"), "account": account,
                             "asset": asset, "amount": str(draw(small)),
                             "with_asset": draw(st.sampled_from(["BTC", "ETH", "BTC", "USDT"]))})
        elif kind == "auto_add":
            commands.append({"type": "set_auto_add_margin", "at": at, "account": account,
                             "symbol": draw(st.sampled_from(sorted(SYMBOLS))),
                             "enabled": draw(st.booleans())})
        elif kind == "fill":
            linear = ACCOUNTS[account] == "multi_asset" and draw(st.integers(0, 5)) > 0
            symbol = draw(st.sampled_from(["BTCUSDT", "ETHUSDC"] if linear else sorted(SYMBOLS)))
            most = SYMBOLS[symbol][1]
            fill: dict[str, Any] = {
                "type": "fill", "at": at, "id": new_id("f"), "account": account,
                "symbol": symbol, "side": draw(st.sampled_from(["buy", "sell"])),
                "qty": draw(contracts(most)), "price": str(near(marks[symbol], draw)),
            }
            if draw(st.booleans()):
                fill["liquidity"] = "maker"
            if ACCOUNTS[account] == "single_asset" and draw(st.integers(0, 3)) == 0:
                fill["margin_type"] = "isolated"
            if draw(st.integers(0, 3)) == 0:
                fill["leverage"] = draw(st.sampled_from(["2", "5", "20", "50"]))
            if draw(st.integers(0, 4)) == 0:
                places = PRECISION["BTC" if symbol == "BTCUSD" else
                                   "USDC" if symbol == "ETHUSDC" else "USDT"]
                fill["fee"] = str(draw(st.decimals(min_value=Decimal("-1"), max_value=Decimal(5),
                                                   places=min(places, 4))))
            commands.append(fill)
            if fill.get("margin_type") == "isolated" and draw(st.booleans()):
                commands.append({"type": "set_auto_add_margin", "at": at, "account": account,
                                 "symbol": symbol, "enabled": True})
        elif kind == "round_trip":  # open and close at another price: realised PnL
            linear = ACCOUNTS[account] == "multi_asset"
            symbol = draw(st.sampled_from(["BTCUSDT", "ETHUSDC"] if linear else sorted(SYMBOLS)))
            qty = draw(contracts(SYMBOLS[symbol][1]))
            side = draw(st.sampled_from(["buy", "sell"]))
            for leg in (side, "sell" if side == "buy" else "buy"):
                commands.append({"type": "fill", "at": at, "id": new_id("f"),
                                 "account": account, "symbol": symbol, "side": leg,
                                 "qty": qty, "price": str(near(marks[symbol], draw, 60))})
            if draw(st.booleans()):  # a sweep right after: auto-exchange of a USDT debt
                commands.append({"type": "check_margin", "at": at})
        elif kind == "mark":
            symbol = draw(st.sampled_from(sorted(SYMBOLS)))
            marks[symbol] = near(marks[symbol], draw, spread=80)
            commands.append({"type": "mark_price", "at": at, "symbol": symbol,
                             "price": str(marks[symbol])})
        elif kind == "index":
            asset = draw(st.sampled_from(["BTC", "ETH"]))
            index[asset] = near(index[asset], draw, spread=80)
            commands.append({"type": "index_price", "at": at, "asset": asset,
                             "price": str(index[asset])})
        elif kind == "orders":
            symbol = draw(st.sampled_from(sorted(SYMBOLS)))
            book: dict[str, Any] = {}
            for side in ("buy", "sell"):
                if draw(st.booleans()):
                    book[side] = {"qty": draw(contracts(SYMBOLS[symbol][1])),
                                  "price": str(near(marks[symbol], draw))}
                else:
                    book[side] = None
            commands.append({"type": "open_orders", "at": at, "account": account,
                             "symbol": symbol, **book})
        elif kind == "rate":
            symbol = draw(st.sampled_from(sorted(SYMBOLS)))
            commands.append({"type": "funding_rate", "at": at, "symbol": symbol,
                             "rate": str(draw(rates))})
        elif kind == "settle_funding":
            for symbol in sorted(SYMBOLS):  # mostly with a rate for this funding time
                if draw(st.integers(0, 2)) > 0:
                    commands.append({"type": "funding_rate", "at": at, "symbol": symbol,
                                     "rate": str(draw(rates))})
            clock = next_boundary(clock, 4)
            at = _at(clock)
            commands.append({"type": "settle_funding", "at": at, "id": f"settle_funding:{at}"})
        elif kind == "charge_interest":
            clock = next_boundary(clock, 1)
            at = _at(clock)
            commands.append({"type": "charge_interest", "at": at, "id": f"charge_interest:{at}"})
        elif kind == "check_margin":
            commands.append({"type": "check_margin", "at": at})
        else:
            mode = draw(st.sampled_from(["single_asset", "multi_asset"]))
            commands.append({"type": "change_mode", "at": at, "account": account, "mode": mode})
    return commands


# ----------------------------------------------------------------------------- stores


def _empty_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if row[0].startswith(("ledger_", "projection"))]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))


@contextmanager
def empty_store(base_url: str) -> Iterator[str]:
    """An empty store for one example: a new SQLite file, or the test's PostgreSQL database
    emptied (the fixture's store is shared by every example of the test)."""
    if base_url.startswith("sqlite"):
        folder = tempfile.mkdtemp(prefix="ledger-props-")
        try:
            yield f"sqlite:///{folder}/ledger.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        _empty_postgres(base_url)
        yield base_url


@contextmanager
def opened(url: str) -> Iterator[Ledger]:
    app = Ledger(url)
    try:
        yield app
    finally:
        app.close()


def feed(app: Ledger, commands: list[dict[str, Any]], batch_size: int = 1000) -> RunReport:
    lines = ((number, json.dumps(c)) for number, c in enumerate(commands, start=1))
    report = run_feed(app, lines, batch_size=batch_size)
    assert report.internal_error is None, repr(report.internal_error)
    return report


def applied(commands: list[dict[str, Any]], report: RunReport) -> list[dict[str, Any]]:
    rejected = {r.line for r in report.rejected}
    return [c for number, c in enumerate(commands, start=1) if number not in rejected]


def states(app: Ledger, at: datetime | None = None) -> dict[str, Any]:
    return {name: queries.state(app, name, at) for name in sorted(ACCOUNTS)}


def pick_time(commands: list[dict[str, Any]], data: st.DataObject) -> datetime:
    """T: one of the command times, or a little after one (between two commands)."""
    moment = parse_at(data.draw(st.sampled_from([c["at"] for c in commands]), label="T"))
    return moment + timedelta(seconds=data.draw(st.sampled_from([0, 0, 1, 3599]), label="+s"))


def describe(report: RunReport) -> None:
    note(f"applied {report.applied}, acknowledged {report.acknowledged}, rejected "
         f"{[(r.line, r.type, r.error) for r in report.rejected]}")


# The profile (tests/conftest.py) sets max_examples and the deadline; no example database, so
# that a run writes nothing into the working tree.
PROPERTY = settings(database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
# The tests that also run on PostgreSQL (about half a second an example there) take at most the
# CI profile's 30 examples, also under the dev profile, to keep the file near a minute.
BOTH_BACKENDS = settings(parent=PROPERTY, max_examples=min(30, PROPERTY.max_examples))


# ----------------------------------------------------------------------------- the invariants


def check_conservation(app: Ledger) -> None:
    """(a) Every event's postings sum to zero per asset; each account's balance is the sum of
    its own lines; Σ balances + Σ system-account lines = 0 per asset; the hash chains hold."""
    totals: dict[str, Decimal] = {}
    for name in sorted(ACCOUNTS):
        own: dict[str, Decimal] = {}
        for event in queries.events(app, name):
            per_asset: dict[str, Decimal] = {}
            for posting in event.get("postings") or []:
                asset, amount = posting["asset"], Decimal(posting["amount"])
                per_asset[asset] = per_asset.get(asset, ZERO) + amount
                if posting["account"] == name:
                    own[asset] = own.get(asset, ZERO) + amount
                elif posting["account"].startswith("system:"):
                    totals[asset] = totals.get(asset, ZERO) + amount
            unbalanced = {asset: total for asset, total in per_asset.items() if total != ZERO}
            assert not unbalanced, (name, event["version"], event["type"], unbalanced)
        balances = {a: Decimal(v) for a, v in queries.state(app, name)["balances"].items()}
        for asset in set(own) | set(balances):
            assert balances.get(asset, ZERO) == own.get(asset, ZERO), (name, asset)
            totals[asset] = totals.get(asset, ZERO) + balances.get(asset, ZERO)
    assert {asset: total for asset, total in totals.items() if total != ZERO} == {}
    assert queries.verify(app)[2] == []


def check_replay(url: str, live: Ledger, moments: list[datetime | None]) -> None:
    """(b) A fresh application reads, from the store, what the live one holds."""
    held = {moment: states(live, moment) for moment in moments}
    history = {name: queries.events(live, name) for name in sorted(ACCOUNTS)}
    with opened(url) as fresh:
        for moment in moments:
            assert states(fresh, moment) == held[moment], moment
        assert {name: queries.events(fresh, name) for name in sorted(ACCOUNTS)} == history


def check_prefix(first: Ledger, commands: list[dict[str, Any]], moment: datetime) -> None:
    """(c) A new SQLite store fed only the commands up to T says the same at T."""
    prefix = [c for c in commands if parse_at(c["at"]) <= moment]
    with empty_store("sqlite") as second_url, opened(second_url) as second:
        feed(second, prefix)
        assert states(second, moment) == states(first, moment)


def check_repeats(url: str, app: Ledger, commands: list[dict[str, Any]],
                  report: RunReport) -> None:
    """(d) Every applied command with an `id` sent again is acknowledged, periodic commands
    sent again record nothing, and nothing changes (events, state), in the same application
    and in a new one."""
    repeats = [c for c in applied(commands, report) if "id" in c and c["type"] not in PERIODIC]
    periodic = [c for c in commands if c["type"] in PERIODIC]
    before = states(app)
    history = {name: queries.events(app, name) for name in sorted(ACCOUNTS)}
    notifications = app.recorder.max_notification_id()
    again = feed(app, repeats)
    assert again.rejected == []
    assert again.acknowledged == len(repeats)
    for command in repeats[:3]:  # one at a time too, outside a batch
        assert app.handle(parse_command(command)) == ACKNOWLEDGED
    assert feed(app, periodic).rejected == []
    assert app.recorder.max_notification_id() == notifications
    assert states(app) == before
    assert {name: queries.events(app, name) for name in sorted(ACCOUNTS)} == history
    with opened(url) as fresh:  # a new process: the ids come back from the store
        again = feed(fresh, repeats)
        assert again.rejected == []
        assert again.acknowledged == len(repeats)
        assert feed(fresh, periodic).rejected == []
        assert fresh.recorder.max_notification_id() == notifications
        assert states(fresh) == before


# ----------------------------------------------------------------------------- (a)


@PROPERTY
@given(commands=streams(), batch_size=st.sampled_from([1, 5, 1000]))
def test_postings_balance_per_asset_and_balances_plus_system_accounts_sum_to_zero(
    sqlite_url: str, commands: list[dict[str, Any]], batch_size: int
) -> None:
    """On SQLite (time); PostgreSQL: the hand-written stream below."""
    with empty_store(sqlite_url) as url, opened(url) as app:
        describe(feed(app, commands, batch_size))
        check_conservation(app)


# ----------------------------------------------------------------------------- (b)


@BOTH_BACKENDS
@given(commands=streams(), batch_size=st.sampled_from([1, 5, 1000]), data=st.data())
def test_a_fresh_replay_gives_the_state_the_application_holds(
    store_url: str, commands: list[dict[str, Any]], batch_size: int, data: st.DataObject
) -> None:
    """Batches of 1, 5 and 1,000 commands: what the live application holds between flushes
    is what the store gives back, now and at a T drawn from the stream."""
    with empty_store(store_url) as url, opened(url) as live:
        describe(feed(live, commands, batch_size))
        check_replay(url, live, [None, pick_time(commands, data)])


@settings(parent=PROPERTY, max_examples=4)
@given(commands=streams(min_steps=110, max_steps=130, padded="a"), data=st.data())
def test_a_long_history_read_through_snapshots_equals_the_live_state_at_any_t(
    sqlite_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Account a gets more than SNAPSHOT_EVERY events, so reads at and after the snapshot go
    through it: the live state, a fresh application's and a prefix store's agree at any T."""
    moments = [pick_time(commands, data) for _ in range(3)]
    with empty_store(sqlite_url) as url, opened(url) as live:
        describe(feed(live, commands))
        assert queries.state(live, "a")["version"] > SNAPSHOT_EVERY
        check_replay(url, live, [*moments, None])
        check_prefix(live, commands, moments[0])


# ----------------------------------------------------------------------------- (c)


@BOTH_BACKENDS
@given(commands=streams(), data=st.data())
def test_the_state_at_t_equals_that_of_a_store_fed_only_the_commands_up_to_t(
    store_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    """The whole stream goes to the test's store (SQLite or PostgreSQL), the prefix up to T to
    a new SQLite file: the property holds across backends too."""
    with empty_store(store_url) as url, opened(url) as first:
        describe(feed(first, commands))
        check_prefix(first, commands, pick_time(commands, data))


# ----------------------------------------------------------------------------- (d)


@PROPERTY
@given(commands=streams())
def test_sending_every_command_with_an_id_again_changes_nothing(
    sqlite_url: str, commands: list[dict[str, Any]]
) -> None:
    """On SQLite (time); PostgreSQL: the hand-written stream below."""
    with empty_store(sqlite_url) as url, opened(url) as app:
        report = feed(app, commands)
        describe(report)
        check_repeats(url, app, commands, report)


# ----------------------------------------------------------------------------- by hand


def _t(hour: int, minute: int = 0) -> str:
    return f"2025-01-01T{hour:02d}:{minute:02d}:00Z"


# Random streams reach auto-exchange, repayment and automatic top-ups only now and then; this
# stream reaches each of them, so every run checks the invariants over them too.
# m: 2 BTC and a cent; a 1-BTC round trip 30,000 → 29,000 loses 1,000, fees 15 + 14.5: USDT
#    −1,029.49, past the 500 threshold, auto-exchanged at the 01:00 sweep.
# n: 10 ETH and a cent; after that sweep, 0.5 BTC 30,000 → 29,000: −500 − 7.5 − 7.25 + 0.01
#    = −514.74, repays 50 with ETH (−464.74: under the threshold, above the 100 free): interest.
# a: isolated long 0.3 BTC @30,000 at 10× (margin 900), auto top-up on; the mark falls to
#    27,000, past its liquidation price near 27,036: topped up at the 03:00 sweep.
# b: inverse and USDC-settled (session settlement, 4-hourly funding) positions, resting orders.
HAND: list[dict[str, Any]] = [
    *(dict(c) for c in MARKET),
    {"type": "deposit", "at": _t(0), "id": "d1", "account": "m", "asset": "BTC", "amount": "2"},
    {"type": "deposit", "at": _t(0), "id": "d2", "account": "m", "asset": "USDT",
     "amount": "0.01"},
    {"type": "deposit", "at": _t(0), "id": "d1", "account": "n", "asset": "ETH", "amount": "10"},
    {"type": "deposit", "at": _t(0), "id": "d2", "account": "n", "asset": "USDT",
     "amount": "0.01"},
    {"type": "deposit", "at": _t(0), "id": "d1", "account": "a", "asset": "USDT",
     "amount": "1000"},
    {"type": "deposit", "at": _t(0), "id": "d1", "account": "b", "asset": "USDC",
     "amount": "5000"},
    {"type": "deposit", "at": _t(0), "id": "d2", "account": "b", "asset": "BTC", "amount": "0.5"},
    {"type": "fill", "at": _t(1), "id": "f1", "account": "m", "symbol": "BTCUSDT", "side": "buy",
     "qty": "10000", "price": "30000"},
    {"type": "fill", "at": _t(1), "id": "f2", "account": "m", "symbol": "BTCUSDT",
     "side": "sell", "qty": "10000", "price": "29000"},
    {"type": "check_margin", "at": _t(1)},
    {"type": "fill", "at": _t(1, 10), "id": "f1", "account": "n", "symbol": "BTCUSDT",
     "side": "buy", "qty": "5000", "price": "30000"},
    {"type": "fill", "at": _t(1, 10), "id": "f2", "account": "n", "symbol": "BTCUSDT",
     "side": "sell", "qty": "5000", "price": "29000"},
    {"type": "repay", "at": _t(1, 30), "id": "r1", "account": "n", "asset": "USDT",
     "amount": "50", "with_asset": "ETH"},
    {"type": "fill", "at": _t(2), "id": "f1", "account": "a", "symbol": "BTCUSDT", "side": "buy",
     "qty": "3000", "price": "30000", "margin_type": "isolated", "leverage": "10"},
    {"type": "set_auto_add_margin", "at": _t(2), "account": "a", "symbol": "BTCUSDT",
     "enabled": True},
    {"type": "fill", "at": _t(2), "id": "f1", "account": "b", "symbol": "BTCUSD", "side": "buy",
     "qty": "100", "price": "30000"},
    {"type": "fill", "at": _t(2), "id": "f2", "account": "b", "symbol": "ETHUSDC",
     "side": "sell", "qty": "1000", "price": "2000", "liquidity": "maker"},
    {"type": "open_orders", "at": _t(2), "account": "b", "symbol": "ETHUSDC", "buy": None,
     "sell": {"qty": "500", "price": "2100"}},
    {"type": "mark_price", "at": _t(3), "symbol": "BTCUSDT", "price": "27000"},
    {"type": "check_margin", "at": _t(3)},
    {"type": "funding_rate", "at": _t(3), "symbol": "BTCUSD", "rate": "0.0001"},
    {"type": "funding_rate", "at": _t(3), "symbol": "ETHUSDC", "rate": "-0.0002"},
    {"type": "mark_price", "at": _t(3, 30), "symbol": "ETHUSDC", "price": "2050.5"},
    {"type": "settle_funding", "at": _t(4), "id": f"settle_funding:{_t(4)}"},
    {"type": "transfer", "at": _t(5), "id": "t1", "from": "b", "to": "m", "asset": "USDC",
     "amount": "100.5"},
    {"type": "withdraw", "at": _t(5), "id": "w1", "account": "m", "asset": "BTC",
     "amount": "0.1"},
    {"type": "charge_interest", "at": _t(6), "id": f"charge_interest:{_t(6)}"},
    {"type": "index_price", "at": _t(7), "asset": "BTC", "price": "29000"},
    {"type": "mark_price", "at": _t(7), "symbol": "BTCUSD", "price": "29000"},
    {"type": "settle_funding", "at": _t(8), "id": f"settle_funding:{_t(8)}"},
    {"type": "check_margin", "at": _t(8, 30)},
]
HAND_EVENTS = {"AutoExchanged", "DebtRepaid", "MarginToppedUp", "FundingSettled",
               "SessionSettled", "InterestCharged", "TransferredIn", "Withdrawn",
               "LiquidationTriggered"}


@pytest.fixture
def hand(store_url: str) -> Iterator[tuple[Ledger, RunReport]]:
    with empty_store(store_url) as url, opened(url) as app:
        report = feed(app, HAND)
        assert report.rejected == []
        seen = {e["type"] for name in sorted(ACCOUNTS) for e in queries.events(app, name)}
        assert HAND_EVENTS <= seen, HAND_EVENTS - seen
        yield app, report


def test_conservation_holds_over_a_hand_written_stream(
    hand: tuple[Ledger, RunReport],
) -> None:
    check_conservation(hand[0])


@pytest.mark.parametrize("moment", [None, _t(1), _t(1, 30), _t(3), "2025-01-01T05:59:59Z",
                                    _t(8, 30)])
def test_replay_and_prefix_hold_over_a_hand_written_stream(
    hand: tuple[Ledger, RunReport], moment: str | None
) -> None:
    app = hand[0]
    at = None if moment is None else parse_at(moment)
    check_replay(app.url, app, [at])
    if at is not None:
        check_prefix(app, HAND, at)


def test_repeats_change_nothing_over_a_hand_written_stream(
    hand: tuple[Ledger, RunReport],
) -> None:
    app, report = hand
    check_repeats(app.url, app, HAND, report)


# ----------------------------------------------------------------------------- found by (b)


def _regression_feed() -> list[dict[str, Any]]:
    """m (multi_asset, 1 BTC) is long 1 BTC of BTCUSDT @30,200 from 01:00 to 11:00 with the
    mark at 30,000, fee 0.5 to open, 0 to close at 30,200 (realised 0)."""
    return [
        *(dict(c) for c in MARKET),
        {"type": "deposit", "at": _t(0), "id": "d1", "account": "m", "asset": "BTC",
         "amount": "1"},
        {"type": "fill", "at": _t(1), "id": "f1", "account": "m", "symbol": "BTCUSDT",
         "side": "buy", "qty": "10000", "price": "30200", "fee": "0.5"},
        {"type": "fill", "at": _t(11), "id": "f2", "account": "m", "symbol": "BTCUSDT",
         "side": "sell", "qty": "10000", "price": "30200", "fee": "0"},
    ]


ACCRUED = "0.01147260273972602739726027397260274"


def test_a_fresh_application_counts_the_interest_of_a_position_closed_since(
    store_url: str,
) -> None:
    with empty_store(store_url) as url, opened(url) as live:
        assert feed(live, _regression_feed()).rejected == []
        expected = {"USDT": {"accrued": ACCRUED, "charged": "0"}}
        assert queries.state(live, "m")["interest"] == expected
        with opened(url) as fresh:
            assert queries.state(fresh, "m")["interest"] == expected


def test_a_fresh_application_charges_the_interest_of_a_position_closed_since(
    store_url: str,
) -> None:
    with empty_store(store_url) as url:
        with opened(url) as live:
            assert feed(live, _regression_feed()).rejected == []
        with opened(url) as fresh:
            charge = {"type": "charge_interest", "at": _t(12), "id": "charge_interest:12"}
            assert feed(fresh, [charge]).rejected == []
            charged = [(e["at"], e["amount"]) for e in queries.events(fresh, "m")
                       if e["type"] == "InterestCharged"]
            assert charged == [(_t(12), "0.01147261")]
