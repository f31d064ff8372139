"""As-of reads by point look-ups (issue 11, `ledger.application.asof`).

(1) Equivalence: over the random histories of tests/properties (the fixed market, four accounts,
    random deposits, fills, marks, index prices, funding rates, settlements, interest charges…)
    with extra bursts of marks (several at one second), at random T, `state` read by point
    look-ups equals `state` read from the whole reference streams, and so does the market
    (terms, marks, indexes, IVs, risk units, settings) and every `between` interval that
    interest accrual integrates over.
(2) Bounded reads: a state at T decodes the same number of reference events whether the symbol
    has 30 or 600 marks (it never reads a whole price stream).
(3) The plan: on SQLite the point look-up is one search of the index migration 0007 adds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import queries
from ledger.application.asof import PointReference, point_reads
from ledger.application.feed import run_feed
from ledger.application.service import Ledger
from ledger.times import format_at, parse_at


def _properties() -> Any:
    """The random histories of tests/properties (one strategy for both test files)."""
    name = "ledger_properties_for_asof"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).parents[1] / "properties" / "test_ledger_properties.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


P = _properties()
ASSETS = ("USDT", "USDC", "BTC", "ETH")
SYMBOLS = ("BTCUSDT", "ETHUSDC", "BTCUSD")


@st.composite
def histories(draw: Any) -> list[dict[str, Any]]:
    """A random stream of tests/properties, with bursts of marks after random commands:
    1–4 marks in the same second (ties broken by stream order), a second apart, or late."""
    commands: list[dict[str, Any]] = draw(P.streams(max_steps=30))
    out: list[dict[str, Any]] = []
    for command in commands:
        out.append(command)
        if command["at"] == commands[0]["at"] or draw(st.integers(0, 3)) != 0:
            continue
        at = parse_at(command["at"])
        symbol = draw(st.sampled_from(SYMBOLS))
        base = 2000 if symbol == "ETHUSDC" else 30000
        for _ in range(draw(st.integers(1, 4))):
            at += timedelta(seconds=draw(st.sampled_from([0, 0, 1, -1])))  # -1: refused or late
            price = base + draw(st.integers(-300, 300))
            out.append({"type": "mark_price", "at": format_at(at), "symbol": symbol,
                        "price": str(price)})
    return out


def _feed(url: str, commands: list[dict[str, Any]]) -> None:
    with P.opened(url) as app:
        P.feed(app, commands)


def _states(url: str, moment: datetime, points: bool) -> dict[str, Any]:
    """Every account's state at T in a fresh application (nothing cached from the feed)."""
    with P.opened(url) as app:
        found: dict[str, Any] = {}
        for name in sorted(P.ACCOUNTS):
            try:
                found[name] = queries.state(app, name, moment, points=points)
            except Exception as error:  # noqa: BLE001 - the error is part of the answer
                found[name] = repr(error)
        return found


def _moments(commands: list[dict[str, Any]], data: st.DataObject) -> list[datetime]:
    return [P.pick_time(commands, data) for _ in range(3)]


def check_equivalence(url: str, commands: list[dict[str, Any]], data: st.DataObject) -> None:
    _feed(url, commands)
    for moment in _moments(commands, data):
        assert _states(url, moment, points=True) == _states(url, moment, points=False), moment
    start, end = sorted(_moments(commands, data)[:2])
    with P.opened(url) as full, P.opened(url) as fresh:
        points = PointReference(fresh)
        whole = full.reference
        for moment in (start, end):
            assert points.market(moment, ASSETS, SYMBOLS) == whole.market(
                moment, ASSETS, SYMBOLS), moment
        for symbol in SYMBOLS:
            mine, theirs = points.instruments[symbol], whole.instruments[symbol]
            assert mine.marks.between(start, end) == theirs.marks.between(start, end)
            assert mine.rate_for(end, start) == theirs.rate_for(end, start)
            assert mine.periods == theirs.periods
            assert mine.terms.values == theirs.terms.values
            # inside the window `between` left, point look-ups answer from memory: same values
            for micros, _ in theirs.marks.between(start, end):
                moment = datetime.fromtimestamp(micros / 1_000_000, tz=start.tzinfo)
                assert mine.marks.at(moment) == theirs.marks.at(moment)
        for asset in ASSETS:
            assert points.bears_interest(asset) == whole.bears_interest(asset)
            assert points.index_price(asset, end) == whole.index_price(asset, end)


