"""The scheduler's jobs: find what is due from the ledger, send the ledger's own commands.

Thin on purpose (STYLE §11): `periods.py` decides which periods are due; the ledger's handlers
(`settle_funding`, `settle_delivery`, `charge_interest`, `check_margin`) do all the work, each
funding time with each instrument's own rate and mark at that `at`. What is done is read from the
ledger's events and index, never from APScheduler's memory:

- funding: `FundingPeriodSettled` events, as `PointReference(ledger).instruments[s].periods`;
- delivery: `InstrumentDelivered` events, as `PointReference(ledger).instruments[s].delivered`
  (the terms, settlements and deliveries of each stream, read from the store by event type:
  never a stream's prices, issue 11);
- interest: the recorded `charge_interest` commands (`ledger.index.command_times`);
- sweep: the recorded `check_margin` command at the latest sweep time.

Every run starts with `ledger.catch_up()`: another process (the feed, an operator, a scheduler
that was active a moment ago) may have written since the last run; the ledger reads what they
wrote from the notification log and applies it to the accounts it holds in memory. Each period
is one command, saved in its own transaction; when a concurrent writer wins the
optimistic-concurrency check the save raises `ConcurrentWriteError`, and the period is retried
on a fresh view (the ledger's idempotency makes the retry safe: whatever the other writer
settled is acknowledged or skipped).

With a pool of shard workers (`ledger scheduler --workers N`, PostgreSQL; `ShardPool` in
ledger/application/workers.py) a funding settlement or margin sweep is applied in parts: every
worker settles its own accounts, worker 0 writes the period's one marker; the pool retries the
parts on a lost race and restarts its workers when one dies. Deliveries and interest stay here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ledger.application.asof import PointReference
from ledger.application.commands import idempotency_key, parse_command
from ledger.application.reference import InstrumentHistory
from ledger.application.service import ACKNOWLEDGED, Ledger
from ledger.clock import Clock
from ledger.errors import ConcurrentWriteError, LedgerError
from ledger.numbers import install, to_str
from ledger.times import format_at, from_micros
from schedulers import periods as p

if TYPE_CHECKING:
    from ledger.application.workers import ShardPool

log = logging.getLogger("ledger.scheduler")

JOB_KINDS = {"funding": p.FUNDING, "delivery": p.DELIVERY, "interest": p.INTEREST,
             "sweep": p.SWEEP}
DEFAULT_LIMIT = 200  # periods per job run: ~8 days of hourly interest with their funding times
RETRIES = 5  # attempts per period when a concurrent writer wins the save
IN_PARTS = (p.FUNDING, p.SWEEP)  # the kinds a pool of shard workers applies in parts


class RefusedInParts(LedgerError):
    """A command the pool's worker 0 refused (applied whole): its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc] # the refusal's own code, per instance
LISTED_PER_LINE = 8  # a log line lists each period up to this many, then summarises


@dataclass(frozen=True)
class Settled:
    """One period a job sent, and what became of it."""

    period: p.Period
    outcome: str  # "applied" or "acknowledged"
    detail: str = ""
    events: int = 0  # growth of the notification log during the command

    def describe(self) -> str:
        text = f"{self.period.kind} {format_at(self.period.at)}"
        if self.outcome == ACKNOWLEDGED:
            return text + " (already done)"
        if self.detail:
            text += f" [{self.detail}]"
        return text + f" +{self.events} events"


@dataclass
class JobReport:
    """What one job run did: its log line."""

    job: str
    now: datetime
    settled: list[Settled] = field(default_factory=list)
    left: int = 0
    stopped: bool = False
    error: str | None = None

    def line(self) -> str:
        head = f"{self.job} job at {format_at(self.now)}: "
        if len(self.settled) > LISTED_PER_LINE:
            body = f"settled {len(self.settled)}: " + self._summary()
        elif self.settled:
            body = f"settled {len(self.settled)}: " + "; ".join(
                s.describe() for s in self.settled)
        else:
            body = "nothing due"
        if self.left:
            body += f"; {self.left} more due (next run)"
        if self.stopped:
            body += "; stopped before the rest (shutdown)"
        if self.error:
            body += f"; stopped at an error: {self.error}"
        return head + body

    def _summary(self) -> str:
        """A long catch-up in one line: per kind, how many, from which period to which."""
        parts = []
        for kind in p.KINDS:
            mine = [s for s in self.settled if s.period.kind == kind]
            if mine:
                done = sum(s.outcome == ACKNOWLEDGED for s in mine)
                parts.append(f"{len(mine)} {kind} {format_at(mine[0].period.at)} … "
                             f"{format_at(mine[-1].period.at)}"
                             + (f" ({done} already done)" if done else ""))
        events = sum(s.events for s in self.settled)
        return ", ".join(parts) + f" +{events} events"


