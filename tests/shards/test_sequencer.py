"""The sequencer's group commit on a real PostgreSQL store (ledger/application/sequencer.py):
a batch that violates a constraint is rolled back to its savepoint and answered `conflict`, the
others of the group stay, the ids they get are contiguous after the last committed one, and
the id sequence is left at the last id, so a one-process writer that comes later continues the
log without a hole and without reusing an id."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from pathlib import Path

import psycopg

from ledger.application.feed import run_feed
from ledger.application.sequencer import Batch, Sequencer
from ledger.application.service import Ledger

from .support import databases

TOPIC = "tests.shards:Row"  # rows never decoded here: the test reads the table only


def _rows(stream: uuid.UUID, versions: range) -> list[tuple[uuid.UUID, int, str, bytes]]:
    return [(stream, version, TOPIC, f"event {version}".encode()) for version in versions]


def test_a_conflicting_batch_is_answered_alone_and_ids_stay_contiguous(
        postgres_url: str) -> None:
    with databases(postgres_url, 1) as (url,):
        Ledger(url).close()  # migrate: the store's tables
        first, second = uuid.uuid4(), uuid.uuid4()
        _, control = multiprocessing.Pipe()
        sequencer = Sequencer(url, [], control)
        answers = sequencer._write_group([
            Batch(_rows(first, range(1, 4)), None),  # ids 1-3
            Batch(_rows(first, range(3, 5)), None),  # version 3 is taken: rolled back
            Batch(_rows(second, range(1, 3)), None),  # ids 4-5, not 6-7
        ])
        assert [kind for kind, _ in answers] == ["ok", "conflict", "ok"]
        assert "duplicate key" in answers[1][1]
        # A second group starts after the last committed id.
        assert sequencer._write_group([Batch(_rows(second, range(3, 4)), None)]) == [("ok", "")]
        assert sequencer.figures.groups == 2
        assert sequencer.figures.events == 6
        assert sequencer.figures.conflicts == 1
        sequencer.connection.close()
        with psycopg.connect(url) as connection:
            rows = connection.execute(
                "SELECT notification_id, originator_id, originator_version FROM ledger_events"
                " ORDER BY notification_id").fetchall()
            sequence = connection.execute(
                "SELECT last_value FROM ledger_events_notification_id_seq").fetchone()
        assert rows == [(1, first, 1), (2, first, 2), (3, first, 3), (4, second, 1),
                        (5, second, 2), (6, second, 3)]
        assert sequence == (6,)


def test_one_process_continues_the_log_after_the_sequencer(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """Ids 1-2 from the sequencer, then a one-process `run` (the library's sequence): 3, 4…"""
    with databases(postgres_url, 1) as (url,):
        Ledger(url).close()
        _, control = multiprocessing.Pipe()
        sequencer = Sequencer(url, [], control)
        assert sequencer._write_group([Batch(_rows(uuid.uuid4(), range(1, 3)), None)]) == [
            ("ok", "")]
        sequencer.connection.close()
        ledger = Ledger(url)
        try:
            report = run_feed(ledger, iter([(1, json.dumps(
                {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "USDT",
                 "precision": 8}))]))
        finally:
            ledger.close()
        assert report.applied == 1
        with psycopg.connect(url) as connection:
            ids = [row[0] for row in connection.execute(
                "SELECT notification_id FROM ledger_events ORDER BY notification_id")]
        assert ids == [1, 2, 3]


def _line(command: dict[str, object]) -> str:
    return json.dumps({"at": "2025-01-01T00:00:00Z", **command})


def test_a_worker_retries_a_batch_another_writer_beat(postgres_url: str) -> None:
    """A scheduler (here: a one-process run) deposits to a worker's account between two of the
    worker's batches: the worker's next write conflicts (its copy of the account is stale),
    and instead of stopping the run it reloads and applies the batch again: 100 + 50 + 25."""
    from ledger.application import queries
    from ledger.application.workers import ShardWorker

    with databases(postgres_url, 1) as (url,):
        worker = ShardWorker(url)
        other = Ledger(url)
        try:
            assert worker.apply([
                (1, _line({"type": "asset", "asset": "USDT", "precision": 8}), None, ""),
                (2, _line({"type": "open_account", "account": "alice",
                           "mode": "single_asset"}), None, ""),
                (3, _line({"type": "deposit", "id": "d1", "account": "alice",
                           "asset": "USDT", "amount": "100"}), None, ""),
            ]) == ["applied", "applied", "applied"]
            report = run_feed(other, iter([(1, _line(
                {"type": "deposit", "id": "d2", "account": "alice", "asset": "USDT",
                 "amount": "50"}))]))
            assert report.applied == 1
            assert worker.apply([(4, _line(
                {"type": "deposit", "id": "d3", "account": "alice", "asset": "USDT",
                 "amount": "25"}), None, "")]) == ["applied"]
            assert worker.report.applied == 4  # each line counted once, after its commit
            deposits = [event for event in queries.events(other, "alice")
                        if event["type"] == "Deposited"]
        finally:
            worker.ledger.close()
            other.close()
        assert [event["version"] for event in deposits] == [2, 3, 4]
