"""PostgreSQL recorder with the ledger's inline indexes (see `ledger.application.store`).

Kept apart so that SQLite users never import psycopg (start-up time, DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from ledger.application.store import SIDE_TABLES, IndexQueries, SideRows, _write_side_rows


class LedgerPostgresRecorder(PostgresApplicationRecorder, IndexQueries):
    """Writes the inline indexes in the events' transaction (before the table lock)."""

    placeholder = "%s"

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.extend(SQL(statement) for statement in SIDE_TABLES)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        side: SideRows | None = kwargs.get("side")
        if side:
            _write_side_rows(curs, side, "%s")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, tuple(params))
            return [tuple(row.values()) for row in curs.fetchall()]
