"""Crash safety: a runner killed at any point and started again ends with the same tables.

The kill is an exception raised by the writer's hook at a chosen point: between two rows of a
statement, after a statement, or after every row and the tracking move but before the commit.
The page's transaction rolls back; the next runner (a new object, as after a restart) resumes
from the committed position. Whatever the points, the read models end identical, row for row,
to an uninterrupted run's (DESIGN §9: no lost and no doubled row).

A second test kills a real `projections run` process (SIGKILL, no clean-up at all) in the
middle of a catch-up and starts it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projections_support import apply, dump, fresh_store, seeded_feed
from sqlalchemy import delete

from ledger.application import schema
from ledger.application.service import Ledger
from projections import runner, tables
from projections.runner import Runner


class Crash(Exception):
    """The injected kill."""


def _empty_read_models(url: str) -> None:
    engine = schema.create_engine(url, write=True)
    try:
        with engine.begin() as connection:
            connection.execute(delete(tables.tracking))
            for table in tables.READ_MODEL_TABLES:
                connection.execute(delete(table))
    finally:
        engine.dispose()


def _killer(at_call: int, calls: list[str]) -> Any:
    def hook(point: str) -> None:
        calls.append(point)
        if len(calls) == at_call:
            raise Crash(f"killed at hook call {at_call} ({point})")

    return hook


def _run_with_kills(url: str, page_size: int, kills: list[int]) -> int:
    """Run to the end, killing the runner at each given hook call (counted per runner)."""
    crashes = 0
    for at_call in [*kills, 0]:
        calls: list[str] = []
        worker = Runner(url, page_size=page_size, hook=_killer(at_call, calls))
        try:
            worker.run(until_caught_up=True)
        except Crash:
            crashes += 1
        finally:
            worker.close()
    return crashes


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow], deadline=None, max_examples=5)
@given(kills=st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=4),
       page_size=st.sampled_from([2, 5, 1000]))
def test_killed_runner_ends_with_the_same_tables(store_url: str, kills: list[int],
                                                 page_size: int) -> None:
    feed = seeded_feed(6, size=25)
    with fresh_store(store_url) as url:
        writer = Ledger(url)
        try:
            apply(writer, feed, [2, 5, 1])
        finally:
            writer.close()
        runner.run(url, until_caught_up=True, page_size=page_size)
        uninterrupted = dump(url)
        _empty_read_models(url)
        _run_with_kills(url, page_size, kills)
        assert dump(url) == uninterrupted


@pytest.mark.parametrize("point", ["row", "statement", "commit"])
def test_each_kind_of_point_loses_and_doubles_nothing(store_url: str, point: str) -> None:
    """Kill every page once, at its first hook call of one kind, then let it through."""
    feed = seeded_feed(11, size=25)
    with fresh_store(store_url) as url:
        writer = Ledger(url)
        try:
            apply(writer, feed, [3])
        finally:
            writer.close()
        runner.run(url, until_caught_up=True)
        uninterrupted = dump(url)  # the same rows whatever the page size
        _empty_read_models(url)
        killed: set[int | None] = set()
        for _ in range(1000):
            worker = Runner(url, page_size=8)

            def hook(where: str, worker: Runner = worker) -> None:
                if where == point and worker.position not in killed:
                    killed.add(worker.position)
                    raise Crash(f"{where} in the page after {worker.position}")

            worker.hook = hook
            try:
                worker.run(until_caught_up=True)
                break
            except Crash:
                continue
            finally:
                worker.close()
        assert len(killed) > 3
        assert dump(url) == uninterrupted


def test_sigkilled_process_resumes(store_url: str, tmp_path: Any) -> None:
    """SIGKILL a real runner process mid catch-up; a new one finishes with the same tables."""
    feed = seeded_feed(3, size=30)
    with fresh_store(store_url) as url:
        writer = Ledger(url)
        try:
            apply(writer, feed, [1])
        finally:
            writer.close()
        runner.run(url, until_caught_up=True)
        uninterrupted = dump(url)
        _empty_read_models(url)
        script = ("import sys, time\n"
                  "from ledger.numbers import install\n"
                  "from projections.runner import Runner\n"
                  "install()\n"
                  "worker = Runner(sys.argv[1], page_size=1)\n"
                  "print('ready', flush=True)\n"
                  "while worker.step():\n"
                  "    time.sleep(0.002)\n")
        process = subprocess.Popen([sys.executable, "-c", script, url],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while runner.status(url).position < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert runner.status(url).lag > 0, "the process finished before it was killed"
        runner.run(url, until_caught_up=True, page_size=3)
        assert dump(url) == uninterrupted
