"""`reconcile` reports what does not agree, naming the account, the asset and both amounts.

The store is the contract's interest scenario plus a transfer (hand-checked balances below),
projected and clean; then one difference is planted at a time: a read-model balance, a journal
line, a statement row, a position row.

Balances after the feed (contract scenario `interest-per-second`, then a transfer of 0.25 BTC
from alice to bob at 02:00):
- alice: BTC 1 − 0.25 = 0.75; USDT −10,000 realised − 0.11415526 interest = −10,000.11415526
- bob: BTC 1 + 0.25 = 1.25; USDT −10,000 realised
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from projections_support import fresh_store
from sqlalchemy import update

from ledger.application import schema
from ledger.application.commands import parse_command
from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger
from projections import runner, tables
from projections.reconcile import Difference, reconcile

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "interest-per-second"


def _store(url: str) -> None:
    ledger = Ledger(url)
    try:
        report = run_feed(ledger, read_lines(str(SCENARIO / "feed.jsonl")))
        assert report.internal_error is None and not report.rejected
        ledger.handle(parse_command({"type": "transfer", "at": "2025-01-01T02:00:00Z",
                                     "id": "t1", "from": "alice", "to": "bob",
                                     "asset": "BTC", "amount": "0.25"}))
    finally:
        ledger.close()
    runner.run(url, until_caught_up=True)


def _reconcile(url: str, statement: Path | None = None) -> list[Difference]:
    ledger = Ledger(url)
    engine = schema.create_engine(url)
    try:
        return reconcile(ledger, engine, statement)
    finally:
        engine.dispose()
        ledger.close()


def test_a_clean_store_reconciles(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _store(url)
        assert _reconcile(url) == []


def test_a_planted_balance_is_reported_with_both_amounts(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _store(url)
        engine = schema.create_engine(url)
        with engine.begin() as connection:
            connection.execute(update(tables.balances).where(
                tables.balances.c.account == "alice", tables.balances.c.asset == "USDT")
                .values(balance=Decimal("-10000.01")))
        engine.dispose()
        found = _reconcile(url)
    assert Difference("read_model", "alice", "USDT", "-10000.11415526", "-10000.01",
                      "projection_balances.balance") in found
    assert Difference("journal_balance", "alice", "USDT", "-10000.11415526", "-10000.01",
                      "projection_balances against projection_journal") in found
    assert {d.account for d in found} == {"alice"}


def test_a_planted_journal_line_breaks_the_sums(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _store(url)
        engine = schema.create_engine(url)
        journal = tables.journal
        with engine.begin() as connection:
            connection.execute(update(journal).where(
                journal.c.account == "bob", journal.c.event_type == "TransferredIn")
                .values(amount=Decimal("0.26")))
        engine.dispose()
        found = _reconcile(url)
    assert Difference("journal_total", "*", "BTC", "0", "0.01", "projection_journal") in found
    assert Difference("journal_balance", "bob", "BTC", "1.26", "1.25",
                      "projection_balances against projection_journal") in found


def test_a_planted_position_field_is_named(store_url: str) -> None:
    with fresh_store(store_url) as url:
        _store(url)
        ledger = Ledger(url)
        try:
            for command in ({"type": "fill", "at": "2025-01-01T03:00:00Z", "id": "f9",
                             "account": "bob", "symbol": "BTCUSDT", "side": "buy", "qty": "10",
                             "price": "40000", "fee": "0"},):
                ledger.handle(parse_command(command))
        finally:
            ledger.close()
        runner.run(url, until_caught_up=True)
        engine = schema.create_engine(url)
        with engine.begin() as connection:
            connection.execute(update(tables.positions).where(
                tables.positions.c.account == "bob").values(entry_price=Decimal("39999")))
        engine.dispose()
        found = _reconcile(url)
    assert found == [Difference("read_model", "bob", "BTCUSDT:cross", "40000", "39999",
                                "projection_positions.entry_price")]


def test_a_statement_row_that_differs_is_reported(store_url: str, tmp_path: Path) -> None:
    statement = tmp_path / "bank.csv"
    statement.write_text(
        "account,asset,balance,as_of\n"
        "alice,BTC,1,2025-01-01T00:00:00Z\n"  # agrees
        "alice,BTC,1,2025-01-01T01:30:00Z\n"  # agrees: before the transfer
        "bob,BTC,1.2,2025-01-01T02:00:00Z\n"  # the ledger says 1.25
        "dave,USDT,5,2025-01-01T02:00:00Z\n",  # an account the ledger does not know
        encoding="utf-8")
    with fresh_store(store_url) as url:
        _store(url)
        found = _reconcile(url, statement)
    assert found == [
        Difference("statement", "bob", "BTC", "1.25", "1.2", "bank.csv line 4 "
                   "(as of 2025-01-01T02:00:00Z)"),
        Difference("statement", "dave", "USDT", None, "5", "bank.csv line 5 "
                   "(as of 2025-01-01T02:00:00Z)"),
    ]
