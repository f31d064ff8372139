"""One command, one unit (issue 10): a command that fails part-way leaves the commands before it
applied exactly once and nothing of itself, and a feed split across fresh ledgers (what separate
processes are) ends in the same book as one run.

Faults are injected by wrapping a real handler so that it does its work and then fails, the
way a bug or a lost connection would strike in the middle of a sweep.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.feed import run_feed
from ledger.application.service import Ledger
from ledger.errors import NoPriceError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract" / "scenarios"
LOCAL = Path(__file__).resolve().parents[1] / "scenarios"


def _feed(name: str) -> list[str]:
    for root in (LOCAL, SHARED):
        path = root / name / "feed.jsonl"
        if path.exists():
            return [line for line in path.read_text().splitlines() if line.strip()]
    pytest.skip(f"scenario {name} not found")


# A portfolio account trading an ETH-margined (inverse) perpetual: in a fresh process the fill
# must see ETH's risk unit whatever was loaded before (issue 10, "deterministic").
INVERSE_PM = [
    '{"type":"asset","at":"2025-01-01T00:00:00Z","asset":"USDT","precision":8}',
    '{"type":"asset","at":"2025-01-01T00:00:00Z","asset":"ETH","precision":8}',
    '{"type":"instrument","at":"2025-01-01T00:00:00Z","symbol":"ETHUSD","kind":"inverse_perpetual",'
    '"base":"ETH","settle":"ETH","contract_size":"10","mm_basis":"mark","taker_fee_rate":"0.0005",'
    '"maker_fee_rate":"0.0002","risk_tiers":[{"up_to":"1000000000","mmr":"0.004",'
    '"max_leverage":"100"}]}',
    '{"type":"risk_unit","at":"2025-01-01T00:00:00Z","asset":"ETH"}',
    '{"type":"index_price","at":"2025-01-01T00:00:00Z","asset":"ETH","price":"3000"}',
    '{"type":"mark_price","at":"2025-01-01T00:00:00Z","symbol":"ETHUSD","price":"3000"}',
    '{"type":"open_account","at":"2025-01-01T00:00:00Z","account":"carol","mode":"multi_asset"}',
    '{"type":"deposit","at":"2025-01-01T00:00:00Z","id":"d1","account":"carol","asset":"USDT",'
    '"amount":"50000"}',
    '{"type":"change_mode","at":"2025-01-01T00:00:00Z","account":"carol","mode":"portfolio"}',
    '{"type":"deposit","at":"2025-01-01T00:10:00Z","id":"d2","account":"carol","asset":"ETH",'
    '"amount":"5"}',
    '{"type":"fill","at":"2025-01-01T00:20:00Z","id":"f1","account":"carol","symbol":"ETHUSD",'
    '"side":"sell","qty":"100","price":"3000","liquidity":"taker","margin_type":"cross"}',
    '{"type":"mark_price","at":"2025-01-01T01:00:00Z","symbol":"ETHUSD","price":"3100"}',
    '{"type":"check_margin","at":"2025-01-01T01:00:00Z"}',
]


def _lines(lines: list[str], first: int = 1) -> list[tuple[int, str]]:
    return list(enumerate(lines, start=first))


def book(url: str) -> dict[str, Any]:
    """Everything a run leaves that must not depend on how it was run: every account's events
    (with hashes) and state, and the index of every stream's events (reference data too)."""
    ledger = Ledger(url)
    names = ledger.account_names()
    rows = ledger.index._rows(  # noqa: SLF001 - the witness of every stream's events
        "SELECT stream_id, version, at_micros, kind FROM ledger_event_index"
        " ORDER BY stream_id, version")
    return {
        "events": {name: queries.events(ledger, name) for name in names},
        "states": queries.all_states(ledger),
        "index": [tuple(row) for row in rows],
    }


@pytest.mark.parametrize("scenario", ["pm-naked-perp-mr1-mr6", "seed002-isolated-auto-topup",
                                      "interest-per-second"])
def test_a_feed_split_across_fresh_ledgers_ends_in_the_same_book(
        store_url: str, tmp_path: Path, scenario: str) -> None:
    lines = _feed(scenario) + INVERSE_PM
    one = f"sqlite:///{tmp_path / 'one.db'}"
    whole = run_feed(Ledger(one), _lines(lines))
    assert whole.internal_error is None and whole.store_error is None
    expected = book(one)
    cuts = sorted(random.Random(scenario).sample(range(1, len(lines)), 3))
    start = 0
    for cut in [*cuts, len(lines)]:
        report = run_feed(Ledger(store_url), _lines(lines[start:cut], start + 1))
        assert report.internal_error is None, report.internal_error
        start = cut
    assert book(store_url) == expected


