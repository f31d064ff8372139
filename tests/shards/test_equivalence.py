"""The same feed through one process, `ledger run --workers 3`, and `ledger submit` + 3 ×
`ledger consume --once` gives identical events (every account and reference stream, versions,
kinds, times and chained hashes) and identical states (issue 11, docs/sharding.md).

The feeds (tests/shards/feeds.py) spread six accounts over the three shards and hold transfers
within a shard and across shards — applied, refused by an unknown destination, refused out of
order at the destination, refused at the source, repeated — fills, marks, malformed lines and
periodic work (a funding settlement, interest, margin sweeps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

from . import feeds
from .support import NATS_URL, cli, databases, dump, nats_available, nats_stream, start

needs_nats = pytest.mark.skipif(not nats_available(), reason="no NATS with JetStream")


def _one_process(url: str, path: Path) -> list[int]:
    ledger = Ledger(url)
    try:
        report = run_feed(ledger, (
            (n, t.removesuffix("\n")) for n, t in read_lines(str(path))), batch_size=7)
    finally:
        ledger.close()
    assert report.internal_error is None and report.store_error is None
    return [r.line for r in report.rejected]


def _rejected_lines(stderr: str) -> list[int]:
    found = []
    for text in stderr.splitlines():
        data = json.loads(text)
        if "line" in data and "error" in data:
            found.append(data["line"])
    return sorted(found)


@needs_nats
@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000))
def test_one_process_workers_and_consumers_agree(postgres_url: str, tmp_path: Path,
                                                 seed: int) -> None:
    path = feeds.write(tmp_path / f"feed-{seed}.jsonl", feeds.generate(seed))
    with databases(postgres_url, 3) as (single, workers, consumed), nats_stream() as stream:
        rejected = _one_process(single, path)
        expected = dump(single)
        # The feed does what it is meant to: cross-shard transfers applied and refused.
        events = [e for history in expected["events"].values() for e in history]
        kinds = {e["type"] for e in events}
        assert {"TransferredOut", "TransferredIn", "FundingSettled"} <= kinds
        assert rejected

        run = cli(workers, "run", "--workers", "3", "--batch", "5", str(path))
        assert run.returncode == 1, run.stderr
        assert _rejected_lines(run.stderr) == rejected
        assert dump(workers) == expected

        submitted = cli(consumed, "submit", "--nats", NATS_URL, "--shards", "3",
                        "--stream", stream, "--subjects", stream.lower(), str(path))
        assert submitted.returncode == 1, submitted.stderr  # the malformed lines
        consumers = [start(consumed, "consume", "--nats", NATS_URL, "--shard", f"{i}/3",
                           "--stream", stream, "--subjects", stream.lower(), "--once")
                     for i in range(3)]
        outputs = [c.communicate(timeout=300)[1] for c in consumers]
        assert all(c.returncode in (0, 1) for c in consumers), outputs
        lines = sorted(_rejected_lines(submitted.stderr)
                       + [n for out in outputs for n in _rejected_lines(out)])
        assert lines == rejected
        assert dump(consumed) == expected


def test_workers_on_sqlite_write_what_one_process_writes(tmp_path: Path) -> None:
    """The same on SQLite (one file, three writer processes), a fixed feed."""
    path = feeds.write(tmp_path / "feed.jsonl", feeds.generate(5))
    single, workers = (f"sqlite:///{tmp_path / name}" for name in ("one.db", "workers.db"))
    rejected = _one_process(single, path)
    run = cli(workers, "run", "--workers", "3", str(path))
    assert run.returncode == 1, run.stderr
    assert _rejected_lines(run.stderr) == rejected
    assert dump(workers) == dump(single)
