"""Accounts and money: opening, mode changes, deposits, withdrawals, transfers and
repayment (DESIGN §5, §6.9, 6.11).
"""


from __future__ import annotations

from ledger.application import commands as c
from ledger.application.handlers.base import (
    ACKNOWLEDGED,
    APPLIED,
    Handlers,
    check_places,
)
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.errors import (
    AccountExistsError,
    InsufficientEquityError,
    InvalidInputError,
    LedgerError,
    NoPriceError,
)
from ledger.numbers import ZERO, to_str
from ledger.rules import margin as rules
from ledger.rules.terms import (
    Mode,
)


class MoneyCommands(Handlers):
    """Accounts and money."""

    def open_account(self, cmd: c.OpenAccountCmd) -> str:
        existing = self.uow.find_account(cmd.account)
        if existing is not None:
            if existing.mode == cmd.mode:
                return ACKNOWLEDGED
            raise AccountExistsError(f"{cmd.account} exists in mode {existing.mode}")
        if cmd.mode == Mode.PORTFOLIO.value:
            raise InsufficientEquityError(
                "an account cannot be opened in portfolio mode: it has no equity yet; open "
                "it in another mode and change_mode once it holds the minimum")
        account = Account.open(account_id(cmd.account), cmd.at, cmd.account, Mode(cmd.mode))
        self.uow.add_account(account, cmd.account)
        return APPLIED

    def change_mode(self, cmd: c.ChangeModeCmd) -> str:
        account = self.uow.account(cmd.account)
        account.require_not_before(cmd.at)
        if account.mode == cmd.mode:
            return ACKNOWLEDGED
        figures = self.figures(account, cmd.at)
        has_debt = any(debt > ZERO for debt in figures.debts.values())
        mode = Mode(cmd.mode)
        if mode is Mode.PORTFOLIO and not (account.has_positions() or account.has_open_orders()
                                           or has_debt):
            minimum = self.refs.data.portfolio_terms(cmd.at).min_equity_usd
            pooled = rules.evaluate(
                rules.AccountSnapshot(Mode.MULTI_ASSET, dict(account.balances)),
                self.refs.market_for(account, cmd.at), limits=False)
            effective = pooled.margin.effective_equity_usd
            if effective < minimum:
                raise InsufficientEquityError(
                    f"{cmd.account}: effective equity {to_str(effective)} USD < "
                    f"{to_str(minimum)} USD needed for portfolio mode")
        account.change_mode(cmd.at, mode, has_debt)
        self.uow.touch(account)
        return APPLIED

    def deposit(self, cmd: c.DepositCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_asset(cmd.asset, cmd.at)
        check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        account.deposit(cmd.at, cmd.id, cmd.asset, cmd.amount)
        self.uow.touch(account)
        return APPLIED

    def withdraw(self, cmd: c.WithdrawCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_asset(cmd.asset, cmd.at)
        check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        market = self.refs.market_for(account, cmd.at, (cmd.asset,))
        account.withdraw(cmd.at, cmd.id, cmd.asset, cmd.amount, market)
        self.uow.touch(account)
        return APPLIED

    # A transfer is three legs, each idempotent by the transfer's id (docs/sharding.md):
    # out of the source into `system:transit`, in from transit to the destination, and, when
    # the destination refuses, a return leg back to the source. One process records the same
    # legs as the shard workers, so events never depend on the number of workers.
    leg: str | None = None  # "out", "in" or "return" when a shard worker applies one leg
    verdict: str = ""  # the destination's error code, for a return leg
    legs_done: tuple[str, ...] = ()  # the later legs a whole transfer recorded ("in"/"return")

    def transfer(self, cmd: c.TransferCmd) -> str:
        if self.leg == "out":
            self._leg_out(cmd)
        elif self.leg == "in":
            self._leg_in(cmd)
        elif self.leg == "return":
            self._leg_return(cmd, self.verdict)
        else:
            if self.leg != "resume":  # resume: the out-leg is stored, the rest is not
                self._leg_out(cmd)
            try:
                self._leg_in(cmd)
            except LedgerError as error:
                self._leg_return(cmd, error.code)
                self.legs_done = ("return",)
                error.keeps_changes = True  # type: ignore[attr-defined]
                raise
            self.legs_done = ("in",)
        return APPLIED

    def _leg_out(self, cmd: c.TransferCmd) -> None:
        """The source's checks (unknown account, asset, places, order, what it may withdraw),
        then the out-leg; a refusal here records nothing."""
        source = self.uow.account(cmd.from_)
        terms = self.refs.require_asset(cmd.asset, cmd.at)
        check_places(cmd.amount, terms)
        source.require_not_before(cmd.at)
        market = self.refs.market_for(source, cmd.at, (cmd.asset,))
        source.transfer_out(cmd.at, cmd.id, cmd.to, cmd.asset, cmd.amount, market)
        self.uow.touch(source)

    def _leg_in(self, cmd: c.TransferCmd) -> None:
        """The destination's checks (unknown account, order, exact balance), then the in-leg."""
        target = self.uow.account(cmd.to)
        target.transfer_in(cmd.at, cmd.id, cmd.from_, cmd.asset, cmd.amount)
        self.uow.touch(target)

    def _leg_return(self, cmd: c.TransferCmd, reason: str) -> None:
        source = self.uow.account(cmd.from_)
        source.transfer_return(cmd.at, cmd.id, cmd.to, cmd.asset, cmd.amount, reason)
        self.uow.touch(source)

    def repay(self, cmd: c.RepayCmd) -> str:
        """Convert `with_asset` at index prices into the debt coin (seed 000 §4)."""
        account = self.uow.account(cmd.account)
        terms = self.refs.require_asset(cmd.asset, cmd.at)
        giver = self.refs.require_asset(cmd.with_asset, cmd.at)
        if cmd.asset == cmd.with_asset:
            raise InvalidInputError("repay needs another asset to convert")
        check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        for asset in (cmd.asset, cmd.with_asset):
            if self.refs.data.index_price(asset, cmd.at) is None:
                raise NoPriceError(f"{asset} has no index price")
        market = self.refs.market_for(account, cmd.at, (cmd.asset, cmd.with_asset))
        account.repay(at=cmd.at, command_id=cmd.id, asset=cmd.asset, amount=cmd.amount,
                      with_asset=cmd.with_asset, market=market,
                      with_precision=giver.precision)
        self.uow.touch(account)
        return APPLIED
