"""The projection runner: follow the notification log, write the read models page by page.

Each page (up to `PAGE_SIZE` notifications) is one transaction: every read model's rows and
every projection's tracking position commit together, the position moving only from the value
this runner started the page from (`PageWriter.track`). A crash before the commit loses the
whole page and nothing else; the next runner starts again from the committed position, so no
row is lost or doubled (DESIGN §9, crash safety). The tracking row is the first statement of
the transaction, so two runners on one store serialise on it and the second fails instead of
writing twice.

How the log is followed:
- PostgreSQL — push: the runner LISTENs on the channel the library NOTIFYs in every insert
  transaction (`ledger_events`) and pulls pages when woken (or every `poll_s` at worst);
- SQLite — polling: `recorder.select_notifications(start, limit)` every `poll_s` (SQLite
  recorders cannot subscribe, LIBRARY-NOTES).

The library's abstractions are used where they fit: each read model is an eventsourcing
`Projection` whose `process_event` dispatches on the event type, its tracking a
`TrackingRecorder` (`ReadModelView`), positions are `Tracking` objects. The library's
`ProjectionRunner` is not: it applies one event per transaction in a thread of its own, and
subscribing fails on SQLite; pages of up to 5,000 per transaction are what keep up with ingest.

Figures (margin state, debts, interest) are computed at the end of each page from the runner's
in-memory replay (`projections.replay`), before the write transaction opens, so a page holds the
database's write lock only while it writes. They are computed only where the page can move them:
after each account event of the page (margin figures; an account's last event of the page also
gives its debts), and, for reference data recorded late, on the committed rows it reaches
(holders of that symbol or asset, `at` from the change to the next value). A reference change
that is not late moves no row: every row is as of its own event's `at`. Markets are built once
per span between two reference changes (`Replay.market`). Rows are written by COPY on
PostgreSQL and one `executemany` on SQLite.

Entry points: `run(url, until_caught_up=False)`, `rebuild(url)` (from zero), `status(url)`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from sqlalchemy import delete, func, select, text

from ledger.application import schema
from ledger.application.reference import ReferenceData
from projections import tables
from projections.accounts import Accounts
from projections.balances import Balances
from projections.base import ReadModel
from projections.debts import Debts
from projections.feed import Feed
from projections.interest import Interest
from projections.journal import Journal
from projections.margin import MarginState
from projections.positions import Positions
from projections.replay import Replay, ReplayLedger, reference_topics
from projections.system import SystemBalances
from projections.view import Hook, PageWriter, ReadModelView, TrackingConflict

log = logging.getLogger("ledger.projections")

APPLICATION = ReplayLedger.name
"""The upstream application of every tracking row ("Ledger")."""

PAGE_SIZE = 5000  # catch-up: fewer per-account rows and commits per event (issue 11)
POLL_S = 0.5

READ_MODELS: tuple[type[ReadModel], ...] = (
    Accounts, Balances, SystemBalances, Positions, Journal, Feed, MarginState, Debts, Interest,
)


class OutOfStep(RuntimeError):
    """The projections' positions differ: rebuild them (`ledger projections rebuild`)."""


@dataclass(frozen=True)
class Status:
    """How far the read models are behind the log."""

    head: int  # the last notification id in the log (0: empty)
    positions: dict[str, int]  # per projection (0: nothing applied)

    @property
    def position(self) -> int:
        return min(self.positions.values(), default=0)

    @property
    def lag(self) -> int:
        return self.head - self.position


