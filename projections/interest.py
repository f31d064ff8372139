"""Read model `projection_interest`: per account and interest-bearing asset, the liability, the
rate and free amount in force, the interest accrued (exact) since the last charge as of the
account's last event, and the total charged (DESIGN §6.8, 6.11).

The assets listed and the accrued amounts are the ledger's own `interest_view` (run by
`ReplayLedger` over the projection's reference series): the accrual integrates over every
change of the account, of the marks of its cross positions and of the asset's terms, so it is
computed with the ledger's code, never a second formula. It costs a read of the account's
events since its last charge, so it runs only for accounts that may owe (`interest_candidates`)
or already have rows; and again when a late mark or parameter reaches an account's last event.

PostgreSQL's view `projection_interest_now` extends `accrued` to now() for other services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from sqlalchemy import Connection, select

from ledger.domain.account import Account
from ledger.numbers import ZERO
from projections import tables
from projections.base import ReadModel
from projections.debts import late_accounts
from projections.replay import bears_interest, figures_at
from projections.view import PageWriter


class Interest(ReadModel):
    name = "interest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accounts: list[str] = []
        self.rows: list[dict[str, Any]] = []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Reference data moves interest only when late (see `prepare`)."""

    @process_event.register(Account.Event)
    def _account_event(self, event: Account.Event, tracking: Tracking) -> None:
        """Any account event may change the liability; the view is taken after the page."""

    def prepare(self, reader: Connection) -> None:
        replay = self.replay
        steps = [step for step in replay.last_steps()
                 if _may_bear(replay, replay.page.touched[step.account_id])]
        table = tables.interest
        listed = {row[0] for row in reader.execute(
            select(table.c.account).distinct().where(
                table.c.account.in_([step.account for step in steps])))} if steps else set()
        for step in steps:
            account = replay.page.touched[step.account_id]
            if step.account in listed or replay.interest_candidates(account):
                self._add(account, step.at, replay.figures(step).debts)
        for account, at in late_accounts(replay, reader):
            if _may_bear(replay, account):
                debts = figures_at(replay.reference, account.snapshot(), at).debts
                self._add(account, at, debts)

    def _add(self, account: Account, at: datetime, debts: Any) -> None:
        self.accounts.append(account.name)
        for asset, view in sorted(self.replay.interest_view(account, at).items()):
            terms = self.replay.reference.asset_terms(asset, at)
            interest = terms.interest if terms is not None else None
            self.rows.append({
                "account": account.name, "asset": asset,
                "liability": debts.get(asset, ZERO),
                "annual_rate": interest.annual_rate if interest else None,
                "free_amount": interest.free_amount if interest else None,
                "free_mode": interest.free_mode.value if interest else None,
                "accrued": view["accrued"], "charged": view["charged"], "as_of": at,
                "version": account.version,
            })

    def write(self, writer: PageWriter) -> None:
        writer.delete_where_in(tables.interest, "account", self.accounts)
        writer.insert(tables.interest, self.rows)

    def reset(self) -> None:
        self.accounts = []
        self.rows = []


def _may_bear(replay: Any, account: Account) -> bool:
    """Tell whether any coin the account can owe (the ledger's `owable_assets`) bears interest."""
    owable = replay.reference.owable_assets(account.balances, account.interest_charged,
                                            account.symbols)
    return any(bears_interest(replay.reference, asset) for asset in owable)
