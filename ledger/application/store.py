"""The event store: eventsourcing's recorders, plus the ledger's inline indexes.

Every `save()` writes the stored events and, in the same transaction, rows of four small tables
(so an acknowledged command, its events and its index rows commit or vanish together):

- `ledger_commands`: idempotency keys with the content hash of the command that used them;
- `ledger_event_index`: (stream, version, at, event type) — the time-to-version index that lets
  `state --at T` load exactly the events up to T (with snapshots, DESIGN §8);
- `ledger_streams`: every stream's kind and name (accounts for sweeps and `--all`);
- `ledger_holders`: which accounts have ever held a position in a symbol (funding, delivery);
- `ledger_interest_checkpoints`: at each interest run, the exact interest accrued and not yet
  charged per account and asset, with the account version it was computed at, so that accrual
  "as of T" integrates from the last checkpoint instead of from the account's opening.

Alembic owns every table (migrations/versions/0001 creates these and the library's; the
library's own table creation is switched off by the application). `POSTGRES_ENABLE_DB_FUNCTIONS`
is never set: its insert function skips the table lock that keeps the notification log
gap-free (LIBRARY-NOTES).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger.masking import mask_url

SIDE_TABLES = (
    "CREATE TABLE IF NOT EXISTS ledger_commands ("
    " command_key TEXT PRIMARY KEY, content_hash TEXT NOT NULL, at_micros BIGINT NOT NULL,"
    " content TEXT)",
    "CREATE TABLE IF NOT EXISTS ledger_event_index ("
    " stream_id TEXT NOT NULL, version BIGINT NOT NULL, at_micros BIGINT NOT NULL,"
    " kind TEXT NOT NULL, PRIMARY KEY (stream_id, version))",
    "CREATE INDEX IF NOT EXISTS ledger_event_index_at ON ledger_event_index"
    " (stream_id, at_micros)",
    "CREATE INDEX IF NOT EXISTS ledger_event_index_kind ON ledger_event_index"
    " (kind, at_micros)",
    "CREATE TABLE IF NOT EXISTS ledger_streams ("
    " stream_id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_holders ("
    " symbol TEXT NOT NULL, stream_id TEXT NOT NULL, PRIMARY KEY (symbol, stream_id))",
    "CREATE TABLE IF NOT EXISTS ledger_interest_checkpoints ("
    " stream_id TEXT NOT NULL, asset TEXT NOT NULL, at_micros BIGINT NOT NULL,"
    " version BIGINT NOT NULL, accrued TEXT NOT NULL,"
    " PRIMARY KEY (stream_id, asset, at_micros))",
)


SQLITE_CACHE_KIB = 65_536  # the writer's SQLite page cache (64 MiB)
SQLITE_CHECKPOINT_PAGES = 16_384  # WAL pages between checkpoints (64 MiB of 4 KiB pages)


@dataclass
class SideRows:
    """Index rows to write with the events of one `save()`."""

    commands: list[tuple[str, str, int, str]] = field(default_factory=list)  # key, hash, at, JSON
    events: list[tuple[str, int, int, str]] = field(default_factory=list)
    streams: list[tuple[str, str, str]] = field(default_factory=list)
    holders: list[tuple[str, str]] = field(default_factory=list)
    checkpoints: list[tuple[str, str, int, int, str]] = field(default_factory=list)
    snapshots: list[StoredEvent] = field(default_factory=list)  # to the snapshots table

    def __bool__(self) -> bool:
        return bool(self.commands or self.events or self.streams or self.holders
                    or self.checkpoints or self.snapshots)


def _write_side_rows(cursor: Any, side: SideRows, placeholder: str,
                     snapshots_table: str = "ledger_snapshots") -> None:
    p = placeholder
    if side.snapshots:
        cursor.executemany(
            f"INSERT INTO {snapshots_table} (originator_id, originator_version, topic, state)"
            f" VALUES ({p}, {p}, {p}, {p})",
            [(_stream_value(s.originator_id, p), s.originator_version, s.topic, s.state)
             for s in side.snapshots])
    if side.commands:
        cursor.executemany(
            f"INSERT INTO ledger_commands (command_key, content_hash, at_micros, content)"
            f" VALUES ({p}, {p}, {p}, {p})", side.commands)
    if side.events:
        cursor.executemany(
            f"INSERT INTO ledger_event_index (stream_id, version, at_micros, kind)"
            f" VALUES ({p}, {p}, {p}, {p})", side.events)
    if side.streams:
        cursor.executemany(
            f"INSERT INTO ledger_streams (stream_id, kind, name) VALUES ({p}, {p}, {p})",
            side.streams)
    if side.holders:
        cursor.executemany(
            f"INSERT INTO ledger_holders (symbol, stream_id) VALUES ({p}, {p})", side.holders)
    if side.checkpoints:
        cursor.executemany(
            f"INSERT INTO ledger_interest_checkpoints (stream_id, asset, at_micros, version,"
            f" accrued) VALUES ({p}, {p}, {p}, {p}, {p})", side.checkpoints)


class IndexQueries:
    """Reads of the inline indexes; `_rows` runs one query on the backend."""

    placeholder = "?"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def seen_commands(self, keys: Iterable[str]) -> dict[str, str]:
        """Return {key: content hash} for the keys already used."""
        found: dict[str, str] = {}
        chunk: list[str] = []
        for key in keys:
            chunk.append(key)
            if len(chunk) == 500:
                found.update(self._seen_chunk(chunk))
                chunk = []
        if chunk:
            found.update(self._seen_chunk(chunk))
        return found

    def _seen_chunk(self, keys: list[str]) -> dict[str, str]:
        marks = ", ".join("?" for _ in keys)
        rows = self._rows(self._sql(
            f"SELECT command_key, content_hash FROM ledger_commands WHERE command_key IN ({marks})"
        ), keys)
        return {key: digest for key, digest in rows}

    def version_at(self, stream_id: str, at_micros: int) -> int | None:
        """Return the stream's last version with at ≤ at_micros (None: nothing yet)."""
        rows = self._rows(self._sql(
            "SELECT version FROM ledger_event_index WHERE stream_id = ? AND at_micros <= ?"
            " ORDER BY at_micros DESC, version DESC LIMIT 1"), (stream_id, at_micros))
        return rows[0][0] if rows else None

    def last_at_micros(self) -> int | None:
        rows = self._rows("SELECT MAX(at_micros) FROM ledger_event_index")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def streams(self, kind: str) -> list[tuple[str, str]]:
        """Return (stream id, name) of every stream of a kind, by name."""
        return [(sid, name) for sid, name in self._rows(self._sql(
            "SELECT stream_id, name FROM ledger_streams WHERE kind = ? ORDER BY name"), (kind,))]

    def holders(self, symbol: str) -> list[str]:
        return [row[0] for row in self._rows(self._sql(
            "SELECT stream_id FROM ledger_holders WHERE symbol = ?"), (symbol,))]

    def interest_checkpoint(
        self, stream_id: str, asset: str, at_micros: int
    ) -> tuple[int, int, str] | None:
        """Return (at, version, accrued) of the last checkpoint at or before `at_micros`."""
        rows = self._rows(self._sql(
            "SELECT at_micros, version, accrued FROM ledger_interest_checkpoints"
            " WHERE stream_id = ? AND asset = ? AND at_micros <= ?"
            " ORDER BY at_micros DESC LIMIT 1"), (stream_id, asset, at_micros))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def latest_snapshots(self, table: str, ids: Sequence[Any]) -> list[StoredEvent]:
        """Return the latest snapshot of each of these streams that has one (bulk loading)."""
        marks = ", ".join("?" for _ in ids)
        rows = self._rows(self._sql(
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {table} s"
            f" JOIN (SELECT originator_id, MAX(originator_version) AS v FROM {table}"
            f" WHERE originator_id IN ({marks}) GROUP BY originator_id) m"
            " ON s.originator_id = m.originator_id AND s.originator_version = m.v"),
            [self._stream_key(i) for i in ids])
        return [_stored(row) for row in rows]

    def events_after(self, table: str, after: Sequence[tuple[Any, int]]) -> list[StoredEvent]:
        """Return the events of each stream after its given version, in stream order."""
        values = ", ".join("(?, ?)" for _ in after)
        params: list[Any] = []
        for stream, version in after:
            params.extend((self._stream_key(stream), version))
        rows = self._rows(self._sql(
            f"WITH s(id, v) AS (VALUES {values})"
            f" SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {table} e"
            " JOIN s ON e.originator_id = s.id AND e.originator_version > s.v"
            " ORDER BY e.originator_id, e.originator_version"), params)
        return [_stored(row) for row in rows]

    def _stream_key(self, stream: Any) -> Any:
        return stream

    def command_content(self, key: str) -> str | None:
        """Return the canonical JSON of the command that used `key` (None: not kept)."""
        rows = self._rows(self._sql(
            "SELECT content FROM ledger_commands WHERE command_key = ?"), (key,))
        return rows[0][0] if rows else None

    def command_times(self, prefix: str) -> list[int]:
        """Return the `at` of every recorded command whose key starts with `prefix`."""
        return [row[0] for row in self._rows(self._sql(
            "SELECT at_micros FROM ledger_commands WHERE command_key LIKE ? ORDER BY at_micros"
        ), (prefix + "%",))]


