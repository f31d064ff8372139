"""Test fixtures: the ledger's decimal context, and stores on SQLite and PostgreSQL.

PostgreSQL: one database per test session (`ledger_tests_<pid>`, created on the server named by
LEDGER_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test), emptied between
tests. Without a server the PostgreSQL half skips with a reason that names it — except under
CI=true, where an unreachable server fails the run (a test never silently passes on a skip).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from hypothesis import settings

from ledger.numbers import install

settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORE_TABLES = (
    "ledger_events", "ledger_snapshots", "ledger_commands", "ledger_event_index",
    "ledger_streams", "ledger_holders",
)


@pytest.fixture(autouse=True)
def _decimal_context() -> None:
    install()


def _with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this session's own, dropped at the end."""
    try:
        import psycopg

        admin = psycopg.connect(_with_database(PG_URL, "postgres"), autocommit=True,
                                connect_timeout=3)
    except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is required under CI=true: {error}")
        pytest.skip(f"no PostgreSQL at {PG_URL}: {error}")
    name = f"ledger_tests_{os.getpid()}"
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(PG_URL, name)
    yield url
    with psycopg.connect(_with_database(PG_URL, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        tables = [t for t in existing if t.startswith("ledger_") or t.startswith("projection")]
        if tables:
            # RESTART IDENTITY: the log starts at notification id 1 again, as in a new store
            # (`verify` reads a hole below the first id as deleted events).
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def scratch_postgres_db(postgres_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (no tables at all), dropped after it:
    for commands run as subprocesses that must find nothing, or create everything."""
    import psycopg

    name = f"ledger_scratch_{os.getpid()}"
    admin_url = _with_database(postgres_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(postgres_url, name)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
