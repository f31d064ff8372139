"""Dump a store for comparison: every account's events (with hashes), every account's state,
the reference streams, and the idempotency records.

Run in its own process (`python -m tests.crash.dump URL OUT.json`) so the harness holds no
connection to the store. It reads through the same query functions the CLI's
`ledger events ACCOUNT --json` and `ledger state --all --json` print (one process instead of
one per account: the CLI's start-up would dominate CI time). `--cli` uses the CLI itself.

The dump is a dict:
- "events": {account: [event JSON, ...]} in version order, hashes included;
- "state": the `state --all --json` list;
- "streams": {"kind:name": [[version, event kind, at_micros], ...]} from the store's
  stream and time-index tables (reference data too: assets, instruments, prices), when the
  store has them ("unavailable: …" otherwise, on both sides alike);
- "commands": sorted [command_key, content_hash] of the idempotency table, when present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _sql_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [tuple(r) for r in connection.execute(query).fetchall()]
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as connection:
        return [tuple(r) for r in connection.execute(query).fetchall()]


def streams(url: str) -> dict[str, Any] | str:
    try:
        rows = _sql_rows(url, "SELECT s.kind, s.name, i.version, i.kind, i.at_micros "
                              "FROM ledger_event_index i JOIN ledger_streams s "
                              "ON s.stream_id = i.stream_id ORDER BY s.kind, s.name, i.version")
    except Exception as error:  # noqa: BLE001 - the tables are an implementation detail
        return f"unavailable: {type(error).__name__}"
    result: dict[str, list[list[Any]]] = {}
    for kind, name, version, event_kind, at in rows:
        result.setdefault(f"{kind}:{name}", []).append([int(version), event_kind, int(at)])
    return result


def commands(url: str) -> list[list[str]] | str:
    try:
        rows = _sql_rows(url, "SELECT command_key, content_hash FROM ledger_commands")
    except Exception as error:  # noqa: BLE001
        return f"unavailable: {type(error).__name__}"
    return sorted([str(k), str(h)] for k, h in rows)


def dump_in_process(url: str) -> dict[str, Any]:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from ledger.application import queries
    from ledger.application.service import Ledger
    from ledger.numbers import install

    install()
    ledger = Ledger(url)
    names = sorted(ledger.account_names())
    events = {name: queries.events(ledger, name) for name in names}
    state = queries.all_states(ledger)
    result = {"events": events, "state": json.loads(json.dumps(state)),
              "streams": streams(url), "commands": commands(url)}
    close = getattr(ledger, "close", None)
    if callable(close):
        close()
    return result


def dump_cli(url: str, ledger_bin: str) -> dict[str, Any]:
    def run(*args: str) -> Any:
        out = subprocess.run([ledger_bin, "--db", url, *args], capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)

    state = run("state", "--all", "--json")
    names = sorted(item["account"] for item in state)
    return {"events": {n: run("events", n, "--json") for n in names}, "state": state,
            "streams": streams(url), "commands": commands(url)}


def main() -> None:
    args = sys.argv[1:]
    cli = "--cli" in args
    args = [a for a in args if a != "--cli"]
    url, out = args
    if cli:
        ledger_bin = str(Path(sys.executable).with_name("ledger"))
        data = dump_cli(url, ledger_bin)
    else:
        data = dump_in_process(url)
    Path(out).write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
