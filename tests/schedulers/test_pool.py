"""`ledger scheduler --workers N` (issue 11 scope 4): funding settlements and margin sweeps in
parts across a pool of shard workers (`ShardPool`, ledger/application/workers.py).

The three-day market of `schedfeed` has positions in both shards of two (bob and carol in shard
0, alice and dave in shard 1). What is checked, on real PostgreSQL stores fed alike:

- the scheduler with a pool of two writes the events one scheduler process writes (every
  account's events with their chain hashes, every stream's versions, kinds and times);
- a worker killed (SIGKILL) between the parts' commits of a funding settlement — one shard's
  holders paid, the other's not, no marker — is finished by the next scheduler run exactly
  once: the same store as an uninterrupted run, each period settled once;
- a part that loses its commit to another writer (the feed) is discarded and the parts run
  again, the committed ones skipped;
- a worker killed at a random moment of a running scheduler: the pool restarts and the run ends
  with the same store;
- on SQLite the option is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import schedfeed as f
from click.testing import CliRunner
from test_processes import HOURLY, UNTIL, assert_each_period_once, feed_everything

from ledger.application.service import Ledger
from ledger.application.shards import shard_of
from ledger.application.workers import ShardPool
from ledger.domain.account import Account
from ledger.domain.ids import account_id, instrument_id
from ledger.domain.reference import Instrument
from ledger.times import format_at
from schedulers import periods as p
from schedulers.cli import standalone
from schedulers.main import Options, main

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the shard tests' plumbing
from shards.support import child_processes, databases, dump  # noqa: E402

pytestmark = pytest.mark.postgres
NAMES = ("alice", "bob", "carol", "dave", "erin")
CRASH_AT = f.T0 + timedelta(hours=8)  # a funding time of both perpetuals


def _schedule(url: str, until: datetime, workers: int) -> None:
    outcome = main(Options(url=url, clock="simulated", start=f.T0, until=until,
                           sweep_seconds=HOURLY, workers=workers))
    assert outcome.active and outcome.errors == 0, outcome


def _funding(url: str, name: str, at: datetime) -> int:
    ledger = Ledger(url)
    try:
        return sum(1 for e in ledger.events.get(account_id(name))
                   if isinstance(e, Account.FundingSettled) and e.period == at)
    finally:
        ledger.close()


def _markers(url: str, symbol: str, at: datetime) -> int:
    ledger = Ledger(url)
    try:
        return sum(1 for e in ledger.events.get(instrument_id(symbol))
                   if isinstance(e, Instrument.FundingPeriodSettled) and e.period == at)
    finally:
        ledger.close()


def _check_once(url: str) -> None:
    ledger = Ledger(url)
    try:
        assert_each_period_once(ledger)
    finally:
        ledger.close()


def test_the_market_has_holders_in_both_shards() -> None:
    assert {shard_of(name, 2) for name in ("alice", "bob", "carol", "dave")} == {0, 1}


def test_a_pool_of_two_writes_the_events_of_one_scheduler(postgres_url: str) -> None:
    with databases(postgres_url, 2) as (pooled, single):
        for url in (pooled, single):
            feed_everything(url)
        _schedule(pooled, UNTIL, workers=2)
        _schedule(single, UNTIL, workers=1)
        _check_once(pooled)
        reference = dump(single)
        kinds = Counter(kind for stream in reference["streams"].values()
                        for _, kind, _ in stream)
        assert kinds["FundingSettled"] > 0 and kinds["FundingPeriodSettled"] > 0, kinds
        assert dump(pooled) == reference


def test_a_worker_killed_between_the_parts_commits_is_finished_once(postgres_url: str
                                                                      ) -> None:
    with databases(postgres_url, 2) as (crashed, single):
        for url in (crashed, single):
            feed_everything(url)
        _schedule(crashed, CRASH_AT - timedelta(hours=1), workers=2)
        # The 08:00 settlement in parts, stopped by hand: worker 1 commits its part, worker 0
        # dies (SIGKILL) before committing its own; nobody writes the marker.
        pool = ShardPool(crashed, 2)
        pool.start()
        text = json.dumps(p.Period.of(p.FUNDING, CRASH_AT).command())
        for index in range(2):
            pool._send(index, ("part", (0, text, index, 2)))
        votes = [pool._expect(index, "voted") for index in range(2)]
        assert votes[1] == {"BTCUSDT": True, "ETHUSDT": True}, votes
        pool._send(1, ("commit", True))
        assert pool._expect(1, "committed") is True
        victim = pool.processes[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        pool.close()
        paid = {name: _funding(crashed, name, CRASH_AT) for name in NAMES}
        assert paid == {"alice": 1, "bob": 0, "carol": 0, "dave": 1, "erin": 0}, paid
        assert _markers(crashed, "BTCUSDT", CRASH_AT) == 0
        # A scheduler started again finishes the period (bob and carol), then the rest.
        _schedule(crashed, UNTIL, workers=2)
        _schedule(single, UNTIL, workers=1)
        _check_once(crashed)
        assert {name: _funding(crashed, name, CRASH_AT) for name in NAMES} == {
            "alice": 1, "bob": 1, "carol": 1, "dave": 1, "erin": 0}
        assert _markers(crashed, "BTCUSDT", CRASH_AT) == 1
        assert _markers(crashed, "ETHUSDT", CRASH_AT) == 1
        assert dump(crashed) == dump(single)


def test_a_part_that_loses_its_commit_to_the_feed_is_run_again(postgres_url: str) -> None:
    """Another writer (the feed) saves to bob (shard 0) between the parts and their commits:
    worker 0's commit loses, its part is discarded, and the pool runs the parts again —
    worker 1's holders, committed already, are skipped; the store is the one where the
    deposit came before the settlement."""
    deposit = f.parse_command({"type": "deposit", "at": format_at(f.T1), "id": "race",
                               "account": "bob", "asset": "USDT", "amount": "5"})
    with databases(postgres_url, 2) as (raced, single):
        for url in (raced, single):
            feed_everything(url)
            _schedule(url, CRASH_AT - timedelta(hours=1), workers=2)
        pool = ShardPool(raced, 2)
        pool.start()
        try:
            text = json.dumps(p.Period.of(p.FUNDING, CRASH_AT).command())
            for index in range(2):
                pool._send(index, ("part", (0, text, index, 2)))
            assert all(pool._expect(index, "voted") for index in range(2))
            feed = Ledger(raced)
            feed.handle(deposit)
            feed.close()
            for index in range(2):
                pool._send(index, ("commit", True))
            assert [pool._expect(index, "committed") for index in range(2)] == [False, True]
            assert _funding(raced, "bob", CRASH_AT) == 0
            assert _funding(raced, "alice", CRASH_AT) == 1
            assert pool.settle(text) == "applied"
            assert pool.restarts == 0
        finally:
            pool.close()
        feed = Ledger(single)
        feed.handle(deposit)
        feed.close()
        for url in (raced, single):
            _schedule(url, UNTIL, workers=1)
        assert {name: _funding(raced, name, CRASH_AT) for name in NAMES} == {
            "alice": 1, "bob": 1, "carol": 1, "dave": 1, "erin": 0}
        assert _markers(raced, "BTCUSDT", CRASH_AT) == 1
        _check_once(raced)
        assert dump(raced) == dump(single)


def test_a_worker_killed_in_a_running_scheduler_is_replaced(postgres_url: str,
                                                             tmp_path: Path) -> None:
    with databases(postgres_url, 2) as (killed, single):
        for url in (killed, single):
            feed_everything(url)
        log = tmp_path / "scheduler.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "schedulers.cli", "--db", killed, "scheduler",
                 "--clock", "simulated", "--from", format_at(f.T0), "--until", format_at(UNTIL),
                 "--sweep-seconds", str(HOURLY), "--step-delay", "0.05", "--workers", "2"],
                stdout=handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
            try:
                pause = threading.Event()
                victim = None
                for _ in range(1200):  # polling /proc and the log, not ordering events
                    settled = log.read_text().count(" settled ")
                    found = [pid for pid, name in child_processes(process.pid).items()
                             if name == "ledger-shard-1"]
                    if settled >= 6 and found:
                        victim = found[0]
                        break
                    assert process.poll() is None, log.read_text()
                    pause.wait(0.05)
                assert victim is not None, log.read_text()
                os.kill(victim, signal.SIGKILL)
                assert process.wait(timeout=300) == 0, log.read_text()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert "restarting 2 workers" in log.read_text(), log.read_text()
        _schedule(single, UNTIL, workers=1)
        _check_once(killed)
        assert dump(killed) == dump(single)


def test_more_than_one_worker_on_sqlite_is_refused(sqlite_url: str) -> None:
    result = CliRunner().invoke(standalone, ["--db", sqlite_url, "scheduler", "--once",
                                             "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "--workers above 1 needs a PostgreSQL store" in result.output


def test_the_pool_refuses_sqlite(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        ShardPool(sqlite_url, 2)
