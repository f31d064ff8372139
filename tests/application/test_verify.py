"""`verify`: every account's hash chain is recomputed, and the first break of each is named.

A stored event is edited behind the ledger's back (its amount in the stored JSON); the chain
of that account breaks at exactly that version, and the other accounts stay intact.
"""

from __future__ import annotations

from pathlib import Path

from store_tamper import tamper

from ledger.application import queries
from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger

FEED = Path(__file__).parent.parent / "scenarios" / "funding-8h" / "feed.jsonl"


def test_verify_names_the_first_break_of_an_edited_chain(store_url: str) -> None:
    report = run_feed(Ledger(store_url), read_lines(str(FEED)))
    assert not report.rejected
    accounts, events, breaks = queries.verify(Ledger(store_url))
    assert (accounts, breaks) == (4, [])
    deposited = next(e for e in queries.events(Ledger(store_url), "bob")
                     if e["type"] == "Deposited")
    assert deposited["amount"] == "10000"
    # bob's deposit of 10,000 becomes 90,000 in the store (postings edited alike).
    tamper(store_url, "bob", deposited["version"], b'"10000"', b'"90000"')
    accounts, events, breaks = queries.verify(Ledger(store_url))
    assert [(b.account, b.version) for b in breaks] == [("bob", deposited["version"])]
    assert "hash" in breaks[0].reason
