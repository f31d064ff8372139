"""Isolated margin, liquidation prices, automatic top-up and the margin sweep (issue 3).

End to end through `Ledger.handle` on both stores, read back through `queries.state` and
`queries.events` (the contract's JSON). Every expected figure is computed by hand in the
docstring (DESIGN 6.5, 6.11; contract/README.md).

Reference data used throughout (fees 0 unless a fill says otherwise, USDT index 1):

- linear ETH perpetuals, contract size 0.01 ETH, tiers (settle USDT notional)
  tier 1 ≤ 10,000 at 4 % (max 20×), tier 2 ≤ 100,000 at 5 % (max 10×, deduction
  10,000 × 1 % = 100), tier 3 above at 10 % (max 5×, deduction 100 + 100,000 × 5 % = 5,100):
  `ETH-ENTRY` (mm_basis entry), `ETH-MARK` (mm_basis mark), `ETH-INIT` (entry, auto_add_amount
  initial);
- inverse BTC perpetuals, contract size 100 USD, settled in BTC, tiers (coin notional)
  tier 1 ≤ 10 BTC at 1 % (max 50×), tier 2 ≤ 100 at 2 % (max 20×), tier 3 above at 5 % (max 10×):
  `BTCUSD-ENTRY` (entry), `BTCUSD-MARK` (mark). BTC index 50,000.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.errors import (
    InsufficientMarginError,
    InvalidInputError,
    LedgerError,
    NotAllowedInModeError,
    UnknownSymbolError,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def t(seconds: int = 0) -> str:
    """RFC 3339 text of T0 + `seconds`."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(seconds: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


HOUR = 3600


