"""Feeds for the shard tests: accounts spread over shards, fills, marks, deposits, transfers
(within a shard, across shards, to an unknown account, out of order at the destination, repeats),
malformed lines, and periodic work (funding, interest, margin sweeps)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from ledger.times import format_at

START = datetime.fromisoformat("2025-03-03T00:00:00+00:00")

HEADER: list[dict[str, Any]] = [
    {"type": "asset", "asset": "USDT", "precision": 8,
     "interest": {"annual_rate": "0.10", "free_amount": "100", "free_mode": "excess"}},
    {"type": "asset", "asset": "BTC", "precision": 8,
     "collateral_tiers": [{"up_to": "50", "ratio": "0.95"}, {"up_to": None, "ratio": "0"}]},
    {"type": "instrument", "symbol": "BTCUSDT", "kind": "linear_perpetual", "base": "BTC",
     "settle": "USDT", "contract_size": "0.001", "taker_fee_rate": "0.0005",
     "maker_fee_rate": "0.0002", "session_settlement": False,
     "risk_tiers": [{"up_to": "250000", "mmr": "0.004", "max_leverage": "100"},
                    {"up_to": None, "mmr": "0.025", "max_leverage": "10"}]},
    {"type": "index_price", "asset": "BTC", "price": "60000"},
    {"type": "mark_price", "symbol": "BTCUSDT", "price": "60000"},
]


def generate(seed: int, accounts: int = 6, steps: int = 60) -> list[str]:
    """A feed, deterministic from its arguments (the time moves on 5 minutes a step and jumps
    to 08:00 for the funding settlement half-way)."""
    rng = random.Random(seed)
    lines: list[dict[str, Any] | str] = []

    def add(at: datetime, command: dict[str, Any]) -> None:
        lines.append({**command, "at": format_at(at)})

    for command in HEADER:
        add(START, command)
    names = [f"acct{i:02d}" for i in range(accounts)]
    at = START + timedelta(minutes=1)
    for number, name in enumerate(names):
        add(at, {"type": "open_account", "account": name,
                 "mode": rng.choice(["single_asset", "multi_asset"])})
        add(at, {"type": "deposit", "id": f"d{number}", "account": name, "asset": "USDT",
                 "amount": str(rng.randint(20, 80) * 500)})
    mark = 60000
    ids = 0
    transfers: list[dict[str, Any]] = []
    for step in range(steps):
        at += timedelta(minutes=5)
        if step == steps // 2:
            at = START + timedelta(hours=8)
            add(at - timedelta(minutes=1), {"type": "funding_rate", "symbol": "BTCUSDT",
                                            "rate": "0.0001"})
            add(at, {"type": "mark_price", "symbol": "BTCUSDT", "price": str(mark)})
            add(at, {"type": "settle_funding"})
            at += timedelta(seconds=1)
        ids += 1
        kind = rng.choice(["fill", "fill", "fill", "transfer", "transfer", "mark", "deposit",
                           "withdraw", "late", "ghost", "repeat", "sweep", "interest", "bad"])
        source, target = rng.sample(names, 2)
        if kind == "fill":
            add(at, {"type": "fill", "id": f"f{ids}", "account": source, "symbol": "BTCUSDT",
                     "side": rng.choice(["buy", "sell"]), "qty": str(rng.randint(1, 40) * 10),
                     "price": str(mark)})
        elif kind in ("transfer", "ghost", "late"):
            command = {"type": "transfer", "id": f"t{ids}", "from": source,
                       "to": "ghost" if kind == "ghost" else target, "asset": "USDT",
                       "amount": str(rng.randint(1, 40) * 25)}
            if kind == "late":
                # The destination moves on first: the transfer is out of order there only.
                add(at + timedelta(seconds=30), {"type": "deposit", "id": f"l{ids}",
                                                 "account": target, "asset": "USDT",
                                                 "amount": "1"})
                add(at + timedelta(seconds=10), command)
                at += timedelta(seconds=30)
            else:
                add(at, command)
            transfers.append(lines[-1])  # type: ignore[arg-type]
        elif kind == "repeat" and transfers:
            lines.append(dict(rng.choice(transfers)))
        elif kind == "mark":
            mark = mark + rng.randint(-30, 30) * 100
            add(at, {"type": "index_price", "asset": "BTC", "price": str(mark)})
            add(at, {"type": "mark_price", "symbol": "BTCUSDT", "price": str(mark)})
        elif kind == "deposit":
            add(at, {"type": "deposit", "id": f"d{ids}", "account": source, "asset": "USDT",
                     "amount": "1000"})
        elif kind == "withdraw":
            add(at, {"type": "withdraw", "id": f"w{ids}", "account": source, "asset": "USDT",
                     "amount": str(rng.choice([100, 10_000_000]))})
        elif kind == "sweep":
            add(at, {"type": "check_margin"})
        elif kind == "interest":
            at = at.replace(minute=0, second=0) + timedelta(hours=1)
            add(at, {"type": "charge_interest"})
        elif kind == "bad":
            lines.append('{"type": "deposit", "id": ')
    return [line if isinstance(line, str) else json.dumps(line) for line in lines]


def write(path: Any, lines: list[str]) -> Any:
    path.write_text("".join(line + "\n" for line in lines))
    return path
