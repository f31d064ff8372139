"""Edit one stored event's bytes in place, as an attacker with database access would: the
tamper-evidence tests (`ledger verify`, the auditor's page) must then see the break."""

from __future__ import annotations

import sqlite3

import psycopg

from ledger.application.store import sqlite_path
from ledger.domain.ids import account_id


def tamper(url: str, name: str, version: int, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` in the stored state of account `name`'s event `version`."""
    stream = account_id(name)
    if url.startswith("sqlite:"):
        with sqlite3.connect(sqlite_path(url)) as conn:
            (state,) = conn.execute(
                "SELECT state FROM stored_events WHERE originator_id = ? AND "
                "originator_version = ?", (stream.hex, version)).fetchone()
            assert old in state
            conn.execute("UPDATE stored_events SET state = ? WHERE originator_id = ? AND "
                         "originator_version = ?", (state.replace(old, new), stream.hex, version))
        return
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM ledger_events WHERE originator_id = %s AND "
                           "originator_version = %s", (stream, version)).fetchone()
        assert row is not None and old in bytes(row[0])
        conn.execute("UPDATE ledger_events SET state = %s WHERE originator_id = %s AND "
                     "originator_version = %s", (bytes(row[0]).replace(old, new), stream, version))