def apply(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    """Apply every command in one batch; any rejection fails the test (raises)."""
    with ledger.batch():
        for data in commands:
            ledger.handle(parse_command(data))


def reject(
    ledger: Ledger, data: dict[str, Any], error: type[LedgerError], code: str,
    accounts: list[str],
) -> None:
    """Send one command that must be rejected with `error`/`code`, and check that the state and
    the events of `accounts` are exactly as they were."""
    before = {name: (queries.state(ledger, name), queries.events(ledger, name))
              for name in accounts}
    with pytest.raises(error) as caught:
        ledger.handle(parse_command(data))
    assert caught.value.code == code
    after = {name: (queries.state(ledger, name), queries.events(ledger, name))
             for name in accounts}
    assert after == before


def position(state: dict[str, Any], symbol: str) -> dict[str, Any]:
    found = [p for p in state["positions"] if p["symbol"] == symbol]
    assert len(found) == 1, (symbol, state["positions"])
    return found[0]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


LINEAR_TIERS = [
    {"up_to": "10000", "mmr": "0.04", "max_leverage": "20"},
    {"up_to": "100000", "mmr": "0.05", "max_leverage": "10"},
    {"up_to": None, "mmr": "0.1", "max_leverage": "5"},
]
INVERSE_TIERS = [
    {"up_to": "10", "mmr": "0.01", "max_leverage": "50"},
    {"up_to": "100", "mmr": "0.02", "max_leverage": "20"},
    {"up_to": None, "mmr": "0.05", "max_leverage": "10"},
]


def linear(symbol: str, basis: str, auto_add: str = "maintenance") -> dict[str, Any]:
    return {"type": "instrument", "at": t(), "symbol": symbol, "kind": "linear_perpetual",
            "base": "ETH", "settle": "USDT", "contract_size": "0.01", "mm_basis": basis,
            "auto_add_amount": auto_add, "risk_tiers": LINEAR_TIERS}


def inverse(symbol: str, basis: str) -> dict[str, Any]:
    return {"type": "instrument", "at": t(), "symbol": symbol, "kind": "inverse_perpetual",
            "base": "BTC", "settle": "BTC", "contract_size": "100", "mm_basis": basis,
            "risk_tiers": INVERSE_TIERS}


def mark(symbol: str, price: str, at: int = 0) -> dict[str, Any]:
    return {"type": "mark_price", "at": t(at), "symbol": symbol, "price": price}


def reference() -> list[dict[str, Any]]:
    return [
        {"type": "asset", "at": t(), "asset": "USDT", "precision": 8},
        {"type": "asset", "at": t(), "asset": "ETH", "precision": 8},
        {"type": "asset", "at": t(), "asset": "BTC", "precision": 8},
        {"type": "index_price", "at": t(), "asset": "ETH", "price": "2000"},
        {"type": "index_price", "at": t(), "asset": "BTC", "price": "50000"},
        linear("ETH-ENTRY", "entry"),
        linear("ETH-MARK", "mark"),
        linear("ETH-INIT", "entry", auto_add="initial"),
        inverse("BTCUSD-ENTRY", "entry"),
        inverse("BTCUSD-MARK", "mark"),
        mark("ETH-ENTRY", "2000"),
        mark("ETH-MARK", "2000"),
        mark("ETH-INIT", "2000"),
        mark("BTCUSD-ENTRY", "50000"),
        mark("BTCUSD-MARK", "50000"),
    ]


def account(name: str, deposits: dict[str, str], mode: str = "single_asset",
            at: int = 0) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = [
        {"type": "open_account", "at": t(at), "account": name, "mode": mode}]
    for number, (asset, amount) in enumerate(sorted(deposits.items())):
        commands.append({"type": "deposit", "at": t(at), "id": f"d{number}", "account": name,
                         "asset": asset, "amount": amount})
    return commands


def fill(name: str, symbol: str, side: str, qty: str, price: str, *, ident: str = "f1",
         margin_type: str = "isolated", leverage: str | None = None, fee: str = "0",
         at: int = 0, liquidation: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "fill", "at": t(at), "id": ident, "account": name,
                            "symbol": symbol, "side": side, "qty": qty, "price": price,
                            "fee": fee, "margin_type": margin_type, "liquidation": liquidation}
    if leverage is not None:
        data["leverage"] = leverage
    return data


def sweep(at: int) -> dict[str, Any]:
    return {"type": "check_margin", "at": t(at)}


def auto_add(name: str, symbol: str, at: int = 0) -> dict[str, Any]:
    return {"type": "set_auto_add_margin", "at": t(at), "account": name, "symbol": symbol,
            "enabled": True}


def adjust(name: str, symbol: str, amount: str, ident: str, at: int = 0) -> dict[str, Any]:
    return {"type": "adjust_isolated_margin", "at": t(at), "id": ident, "account": name,
            "symbol": symbol, "amount": amount}


# ----------------------------------------------------------------------------- liquidation price


def test_entry_basis_liquidation_prices_linear_and_inverse_long_and_short(
        store_url: str) -> None:
    """mm_basis entry (DESIGN 6.5 closed form), MM fixed at the entry notional.

    Linear, 400 × 0.01 = 4 ETH @2,000 (notional 8,000, tier 1: MM 320), 10×: PM 800.
      long  LP = (MM − PM + E·Q·F)/(Q·F) = (320 − 800 + 8,000)/4 = 1,880;
      short LP = (E·Q·F − MM + PM)/(Q·F) = (8,000 − 320 + 800)/4 = 2,120.
    Inverse, 1 BTC of notional each (Q·F = E), 20×: PM = 1/20 = 0.05 BTC, MM 1 % of 1 = 0.01.
      long 520 × 100 USD @52,000:  LP = Q·F/(PM + Q·F/E − MM) = 52,000/(0.05 + 1 − 0.01)
                                      = 52,000/1.04 = 50,000;
      short 480 × 100 USD @48,000: LP = Q·F/(MM − PM + Q·F/E) = 48,000/(0.01 − 0.05 + 1)
                                      = 48,000/0.96 = 50,000.
    """
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"USDT": "1000", "BTC": "1"}),
        *account("bob", {"USDT": "1000", "BTC": "1"}),
        fill("alice", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        fill("alice", "BTCUSD-ENTRY", "buy", "520", "52000", ident="f2", leverage="20"),
        fill("bob", "ETH-ENTRY", "sell", "400", "2000", leverage="10"),
        fill("bob", "BTCUSD-ENTRY", "sell", "480", "48000", ident="f2", leverage="20"),
    ])
    alice, bob = queries.state(ledger, "alice"), queries.state(ledger, "bob")

    long_eth, short_eth = position(alice, "ETH-ENTRY"), position(bob, "ETH-ENTRY")
    assert (long_eth["position_margin"], long_eth["maintenance_margin"]) == ("800", "320")
    assert Decimal(long_eth["liquidation_price"]) == Decimal("1880")
    assert Decimal(short_eth["liquidation_price"]) == Decimal("2120")

    long_btc, short_btc = position(alice, "BTCUSD-ENTRY"), position(bob, "BTCUSD-ENTRY")
    assert Decimal(long_btc["position_margin"]) == Decimal("0.05")
    assert Decimal(long_btc["maintenance_margin"]) == Decimal("0.01")
    assert Decimal(long_btc["liquidation_price"]) == Decimal("50000")
    assert Decimal(short_btc["position_margin"]) == Decimal("0.05")
    assert Decimal(short_btc["liquidation_price"]) == Decimal("50000")


