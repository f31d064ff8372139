"""Interest on a liability that comes from an unrealised loss alone (DESIGN 6.8, 6.11).

DESIGN 6.11: `debts[coin] = max(0, −e)`, "the same liability that accrues interest", with
`e = wallet + unrealised PnL of cross positions settled in that coin`. An account that never
held the coin in its wallet still has a liability when a position settled in it loses.

The market, by hand: USDT 10 %/year, the first 100 free (`excess`); BTC index 30,000; BTCUSDT
linear, size 0.0001 BTC, mark 30,000. m (multi_asset) deposits 1 BTC and, at 01:00, buys
10,000 contracts = 1 BTC @30,200 with a fee of 0: USDT wallet none, unrealised
1 × (30,000 − 30,200) = −200, so e = −200, debt 200, 100 above the free amount.
From 01:00 to 10:00 (32,400 s): 100 × 0.10 × 32,400 / 31,536,000 = 0.0102739726027397260273…
(34 digits: 0.0102739726027397260273972602739726), charged rounded up: 0.01027398.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.feed import run_feed
from ledger.application.service import Ledger
from ledger.times import parse_at


def at(hour: int) -> str:
    return f"2025-01-01T{hour:02d}:00:00Z"


FEED: list[dict[str, Any]] = [
    {"type": "asset", "at": at(0), "asset": "USDT", "precision": 8,
     "interest": {"annual_rate": "0.10", "free_amount": "100"}},
    {"type": "asset", "at": at(0), "asset": "BTC", "precision": 8},
    {"type": "index_price", "at": at(0), "asset": "BTC", "price": "30000"},
    {"type": "instrument", "at": at(0), "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.0001",
     "risk_tiers": [{"up_to": None, "mmr": "0.004", "max_leverage": "125"}]},
    {"type": "mark_price", "at": at(0), "symbol": "BTCUSDT", "price": "30000"},
    {"type": "open_account", "at": at(0), "account": "m", "mode": "multi_asset"},
    {"type": "deposit", "at": at(0), "id": "d1", "account": "m", "asset": "BTC", "amount": "1"},
    {"type": "fill", "at": at(1), "id": "f1", "account": "m", "symbol": "BTCUSDT", "side": "buy",
     "qty": "10000", "price": "30200", "fee": "0"},
]


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    app = Ledger(store_url)
    report = run_feed(app, enumerate((json.dumps(c) for c in FEED), start=1))
    assert report.rejected == [] and report.internal_error is None
    yield app
    app.close()


def test_the_debt_is_the_unrealised_loss(ledger: Ledger) -> None:
    """A control: e = 1 × (30,000 − 30,200) = −200, debt 200, no wallet entry for USDT."""
    state = queries.state(ledger, "m", parse_at(at(10)))
    assert state["debts"]["USDT"] == "200"
    assert "USDT" not in state["balances"]


def test_a_liability_from_an_unrealised_loss_alone_accrues_interest(ledger: Ledger) -> None:
    state = queries.state(ledger, "m", parse_at(at(10)))
    assert state["interest"] == {
        "USDT": {"accrued": "0.0102739726027397260273972602739726", "charged": "0"}}


def test_a_liability_from_an_unrealised_loss_alone_is_charged(ledger: Ledger) -> None:
    report = run_feed(ledger, [(1, json.dumps({"type": "charge_interest", "at": at(10)}))])
    assert report.rejected == []
    charged = [e for e in queries.events(ledger, "m") if e["type"] == "InterestCharged"]
    assert [e["amount"] for e in charged] == ["0.01027398"]
