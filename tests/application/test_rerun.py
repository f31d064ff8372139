"""A feed applied twice changes nothing the second time (crash recovery: re-run the feed).

Money commands are recognised by their ids, periodic ones by their `at`, and everything else
(prices, settings, accounts) by type, `at` and content.
"""

from __future__ import annotations

from pathlib import Path

from ledger.application import queries
from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def test_a_whole_feed_applied_twice_is_acknowledged_line_by_line(store_url: str) -> None:
    feed = str(SCENARIOS / "usdc-session-settlement" / "feed.jsonl")
    first = run_feed(Ledger(store_url), read_lines(feed))
    before = queries.events(Ledger(store_url), "alice")
    second = run_feed(Ledger(store_url), read_lines(feed))
    after = queries.events(Ledger(store_url), "alice")
    assert first.applied == 13 and not first.rejected
    assert second.applied == 0 and second.acknowledged == 13 and not second.rejected
    assert after == before
    assert queries.state(Ledger(store_url), "alice")["balances"]["USDC"] == "10170"