def test_mark_basis_liquidation_prices_linear_and_inverse_long_and_short(
        store_url: str) -> None:
    """mm_basis mark: PM + UPL(P) = MM measured at P (tier chosen at P).

    Linear long 4 ETH @2,000, 10×, PM 800, tier 1 (4 %):
      800 + 4(P − 2,000) = 0.16 P → 3.84 P = 7,200 → P = 1,875 (notional 7,500: tier 1).
    Linear short 300 × 0.01 = 3 ETH @2,600, 10×, PM 780:
      780 + 3(2,600 − P) = 0.12 P → 3.12 P = 8,580 → P = 2,750 (notional 8,250: tier 1).
    Inverse long 500 × 100 USD @50,000 (1 BTC), 4×, PM 0.25 BTC, tier 1 (1 %):
      0.25 + 50,000/50,000 − 50,000/P = 0.01 · 50,000/P → P = 50,000 × 1.01/1.25 = 40,400
      (notional 1.2376… BTC: tier 1).
    Inverse short 500 × 100 USD @50,000, 4×, PM 0.25:
      0.25 + 50,000/P − 1 = 0.01 · 50,000/P → P = 50,000 × 0.99/0.75 = 66,000.
    """
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"USDT": "1000", "BTC": "1"}),
        *account("bob", {"USDT": "1000", "BTC": "1"}),
        fill("alice", "ETH-MARK", "buy", "400", "2000", leverage="10"),
        fill("alice", "BTCUSD-MARK", "buy", "500", "50000", ident="f2", leverage="4"),
        fill("bob", "ETH-MARK", "sell", "300", "2600", leverage="10"),
        fill("bob", "BTCUSD-MARK", "sell", "500", "50000", ident="f2", leverage="4"),
    ])
    alice, bob = queries.state(ledger, "alice"), queries.state(ledger, "bob")
    assert Decimal(position(alice, "ETH-MARK")["liquidation_price"]) == Decimal("1875")
    assert Decimal(position(bob, "ETH-MARK")["liquidation_price"]) == Decimal("2750")
    assert Decimal(position(alice, "BTCUSD-MARK")["liquidation_price"]) == Decimal("40400")
    assert Decimal(position(bob, "BTCUSD-MARK")["liquidation_price"]) == Decimal("66000")


def test_mark_basis_liquidation_price_reselects_a_lower_tier_than_the_entry_notional(
        store_url: str) -> None:
    """Long 600 × 0.01 = 6 ETH @2,000: notional 12,000 sits in tier 2 (5 %, deduction 100).
    4×: PM 3,000. Solved in tier 2: 3,000 + 6(P − 2,000) = 0.3 P − 100 → 5.7 P = 9,100 →
    P = 1,596.49…, whose notional 9,578.9 is in tier 1, so tier 2 is not consistent. Solved in
    tier 1: 3,000 + 6(P − 2,000) = 0.24 P → 5.76 P = 9,000 → P = 1,562.5 (notional 9,375: tier 1,
    consistent). Check: PM + UPL = 3,000 − 2,625 = 375 = 9,375 × 4 %."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("carol", {"USDT": "5000"}),
        fill("carol", "ETH-MARK", "buy", "600", "2000", leverage="4"),
    ])
    held = position(queries.state(ledger, "carol"), "ETH-MARK")
    assert held["maintenance_margin"] == "500"  # 12,000 × 5 % − 100, tier 2 at the mark
    assert Decimal(held["liquidation_price"]) == Decimal("1562.5")


def test_inverse_short_liquidation_price_reselects_a_lower_tier(store_url: str) -> None:
    """Inverse short 6,000 × 100 USD @50,000 (BTCUSD-MARK): notional 12 BTC, tier 2 (2 %,
    deduction 10 × 1 % = 0.1). 4×: PM 3 BTC. PM + Q·F/P − Q·F/E = Q·F/P · mmr − d gives
    P = Q·F(1 − mmr)/(Q·F/E − PM − d). Tier 2: 600,000 × 0.98/(12 − 3 − 0.1) = 66,067.4…,
    notional 9.08 BTC: tier 1, not consistent. Tier 1: 600,000 × 0.99/(12 − 3) = 66,000,
    notional 9.09 BTC: tier 1, consistent. Check: 3 + 9.0909… − 12 = 0.0909… = 1 % of 9.0909…"""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("cleo", {"BTC": "5"}),
        fill("cleo", "BTCUSD-MARK", "sell", "6000", "50000", leverage="4"),
    ])
    held = position(queries.state(ledger, "cleo"), "BTCUSD-MARK")
    assert Decimal(held["maintenance_margin"]) == Decimal("0.14")  # 12 × 2 % − 0.1
    assert Decimal(held["liquidation_price"]) == Decimal("66000")


def test_cross_liquidation_price_single_asset_long(store_url: str) -> None:
    """Single-asset cross long 4 ETH @2,000 (ETH-MARK), wallet 1,280 USDT. Margin ratio
    MM/equity reaches 1 where 1,280 + 4(P − 2,000) = 4 P × 4 % → 3.84 P = 6,720 → P = 1,750
    (equity 280 = MM 280). At the mark 2,000: MM 320, ratio 320/1,280 = 0.25; IM 800,
    available 1,280 − 800 = 480."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("dave", {"USDT": "1280"}),
        fill("dave", "ETH-MARK", "buy", "400", "2000", margin_type="cross", leverage="10"),
    ])
    state = queries.state(ledger, "dave")
    held = position(state, "ETH-MARK")
    assert held["position_margin"] is None
    assert Decimal(held["liquidation_price"]) == Decimal("1750")
    assert Decimal(state["margin"]["margin_ratio"]) == Decimal("0.25")
    assert Decimal(state["margin"]["available_usd"]) == Decimal("480")


