"""Exchange conventions of issue 14 (interest accrual, auto-exchange trigger, funding rate
basis, payment rounding) end to end through `Ledger.handle` on both stores, read back through
the contract's `state` and `events`. Expected figures are hand computations (docstrings) of the
exchanges' published rules (ledger/rules/interest.py `hourly_accrued`, rounding.py, funding.py).

Hourly rate 0.02 % = annual 1.752 (1.752 × 3,600 / 31,536,000 = 0.0002 exactly): 10,000 USDT
owed for one hour accrues 2. USDT debts come from a realised loss (1 BTC bought at 50,000,
sold at 50,000 − loss; fees 0) in a multi-asset account holding 1 BTC (index 60,000).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.errors import InvalidInputError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
MINUTE = 60
HOUR = 3600
HOURLY_2_BP = "1.752"  # 0.02 % per hour


def t(seconds: int = 0) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def hm(hours: int, minutes: int = 0) -> int:
    return hours * HOUR + minutes * MINUTE


def apply(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    with ledger.batch():
        for data in commands:
            ledger.handle(parse_command(data))


def usdt(at: int = 0, rate: str = HOURLY_2_BP, accrual: str = "per_second", free: str = "0",
         mode: str = "excess", **extra: Any) -> dict[str, Any]:
    return {"type": "asset", "at": t(at), "asset": "USDT", "precision": 8,
            "interest": {"annual_rate": rate, "free_amount": free, "free_mode": mode,
                         "accrual": accrual}, **extra}


def reference(**usdt_terms: Any) -> list[dict[str, Any]]:
    return [
        usdt(**usdt_terms),
        {"type": "asset", "at": t(), "asset": "BTC", "precision": 8},
        {"type": "index_price", "at": t(), "asset": "BTC", "price": "60000"},
        {"type": "instrument", "at": t(), "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "risk_tiers": [{"up_to": "1000000000", "mmr": "0.004", "max_leverage": "100"}]},
        {"type": "mark_price", "at": t(), "symbol": "BTCUSDT", "price": "50000"},
        {"type": "open_account", "at": t(), "account": "alice", "mode": "multi_asset"},
        {"type": "deposit", "at": t(), "id": "d0", "account": "alice", "asset": "BTC",
         "amount": "1"},
    ]


def loss(amount: str, ident: str, at: int) -> list[dict[str, Any]]:
    fill = {"type": "fill", "at": t(at), "account": "alice", "symbol": "BTCUSDT",
            "qty": "1000", "fee": "0", "margin_type": "cross"}
    return [{**fill, "id": f"{ident}-open", "side": "buy", "price": "50000"},
            {**fill, "id": f"{ident}-close", "side": "sell",
             "price": str(Decimal(50000) - Decimal(amount))}]


def repay(amount: str, ident: str, at: int) -> dict[str, Any]:
    return {"type": "repay", "at": t(at), "id": ident, "account": "alice", "asset": "USDT",
            "amount": amount, "with_asset": "BTC"}


def deposit(amount: str, ident: str, at: int) -> dict[str, Any]:
    return {"type": "deposit", "at": t(at), "id": ident, "account": "alice", "asset": "USDT",
            "amount": amount}


def charge(at: int) -> dict[str, Any]:
    return {"type": "charge_interest", "at": t(at)}


def interest(ledger: Ledger, at: int) -> tuple[Decimal, Decimal]:
    view = queries.state(ledger, "alice", T0 + timedelta(seconds=at))["interest"]["USDT"]
    return Decimal(view["accrued"]), Decimal(view["charged"])


def charges(ledger: Ledger) -> list[tuple[str, Decimal]]:
    return [(e["at"], Decimal(e["amount"])) for e in queries.events(ledger, "alice")
            if e["type"] == "InterestCharged"]


def test_started_hours_accrue_the_first_hour_at_borrowing(store_url: str) -> None:
    """RightBTC's example: 10,000 USDT borrowed 10:10, repaid 11:10, 0.02 %/h → 2 hours = 4.
    At 10:10 (the borrowing) the first hour is accrued (2) but nothing is charged: no
    InterestCharged inside the fill. 10:59: still 2. 11:10: the repayment's own instant starts
    hour 2: 4. 12:00: 4, charged by the 12:00 charge_interest, USDT −4; the 4 charged is
    itself owed from 12:00, a new borrowing whose first hour accrues at once: 4 × 0.02 % =
    0.0008."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(accrual="started_hours"), *loss("10000", "l1", hm(10, 10))])
    assert interest(ledger, hm(10, 10)) == (Decimal(2), Decimal(0))
    assert charges(ledger) == []
    apply(ledger, [repay("10000", "r1", hm(11, 10)), charge(hm(12))])
    assert interest(ledger, hm(10, 59)) == (Decimal(2), Decimal(0))
    assert interest(ledger, hm(11, 10)) == (Decimal(4), Decimal(0))
    assert interest(ledger, hm(12)) == (Decimal("0.0008"), Decimal(4))
    assert charges(ledger) == [("2025-01-01T12:00:00Z", Decimal(4))]
    state = queries.state(ledger, "alice", T0 + timedelta(seconds=hm(12)))
    assert Decimal(state["balances"]["USDT"]) == Decimal(-4)


