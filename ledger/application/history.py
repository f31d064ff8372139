"""An account's history for as-of reads: the account after any version, or as of any second.

What the store holds, plus — for a ledger in the middle of a batch — the events of its unit of
work not yet written (`pending`), so a read of the past inside a command never needs to write
first (issue 10: nothing that reads may write). The read side uses it with no pending events.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from ledger.application.store import IndexQueries
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.times import to_micros


def _nothing_pending(_: UUID) -> list[Any]:
    return []


class AccountHistory:
    """As-of reads of accounts: snapshots, the time index and the events after them."""

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app
        self.index: IndexQueries = app.recorder  # type: ignore[assignment]
        self.pending: Callable[[UUID], list[Any]] = _nothing_pending
        self.pending_checkpoints: Callable[[], list[tuple[str, str, int, int, str]]] = list

    def events(self, aggregate_id: UUID, gt: int | None = None, lte: int | None = None
               ) -> list[Account.Event]:
        """Return an account's events in order (optionally after `gt`, up to `lte`): the
        committed ones from the store, then those not yet written (copies, so that folding
        them elsewhere cannot reach the events to be stored)."""
        store = self.app.events
        pending = self.pending(aggregate_id)
        if not pending:
            return cast(list[Account.Event], list(store.get(aggregate_id, gt=gt, lte=lte)))
        head = pending[0].originator_version - 1  # the last version in the store
        events: list[Any] = []
        if gt is None or gt < head:
            events = list(store.get(aggregate_id, gt=gt,
                                    lte=head if lte is None else min(lte, head)))
        events += [deepcopy(e) for e in pending
                   if (gt is None or e.originator_version > gt)
                   and (lte is None or e.originator_version <= lte)]
        return cast(list[Account.Event], events)

    def load_account(self, aggregate_id: UUID, version: int | None) -> Account:
        """Rebuild an account at `version` from its latest snapshot at or below it and the
        events after (DESIGN §8: a query replays at most SNAPSHOT_EVERY events)."""
        aggregate: Any = None
        after = None
        snapshots = self.app.snapshots
        if snapshots is not None:
            for snapshot in snapshots.get(aggregate_id, lte=version, desc=True, limit=1):
                aggregate = cast(Any, snapshot).mutate(None)
                after = snapshot.originator_version
        for event in self.events(aggregate_id, gt=after, lte=version):
            aggregate = event.mutate(aggregate)
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        assert isinstance(aggregate, Account), aggregate_id
        return aggregate

    def version_at(self, aggregate_id: UUID, at_micros: int) -> int | None:
        """Return the account's last version with `at ≤ at_micros` (None: nothing yet)."""
        for event in reversed(self.pending(aggregate_id)):
            if to_micros(event.at) <= at_micros:
                return cast(int, event.originator_version)
        return self.index.version_at(aggregate_id.hex, at_micros)

    def account_at(self, name: str, at: datetime, latest: Account | None) -> Account | None:
        """Return the account as it was after its last event with `at ≤ at` (None: it did
        not exist yet); `latest` is the account as it stands, when at hand."""
        if latest is not None and latest.last_at <= at:
            return latest
        aggregate_id = account_id(name)
        version = self.version_at(aggregate_id, to_micros(at))
        if version is None:
            return None
        return self.load_account(aggregate_id, version)

    def interest_checkpoint(self, aggregate_id: UUID, asset: str, at_micros: int
                            ) -> tuple[int, int, str] | None:
        """Return (at, version, accrued) of the last interest checkpoint at or before
        `at_micros`: one in the store, or a later one not yet written."""
        stream = aggregate_id.hex
        found = self.index.interest_checkpoint(stream, asset, at_micros)
        for row in self.pending_checkpoints():
            if row[0] == stream and row[1] == asset and row[2] <= at_micros and (
                    found is None or row[2] >= found[0]):
                found = (row[2], row[3], row[4])
        return found
