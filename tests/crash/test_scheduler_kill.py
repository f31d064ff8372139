"""Issue 10, part 3: `ledger scheduler --clock simulated` SIGKILLed at a random point and run
again gives exactly the store of one uninterrupted scheduler run.

The store holds the feed without its periodic commands (settle_funding, charge_interest,
check_margin): the scheduler sends them (funding every 8 h, hourly interest, a sweep an hour).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ACCOUNTS, HOURS, SEED, need_backend
from .trials import SchedulerReference, scheduler_kill_trial, scheduler_reference


@pytest.fixture(params=["sqlite"])
def scheduler_ref(request: pytest.FixtureRequest, crash_dir: Path
                  ) -> Iterator[SchedulerReference]:
    need_backend(request.param)
    ref = scheduler_reference(request.param, crash_dir, SEED, ACCOUNTS, HOURS)
    yield ref
    ref.base.drop()


def test_a_killed_scheduler_then_rerun_equals_one_scheduler_run(
        scheduler_ref: SchedulerReference, crash_dir: Path, rng: random.Random) -> None:
    result = scheduler_kill_trial(scheduler_ref, crash_dir, rng)
    assert result.ok, result.report()
