"""Kill the sequencer or a shard worker of `ledger run --workers 2` (SIGKILL: no handler, no
flush) at random moments: the run stops with a non-zero status instead of waiting for the dead
process, and running the feed again ends in exactly the store one process leaves (same events,
same hashes, same states; nothing lost, nothing doubled), its log numbered 1 … N without a hole.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

from . import feeds
from .support import child_processes, databases, dump, ledger_bin


def test_killed_coordinator_leaves_no_process_behind(postgres_url: str,
                                                    tmp_path: Path) -> None:
    """SIGKILL the `ledger run --workers 2` process itself: its workers and its sequencer see
    their pipes close and end (they used to wait for it for good)."""
    path = feeds.write(tmp_path / "feed.jsonl", feeds.generate(29, accounts=8, steps=400))
    with databases(postgres_url, 1) as (url,):
        run = subprocess.Popen([*ledger_bin(), "--db", url, "run", "--workers", "2", "--batch",
                                "3", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        children: dict[int, str] = {}
        while len(children) < 3 and run.poll() is None:  # the sequencer and two workers
            children = child_processes(run.pid)
            time.sleep(0.02)
        assert sorted(children.values()) == ["ledger-sequence", "ledger-shard-0",
                                             "ledger-shard-1"]
        time.sleep(0.5)
        run.kill()
        run.wait()
        deadline = time.monotonic() + 30
        alive = set(children)
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in alive if _running(pid)}
            time.sleep(0.1)
        assert not alive, alive


def _running(pid: int) -> bool:
    """Whether `pid` still runs (an exited orphan is reaped by init; a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("victim", ["ledger-sequencer", "ledger-shard-1"])
def test_killed_sequencer_or_worker_then_rerun_gives_one_process_store(
        postgres_url: str, tmp_path: Path, victim: str) -> None:
    rng = random.Random(victim)
    path = feeds.write(tmp_path / "feed.jsonl", feeds.generate(23, accounts=8, steps=1500))
    with databases(postgres_url, 2) as (single, workers):
        ledger = Ledger(single)
        try:
            run_feed(ledger, ((n, t.removesuffix("\n")) for n, t in read_lines(str(path))))
        finally:
            ledger.close()
        expected = dump(single)
        command = [*ledger_bin(), "--db", workers, "run", "--workers", "2", "--batch", "3",
                   str(path)]
        kills = 0
        for _ in range(3):
            run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
            target = None
            while target is None and run.poll() is None:  # the processes start (imports)
                found = [p for p, name in child_processes(run.pid).items() if name == victim[:15]]
                target = found[0] if found else None
                time.sleep(0.02)
            time.sleep(rng.uniform(0.1, 1.5))  # the first run lasts ~5 s past start-up
            if target is not None and run.poll() is None:
                os.kill(target, signal.SIGKILL)
                kills += 1
                # The coordinator notices the dead process and stops: it never waits for good.
                _, stderr = run.communicate(timeout=60)
                assert run.returncode in (2, 3), stderr
            else:
                run.communicate(timeout=300)
        assert kills >= 1
        final = subprocess.run(command, capture_output=True, text=True, timeout=300,
                               check=False)
        assert final.returncode == 1, final.stderr  # the feed's own rejections
        assert dump(workers) == expected
        with psycopg.connect(workers) as connection:
            count, highest = connection.execute(
                "SELECT count(*), max(notification_id) FROM ledger_events").fetchone() or (0, 0)
        assert count == highest  # no hole: a killed group committed nothing
