"""The scheduler over three simulated days with a 20-hour outage: every period exactly once.

The market of `schedfeed` (interest-bearing USDT, BTC and ETH perpetuals with a distinct rate per
funding time, a future expiring inside the outage, five multi_asset accounts with positions and
USDT debts from realised losses) is fed as it happens; the scheduler runs on a simulated clock
from T0 to OUTAGE_FROM, is down for 20 hours, and runs again from OUTAGE_UNTIL to T1.

Independent expectations: the funding times are listed here from the hours (00/08/16 for
BTCUSDT, every 4 h for ETHUSDT), the rates and marks are those the feed sent, and the final state
is compared with a second store fed the same days with on-time periodic commands.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import schedfeed as f

from ledger.application import queries
from ledger.application.commands import Command, parse_command
from ledger.application.service import Ledger
from ledger.clock import FixedClock
from ledger.domain.account import Account
from ledger.domain.ids import account_id, instrument_id
from ledger.domain.reference import Instrument
from ledger.times import format_at
from schedulers.jobs import Jobs
from schedulers.main import job_specs, run_once, simulate

OUTAGE_FROM = datetime(2025, 1, 2, 2, tzinfo=f.T0.tzinfo)
OUTAGE_UNTIL = OUTAGE_FROM + timedelta(hours=20)
ACCOUNTS = ("alice", "bob", "carol", "dave", "erin")
HOURLY = 3600


class Feeder:
    """Feeds the market up to each simulated time, before the jobs look."""

    def __init__(self, ledger: Ledger, commands: list[Command]) -> None:
        self.ledger = ledger
        self.pending = list(commands)

    def __call__(self, at: datetime) -> None:
        with self.ledger.batch():
            while self.pending and self.pending[0].at <= at:
                self.ledger.handle(self.pending.pop(0))


def run_scheduler(url: str, windows: list[tuple[datetime, datetime]]) -> Ledger:
    ledger = Ledger(url)
    clock = FixedClock(f.T0)
    jobs = Jobs(ledger, clock, sweep_seconds=HOURLY)
    feeder = Feeder(ledger, f.market())
    for start, until in windows:
        simulate(jobs, clock, job_specs(HOURLY), start, until, threading.Event(),
                 before_step=feeder)
    feeder(f.T1)
    return ledger


def explicit_feed(swept: list[datetime]) -> Iterator[Command]:
    """The same days with on-time periodic commands: after the market's commands up to each
    hour, funding (some perpetual's funding time: every 4 h), delivery at the expiry, interest
    every hour, and a sweep where the scheduler was up."""
    market = f.market()
    index = 0
    for hour in f.hours(f.T0, f.T1):
        while index < len(market) and market[index].at <= hour:
            yield market[index]
            index += 1
        stamp = format_at(hour)
        if hour.hour % 4 == 0:
            yield parse_command({"type": "settle_funding", "at": stamp})
        if hour == f.EXPIRY:
            yield parse_command({"type": "settle_delivery", "at": stamp})
        yield parse_command({"type": "charge_interest", "at": stamp})
        if hour in swept:
            yield parse_command({"type": "check_margin", "at": stamp})
    yield from market[index:]


@contextmanager
def own_database(session_url: str, suffix: str) -> Iterator[str]:
    """A PostgreSQL database of its own beside the session's, dropped when done."""
    import psycopg

    admin_url = session_url.rsplit("/", 1)[0] + "/postgres"
    name = session_url.rsplit("/", 1)[1] + "_" + suffix
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield session_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def swept_hours() -> list[datetime]:
    return [h for h in f.hours(f.T0, f.T1) if not OUTAGE_FROM < h < OUTAGE_UNTIL]


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """States and events of every account after the explicit feed (one SQLite store)."""
    from ledger.numbers import install

    install()
    path = Path(tmp_path_factory.mktemp("explicit")) / "explicit.db"
    ledger = Ledger(f"sqlite:///{path}")
    with ledger.batch():
        for command in explicit_feed(swept_hours()):
            ledger.handle(command)
    return {
        "states": {name: queries.state(ledger, name, f.T1) for name in ACCOUNTS},
        "events": {name: comparable(ledger, name) for name in ACCOUNTS},
    }


def comparable(ledger: Ledger, name: str) -> list[dict[str, Any]]:
    return queries.events(ledger, name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def scheduled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Ledger]:
    """The three days, run once per backend for the whole module (a store of its own: a
    SQLite file, or a PostgreSQL database next to the session's, dropped afterwards)."""
    from ledger.numbers import install

    install()
    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("scheduled")) / "ledger.db"
        yield run_scheduler(f"sqlite:///{path}", [(f.T0, OUTAGE_FROM), (OUTAGE_UNTIL, f.T1)])
        return
    with own_database(request.getfixturevalue("postgres_url"), "sched") as url:
        ledger = run_scheduler(url, [(f.T0, OUTAGE_FROM), (OUTAGE_UNTIL, f.T1)])
        yield ledger
        ledger.close()


