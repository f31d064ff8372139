"""Bad input, each rejected with its contract code and changing nothing, on SQLite and PostgreSQL.

Every test starts from the same small market (MARKET below, all at 00:00) and sends one bad
command. "Changes nothing" is checked three ways: the store's notification log does not grow,
every account's `state` and event list read from the live application are what they were, and
a fresh `Ledger(url)` (a new process, everything from the store) reads the same.

The market, by hand:
- USDT (8 dp), USDC (6 dp), BTC (8 dp, index 30,000), ETH (8 dp, no index price).
- BTCUSDT, linear, size 0.0001 BTC, fees 0, tiers: notional ≤ 100,000 at 0.4 % (125×), then
  ≤ 1,000,000 at 0.5 % (20×); derived deduction of tier 2 = 100,000 × (0.005 − 0.004) = 100.
- BTCUSD, inverse on BTC, size 1 USD; ETHUSD, inverse on ETH (no index price for ETH).
- alice (single_asset) 10,000 USDT; bob (single_asset) 1,000 USDT; mia (multi_asset) 1 BTC.
The `trading` fixture adds, at 01:00: alice long 20,000 × 0.0001 = 2 BTC @30,000 at 10×
(initial margin 60,000 / 10 = 6,000, so available = max_withdrawable = 10,000 − 6,000 = 4,000);
bob's resting buy of 1,000 @29,000; mia long 1 BTC @30,000 closed at 01:30 @29,000
(realised 10,000 × 0.0001 × (29,000 − 30,000) = −1,000 USDT: a USDT debt of 1,000).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.commands import parse_line
from ledger.application.feed import run_feed
from ledger.application.service import ACKNOWLEDGED, APPLIED, Ledger
from ledger.application.store import sqlite_path
from ledger.errors import (
    AccountExistsError,
    IdConflictError,
    InsufficientBalanceError,
    InsufficientEquityError,
    InsufficientMarginError,
    InvalidInputError,
    LedgerError,
    LeverageTooHighError,
    ModeChangeBlockedError,
    NoPriceError,
    NotAllowedInModeError,
    OutOfOrderError,
    UnknownAccountError,
    UnknownAssetError,
    UnknownSymbolError,
)
from ledger.numbers import install


def at(hour: int, minute: int = 0) -> str:
    return f"2025-01-01T{hour:02d}:{minute:02d}:00Z"


T0 = at(0)
AT = at(2)  # when the bad commands are sent: after the market (00:00) and the trading (01:00)

TIERS = [{"up_to": "100000", "mmr": "0.004", "max_leverage": "125"},
         {"up_to": "1000000", "mmr": "0.005", "max_leverage": "20"}]

MARKET: list[dict[str, Any]] = [
    {"type": "asset", "at": T0, "asset": "USDT", "precision": 8},
    {"type": "asset", "at": T0, "asset": "USDC", "precision": 6},
    {"type": "asset", "at": T0, "asset": "BTC", "precision": 8},
    {"type": "asset", "at": T0, "asset": "ETH", "precision": 8},
    {"type": "index_price", "at": T0, "asset": "BTC", "price": "30000"},
    {"type": "instrument", "at": T0, "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.0001", "risk_tiers": TIERS},
    {"type": "instrument", "at": T0, "symbol": "BTCUSD", "kind": "inverse_perpetual",
     "base": "BTC", "settle": "BTC", "contract_size": "1",
     "risk_tiers": [{"up_to": "100", "mmr": "0.005", "max_leverage": "100"}]},
    {"type": "instrument", "at": T0, "symbol": "ETHUSD", "kind": "inverse_perpetual",
     "base": "ETH", "settle": "ETH", "contract_size": "1",
     "risk_tiers": [{"up_to": "1000", "mmr": "0.01", "max_leverage": "50"}]},
    {"type": "mark_price", "at": T0, "symbol": "BTCUSDT", "price": "30000"},
    {"type": "mark_price", "at": T0, "symbol": "BTCUSD", "price": "30000"},
    {"type": "mark_price", "at": T0, "symbol": "ETHUSD", "price": "2000"},
    {"type": "open_account", "at": T0, "account": "alice", "mode": "single_asset"},
    {"type": "open_account", "at": T0, "account": "bob", "mode": "single_asset"},
    {"type": "open_account", "at": T0, "account": "mia", "mode": "multi_asset"},
    {"type": "deposit", "at": T0, "id": "d1", "account": "alice", "asset": "USDT",
     "amount": "10000"},
    {"type": "deposit", "at": T0, "id": "d1", "account": "bob", "asset": "USDT", "amount": "1000"},
    {"type": "deposit", "at": T0, "id": "d1", "account": "mia", "asset": "BTC", "amount": "1"},
]

TRADING: list[dict[str, Any]] = [
    {"type": "fill", "at": at(1), "id": "f1", "account": "alice", "symbol": "BTCUSDT",
     "side": "buy", "qty": "20000", "price": "30000", "leverage": "10"},
    {"type": "open_orders", "at": at(1), "account": "bob", "symbol": "BTCUSDT",
     "buy": {"qty": "1000", "price": "29000"}, "sell": None},
    {"type": "fill", "at": at(1), "id": "f1", "account": "mia", "symbol": "BTCUSDT",
     "side": "buy", "qty": "10000", "price": "30000"},
    {"type": "fill", "at": at(1, 30), "id": "f2", "account": "mia", "symbol": "BTCUSDT",
     "side": "sell", "qty": "10000", "price": "29000"},
]

# One valid command per type (checked by test_every_template_is_accepted_as_is); each bad case
# changes one thing in one of them.
TEMPLATES: dict[str, dict[str, Any]] = {
    "deposit": {"type": "deposit", "at": AT, "id": "x1", "account": "alice", "asset": "USDT",
                "amount": "5"},
    "withdraw": {"type": "withdraw", "at": AT, "id": "w1", "account": "bob", "asset": "USDT",
                 "amount": "5"},
    "transfer": {"type": "transfer", "at": AT, "id": "t1", "from": "bob", "to": "alice",
                 "asset": "USDT", "amount": "5"},
    "fill": {"type": "fill", "at": AT, "id": "f9", "account": "bob", "symbol": "BTCUSDT",
             "side": "buy", "qty": "10", "price": "30000"},
    "open_orders": {"type": "open_orders", "at": AT, "account": "alice", "symbol": "BTCUSDT",
                    "buy": {"qty": "10", "price": "29000"}, "sell": None},
    "asset": {"type": "asset", "at": AT, "asset": "SOL", "precision": 8},
    "instrument": {"type": "instrument", "at": AT, "symbol": "BTCUSDC",
                   "kind": "linear_perpetual", "base": "BTC", "settle": "USDC",
                   "contract_size": "0.001", "risk_tiers": TIERS},
    "mark_price": {"type": "mark_price", "at": AT, "symbol": "BTCUSDT", "price": "30100"},
    "index_price": {"type": "index_price", "at": AT, "asset": "BTC", "price": "30100"},
    "funding_rate": {"type": "funding_rate", "at": AT, "symbol": "BTCUSDT", "rate": "0.0001"},
    "open_account": {"type": "open_account", "at": AT, "account": "zoe", "mode": "single_asset"},
    "change_mode": {"type": "change_mode", "at": AT, "account": "alice", "mode": "multi_asset"},
    "set_leverage": {"type": "set_leverage", "at": AT, "account": "bob", "symbol": "BTCUSDT",
                     "leverage": "20"},
    "settle_funding": {"type": "settle_funding", "at": at(8)},
    "check_margin": {"type": "check_margin", "at": AT},
    "charge_interest": {"type": "charge_interest", "at": AT},
}

DROP = object()  # a field value that removes the field
RAW = "__raw__"  # a placeholder replaced by a literal JSON token (NaN, 1e5, …)


def line(template: str, /, **changes: Any) -> str:
    """Return a template as a feed line, with fields changed or (DROP) removed."""
    data = dict(TEMPLATES[template])
    for key, value in changes.items():
        key = "from" if key == "from_" else key
        if value is DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data)


def raw(template: str, field: str, token: str, /, **changes: Any) -> str:
    """Return a template with `field` set to a literal JSON token (not a string)."""
    return line(template, **{**changes, field: RAW}).replace(json.dumps(RAW), token)


# ----------------------------------------------------------------------------- fixtures


def feed(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    report = run_feed(ledger, enumerate((json.dumps(c) for c in commands), start=1))
    assert report.internal_error is None, report.internal_error
    assert report.rejected == [], report.rejected


@pytest.fixture(scope="module")
def sqlite_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The market on SQLite, built once: each SQLite test starts from a copy of the file."""
    install()
    path = tmp_path_factory.mktemp("market") / "ledger.db"
    app = Ledger(f"sqlite:///{path}")
    feed(app, MARKET)
    app.close()
    return path


