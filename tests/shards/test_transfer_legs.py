"""A transfer in three legs through `system:transit` (docs/sharding.md), in one process, on
both backends: hand-computed balances and postings, every event balanced, the destination's code
on a refusal, and a repeat that records nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.commands import parse_line
from ledger.application.service import ACKNOWLEDGED, APPLIED, Ledger
from ledger.errors import (
    InsufficientBalanceError,
    LedgerError,
    OutOfOrderError,
    UnknownAccountError,
)

T0 = "2025-01-01T00:00:00Z"


def send(ledger: Ledger, **command: Any) -> str:
    return ledger.handle(parse_line(json.dumps(command)))


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    app = Ledger(store_url)
    send(app, type="asset", at=T0, asset="USDT", precision=8)
    for name in ("alice", "bob"):
        send(app, type="open_account", at=T0, account=name, mode="single_asset")
    send(app, type="deposit", at=T0, id="d1", account="alice", asset="USDT", amount="100")
    yield app
    app.close()


def balance(ledger: Ledger, name: str) -> Decimal:
    account = ledger.find_account(name)
    assert account is not None
    return account.balances.get("USDT", Decimal(0))


def legs(ledger: Ledger, name: str, kinds: set[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(e["type"], [(p["account"], p["amount"]) for p in e["postings"]])
            for e in queries.events(ledger, name) if e["type"] in kinds]


TRANSFER_KINDS = {"TransferredOut", "TransferredIn", "TransferReturned"}


def test_an_applied_transfer_goes_out_to_transit_and_in_from_it(ledger: Ledger) -> None:
    transfer = {"type": "transfer", "at": "2025-01-01T01:00:00Z", "id": "t1", "from": "alice",
                "to": "bob", "asset": "USDT", "amount": "30.5"}
    assert send(ledger, **transfer) == APPLIED
    assert (balance(ledger, "alice"), balance(ledger, "bob")) == (Decimal("69.5"),
                                                                  Decimal("30.5"))
    assert legs(ledger, "alice", TRANSFER_KINDS) == [
        ("TransferredOut", [("alice", "-30.5"), ("system:transit", "30.5")])]
    assert legs(ledger, "bob", TRANSFER_KINDS) == [
        ("TransferredIn", [("system:transit", "-30.5"), ("bob", "30.5")])]
    assert send(ledger, **transfer) == ACKNOWLEDGED
    assert balance(ledger, "bob") == Decimal("30.5")


@pytest.mark.parametrize(("changes", "error", "code"), [
    ({"to": "nobody"}, UnknownAccountError, "unknown_account"),
    ({"at": "2025-01-01T00:30:00Z"}, OutOfOrderError, "out_of_order"),  # bob moved on to 01:00
])
def test_a_refusal_of_the_destination_returns_the_money(
    ledger: Ledger, changes: dict[str, str], error: type[LedgerError], code: str
) -> None:
    send(ledger, type="deposit", at="2025-01-01T01:00:00Z", id="d2", account="bob",
         asset="USDT", amount="1")
    transfer = {"type": "transfer", "at": "2025-01-01T00:30:00Z", "id": "t1", "from": "alice",
                "to": "bob", "asset": "USDT", "amount": "40", **changes}
    if "nobody" in transfer["to"]:
        transfer["at"] = "2025-01-01T02:00:00Z"
    bob_before = queries.events(ledger, "bob")
    with pytest.raises(error) as caught:
        send(ledger, **transfer)
    assert caught.value.code == code
    assert (balance(ledger, "alice"), balance(ledger, "bob")) == (Decimal(100), Decimal(1))
    assert legs(ledger, "alice", TRANSFER_KINDS) == [
        ("TransferredOut", [("alice", "-40"), ("system:transit", "40")]),
        ("TransferReturned", [("system:transit", "-40"), ("alice", "40")])]
    returned = queries.events(ledger, "alice")[-1]
    assert returned["reason"] == code
    assert queries.events(ledger, "bob") == bob_before
    # The refused transfer is done: sent again, it is acknowledged and records nothing.
    count = len(queries.events(ledger, "alice"))
    assert send(ledger, **transfer) == ACKNOWLEDGED
    fresh = Ledger(ledger.url)
    try:
        assert len(queries.events(fresh, "alice")) == count
    finally:
        fresh.close()


def test_a_refusal_of_the_source_records_nothing(ledger: Ledger) -> None:
    before = queries.events(ledger, "alice")
    with pytest.raises(InsufficientBalanceError):
        send(ledger, type="transfer", at="2025-01-01T01:00:00Z", id="t1",
             **{"from": "alice"}, to="nobody", asset="USDT", amount="100.01")
    assert queries.events(ledger, "alice") == before


# ------------------------------------------------------------ found in review (issue 11)


def _balances(ledger: Ledger, name: str) -> dict[str, str]:
    return dict(queries.state(ledger, name)["balances"])


def test_a_transfer_stopped_after_its_out_leg_is_finished_by_any_later_run(
        store_url: str) -> None:
    """A shard worker committed the out-leg of t1, then the run stopped (killed). The same
    feed run again by ONE process must finish the transfer (in-leg: bob +40), not acknowledge
    it with 40 left in system:transit for good."""
    from ledger.application.workers import ShardWorker

    app = Ledger(store_url)
    send(app, type="asset", at=T0, asset="USDT", precision=8)
    for name in ("alice", "bob"):
        send(app, type="open_account", at=T0, account=name, mode="single_asset")
    send(app, type="deposit", at=T0, id="d1", account="alice", asset="USDT", amount="100")
    app.close()
    t1 = json.dumps({"type": "transfer", "at": "2025-01-01T01:00:00Z", "id": "t1",
                     "from": "alice", "to": "bob", "asset": "USDT", "amount": "40"})
    worker = ShardWorker(store_url)
    assert worker.apply([(5, t1, "out", "")]) == [APPLIED]
    worker.ledger.close()

    again = Ledger(store_url)
    assert again.handle(parse_line(t1)) == APPLIED  # the in-leg, now
    assert _balances(again, "alice") == {"USDT": "60"}
    assert _balances(again, "bob") == {"USDT": "40"}
    assert again.handle(parse_line(t1)) == ACKNOWLEDGED  # finished: nothing more
    assert _balances(again, "bob") == {"USDT": "40"}
    again.close()


def test_a_refused_transfer_repeated_after_the_destination_opened_creates_no_money(
        store_url: str) -> None:
    """t1 to bob is refused (bob unknown): out- and return legs. bob then opens, and the same
    t1 comes again. One process acknowledges it; a shard worker asked for the in-leg must
    acknowledge it too (bob stays empty), or system:transit would pay bob 40 it never got."""
    from ledger.application.workers import ShardWorker

    app = Ledger(store_url)
    send(app, type="asset", at=T0, asset="USDT", precision=8)
    send(app, type="open_account", at=T0, account="alice", mode="single_asset")
    send(app, type="deposit", at=T0, id="d1", account="alice", asset="USDT", amount="100")
    t1 = {"type": "transfer", "at": "2025-01-01T01:00:00Z", "id": "t1", "from": "alice",
          "to": "bob", "asset": "USDT", "amount": "40"}
    with pytest.raises(UnknownAccountError):
        send(app, **t1)
    send(app, type="open_account", at="2025-01-01T00:30:00Z", account="bob",
         mode="single_asset")
    assert send(app, **t1) == ACKNOWLEDGED
    app.close()
    worker = ShardWorker(store_url)
    text = json.dumps(t1)
    assert worker.apply([(6, text, "out", "")]) == [ACKNOWLEDGED]
    assert worker.apply([(6, text, "in", "")]) == [ACKNOWLEDGED]
    assert _balances(worker.ledger, "alice") == {"USDT": "100"}
    assert _balances(worker.ledger, "bob") == {}
    worker.ledger.close()
