"""Create the event store

Revision ID: 0001
Revises:
Create Date: 2025-06-01

The eventsourcing library's tables, exactly as eventsourcing 9.5 creates them when its own
table creation is on (`eventsourcing/postgres.py`, `eventsourcing/sqlite.py`), and the ledger's
inline index tables exactly as `ledger.application.store.SIDE_TABLES` creates them (commands,
event index, streams, holders, interest checkpoints), so a store created before the migrations
holds what this revision holds and is stamped, not rebuilt
(`ledger.application.schema.stamp_if_legacy`). The statements keep the library's
`IF NOT EXISTS`, so running this revision on a partial legacy store (one created before the
interest checkpoints existed, say) creates only what is missing.

PostgreSQL (application name "Ledger", so the prefix `ledger_`): `ledger_events` with
`notification_id bigserial` and its unique index (the notification log), `ledger_snapshots`, and
the composite type `stored_event_uuid` that the library's insert statement unnests. The library
also creates a function `es_insert_events_uuid` even with POSTGRES_ENABLE_DB_FUNCTIONS off; it
is never called (the setting must stay off: the function skips the table lock that keeps the
notification log gap-free), so this revision does not create it, and drops it on the way down.

SQLite (one file per store): `stored_events` (its rowid is the notification id) and
`stored_snapshots`.

A merged migration is never edited: the statements are copied here, not imported, and
tests/migrations checks them against the library and SIDE_TABLES of the day.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTOVACUUM = (
    "WITH ("
    "    autovacuum_enabled = true,"
    "    autovacuum_vacuum_threshold = 100000000,"
    "    autovacuum_vacuum_scale_factor = 0.5,"
    "    autovacuum_analyze_threshold = 1000,"
    "    autovacuum_analyze_scale_factor = 0.01"
    ")"
)

POSTGRES = (
    # CREATE TYPE has no IF NOT EXISTS: the library runs it alone and ignores DuplicateObject.
    "DO $$ BEGIN"
    " IF to_regtype('stored_event_uuid') IS NULL THEN"
    " CREATE TYPE stored_event_uuid AS (originator_id uuid, originator_version bigint,"
    " topic text, state bytea);"
    " END IF;"
    " END $$",
    "CREATE TABLE IF NOT EXISTS ledger_events ("
    "originator_id uuid NOT NULL, "
    "originator_version bigint NOT NULL, "
    "topic text, "
    "state bytea, "
    "notification_id bigserial, "
    "PRIMARY KEY "
    "(originator_id, originator_version)) " + AUTOVACUUM,
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_events_notification_id_idx "
    "ON ledger_events (notification_id ASC)",
    "CREATE TABLE IF NOT EXISTS ledger_snapshots ("
    "originator_id uuid NOT NULL, "
    "originator_version bigint NOT NULL, "
    "topic text, "
    "state bytea, "
    "PRIMARY KEY "
    "(originator_id, originator_version)) " + AUTOVACUUM,
)

SQLITE = (
    "CREATE TABLE IF NOT EXISTS stored_events ("
    "originator_id TEXT, "
    "originator_version INTEGER, "
    "topic TEXT, "
    "state BLOB, "
    "PRIMARY KEY "
    "(originator_id, originator_version))",
    "CREATE TABLE IF NOT EXISTS stored_snapshots ("
    "originator_id TEXT, "
    "originator_version INTEGER, "
    "topic TEXT, "
    "state BLOB, "
    "PRIMARY KEY "
    "(originator_id, originator_version)) "
    "WITHOUT ROWID",
)

# ledger.application.store.SIDE_TABLES as of this revision (the same text on both backends).
SIDE_TABLES = (
    "CREATE TABLE IF NOT EXISTS ledger_commands ("
    " command_key TEXT PRIMARY KEY, content_hash TEXT NOT NULL, at_micros BIGINT NOT NULL)",
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

SIDE_TABLE_NAMES = ("ledger_interest_checkpoints", "ledger_holders", "ledger_streams",
                    "ledger_event_index", "ledger_commands")


def _is_postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    for statement in (*(POSTGRES if _is_postgres() else SQLITE), *SIDE_TABLES):
        op.execute(statement)


def downgrade() -> None:
    for name in SIDE_TABLE_NAMES:
        op.execute(f"DROP TABLE IF EXISTS {name}")
    if _is_postgres():
        op.execute("DROP TABLE IF EXISTS ledger_snapshots")
        op.execute("DROP TABLE IF EXISTS ledger_events")
        op.execute("DROP FUNCTION IF EXISTS es_insert_events_uuid(stored_event_uuid[])")
        op.execute("DROP TYPE IF EXISTS stored_event_uuid")
    else:
        op.execute("DROP TABLE IF EXISTS stored_snapshots")
        op.execute("DROP TABLE IF EXISTS stored_events")
