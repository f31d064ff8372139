"""Measure one funding settlement over many open positions (`ledger bench`, issue 5).

`funding_bench(url, positions)` builds, in an empty store, `positions` accounts each holding one
BTCUSDT position (half long, half short, so the funding nets to zero), then times the 08:00
funding settlement twice over:

- `settle_warm_s` (08:00): `ledger.handle(settle_funding)` on the ledger that ingested the
  positions, every account already in memory — the settlement and its one save;
- `settle_cold_s` (16:00): the scheduler's path on a fresh `Ledger` (just started)
  — find what is due, load every holder from the store, settle, save;
- `settle_steady_s` (00:00 the next day): the same scheduler a period later, after another
  process wrote a rate and a mark: it catches up from the notification log and keeps its
  accounts in memory, so this is the figure of a scheduler that has been running;
- `settle_workers_cold_s`, `settle_workers_warm_s` (two more funding times): the same through
  `ledger run --workers 2` (`workers`), every worker settling its own holders in parallel and
  worker 0 writing the period's marker — first in fresh workers, then in the running pool;
- `scheduler_pool` (PostgreSQL): the scheduler's funding job with a pool of shard workers
  (`ledger scheduler --workers N`, `ShardPool`) for each N of `pool_sizes`, two more funding
  times each: `cold_s` in a freshly started pool, `warm_s` in the running pool (the figure of
  a running scheduler), with the CPU per position of each process (`cpu_us_per_position`:
  the scheduler, each worker, the sequencer; read from /proc/PID/stat for the children).

`cpu_us_per_position`: this process's CPU time (time.process_time) per position, warm, cold
and steady; the machine may be shared, so the wall-clock figures are noisy.

Setup is quick by construction: the instrument is listed at 07:00, so 08:00 is its first funding
time (nothing else is due), accounts open, deposit and fill in `with ledger.batch():` blocks of
`batch_accounts` accounts (three commands each, one transaction per block).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.application.commands import Command, parse_command
from ledger.application.service import Ledger
from ledger.clock import FixedClock
from ledger.domain.ids import instrument_id
from ledger.domain.reference import Instrument
from ledger.numbers import install
from ledger.times import format_at

LISTED = datetime(2025, 1, 1, 7, tzinfo=UTC)
FIRST = datetime(2025, 1, 1, 8, tzinfo=UTC)
SECOND = FIRST + timedelta(hours=8)


def _reference() -> list[Command]:
    at = format_at(LISTED)
    return [parse_command(c) for c in (
        {"type": "asset", "at": at, "asset": "USDT"},
        {"type": "asset", "at": at, "asset": "BTC"},
        {"type": "instrument", "at": at, "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "risk_tiers": [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]},
        {"type": "mark_price", "at": at, "symbol": "BTCUSDT", "price": "50000"},
        {"type": "funding_rate", "at": format_at(LISTED + timedelta(minutes=30)),
         "symbol": "BTCUSDT", "rate": "0.0001"},
    )]


def _account_commands(index: int) -> Iterator[Command]:
    at = format_at(LISTED + timedelta(minutes=10))
    name = f"bench-{index:07d}"
    yield parse_command({"type": "open_account", "at": at, "account": name,
                         "mode": "single_asset"})
    yield parse_command({"type": "deposit", "at": at, "id": "d1", "account": name,
                         "asset": "USDT", "amount": "1000"})
    yield parse_command({"type": "fill", "at": at, "id": "f1", "account": name,
                         "symbol": "BTCUSDT", "side": "buy" if index % 2 == 0 else "sell",
                         "qty": "10", "price": "50000", "fee": "0"})


def funding_bench(url: str, positions: int = 100_000, batch_accounts: int = 2_000,
                  workers: int = 2, pool_sizes: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Build `positions` open positions in the empty store at `url`, then time one funding
    settlement of them all (see the module docstring). Returns the figures."""
    from schedulers.jobs import Jobs

    install()
    ledger = Ledger(url)
    started = time.perf_counter()
    with ledger.batch():
        for command in _reference():
            ledger.handle(command)
    for first in range(0, positions, batch_accounts):
        with ledger.batch():
            for index in range(first, min(positions, first + batch_accounts)):
                for command in _account_commands(index):
                    ledger.handle(command)
    setup_s = time.perf_counter() - started

    # Warm: the settlement alone, every holder already in memory.
    started, cpu = time.perf_counter(), time.process_time()
    ledger.handle(parse_command({"type": "settle_funding", "at": format_at(FIRST)}))
    warm_s, warm_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    ledger.handle(parse_command({"type": "funding_rate", "at": format_at(FIRST + timedelta(
        minutes=30)), "symbol": "BTCUSDT", "rate": "0.0001"}))
    ledger.close()

    # Cold: the scheduler's path on a fresh ledger, at the next funding time.
    fresh = Ledger(url)
    jobs = Jobs(fresh, FixedClock(SECOND), sweep_seconds=3600)
    started, cpu = time.perf_counter(), time.process_time()
    report = jobs.run("funding")
    cold_s, cold_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    assert [s.period.at for s in report.settled] == [SECOND], report.line()
    events = report.settled[0].events
    periods = [e.period for e in fresh.events.get(instrument_id("BTCUSDT"))
               if isinstance(e, Instrument.FundingPeriodSettled)]
    assert periods == [FIRST, SECOND], periods

    # Steady: the running scheduler's path at the next funding time, after another process
    # wrote a rate and a mark (caught up from the notification log, accounts kept in memory).
    feed = Ledger(url)
    third = SECOND + timedelta(hours=8)
    feed.handle(parse_command({"type": "funding_rate", "at": format_at(third - timedelta(
        minutes=30)), "symbol": "BTCUSDT", "rate": "0.0001"}))
    feed.handle(parse_command({"type": "mark_price", "at": format_at(third - timedelta(
        minutes=1)), "symbol": "BTCUSDT", "price": "50100"}))
    feed.close()
    jobs = Jobs(fresh, FixedClock(third), sweep_seconds=3600)
    started, cpu = time.perf_counter(), time.process_time()
    report = jobs.run("funding")
    steady_s, steady_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    assert [s.period.at for s in report.settled] == [third], report.line()
    fresh.close()
    parts = _parallel_settlements(url, third, workers) if workers > 1 else {}
    from ledger.application.workers import uses_sequencer

    if uses_sequencer(url) and pool_sizes:
        pools, after = [], third + timedelta(hours=16)
        for size in pool_sizes:
            pools.append(_scheduler_pool(url, after, size, positions))
            after += timedelta(hours=16)
        parts["scheduler_pool"] = pools
    return {
        "positions": positions,
        "setup_s": round(setup_s, 1),
        "settle_cold_s": round(cold_s, 2),
        "settle_warm_s": round(warm_s, 2),
        "settle_steady_s": round(steady_s, 2),
        "cpu_us_per_position": {"warm": round(warm_cpu_s / positions * 1e6, 1),
                                "cold": round(cold_cpu_s / positions * 1e6, 1),
                                "steady": round(steady_cpu_s / positions * 1e6, 1)},
        **parts,
        "events": events,
        "transactions_per_settlement": 1,
        "batch_accounts": batch_accounts,
    }


