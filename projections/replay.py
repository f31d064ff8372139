"""The projections' replay: accounts and reference data rebuilt in memory from the log.

The read models that hold figures (margin state after each event, debts and interest as of the
last event) need the account as it was after an event and the prices and parameters in force at
that event's `at`. Rather than load each account from the store per event, the runner replays:

- **reference data** — every asset, instrument and settings event is fed, in notification order,
  into a `ReferenceData` (the ledger's own time series), so `market(at)` is exactly what the
  ledger's `market_for` builds;
- **accounts** — each account event is applied (`event.mutate`) to the account as the projection
  last saw it (a bounded LRU cache; a miss loads the account at the previous version from the
  store, snapshots helping).

Figures come from the ledger's own code (`rules.evaluate`, `Ledger.interest_view`), never from a
second formula: `ReplayLedger` holds the ledger's readers (account history, the reference reader
`fed` from the log instead of the store), so its interest code reads the projection's series.

Late reference data. A price or parameter change recorded after account events whose `at` is at
or after its own (a mark sent a moment late) changes the figures of those events as the ledger
now replays them (DESIGN §9: read model = replay). Figures are computed at the end of each page,
so lateness within a page costs nothing; a change older than what earlier pages committed is
kept in `late` and the read models recompute the rows it reaches (`at` from the change up to the
next value of the same series), loading those account versions again when they are no longer
cached.

Start-up (issue 11, not yet by point reads). `restore` still decodes every reference event up
to the runner's position (1.6 s CPU per 100k marks). The writer's answer
(`ledger.application.asof.TailSeries`: heads and point look-ups over the versions ≤ a bound,
plus an in-memory tail) fits the replay too — the bound is each stream's version at the
position (`MAX(originator_version) … WHERE originator_id = ? AND id <= position`, a backward
walk of the stream from its head, short when the runner is near it), and what the runner reads
after is the tail — but two readers here use a series whole and would need a look-up of their
own first: `late_changes` (the next value after a late change: `series.times`) and the market
cache's spans (`_changes`: every reference time, which a cold runner would have to read or
treat as unknown, i.e. no cache before the position). Until then a fed `TailSeries` would load
whole on the first late change, so the swap is left for a change with its own property tests.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from ledger.application.reference import AssetHistory, InstrumentHistory, ReferenceData, Series
from ledger.application.service import Ledger
from ledger.domain.account import CROSS, Account
from ledger.domain.reference import Asset, Instrument, Reference, Settings
from ledger.numbers import ZERO
from ledger.rules import margin as rules
from ledger.rules.positions import unrealized_pnl
from ledger.rules.terms import AssetTerms, InstrumentTerms, Mode
from ledger.times import to_micros

ACCOUNT_CACHE = 20_000
SNAPSHOT_CACHE = 50_000
MARKET_CACHE = 10_000
CHANGES_KEPT = 65_536  # reference-change times kept for the market cache's spans (512 KiB)


def reference_topics() -> tuple[str, ...]:
    """Return the topics of every reference-data event (assets, instruments, settings)."""
    topics = []
    for aggregate in (Asset, Instrument, Settings):
        for value in vars(aggregate).values():
            if isinstance(value, type) and issubclass(value, Reference.Event):
                topics.append(get_topic(value))
    return tuple(sorted(topics))


class ReplayLedger:
    """The ledger's readers over the projection's own reference series; it never writes.

    The store is opened as the ledger opens it (decoding, snapshots, the time index), but its
    reference reader is `fed`: the series come from the log in notification order instead of
    being loaded whole from the store, so every figure is computed with what the projection
    has seen and nothing else. Account versions come from the ledger's `AccountHistory`, the
    interest view from its interest handlers (one formula, one home)."""

    name = Ledger.name  # same store, same tables

    def __init__(self, url: str, reference: ReferenceData | None = None) -> None:
        self.store = Ledger(url, env={"CREATE_TABLE": "n"})
        self.store.refs.fed(reference if reference is not None else ReferenceData())
        self.mapper = self.store.mapper
        self.recorder = self.store.recorder
        self.index = self.store.index
        self.history = self.store.history

    @property
    def reference(self) -> ReferenceData:
        return self.store.refs.data

    @reference.setter
    def reference(self, data: ReferenceData) -> None:
        self.store.refs.fed(data)

    def load_account(self, aggregate_id: UUID, version: int | None) -> Account:
        return self.history.load_account(aggregate_id, version)

    def interest_view(self, account: Account, at: datetime) -> dict[str, dict[str, Decimal]]:
        return self.store.interest.interest_view(account, at)

    def require_asset(self, name: str, at: datetime | None = None) -> AssetTerms:
        return self.store.refs.require_asset(name, at)

    def require_instrument(self, symbol: str, at: datetime | None = None) -> InstrumentTerms:
        return self.store.refs.require_instrument(symbol, at)

    def discard(self) -> None:
        self.store.discard()

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True, slots=True)
class Step:
    """An account event of the current page, awaiting its figures."""

    account_id: UUID
    account: str
    version: int
    at: datetime
    notification_id: int
    event_type: str
    snapshot: rules.AccountSnapshot

    @property
    def at_micros(self) -> int:
        return to_micros(self.at)


@dataclass(frozen=True, slots=True)
class Late:
    """A reference change older than rows already committed: rows in [start, end) may move."""

    kind: str  # asset / instrument / settings
    name: str
    start: int  # micros
    end: int | None  # micros of the next value of the same series (None: none yet)


@dataclass
class Page:
    """What the replay saw in the current page."""

    steps: list[Step] = field(default_factory=list)
    by_account: dict[UUID, list[Step]] = field(default_factory=dict)
    touched: dict[UUID, Account] = field(default_factory=dict)  # state after the page
    opened: set[UUID] = field(default_factory=set)
    before: dict[UUID, rules.AccountSnapshot | None] = field(default_factory=dict)
    before_at: dict[UUID, datetime] = field(default_factory=dict)  # last `at` before the page
    late: list[tuple[str, str, Series[Any], int]] = field(default_factory=list)
    figures: dict[tuple[UUID, int], rules.AccountFigures] = field(default_factory=dict)
    last_versions: dict[UUID, int] = field(default_factory=dict)  # the account's last step


def market_for(reference: ReferenceData, snapshot: rules.AccountSnapshot,
               at: datetime) -> rules.Market:
    """Return the market `Ledger.market_for` builds for this holding at `at` (the same inputs
    to `ReferenceData.market`: the symbols of positions and orders, the assets of balances and
    spot in use)."""
    symbols = {p.symbol for p in snapshot.positions} | set(snapshot.orders)
    assets = set(snapshot.balances) | set(snapshot.spot_in_use)
    return reference.market(at, assets, symbols)


def figures_at(reference: ReferenceData, snapshot: rules.AccountSnapshot,
               at: datetime) -> rules.AccountFigures:
    """Return the account's figures at `at` (no limits: ratios and margins only)."""
    return rules.evaluate(snapshot, market_for(reference, snapshot, at), limits=False)


