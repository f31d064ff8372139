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

Tamper evidence (DESIGN §9): every reference event carries `hash`, chained like an account's
(`ledger.domain.chain`): the first event of a stream chains from `GENESIS`, each next one from
its predecessor. Events written before reference streams were chained hold no hash: they are
upcast with `hash = None` (class version 1 → 2) and the aggregate computes the hash they would
have had, so the first chained event after them covers them too (`verify` reports them as
unchained legacy events).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from eventsourcing.domain import Aggregate

from ledger.domain.chain import GENESIS, chain_hash, event_fields
from ledger.errors import OutOfOrderError
from ledger.times import format_at


class Reference(Aggregate):
    """Common behaviour of reference streams: ordering by `at`."""

    class Event(Aggregate.Event):
        at: datetime
        hash: str | None  # None: written before reference streams were chained

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["hash"] = None

        def apply(self, aggregate: Any) -> None:
            self.evolve(aggregate)
            aggregate.last_at = max(aggregate.last_at, self.at)
            aggregate.last_hash = self.hash if self.hash is not None else legacy_hash(
                aggregate.last_hash, self)

        def evolve(self, aggregate: Any) -> None:
            """Assign the event's effect."""

    def __init__(self, at: datetime, name: str) -> None:
        self.name = name
        self.last_at = at
        self.last_hash = GENESIS  # the created event's `apply` replaces it

    @classmethod
    def _listed(cls, event_class: type[Any], aggregate_id: Any, **fields: Any) -> Self:
        """Create the stream with its first event chained from `GENESIS`."""
        digest = chain_hash(GENESIS, event_class.__name__, 1, fields)
        return cls._create(event_class, id=aggregate_id, hash=digest, **fields)

    def trigger_event(self, event_class: Any, **fields: Any) -> None:
        """Trigger an event whose hash chains to the previous one (reference events have no
        defaults, so `fields` is every field the stored event will hold)."""
        digest = chain_hash(self.last_hash, event_class.__name__, self.version + 1, fields)
        super().trigger_event(event_class, hash=digest, **fields)

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
        return cls._listed(cls.AssetListed, asset_id, at=at, name=name, terms=terms)

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

    class MarkIvSet(Reference.Event):
        """An option's mark implied volatility (issue 15), sent with its mark price."""

        iv: Decimal

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
        return cls._listed(cls.InstrumentListed, instrument_id, at=at, name=name,
                           terms=terms)

    def configure(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Instrument.InstrumentConfigured, at=at, terms=terms)

    def set_mark_price(self, at: datetime, price: Decimal) -> None:
        self.trigger_event(Instrument.MarkPriceSet, at=at, price=price)

    def set_mark_iv(self, at: datetime, iv: Decimal) -> None:
        self.trigger_event(Instrument.MarkIvSet, at=at, iv=iv)

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
        return cls._listed(cls.PortfolioMarginListed, settings_id, at=at,
                           name="portfolio_margin", terms=terms)

    def configure(self, at: datetime, terms: dict[str, Any]) -> None:
        self.trigger_event(Settings.PortfolioMarginConfigured, at=at, terms=terms)


def legacy_hash(previous: str, event: Reference.Event) -> str:
    """Return the hash an unchained (legacy) reference event would have had."""
    return chain_hash(previous, type(event).__name__, event.originator_version,
                      event_fields(event))
