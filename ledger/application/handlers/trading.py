"""Trading: fills (fees, realised PnL, liquidation fills and their insurance cover), open
orders and leverage (DESIGN §6.2, §6.4, 6.11).
"""


from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
    check_places,
)
from ledger.domain.account import ISOLATED, Account
from ledger.errors import (
    InvalidInputError,
    NoPriceError,
    NotAllowedInModeError,
)
from ledger.numbers import ZERO
from ledger.rules import margin as rules
from ledger.rules.terms import (
    STABLECOINS,
    InstrumentTerms,
    Mode,
)
from ledger.times import format_at


class TradingCommands(Handlers):
    """Trading."""

    def _require_tradable(self, terms: InstrumentTerms, at: datetime) -> None:
        """Refuse fills and orders on a future at or after its expiry, or delivered."""
        if terms.expiry is not None and at >= terms.expiry:
            raise InvalidInputError(
                f"{terms.symbol} expired at {format_at(terms.expiry)}: no more trading")
        history = self.refs.data.instruments.get(terms.symbol)
        if history is not None and history.delivered:
            raise InvalidInputError(f"{terms.symbol} has been delivered")

    def fill(self, cmd: c.FillCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_instrument(cmd.symbol, cmd.at)
        settle = self.refs.require_asset(terms.settle, cmd.at)
        self._require_tradable(terms, cmd.at)
        if cmd.fee is not None:
            check_places(abs(cmd.fee), settle)
        held = account.position(cmd.symbol, cmd.margin_type)
        after = abs((held["qty"] if held else ZERO) + (cmd.qty if cmd.side == "buy" else -cmd.qty))
        for qty in (cmd.qty, after):
            _require_postable(qty, terms, cmd.price)
        account.require_not_before(cmd.at)
        self._require_mode_allows(account, terms, cmd.margin_type, cmd.at)
        account.fill(
            at=cmd.at, command_id=cmd.id, terms=terms, side=cmd.side, qty=cmd.qty,
            price=cmd.price, liquidity=cmd.liquidity, fee=cmd.fee,
            margin_type=cmd.margin_type, leverage=cmd.leverage, liquidation=cmd.liquidation,
            precision=settle.precision, rounding=settle.payment_rounding,
            underlying=self._option_underlying(terms, cmd.margin_type, cmd.at),
        )
        if cmd.liquidation:
            self._cover_liquidation_shortfall(account, terms, cmd.at)
        self.uow.touch(account)
        self.uow.note_holder(cmd.symbol, account)
        return APPLIED

    def _option_underlying(self, terms: InstrumentTerms, margin_type: str, at: datetime
                           ) -> Decimal | None:
        """An option's base price in its settle asset at `at` (issue 15): index of the base
        over the settle's; `no_price` without one. None for other kinds."""
        if not terms.is_option:
            return None
        if margin_type == ISOLATED:
            raise InvalidInputError("margin_type: an option is cross only (allowed: cross)")
        base = self.refs.data.index_price(terms.base, at)
        settle = self.refs.data.index_price(terms.settle, at)
        if base is None or settle is None:
            raise NoPriceError(f"{terms.base} has no index price: an option fill needs it")
        return base if terms.coin_margined else base / settle

    def _cover_liquidation_shortfall(
        self, account: Account, terms: InstrumentTerms, at: datetime
    ) -> None:
        """After a liquidation fill, cover negative equity from `system:insurance` so that no
        account is left below zero by a liquidation (issue 3, scope 4)."""
        market = self.refs.market_for(account, at)
        figures = rules.evaluate(account.snapshot(), market, limits=False)
        settle = self.refs.require_asset(terms.settle)
        shortfall = rules.liquidation_shortfall(figures, Mode(account.mode), terms.settle,
                                                market.index(terms.settle))
        if shortfall > ZERO:
            account.cover_shortfall(at, terms.settle, shortfall, settle.precision)

    def _require_mode_allows(
        self, account: Account, terms: InstrumentTerms, margin_type: str, at: datetime
    ) -> None:
        mode = account.mode  # Mode is a StrEnum: its members equal their text
        if mode == Mode.MULTI_ASSET:
            if margin_type == ISOLATED:
                raise NotAllowedInModeError("multi_asset mode is cross only")
            if terms.settle not in STABLECOINS:
                raise NotAllowedInModeError(
                    f"multi_asset mode trades USDT- and USDC-settled contracts only, "
                    f"not {terms.symbol}")
        elif mode == Mode.PORTFOLIO:
            if margin_type == ISOLATED:
                raise NotAllowedInModeError("portfolio mode is cross only")
            if self.refs.data.risk_unit(terms.base, at) is None:
                raise NotAllowedInModeError(f"{terms.base} has no risk_unit parameters")
            if self.refs.data.index_price(terms.base, at) is None:
                raise NoPriceError(f"{terms.base} has no index price")
        if self.refs.data.index_price(terms.settle, at) is None:
            raise NoPriceError(f"{terms.settle} has no index price")

    def open_orders(self, cmd: c.OpenOrdersCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_instrument(cmd.symbol, cmd.at)
        if cmd.buy or cmd.sell:
            self._require_tradable(terms, cmd.at)
        for order in (cmd.buy, cmd.sell):
            if order is not None:
                _require_postable(order.qty, terms, order.price)
        account.require_not_before(cmd.at)
        buy = (cmd.buy.qty, cmd.buy.price) if cmd.buy else None
        sell = (cmd.sell.qty, cmd.sell.price) if cmd.sell else None
        account.set_open_orders(cmd.at, cmd.symbol, buy, sell)
        self.uow.touch(account)
        return APPLIED

    def set_leverage(self, cmd: c.SetLeverageCmd) -> str:
        account = self.uow.account(cmd.account)
        terms = self.refs.require_instrument(cmd.symbol, cmd.at)
        account.require_not_before(cmd.at)
        before = account.version
        account.set_leverage(cmd.at, terms, cmd.leverage)
        if account.version != before:
            self.uow.touch(account)
        return APPLIED


def _require_postable(qty: Decimal, terms: InstrumentTerms, price: Decimal) -> None:
    """Refuse a fill, position or order whose notional the ledger could not post exactly
    (each factor is bounded at entry, their product is not: `commands.notional_error`)."""
    message = c.notional_error(qty, terms.contract_size, price, inverse=terms.is_inverse)
    if message:
        raise InvalidInputError(message)
