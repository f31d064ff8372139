"""Issue 10, part 2: `ledger run` SIGKILLed at a random point, then run again to the end,
gives exactly the store of one uninterrupted run (every account's events with their hashes,
every state, the reference streams, the idempotency records).

Kill points: a random delay within the measured duration of the uninterrupted run, or the
moment a random number of events is in the store. One trial kills twice before the re-run.
`scripts/crash-trials --only kill` runs a hundred of these per backend.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .trials import Reference, kill_trial

BACKENDS = ["sqlite", "postgres"]


@pytest.mark.parametrize("reference", BACKENDS, indirect=True)
@pytest.mark.parametrize("trial", [1, 2])
def test_a_killed_run_then_rerun_equals_one_run(reference: Reference, trial: int,
                                                 crash_dir: Path, rng: random.Random) -> None:
    result = kill_trial(reference, crash_dir, rng, kills=1, label=f"#{trial}")
    assert result.ok, result.report()


@pytest.mark.parametrize("reference", BACKENDS, indirect=True)
def test_a_run_killed_twice_then_rerun_equals_one_run(reference: Reference, crash_dir: Path,
                                                       rng: random.Random) -> None:
    result = kill_trial(reference, crash_dir, rng, kills=2)
    assert result.ok, result.report()