class Runner:
    """Applies the log to the read models, one page per transaction."""

    def __init__(self, url: str, *, page_size: int = PAGE_SIZE, hook: Hook | None = None,
                 migrate: bool = True) -> None:
        if migrate and not schema.is_current(url):
            schema.upgrade(url)
        self.url = url
        self.page_size = page_size
        self.hook = hook
        self.engine = schema.create_engine(url, write=True)
        self.reader = (self.engine if schema.is_postgres(url)
                       else schema.create_engine(url))
        self.ledger = ReplayLedger(url)
        self._load()

    # ------------------------------------------------------------------ state

    def _load(self) -> None:
        """Start from the committed state: the position, the tables, the log up to it."""
        self.ledger.reference = ReferenceData()
        self.replay = Replay(self.ledger)
        self.models = [model(ReadModelView(self.engine, model.name), self.replay)
                       for model in READ_MODELS]
        self._dispatch: dict[type[Any], list[tuple[Callable[..., None], ReadModel]]] = {}
        self.position = self._restore()

    def _restore(self) -> int | None:
        """Load the committed position and what the read models keep in memory."""
        with self.reader.connect() as reader:
            rows = reader.execute(select(tables.tracking.c.projection,
                                         tables.tracking.c.notification_id)
                                  .where(tables.tracking.c.application_name == APPLICATION))
            found = {name: position for name, position in rows}
            positions = {found.get(model.name) for model in self.models}
            if len(positions) != 1:
                raise OutOfStep(f"projection positions differ: {found}; rebuild them")
            until = reader.execute(select(func.max(tables.accounts.c.last_at_micros))).scalar()
            for model in self.models:
                model.restore(reader)
        position = positions.pop()
        self.replay.restore(self._reference_events(position), until)
        return position

    def _reference_events(self, position: int | None) -> Iterator[Any]:
        if position is None:
            return
        topics = reference_topics()
        start = 0
        while True:
            page = self.ledger.recorder.select_notifications(
                start=start, limit=self.page_size, stop=position, topics=topics,
                inclusive_of_start=False)
            for notification in page:
                yield self.ledger.mapper.to_domain_event(notification)
            if len(page) < self.page_size:
                return
            start = page[-1].id

    def _handlers(self, event_class: type[Any]) -> list[tuple[Callable[..., None], ReadModel]]:
        """Return each read model's handler of an event class, the default (ignore) left out.

        The same functions `process_event` dispatches to, looked up once per class: binding a
        single-dispatch method per event and model is a tenth of the page's time otherwise.
        """
        found = self._dispatch.get(event_class)
        if found is None:
            found = []
            for model in self.models:
                method = inspect.getattr_static(type(model), "process_event")
                default = method.dispatcher.dispatch(object)
                handler = method.dispatcher.dispatch(event_class)
                if handler is not default:
                    found.append((handler, model))
            self._dispatch[event_class] = found
        return found

    def close(self) -> None:
        self.ledger.close()
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

    # ------------------------------------------------------------------ pages

    def step(self) -> int:
        """Apply the next page of notifications; return how many (0: caught up)."""
        notifications = self.ledger.recorder.select_notifications(
            start=self.position or 0, limit=self.page_size, inclusive_of_start=False)
        if not notifications:
            return 0
        try:
            for notification in notifications:
                event = self.ledger.mapper.to_domain_event(notification)
                self.replay.apply(event, notification.id)
                tracking = Tracking(APPLICATION, notification.id)
                for handler, model in self._handlers(type(event)):
                    handler(model, event, tracking)
            with self.reader.connect() as reader:
                for model in self.models:
                    model.prepare(reader)
            last = Tracking(APPLICATION, notifications[-1].id)
            with self.engine.begin() as connection:
                writer = PageWriter(connection, self.hook)
                writer.track([model.name for model in self.models], last, self.position)
                for model in self.models:
                    model.write(writer)
                writer.before_commit()
        except BaseException:
            # The page is lost (rolled back); so is everything the replay took from it.
            self._load()
            raise
        self.position = last.notification_id
        self.replay.end_page()
        for model in self.models:
            model.reset()
        return len(notifications)

    def run(self, *, until_caught_up: bool = False, stop: threading.Event | None = None,
            poll_s: float = POLL_S, on_page: Callable[[int], None] | None = None) -> int:
        """Follow the log; return how many notifications were applied.

        `until_caught_up`: return once the log is exhausted. Otherwise wait for more (push on
        PostgreSQL, polling on SQLite) until `stop` is set. A tracking conflict (a rebuild, or
        another runner) makes the runner start again from the committed position.
        """
        applied = 0
        with self._waiter() as wait:
            while stop is None or not stop.is_set():
                try:
                    count = self.step()
                except TrackingConflict as conflict:
                    log.warning("%s: starting again from the committed position", conflict)
                    continue
                applied += count
                if count and on_page is not None:
                    on_page(count)
                if count == self.page_size:
                    continue
                if until_caught_up:
                    break
                wait(poll_s)
        return applied

    @contextmanager
    def _waiter(self) -> Iterator[Callable[[float], None]]:
        """Yield a function that waits for new events (LISTEN on PostgreSQL, a sleep on
        SQLite). The LISTEN starts before the first pull, so no NOTIFY is missed."""
        if not schema.is_postgres(self.url):
            yield time.sleep
            return
        import psycopg
        from psycopg import sql

        channel = getattr(self.ledger.recorder, "channel_name", "ledger_events")
        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"),
                             autocommit=True) as connection:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

            def wait(timeout: float) -> None:
                for _ in connection.notifies(timeout=timeout, stop_after=1):
                    pass

            yield wait


def run(url: str, until_caught_up: bool = False, **options: Any) -> int:
    """Run the projections on the store at `url`; return how many notifications applied."""
    runner = Runner(url, **{k: v for k, v in options.items()
                            if k in ("page_size", "hook", "migrate")})
    try:
        return runner.run(until_caught_up=until_caught_up,
                          **{k: v for k, v in options.items()
                             if k in ("stop", "poll_s", "on_page")})
    finally:
        runner.close()


def rebuild(url: str, **options: Any) -> int:
    """Empty every read model and its tracking, then apply the whole log again."""
    if not schema.is_current(url):
        schema.upgrade(url)
    engine = schema.create_engine(url, write=True)
    try:
        with engine.begin() as connection:
            connection.execute(delete(tables.tracking).where(
                tables.tracking.c.projection.in_([model.name for model in READ_MODELS])))
            for table in tables.READ_MODEL_TABLES:
                connection.execute(delete(table))
    finally:
        engine.dispose()
    return run(url, until_caught_up=True, **options)


def status(url: str) -> Status:
    """Return the log's head and every projection's position."""
    events = "ledger_events" if schema.is_postgres(url) else "stored_events"
    column = "notification_id" if schema.is_postgres(url) else "rowid"
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            head = connection.execute(text(f"SELECT MAX({column}) FROM {events}")).scalar()
            found = dict(connection.execute(
                select(tables.tracking.c.projection, tables.tracking.c.notification_id)
                .where(tables.tracking.c.application_name == APPLICATION)).all())
    finally:
        engine.dispose()
    return Status(head=head or 0,
                  positions={model.name: found.get(model.name) or 0 for model in READ_MODELS})