@settings(parent=P.PROPERTY, max_examples=min(25, P.PROPERTY.max_examples))
@given(commands=histories(), data=st.data())
def test_state_by_point_lookups_equals_state_from_whole_streams(
    sqlite_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    with P.empty_store(sqlite_url) as url:
        check_equivalence(url, commands, data)


@settings(parent=P.PROPERTY, max_examples=min(10, P.PROPERTY.max_examples))
@given(commands=histories(), data=st.data())
def test_state_by_point_lookups_equals_state_from_whole_streams_on_postgres(
    postgres_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    with P.empty_store(postgres_url) as url:
        check_equivalence(url, commands, data)


# ----------------------------------------------------------------------------- (2)

MARKET = [
    {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "USDT", "precision": 8},
    {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "BTC", "precision": 8},
    {"type": "index_price", "at": "2025-01-01T00:00:00Z", "asset": "BTC", "price": "30000"},
    {"type": "instrument", "at": "2025-01-01T00:00:00Z", "symbol": "BTCUSDT",
     "kind": "linear_perpetual", "base": "BTC", "settle": "USDT", "contract_size": "1",
     "risk_tiers": [{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]},
    {"type": "mark_price", "at": "2025-01-01T00:00:00Z", "symbol": "BTCUSDT", "price": "30000"},
    {"type": "open_account", "at": "2025-01-01T00:00:00Z", "account": "a",
     "mode": "single_asset"},
    {"type": "deposit", "at": "2025-01-01T00:00:00Z", "account": "a", "asset": "USDT",
     "amount": "10000", "id": "d1"},
    {"type": "fill", "at": "2025-01-01T00:00:00Z", "account": "a", "symbol": "BTCUSDT",
     "side": "buy", "qty": "1", "price": "30000", "fee": "0", "id": "f1"},
]


def _store_with_marks(url: str, count: int) -> None:
    marks = [{"type": "mark_price", "symbol": "BTCUSDT", "price": str(30000 + i % 97),
              "at": format_at(parse_at("2025-01-01T00:00:01Z") + timedelta(seconds=i))}
             for i in range(count)]
    with P.opened(url) as app:
        lines = ((n, json.dumps(c)) for n, c in enumerate([*MARKET, *marks], start=1))
        report = run_feed(app, lines, batch_size=1000)
        assert report.internal_error is None and not report.rejected


def _decoded(url: str, moment: str) -> tuple[int, dict[str, Any]]:
    """(reference events decoded, state) for a state at `moment` in a fresh application."""
    app = Ledger(url)
    try:
        counted = 0
        decode = app.mapper.to_domain_event

        def counting(stored: Any) -> Any:
            nonlocal counted
            event = decode(stored)
            counted += type(event).__qualname__.split(".")[0] in ("Asset", "Instrument",
                                                                  "Settings")
            return event

        app.mapper.to_domain_event = counting  # type: ignore[method-assign]
        app.events.mapper = app.mapper
        found = queries.state(app, "a", parse_at(moment))
        return counted, found
    finally:
        app.close()


@pytest.mark.parametrize("moment", ["2025-01-01T00:00:10Z", "2025-01-01T00:00:29Z"])
def test_a_state_decodes_the_same_reference_events_at_any_history_length(
    tmp_path: Path, moment: str
) -> None:
    short, long = f"sqlite:///{tmp_path}/short.db", f"sqlite:///{tmp_path}/long.db"
    _store_with_marks(short, 30)
    _store_with_marks(long, 600)
    few, state_short = _decoded(short, moment)
    many, state_long = _decoded(long, moment)
    assert state_short == state_long  # the marks after T change nothing at T
    assert few == many
    # USDT's and BTC's listings, BTCUSDT's, the mark and BTC's index in force at T: no stream.
    # (Interest accrual on an asset with interest terms reads the marks since the account's
    # last interest checkpoint as well: the rule integrates over them, DESIGN §6.8.)
    assert few == 5, few
    with P.opened(long) as app:
        assert queries.state(app, "a", parse_at(moment), points=False) == state_long


# ----------------------------------------------------------------------------- (3)


def test_the_point_lookup_is_one_search_of_the_stream_and_type_index(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/plan.db"
    _store_with_marks(url, 5)
    with sqlite3.connect(f"{tmp_path}/plan.db") as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT version FROM ledger_event_index"
            " WHERE stream_id = ? AND kind = ? AND at_micros <= ?"
            " ORDER BY at_micros DESC, version DESC LIMIT 1", ("x", "MarkPriceSet", 1)))
    assert "USING COVERING INDEX ledger_event_index_stream_kind" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_point_reads_are_left_alone_while_a_batch_holds_unwritten_events(
    tmp_path: Path,
) -> None:
    """Inside a batch the series know events the store does not: state reads them."""
    url = f"sqlite:///{tmp_path}/batch.db"
    _store_with_marks(url, 3)
    with P.opened(url) as app, app.batch():
        app.handle(_command({"type": "mark_price", "at": "2025-01-01T00:01:00Z",
                             "symbol": "BTCUSDT", "price": "31000"}))
        with point_reads(app):
            assert not isinstance(app.reference, PointReference)
        found = queries.state(app, "a", parse_at("2025-01-01T00:01:00Z"))
        assert found["positions"][0]["mark_price"] == "31000"


def _command(line: dict[str, Any]) -> Any:
    from ledger.application.commands import parse_command

    return parse_command(line)


def test_outside_a_batch_state_reads_by_point_lookups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outside.db"
    _store_with_marks(url, 3)
    with P.opened(url) as app:
        with point_reads(app):
            assert isinstance(app.reference, PointReference)
        assert not isinstance(app.reference, PointReference)


