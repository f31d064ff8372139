"""APScheduler wiring: when the jobs run, one active scheduler, graceful stop, simulated time.

Exactly-once is the ledger's business, not APScheduler's (DESIGN §2, STYLE §11). Every run of
every job asks the ledger what is due and not done, so a run that is late, doubled or skipped
changes nothing about *what* gets settled; the schedule below only decides *when* we look.
APScheduler 3.11's defaults are therefore set explicitly, each with its reason:

- `timezone=UTC`: funding times and interest hours are UTC boundaries (DESIGN §6.6); the
  default is the machine's local zone, whose DST shifts would move cron runs.
- `coalesce=True`: after a pause, run a job once, not once per missed fire time: the one run
  catches up every missed period from the ledger's own records anyway.
- `misfire_grace_time=None`: run a late job however late it is. The default (1 s) silently
  drops a run that starts more than a second late, e.g. behind a long funding run; since the
  ledger decides what is due, a late run is always right and a dropped one only delays work.
- `max_instances=1`, and a single worker thread for all jobs: periods are settled in time order
  across kinds (`periods.catch_up_plan`), which two jobs at once could break; they share one
  `Ledger`, whose working set is not thread-safe.

Jobs: funding and interest on every hour at minute 0 (the period logic knows which hours are
funding times of which instrument: intervals are data and may change), delivery hourly plus a
one-off run at the next known expiry, the margin sweep every `sweep_seconds` (multiples since the
epoch). Every job also runs once at start. A job that hits its per-run bound runs again straight
away, until nothing it owns is due (a stop request is honoured between periods).

Modes: `run_live` (system clock, BackgroundScheduler driven by our loop, stops on SIGINT/SIGTERM
after the running job's current period), `run_once` (every job until nothing is due, then exit),
`simulate` (a `FixedClock` stepped from fire time to fire time, no sleeping).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ledger.application.service import Ledger
from ledger.clock import Clock, FixedClock, SystemClock
from ledger.times import format_at
from schedulers import periods as p
from schedulers.jobs import DEFAULT_LIMIT, JOB_KINDS, JobReport, Jobs
from schedulers.lock import SchedulerLock, scheduler_lock, wait_for

log = logging.getLogger("ledger.scheduler")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOCK_CHECK_SECONDS = 5.0
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
EXPIRY_JOB = "delivery-at-expiry"
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class JobSpec:
    """A job and the trigger that says when to look for its periods."""

    name: str
    trigger: BaseTrigger

    @property
    def rank(self) -> int:
        return p.KINDS.index(JOB_KINDS[self.name])

    def next_after(self, at: datetime) -> datetime | None:
        """Return the trigger's first fire time strictly after `at`."""
        fire = self.trigger.get_next_fire_time(None, at + _ONE_MICROSECOND)
        return None if fire is None else fire.astimezone(UTC)


def job_specs(sweep_seconds: int) -> list[JobSpec]:
    """Return the jobs, in the order they run when due at the same moment."""
    hourly = {"minute": 0, "second": 0, "timezone": UTC}
    return [
        JobSpec("funding", CronTrigger(**hourly)),
        JobSpec("delivery", CronTrigger(**hourly)),
        JobSpec("interest", CronTrigger(**hourly)),
        # Anchored at the epoch, so sweep times are multiples of sweep_seconds, as
        # `periods.latest_sweep` expects (the default anchor is "now + interval").
        JobSpec("sweep", IntervalTrigger(seconds=sweep_seconds, start_date=EPOCH, timezone=UTC)),
    ]


@dataclass
class Outcome:
    """What a scheduler process did, for its exit status."""

    ran: int = 0
    errors: int = 0
    active: bool = True  # False: another scheduler held the lock (and we did not wait)


