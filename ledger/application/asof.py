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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from ledger.rules.margin import Market
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
        # The index keeps a stream as hex text; the events table as text (SQLite) or uuid.
        self.stream_of_index = ("CAST(i.stream_id AS uuid)" if self.index.placeholder == "%s"
                                else "i.stream_id")

    def _decode(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        return [self.mapper.to_domain_event(_stored(row)) for row in rows]

    def of_streams(self, streams: list[tuple[UUID, tuple[str, ...]]]) -> dict[UUID, list[Any]]:
        """Every event of the given types in each of the given streams (one query), by
        stream, in stream order."""
        if not streams:
            return {}
        kinds = sorted({kind for _, wanted in streams for kind in wanted})
        index = self.index
        rows = index._rows(index._sql(  # noqa: SLF001 - the recorders' one-query helper
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            f" FROM ledger_event_index i JOIN {self.table} e"
            f" ON e.originator_id = {self.stream_of_index} AND e.originator_version = i.version"
            f" WHERE i.stream_id IN ({', '.join('?' for _ in streams)})"
            f" AND i.kind IN ({', '.join('?' for _ in kinds)})"),
            (*(stream.hex for stream, _ in streams), *kinds))
        wanted = dict(streams)
        found: dict[UUID, list[Any]] = {stream: [] for stream, _ in streams}
        for event in self._decode(rows):
            if type(event).__name__ in wanted[event.originator_id]:
                found[event.originator_id].append(event)
        for events in found.values():
            events.sort(key=lambda e: e.originator_version)
        return found

    def lasts(self, wanted: list[tuple[UUID, str, int]]) -> dict[tuple[UUID, str, int], Any]:
        """The event of each (stream, type, at_micros) in force then (one query; those with
        none are left out)."""
        if not wanted:
            return {}
        index = self.index
        one = (f"SELECT originator_id, originator_version, topic, state FROM {self.table}"
               " WHERE originator_id = ? AND originator_version = (SELECT version"
               " FROM ledger_event_index WHERE stream_id = ? AND kind = ? AND at_micros <= ?"
               " ORDER BY at_micros DESC, version DESC LIMIT 1)")
        params: list[Any] = []
        for stream, kind, micros in wanted:
            params += [index._stream_key(stream), stream.hex, kind, micros]  # noqa: SLF001
        rows = index._rows(index._sql(  # noqa: SLF001
            " UNION ALL ".join(one for _ in wanted)), params)
        by_event = {(e.originator_id, e.originator_version): e for e in self._decode(rows)}
        found: dict[tuple[UUID, str, int], Any] = {}
        for key in wanted:
            stream, kind, micros = key
            for event in by_event.values():
                if (event.originator_id == stream and type(event).__name__ == kind
                        and to_micros(event.at) <= micros):
                    best = found.get(key)
                    if best is None or (to_micros(best.at), best.originator_version) < (
                            to_micros(event.at), event.originator_version):
                        found[key] = event
        return found

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

    def last(self, stream: UUID, kind: str, at_micros: int,
             upto: int = 2 ** 62) -> Any | None:
        """The event of this type in force at `at_micros`: the last with at ≤ it (among the
        stream's versions ≤ `upto`)."""
        found = self._select(stream, "= (SELECT version FROM ledger_event_index"
                                     " WHERE stream_id = ? AND kind = ? AND at_micros <= ?"
                                     " AND version <= ?"
                                     " ORDER BY at_micros DESC, version DESC LIMIT 1)",
                             (kind, at_micros, upto))
        return found[0] if found else None

    def between(self, stream: UUID, kind: str, lo: int, hi: int,
                upto: int = 2 ** 62) -> list[Any]:
        """The events of this type with lo < at ≤ hi, by (at, version) (among the stream's
        versions ≤ `upto`)."""
        found = self._select(stream, "IN (SELECT version FROM ledger_event_index"
                                     " WHERE stream_id = ? AND kind = ? AND at_micros > ?"
                                     " AND at_micros <= ? AND version <= ?)",
                             (kind, lo, hi, upto))
        found.sort(key=lambda e: (to_micros(e.at), e.originator_version))
        return found

    def head(self, stream: UUID) -> Any | None:
        """The stream's last event (its version and hash), None when it has none."""
        index = self.index
        key = index._stream_key(stream)  # noqa: SLF001
        rows = index._rows(index._sql(  # noqa: SLF001
            f"SELECT originator_id, originator_version, topic, state FROM {self.table}"
            " WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1"), (key,))
        return self._decode(rows)[0] if rows else None

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

    def has_point(self, micros: int) -> bool:
        return self._loaded() or micros in self._points

    def known(self, micros: int, event: Any | None) -> None:
        """Keep the event in force at `micros` (found by a batched look-up)."""
        self._points[micros] = None if event is None else self._value(event)

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
        self._load_streams([(kind, name)])

    def _load_streams(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Read the terms of these streams (one query for all those not read yet)."""
        todo = [(kind, name) for kind, name in dict.fromkeys(wanted)
                if (kind, name) not in self._seen]
        if not todo:
            return
        self._seen.update(todo)
        streams = [(reference_stream_id(kind, name), _TERMS[kind]) for kind, name in todo]
        found = self._reads.of_streams(streams)
        reads = self._reads
        for (kind, name), (stream, _) in zip(todo, streams, strict=True):
            terms = found[stream]
            if not terms:  # a stream opens with its listing: none, no such stream
                continue
            if kind == "asset":
                dict.__setitem__(self.assets, name, PointAssetHistory(reads, stream, terms))
            elif kind == "instrument":
                dict.__setitem__(self.instruments, name,
                                 PointInstrumentHistory(reads, stream, terms))
            else:
                for event in terms:
                    self.settings_series.observe(event)

    def market(self, at: datetime, assets: Iterable[str], symbols: Iterable[str]) -> Market:
        """`ReferenceData.market`, with its reads gathered: the terms of every stream it
        looks at in two queries (the symbols' settle and base assets are known from the
        first), every price in force at `at` in one."""
        assets, symbols = list(assets), list(symbols)
        self._load_streams([("settings", SETTINGS), *(("instrument", s) for s in symbols),
                            *(("asset", a) for a in assets)])
        micros = to_micros(at)
        wanted = set(assets)
        points: list[tuple[PointSeries[Any], UUID, str]] = []
        for symbol in symbols:
            history = dict.get(self.instruments, symbol)
            terms = history.terms.at(at) if history is not None else None
            if history is None or terms is None:
                continue
            wanted.update((terms.settle, terms.base))
            stream = instrument_id(symbol)
            points.append((cast(PointSeries[Any], history.marks), stream, "MarkPriceSet"))
            if terms.is_option:
                points.append((cast(PointSeries[Any], history.ivs), stream, "MarkIvSet"))
        self._load_streams(("asset", a) for a in sorted(wanted))
        for asset in sorted(wanted):
            history_a = dict.get(self.assets, asset)
            if history_a is not None:
                points.append((cast(PointSeries[Any], history_a.index), asset_id(asset),
                               "IndexPriceSet"))
        todo = [(series, stream, kind) for series, stream, kind in points
                if isinstance(series, PointSeries) and not series.has_point(micros)]
        found = self._reads.lasts([(stream, kind, micros) for _, stream, kind in todo])
        for series, stream, kind in todo:
            series.known(micros, found.get((stream, kind, micros)))
        return super().market(at, assets, symbols)


_TERMS = {"asset": ASSET_TERMS, "instrument": INSTRUMENT_TERMS, "settings": SETTINGS_TERMS}


def reference_stream_id(kind: str, name: str) -> UUID:
    """The id of the reference stream of `kind` (asset, instrument, settings) named `name`."""
    if kind == "asset":
        return asset_id(name)
    if kind == "instrument":
        return instrument_id(name)
    return portfolio_settings_id()


@contextmanager
def point_reads(ledger: Any) -> Iterator[None]:
    """Inside the block, the ledger's reference data is read by point look-ups
    (`PointReference`); nested blocks share the outer one's."""
    with ledger.refs.reading(lambda: cast(ReferenceData, PointReference(ledger))):
        yield


# ---------------------------------------------------------------------- the writer's series

MAX_MICROS = 2 ** 63 - 1
POINTS_KEPT = 10_000  # point answers cached per series before the cache is emptied


class TailSeries(Series[T]):
    """A price series for the writer: the store's part by point look-ups, plus a tail in
    memory of what this process appended since it looked (issue 11: a cold writer never reads
    a whole price stream).

    At load the stream's *head* of this type is read (the last by (at, version)) and the
    stream's version then (`loaded`). A look-up at T at or after the head's `at` — what a live
    feed asks — needs no query; an earlier T is one point look-up (cached). The tail holds
    the values appended since, sorted by `at` (stable: a late one after those of equal `at`);
    it is newer than every stored value of the look-up, so on equal `at` it wins, as in a
    whole `Series` (sorted by (at, version)). Once written, the tail's events are in the store
    too: a window read keeps only stored versions ≤ `loaded` (the rest is the tail)."""

    def __init__(self, reads: StreamReads, stream: UUID, kind: str,
                 value: Callable[[Any], T], head: Any | None, loaded: int) -> None:
        self._reads, self._stream, self._kind, self._value = reads, stream, kind, value
        self._head = None if head is None else (to_micros(head.at), value(head))
        self._loaded = loaded
        self._points: dict[int, tuple[int, T] | None] = {}
        self._window: tuple[int, int, list[tuple[int, T]]] | None = None
        self._tail_times: list[int] = []
        self._tail_values: list[T] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("times", "values"):  # nothing on the write path asks; kept exact
            pairs = self._stored(-(2 ** 63), MAX_MICROS) if self._head is not None else []
            merged = _merge(pairs, list(zip(self._tail_times, self._tail_values, strict=True)))
            return [m for m, _ in merged] if name == "times" else [v for _, v in merged]
        raise AttributeError(name)

    def append(self, at: datetime, value: T) -> None:
        micros = to_micros(at)
        index = bisect_right(self._tail_times, micros)
        self._tail_times.insert(index, micros)
        self._tail_values.insert(index, value)

    def _stored_at(self, micros: int) -> tuple[int, T] | None:
        head = self._head
        if head is None or micros >= head[0]:
            return head
        if micros not in self._points:
            if len(self._points) >= POINTS_KEPT:
                self._points.clear()
            event = self._reads.last(self._stream, self._kind, micros, self._loaded)
            self._points[micros] = (None if event is None
                                    else (to_micros(event.at), self._value(event)))
        return self._points[micros]

    def at(self, moment: datetime) -> T | None:
        micros = to_micros(moment)
        stored = self._stored_at(micros)
        index = bisect_right(self._tail_times, micros)
        if index and (stored is None or self._tail_times[index - 1] >= stored[0]):
            return self._tail_values[index - 1]
        return None if stored is None else stored[1]

    def _stored(self, lo: int, hi: int) -> list[tuple[int, T]]:
        """The stored values (versions ≤ `loaded`) with lo < at ≤ hi, by (at, version)."""
        events = self._reads.between(self._stream, self._kind, lo, hi, self._loaded)
        return [(to_micros(e.at), self._value(e)) for e in events]

    def between(self, start: datetime, end: datetime) -> list[tuple[int, T]]:
        lo, hi = to_micros(start), to_micros(end)
        head = self._head
        if head is None or lo >= head[0]:
            stored: list[tuple[int, T]] = []
        else:
            window = self._window
            if window is None or not (window[0] <= lo and hi <= window[1]):
                window = (lo, hi, self._stored(lo, hi))
                self._window = window
            stored = [p for p in window[2] if lo < p[0] <= hi]
        first = bisect_right(self._tail_times, lo)
        last = bisect_right(self._tail_times, hi)
        tail = list(zip(self._tail_times[first:last], self._tail_values[first:last],
                        strict=True))
        return _merge(stored, tail)

    def __bool__(self) -> bool:
        return self._head is not None or bool(self._tail_times)


def _merge(stored: list[tuple[int, T]], tail: list[tuple[int, T]]) -> list[tuple[int, T]]:
    """Both sorted by `at`; the tail after the stored values of equal `at` (newer)."""
    if not tail:
        return stored
    out: list[tuple[int, T]] = []
    i = 0
    for pair in tail:
        while i < len(stored) and stored[i][0] <= pair[0]:
            out.append(stored[i])
            i += 1
        out.append(pair)
    out.extend(stored[i:])
    return out


PRICE_KINDS = {"asset": ("IndexPriceSet",),
               "instrument": ("MarkPriceSet", "FundingRateSet", "MarkIvSet")}
EVERY_KIND = {"asset": ASSET_TERMS + PRICE_KINDS["asset"],
              "instrument": INSTRUMENT_TERMS + PRICE_KINDS["instrument"]
              + ("FundingPeriodSettled",),
              "settings": SETTINGS_TERMS}


@dataclass
class Loaded:
    """A reference stream brought in for the writer without its prices: the aggregate (to
    append: version, chain hash, last `at`, settled periods, delivered) and its series."""

    aggregate: Any
    history: Any  # TailAssetHistory | TailInstrumentHistory | the settings' terms events
    terms: list[Any]


def load_for_writer(app: Any, stream: UUID, kind: str) -> Loaded | None:
    """Rebuild a reference aggregate and its series by point reads (None: no such stream,
    or a legacy stream whose head holds no hash: the caller reads it whole).

    - the *terms* and periodic records (listing, configurations, deliveries, settled funding
      periods): every one, few whatever the history's length; the listing event creates the
      aggregate and the periodic records evolve it (`settled_periods`, `delivered`);
    - the last event of each type (one query): the price heads of the series and, over all
      of them, the stream's last `at` (the greatest: periodic records are posted at the
      stream's last `at` when late, so the greatest `at` is that of a type's last);
    - the stream's last event: its version and hash, which the next event chains from.
    """
    reads = StreamReads(app)
    head = reads.head(stream)
    if head is None or head.hash is None:
        return None
    wanted = EVERY_KIND[kind]
    records = (*_TERMS[kind], *(("FundingPeriodSettled",) if kind == "instrument" else ()))
    events = reads.of_streams([(stream, records)])[stream]
    if not events or events[0].originator_version != 1:
        return None
    lasts = reads.lasts([(stream, k, MAX_MICROS) for k in wanted])
    aggregate = events[0].mutate(None)
    for event in events[1:]:
        event.evolve(aggregate)
    aggregate.version = head.originator_version
    aggregate.modified_on = head.timestamp
    aggregate.last_at = max([head.at, *(e.at for e in lasts.values())])
    aggregate.last_hash = head.hash
    loaded = head.originator_version

    def series(price: str, value: Callable[[Any], Any]) -> TailSeries[Any]:
        return TailSeries(reads, stream, price, value,
                          lasts.get((stream, price, MAX_MICROS)), loaded)

    terms = [e for e in events if type(e).__name__ != "FundingPeriodSettled"]
    history: Any
    if kind == "asset":
        history = AssetHistory(index=series("IndexPriceSet", lambda e: e.price))
    elif kind == "instrument":
        history = InstrumentHistory(
            marks=series("MarkPriceSet", lambda e: e.price),
            rates=series("FundingRateSet", lambda e: e.rate),
            ivs=series("MarkIvSet", lambda e: e.iv))
        for event in events:
            if type(event).__name__ == "FundingPeriodSettled":
                history.observe(event)
    else:
        history = None
    for event in terms:
        if history is not None:
            history.observe(event)
    return Loaded(aggregate, history, terms)
