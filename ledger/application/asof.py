"""Reference data as of T by point look-ups (issue 11): `state --at` at any history length.

`ReferenceReader` loads a reference stream whole the first time it is asked for it: a year of
per-second marks is 31.5 million events decoded for one `state --at`. An as-of read needs far
less: per symbol, the mark, mark IV and funding rates in force, per asset the index price, and
the terms. `PointReference` is a `ReferenceData` that reads

- the *terms* of a stream whole, but only them (`AssetListed`/`AssetConfigured`,
  `RiskUnitConfigured`, `InstrumentListed`/`InstrumentConfigured`, `InstrumentDelivered`, the
  portfolio-margin settings): a handful of versions whatever the history's length, and what
  `bears_interest` and `owable_assets` look at over the whole stream (as today);
- the *prices* (`MarkPriceSet`, `IndexPriceSet`, `FundingRateSet`, `MarkIvSet`) by point
  look-ups in `ledger_event_index` (migration 0007: stream, type, time, version), one query
  each: "the last `MarkPriceSet` of this stream with at ≤ T" (`PointSeries.at`), "those in
  (A, B]" (`PointSeries.between`, what interest accrual integrates over since the last
  checkpoint); the events found are fetched by (stream, version) and decoded, nothing else;
- `FundingPeriodSettled` records only if something asks for `periods` (settlement, scheduler).

Ties: a `Series` keeps a stream's values sorted by (at, version) — a late record is inserted
after those with the same `at` — so "last with at ≤ T" is `ORDER BY at_micros DESC, version DESC
LIMIT 1`. The answers are those of the whole-stream series: `tests/application/test_asof.py`
compares both over random histories and random T.

Used by `queries.state` through `ReferenceReader.reading`, when the unit of work holds nothing
unwritten (only the in-memory series know such events).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from ledger.application.reference import (
    AssetHistory,
    FundingPeriod,
    InstrumentHistory,
    ReferenceData,
    Series,
)
from ledger.application.store import IndexQueries, _stored
from ledger.domain.ids import asset_id, instrument_id, portfolio_settings_id
from ledger.times import to_micros

T = TypeVar("T")

ASSET_TERMS = ("AssetListed", "AssetConfigured", "RiskUnitConfigured")
INSTRUMENT_TERMS = ("InstrumentListed", "InstrumentConfigured", "InstrumentDelivered")
SETTINGS_TERMS = ("PortfolioMarginListed", "PortfolioMarginConfigured")
SETTINGS = "portfolio_margin"  # the one settings stream's name


class StreamReads:
    """Events of one reference stream picked through `ledger_event_index`, decoded by the
    application's mapper (both stored forms)."""

    def __init__(self, app: Any) -> None:
        self.index: IndexQueries = app.recorder
        self.table: str = app.recorder.events_table_name
        self.mapper = app.mapper

    def _select(self, stream: UUID, picked: str, params: tuple[Any, ...]) -> list[Any]:
        index = self.index
        rows = index._rows(index._sql(  # noqa: SLF001 - the recorders' one-query helper
            f"SELECT originator_id, originator_version, topic, state FROM {self.table}"
            f" WHERE originator_id = ? AND originator_version {picked}"),
            (index._stream_key(stream), stream.hex, *params))  # noqa: SLF001
        events = [self.mapper.to_domain_event(_stored(row)) for row in rows]
        events.sort(key=lambda e: e.originator_version)
        return events

    def of_types(self, stream: UUID, kinds: tuple[str, ...]) -> list[Any]:
        """Every event of these types in the stream, in stream order."""
        marks = ", ".join("?" for _ in kinds)
        return self._select(stream, "IN (SELECT version FROM ledger_event_index"
                                    f" WHERE stream_id = ? AND kind IN ({marks}))", kinds)

    def last(self, stream: UUID, kind: str, at_micros: int) -> Any | None:
        """The event of this type in force at `at_micros`: the last with at ≤ it."""
        found = self._select(stream, "= (SELECT version FROM ledger_event_index"
                                     " WHERE stream_id = ? AND kind = ? AND at_micros <= ?"
                                     " ORDER BY at_micros DESC, version DESC LIMIT 1)",
                             (kind, at_micros))
        return found[0] if found else None

    def between(self, stream: UUID, kind: str, lo: int, hi: int) -> list[Any]:
        """The events of this type with lo < at ≤ hi, by (at, version)."""
        found = self._select(stream, "IN (SELECT version FROM ledger_event_index"
                                     " WHERE stream_id = ? AND kind = ? AND at_micros > ?"
                                     " AND at_micros <= ?)", (kind, lo, hi))
        found.sort(key=lambda e: (to_micros(e.at), e.originator_version))
        return found

    def exists(self, stream: UUID, kind: str) -> bool:
        index = self.index
        return bool(index._rows(index._sql(  # noqa: SLF001
            "SELECT version FROM ledger_event_index WHERE stream_id = ? AND kind = ? LIMIT 1"),
            (stream.hex, kind)))