@pytest.fixture
def ledger(store_url: str, request: pytest.FixtureRequest) -> Iterator[Ledger]:
    if store_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("sqlite_market")
        target = Path(sqlite_path(store_url))
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", f"{target}{suffix}")
        app = Ledger(store_url)
    else:
        app = Ledger(store_url)
        feed(app, MARKET)
    yield app
    app.close()


@pytest.fixture
def trading(ledger: Ledger) -> Ledger:
    feed(ledger, TRADING)
    return ledger


def fingerprint(ledger: Ledger) -> dict[str, Any]:
    """Everything a rejected command must leave as it was."""
    names = ledger.account_names()
    return {
        "notifications": ledger.recorder.max_notification_id(),
        "accounts": names,
        "states": {name: queries.state(ledger, name) for name in names},
        "events": {name: queries.events(ledger, name) for name in names},
    }


def assert_store_is(ledger: Ledger, expected: dict[str, Any]) -> None:
    assert fingerprint(ledger) == expected
    fresh = Ledger(ledger.url)
    try:
        assert fingerprint(fresh) == expected
    finally:
        fresh.close()


def send(ledger: Ledger, text: str) -> str:
    """Parse and apply one feed line as the feed runner does (shape first, then the ledger)."""
    return ledger.handle(parse_line(text))


def assert_rejected(ledger: Ledger, text: str, error: type[LedgerError], code: str) -> LedgerError:
    """Send `text`; check the error's class and code, and that nothing changed."""
    before = fingerprint(ledger)
    with pytest.raises(error) as caught:
        send(ledger, text)
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert caught.value.code == code
    assert_store_is(ledger, before)
    return caught.value


def assert_acknowledged(ledger: Ledger, text: str) -> None:
    before = fingerprint(ledger)
    assert send(ledger, text) == ACKNOWLEDGED
    assert_store_is(ledger, before)


def balance(ledger: Ledger, name: str, asset: str) -> str:
    return str(queries.state(ledger, name)["balances"].get(asset, "0"))


def count(ledger: Ledger, name: str, event_type: str) -> int:
    return sum(1 for event in queries.events(ledger, name) if event["type"] == event_type)


# ----------------------------------------------------------------------------- controls


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_every_template_is_accepted_as_is(ledger: Ledger, kind: str) -> None:
    """The templates the bad cases start from are valid: only the change makes them bad."""
    assert send(ledger, line(kind)) == APPLIED


def test_the_market_is_what_the_docstring_computes(trading: Ledger) -> None:
    """alice: 10,000 − 6,000 initial margin = 4,000 available and withdrawable; mia owes
    1,000 USDT after the realised loss of 10,000 × 0.0001 × (29,000 − 30,000)."""
    alice = queries.state(trading, "alice")
    assert alice["margin"]["available_usd"] == "4000"
    assert alice["margin"]["max_withdrawable"]["USDT"] == "4000"
    mia = queries.state(trading, "mia")
    assert mia["balances"]["USDT"] == "-1000"
    assert mia["debts"]["USDT"] == "1000"


# ----------------------------------------------------------------------------- shape


NOT_POSITIVE = [
    ("deposit", "amount", "-5"), ("deposit", "amount", "0"), ("deposit", "amount", "0.0"),
    ("deposit", "amount", "-0"), ("deposit", "amount", "-0.00000001"),
    ("withdraw", "amount", "0"), ("withdraw", "amount", "-1"),
    ("transfer", "amount", "0"), ("transfer", "amount", "-5"),
    ("fill", "qty", "0"), ("fill", "qty", "-10"), ("fill", "price", "0"),
    ("fill", "price", "-30000"), ("fill", "leverage", "0"),
    ("mark_price", "price", "0"), ("mark_price", "price", "-1"),
    ("index_price", "price", "0"), ("instrument", "contract_size", "0"),
    ("set_leverage", "leverage", "-20"),
]


@pytest.mark.parametrize(("kind", "field", "value"), NOT_POSITIVE)
def test_an_amount_quantity_or_price_that_is_not_above_zero_is_invalid(
    ledger: Ledger, kind: str, field: str, value: str
) -> None:
    assert_rejected(ledger, line(kind, **{field: value}), InvalidInputError, "invalid_input")


@pytest.mark.parametrize("token", ["0", "-5", "-0.5"])
def test_a_json_number_that_is_not_above_zero_is_invalid(ledger: Ledger, token: str) -> None:
    assert_rejected(ledger, raw("deposit", "amount", token), InvalidInputError, "invalid_input")


@pytest.mark.parametrize(("side", "field"), [("buy", "qty"), ("sell", "price")])
def test_an_open_order_that_is_not_above_zero_is_invalid(
    ledger: Ledger, side: str, field: str
) -> None:
    order = {"qty": "10", "price": "29000", field: "0"}
    other = "sell" if side == "buy" else "buy"
    text = line("open_orders", **{side: order, other: None})
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


