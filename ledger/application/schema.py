"""The store's schema: Alembic owns every table (DESIGN §2, §8; STYLE §11).

The event store's tables (the eventsourcing library's, with its own table creation switched
off), the inline index tables and the read models are created by the revisions in
`migrations/versions`. A ledger brings its store up to date on first use:

    if not schema.is_current(url):   # one query of alembic_version
        schema.upgrade(url)          # stamps a legacy store, then `alembic upgrade head`

A store created before the migrations existed (the library and the recorders created the tables
on first use) holds exactly what revision 0001 creates, so `stamp_if_legacy` records it as 0001
without running any DDL; a partial legacy store gets the missing objects from 0001, whose
statements are the library's own `CREATE … IF NOT EXISTS`.

Start-up time matters (DESIGN §8): alembic and SQLAlchemy are imported inside the functions that
need them; `is_current` uses the driver the store already loaded (sqlite3 or psycopg).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

HEAD = "0007"
"""The head revision this code expects (a test checks it against the scripts)."""

LEGACY_REVISION = "0001"
"""What a store created by the library and the recorders before the migrations holds."""

ADVISORY_LOCK_ID = 0x1ED6E7  # PostgreSQL advisory lock that serialises concurrent upgrades

_POSTGRES_PREFIXES = ("postgresql:", "postgres:", "postgresql+psycopg:")


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES_PREFIXES)


def sqlalchemy_url(url: str) -> str:
    """Return the SQLAlchemy URL of a ledger store URL (`postgresql://` means psycopg 3)."""
    if url.startswith("sqlite:"):
        return url
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    from ledger.masking import mask_url

    raise ValueError(f"unsupported database URL: {mask_url(url)!r}"
                     " (sqlite:///FILE or postgresql://…)")


def create_engine(url: str, *, write: bool = False, **kwargs: Any) -> Engine:
    """Return a SQLAlchemy engine on the store.

    SQLite: the driver's implicit transactions are replaced by an explicit `BEGIN` (so a
    transaction covers its reads too), `BEGIN IMMEDIATE` when `write` (the runner and the
    migrations take the write lock first: no lock upgrade, no SQLITE_BUSY mid-transaction), and
    a 30 s busy timeout like the ledger's recorder. PostgreSQL: psycopg 3, pre-ping.
    """
    import sqlalchemy
    from sqlalchemy import event

    target = sqlalchemy_url(url)
    if not target.startswith("sqlite:"):
        return sqlalchemy.create_engine(target, pool_pre_ping=True, **kwargs)
    from ledger.application.store import create_private_file, sqlite_path

    create_private_file(sqlite_path(url))  # before SQLite creates it world-readable
    engine = sqlalchemy.create_engine(target, connect_args={"timeout": 30}, **kwargs)
    begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def script_location() -> str:
    """Return the folder of the Alembic scripts (`migrations/`, installed with the package)."""
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").exists():
                return str(location)
    return str(Path(__file__).resolve().parents[2] / "migrations")


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for the store (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["url"] = url
    return config


def current(url: str) -> str | None:
    """Return the store's revision (None: no alembic_version table, or no row)."""
    query = "SELECT version_num FROM alembic_version"
    if is_postgres(url):
        import psycopg

        with psycopg.connect(_libpq_url(url), connect_timeout=5) as conn:
            exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
            if not exists or exists[0] is None:
                return None
            row = conn.execute(query).fetchone()
    else:
        import sqlite3
        from contextlib import closing

        from ledger.application.store import sqlite_path

        path = sqlite_path(url)
        if path != ":memory:" and not Path(path).exists():
            return None
        with closing(sqlite3.connect(path, timeout=30)) as conn:
            try:
                row = conn.execute(query).fetchone()
            except sqlite3.OperationalError:  # no such table
                return None
    return None if row is None else str(row[0])


def is_current(url: str) -> bool:
    """Tell whether the store is at the head revision (one query of alembic_version)."""
    return current(url) == HEAD


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the store to `revision` (default head): stamp a legacy store first."""
    from alembic import command

    stamp_if_legacy(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the store down to `revision` ("base": nothing left). Tests and operators only."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def stamp_if_legacy(url: str) -> bool:
    """Record a store created before the migrations as revision 0001; True if it was one.

    Legacy: the event store's events table exists and alembic_version has no row. When every
    object of revision 0001 is there, the store is stamped (no DDL); when some are missing, 0001
    runs, creating only those (its statements are `IF NOT EXISTS`).
    """
    if current(url) is not None:
        return False
    from alembic import command
    from sqlalchemy import inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            locked = is_postgres(url)
            if locked:
                # Decide under the lock the migrations hold (migrations/env.py): a store that
                # another process is creating right now is not a legacy one. Without it, a
                # process could see that store's tables just committed, take it for legacy and
                # stamp it back to 0001 (N shard workers started together on an empty database).
                connection.execute(text("SELECT pg_advisory_lock(:id)"),
                                   {"id": ADVISORY_LOCK_ID})
            try:
                if current(url) is not None:
                    return False
                tables = set(inspect(connection).get_table_names())
            finally:
                if locked:
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"),
                                       {"id": ADVISORY_LOCK_ID})
    finally:
        engine.dispose()
    expected = set(legacy_tables(url))
    events_table = "ledger_events" if is_postgres(url) else "stored_events"
    if events_table not in tables:
        return False
    config = alembic_config(url)
    if expected <= tables:
        command.stamp(config, LEGACY_REVISION)
    else:
        command.upgrade(config, LEGACY_REVISION)
    return True


def legacy_tables(url: str) -> tuple[str, ...]:
    """Return the tables revision 0001 creates on this backend."""
    side = ("ledger_commands", "ledger_event_index", "ledger_streams", "ledger_holders",
            "ledger_interest_checkpoints")
    if is_postgres(url):
        return ("ledger_events", "ledger_snapshots", *side)
    return ("stored_events", "stored_snapshots", *side)


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