def test_cross_liquidation_price_of_an_inverse_short_is_exact(store_url: str) -> None:
    """Single-asset cross, 0.25 BTC; short 500 × 100 USD @50,000 on BTCUSD-MARK (1 BTC,
    tier 1, 1 %). Equity 0.25 + 50,000 × (1/P − 1/50,000), MM 50,000/P × 1 %: ratio 1 where
    0.25 − 1 + 50,000/P = 500/P → P = 49,500/0.75 = 66,000. The long twin (0.25 + 1 −
    50,000/P = 500/P → P = 50,500/1.25 = 40,400) for contrast."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("bea", {"BTC": "0.25"}),
        fill("bea", "BTCUSD-MARK", "buy", "500", "50000", margin_type="cross", leverage="4"),
        *account("ben", {"BTC": "0.25"}),
        fill("ben", "BTCUSD-MARK", "sell", "500", "50000", margin_type="cross", leverage="4"),
    ])
    long = position(queries.state(ledger, "bea"), "BTCUSD-MARK")
    assert Decimal(long["liquidation_price"]) == Decimal("40400")
    short = position(queries.state(ledger, "ben"), "BTCUSD-MARK")
    assert Decimal(short["liquidation_price"]) == Decimal("66000")


def test_cross_liquidation_price_is_null_when_no_price_liquidates(store_url: str) -> None:
    """Single-asset cross long 4 ETH @2,000 with 10,000 USDT: even at a mark near 0 the equity
    10,000 − 8,000 = 2,000 exceeds the MM (4 P × 4 % → 0): no liquidation price, null."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("dean", {"USDT": "10000"}),
        fill("dean", "ETH-MARK", "buy", "400", "2000", margin_type="cross", leverage="10"),
    ])
    assert position(queries.state(ledger, "dean"), "ETH-MARK")["liquidation_price"] is None


# ----------------------------------------------------------------------------- the sweep


def topup_feed() -> list[dict[str, Any]]:
    """eve: ETH-ENTRY long 4 ETH @2,000, 10×, auto-add on, 1,300 USDT deposited.
    PM 800, MM 320 (entry basis), LP (320 − 800 + 8,000)/4 = 1,880, available 1,300 − 800 = 500.
    01:00 mark 1,880: +320 → PM 1,120, LP (320 − 1,120 + 8,000)/4 = 1,800, available 180.
    02:00 mark 1,800: +180 (less than 320: all that is left) → PM 1,300,
          LP (320 − 1,300 + 8,000)/4 = 1,755, available 0.
    03:00 mark 1,755: nothing left, no top-up event; LiquidationTriggered at 1,755."""
    return [
        *reference(),
        *account("eve", {"USDT": "1300"}),
        fill("eve", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        auto_add("eve", "ETH-ENTRY"),
        sweep(0),
        mark("ETH-ENTRY", "1880", HOUR),
        sweep(HOUR),
        mark("ETH-ENTRY", "1800", 2 * HOUR),
        sweep(2 * HOUR),
        mark("ETH-ENTRY", "1755", 3 * HOUR),
        sweep(3 * HOUR),
    ]


def test_maintenance_top_ups_add_mm_then_what_is_left_and_never_go_below_zero(
        store_url: str) -> None:
    """topup_feed: MarginToppedUp 320 (LP 1,800) and 180 (LP 1,755); available_usd 500 → 180
    → 0, never negative; balances.USDT stays 1,300 (allocating margin is not a posting);
    the third sweep finds nothing left: one isolated LiquidationTriggered at LP 1,755."""
    ledger = Ledger(store_url)
    apply(ledger, topup_feed())
    history = queries.events(ledger, "eve")
    topped = of_type(history, "MarginToppedUp")
    assert [(Decimal(e["amount"]), Decimal(e["liquidation_price"])) for e in topped] == [
        (Decimal("320"), Decimal("1800")), (Decimal("180"), Decimal("1755"))]
    assert [e["at"] for e in topped] == [t(HOUR), t(2 * HOUR)]
    triggers = of_type(history, "LiquidationTriggered")
    assert len(triggers) == 1
    assert triggers[0]["symbol"] == "ETH-ENTRY"
    assert Decimal(triggers[0]["liquidation_price"]) == Decimal("1755")
    assert triggers[0]["at"] == t(3 * HOUR)
    for seconds, available in ((0, "500"), (HOUR, "180"), (2 * HOUR, "0"), (3 * HOUR, "0")):
        state = queries.state(ledger, "eve", when(seconds))
        assert Decimal(state["margin"]["available_usd"]) == Decimal(available)
        assert Decimal(state["margin"]["available_usd"]) >= 0
        assert Decimal(state["balances"]["USDT"]) == Decimal("1300")


def test_top_up_adds_nothing_when_the_available_balance_is_already_negative(
        store_url: str) -> None:
    """frank: 1,000 USDT; isolated ETH-ENTRY long 4 ETH @2,000 10× (PM 800, LP 1,880, auto-add
    on) and a cross ETH-MARK long 1 ETH @2,000 10× (IM at the mark 200): available 1,000 −
    200 − 800 = 0. ETH-MARK falls to 1,900: equity 900, IM 190 → available −90. At ETH-ENTRY
    mark 1,880 the sweep adds max(0, min(320, −90)) = 0: no MarginToppedUp, the isolated
    liquidation is triggered, available stays −90 (a top-up never makes it worse)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("frank", {"USDT": "1000"}),
        fill("frank", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        fill("frank", "ETH-MARK", "buy", "100", "2000", ident="f2", margin_type="cross",
             leverage="10"),
        auto_add("frank", "ETH-ENTRY"),
        mark("ETH-MARK", "1900", HOUR),
        mark("ETH-ENTRY", "1880", HOUR),
        sweep(HOUR),
    ])
    history = queries.events(ledger, "frank")
    assert of_type(history, "MarginToppedUp") == []
    assert [e["symbol"] for e in of_type(history, "LiquidationTriggered")] == ["ETH-ENTRY"]
    state = queries.state(ledger, "frank")
    assert Decimal(state["margin"]["available_usd"]) == Decimal("-90")
    assert Decimal(position(state, "ETH-ENTRY")["position_margin"]) == Decimal("800")


def test_a_mark_gapping_past_the_new_price_tops_up_and_triggers_once(store_url: str) -> None:
    """eve's position (LP 1,880, available 500, auto-add on), but the mark gaps to 1,700.
    01:00: +320 → LP 1,800; 1,700 is still beyond it: LiquidationTriggered (LP 1,800).
    02:00 (1,700 again): +180, all that is left → LP 1,755; still past: no second trigger
    (once per crossing). 03:00: nothing left, still past: nothing. available 500 → 180 → 0."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("eve", {"USDT": "1300"}),
        fill("eve", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        auto_add("eve", "ETH-ENTRY"),
        mark("ETH-ENTRY", "1700", HOUR), sweep(HOUR),
        mark("ETH-ENTRY", "1700", 2 * HOUR), sweep(2 * HOUR),
        mark("ETH-ENTRY", "1700", 3 * HOUR), sweep(3 * HOUR),
    ])
    history = queries.events(ledger, "eve")
    topped = of_type(history, "MarginToppedUp")
    assert [(e["at"], Decimal(e["amount"]), Decimal(e["liquidation_price"])) for e in topped] == [
        (t(HOUR), Decimal("320"), Decimal("1800")), (t(2 * HOUR), Decimal("180"),
                                                    Decimal("1755"))]
    triggers = of_type(history, "LiquidationTriggered")
    assert [(e["at"], Decimal(e["liquidation_price"]), Decimal(e["mark_price"]))
            for e in triggers] == [(t(HOUR), Decimal("1800"), Decimal("1700"))]
    assert Decimal(queries.state(ledger, "eve")["margin"]["available_usd"]) == Decimal("0")


