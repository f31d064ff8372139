"""Kill `ledger consume` workers at random moments (SIGKILL: no handler, no flush) and start
them again until the stream is drained: the store ends exactly as one process leaves it — no
command lost, none applied twice (issue 11, docs/sharding.md)."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

from . import feeds
from .support import NATS_URL, cli, databases, dump, nats_available, nats_stream, start

pytestmark = pytest.mark.skipif(not nats_available(), reason="no NATS with JetStream")


@pytest.mark.parametrize("seed", [7, 11])
def test_killed_consumers_restart_to_the_same_store(postgres_url: str, tmp_path: Path,
                                                    seed: int) -> None:
    rng = random.Random(seed)
    path = feeds.write(tmp_path / "feed.jsonl", feeds.generate(seed, steps=80))
    with databases(postgres_url, 2) as (single, consumed), nats_stream() as stream:
        ledger = Ledger(single)
        try:
            run_feed(ledger, ((n, t.removesuffix("\n")) for n, t in read_lines(str(path))))
        finally:
            ledger.close()
        expected = dump(single)

        subjects = ["--stream", stream, "--subjects", stream.lower()]
        submitted = cli(consumed, "submit", "--nats", NATS_URL, "--shards", "3", *subjects,
                        str(path))
        assert submitted.returncode in (0, 1), submitted.stderr

        def worker(index: int) -> object:
            return start(consumed, "consume", "--nats", NATS_URL, "--shard", f"{index}/3",
                         *subjects, "--once")

        workers = {i: worker(i) for i in range(3)}
        kills = 0
        deadline = time.monotonic() + 240
        while kills < 6 and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 2.5))
            victim = rng.randrange(3)
            process = workers[victim]
            if process.poll() is None:  # type: ignore[attr-defined]
                process.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
                process.wait()  # type: ignore[attr-defined]
                kills += 1
            workers[victim] = worker(victim)
        for index in range(3):
            process = workers[index]
            process.communicate(timeout=300)  # type: ignore[attr-defined]
            assert process.returncode in (0, 1), index  # type: ignore[attr-defined]
        # A worker that ended (drained) before a peer's last restart ran again to its end:
        # one more pass of each finds nothing to do and changes nothing.
        for index in range(3):
            again = worker(index)
            again.communicate(timeout=300)  # type: ignore[attr-defined]
        assert kills >= 1
        assert dump(consumed) == expected