def run_until_done(jobs: Jobs, job: str, stop: threading.Event) -> list[JobReport]:
    """Run a job until it leaves nothing due (each run is bounded), an error, or `stop`."""
    reports = [jobs.run(job)]
    while reports[-1].left and not reports[-1].error and not stop.is_set():
        reports.append(jobs.run(job))
        if _same_periods(reports[-1], reports[-2]):
            # The ledger recorded nothing for these periods, so they stay due: a disagreement
            # between `periods.py` and the ledger's handlers. Do not spin on it.
            log.error("%s job: the same %d periods are due again after settling them; "
                      "giving up this round", job, len(reports[-1].settled))
            reports[-1].error = "no progress"
            break
    return reports


def _same_periods(one: JobReport, other: JobReport) -> bool:
    return [s.period for s in one.settled] == [s.period for s in other.settled]


# ----------------------------------------------------------------------------- modes


def run_once(jobs: Jobs, specs: Iterable[JobSpec], stop: threading.Event) -> Outcome:
    """Run every job now, each until nothing it owns is due (`--once`, for operators and cron)."""
    outcome = Outcome()
    for spec in sorted(specs, key=lambda s: s.rank):
        if stop.is_set():
            break
        for report in run_until_done(jobs, spec.name, stop):
            outcome.ran += 1
            outcome.errors += report.error is not None
    return outcome


def simulate(
    jobs: Jobs,
    clock: FixedClock,
    specs: list[JobSpec],
    start: datetime,
    until: datetime,
    stop: threading.Event,
    *,
    before_step: Callable[[datetime], None] | None = None,
    step_delay: float = 0.0,
) -> Outcome:
    """Run the same jobs at simulated times from `start` to `until`, quickly.

    The clock jumps from one fire time to the next (the union of the jobs' triggers and the
    next expiry of a future); at each, the jobs due then run in order, each until nothing it
    owns is due. Every job runs at `start`, as in live mode. `before_step(t)` lets a caller
    (a test, a demo) feed what happens up to `t` before the jobs look; `step_delay` slows the
    walk down for demonstrations and fail-over tests (default: no sleeping at all).
    """
    outcome = Outcome()
    at = start
    due = list(specs)
    while not stop.is_set():
        clock.set(at)
        if before_step is not None:
            before_step(at)
        for spec in sorted(due, key=lambda s: s.rank):
            for report in run_until_done(jobs, spec.name, stop):
                outcome.ran += 1
                outcome.errors += report.error is not None
        if step_delay:
            stop.wait(step_delay)
        upcoming = {spec.name: spec.next_after(at) for spec in specs}
        expiry = jobs.next_expiry(at)
        times = [t for t in (*upcoming.values(), expiry) if t is not None]
        if not times or min(times) > until:
            break
        following = min(times)
        due = [spec for spec in specs
               if upcoming[spec.name] == following
               or (spec.name == "delivery" and expiry == following)]
        at = following
    return outcome


def run_live(jobs: Jobs, specs: list[JobSpec], lock: SchedulerLock, stop: threading.Event
             ) -> Outcome:
    """Run the jobs on the wall clock until `stop` is set or the lock is lost."""
    outcome = Outcome()
    scheduler = live_scheduler(jobs, specs, stop, outcome)
    scheduler.start()
    log.info("scheduler running: %s", ", ".join(f"{s.name} {s.trigger}" for s in specs))
    try:
        while not stop.wait(LOCK_CHECK_SECONDS):
            if not lock.still_held():
                log.error("the scheduler lock was lost (%s): stopping so that the scheduler "
                          "holding it now works alone", lock.describe())
                outcome.errors += 1
                stop.set()
    finally:
        log.info("stopping: the running job finishes its current period")
        scheduler.shutdown(wait=True)
    return outcome


