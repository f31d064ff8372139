"""Funding and delivery: the 8-hour funding settlement with USDC session settlement, and the
delivery of linear futures (DESIGN §6.6, §6.7; PORTFOLIO-MARGIN §10.11).
"""


from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from ledger.application import commands as c
from ledger.application.handlers.base import (
    ACKNOWLEDGED,
    APPLIED,
    Handlers,
)
from ledger.application.history import AccountHistory
from ledger.application.reader import ReferenceReader
from ledger.application.shards import shard_of
from ledger.application.unit_of_work import UnitOfWork
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
from ledger.times import format_at, to_micros


@dataclass(frozen=True)
class Part:
    """The share of a periodic command (funding, sweep) a shard worker applies: the accounts
    of its shard (`shard_of(name, shards) == shard`), no once-per-period marker (workers.py,
    docs/sharding.md)."""

    shard: int
    shards: int

    def owns(self, name: str) -> bool:
        return shard_of(name, self.shards) == self.shard


class SettlementCommands(Handlers):
    """Funding and delivery."""

    def __init__(self, uow: UnitOfWork, refs: ReferenceReader, history: AccountHistory) -> None:
        super().__init__(uow, refs, history)
        self.part: Part | None = None  # set while a shard worker applies its part
        self.paid: dict[str, bool] = {}  # per symbol, what the last part paid or found paid
        self.parts_paid: dict[str, bool] | None = None  # set: write the markers of the parts
        self._streams: dict[str, tuple[str, UUID]] | None = None  # hex id → (name, id)

    def settle_funding(self, cmd: c.SettleFundingCmd) -> str:
        """Settle funding, then USDC session PnL, of every instrument whose funding time is
        `at` (DESIGN §6.6, §6.7). Idempotent by `at`: each instrument records the period."""
        self.paid = {}
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
        """Settle one instrument's funding time; False when it was settled before.

        Three ways (workers.py): whole (one process: every holder, then the period's marker,
        in one transaction); a part (`self.part` set: the holders of one shard, no marker;
        `self.paid` says whether it paid); the marker alone (`self.parts_paid` set: every
        part is committed, `paid` is theirs). An account that already holds this period's
        payment (a part committed before a crash) is not paid again, but counts as paid."""
        instrument = self.refs.existing_instrument(terms.symbol)
        history = self.refs.data.instruments[terms.symbol]
        if period in history.periods:
            return False
        mark = self.refs.data.mark_price(terms.symbol, period)
        previous = _previous_funding_time(period, terms.funding_interval_hours)
        rate = history.rate_for(period, previous)
        if self.parts_paid is not None:
            paid = self.parts_paid.get(terms.symbol, False)
        else:
            paid = self._pay_holders(terms, period, rate, mark)
        if self.part is not None:
            self.paid[terms.symbol] = paid
            return True
        instrument.record_funding_period(period, rate, mark, paid)
        self.refs.record(instrument, "instrument", terms.symbol)
        return True

    def _pay_holders(self, terms: InstrumentTerms, period: datetime, rate: Decimal | None,
                     mark: Decimal | None) -> bool:
        """Post the funding (and USDC session) payments of every holder (of this part);
        return whether any funding was paid, now or by an earlier part."""
        holders = self._holders_at(terms.symbol, period)
        if not holders:
            return False
        # The same for every position: looked up once (100,000 positions, issue 11).
        settle = self.refs.require_asset(terms.settle)
        pays = rate is not None and mark is not None and rate != ZERO
        applied = rounding = None
        if pays:
            assert rate is not None
            applied = funding_rate_for_interval(  # issue 14: its quoted basis
                rate, terms.funding_interval_hours, terms.funding_rate_basis)
            rounding = self._rounding(terms.settle, period)
        paid = False
        touch = self.uow.touch
        for account, positions in holders:
            done = self._settled_before(account, terms.symbol, period)
            for margin_type, qty in positions:
                if (Account.FundingSettled, margin_type) in done:
                    paid = True
                    continue
                if pays:
                    assert applied is not None and rounding is not None and mark is not None
                    before = account.version
                    account.settle_funding(period=period, terms=terms, margin_type=margin_type,
                                           qty=qty, mark=mark, rate=applied,
                                           precision=settle.precision, rounding=rounding)
                    if account.version != before:
                        paid = True
                        touch(account)
            if terms.session_settlement and mark is not None:
                for margin_type, _ in positions:
                    if (Account.SessionSettled, margin_type) in done:
                        continue
                    before = account.version
                    account.settle_session(period=period, terms=terms, margin_type=margin_type,
                                           mark=mark, precision=settle.precision)
                    if account.version != before:
                        touch(account)
        return paid

    def _settled_before(self, account: Account, symbol: str, period: datetime
                        ) -> set[tuple[type, str]]:
        """Return (event class, margin type) of the funding and session payments of `period`
        for `symbol` the account holds already: a part committed before the run stopped
        (workers.py). Such an event is posted at or after `period`, so an account whose
        history ends before it has none, and costs no read (every account, in order)."""
        if account.last_at < period:
            return set()
        before = self.history.version_at(account.id, to_micros(period) - 1)
        found: set[tuple[type, str]] = set()
        for event in self.history.events(account.id, gt=before):
            if (isinstance(event, (Account.FundingSettled, Account.SessionSettled))
                    and event.period == period and event.symbol == symbol):
                found.add((type(event), event.margin_type))
        return found

    def _holders_at(
        self, symbol: str, at: datetime
    ) -> list[tuple[Account, list[tuple[str, Decimal]]]]:
        """Return the accounts holding `symbol` at `at` (of this part's shard, if any), with
        (margin type, qty) of each position, read from the account as of `at` when it has
        moved on since."""
        found = []
        holders = sorted(self.uow.holders(symbol))
        # Holders are stream ids: those in memory are found by id (a running process holds
        # them all), the others are loaded by name, read from the stream index.
        held = {aid.hex: account for aid, account in self.uow.accounts.items()}
        missing = [stream for stream in holders if stream not in held]
        if missing:
            streams = self._account_streams(missing)
            named = [streams[stream] for stream in missing if stream in streams]
            if self.part is not None:
                named = [(name, aid) for name, aid in named if self.part.owns(name)]
            self.uow.load_accounts([name for name, _ in named])
            for name, aid in named:
                held[aid.hex] = self.uow.accounts.get(aid) or self.uow.account(name)
        for stream in holders:
            account = held.get(stream)
            if account is None or (self.part is not None and not self.part.owns(account.name)):
                continue
            state = account if account.last_at <= at else self.account_at(account.name, at)
            if state is None:
                continue
            positions = [
                (margin_type, held_position["qty"])
                for margin_type in (CROSS, ISOLATED)
                if (held_position := state.position(symbol, margin_type)) is not None
            ]
            if positions:
                found.append((account, positions))
        return found

    def _account_streams(self, wanted: list[str]) -> dict[str, tuple[str, UUID]]:
        """Return (name, id) of every account stream by its hex id, from the index the first
        time (no uuid5 of 100,000 names per settlement, issue 11), then kept: an id is a pure
        function of its name, so an entry never goes stale; a stream not yet known (opened
        since) is added from the names the ledger knows."""
        streams = self._streams
        if streams is None:
            streams = self._streams = {
                sid: (name, UUID(sid)) for sid, name in self.uow.index.streams("account")}
        if any(stream not in streams for stream in wanted):
            known = {name for name, _ in streams.values()}
            for name in self.uow.stream_names("account") - known:
                aid = account_id(name)
                streams[aid.hex] = (name, aid)
        return streams

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