MALFORMED = [
    "1.2.3", "1e5", "1E5", "1e-2", " 1", "1 ", "1\n", "١٢", "１", "0x10", "+1", "1.", ".5",
    "1,5", "1_000", "", "-", "NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf",
    "∞", "5 USDT",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_decimal_string_is_invalid(ledger: Ledger, text: str) -> None:
    assert_rejected(ledger, line("deposit", amount=text), InvalidInputError, "invalid_input")


@pytest.mark.parametrize(("kind", "field", "text"), [
    ("fill", "price", "30000.0.0"), ("fill", "qty", "1e1"), ("mark_price", "price", "3e4"),
    ("funding_rate", "rate", "1e-4"), ("funding_rate", "rate", "NaN"),
    ("withdraw", "amount", "Infinity"), ("transfer", "amount", "0x5"),
    ("index_price", "price", "٣٠٠٠٠"),
])
def test_a_malformed_decimal_in_any_command_is_invalid(
    ledger: Ledger, kind: str, field: str, text: str
) -> None:
    assert_rejected(ledger, line(kind, **{field: text}), InvalidInputError, "invalid_input")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_as_json_literals_are_invalid(ledger: Ledger, token: str) -> None:
    assert_rejected(ledger, raw("deposit", "amount", token), InvalidInputError, "invalid_input")


@pytest.mark.parametrize(("kind", "field", "token"), [
    ("deposit", "amount", "1.5e2"), ("deposit", "amount", "1E5"), ("deposit", "amount", "5e0"),
    ("fill", "price", "3.0E4"), ("funding_rate", "rate", "1e-4"),
])
def test_a_json_number_with_an_exponent_is_invalid(
    ledger: Ledger, kind: str, field: str, token: str
) -> None:
    assert_rejected(ledger, raw(kind, field, token), InvalidInputError, "invalid_input")


def test_a_json_number_without_exponent_is_parsed_exactly(ledger: Ledger) -> None:
    """A control: 0.1 as a JSON number is 0.1 exactly (a float would be 0.1000000000000000055…);
    bob: 1,000 + 0.1 = 1,000.1."""
    assert send(ledger, raw("deposit", "amount", "0.1", account="bob")) == APPLIED
    assert balance(ledger, "bob", "USDT") == "1000.1"


MISSING = [
    ("deposit", "amount"), ("deposit", "id"), ("deposit", "account"), ("deposit", "asset"),
    ("deposit", "at"), ("deposit", "type"),
    ("withdraw", "id"), ("withdraw", "amount"),
    ("transfer", "from_"), ("transfer", "to"), ("transfer", "id"),
    ("fill", "price"), ("fill", "qty"), ("fill", "side"), ("fill", "symbol"), ("fill", "id"),
    ("fill", "account"),
    ("instrument", "risk_tiers"), ("instrument", "kind"), ("instrument", "base"),
    ("instrument", "settle"), ("instrument", "contract_size"), ("instrument", "symbol"),
    ("asset", "asset"), ("mark_price", "price"), ("mark_price", "symbol"),
    ("index_price", "asset"), ("funding_rate", "rate"), ("open_account", "mode"),
    ("open_account", "account"), ("change_mode", "mode"), ("open_orders", "symbol"),
    ("set_leverage", "leverage"), ("settle_funding", "at"),
]


@pytest.mark.parametrize(("kind", "field"), MISSING)
def test_a_missing_field_is_invalid(ledger: Ledger, kind: str, field: str) -> None:
    assert_rejected(ledger, line(kind, **{field: DROP}), InvalidInputError, "invalid_input")


UNKNOWN_FIELDS = [
    ("deposit", {"memo": "hi"}), ("deposit", {"Amount": "5"}), ("fill", {"lev": "10"}),
    ("withdraw", {"address": "0xabc"}), ("settle_funding", {"symbol": "BTCUSDT"}),
    ("transfer", {"sender": "bob"}), ("open_account", {"currency": "USDT"}),
    ("asset", {"collateral_tier": []}),
    ("instrument", {"risk_tiers": [{**TIERS[0], "mmr_pct": "0.4"}]}),
    ("open_orders", {"buy": {"qty": "10", "price": "29000", "tif": "gtc"}}),
]


@pytest.mark.parametrize(("kind", "changes"), UNKNOWN_FIELDS)
def test_an_unknown_field_is_invalid(ledger: Ledger, kind: str, changes: dict[str, Any]) -> None:
    assert_rejected(ledger, line(kind, **changes), InvalidInputError, "invalid_input")


def test_the_python_name_of_from_is_an_unknown_field(ledger: Ledger) -> None:
    text = json.dumps({**TEMPLATES["transfer"], "from_": "bob"}).replace('"from": "bob", ', "")
    assert '"from"' not in text
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


WRONG_TYPES = [
    ("deposit", "account", 5), ("deposit", "account", True), ("deposit", "account", None),
    ("deposit", "account", ["alice"]), ("deposit", "account", ""), ("deposit", "account", " bob"),
    ("deposit", "amount", True), ("deposit", "amount", False), ("deposit", "amount", None),
    ("deposit", "amount", ["5"]), ("deposit", "amount", {"value": "5"}),
    ("deposit", "id", 7), ("deposit", "id", ""), ("deposit", "id", None),
    ("deposit", "asset", 1), ("deposit", "at", 20250101), ("deposit", "at", "yesterday"),
    ("deposit", "at", "2025-01-01T02:00:00"), ("deposit", "at", "2025-02-30T02:00:00Z"),
    ("deposit", "at", "2025-01-01T24:00:00Z"), ("deposit", "at", "2025-01-01"),
    ("fill", "side", "long"), ("fill", "side", True), ("fill", "liquidation", "true"),
    ("fill", "liquidation", 1), ("fill", "margin_type", "ISOLATED"), ("fill", "liquidity", "x"),
    ("open_account", "mode", "leveraged"), ("open_account", "mode", None),
    ("instrument", "kind", "option"), ("instrument", "risk_tiers", {}),
    ("instrument", "risk_tiers", []), ("instrument", "close_fee_in_mm", "false"),
    ("asset", "precision", "eight"), ("asset", "precision", True), ("asset", "precision", -1),
    ("open_orders", "buy", "50"), ("transfer", "to", "bob"),
]


@pytest.mark.parametrize(("kind", "field", "value"), WRONG_TYPES)
def test_a_wrong_type_or_value_is_invalid(
    ledger: Ledger, kind: str, field: str, value: Any
) -> None:
    """(A transfer `to` its own `from` is bad too: it needs two accounts.)"""
    assert_rejected(ledger, line(kind, **{field: value}), InvalidInputError, "invalid_input")


@pytest.mark.parametrize(("kind", "field", "digits"), [
    ("asset", "precision", "١٢"),  # Arabic-Indic 12
    ("instrument", "funding_interval_hours", "٨"),  # Arabic-Indic 8
])
def test_non_ascii_digits_in_an_integer_field_are_invalid(
    ledger: Ledger, kind: str, field: str, digits: str
) -> None:
    assert_rejected(ledger, line(kind, **{field: digits}), InvalidInputError, "invalid_input")


NOT_COMMANDS = [
    '{"type":"deposit","at":"2025-01-01T02:00:00Z","id":"x1","account":"alice","asset":"USDT",'
    '"amount":"5"',
    '{"type":"deposit","at":"2025-01-01T02:00:00Z","id":"x1","account":"alice",',
    '{"type":"deposit"',
    "deposit alice 5 USDT",
    '["deposit","alice","USDT","5"]',
    "[]",
    "{}",
    "null",
    '"deposit"',
    "42",
    "true",
    "{'type': 'deposit'}",
    '{"type":"teleport","at":"2025-01-01T02:00:00Z","account":"alice"}',
    '{"type":"Deposit","at":"2025-01-01T02:00:00Z","id":"x1","account":"alice","asset":"USDT",'
    '"amount":"5"}',
    '{"type":null,"at":"2025-01-01T02:00:00Z"}',
    '{"type":5,"at":"2025-01-01T02:00:00Z"}',
    '{"at":"2025-01-01T02:00:00Z","id":"x1","account":"alice","asset":"USDT","amount":"5"}',
    "[" * 100_000,
    '{"type":"deposit"}{"type":"deposit"}',
]


@pytest.mark.parametrize("text", NOT_COMMANDS, ids=range(len(NOT_COMMANDS)))
def test_a_line_that_is_not_a_json_object_with_a_known_type_is_invalid(
    ledger: Ledger, text: str
) -> None:
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_a_line_with_a_duplicate_key_is_invalid(ledger: Ledger) -> None:
    text = ('{"type":"deposit","at":"2025-01-01T02:00:00Z","id":"x1","account":"bob",'
            '"asset":"USDT","amount":"5","type":"withdraw"}')
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01"])
def test_a_time_that_leaves_the_calendar_once_in_utc_is_invalid(
    ledger: Ledger, moment: str
) -> None:
    assert_rejected(ledger, line("deposit", at=moment), InvalidInputError, "invalid_input")


@pytest.mark.parametrize(("field", "text"), [
    ("account", "a\\u0000b"), ("id", "x\\u0000"), ("id", "x\\ud800"), ("account", "\\ud800"),
])
def test_text_that_the_store_cannot_hold_is_invalid(ledger: Ledger, field: str, text: str) -> None:
    """`text` is a JSON escape (backslash-u), decoded by the JSON parser."""
    kind = "open_account" if field == "account" else "deposit"
    data = line(kind, **{field: "PLACEHOLDER"}).replace("PLACEHOLDER", text)
    assert_rejected(ledger, data, InvalidInputError, "invalid_input")


@pytest.mark.parametrize("char", ["\x00", "\n", "\t"])
def test_a_raw_control_character_inside_a_json_string_is_invalid(
    ledger: Ledger, char: str
) -> None:
    data = line("open_account", account="PLACEHOLDER").replace("PLACEHOLDER", f"a{char}b")
    assert_rejected(ledger, data, InvalidInputError, "invalid_input")


def test_an_account_named_like_a_system_account_is_invalid(ledger: Ledger) -> None:
    assert_rejected(ledger, line("open_account", account="system:custody"), InvalidInputError,
                    "invalid_input")


def test_an_amount_with_more_significant_digits_than_the_ledger_carries_is_invalid(
    ledger: Ledger,
) -> None:
    text = line("deposit", amount="99999999999999999999999999999999.99999999")
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_a_transfer_to_the_same_account_is_invalid(ledger: Ledger) -> None:
    assert_rejected(ledger, line("transfer", to="bob"), InvalidInputError, "invalid_input")


def test_risk_tiers_whose_bounds_do_not_increase_are_invalid(ledger: Ledger) -> None:
    tiers = [{**TIERS[0], "up_to": "1000000"}, {**TIERS[1], "up_to": "100000"}]
    assert_rejected(ledger, line("instrument", risk_tiers=tiers), InvalidInputError,
                    "invalid_input")


# ----------------------------------------------------------------------------- reference checks


@pytest.mark.parametrize(("kind", "changes"), [
    ("deposit", {"amount": "0.000000001"}),  # USDT has 8 dp
    ("deposit", {"asset": "USDC", "amount": "1.0000001"}),  # USDC has 6 dp
    ("withdraw", {"amount": "1.123456789"}),
    ("transfer", {"amount": "0.000000005"}),
    ("fill", {"fee": "0.000000001"}),  # the fee is in the settle asset USDT
])
def test_an_amount_with_more_places_than_its_asset_is_invalid(
    ledger: Ledger, kind: str, changes: dict[str, Any]
) -> None:
    assert_rejected(ledger, line(kind, **changes), InvalidInputError, "invalid_input")


def test_an_amount_with_as_many_places_as_its_asset_is_accepted(ledger: Ledger) -> None:
    """A control: USDC has 6 places; bob 0 + 1.000001 = 1.000001."""
    assert send(ledger, line("deposit", account="bob", asset="USDC", amount="1.000001")) == APPLIED
    assert balance(ledger, "bob", "USDC") == "1.000001"


def test_a_repay_without_debt_is_invalid(ledger: Ledger) -> None:
    """alice holds 10,000 USDT and owes nothing: repaying 1 USDT is more than her debt 0."""
    text = json.dumps({"type": "repay", "at": AT, "id": "r1", "account": "alice",
                       "asset": "USDT", "amount": "1", "with_asset": "BTC"})
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_a_repay_of_a_coin_never_held_is_invalid(ledger: Ledger) -> None:
    """mia (1 BTC, never any USDT) owes no USDT: 1 > debt 0. (Was a KeyError, exit 3.)"""
    text = json.dumps({"type": "repay", "at": AT, "id": "r1", "account": "mia",
                       "asset": "USDT", "amount": "1", "with_asset": "BTC"})
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_a_given_deduction_that_differs_from_the_derived_one_is_invalid(ledger: Ledger) -> None:
    """Tier 2's deduction is 100,000 × (0.005 − 0.004) = 100; 99 is refused."""
    tiers = [TIERS[0], {**TIERS[1], "deduction": "99"}]
    assert_rejected(ledger, line("instrument", risk_tiers=tiers), InvalidInputError,
                    "invalid_input")


def test_a_given_deduction_equal_to_the_derived_one_is_accepted(ledger: Ledger) -> None:
    """A control: 100,000 × (0.005 − 0.004) = 100, written as "100.0"; tier 1's is 0."""
    tiers = [{**TIERS[0], "deduction": "0"}, {**TIERS[1], "deduction": "100.0"}]
    assert send(ledger, line("instrument", risk_tiers=tiers)) == APPLIED


@pytest.mark.parametrize("moment", [at(3), at(8, 30), "2025-01-01T08:00:01Z",
                                    "2025-01-01T07:59:59.5Z", "2025-01-01T12:00:00Z"])
def test_settle_funding_at_a_time_that_is_no_funding_time_is_invalid(
    ledger: Ledger, moment: str
) -> None:
    """Funding every 8 h from 00:00 UTC: only 00:00, 08:00 and 16:00 are funding times."""
    text = line("settle_funding", at=moment)
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_a_fill_on_an_instrument_whose_settle_asset_has_no_index_price_is_no_price(
    ledger: Ledger,
) -> None:
    """ETHUSD settles in ETH, which has no index price (DESIGN 6.11)."""
    assert_rejected(ledger, line("fill", symbol="ETHUSD", price="2000"), NoPriceError,
                    "no_price")


# ----------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(("kind", "changes", "error", "code"), [
    ("deposit", {"asset": "DOGE"}, UnknownAssetError, "unknown_asset"),
    ("withdraw", {"asset": "DOGE"}, UnknownAssetError, "unknown_asset"),
    ("transfer", {"asset": "usdt"}, UnknownAssetError, "unknown_asset"),
    ("index_price", {"asset": "DOGE"}, UnknownAssetError, "unknown_asset"),
    ("instrument", {"settle": "DOGE"}, UnknownAssetError, "unknown_asset"),
    ("instrument", {"base": "DOGE"}, UnknownAssetError, "unknown_asset"),
    ("fill", {"symbol": "DOGEUSDT"}, UnknownSymbolError, "unknown_symbol"),
    ("mark_price", {"symbol": "DOGEUSDT"}, UnknownSymbolError, "unknown_symbol"),
    ("funding_rate", {"symbol": "btcusdt"}, UnknownSymbolError, "unknown_symbol"),
    ("open_orders", {"symbol": "DOGEUSDT"}, UnknownSymbolError, "unknown_symbol"),
    ("set_leverage", {"symbol": "DOGEUSDT"}, UnknownSymbolError, "unknown_symbol"),
    ("deposit", {"account": "nobody"}, UnknownAccountError, "unknown_account"),
    ("withdraw", {"account": "Alice"}, UnknownAccountError, "unknown_account"),
    ("transfer", {"from_": "nobody"}, UnknownAccountError, "unknown_account"),
    # ("transfer", {"to": "nobody"}): the destination refuses after the out-leg, which a
    # return leg undoes (docs/sharding.md; tests/shards/test_transfer_legs.py).
    ("fill", {"account": "nobody"}, UnknownAccountError, "unknown_account"),
    ("open_orders", {"account": "nobody"}, UnknownAccountError, "unknown_account"),
    ("change_mode", {"account": "nobody"}, UnknownAccountError, "unknown_account"),
])
def test_an_unknown_name_is_rejected_with_its_code(
    ledger: Ledger, kind: str, changes: dict[str, Any], error: type[LedgerError], code: str
) -> None:
    assert_rejected(ledger, line(kind, **changes), error, code)


