"""The reader of reference data in force at T: assets, instruments, settings and their prices.

Each stream is brought in the first time anything asks for it (`ReferenceData`'s loader), so a
lookup at T takes the last value with `at ≤ T` and never depends on what the process happened
to load before. A stream is rebuilt by point reads (`asof.load_for_writer`): its terms and
periodic records whole, its prices' heads, its last event (version and hash to chain from);
prices before a head are point look-ups, those this process records kept in memory. The
reference aggregates themselves live in the unit of work's
working set: reference commands change them there, and `record()` feeds the new events into the
series at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from ledger.application.asof import load_for_writer, reference_stream_id
from ledger.application.reference import (
    AssetHistory,
    InstrumentHistory,
    ReferenceData,
    Series,
)
from ledger.application.unit_of_work import UnitOfWork
from ledger.domain.account import Account
from ledger.domain.ids import asset_id, instrument_id, portfolio_settings_id
from ledger.domain.reference import Asset, Instrument, Reference, Settings
from ledger.errors import UnknownAssetError, UnknownSymbolError
from ledger.rules import margin as rules
from ledger.rules.terms import AssetTerms, InstrumentTerms

T = TypeVar("T")
SETTINGS = "portfolio_margin"  # the name of the one settings stream
# Streams are rebuilt by point reads (`asof.load_for_writer`): never a whole price stream
# (issue 11). False: read whole, as before (what tests/application/test_cold_writer.py
# compares with).
POINT_LOADS = True


class ReferenceReader:
    """Reference data in force at any T, loaded on first use from the store."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._from_store = True
        self.point_loads = POINT_LOADS
        self.recorded: list[Callable[[datetime], None]] = []  # told the `at` of each record
        self._looked_up: set[tuple[str, str]] = set()  # (kind, name) asked for
        self._missing: set[UUID] = set()  # streams asked for that the store did not hold
        self.data = ReferenceData(self._load_stream)
        uow.resets.append(self.reset)
        uow.foreign_writes.append(self._forget_missing)
        uow.followers.append(self._follow)

    def reset(self) -> None:
        self._looked_up.clear()
        self._missing.clear()
        if self._from_store:
            self.data = ReferenceData(self._load_stream)

    def fed(self, data: ReferenceData) -> None:
        """Read only the series given (the read side feeds them from the log in notification
        order), never the store: every figure is computed with what the caller has seen."""
        self._from_store = False
        self.data = data

    @contextmanager
    def reading(self, data: Callable[[], ReferenceData]) -> Iterator[None]:
        """Answer from `data()` alone inside the block (an as-of read by point look-ups,
        `ledger.application.asof`), then from the store's series again. Left as it is when
        this reader is fed (the read side) or when the unit of work holds events not yet
        written (only the series know them)."""
        if not self._from_store or self.uow.touched:
            yield
            return
        saved = self.data
        self._from_store, self.data = False, data()
        try:
            yield
        finally:
            self._from_store, self.data = True, saved

    def _forget_missing(self) -> None:
        """Another writer may have created a stream this reader found missing."""
        self._looked_up.clear()
        self._missing.clear()

    def _follow(self, aggregate: Reference, event: Any) -> None:
        self.series(_kind(aggregate), aggregate.name).observe(event)

    # ------------------------------------------------------------------ loading

    def _load_stream(self, kind: str, name: str) -> None:
        """Bring a stream in the first time anything asks for it (the loader of
        `ReferenceData`): every lookup sees the store's history, not this process's past."""
        if (kind, name) in self._looked_up:
            return
        self._looked_up.add((kind, name))
        self._load(reference_stream_id(kind, name), kind, name)

    def _load(self, aggregate_id: UUID, kind: str, name: str) -> Reference | None:
        refs = self.uow.refs
        if aggregate_id in refs:
            return refs[aggregate_id]
        if aggregate_id in self._missing or not self._from_store:
            return None
        self._missing.add(aggregate_id)  # until found: a lookup while loading finds nothing
        if name not in self.uow.stream_names(kind):
            return None
        if self.point_loads:
            loaded = load_for_writer(self.uow.app, aggregate_id, kind)
            if loaded is not None:
                if kind == "asset":
                    dict.__setitem__(self.data.assets, name, loaded.history)
                elif kind == "instrument":
                    dict.__setitem__(self.data.instruments, name, loaded.history)
                else:
                    for event in loaded.terms:
                        self.data.settings_series.observe(event)
                self._missing.discard(aggregate_id)
                refs[aggregate_id] = loaded.aggregate
                return cast(Reference, loaded.aggregate)
        events = list(self.uow.app.events.get(aggregate_id))
        if not events:
            return None
        aggregate: Reference | None = None
        series = self.series(kind, name)
        for event in events:
            aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
            series.observe(event)
        assert aggregate is not None
        self._missing.discard(aggregate_id)
        refs[aggregate_id] = aggregate
        return aggregate

    def series(self, kind: str, name: str) -> Any:
        """The time series of one stream (created empty if new)."""
        if kind == "asset":
            return self.data.assets.setdefault(name, AssetHistory())
        if kind == "instrument":
            return self.data.instruments.setdefault(name, InstrumentHistory())
        return self.data.settings_series

    def asset(self, name: str) -> Asset | None:
        found = self._load(asset_id(name), "asset", name)
        return found if isinstance(found, Asset) else None

    def instrument(self, symbol: str) -> Instrument | None:
        found = self._load(instrument_id(symbol), "instrument", symbol)
        return found if isinstance(found, Instrument) else None

    def settings(self) -> Settings | None:
        found = self._load(portfolio_settings_id(), "settings", SETTINGS)
        return found if isinstance(found, Settings) else None

    def record(self, aggregate: Reference, kind: str, name: str) -> None:
        """Feed the new event of a reference aggregate into its series; mark it changed."""
        series = self.series(kind, name)
        for event in aggregate.pending_events[-1:]:
            series.observe(event)
            for listener in self.recorded:
                listener(event.at)  # type: ignore[attr-defined]
        self.uow.refs[aggregate.id] = aggregate
        self.uow.touch(aggregate)

    # ------------------------------------------------------------------ terms in force

    def require_asset(self, name: str, at: datetime | None = None) -> AssetTerms:
        """Return the asset's terms in force at `at` (default: the latest); `unknown_asset`
        when it has none then."""
        history = self.data.assets.get(name)
        terms = _in_force(history.terms if history is not None else None, at)
        if terms is None:
            raise UnknownAssetError(name)
        return terms

    def require_instrument(self, symbol: str, at: datetime | None = None) -> InstrumentTerms:
        """Return the instrument's terms in force at `at` (default: the latest);
        `unknown_symbol` when it is not listed then."""
        history = self.data.instruments.get(symbol)
        terms = _in_force(history.terms if history is not None else None, at)
        if terms is None:
            raise UnknownSymbolError(symbol)
        return terms

    def existing_instrument(self, symbol: str) -> Instrument:
        self.require_instrument(symbol)
        instrument = self.instrument(symbol)
        assert instrument is not None
        return instrument

    def market_for(self, account: Account, at: datetime,
                   extra_assets: tuple[str, ...] = ()) -> rules.Market:
        """Return the prices and parameters in force at `at` for what the account holds."""
        symbols = {p["symbol"] for p in account.positions.values()} | set(account.orders)
        assets = set(account.balances) | set(account.spot_in_use) | set(extra_assets)
        return self.data.market(at, assets, symbols)

    def instrument_names(self) -> list[str]:
        return sorted(self.uow.stream_names("instrument"))

    def asset_names(self) -> list[str]:
        return sorted(self.uow.stream_names("asset"))


def _kind(aggregate: Reference) -> str:
    return ("asset" if isinstance(aggregate, Asset) else
            "instrument" if isinstance(aggregate, Instrument) else "settings")


def _in_force(series: Series[T] | None, at: datetime | None) -> T | None:
    """The value of a series in force at `at` (None: the latest); None when there is none."""
    if not series:
        return None
    return series.values[-1] if at is None else series.at(at)
