"""Reference data in aggregates of their own: assets, instruments, ledger-wide settings.

A replay at T uses the parameters and prices in force at T (DESIGN §2), so every change is an
event with its `at`: `AssetListed`/`AssetConfigured`, `IndexPriceSet`, `RiskUnitConfigured` in an
asset's stream; `InstrumentListed`/`InstrumentConfigured`, `MarkPriceSet`, `FundingRateSet`,
`FundingPeriodSettled`, `InstrumentDelivered` in an instrument's stream; and
`PortfolioMarginListed`/`PortfolioMarginConfigured` in the one settings stream. Parameter sets
travel as plain dicts (`ledger.domain.terms` converts them), so events stay plain data.

Streams are non-decreasing in `at` (a command older than the stream's last event is
`out_of_order`), except that periodic records are posted at the stream's last `at` with their
`period` when they come late.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.errors import OutOfOrderError
from ledger.times import format_at


class Reference(Aggregate):
    """Common behaviour of reference streams: ordering by `at`."""

    class Event(Aggregate.Event):
        at: datetime

        def apply(self, aggregate: Any) -> None:
            self.evolve(aggregate)
            aggregate.last_at = max(aggregate.last_at, self.at)

        def evolve(self, aggregate: Any) -> None:
            """Assign the event's effect."""

    def __init__(self, at: datetime, name: str) -> None:
        self.name = name
        self.last_at = at

    def require_not_before(self, at: datetime) -> None:
        if at < self.last_at:
            raise OutOfOrderError(
                f"{self.name}: {format_at(at)} is before its last change at "
                f"{format_at(self.last_at)}"
            )


class Asset(Reference):

    class AssetListed(Aggregate.Created, Reference.Event):
        name: str
        terms: dict[str, Any]

    class AssetConfigured(Reference.Event):
        terms: dict[str, Any]

    class IndexPriceSet(Reference.Event):
        price: Decimal

    class RiskUnitConfigured(Reference.Event):
        terms: dict[str, Any]

    @classmethod
    def list(cls, asset_id: Any, at: datetime, name: str, terms: dict[str, Any]) -> Asset:
        return cls._create(cls.AssetListed, id=asset_id, at=at, name=name, terms=terms)

    def configure(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Asset.AssetConfigured, at=at, terms=terms)

    def set_index_price(self, at: datetime, price: Decimal) -> None:
        self.trigger_event(Asset.IndexPriceSet, at=at, price=price)

    def configure_risk_unit(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Asset.RiskUnitConfigured, at=at, terms=terms)


class Instrument(Reference):

    class InstrumentListed(Aggregate.Created, Reference.Event):
        name: str
        terms: dict[str, Any]

    class InstrumentConfigured(Reference.Event):
        terms: dict[str, Any]

    class MarkPriceSet(Reference.Event):
        price: Decimal

    class FundingRateSet(Reference.Event):
        rate: Decimal

    class FundingPeriodSettled(Reference.Event):
        """A funding time this instrument settled (DESIGN 6.11), even when nothing was paid."""

        period: datetime
        rate: Decimal | None
        mark_price: Decimal | None
        paid: bool

        def evolve(self, aggregate: Any) -> None:
            aggregate.settled_periods.add(self.period)

    class InstrumentDelivered(Reference.Event):
        delivery_price: Decimal

        def evolve(self, aggregate: Any) -> None:
            aggregate.delivered = True

    def __init__(self, at: datetime, name: str) -> None:
        super().__init__(at, name)
        self.settled_periods: set[datetime] = set()
        self.delivered = False

    @classmethod
    def list(cls, instrument_id: Any, at: datetime, name: str, terms: dict[str, Any]
             ) -> Instrument:
        return cls._create(cls.InstrumentListed, id=instrument_id, at=at, name=name,
                           terms=terms)

    def configure(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Instrument.InstrumentConfigured, at=at, terms=terms)

    def set_mark_price(self, at: datetime, price: Decimal) -> None:
        self.trigger_event(Instrument.MarkPriceSet, at=at, price=price)

    def set_funding_rate(self, at: datetime, rate: Decimal) -> None:
        self.trigger_event(Instrument.FundingRateSet, at=at, rate=rate)

    def record_funding_period(
        self, period: datetime, rate: Decimal | None, mark: Decimal | None, paid: bool
    ) -> None:
        self.trigger_event(Instrument.FundingPeriodSettled, at=max(period, self.last_at),
                           period=period, rate=rate, mark_price=mark, paid=paid)

    def deliver(self, at: datetime, price: Decimal) -> None:
        self.trigger_event(Instrument.InstrumentDelivered, at=max(at, self.last_at),
                           delivery_price=price)


class Settings(Reference):
    """Ledger-wide parameters: the portfolio-margin levels."""


    class PortfolioMarginListed(Aggregate.Created, Reference.Event):
        name: str
        terms: dict[str, Any]

    class PortfolioMarginConfigured(Reference.Event):
        terms: dict[str, Any]

    @classmethod
    def list(cls, settings_id: Any, at: datetime, terms: dict[str, Any]) -> Settings:
        return cls._create(cls.PortfolioMarginListed, id=settings_id, at=at,
                           name="portfolio_margin", terms=terms)

    def configure(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Settings.PortfolioMarginConfigured, at=at, terms=terms)
