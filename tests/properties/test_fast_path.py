"""Issue 11: the fast ingest path decides exactly as the reference path, byte for byte.

The fast path (`commands.fast_command`, the canonical encoding with its values converted up
front, `chain.plain_fields`) must never change an outcome or a stored byte. Over random lines
of the hot types — well-formed or not: numbers instead of decimal strings, exponents, repeated
or unknown keys, quotes, backslashes and escapes in names, bounds and places just outside,
`from` equal to `to` — three properties:

(a) parsing: the fast path either declines the line or gives the very command the command
    models give (same class, values and fields set); `parse_line` then answers exactly as the
    models alone do (the same command, or the same error code and message);
(b) a feed of such lines run with the fast path and with it switched off stores the same rows
    (recording time aside), the same hashes, and reports the same outcomes and error texts;
(c) every stored lean body is byte for byte the canonical JSON the standard library writes of
    the event's fields (the reference encoding of `chain.canonical_bytes`), and its hash chains.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from ledger.application import commands
from ledger.application.commands import fast_command, parse_line, parse_line_strictly
from ledger.application.feed import RunReport, run_feed
from ledger.application.lean import lean_parts
from ledger.application.service import Ledger
from ledger.domain.chain import _ENCODER, BOOKKEEPING, GENESIS, hash_body
from ledger.errors import LedgerError

AT = "2025-01-01T00:00:00Z"
SETUP: list[dict[str, Any]] = [
    {"type": "asset", "at": AT, "asset": "USDT", "precision": 8},
    {"type": "asset", "at": AT, "asset": "BTC", "precision": 8},
    {"type": "index_price", "at": AT, "asset": "USDT", "price": "1"},
    {"type": "index_price", "at": AT, "asset": "BTC", "price": "50000"},
    {"type": "instrument", "at": AT, "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.001", "taker_fee_rate": "0.0005",
     "maker_fee_rate": "0.0002",
     "risk_tiers": [{"up_to": "1000000", "mmr": "0.004", "max_leverage": "100"},
                    {"up_to": None, "mmr": "0.01", "max_leverage": "20"}]},
    {"type": "mark_price", "at": AT, "symbol": "BTCUSDT", "price": "50000"},
    *({"type": "open_account", "at": AT, "account": name, "mode": "single_asset"}
      for name in ("alice", "bob", "carol")),
    *({"type": "deposit", "at": AT, "id": "d0", "account": name, "asset": "USDT",
       "amount": "100000"} for name in ("alice", "bob", "carol")),
]

NAMES = st.sampled_from(["alice", "bob", "carol", "dave", "BTCUSDT", "USDT", "BTC", "", " alice",
                         "al\u200bice", 'a"b', "a\\b", "x" * 129, "x" * 128, "ali\u0301ce",
                         "\u0301a", "système"])
DECIMALS = st.sampled_from(["1", "0.5", "27", "50000", "50046.5", "0", "-1", "1.0000",
                            "0.0000000000000000001", "1000000000000", "1000000000001",
                            "0.000000000001", "0.0000000000001", "1e3", "1E+2", ".5", "5.",
                            "+1", " 1", "NaN", "١", "0x10", "1000", "1000.5", "0.1"])
TIMES = st.sampled_from(["2025-01-01T00:00:01Z", "2025-01-01T00:00:02Z", "2025-01-01T00:00:02z",
                         "2025-01-01 00:00:03Z", "2025-01-01T01:00:03+01:00",
                         "2025-01-01T00:00:04.500Z", "2025-01-01T00:00:05", "2025-13-01T00:00:05Z",
                         "1999-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2024-12-31T00:00:00Z",
                         "2025-01-01T00:00:06.0000001Z", "2025-02-30T00:00:00Z"])
ODD = st.sampled_from([None, True, False, 1, 1.5, [], {}, "yes"])


def _value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's kind, now and then anything else."""
    return st.one_of(good, good, good, ODD)


FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "fill": {"at": TIMES, "id": st.sampled_from(["f1", "f2", "f3", "d0"]), "account": NAMES,
             "symbol": NAMES, "side": st.sampled_from(["buy", "sell", "Buy"]), "qty": DECIMALS,
             "price": DECIMALS, "liquidity": st.sampled_from(["taker", "maker", "both"]),
             "fee": DECIMALS, "margin_type": st.sampled_from(["cross", "isolated", "x"]),
             "leverage": DECIMALS, "liquidation": st.booleans()},
    "mark_price": {"at": TIMES, "symbol": NAMES, "price": DECIMALS, "mark_iv": DECIMALS},
    "index_price": {"at": TIMES, "asset": NAMES, "price": DECIMALS},
    "deposit": {"at": TIMES, "id": st.sampled_from(["d1", "d2", "d0"]), "account": NAMES,
                "asset": NAMES, "amount": DECIMALS},
    "withdraw": {"at": TIMES, "id": st.sampled_from(["w1", "w2"]), "account": NAMES,
                 "asset": NAMES, "amount": DECIMALS},
    "transfer": {"at": TIMES, "id": st.sampled_from(["t1", "t2"]), "from": NAMES, "to": NAMES,
                 "asset": NAMES, "amount": DECIMALS},
}
REQUIRED = {"fill": ("at", "id", "account", "symbol", "side", "qty", "price"),
            "mark_price": ("at", "symbol", "price"), "index_price": ("at", "asset", "price"),
            "deposit": ("at", "id", "account", "asset", "amount"),
            "withdraw": ("at", "id", "account", "asset", "amount"),
            "transfer": ("at", "id", "from", "to", "asset", "amount")}


