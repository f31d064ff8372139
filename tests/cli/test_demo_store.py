"""Issue 13, points 1 and 6: the demo has a store of its own and never harms another.

Before: `ledger demo` wrote into `ledger.db` (the store `ledger run` uses), its default `--fresh`
deleted whatever SQLite file it was pointed at, on PostgreSQL it merged into the user's
database, and `--accounts 5` crashed (a replay sample asked for a book before it was opened).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from cli_support import alice, error_line, ledger, market, store_with_alice, write_feed


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_demo_uses_demo_db_and_leaves_ledger_db_and_the_env_store_alone(
    tmp_path: Path,
) -> None:
    url = store_with_alice(tmp_path)  # ledger.db, the store `ledger run` writes to
    before = digest(tmp_path / "ledger.db")
    done = ledger("demo", "--accounts", "1", cwd=tmp_path, LEDGER_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    assert f"into the store {tmp_path / 'demo.db'}" in done.stdout
    assert digest(tmp_path / "ledger.db") == before
    assert ledger("--db", "sqlite:///demo.db", "state", "acct0000", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("keep", [[], ["--keep"]], ids=["fresh", "keep"])
def test_the_demo_refuses_a_store_it_did_not_make_and_changes_nothing(
    tmp_path: Path, keep: list[str]
) -> None:
    url = store_with_alice(tmp_path)
    before = digest(tmp_path / "ledger.db")
    done = ledger("demo", "--db", url, "--accounts", "1", *keep, cwd=tmp_path)
    assert done.returncode == 2
    error = error_line(done.stderr)
    assert error["error"] == "store_unavailable"
    assert error["message"].startswith(
        f"refusing to run the demo: the store {tmp_path / 'ledger.db'} holds data the demo did "
        "not write")
    assert "ledger demo --db sqlite:///another.db" in error["message"]
    assert digest(tmp_path / "ledger.db") == before
    assert not (tmp_path / "demo-feed.jsonl").exists()


def _verified_events(stdout: str) -> int:
    found = re.search(r"verify: ([\d,]+) events in", stdout)
    assert found, stdout
    return int(found.group(1).replace(",", ""))


def test_fresh_clears_a_previous_demo_store_on_sqlite(tmp_path: Path) -> None:
    first = ledger("demo", "--accounts", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    feed = write_feed(tmp_path / "alice.jsonl", alice("2025-03-04T01:00:00Z"))
    added = ledger("--db", "sqlite:///demo.db", "run", str(feed), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    again = ledger("demo", "--accounts", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _verified_events(again.stdout) == _verified_events(first.stdout)
    gone = ledger("--db", "sqlite:///demo.db", "state", "alice", cwd=tmp_path)
    assert gone.returncode == 1
    assert error_line(gone.stderr)["error"] == "unknown_account"


def test_five_accounts_work_and_the_summary_adds_up(tmp_path: Path) -> None:
    """5 simulated accounts + the 4 portfolio books = 9; the log's events (all of which
    verify checks) = the account events + the reference data."""
    done = ledger("demo", "--accounts", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    text = " ".join(done.stdout.split())  # rich wraps table cells
    assert "for 5 accounts and 4 portfolio books" in text
    assert "9 = 5 simulated + 4 portfolio books" in text
    found = re.search(r"([\d,]+) in the log \(what verify checks\) = ([\d,]+) account events "
                      r"\+ ([\d,]+) reference data", text)
    assert found, text
    log, accounts, reference = (int(g.replace(",", "")) for g in found.groups())
    assert log == accounts + reference
    assert log == _verified_events(text)
    assert "verify: " in text and "(9 accounts and the reference data), every hash chain " \
        "intact" in text
    assert "DIFFERS" not in text


@pytest.fixture
def empty_postgres(scratch_postgres_db: str) -> str:
    """An empty PostgreSQL database for the demo."""
    return scratch_postgres_db


def test_on_postgres_the_demo_takes_an_empty_database_and_fresh_clears_it(
    tmp_path: Path, empty_postgres: str
) -> None:
    first = ledger("demo", "--db", empty_postgres, "--accounts", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    feed = write_feed(tmp_path / "alice.jsonl", alice("2025-03-04T01:00:00Z"))
    assert ledger("--db", empty_postgres, "run", str(feed), cwd=tmp_path).returncode == 0
    again = ledger("demo", "--db", empty_postgres, "--accounts", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _verified_events(again.stdout) == _verified_events(first.stdout)
    assert ledger("--db", empty_postgres, "state", "alice", cwd=tmp_path).returncode == 1


def test_on_postgres_the_demo_refuses_a_database_holding_a_ledger(
    tmp_path: Path, empty_postgres: str
) -> None:
    import psycopg

    feed = write_feed(tmp_path / "feed.jsonl", market() + alice())
    assert ledger("--db", empty_postgres, "run", str(feed), cwd=tmp_path).returncode == 0
    done = ledger("demo", "--db", empty_postgres, "--accounts", "1", cwd=tmp_path)
    assert done.returncode == 2
    name = urlparse(empty_postgres).path.lstrip("/")
    assert error_line(done.stderr)["message"].startswith(
        f"refusing to run the demo: the PostgreSQL database {name!r} holds data the demo did "
        "not write")
    with psycopg.connect(empty_postgres) as conn:
        streams = conn.execute("SELECT name FROM ledger_streams WHERE kind = 'account'")
        assert streams.fetchall() == [("alice",)]


def test_on_postgres_a_demo_cleared_before_it_was_made_again_is_still_the_demos(
    tmp_path: Path, empty_postgres: str
) -> None:
    """`--fresh` on PostgreSQL downgrades to base, which leaves an empty alembic_version
    table; a demo interrupted right then must not find "a store it did not make" next time."""
    import psycopg

    with psycopg.connect(empty_postgres, autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    done = ledger("demo", "--db", empty_postgres, "--accounts", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "every hash chain intact" in done.stdout