def test_two_positions_at_their_price_in_one_sweep_share_what_is_left(store_url: str) -> None:
    """nina: 1,900 USDT; isolated longs of 4 ETH @2,000, 10×, on ETH-ENTRY (adds MM 320) and
    ETH-INIT (adds 800), PM 800 each: available 1,900 − 1,600 = 300, both LP 1,880, auto-add
    on. Both marks reach 1,880 in one sweep: whichever comes first gets min(wanted, 300) = 300
    (PM 1,100, LP (320 − 1,100 + 8,000)/4 = 1,805), the other finds 0 left (no event) and is
    triggered at 1,880. The available balance ends at 0, never below."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("nina", {"USDT": "1900"}),
        fill("nina", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        fill("nina", "ETH-INIT", "buy", "400", "2000", ident="f2", leverage="10"),
        auto_add("nina", "ETH-ENTRY"), auto_add("nina", "ETH-INIT"),
        mark("ETH-ENTRY", "1880", HOUR), mark("ETH-INIT", "1880", HOUR), sweep(HOUR),
    ])
    history = queries.events(ledger, "nina")
    topped = of_type(history, "MarginToppedUp")
    assert [(Decimal(e["amount"]), Decimal(e["liquidation_price"])) for e in topped] == [
        (Decimal("300"), Decimal("1805"))]
    triggers = of_type(history, "LiquidationTriggered")
    assert [(e["symbol"], Decimal(e["liquidation_price"])) for e in triggers] == [
        ({"ETH-ENTRY", "ETH-INIT"}.difference({topped[0]["symbol"]}).pop(), Decimal("1880"))]
    assert Decimal(queries.state(ledger, "nina")["margin"]["available_usd"]) == Decimal("0")


def test_a_sweep_run_twice_at_the_same_time_changes_nothing_the_second_time(
        store_url: str) -> None:
    """topup_feed up to the 01:00 sweep (+320, LP 1,800), then check_margin at 01:00 again,
    identical and with an id: both acknowledged, no event, same state (PM 1,120, not 1,440)."""
    ledger = Ledger(store_url)
    apply(ledger, topup_feed()[:-4])
    before = (queries.state(ledger, "eve"), queries.events(ledger, "eve"))
    assert ledger.handle(parse_command(sweep(HOUR))) == "acknowledged"
    assert ledger.handle(parse_command({**sweep(HOUR), "id": "check_margin:again"})) == (
        "acknowledged")
    reader = Ledger(store_url)
    after = (queries.state(reader, "eve"), queries.events(reader, "eve"))
    assert after == before
    held = position(after[0], "ETH-ENTRY")
    assert Decimal(held["position_margin"]) == Decimal("1120")
    assert Decimal(held["liquidation_price"]) == Decimal("1800")


def test_state_replayed_between_sweeps_shows_the_liquidation_price_in_force(
        store_url: str) -> None:
    """topup_feed, read from a fresh reader at times between the sweeps: LP 1,880 before the
    01:00 top-up (00:00, 00:59:59), 1,800 from 01:00 to 01:59:59, 1,755 from 02:00 on; the
    position margin 800 / 1,120 / 1,300 likewise."""
    ledger = Ledger(store_url)
    apply(ledger, topup_feed())
    reader = Ledger(store_url)
    expected = [
        (0, "1880", "800"), (1800, "1880", "800"), (HOUR - 1, "1880", "800"),
        (HOUR, "1800", "1120"), (HOUR + 1, "1800", "1120"), (2 * HOUR - 1, "1800", "1120"),
        (2 * HOUR, "1755", "1300"), (2 * HOUR + 1800, "1755", "1300"),
        (3 * HOUR, "1755", "1300"),
    ]
    for seconds, price, margin in expected:
        held = position(queries.state(reader, "eve", when(seconds)), "ETH-ENTRY")
        assert (Decimal(held["liquidation_price"]), Decimal(held["position_margin"])) == (
            Decimal(price), Decimal(margin)), seconds


def test_initial_auto_add_amount_adds_entry_notional_over_leverage(store_url: str) -> None:
    """ETH-INIT (entry basis, auto_add_amount initial): long 4 ETH @2,000, 10×, 2,000 USDT.
    PM 800, LP 1,880, available 1,200. At mark 1,880 the sweep adds E·Q·F/leverage =
    8,000/10 = 800 (not MM 320): PM 1,600, LP (320 − 1,600 + 8,000)/4 = 1,680, available 400."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("hank", {"USDT": "2000"}),
        fill("hank", "ETH-INIT", "buy", "400", "2000", leverage="10"),
        auto_add("hank", "ETH-INIT"),
        mark("ETH-INIT", "1880", HOUR),
        sweep(HOUR),
    ])
    topped = of_type(queries.events(ledger, "hank"), "MarginToppedUp")
    assert [(Decimal(e["amount"]), Decimal(e["liquidation_price"])) for e in topped] == [
        (Decimal("800"), Decimal("1680"))]
    state = queries.state(ledger, "hank")
    assert Decimal(position(state, "ETH-INIT")["position_margin"]) == Decimal("1600")
    assert Decimal(state["margin"]["available_usd"]) == Decimal("400")
    assert of_type(queries.events(ledger, "hank"), "LiquidationTriggered") == []


