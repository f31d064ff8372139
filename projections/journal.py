"""Read model `projection_journal`: one row per posting, with the event that applied it.

Each row carries the posting (account, asset, signed amount) and its event: notification id,
the account stream and name, version, event type and `at`. `line` is the posting's index in the
event. Each leg of a transfer carries its own pair of lines through `system:transit` (stores
written before issue 11: one pair in both `TransferredOut` and `TransferredIn`); a line is
journaled once, with the event of the account it moves (`applied_postings`), so the journal sums
to every balance per account and to zero per asset (DESIGN §9, checked by `ledger reconcile`).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from ledger.domain.account import Account
from ledger.times import to_micros
from projections import tables
from projections.base import ReadModel, applied_postings
from projections.view import PageWriter


class Journal(ReadModel):
    name = "journal"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, Any]] = []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events without postings leave no line."""

    @process_event.register(Account.MoneyMoved)
    @process_event.register(Account.Filled)
    def _posted(self, event: Account.Event, tracking: Tracking) -> None:
        account = self.replay.page.touched[event.originator_id].name
        for line, posting in applied_postings(event, account):
            self.rows.append({
                "notification_id": tracking.notification_id, "line": line,
                "stream_id": event.originator_id.hex, "event_account": account,
                "version": event.originator_version, "event_type": type(event).__name__,
                "at": event.at, "at_micros": to_micros(event.at), "account": posting.account,
                "asset": posting.asset, "amount": posting.amount,
            })

    def write(self, writer: PageWriter) -> None:
        writer.insert(tables.journal, self.rows)

    def reset(self) -> None:
        self.rows = []
