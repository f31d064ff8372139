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

    def transfer(self, cmd: c.TransferCmd) -> str:
        source = self.uow.account(cmd.from_)
        target = self.uow.account(cmd.to)
        terms = self.refs.require_asset(cmd.asset, cmd.at)
        check_places(cmd.amount, terms)
        source.require_not_before(cmd.at)
        target.require_not_before(cmd.at)
        market = self.refs.market_for(source, cmd.at, (cmd.asset,))
        postings = source.transfer_out(cmd.at, cmd.id, cmd.to, cmd.asset, cmd.amount, market)
        target.transfer_in(cmd.at, cmd.id, cmd.from_, cmd.asset, cmd.amount, postings)
        self.uow.touch(source)
        self.uow.touch(target)
        return APPLIED

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
