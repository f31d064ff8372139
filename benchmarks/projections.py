"""Catch-up rate of the projection runner (events/s), for `ledger bench` and the notes.

`catch_up_rate(url, events)` fills a scratch store until its log holds at least `events`
notifications, then rebuilds every read model from zero and times the rebuild: wall clock and
this process's CPU per event (the figure that holds on a shared machine; the database server's
share is not in it). The store's read models are replaced: give it a scratch database.

Feeds: `fill` (default) is the ingest bench's own fill feed (`benchmarks.run.fill_feed`: one
account per 100 fills, a mark price every 100 fills; a fill records `Filled` and `FeeCharged`),
ingested by the feed runner, so the rate compares with the ingest figures (issue 11 goal:
catch-up ≥ the 2-worker ingest rate); `synthetic` is the older one (200 accounts, a mark every
10 fills, optionally interest-bearing USDT: the interest read model's costliest case).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.application import schema


@dataclass(frozen=True)
class CatchUp:
    events: int  # notifications applied by the rebuild
    seconds: float
    page_size: int
    cpu_seconds: float = 0.0  # this process's CPU time (not the database server's)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0

    def __str__(self) -> str:
        return (f"{self.events} events in {self.seconds:.1f} s: {self.events_per_s:,.0f} "
                f"events/s, CPU {self.cpu_us_per_event:.0f} µs/event (pages of "
                f"{self.page_size})")


def catch_up_rate(url: str, events: int, *, page_size: int | None = None,
                  accounts: int = 200, interest: bool = False, feed: str = "fill") -> CatchUp:
    """Fill the store to `events` notifications, rebuild the read models, return the rate.

    `feed`: "fill" (the ingest bench's feed) or "synthetic" (`accounts`, `interest`: USDT
    with an interest rate, so that accounts that owe it make the interest read model
    integrate their history). `page_size`: the runner's default unless given.
    """
    from ledger.numbers import install
    from projections.runner import PAGE_SIZE, rebuild, status

    install()
    if not schema.is_current(url):
        schema.upgrade(url)
    head = status(url).head
    if head < events:
        if feed == "fill":
            _ingest_fills(url, events - head)
        else:
            _ingest(url, events - head, accounts, interest)
    size = page_size or PAGE_SIZE
    started, cpu = time.perf_counter(), time.process_time()
    applied = rebuild(url, page_size=size)
    return CatchUp(applied, time.perf_counter() - started, size, time.process_time() - cpu)


def _ingest_fills(url: str, events: int) -> None:
    """Append the ingest bench's fill feed: about two events per fill."""
    from benchmarks.run import _ingest, fill_feed

    fills = max(100, events // 2)
    _ingest(url, fill_feed(fills, accounts=max(10, fills // 100)))


def _ingest(url: str, events: int, accounts: int, interest: bool) -> None:
    """Append at least `events` events of synthetic trading (deterministic)."""
    from ledger.application.commands import parse_command
    from ledger.application.service import Ledger
    from ledger.errors import LedgerError
    from ledger.times import format_at
    from projections.runner import status

    ledger = Ledger(url)
    start = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    clock = [start]

    def at() -> str:
        clock[0] += timedelta(milliseconds=10)
        return format_at(clock[0])

    def send(commands: list[dict[str, Any]]) -> None:
        with ledger.batch():
            for data in commands:
                try:
                    ledger.handle(parse_command(data))
                except LedgerError:
                    continue

    usdt: dict[str, Any] = {"type": "asset", "at": at(), "asset": "USDT", "precision": 8}
    if interest:
        usdt["interest"] = {"annual_rate": "0.10", "free_amount": "0"}
    names = [f"trader{n:05d}" for n in range(accounts)]
    send([
        usdt,
        {"type": "asset", "at": at(), "asset": "BTC", "precision": 8},
        {"type": "index_price", "at": at(), "asset": "BTC", "price": "50000"},
        {"type": "instrument", "at": at(), "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
         "risk_tiers": [{"up_to": "1000000", "mmr": "0.005", "max_leverage": "100"},
                        {"up_to": None, "mmr": "0.01", "max_leverage": "50"}]},
        {"type": "mark_price", "at": at(), "symbol": "BTCUSDT", "price": "50000"},
        *({"type": "open_account", "at": at(), "account": name, "mode": "multi_asset"}
          for name in names),
        *({"type": "deposit", "at": at(), "id": f"seed-{name}", "account": name,
           "asset": "USDT", "amount": "100000"} for name in names),
    ])
    fill = 0
    target = status(url).head + events
    while status(url).head < target:
        commands: list[dict[str, Any]] = []
        for _ in range(1000):
            fill += 1
            price = Decimal(50000) + Decimal(fill % 200 - 100)
            if fill % 10 == 0:
                commands.append({"type": "mark_price", "at": at(), "symbol": "BTCUSDT",
                                 "price": format(price, "f")})
                continue
            commands.append({
                "type": "fill", "at": at(), "id": f"f{fill}", "account": names[fill % accounts],
                "symbol": "BTCUSDT", "side": "buy" if (fill // accounts) % 2 == 0 else "sell",
                "qty": "1", "price": format(price, "f"), "liquidity": "taker",
            })
        send(commands)
    ledger.close()
