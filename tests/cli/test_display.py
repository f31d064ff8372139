"""Issue 13, point 5: tables round for people through one helper; `--json` stays exact.

Before: tables printed 34-digit decimals and `None`, and an inverse position's PnL that is
exactly −2.5 printed as −2.49999999999999999999999999999999 even in `--json`.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from cli_support import alice, ledger, market, write_feed

from ledger import display

INVERSE = [
    {"type": "asset", "at": "2025-03-01T00:00:00Z", "asset": "BTC", "precision": 8},
    {"type": "instrument", "at": "2025-03-01T00:00:00Z", "symbol": "BTCUSD",
     "kind": "inverse_perpetual", "base": "BTC", "settle": "BTC", "contract_size": "0.125",
     "taker_fee_rate": "0", "maker_fee_rate": "0",
     "risk_tiers": [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]},
    {"type": "mark_price", "at": "2025-03-01T00:00:00Z", "symbol": "BTCUSD", "price": "3"},
    {"type": "index_price", "at": "2025-03-01T00:00:00Z", "asset": "BTC", "price": "3"},
    {"type": "open_account", "at": "2025-03-01T00:00:00Z", "account": "bob",
     "mode": "single_asset"},
    {"type": "deposit", "at": "2025-03-01T00:00:00Z", "id": "d1", "account": "bob",
     "asset": "BTC", "amount": "100"},
    {"type": "fill", "at": "2025-03-01T00:00:00Z", "id": "f1", "account": "bob",
     "symbol": "BTCUSD", "side": "sell", "qty": "105", "price": "3", "liquidity": "taker"},
    {"type": "mark_price", "at": "2025-03-01T01:00:00Z", "symbol": "BTCUSD", "price": "7"},
]


def test_an_exact_inverse_pnl_prints_exactly_in_json_and_in_the_table(tmp_path: Path) -> None:
    """bob is short 105 contracts of 0.125 USD from 3; at mark 7 his PnL is
    −13.125 × (1/3 − 1/7) = −13.125 × 4/21 = −2.5 BTC; equity 100 − 2.5 = 97.5 BTC, at index
    3 USD = 292.5 USD; margin ratio = MM / equity = (105 × 0.125 / 7 × 0.005) × 3 / 292.5
    = 0.028125 / 292.5 = 0.0000961538…, shown to 4 places as 0.0001."""
    feed = write_feed(tmp_path / "inverse.jsonl", INVERSE)
    assert ledger("--db", "sqlite:///inv.db", "run", str(feed), cwd=tmp_path).returncode == 0
    exact = ledger("--db", "sqlite:///inv.db", "state", "bob", "--json", cwd=tmp_path)
    state = json.loads(exact.stdout)
    assert state["positions"][0]["unrealized_pnl"] == "-2.5"
    assert state["collateral"]["BTC"]["equity"] == "97.5"
    assert Decimal(state["margin"]["margin_ratio"]) == Decimal("0.028125") / Decimal("292.5")
    table = ledger("--db", "sqlite:///inv.db", "state", "bob", cwd=tmp_path).stdout
    row = next(line for line in table.splitlines() if "BTCUSD" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    # symbol, type, side, qty, entry, mark, uPnL, MM, IM, liq. price
    assert cells == ["BTCUSD", "cross", "short", "105", "3", "7", "-2.5", "0.009375", "0.1875",
                     "—"]
    assert re.search(r"margin_ratio\s+0\.0001\s", table)
    assert re.search(r"equity_usd\s+292\.50\s", table)
    assert "None" not in table


def test_prices_round_to_the_marks_places_and_usd_to_cents(tmp_path: Path) -> None:
    """alice buys 100 at 60,000 and 200 at 60,001: entry (6,000,000 + 12,000,200) / 300 =
    60,000.666…; the mark is quoted to 0.1 (60,000.5), so the table shows 60000.7. Her PnL
    0.3 × (60,000.5 − 60,000.666…) = −0.05 USDT; the JSON keeps every digit."""
    more = [{"type": "fill", "at": "2025-03-01T01:00:00Z", "id": "f2", "account": "alice",
             "symbol": "BTCUSDT", "side": "buy", "qty": "200", "price": "60001",
             "liquidity": "taker"},
            {"type": "mark_price", "at": "2025-03-01T02:00:00Z", "symbol": "BTCUSDT",
             "price": "60000.5"}]
    feed = write_feed(tmp_path / "feed.jsonl", market() + alice() + more)
    assert ledger("--db", "sqlite:///a.db", "run", str(feed), cwd=tmp_path).returncode == 0
    exact = json.loads(ledger("--db", "sqlite:///a.db", "state", "alice", "--json",
                              cwd=tmp_path).stdout)
    position = exact["positions"][0]
    assert Decimal(position["entry_price"]) == Decimal(18_000_200) / 300
    assert len(position["entry_price"]) > 30  # exact: 34 significant digits
    table = ledger("--db", "sqlite:///a.db", "state", "alice", cwd=tmp_path).stdout
    row = next(line for line in table.splitlines() if "BTCUSDT" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[3:7] == ["300", "60000.7", "60000.5", "-0.05"]
    assert not re.search(r"\d{16}", table)  # no long runs of digits anywhere


@pytest.mark.parametrize(("value", "places", "shown"), [
    ("0.00005", 4, "0.0000"),   # half-even: a tie goes to the even digit 0
    ("0.00015", 4, "0.0002"),   # … and here to 2
    ("-0.001", 2, "0.00"),      # a rounded zero is never "-0.00"
    ("123456789012345678901234567890.125", 2, "123456789012345678901234567890.12"),
])
def test_the_display_helper_rounds_half_even(value: str, places: int, shown: str) -> None:
    assert display.rounded(value, places) == shown


def test_undefined_figures_show_a_dash() -> None:
    assert display.ratio(None) == "—"
    assert display.price(None, "7") == "—"
    assert display.amount("100.00000000", 8) == "100"
