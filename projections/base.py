"""The base of every read model: an eventsourcing `Projection` that writes pages of rows.

A read model's `process_event` dispatches on the event's type and notes what the page changes;
events it does not show fall through to the default handler, and the page's tracking position
still moves past them. At the end of a page the runner calls `prepare` (compute rows: figures,
recomputations after late reference data; reads allowed, outside the write transaction) and then
`write` (the statements, inside the transaction that also moves every projection's tracking
position). A read model holds no state across pages that the tables do not hold: the runner can
be killed at any point and a new one resumes from the tables and the log.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from sqlalchemy import Connection

from ledger.domain.account import Account
from ledger.domain.postings import Posting
from projections.replay import Replay
from projections.view import PageWriter, ReadModelView

SYSTEM_PREFIX = "system:"


class ReadModel(Projection[ReadModelView]):
    """One read model, fed by the runner's shared replay."""

    def __init__(self, view: ReadModelView, replay: Replay) -> None:
        super().__init__(view=view)
        self.replay = replay

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Ignore an event this read model does not show."""

    def prepare(self, reader: Connection) -> None:
        """Compute the page's rows (reads allowed; no writes)."""

    def write(self, writer: PageWriter) -> None:
        """Write the page's rows (inside the page's transaction)."""

    def reset(self) -> None:
        """Forget the page (after it is written, or when the runner starts again)."""

    def restore(self, reader: Connection) -> None:
        """Load what this read model keeps in memory across pages from its table."""


def applied_postings(event: Account.Event, account: str) -> list[tuple[int, Posting]]:
    """Return (index, posting) of the lines this event applies to a balance.

    An account's event applies the lines of that account (as `Account._apply_postings` does)
    and of system accounts, which have no aggregate. A transfer's legs (`TransferredOut`,
    `TransferredIn`, `TransferReturned`) each carry their own balanced pair of lines through
    `system:transit` (docs/sharding.md); stores written before issue 11 carry one pair in both
    events, and each line counts once, with the event of the account it moves, so per-account
    sums of the journal are balances and the journal as a whole sums to zero per asset.
    """
    last = _last_applied
    if last and last[0] is event and last[1] == account:
        lines: list[tuple[int, Posting]] = last[2]  # the same event, for the next read model
        return lines
    postings = getattr(event, "postings", None) or ()
    found = [(index, posting) for index, posting in enumerate(postings)
             if posting.account == account or posting.account.startswith(SYSTEM_PREFIX)]
    _last_applied[:] = [event, account, found]
    return found


_last_applied: list[Any] = []
"""(event, account, lines) of the last call: balances, system balances and the journal ask in
turn about the same event (an event is immutable, and kept alive by this reference)."""
