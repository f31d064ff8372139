"""Review of integ: a margin sweep in parts must find the previous sweep as one process does.

A worker other than 0 sweeps its part but never records the sweep's time (the marker is worker
0's, and it writes no event, so the others' caches are not reset by `catch_up`). The next sweep
then compares with an older sweep (or none): an account still at call is called again."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger
from ledger.application.shards import shard_of
from ledger.times import format_at

from .support import cli, dump

START = datetime.fromisoformat("2025-03-03T00:00:00+00:00")


def _line(at: datetime, **command: Any) -> str:
    return json.dumps({**command, "at": format_at(at)})


def _feed() -> list[str]:
    at = START
    lines = [
        _line(at, type="asset", asset="USDT", precision=8),
        _line(at, type="asset", asset="BTC", precision=8),
        _line(at, type="index_price", asset="BTC", price="60000"),
        _line(at, type="instrument", symbol="BTCUSDT", kind="linear_perpetual", base="BTC",
              settle="USDT", contract_size="0.001",
              risk_tiers=[{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]),
        _line(at, type="mark_price", symbol="BTCUSDT", price="60000"),
        _line(at, type="open_account", account="thin0", mode="single_asset"),
        _line(at, type="deposit", id="d", account="thin0", asset="USDT", amount="150"),
        _line(at, type="fill", id="f", account="thin0", symbol="BTCUSDT", side="buy",
              qty="20", price="60000"),
    ]
    t0 = START + timedelta(hours=1)
    lines += [_line(t0 - timedelta(minutes=1), type="mark_price", symbol="BTCUSDT",
                    price="52700"),
              _line(t0, type="check_margin"),
              _line(t0 + timedelta(hours=1), type="check_margin")]
    return lines


def _calls(state: dict[str, Any]) -> Counter[tuple[str, str]]:
    return Counter((name, e["type"]) for name, history in state["events"].items()
                   for e in history if e["type"] in ("MarginCallIssued", "LiquidationTriggered"))


def _one_process_and_two_workers(tmp_path: Path, lines: list[str]
                                 ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Run `lines` through one process and through `run --workers 2` (which must exit 0);
    return the one process's rejections and both stores' dumps."""
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    single, workers = (f"sqlite:///{tmp_path / name}" for name in ("one.db", "two.db"))
    ledger = Ledger(single)
    try:
        report = run_feed(ledger, ((n, t.removesuffix("\n")) for n, t in read_lines(str(path))))
    finally:
        ledger.close()
    run = cli(workers, "run", "--workers", "2", str(path))
    assert run.returncode == 0, run.stderr
    return list(report.rejected), dump(single), dump(workers)


def test_second_sweep_in_parts_does_not_call_again(tmp_path: Path) -> None:
    assert shard_of("thin0", 2) == 1  # owned by worker 1, not worker 0
    rejected, expected, got = _one_process_and_two_workers(tmp_path, _feed())
    assert not rejected
    assert _calls(expected) == Counter({("thin0", "MarginCallIssued"): 1,
                                        ("thin0", "LiquidationTriggered"): 1})
    assert _calls(got) == _calls(expected)
    assert got == expected


def test_a_repeated_sweep_in_parts_is_acknowledged_without_events(tmp_path: Path) -> None:
    """A check_margin repeated at the same `at` is acknowledged by one process (its key is
    taken): the parts must not sweep again when a price recorded since puts an account at
    call."""
    t0 = START + timedelta(hours=1)
    lines = _feed()[:8] + [
        _line(t0, type="check_margin"),  # healthy at 60,000: nothing
        _line(t0, type="mark_price", symbol="BTCUSDT", price="52700"),
        _line(t0, type="check_margin"),  # a repeat: acknowledged, no event
    ]
    rejected, expected, got = _one_process_and_two_workers(tmp_path, lines)
    assert not rejected
    assert _calls(expected) == Counter()
    assert _calls(got) == _calls(expected)
    assert got == expected


def test_a_repeated_funding_settlement_in_parts_pays_nothing(tmp_path: Path) -> None:
    """A settle_funding repeated at the same `at` is acknowledged by one process. An
    instrument listed since (due then too) must not be paid by the parts of the repeat."""
    t = START + timedelta(hours=8)
    lines = _feed()[:8] + [
        _line(t, type="settle_funding"),
        _line(t, type="instrument", symbol="ETHUSDT", kind="linear_perpetual", base="BTC",
              settle="USDT", contract_size="0.001",
              risk_tiers=[{"up_to": None, "mmr": "0.005", "max_leverage": "100"}]),
        _line(t, type="mark_price", symbol="ETHUSDT", price="60000"),
        _line(t, type="funding_rate", symbol="ETHUSDT", rate="0.001"),
        _line(t, type="fill", id="g", account="thin0", symbol="ETHUSDT", side="buy",
              qty="1", price="60000"),
        _line(t, type="settle_funding"),  # a repeat: acknowledged, nothing paid
    ]
    rejected, expected, got = _one_process_and_two_workers(tmp_path, lines)
    assert not rejected, rejected
    funding = [e for e in got["events"]["thin0"] if e["type"] == "FundingSettled"]
    assert funding == [e for e in expected["events"]["thin0"] if e["type"] == "FundingSettled"]
    assert got == expected
