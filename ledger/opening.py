"""Opening a store from the command line: exit 2 (`store_unavailable`) when it is not there.

Shared by every command (`ledger`, `ledger demo`, `ledger projections`, the scheduler): only the
commands that write pass `create=True`; the others refuse to make an empty store out of a mistyped
URL (issue 13). Messages never show a password.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from ledger.application.service import Ledger


def store_unavailable(message: str) -> NoReturn:
    """Print the contract's `store_unavailable` line on stderr and exit 2."""
    click.echo(json.dumps({"error": "store_unavailable", "message": message}), err=True)
    sys.exit(2)


def missing_store(url: str) -> str | None:
    """Return why `url` names no ledger store (None: it holds one).

    A command that only reads must not create a store: `ledger --db sqlite:///tyop.db verify`
    would otherwise check an empty store it has just made and call it intact. SQLite: the file
    must exist and hold the event table; PostgreSQL: the database must hold the event table.
    Raises when the store cannot be reached at all (the caller reports that as exit 2 too).
    """
    if url.startswith("sqlite:"):
        import sqlite3
        from contextlib import closing
        from pathlib import Path

        from ledger.application.store import sqlite_path

        path = sqlite_path(url)
        if path == ":memory:":
            return "no ledger store in sqlite:///:memory: (a new process's memory is empty)"
        where = str(Path(path).resolve())
        if not Path(path).is_file():
            return (f"no ledger store at {where}: the file does not exist (check --db or "
                    "$LEDGER_DATABASE_URL; `ledger run` or `ledger migrate` creates a store)")
        readonly = Path(where).as_uri() + "?mode=ro"
        with closing(sqlite3.connect(readonly, uri=True, timeout=30)) as conn:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                 " AND name = 'stored_events'").fetchone()
        if found is None:
            return f"no ledger store at {where}: the file holds no ledger tables"
        return None
    from ledger.application.schema import is_postgres

    if not is_postgres(url):
        return f"unsupported database URL: {url!r} (sqlite:///FILE or postgresql://…)"
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1),
                         connect_timeout=5) as conn:
        row = conn.execute("SELECT current_database(), to_regclass('ledger_events')").fetchone()
    assert row is not None
    if row[1] is None:
        return (f"no ledger store in PostgreSQL database {row[0]!r}: it has no ledger tables "
                "(check --db or $LEDGER_DATABASE_URL; `ledger migrate` creates them)")
    return None


def _shown(url: str) -> str:
    """Return the URL without its password (error messages end up in logs)."""
    from ledger.masking import mask_url

    return mask_url(url)


def require_store(url: str) -> None:
    """Exit 2 (`store_unavailable`) unless `url` names an existing ledger store."""
    try:
        why = missing_store(url)
    except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
        why = f"cannot reach the store {_shown(url)}: {error}"
    if why is not None:
        store_unavailable(why)


def open_ledger(url: str, create: bool = False) -> Ledger:
    """Open the store, or exit 2 when it cannot be reached.

    Only the commands that write (`run`, `migrate`, `scheduler`, `demo` into a store of its
    own) pass `create=True`; the others refuse to make an empty store out of a mistyped URL.
    """
    from ledger.application.service import Ledger
    from ledger.numbers import install

    install()
    if not create:
        require_store(url)
    try:
        return Ledger(url)
    except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
        from ledger.masking import mask_in

        store_unavailable(mask_in(str(error), url))
