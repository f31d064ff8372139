"""Idempotency keys are unambiguous (issue 10), and revision 0004 rewrites the old ones.

Before: keys were `type|account|id`, so alice-like accounts `a|b` (id `c`) and `a` (id `b|c`)
shared `deposit|a|b|c`: the second deposit was acknowledged and never applied. Now account and
id are a JSON array; periodic keys keep their `check_margin|@<at>` prefix.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from ledger.application import queries, schema
from ledger.application.commands import (
    idempotency_key,
    parse_command,
    periodic_prefix,
    repeat_key,
)
from ledger.application.service import ACKNOWLEDGED, APPLIED, Ledger

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T01:00:00Z"

SETUP: list[dict[str, Any]] = [
    {"type": "asset", "at": T0, "asset": "USDT", "precision": 8},
    {"type": "open_account", "at": T0, "account": "a|b", "mode": "single_asset"},
    {"type": "open_account", "at": T0, "account": "a", "mode": "single_asset"},
]


def deposit(account: str, identifier: str, amount: str = "5") -> dict[str, Any]:
    return {"type": "deposit", "at": T1, "id": identifier, "account": account, "asset": "USDT",
            "amount": amount}


def keys(url: str) -> set[str]:
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(
                text("SELECT command_key FROM ledger_commands"))}
    finally:
        engine.dispose()


def test_names_holding_the_separator_make_different_keys() -> None:
    first = idempotency_key(parse_command(deposit("a|b", "c")))
    second = idempotency_key(parse_command(deposit("a", "b|c")))
    assert first == 'deposit|["a|b","c"]'
    assert second == 'deposit|["a","b|c"]'


def test_a_transfer_is_keyed_by_its_from_account() -> None:
    command = parse_command({"type": "transfer", "at": T1, "id": "t1", "from": "bob",
                             "to": "alice", "asset": "USDT", "amount": "5"})
    assert idempotency_key(command) == 'transfer|["bob","t1"]'


def test_periodic_and_repeat_keys_keep_their_prefix() -> None:
    """`command_times("check_margin|@")` (service, scheduler) still finds the sweeps."""
    sweep = parse_command({"type": "check_margin", "at": "2025-01-01T08:00:00Z", "id": "x|y"})
    assert idempotency_key(sweep) == "check_margin|@2025-01-01T08:00:00+00:00"
    assert periodic_prefix("check_margin") == "check_margin|@"
    mark = parse_command({"type": "mark_price", "at": T0, "symbol": "BTCUSDT", "price": "1"})
    assert repeat_key(mark, "abc") == "mark_price|@2025-01-01T00:00:00+00:00|abc"


def test_the_two_colliding_deposits_are_both_applied(store_url: str) -> None:
    """a|b receives 5 (id c), a receives 7 (id b|c): two commands, not a repeat."""
    app = Ledger(store_url)
    try:
        for command in SETUP:
            app.handle(parse_command(command))
        assert app.handle(parse_command(deposit("a|b", "c"))) == APPLIED
        assert app.handle(parse_command(deposit("a", "b|c", "7"))) == APPLIED
        assert app.handle(parse_command(deposit("a", "b|c", "7"))) == ACKNOWLEDGED
        assert queries.state(app, "a|b")["balances"]["USDT"] == "5"
        assert queries.state(app, "a")["balances"]["USDT"] == "7"
    finally:
        app.close()


def test_revision_0004_rewrites_old_keys_so_a_retry_is_still_acknowledged(
    store_url: str,
) -> None:
    """Down to 0003 the keys are written the old way (`deposit|a|b|c`); up again they are
    JSON arrays, and retrying every deposit changes nothing (balances 5 and 7 as before)."""
    app = Ledger(store_url)
    try:
        for command in SETUP:
            app.handle(parse_command(command))
        app.handle(parse_command(deposit("a|b", "c")))
        app.handle(parse_command(deposit("a", "plain", "7")))
    finally:
        app.close()
    schema.downgrade(store_url, "0003")
    old = keys(store_url)
    assert "deposit|a|b|c" in old
    assert "deposit|a|plain" in old
    schema.upgrade(store_url)
    new = keys(store_url)
    assert 'deposit|["a|b","c"]' in new  # `a|b` is the known account of the two splits
    assert 'deposit|["a","plain"]' in new
    assert not any(key.startswith("deposit|a|") for key in new)
    app = Ledger(store_url)
    try:
        assert app.handle(parse_command(deposit("a|b", "c"))) == ACKNOWLEDGED
        assert app.handle(parse_command(deposit("a", "plain", "7"))) == ACKNOWLEDGED
        assert queries.state(app, "a|b")["balances"]["USDT"] == "5"
        assert queries.state(app, "a")["balances"]["USDT"] == "7"
    finally:
        app.close()


def test_an_ambiguous_old_key_keeps_every_reading() -> None:
    """Neither split names a known account: both are kept (never applied twice)."""
    from importlib import import_module

    revision = import_module("migrations.versions.0004_unambiguous_command_keys")
    assert revision.new_keys("deposit|x|y|z", set()) == [
        'deposit|["x","y|z"]', 'deposit|["x|y","z"]']
    assert revision.new_keys("deposit|x|y|z", {"x"}) == ['deposit|["x","y|z"]']
    assert revision.new_keys("transfer|bob|t1", set()) == ['transfer|["bob","t1"]']
    assert json.loads(revision.new_keys("fill|é|f1", set())[0].partition("|")[2]) == ["é", "f1"]


def test_differing_fields_names_what_an_id_conflict_changed() -> None:
    """For the lead's id_conflict message: d1 re-sent with 10,001 instead of 10,000 and at
    another time differs in `amount` and `at`; "10000.0" equals "10000" (parsed values)."""
    from ledger.application.commands import differing_fields

    first = parse_command(deposit("alice", "d1", "10000")).content()
    assert differing_fields(first, parse_command(deposit("alice", "d1", "10000.0")).content()) == []
    changed = {**deposit("alice", "d1", "10001"), "at": "2025-01-01T02:00:00Z"}
    assert differing_fields(first, parse_command(changed).content()) == ["amount", "at"]


@pytest.mark.parametrize(("inverse", "qty", "size", "price", "refused"), [
    (False, "10", "0.0001", "30000", False),  # 0.03 BTC = 30 USDT
    (False, "1000000000000", "1000000", "1000000000", True),  # 10^27
    (False, "1000000000", "1000000", "1", False),  # 10^15 exactly: the bound
    (False, "1000000001", "1000000", "1", True),
    (True, "100", "100", "30000", False),  # 10,000 USD / 30,000 = 0.33 BTC
    (True, "1000000000000", "1000000", "0.000000000001", True),  # 10^30 coin
])
def test_notional_error_bounds_the_product_the_fields_cannot(
    inverse: bool, qty: str, size: str, price: str, refused: bool
) -> None:
    from decimal import Decimal

    from ledger.application.commands import notional_error

    message = notional_error(Decimal(qty), Decimal(size), Decimal(price), inverse=inverse)
    assert (message is not None) == refused
    if refused:
        assert message is not None and "must be at most 10^15" in message


@pytest.mark.parametrize("parts", [("alice", "d1"), ("a|b", "c"), ('x"y', "z"), ("é", "中"),
                                   ("a\\b", "c"), ("tab\tx", "y"), ("\u2028", "a")])
def test_the_fast_key_encoding_is_the_json_array(parts: tuple[str, str]) -> None:
    import json

    from ledger.application.commands import _parts

    assert _parts(*parts) == json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