def instrument_events(ledger: Ledger, symbol: str) -> list[Any]:
    return list(ledger.events.get(instrument_id(symbol)))


def account_events(ledger: Ledger, name: str, kind: type) -> list[Any]:
    return [e for e in ledger.events.get(account_id(name)) if isinstance(e, kind)]


# ----------------------------------------------------------------------------- the acceptance


def test_every_funding_time_is_settled_once_in_order_with_its_own_rate_and_mark(
    scheduled: Ledger,
) -> None:
    for symbol in f.INTERVALS:
        records = [e for e in instrument_events(scheduled, symbol)
                   if isinstance(e, Instrument.FundingPeriodSettled)]
        expected = f.funding_times(symbol)
        assert [r.period for r in records] == expected  # each once, oldest first
        for record in records:
            assert record.rate == f.rate_for(symbol, record.period), record.period
            assert record.mark_price == f.mark_at(symbol, record.period), record.period
            assert record.paid == (record.rate is not None)
        # The outage's periods were settled late (the instrument had moved on), the others not.
        late = [r.period for r in records if r.at > r.period]
        assert late == [p for p in expected if OUTAGE_FROM < p < OUTAGE_UNTIL]


def test_every_holder_pays_or_receives_each_funding_once_at_the_rate_of_that_time(
    scheduled: Ledger,
) -> None:
    """alice holds 10,000 BTCUSDT contracts from 01:30 to 05:30 on day 1, then 5,000, then
    7,000 from day 3 05:30: each funding time's payment is −qty × 0.0001 × mark × rate, with
    the mark and the rate of that very time."""
    settled = account_events(scheduled, "alice", Account.FundingSettled)
    periods = [e.period for e in settled]
    assert len(periods) == len(set(periods))
    assert periods == sorted(periods)
    expected_periods = [p for p in f.funding_times("BTCUSDT")
                        if p > f.T0 and f.rate_for("BTCUSDT", p) is not None]
    assert periods == expected_periods
    for event in settled:
        qty = Decimal("5000") if event.period < datetime(2025, 1, 3, 5, 30, tzinfo=f.T0.tzinfo) \
            else Decimal("7000")
        rate = f.rate_for("BTCUSDT", event.period)
        mark = f.mark_at("BTCUSDT", event.period)
        assert (event.qty, event.rate, event.mark_price) == (qty, rate, mark)
        exact = -(qty * Decimal("0.0001") * mark * rate)  # type: ignore[operator]
        assert abs(event.amount - exact) < Decimal("0.00000001")
        assert event.at == event.period  # alice was quiet during the outage
    for name in ACCOUNTS:
        counts = Counter((e.symbol, e.period) for e in account_events(
            scheduled, name, Account.FundingSettled))
        assert set(counts.values()) <= {1}, name
    assert account_events(scheduled, "erin", Account.FundingSettled) == []  # flat at 08:00


def test_every_interest_hour_is_charged_once_in_order(scheduled: Ledger) -> None:
    recorded = scheduled.index.command_times("charge_interest|@")
    hours = list(f.hours(f.T0, f.T1))
    assert len(recorded) == len(hours)
    assert [format_at(h) for h in hours] == [
        format_at(f.T0 + timedelta(microseconds=m - recorded[0])) for m in recorded]
    for name in ("alice", "carol"):
        charged = account_events(scheduled, name, Account.InterestCharged)
        periods = [e.period for e in charged]
        assert periods == sorted(set(periods)), name
        assert len(periods) > 40, name  # a debt most hours: charged nearly every hour
        assert all(e.at == e.period for e in charged), name
    for name in ACCOUNTS:
        # Across kinds too: funding, delivery and interest reached each account oldest first.
        periods = [e.period for e in scheduled.events.get(account_id(name))
                   if hasattr(e, "period")]
        assert periods == sorted(periods), name


