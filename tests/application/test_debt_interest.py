"""Debt: per-second interest, hourly charges, repayment and auto-exchange (issue 4).

End to end through `Ledger.handle` on both stores, read back through the contract's `state` and
`events`. Expected figures are computed by hand in the docstrings (DESIGN 6.8, 6.9, 6.11).

Most tests use an annual rate of 0.31536 (31.536 %), i.e. 0.31536 / 31,536,000 = 0.00000001
per second exactly, so every accrual is `debt-seconds × 10⁻⁸` and can be checked to the digit.
USDT debts are made by a realised loss: a cross long of 1,000 × 0.001 = 1 BTC bought at 50,000
and sold at 50,000 − loss (fees 0).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.errors import InsufficientMarginError, LedgerError, ModeChangeBlockedError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = 3600
MINUTE = 60
RATE_1E8 = "0.31536"  # 10⁻⁸ per second
RATE_2E8 = "0.63072"  # 2 × 10⁻⁸ per second
UNIT = Decimal("0.00000001")  # USDT precision 8


def t(seconds: int = 0) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(seconds: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def apply(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    """Apply every command in one batch; any rejection fails the test (raises)."""
    with ledger.batch():
        for data in commands:
            ledger.handle(parse_command(data))


def reject(ledger: Ledger, data: dict[str, Any], error: type[LedgerError], code: str,
           accounts: list[str]) -> None:
    """The command is rejected with `error`/`code`; state and events are unchanged."""
    before = {n: (queries.state(ledger, n), queries.events(ledger, n)) for n in accounts}
    with pytest.raises(error) as caught:
        ledger.handle(parse_command(data))
    assert caught.value.code == code
    after = {n: (queries.state(ledger, n), queries.events(ledger, n)) for n in accounts}
    assert after == before


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def usdt(at: int = 0, rate: str | None = RATE_1E8, free: str = "0", mode: str = "excess",
         **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "asset", "at": t(at), "asset": "USDT", "precision": 8,
                            **extra}
    if rate is not None:
        data["interest"] = {"annual_rate": rate, "free_amount": free, "free_mode": mode}
    return data


def reference(btc_index: str = "50000", **usdt_terms: Any) -> list[dict[str, Any]]:
    return [
        usdt(**usdt_terms),
        {"type": "asset", "at": t(), "asset": "BTC", "precision": 8},
        {"type": "index_price", "at": t(), "asset": "BTC", "price": btc_index},
        {"type": "instrument", "at": t(), "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "risk_tiers": [{"up_to": "1000000000", "mmr": "0.004", "max_leverage": "100"}]},
        {"type": "mark_price", "at": t(), "symbol": "BTCUSDT", "price": "50000"},
    ]


def account(name: str, deposits: dict[str, str], mode: str = "multi_asset",
            at: int = 0) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = [
        {"type": "open_account", "at": t(at), "account": name, "mode": mode}]
    for asset, amount in sorted(deposits.items()):
        commands.append(deposit(name, asset, amount, f"d-{asset}", at))
    return commands


def deposit(name: str, asset: str, amount: str, ident: str, at: int = 0) -> dict[str, Any]:
    return {"type": "deposit", "at": t(at), "id": ident, "account": name, "asset": asset,
            "amount": amount}


def fill(name: str, side: str, qty: str, price: str, ident: str, at: int = 0,
         fee: str = "0") -> dict[str, Any]:
    return {"type": "fill", "at": t(at), "id": ident, "account": name, "symbol": "BTCUSDT",
            "side": side, "qty": qty, "price": price, "fee": fee, "margin_type": "cross"}


def loss(name: str, amount: str, ident: str, at: int = 0) -> list[dict[str, Any]]:
    """A realised loss of `amount` USDT: buy 1 BTC at 50,000, sell it at 50,000 − amount."""
    return [fill(name, "buy", "1000", "50000", f"{ident}-open", at),
            fill(name, "sell", "1000", str(Decimal("50000") - Decimal(amount)),
                 f"{ident}-close", at)]


def mark(price: str, at: int) -> dict[str, Any]:
    return {"type": "mark_price", "at": t(at), "symbol": "BTCUSDT", "price": price}


def charge(at: int) -> dict[str, Any]:
    return {"type": "charge_interest", "at": t(at)}


def interest(ledger: Ledger, name: str, seconds: int) -> tuple[Decimal, Decimal]:
    view = queries.state(ledger, name, when(seconds))["interest"]["USDT"]
    return Decimal(view["accrued"]), Decimal(view["charged"])


def postings_to(event: dict[str, Any], account_name: str) -> Decimal:
    return sum((Decimal(p["amount"]) for p in event["postings"]
                if p["account"] == account_name), Decimal(0))


# ----------------------------------------------------------------------------- accrual


def test_a_debt_that_changes_twice_within_the_hour(store_url: str) -> None:
    """Loss 10,000 at 00:00; deposits of 4,000 at 00:20 and 1,000 at 00:45 (debt 6,000, then
    5,000); charge at 01:00. At 10⁻⁸ per second:
      00:30  10,000 × 1,200 + 6,000 × 600                         = 15,600,000 → 0.156
      00:59:59  10,000 × 1,200 + 6,000 × 1,500 + 5,000 × 899      = 25,495,000 → 0.25495
      01:00  25,500,000 debt-seconds → 0.255, charged exactly (no rounding), balance −5,000.255."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
        deposit("alice", "USDT", "4000", "d1", 20 * MINUTE),
        deposit("alice", "USDT", "1000", "d2", 45 * MINUTE),
        charge(HOUR),
    ])
    assert interest(ledger, "alice", 30 * MINUTE) == (Decimal("0.156"), Decimal("0"))
    assert interest(ledger, "alice", HOUR - 1) == (Decimal("0.25495"), Decimal("0"))
    assert interest(ledger, "alice", HOUR) == (Decimal("0"), Decimal("0.255"))
    charged = of_type(queries.events(ledger, "alice"), "InterestCharged")
    assert [(Decimal(e["amount"]), Decimal(e["accrued"])) for e in charged] == [
        (Decimal("0.255"), Decimal("0.255"))]
    state = queries.state(ledger, "alice", when(HOUR))
    assert Decimal(state["balances"]["USDT"]) == Decimal("-5000.255")
    assert Decimal(state["debts"]["USDT"]) == Decimal("5000.255")


