"""Kill points found by the random trials, pinned so the lead can reproduce them in seconds.

Each is a feed of `feedgen` (seed, accounts, hours) cut to a prefix, a run SIGKILLed once a
given number of events is in the store (the store then sits still for a while: the next
commit is hundreds of lines later, so polling the event count finds the same point every
time), and a re-run that must finish (exit 0 or 1, no Traceback) and move forward.
"""

from __future__ import annotations

from pathlib import Path

from . import feedgen
from .harness import compare, dump, event_count, ledger, run_and_kill, scratch_store


def test_a_kill_between_batches_around_charge_interest(crash_dir: Path) -> None:
    """Found on e8f5029: `charge_interest` flushed in the middle of the command (a history
    walk), so a kill there left `InterestCharged` and interest checkpoints without the
    command's key, and every re-run died on the checkpoints' unique key. Now nothing inside a
    command writes: killed between batches of 20 lines around that charge (line 692, 05:00),
    the re-run finishes and the store equals one uninterrupted run."""
    lines = feedgen.generate(101, 20, 12)[:800]
    feed = feedgen.write(crash_dir / "seed101-800.jsonl", lines)
    with scratch_store("sqlite", crash_dir) as whole:
        ledger(whole.url, "run", str(feed))
        expected = dump(whole.url, crash_dir / "known-whole.json")
    with scratch_store("sqlite", crash_dir) as store:
        killed = run_and_kill(store.url, ["run", "--batch", "20", str(feed)], after_events=700,
                              stderr_path=crash_dir / "known-kill.stderr")
        assert killed.killed, "the run ended before 700 events were stored"
        assert 700 <= event_count(store.url) < 883
        rerun = ledger(store.url, "run", str(feed))
        assert not rerun.traceback and rerun.returncode in (0, 1), rerun.describe()
        assert compare(expected, dump(store.url, crash_dir / "known-rerun.json")) == []
