"""A cold writer rebuilds reference streams by point reads (issue 11, `asof.load_for_writer`).

(1) Equivalence: over the random histories of tests/properties with bursts of marks (late ones
    too), a store fed in two processes — the first part, then the rest by a fresh `Ledger` that
    rebuilt the reference aggregates and series from their heads — holds byte for byte the
    events (topic, state: chain hashes included) of a store fed in one process, which is the
    same as one fed by a process that reads the streams whole (`point_loads = False`).
(2) Bounded reads: a fresh writer's first command decodes the same number of reference events
    whether the symbol has 40 or 800 marks.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import reader as reader_module

TIMESTAMP = re.compile(  # the library's form, and the lean path's ("t")
    rb'"timestamp":\{"_type_":"datetime_iso","_data_":"[^"]*"\},?|"t":"[^"]*",?')


def _asof_tests() -> Any:
    """tests/application/test_asof.py (its random histories with bursts of marks)."""
    name = "ledger_asof_tests_for_cold_writer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(
            "test_asof.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


P = _asof_tests().P
histories = _asof_tests().histories


def _rows(url: str) -> list[tuple[Any, ...]]:
    """Every stored event as stored, by stream and version (a batch writes its events
    grouped per aggregate, so the log's interleaving depends on where a feed was cut), its
    `timestamp` (the wall clock when it was made, which no hash covers) cut out."""
    with P.opened(url) as app:
        return sorted((str(n.originator_id), n.originator_version, n.topic,
                       TIMESTAMP.sub(b"", bytes(n.state)))
                      for n in app.recorder.select_notifications(start=1, limit=10 ** 7))


@contextmanager
def _whole_streams() -> Iterator[None]:
    """Writers that read reference streams whole (what every writer did before)."""
    reader_module.POINT_LOADS = False
    try:
        yield
    finally:
        reader_module.POINT_LOADS = True


def _fed(base: str, parts: list[list[dict[str, Any]]],
         how: Callable[[], Any] | None = None) -> list[tuple[Any, ...]]:
    with P.empty_store(base) as url:
        for part in parts:
            if how is None:
                with P.opened(url) as app:
                    P.feed(app, part, batch_size=7)
            else:
                with how(), P.opened(url) as app:
                    P.feed(app, part, batch_size=7)
        return _rows(url)


def check(base: str, commands: list[dict[str, Any]], data: st.DataObject) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(commands) - 1), min_size=1,
                                         max_size=3))))
    parts = [commands[a:b] for a, b in zip([0, *cuts], [*cuts, len(commands)], strict=True)]
    whole = _fed(base, [commands], _whole_streams)
    assert _fed(base, [commands]) == whole
    assert _fed(base, parts) == whole
    assert _fed(base, parts, _whole_streams) == whole


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=histories(), data=st.data())
def test_cold_writer_writes_what_a_whole_stream_writer_writes(
    sqlite_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    check(sqlite_url, commands, data)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=histories(), data=st.data())
def test_cold_writer_writes_what_a_whole_stream_writer_writes_on_postgres(
    postgres_url: str, commands: list[dict[str, Any]], data: st.DataObject
) -> None:
    check(postgres_url, commands, data)


def _decoded_by_first_commands(base: str, marks: int) -> int:
    """Events a fresh writer decodes to apply a mark and an index price after `marks`
    per-second marks of one symbol."""
    from datetime import timedelta

    from ledger.times import format_at

    def mark(second: int) -> dict[str, Any]:
        return {"type": "mark_price", "at": format_at(P.T0 + timedelta(seconds=second)),
                "symbol": "BTCUSDT", "price": str(30000 + second % 50)}

    with P.empty_store(base) as url:
        with P.opened(url) as app:
            P.feed(app, [*P.MARKET, *(mark(s) for s in range(1, marks + 1))])
        with P.opened(url) as app:
            decode = app.mapper.to_domain_event
            count = [0]

            def counted(stored: Any) -> Any:
                count[0] += 1
                return decode(stored)

            app.mapper.to_domain_event = counted  # type: ignore[method-assign]
            report = P.feed(app, [mark(marks + 1), {
                "type": "index_price", "at": format_at(P.T0 + timedelta(seconds=marks + 1)),
                "asset": "BTC", "price": "30001"}])
            assert not report.rejected
            return count[0]


def test_cold_writer_reads_no_whole_price_stream(sqlite_url: str) -> None:
    short = _decoded_by_first_commands(sqlite_url, 40)
    assert _decoded_by_first_commands(sqlite_url, 800) == short
    assert short < 40