# ----------------------------------------------------------------------------- order


@pytest.mark.parametrize(("kind", "changes"), [
    ("deposit", {"account": "bob"}), ("withdraw", {}), ("fill", {}),
    ("transfer", {}), ("change_mode", {"account": "bob"}),
    ("open_orders", {"account": "bob"}), ("set_leverage", {}),
])
def test_a_command_older_than_the_accounts_last_event_is_out_of_order(
    ledger: Ledger, kind: str, changes: dict[str, Any]
) -> None:
    """bob's last event is a deposit at 01:30; the command comes at 01:00."""
    assert send(ledger, line("deposit", id="late", account="bob", at=at(1, 30))) == APPLIED
    text = line(kind, **{**changes, "at": at(1)})
    assert_rejected(ledger, text, OutOfOrderError, "out_of_order")


def test_a_transfer_older_than_the_receivers_last_event_is_out_of_order(ledger: Ledger) -> None:
    """The sender bob is at 00:00, but the receiver alice has moved on to 01:30: the
    destination refuses after the out-leg, so bob's 5 USDT go out to `system:transit` and come
    back by a return leg (docs/sharding.md); alice and bob's balances are as they were."""
    assert send(ledger, line("deposit", id="late", at=at(1, 30))) == APPLIED
    before = fingerprint(ledger)
    with pytest.raises(OutOfOrderError):
        send(ledger, line("transfer", at=at(1)))
    after = fingerprint(ledger)
    assert after["states"]["alice"] == before["states"]["alice"]
    assert after["events"]["alice"] == before["events"]["alice"]
    assert after["states"]["bob"]["balances"] == before["states"]["bob"]["balances"]
    legs = [(e["type"], [(p["account"], p["amount"]) for p in e["postings"]])
            for e in after["events"]["bob"][-2:]]
    assert legs == [("TransferredOut", [("bob", "-5"), ("system:transit", "5")]),
                    ("TransferReturned", [("system:transit", "-5"), ("bob", "5")])]
    # A repeat is acknowledged: the transfer is done (refused), never recorded twice.
    assert send(ledger, line("transfer", at=at(1))) == ACKNOWLEDGED
    assert fingerprint(ledger) == after