def margin_call_feed() -> list[dict[str, Any]]:
    """dave: single-asset cross ETH-MARK long 4 ETH @2,000, 1,280 USDT (cross LP 1,750).
    gina: isolated ETH-MARK long 4 ETH @2,000, 10×, auto-add off (LP 1,875).
    Sweeps each hour after an ETH-MARK mark; dave's ratio = 0.16 P / (4 P − 6,720):
      00:00 2,000 → 0.25        01:00 1,760 → 281.6/320 = 0.88 (call)
      02:00 1,765 → 282.4/340 = 0.83… (still above 0.8: nothing)
      03:00 1,900 → 304/880 (recovered)   04:00 1,760 → 0.88 (call again)
      05:00 1,750 → 280/280 = 1 (liquidation; the call level was already reached)
      06:00 1,745 → 279.2/260 (still past: nothing)   07:00 1,900 (recovered)
      08:00 1,740 → 278.4/240 = 1.16 (call and liquidation in the same sweep).
    gina (mark ≤ 1,875 is past): triggers at 01:00, 04:00, 08:00; never a margin call (her
    account figures hold no cross position)."""
    marks = ["2000", "1760", "1765", "1900", "1760", "1750", "1745", "1900", "1740"]
    commands = [
        *reference(),
        *account("dave", {"USDT": "1280"}),
        fill("dave", "ETH-MARK", "buy", "400", "2000", margin_type="cross", leverage="10"),
        *account("gina", {"USDT": "1000"}),
        fill("gina", "ETH-MARK", "buy", "400", "2000", leverage="10"),
    ]
    for hour, price in enumerate(marks):
        commands += [mark("ETH-MARK", price, hour * HOUR), sweep(hour * HOUR)]
    return commands