def live_scheduler(jobs: Jobs, specs: list[JobSpec], stop: threading.Event, outcome: Outcome
                   ) -> BackgroundScheduler:
    """Return the APScheduler scheduler of live mode, its jobs added, not started."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults=dict(JOB_DEFAULTS),
    )

    def run(name: str) -> None:
        if stop.is_set():
            return  # queued before the stop: do nothing, let the shutdown finish
        # Each run is bounded (and logs its line); a long catch-up is a series of runs, with
        # a stop request honoured between periods. Other jobs could not usefully go in
        # between: they would settle the same earlier periods first (time order).
        for report in run_until_done(jobs, name, stop):
            outcome.ran += 1
            outcome.errors += report.error is not None
        _schedule_next_expiry(scheduler, jobs, run)

    now = jobs.clock.now()
    for spec in specs:
        # next_run_time=now: every job runs once at start, catching up whatever is due.
        scheduler.add_job(run, spec.trigger, args=[spec.name], id=spec.name, name=spec.name,
                          next_run_time=now, **JOB_DEFAULTS)
    return scheduler


def _schedule_next_expiry(scheduler: BackgroundScheduler, jobs: Jobs,
                          run: Callable[[str], None]) -> None:
    """Add a one-off delivery run at the next expiry of an undelivered future (the hourly
    delivery run, and any sweep, would also find it due: this makes it prompt)."""
    expiry = jobs.next_expiry(jobs.clock.now())
    if expiry is None:
        return
    existing = scheduler.get_job(EXPIRY_JOB)
    if existing is not None and existing.next_run_time == expiry:
        return
    scheduler.add_job(run, DateTrigger(expiry, timezone=UTC), args=["delivery"], id=EXPIRY_JOB,
                      name="delivery at expiry", replace_existing=True, **JOB_DEFAULTS)


# ----------------------------------------------------------------------------- process


@dataclass(frozen=True)
class Options:
    url: str
    once: bool = False
    clock: str = "system"  # or "simulated"
    start: datetime | None = None
    until: datetime | None = None
    sweep_seconds: int = 5
    limit: int = DEFAULT_LIMIT
    wait_for_lock: bool = True
    step_delay: float = 0.0
    workers: int = 1  # > 1: funding and sweeps in parts across a pool (PostgreSQL only)


def main(options: Options, stop: threading.Event | None = None,
         before_step: Callable[[datetime], None] | None = None) -> Outcome:
    """Take the scheduler lock (waiting for it), then run in the chosen mode."""
    stop = stop or threading.Event()
    lock = scheduler_lock(options.url)
    if not options.wait_for_lock:
        if not lock.try_acquire():
            log.info("another scheduler is active (%s): it does the work; exiting",
                     lock.describe())
            return Outcome(active=False)
    elif not wait_for(lock, stop):
        return Outcome(active=False)
    try:
        return _run(options, lock, stop, before_step)
    finally:
        lock.release()


def _run(options: Options, lock: SchedulerLock, stop: threading.Event,
         before_step: Callable[[datetime], None] | None) -> Outcome:
    clock: Clock
    if options.clock == "simulated":
        assert options.start is not None, "the simulated clock needs --from"
        assert options.until is not None, "the simulated clock needs --until"
        clock = FixedClock(options.start)
    else:
        clock = SystemClock()
    ledger = Ledger(options.url)
    pool = None
    if options.workers > 1:
        from ledger.application.workers import ShardPool

        pool = ShardPool(options.url, options.workers)
        pool.start()  # before APScheduler's threads exist: the workers are forked
        log.info("funding and sweeps in parts across %d shard workers", options.workers)
    jobs = Jobs(ledger, clock, sweep_seconds=options.sweep_seconds, limit=options.limit,
                should_stop=stop.is_set, pool=pool)
    specs = job_specs(options.sweep_seconds)
    started = time.perf_counter()
    try:
        if isinstance(clock, FixedClock):
            assert options.start is not None and options.until is not None
            log.info("simulated clock from %s until %s", format_at(options.start),
                     format_at(options.until))
            outcome = simulate(jobs, clock, specs, options.start, options.until, stop,
                               before_step=before_step, step_delay=options.step_delay)
        elif options.once:
            outcome = run_once(jobs, specs, stop)
        else:
            outcome = run_live(jobs, specs, lock, stop)
    finally:
        if pool is not None:
            pool.close()
        ledger.close()
    log.info("scheduler done: %d job runs, %d with errors, %.1f s", outcome.ran,
             outcome.errors, time.perf_counter() - started)
    return outcome


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop`: the running job finishes its current period, then exit."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("received %s: finishing the running job, then exiting",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