def test_a_command_before_the_account_was_opened_is_out_of_order(ledger: Ledger) -> None:
    assert send(ledger, line("open_account", at=at(3))) == APPLIED
    text = line("deposit", account="zoe", at=at(2, 59))
    assert_rejected(ledger, text, OutOfOrderError, "out_of_order")


@pytest.mark.parametrize(("first", "late"), [
    (line("mark_price", at=at(3)), line("mark_price", at=at(2, 59), price="29000")),
    (line("funding_rate", at=at(3)), line("mark_price", at=at(2, 59))),
    (line("mark_price", at=at(3)), line("funding_rate", at=at(2, 59))),
    (line("index_price", at=at(3)), line("index_price", at=at(2, 59), price="29000")),
    (line("index_price", at=at(3)), line("asset", at=at(2, 59), asset="BTC", precision=8)),
    (line("mark_price", at=at(3)),
     json.dumps({**MARKET[5], "at": at(2, 59), "taker_fee_rate": "0.001"})),
])
def test_reference_data_older_than_its_symbols_or_assets_last_is_out_of_order(
    trading: Ledger, first: str, late: str
) -> None:
    """Reference data is non-decreasing in `at` per symbol or asset (DESIGN 6.11); alice holds
    BTCUSDT, so a mark that slipped in would show in her state."""
    assert send(trading, first) == APPLIED
    assert_rejected(trading, late, OutOfOrderError, "out_of_order")


def test_reference_data_for_another_symbol_may_be_older(trading: Ledger) -> None:
    """A control: the order is per symbol; BTCUSD's last mark is at 00:00, so 02:30 is fine
    after BTCUSDT's mark at 03:00."""
    assert send(trading, line("mark_price", at=at(3))) == APPLIED
    assert send(trading, line("mark_price", symbol="BTCUSD", at=at(2, 30))) == APPLIED


# ----------------------------------------------------------------------------- business rules


def test_a_withdrawal_above_the_wallet_is_insufficient_balance(ledger: Ledger) -> None:
    """bob holds 1,000 USDT: 1,000.00000001 is above it."""
    text = line("withdraw", amount="1000.00000001")
    assert_rejected(ledger, text, InsufficientBalanceError, "insufficient_balance")


def test_a_withdrawal_of_an_asset_never_held_is_insufficient_balance(ledger: Ledger) -> None:
    assert_rejected(ledger, line("withdraw", asset="BTC", amount="0.1"),
                    InsufficientBalanceError, "insufficient_balance")


def test_a_transfer_above_the_wallet_is_insufficient_balance(ledger: Ledger) -> None:
    text = line("transfer", amount="1001")
    assert_rejected(ledger, text, InsufficientBalanceError, "insufficient_balance")


def test_a_withdrawal_above_max_withdrawable_is_insufficient_margin(trading: Ledger) -> None:
    """alice: 10,000 − 6,000 initial margin = 4,000; 4,000.00000001 is one step above."""
    text = line("withdraw", account="alice", amount="4000.00000001")
    assert_rejected(trading, text, InsufficientMarginError, "insufficient_margin")


def test_a_withdrawal_of_exactly_max_withdrawable_is_applied(trading: Ledger) -> None:
    """A control: 4,000 leaves 10,000 − 4,000 = 6,000 = the initial margin, available 0."""
    assert send(trading, line("withdraw", account="alice", amount="4000")) == APPLIED
    state = queries.state(trading, "alice")
    assert state["balances"]["USDT"] == "6000"
    assert state["margin"]["available_usd"] == "0"


def test_a_transfer_above_max_withdrawable_is_insufficient_margin(trading: Ledger) -> None:
    """alice may move at most 4,000 out; 5,000 is below her wallet but above the limit."""
    text = line("transfer", **{"from_": "alice", "to": "bob", "amount": "5000"})
    assert_rejected(trading, text, InsufficientMarginError, "insufficient_margin")


def test_a_mode_change_with_a_position_is_blocked(trading: Ledger) -> None:
    text = line("change_mode", account="alice")
    assert_rejected(trading, text, ModeChangeBlockedError, "mode_change_blocked")


def test_a_mode_change_with_open_orders_is_blocked(trading: Ledger) -> None:
    """bob has no position, only the resting buy of 1,000 @29,000."""
    text = line("change_mode", account="bob")
    assert_rejected(trading, text, ModeChangeBlockedError, "mode_change_blocked")


def test_a_mode_change_with_debt_is_blocked(trading: Ledger) -> None:
    """mia is flat and owes 1,000 USDT (the realised loss of the docstring)."""
    text = line("change_mode", account="mia", mode="single_asset")
    assert_rejected(trading, text, ModeChangeBlockedError, "mode_change_blocked")


def test_portfolio_mode_below_the_minimum_equity_is_insufficient_equity(ledger: Ledger) -> None:
    """bob's effective equity is 1,000 USD < 10,000 needed for portfolio mode."""
    text = line("change_mode", account="bob", mode="portfolio")
    assert_rejected(ledger, text, InsufficientEquityError, "insufficient_equity")


def test_an_account_cannot_be_opened_in_portfolio_mode(ledger: Ledger) -> None:
    text = line("open_account", mode="portfolio")
    assert_rejected(ledger, text, InsufficientEquityError, "insufficient_equity")


def test_a_fill_above_the_tiers_max_leverage_is_leverage_too_high(ledger: Ledger) -> None:
    """10 × 0.0001 × 30,000 = 30 notional, tier 1: at most 125×."""
    text = line("fill", leverage="125.5")
    assert_rejected(ledger, text, LeverageTooHighError, "leverage_too_high")


def test_a_fill_whose_notional_reaches_tier_two_is_leverage_too_high_above_20(
    ledger: Ledger,
) -> None:
    """40,000 × 0.0001 × 30,000 = 120,000 > 100,000: tier 2, at most 20×; 21× is refused."""
    text = line("fill", qty="40000", leverage="21")
    assert_rejected(ledger, text, LeverageTooHighError, "leverage_too_high")


def test_set_leverage_above_the_tier_of_the_position_is_leverage_too_high(
    trading: Ledger,
) -> None:
    """alice holds 2 BTC = 60,000 notional (tier 1, 125×); 126× is refused."""
    text = line("set_leverage", account="alice", leverage="126")
    assert_rejected(trading, text, LeverageTooHighError, "leverage_too_high")


def test_an_isolated_fill_in_multi_asset_mode_is_not_allowed(ledger: Ledger) -> None:
    text = line("fill", account="mia", margin_type="isolated")
    assert_rejected(ledger, text, NotAllowedInModeError, "not_allowed_in_mode")


def test_a_coin_settled_fill_in_multi_asset_mode_is_not_allowed(ledger: Ledger) -> None:
    """BTCUSD settles in BTC: multi_asset trades USDT- and USDC-settled contracts only."""
    text = line("fill", account="mia", symbol="BTCUSD")
    assert_rejected(ledger, text, NotAllowedInModeError, "not_allowed_in_mode")


def test_opening_an_existing_account_in_another_mode_is_account_exists(ledger: Ledger) -> None:
    text = line("open_account", account="alice", mode="multi_asset")
    assert_rejected(ledger, text, AccountExistsError, "account_exists")


