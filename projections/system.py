"""Read model `projection_system_balances`: balance per system account (`system:*`) and asset.

System accounts have no aggregate (no hot spot, DESIGN §3): their balances are the sum of the
postings the events apply to them (`applied_postings`). The running totals stay in memory
between pages and are loaded from the table when a runner starts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from sqlalchemy import Connection, select

from ledger.domain.account import Account
from ledger.numbers import ZERO
from projections import tables
from projections.base import SYSTEM_PREFIX, ReadModel, applied_postings
from projections.view import PageWriter


class SystemBalances(ReadModel):
    name = "system_balances"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.totals: dict[tuple[str, str], Decimal] = {}
        self.changed: dict[tuple[str, str], int] = {}  # key → notification id of the change

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events without postings move no system account."""

    @process_event.register(Account.MoneyMoved)
    @process_event.register(Account.Filled)
    def _moved(self, event: Account.Event, tracking: Tracking) -> None:
        account = self.replay.page.touched[event.originator_id].name
        for _, posting in applied_postings(event, account):
            if not posting.account.startswith(SYSTEM_PREFIX):
                continue
            key = (posting.account, posting.asset)
            self.totals[key] = self.totals.get(key, ZERO) + posting.amount
            self.changed[key] = tracking.notification_id

    def write(self, writer: PageWriter) -> None:
        writer.upsert(tables.system_balances, [
            {"account": account, "asset": asset, "balance": self.totals[(account, asset)],
             "notification_id": notification_id}
            for (account, asset), notification_id in sorted(self.changed.items())
        ])

    def reset(self) -> None:
        self.changed.clear()

    def restore(self, reader: Connection) -> None:
        table = tables.system_balances
        self.totals = {
            (row.account, row.asset): row.balance
            for row in reader.execute(select(table.c.account, table.c.asset, table.c.balance))
        }
        self.changed.clear()
