"""Alembic environment: one store (SQLite or PostgreSQL), every revision in one transaction.

The URL is the ledger's own (`sqlite:///FILE`, `postgresql://…`), taken from, in order: a
connection handed over by `ledger.application.schema` (`config.attributes["connection"]`), the
`-x url=…` argument, `config.attributes["url"]`, `sqlalchemy.url` in alembic.ini, then
$LEDGER_DATABASE_URL, then `sqlite:///ledger.db` (the CLI's default).

On PostgreSQL a session advisory lock serialises concurrent upgrades (two ledgers starting on an
empty database): the second waits, then finds the schema current. Autogenerate compares only the
read models (`projection_*`) with `projections.tables.metadata`; the event store's tables are
the eventsourcing library's, written by hand in revision 0001.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, text

from ledger.application.schema import ADVISORY_LOCK_ID, create_engine
from projections.tables import include_object, metadata

config = context.config
DEFAULT_URL = "sqlite:///ledger.db"


def store_url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    return (given or config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
            or os.environ.get("LEDGER_DATABASE_URL") or DEFAULT_URL)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _migrate(connection: Connection) -> None:
    locked = connection.dialect.name == "postgresql"
    if locked:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        connection.commit()  # the lock is the session's; the migrations get a fresh transaction
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if locked:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
            connection.commit()


def run_offline() -> None:
    url = store_url()
    from ledger.application.schema import sqlalchemy_url

    context.configure(url=sqlalchemy_url(url), target_metadata=metadata,
                      literal_binds=True, include_object=include_object,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _migrate(given)
        return
    engine = create_engine(store_url(), write=True)  # SQLite: BEGIN IMMEDIATE serialises
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