class Jobs:
    """The scheduler's four jobs over one ledger; not thread-safe (the jobs share one worker)."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        *,
        sweep_seconds: int = 5,
        limit: int = DEFAULT_LIMIT,
        should_stop: Callable[[], bool] = lambda: False,
        pool: ShardPool | None = None,
    ) -> None:
        assert sweep_seconds > 0, sweep_seconds
        assert limit > 0, limit
        self.ledger = ledger
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self.limit = limit
        self.should_stop = should_stop
        self.pool = pool  # shard workers for funding and sweeps (None: this process alone)
        self.futures: list[tuple[datetime, bool]] = []  # (expiry, delivered), as of the last run
        self.analyzed = False  # table statistics refreshed once by this scheduler (issue 11)

    # ------------------------------------------------------------------ what is due

    def due(self, now: datetime) -> list[p.Period]:
        """Return every period due at `now` and not done, read from the ledger."""
        schedules, self.futures = self._instruments()
        due = p.due_funding(schedules, now)
        due += p.due_deliveries(self.futures, now)
        due += p.due_interest(self._first_interest_at(), now, self._charged())
        sweep = p.latest_sweep(now, self.sweep_seconds)
        if self._listed_by(schedules, sweep.at) and not self._recorded(sweep):
            due.append(sweep)
        return due

    @staticmethod
    def _listed_by(schedules: list[p.FundingSchedule], at: datetime) -> bool:
        """Tell whether a sweep at `at` comes after the store's first listing (or the store
        lists nothing yet: the sweep of an empty store is harmless and shows liveness).

        Before the first listing nobody can hold a position or owe anything, so a sweep has
        nothing to judge and is not due: a simulated clock started before the store's reference
        data (`--from 2025-01-01` on a store listed in March) must not send sweeps about times
        for which the ledger has no terms, let alone prices."""
        listings = [schedule.changes[0][0] for schedule in schedules if schedule.changes]
        return not listings or min(listings) <= at

    def _instruments(self) -> tuple[list[p.FundingSchedule], list[tuple[datetime, bool]]]:
        schedules = []
        futures = []
        reference = PointReference(self.ledger)  # terms, settlements, deliveries: no prices
        for _, symbol in self.ledger.index.streams("instrument"):
            history = reference.instruments[symbol]
            changes = [
                (from_micros(micros), terms.funding_interval_hours if terms.has_funding else None)
                for micros, terms in zip(history.terms.times, history.terms.values, strict=True)
            ]
            schedules.append(p.FundingSchedule(symbol, changes, frozenset(history.periods)))
            latest = history.terms.values[-1]
            if latest.expiry is not None:
                futures.append((latest.expiry, bool(history.delivered)))
        return schedules, futures

    def _first_interest_at(self) -> datetime | None:
        first: datetime | None = None
        reference = PointReference(self.ledger)  # the terms of each asset: no index prices
        for _, asset in self.ledger.index.streams("asset"):
            history = reference.assets[asset]
            for micros, terms in zip(history.terms.times, history.terms.values, strict=True):
                if terms.interest is not None:
                    at = from_micros(micros)
                    first = at if first is None or at < first else first
                    break
        return first

    def _charged(self) -> list[datetime]:
        prefix = p.INTEREST + "|@"
        return [from_micros(micros) for micros in self.ledger.index.command_times(prefix)]

    def _recorded(self, period: p.Period) -> bool:
        key = idempotency_key(parse_command(period.command()))
        assert key is not None, period
        return bool(self.ledger.index.seen_commands([key]))

    # ------------------------------------------------------------------ running

    def run(self, job: str) -> JobReport:
        """Run one job now: settle every due period up to its own latest one, oldest first
        (every kind, in time order: `periods.catch_up_plan`), then log one line."""
        install()  # the decimal context is per thread; APScheduler runs jobs in its own
        kind = JOB_KINDS[job]
        self.ledger.catch_up()
        now = self.clock.now()
        report = JobReport(job, now)
        plan = p.catch_up_plan(self.due(now), kind, self.limit)
        report.left = plan.left
        if plan.periods and not self.analyzed:
            refresh_statistics(self.ledger)
            self.analyzed = True
        for index, period in enumerate(plan.periods):
            if self.should_stop():
                report.stopped = True
                report.left += len(plan.periods) - index
                break
            try:
                report.settled.append(self.settle(period))
            except LedgerError as error:
                # Later periods wait: settling them first would break the time order.
                report.error = f"{period}: {error.code}: {error}"
                report.left += len(plan.periods) - index
                self.ledger.discard()
                break
        if report.error:
            log.error(report.line())
        elif report.settled or report.left:
            log.info(report.line())
        else:
            log.debug(report.line())  # most runs find nothing due; the sweep shows liveness
        return report

    def settle(self, period: p.Period) -> Settled:
        """Send the period's command; on a lost optimistic-concurrency race, forget the
        working set and send it again (the ledger acknowledges what the winner did)."""
        if self.pool is not None and period.kind in IN_PARTS:
            return self._settle_in_parts(period, self.pool)
        command = parse_command(period.command())
        for attempt in range(1, RETRIES + 1):
            before = self._snapshot(period)
            first_id = self.ledger.recorder.max_notification_id() or 0
            try:
                outcome = self.ledger.handle(command)
            except ConcurrentWriteError:
                self.ledger.discard()
                if attempt == RETRIES:
                    raise
                log.warning("%s: another writer saved first; retrying on a fresh view "
                            "(attempt %d)", period, attempt + 1)
                continue
            events = (self.ledger.recorder.max_notification_id() or 0) - first_id
            return Settled(period, outcome, self._detail(period, before), events)
        raise AssertionError("unreachable")  # pragma: no cover

    def _settle_in_parts(self, period: p.Period, pool: ShardPool) -> Settled:
        """Send the period's command to the pool (it retries lost races and restarts dead
        workers itself), then bring this process's view up to what the workers wrote."""
        from ledger.application.feed import Rejection

        before = self._snapshot(period)
        first_id = self.ledger.recorder.max_notification_id() or 0
        outcome = pool.settle(json.dumps(period.command()))
        self.ledger.catch_up()
        if isinstance(outcome, Rejection):
            raise RefusedInParts(outcome.error, outcome.message)
        events = (self.ledger.recorder.max_notification_id() or 0) - first_id
        return Settled(period, outcome, self._detail(period, before), events)

    # ------------------------------------------------------------------ log details

    def _snapshot(self, period: p.Period) -> set[str]:
        """Return the instruments that had settled (funding) or delivered (delivery) before."""
        done: set[str] = set()
        if period.kind not in (p.FUNDING, p.DELIVERY):
            return done
        for symbol, history in self._settlements():
            if period.kind == p.FUNDING and period.at in history.periods:
                done.add(symbol)
            if period.kind == p.DELIVERY and history.delivered:
                done.add(symbol)
        return done

    def _settlements(self) -> list[tuple[str, InstrumentHistory]]:
        """Every instrument's settlements and delivery as the store holds them now."""
        reference = PointReference(self.ledger)
        return [(symbol, reference.instruments[symbol])
                for _, symbol in self.ledger.index.streams("instrument")]

    def _detail(self, period: p.Period, before: set[str]) -> str:
        parts: list[str] = []
        if period.kind not in (p.FUNDING, p.DELIVERY):
            return ""
        for symbol, history in self._settlements():
            if symbol in before:
                continue
            if period.kind == p.FUNDING and period.at in history.periods:
                record = history.periods[period.at]
                rate = "none" if record.rate is None else to_str(record.rate)
                mark = "none" if record.mark_price is None else to_str(record.mark_price)
                paid = "paid" if record.paid else "nothing paid"
                parts.append(f"{symbol} rate {rate} mark {mark} {paid}")
            if period.kind == p.DELIVERY and history.delivered:
                parts.append(f"{symbol} delivered at {to_str(history.delivered.values[-1])}")
        return ", ".join(parts)

    def next_expiry(self, after: datetime) -> datetime | None:
        """Return the next expiry of an undelivered future after `after` (as of the last run)."""
        return p.next_expiry(self.futures, after)


STATISTICS_TABLES = ("ledger_events", "ledger_holders", "ledger_streams", "ledger_snapshots",
                     "ledger_event_index")


def refresh_statistics(ledger: Ledger) -> None:
    """ANALYZE the store's tables (PostgreSQL) before a scheduler's first settlement.

    On a freshly loaded store autovacuum has not analysed the tables yet, and the bulk read of
    100,000 holders was planned without statistics (a merge join with JIT: 4.3 × slower than
    after ANALYZE, issue 11). ANALYZE samples (at most 30,000 rows a table), so it costs a
    fraction of a second at any size; once per scheduler process is enough, autovacuum keeps
    the statistics after that. A store that refuses it (rights) is left as it is."""
    if ledger.url.startswith("sqlite:"):
        return
    datastore = getattr(ledger.recorder, "datastore", None)
    if datastore is None:
        return
    try:
        with datastore.transaction(commit=True) as cursor:
            cursor.execute("ANALYZE " + ", ".join(STATISTICS_TABLES))
    except Exception as error:  # noqa: BLE001 - statistics are an optimisation only
        log.warning("ANALYZE skipped: %s", error)
