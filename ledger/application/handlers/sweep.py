"""The margin sweep: automatic top-ups, auto-exchange, margin calls and liquidation
triggers, in that order (DESIGN §6.5, §6.9, 6.11; PORTFOLIO-MARGIN §10.10).
"""


from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from ledger.application import commands as c
from ledger.application.handlers.base import (
    APPLIED,
    Handlers,
)
from ledger.application.handlers.settlement import Part
from ledger.application.history import AccountHistory
from ledger.application.reader import ReferenceReader
from ledger.application.unit_of_work import UnitOfWork
from ledger.domain.account import ISOLATED, Account
from ledger.numbers import ZERO
from ledger.rules import margin as rules
from ledger.rules.exchange import (
    auto_exchange_deficit,
    auto_exchange_givers,
    auto_exchange_shares,
)
from ledger.rules.liquidation import is_at_liquidation, isolated_liquidation_price
from ledger.rules.liquidation_plan import liquidation_plan
from ledger.rules.ratios import is_at_call_level
from ledger.rules.terms import (
    MARGIN_CALL_LEVEL,
    Mode,
)
from ledger.times import from_micros, to_micros


class SweepCommands(Handlers):
    """The margin sweep."""

    def __init__(self, uow: UnitOfWork, refs: ReferenceReader, history: AccountHistory) -> None:
        super().__init__(uow, refs, history)
        self._sweep_times: list[int] | None = None  # `at` of every sweep in the store
        # What the last sweep found per account: (its time, the account's version after it,
        # the flags). A cache of re-evaluating the account as of that sweep, used only while
        # it is provably the same (see `_flags_at`), so outcomes never depend on it.
        self._sweep_memory: dict[UUID, tuple[int, int, SweepFlags]] = {}
        self.swept_skipped = 0  # accounts the last sweep left alone: their history is later
        self.part: Part | None = None  # set while a shard worker sweeps its own accounts
        self.parts_done = False  # set: every part is committed, record the sweep only
        uow.resets.append(self._reset)
        uow.foreign_writes.append(self._reset)
        refs.recorded.append(self._reference_recorded)

    @property
    def _remembered_until(self) -> int:
        return self._sweep_times_list()[-1] if self._sweep_times_list() else -1

    def _reset(self) -> None:
        self._sweep_times = None
        self._sweep_memory.clear()

    def _reference_recorded(self, at: datetime) -> None:
        """A price or term recorded at or before a remembered sweep changes what that sweep
        would find now: forget what it found."""
        if self._sweep_memory and to_micros(at) <= self._remembered_until:
            self._sweep_memory.clear()

    def check_margin(self, cmd: c.CheckMarginCmd) -> str:
        """Run the margin sweep at `at`: automatic top-ups, auto-exchange, margin calls,
        liquidation triggers, in that order (contract, DESIGN 6.11). Idempotent by `at`.

        A signal is about the present: the sweep acts only on accounts whose history ends at
        or before `at`; an account that has moved past it is skipped (counted in
        `swept_skipped`, no event).
        In parts (workers.py): `part` set, the accounts of one shard only and the sweep is not
        recorded; `parts_done` set, the sweep is recorded and no account swept. An account
        that holds this sweep's events already (a part committed before the run stopped) is
        not swept again."""
        if self.parts_done:
            self._add_sweep_time(cmd.at)
            return APPLIED
        previous = self._previous_sweep(cmd.at)
        names = self.uow.account_names()
        if self.part is not None:
            names = [name for name in names if self.part.owns(name)]
        self.uow.load_accounts(names)
        self.swept_skipped = 0
        for name in names:
            account = self.uow.find_account(name)
            if account is None:
                continue
            if account.last_at > cmd.at:
                self.swept_skipped += 1
                continue
            if account.last_at == cmd.at and self._swept_before(account, cmd.at):
                continue
            self._sweep_account(account, cmd.at, previous)
        # A part notes the sweep too (in memory): its worker's next sweep compares with this
        # one, as one process does (worker 0's marker writes no event, so no `catch_up`
        # resets the other workers' list; a discarded part resets it).
        self._add_sweep_time(cmd.at)
        return APPLIED

    def _swept_before(self, account: Account, at: datetime) -> bool:
        """Tell whether the account holds events of the sweep at `at` already (a part
        committed before a run stopped). Every sweep event is posted at `at` (the sweep acts
        only on accounts whose history ends by then), so only an account whose history ends
        at `at` can hold one."""
        before = self.history.version_at(account.id, to_micros(at) - 1)
        return any(isinstance(event, SWEEP_EVENTS) and event.at == at
                   for event in self.history.events(account.id, gt=before))

    def _opened_after(self, account: Account, at: datetime) -> bool:
        return account.version == 1 and account.last_at > at

    def _sweep_times_list(self) -> list[int]:
        if self._sweep_times is None:
            self._sweep_times = sorted(self.uow.index.command_times("check_margin|@"))
        return self._sweep_times

    def _previous_sweep(self, at: datetime) -> int | None:
        times = self._sweep_times_list()
        index = bisect_left(times, to_micros(at))
        return times[index - 1] if index else None

    def _add_sweep_time(self, at: datetime) -> None:
        times, micros = self._sweep_times_list(), to_micros(at)
        index = bisect_left(times, micros)
        if index == len(times) or times[index] != micros:  # a part noted it already
            times.insert(index, micros)

    def _sweep_account(self, account: Account, at: datetime, previous: int | None) -> None:
        if not account.positions and not account.orders and all(
                balance >= ZERO for balance in account.balances.values()):
            # Nothing to top up, exchange, call or liquidate: no requirement, no debt.
            self._sweep_memory[account.id] = (to_micros(at), account.version, SweepFlags())
            return
        market = self.refs.market_for(account, at)
        before = account.version
        self._top_up_isolated(account, market, at)
        self._auto_exchange(account, market, at)
        figures = rules.evaluate(account.snapshot(), market, limits=False)
        now = sweep_flags(account, market, figures)
        then = self._flags_at(account, previous)
        if Mode(account.mode) is not Mode.PORTFOLIO:
            if now.at_call and not then.at_call:
                account.issue_margin_call(at, figures.margin)
            if now.past_liquidation and not then.past_liquidation:
                account.trigger_cross_liquidation(at, figures.margin)
            for symbol in sorted(now.isolated_past - then.isolated_past):
                price, mark = now.isolated_prices[symbol]
                account.trigger_isolated_liquidation(at, symbol, price, mark)
        else:
            if now.at_call and not then.at_call:
                account.issue_margin_call(at, figures.margin)
            level = figures.margin.margin_level
            if level is not None and level <= market.portfolio.liquidation_level:
                # Portfolio mode plans again at every sweep at or below the level (§10.10).
                plan = liquidation_plan(account.snapshot(), market)
                account.plan_liquidation(at, figures.margin, plan, market.portfolio.target_level)
        if account.version != before:
            self.uow.touch(account)
        self._sweep_memory[account.id] = (to_micros(at), account.version, now)

    def _top_up_isolated(self, account: Account, market: rules.Market, at: datetime) -> None:
        for held in list(account.positions.values()):
            symbol = held["symbol"]
            if held["margin_type"] != ISOLATED or not account.auto_add.get(symbol):
                continue
            terms = market.instruments.get(symbol)
            if terms is None:
                continue  # not listed at the sweep's time: nothing to value it with
            mark = market.mark(symbol, held["entry_price"])
            state = account.isolated_view(symbol, terms)
            if not is_at_liquidation(rules.isolated_view(state, terms), mark):
                continue
            available = rules.available_after_withdrawal(account.snapshot(), market,
                                                         terms.settle, ZERO)
            account.top_up(at=account.posting_time(at), terms=terms, mark=mark,
                           available=available)

    def _flags_at(self, account: Account, previous: int | None) -> SweepFlags:
        """Return what the sweep at `previous` finds for this account: the account and prices
        as of `previous`, as the store holds them now. Remembered flags stand in for that only
        while the account has not changed since and no price or term at or before `previous`
        has been recorded since (so a split feed finds the same)."""
        if previous is None:
            return SweepFlags()
        remembered = self._sweep_memory.get(account.id)
        if remembered is not None and remembered[:2] == (previous, account.version):
            return remembered[2]
        moment = from_micros(previous)
        then = self.account_at(account.name, moment)
        if then is None:
            return SweepFlags()
        market = self.refs.market_for(then, moment)
        return sweep_flags(then, market, rules.evaluate(then.snapshot(), market, limits=False))

    def _auto_exchange(self, account: Account, market: rules.Market, at: datetime) -> None:
        """Cover coins whose negative balance is worth more than their threshold by
        converting the other positive assets pro rata to their effective collateral, at
        index × discount (seed 001; DESIGN §6.9 and 6.11)."""
        if Mode(account.mode) is Mode.SINGLE_ASSET:
            return
        for asset, wallet in sorted(account.balances.items()):
            terms = market.asset_terms(asset)
            index = market.index(asset)
            threshold, discount = terms.auto_exchange_threshold_usd, terms.auto_exchange_discount
            if index is None or threshold is None or discount is None:
                continue
            deficit = auto_exchange_deficit(wallet, index, threshold,
                                            terms.auto_exchange_trigger)
            if deficit <= ZERO:
                continue
            figures = rules.evaluate(account.snapshot(), market, limits=False)
            givers, total = auto_exchange_givers(asset, (
                (other, entry.equity, entry.index_price, entry.effective_usd)
                for other, entry in figures.collateral.items()))
            if total <= ZERO:
                continue
            shares = auto_exchange_shares(deficit, index, discount, givers, total,
                                          terms.precision)
            for other, received, given_exact, other_index in shares:
                precision = market.asset_terms(other).precision
                account.auto_exchange(at=at, asset=asset, received=received,
                                      with_asset=other, with_exact=given_exact,
                                      discount=discount, asset_index=index,
                                      with_index=other_index, with_precision=precision)


