"""Property: after the runner catches up, every read model equals the replay (DESIGN §9).

Random command streams (setup, then fills, prices, transfers, sweeps, interest, funding…,
with times that sometimes step back), applied in random batches, projected with a random page
size (1 makes every reference change that follows an account event at the same `at` a late
one). Then, on SQLite and PostgreSQL:
- `reconcile` finds nothing: every event balances, the journal sums to zero per asset and to
  every balance, and each account's balances, debts, positions, interest and latest margin
  figures equal `queries.state` as of its last event;
- every margin-state row equals the ledger's figures of that account version at that `at`;
- the feed has one row per margin call, liquidation trigger and top-up in the log.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projections_support import apply, fresh_store, margin_rows_mismatches, streams
from sqlalchemy import func, select

from ledger.application import schema
from ledger.application.service import Ledger
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from projections import runner, tables
from projections.reconcile import reconcile

SIGNALS = (Account.MarginCallIssued, Account.LiquidationTriggered, Account.MarginToppedUp)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow], deadline=None)
@given(feed=streams(), batches=st.lists(st.integers(1, 8), min_size=1, max_size=4),
       page_size=st.sampled_from([1, 2, 5, 1000]))
def test_read_models_equal_replay(store_url: str, feed: list[dict[str, Any]],
                                  batches: list[int], page_size: int) -> None:
    with fresh_store(store_url) as url:
        writer = Ledger(url)
        try:
            apply(writer, feed, batches)
        finally:
            writer.close()
        runner.run(url, until_caught_up=True, page_size=page_size)
        ledger = Ledger(url)
        engine = schema.create_engine(url)
        try:
            assert reconcile(ledger, engine) == []
            assert margin_rows_mismatches(ledger, url) == []
            signals = sum(1 for name in ledger.account_names()
                          for event in ledger.events.get(account_id(name))
                          if isinstance(event, SIGNALS))
            with engine.connect() as connection:
                rows = connection.execute(select(func.count()).select_from(tables.feed))
                assert rows.scalar() == signals
        finally:
            engine.dispose()
            ledger.close()
