"""Helpers of the API tests: the feed, the server handle, the `ledger` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LEDGER = Path(sys.executable).parent / "ledger"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    base.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"})
    base.update(extra)
    return base


def ledger(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    """Run `ledger ARGS…` in `cwd`; return the finished process (text stdout and stderr)."""
    return subprocess.run([str(LEDGER), *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env(), check=False)


def wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path | None = None,
                       seconds: float = 60) -> None:
    """Wait until `ledger serve` at `base` answers /healthz; fail (with its log) if it exits
    or does not answer within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        said = log.read_text() if log is not None else "ledger serve did not answer"
        assert process.poll() is None, said
        assert time.monotonic() < deadline, said
        time.sleep(0.2)


def write_feed(path: Path, commands: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in commands), encoding="utf-8")
    return path


MAX_BODY = 4096
START, END = "2025-03-01T00:00:00Z", "2025-03-01T05:00:00Z"
TIERS = [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]

FEED: list[dict[str, Any]] = [
    {"type": "asset", "at": START, "asset": "USDT", "precision": 8},
    {"type": "asset", "at": START, "asset": "BTC", "precision": 8},
    {"type": "instrument", "at": START, "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.001", "taker_fee_rate": "0.0005",
     "maker_fee_rate": "0.0002", "risk_tiers": TIERS},
    {"type": "mark_price", "at": START, "symbol": "BTCUSDT", "price": "60000"},
    {"type": "index_price", "at": START, "asset": "BTC", "price": "60000"},
    {"type": "open_account", "at": "2025-03-01T01:00:00Z", "account": "alice",
     "mode": "single_asset"},
    {"type": "open_account", "at": "2025-03-01T01:00:00Z", "account": "bob",
     "mode": "single_asset"},
    {"type": "deposit", "at": "2025-03-01T01:00:00Z", "id": "d1", "account": "alice",
     "asset": "USDT", "amount": "10000"},
    {"type": "fill", "at": "2025-03-01T02:00:00Z", "id": "f1", "account": "alice",
     "symbol": "BTCUSDT", "side": "buy", "qty": "100", "price": "60000", "liquidity": "taker"},
    {"type": "transfer", "at": "2025-03-01T03:00:00Z", "id": "t1", "from": "alice", "to": "bob",
     "asset": "USDT", "amount": "100"},
    {"type": "fill", "at": "2025-03-01T03:30:00Z", "id": "f3", "account": "bob",
     "symbol": "BTCUSDT", "side": "buy", "qty": "10", "price": "60500", "liquidity": "maker"},
    {"type": "mark_price", "at": "2025-03-01T04:00:00Z", "symbol": "BTCUSDT", "price": "61000"},
    {"type": "fill", "at": "2025-03-01T04:00:00Z", "id": "f2", "account": "alice",
     "symbol": "BTCUSDT", "side": "sell", "qty": "100", "price": "61000", "liquidity": "maker"},
]
FEES_USDT = "4.341"
"""Fees charged by the feed, by hand: f1 100 × 0.001 × 60,000 = 6,000 notional × 0.0005 (taker)
= 3; f3 10 × 0.001 × 60,500 = 605 × 0.0002 (maker) = 0.121; f2 100 × 0.001 × 61,000 = 6,100
× 0.0002 = 1.22; 3 + 0.121 + 1.22 = 4.341 USDT (all exact at 8 places: no rounding)."""


@dataclass
class Server:
    base: str
    db: str
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, role: str | None = "auditor", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.get(self.base + path, headers=headers, timeout=60, **kwargs)

    def post(self, path: str, role: str | None = "operator", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.post(self.base + path, headers=headers, timeout=60, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ledger("--db", self.db, *args, cwd=self.directory)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