SWEEP_EVENTS = (Account.MarginToppedUp, Account.AutoExchanged, Account.MarginCallIssued,
                Account.LiquidationTriggered, Account.LiquidationStepPlanned)
"""The events only a sweep records."""


@dataclass(frozen=True)
class SweepFlags:
    """What a sweep found for one account: the crossings it signals are changes of these."""

    at_call: bool = False
    past_liquidation: bool = False
    isolated_past: frozenset[str] = frozenset()
    isolated_prices: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


def sweep_flags(account: Account, market: rules.Market, figures: rules.AccountFigures
                ) -> SweepFlags:
    margin = figures.margin
    at_call = margin.past_liquidation or is_at_call_level(
        margin.maintenance_margin_usd, margin.effective_equity_usd, MARGIN_CALL_LEVEL)
    if margin.margin_ratio is not None and Mode(account.mode) is Mode.SINGLE_ASSET:
        at_call = at_call or margin.margin_ratio >= MARGIN_CALL_LEVEL
    past: set[str] = set()
    prices: dict[str, tuple[Decimal, Decimal]] = {}
    for held in account.positions.values():
        if held["margin_type"] != ISOLATED:
            continue
        symbol = held["symbol"]
        terms = market.instruments[symbol]
        mark = market.mark(symbol, held["entry_price"])
        view = rules.isolated_view(account.isolated_view(symbol, terms), terms)
        price = isolated_liquidation_price(view, mark)
        if price is not None and is_at_liquidation(view, mark):
            past.add(symbol)
            prices[symbol] = (price, mark)
    return SweepFlags(at_call, margin.past_liquidation, frozenset(past), prices)
