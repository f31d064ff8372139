"""A three-day market for the scheduler tests, built with the command models.

Reference data: USDT with interest (10 %/year, nothing free), BTC and ETH with index prices,
the perpetuals BTCUSDT (funding every 8 h) and ETHUSDT (every 4 h) with a distinct funding rate
for each of their funding times (one time left without a rate: it pays nothing), and a linear
future BTCUSDT-F that expires at 2025-01-02T08:00:00Z. Marks and index prices move every hour.

Accounts (multi_asset): alice (BTC collateral, long BTCUSDT, a realised loss → a USDT debt),
bob (USDT, short BTCUSDT, long the future), carol (BTC collateral, long ETHUSDT, a realised loss →
a USDT debt), dave (USDT, short ETHUSDT, short the future), erin (flat after a round trip).
Accounts trade on day 1 and day 3 only, never between QUIET_FROM and QUIET_UNTIL: the scheduler's
outage falls there, so that settling late posts at the period itself (DESIGN 6.11: a late
settlement is posted at the account's last `at`, which is then ≤ the period).

`rate_for(symbol, period)` and `mark_at(symbol, at)` are the values fed, for the assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.application.commands import Command, parse_command
from ledger.times import format_at

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=3)
HOUR = timedelta(hours=1)
EXPIRY = datetime(2025, 1, 2, 8, tzinfo=UTC)
QUIET_FROM = datetime(2025, 1, 1, 20, tzinfo=UTC)
QUIET_UNTIL = datetime(2025, 1, 3, 3, tzinfo=UTC)
INTERVALS = {"BTCUSDT": 8, "ETHUSDT": 4}
NO_RATE = ("ETHUSDT", datetime(2025, 1, 2, 12, tzinfo=UTC))  # a funding time without a rate
TIERS = [{"up_to": "1000000", "mmr": "0.01", "max_leverage": "50"},
         {"up_to": None, "mmr": "0.02", "max_leverage": "20"}]


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    at = start
    while at <= end:
        yield at
        at += HOUR


def funding_times(symbol: str, start: datetime = T0, end: datetime = T1) -> list[datetime]:
    step = INTERVALS[symbol]
    return [at for at in hours(start, end) if at.hour % step == 0]


def rate_for(symbol: str, period: datetime) -> Decimal | None:
    """The rate fed for a funding time: distinct per time, sign alternating (none for T0:
    rates are sent half an hour before their time)."""
    if (symbol, period) == NO_RATE or period == T0:
        return None
    index = int((period - T0) / HOUR)
    sign = 1 if (index // INTERVALS[symbol]) % 2 == 0 else -1
    scale = 1 if symbol == "BTCUSDT" else 2
    return Decimal(sign * scale * (index + 3)) * Decimal("0.00001")


def mark_at(symbol: str, at: datetime) -> Decimal:
    """The mark fed at each hour (constant in between)."""
    index = int((at - T0) / HOUR)
    wiggle = (index * 37) % 11 - 5
    if symbol == "ETHUSDT":
        return Decimal(3000 + 4 * wiggle)
    if symbol == "BTCUSDT-F":
        return Decimal(50100 + 90 * wiggle)
    return Decimal(50000 + 100 * wiggle)


def index_at(asset: str, at: datetime) -> Decimal:
    return mark_at("ETHUSDT" if asset == "ETH" else "BTCUSDT", at)


def _cmd(**fields: Any) -> Command:
    fields["at"] = format_at(fields["at"])
    return parse_command(fields)


def _fill(at: datetime, fid: str, account: str, symbol: str, side: str, qty: str,
          price: Decimal) -> Command:
    return _cmd(type="fill", at=at, id=fid, account=account, symbol=symbol, side=side, qty=qty,
                price=str(price), fee="0")


def market(start: datetime = T0, end: datetime = T1) -> list[Command]:
    """Every reference and account command from `start` to `end` (no periodic command), in
    the order a feed would carry them."""
    out: list[Command] = [
        _cmd(type="asset", at=T0, asset="USDT", precision=8,
             interest={"annual_rate": "0.10", "free_amount": "0", "free_mode": "excess"}),
        _cmd(type="asset", at=T0, asset="BTC", precision=8),
        _cmd(type="asset", at=T0, asset="ETH", precision=8),
        _cmd(type="instrument", at=T0, symbol="BTCUSDT", kind="linear_perpetual", base="BTC",
             settle="USDT", contract_size="0.0001", funding_interval_hours=8, risk_tiers=TIERS),
        _cmd(type="instrument", at=T0, symbol="ETHUSDT", kind="linear_perpetual", base="ETH",
             settle="USDT", contract_size="0.01", funding_interval_hours=4, risk_tiers=TIERS),
        _cmd(type="instrument", at=T0, symbol="BTCUSDT-F", kind="linear_future", base="BTC",
             settle="USDT", contract_size="0.0001", expiry=format_at(EXPIRY), risk_tiers=TIERS),
    ]
    for name in ("alice", "bob", "carol", "dave", "erin"):
        out.append(_cmd(type="open_account", at=T0, account=name, mode="multi_asset"))
    out += [
        _cmd(type="deposit", at=T0, id="d1", account="alice", asset="BTC", amount="1"),
        _cmd(type="deposit", at=T0, id="d1", account="bob", asset="USDT", amount="100000"),
        _cmd(type="deposit", at=T0, id="d1", account="carol", asset="BTC", amount="2"),
        _cmd(type="deposit", at=T0, id="d1", account="dave", asset="USDT", amount="80000"),
        _cmd(type="deposit", at=T0, id="d1", account="erin", asset="USDT", amount="5000"),
    ]
    trades = _trades()
    for at in hours(T0, T1):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            out.append(_cmd(type="mark_price", at=at, symbol=symbol,
                            price=str(mark_at(symbol, at))))
        if at <= EXPIRY:
            out.append(_cmd(type="mark_price", at=at, symbol="BTCUSDT-F",
                            price=str(mark_at("BTCUSDT-F", at))))
        for asset in ("BTC", "ETH"):
            out.append(_cmd(type="index_price", at=at, asset=asset,
                            price=str(index_at(asset, at))))
        out += trades.get(at, [])
        # Each rate is sent an hour before the funding time it is for.
        for symbol in ("BTCUSDT", "ETHUSDT"):
            period = at + HOUR
            rate = rate_for(symbol, period)
            if period <= T1 and period.hour % INTERVALS[symbol] == 0 and rate is not None:
                out.append(_cmd(type="funding_rate", at=at + timedelta(minutes=30),
                                symbol=symbol, rate=str(rate)))
    return [cmd for cmd in sorted(out, key=lambda c: c.at) if start <= cmd.at <= end]


def _trades() -> dict[datetime, list[Command]]:
    """Fills half an hour after the hour, keyed by the hour (so the order is stable)."""
    def at(day: int, hour: int) -> datetime:
        return datetime(2025, 1, day, hour, 30, tzinfo=UTC)

    trades: dict[datetime, list[Command]] = {}

    def add(moment: datetime, *commands: Command) -> None:
        trades.setdefault(moment.replace(minute=0), []).extend(commands)

    m = mark_at
    add(at(1, 1),
        _fill(at(1, 1), "f1", "alice", "BTCUSDT", "buy", "10000", m("BTCUSDT", at(1, 1))),
        _fill(at(1, 1), "f1", "bob", "BTCUSDT", "sell", "10000", m("BTCUSDT", at(1, 1))),
        _fill(at(1, 1), "f1", "carol", "ETHUSDT", "buy", "300", m("ETHUSDT", at(1, 1))),
        _fill(at(1, 1), "f1", "dave", "ETHUSDT", "sell", "300", m("ETHUSDT", at(1, 1))),
        _fill(at(1, 1), "f1", "erin", "BTCUSDT", "buy", "1000", m("BTCUSDT", at(1, 1))))
    add(at(1, 2),
        _fill(at(1, 2), "f2", "bob", "BTCUSDT-F", "buy", "2000", m("BTCUSDT-F", at(1, 2))),
        _fill(at(1, 2), "f2", "dave", "BTCUSDT-F", "sell", "2000", m("BTCUSDT-F", at(1, 2))))
    # Realised losses: alice sells half 1,000 lower, carol a third 60 lower.
    add(at(1, 5),
        _fill(at(1, 5), "f2", "alice", "BTCUSDT", "sell", "5000", Decimal("49000")),
        _fill(at(1, 5), "f3", "bob", "BTCUSDT", "buy", "5000", Decimal("49000")),
        _fill(at(1, 5), "f2", "carol", "ETHUSDT", "sell", "100", Decimal("2940")),
        _fill(at(1, 5), "f3", "dave", "ETHUSDT", "buy", "100", Decimal("2940")))
    add(at(1, 6),
        _fill(at(1, 6), "f2", "erin", "BTCUSDT", "sell", "1000", m("BTCUSDT", at(1, 6))))
    # Day 3, after the quiet stretch: positions change again.
    add(at(3, 5),
        _fill(at(3, 5), "f3", "alice", "BTCUSDT", "buy", "2000", m("BTCUSDT", at(3, 5))),
        _fill(at(3, 5), "f4", "bob", "BTCUSDT", "sell", "2000", m("BTCUSDT", at(3, 5))),
        _fill(at(3, 5), "f3", "carol", "ETHUSDT", "buy", "50", m("ETHUSDT", at(3, 5))),
        _fill(at(3, 5), "f4", "dave", "ETHUSDT", "sell", "50", m("ETHUSDT", at(3, 5))))
    for moment, commands in trades.items():
        for command in commands:
            assert not QUIET_FROM <= command.at <= QUIET_UNTIL, moment
    return trades
