"""Issue 11: the notification log is gap-free in commit order while several processes write.

A reader that follows the log (the projections runner, `catch_up`) pages from the last id it
has read; if an id could commit after a higher one was read, that reader would skip it for
good. Two writers are tailed:

- three `ledger run` processes on disjoint accounts (each takes the table lock per batch);
- `ledger run --workers 3`, whose workers hand their batches to the store's one sequencer,
  which numbers the events itself (ledger/application/sequencer.py).

Batches of 50 commands, so many transactions interleave. Every page must start exactly after the
last id read; at every poll the rows a reader sees are exactly ids 1 … max (count = max: a
prefix, nothing above a hole); at the end the log holds every event once, 1 … N.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from ledger.application.feed import run_feed
from ledger.application.service import Ledger

LEDGER = str(Path(sys.executable).parent / "ledger")
AT = "2025-01-01T00:00:00Z"


def _reference() -> list[dict[str, Any]]:
    return [
        {"type": "asset", "at": AT, "asset": "USDT", "precision": 8},
        {"type": "asset", "at": AT, "asset": "BTC", "precision": 8},
        {"type": "instrument", "at": AT, "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
         "risk_tiers": [{"up_to": None, "mmr": "0.01", "max_leverage": "20"}]},
        {"type": "mark_price", "at": AT, "symbol": "BTCUSDT", "price": "50000"},
    ]


def _worker_feed(worker: int, accounts: int, fills: int) -> list[dict[str, Any]]:
    names = [f"w{worker}-{n}" for n in range(accounts)]
    lines: list[dict[str, Any]] = []
    for name in names:
        lines.append({"type": "open_account", "at": AT, "account": name, "mode": "single_asset"})
        lines.append({"type": "deposit", "at": AT, "id": "d", "account": name, "asset": "USDT",
                      "amount": "1000000"})
    for n in range(fills):
        lines.append({"type": "fill", "at": f"2025-01-01T00:{n // 60:02d}:{n % 60:02d}Z",
                      "id": f"f{n}", "account": names[n % accounts], "symbol": "BTCUSDT",
                      "side": "buy" if n % 3 else "sell", "qty": "1", "price": "50000",
                      "liquidity": "taker"})
    return lines


def test_log_has_no_late_ids_while_three_processes_write(
        postgres_url: str, tmp_path: Path) -> None:
    from tests.conftest import _empty_postgres

    _empty_postgres(postgres_url)
    ledger = Ledger(postgres_url)
    report = run_feed(ledger, enumerate((json.dumps(c) for c in _reference()), start=1))
    assert report.applied == 4
    processes = []
    expected = 0
    for worker in range(3):
        feed = tmp_path / f"w{worker}.jsonl"
        lines = _worker_feed(worker, accounts=5, fills=600)
        feed.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        expected += 5 * 2 + 600 * 2  # opened + deposited; filled + fee per fill
        processes.append(subprocess.Popen(
            [LEDGER, "--db", postgres_url, "run", "--batch", "50", str(feed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    first_tail, last, pages = _tail(ledger, postgres_url, processes)
    assert last - first_tail == 3 * 5 + expected  # + three accounts' leverage-set events
    assert pages > 3  # the tail really interleaved with the writers


def test_log_has_no_late_ids_while_three_workers_write_through_the_sequencer(
        postgres_url: str, tmp_path: Path) -> None:
    from tests.conftest import _empty_postgres

    _empty_postgres(postgres_url)
    ledger = Ledger(postgres_url)
    lines = _reference()
    expected = 4  # the reference lines' events
    for worker in range(3):
        lines += _worker_feed(worker, accounts=5, fills=400)
        expected += 5 * 2 + 400 * 2 + 5  # opened + deposited; filled + fee; leverage set
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    process = subprocess.Popen(
        [LEDGER, "--db", postgres_url, "run", "--workers", "3", "--batch", "50", str(feed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first_tail, last, pages = _tail(ledger, postgres_url, [process])
    assert first_tail == 0
    assert last == expected
    assert pages > 3
    with psycopg.connect(postgres_url) as connection:
        sequence = connection.execute(
            "SELECT last_value FROM ledger_events_notification_id_seq").fetchone()
    assert sequence == (expected,)  # a one-process writer would continue at expected + 1


def _tail(ledger: Ledger, url: str, processes: list[Any]) -> tuple[int, int, int]:
    """Follow the log while the processes write; return (first id before, last id, pages)."""
    recorder = ledger.recorder
    last = recorder.max_notification_id() or 0
    first_tail = last
    pages = 0
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            running = any(p.poll() is None for p in processes)
            page = recorder.select_notifications(last + 1, 500)
            for notification in page:
                # The next id read is always the one after the last: none commits behind it.
                assert notification.id == last + 1, (last, notification.id)
                last = notification.id
            # What a reader sees at one moment is a prefix: ids 1 … max, every one of them.
            count, highest = connection.execute(
                "SELECT count(*), coalesce(max(notification_id), 0) FROM ledger_events"
            ).fetchone() or (0, 0)
            assert count == highest, (count, highest)
            pages += bool(page)
            if not running and not page:
                break
            if not page:
                time.sleep(0.005)
    for process in processes:
        assert process.wait() == 0, process.stderr.read() if process.stderr else ""
    return first_tail, last, pages
