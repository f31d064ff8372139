"""Run the installed `ledger` command as a newcomer would: a subprocess, in a directory of its own.

The tests under tests/cli/ go through the console script that `pip install -e .` put next to
the interpreter (not click's CliRunner), so what they check is what a user meets: the exit
status, stdout and stderr of a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

LEDGER = Path(sys.executable).parent / "ledger"
ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    """The environment of a run: no store chosen by the caller's shell, a wide terminal."""
    base = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    base.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"})
    base.update(extra)
    return base


def ledger(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 120,
           **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run `ledger ARGS…` in `cwd`; return the finished process (text stdout and stderr)."""
    assert LEDGER.exists(), f"the ledger command is not installed at {LEDGER}"
    return subprocess.run([str(LEDGER), *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env(**extra_env), check=False)


def error_line(stderr: str) -> dict[str, Any]:
    """Return the last JSON object printed on stderr (the contract's error line)."""
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith("{"):
            found: dict[str, Any] = json.loads(line)
            return found
    raise AssertionError(f"no JSON error line on stderr:\n{stderr}")


def write_feed(path: Path, commands: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in commands), encoding="utf-8")
    return path


LISTED = "2025-03-01T00:00:00Z"


def market(listed: str = LISTED) -> list[dict[str, Any]]:
    """USDT and BTC, a linear BTCUSDT perpetual and an inverse BTCUSD one, listed at `listed`."""
    tiers = [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]
    return [
        {"type": "asset", "at": listed, "asset": "USDT", "precision": 8},
        {"type": "asset", "at": listed, "asset": "BTC", "precision": 8},
        {"type": "instrument", "at": listed, "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001", "taker_fee_rate": "0",
         "maker_fee_rate": "0", "risk_tiers": tiers},
        {"type": "instrument", "at": listed, "symbol": "BTCUSD", "kind": "inverse_perpetual",
         "base": "BTC", "settle": "BTC", "contract_size": "1", "taker_fee_rate": "0",
         "maker_fee_rate": "0", "risk_tiers": tiers},
        {"type": "mark_price", "at": listed, "symbol": "BTCUSDT", "price": "60000"},
        {"type": "index_price", "at": listed, "asset": "BTC", "price": "60000"},
    ]


def alice(opened: str = "2025-03-01T01:00:00Z") -> list[dict[str, Any]]:
    """alice opens at `opened`, deposits 10,000 USDT and buys 100 BTCUSDT (0.1 BTC) at 60,000."""
    return [
        {"type": "open_account", "at": opened, "account": "alice", "mode": "single_asset"},
        {"type": "deposit", "at": opened, "id": "d1", "account": "alice", "asset": "USDT",
         "amount": "10000"},
        {"type": "fill", "at": opened, "id": "f1", "account": "alice", "symbol": "BTCUSDT",
         "side": "buy", "qty": "100", "price": "60000", "liquidity": "taker"},
    ]


def store_with_alice(directory: Path, name: str = "ledger.db") -> str:
    """Apply the market and alice to a new SQLite store in `directory`; return its URL."""
    url = f"sqlite:///{directory / name}"
    feed = write_feed(directory / "alice.jsonl", market() + alice())
    done = ledger("--db", url, "run", str(feed), cwd=directory)
    assert done.returncode == 0, done.stderr
    return url