def test_a_rate_change_mid_hour(store_url: str) -> None:
    """Debt 10,000 from 00:00; the USDT asset is sent again at 00:30 with annual_rate 0.63072
    (2 × 10⁻⁸ per second). 00:45: 10,000 × 1,800 × 10⁻⁸ + 10,000 × 900 × 2 × 10⁻⁸ =
    0.18 + 0.18 = 0.36; 01:00: 0.18 + 0.36 = 0.54, charged 0.54."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
        usdt(30 * MINUTE, rate=RATE_2E8),
        charge(HOUR),
    ])
    assert interest(ledger, "alice", 30 * MINUTE) == (Decimal("0.18"), Decimal("0"))
    assert interest(ledger, "alice", 45 * MINUTE) == (Decimal("0.36"), Decimal("0"))
    charged = of_type(queries.events(ledger, "alice"), "InterestCharged")
    assert [Decimal(e["amount"]) for e in charged] == [Decimal("0.54")]


@pytest.mark.parametrize(("mode", "at_40_min", "at_hour"), [
    ("excess", "0.018", "0.027"),
    ("full", "0.048", "0.072"),
])
def test_a_liability_that_crosses_the_free_amount(
        store_url: str, mode: str, at_40_min: str, at_hour: str) -> None:
    """Free amount 5,000. Debt 4,000 from 00:00 (below: nothing in either mode), 8,000 from
    00:30 (a second loss of 4,000), 4,500 from 00:45 (deposit 3,500: below again).
      excess: (8,000 − 5,000) × 600 × 10⁻⁸ = 0.018 at 00:40; × 900 → 0.027 at 01:00;
      full:    8,000 × 600 × 10⁻⁸ = 0.048 at 00:40;           × 900 → 0.072 at 01:00."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(free="5000", mode=mode),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "4000", "l1"),
        *loss("alice", "4000", "l2", 30 * MINUTE),
        deposit("alice", "USDT", "3500", "d1", 45 * MINUTE),
        charge(HOUR),
    ])
    assert interest(ledger, "alice", 29 * MINUTE) == (Decimal("0"), Decimal("0"))
    assert interest(ledger, "alice", 40 * MINUTE) == (Decimal(at_40_min), Decimal("0"))
    assert interest(ledger, "alice", 59 * MINUTE) == (Decimal(at_hour), Decimal("0"))
    charged = of_type(queries.events(ledger, "alice"), "InterestCharged")
    assert [Decimal(e["amount"]) for e in charged] == [Decimal(at_hour)]


