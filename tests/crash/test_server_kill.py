"""Issue 10, part 4: the PostgreSQL server killed (`pg_ctl stop -m immediate`) in the middle
of `ledger run`: the run exits 2 with a JSON line `"error":"store_unavailable"` naming the last
committed line (no Traceback); after a restart the store holds exactly lines 1..that line, and
a re-run of the feed ends identical to one uninterrupted run.

A private cluster of the test's own (initdb, pg_ctl; `runuser -u postgres` under root), on a
free port of 127.0.0.1 with its socket in the temp dir.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .pgcluster import cluster_unavailable, server_kill_trial


def test_a_server_killed_mid_run_exits_2_and_a_rerun_finishes(
        crash_feed: Path, crash_dir: Path, rng: random.Random) -> None:
    if reason := cluster_unavailable():
        pytest.skip(reason)
    result = server_kill_trial(crash_feed, crash_dir, rng, wait=45)
    assert result.ok, result.report()