def test_margin_calls_and_liquidation_triggers_once_per_crossing(store_url: str) -> None:
    """margin_call_feed: dave MarginCallIssued at 01:00 (0.88), 04:00 (0.88), 08:00 (1.16);
    LiquidationTriggered (cross) at 05:00 (1) and 08:00 (1.16). gina LiquidationTriggered
    (isolated, LP 1,875) at 01:00 (mark 1,760), 04:00 (1,760), 08:00 (1,740)."""
    ledger = Ledger(store_url)
    apply(ledger, margin_call_feed())
    dave = queries.events(ledger, "dave")
    calls = of_type(dave, "MarginCallIssued")
    assert [(e["at"], Decimal(e["margin_ratio"])) for e in calls] == [
        (t(HOUR), Decimal("0.88")), (t(4 * HOUR), Decimal("0.88")),
        (t(8 * HOUR), Decimal("1.16"))]
    triggers = of_type(dave, "LiquidationTriggered")
    assert [(e["at"], e["margin_type"], Decimal(e["margin_ratio"])) for e in triggers] == [
        (t(5 * HOUR), "cross", Decimal("1")), (t(8 * HOUR), "cross", Decimal("1.16"))]

    gina = queries.events(ledger, "gina")
    assert of_type(gina, "MarginCallIssued") == []
    isolated = of_type(gina, "LiquidationTriggered")
    assert [(e["at"], e["symbol"], Decimal(e["liquidation_price"]), Decimal(e["mark_price"]))
            for e in isolated] == [
        (t(HOUR), "ETH-MARK", Decimal("1875"), Decimal("1760")),
        (t(4 * HOUR), "ETH-MARK", Decimal("1875"), Decimal("1760")),
        (t(8 * HOUR), "ETH-MARK", Decimal("1875"), Decimal("1740"))]
    assert queries.state(ledger, "gina")["positions"][0]["qty"] == "400"  # a signal only


def test_crossings_are_remembered_across_restarts(store_url: str) -> None:
    """margin_call_feed with a new Ledger (a new process) for every hour's mark and sweep:
    the previous sweep's finding comes back from the store, so the signals are the same as in
    one run: dave's calls at 01:00, 04:00, 08:00 and triggers at 05:00, 08:00; gina's triggers
    at 01:00, 04:00, 08:00."""
    feed = margin_call_feed()
    setup, hourly = feed[:-18], feed[-18:]
    apply(Ledger(store_url), setup)
    for hour in range(9):
        apply(Ledger(store_url), hourly[2 * hour:2 * hour + 2])
    reader = Ledger(store_url)
    dave, gina = queries.events(reader, "dave"), queries.events(reader, "gina")
    assert [e["at"] for e in of_type(dave, "MarginCallIssued")] == [
        t(HOUR), t(4 * HOUR), t(8 * HOUR)]
    assert [e["at"] for e in of_type(dave, "LiquidationTriggered")] == [t(5 * HOUR), t(8 * HOUR)]
    assert [e["at"] for e in of_type(gina, "LiquidationTriggered")] == [
        t(HOUR), t(4 * HOUR), t(8 * HOUR)]


# ----------------------------------------------------------------------------- adjustments