def test_a_floating_loss_creates_and_then_removes_a_liability(store_url: str) -> None:
    """Multi-asset, 1,000 USDT and 1 BTC; cross long 1 BTC @50,000. Mark 48,000 at 00:10:
    USDT equity 1,000 − 2,000 = −1,000 (a liability though the wallet is positive); mark
    49,500 at 00:40: equity 500, no liability. Accrued: 00:25 → 1,000 × 900 × 10⁻⁸ = 0.009;
    00:50 → 1,000 × 1,800 × 10⁻⁸ = 0.018 (nothing after 00:40); charged 0.018 at 01:00,
    balance 1,000 − 0.018 = 999.982."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("bob", {"BTC": "1", "USDT": "1000"}),
        fill("bob", "buy", "1000", "50000", "f1"),
        mark("48000", 10 * MINUTE),
        mark("49500", 40 * MINUTE),
        charge(HOUR),
    ])
    assert queries.state(ledger, "bob", when(5 * MINUTE))["debts"]["USDT"] == "0"
    state = queries.state(ledger, "bob", when(25 * MINUTE))
    assert Decimal(state["debts"]["USDT"]) == Decimal("1000")
    assert Decimal(state["balances"]["USDT"]) == Decimal("1000")
    assert Decimal(state["interest"]["USDT"]["accrued"]) == Decimal("0.009")
    state = queries.state(ledger, "bob", when(50 * MINUTE))
    assert Decimal(state["debts"]["USDT"]) == Decimal("0")
    assert Decimal(state["interest"]["USDT"]["accrued"]) == Decimal("0.018")
    charged = of_type(queries.events(ledger, "bob"), "InterestCharged")
    assert [Decimal(e["amount"]) for e in charged] == [Decimal("0.018")]
    assert Decimal(queries.state(ledger, "bob", when(HOUR))["balances"]["USDT"]) == (
        Decimal("999.982"))


# ----------------------------------------------------------------------------- charging


def test_hourly_charges_over_a_day_exceed_the_exact_accrual_by_the_rounding(
        store_url: str) -> None:
    """Debt 10,000.12345678 at 10⁻⁸ per second, charged every hour for 24 hours. Hour 1:
    10,000.12345678 × 3,600 × 10⁻⁸ = 0.36000444444408 (exact), charged 0.36000445 (rounded
    up), rounding 0.00000000555592; the charge joins the debt, so hour 2 accrues on
    10,000.48346123, and so on (the model below repeats exactly this). The 24 charges exceed
    the 24 exact accruals by less than 24 × 0.00000001 in total and by less than 0.00000001
    each; the differences are the postings to system:rounding, the exact accruals those to
    system:interest."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("carl", {"BTC": "1"}),
        *loss("carl", "10000.12345678", "l1"),
        *[charge(hour * HOUR) for hour in range(1, 25)],
    ])
    debt = Decimal("10000.12345678")
    model = []
    for _ in range(24):
        exact = debt * Decimal("0.000036")  # 3,600 s × 10⁻⁸
        charged = exact.quantize(UNIT, rounding=ROUND_CEILING)
        model.append((charged, exact))
        debt += charged
    assert model[0] == (Decimal("0.36000445"), Decimal("0.36000444444408"))

    events = of_type(queries.events(ledger, "carl"), "InterestCharged")
    assert [(Decimal(e["amount"]), Decimal(e["accrued"])) for e in events] == model
    total_charged = sum((c for c, _ in model), Decimal(0))
    total_exact = sum((e for _, e in model), Decimal(0))
    assert Decimal(0) < total_charged - total_exact < 24 * UNIT
    assert all(Decimal(0) <= c - e < UNIT for c, e in model)
    assert sum((postings_to(e, "system:rounding") for e in events), Decimal(0)) == (
        total_charged - total_exact)
    assert sum((postings_to(e, "system:interest") for e in events), Decimal(0)) == total_exact
    assert sum((postings_to(e, "carl") for e in events), Decimal(0)) == -total_charged
    state = queries.state(ledger, "carl", when(24 * HOUR))
    assert Decimal(state["balances"]["USDT"]) == -debt
    assert Decimal(state["interest"]["USDT"]["charged"]) == total_charged
    assert Decimal(state["interest"]["USDT"]["accrued"]) == Decimal("0")


