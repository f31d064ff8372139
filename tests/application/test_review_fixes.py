"""Defects found in review (issues 12 and 15), each pinned by a test that failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

CALL = {"type": "instrument", "at": "2025-01-01T00:00:00Z", "symbol": "C1", "kind": "option",
        "option_type": "call", "strike": "66000", "expiry": "2025-04-01T00:00:00Z",
        "base": "BTC", "settle": "USDT", "contract_size": "0.01"}
HEAD = [
    {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "USDT", "precision": 8},
    {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "BTC", "precision": 8},
    {"type": "index_price", "at": "2025-01-01T00:00:00Z", "asset": "BTC", "price": "60000"},
    CALL,
]


def _run(ledger: Ledger, lines: list[dict[str, object]]) -> list[tuple[int, str]]:
    report = run_feed(ledger, iter((n, json.dumps(line)) for n, line in enumerate(lines, 1)))
    assert report.internal_error is None
    return [(r.line, r.error) for r in report.rejected]


@pytest.mark.parametrize("field,value", [("option_type", "put"), ("strike", "100000"),
                                         ("contract_size", "1"), ("settle", "BTC")])
def test_an_options_defining_terms_may_not_change_after_listing(
        store_url: str, field: str, value: str) -> None:
    """A holder bought a 66,000 call of 0.01 BTC: re-listing it as anything else would change
    what it pays at expiry. The change is invalid_input and the terms stay as listed."""
    ledger = Ledger(store_url)
    changed = {**CALL, "at": "2025-02-01T00:00:00Z", field: value}
    assert _run(ledger, [*HEAD, changed]) == [(5, "invalid_input")]
    fee_change = {**CALL, "at": "2025-02-01T00:00:00Z", "taker_fee_rate": "0.0003"}
    assert _run(ledger, [fee_change]) == []  # a fee rate is not a defining term
    terms = ledger.refs.require_instrument("C1", datetime(2025, 3, 1, tzinfo=UTC))
    assert (terms.option_type, terms.strike, terms.contract_size, terms.settle) == (
        "call", Decimal("66000"), Decimal("0.01"), "USDT")


def test_a_statement_from_the_first_instant_of_the_calendar_opens_empty(sqlite_url: str,
                                                                        tmp_path: Path) -> None:
    lines = [HEAD[0], {"type": "open_account", "at": "2025-01-01T00:00:00Z", "account": "alice",
                       "mode": "single_asset"},
             {"type": "deposit", "at": "2025-01-01T00:00:00Z", "id": "d1",
                       "account": "alice", "asset": "USDT", "amount": "10"}]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    run_feed(Ledger(sqlite_url), read_lines(str(feed)))
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "--db", sqlite_url, "statement", "alice",
         "--from", "0001-01-01T00:00:00Z", "--to", "2025-01-02T00:00:00Z", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    statement = json.loads(done.stdout)
    assert statement["from"] == "0001-01-01T00:00:00Z"  # RFC 3339: four digits of year
    assert statement["opening"] == {}
    assert [(p["event"], p["amount"]) for p in statement["postings"]] == [("Deposited", "10")]
    assert statement["closing"] == {"USDT": "10"}


def test_publish_never_prints_the_nats_password(sqlite_url: str, tmp_path: Path) -> None:
    run_feed(Ledger(sqlite_url), iter([(1, json.dumps(HEAD[0]))]))
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "--db", sqlite_url, "publish", "--nats",
         "nats://alice:s3cretpw@127.0.0.1:1", "--once"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"] == "nats_unavailable"
    assert "s3cretpw" not in done.stdout + done.stderr