def _stream_value(originator_id: Any, placeholder: str) -> Any:
    """A stream id as each backend stores it: hex text on SQLite, a UUID on PostgreSQL."""
    if placeholder == "?" and isinstance(originator_id, UUID):
        return originator_id.hex
    return originator_id


def _stored(row: Sequence[Any]) -> StoredEvent:
    originator = row[0]
    if isinstance(originator, str):
        originator = UUID(originator)
    return StoredEvent(originator_id=originator, originator_version=row[1], topic=row[2],
                       state=bytes(row[3]))


class LedgerSQLiteRecorder(SQLiteApplicationRecorder, IndexQueries):
    """SQLite recorder that writes the inline indexes (and the snapshots due) in the events'
    transaction."""

    snapshots_table = "ledger_snapshots"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *SIDE_TABLES]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        side: SideRows | None = kwargs.pop("side", None)
        # A page cache that holds the indexes' hot pages (SQLite's default is 2 MB: past it,
        # every insert at a random place in a big index reads pages back). Bounded; per
        # connection, so set with each write (not transactional, microseconds).
        c.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        # Checkpoint the WAL less often (SQLite's default: every 1,000 pages): a page written
        # by many batches is copied back once per checkpoint, not once per 1,000 pages.
        c.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
        if stored_events:
            # One statement for the whole batch: the application does not use the ids.
            c.executemany(self.insert_events_statement, [
                (s.originator_id.hex if hasattr(s.originator_id, "hex") else s.originator_id,
                 s.originator_version, s.topic, s.state)
                for s in stored_events
            ])
        if side:
            _write_side_rows(c, side, "?", self.snapshots_table)
        return None

    def _stream_key(self, stream: Any) -> Any:
        return stream.hex if isinstance(stream, UUID) else stream

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            # Reads (a feed chunk's idempotency keys, above all) look up random places in the
            # same big indexes: the same bounded page cache on every connection.
            c.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            c.execute(sql, tuple(params))
            return [tuple(row) for row in c.fetchall()]


