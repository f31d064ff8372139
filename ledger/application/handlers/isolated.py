"""Isolated margin: the automatic top-up switch and manual margin adjustments (seed 002,
DESIGN §6.5).
"""


from __future__ import annotations

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
    check_places,
)
from ledger.errors import (
    NoPriceError,
)


class IsolatedCommands(Handlers):
    """Isolated margin."""

    def set_auto_add_margin(self, cmd: c.SetAutoAddMarginCmd) -> str:
        account = self.uow.account(cmd.account)
        self.refs.require_instrument(cmd.symbol)
        account.require_not_before(cmd.at)
        account.set_auto_add_margin(cmd.at, cmd.symbol, cmd.enabled)
        self.uow.touch(account)
        return APPLIED

    def adjust_isolated_margin(self, cmd: c.AdjustIsolatedMarginCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_instrument(cmd.symbol, cmd.at)
        settle = self.refs.require_asset(terms.settle, cmd.at)
        check_places(abs(cmd.amount), settle)
        account.require_not_before(cmd.at)
        if self.refs.data.index_price(terms.settle, cmd.at) is None:
            raise NoPriceError(f"{terms.settle} has no index price")
        market = self.refs.market_for(account, cmd.at)
        account.adjust_isolated_margin(at=cmd.at, command_id=cmd.id, terms=terms,
                                       amount=cmd.amount, market=market)
        self.uow.touch(account)
        return APPLIED
