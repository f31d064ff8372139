"""Ingest with account shards (issue 11): one process against N workers writing through the
store's sequencer, on the same feed, each into an empty PostgreSQL database.

`ledger bench --only shards` runs `bench_shards` in-process and prints, for one process (the
path that takes the table lock per batch) and for 1 and 2 workers through the sequencer:
events/s of wall time, CPU µs per event of the coordinator, of each worker process and of the
sequencer (the figures that hold on a shared machine), the sequencer's time per group under
the table lock and in COMMIT, and the raw COPY rate of the very rows the run stored, measured
right after it on the same server, with the ratio.

    python -m benchmarks.shards postgresql://postgres@127.0.0.1/postgres --fills 20000 \
        --accounts 1000 --workers 1 2
runs the `ledger` CLI instead (process start-up included; what the notes compared before the
sequencer existed).

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
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
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


def bench_shards(pg_url: str, out: Callable[[str], None], *, accounts: int = 1000,
                 fills: int = 20000, workers: tuple[int, ...] = (1, 2),
                 batch: int = 1000) -> dict[str, Any]:
    """One process, then `workers` shard workers through the sequencer (module docstring)."""
    from benchmarks.run import _copy_rate, scratch_postgres

    lines = list(enumerate(feed(accounts, fills), start=1))
    results: dict[str, Any] = {"accounts": accounts, "fills": fills, "batch": batch,
                               "cpus": os.cpu_count()}
    url, drop = scratch_postgres(pg_url, "ledger_bench_shards")
    try:
        results["one_process"] = _one_process(url, lines, batch)
        results["one_process"]["copy_rows_per_s"] = round(copy := _copy_rate(url))
        results["one_process"]["ratio_to_copy"] = round(
            results["one_process"]["events_per_s"] / copy, 3)
        out(_line("1 process (table lock per batch)", results["one_process"]))
    finally:
        drop()
    for count in workers:
        url, drop = scratch_postgres(pg_url, "ledger_bench_shards")
        try:
            figures = _sequenced(url, lines, count, batch)
            figures["copy_rows_per_s"] = round(copy := _copy_rate(url))
            figures["ratio_to_copy"] = round(figures["events_per_s"] / copy, 3)
        finally:
            drop()
        results[f"workers_{count}"] = figures
        out(_line(f"{count} worker(s) + sequencer", figures))
    return results


def _one_process(url: str, lines: list[tuple[int, str]], batch: int) -> dict[str, Any]:
    """`ledger run` in this process; the time spent in each batch's write (side rows, lock,
    COPY, commit) is measured around the recorder's insert."""
    from ledger.application.feed import run_feed
    from ledger.application.service import Ledger

    ledger = Ledger(url)
    recorder: Any = ledger.recorder
    insert = recorder.insert_events
    spent = [0.0, 0]

    def timed(stored: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return insert(stored, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += 1

    recorder.insert_events = timed
    started, cpu = time.perf_counter(), time.process_time()
    report = run_feed(ledger, iter(lines), batch_size=batch)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.internal_error is None and not report.rejected, report.rejected[:3]
    events = ledger.recorder.max_notification_id() or 0
    ledger.close()
    return {"events": events, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds),
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
            "writes": int(spent[1]), "write_ms_per_batch": round(spent[0] / spent[1] * 1e3, 2)}


def _sequenced(url: str, lines: list[tuple[int, str]], count: int,
               batch: int) -> dict[str, Any]:
    """`ledger run --workers count` in this process (this process is the coordinator)."""
    from ledger.application.workers import Coordinator

    started, cpu = time.perf_counter(), time.process_time()
    report = Coordinator(url, count, batch).run(iter(lines))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.failure is None and not report.rejected, (report.failure, report.rejected[:3])
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM ledger_events").fetchone()
    events = int(row[0]) if row else 0
    sequencer = report.sequencer
    groups = max(sequencer.groups, 1)
    # A worker's CPU once started (imports and opening the store are a fixed cost).
    working = [end - begin for end, begin in zip(report.worker_cpu_s,
                                                 report.worker_start_cpu_s, strict=True)]
    return {
        "workers": count, "events": events, "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "coordinator_cpu_us_per_event": round(cpu / events * 1e6, 1),
        "worker_cpu_us_per_event": [round(c / events * 1e6, 1) for c in working],
        "workers_cpu_us_per_event": round(sum(working) / events * 1e6, 1),
        "worker_start_cpu_s": [round(c, 2) for c in report.worker_start_cpu_s],
        "sequencer_cpu_us_per_event": round(sequencer.cpu_s / events * 1e6, 1),
        "sequencer_server_cpu_us_per_event": (
            None if sequencer.server_cpu_s is None
            else round(sequencer.server_cpu_s / events * 1e6, 1)),
        "groups": sequencer.groups, "batches_per_group": round(sequencer.batches / groups, 2),
        "events_per_group": round(sequencer.events / groups),
        "locked_ms_per_group": round(sequencer.locked_s / groups * 1e3, 2),
        "commit_ms_per_group": round(sequencer.commit_s / groups * 1e3, 2),
        "locked_us_per_event": round(sequencer.locked_s / events * 1e6, 1),
    }


def _line(label: str, f: dict[str, Any]) -> str:
    text = (f"shards, {label}: {f['events']:,} events in {f['seconds']:.1f} s = "
            f"{f['events_per_s']:,} events/s; ")
    if "cpu_us_per_event" in f:
        text += (f"CPU {f['cpu_us_per_event']} µs/event; write (lock, COPY, commit) "
                 f"{f['write_ms_per_batch']} ms per batch; ")
    else:
        text += (f"CPU µs/event: coordinator {f['coordinator_cpu_us_per_event']}, workers "
                 f"{f['worker_cpu_us_per_event']} (sum {f['workers_cpu_us_per_event']}), "
                 f"sequencer {f['sequencer_cpu_us_per_event']} (its server process "
                 f"{f['sequencer_server_cpu_us_per_event']}); {f['groups']} groups of "
                 f"{f['batches_per_group']} batches / {f['events_per_group']} events, "
                 f"locked {f['locked_ms_per_group']} ms (commit {f['commit_ms_per_group']} ms)"
                 f" per group = {f['locked_us_per_event']} µs/event; ")
    return text + (f"raw COPY of the same rows {f['copy_rows_per_s']:,} rows/s, ratio "
                   f"{f['ratio_to_copy']:.3f}")


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