def test_charging_twice_at_the_same_time_changes_nothing_and_nothing_accrued_no_event(
        store_url: str) -> None:
    """alice: debt 10,000 from 00:00, charged 0.36 (10,000 × 3,600 × 10⁻⁸) at 01:00; the same
    charge_interest again (and again with an id) is acknowledged and changes nothing. She then
    deposits 20,000 at 01:00 (no debt left): the 02:00 charge finds nothing accrued and records
    no event. dora never owed anything: no InterestCharged at all."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
        *account("dora", {"USDT": "500"}),
        charge(HOUR),
    ])
    before = {n: (queries.state(ledger, n), queries.events(ledger, n)) for n in ("alice", "dora")}
    assert ledger.handle(parse_command(charge(HOUR))) == "acknowledged"
    assert ledger.handle(parse_command({**charge(HOUR), "id": "charge_interest:x"})) == (
        "acknowledged")
    reader = Ledger(store_url)
    assert {n: (queries.state(reader, n), queries.events(reader, n))
            for n in ("alice", "dora")} == before
    charged = of_type(before["alice"][1], "InterestCharged")
    assert [Decimal(e["amount"]) for e in charged] == [Decimal("0.36")]

    apply(ledger, [deposit("alice", "USDT", "20000", "d1", HOUR), charge(2 * HOUR)])
    assert len(of_type(queries.events(ledger, "alice"), "InterestCharged")) == 1
    assert interest(ledger, "alice", 2 * HOUR) == (Decimal("0"), Decimal("0.36"))
    assert of_type(queries.events(ledger, "dora"), "InterestCharged") == []


def test_a_debt_below_the_free_amount_accrues_nothing_and_is_not_charged(
        store_url: str) -> None:
    """Free amount 5,000 (excess): a 4,000 debt for an hour accrues max(0, 4,000 − 5,000) = 0;
    charge_interest records no event; the asset is listed with accrued 0."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(free="5000"),
        *account("eva", {"BTC": "1"}),
        *loss("eva", "4000", "l1"),
        charge(HOUR),
    ])
    assert of_type(queries.events(ledger, "eva"), "InterestCharged") == []
    assert interest(ledger, "eva", HOUR) == (Decimal("0"), Decimal("0"))


# ----------------------------------------------------------------------------- repayment