@st.composite
def lines(draw: st.DrawFn) -> str:
    """One feed line of a hot type, mostly well-formed, sometimes broken in one way."""
    kind = draw(st.sampled_from(sorted(FIELDS)))
    data: dict[str, Any] = {"type": kind}
    for name, values in FIELDS[kind].items():
        if name in REQUIRED[kind] and draw(st.integers(0, 30)) > 0:
            data[name] = draw(_value(values))
        elif name not in REQUIRED[kind] and draw(st.booleans()):
            data[name] = draw(_value(values))
    if draw(st.integers(0, 10)) == 0:
        data["extra"] = "x"
    text = json.dumps(data, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    damage = draw(st.integers(0, 12))
    if damage == 0 and len(data) > 1:  # a repeated key (the first value is the one shown)
        key = draw(st.sampled_from(sorted(data)))
        text = text[:-1] + f', "{key}": {json.dumps(data[key])}' + "}"
    elif damage == 1:  # a number instead of a decimal string
        text = re.sub(r'"(-?[0-9]+(\.[0-9]+)?)"', r"\1", text, count=1)
    elif damage == 2:  # an escaped key or value (the same text once decoded)
        text = text.replace('"at"', '"\\u0061t"').replace("alice", "\\u0061lice")
    elif damage == 3:
        text = text.replace('"price"', '"price" ', 1)
    elif damage == 4:
        text = "[" + text + "]"
    elif damage == 5:
        text = text.replace('"qty": "', '"qty": NaN, "q": "', 1)
    return text


def _outcome(text: str) -> tuple[str, Any]:
    try:
        command = parse_line_strictly(text)
    except LedgerError as error:
        return "error", (error.code, str(error))
    return "command", (type(command), command.__dict__, command.model_fields_set)


@settings(max_examples=600)
@given(lines())
def test_fast_parse_gives_the_models_command_or_declines(text: str) -> None:
    note(text)
    expected = _outcome(text)
    fast = fast_command(text)
    if fast is not None:
        assert expected == ("command", (type(fast), fast.__dict__, fast.model_fields_set))
        assert dict(fast.__dict__) == fast.model_dump()  # flat: `content` copies its dict
    try:
        command = parse_line(text)
        got: tuple[str, Any] = ("command", (type(command), command.__dict__,
                                            command.model_fields_set))
    except LedgerError as error:
        got = ("error", (error.code, str(error)))
    assert got == expected


def test_the_fast_path_takes_the_benchmark_lines() -> None:
    """The hot lines of a real feed do take the fast path (else it would only cost)."""
    line = json.dumps({"type": "fill", "at": "2025-01-01T00:00:01Z", "id": "f1",
                       "account": "alice", "symbol": "BTCUSDT", "side": "buy", "qty": "2",
                       "price": "50000.5", "liquidity": "taker"})
    assert fast_command(line) == parse_line_strictly(line)
    assert fast_command(line.replace('"qty": "2"', '"qty": "2", "qty": "3"')) is None
    assert fast_command(line.replace('"2"', "2")) is None


@contextmanager
def _fast_path_off() -> Iterator[None]:
    original = commands.fast_command
    commands.fast_command = lambda text: None
    try:
        yield
    finally:
        commands.fast_command = original


def _run(feed: list[str]) -> tuple[RunReport, list[tuple[Any, ...]]]:
    with tempfile.TemporaryDirectory() as folder:
        return _run_in(f"sqlite:///{folder}/ledger.db", feed)


def _run_in(url: str, feed: list[str]) -> tuple[RunReport, list[tuple[Any, ...]]]:
    ledger = Ledger(url)
    report = run_feed(ledger, iter(enumerate(feed, start=1)), batch_size=7)
    rows = []
    for stored in ledger.recorder.select_notifications(1, 10**9):
        state = re.sub(rb'"t":"[^"]*"', b'"t":""', stored.state)
        state = re.sub(rb'"timestamp":\{[^}]*\}', b"", state)
        event = ledger.mapper.to_domain_event(stored)
        rows.append((stored.originator_id, stored.originator_version, stored.topic, state,
                     getattr(event, "hash", None)))
        parts = lean_parts(stored.state)
        if parts is not None:  # (c) the body is the reference encoding, and it chains
            fields = {k: v for k, v in vars(event).items() if k not in BOOKKEEPING}
            body = _ENCODER.encode({"type": type(event).__name__,
                                    "version": stored.originator_version,
                                    "fields": fields}).encode()
            assert parts == (event.hash, body)
    return report, rows


def _chains(rows: list[tuple[Any, ...]]) -> None:
    """Every lean row's hash is sha256(previous hash + its body)."""
    last: dict[Any, str] = {}
    for stream, _, _, state, digest in rows:
        parts = lean_parts(state)
        if parts is not None:
            assert hash_body(last.get(stream, GENESIS), parts[1]) == digest
        if digest is not None:
            last[stream] = digest


@settings(max_examples=40)
@given(st.lists(lines(), min_size=1, max_size=25))
def test_a_feed_stores_the_same_bytes_with_and_without_the_fast_path(body: list[str]) -> None:
    feed = [json.dumps(line) for line in SETUP] + body
    fast_report, fast_rows = _run(feed)
    with _fast_path_off():
        slow_report, slow_rows = _run(feed)
    assert fast_rows == slow_rows
    _chains(fast_rows)
    assert (fast_report.applied, fast_report.acknowledged, fast_report.outcomes) == (
        slow_report.applied, slow_report.acknowledged, slow_report.outcomes)
    assert [r.as_dict() for r in fast_report.rejected] == [
        r.as_dict() for r in slow_report.rejected]
    assert fast_report.internal_error is None


def test_a_feed_runs_with_fewer_collections_and_restores_the_thresholds() -> None:
    """The feed runner raises the youngest generation's threshold while it runs (issue 11:
    the cycle collector took a fifth of ingest) and puts back what was in force, also when
    the feed stops on an error."""
    import gc

    from ledger.application import feed

    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def lines() -> Iterator[tuple[int, str]]:
        seen.append(gc.get_threshold())
        yield 1, json.dumps(SETUP[0])
        raise RuntimeError("the feed's source failed")

    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(f"sqlite:///{folder}/ledger.db")
        try:
            run_feed(ledger, lines())
        except RuntimeError:
            pass
    assert seen == [(max(before[0], feed.GC_FIRST_GENERATION), before[1], before[2])]
    assert gc.get_threshold() == before
