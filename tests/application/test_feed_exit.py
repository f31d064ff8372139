"""`ledger run` through the installed command: exit statuses, error lines, repeated feeds.

Contract (contract/README.md, "Errors and exit status"): 0 when every command was applied or
acknowledged; 1 when some were rejected (all the others applied), with one JSON line per
rejection on stderr (`line`, `type`, `id`, `error`, `message`; physical line numbers, blank
lines counted); 2 when the feed cannot be read or the store cannot be reached. Each test runs
the real `ledger` console script in a subprocess, on SQLite and on PostgreSQL.

The market of FEED, by hand (fees: taker 0.05 %, bob's maker fill carries a rebate of 0.5):
- alice: 10,000 − fee 2 × 30,000 × 0.0005 = 30 → 9,970; funding at 08:00 with the mark 31,000
  and rate 0.01 %: 2 × 31,000 × 0.0001 = 6.2 paid → 9,963.8; + 100 from bob → 10,063.8;
  − 500 withdrawn → 9,563.8; sells 0.5 BTC @31,000: realised 0.5 × (31,000 − 30,000) = 500,
  fee 0.5 × 31,000 × 0.0005 = 7.75 → 10,056.05.
- bob: 10,000 + 0.5 rebate → 10,000.5; receives the 6.2 → 10,006.7; − 100 → 9,906.7.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.service import Ledger

LEDGER = str(Path(sys.executable).with_name("ledger"))


def at(hour: int, minute: int = 0) -> str:
    return f"2025-01-01T{hour:02d}:{minute:02d}:00Z"


T0 = at(0)
REFERENCE: list[dict[str, Any]] = [
    {"type": "asset", "at": T0, "asset": "USDT", "precision": 8},
    {"type": "asset", "at": T0, "asset": "BTC", "precision": 8},
    {"type": "index_price", "at": T0, "asset": "BTC", "price": "30000"},
    {"type": "instrument", "at": T0, "symbol": "BTCUSDT", "kind": "linear_perpetual",
     "base": "BTC", "settle": "USDT", "contract_size": "0.0001", "taker_fee_rate": "0.0005",
     "risk_tiers": [{"up_to": "1000000", "mmr": "0.004", "max_leverage": "125"}]},
    {"type": "mark_price", "at": T0, "symbol": "BTCUSDT", "price": "30000"},
]
ACCOUNTS: list[dict[str, Any]] = [
    {"type": "open_account", "at": T0, "account": "alice", "mode": "single_asset"},
    {"type": "open_account", "at": T0, "account": "bob", "mode": "single_asset"},
    {"type": "deposit", "at": T0, "id": "d1", "account": "alice", "asset": "USDT",
     "amount": "10000"},
    {"type": "deposit", "at": T0, "id": "d1", "account": "bob", "asset": "USDT",
     "amount": "10000"},
    {"type": "fill", "at": at(1), "id": "f1", "account": "alice", "symbol": "BTCUSDT",
     "side": "buy", "qty": "20000", "price": "30000"},
    {"type": "fill", "at": at(1), "id": "f1", "account": "bob", "symbol": "BTCUSDT",
     "side": "sell", "qty": "20000", "price": "30000", "liquidity": "maker", "fee": "-0.5"},
]
MARKET_MOVES: list[dict[str, Any]] = [
    {"type": "funding_rate", "at": at(7), "symbol": "BTCUSDT", "rate": "0.0001"},
    {"type": "mark_price", "at": at(7, 30), "symbol": "BTCUSDT", "price": "31000"},
]
LATER: list[dict[str, Any]] = [
    {"type": "settle_funding", "at": at(8), "id": f"settle_funding:{at(8)}"},
    {"type": "transfer", "at": at(9), "id": "t1", "from": "bob", "to": "alice", "asset": "USDT",
     "amount": "100"},
    {"type": "withdraw", "at": at(10), "id": "w1", "account": "alice", "asset": "USDT",
     "amount": "500"},
    {"type": "fill", "at": at(11), "id": "f2", "account": "alice", "symbol": "BTCUSDT",
     "side": "sell", "qty": "5000", "price": "31000"},
    {"type": "check_margin", "at": at(12), "id": f"check_margin:{at(12)}"},
]
FEED = [*REFERENCE, *ACCOUNTS, *MARKET_MOVES, *LATER]


def ledger(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGER, "--db", url, *args], capture_output=True, text=True,
                          timeout=120, check=False)


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return str(path)


def run(url: str, path: str) -> subprocess.CompletedProcess[str]:
    return ledger(url, "run", path)


def error_lines(stderr: str) -> list[dict[str, Any]]:
    """The rejection lines (the last line, the counts, has no `error`)."""
    lines = [json.loads(text) for text in stderr.splitlines() if text.strip()]
    return [line for line in lines if "error" in line]


def counts(stderr: str) -> dict[str, int]:
    """The last stderr line of a finished run: the applied, acknowledged, rejected counts."""
    last: dict[str, int] = json.loads(stderr.splitlines()[-1])
    return last


def cli_state(url: str, account: str) -> dict[str, Any]:
    """The account's state as `ledger state ACCOUNT --json` prints it."""
    done = ledger(url, "state", account, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def stored(url: str, *names: str) -> dict[str, Any]:
    """Each account's state and events, read in-process by a fresh application (what another
    process would read; cheaper than one subprocess per query)."""
    reader = Ledger(url)
    try:
        return {name: (queries.state(reader, name), queries.events(reader, name))
                for name in names}
    finally:
        reader.close()


def test_a_feed_whose_commands_are_all_applied_exits_0(store_url: str, tmp_path: Path) -> None:
    """The balances of the module docstring: alice 10,056.05, bob 9,906.7."""
    done = run(store_url, write(tmp_path / "feed.jsonl", [json.dumps(c) for c in FEED]))
    assert done.returncode == 0, done.stderr
    assert error_lines(done.stderr) == []
    assert counts(done.stderr) == {"applied": len(FEED), "acknowledged": 0, "rejected": 0}
    assert cli_state(store_url, "alice")["balances"] == {"USDT": "10056.05"}
    assert cli_state(store_url, "bob")["balances"] == {"USDT": "9906.7"}


def test_a_feed_with_rejected_lines_exits_1_and_names_each_physical_line(
    store_url: str, tmp_path: Path
) -> None:
    """Blank and whitespace-only lines count: the rejections are on lines 6, 9, 10, 12 and 13.
    alice: 1,000 − 100 (w2) = 900; the rejected lines change nothing."""
    lines = [
        json.dumps(REFERENCE[0]),  # 1
        "",  # 2
        json.dumps(ACCOUNTS[0]),  # 3
        json.dumps(ACCOUNTS[2] | {"amount": "1000"}),  # 4
        "   \t",  # 5
        json.dumps(ACCOUNTS[2] | {"id": "d2", "amount": "-5"}),  # 6: invalid_input
        "",  # 7
        "",  # 8
        json.dumps({"type": "withdraw", "at": at(1), "id": "w1", "account": "alice",
                    "asset": "USDT", "amount": "5000"}),  # 9: insufficient_balance
        "deposit alice 5 USDT",  # 10: not JSON
        json.dumps({"type": "withdraw", "at": at(1), "id": "w2", "account": "alice",
                    "asset": "USDT", "amount": "100"}),  # 11: applied
        '{"type":"deposit","at":"2025-01-01T02:00:00Z","id":"d3","account":"alice"',  # 12
        json.dumps(ACCOUNTS[2] | {"id": "d4", "asset": "DOGE", "at": at(2)}),  # 13
    ]
    done = run(store_url, write(tmp_path / "feed.jsonl", lines))
    assert done.returncode == 1, done.stderr
    rejected = error_lines(done.stderr)
    assert [set(r) for r in rejected] == [{"line", "type", "id", "error", "message"}] * 5
    assert [(r["line"], r["type"], r["id"], r["error"]) for r in rejected] == [
        (6, "deposit", "d2", "invalid_input"),
        (9, "withdraw", "w1", "insufficient_balance"),
        (10, None, None, "invalid_input"),
        (12, None, None, "invalid_input"),
        (13, "deposit", "d4", "unknown_asset"),
    ]
    assert all(isinstance(r["message"], str) and r["message"] for r in rejected)
    state, history = stored(store_url, "alice")["alice"]
    assert state["balances"] == {"USDT": "900"}
    assert [e["type"] for e in history] == ["AccountOpened", "Deposited", "Withdrawn"]


def test_a_feed_that_ends_without_a_newline_still_numbers_its_last_line(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(REFERENCE[0]) + "\n\n" + '{"type":"asset"', encoding="utf-8")
    done = run(store_url, str(path))
    assert done.returncode == 1
    assert [(r["line"], r["error"]) for r in error_lines(done.stderr)] == [(3, "invalid_input")]


def test_a_missing_feed_file_exits_2_and_changes_nothing(store_url: str, tmp_path: Path) -> None:
    first = run(store_url, write(tmp_path / "feed.jsonl", [json.dumps(c) for c in FEED]))
    assert first.returncode == 0, first.stderr
    before = stored(store_url, "alice", "bob")
    done = run(store_url, str(tmp_path / "no-such-feed.jsonl"))
    assert done.returncode == 2
    assert stored(store_url, "alice", "bob") == before


def test_a_directory_as_feed_exits_2(store_url: str, tmp_path: Path) -> None:
    assert run(store_url, str(tmp_path)).returncode == 2


@pytest.mark.postgres
def test_an_unreachable_postgresql_store_exits_2(tmp_path: Path) -> None:
    """Port 1: nothing listens there."""
    path = write(tmp_path / "feed.jsonl", [json.dumps(c) for c in FEED])
    done = run("postgresql://postgres@127.0.0.1:1/test", path)
    assert done.returncode == 2, done.stderr


def test_an_unreachable_sqlite_store_exits_2(tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist cannot be opened."""
    path = write(tmp_path / "feed.jsonl", [json.dumps(c) for c in FEED])
    done = run(f"sqlite:///{tmp_path}/missing/dir/ledger.db", path)
    assert done.returncode == 2, done.stderr


def test_running_the_account_commands_again_changes_nothing_and_exits_0(
    store_url: str, tmp_path: Path
) -> None:
    """Every account command has an `id` (or is an open_account in the same mode, or a periodic
    command idempotent by its `at`): the second run acknowledges them all."""
    reference = write(tmp_path / "reference.jsonl",
                      [json.dumps(c) for c in [*REFERENCE, *MARKET_MOVES]])
    accounts = write(tmp_path / "accounts.jsonl", [json.dumps(c) for c in [*ACCOUNTS, *LATER]])
    assert run(store_url, reference).returncode == 0
    first = run(store_url, accounts)
    assert first.returncode == 0, first.stderr
    before = stored(store_url, "alice", "bob")
    again = run(store_url, accounts)
    assert again.returncode == 0, again.stderr
    assert error_lines(again.stderr) == []
    assert counts(again.stderr) == {"applied": 0, "acknowledged": len(ACCOUNTS) + len(LATER),
                                    "rejected": 0}
    after = stored(store_url, "alice", "bob")
    assert after == before
    assert before["alice"][0]["balances"] == {"USDT": "10056.05"}


def test_running_a_whole_feed_again_changes_no_account(store_url: str, tmp_path: Path) -> None:
    """Reference data has no `id`: re-sent after its symbol has moved on (the funding period
    recorded at 08:00) it is out_of_order, which is the only kind of rejection; every command
    with an `id` is acknowledged and no account changes."""
    lines = [json.dumps(c) for c in FEED]
    path = write(tmp_path / "feed.jsonl", lines)
    assert run(store_url, path).returncode == 0
    before = stored(store_url, "alice", "bob")
    again = run(store_url, path)
    assert again.returncode in (0, 1), again.stderr
    for rejection in error_lines(again.stderr):
        sent = FEED[rejection["line"] - 1]
        assert "id" not in sent, rejection
        assert rejection["error"] == "out_of_order", rejection
    after = stored(store_url, "alice", "bob")
    assert after == before


BAD_LINES = {
    "time past the calendar": '{"type":"deposit","at":"9999-12-31T23:59:59-01:00","id":"x",'
                              '"account":"bob","asset":"USDT","amount":"1"}',
    "lone surrogate in an id": '{"type":"deposit","at":"2025-01-01T00:00:00Z","id":"x\\ud800",'
                               '"account":"bob","asset":"USDT","amount":"1"}',
    "NUL in an account name": '{"type":"open_account","at":"2025-01-01T00:00:00Z",'
                              '"account":"a\\u0000b","mode":"single_asset"}',
}


@pytest.mark.parametrize("bad", sorted(BAD_LINES))
def test_a_bad_line_is_rejected_and_every_other_line_applied(
    store_url: str, tmp_path: Path, bad: str
) -> None:
    """Lines 1-3 and 5 are good: bob 0 + 5 = 5 after the run; line 4 is rejected."""
    check_one_bad_line(store_url, tmp_path, BAD_LINES[bad])


def test_a_repay_of_a_coin_never_held_is_rejected_and_the_run_goes_on(
    store_url: str, tmp_path: Path
) -> None:
    """bob never held USDC: repaying 1 is more than his debt 0 (was a KeyError, exit 3)."""
    check_one_bad_line(store_url, tmp_path, (
        '{"type":"repay","at":"2025-01-01T00:00:00Z","id":"r1","account":"bob",'
        '"asset":"USDC","amount":"1","with_asset":"USDT"}'))


def check_one_bad_line(store_url: str, tmp_path: Path, bad: str) -> None:
    lines = [
        json.dumps(REFERENCE[0]),
        json.dumps({"type": "asset", "at": T0, "asset": "USDC", "precision": 6}),
        json.dumps(ACCOUNTS[1]),
        bad,
        json.dumps(ACCOUNTS[3] | {"amount": "5"}),
    ]
    done = run(store_url, write(tmp_path / "feed.jsonl", lines))
    assert done.returncode == 1, done.stderr
    assert [(r["line"], r["error"]) for r in error_lines(done.stderr)] == [(4, "invalid_input")]
    assert stored(store_url, "bob")["bob"][0]["balances"] == {"USDT": "5"}


def test_a_line_that_is_not_utf8_is_rejected_and_every_other_line_applied(
    store_url: str, tmp_path: Path
) -> None:
    """Line 3 holds the byte 0xff; bob 0 + 5 (line 4) = 5."""
    good = [json.dumps(REFERENCE[0]), json.dumps(ACCOUNTS[1])]
    bad = json.dumps(ACCOUNTS[3] | {"id": "x", "amount": "1"}).encode().replace(
        b'"x"', b'"\xff"')
    last = json.dumps(ACCOUNTS[3] | {"amount": "5"})
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"\n".join([*(g.encode() for g in good), bad, last.encode()]) + b"\n")
    done = run(store_url, str(path))
    assert done.returncode == 1, done.stderr
    assert [(r["line"], r["error"]) for r in error_lines(done.stderr)] == [(3, "invalid_input")]
    assert stored(store_url, "bob")["bob"][0]["balances"] == {"USDT": "5"}
