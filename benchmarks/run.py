"""`ledger bench`: the figures the notes report, measured in-process (not CLI start-up).

Cases:
- `ingest`: fills/s of the feed runner (the `ledger run` path) on N fills, on SQLite and on
  PostgreSQL, beside the raw PostgreSQL COPY rate of the same stored-event rows on the same
  server (the ratio is the figure that matters);
- `state`: latency of `state --at` for an account with N events, at an early and a late T;
- `portfolio`: margin for 10,000 portfolio accounts with 20 positions each;
- `funding`, `projections`: delegated to the scheduler and projection benches;
- `shards` (only when asked): one process against 1 and 2 workers through the sequencer.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from ledger.times import format_at

START = datetime.fromisoformat("2025-01-01T00:00:00+00:00")


def _reference(at: datetime) -> list[dict[str, Any]]:
    return [
        {"type": "asset", "at": format_at(at), "asset": "USDT", "precision": 8},
        {"type": "asset", "at": format_at(at), "asset": "BTC", "precision": 8},
        {"type": "instrument", "at": format_at(at), "symbol": "BTCUSDT",
         "kind": "linear_perpetual", "base": "BTC", "settle": "USDT", "contract_size": "0.001",
         "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
         "risk_tiers": [{"up_to": "1000000", "mmr": "0.004", "max_leverage": "100"},
                        {"up_to": None, "mmr": "0.01", "max_leverage": "20"}]},
        {"type": "mark_price", "at": format_at(at), "symbol": "BTCUSDT", "price": "50000"},
    ]


def fill_feed(fills: int, accounts: int, seed: int = 1) -> list[str]:
    """Return feed lines: reference data, `accounts` funded accounts, then `fills` fills
    spread over the accounts, one second apart, with a mark price every 100 fills."""
    rng = random.Random(seed)
    lines = [json.dumps(c) for c in _reference(START)]
    for number in range(accounts):
        name = f"a{number:05d}"
        lines.append(json.dumps({"type": "open_account", "at": format_at(START),
                                 "account": name, "mode": "single_asset"}))
        lines.append(json.dumps({"type": "deposit", "at": format_at(START), "id": "d",
                                 "account": name, "asset": "USDT", "amount": "1000000"}))
    price = 50000
    for number in range(fills):
        at = START + timedelta(seconds=number + 1)
        if number % 100 == 0:
            price += rng.randint(-50, 50)
            lines.append(json.dumps({"type": "mark_price", "at": format_at(at),
                                     "symbol": "BTCUSDT", "price": str(price)}))
        lines.append(json.dumps({
            "type": "fill", "at": format_at(at), "id": f"f{number}",
            "account": f"a{rng.randrange(accounts):05d}", "symbol": "BTCUSDT",
            "side": rng.choice(("buy", "sell")), "qty": str(rng.randint(1, 50)),
            "price": str(price + rng.randint(-5, 5)), "liquidity": "taker"}))
    return lines


def _ingest(url: str, lines: list[str], batch: int = 2000) -> tuple[float, int]:
    elapsed, events, _ = _ingest_cpu(url, lines, batch)
    return elapsed, events


def _ingest_cpu(url: str, lines: list[str], batch: int = 2000) -> tuple[float, int, float]:
    """Ingest; return (wall seconds, events stored, this process's CPU seconds) — CPU per
    event is the figure that holds on a shared machine (issue 11)."""
    from ledger.application.feed import run_feed
    from ledger.application.service import Ledger

    ledger = Ledger(url)
    numbered = list(enumerate(lines, start=1))
    started, cpu = time.perf_counter(), time.process_time()
    report = run_feed(ledger, iter(numbered), batch_size=batch)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.internal_error is None, report.internal_error
    assert not report.rejected, report.rejected[:3]
    events = ledger.recorder.max_notification_id() or 0
    return elapsed, events, cpu


def _copy_rate(url: str) -> float:
    """Rows/s of a raw COPY of the very rows the ingest stored (same server, same bytes) into a
    table shaped like the events table: the ceiling any ingest path can approach."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT originator_id, originator_version, topic, state"
                            " FROM ledger_events ORDER BY notification_id").fetchall()
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (originator_id uuid NOT NULL, originator_version"
                     " bigint NOT NULL, topic text, state bytea, notification_id bigserial,"
                     " PRIMARY KEY (originator_id, originator_version))")
        conn.execute("CREATE UNIQUE INDEX ON bench_copy (notification_id)")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY bench_copy (originator_id, originator_version, topic, state)"
                " FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
    return len(rows) / elapsed