def test_repay_converts_at_index_prices_and_rounds_what_is_given_up(store_url: str) -> None:
    """BTC index 30,000; debt 10,000 USDT. Repay 5,000 USDT with BTC: 5,000/30,000 =
    0.1666… BTC exact, given 0.16666667 (rounded up; the difference 0.0000000033… goes to
    system:rounding). DebtRepaid carries both legs; balances USDT −5,000, BTC 0.83333333."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(btc_index="30000"),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
        {"type": "repay", "at": t(60), "id": "r1", "account": "alice", "asset": "USDT",
         "amount": "5000", "with_asset": "BTC"},
    ])
    repaid = of_type(queries.events(ledger, "alice"), "DebtRepaid")
    assert len(repaid) == 1
    event = repaid[0]
    assert (event["asset"], Decimal(event["amount"]), event["with_asset"],
            Decimal(event["with_amount"])) == ("USDT", Decimal("5000"), "BTC",
                                               Decimal("0.16666667"))
    lines = {(p["account"], p["asset"]): Decimal(p["amount"]) for p in event["postings"]}
    assert lines[("alice", "USDT")] == Decimal("5000")
    assert lines[("system:exchange", "USDT")] == Decimal("-5000")
    assert lines[("alice", "BTC")] == Decimal("-0.16666667")
    assert Decimal(0) < lines[("system:rounding", "BTC")] < UNIT
    assert sum((v for (_, asset), v in lines.items() if asset == "BTC"), Decimal(0)) == 0
    state = queries.state(ledger, "alice")
    assert Decimal(state["balances"]["USDT"]) == Decimal("-5000")
    assert Decimal(state["balances"]["BTC"]) == Decimal("0.83333333")
    assert Decimal(state["debts"]["USDT"]) == Decimal("5000")


def test_repay_is_rejected_when_it_would_leave_the_account_short_of_margin(
        store_url: str) -> None:
    """Portfolio mode, default BTC risk unit, BTC index 50,000, no interest. 10 BTC held; short
    10 BTC perpetual @50,000 with a 450,000 USDT fee (USDT −450,000). Effective equity
    500,000 − 450,000 = 50,000. Unit: spot in use 10 = the short, X = 0, MR1 0, MR4 500,000 ×
    0.2 % = 1,000, MR7 500,000 × 0.45 % = 2,250 → MMR 2,250, IMR 2,925; borrowing IMR
    450,000 × 10 % = 45,000: available 50,000 − 47,925 = 2,075.
    Repay 10,000 with 0.2 BTC: X = −0.2, MR1 = MR6 = 1,200, 1,200 + 1,000 < 2,250 → IMR 2,925;
    borrowing 44,000: available 3,075 ≥ 0, accepted.
    Repay 100,000 more with 2 BTC: X = −2.2, MR1 13,200 + MR4 1,000 → IMR 18,460; borrowing
    34,000: available 50,000 − 52,460 = −2,460 < 0: insufficient_margin, nothing changes."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(rate=None),
        {"type": "risk_unit", "at": t(), "asset": "BTC"},
        *account("pia", {"BTC": "10"}),
        {"type": "change_mode", "at": t(), "account": "pia", "mode": "portfolio"},
        fill("pia", "sell", "10000", "50000", "f1", fee="450000"),
    ])
    margin = queries.state(ledger, "pia")["margin"]
    assert Decimal(margin["available_usd"]) == Decimal("2075")
    apply(ledger, [{"type": "repay", "at": t(60), "id": "r1", "account": "pia",
                    "asset": "USDT", "amount": "10000", "with_asset": "BTC"}])
    margin = queries.state(ledger, "pia")["margin"]
    assert Decimal(margin["available_usd"]) == Decimal("3075")
    reject(ledger, {"type": "repay", "at": t(120), "id": "r2", "account": "pia",
                    "asset": "USDT", "amount": "100000", "with_asset": "BTC"},
           InsufficientMarginError, "insufficient_margin", ["pia"])


