"""The unit of work: the working set of aggregates, what commands changed, and the one
transaction that writes it.

Commands are applied to aggregates held in memory. Inside `with uow.batch():` many commands
share one transaction (every touched aggregate's pending events, their index rows and the
snapshots due, written together); outside, each command is written on its own.

A command is one unit (issue 10): `savepoint()` before it, `finish_command()` after it. If it
fails after it has changed anything, `abandon()` writes what the commands before it produced,
exactly as they left it, and forgets the working set, so nothing of the failing command is ever
written. Nothing inside a command writes: reads of the past go through `AccountHistory`, which
adds the pending events of this unit of work to what the store holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from ledger.application.store import IndexQueries, SideRows
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.domain.reference import Reference
from ledger.errors import ConcurrentWriteError, StoreUnavailableError, UnknownAccountError
from ledger.times import to_micros

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from ledger.application.history import AccountHistory

SNAPSHOT_EVERY = 100  # account events between snapshots: a replay reads at most this many
KEYS_KEPT = 200_000
"""Most idempotency keys the cache holds (issue 11: memory flat over a long ingest). Past it,
the oldest half is forgotten after a commit — only written keys, so the store answers for them
(`Ledger.prefetch_keys` looks a feed chunk's keys up in one query)."""


class Savepoint(NamedTuple):
    """How far the working set's index rows had got when a command began (the pending events
    of each aggregate at that moment are `UnitOfWork._done`)."""

    side: tuple[int, int, int, int]  # commands, streams, holders, checkpoints
    snapshots: int


class UnitOfWork:
    """The working set, its caches and the transaction that writes it."""

    def __init__(self, app: Application[UUID], history: AccountHistory) -> None:
        self.app = app
        self.index: IndexQueries = app.recorder  # type: ignore[assignment]
        self.history = history
        self.accounts: dict[UUID, Account] = {}
        self.refs: dict[UUID, Reference] = {}
        self.touched: dict[UUID, Aggregate] = {}
        # Pending events of each touched aggregate as the last finished command left them
        # (the running command's savepoint), and what the running command touched.
        self._done: dict[UUID, int] = {}
        self._touched_now: dict[UUID, Aggregate] = {}
        self._snapshot_versions: dict[UUID, int] = {}
        self._snapshots_due: list[Any] = []
        self.side = SideRows()
        self.keys: dict[str, str] = {}  # idempotency keys seen (store or this batch)
        self._known_streams: dict[str, set[str]] = {}
        self._holders: dict[str, set[str]] = {}
        self._depth = 0
        self.flush_listeners: list[Callable[[], None]] = []  # after every write
        self.resets: list[Callable[[], None]] = []  # caches to forget with the working set
        self.foreign_writes: list[Callable[[], None]] = []  # caches other writers outdate
        self.followers: list[Callable[[Reference, Any], None]] = []  # reference catch-up
        self._log_position: int | None = None  # the log position the working set reflects
        self._note_log_position()

    # ------------------------------------------------------------------ batches and commands

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Apply the commands inside in one transaction (written when the block ends)."""
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1  # nothing is written: the caller decides (discard or retry)
            raise
        self._depth -= 1
        if self._depth == 0:
            self.flush()

    @property
    def in_batch(self) -> bool:
        return self._depth > 0

    def savepoint(self) -> Savepoint:
        """Begin a command: remember how much of the working set the ones before produced."""
        self._touched_now = {}
        side = self.side
        return Savepoint(
            side=(len(side.commands), len(side.streams), len(side.holders),
                  len(side.checkpoints)),
            snapshots=len(self._snapshots_due),
        )

    def finish_command(self) -> None:
        """The running command succeeded: its changes join the batch."""
        for aggregate_id, aggregate in self._touched_now.items():
            self._done[aggregate_id] = len(aggregate.pending_events)
        self._touched_now = {}

    def changed_since(self, mark: Savepoint) -> bool:
        """Tell whether the running command has changed any aggregate or index row."""
        side = self.side
        if (len(side.commands), len(side.streams), len(side.holders),
                len(side.checkpoints)) != mark.side or len(self._snapshots_due) != mark.snapshots:
            return True
        held: list[Aggregate] = [*self.accounts.values(), *self.refs.values()]
        return any(len(a.pending_events) != self._done.get(a.id, 0) for a in held)

    def abandon(self, mark: Savepoint) -> None:
        """Write what the commands before the running one produced, exactly as they left it,
        then forget the working set (the running command's changes go with it). If the store
        cannot take even that, nothing of the batch is written and the error goes up."""
        try:
            aggregates = [self.touched[aid] for aid in self._done if aid in self.touched]
            events = [event for a in aggregates for event in a.pending_events[:self._done[a.id]]]
            commands, streams, holders, checkpoints = mark.side
            side = SideRows(commands=self.side.commands[:commands],
                            streams=self.side.streams[:streams],
                            holders=self.side.holders[:holders],
                            checkpoints=self.side.checkpoints[:checkpoints])
            self._write(events, side, self._snapshots_due[:mark.snapshots])
        finally:
            self.discard()
        for listener in self.flush_listeners:
            listener()

    def flush(self) -> None:
        """Write every touched aggregate and the index rows in one transaction."""
        if self.touched or self.side:
            # What Application.save does, less its per-object protocol checks (a measurable
            # share of a 100,000-event settlement): every pending event, put in one go.
            events = [event for aggregate in self.touched.values()
                      for event in aggregate.pending_events]
            try:
                self._write(events, self.side, self._snapshots_due)
            except BaseException:
                self.discard()  # nothing was written: the working set is ahead of the store
                raise
            for aggregate in self.touched.values():
                aggregate.collect_events()
            self._snapshots_due = []
            self.touched = {}
            self._done = {}
            self.side = SideRows()
        self._bound_keys()  # every key held is now in the store or unused
        for listener in self.flush_listeners:
            listener()

    def _bound_keys(self) -> None:
        """Forget the oldest half of the idempotency-key cache once it holds KEYS_KEPT keys
        (called after a commit, when every key it holds is in the store or unused)."""
        keys = self.keys
        if len(keys) > KEYS_KEPT:
            for key in list(islice(keys, len(keys) - KEYS_KEPT // 2)):
                del keys[key]

    def _write(self, events: list[Any], side: SideRows, snapshots: list[Any]) -> None:
        """Put events, their index rows and snapshots in one transaction (all or nothing)."""
        if not events and not side:
            return
        rows = SideRows(commands=side.commands, streams=side.streams, holders=side.holders,
                        checkpoints=side.checkpoints, snapshots=snapshots)
        for event in events:
            rows.events.append((event.originator_id.hex, event.originator_version,
                                to_micros(event.at), type(event).__name__))
        try:
            self.app.events.put(events, side=rows)
        except IntegrityError as error:
            # Another writer saved first (same version, or an idempotency key): this
            # ledger's view is stale. Callers discard and retry; nothing was written.
            raise ConcurrentWriteError(str(error)) from error
        except Exception as error:
            raise_store_error(error)
            raise
        if events:
            # Committed: bookkeeping from here on must not turn a success into an error.
            known = self._log_position
            try:
                latest = self.app.recorder.max_notification_id() or 0
            except Exception:  # noqa: BLE001 - the store went away after the commit
                self._log_position = None
                return
            if known is not None and latest == known + len(events):
                self._log_position = latest  # nobody else wrote: the working set is current

    def touch(self, aggregate: Aggregate) -> None:
        """Mark an aggregate changed by the running command (written with the batch)."""
        if aggregate.id not in self.touched:
            self.touched[aggregate.id] = aggregate
        self._touched_now[aggregate.id] = aggregate
        if isinstance(aggregate, Account):
            self._snapshot_if_due(aggregate)

    def _snapshot_if_due(self, account: Account) -> None:
        """Encode a snapshot every SNAPSHOT_EVERY events, taken as soon as the account
        passes the mark (so a state query replays at most that many events); written in
        the transaction of its batch."""
        snapshots = self.app.snapshots
        last = self._snapshot_versions.get(account.id)
        if last is None:
            last = self._snapshot_versions[account.id] = account.version - len(
                account.pending_events)
        if account.version // SNAPSHOT_EVERY > last // SNAPSHOT_EVERY and snapshots:
            snapshot = Account.Snapshot.take(account)
            # Encoded now: the snapshot shares the account's dicts, which keep changing.
            self._snapshots_due.append(snapshots.mapper.to_stored_event(snapshot))
            self._snapshot_versions[account.id] = account.version

    def pending_events(self, aggregate_id: UUID) -> list[Any]:
        """The events of this unit of work not yet written for one aggregate."""
        touched = self.touched.get(aggregate_id)
        return list(touched.pending_events) if touched is not None else []

    # ------------------------------------------------------------------ other writers

    def _note_log_position(self) -> None:
        """Note where the log stands before anything is loaded; unknown (None) when the store
        cannot say, for forgetting must never need the store."""
        try:
            self._log_position = self.app.recorder.max_notification_id() or 0
        except Exception:  # noqa: BLE001 - unreachable now: `catch_up` starts afresh later
            self._log_position = None

    @property
    def log_position(self) -> int:
        """The last notification the working set reflects."""
        return self._log_position or 0

    @log_position.setter
    def log_position(self, value: int) -> None:
        self._log_position = value

    def catch_up(self) -> int:
        """Bring the working set up to date with what other processes wrote, by reading the
        notification log after the last position this ledger knows (events it holds already
        are skipped by version, without decoding). Returns how many events were applied.

        A long-running process (the scheduler) calls it before each job instead of
        `discard()`, so it pays for what changed, not for reloading every account."""
        if self.touched:
            self.flush()
        if self._log_position is None:
            # Where the working set stands is unknown (the store was lost): start afresh.
            self.discard()
            if self._log_position is None:
                self._log_position = self.app.recorder.max_notification_id() or 0
            return 0
        recorder = self.app.recorder
        latest = recorder.max_notification_id() or 0
        applied = 0
        start = self.log_position + 1
        while start <= latest:
            page = recorder.select_notifications(start, 1000, stop=latest)
            if not page:
                break
            for notification in page:
                applied += self._follow(notification)
            start = page[-1].id + 1
        if latest != self.log_position:
            # Index-backed caches may have grown elsewhere: read them again when needed.
            self._known_streams.clear()
            self._holders.clear()
            self.keys.clear()
            for forget in self.foreign_writes:
                forget()
        self.log_position = latest
        return applied

    def _follow(self, notification: Any) -> int:
        aggregate_id = notification.originator_id
        held: Any = self.accounts.get(aggregate_id) or self.refs.get(aggregate_id)
        if held is None:
            for forget in self.foreign_writes:
                forget()  # a new stream: load it when asked
            return 0
        if notification.originator_version <= held.version:
            return 0  # written by this ledger
        if notification.originator_version != held.version + 1:
            self.accounts.pop(aggregate_id, None)  # a gap: reload it when needed
            self.refs.pop(aggregate_id, None)
            for forget in self.foreign_writes:
                forget()
            return 0
        event = cast(Any, self.app.mapper.to_domain_event(notification))
        event.mutate(held)
        if isinstance(held, Reference):
            for follow in self.followers:
                follow(held, event)
        return 1

    def discard(self) -> None:
        """Forget everything not yet written (after an error or a lost race)."""
        self.accounts.clear()
        self.refs.clear()
        self._known_streams.clear()
        self._holders.clear()
        self.touched = {}
        self._done = {}
        self._touched_now = {}
        self._snapshot_versions.clear()
        self._snapshots_due = []
        self.side = SideRows()
        self.keys.clear()
        for reset in self.resets:
            reset()
        self._note_log_position()

    # ------------------------------------------------------------------ streams and accounts

    def stream_names(self, kind: str) -> set[str]:
        if kind not in self._known_streams:
            self._known_streams[kind] = {name for _, name in self.index.streams(kind)}
        return self._known_streams[kind]

    def register_stream(self, kind: str, aggregate_id: UUID, name: str) -> None:
        self.stream_names(kind).add(name)
        self.side.streams.append((aggregate_id.hex, kind, name))

    def account_names(self) -> list[str]:
        return sorted(self.stream_names("account"))

    def find_account(self, name: str) -> Account | None:
        aggregate_id = account_id(name)
        account = self.accounts.get(aggregate_id)
        if account is not None:
            return account
        if name not in self.stream_names("account"):
            return None
        try:
            account = self.history.load_account(aggregate_id, None)
        except AggregateNotFoundError:
            return None
        self.accounts[aggregate_id] = account
        return account

    def account(self, name: str) -> Account:
        """The account in the working set; `unknown_account` when there is none."""
        account = self.find_account(name)
        if account is None:
            raise UnknownAccountError(name)
        return account

    def add_account(self, account: Account, name: str) -> None:
        self.accounts[account.id] = account
        self.register_stream("account", account.id, name)
        self.touch(account)

    def load_accounts(self, names: list[str], chunk: int = 2000) -> None:
        """Bring many accounts into memory at once: their latest snapshots and the events
        after them in two queries per chunk (sweeps, funding and interest over every holder
        would otherwise pay two round trips per account)."""
        wanted = [name for name in names if account_id(name) not in self.accounts]
        app = self.app
        events_table = app.recorder.events_table_name  # type: ignore[attr-defined]
        snapshots = app.snapshots.recorder if app.snapshots is not None else None
        for start in range(0, len(wanted), chunk):
            ids = [account_id(name) for name in wanted[start:start + chunk]]
            folded: dict[Any, Any] = dict.fromkeys(ids)
            after: dict[Any, int] = dict.fromkeys(ids, 0)
            if snapshots is not None:
                table = snapshots.events_table_name  # type: ignore[attr-defined]
                for stored in self.index.latest_snapshots(table, ids):
                    snapshot = app.mapper.to_domain_event(stored)
                    folded[stored.originator_id] = cast(Any, snapshot).mutate(None)
                    after[stored.originator_id] = stored.originator_version
            for stored in self.index.events_after(events_table, list(after.items())):
                event = cast(Any, app.mapper.to_domain_event(stored))
                folded[stored.originator_id] = event.mutate(folded[stored.originator_id])
            for aggregate_id, account in folded.items():
                if account is not None:
                    self.accounts[aggregate_id] = account

    def note_holder(self, symbol: str, account: Account) -> None:
        holders = self.holders(symbol)
        stream = _hex(account.id)
        if stream not in holders:
            holders.add(stream)
            self.side.holders.append((symbol, stream))

    def holders(self, symbol: str) -> set[str]:
        """The streams of every account that has ever held a position in `symbol`."""
        if symbol not in self._holders:
            self._holders[symbol] = set(self.index.holders(symbol))
        return self._holders[symbol]

    def remember_key(self, key: str, digest: str, at: datetime, content: str) -> None:
        self.keys[key] = digest
        self.side.commands.append((key, digest, to_micros(at), content))


@lru_cache(maxsize=1 << 16)
def _hex(stream: UUID) -> str:
    """A stream id's hex (`UUID.hex` formats it anew at every call; fills ask it each time)."""
    return stream.hex


def is_store_error(error: BaseException) -> bool:
    """Tell whether `error` says the store cannot be reached or written: the library's, the
    drivers' or SQLAlchemy's operational and interface errors (not a bug, not a conflict)."""
    if isinstance(error, (StoreUnavailableError, OperationalError, InterfaceError)):
        return True
    origin = type(error).__module__.split(".")[0]
    return origin in ("sqlite3", "psycopg", "psycopg_pool", "sqlalchemy") and type(
        error).__name__ in ("OperationalError", "InterfaceError", "PoolTimeout",
                            "TooManyRequests")


def raise_store_error(error: BaseException) -> None:
    """Raise `StoreUnavailableError` from `error` when it is a store error (`is_store_error`);
    return otherwise, so that every other error keeps its own type."""
    if is_store_error(error) and not isinstance(error, StoreUnavailableError):
        raise StoreUnavailableError(str(error)) from error
