"""A real `ledger serve` process per backend (SQLite file, PostgreSQL database), shared by the
tests of a module: the store holds a small market, alice and bob with fills, a transfer and
fees (hand-computed in `FEES_USDT`), and one token per role."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from urllib.parse import urlparse, urlunparse

import pytest
from api_support import (
    FEED,
    LEDGER,
    MAX_BODY,
    Server,
    env,
    free_port,
    ledger,
    wait_until_serving,
    write_feed,
)

PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("api")
    dropped: str | None = None
    if request.param == "sqlite":
        db = f"sqlite:///{directory / 'ledger.db'}"
    else:
        import psycopg

        name = f"ledger_api_{os.getpid()}_{abs(hash(request.module.__name__)) % 10_000}"
        try:
            admin = psycopg.connect(_with_database(PG_URL, "postgres"), autocommit=True,
                                    connect_timeout=3)
        except Exception as error:  # noqa: BLE001 - any connection failure means "no server"
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL at {PG_URL} is required under CI=true: {error}")
            pytest.skip(f"no PostgreSQL at {PG_URL}: {error}")
        with admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        db = dropped = _with_database(PG_URL, name)
    feed = write_feed(directory / "feed.jsonl", FEED)
    done = ledger("--db", db, "run", str(feed), cwd=directory)
    assert done.returncode == 0, done.stderr
    tokens = {}
    for role in ("auditor", "service", "operator", "revoked"):
        made = ledger("--db", db, "token", "create", "--role",
                      "auditor" if role == "revoked" else role, "--name", role, cwd=directory)
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip().splitlines()[-1]
    assert ledger("--db", db, "token", "revoke", "revoked", cwd=directory).returncode == 0
    port = free_port()
    log = directory / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(LEDGER), "--db", db, "serve", "--port", str(port), "--max-body",
             str(MAX_BODY)], cwd=directory, stdout=sink, stderr=subprocess.STDOUT, env=env())
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, process, log)
    yield Server(base, db, directory, process, log, tokens)
    process.terminate()
    process.wait(timeout=30)
    if dropped is not None:
        import psycopg

        with psycopg.connect(_with_database(PG_URL, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dropped.rsplit("/", 1)[1]}" WITH (FORCE)')
