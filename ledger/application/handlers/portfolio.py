"""Portfolio margin: spot in use (PORTFOLIO-MARGIN §10).
"""


from __future__ import annotations

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
)
from ledger.errors import (
    NotAllowedInModeError,
)
from ledger.rules.terms import (
    Mode,
)


class PortfolioCommands(Handlers):
    """Portfolio margin."""

    def set_spot_in_use(self, cmd: c.SetSpotInUseCmd) -> str:
        account = self.uow.account(cmd.account)
        self.refs.require_asset(cmd.asset)
        account.require_not_before(cmd.at)
        if account.mode != Mode.PORTFOLIO.value:
            raise NotAllowedInModeError(f"{cmd.account} is not in portfolio mode")
        if self.refs.data.risk_unit(cmd.asset, cmd.at) is None:
            raise NotAllowedInModeError(f"{cmd.asset} has no risk_unit parameters")
        account.set_spot_in_use(cmd.at, cmd.asset, cmd.amount)
        self.uow.touch(account)
        return APPLIED
