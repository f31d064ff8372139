"""`ledger publish`: subjects, JSON and headers of every message; `--once` twice adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.domain.ids import account_id, asset_id, instrument_id
from ledger.opening import open_ledger

from .support import Target, consume

LEDGER = Path(sys.executable).parent / "ledger"
AT = "2025-03-01T00:00:00Z"
LATER = "2025-03-01T01:00:00Z"
FEED = [
    {"type": "asset", "at": AT, "asset": "USDT", "precision": 8},
    {"type": "asset", "at": AT, "asset": "BTC", "precision": 8},
    {"type": "instrument", "at": AT, "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.001", "taker_fee_rate": "0",
     "maker_fee_rate": "0", "risk_tiers": [{"up_to": None, "mmr": "0.005",
                                            "max_leverage": "100"}]},
    {"type": "mark_price", "at": AT, "symbol": "BTCUSDT", "price": "60000"},
    {"type": "index_price", "at": AT, "asset": "BTC", "price": "60000"},
    {"type": "open_account", "at": LATER, "account": "desk.alice", "mode": "single_asset"},
    {"type": "open_account", "at": LATER, "account": "bob", "mode": "single_asset"},
    {"type": "deposit", "at": LATER, "id": "d1", "account": "desk.alice", "asset": "USDT",
     "amount": "100"},
    {"type": "deposit", "at": LATER, "id": "d2", "account": "bob", "asset": "USDT",
     "amount": "50"},
    {"type": "transfer", "at": LATER, "id": "t1", "from": "desk.alice", "to": "bob",
     "asset": "USDT", "amount": "30"},
]
# Hand count: 5 reference events (2 listings of assets, 1 of an instrument, a mark, an index);
# 6 account events (2 openings, 2 deposits, a transfer out and a transfer in).
REFERENCE_EVENTS, ACCOUNT_EVENTS = 5, 6


def ledger(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return subprocess.run([str(LEDGER), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def publish(url: str, target: Target, cwd: Path, *extra: str) -> dict[str, Any]:
    done = ledger("--db", url, "publish", "--nats", target.url, "--stream", target.stream,
                  "--prefix", target.prefix, "--once", *extra, cwd=cwd)
    assert done.returncode == 0, done.stderr
    counts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def test_publish_subjects_json_headers_and_once_twice(store_url: str, target: Target,
                                                      tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(c) + "\n" for c in FEED), encoding="utf-8")
    done = ledger("--db", store_url, "run", str(feed), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    first = publish(store_url, target, tmp_path)
    total = REFERENCE_EVENTS + ACCOUNT_EVENTS
    assert (first["published"], first["events"], first["reference"]) == (
        total, ACCOUNT_EVENTS, REFERENCE_EVENTS)
    assert first["resumed_after"] == 0 and first["position"] == total

    second = publish(store_url, target, tmp_path)
    assert second["published"] == 0 and second["resumed_after"] == total

    received = consume(target)
    assert len(received) == total
    assert [r.data["position"] for r in received] == list(range(1, total + 1))
    assert [r.headers["Ledger-Position"] for r in received] == [
        str(n) for n in range(1, total + 1)]

    p = target.prefix
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for item in received:
        by_subject.setdefault(item.subject, []).append(item.data)
        stream_id = {f"{p}.events.desk~2Ealice": account_id("desk.alice"),
                     f"{p}.events.bob": account_id("bob"),
                     f"{p}.reference.asset.USDT": asset_id("USDT"),
                     f"{p}.reference.asset.BTC": asset_id("BTC"),
                     f"{p}.reference.instrument.BTCUSDT": instrument_id("BTCUSDT")}[item.subject]
        assert item.headers["Nats-Msg-Id"] == f"{stream_id}:{item.data['version']}"
    assert sorted(by_subject) == sorted([
        f"{p}.events.desk~2Ealice", f"{p}.events.bob", f"{p}.reference.asset.USDT",
        f"{p}.reference.asset.BTC", f"{p}.reference.instrument.BTCUSDT"])
    assert [d["type"] for d in by_subject[f"{p}.reference.instrument.BTCUSDT"]] == [
        "InstrumentListed", "MarkPriceSet"]
    assert by_subject[f"{p}.reference.asset.BTC"][1]["price"] == "60000"
    assert {d["kind"] for d in by_subject[f"{p}.reference.asset.BTC"]} == {"asset"}

    # each account's messages are its `ledger events --json` items plus account and position
    store = open_ledger(store_url)
    try:
        for name, token in (("desk.alice", "desk~2Ealice"), ("bob", "bob")):
            items = by_subject[f"{p}.events.{token}"]
            assert [d.pop("account") for d in items] == [name] * len(items)
            for d in items:
                d.pop("position")
            assert items == queries.events(store, name)
    finally:
        store.close()
    bob = [r.data for r in received if r.subject == f"{p}.events.bob"]
    assert [(d["type"], d["version"]) for d in bob] == [
        ("AccountOpened", 1), ("Deposited", 2), ("TransferredIn", 3)]


def test_unreachable_nats_is_exit_2(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps(FEED[0]) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert ledger("--db", url, "run", str(feed), cwd=tmp_path).returncode == 0
    done = ledger("--db", url, "publish", "--nats", "nats://127.0.0.1:1", "--once",
                  cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"] == "nats_unavailable"


@pytest.mark.parametrize("missing", ["sqlite"])
def test_no_store_is_exit_2(missing: str, tmp_path: Path) -> None:
    done = ledger("--db", f"sqlite:///{tmp_path / 'none.db'}", "publish", "--once",
                  cwd=tmp_path)
    assert done.returncode == 2
    assert not (tmp_path / "none.db").exists()


def test_follow_publishes_new_events_and_exits_cleanly_on_sigterm(
        target: Target, tmp_path: Path) -> None:
    import signal
    import time

    url = f"sqlite:///{tmp_path / 'l.db'}"
    first, later = tmp_path / "first.jsonl", tmp_path / "later.jsonl"
    first.write_text("".join(json.dumps(c) + "\n" for c in FEED[:5]), encoding="utf-8")
    later.write_text("".join(json.dumps(c) + "\n" for c in FEED[5:]), encoding="utf-8")
    assert ledger("--db", url, "run", str(first), cwd=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    follower = subprocess.Popen(
        [str(LEDGER), "--db", url, "publish", "--nats", target.url, "--stream", target.stream,
         "--prefix", target.prefix, "--poll", "0.05"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(_safe_consume(target)) < REFERENCE_EVENTS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ledger("--db", url, "run", str(later), cwd=tmp_path).returncode == 0
        while len(_safe_consume(target)) < REFERENCE_EVENTS + ACCOUNT_EVENTS:
            assert time.monotonic() < deadline, "the follower did not publish the new events"
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["published"] == REFERENCE_EVENTS + ACCOUNT_EVENTS
    assert counts["events"] == ACCOUNT_EVENTS


def _safe_consume(target: Target) -> list[Any]:
    try:
        return consume(target)
    except Exception:  # noqa: BLE001 - the stream may not exist yet
        return []


def test_a_stream_of_another_store_is_refused(target: Target, tmp_path: Path) -> None:
    """A stream whose last position is beyond this store's log was published from another
    store: resuming after it would publish nothing, silently; the publisher says so (exit 2)."""
    big, small = tmp_path / "big", tmp_path / "small"
    big.mkdir()
    small.mkdir()
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(c) + "\n" for c in FEED), encoding="utf-8")
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(FEED[0]) + "\n", encoding="utf-8")
    big_url, small_url = f"sqlite:///{big / 'l.db'}", f"sqlite:///{small / 'l.db'}"
    assert ledger("--db", big_url, "run", str(feed), cwd=tmp_path).returncode == 0
    assert ledger("--db", small_url, "run", str(one), cwd=tmp_path).returncode == 0
    assert publish(big_url, target, tmp_path)["published"] == REFERENCE_EVENTS + ACCOUNT_EVENTS
    done = ledger("--db", small_url, "publish", "--nats", target.url, "--stream", target.stream,
                  "--prefix", target.prefix, "--once", cwd=tmp_path)
    assert done.returncode == 2
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["error"] == "stream_ahead" and "position 11" in error["message"]