def test_the_future_is_delivered_once_at_its_expiry(scheduled: Ledger) -> None:
    delivered = [e for e in instrument_events(scheduled, "BTCUSDT-F")
                 if isinstance(e, Instrument.InstrumentDelivered)]
    assert len(delivered) == 1
    assert delivered[0].delivery_price == f.mark_at("BTCUSDT-F", f.EXPIRY)
    for name in ("bob", "dave"):
        (event,) = account_events(scheduled, name, Account.FutureDelivered)
        assert event.period == f.EXPIRY


def test_the_result_equals_the_same_days_fed_as_explicit_commands(
    scheduled: Ledger, explicit: dict[str, Any],
) -> None:
    for name in ACCOUNTS:
        assert queries.state(scheduled, name, f.T1) == explicit["states"][name], name
        assert comparable(scheduled, name) == explicit["events"][name], name


def test_running_again_changes_nothing(scheduled: Ledger) -> None:
    before = scheduled.recorder.max_notification_id()
    clock = FixedClock(f.T1)
    jobs = Jobs(scheduled, clock, sweep_seconds=HOURLY)
    outcome = run_once(jobs, job_specs(HOURLY), threading.Event())
    assert outcome.errors == 0
    # The same commands again, as a restarted scheduler or an operator would send them.
    for period in ("2025-01-01T08:00:00Z", "2025-01-02T16:00:00Z"):
        command = parse_command({"type": "settle_funding", "at": period,
                                 "id": f"settle_funding:{period}"})
        scheduled.handle(command)
    assert scheduled.handle(parse_command({"type": "charge_interest",
                                           "at": "2025-01-02T09:00:00Z"})) == "acknowledged"
    assert scheduled.recorder.max_notification_id() == before


# ----------------------------------------------------------------------------- the edges


def test_a_late_funding_is_posted_at_the_accounts_last_at_with_its_period(
    store_url: str,
) -> None:
    """bob deposits at 09:30 while the scheduler is down (06:00 → 12:00): the 08:00 funding
    reaches him at 09:30 with period 08:00, alice (quiet) at 08:00; the amounts are those of
    08:00 either way: 1 BTC × 50,000 × 0.0001 = 5 (alice long pays, bob short receives)."""
    t0 = f.T0
    commands = [parse_command(c) for c in (
        {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "USDT"},
        {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "BTC"},
        {"type": "instrument", "at": "2025-01-01T00:00:00Z", "symbol": "BTCUSDT",
         "kind": "linear_perpetual", "base": "BTC", "settle": "USDT",
         "contract_size": "0.0001", "risk_tiers": f.TIERS},
        {"type": "mark_price", "at": "2025-01-01T00:00:00Z", "symbol": "BTCUSDT",
         "price": "50000"},
        {"type": "open_account", "at": "2025-01-01T00:00:00Z", "account": "alice",
         "mode": "single_asset"},
        {"type": "open_account", "at": "2025-01-01T00:00:00Z", "account": "bob",
         "mode": "single_asset"},
        {"type": "deposit", "at": "2025-01-01T00:00:00Z", "id": "d1", "account": "alice",
         "asset": "USDT", "amount": "10000"},
        {"type": "deposit", "at": "2025-01-01T00:00:00Z", "id": "d1", "account": "bob",
         "asset": "USDT", "amount": "10000"},
        {"type": "fill", "at": "2025-01-01T01:00:00Z", "id": "f1", "account": "alice",
         "symbol": "BTCUSDT", "side": "buy", "qty": "10000", "price": "50000", "fee": "0"},
        {"type": "fill", "at": "2025-01-01T01:00:00Z", "id": "f1", "account": "bob",
         "symbol": "BTCUSDT", "side": "sell", "qty": "10000", "price": "50000", "fee": "0"},
        {"type": "funding_rate", "at": "2025-01-01T07:00:00Z", "symbol": "BTCUSDT",
         "rate": "0.0001"},
        {"type": "mark_price", "at": "2025-01-01T09:00:00Z", "symbol": "BTCUSDT",
         "price": "51000"},
        {"type": "deposit", "at": "2025-01-01T09:30:00Z", "id": "d2", "account": "bob",
         "asset": "USDT", "amount": "1"},
    )]
    ledger = Ledger(store_url)
    clock = FixedClock(t0)
    jobs = Jobs(ledger, clock, sweep_seconds=HOURLY)
    feeder = Feeder(ledger, commands)
    for start, until in ((t0, t0 + timedelta(hours=6)), (t0 + timedelta(hours=12),
                                                          t0 + timedelta(hours=12))):
        simulate(jobs, clock, job_specs(HOURLY), start, until, threading.Event(),
                 before_step=feeder)
    eight = t0 + timedelta(hours=8)
    (alice,) = [e for e in account_events(ledger, "alice", Account.FundingSettled)
                if e.period == eight]
    (bob,) = [e for e in account_events(ledger, "bob", Account.FundingSettled)
              if e.period == eight]
    assert (alice.at, alice.amount, alice.mark_price) == (eight, Decimal("-5"), Decimal("50000"))
    assert (bob.at, bob.amount) == (t0 + timedelta(hours=9, minutes=30), Decimal("5"))


