"""Tamper evidence beyond the account chains (docs/tamper-evidence.md), on both backends.

A small store is built through the public API: two assets, a perpetual with two mark prices,
alice long 1 BTC at 30,000 (leverage set, then filled; mark 30,022.59: UPL +22.59), bob short,
carol with 101 events (a snapshot at version 100, balance 149 then; 150 after) and dave, opened
last (the log's tail).
Each test tampers with it by SQL behind the ledger's back, then checks what `verify` finds,
without and with an anchor from `seal`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger.application import audit, queries
from ledger.application.commands import parse_line
from ledger.application.feed import run_feed
from ledger.application.service import Ledger
from ledger.application.store import sqlite_path
from ledger.domain.chain import GENESIS, chain_hash, event_fields
from ledger.domain.ids import account_id, asset_id, instrument_id
from ledger.domain.postings import Posting
from ledger.errors import ConcurrentWriteError
from ledger.times import parse_at

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T01:00:00Z"
T2 = "2025-01-01T02:00:00Z"
LEDGER = str(Path(sys.executable).parent / "ledger")


def _feed() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [
        {"type": "asset", "at": T0, "asset": "USDT", "precision": 8},
        {"type": "asset", "at": T0, "asset": "BTC", "precision": 8},
        {"type": "instrument", "at": T0, "symbol": "BTCUSDT", "kind": "linear_perpetual",
         "base": "BTC", "settle": "USDT", "contract_size": "0.001", "mm_basis": "mark",
         "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002", "close_fee_in_mm": False,
         "session_settlement": False, "funding_interval_hours": 8,
         "auto_add_amount": "maintenance",
         "risk_tiers": [{"up_to": "10000000", "mmr": "0.004", "max_leverage": "125"}]},
        {"type": "mark_price", "at": T0, "symbol": "BTCUSDT", "price": "30000"},
        {"type": "open_account", "at": T0, "account": "alice", "mode": "single_asset"},
        {"type": "deposit", "at": T0, "id": "a1", "account": "alice", "asset": "USDT",
         "amount": "10000"},
        {"type": "fill", "at": T0, "id": "f1", "account": "alice", "symbol": "BTCUSDT",
         "side": "buy", "qty": "1000", "price": "30000", "liquidity": "taker", "fee": "0",
         "margin_type": "cross", "leverage": "10", "liquidation": False},
        {"type": "open_account", "at": T0, "account": "bob", "mode": "single_asset"},
        {"type": "deposit", "at": T0, "id": "b1", "account": "bob", "asset": "USDT",
         "amount": "10000"},
        {"type": "fill", "at": T0, "id": "f1", "account": "bob", "symbol": "BTCUSDT",
         "side": "sell", "qty": "1000", "price": "30000", "liquidity": "taker", "fee": "0",
         "margin_type": "cross", "leverage": "10", "liquidation": False},
        {"type": "open_account", "at": T0, "account": "carol", "mode": "single_asset"},
        {"type": "deposit", "at": T0, "id": "c0", "account": "carol", "asset": "USDT",
         "amount": "51"},
    ]
    lines += [{"type": "deposit", "at": T0, "id": f"c{i}", "account": "carol",
               "asset": "USDT", "amount": "1"} for i in range(1, 100)]
    lines += [
        {"type": "mark_price", "at": T1, "symbol": "BTCUSDT", "price": "30022.59"},
        {"type": "open_account", "at": T1, "account": "dave", "mode": "single_asset"},
        {"type": "deposit", "at": T1, "id": "d1", "account": "dave", "asset": "USDT",
         "amount": "500"},
    ]
    return lines


def _run(url: str, lines: Sequence[dict[str, Any]]) -> None:
    report = run_feed(Ledger(url), enumerate((json.dumps(line) for line in lines), start=1))
    assert (report.rejected, report.internal_error) == ([], None)


@pytest.fixture
def built(store_url: str) -> str:
    _run(store_url, _feed())
    return store_url


# ------------------------------------------------------------------------ raw SQL helpers


def _pg(url: str) -> bool:
    return not url.startswith("sqlite:")


def _tables(url: str) -> tuple[str, str, str]:
    """(events table, snapshots table, notification id column)."""
    if _pg(url):
        return "ledger_events", "ledger_snapshots", "notification_id"
    return "stored_events", "stored_snapshots", "rowid"


def _key(url: str, stream: UUID) -> Any:
    return stream if _pg(url) else stream.hex


def _sql(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    events, snapshots, nid = _tables(url)
    statement = statement.format(events=events, snapshots=snapshots, nid=nid)
    if _pg(url):
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), tuple(params))
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    with sqlite3.connect(sqlite_path(url)) as conn:
        return [tuple(row) for row in conn.execute(statement, tuple(params)).fetchall()]


def _state(url: str, stream: UUID, version: int, table: str = "{events}") -> bytes:
    rows = _sql(url, f"SELECT state FROM {table} WHERE originator_id = ? AND"
                " originator_version = ?", (_key(url, stream), version))
    assert len(rows) == 1
    return bytes(rows[0][0])


def _edit(url: str, stream: UUID, version: int, old: bytes, new: bytes,
          table: str = "{events}") -> None:
    state = _state(url, stream, version, table)
    assert state.count(old) == 1, (old, state)
    _sql(url, f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
         (state.replace(old, new), _key(url, stream), version))


def _delete_events(url: str, stream: UUID, first: int, *, index: bool = True) -> None:
    """Delete a stream's events from version `first` on (and their index rows)."""
    _sql(url, "DELETE FROM {events} WHERE originator_id = ? AND originator_version >= ?",
         (_key(url, stream), first))
    if index:
        _sql(url, "DELETE FROM ledger_event_index WHERE stream_id = ? AND version >= ?",
             (stream.hex, first))