def _parallel_settlements(url: str, after: datetime, workers: int) -> dict[str, Any]:
    """Time two more funding times through `ledger run --workers N` (workers.py: every worker
    settles its own holders, worker 0 writes the marker): the first in freshly started
    workers, each loading its holders (`settle_workers_cold_s`), the next with them in memory
    (`settle_workers_warm_s`, a running pool). A deposit after each settlement closes its
    barrier; the time is taken when the coordinator asks for the line after it."""
    from ledger.application.workers import run_sharded

    marks: list[float] = []
    periods = [after + timedelta(hours=8), after + timedelta(hours=16)]

    def lines() -> Iterator[tuple[int, str]]:
        number = 0
        for index, period in enumerate(periods):
            for command in (
                {"type": "funding_rate", "at": format_at(period - timedelta(minutes=30)),
                 "symbol": "BTCUSDT", "rate": "0.0001"},
                {"type": "settle_funding", "at": format_at(period)},
                {"type": "deposit", "at": format_at(period), "id": f"bench-{index}",
                 "account": "bench-0000000", "asset": "USDT", "amount": "1"},
            ):
                number += 1
                if command["type"] == "deposit":
                    marks.append(time.perf_counter())  # the barrier runs when it is routed
                yield number, json.dumps(command)
        marks.append(time.perf_counter())

    started = time.perf_counter()
    report = run_sharded(url, lines(), workers)
    ended = time.perf_counter()
    assert report.failure is None and not report.rejected, report
    return {
        "workers": workers,
        "settle_workers_cold_s": round(marks[1] - marks[0], 2),
        "settle_workers_warm_s": round(marks[2] - marks[1], 2),
        "workers_start_and_stop_s": round(ended - started - (marks[2] - marks[0]), 2),
    }


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) of a child process so far, from /proc/PID/stat (Linux)."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _scheduler_pool(url: str, after: datetime, workers: int, positions: int) -> dict[str, Any]:
    """Time the scheduler's funding job with a pool of `workers` shard workers at the two
    funding times after `after`: the first in a fresh pool (each worker loads its holders),
    the second in the running pool. A rate for each is written first by another process."""
    from ledger.application.workers import ShardPool
    from schedulers.jobs import Jobs

    feed, scheduler = Ledger(url), Ledger(url)
    pool = ShardPool(url, workers)
    pool.start()
    assert pool.sequencer is not None
    names = [f"shard-{index}" for index in range(workers)] + ["sequencer"]
    pids = [process.pid for process in pool.processes] + [pool.sequencer.pid]
    clock = FixedClock(after)
    jobs = Jobs(scheduler, clock, sweep_seconds=3600, pool=pool)
    figures: dict[str, Any] = {"workers": workers}
    try:
        for label, period in (("cold", after + timedelta(hours=8)),
                              ("warm", after + timedelta(hours=16))):
            feed.catch_up()  # the markers the pool wrote
            feed.handle(parse_command({"type": "funding_rate", "at": format_at(
                period - timedelta(minutes=30)), "symbol": "BTCUSDT", "rate": "0.0001"}))
            clock.set(period)
            children = [_cpu_s(pid) for pid in pids]
            started, cpu = time.perf_counter(), time.process_time()
            report = jobs.run("funding")
            wall, own = time.perf_counter() - started, time.process_time() - cpu
            used = [_cpu_s(pid) - before for pid, before in zip(pids, children, strict=True)]
            assert [s.period.at for s in report.settled] == [period], report.line()
            assert report.settled[0].events == positions + 1, report.line()
            figures[f"{label}_s"] = round(wall, 2)
            figures[f"{label}_cpu_us_per_position"] = {
                "scheduler": round(own / positions * 1e6, 1),
                **{name: round(seconds / positions * 1e6, 1)
                   for name, seconds in zip(names, used, strict=True)}}
    finally:
        pool.close()
        feed.close()
        scheduler.close()
    return figures
