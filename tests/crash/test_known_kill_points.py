"""Kill points found by the random trials, pinned so the lead can reproduce them in seconds.

Each is a feed of `feedgen` (seed, accounts, hours) cut to a prefix, a run SIGKILLed once a
given number of events is in the store (the store then sits still for a while: the next
commit is hundreds of lines later, so polling the event count finds the same point every
time), and a re-run that must finish (exit 0 or 1, no Traceback) and move forward.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import feedgen
from .harness import event_count, ledger, run_and_kill, scratch_store


@pytest.mark.xfail(strict=False, reason=(
    "product bug (seen on e8f5029): charge_interest flushes in the middle of the command "
    "(Ledger._state_since, service.py:1134, called through accrued_interest for the next "
    "account) so InterestCharged of pm-hedged and the interest checkpoints at 05:00 are "
    "committed without the command's key; killed there, every re-run of line 692 re-applies "
    "charge_interest and dies with ConcurrentWriteError: UNIQUE constraint failed: "
    "ledger_interest_checkpoints (exit 1, Traceback) and the store never moves past 763 events"))
def test_a_kill_after_the_flush_inside_charge_interest(crash_dir: Path) -> None:
    lines = feedgen.generate(101, 20, 12)[:800]  # line 692: charge_interest at 05:00
    feed = feedgen.write(crash_dir / "seed101-800.jsonl", lines)
    with scratch_store("sqlite", crash_dir) as store:
        killed = run_and_kill(store.url, ["run", str(feed)], after_events=763,
                              stderr_path=crash_dir / "known-kill.stderr")
        assert killed.killed, "the run ended before 763 events were stored"
        stored = event_count(store.url)
        rerun = ledger(store.url, "run", str(feed))
        assert not rerun.traceback and rerun.returncode in (0, 1), rerun.describe()
        assert event_count(store.url) > stored
