"""Which periodic commands are due: funding times, interest hours, margin sweeps, deliveries.

Pure: plain data in (each instrument's funding schedule and the periods it has settled, the
interest hours already charged, …), periods out. No clock, no store, no framework: `jobs.py`
reads what is done from the ledger's own events and index and passes it here, and the clock's
`now` arrives as an argument (STYLE §5, §11).

A *period* is a boundary time; it becomes the command's `at` (never "now"), and the command's
`id` is derived from it, e.g. `settle_funding:2025-01-01T08:00:00Z`, so that a job that runs
twice or late sends the very same command and the ledger acknowledges the repeat (DESIGN 6.11).

- Funding (DESIGN §6.6): each perpetual settles at the multiples of its `funding_interval_hours`
  from 00:00 UTC (00:00, 08:00, 16:00 by default); linear futures have no funding. The interval
  in force at a time decides (an instrument may be reconfigured). A funding time is due when it
  is at or after the listing, at or before now, and not yet recorded by `FundingPeriodSettled`.
- Interest (DESIGN §6.8): charged every hour on the hour, from the first hour at or after the
  first interest configuration of any asset; due when no `charge_interest` is recorded at it.
- Delivery (PORTFOLIO-MARGIN §10.11): each linear future is delivered at its expiry; due once
  the expiry has passed and the future is not delivered.
- Margin sweep: every `sweep_seconds` (multiples since the epoch). Only the latest sweep time is
  ever due: a sweep judges the account *now*; re-running missed sweeps after an outage would
  issue margin calls and liquidation signals about moments that are gone (and every sweep reads
  every account), so missed sweeps are not back-filled.

Time order across kinds. A late period is posted at each account's last `at` (DESIGN 6.11), so
settling, say, the 16:00 funding before the 09:00 interest charge would post that charge after
the funding and change the liability path the next charge integrates over. `catch_up_plan`
therefore hands a job every due period *up to its own latest one*, all kinds merged in time order
(funding, delivery, interest, sweep at equal times), oldest first: no job runs ahead of an earlier
period of another kind, and after an outage the ledger ends exactly where on-time commands would
have left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ledger.times import format_at, to_micros

FUNDING = "settle_funding"
DELIVERY = "settle_delivery"
INTEREST = "charge_interest"
SWEEP = "check_margin"
KINDS = (FUNDING, DELIVERY, INTEREST, SWEEP)  # their order at equal times
_RANK = {kind: rank for rank, kind in enumerate(KINDS)}

HOUR = timedelta(hours=1)


@dataclass(frozen=True, order=True)
class Period:
    """One periodic command: its boundary time and its type (sorted by time, then kind)."""

    at: datetime
    rank: int = field(repr=False)
    kind: str = field(compare=False)

    @classmethod
    def of(cls, kind: str, at: datetime) -> Period:
        assert kind in _RANK, kind
        assert at.tzinfo is not None, at
        return cls(at.astimezone(UTC), _RANK[kind], kind)

    @property
    def command_id(self) -> str:
        """The command's id, derived from the period: `settle_funding:2025-01-01T08:00:00Z`."""
        return f"{self.kind}:{format_at(self.at)}"

    def command(self) -> dict[str, str]:
        """The command as a feed line would carry it."""
        return {"type": self.kind, "at": format_at(self.at), "id": self.command_id}

    def __str__(self) -> str:
        return self.command_id


# ----------------------------------------------------------------------------- boundaries


def floor_to(at: datetime, step: timedelta) -> datetime:
    """Return the last multiple of `step` since the epoch at or before `at` (UTC)."""
    step_micros = _micros(step)
    micros = to_micros(at)
    return _from(micros - micros % step_micros)


def ceil_to(at: datetime, step: timedelta) -> datetime:
    """Return the first multiple of `step` since the epoch at or after `at` (UTC)."""
    step_micros = _micros(step)
    micros = to_micros(at)
    return _from(micros + (-micros) % step_micros)


