"""What every family of command handlers shares: the unit of work, the reference reader and
the account history, and the few checks more than one family makes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.application.history import AccountHistory
from ledger.application.reader import ReferenceReader
from ledger.application.unit_of_work import UnitOfWork
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.errors import InvalidInputError
from ledger.numbers import significant_places, to_str
from ledger.rules import margin as rules
from ledger.rules.terms import AssetTerms

APPLIED = "applied"
ACKNOWLEDGED = "acknowledged"


class Handlers:
    """A family of command handlers: one public method per command type."""

    def __init__(self, uow: UnitOfWork, refs: ReferenceReader, history: AccountHistory) -> None:
        self.uow = uow
        self.refs = refs
        self.history = history

    def account_at(self, name: str, at: datetime) -> Account | None:
        """Return the account as it was after its last event with `at ≤ at` (None: not yet)."""
        if name not in self.uow.stream_names("account"):
            return None
        return self.history.account_at(name, at, self.uow.accounts.get(account_id(name)))

    def figures(self, account: Account, at: datetime, *, limits: bool = False,
                extra_assets: tuple[str, ...] = ()) -> rules.AccountFigures:
        market = self.refs.market_for(account, at, extra_assets)
        return rules.evaluate(account.snapshot(), market, limits=limits)


def check_places(amount: Decimal, terms: AssetTerms) -> None:
    """Refuse an amount with more decimal places than its asset's precision."""
    if significant_places(amount) > terms.precision:
        raise InvalidInputError(
            f"{to_str(amount)} has more decimal places than {terms.asset}'s precision "
            f"({terms.precision})")


def opened_after(account: Account, at: datetime) -> bool:
    """Tell whether the account was opened after `at` (a late periodic command skips it)."""
    return account.version == 1 and account.last_at > at