def sqlite_path(url: str) -> str:
    """Return the file of a `sqlite:///path` URL (`sqlite:///:memory:` for memory)."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    if url.startswith("sqlite:////"):
        return path
    return path[1:] if path.startswith("/") else path


def create_private_file(path: str) -> bool:
    """Create the SQLite store file readable by its owner only (0600) if it does not exist;
    return whether it was created. SQLite gives its -wal, -shm and -journal files the mode of
    the database file, so they are private too. An existing file is left as it is."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return False
    if os.path.islink(path):
        path = os.path.realpath(path)  # a link the operator made: the store is its target
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    os.close(descriptor)
    return True


def environment(url: str) -> dict[str, str]:
    """Return the eventsourcing environment for a database URL (SQLite or PostgreSQL)."""
    env = {"IS_SNAPSHOTTING_ENABLED": "y"}
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path if path != ":memory:" else "file:ledger?mode=memory&cache=shared",
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": "ledger.application.store:LedgerSQLiteRecorder",
        })
        return env
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        parsed = urlparse(url)
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_CONNECT_TIMEOUT": "3",
            "POSTGRES_POOL_SIZE": "2",
            "APPLICATION_RECORDER_TOPIC":
                "ledger.application.pgstore:LedgerPostgresRecorder",
        })
        return env
    raise ValueError(f"unsupported database URL: {mask_url(url)!r}"
                     " (sqlite:///FILE or postgresql://…)")
