"""One active scheduler per store, fail-over, graceful stop, the command line, live wiring.

The fail-over tests run real processes (`python -m schedulers.cli … scheduler`), because what
they check is what the operating system and PostgreSQL do when a process dies: the advisory
lock's session ends, the lock file's descriptor closes, and a waiting scheduler takes over.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schedfeed as f
from click.testing import CliRunner

from ledger.application.service import Ledger
from ledger.clock import FixedClock, SystemClock
from ledger.domain.account import Account
from ledger.domain.ids import account_id, instrument_id
from ledger.domain.reference import Instrument
from ledger.times import format_at
from schedulers.cli import standalone
from schedulers.jobs import Jobs
from schedulers.lock import AdvisoryLock, FileLock, scheduler_lock
from schedulers.main import JOB_DEFAULTS, Outcome, job_specs, live_scheduler, run_live

HOURLY = 3600
WAIT_S = 60.0
UNTIL = f.T0 + timedelta(hours=36)  # a day and a half: enough to kill a scheduler mid-way


def feed_everything(url: str) -> None:
    ledger = Ledger(url)
    with ledger.batch():
        for command in f.market():
            ledger.handle(command)
    ledger.close()


class Scheduler:
    """A scheduler process on the simulated clock over the three days, logging to a file."""

    def __init__(self, url: str, log: Path, step_delay: float = 0.03) -> None:
        self.log = log
        self.handle = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "schedulers.cli", "--db", url, "scheduler",
             "--clock", "simulated", "--from", format_at(f.T0), "--until", format_at(UNTIL),
             "--sweep-seconds", str(HOURLY), "--step-delay", str(step_delay)],
            stdout=self.handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
        )

    def text(self) -> str:
        return self.log.read_text()

    def settled_runs(self) -> int:
        return sum(" settled " in line for line in self.text().splitlines())

    def wait_for(self, predicate: Any, what: str) -> None:
        done = threading.Event()
        deadline = WAIT_S
        while not predicate():
            if self.process.poll() is not None and not predicate():
                raise AssertionError(f"exited before {what}:\n{self.text()}")
            if deadline <= 0:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")
            done.wait(0.05)  # polling a log file, not ordering events
            deadline -= 0.05

    def finish(self, timeout: float = WAIT_S) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.handle.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()


@pytest.fixture
def processes() -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.kill()


def assert_each_period_once(ledger: Ledger, until: datetime = UNTIL) -> None:
    """Every funding time up to `until` settled once per instrument, every interest hour
    recorded once, no account paid a funding or an interest period twice."""
    for symbol in f.INTERVALS:
        periods = [e.period for e in ledger.events.get(instrument_id(symbol))
                   if isinstance(e, Instrument.FundingPeriodSettled)]
        assert sorted(periods) == f.funding_times(symbol, f.T0, until), symbol
    hours = int((until - f.T0) / timedelta(hours=1)) + 1
    assert len(ledger.index.command_times("charge_interest|@")) == hours
    for name in ("alice", "bob", "carol", "dave", "erin"):
        events = list(ledger.events.get(account_id(name)))
        funding = Counter((e.symbol, e.period) for e in events
                          if isinstance(e, Account.FundingSettled))
        interest = Counter((e.asset, e.period) for e in events
                           if isinstance(e, Account.InterestCharged))
        assert set(funding.values()) <= {1}, name
        assert set(interest.values()) <= {1}, name


# ----------------------------------------------------------------------------- locks


def test_a_lock_file_next_to_the_sqlite_database_admits_one_scheduler(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first, second = scheduler_lock(url), scheduler_lock(url)
    assert isinstance(first, FileLock)
    assert first.path == tmp_path / "ledger.db.scheduler.lock"
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()  # what the kernel does when the holder dies
    assert second.try_acquire()
    assert second.still_held()
    second.release()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_an_advisory_lock_admits_one_scheduler_and_dies_with_its_session(
    store_url: str,
) -> None:
    first, second = AdvisoryLock(store_url), AdvisoryLock(store_url)
    try:
        assert first.try_acquire()
        assert first.try_acquire()  # asking again while holding it changes nothing
        assert first.still_held()
        assert not second.try_acquire()
        assert not second.still_held()
        first.close_connection()  # the holder's session ends, as when its process dies
        assert not first.still_held()
        # The server notices the closed session a moment later: the waiter polls, as in life.
        pause = threading.Event()
        for _ in range(100):
            if second.try_acquire():
                break
            pause.wait(0.05)
        assert second.still_held()
    finally:
        first.release()
        second.release()


# ----------------------------------------------------------------------------- processes


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_schedulers_on_postgresql_settle_each_period_once_and_fail_over(
    store_url: str, tmp_path: Path, processes: list[Scheduler],
) -> None:
    feed_everything(store_url)
    one = Scheduler(store_url, tmp_path / "one.log")
    two = Scheduler(store_url, tmp_path / "two.log")
    processes += [one, two]
    for scheduler in (one, two):
        scheduler.wait_for(lambda s=scheduler: "scheduler lock taken" in s.text()
                           or "waiting to take over" in s.text(), "the lock decision")
    active, waiting = (one, two) if "this scheduler is active" in one.text() else (two, one)
    assert "this scheduler is active" in active.text()
    assert "waiting to take over" in waiting.text()
    active.wait_for(lambda: active.settled_runs() >= 8, "a few periods settled")
    active.process.send_signal(signal.SIGKILL)  # dies mid-run: no goodbye, no unlock
    active.finish()
    waiting.wait_for(lambda: "taking over" in waiting.text(), "the take-over")
    assert waiting.finish() == 0, waiting.text()
    assert "settled" in waiting.text()
    ledger = Ledger(store_url)
    assert_each_period_once(ledger)
    ledger.close()


def test_sigterm_stops_a_waiting_scheduler_and_lets_an_active_one_finish_its_period(
    sqlite_url: str, tmp_path: Path, processes: list[Scheduler],
) -> None:
    feed_everything(sqlite_url)
    held = scheduler_lock(sqlite_url)
    assert held.try_acquire()
    waiting = Scheduler(sqlite_url, tmp_path / "waiting.log")
    processes.append(waiting)
    waiting.wait_for(lambda: "waiting to take over" in waiting.text(), "waiting")
    waiting.process.send_signal(signal.SIGTERM)
    assert waiting.finish(timeout=10) == 0
    held.release()

    active = Scheduler(sqlite_url, tmp_path / "active.log", step_delay=0.1)
    processes.append(active)
    active.wait_for(lambda: active.settled_runs() >= 5, "a few periods settled")
    active.process.send_signal(signal.SIGTERM)
    assert active.finish(timeout=20) == 0, active.text()
    assert "received SIGTERM" in active.text()
    # It stopped part-way, between periods: what is settled is every hour up to some point.
    ledger = Ledger(sqlite_url)
    charged = ledger.index.command_times("charge_interest|@")
    assert 0 < len(charged) < 37
    hour = 3_600_000_000
    assert charged == list(range(charged[0], charged[0] + hour * len(charged), hour))
    ledger.close()


# ----------------------------------------------------------------------------- command line


def test_the_command_runs_the_simulated_clock_and_exits_0(sqlite_url: str) -> None:
    feed_everything(sqlite_url)
    result = CliRunner().invoke(standalone, [
        "--db", sqlite_url, "scheduler", "--clock", "simulated", "--from", format_at(f.T0),
        "--until", format_at(UNTIL), "--sweep-seconds", str(HOURLY)])
    assert result.exit_code == 0, result.output
    ledger = Ledger(sqlite_url)
    assert_each_period_once(ledger)
    ledger.close()


def test_the_command_and_the_jobs_share_the_default_bound() -> None:
    from schedulers import cli, jobs

    assert cli.DEFAULT_LIMIT == jobs.DEFAULT_LIMIT


@pytest.mark.parametrize("arguments", [
    ["--clock", "simulated"],
    ["--clock", "simulated", "--from", "2025-01-02T00:00:00Z", "--until", "2025-01-01T00:00:00Z"],
    ["--from", "2025-01-01T00:00:00Z"],
    ["--once", "--clock", "simulated", "--from", "2025-01-01T00:00:00Z",
     "--until", "2025-01-02T00:00:00Z"],
    ["--clock", "simulated", "--from", "yesterday", "--until", "2025-01-02T00:00:00Z"],
    ["--sweep-seconds", "0"],
])
def test_the_command_refuses_inconsistent_options(sqlite_url: str, arguments: list[str]) -> None:
    result = CliRunner().invoke(standalone, ["--db", sqlite_url, "scheduler", *arguments])
    assert result.exit_code == 2, result.output


def test_once_exits_at_once_when_another_scheduler_is_active(sqlite_url: str) -> None:
    held = scheduler_lock(sqlite_url)
    assert held.try_acquire()
    try:
        result = CliRunner().invoke(standalone, ["--db", sqlite_url, "scheduler", "--once"])
    finally:
        held.release()
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- live wiring


def test_live_jobs_run_in_utc_with_the_defaults_set_explicitly(sqlite_url: str) -> None:
    jobs = Jobs(Ledger(sqlite_url), FixedClock(f.T0), sweep_seconds=5)
    scheduler = live_scheduler(jobs, job_specs(5), threading.Event(), Outcome())
    assert str(scheduler.timezone) == "UTC"
    listed = {job.id: job for job in scheduler.get_jobs()}
    assert set(listed) == {"funding", "delivery", "interest", "sweep"}
    for job in listed.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
        assert job.next_run_time == f.T0  # every job runs once at start
    assert JOB_DEFAULTS == {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


def test_live_mode_runs_every_job_at_start_and_stops_when_asked(sqlite_url: str) -> None:
    """On an empty store on the wall clock: each job runs at start (nothing due but the
    sweep), then the stop request ends the loop after the running job."""
    ledger = Ledger(sqlite_url)
    jobs = Jobs(ledger, SystemClock(), sweep_seconds=3600)
    stop = threading.Event()
    outcome: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcome.append(
        run_live(jobs, job_specs(3600), scheduler_lock(sqlite_url), stop)))
    thread.start()
    try:
        waited = threading.Event()
        for _ in range(200):
            if ledger.index.command_times("check_margin|@"):
                break
            waited.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome and outcome[0].errors == 0 and outcome[0].ran >= 1
    (swept,) = ledger.index.command_times("check_margin|@")
    now = SystemClock().now()
    assert now - timedelta(hours=2) < datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=swept) <= now  # the latest hourly sweep time, on the wall clock
