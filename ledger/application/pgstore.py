"""PostgreSQL recorder with the ledger's inline indexes (see `ledger.application.store`).

Kept apart so that SQLite users never import psycopg (start-up time, DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from ledger.application.store import (
    SIDE_TABLES,
    IndexQueries,
    SideRows,
    _stored,
)

if TYPE_CHECKING:
    from ledger.application.sequencer import SequencerClient

STORE_ATTEMPTS = 3  # tries of a read or write whose connection is lost (the library: 10)
STORE_WAIT_S = 0.5
EVENT_TYPES = ["uuid", "int8", "text", "bytea"]  # the events table's columns, for binary COPY


class LedgerPostgresRecorder(PostgresApplicationRecorder, IndexQueries):
    """Writes the inline indexes in the events' transaction (before the table lock)."""

    placeholder = "%s"
    snapshots_table = "ledger_snapshots"

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.extend(
            SQL(statement).format() for statement in SIDE_TABLES)
        # Binary COPY: the state bytes go as they are (text COPY would send them as escaped
        # hex, twice their size, parsed by the server while the table lock is held).
        self._copy_events = SQL(
            "COPY {schema}.{table} (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(schema=Identifier(datastore.schema), table=Identifier(events_table_name))
        # Set in a shard worker of `ledger run --workers N`: its batches go to the store's
        # one sequencing writer instead (ledger/application/sequencer.py).
        self.sequencer: SequencerClient | None = None

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events and the index rows: through the store's sequencer when this process
        is a shard worker (never retried here: the sequencer answers once, after its commit),
        else in a transaction of this process's own."""
        if self.sequencer is not None:
            self.sequencer.write(stored_events, kwargs.get("side"))
            return None
        self._insert_locked(stored_events, **kwargs)
        return None

    @retry((InterfaceError, OperationalError), max_attempts=STORE_ATTEMPTS, wait=STORE_WAIT_S)
    def _insert_locked(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events and the index rows in one transaction, with COPY.

        A lost connection is tried again twice (0.5 s apart): a server that is gone longer
        makes the run stop with `store_unavailable` rather than hang.

        Same guarantees as the library's path: the EXCLUSIVE table lock is taken before the
        events are written, so notification ids commit in order and readers never skip one.
        COPY instead of `INSERT … unnest(…)` keeps the per-row cost near the server's raw
        rate (the application does not use the returned notification ids).
        """
        side: SideRows | None = kwargs.get("side")
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor() as curs:
            if side:
                copy_side_rows(curs, side, self.snapshots_table)
            if stored_events:
                self._lock_table(curs)
                self._notify_channel(curs)
                with curs.copy(self._copy_events) as copy:
                    copy.set_types(EVENT_TYPES)
                    for event in stored_events:
                        copy.write_row((event.originator_id, event.originator_version,
                                        event.topic, event.state))
        return None

    def latest_snapshots(self, table: str, ids: Sequence[Any]) -> list[StoredEvent]:
        rows = self._rows(
            f"SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state"
            f" FROM {table} WHERE originator_id = ANY(%s)"
            " ORDER BY originator_id, originator_version DESC", (list(ids),))
        return [_stored(row) for row in rows]

    def events_after(self, table: str, after: Sequence[tuple[Any, int]]) -> list[StoredEvent]:
        rows = self._rows(
            f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {table} e"
            " JOIN unnest(%s::uuid[], %s::bigint[]) AS s(id, v)"
            " ON e.originator_id = s.id AND e.originator_version > s.v"
            " ORDER BY e.originator_id, e.originator_version",
            ([stream for stream, _ in after], [version for _, version in after]))
        return [_stored(row) for row in rows]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            # A bulk read on a freshly loaded store (no statistics yet) was planned as a merge
            # join and JIT-compiled: 710 ms per 2,000 streams, 230 ms with JIT off (issue 11).
            # These are index look-ups: compiling them never pays.
            curs.execute("SET LOCAL jit = off")
            curs.execute(sql, tuple(params))
            return [tuple(row.values()) for row in curs.fetchall()]


SIDE_COPIES = (  # (SideRows field, COPY statement): plain inserts, so a taken key still fails
    ("events", "COPY ledger_event_index (stream_id, version, at_micros, kind) FROM STDIN"),
    ("commands", "COPY ledger_commands (command_key, content_hash, at_micros, content)"
                 " FROM STDIN"),
    ("streams", "COPY ledger_streams (stream_id, kind, name) FROM STDIN"),
    ("holders", "COPY ledger_holders (symbol, stream_id) FROM STDIN"),
    ("checkpoints", "COPY ledger_interest_checkpoints (stream_id, asset, at_micros, version,"
                    " accrued) FROM STDIN"),
)


def copy_side_rows(curs: Cursor[Any], side: SideRows, snapshots_table: str) -> None:
    """Write a batch's index rows and snapshots by COPY in the cursor's transaction (a row
    per statement cost the server a round of parsing each; a key already taken raises the
    same unique violation either way)."""
    for name, statement in SIDE_COPIES:
        rows = getattr(side, name)
        if rows:
            with curs.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
    if side.snapshots:
        with curs.copy(SQL("COPY {table} (originator_id, originator_version, topic, state)"
                           " FROM STDIN (FORMAT BINARY)").format(
                table=Identifier(snapshots_table))) as copy:
            copy.set_types(EVENT_TYPES)
            for snapshot in side.snapshots:
                copy.write_row((snapshot.originator_id, snapshot.originator_version,
                                snapshot.topic, snapshot.state))


def shorten_retries(recorder: Any) -> None:
    """Give a recorder's reads the ledger's retry policy instead of the library's.

    The library retries a lost connection 10 times, each waiting for the pool's connect
    timeout: a run whose server died would sit for a minute before saying so. Here a call is
    tried `STORE_ATTEMPTS` times, so `ledger run` stops with `store_unavailable` within seconds
    (issue 10: exit 2 naming the last committed line) and a re-run finishes the rest."""
    for name in ("select_events", "select_notifications", "max_notification_id"):
        method = getattr(type(recorder), name, None)
        plain = getattr(method, "__wrapped__", None)
        if plain is None:
            continue
        retried = retry((InterfaceError, OperationalError), max_attempts=STORE_ATTEMPTS,
                        wait=STORE_WAIT_S)(plain)
        setattr(recorder, name, retried.__get__(recorder))