def test_a_deposit_of_the_debt_coin_repays_by_itself(store_url: str) -> None:
    """Debt 10,000 USDT; a 4,000 USDT deposit records Deposited only (no DebtRepaid): balance
    −6,000, debt 6,000; a further 7,000 leaves 1,000 and no debt."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
    ])
    count = len(queries.events(ledger, "alice"))
    apply(ledger, [deposit("alice", "USDT", "4000", "d1", 60)])
    new = queries.events(ledger, "alice")[count:]
    assert [e["type"] for e in new] == ["Deposited"]
    state = queries.state(ledger, "alice")
    assert (Decimal(state["balances"]["USDT"]), Decimal(state["debts"]["USDT"])) == (
        Decimal("-6000"), Decimal("6000"))
    apply(ledger, [deposit("alice", "USDT", "7000", "d2", 120)])
    state = queries.state(ledger, "alice")
    assert (Decimal(state["balances"]["USDT"]), Decimal(state["debts"]["USDT"])) == (
        Decimal("1000"), Decimal("0"))
    assert of_type(queries.events(ledger, "alice"), "DebtRepaid") == []


def test_auto_exchange_of_a_20000_usdt_debt_at_a_0975_discount(store_url: str) -> None:
    """USDT threshold 10,000 USD, discount 0.975. Held: 1 BTC at 60,000 (ratio 1: effective
    60,000) and 10 ETH at 2,500 with ratio 0.8 (effective 20,000; equity 25,000). Debt 20,000
    USDT > 10,000: the sweep converts 20,000/0.975 = 20,512.8205128… USD of BTC and ETH, pro
    rata to effective collateral 60,000 : 20,000 = 3 : 1 (not to equity 60 : 25):
      BTC: receives 15,000 USDT, gives 15,000/0.975/60,000 = 0.2564102564… → 0.25641026 BTC;
      ETH: receives  5,000 USDT, gives  5,000/0.975/2,500  = 2.0512820512… → 2.05128206 ETH.
    Afterwards USDT 0, BTC 0.74358974, ETH 7.94871794; no debt."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(btc_index="60000", rate=None, auto_exchange_threshold_usd="10000",
                   auto_exchange_discount="0.975"),
        {"type": "asset", "at": t(), "asset": "ETH", "precision": 8,
         "collateral_tiers": [{"up_to": "100", "ratio": "0.8"}, {"up_to": None, "ratio": "0"}]},
        {"type": "index_price", "at": t(), "asset": "ETH", "price": "2500"},
        *account("alice", {"BTC": "1", "ETH": "10"}),
        *loss("alice", "20000", "l1"),
        {"type": "check_margin", "at": t(60)},
    ])
    exchanged = of_type(queries.events(ledger, "alice"), "AutoExchanged")
    rows = sorted((e["with_asset"], e["asset"], Decimal(e["amount"]), Decimal(e["with_amount"]))
                  for e in exchanged)
    assert rows == [("BTC", "USDT", Decimal("15000"), Decimal("0.25641026")),
                    ("ETH", "USDT", Decimal("5000"), Decimal("2.05128206"))]
    index = {"BTC": Decimal("60000"), "ETH": Decimal("2500")}
    given_exact_usd = sum(
        (postings_to_asset(e, "system:exchange", e["with_asset"]) * index[e["with_asset"]]
         for e in exchanged), Decimal(0))
    # System-side amounts carry 18 places (postings.SYSTEM_PLACES): coins given are cut at
    # 1e-18, i.e. within 60,000 × 0.5e-18 = 3e-14 USD per BTC line.
    assert abs(given_exact_usd - Decimal(20000) / Decimal("0.975")) < Decimal("1e-13")
    assert str(given_exact_usd).startswith("20512.82051282")
    given_rounded_usd = sum((Decimal(e["with_amount"]) * index[e["with_asset"]]
                             for e in exchanged), Decimal(0))
    assert Decimal("20512.82") <= given_rounded_usd < Decimal("20512.83")
    for event in exchanged:
        lines = event["postings"]
        for asset in {p["asset"] for p in lines}:
            assert sum((Decimal(p["amount"]) for p in lines if p["asset"] == asset),
                       Decimal(0)) == 0
    state = queries.state(ledger, "alice")
    assert {a: Decimal(v) for a, v in state["balances"].items()} == {
        "USDT": Decimal("0"), "BTC": Decimal("0.74358974"), "ETH": Decimal("7.94871794")}
    assert all(Decimal(v) == 0 for v in state["debts"].values())


def postings_to_asset(event: dict[str, Any], account_name: str, asset: str) -> Decimal:
    return sum((Decimal(p["amount"]) for p in event["postings"]
                if p["account"] == account_name and p["asset"] == asset), Decimal(0))


