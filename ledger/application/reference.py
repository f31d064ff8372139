"""Reference data as time series: the parameters and prices in force at any T.

Each asset, instrument and the settings stream is loaded once (all its events) and kept as
sorted series; a lookup at T takes the last value with `at ≤ T` (feed order breaks ties, since a
stream's events are in feed order). New events are appended as the application records them, so
the same object answers for decisions during a run and for replays afterwards.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from ledger.domain.reference import Asset, Instrument, Settings
from ledger.domain.terms import (
    asset_from_dict,
    instrument_from_dict,
    portfolio_from_dict,
    risk_unit_from_dict,
)
from ledger.rules.margin import Market
from ledger.rules.terms import AssetTerms, InstrumentTerms, PortfolioTerms, RiskUnitTerms
from ledger.times import to_micros

T = TypeVar("T")


@dataclass
class Series(Generic[T]):
    """Values stamped with business time; `at(T)` is the one in force at T."""

    times: list[int] = field(default_factory=list)
    values: list[T] = field(default_factory=list)

    def append(self, at: datetime, value: T) -> None:
        micros = to_micros(at)
        if self.times and micros < self.times[-1]:
            # A late periodic record: keep the series sorted (stable for equal times).
            index = bisect_right(self.times, micros)
            self.times.insert(index, micros)
            self.values.insert(index, value)
            return
        self.times.append(micros)
        self.values.append(value)

    def at(self, moment: datetime) -> T | None:
        index = bisect_right(self.times, to_micros(moment))
        return self.values[index - 1] if index else None

    def between(self, start: datetime, end: datetime) -> list[tuple[int, T]]:
        """Return the (micros, value) pairs with start < at ≤ end."""
        lo = bisect_right(self.times, to_micros(start))
        hi = bisect_right(self.times, to_micros(end))
        return list(zip(self.times[lo:hi], self.values[lo:hi], strict=True))

    def __bool__(self) -> bool:
        return bool(self.times)


@dataclass
class AssetHistory:
    terms: Series[AssetTerms] = field(default_factory=Series)
    index: Series[Decimal] = field(default_factory=Series)
    risk_unit: Series[RiskUnitTerms] = field(default_factory=Series)

    def observe(self, event: Any) -> None:
        if isinstance(event, (Asset.AssetListed, Asset.AssetConfigured)):
            self.terms.append(event.at, asset_from_dict(event.terms))
        elif isinstance(event, Asset.IndexPriceSet):
            self.index.append(event.at, event.price)
        elif isinstance(event, Asset.RiskUnitConfigured):
            self.risk_unit.append(event.at, risk_unit_from_dict(event.terms))


@dataclass
class FundingPeriod:
    period: datetime
    rate: Decimal | None
    mark_price: Decimal | None
    paid: bool


@dataclass
class InstrumentHistory:
    terms: Series[InstrumentTerms] = field(default_factory=Series)
    marks: Series[Decimal] = field(default_factory=Series)
    rates: Series[Decimal] = field(default_factory=Series)
    periods: dict[datetime, FundingPeriod] = field(default_factory=dict)
    delivered: Series[Decimal] = field(default_factory=Series)
    ivs: Series[Decimal] = field(default_factory=Series)  # options' mark IV (issue 15)

    def observe(self, event: Any) -> None:
        if isinstance(event, (Instrument.InstrumentListed, Instrument.InstrumentConfigured)):
            self.terms.append(event.at, instrument_from_dict(event.terms))
        elif isinstance(event, Instrument.MarkPriceSet):
            self.marks.append(event.at, event.price)
        elif isinstance(event, Instrument.FundingRateSet):
            self.rates.append(event.at, event.rate)
        elif isinstance(event, Instrument.MarkIvSet):
            self.ivs.append(event.at, event.iv)
        elif isinstance(event, Instrument.FundingPeriodSettled):
            self.periods[event.period] = FundingPeriod(
                event.period, event.rate, event.mark_price, event.paid
            )
        elif isinstance(event, Instrument.InstrumentDelivered):
            self.delivered.append(event.at, event.delivery_price)

    def rate_for(self, funding_time: datetime, previous_time: datetime) -> Decimal | None:
        """Return the rate for a funding time: the last one sent in (previous, funding time]
        (a rate applies to the next funding time at or after its `at`)."""
        pairs = self.rates.between(previous_time, funding_time)
        return pairs[-1][1] if pairs else None


@dataclass
class SettingsHistory:
    portfolio: Series[PortfolioTerms] = field(default_factory=Series)

    def observe(self, event: Any) -> None:
        if isinstance(event, (Settings.PortfolioMarginListed,
                              Settings.PortfolioMarginConfigured)):
            self.portfolio.append(event.at, portfolio_from_dict(event.terms))


H = TypeVar("H")
Loader = Callable[[str, str], None]  # (kind, name): bring that stream's series in


class _Histories(dict[str, H]):
    """Series by name that load a stream the first time anything asks for it, so that an
    answer never depends on what the process happened to load before (issue 10)."""

    def __init__(self, kind: str, load: Loader) -> None:
        super().__init__()
        self._kind = kind
        self._load = load

    def get(self, key: str, default: Any = None) -> Any:
        self._load(self._kind, key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> H:
        self._load(self._kind, key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._load(self._kind, key)
        return super().__contains__(key)


class ReferenceData:
    """The series of every reference stream the application has looked at.

    With a `load` function (the ledger's reader of the store), every lookup first brings in
    the stream it names: the series in force at T are the store's, whatever was loaded before.
    Without one (the projections, which feed every stream in themselves), it holds what it is
    given."""

    def __init__(self, load: Loader | None = None) -> None:
        self.assets: dict[str, AssetHistory]
        self.instruments: dict[str, InstrumentHistory]
        if load is None:
            self.assets, self.instruments = {}, {}
        else:
            self.assets = _Histories("asset", load)
            self.instruments = _Histories("instrument", load)
        self._load = load
        self._settings = SettingsHistory()

    @property
    def settings(self) -> SettingsHistory:
        if self._load is not None:
            self._load("settings", "portfolio_margin")
        return self._settings

    @property
    def settings_series(self) -> SettingsHistory:
        """The settings series as it is, without loading (for the loader itself)."""
        return self._settings

    def asset_terms(self, asset: str, at: datetime) -> AssetTerms | None:
        history = self.assets.get(asset)
        return history.terms.at(at) if history else None

    def index_price(self, asset: str, at: datetime) -> Decimal | None:
        history = self.assets.get(asset)
        price = history.index.at(at) if history else None
        if price is None and asset in ("USDT", "USDC"):
            return Decimal(1)
        return price

    def instrument_terms(self, symbol: str, at: datetime) -> InstrumentTerms | None:
        history = self.instruments.get(symbol)
        return history.terms.at(at) if history else None

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        history = self.instruments.get(symbol)
        return history.marks.at(at) if history else None

    def risk_unit(self, asset: str, at: datetime) -> RiskUnitTerms | None:
        history = self.assets.get(asset)
        return history.risk_unit.at(at) if history else None

    def bears_interest(self, asset: str) -> bool:
        """Tell whether the asset has ever carried interest terms."""
        history = self.assets.get(asset)
        return history is not None and any(t.interest for t in history.terms.values)

    def owable_assets(self, balances: Iterable[str], charged: Iterable[str],
                      symbols: Iterable[str]) -> set[str]:
        """Return the coins an account can owe: those it has held or been charged interest
        on, and the settle assets of every symbol it has traded (an unrealised loss alone can
        make a debt in a coin the wallet never held). Instruments must be loaded."""
        assets = set(balances) | set(charged)
        for symbol in symbols:
            history = self.instruments.get(symbol)
            if history is not None:
                assets.update(terms.settle for terms in history.terms.values)
        return assets

    def portfolio_terms(self, at: datetime) -> PortfolioTerms:
        return self.settings.portfolio.at(at) or PortfolioTerms()

    def market(self, at: datetime, assets: Iterable[str], symbols: Iterable[str]) -> Market:
        """Return the prices and parameters in force at `at` for these assets and symbols
        (with every settle and base asset of the symbols)."""
        instruments: dict[str, InstrumentTerms] = {}
        marks: dict[str, Decimal] = {}
        ivs: dict[str, Decimal] = {}
        wanted = set(assets)
        for symbol in symbols:
            terms = self.instrument_terms(symbol, at)
            if terms is None:
                continue
            instruments[symbol] = terms
            mark = self.mark_price(symbol, at)
            if mark is not None:
                marks[symbol] = mark
            if terms.is_option:
                iv = self.instruments[symbol].ivs.at(at)
                if iv is not None:
                    ivs[symbol] = iv
            wanted.update((terms.settle, terms.base))
        asset_terms: dict[str, AssetTerms] = {}
        indexes: dict[str, Decimal] = {}
        risk_units: dict[str, RiskUnitTerms] = {}
        for asset in wanted:
            terms_a = self.asset_terms(asset, at)
            if terms_a is not None:
                asset_terms[asset] = terms_a
            price = self.assets[asset].index.at(at) if asset in self.assets else None
            if price is not None:
                indexes[asset] = price
            unit = self.risk_unit(asset, at)
            if unit is not None:
                risk_units[asset] = unit
        return Market(
            at=at,
            assets=asset_terms,
            indexes=indexes,
            instruments=instruments,
            marks=marks,
            risk_units=risk_units,
            portfolio=self.portfolio_terms(at),
            ivs=ivs,
        )