def test_the_inverse_portfolio_fill_is_accepted_in_a_later_run(store_url: str) -> None:
    setup = run_feed(Ledger(store_url), _lines(INVERSE_PM[:10]))
    assert not setup.rejected
    later = run_feed(Ledger(store_url), _lines(INVERSE_PM[10:], 11))
    assert [r.as_dict() for r in later.rejected] == []
    position = queries.state(Ledger(store_url), "carol")["positions"][0]
    assert (position["symbol"], position["side"], position["qty"]) == ("ETHUSD", "short", "100")


def _failing_after(ledger: Ledger, kind: str, error: BaseException, at: str) -> None:
    """Make the handler of `kind` do its work for the command at `at`, then fail."""
    real = ledger.handlers[kind]

    def handler(command: Any) -> str:
        outcome = real(command)
        if command.at.isoformat().startswith(at):
            raise error
        return outcome

    ledger.handlers[kind] = handler


@pytest.mark.parametrize("error", [RuntimeError("a bug"), NoPriceError("found late")],
                         ids=["internal", "rejected-late"])
def test_a_sweep_failing_part_way_leaves_nothing_of_itself(
        store_url: str, tmp_path: Path, error: BaseException) -> None:
    lines = _feed("seed002-isolated-auto-topup")
    failing = next(n for n, line in _lines(lines)
                   if '"check_margin","at":"2025-01-01T02:00:00Z"' in line)
    prefix = f"sqlite:///{tmp_path / 'prefix.db'}"
    run_feed(Ledger(prefix), _lines(lines[:failing - 1]))
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    run_feed(Ledger(whole), _lines(lines))

    ledger = Ledger(store_url)
    _failing_after(ledger, "check_margin", error, "2025-01-01T02:00")
    report = run_feed(ledger, _lines(lines))
    if isinstance(error, RuntimeError):
        assert report.internal_error_line == failing
        assert report.last_durable_line == failing - 1
        # The sweep at 02:00 topped alice up before failing: none of it is in the store.
        assert book(store_url) == book(prefix)
        rerun = run_feed(Ledger(store_url), _lines(lines))
        assert rerun.internal_error is None
        assert rerun.acknowledged == failing - 1
        assert book(store_url) == book(whole)
    else:
        # Refused late: nothing of it; everything after it applied, as if it were not there.
        assert [r.line for r in report.rejected] == [failing]
        assert report.internal_error is None
        without = f"sqlite:///{tmp_path / 'without.db'}"
        run_feed(Ledger(without), _lines(lines[:failing - 1]) + _lines(lines[failing:],
                                                                       failing + 1))
        assert book(store_url) == book(without)


def test_each_command_outside_a_batch_is_its_own_unit(store_url: str) -> None:
    ledger = Ledger(store_url)
    run_feed(ledger, _lines(INVERSE_PM[:9]))
    _failing_after(ledger, "deposit", RuntimeError("after the event"), "2025-01-01T00:10")
    report = run_feed(ledger, _lines(INVERSE_PM[9:10], 10))
    assert isinstance(report.internal_error, RuntimeError)
    assert report.internal_error_line == 10 and report.last_durable_line is None
    assert queries.state(Ledger(store_url), "carol")["balances"] == {"USDT": "50000"}


def test_a_late_price_at_a_sweeps_second_gives_the_same_signals_however_split(
        store_url: str, tmp_path: Path) -> None:
    """bob (no auto top-up) is past liquidation at the 01:00 sweep; a mark for 01:00 recorded
    after it lifts him back. Whether the 02:00 sweep signals again must depend only on the
    history, not on whether this process remembers what the 01:00 sweep found."""
    lines = _feed("seed002-isolated-auto-topup")
    sweep = next(i for i, line in enumerate(lines)
                 if '"check_margin","at":"2025-01-01T01:00:00Z"' in line)
    lines.insert(sweep + 1, '{"type":"mark_price","at":"2025-01-01T01:00:00Z",'
                            '"symbol":"BTCUSDT","price":"18000"}')
    one = f"sqlite:///{tmp_path / 'one.db'}"
    run_feed(Ledger(one), _lines(lines))
    run_feed(Ledger(store_url), _lines(lines[:sweep + 2]))
    run_feed(Ledger(store_url), _lines(lines[sweep + 2:], sweep + 3))
    assert book(store_url) == book(one)
    triggers = [e["at"] for e in queries.events(Ledger(one), "bob")
                if e["type"] == "LiquidationTriggered"]
    # As of 01:00 (the late 18,000 included) bob was not past: 02:00 at 16,200 is a crossing.
    assert triggers == ["2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z"]
