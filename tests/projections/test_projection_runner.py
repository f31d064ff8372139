"""The runner: lag, rebuild, two runners, following the log live, and the contract scenarios.

Every contract scenario (portfolio margin included, which the random streams do not reach) is
fed, projected in pages of 2 and reconciled: nothing may differ. The tables do not depend on
the page size. Two runners on one store never write a page twice. A live runner follows new
events — on PostgreSQL woken by NOTIFY alone (its polling interval is longer than the test).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from projections_support import apply, dump, fresh_store, seeded_feed
from sqlalchemy import insert, select, text, update

from ledger.application import schema
from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger
from projections import runner, tables
from projections.reconcile import reconcile
from projections.runner import APPLICATION, OutOfStep, Runner
from projections.view import ReadModelView, TrackingConflict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SUPPORTED = [line.strip() for line in (SCENARIOS / "supported.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]


def _fill(url: str, seed: int = 5, size: int = 25) -> None:
    ledger = Ledger(url)
    try:
        apply(ledger, seeded_feed(seed, size=size), [4, 1])
    finally:
        ledger.close()


@pytest.mark.parametrize("name", SUPPORTED)
def test_contract_scenarios_reconcile(store_url: str, name: str) -> None:
    with fresh_store(store_url) as url:
        ledger = Ledger(url)
        try:
            report = run_feed(ledger, read_lines(str(SCENARIOS / name / "feed.jsonl")),
                              batch_size=3)
            assert report.internal_error is None
        finally:
            ledger.close()
        runner.run(url, until_caught_up=True, page_size=2)
        reader = Ledger(url)
        engine = schema.create_engine(url)
        try:
            assert reconcile(reader, engine) == []
        finally:
            engine.dispose()
            reader.close()


def test_status_shows_the_lag(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _fill(url)
        before = runner.status(url)
        assert before.head > 0
        assert before.lag == before.head
        assert set(before.positions.values()) == {0}
        applied = runner.run(url, until_caught_up=True, page_size=7)
        after = runner.status(url)
        assert applied > 0
        assert after.lag == 0
        assert set(after.positions.values()) == {after.head}


def test_rebuild_and_page_size_give_the_same_rows(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _fill(url)
        runner.run(url, until_caught_up=True, page_size=1)
        one_by_one = dump(url)
        assert runner.rebuild(url) > 0
        assert dump(url) == one_by_one


def test_two_runners_never_write_a_page_twice(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _fill(url)
        runner.run(url, until_caught_up=True)
        alone = dump(url)
        engine = schema.create_engine(url, write=True)
        with engine.begin() as connection:  # the read models from zero
            connection.execute(tables.tracking.delete())
            for table in tables.READ_MODEL_TABLES:
                connection.execute(table.delete())
        engine.dispose()
        first, second = Runner(url, page_size=5), Runner(url, page_size=5)
        try:
            assert first.step() == 5
            with pytest.raises(TrackingConflict):
                second.step()  # it started from the same position: refused, rolled back
            assert second.run(until_caught_up=True) > 0  # reloaded from the tables
            assert first.run(until_caught_up=True) == 0  # conflict, reload, nothing left
        finally:
            first.close()
            second.close()
        assert dump(url) == alone


def test_projections_out_of_step_are_refused(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _fill(url, size=5)
        runner.run(url, until_caught_up=True)
        engine = schema.create_engine(url, write=True)
        with engine.begin() as connection:
            connection.execute(update(tables.tracking).where(
                tables.tracking.c.projection == "journal").values(notification_id=1))
        engine.dispose()
        with pytest.raises(OutOfStep):
            Runner(url)
        runner.rebuild(url)
        assert runner.status(url).lag == 0


def test_a_live_runner_follows_new_events(store_url: str) -> None:
    """PostgreSQL: the runner waits up to 60 s between polls, so only NOTIFY can wake it."""
    with fresh_store(store_url) as url:
        _fill(url, size=5)
        poll_s = 60.0 if schema.is_postgres(url) else 0.05
        stop = threading.Event()
        worker = Runner(url, page_size=100)
        errors: list[BaseException] = []

        def follow() -> None:
            try:
                worker.run(stop=stop, poll_s=poll_s)
            except BaseException as error:  # noqa: BLE001 - reported by the test thread
                errors.append(error)

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            view = ReadModelView(worker.engine, "journal")
            view.wait(APPLICATION, runner.status(url).head, timeout=10)
            time.sleep(0.2)  # the runner is now waiting for a notification
            ledger = Ledger(url)
            try:
                apply(ledger, seeded_feed(8, size=10)[13:], [2])
            finally:
                ledger.close()
            started = time.monotonic()
            view.wait(APPLICATION, runner.status(url).head, timeout=10)
            assert time.monotonic() - started < 10
        finally:
            stop.set()
            if schema.is_postgres(url):  # wake the LISTEN so that it sees `stop`
                engine = schema.create_engine(url)
                with engine.begin() as connection:
                    connection.execute(text("NOTIFY ledger_events"))
                engine.dispose()
            thread.join(timeout=70)
            worker.close()
        assert not errors
        assert runner.status(url).lag == 0


@pytest.mark.parametrize("value", ["0.1141552511415525114155251141552511", "1.50", "0E-8",
                                   "123456789012345678901234567890.1234", "1E-30", "7E+5"])
def test_exact_decimals_come_back_exactly(store_url: str, value: str) -> None:
    with fresh_store(store_url) as url:
        engine = schema.create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(insert(tables.system_balances).values(
                    account="system:test", asset="X", balance=Decimal(value),
                    notification_id=1))
                found = connection.execute(select(tables.system_balances.c.balance)).scalar()
        finally:
            engine.dispose()
    assert found == Decimal(value)
    assert format(found, "f") == format(Decimal(value), "f")


def test_interest_now_view_accrues_to_the_second(postgres_url: str) -> None:
    """PostgreSQL only (SQLite stores decimals as text: no view). 10,000 owed, 100 free
    (excess), 10 %, one hour after the last event: 9,900 × 0.10 × 3,600 / 31,536,000 =
    0.11301369863… on top of the 0.5 accrued then."""
    with fresh_store(postgres_url) as url:
        engine = schema.create_engine(url)
        try:
            with engine.begin() as connection:
                now = connection.execute(text("SELECT date_trunc('second', now())")).scalar()
                assert isinstance(now, datetime)
                connection.execute(insert(tables.interest).values(
                    account="alice", asset="USDT", liability=Decimal("10000"),
                    annual_rate=Decimal("0.10"), free_amount=Decimal("100"),
                    free_mode="excess", accrued=Decimal("0.5"), charged=Decimal("0"),
                    as_of=now - timedelta(hours=1), version=3))
                accrued = connection.execute(text(
                    "SELECT accrued_now FROM projection_interest_now")).scalar()
        finally:
            engine.dispose()
    assert isinstance(accrued, Decimal)
    assert accrued.quantize(Decimal("1E-12"), rounding=ROUND_HALF_EVEN) == Decimal(
        "0.613013698630")