def _last_version(url: str, stream: UUID) -> int:
    return int(_sql(url, "SELECT MAX(originator_version) FROM {events} WHERE originator_id = ?",
                    (_key(url, stream),))[0][0])


def _nid(url: str, stream: UUID, version: int) -> int:
    return int(_sql(url, "SELECT {nid} FROM {events} WHERE originator_id = ? AND"
                    " originator_version = ?", (_key(url, stream), version))[0][0])


def _found(url: str, anchor: dict[str, Any] | None = None, key: str | None = None
           ) -> list[tuple[str, int | None, str]]:
    result = audit.audit(Ledger(url), anchor, key)
    return [(b.stream, b.version, b.reason) for b in result.breaks]


def _where(found: list[tuple[str, int | None, str]]) -> list[tuple[str, int | None]]:
    return [(stream, version) for stream, version, _ in found]


def _cli(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_SEAL_KEY"}
    if key is not None:
        env["LEDGER_SEAL_KEY"] = key
    return subprocess.run([LEDGER, "--db", url, *args], capture_output=True, text=True,
                          env=env, check=False)


ALICE, BOB, CAROL, DAVE = (account_id(n) for n in ("alice", "bob", "carol", "dave"))
BTCUSDT = instrument_id("BTCUSDT")
# Account events are stored in the lean form (issue 11): the canonical body as it was hashed.
AMOUNT_10000 = b'"amount":"10000"'
AMOUNT_90000 = b'"amount":"90000"'


# ------------------------------------------------------------------------ untampered


def test_an_untampered_store_verifies_clean_and_seals(built: str) -> None:
    result = audit.audit(Ledger(built))
    # 2 asset + 3 instrument + (4 alice + 4 bob + 101 carol + 2 dave) account events.
    assert (result.accounts, result.streams, result.events, result.snapshots, result.legacy,
            result.log_position, result.gaps, result.breaks) == (4, 7, 116, 1, 0, 116, [], [])
    assert queries.verify(Ledger(built)) == (4, 116, [])
    anchor = audit.seal(Ledger(built))
    assert anchor["log_position"] == 116
    assert anchor["streams"][CAROL.hex]["version"] == 101
    assert anchor["streams"][BTCUSDT.hex]["stream"] == "instrument:BTCUSDT"
    assert anchor["streams"][BTCUSDT.hex]["version"] == 3
    assert "hmac" not in anchor
    assert _found(built, anchor) == []
    done = _cli(built, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("checked 116 events in 7 streams (4 accounts), 1 snapshots,"
                                  " log position 116: no break")


def test_reference_events_are_chained(built: str) -> None:
    events = list(Ledger(built).events.get(BTCUSDT))
    assert [type(e).__name__ for e in events] == ["InstrumentListed", "MarkPriceSet",
                                                  "MarkPriceSet"]
    previous = GENESIS
    for event in events:
        assert event.hash == chain_hash(previous, type(event).__name__,  # type: ignore[attr-defined]
                                        event.originator_version, event_fields(event))
        previous = event.hash  # type: ignore[attr-defined]


def test_a_store_that_grew_after_sealing_still_extends_the_anchor(built: str) -> None:
    anchor = audit.seal(Ledger(built), key="k1")
    _run(built, [
        {"type": "deposit", "at": T2, "id": "a2", "account": "alice", "asset": "USDT",
         "amount": "5"},
        {"type": "mark_price", "at": T2, "symbol": "BTCUSDT", "price": "30100"},
        {"type": "open_account", "at": T2, "account": "erin", "mode": "single_asset"},
    ])
    result = audit.audit(Ledger(built), anchor, "k1")
    assert (result.breaks, result.log_position, result.events) == ([], 119, 119)
    assert result.heads[ALICE.hex].version == 5
    assert anchor["streams"][ALICE.hex]["version"] == 4


# ------------------------------------------------------------------------ caught without anchor


def test_an_edited_account_event_breaks_its_chain(built: str) -> None:
    _edit(built, ALICE, 2, AMOUNT_10000, AMOUNT_90000)
    found = _found(built)
    assert _where(found) == [("alice", 2)]
    assert found[0][2] == "hash does not match its content and predecessor"
    done = _cli(built, "verify")
    assert done.returncode == 1
    assert "alice at version 2: hash does not match its content and predecessor" in done.stdout


def test_an_edited_mark_price_breaks_the_instrument_chain(built: str) -> None:
    before = queries.state(Ledger(built), "alice")["positions"][0]["unrealized_pnl"]
    _edit(built, BTCUSDT, 3, b'"30022.59"', b'"3742"')
    after = queries.state(Ledger(built), "alice")["positions"][0]["unrealized_pnl"]
    assert (before, after) == ("22.59", "-26258")  # what the edit does to alice's figures
    found = _found(built)
    assert _where(found) == [("instrument:BTCUSDT", 3)]
    assert found[0][2] == "hash does not match its content and predecessor"
    done = _cli(built, "verify", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["breaks"] == [{
        "stream": "instrument:BTCUSDT", "version": 3,
        "reason": "hash does not match its content and predecessor"}]


def test_an_edited_asset_event_breaks_the_asset_chain(built: str) -> None:
    _edit(built, asset_id("BTC"), 1, b'"precision":8', b'"precision":2')
    assert _where(_found(built)) == [("asset:BTC", 1)]


def test_an_edited_snapshot_differs_from_its_events(built: str) -> None:
    assert queries.state(Ledger(built), "carol")["balances"] == {"USDT": "150"}
    _edit(built, CAROL, 100, b'"149"', b'"1000149"', table="{snapshots}")
    # What the edit does: the state is folded from the snapshot.
    assert queries.state(Ledger(built), "carol")["balances"] == {"USDT": "1000150"}
    found = _found(built)
    assert found == [("carol", 100, "snapshot differs from the replay of its events in"
                      " balances")]
    done = _cli(built, "verify")
    assert done.returncode == 1
    assert "carol at version 100: snapshot differs from the replay of its events in balances" \
        in done.stdout


def test_an_edited_index_time_is_caught(built: str) -> None:
    # `state --at` picks the version by the index: moving the fill's time hides the position.
    assert len(queries.state(Ledger(built), "alice", parse_at(T0))["positions"]) == 1
    _sql(built, "UPDATE ledger_event_index SET at_micros = at_micros + 3600000000 WHERE"
         " stream_id = ? AND version = 4", (ALICE.hex,))
    assert queries.state(Ledger(built), "alice", parse_at(T0))["positions"] == []
    assert _found(built) == [("alice", 4, "ledger_event_index says Filled at"
                              " 2025-01-01T01:00:00Z; the event is Filled at"
                              " 2025-01-01T00:00:00Z")]


def test_unreadable_events_and_snapshots_are_breaks(built: str) -> None:
    _sql(built, "UPDATE {events} SET state = ? WHERE originator_id = ? AND"
         " originator_version = 2", (b"not json", _key(built, ALICE)))
    _sql(built, "UPDATE {snapshots} SET state = ? WHERE originator_id = ? AND"
         " originator_version = 100", (b"not json", _key(built, CAROL)))
    found = _found(built)
    assert _where(found) == [("alice", 2), ("carol", 100)]
    assert found[0][2].startswith("event cannot be read: MapperDeserialisationError")
    assert found[1][2].startswith("snapshot cannot be read: MapperDeserialisationError")


def test_a_deleted_middle_event_breaks_the_chain_and_leaves_a_gap(built: str) -> None:
    hole = _nid(built, ALICE, 2)
    _sql(built, "DELETE FROM {events} WHERE originator_id = ? AND originator_version = 2",
         (_key(built, ALICE),))
    found = _found(built)
    assert _where(found) == [("log", None), ("alice", 2), ("alice", 3)]
    assert found[0][2].startswith(f"notification ids {hole} are missing: events were deleted")
    assert found[1][2] == "in ledger_event_index but missing from the log (deleted)"
    assert found[2][2] == "version 3 follows 1: events are missing"


def test_a_deleted_last_event_of_an_account_is_caught_by_its_index_row(built: str) -> None:
    _delete_events(built, ALICE, 4, index=False)
    found = _found(built)
    assert ("alice", 4, "in ledger_event_index but missing from the log (deleted)") in found


def test_a_deleted_last_event_and_its_index_row_leave_a_gap(built: str) -> None:
    hole = _nid(built, ALICE, 4)
    _delete_events(built, ALICE, 4)
    found = _found(built)
    assert _where(found) == [("log", None)]
    assert found[0][2].startswith(f"notification ids {hole} are missing")
    done = _cli(built, "verify")
    assert done.returncode == 1
    assert f"log: notification ids {hole} are missing: events were deleted" in done.stdout


def test_a_deleted_account_leaves_a_gap(built: str) -> None:
    first, last = _nid(built, BOB, 1), _nid(built, BOB, 4)
    _delete_events(built, BOB, 1)
    _sql(built, "DELETE FROM ledger_streams WHERE stream_id = ?", (BOB.hex,))
    _sql(built, "DELETE FROM ledger_holders WHERE stream_id = ?", (BOB.hex,))
    assert Ledger(built).account_names() == ["alice", "carol", "dave"]
    found = _found(built)
    assert _where(found) == [("log", None)]
    assert found[0][2].startswith(f"notification ids {first}–{last} are missing")


def test_a_deleted_streams_row_is_caught(built: str) -> None:
    _sql(built, "DELETE FROM ledger_streams WHERE stream_id = ?", (BOB.hex,))
    assert Ledger(built).account_names() == ["alice", "carol", "dave"]
    found = _found(built)
    assert found == [(f"stream {BOB.hex}", None, "has events but no ledger_streams row"
                      " (deleted)")]


def test_a_streams_row_without_events_is_caught(built: str) -> None:
    _sql(built, "INSERT INTO ledger_streams (stream_id, kind, name) VALUES (?, ?, ?)",
         (account_id("mallory").hex, "account", "mallory"))
    assert _found(built) == [("mallory", None, "listed in ledger_streams but has no events"
                              " (deleted)")]


def test_reordered_events_break_the_chain(built: str) -> None:
    key = _key(built, ALICE)
    two = _sql(built, "SELECT topic, state FROM {events} WHERE originator_id = ? AND"
               " originator_version = 2", (key,))[0]
    three = _sql(built, "SELECT topic, state FROM {events} WHERE originator_id = ? AND"
                 " originator_version = 3", (key,))[0]
    for version, (topic, state) in ((2, three), (3, two)):
        _sql(built, "UPDATE {events} SET topic = ?, state = ? WHERE originator_id = ? AND"
             " originator_version = ?", (topic, state, key, version))
    found = _found(built)
    assert _where(found) == [("alice", 2)]
    assert found[0][2] == "hash does not match its content and predecessor"


# ------------------------------------------------------------------------ caught with anchor


def _rewrite_forward(url: str, stream: UUID, version: int,
                     change: Callable[[dict[str, Any]], None]) -> None:
    """Edit one event and recompute the chain from it on, as a careful forger would."""
    ledger = Ledger(url)
    events = list(ledger.events.get(stream))
    previous = events[version - 2].hash if version > 1 else GENESIS  # type: ignore[attr-defined]
    for event in events[version - 1:]:
        if event.originator_version == version:
            change(event.__dict__)
        digest = chain_hash(previous, type(event).__name__, event.originator_version,
                            event_fields(event))
        event.__dict__["hash"] = digest
        previous = digest
        stored = ledger.mapper.to_stored_event(event)
        _sql(url, "UPDATE {events} SET state = ? WHERE originator_id = ? AND"
             " originator_version = ?",
             (stored.state, _key(url, stream), stored.originator_version))


def _bob_deposits_90000(fields: dict[str, Any]) -> None:
    fields["amount"] = fields["amount"] * 9
    fields["postings"] = [Posting(p.account, p.asset, p.amount * 9) for p in fields["postings"]]


def test_a_chain_rewritten_forward_is_caught_only_by_the_anchor(built: str) -> None:
    anchor = audit.seal(Ledger(built))
    _rewrite_forward(built, BOB, 2, _bob_deposits_90000)
    assert queries.state(Ledger(built), "bob")["balances"] == {"USDT": "90000"}
    assert _found(built) == []  # the store alone is consistent
    assert _found(built, anchor) == [("bob", 4, "the event at the anchored head no longer has"
                                      " the anchored hash (history rewritten)")]
    path = Path(sqlite_path(built)).parent / "anchor.json" if not _pg(built) else None
    if path is not None:
        path.write_text(json.dumps(anchor))
        done = _cli(built, "verify", "--anchor", str(path))
        assert done.returncode == 1
        assert "bob at version 4: the event at the anchored head no longer has the anchored" \
            " hash" in done.stdout


def test_a_deleted_tail_is_caught_only_by_the_anchor(built: str, tmp_path: Path) -> None:
    done = _cli(built, "seal", "--out", str(tmp_path / "anchor.json"))
    assert done.returncode == 0, done.stderr
    assert _nid(built, DAVE, 2) == 116  # dave's events end the log
    _delete_events(built, DAVE, 1)
    _sql(built, "DELETE FROM ledger_streams WHERE stream_id = ?", (DAVE.hex,))
    assert _found(built) == []  # nothing in the store witnesses the missing end
    done = _cli(built, "verify", "--anchor", str(tmp_path / "anchor.json"))
    assert done.returncode == 1
    assert "log: the log ends at 114, before the anchor's position 116" in done.stdout
    assert "dave at version 2: anchored head is gone: the stream has no events" in done.stdout


def test_deleted_final_events_of_a_stream_are_caught_by_the_anchor(built: str) -> None:
    anchor = audit.seal(Ledger(built))
    _delete_events(built, DAVE, 2)
    assert _found(built) == []
    assert _found(built, anchor) == [
        ("log", None, "the log ends at 115, before the anchor's position 116: events were"
         " deleted from its end"),
        ("dave", 2, "anchored head is gone: the stream ends at version 1 (final events"
         " deleted)")]


def test_a_deleted_tail_hidden_by_new_events_is_caught_by_the_anchor(built: str) -> None:
    anchor = audit.seal(Ledger(built))
    _delete_events(built, DAVE, 2)
    _run(built, [{"type": "deposit", "at": T2, "id": "a2", "account": "alice",
                  "asset": "USDT", "amount": "5"},
                 {"type": "deposit", "at": T2, "id": "a3", "account": "alice",
                  "asset": "USDT", "amount": "5"}])
    found = _found(built, anchor)
    # PostgreSQL's sequence does not reuse id 116 (a hole); SQLite's rowid does (no hole).
    assert ("dave", 2, "anchored head is gone: the stream ends at version 1 (final events"
            " deleted)") in found
    assert len(found) == (2 if _pg(built) else 1)


def test_an_edited_anchor_and_a_wrong_key_are_caught(built: str) -> None:
    anchor = audit.seal(Ledger(built), key="right")
    assert _found(built, anchor, "right") == []
    assert _found(built, anchor, "wrong") == [
        ("anchor", None, "the anchor's HMAC does not match the key (forged anchor or wrong"
         " key)")]
    edited = json.loads(json.dumps(anchor))
    edited["log_position"] = 100
    assert _found(built, edited, "right") == [
        ("anchor", None, "the anchor's root does not match its content (the anchor file was"
         " edited)")]
    unkeyed = audit.seal(Ledger(built))
    assert _found(built, unkeyed, "right") == [
        ("anchor", None, "a key was given but the anchor has no HMAC")]
    result = audit.audit(Ledger(built), anchor)
    assert (result.breaks, result.notes) == ([], [
        "the anchor has an HMAC but no LEDGER_SEAL_KEY was given: not checked"])


def test_the_cli_seals_with_a_key_and_checks_it(built: str, tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    assert _cli(built, "seal", "--out", str(path), key="s3cret").returncode == 0
    anchor = json.loads(path.read_text())
    assert anchor["hmac"] == audit._mac("s3cret", anchor["root"])  # noqa: SLF001
    assert _cli(built, "verify", "--anchor", str(path), key="s3cret").returncode == 0
    done = _cli(built, "verify", "--anchor", str(path), key="other")
    assert done.returncode == 1
    assert "anchor: the anchor's HMAC does not match the key" in done.stdout
    path.write_text("{}")
    done = _cli(built, "verify", "--anchor", str(path))
    assert done.returncode == 2
    assert "anchor_unreadable" in done.stderr


def test_seal_refuses_a_store_that_does_not_verify(built: str) -> None:
    _edit(built, ALICE, 2, AMOUNT_10000, AMOUNT_90000)
    with pytest.raises(audit.AnchorError, match="alice at version 2: hash does not match"):
        audit.seal(Ledger(built))
    done = _cli(built, "seal")
    assert done.returncode == 1
    assert "not_sealed" in done.stderr


# ------------------------------------------------------------------------ log holes


def test_a_rejected_concurrent_write_leaves_no_hole(built: str) -> None:
    first, second = Ledger(built), Ledger(built)
    first.find_account("alice")
    second.find_account("alice")
    first.handle(parse_line(json.dumps({"type": "deposit", "at": T2, "id": "x1",
                                        "account": "alice", "asset": "USDT", "amount": "1"})))
    with pytest.raises(ConcurrentWriteError):
        second.handle(parse_line(json.dumps({"type": "deposit", "at": T2, "id": "x2",
                                             "account": "alice", "asset": "USDT",
                                             "amount": "2"})))
    _run(built, [{"type": "deposit", "at": T2, "id": "x3", "account": "bob", "asset": "USDT",
                  "amount": "3"}])
    result = audit.audit(Ledger(built))
    assert (result.breaks, result.log_position, result.events) == ([], 118, 118)


def test_a_write_killed_after_taking_ids_is_a_hole_the_anchor_can_accept(built: str) -> None:
    """On PostgreSQL a transaction that takes notification ids and then rolls back leaves a
    hole (the sequence does not give them back); on SQLite the rowid is reused: no hole."""
    events, _, _ = _tables(built)
    if _pg(built):
        with psycopg.connect(built) as conn:
            conn.execute(f"INSERT INTO {events} (originator_id, originator_version, topic,"
                         " state) VALUES (%s, 1, 'x', 'x')", (account_id("ghost"),))
            conn.rollback()
    else:
        with sqlite3.connect(sqlite_path(built)) as conn:
            conn.execute(f"INSERT INTO {events} VALUES (?, 1, 'x', 'x')",
                         (account_id("ghost").hex,))
            conn.rollback()
    _run(built, [{"type": "deposit", "at": T2, "id": "x3", "account": "bob", "asset": "USDT",
                  "amount": "3"}])
    found = _found(built)
    if not _pg(built):
        assert found == []
        return
    assert _where(found) == [("log", None)]
    assert found[0][2].startswith("notification ids 117 are missing")
    anchor = audit.seal(Ledger(built))
    assert anchor["gaps"] == [[117, 117]]
    result = audit.audit(Ledger(built), anchor)
    assert (result.breaks, result.notes) == (
        [], ["log gap 117 is recorded in the anchor (accepted)"])


# ------------------------------------------------------------------------ legacy reference


def _strip_reference_hashes(url: str) -> int:
    """Make the store look written before reference streams were chained."""
    rows = _sql(url, "SELECT s.stream_id FROM ledger_streams s WHERE s.kind <> 'account'")
    stripped = 0
    for (stream,) in rows:
        key = _key(url, UUID(stream))
        for version, state in _sql(url, "SELECT originator_version, state FROM {events}"
                                   " WHERE originator_id = ?", (key,)):
            fields = json.loads(bytes(state))
            assert fields.pop("class_version") == 2
            fields.pop("hash")
            _sql(url, "UPDATE {events} SET state = ? WHERE originator_id = ? AND"
                 " originator_version = ?",
                 (json.dumps(fields, separators=(",", ":")).encode(), key, version))
            stripped += 1
    return stripped


def test_legacy_reference_events_verify_as_unchained(built: str) -> None:
    assert _strip_reference_hashes(built) == 5
    assert queries.state(Ledger(built), "alice")["positions"][0]["unrealized_pnl"] == "22.59"
    result = audit.audit(Ledger(built))
    assert (result.breaks, result.legacy, result.events) == ([], 5, 116)
    done = _cli(built, "verify")
    assert done.returncode == 0
    assert "(4 accounts, 5 unchained (legacy))" in done.stdout
    # A chained event after legacy ones covers them: a later edit of a legacy price breaks it.
    _run(built, [{"type": "mark_price", "at": T2, "symbol": "BTCUSDT", "price": "30100"}])
    assert audit.audit(Ledger(built)).breaks == []
    _edit(built, BTCUSDT, 2, b'"30000"', b'"31000"')
    assert _where(_found(built)) == [("instrument:BTCUSDT", 4)]


def test_a_hash_stripped_after_chaining_began_is_a_break(built: str) -> None:
    state = json.loads(_state(built, BTCUSDT, 3))
    state.pop("hash")
    state.pop("class_version")
    _sql(built, "UPDATE {events} SET state = ? WHERE originator_id = ? AND"
         " originator_version = 3",
         (json.dumps(state, separators=(",", ":")).encode(), _key(built, BTCUSDT)))
    assert _found(built) == [("instrument:BTCUSDT", 3, "the event has no hash")]