def test_opening_an_existing_account_in_the_same_mode_is_acknowledged(ledger: Ledger) -> None:
    assert_acknowledged(ledger, line("open_account", account="alice"))


# ----------------------------------------------------------------------------- bounds (issue 10)
# Every figure has a documented range (ledger/numbers.py); outside it a command is
# invalid_input naming the field and the bound, before it can overflow the 34 digits the
# ledger carries (before: a price of 1e30 raised decimal.InvalidOperation, exit 3).

HUGE_INSTRUMENT = {**TEMPLATES["instrument"], "symbol": "BTCUSDT"}  # a re-send of BTCUSDT

OUT_OF_BOUNDS = [
    # (template, field, value, words the message must hold)
    ("fill", "price", "1000000000000000000000000000000", "price must be at most 10^9"),
    ("fill", "price", "1000000000.000000001", "price must be at most 10^9"),
    ("fill", "price", "0.0000000000001", "price must have at most 12 decimal places"),
    ("fill", "qty", "1234567890123456789012345678901234", "qty must be at most 10^12"),
    ("fill", "qty", "1000000000001", "qty must be at most 10^12"),
    ("fill", "qty", "0.0000000000000000001", "qty must have at most 18 decimal places"),
    ("fill", "leverage", "0.0000000000000000001", "leverage must have at most 18 decimal"),
    ("fill", "leverage", "0.5", "leverage must be ≥ 1"),
    ("fill", "leverage", "1000.5", "leverage must be at most 1000"),
    ("fill", "fee", "1000000000000001", "fee must be between -10^15 and 10^15"),
    ("fill", "fee", "-1000000000000001", "fee must be between -10^15 and 10^15"),
    ("set_leverage", "leverage", "0.99", "leverage must be ≥ 1"),
    ("deposit", "amount", "1000000000000000.00000001", "amount must be at most 10^15"),
    ("withdraw", "amount", "1000000000000001", "amount must be at most 10^15"),
    ("transfer", "amount", "99999999999999999999", "amount must be at most 10^15"),
    ("mark_price", "price", "1000000001", "price must be at most 10^9"),
    ("index_price", "price", "10000000000", "price must be at most 10^9"),
    ("funding_rate", "rate", "1.0001", "rate must be between -1 and 1"),
    ("funding_rate", "rate", "-2", "rate must be between -1 and 1"),
    ("instrument", "contract_size", "1000000000000000000000000000000",
     "contract_size must be at most 10^6"),
    ("instrument", "contract_size", "1000000.1", "contract_size must be at most 10^6"),
    ("instrument", "taker_fee_rate", "0.11", "taker_fee_rate must be between -0.1 and 0.1"),
    ("instrument", "maker_fee_rate", "-0.5", "maker_fee_rate must be between -0.1 and 0.1"),
    ("open_orders", "buy", {"qty": "1", "price": "2000000000"}, "buy.price must be at most 10^9"),
    ("open_orders", "sell", {"qty": "10000000000000", "price": "1"},
     "sell.qty must be at most 10^12"),
]


@pytest.mark.parametrize(("kind", "field", "value", "words"), OUT_OF_BOUNDS)
def test_a_figure_outside_its_documented_range_is_invalid(
    ledger: Ledger, kind: str, field: str, value: Any, words: str
) -> None:
    error = assert_rejected(ledger, line(kind, **{field: value}), InvalidInputError,
                            "invalid_input")
    assert words in str(error)


def test_a_re_sent_instrument_with_a_huge_contract_size_changes_nothing(trading: Ledger) -> None:
    """Before: accepted, and every later charge_interest failed."""
    text = json.dumps({**HUGE_INSTRUMENT, "contract_size": "1000000000000000000000000000000"})
    error = assert_rejected(trading, text, InvalidInputError, "invalid_input")
    assert "contract_size" in str(error)


@pytest.mark.parametrize(("changes", "words"), [
    ({"risk_tiers": [{"up_to": None, "mmr": "0.004", "max_leverage": "1001"}]},
     "risk_tiers[0].max_leverage must be at most 1000"),
    ({"risk_tiers": [{"up_to": "1000000000000001", "mmr": "0.004", "max_leverage": "10"}]},
     "risk_tiers[0].up_to must be at most 10^15"),
    ({"risk_tiers": [{"up_to": None, "mmr": "1.5", "max_leverage": "10"}]},
     "risk_tiers[0].mmr must be at most 1"),
    ({"delivery_fee_rate": "0.2", "kind": "linear_future", "expiry": "2025-03-28T08:00:00Z"},
     "delivery_fee_rate must be at most 0.1"),
    ({"kind": "linear_future", "expiry": "2300-01-01T00:00:00Z"}, "expiry must be from 2000"),
])
def test_an_instrument_parameter_outside_its_range_is_invalid(
    ledger: Ledger, changes: dict[str, Any], words: str
) -> None:
    error = assert_rejected(ledger, line("instrument", **changes), InvalidInputError,
                            "invalid_input")
    assert words in str(error)


@pytest.mark.parametrize(("changes", "words"), [
    ({"interest": {"annual_rate": "10.01"}}, "interest.annual_rate must be at most 10"),
    ({"interest": {"annual_rate": "0.1", "free_amount": "1000000000000001"}},
     "interest.free_amount must be at most 10^15"),
    ({"collateral_tiers": [{"up_to": None, "ratio": "1.01"}]},
     "collateral_tiers[0].ratio must be at most 1"),
    ({"auto_exchange_threshold_usd": "1000000000000001"},
     "auto_exchange_threshold_usd must be at most 10^15"),
    ({"auto_exchange_discount": "1.5"}, "auto_exchange_discount must be at most 1"),
    ({"borrow_mmr_rate": "2"}, "borrow_mmr_rate must be at most 1"),
    ({"precision": "99999999999999999999"}, "precision must be a non-negative integer"),
])
def test_an_asset_parameter_outside_its_range_is_invalid(
    ledger: Ledger, changes: dict[str, Any], words: str
) -> None:
    error = assert_rejected(ledger, line("asset", **changes), InvalidInputError, "invalid_input")
    assert words in str(error)


@pytest.mark.parametrize("kind", ["charge_interest", "check_margin", "settle_funding", "deposit"])
@pytest.mark.parametrize("moment", ["9999-12-31T00:00:00Z", "2200-01-01T00:00:00Z",
                                    "1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z"])
def test_a_time_outside_2000_to_2199_is_invalid(trading: Ledger, kind: str, moment: str) -> None:
    """Before: a charge_interest dated 9999-12-31 charged interest up to 9999 and made
    every later command of her account out_of_order (~7,974 years at 10 %)."""
    error = assert_rejected(trading, line(kind, at=moment), InvalidInputError, "invalid_input")
    assert "at must be from 2000-01-01T00:00:00Z and before 2200-01-01T00:00:00Z" in str(error)


def test_the_edges_of_the_time_range_are_accepted() -> None:
    """A control (shape only: the market is at 2025, so these would be out of order there)."""
    assert parse_line(line("deposit", at="2000-01-01T00:00:00Z")).at.year == 2000
    assert parse_line(line("deposit", at="2199-12-31T23:59:59.999999Z")).at.year == 2199


@pytest.mark.parametrize(("kind", "field", "value"), [
    ("deposit", "amount", "1000000000000000"), ("fill", "qty", "1000000000000"),
    ("mark_price", "price", "1000000000"), ("mark_price", "price", "0.000000000001"),
    ("funding_rate", "rate", "-1"), ("set_leverage", "leverage", "1"),
    ("instrument", "contract_size", "1000000"), ("instrument", "taker_fee_rate", "-0.1"),
])
def test_a_figure_at_the_edge_of_its_range_parses(kind: str, field: str, value: str) -> None:
    """Controls: the bounds are inclusive where the table says so."""
    command = parse_line(line(kind, **{field: value}))
    assert getattr(command, field) == Decimal(value)


# ----------------------------------------------------------------------------- balances stay exact

