"""Funding and delivery: the 8-hour funding settlement with USDC session settlement, and the
delivery of linear futures (DESIGN §6.6, §6.7; PORTFOLIO-MARGIN §10.11).
"""


from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from ledger.application import commands as c
from ledger.application.handlers.base import (
    ACKNOWLEDGED,
    APPLIED,
    Handlers,
)
from ledger.domain.account import CROSS, ISOLATED, Account
from ledger.domain.ids import account_id
from ledger.errors import (
    InvalidInputError,
    NoPriceError,
)
from ledger.numbers import ZERO
from ledger.rules.funding import funding_rate_for_interval, is_funding_time
from ledger.rules.terms import (
    InstrumentTerms,
    PaymentRounding,
)
from ledger.times import format_at


class SettlementCommands(Handlers):
    """Funding and delivery."""

    def settle_funding(self, cmd: c.SettleFundingCmd) -> str:
        """Settle funding, then USDC session PnL, of every instrument whose funding time is
        `at` (DESIGN §6.6, §6.7). Idempotent by `at`: each instrument records the period."""
        due: list[InstrumentTerms] = []
        for symbol in sorted(self.uow.stream_names("instrument")):
            self.refs.instrument(symbol)
            terms = self.refs.data.instrument_terms(symbol, cmd.at)
            if terms is None or not terms.has_funding:
                continue
            if is_funding_time(cmd.at, terms.funding_interval_hours):
                due.append(terms)
        if not due and not any(
            is_funding_time(cmd.at, t.funding_interval_hours)
            for t in (self.refs.data.instrument_terms(s, cmd.at)
                      for s in self.uow.stream_names("instrument")) if t is not None
        ):
            raise InvalidInputError(f"{format_at(cmd.at)} is no funding time of any instrument")
        settled = [terms for terms in due if self._settle_instrument_funding(terms, cmd.at)]
        return APPLIED if settled else ACKNOWLEDGED

    def _settle_instrument_funding(self, terms: InstrumentTerms, period: datetime) -> bool:
        """Settle one instrument's funding time; False when it was settled before."""
        instrument = self.refs.existing_instrument(terms.symbol)
        history = self.refs.data.instruments[terms.symbol]
        if period in history.periods:
            return False
        mark = self.refs.data.mark_price(terms.symbol, period)
        previous = _previous_funding_time(period, terms.funding_interval_hours)
        rate = history.rate_for(period, previous)
        paid = False
        holders = self._holders_at(terms.symbol, period)
        for account, positions in holders:
            settle = self.refs.require_asset(terms.settle)
            for margin_type, qty in positions:
                if rate is not None and mark is not None and rate != ZERO:
                    before = account.version
                    applied = funding_rate_for_interval(  # issue 14: its quoted basis
                        rate, terms.funding_interval_hours, terms.funding_rate_basis)
                    account.settle_funding(period=period, terms=terms, margin_type=margin_type,
                                           qty=qty, mark=mark, rate=applied,
                                           precision=settle.precision,
                                           rounding=self._rounding(terms.settle, period))
                    if account.version != before:
                        paid = True
                        self.uow.touch(account)
            if terms.session_settlement and mark is not None:
                for margin_type, _ in positions:
                    before = account.version
                    account.settle_session(period=period, terms=terms, margin_type=margin_type,
                                           mark=mark, precision=settle.precision)
                    if account.version != before:
                        self.uow.touch(account)
        instrument.record_funding_period(period, rate, mark, paid)
        self.refs.record(instrument, "instrument", terms.symbol)
        return True

    def _holders_at(
        self, symbol: str, at: datetime
    ) -> list[tuple[Account, list[tuple[str, Decimal]]]]:
        """Return the accounts holding `symbol` at `at`, with (margin type, qty) of each
        position, read from the account as of `at` when it has moved on since."""
        found = []
        names = {account_id(name).hex: name for name in self.uow.stream_names("account")}
        self.uow.load_accounts([names[stream] for stream in self.uow.holders(symbol)
                                if stream in names])
        for stream in sorted(self.uow.holders(symbol)):
            if stream not in names:
                continue
            name = names[stream]
            account = self.uow.account(name)
            state = account if account.last_at <= at else self.account_at(name, at)
            if state is None:
                continue
            positions = [
                (margin_type, held["qty"])
                for margin_type in (CROSS, ISOLATED)
                if (held := state.position(symbol, margin_type)) is not None
            ]
            if positions:
                found.append((account, positions))
        return found

    def settle_delivery(self, cmd: c.SettleDeliveryCmd) -> str:
        """Deliver every linear future whose expiry ≤ `at` and that is not delivered yet, at
        the mark in force at its expiry (PORTFOLIO-MARGIN §10.11). Idempotent."""
        due: list[tuple[InstrumentTerms, Decimal]] = []
        for symbol in sorted(self.uow.stream_names("instrument")):
            self.refs.instrument(symbol)
            history = self.refs.data.instruments[symbol]
            terms = history.terms.values[-1] if history.terms else None
            if terms is None or terms.expiry is None or terms.expiry > cmd.at:
                continue
            if history.delivered:
                continue
            price = (self._option_delivery_price(terms) if terms.is_option
                     else history.marks.at(terms.expiry))
            if price is None:
                raise NoPriceError(f"{symbol} has no {'index' if terms.is_option else 'mark'} "
                                   f"price at or before its expiry "
                                   f"{format_at(terms.expiry)}")
            due.append((terms, price))
        for terms, price in due:
            settle = self.refs.require_asset(terms.settle)
            for account, _ in self._holders_at(terms.symbol, cmd.at):
                before = account.version
                if terms.is_option:
                    account.settle_option(period=cmd.at, terms=terms, price=price,
                                          precision=settle.precision)
                else:
                    account.deliver(period=cmd.at, terms=terms, price=price,
                                    precision=settle.precision,
                                    rounding=self._rounding(terms.settle, cmd.at))
                if account.version != before:
                    self.uow.touch(account)
            instrument = self.refs.existing_instrument(terms.symbol)
            instrument.deliver(cmd.at, price)
            self.refs.record(instrument, "instrument", terms.symbol)
        return APPLIED

    def _rounding(self, asset: str, at: datetime) -> PaymentRounding:
        """The asset's `payment_rounding` in force at `at` (issue 14)."""
        return self.refs.require_asset(asset, at).payment_rounding

    def _option_delivery_price(self, terms: InstrumentTerms) -> Decimal | None:
        """An option's delivery price (issue 15): the base's index in force at the expiry
        instant, in the settle asset (over the settle's index; coin-margined: USD)."""
        assert terms.expiry is not None
        base = self.refs.data.index_price(terms.base, terms.expiry)
        settle = self.refs.data.index_price(terms.settle, terms.expiry)
        if base is None or settle is None:
            return None
        return base if terms.coin_margined else base / settle


def _previous_funding_time(at: datetime, hours: int) -> datetime:
    return at - timedelta(hours=hours)