class PointSeries(Series[T]):
    """A price series answered by point look-ups in the store, never loaded whole unless
    something asks for `times`/`values` (nothing on the as-of path does).

    `between(A, B)` keeps what it found as a window, so the look-ups at moments inside it that
    follow (interest accrual values the account at every mark of the interval) are answered
    from memory."""

    def __init__(self, reads: StreamReads, stream: UUID, kind: str,
                 value: Callable[[Any], T]) -> None:
        # No dataclass __init__: `times` and `values` are set only by `_load_all`.
        self._reads, self._stream, self._kind, self._value = reads, stream, kind, value
        self._points: dict[int, T | None] = {}
        self._window: tuple[int, int, list[int], list[T]] | None = None
        self._any: bool | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("times", "values"):
            self._load_all()
            return self.__dict__[name]
        raise AttributeError(name)

    def _loaded(self) -> bool:
        return "times" in self.__dict__

    def _load_all(self) -> None:
        events = self._reads.between(self._stream, self._kind, -(2 ** 63), 2 ** 63 - 1)
        self.__dict__["times"] = [to_micros(e.at) for e in events]
        self.__dict__["values"] = [self._value(e) for e in events]

    def append(self, at: datetime, value: T) -> None:
        if not self._loaded():
            self._load_all()
        super().append(at, value)

    def at(self, moment: datetime) -> T | None:
        if self._loaded():
            return super().at(moment)
        micros = to_micros(moment)
        window = self._window
        if window is not None and window[0] <= micros <= window[1]:
            lo, _, times, values = window
            index = bisect_right(times, micros)
            return values[index - 1] if index else self._point(lo)
        return self._point(micros)

    def _point(self, micros: int) -> T | None:
        if micros not in self._points:
            event = self._reads.last(self._stream, self._kind, micros)
            self._points[micros] = None if event is None else self._value(event)
        return self._points[micros]

    def between(self, start: datetime, end: datetime) -> list[tuple[int, T]]:
        if self._loaded():
            return super().between(start, end)
        lo, hi = to_micros(start), to_micros(end)
        window = self._window
        if window is None or not (window[0] <= lo and hi <= window[1]):
            events = self._reads.between(self._stream, self._kind, lo, hi)
            window = (lo, hi, [to_micros(e.at) for e in events],
                      [self._value(e) for e in events])
            self._window = window
        times, values = window[2], window[3]
        first, last = bisect_right(times, lo), bisect_right(times, hi)
        return list(zip(times[first:last], values[first:last], strict=True))

    def __bool__(self) -> bool:
        if self._loaded():
            return bool(self.__dict__["times"])
        if self._any is None:
            self._any = self._reads.exists(self._stream, self._kind)
        return self._any


class PointAssetHistory(AssetHistory):
    """An asset's terms and risk unit (every version), its index price by point look-ups."""

    def __init__(self, reads: StreamReads, stream: UUID, terms: list[Any]) -> None:
        self.terms = Series()
        self.risk_unit = Series()
        self.index = PointSeries(reads, stream, "IndexPriceSet", lambda e: e.price)
        for event in terms:
            self.observe(event)


class PointInstrumentHistory(InstrumentHistory):
    """An instrument's terms and delivery (every version), its marks, mark IVs and funding
    rates by point look-ups, its funding periods loaded when asked for."""

    def __init__(self, reads: StreamReads, stream: UUID, terms: list[Any]) -> None:
        self._reads, self._stream = reads, stream
        self.terms = Series()
        self.delivered = Series()
        self.marks = PointSeries(reads, stream, "MarkPriceSet", lambda e: e.price)
        self.rates = PointSeries(reads, stream, "FundingRateSet", lambda e: e.rate)
        self.ivs = PointSeries(reads, stream, "MarkIvSet", lambda e: e.iv)
        for event in terms:
            self.observe(event)

    def __getattr__(self, name: str) -> Any:
        if name == "periods":
            periods: dict[datetime, FundingPeriod] = {}
            for event in self._reads.of_types(self._stream, ("FundingPeriodSettled",)):
                periods[event.period] = FundingPeriod(
                    event.period, event.rate, event.mark_price, event.paid)
            self.__dict__["periods"] = periods
            return periods
        raise AttributeError(name)


class PointReference(ReferenceData):
    """The reference data an as-of read needs, read from the store by point look-ups: terms
    whole (few), prices one at a time (see the module)."""

    def __init__(self, app: Any) -> None:
        self._reads = StreamReads(app)
        self._seen: set[tuple[str, str]] = set()
        super().__init__(self._load_stream)

    def _load_stream(self, kind: str, name: str) -> None:
        if (kind, name) in self._seen:
            return
        self._seen.add((kind, name))
        reads = self._reads
        if kind == "asset":
            stream = asset_id(name)
            terms = reads.of_types(stream, ASSET_TERMS)
            if terms:  # an asset stream opens with AssetListed: none, no such asset
                dict.__setitem__(self.assets, name, PointAssetHistory(reads, stream, terms))
        elif kind == "instrument":
            stream = instrument_id(name)
            terms = reads.of_types(stream, INSTRUMENT_TERMS)
            if terms:
                dict.__setitem__(self.instruments, name,
                                 PointInstrumentHistory(reads, stream, terms))
        else:
            for event in reads.of_types(portfolio_settings_id(), SETTINGS_TERMS):
                self.settings_series.observe(event)


@contextmanager
def point_reads(ledger: Any) -> Iterator[None]:
    """Inside the block, the ledger's reference data is read by point look-ups
    (`PointReference`); nested blocks share the outer one's."""
    with ledger.refs.reading(lambda: cast(ReferenceData, PointReference(ledger))):
        yield
