"""Plumbing of the shard tests: scratch PostgreSQL databases, `ledger` subprocesses, a NATS
stream of the test's own, feeds with cross-shard transfers, and store dumps to compare."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

NATS_URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


def ledger_bin() -> list[str]:
    script = Path(sys.executable).with_name("ledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def cli(url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ledger_bin(), "--db", url, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*ledger_bin(), "--db", url, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@contextmanager
def databases(postgres_url: str, count: int) -> Iterator[list[str]]:
    """`count` empty PostgreSQL databases of this test's own, dropped after it."""
    import psycopg

    parts = urlparse(postgres_url)
    admin = urlunparse(parts._replace(path="/postgres"))
    names = [f"ledger_shards_{os.getpid()}_{uuid.uuid4().hex[:8]}" for _ in range(count)]
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [urlunparse(parts._replace(path="/" + name)) for name in names]
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def nats_available() -> bool:
    async def probe() -> None:
        import nats

        connection = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0,
                                        allow_reconnect=False)
        await connection.jetstream().account_info()
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception:  # noqa: BLE001 - any failure means "no NATS with JetStream"
        return False
    return True


@contextmanager
def nats_stream() -> Iterator[str]:
    """A JetStream stream name of this test's own, deleted after it."""
    name = f"T_SHARDS_{uuid.uuid4().hex[:12].upper()}"
    try:
        yield name
    finally:
        async def delete() -> None:
            import nats
            from nats.js.errors import NotFoundError

            connection = await nats.connect(NATS_URL)
            try:
                await connection.jetstream().delete_stream(name)
            except NotFoundError:
                pass
            await connection.close()

        asyncio.run(delete())


def dump(url: str) -> dict[str, Any]:
    """Every account's events (hashes included), every state, every stream (reference data
    too) with its versions, kinds and times."""
    from ledger.application import queries
    from ledger.application.service import Ledger

    ledger = Ledger(url)
    try:
        names = sorted(ledger.account_names())
        events = {name: queries.events(ledger, name) for name in names}
        state = json.loads(json.dumps(queries.all_states(ledger)))
    finally:
        ledger.close()
    query = ("SELECT s.kind, s.name, i.version, i.kind, i.at_micros FROM ledger_event_index i "
             "JOIN ledger_streams s ON s.stream_id = i.stream_id "
             "ORDER BY s.kind, s.name, i.version")
    if url.startswith("sqlite:///"):
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = connection.execute(query).fetchall()
        finally:
            connection.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            rows = pg.execute(query).fetchall()
    streams: dict[str, list[list[Any]]] = {}
    for kind, name, version, event_kind, at in rows:
        streams.setdefault(f"{kind}:{name}", []).append([int(version), event_kind, int(at)])
    return {"events": events, "state": state, "streams": streams}


def child_processes(pid: int) -> dict[int, str]:
    """{pid: name} of the processes whose parent is `pid` (Linux /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry)] = name
    return found