WEI = {"type": "asset", "at": AT, "asset": "WEI", "precision": 18}
LARGEST = "999999999999999.999999999999999999"  # 10^15 − 10^-18: 33 significant digits


def test_the_largest_amounts_deposited_many_times_stay_exact(ledger: Ledger) -> None:
    """100 deposits of 10^15 USDT: 10^17 exactly (integers never reach 34 digits)."""
    for n in range(100):
        assert send(ledger, line("deposit", id=f"big{n}", account="bob",
                                 amount="1000000000000000")) == APPLIED
    assert balance(ledger, "bob", "USDT") == "100000000000001000"  # 10^17 + the 1,000 held


def test_a_deposit_that_would_round_the_balance_is_invalid_not_rounded(ledger: Ledger) -> None:
    """WEI has 18 places: ten deposits of 10^15 − 10^-18 make 9,999,999,999,999,999.99999999999
    9999990 (16 + 18 = 34 digits, exact); an eleventh would need 35 digits, and the ledger's
    context would have rounded the balance silently while the posting stayed exact."""
    assert send(ledger, json.dumps(WEI)) == APPLIED
    for n in range(10):
        assert send(ledger, line("deposit", id=f"w{n}", asset="WEI", amount=LARGEST)) == APPLIED
    assert balance(ledger, "alice", "WEI") == "9999999999999999.99999999999999999"
    error = assert_rejected(ledger, line("deposit", id="w10", asset="WEI", amount=LARGEST),
                            InvalidInputError, "invalid_input")
    assert "WEI balance would need more than 34 significant digits" in str(error)
    assert balance(ledger, "alice", "WEI") == "9999999999999999.99999999999999999"


# ----------------------------------------------------------------------------- names (issue 10)

BAD_NAMES = [
    ("account", "a\u200bb", "zero-width"),  # ZERO WIDTH SPACE (Cf)
    ("account", "evil\u202eusdt", "format character"),  # RIGHT-TO-LEFT OVERRIDE (Cf)
    ("account", "a\ufeffb", "format character"),  # BOM (Cf)
    ("account", "a\u0085b", "control character"),  # NEXT LINE (Cc)
    ("account", "a\u2028b", "line separator"),
    ("account", "\u0301alice", "combining mark"),
    ("account", "e\u0301", "NFC"),  # "é" decomposed; "é" (U+00E9) is the NFC form
    ("account", "x" * 129, "at most 128 characters"),
    ("id", "d\u200d1", "format character"),
    ("id", "\u0300", "combining mark"),
    ("id", "\ue000", "private-use"),
    ("asset", "USD\u200bT", "format character"),
]


@pytest.mark.parametrize(("field", "name", "words"), BAD_NAMES)
def test_a_name_outside_the_safe_set_is_refused_not_normalised(
    ledger: Ledger, field: str, name: str, words: str
) -> None:
    kind = "open_account" if field == "account" else "deposit"
    error = assert_rejected(ledger, line(kind, **{field: name}), InvalidInputError,
                            "invalid_input")
    assert str(error).startswith(f"{field} must")
    assert words in str(error)


def test_an_nfc_name_with_accents_and_other_scripts_is_accepted(ledger: Ledger) -> None:
    """A control: the safe set is not ASCII; "zoë-東京" (NFC) opens, 128 characters too."""
    assert send(ledger, line("open_account", account="zoë-東京")) == APPLIED
    assert send(ledger, line("open_account", account="z" * 128)) == APPLIED
    assert "zoë-東京" in ledger.account_names()


def test_a_system_name_is_still_refused(ledger: Ledger) -> None:
    error = assert_rejected(ledger, line("open_account", account="system:fees"),
                            InvalidInputError, "invalid_input")
    assert "system:" in str(error)


# ----------------------------------------------------------------------------- wording (issue 13)

WORDING = [
    (line("deposit", memo="hi"), 'unknown field "memo"'),
    (line("deposit", amount=DROP), 'missing field "amount"'),
    (line("fill", side="long"), "side must be one of: buy, sell"),
    (line("open_account", mode="x"), "mode must be one of: single_asset, multi_asset, portfolio"),
    (line("fill", qty="1e3"), "qty must be a decimal string"),
    (line("fill", qty=None), "qty must be a decimal string"),
    (line("fill", liquidation="yes"), "liquidation must be true or false"),
    (line("fill", account=5), "account must be a non-empty string"),
    (line("instrument", risk_tiers="x"), "risk_tiers must be a list"),
    (line("open_orders", buy="50"), "buy must be an object"),
    (line("open_orders", buy={"qty": "1", "price": "1", "tif": "gtc"}),
     'unknown field "buy.tif"'),
    (line("instrument", risk_tiers=[{**TIERS[0], "mmr_pct": "1"}]),
     'unknown field "risk_tiers[0].mmr_pct"'),
    (line("transfer", **{"from_": DROP}), 'missing field "from"'),
    (line("deposit", at="yesterday"), "at must be an RFC 3339 time"),
    (json.dumps({"at": AT}), 'missing field "type"'),
]


@pytest.mark.parametrize(("text", "message"), WORDING, ids=range(len(WORDING)))
def test_a_validation_error_is_said_in_the_ledgers_words(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_line(text)
    assert message in str(caught.value)
    for library_words in ("Input should", "Extra inputs", "Field required", "Value error",
                          "validation error", "pydantic"):
        assert library_words not in str(caught.value)


# ----------------------------------------------------------------------------- echoes (issue 10)


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "9" * 1_000_000), ("amount", "x" * 1_000_000), ("at", "2" * 1_000_000),
    ("type", "x" * 1_000_000), ("precision", "9" * 1_000_000),
])
def test_a_rejection_echoes_at_most_a_few_hundred_characters(field: str, value: str) -> None:
    """Before: the whole line came back (45 MB of stderr for a 75 MB feed)."""
    kind = "asset" if field == "precision" else "deposit"
    with pytest.raises(InvalidInputError) as caught:
        parse_line(line(kind, **{field: value}))
    assert len(str(caught.value)) < 400, str(caught.value)[:500]


def test_an_unknown_field_with_a_huge_name_is_cut() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_line(line("deposit", **{"m" * 100_000: 1}))
    assert str(caught.value).startswith('unknown field "mmm')
    assert len(str(caught.value)) < 400



# ----------------------------------------------------------------------------- idempotency


D1 = dict(MARKET[14])  # alice's deposit d1 of 10,000 USDT at 00:00


def test_an_id_reused_with_different_content_is_id_conflict(ledger: Ledger) -> None:
    text = json.dumps({**D1, "amount": "10001"})
    assert_rejected(ledger, text, IdConflictError, "id_conflict")


def test_an_id_reused_at_another_time_is_id_conflict(ledger: Ledger) -> None:
    """`at` is part of the content (DESIGN 6.11)."""
    assert_rejected(ledger, json.dumps({**D1, "at": AT}), IdConflictError, "id_conflict")


def test_a_transfer_id_reused_towards_another_account_is_id_conflict(ledger: Ledger) -> None:
    """The key is (transfer, from, id): t1 from bob already went to alice."""
    assert send(ledger, line("transfer")) == APPLIED
    text = line("transfer", to="mia")
    assert_rejected(ledger, text, IdConflictError, "id_conflict")


@pytest.mark.parametrize("repeat", [
    json.dumps(D1),
    json.dumps({**D1, "amount": "10000.000"}),  # parsed values compare equal
    json.dumps(D1).replace('"10000"', "10000"),  # a JSON number
    json.dumps({**D1, "at": "2025-01-01T01:00:00+01:00"}),  # the same instant
    json.dumps({"amount": "10000", "asset": "USDT", "account": "alice", "id": "d1",
                "at": T0, "type": "deposit"}),  # the same fields in another order
])
def test_an_id_reused_with_identical_content_is_acknowledged_and_changes_nothing(
    ledger: Ledger, repeat: str
) -> None:
    assert_acknowledged(ledger, repeat)
    assert count(ledger, "alice", "Deposited") == 1
    assert balance(ledger, "alice", "USDT") == "10000"


