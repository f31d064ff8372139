"""Read model `projection_accounts`: one row per account (mode, first and last `at`, version).

Rows come from the replayed account after the page (`Replay.page.touched`): an account opened
in the page is inserted with its `AccountOpened.at`; any other is updated in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from ledger.domain.account import Account
from ledger.times import to_micros
from projections import tables
from projections.base import ReadModel
from projections.view import PageWriter


class Accounts(ReadModel):
    name = "accounts"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: dict[UUID, datetime] = {}
        self.last_notification: dict[UUID, int] = {}

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Reference data does not show here."""

    @process_event.register(Account.Event)
    def _account_event(self, event: Account.Event, tracking: Tracking) -> None:
        self.last_notification[event.originator_id] = tracking.notification_id
        if isinstance(event, Account.AccountOpened):
            self.opened[event.originator_id] = event.at

    def write(self, writer: PageWriter) -> None:
        inserted, updated = [], []
        for account_id, notification_id in self.last_notification.items():
            account = self.replay.page.touched[account_id]
            row = {"mode": account.mode, "last_at": account.last_at,
                   "last_at_micros": to_micros(account.last_at), "version": account.version,
                   "notification_id": notification_id}
            if account_id in self.opened:
                inserted.append({"account": account.name, "account_id": account_id.hex,
                                 "opened_at": self.opened[account_id], **row})
            else:
                updated.append({"key_account": account.name, **row})
        writer.insert(tables.accounts, inserted)
        writer.update(tables.accounts, ["account"], updated)

    def reset(self) -> None:
        self.opened.clear()
        self.last_notification.clear()
