"""Read model `projection_balances`: wallet balance per user account and asset.

The balance is the replayed account's (`Account.balances`, a fold of the postings to that
account), written for every (account, asset) a posting moved in the page, with the version of
the event that last moved it. A balance that returns to 0 keeps its row, as the account's state
keeps the asset.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from ledger.domain.account import Account
from projections import tables
from projections.base import ReadModel, applied_postings
from projections.view import PageWriter


class Balances(ReadModel):
    name = "balances"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.moved: dict[tuple[UUID, str], int] = {}  # (account, asset) → version

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events without postings do not move a balance."""

    @process_event.register(Account.MoneyMoved)
    @process_event.register(Account.Filled)
    def _moved(self, event: Account.Event, tracking: Tracking) -> None:
        account = self.replay.page.touched[event.originator_id]
        for _, posting in applied_postings(event, account.name):
            if posting.account == account.name:
                self.moved[(event.originator_id, posting.asset)] = event.originator_version

    def write(self, writer: PageWriter) -> None:
        rows = []
        for (account_id, asset), version in self.moved.items():
            account = self.replay.page.touched[account_id]
            rows.append({"account": account.name, "asset": asset,
                         "balance": account.balances[asset], "version": version})
        writer.upsert(tables.balances, sorted(rows, key=lambda r: (r["account"], r["asset"])))

    def reset(self) -> None:
        self.moved.clear()
