"""Issue 13, point 4: a mistyped store is an error, not a new empty store.

`ledger --db sqlite:///tyop.db verify` said "checked 0 events … intact" and exited 0, leaving a
new empty tyop.db behind. Only the commands that write may create a store; the ones that only
read exit 2 with `store_unavailable` naming what is missing, and create nothing.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from cli_support import error_line, ledger, store_with_alice

READERS = [
    ["verify"],
    ["state", "alice"],
    ["state", "--all"],
    ["events", "alice"],
    ["reconcile"],
    ["projections", "status"],
    ["projections", "run", "--once"],
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_on_a_missing_sqlite_file_exits_2_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    done = ledger("--db", "sqlite:///tyop.db", *command, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error = error_line(done.stderr)
    assert error["error"] == "store_unavailable"
    assert str(tmp_path / "tyop.db") in error["message"]
    assert "does not exist" in error["message"]
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_without_ledger_tables_is_not_a_store(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    done = ledger("--db", f"sqlite:///{other}", "verify", cwd=tmp_path)
    assert done.returncode == 2
    assert error_line(done.stderr)["message"] == (
        f"no ledger store at {other}: the file holds no ledger tables")
    with sqlite3.connect(other) as conn:  # unchanged: still only the user's table
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    assert tables == ["notes"]


def test_the_writing_commands_still_create_a_store_and_readers_then_read_it(
    tmp_path: Path,
) -> None:
    url = store_with_alice(tmp_path, "new.db")  # `ledger run` creates new.db
    done = ledger("--db", url, "verify", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # alice: AccountOpened, Deposited, LeverageChanged (her first fill sets it), Filled; the
    # market: USDT, BTC (listed, then its index), BTCUSDT (listed, then its mark), BTCUSD —
    # 4 + 6 events in 1 account and 4 reference streams.
    assert done.stdout.startswith("checked 10 events in 5 streams (1 accounts)")
    migrated = ledger("--db", "sqlite:///migrated.db", "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert ledger("--db", "sqlite:///migrated.db", "verify", cwd=tmp_path).returncode == 0


@pytest.fixture
def empty_postgres_database(scratch_postgres_db: str) -> str:
    """A PostgreSQL database with no tables at all, dropped afterwards."""
    return scratch_postgres_db


@pytest.mark.parametrize("command", [["verify"], ["state", "alice"], ["projections", "status"]],
                         ids=" ".join)
def test_a_postgres_database_without_the_ledger_tables_is_no_store(
    tmp_path: Path, empty_postgres_database: str, command: list[str]
) -> None:
    import psycopg

    done = ledger("--db", empty_postgres_database, *command, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error = error_line(done.stderr)
    assert error["error"] == "store_unavailable"
    name = urlparse(empty_postgres_database).path.lstrip("/")
    assert error["message"].startswith(f"no ledger store in PostgreSQL database {name!r}")
    with psycopg.connect(empty_postgres_database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
