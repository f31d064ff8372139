"""Read model `projection_debts`: each coin's liability `max(0, −e)` as of the account's last
event (DESIGN 6.11: `debts[coin]`, the same liability that accrues interest), every asset of the
account listed as the contract's `state` lists it (0 when nothing is owed).

`e` includes the unrealised PnL of cross positions at the marks in force at that `at`, so the
rows are figures: `rules.evaluate` on the replayed account, and recomputed when a late mark or
parameter reaches an account's last event (`late_accounts`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from sqlalchemy import Connection, select

from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.times import from_micros
from projections import tables
from projections.base import ReadModel
from projections.replay import Replay, figures_at
from projections.view import PageWriter


def late_accounts(replay: Replay, reader: Connection) -> list[tuple[Account, datetime]]:
    """Return (account at its projected version, its last `at`) for every account not touched
    in the page whose last event is at or after the earliest late reference change."""
    changes = replay.late_changes()
    if not changes:
        return []
    start = min(change.start for change in changes)
    table = tables.accounts
    found = []
    for row in reader.execute(select(table.c.account, table.c.version, table.c.last_at_micros)
                              .where(table.c.last_at_micros >= start)
                              .order_by(table.c.account)):
        identifier = account_id(row.account)
        if identifier in replay.page.touched:
            continue
        found.append((replay.account_at(identifier, row.version),
                      from_micros(row.last_at_micros)))
    return found


class Debts(ReadModel):
    name = "debts"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accounts: list[str] = []
        self.rows: list[dict[str, Any]] = []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Reference data moves debts only when late (see `prepare`)."""

    @process_event.register(Account.Event)
    def _account_event(self, event: Account.Event, tracking: Tracking) -> None:
        """Any account event may change the debts; they are taken after the page's last."""

    def prepare(self, reader: Connection) -> None:
        replay = self.replay
        for step in replay.last_steps():
            self._add(step.account, step.version, step.at, replay.figures(step).debts)
        for account, at in late_accounts(replay, reader):
            figures = figures_at(replay.reference, account.snapshot(), at)
            self._add(account.name, account.version, at, figures.debts)

    def _add(self, account: str, version: int, at: datetime, debts: Any) -> None:
        self.accounts.append(account)
        self.rows += [{"account": account, "asset": asset, "debt": debt, "as_of": at,
                       "version": version} for asset, debt in sorted(debts.items())]

    def write(self, writer: PageWriter) -> None:
        writer.delete_where_in(tables.debts, "account", self.accounts)
        writer.insert(tables.debts, self.rows)

    def reset(self) -> None:
        self.accounts = []
        self.rows = []