def involves(reference: ReferenceData, snapshot: rules.AccountSnapshot, kind: str,
             name: str) -> bool:
    """Tell whether a change of this reference stream can move this holding's figures."""
    if kind == "settings":
        return snapshot.mode is Mode.PORTFOLIO
    symbols = {p.symbol for p in snapshot.positions} | set(snapshot.orders)
    if kind == "instrument":
        return name in symbols
    assets = set(snapshot.balances) | set(snapshot.spot_in_use)
    for symbol in symbols:
        history = reference.instruments.get(symbol)
        for terms in history.terms.values if history else ():
            assets.update((terms.settle, terms.base))
    return name in assets


def bears_interest(reference: ReferenceData, asset: str) -> bool:
    """Tell whether the asset has ever carried interest terms (the ledger's own test)."""
    return reference.bears_interest(asset)


class Replay:
    """Accounts and reference data as of the runner's position, plus the current page."""

    def __init__(self, ledger: ReplayLedger) -> None:
        self.ledger = ledger
        self.reference = ledger.reference
        self.committed_until: int | None = None  # max `at` (micros) of committed account events
        self.page = Page()
        self._streams: dict[UUID, tuple[str, str]] = {}  # reference stream → (kind, name)
        self._accounts: OrderedDict[UUID, Account] = OrderedDict()
        self._snapshots: OrderedDict[tuple[UUID, int], rules.AccountSnapshot] = OrderedDict()
        # Markets by what they price and the span between two reference changes they fall in
        # (`market`); emptied whenever reference data arrives.
        # `at` (micros) of the reference events later than `_changes_floor`, sorted: the
        # spans the market cache keys on. Bounded (`CHANGES_KEPT`): older times are dropped
        # and a look-up at or before the floor is not cached (`market`).
        self._changes = array("q")
        self._changes_floor: int | None = None
        self._markets: dict[tuple[frozenset[str], frozenset[str], int], rules.Market] = {}

    # ------------------------------------------------------------------ feeding

    def apply(self, event: Any, notification_id: int) -> Account | None:
        """Apply one event of the log; return the account it moved (None: reference data)."""
        if isinstance(event, Account.Event):
            return self._apply_account(event, notification_id)
        if isinstance(event, Reference.Event):
            self._apply_reference(event)
        return None

    def _apply_account(self, event: Account.Event, notification_id: int) -> Account:
        account_id = event.originator_id
        account = self._accounts.get(account_id)
        version = event.originator_version
        if account is None or account.version != version - 1:
            account = None if version == 1 else self.account_at(account_id, version - 1)
        if account_id not in self.page.before:
            self.page.before[account_id] = None if account is None else account.snapshot()
            if account is not None:
                self.page.before_at[account_id] = account.last_at
        account = event.mutate(account)
        assert isinstance(account, Account)
        self._remember(account)
        if isinstance(event, Account.AccountOpened):
            self.page.opened.add(account_id)
        self.page.touched[account_id] = account
        step = Step(account_id, account.name, version, event.at, notification_id,
                    type(event).__name__, account.snapshot())
        self.page.steps.append(step)
        self.page.by_account.setdefault(account_id, []).append(step)
        self.page.last_versions[account_id] = version
        return account

    def _apply_reference(self, event: Reference.Event) -> None:
        stream = event.originator_id
        if isinstance(event, (Asset.AssetListed, Instrument.InstrumentListed)):
            self._streams[stream] = ("asset" if isinstance(event, Asset.AssetListed)
                                     else "instrument", event.name)
        elif isinstance(event, Settings.PortfolioMarginListed):
            self._streams[stream] = ("settings", event.name)
        kind, name = self._streams[stream]
        series: Series[Any] | None = None
        if kind == "asset":
            history = self.reference.assets.setdefault(name, AssetHistory())
            history.observe(event)
            series = _asset_series(history, event)
        elif kind == "instrument":
            history_i = self.reference.instruments.setdefault(name, InstrumentHistory())
            history_i.observe(event)
            series = _instrument_series(history_i, event)
        else:
            self.reference.settings.observe(event)
            series = self.reference.settings.portfolio
        micros = to_micros(event.at)
        self._note_change(micros)
        self._markets.clear()
        if series is not None and self.committed_until is not None \
                and micros <= self.committed_until:
            self.page.late.append((kind, name, series, micros))

    # ------------------------------------------------------------------ reading

    def account_at(self, account_id: UUID, version: int) -> Account:
        """Return the account after `version` (cache, else the store)."""
        cached = self._accounts.get(account_id)
        if cached is not None and cached.version == version:
            return cached
        return self.ledger.load_account(account_id, version)

    def snapshot_at(self, account_id: UUID, version: int) -> rules.AccountSnapshot:
        """Return what the margin rules need of the account after `version`."""
        for step in self.page.by_account.get(account_id, ()):
            if step.version == version:
                return step.snapshot
        key = (account_id, version)
        cached = self._snapshots.get(key)
        if cached is not None:
            return cached
        snapshot = self.account_at(account_id, version).snapshot()
        self._keep_snapshot(key, snapshot)
        return snapshot

    def figures(self, step: Step) -> rules.AccountFigures:
        """Return the figures after this step, at its `at` (computed once per page)."""
        key = (step.account_id, step.version)
        found = self.page.figures.get(key)
        if found is None:
            found = rules.evaluate(step.snapshot, self.market(step.snapshot, step.at),
                                   limits=False)
            self.page.figures[key] = found
        return found

    def margin(self, step: Step) -> rules.MarginFigures:
        """Return the account-level margin figures after this step, at its `at`.

        The last step of an account in the page also needs its debts (read models `debts`
        and `interest`), so it gets every figure (`figures`, kept for them); any other step
        only the margin figures, which `rules.margin_figures` computes without the positions'
        and the assets' figures — the same `_core` and `_margin` as `evaluate`'s, so the same
        values at about half the cost.
        """
        if self.page.last_versions.get(step.account_id) == step.version:
            return self.figures(step).margin
        return rules.margin_figures(step.snapshot, self.market(step.snapshot, step.at))

    def market(self, snapshot: rules.AccountSnapshot, at: datetime) -> rules.Market:
        """Return `market_for(reference, snapshot, at)`, built once per span of time.

        A market is the value of every reference series it reads at `at`, so it is the same
        at any instant between two reference changes (of any stream: a coarser test than
        the series it reads, never a wrong one), except for its own `at` (which options and
        portfolio units read): a market found is taken with `at` replaced. New reference
        data empties the cache (a late value can fall into any span).
        """
        symbols = frozenset([p.symbol for p in snapshot.positions]).union(snapshot.orders)
        assets = frozenset(snapshot.balances).union(snapshot.spot_in_use)
        micros = to_micros(at)
        if self._changes_floor is not None and micros <= self._changes_floor:
            # Before the kept spans: the changes that split this time are forgotten, so
            # the span is unknown; build the market without the cache.
            return self.reference.market(at, assets, symbols)
        key = (assets, symbols, bisect_right(self._changes, micros))
        found = self._markets.get(key)
        if found is None:
            if len(self._markets) >= MARKET_CACHE:
                self._markets.clear()
            found = self.reference.market(at, assets, symbols)
            self._markets[key] = found
        elif found.at != at:
            found = replace(found, at=at)
        return found

    def _note_change(self, micros: int) -> None:
        """Keep the time of a reference change for the market cache's spans, bounded.

        Invariant: `_changes` holds the time of every change later than `_changes_floor`
        (all of them while it is None), so between two kept neighbours, or between the floor
        and the first kept one, no change was forgotten and a span's market is one value.
        When the array passes twice `CHANGES_KEPT`, the oldest times are dropped (with every
        equal time, so the invariant holds) and the floor moves up to the last dropped; a
        late change at or before the floor is not kept (it falls in the uncached region).
        The market cache is emptied on every change, so indices never outlive a trim.
        """
        if self._changes_floor is not None and micros <= self._changes_floor:
            return
        insort(self._changes, micros)
        if len(self._changes) > 2 * CHANGES_KEPT:
            cut = bisect_right(self._changes, self._changes[-CHANGES_KEPT - 1])
            self._changes_floor = self._changes[cut - 1]
            del self._changes[:cut]

    def last_steps(self) -> Iterator[Step]:
        """Yield the last step of each account touched in the page."""
        for steps in self.page.by_account.values():
            yield steps[-1]

    def late_changes(self) -> list[Late]:
        """Return the late reference changes of the page with the end of the rows they reach
        (the next value of the same series, as of the end of the page)."""
        found = []
        for kind, name, series, start in self.page.late:
            index = bisect_right(series.times, start)
            end = series.times[index] if index < len(series.times) else None
            found.append(Late(kind, name, start, end))
        return found

    def interest_candidates(self, account: Account) -> bool:
        """Tell whether the account may have owed an interest-bearing asset during the page,
        or was ever charged one: otherwise its interest view cannot have changed (no
        liability, nothing accrued) and the costly integration is skipped.

        Each state the account went through is checked over the time it was in force: the
        state before the page from its last event to the page's first, then the state after
        each event. Its coin equity can only be negative if it is with every cross position
        valued at its worst mark in that interval (PnL is monotonic in the mark, linear and
        inverse alike), so this test may say yes for nothing, never no for a debt.
        """
        owable = self.reference.owable_assets(account.balances, account.interest_charged,
                                              account.symbols)
        bearing = {a for a in owable if self.reference.bears_interest(a)}
        if not bearing:
            return False
        if bearing & set(account.interest_charged):
            return True
        steps = self.page.by_account.get(account.id, [])
        intervals = []
        before = self.page.before.get(account.id)
        if before is not None and steps:
            intervals.append((before, self.page.before_at[account.id], steps[0].at))
        for here, there in zip(steps, [*steps[1:], steps[-1]], strict=True):
            intervals.append((here.snapshot, here.at, there.at))
        return any(self._may_owe(state, asset, start, end)
                   for state, start, end in intervals for asset in bearing)

    def _may_owe(self, state: rules.AccountSnapshot, asset: str, start: datetime,
                 end: datetime) -> bool:
        """Tell whether `asset`'s coin equity could be negative between start and end."""
        worst = state.balances.get(asset, ZERO)
        for position in state.positions:
            if position.margin_type != CROSS:
                continue
            history = self.reference.instruments.get(position.symbol)
            if history is None:
                continue
            terms = [t for t in (history.terms.at(start),) if t is not None]
            terms += [t for _, t in history.terms.between(start, end)]
            marks = [history.marks.at(start) or position.entry_price]
            marks += [m for _, m in history.marks.between(start, end)]
            pnl = [unrealized_pnl(position.qty, position.entry_price, mark, t.contract_size,
                                  t.is_inverse)
                   for t in terms if t.settle == asset for mark in marks]
            if pnl:
                worst += min(pnl)
        return worst < ZERO

    def interest_view(self, account: Account, at: datetime) -> dict[str, dict[str, Decimal]]:
        """Return the ledger's interest view of the account at `at` (accrued, charged)."""
        return self.ledger.interest_view(account, at)

    # ------------------------------------------------------------------ pages

    def end_page(self) -> None:
        """Forget the page once committed: its events become the committed past."""
        for step in self.page.steps:
            self._keep_snapshot((step.account_id, step.version), step.snapshot)
            if self.committed_until is None or step.at_micros > self.committed_until:
                self.committed_until = step.at_micros
        self.page = Page()

    def restore(self, events: Iterable[Any], committed_until: int | None) -> None:
        """Rebuild the reference series from the reference events up to the position."""
        for event in events:
            self._apply_reference(event)
        self.page = Page()
        self.committed_until = committed_until

    def _remember(self, account: Account) -> None:
        self._accounts[account.id] = account
        self._accounts.move_to_end(account.id)
        while len(self._accounts) > ACCOUNT_CACHE:
            self._accounts.popitem(last=False)

    def _keep_snapshot(self, key: tuple[UUID, int], snapshot: rules.AccountSnapshot) -> None:
        self._snapshots[key] = snapshot
        self._snapshots.move_to_end(key)
        while len(self._snapshots) > SNAPSHOT_CACHE:
            self._snapshots.popitem(last=False)


def _asset_series(history: AssetHistory, event: Any) -> Series[Any] | None:
    if isinstance(event, (Asset.AssetListed, Asset.AssetConfigured)):
        return history.terms
    if isinstance(event, Asset.IndexPriceSet):
        return history.index
    if isinstance(event, Asset.RiskUnitConfigured):
        return history.risk_unit
    return None


def _instrument_series(history: InstrumentHistory, event: Any) -> Series[Any] | None:
    if isinstance(event, (Instrument.InstrumentListed, Instrument.InstrumentConfigured)):
        return history.terms
    if isinstance(event, Instrument.MarkPriceSet):
        return history.marks
    if isinstance(event, Instrument.MarkIvSet):
        return history.ivs  # options' mark IV (issue 15)
    return None  # rates, funding periods and deliveries do not enter the figures