@pytest.mark.parametrize("kind", ["withdraw", "transfer", "fill"])
def test_every_money_command_repeated_is_acknowledged(ledger: Ledger, kind: str) -> None:
    assert send(ledger, line(kind)) == APPLIED
    assert_acknowledged(ledger, line(kind))


def test_the_same_id_on_another_account_or_command_type_is_another_command(
    ledger: Ledger,
) -> None:
    """Keys are (type, account, id): after alice's deposit x7, bob's deposit x7 and alice's
    withdrawal x7 are new commands. alice 10,000 + 5 − 5 = 10,000; bob 1,000 + 5 = 1,005."""
    assert send(ledger, line("deposit", id="x7")) == APPLIED
    assert send(ledger, line("deposit", id="x7", account="bob")) == APPLIED
    assert send(ledger, line("withdraw", id="x7", account="alice")) == APPLIED
    assert balance(ledger, "alice", "USDT") == "10000"
    assert balance(ledger, "bob", "USDT") == "1005"


def test_a_rejected_command_does_not_reserve_its_id(ledger: Ledger) -> None:
    """w1 of 2,000 is refused (bob holds 1,000); w1 of 300 is then a first use: 1,000 − 300."""
    assert_rejected(ledger, line("withdraw", amount="2000"), InsufficientBalanceError,
                    "insufficient_balance")
    assert send(ledger, line("withdraw", amount="300")) == APPLIED
    assert balance(ledger, "bob", "USDT") == "700"


@pytest.mark.parametrize("kind", ["check_margin", "charge_interest", "settle_funding"])
def test_a_repeated_periodic_command_changes_nothing(trading: Ledger, kind: str) -> None:
    """With a rate of 0.01 % sent at 07:00, the 08:00 funding makes alice (long 2 BTC, mark
    30,000) pay 2 × 30,000 × 0.0001 = 6 once: 10,000 − 6 = 9,994."""
    assert send(trading, line("funding_rate", at=at(7))) == APPLIED
    send(trading, line(kind, id=f"{kind}:1"))
    if kind == "settle_funding":
        assert balance(trading, "alice", "USDT") == "9994"
    before = fingerprint(trading)
    send(trading, line(kind, id=f"{kind}:1"))
    send(trading, line(kind, id=f"{kind}:2"))  # idempotent by `at`, whatever the id
    assert_store_is(trading, before)


def test_a_repeated_settle_funding_is_acknowledged(trading: Ledger) -> None:
    """Contract: a repeated id with identical content is acknowledged. (Was "applied".)"""
    assert send(trading, line("settle_funding", id="sf")) == APPLIED
    assert send(trading, line("settle_funding", id="sf")) == ACKNOWLEDGED


# ----------------------------------------------------------------------------- check order


def test_an_old_command_repeated_after_later_events_is_acknowledged_not_out_of_order(
    ledger: Ledger,
) -> None:
    """Idempotency comes before ordering: d1 (00:00) is retried after alice's event at 02:00."""
    assert send(ledger, line("deposit")) == APPLIED
    assert_acknowledged(ledger, json.dumps(D1))


def test_an_old_id_with_other_content_is_id_conflict_not_out_of_order(ledger: Ledger) -> None:
    assert send(ledger, line("deposit")) == APPLIED
    assert_rejected(ledger, json.dumps({**D1, "amount": "1"}), IdConflictError, "id_conflict")


def test_an_old_id_with_an_unknown_asset_is_id_conflict_not_unknown_asset(
    ledger: Ledger,
) -> None:
    """Idempotency comes before the unknown_* checks."""
    text = json.dumps({**D1, "asset": "DOGE"})
    assert_rejected(ledger, text, IdConflictError, "id_conflict")


def test_shape_comes_before_idempotency(ledger: Ledger) -> None:
    """d1 exactly as before, but with an unknown field: invalid_input, not acknowledged."""
    text = json.dumps({**D1, "memo": "retry"})
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_an_unknown_asset_on_an_out_of_order_deposit_is_unknown_asset(ledger: Ledger) -> None:
    assert send(ledger, line("deposit")) == APPLIED
    text = line("deposit", id="x2", asset="DOGE", at=at(1))
    assert_rejected(ledger, text, UnknownAssetError, "unknown_asset")


def test_an_unknown_symbol_on_an_out_of_order_fill_is_unknown_symbol(ledger: Ledger) -> None:
    assert send(ledger, line("deposit", account="bob")) == APPLIED
    text = line("fill", symbol="DOGEUSDT", at=at(1))
    assert_rejected(ledger, text, UnknownSymbolError, "unknown_symbol")


def test_too_many_places_on_an_out_of_order_deposit_is_invalid_input(ledger: Ledger) -> None:
    """Checks that need reference data come before out_of_order."""
    assert send(ledger, line("deposit")) == APPLIED
    text = line("deposit", id="x2", amount="0.000000001", at=at(1))
    assert_rejected(ledger, text, InvalidInputError, "invalid_input")


def test_an_out_of_order_withdrawal_above_the_wallet_is_out_of_order(ledger: Ledger) -> None:
    """out_of_order comes before the business rules (insufficient_balance)."""
    assert send(ledger, line("deposit", account="bob")) == APPLIED
    text = line("withdraw", amount="5000", at=at(1))
    assert_rejected(ledger, text, OutOfOrderError, "out_of_order")


def test_an_out_of_order_mode_change_with_a_position_is_out_of_order(trading: Ledger) -> None:
    assert send(trading, line("deposit", id="x2", at=at(3))) == APPLIED
    text = line("change_mode", account="alice", at=at(2, 30))
    assert_rejected(trading, text, OutOfOrderError, "out_of_order")


# ----------------------------------------------------------------------------- through the feed


def test_a_feed_of_bad_lines_between_good_ones_rejects_each_and_applies_only_the_good(
    store_url: str,
) -> None:
    """In one batch: each bad line is rejected with its code at its physical line (blank
    lines counted), and the good lines around them are applied: bob 1,000 + 5 + 7 = 1,012."""
    app = Ledger(store_url)
    try:
        feed(app, MARKET)
        good = [line("deposit", id="g1", account="bob"),
                line("deposit", id="g2", account="bob", amount="7")]
        bad = [
            (line("deposit", amount="-5"), "invalid_input"),
            ("", None),
            (raw("deposit", "amount", "NaN"), "invalid_input"),
            (line("deposit", asset="DOGE"), "unknown_asset"),
            ("not json", "invalid_input"),
            (line("withdraw", amount="1000000"), "insufficient_balance"),
            (json.dumps({**D1, "amount": "3"}), "id_conflict"),
            ("   ", None),
            (line("fill", symbol="NOPE"), "unknown_symbol"),
            (line("deposit", account="nobody"), "unknown_account"),
        ]
        lines = [good[0], *(text for text, _ in bad), good[1]]
        expected = {number: code for number, (_, code) in enumerate(bad, start=2) if code}
        report = run_feed(app, ((n, t) for n, t in enumerate(lines, start=1) if t.strip()))
        assert {r.line: r.error for r in report.rejected} == expected
        assert report.applied == 2
        assert balance(app, "bob", "USDT") == "1012"
        assert count(app, "bob", "Deposited") == 3
        assert balance(app, "alice", "USDT") == "10000"
    finally:
        app.close()


def test_an_id_conflict_names_the_fields_that_differ(ledger: Ledger) -> None:
    caught = assert_rejected(ledger, json.dumps({**D1, "amount": "10001", "at": AT}),
                             IdConflictError, "id_conflict")
    assert str(caught) == "id 'd1' was used by a different command (amount, at differ)"
    within_batch = line("transfer")
    assert send(ledger, within_batch) == APPLIED
    caught = assert_rejected(ledger, line("transfer", to="mia"), IdConflictError, "id_conflict")
    assert str(caught).endswith("(to differs)")
