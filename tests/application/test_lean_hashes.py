"""Issue 11: the lean write path keeps the chain hashes byte-identical and old stores readable.

`tests/data/chain_hashes_v1.json` was recorded by `tests/data/make_hash_fixture.py` from the
code before the lean write path (commit "Fixture: today's chain hashes…"): for seven contract
scenario feeds and a 300-fill bench feed, every stored event's stream, version, topic and hash,
and (scenario feeds) the stored row as the library's transcoder wrote it.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.application.audit import audit
from ledger.application.feed import run_feed
from ledger.application.service import Ledger
from ledger.domain.chain import BOOKKEEPING, chain_hash

DATA = Path(__file__).parents[1] / "data"
sys.path.insert(0, str(DATA))
from make_hash_fixture import feeds  # noqa: E402

FROZEN: dict[str, list[dict[str, Any]]] = json.loads(
    (DATA / "chain_hashes_v1.json").read_text())


def _hashes(url: str) -> list[tuple[str, int, str, str | None]]:
    ledger = Ledger(url)
    out = []
    for n in ledger.recorder.select_notifications(1, 10**9):
        event = ledger.mapper.to_domain_event(n)
        out.append((n.originator_id.hex, n.originator_version, n.topic,
                    getattr(event, "hash", None)))
    return out


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_same_hashes_as_before_the_lean_path(name: str, store_url: str) -> None:
    lines = feeds()[name]
    run_feed(Ledger(store_url), iter(lines))
    frozen = [(r["stream"], r["version"], r["topic"], r["hash"]) for r in FROZEN[name]]
    assert _hashes(store_url) == frozen
    assert not audit(Ledger(store_url)).breaks


@pytest.mark.parametrize("name", sorted(n for n in FROZEN if "state" in FROZEN[n][0]))
def test_rows_of_the_library_format_still_read(name: str) -> None:
    """Rows as the library's transcoder wrote them decode to events whose content still
    hashes to the recorded chain (old stores stay readable beside lean rows)."""
    ledger = Ledger("sqlite:///:memory:")
    previous: dict[str, str] = {}
    for row in FROZEN[name]:
        stored = StoredEvent(originator_id=__import__("uuid").UUID(row["stream"]),
                             originator_version=row["version"], topic=row["topic"],
                             state=base64.b64decode(row["state"]))
        event = ledger.mapper.to_domain_event(stored)
        if row["hash"] is None:
            continue
        fields = {k: v for k, v in vars(event).items() if k not in BOOKKEEPING}
        before = previous.get(row["stream"], "0" * 64)
        assert chain_hash(before, type(event).__name__, row["version"], fields) == row["hash"]
        previous[row["stream"]] = row["hash"]


def test_idempotency_cache_is_bounded_and_repeats_are_still_recognised(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: the key cache never holds more than KEYS_KEPT keys after a commit, and a key
    it forgot is found in the store (a repeat is acknowledged, a reused id is a conflict)."""
    from ledger.application import unit_of_work
    from ledger.application.feed import run_feed
    monkeypatch.setattr(unit_of_work, "KEYS_KEPT", 40)
    at = "2025-01-01T00:00:00Z"
    lines = [{"type": "asset", "at": at, "asset": "USDT", "precision": 8},
             {"type": "open_account", "at": at, "account": "alice", "mode": "single_asset"}]
    lines += [{"type": "deposit", "at": at, "id": f"d{i}", "account": "alice",
               "asset": "USDT", "amount": "1"} for i in range(300)]
    numbered = [(n, json.dumps(line)) for n, line in enumerate(lines, start=1)]
    ledger = Ledger(store_url)
    first = run_feed(ledger, iter(numbered), batch_size=25)
    assert first.applied == 302 and not first.rejected
    assert len(ledger.uow.keys) <= 40
    again = run_feed(ledger, iter(numbered), batch_size=25)  # the same process: keys forgotten
    assert again.applied == 0 and again.acknowledged == 302
    assert len(ledger.uow.keys) <= 40
    conflict = json.dumps({**lines[2], "amount": "2"})  # d0 again with another amount
    report = run_feed(ledger, iter([(1, conflict)]))
    assert [r.error for r in report.rejected] == ["id_conflict"]
    assert len(ledger.uow.keys) <= 40


@pytest.mark.parametrize("name", ["seed002-isolated-auto-topup", "pm-future-delivery",
                                  "interest-per-second", "usdc-session-settlement"])
def test_lean_rows_decode_to_what_the_library_form_gives(name: str, sqlite_url: str) -> None:
    """Every lean row decodes to the same field values, of the same types, as the same event
    written in the library's form (the projections and readers see no difference)."""
    from eventsourcing.persistence import Mapper

    from ledger.application.lean import PREFIX

    run_feed(Ledger(sqlite_url), iter(feeds()[name]))
    ledger = Ledger(sqlite_url)
    lean_rows = 0
    for stored in ledger.recorder.select_notifications(1, 10**9):
        event = ledger.mapper.to_domain_event(stored)
        library = Mapper.to_stored_event(ledger.mapper, event)  # the library's own form
        assert not library.state.startswith(PREFIX)
        again = ledger.mapper.to_domain_event(library)
        assert vars(again) == vars(event)
        assert {k: type(v) for k, v in vars(again).items()} == {
            k: type(v) for k, v in vars(event).items()}
        lean_rows += stored.state.startswith(PREFIX)
    assert lean_rows > 5
