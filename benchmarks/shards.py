"""Ingest with account shards (issue 11): `ledger run` against `ledger run --workers N` on the
same feed, each into an empty PostgreSQL database, events per second of wall time.

    python -m benchmarks.shards postgresql://postgres@127.0.0.1/postgres --fills 20000 \
        --accounts 1000 --workers 1 2

The feed: reference data up front, `accounts` accounts opened and funded, then `fills` fills
round-robin over the accounts (open/close 1–5 contracts at a fixed mark) — the shape where
shards run free (no barrier after the header). The figure counts stored events (the log's last
notification id) over the run's wall time, process start-up included, and the CPU time of
the `ledger` processes (coordinator and workers, not the database server) per event — the figure
that does not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlparse, urlunparse

AT = "2025-01-01T00:00:00Z"


def feed(accounts: int, fills: int) -> list[str]:
    lines = [
        {"type": "asset", "at": AT, "asset": "USDT", "precision": 8},
        {"type": "asset", "at": AT, "asset": "BTC", "precision": 8},
        {"type": "instrument", "at": AT, "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "risk_tiers": [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]},
        {"type": "index_price", "at": AT, "asset": "BTC", "price": "50000"},
        {"type": "mark_price", "at": AT, "symbol": "BTCUSDT", "price": "50000"},
    ]
    for i in range(accounts):
        lines.append({"type": "open_account", "at": AT, "account": f"a{i}",
                      "mode": "single_asset"})
        lines.append({"type": "deposit", "at": AT, "id": f"d{i}", "account": f"a{i}",
                      "asset": "USDT", "amount": "100000"})
    for n in range(fills):
        second = 1 + n // 100
        at = f"2025-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        lines.append({"type": "fill", "at": at, "id": f"f{n}", "account": f"a{n % accounts}",
                      "symbol": "BTCUSDT", "side": "buy" if (n // accounts) % 2 == 0 else "sell",
                      "qty": str(1 + n % 5), "price": "50000"})
    return [json.dumps(line) for line in lines]


def _database(admin_url: str, name: str, create: bool) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(urlparse(admin_url)._replace(path="/" + name))


def run(admin_url: str, accounts: int, fills: int, workers: list[int]) -> list[dict[str, float]]:
    import psycopg

    results = []
    ledger = str(Path(sys.executable).with_name("ledger"))
    with TemporaryDirectory() as directory:
        path = Path(directory) / "feed.jsonl"
        path.write_text("\n".join(feed(accounts, fills)) + "\n")
        for count in workers:
            name = f"bench_shards_{uuid.uuid4().hex[:8]}"
            url = _database(admin_url, name, create=True)
            try:
                subprocess.run([ledger, "--db", url, "migrate"], check=True,
                               capture_output=True)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                done = subprocess.run([ledger, "--db", url, "run", "--workers", str(count),
                                       str(path)], capture_output=True, text=True, check=False)
                seconds = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                assert done.returncode == 0, done.stderr[-2000:]
                with psycopg.connect(url) as connection:
                    row = connection.execute("SELECT count(*) FROM ledger_events").fetchone()
                events = int(row[0]) if row and row[0] else 0
                results.append({"workers": count, "events": events,
                                "seconds": round(seconds, 2),
                                "events_per_s": round(events / seconds),
                                "client_cpu_us_per_event": round(cpu / events * 1e6, 1)})
            finally:
                _database(admin_url, name, create=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("admin_url")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--fills", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for result in run(args.admin_url, args.accounts, args.fills, args.workers):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