def test_auto_exchange_waits_until_the_debt_is_worth_more_than_the_threshold(
        store_url: str) -> None:
    """Threshold 10,000 USD: a debt of exactly 10,000 USDT is not "more than" it, so the
    sweep exchanges nothing; after a further loss of 0.00000001 it is, and the next sweep
    covers the whole 10,000.00000001 (USDT back to 0)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(btc_index="60000", rate=None, auto_exchange_threshold_usd="10000",
                   auto_exchange_discount="0.975"),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
        {"type": "check_margin", "at": t(60)},
    ])
    assert of_type(queries.events(ledger, "alice"), "AutoExchanged") == []
    apply(ledger, [*loss("alice", "0.00000001", "l2", 120),
                   {"type": "check_margin", "at": t(180)}])
    exchanged = of_type(queries.events(ledger, "alice"), "AutoExchanged")
    assert [(e["with_asset"], Decimal(e["amount"])) for e in exchanged] == [
        ("BTC", Decimal("10000.00000001"))]
    assert Decimal(queries.state(ledger, "alice")["balances"]["USDT"]) == Decimal("0")


def test_change_mode_is_refused_while_debt_remains(store_url: str) -> None:
    """A multi-asset account owing 10,000 USDT cannot change mode: mode_change_blocked, and
    nothing changes; once a deposit clears the debt it can."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *reference(),
        *account("alice", {"BTC": "1"}),
        *loss("alice", "10000", "l1"),
    ])
    reject(ledger, {"type": "change_mode", "at": t(60), "account": "alice",
                    "mode": "single_asset"}, ModeChangeBlockedError, "mode_change_blocked",
           ["alice"])
    apply(ledger, [deposit("alice", "USDT", "10000", "d1", 60),
                   {"type": "change_mode", "at": t(60), "account": "alice",
                    "mode": "single_asset"}])
    assert queries.state(ledger, "alice")["mode"] == "single_asset"


# ----------------------------------------------------------------------------- replay


def replay_feed() -> list[dict[str, Any]]:
    """alice: 1,000 USDT and 1 BTC, cross long 1 BTC @50,000.
    00:10 mark 48,000 → liability 1,000;   00:25 deposit 500 → liability 500;
    00:40 USDT rate doubled (2 × 10⁻⁸);     01:00 charge: 1,000 × 900 × 10⁻⁸ + 500 × 900 ×
    10⁻⁸ + 500 × 1,200 × 2 × 10⁻⁸ = 0.009 + 0.0045 + 0.012 = 0.0255;
    01:20 mark 47,000;  01:50 mark 51,000 (no liability);  02:00 charge;
    02:30 mark 48,400 (liability again);  03:00 charge."""
    return [
        *reference(),
        *account("alice", {"BTC": "1", "USDT": "1000"}),
        fill("alice", "buy", "1000", "50000", "f1"),
        mark("48000", 10 * MINUTE),
        deposit("alice", "USDT", "500", "d1", 25 * MINUTE),
        usdt(40 * MINUTE, rate=RATE_2E8),
        charge(HOUR),
        mark("47000", HOUR + 20 * MINUTE),
        mark("51000", HOUR + 50 * MINUTE),
        charge(2 * HOUR),
        mark("48400", 2 * HOUR + 30 * MINUTE),
        charge(3 * HOUR),
    ]


def test_replayed_accrual_equals_a_store_fed_only_up_to_that_second(
        store_url: str, tmp_path: Path) -> None:
    """replay_feed in the store under test; for each T, a fresh SQLite store fed only the
    commands with at ≤ T reports the same `interest` (and debts) at T as the full store at T.
    Spot values by hand: 00:25 → 1,000 × 900 × 10⁻⁸ = 0.009; 00:40 → + 500 × 900 × 10⁻⁸ =
    0.0135; 01:00 → charged 0.0255, accrued 0."""
    feed = replay_feed()
    ledger = Ledger(store_url)
    apply(ledger, feed)
    reader = Ledger(store_url)
    assert interest(reader, "alice", 25 * MINUTE) == (Decimal("0.009"), Decimal("0"))
    assert interest(reader, "alice", 40 * MINUTE) == (Decimal("0.0135"), Decimal("0"))
    assert interest(reader, "alice", HOUR) == (Decimal("0"), Decimal("0.0255"))
    checkpoints = [5 * MINUTE, 10 * MINUTE, 17 * MINUTE + 13, 25 * MINUTE, 40 * MINUTE - 1,
                   40 * MINUTE, HOUR - 1, HOUR, HOUR + 30 * MINUTE, 2 * HOUR,
                   2 * HOUR + 45 * MINUTE + 7, 3 * HOUR]
    for number, seconds in enumerate(checkpoints):
        partial = Ledger(f"sqlite:///{tmp_path / f'partial-{number}.db'}")
        apply(partial, [c for c in feed if c["at"] <= t(seconds)])
        expected = queries.state(partial, "alice", when(seconds))
        actual = queries.state(reader, "alice", when(seconds))
        assert (actual["interest"], actual["debts"], actual["balances"]) == (
            expected["interest"], expected["debts"], expected["balances"]), seconds
