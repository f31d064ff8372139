"""Catch-up rate of the projection runner (events/s), for `ledger bench` and the notes.

`catch_up_rate(url, events)` fills a scratch store with synthetic trading until its log holds
at least `events` notifications (accounts opened and funded, then cross fills with fees and a
mark price every few fills, in batches of 1,000 commands as a feed would send them), then
rebuilds every read model from zero and times the rebuild. The store's read models are
replaced: give it a scratch database.
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

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (f"{self.events} events in {self.seconds:.1f} s: {self.events_per_s:,.0f} "
                f"events/s (pages of {self.page_size})")


def catch_up_rate(url: str, events: int, *, page_size: int = 1000, accounts: int = 200,
                  interest: bool = False) -> CatchUp:
    """Fill the store to `events` notifications, rebuild the read models, return the rate.

    `interest`: configure USDT with an interest rate, so that accounts that owe it make the
    interest read model integrate their history (the read model's costliest case).
    """
    from ledger.numbers import install
    from projections.runner import rebuild, status

    install()
    if not schema.is_current(url):
        schema.upgrade(url)
    head = status(url).head
    if head < events:
        _ingest(url, events - head, accounts, interest)
    started = time.perf_counter()
    applied = rebuild(url, page_size=page_size)
    return CatchUp(applied, time.perf_counter() - started, page_size)


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