def scratch_postgres(url: str, name: str) -> tuple[str, Callable[[], None]]:
    """Create a scratch database beside `url`; return its URL and a function that drops it."""
    import psycopg

    parts = urlparse(url)
    admin = urlunparse(parts._replace(path="/postgres"))
    scratch = urlunparse(parts._replace(path="/" + name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return scratch, drop


def bench_ingest(fills: int, pg_url: str | None, out: Callable[[str], None]) -> dict[str, Any]:
    lines = fill_feed(fills, accounts=max(10, fills // 100))
    result: dict[str, Any] = {"fills": fills, "commands": len(lines)}
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, events, cpu = _ingest_cpu(f"sqlite:///{tmp}/bench.db", lines)
    result["sqlite"] = {"seconds": round(elapsed, 2), "fills_per_s": round(fills / elapsed),
                        "events": events, "events_per_s": round(events / elapsed),
                        "cpu_us_per_event": round(cpu / events * 1e6, 1)}
    out(f"ingest SQLite: {fills:,} fills in {elapsed:.1f} s = {fills / elapsed:,.0f} fills/s "
        f"({events:,} events, {events / elapsed:,.0f} events/s; "
        f"CPU {cpu / events * 1e6:.0f} µs/event)")
    if pg_url:
        url, drop = scratch_postgres(pg_url, "ledger_bench_ingest")
        try:
            elapsed, events, cpu = _ingest_cpu(url, lines)
            copy_rate = _copy_rate(url)
        finally:
            drop()
        ratio = (events / elapsed) / copy_rate
        result["postgres"] = {"seconds": round(elapsed, 2), "fills_per_s": round(fills / elapsed),
                              "events": events, "events_per_s": round(events / elapsed),
                              "copy_rows_per_s": round(copy_rate),
                              "ratio_to_copy": round(ratio, 3),
                              "cpu_us_per_event": round(cpu / events * 1e6, 1)}
        out(f"ingest PostgreSQL: {fills:,} fills in {elapsed:.1f} s = {fills / elapsed:,.0f} "
            f"fills/s ({events:,} events, {events / elapsed:,.0f} events/s; client CPU "
            f"{cpu / events * 1e6:.0f} µs/event); raw COPY of the same rows: "
            f"{copy_rate:,.0f} rows/s; ratio {ratio:.1%}")
    return result


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_growth(fills: int, out: Callable[[str], None], window: int = 10_000) -> dict[str, Any]:
    """SQLite ingest as the store grows (issue 11: 300k fills at >= 90 % of the 10k-fill rate,
    memory flat): one `Ledger`, the fill feed run window by window (`window` fills each, the
    feed runner's own path), the rate and this process's resident memory after each window."""
    from ledger.application.feed import run_feed
    from ledger.application.service import Ledger

    lines = fill_feed(fills, accounts=max(10, fills // 100))
    numbered = list(enumerate(lines, start=1))
    head = len(lines) - fills - fills // 100  # reference data and the accounts
    windows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{tmp}/growth.db")
        try:
            run_feed(ledger, iter(numbered[:head]), batch_size=2000)
            position = head
            while position < len(numbered):
                # a window ends after `window` fills (marks ride along with their fills)
                end, counted = position, 0
                while end < len(numbered) and counted < window:
                    counted += '"fill"' in numbered[end][1]
                    end += 1
                began = time.perf_counter()
                report = run_feed(ledger, iter(numbered[position:end]), batch_size=2000)
                elapsed = time.perf_counter() - began
                assert report.internal_error is None and not report.rejected
                windows.append({"fills_done": sum(w["fills"] for w in windows) + counted,
                                "fills": counted, "fills_per_s": counted / elapsed,
                                "rss_mib": _rss_mib()})
                position = end
        finally:
            ledger.close()
    first, last = windows[0], windows[-1]
    best_first = max(w["fills_per_s"] for w in windows[:3])
    tail = [w["fills_per_s"] for w in windows[-3:]]
    result = {"window": window, "windows": windows,
              "first_rate": round(best_first), "last_rate": round(statistics.median(tail)),
              "ratio_last_to_first": round(statistics.median(tail) / best_first, 3),
              "rss_first_mib": round(first["rss_mib"]), "rss_last_mib": round(last["rss_mib"])}
    out(f"growth SQLite: {fills:,} fills in windows of {window:,}: first windows "
        f"{best_first:,.0f} fills/s (best of 3), last {statistics.median(tail):,.0f} "
        f"(median of 3) = {result['ratio_last_to_first']:.0%}; resident memory "
        f"{first['rss_mib']:,.0f} MiB after the first window, {last['rss_mib']:,.0f} MiB "
        "after the last")
    return result


def history_lines(history: int) -> list[str]:
    """Return a feed that gives account `big` about `history` events (a fill records Filled and
    FeeCharged), one fill a second from START (also the API bench's store)."""
    lines = [json.dumps(c) for c in _reference(START)]
    lines.append(json.dumps({"type": "open_account", "at": format_at(START), "account": "big",
                             "mode": "single_asset"}))
    lines.append(json.dumps({"type": "deposit", "at": format_at(START), "id": "d0",
                             "account": "big", "asset": "USDT", "amount": "100000000"}))
    rng = random.Random(3)
    fills = history // 2
    for number in range(fills):
        at = START + timedelta(seconds=number + 1)
        lines.append(json.dumps({
            "type": "fill", "at": format_at(at), "id": f"f{number}", "account": "big",
            "symbol": "BTCUSDT", "side": rng.choice(("buy", "sell")),
            "qty": str(rng.randint(1, 20)), "price": str(50000 + rng.randint(-500, 500))}))
    return lines


def bench_state(history: int, pg_url: str | None, out: Callable[[str], None]) -> dict[str, Any]:
    """Time `state --at` for one account with `history` events, at an early and a late T."""
    result: dict[str, Any] = {"events": history}
    lines = history_lines(history)
    fills = history // 2
    early = START + timedelta(seconds=fills // 10)
    late = START + timedelta(seconds=fills - 10)
    targets = {"sqlite": None, "postgres": pg_url}
    for backend, base in targets.items():
        if backend == "postgres" and not base:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            drop = None
            url = f"sqlite:///{tmp}/state.db"
            if backend == "postgres":
                assert base is not None
                url, drop = scratch_postgres(base, _scratch_name(base, "state"))
            try:
                _ingest(url, lines, batch=5000)
                timings = _time_states(url, {"early": early, "late": late})
            finally:
                if drop:
                    drop()
        result[backend] = timings
        out(f"state --at on {backend}, account with {history:,} events: "
            + ", ".join(f"{k} T median {v['median_ms']:.1f} ms (max {v['max_ms']:.1f})"
                        for k, v in timings.items()))
    result["marks"] = bench_state_marks(mark_counts(history), pg_url, out)
    return result


def _scratch_name(base: str, case: str) -> str:
    """A scratch database named after the bench's own (`asof_bench` → `asof_bench_state`), so
    that benches run side by side on one server do not drop each other's."""
    name = urlparse(base).path.lstrip("/")
    return f"{name}_{case}" if name else f"ledger_bench_{case}"


def mark_counts(history: int) -> list[int]:
    """The mark histories of the state case: 1,000, `history` and 10 × `history` per-second
    marks (1k / 100k / 1M by default; 500 / 1k / 5k with --quick)."""
    return sorted({1_000, history, 10 * history})


WHOLE_STREAMS_UP_TO = 100_000  # marks: the whole-stream reader is timed up to this many


def mark_lines(marks: int) -> list[str]:
    """Return a feed: the reference data, account `big` with one BTCUSDT position, then one
    BTCUSDT mark a second for `marks` seconds (a year is 31.5 million)."""
    lines = [json.dumps(c) for c in _reference(START)]
    lines.append(json.dumps({"type": "index_price", "at": format_at(START), "asset": "BTC",
                             "price": "50000"}))
    lines.append(json.dumps({"type": "open_account", "at": format_at(START), "account": "big",
                             "mode": "single_asset"}))
    lines.append(json.dumps({"type": "deposit", "at": format_at(START), "id": "d0",
                             "account": "big", "asset": "USDT", "amount": "1000000"}))
    lines.append(json.dumps({"type": "fill", "at": format_at(START), "id": "f0",
                             "account": "big", "symbol": "BTCUSDT", "side": "buy",
                             "qty": "10", "price": "50000"}))
    for number in range(marks):
        at = START + timedelta(seconds=number + 1)
        lines.append(json.dumps({"type": "mark_price", "at": format_at(at),
                                 "symbol": "BTCUSDT", "price": str(50000 + number % 997)}))
    return lines


def bench_state_marks(counts: list[int], pg_url: str | None, out: Callable[[str], None]
                      ) -> dict[str, Any]:
    """Time `state --at` on an account whose symbol has `count` per-second marks, at an early
    and a late T: in this process on a new `Ledger` each time (cold caches: nothing loaded;
    wall and CPU ms), in a fresh `ledger state` process (wall ms, interpreter start included),
    and — up to WHOLE_STREAMS_UP_TO marks — with the whole-stream reader (`points=False`, what
    `state` did before issue 11's point look-ups), for the growth. The marks are stored through
    the ledger's own batch path (`run_feed`, batches of 5,000)."""
    result: dict[str, Any] = {}
    for backend, base in {"sqlite": None, "postgres": pg_url}.items():
        if backend == "postgres" and not base:
            continue
        per_count: dict[str, Any] = {}
        for count in counts:
            with tempfile.TemporaryDirectory() as tmp:
                drop = None
                url = f"sqlite:///{tmp}/marks.db"
                if backend == "postgres":
                    assert base is not None
                    url, drop = scratch_postgres(base, _scratch_name(base, "state_marks"))
                try:
                    elapsed, events = _ingest(url, mark_lines(count), batch=5000)
                    found = _time_marks_states(url, count)
                finally:
                    if drop:
                        drop()
            found["stored_per_s"] = events / elapsed
            per_count[str(count)] = found
            out(f"state --at on {backend}, {count:,} marks (stored at {events / elapsed:,.0f}"
                " events/s): " + ", ".join(
                    f"{label} T {v['median_ms']:.1f} ms (CPU {v['cpu_ms']:.1f}, process"
                    f" {v['process_ms']:.0f})" for label, v in found["points"].items())
                + ("" if "whole_streams_ms" not in found else
                   f"; whole streams {found['whole_streams_ms']:,.0f} ms"))
        result[backend] = per_count
    return result


def _time_marks_states(url: str, count: int) -> dict[str, Any]:
    import shutil
    import subprocess

    from ledger.application.queries import state
    from ledger.application.service import Ledger

    moments = {"early": START + timedelta(seconds=10),
               "late": START + timedelta(seconds=count - 10)}
    points: dict[str, dict[str, float]] = {}
    answers = {}
    executable = shutil.which("ledger") or os.path.join(os.path.dirname(sys.executable),
                                                       "ledger")
    for label, at in moments.items():
        samples, cpu = [], []
        for offset in range(9):
            ledger = Ledger(url)  # new: no reference data, no account loaded
            try:
                started, cpu_started = time.perf_counter(), time.process_time()
                answers[label] = state(ledger, "big", at + timedelta(seconds=offset))
                samples.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - cpu_started) * 1000)
            finally:
                ledger.close()
        started = time.perf_counter()
        subprocess.run([executable, "--db", url, "state", "big", "--at", format_at(at),
                        "--json"], check=True, capture_output=True)
        points[label] = {"median_ms": statistics.median(samples), "max_ms": max(samples),
                         "cpu_ms": statistics.median(cpu),
                         "process_ms": (time.perf_counter() - started) * 1000}
    found: dict[str, Any] = {"points": points}
    if count <= WHOLE_STREAMS_UP_TO:
        ledger = Ledger(url)
        try:
            late = moments["late"] + timedelta(seconds=8)
            started = time.perf_counter()
            whole = state(ledger, "big", late, points=False)
            found["whole_streams_ms"] = (time.perf_counter() - started) * 1000
            assert whole == answers["late"], "point look-ups and whole streams disagree"
        finally:
            ledger.close()
    return found


def _time_states(url: str, moments: dict[str, datetime]) -> dict[str, dict[str, float]]:
    from ledger.application.queries import state
    from ledger.application.service import Ledger

    ledger = Ledger(url)
    state(ledger, "big", START)  # warm: connections and imports (reference data: point reads)
    timings = {}
    for label, at in moments.items():
        samples = []
        for offset in range(15):
            moment = at + timedelta(seconds=offset * 7)
            ledger = _fresh(ledger)
            started = time.perf_counter()
            state(ledger, "big", moment)
            samples.append((time.perf_counter() - started) * 1000)
        timings[label] = {"median_ms": statistics.median(samples), "max_ms": max(samples)}
    return timings


def _fresh(ledger: Any) -> Any:
    """Forget cached accounts (so each query reads the store), keep reference data."""
    ledger.uow.accounts.clear()
    return ledger


def _on_scratch(pg_url: str, case: str, measure: Callable[[str], Any]) -> Any:
    """Run one case on a scratch PostgreSQL database of its own, dropped afterwards."""
    url, drop = scratch_postgres(pg_url, f"ledger_bench_{case}")
    try:
        return measure(url)
    finally:
        drop()


def run_bench(*, fills: int, history: int, pg_url: str | None, only: set[str],
              portfolio_accounts: int = 10_000) -> int:
    from ledger.numbers import install

    install()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}

    def out(line: str) -> None:
        print(line, flush=True)

    wanted = only or {"ingest", "state", "portfolio", "funding", "projections"}
    if "ingest" in wanted:
        results["ingest"] = bench_ingest(fills, pg_url, out)
    if "state" in wanted:
        results["state"] = bench_state(history, pg_url, out)
    if "growth" in wanted:  # issue 11: only when asked (`--only growth --fills 300000`)
        results["growth"] = bench_growth(fills, out)
    if "api" in wanted:  # issue 12: only when asked (`--only api`)
        from benchmarks.api import bench_api

        results["api"] = bench_api(history, pg_url, out)
    if "shards" in wanted and pg_url:  # issue 11: only when asked (`--only shards`)
        from benchmarks.shards import bench_shards

        results["shards"] = bench_shards(pg_url, out)
    if "portfolio" in wanted:
        from benchmarks.portfolio import bench_portfolio

        results["portfolio"] = bench_portfolio(out, portfolio_accounts)
    if "funding" in wanted and pg_url:
        from benchmarks.funding import funding_bench

        results["funding"] = _on_scratch(pg_url, "funding", lambda url: funding_bench(url,
                                                                                   100_000))
        out(f"funding: {results['funding']}")
    if "projections" in wanted and pg_url:
        from benchmarks.projections import catch_up_rate

        results["projections"] = _on_scratch(pg_url, "projections",
                                             lambda url: catch_up_rate(url, 50_000))
        out(f"projections: {results['projections']}")
    Path("bench-results.json").write_text(json.dumps(results, indent=2, default=str))
    out("figures written to bench-results.json")
    return 0