def test_started_hours_across_hourly_charges_are_counted_once(store_url: str) -> None:
    """10,000 borrowed 10:10, never repaid, charges at 11:00, 12:00, 13:00. Hours start at
    10:10 (charged at 11:00: 2), 11:10 (charged 12:00, on 10,002: 2.0004), 12:10 (charged
    13:00 on 10,004.0004: 2.00080008)."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(accrual="started_hours"), *loss("10000", "l1", hm(10, 10)),
                   charge(hm(11)), charge(hm(12)), charge(hm(13))])
    assert [amount for _, amount in charges(ledger)] == [
        Decimal("2"), Decimal("2.0004"), Decimal("2.00080008")]


def test_hours_rounded_up_reproduces_bitget(store_url: str) -> None:
    """Bitget: 10,000 USDT at 0.0126279 %/day (annual 0.046091835), 00:10 → 02:30 = 3 hours:
    0.15784875, charged at 03:00 to the digit. At 00:10 (borrowing) nothing has accrued yet
    (the state lists no interest, as under per_second at a borrowing's first instant); a
    minute later one whole hour has: 10,000 × 0.0126279 % / 24 = 0.05261625."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(rate="0.046091835", accrual="hours_rounded_up"),
                   *loss("10000", "l1", hm(0, 10)), repay("10000", "r1", hm(2, 30)),
                   charge(hm(3))])
    view = queries.state(ledger, "alice", T0 + timedelta(seconds=hm(0, 10)))["interest"]
    assert Decimal(view.get("USDT", {"accrued": "0"})["accrued"]) == 0
    assert interest(ledger, hm(0, 11))[0] == Decimal("0.05261625")
    assert interest(ledger, hm(2, 30))[0] == Decimal("0.15784875")
    assert charges(ledger) == [("2025-01-01T03:00:00Z", Decimal("0.15784875"))]


def test_hourly_snapshot_reproduces_bit_scaled(store_url: str) -> None:
    """BIT's example in USDT (× 10,000): free 2,000, full mode, 0.01 %/h (annual 0.876).
    05:30 owe 10,000; 05:55 deposit 8,000 (2,000 left); 06:00 snapshot: within the free
    amount, 0; 06:20 a further 2,000 loss (4,000); 07:00: 4,000 × 0.01 % = 0.4; 08:00: 0.4,
    charged with it at 08:00: 0.8."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(rate="0.876", accrual="hourly_snapshot", free="2000",
                              mode="full"),
                   *loss("10000", "l1", hm(5, 30)), deposit("8000", "u1", hm(5, 55)),
                   *loss("2000", "l2", hm(6, 20)), charge(hm(8))])
    assert interest(ledger, hm(6))[0] == Decimal(0)
    assert interest(ledger, hm(7))[0] == Decimal("0.4")
    assert interest(ledger, hm(7, 59))[0] == Decimal("0.4")
    assert charges(ledger) == [("2025-01-01T08:00:00Z", Decimal("0.8"))]


def test_a_policy_change_applies_from_its_at_and_a_replay_uses_the_old_one(
        store_url: str) -> None:
    """10,000 owed from 00:00 at 0.02 %/h, per second; at 01:30 USDT switches to
    hourly_snapshot. As of 01:00: per second, 2. As of 03:00: 1.5 h per second = 3, plus the
    snapshots at 02:00 and 03:00 (2 each) = 7. The replay as of 01:00 still reads 2."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(), *loss("10000", "l1", 0),
                   usdt(hm(1, 30), accrual="hourly_snapshot")])
    assert interest(ledger, hm(3))[0] == Decimal(7)
    assert interest(ledger, hm(1))[0] == Decimal(2)
    assert interest(ledger, hm(1, 30))[0] == Decimal(3)


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("accrual", "daily", "per_second, hourly_snapshot, started_hours, hours_rounded_up"),
    ("auto_exchange_trigger", "at_least", "above, at_or_above"),
    ("payment_rounding", "half_up", "payer_pays_up, half_even"),
])
def test_a_policy_outside_its_set_is_invalid_input_naming_the_allowed_values(
        field: str, value: str, allowed: str) -> None:
    data = usdt()
    if field == "accrual":
        data["interest"]["accrual"] = value
    else:
        data[field] = value
    with pytest.raises(InvalidInputError) as caught:
        parse_command(data)
    assert caught.value.code == "invalid_input"
    assert allowed in str(caught.value)
    assert field in str(caught.value)


