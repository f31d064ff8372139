"""A funding settlement in parts (issue 11 scope 4, docs/sharding.md): `ledger run --workers N`
has every worker settle its own holders and worker 0 write the period's one marker. The events
never depend on N, and a run stopped between the parts' commits is finished exactly once by any
later run (one process or workers): no account is paid twice, none is left out, the marker says
"paid" as one uninterrupted run says it.

The feed: eight accounts over the shards, long and short in a USDT perpetual (8-hour funding)
and a USDC perpetual with session settlement (4-hour funding), funding at several periods with
the mark moving, a zero-rate period (nothing paid), a repeated settlement (acknowledged), a
settlement at no funding time (refused: applied whole by worker 0, as one process refuses it),
a fill and a settlement in one run of lines, and margin sweeps."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger
from ledger.application.shards import shard_of
from ledger.application.workers import ShardWorker
from ledger.times import format_at

from .support import cli, databases, dump

START = datetime.fromisoformat("2025-03-03T00:00:00+00:00")
NAMES = [f"fund{i:02d}" for i in range(8)]
THIN = ["thin0", "thin1", "thin3"]  # one in each of 3 shards: called and liquidated at 20:00
CRASH = 5  # the 20:00 mark: 52,700


def _line(at: datetime, **command: Any) -> str:
    return json.dumps({**command, "at": format_at(at)})


def _header() -> list[str]:
    at = START
    return [
        _line(at, type="asset", asset="USDT", precision=8),
        _line(at, type="asset", asset="USDC", precision=6),
        _line(at, type="asset", asset="BTC", precision=8),
        _line(at, type="index_price", asset="BTC", price="60000"),
        _line(at, type="instrument", symbol="BTCUSDT", kind="linear_perpetual", base="BTC",
              settle="USDT", contract_size="0.001",
              risk_tiers=[{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]),
        _line(at, type="instrument", symbol="BTCUSDC", kind="linear_perpetual", base="BTC",
              settle="USDC", contract_size="0.001", session_settlement=True,
              funding_interval_hours=4,
              risk_tiers=[{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]),
        _line(at, type="mark_price", symbol="BTCUSDT", price="60000"),
        _line(at, type="mark_price", symbol="BTCUSDC", price="60000"),
    ]


def _positions() -> list[str]:
    at = START + timedelta(minutes=10)
    lines = []
    for number, name in enumerate(NAMES):
        lines.append(_line(at, type="open_account", account=name, mode="multi_asset"))
        for asset in ("USDT", "USDC"):
            lines.append(_line(at, type="deposit", id=f"d{asset}", account=name, asset=asset,
                               amount="100000"))
        side = "buy" if number % 2 == 0 else "sell"
        lines.append(_line(at, type="fill", id="f1", account=name, symbol="BTCUSDT", side=side,
                           qty=str(10 * (number + 1)), price="60000"))
        if number % 3 != 2:  # most hold the USDC perpetual too
            lines.append(_line(at, type="fill", id="f2", account=name, symbol="BTCUSDC",
                               side=side, qty=str(7 * (number + 1)), price="60000"))
    for name in THIN:
        # 20 contracts = 0.02 BTC long, 150 USDT: at a mark of 52,700 the loss is
        # 0.02 × 7,300 = 146, equity ≈ 4 (less funding paid) < maintenance 0.005 × 1,054.
        lines += [_line(at, type="open_account", account=name, mode="single_asset"),
                  _line(at, type="deposit", id="d", account=name, asset="USDT", amount="150"),
                  _line(at, type="fill", id="f", account=name, symbol="BTCUSDT", side="buy",
                        qty="20", price="60000")]
    return lines


def _periods(first: int, last: int) -> list[str]:
    """Funding times `first`..`last` (4-hour steps from START + 4h), each after its rates and
    marks; the USDT perpetual is due every second one."""
    lines = []
    for step in range(first, last + 1):
        at = START + timedelta(hours=4 * step)
        mark = "52700" if step == CRASH else str(60000 + 150 * step * (-1) ** step)
        rate = "0" if step == 4 else f"0.000{step % 5 + 1}"  # step 4: nothing paid
        lines += [
            _line(at - timedelta(minutes=30), type="funding_rate", symbol="BTCUSDT", rate=rate),
            _line(at - timedelta(minutes=30), type="funding_rate", symbol="BTCUSDC", rate=rate),
            _line(at - timedelta(minutes=1), type="mark_price", symbol="BTCUSDT", price=mark),
            _line(at - timedelta(minutes=1), type="mark_price", symbol="BTCUSDC", price=mark),
            _line(at - timedelta(minutes=1), type="index_price", asset="BTC", price=mark),
            _line(at, type="settle_funding"),
            _line(at, type="check_margin"),
        ]
        if step == 2:  # a repeat, a refusal, and a fill in the same run as a settlement
            lines += [
                _line(at, type="settle_funding"),
                _line(at + timedelta(minutes=7), type="settle_funding"),
                _line(at + timedelta(minutes=9), type="fill", id="f3", account=NAMES[1],
                      symbol="BTCUSDT", side="buy", qty="5", price=mark),
            ]
    return lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _one_process(url: str, path: Path) -> list[int]:
    ledger = Ledger(url)
    try:
        report = run_feed(ledger, ((n, t.removesuffix("\n")) for n, t in read_lines(str(path))),
                          batch_size=5)
    finally:
        ledger.close()
    assert report.internal_error is None and report.store_error is None
    return [r.line for r in report.rejected]


def _sweep_events(state: dict[str, Any]) -> Counter[tuple[str, str]]:
    """(account, type) of every margin call and liquidation trigger in a dump."""
    return Counter((name, e["type"]) for name, history in state["events"].items()
                   for e in history if e["type"] in ("MarginCallIssued", "LiquidationTriggered"))


def _funding_events(state: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    """(account, symbol, period) of every FundingSettled event in a dump."""
    return Counter((name, e["symbol"], e["period"]) for name, history in state["events"].items()
                   for e in history if e["type"] == "FundingSettled")


def test_workers_settle_funding_in_parts_with_the_events_of_one_process(
        postgres_url: str, tmp_path: Path) -> None:
    assert len({shard_of(name, 3) for name in NAMES}) == 3  # every shard has holders
    assert sorted(shard_of(name, 3) for name in THIN) == [0, 1, 2]
    path = _write(tmp_path / "feed.jsonl", _header() + _positions() + _periods(1, 6))
    with databases(postgres_url, 3) as (single, three, two):
        rejected = _one_process(single, path)
        expected = dump(single)
        funding = _funding_events(expected)
        # Periods 1..6 (4-hourly): BTCUSDC at each, BTCUSDT at the 8-hourly ones (2, 4, 6);
        # period 4's rate is zero, so nothing is paid then: 5 periods × 6 USDC holders +
        # 2 periods × 11 USDT holders = 52 payments, each once.
        assert sum(funding.values()) == 52
        assert set(funding.values()) == {1}
        # The 20:00 sweep calls and liquidates each thin account, once.
        assert _sweep_events(expected) == Counter(
            {(name, kind): 1 for name in THIN
             for kind in ("MarginCallIssued", "LiquidationTriggered")})
        assert len(rejected) == 1  # the settlement at no funding time

        for url, workers in ((three, "3"), (two, "2")):
            run = cli(url, "run", "--workers", workers, "--batch", "4", str(path))
            assert run.returncode == 1, run.stderr
            lines = [json.loads(text) for text in run.stderr.splitlines()]
            assert [d["line"] for d in lines if "line" in d and "error" in d] == rejected, lines
            assert dump(url) == expected


CASES = {
    # Shard 1's part of the 04:00 funding (BTCUSDC only): its USDC holders are paid.
    "funding": (3, "settle_funding", 1),
    # Shard 0's part of the 20:00 sweep: thin0 is called and liquidated.
    "sweep": (CRASH + 1, "check_margin", 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_stopped_between_the_parts_is_finished_exactly_once(
        postgres_url: str, tmp_path: Path, case: str) -> None:
    """One shard of 3 commits its part of a periodic command, then the run stops (no marker,
    the other shards not done). A later run — one process, or three workers — does the other
    shards, skips the accounts done, and records the command once: the store then holds
    exactly what one uninterrupted process writes (funding: the marker says `paid`)."""
    steps, kind, shard = CASES[case]
    rest = _periods(1, steps)
    at = START + timedelta(hours=4 * (1 if kind == "settle_funding" else CRASH))
    line = _line(at, type=kind)
    cut = rest.index(line)
    head = _header() + _positions()
    whole = _write(tmp_path / "whole.jsonl", head + rest)
    prefix = _write(tmp_path / "prefix.jsonl", head + rest[:cut])
    with databases(postgres_url, 3) as (single, resumed_one, resumed_workers):
        _one_process(single, whole)
        expected = dump(single)
        for url in (resumed_one, resumed_workers):
            _one_process(url, prefix)
            worker = ShardWorker(url)
            try:
                paid = worker.settle_part(0, line, shard, 3)
                worker.ledger.uow.flush()  # this shard's part committed; then the run stops
            finally:
                worker.ledger.close()
            partial = dump(url)
            if kind == "settle_funding":
                assert paid == {"BTCUSDC": True}
                assert {name for name, _, _ in _funding_events(partial)} == {
                    name for name in NAMES
                    if shard_of(name, 3) == shard and NAMES.index(name) % 3 != 2}
            else:
                assert paid == {}
                assert set(_sweep_events(partial)) == {
                    (name, kind) for name in THIN if shard_of(name, 3) == shard
                    for kind in ("MarginCallIssued", "LiquidationTriggered")}

        _one_process(resumed_one, whole)
        assert dump(resumed_one) == expected
        run = cli(resumed_workers, "run", "--workers", "3", "--batch", "4", str(whole))
        assert run.returncode == (1 if steps >= 2 else 0), run.stderr  # no funding time
        assert dump(resumed_workers) == expected
