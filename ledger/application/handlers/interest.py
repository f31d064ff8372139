"""Interest: exact per-second accrual over every change of an account, its marks and its
terms, and the hourly charge (DESIGN §6.8).
"""


from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
    opened_after,
)
from ledger.application.history import AccountHistory
from ledger.application.reader import ReferenceReader
from ledger.application.unit_of_work import UnitOfWork
from ledger.domain.account import CROSS, Account
from ledger.domain.ids import account_id
from ledger.numbers import ZERO
from ledger.rules.interest import (
    Segment,
    accrued_over,
    coin_equity,
    hourly_accrued,
    liability,
    lowest_equity,
)
from ledger.rules.terms import InterestAccrual
from ledger.times import from_micros, to_micros


class InterestCommands(Handlers):
    """Interest: accrual as of any T, and the hourly charge."""

    def __init__(self, uow: UnitOfWork, refs: ReferenceReader, history: AccountHistory) -> None:
        super().__init__(uow, refs, history)
        self._copies: dict[UUID, tuple[int, Account]] = {}  # state at the last checkpoint
        uow.resets.append(self._copies.clear)

    def interest_view(self, account: Account, at: datetime) -> dict[str, dict[str, Decimal]]:
        """Return {asset: {accrued, charged}}: every asset that has had a liability while it
        carried an interest configuration; `accrued` is exact as of `at`, not yet charged."""
        view: dict[str, dict[str, Decimal]] = {}
        for asset in sorted(self._owable_assets(account)):
            if not self._bears_interest(asset):
                continue
            accrued, had_debt, _ = self.accrued_interest(account, asset, at)
            charged = account.interest_charged.get(asset, ZERO)
            if had_debt or charged > ZERO or asset in account.interest_charged:
                view[asset] = {"accrued": accrued, "charged": charged}
        return view

    def accrued_interest(self, account: Account, asset: str, end: datetime
                         ) -> tuple[Decimal, bool, Account | None]:
        """Return (interest on `asset` accrued and not yet charged as of `end`, whether there
        was any liability, the account folded up to `end`), integrating exactly over every
        change of the account, of the marks of its cross positions settled in the asset, and
        of the asset's terms (DESIGN §6.8). Starts from the last charge or interest
        checkpoint, whichever is later."""
        found = self._state_since(account, asset, end)
        if found is None:
            return ZERO, False, None
        state, begin, later, carried = found
        cuts = sorted({begin, *(e.at for e in later if begin < e.at < end)})
        total, had_debt = carried, carried > ZERO
        pending = iter(later)
        upcoming = next(pending, None)
        for here, there in zip(cuts, [*cuts[1:], end], strict=True):
            while upcoming is not None and upcoming.at <= here:
                upcoming.mutate(state)
                upcoming = next(pending, None)
            accrued, owed = self._accrue_between(state, asset, here, there)
            total += accrued
            had_debt = had_debt or owed
        while upcoming is not None and upcoming.at <= end:
            upcoming.mutate(state)
            upcoming = next(pending, None)
        if begin >= end:
            terms = self.refs.data.asset_terms(asset, end)
            owed = liability(self._coin_equity(state, asset, end)) > ZERO
            had_debt = had_debt or (owed and terms is not None and terms.interest is not None)
        hourly = self._hourly_accrued(account, asset, end)
        return total + hourly, had_debt or hourly > ZERO, state

    # --- issue 14 (convA): interest accrued by whole hours ----------------------------------

    def _hourly_accrued(self, account: Account, asset: str, end: datetime) -> Decimal:
        """Return the interest the hour-based policies (`interest.accrual` other than
        `per_second`) have accrued on `asset` and not yet charged as of `end`: what they
        accrued over the account's whole history by `end`, less what they had accrued by the
        last charge (as the account stood just before that charge). Hours are anchored at
        the start of each borrowing, which may precede the last charge, so the timeline runs
        from the account's opening (only for an asset that has used such a policy)."""
        series = self.refs.data.assets[asset].terms
        if not any(t is not None and t.interest is not None
                   and t.interest.accrual is not InterestAccrual.PER_SECOND
                   for t in series.values):
            return ZERO
        aggregate_id = account_id(account.name)
        last = self.history.version_at(aggregate_id, to_micros(end))
        if last is None:
            return ZERO
        events = self.history.events(aggregate_id, gt=1, lte=last) if last > 1 else []
        charges = [e for e in events
                   if isinstance(e, Account.InterestCharged) and e.asset == asset]
        accrued = hourly_accrued(self._timeline(aggregate_id, asset, events, end),
                                 to_micros(end))
        if charges:
            charge = charges[-1]
            before = [e for e in events if e.originator_version < charge.originator_version]
            accrued -= hourly_accrued(
                self._timeline(aggregate_id, asset, before, charge.period),
                to_micros(charge.period))
        return max(accrued, ZERO)

    def _timeline(self, aggregate_id: UUID, asset: str, events: list[Any], end: datetime
                  ) -> list[Segment]:
        """Return the account's constant-debt segments of `asset` from its opening to `end`,
        and the point (end, end): the state after every event at or before `end`."""
        state = self.history.load_account(aggregate_id, 1)
        begin = state.last_at
        cuts = sorted({begin, *(e.at for e in events if begin < e.at < end)})
        pending = iter(events)
        upcoming = next(pending, None)
        segments: list[Segment] = []
        for here, there in zip(cuts, [*cuts[1:], end], strict=True):
            while upcoming is not None and upcoming.at <= here:
                upcoming.mutate(state)
                upcoming = next(pending, None)
            segments += self._segments_between(state, asset, here, there)
        while upcoming is not None and upcoming.at <= end:
            upcoming.mutate(state)
            upcoming = next(pending, None)
        terms = self.refs.data.asset_terms(asset, end)
        debt = liability(self._coin_equity(state, asset, end))
        moment = to_micros(end)
        segments.append((moment, moment, debt, terms.interest if terms else None))
        return segments

    def _segments_between(self, state: Account, asset: str, here: datetime, there: datetime
                          ) -> list[Segment]:
        """The constant-debt segments of [here, there) while the account does not change:
        cut at every mark of its cross positions settled in `asset` and every change of the
        asset's terms."""
        if here >= there:
            return []
        cuts = {to_micros(here)}
        for held in state.positions.values():
            self.refs.instrument(held["symbol"])
            terms = self.refs.data.instrument_terms(held["symbol"], here)
            if held["margin_type"] == CROSS and terms is not None and terms.settle == asset:
                history = self.refs.data.instruments[held["symbol"]]
                cuts.update(t for t, _ in history.marks.between(here, there))
                cuts.update(t for t, _ in history.terms.between(here, there))
        series = self.refs.data.assets[asset].terms
        cuts.update(t for t, _ in series.between(here, there))
        points = sorted(t for t in cuts if t < to_micros(there))
        segments: list[Segment] = []
        for start, stop in zip(points, [*points[1:], to_micros(there)], strict=True):
            moment = from_micros(start)
            debt = liability(self._coin_equity(state, asset, moment))
            asset_terms = series.at(moment)
            segments.append((start, stop, debt,
                             asset_terms.interest if asset_terms else None))
        return segments

    def _state_since(
        self, account: Account, asset: str, end: datetime
    ) -> tuple[Account, datetime, list[Any], Decimal] | None:
        """Return where accrual resumes: the account as it was then (a private copy), that
        time, the account's events after it up to `end`, and the interest carried from it."""
        aggregate_id = account_id(account.name)
        last = self.history.version_at(aggregate_id, to_micros(end))
        if last is None:
            return None
        start = account.interest_from.get(asset)
        checkpoint = self.history.interest_checkpoint(aggregate_id, asset, to_micros(end))
        carried = ZERO
        if checkpoint is not None and (start is None or checkpoint[0] >= to_micros(start)):
            begin, first, carried = from_micros(checkpoint[0]), checkpoint[1], Decimal(
                checkpoint[2])
        elif start is not None:
            begin, first = start, self.history.version_at(aggregate_id, to_micros(start)) or 1
        else:
            begin, first = None, 1
        first = min(first, last)
        state = self._account_copy(aggregate_id, first)
        if begin is None:
            begin = state.last_at
        later = self.history.events(aggregate_id, gt=first, lte=last) if last > first else []
        return state, begin, later, carried

    def _account_copy(self, aggregate_id: UUID, version: int) -> Account:
        cached = self._copies.get(aggregate_id)
        if cached is not None and cached[0] == version:
            return deepcopy(cached[1])
        return self.history.load_account(aggregate_id, version)

    def _accrue_between(self, state: Account, asset: str, here: datetime, there: datetime
                        ) -> tuple[Decimal, bool]:
        """Interest over [here, there), while the account itself does not change: only the
        marks of its cross positions settled in `asset` and the asset's terms can move."""
        if here >= there:
            return ZERO, False
        wallet = state.balances.get(asset, ZERO)
        positions = []
        for held in state.positions.values():
            self.refs.instrument(held["symbol"])  # a fresh process may not have loaded it yet
            terms = self.refs.data.instrument_terms(held["symbol"], here)
            if held["margin_type"] == CROSS and terms is not None and terms.settle == asset:
                positions.append((held, terms))
        cuts = {to_micros(here)}
        if positions:
            floor = lowest_equity(wallet, (
                (held["qty"], held["entry_price"], terms.contract_size, terms.is_inverse,
                 self._marks_during(held["symbol"], here, there) or [held["entry_price"]])
                for held, terms in positions))
            if floor >= ZERO:
                return ZERO, False  # no liability at any mark the interval saw
            for held, _ in positions:
                history = self.refs.data.instruments[held["symbol"]]
                cuts.update(t for t, _ in history.marks.between(here, there))
                cuts.update(t for t, _ in history.terms.between(here, there))
        elif wallet >= ZERO:
            return ZERO, False
        series = self.refs.data.assets[asset].terms
        cuts.update(t for t, _ in series.between(here, there))
        points = sorted(t for t in cuts if t < to_micros(there))
        segments = []
        had_debt = False
        for start, stop in zip(points, [*points[1:], to_micros(there)], strict=True):
            moment = from_micros(start)
            debt = liability(self._coin_equity(state, asset, moment))
            asset_terms = series.at(moment)
            interest = asset_terms.interest if asset_terms else None
            had_debt = had_debt or (debt > ZERO and interest is not None)
            if interest is not None and interest.accrual is not InterestAccrual.PER_SECOND:
                interest = None  # issue 14: accrued by whole hours (_hourly_accrued)
            segments.append((debt, interest, Decimal(stop - start) / Decimal(1_000_000)))
        return accrued_over(segments), had_debt

    def _coin_equity(self, account: Account, asset: str, at: datetime) -> Decimal:
        positions = []
        for held in account.positions.values():
            if held["margin_type"] != CROSS:
                continue
            self.refs.instrument(held["symbol"])
            terms = self.refs.data.instrument_terms(held["symbol"], at)
            if terms is None or terms.settle != asset:
                continue
            mark = self.refs.data.mark_price(held["symbol"], at) or held["entry_price"]
            positions.append((held["qty"], held["entry_price"], mark, terms.contract_size,
                              terms.is_inverse))
        return coin_equity(account.balances.get(asset, ZERO), positions)

    def _marks_during(self, symbol: str, here: datetime, there: datetime) -> list[Decimal]:
        """Return the marks in force at some moment of [here, there)."""
        history = self.refs.data.instruments[symbol]
        marks = [history.marks.at(here)] if history.marks.at(here) is not None else []
        marks += [price for t, price in history.marks.between(here, there)
                  if t < to_micros(there)]
        return [m for m in marks if m is not None]

    def charge_interest(self, cmd: c.ChargeInterestCmd) -> str:
        """Charge, per account and asset, the interest accrued up to `at` as one amount
        (DESIGN §6.8), and checkpoint what was looked at. Idempotent by `at`; nothing
        accrued, no event."""
        bearing = [name for name in sorted(self.uow.stream_names("asset"))
                   if self._bears_interest(name)]
        if bearing:
            self.uow.load_accounts(self.uow.account_names())
        for name in self.uow.account_names():
            account = self.uow.find_account(name)
            if account is None or opened_after(account, cmd.at):
                continue
            owable = self._owable_assets(account)
            for asset in bearing:
                if asset in owable:
                    self._charge(account, asset, cmd.at)
        return APPLIED

    def _charge(self, account: Account, asset: str, at: datetime) -> None:
        accrued, _, folded = self.accrued_interest(account, asset, at)
        on_time = account.last_at <= at
        if accrued > ZERO:
            terms = self.refs.require_asset(asset)
            account.charge_interest(period=at, asset=asset, accrued=accrued,
                                    precision=terms.precision,
                                    rounding=self.refs.require_asset(asset, at).payment_rounding)
            self.uow.touch(account)
            accrued = ZERO
            folded = account if on_time else None
        if on_time and folded is not None and folded.version == account.version:
            # Nothing else can land at or before `at` out of order: checkpoint here.
            stream = account.id.hex
            self.uow.side.checkpoints.append((stream, asset, to_micros(at), account.version,
                                           str(accrued)))
            self._copies[account.id] = (account.version, deepcopy(account))

    def _owable_assets(self, account: Account) -> set[str]:
        """Return the coins the account can owe: those it has held, and the settle assets of
        every symbol it has traded (an unrealised loss alone can make a debt)."""
        for symbol in account.symbols:
            self.refs.instrument(symbol)
        return self.refs.data.owable_assets(account.balances, account.interest_charged,
                                            account.symbols)

    def _bears_interest(self, asset: str) -> bool:
        self.refs.asset(asset)
        return self.refs.data.bears_interest(asset)
