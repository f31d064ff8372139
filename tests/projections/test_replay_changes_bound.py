"""The replay's market-cache spans stay bounded however many reference events it sees (issue
11): `Replay._changes` keeps at most 2 × `CHANGES_KEPT` times, and the markets it gives — cached
or not, before or after the forgotten times, with late marks among them — are those the
reference series give directly."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from ledger.application.reference import ReferenceData
from ledger.domain.ids import asset_id
from ledger.domain.reference import Asset
from ledger.domain.terms import asset_to_dict
from ledger.rules import margin as rules
from ledger.rules.terms import AssetTerms, Mode
from projections import replay as replay_module
from projections.replay import Replay

START = datetime.fromisoformat("2025-01-01T00:00:00+00:00")


class _Readers:
    """What `Replay` takes of a `ReplayLedger` for reference data alone: its series."""

    def __init__(self) -> None:
        self.reference = ReferenceData()


def test_changes_stay_bounded_and_markets_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "CHANGES_KEPT", 50)
    replay = Replay(_Readers())  # type: ignore[arg-type]
    btc = Asset.list(asset_id("BTC"), START, "BTC", asset_to_dict(AssetTerms("BTC")))
    rng = random.Random(11)
    for second in range(1, 1_000):
        # One price a second; now and then a late one an instant after an earlier price.
        btc.last_at = START  # the replay takes what the log holds, late or not
        late = rng.random() < 0.1
        at = START + timedelta(seconds=rng.randrange(1, second) if late else second,
                               microseconds=500 if late else 0)
        btc.set_index_price(at, Decimal(20_000 + second))
    for event in btc.collect_events():
        replay.apply(event, 0)
    assert len(replay._changes) <= 2 * 50
    assert replay._changes_floor is not None
    holding = rules.AccountSnapshot(mode=Mode.MULTI_ASSET, balances={"BTC": Decimal(1)})
    checked = 0
    for second in (*range(0, 1_001, 7), 998, 999, 1_000):
        for micros in (0, 500, 999_999):
            at = START + timedelta(seconds=second, microseconds=micros)
            for _ in range(2):  # once to fill the cache, once to read it
                market = replay.market(holding, at)
                direct = replay.reference.market(at, {"BTC"}, set())
                assert market.indexes == direct.indexes
                assert market.at == at
                checked += 1
    assert checked > 800
    # The last price is 20999 (the one a second 999), whatever was forgotten.
    assert replay.market(holding, START + timedelta(days=1)).indexes["BTC"] == Decimal(20_999)