def test_funding_rate_basis_outside_its_set_is_invalid_input() -> None:
    data = reference()[3] | {"funding_rate_basis": "per_hour"}
    with pytest.raises(InvalidInputError) as caught:
        parse_command(data)
    assert "funding_rate_basis must be one of: per_interval, per_8h" in str(caught.value)


def test_default_policies_leave_the_command_digest_as_before() -> None:
    """A command written without the new fields keeps the content (and so the repeat key)
    it had before them: the defaults are left out."""
    content = parse_command(reference()[1]).content()
    assert not {"auto_exchange_trigger", "payment_rounding"} & content.keys()
    assert "accrual" not in parse_command(usdt()).content()["interest"]
    assert "funding_rate_basis" not in parse_command(reference()[3]).content()


def test_half_even_interest_charge_and_its_rounding_line(store_url: str) -> None:
    """payment_rounding half_even: 10,000 USDT owed for an hour at 10 % (DESIGN §6.8):
    0.1141552511415525… is charged as 0.11415525 (the 9th digit is 1: down; payer_pays_up
    would charge 0.11415526). system:interest takes the exact amount (cut at 18 places) and
    system:rounding the −0.0000000011415525… difference; the event balances."""
    ledger = Ledger(store_url)
    apply(ledger, [*reference(rate="0.10", payment_rounding="half_even"),
                   *loss("10000", "l1", 0), charge(HOUR)])
    [event] = [e for e in queries.events(ledger, "alice") if e["type"] == "InterestCharged"]
    assert Decimal(event["amount"]) == Decimal("0.11415525")
    lines = {p["account"]: Decimal(p["amount"]) for p in event["postings"]}
    assert lines["alice"] == Decimal("-0.11415525")
    assert lines["system:interest"] == Decimal("0.114155251141552511")
    assert lines["system:rounding"] == Decimal("-0.000000001141552511")
    assert sum(lines.values(), Decimal(0)) == 0
    state = queries.state(ledger, "alice", T0 + timedelta(seconds=HOUR))
    assert Decimal(state["balances"]["USDT"]) == Decimal("-10000.11415525")


def test_terms_store_a_convention_only_when_it_is_not_the_default() -> None:
    """Events written before issue 14 hold no convention keys and read back with the
    defaults; a non-default convention round-trips."""
    from ledger.domain.terms import (
        asset_from_dict,
        asset_to_dict,
        instrument_from_dict,
        instrument_to_dict,
    )
    from ledger.rules.terms import (
        AssetTerms,
        AutoExchangeTrigger,
        FundingRateBasis,
        InstrumentTerms,
        InterestAccrual,
        InterestTerms,
        Kind,
        PaymentRounding,
        RiskTier,
    )

    plain = AssetTerms("USDT", interest=InterestTerms(Decimal("0.1")))
    stored = asset_to_dict(plain)
    assert not {"auto_exchange_trigger", "payment_rounding"} & stored.keys()
    assert "accrual" not in stored["interest"]
    assert asset_from_dict(stored) == plain
    custom = AssetTerms("USDT", interest=InterestTerms(
        Decimal("0.1"), accrual=InterestAccrual.STARTED_HOURS),
        auto_exchange_trigger=AutoExchangeTrigger.AT_OR_ABOVE,
        payment_rounding=PaymentRounding.HALF_EVEN)
    assert asset_from_dict(asset_to_dict(custom)) == custom
    tiers = (RiskTier(None, Decimal("0.004"), Decimal("100")),)
    instrument = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", Decimal(1),
                                 tiers)
    assert "funding_rate_basis" not in instrument_to_dict(instrument)
    per_8h = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", Decimal(1), tiers,
                             funding_rate_basis=FundingRateBasis.PER_8H)
    assert instrument_from_dict(instrument_to_dict(per_8h)) == per_8h