def test_adjust_isolated_margin_add_and_remove_down_to_the_initial_margin(
        store_url: str) -> None:
    """ivan: ETH-ENTRY long 4 ETH @2,000, 10×, 1,000 USDT: PM 800, LP 1,880, available 200.
    Add 200 → PM 1,000, LP (320 − 1,000 + 8,000)/4 = 1,830, available 0.
    Remove 200 → PM 800 (the initial margin 8,000/10), LP 1,880, available 200.
    jack: ETH-MARK short 3 ETH @2,600, 10×, PM 780, LP 2,750 (mark basis); add 156 → PM 936:
    936 + 3(2,600 − P) = 0.12 P → 3.12 P = 8,736 → LP 2,800 (notional 8,400: tier 1)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("ivan", {"USDT": "1000"}),
        fill("ivan", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        *account("jack", {"USDT": "1000"}),
        fill("jack", "ETH-MARK", "sell", "300", "2600", leverage="10"),
    ])
    apply(ledger, [adjust("ivan", "ETH-ENTRY", "200", "m1", at=60)])
    state = queries.state(ledger, "ivan")
    held = position(state, "ETH-ENTRY")
    assert Decimal(held["position_margin"]) == Decimal("1000")
    assert Decimal(held["liquidation_price"]) == Decimal("1830")
    assert Decimal(state["margin"]["available_usd"]) == Decimal("0")
    assert Decimal(state["balances"]["USDT"]) == Decimal("1000")  # not a posting

    apply(ledger, [adjust("ivan", "ETH-ENTRY", "-200", "m2", at=120)])
    state = queries.state(ledger, "ivan")
    held = position(state, "ETH-ENTRY")
    assert Decimal(held["position_margin"]) == Decimal("800")
    assert Decimal(held["liquidation_price"]) == Decimal("1880")
    assert Decimal(state["margin"]["available_usd"]) == Decimal("200")
    adjusted = of_type(queries.events(ledger, "ivan"), "IsolatedMarginAdjusted")
    assert [(Decimal(e["amount"]), Decimal(e["liquidation_price"])) for e in adjusted] == [
        (Decimal("200"), Decimal("1830")), (Decimal("-200"), Decimal("1880"))]

    apply(ledger, [adjust("jack", "ETH-MARK", "156", "m1", at=60)])
    held = position(queries.state(ledger, "jack"), "ETH-MARK")
    assert Decimal(held["liquidation_price"]) == Decimal("2800")


def test_bad_margin_adjustments_and_isolated_fills_in_multi_asset_are_rejected(
        store_url: str) -> None:
    """ivan: ETH-ENTRY isolated long 4 ETH @2,000, 10× (PM 800 = the initial margin) and a
    cross ETH-MARK long 10 × 0.01 = 0.1 ETH @2,000 (IM 200/10 = 20), 1,000 USDT: available
    1,000 − 20 − 800 = 180.
    - adjusting a symbol where he holds no isolated position (ETH-INIT: none; ETH-MARK: cross
      only): invalid_input (the contract names no more specific code); an unknown symbol:
      unknown_symbol;
    - removing 0.00000001 (PM would be 799.99999999 < 800): insufficient_margin;
    - adding 180.00000001 > available 180: insufficient_margin;
    - an isolated fill in multi_asset mode: not_allowed_in_mode.
    Each changes nothing; adding exactly 180 is then accepted (PM 980)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("ivan", {"USDT": "1000"}),
        fill("ivan", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        fill("ivan", "ETH-MARK", "buy", "10", "2000", ident="f2", margin_type="cross",
             leverage="10"),
        *account("mia", {"USDT": "10000"}, mode="multi_asset"),
    ])
    assert Decimal(queries.state(ledger, "ivan")["margin"]["available_usd"]) == Decimal("180")
    reject(ledger, adjust("ivan", "ETH-INIT", "10", "m1", at=60), InvalidInputError,
           "invalid_input", ["ivan"])
    reject(ledger, adjust("ivan", "ETH-MARK", "10", "m2", at=60), InvalidInputError,
           "invalid_input", ["ivan"])
    reject(ledger, adjust("ivan", "XRP-NONE", "10", "m6", at=60), UnknownSymbolError,
           "unknown_symbol", ["ivan"])
    reject(ledger, adjust("ivan", "ETH-ENTRY", "-0.00000001", "m3", at=60),
           InsufficientMarginError, "insufficient_margin", ["ivan"])
    reject(ledger, adjust("ivan", "ETH-ENTRY", "180.00000001", "m4", at=60),
           InsufficientMarginError, "insufficient_margin", ["ivan"])
    reject(ledger, fill("mia", "ETH-ENTRY", "buy", "100", "2000", leverage="10", at=60),
           NotAllowedInModeError, "not_allowed_in_mode", ["mia"])
    # The boundaries themselves are allowed: exactly the available 180 in.
    apply(ledger, [adjust("ivan", "ETH-ENTRY", "180", "m5", at=120)])
    held = position(queries.state(ledger, "ivan"), "ETH-ENTRY")
    assert Decimal(held["position_margin"]) == Decimal("980")


# ----------------------------------------------------------------------------- insurance


def test_liquidation_fill_leaving_negative_equity_is_covered_from_insurance(
        store_url: str) -> None:
    """kate: single-asset cross ETH-MARK long 4 ETH @2,000, 1,280 USDT. Liquidation fill: sell
    400 @1,600, fee 1.5: realised 4 × (1,600 − 2,000) = −1,600 → wallet 1,280 − 1,600 − 1.5 =
    −321.5 → InsuranceCovered 321.5 from system:insurance, balance 0.
    lena: isolated ETH-ENTRY long 4 ETH @2,000, 10×, 800 USDT (all of it the PM). Liquidation
    fill sell 400 @1,700: realised −1,200 → wallet −400 → covered 400, balance 0."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("kate", {"USDT": "1280"}),
        fill("kate", "ETH-MARK", "buy", "400", "2000", margin_type="cross", leverage="10"),
        *account("lena", {"USDT": "800"}),
        fill("lena", "ETH-ENTRY", "buy", "400", "2000", leverage="10"),
        mark("ETH-MARK", "1600", HOUR),
        mark("ETH-ENTRY", "1700", HOUR),
        fill("kate", "ETH-MARK", "sell", "400", "1600", ident="f2", margin_type="cross",
             fee="1.5", at=HOUR, liquidation=True),
        fill("lena", "ETH-ENTRY", "sell", "400", "1700", ident="f2", at=HOUR,
             liquidation=True),
    ])
    for name, shortfall in (("kate", "321.5"), ("lena", "400")):
        history = queries.events(ledger, name)
        covered = of_type(history, "InsuranceCovered")
        assert len(covered) == 1, name
        assert Decimal(covered[0]["amount"]) == Decimal(shortfall)
        assert history[-1]["type"] == "InsuranceCovered"  # after the liquidation fill
        assert sorted((p["account"], Decimal(p["amount"])) for p in covered[0]["postings"]) == [
            (name, Decimal(shortfall)), ("system:insurance", -Decimal(shortfall))]
        state = queries.state(ledger, name)
        assert state["positions"] == []
        assert Decimal(state["balances"]["USDT"]) == Decimal("0")