def test_a_concurrent_writer_makes_the_job_retry_on_a_fresh_view(
    store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process settles 08:00 after the job decided to and before its save: the job's
    save loses the optimistic-concurrency check (IntegrityError), it discards, retries on a
    fresh view, and the ledger acknowledges 08:00 as done: settled once in all."""
    ledger = Ledger(store_url)
    feeder = Feeder(ledger, f.market(f.T0, f.T0 + timedelta(hours=8)))
    feeder(f.T0 + timedelta(hours=8))
    clock = FixedClock(f.T0 + timedelta(hours=8))
    jobs = Jobs(ledger, clock, sweep_seconds=HOURLY)
    other = Ledger(store_url)
    for hour in range(8):
        other.handle(parse_command({"type": "charge_interest",
                                    "at": format_at(f.T0 + timedelta(hours=hour))}))
    for hour in (0, 4):
        other.handle(parse_command({"type": "settle_funding",
                                    "at": format_at(f.T0 + timedelta(hours=hour))}))
    put = ledger.events.put
    raced: list[str] = []

    def racing_put(events: Any, **kwargs: Any) -> Any:
        if not raced:  # the first save is the job's 08:00 funding: the other writer wins
            raced.append("2025-01-01T08:00:00Z")
            other.handle(parse_command({"type": "settle_funding", "at": raced[0]}))
        return put(events, **kwargs)

    ledger.events.put = racing_put  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ledger.scheduler"):
        report = jobs.run("funding")
    assert raced == ["2025-01-01T08:00:00Z"]
    assert "another writer saved first" in caplog.text
    assert report.error is None
    assert [(s.period.at, s.outcome) for s in report.settled] == [
        (f.T0 + timedelta(hours=8), "acknowledged")]
    records = [e.period for e in instrument_events(ledger, "BTCUSDT")
               if isinstance(e, Instrument.FundingPeriodSettled)]
    assert records == [f.T0, f.T0 + timedelta(hours=8)]
    for name in ACCOUNTS:
        periods = [e.period for e in account_events(ledger, name, Account.FundingSettled)]
        assert len(periods) == len(set(periods)), name


def test_a_stop_request_lets_the_running_period_finish_and_leaves_the_rest(
    sqlite_url: str,
) -> None:
    ledger = Ledger(sqlite_url)
    Feeder(ledger, f.market(f.T0, f.T0 + timedelta(hours=12)))(f.T0 + timedelta(hours=12))
    stop = threading.Event()
    jobs = Jobs(ledger, FixedClock(f.T0 + timedelta(hours=12)), sweep_seconds=HOURLY,
                should_stop=stop.is_set)
    settle = jobs.settle

    def settle_then_stop(period: Any) -> Any:
        done = settle(period)
        stop.set()  # SIGTERM arrives while the first period is being settled
        return done

    jobs.settle = settle_then_stop  # type: ignore[method-assign]
    report = jobs.run("interest")
    assert len(report.settled) == 1 and report.stopped
    # Due up to the interest job's latest hour, in time order: 13 hours 00:00 … 12:00 and the
    # funding times 00:00, 04:00, 08:00, 12:00 (ETHUSDT every 4 h); the first was settled.
    assert report.left == 16
    assert "stopped before the rest" in report.line()
    stop.clear()
    jobs.settle = settle  # type: ignore[method-assign]
    assert len(jobs.run("interest").settled) == 16


def test_catch_up_is_bounded_per_run(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    Feeder(ledger, f.market(f.T0, f.T0 + timedelta(hours=30)))(f.T0 + timedelta(hours=30))
    jobs = Jobs(ledger, FixedClock(f.T0 + timedelta(hours=30)), sweep_seconds=HOURLY,
                limit=10)
    first = jobs.run("interest")
    assert len(first.settled) == 10
    assert first.left > 0
    assert "more due" in first.line()
    outcome = run_once(jobs, job_specs(HOURLY), threading.Event())
    assert outcome.errors == 0
    assert len(ledger.index.command_times("charge_interest|@")) == 31
