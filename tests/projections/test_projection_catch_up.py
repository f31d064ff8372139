"""Catch-up (issue 11): the figures the runner computes only where a page can move them.

The runner computes figures for the account events of each page (margin figures alone, except
an account's last event of the page, which also gives its debts) with markets built once per
span between two reference changes. A mark price moves figures only where it is in force:
the rows of holders of that symbol whose `at` is at or after the mark's (a late mark; rows up
to the next mark), never the rows of accounts that do not hold the symbol, never rows before
it. These tests hold the new code to the old definition:
- equivalence (property): page-wise catch-up with random page sizes and a fresh runner every
  few pages (caches start empty) == a rebuild from zero in one page == the ledger's figures
  (`reconcile`: debts, interest, positions, balances and last margin figures against `state`
  as of each account's last event; every margin-state row against `Ledger.figures`);
- a page holding nothing but a late mark price rewrites the holder's rows to hand-computed
  values and leaves every other row as it was; a mark that is not late changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projections_support import (
    START,
    apply,
    dump,
    fresh_store,
    margin_rows_mismatches,
    setup_commands,
    streams,
)
from sqlalchemy import select

from ledger.application import schema
from ledger.application.service import Ledger
from ledger.times import format_at
from projections import runner, tables
from projections.reconcile import reconcile
from projections.runner import Runner


def _catch_up(url: str, page_sizes: list[int], restart_every: int) -> int:
    """Apply the log page by page (sizes cycled), a new runner every `restart_every` pages."""
    applied, turn = 0, 0
    while True:
        worker = Runner(url, page_size=page_sizes[turn % len(page_sizes)])
        try:
            for _ in range(restart_every):
                worker.page_size = page_sizes[turn % len(page_sizes)]
                turn += 1
                count = worker.step()
                applied += count
                if count == 0:
                    return applied
        finally:
            worker.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow], deadline=None, max_examples=15)
@given(feed=streams(max_size=30), batches=st.lists(st.integers(1, 8), min_size=1, max_size=4),
       page_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       restart_every=st.integers(1, 4))
def test_page_wise_catch_up_equals_rebuild_and_state(
        store_url: str, feed: list[dict[str, Any]], batches: list[int], page_sizes: list[int],
        restart_every: int) -> None:
    with fresh_store(store_url) as url:
        writer = Ledger(url)
        try:
            apply(writer, feed, batches)
        finally:
            writer.close()
        applied = _catch_up(url, page_sizes, restart_every)
        assert runner.status(url).lag == 0
        page_wise = dump(url)
        assert runner.rebuild(url, page_size=100_000) == applied  # one page from zero
        assert dump(url) == page_wise
        ledger = Ledger(url)
        engine = schema.create_engine(url)
        try:
            assert reconcile(ledger, engine) == []
            assert margin_rows_mismatches(ledger, url) == []
        finally:
            engine.dispose()
            ledger.close()


def _margin_rows(url: str) -> dict[tuple[str, int], dict[str, Any]]:
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            return {(row.account, row.version): row._asdict()
                    for row in connection.execute(select(tables.margin_state))}
    finally:
        engine.dispose()


def _send(url: str, commands: list[dict[str, Any]]) -> None:
    ledger = Ledger(url)
    try:
        assert apply(ledger, commands, [len(commands)]) == 0
    finally:
        ledger.close()


def test_a_page_with_only_a_late_mark_rewrites_the_holders_rows(store_url: str) -> None:
    """bob (single-asset, 3,000 USDT) buys 10 BTCUSDT (0.001 BTC each) at 50,000 as maker at
    60 s, leverage 10: fee 0.5 × 0.0002 = 0.1 (notional 10 × 0.001 × 50,000 = 500). Then a
    mark of 40,000 stamped 30 s arrives alone: it is in force at 60 s, so bob's rows from the
    fill on move (uPnL 10 × 0.001 × (40,000 − 50,000) = −100, notional 400):
    - after the fee: equity 3,000 − 0.1 − 100 = 2,899.9; MM 400 × 0.005 = 2; IM 400 / 10 = 40;
      available 2,899.9 − 40 = 2,859.9; ratio 2 / 2,899.9; level 2,899.9 / 2;
    - before it (the fill alone): equity 2,900, available 2,860.
    At the 50,000 mark the same row read 2,999.9 / 2.5 / 50 / 2,949.9. Alice and carol hold
    no BTCUSDT: none of their rows moves, nor bob's rows at START. A later mark (120 s, after
    every event) changes no row at all. bob's LeverageChanged at 60 s comes before the
    position, so no mark enters its figures: it does not move either.
    """
    with fresh_store(store_url) as url:
        fill_at = START + timedelta(seconds=60)
        _send(url, [*setup_commands(interest=False),
                    {"type": "fill", "at": format_at(fill_at), "id": "f1", "account": "bob",
                     "symbol": "BTCUSDT", "side": "buy", "qty": "10", "price": "50000",
                     "liquidity": "maker", "margin_type": "cross", "leverage": "10"}])
        runner.run(url, until_caught_up=True)
        before = _margin_rows(url)
        bob = max(version for account, version in before if account == "bob")
        last = before[("bob", bob)]
        assert (last["equity_usd"], last["maintenance_margin_usd"], last["initial_margin_usd"],
                last["available_usd"]) == (Decimal("2999.9"), Decimal("2.5"), Decimal("50"),
                                           Decimal("2949.9"))
        # The fill's events (its LeverageChanged comes before the position: no mark in it).
        moved = {key for key, row in before.items() if key[0] == "bob" and row["at"] == fill_at
                 and row["event_type"] in ("Filled", "FeeCharged")}
        assert len(moved) == 2
        assert ("bob", bob) in moved

        _send(url, [{"type": "mark_price", "at": format_at(START + timedelta(seconds=30)),
                     "symbol": "BTCUSDT", "price": "40000"}])
        assert runner.run(url, until_caught_up=True) == 1  # a page of one mark price
        after = _margin_rows(url)
        last = after[("bob", bob)]
        assert last["equity_usd"] == Decimal("2899.9")
        assert last["effective_equity_usd"] == Decimal("2899.9")
        assert last["maintenance_margin_usd"] == Decimal("2")
        assert last["initial_margin_usd"] == Decimal("40")
        assert last["available_usd"] == Decimal("2859.9")
        assert last["margin_ratio"] == Decimal(2) / Decimal("2899.9")
        assert last["margin_level"] == Decimal("2899.9") / Decimal(2)
        filled = [after[key] for key in moved if after[key]["event_type"] == "Filled"]
        assert [(row["equity_usd"], row["available_usd"]) for row in filled] == [
            (Decimal("2900"), Decimal("2860"))]
        assert {key for key in before if after[key] != before[key]} == moved

        ledger = Ledger(url)
        try:
            assert margin_rows_mismatches(ledger, url) == []
        finally:
            ledger.close()
        tables_before = dump(url)
        _send(url, [{"type": "mark_price", "at": format_at(START + timedelta(seconds=120)),
                     "symbol": "BTCUSDT", "price": "30000"}])
        assert runner.run(url, until_caught_up=True) == 1
        assert dump(url) == tables_before
        assert runner.status(url).lag == 0


def test_a_late_mark_is_seen_by_a_runner_that_already_priced_later_events(
        store_url: str) -> None:
    """One runner, two pages. Page 1: alice and bob go long BTCUSDT at 10 s (mark 50,000), a
    BTC index at 100 s (a reference change), bob deposits at 200 s (priced at mark 50,000).
    Page 2: a mark of 40,000 stamped 50 s, then alice deposits at 60 s: her row must be
    priced at 40,000 (in force at 60 s), not with the market the runner built for bob's row
    — same holdings, and the late mark inserts a change before the span that market was
    cached for. Every row is checked against the ledger's figures.
    """
    def at(seconds: int) -> str:
        return format_at(START + timedelta(seconds=seconds))

    def fill(account: str) -> dict[str, Any]:
        return {"type": "fill", "at": at(10), "id": f"f-{account}", "account": account,
                "symbol": "BTCUSDT", "side": "buy", "qty": "10", "price": "50000",
                "liquidity": "maker", "margin_type": "cross", "leverage": "10"}

    with fresh_store(store_url) as url:
        _send(url, [*setup_commands(interest=False), fill("alice"), fill("bob")])
        _send(url, [{"type": "index_price", "at": at(100), "asset": "BTC",
                     "price": "50000"}])
        _send(url, [{"type": "deposit", "at": at(200), "id": "d-bob", "account": "bob",
                     "asset": "USDT", "amount": "1"}])
        worker = Runner(url)
        try:
            worker.run(until_caught_up=True)
            _send(url, [{"type": "mark_price", "at": at(50), "symbol": "BTCUSDT",
                         "price": "40000"}])
            _send(url, [{"type": "deposit", "at": at(60), "id": "d-alice", "account": "alice",
                         "asset": "USDT", "amount": "1"}])
            assert worker.run(until_caught_up=True) == 2
        finally:
            worker.close()
        rows = _margin_rows(url)
        alice = max(version for account, version in rows if account == "alice")
        # alice: 2,000 − fee 0.1 + 1 = 2,000.9 USDT, uPnL 10 × 0.001 × (40,000 − 50,000) = −100.
        assert rows[("alice", alice)]["equity_usd"] == Decimal("1900.9")
        ledger = Ledger(url)
        try:
            assert margin_rows_mismatches(ledger, url) == []
        finally:
            ledger.close()