def boundaries(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    """Yield the multiples of `step` since the epoch in [start, end], oldest first.

    The epoch is 00:00 UTC, so for a step that divides a day these are the step's multiples
    from each day's 00:00 UTC (8 h → 00:00, 08:00, 16:00).
    """
    at = ceil_to(start, step)
    while at <= end:
        yield at
        at += step


def _micros(step: timedelta) -> int:
    micros = (step.days * 86_400 + step.seconds) * 1_000_000 + step.microseconds
    assert micros > 0, step
    return micros


def _from(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


# ----------------------------------------------------------------------------- funding


@dataclass(frozen=True)
class FundingSchedule:
    """An instrument's funding as the ledger knows it.

    `changes` are (from, funding_interval_hours) in time order: from the listing, then at each
    reconfiguration; the interval is None while the instrument has no funding (a future).
    `settled` holds the funding times its `FundingPeriodSettled` events record.
    """

    symbol: str
    changes: Sequence[tuple[datetime, int | None]]
    settled: frozenset[datetime] = frozenset()

    def funding_times(self, until: datetime) -> Iterator[datetime]:
        """Yield every funding time from the listing up to `until`, oldest first: in each
        stretch of constant terms, the multiples of its interval from 00:00 UTC."""
        for index, (start, hours) in enumerate(self.changes):
            end = self.changes[index + 1][0] if index + 1 < len(self.changes) else None
            if hours is None:
                continue
            assert 1 <= hours <= 24, hours
            assert 24 % hours == 0, hours
            for at in boundaries(start, until, timedelta(hours=hours)):
                if end is not None and at >= end:
                    break  # the next terms decide from `end` on (they are in force at `end`)
                yield at


def due_funding(schedules: Iterable[FundingSchedule], now: datetime) -> list[Period]:
    """Return the funding times due at `now` and not settled by every instrument due then,
    oldest first; one `settle_funding` settles every instrument whose funding time it is."""
    due: set[datetime] = set()
    for schedule in schedules:
        due.update(at for at in schedule.funding_times(now) if at not in schedule.settled)
    return [Period.of(FUNDING, at) for at in sorted(due)]


# ----------------------------------------------------------------------------- interest


def due_interest(first_interest_at: datetime | None, now: datetime,
                 charged: Iterable[datetime]) -> list[Period]:
    """Return the hours from the first interest configuration up to `now` with no recorded
    `charge_interest`, oldest first (nothing when no asset has ever carried interest)."""
    if first_interest_at is None:
        return []
    done = {to_micros(at) for at in charged}
    return [Period.of(INTEREST, at) for at in boundaries(first_interest_at, now, HOUR)
            if to_micros(at) not in done]


# ----------------------------------------------------------------------------- delivery


def due_deliveries(futures: Iterable[tuple[datetime, bool]], now: datetime) -> list[Period]:
    """Return the expiries (expiry, delivered) of undelivered futures at or before `now`,
    oldest first; one `settle_delivery` delivers every future expired by its `at`."""
    expiries = {expiry for expiry, delivered in futures if not delivered and expiry <= now}
    return [Period.of(DELIVERY, at) for at in sorted(expiries)]


def next_expiry(futures: Iterable[tuple[datetime, bool]], after: datetime) -> datetime | None:
    """Return the earliest expiry of an undelivered future later than `after` (the scheduler
    adds a run at that moment)."""
    later = [expiry for expiry, delivered in futures if not delivered and expiry > after]
    return min(later) if later else None


# ----------------------------------------------------------------------------- sweep


def latest_sweep(now: datetime, sweep_seconds: int) -> Period:
    """Return the latest sweep time at or before `now` (a multiple of `sweep_seconds` since the
    epoch). Earlier sweeps are never due: see the module docstring."""
    assert sweep_seconds > 0, sweep_seconds
    return Period.of(SWEEP, floor_to(now, timedelta(seconds=sweep_seconds)))


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """What one job run settles, in order, and how many due periods it leaves for later."""

    periods: tuple[Period, ...]
    left: int

    def __bool__(self) -> bool:
        return bool(self.periods)


def catch_up_plan(due: Iterable[Period], kind: str, limit: int) -> Plan:
    """Return the periods a job of `kind` settles now: every due period of any kind up to and
    including the latest due period of its own kind, oldest first, at most `limit`.

    Nothing when its own kind has nothing due (earlier periods of other kinds are their own
    jobs' business, and those jobs run too). Example: after an outage, with interest hours
    09:00 … 15:00 and the funding time 16:00 due, the funding job settles the interest hours
    first, then the funding; the interest job then takes 16:00 onwards.
    """
    assert limit > 0, limit
    ordered = sorted(set(due))
    own = [index for index, period in enumerate(ordered) if period.kind == kind]
    if not own:
        return Plan((), 0)
    wanted = ordered[: own[-1] + 1]
    return Plan(tuple(wanted[:limit]), max(0, len(wanted) - limit))
