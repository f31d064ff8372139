"""The kill test: a publisher SIGKILLed at random points while a feed is ingested, restarted
each time (at least 6 times, and until the ingest ends); a JetStream consumer then sees every
event exactly once, in log order.

The feed is the crash harness's day (tests/crash/feedgen.py: shocks, liquidations, sweeps,
bad lines). `ledger run` ingests it in small batches (so the log grows while the publisher
follows it); the publisher is killed a random part of a second after the stream has grown
(seeded; the seed is in the failure message), restarted, killed again, and a last `--once`
run publishes what is left after the ingest ends. What the stream must hold is known without
the publisher: the store's log, every notification once, in notification order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from crash.feedgen import generate

from .support import Target, consume, stream_messages

LEDGER = Path(sys.executable).parent / "ledger"
KILLS = 6


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}


def _publisher(url: str, target: Target, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LEDGER), "--db", url, "publish", "--nats", target.url, "--stream", target.stream,
         "--prefix", target.prefix, "--poll", "0.05", "--batch", "200", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _log(url: str) -> list[tuple[int, str, int]]:
    """(notification id, stream id, version) of every stored event, in log order."""
    if url.startswith("sqlite:"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            return [(nid, UUID(str(stream)).hex, version) for nid, stream, version in
                    connection.execute("SELECT rowid, originator_id, originator_version"
                                       " FROM stored_events ORDER BY rowid")]
    with psycopg.connect(url) as connection:
        return [(nid, stream.hex, version) for nid, stream, version in connection.execute(
            "SELECT notification_id, originator_id, originator_version FROM ledger_events"
            " ORDER BY notification_id")]


@pytest.fixture(params=["postgres", "sqlite"])
def kill_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("scratch_postgres_db")
    return url


def test_publisher_killed_at_random_points_loses_and_doubles_nothing(
        kill_store: str, target: Target, tmp_path: Path) -> None:
    url = kill_store
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    lines = generate(11, accounts=60, hours=12)
    head, rest = lines[:200], lines[200:]
    (tmp_path / "head.jsonl").write_text("\n".join(head) + "\n", encoding="utf-8")
    (tmp_path / "rest.jsonl").write_text("\n".join(rest) + "\n", encoding="utf-8")
    first = subprocess.run([str(LEDGER), "--db", url, "run", str(tmp_path / "head.jsonl")],
                           capture_output=True, text=True, env=_env(), timeout=300)
    assert first.returncode in (0, 1), first.stderr

    ingest = subprocess.Popen(
        [str(LEDGER), "--db", url, "run", "--batch", "20", str(tmp_path / "rest.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    kills = 0
    stored: list[int] = []  # the stream's size after each kill
    try:
        while kills < KILLS or ingest.poll() is None:  # at least KILLS, until ingested
            publisher = _publisher(url, target)
            # kill it while it publishes: once the stream has grown (a loaded machine can take
            # seconds to start a process), after a random part of a second
            wait_s = 30 if ingest.poll() is None else 3  # nothing new once all is ingested
            before, deadline = stream_messages(target), time.monotonic() + wait_s
            while stream_messages(target) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))
            publisher.send_signal(signal.SIGKILL)
            publisher.wait(timeout=30)
            kills += 1
            stored.append(stream_messages(target))
        assert ingest.wait(timeout=600) in (0, 1), f"ingest failed (seed {seed})"
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
    last = _publisher(url, target, "--once")
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])

    log = _log(url)
    received = consume(target)
    print(f"seed {seed}: {len(log)} events; stream size after each kill {stored}")
    # the kills fell while the publisher was publishing: the stream grew between kills
    assert sum(1 for a, b in zip([0, *stored], stored, strict=False) if b > a) >= 2, stored
    assert counts["position"] == log[-1][0], f"seed {seed}"
    # every event exactly once, in log order, with the ids a consumer de-duplicates by
    assert len(received) == len(log), f"seed {seed}: {len(received)} messages, {len(log)} events"
    assert [r.data["position"] for r in received] == [nid for nid, _, _ in log], f"seed {seed}"
    assert [r.headers["Nats-Msg-Id"] for r in received] == [
        f"{_uuid(stream)}:{version}" for _, stream, version in log], f"seed {seed}"
    assert [int(r.headers["Ledger-Position"]) for r in received] == [nid for nid, _, _ in log]
    # per account: versions 1, 2, 3, … with nothing missing or repeated
    versions: dict[str, list[int]] = {}
    for item in received:
        if ".events." in item.subject:
            versions.setdefault(item.data["account"], []).append(item.data["version"])
    assert len(versions) >= 60
    for account, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"seed {seed}: {account}"


def _uuid(stream_hex: str) -> str:
    return str(UUID(stream_hex))
