"""`ledger bench --only api`: latency of `GET /v1/accounts/big/state?at=T` under load.

A store whose account `big` has `history` events (`benchmarks.run.history_lines`, one fill a
second), a real `ledger serve` process, and an asyncio load generator (httpx): CLIENTS
concurrent clients, each sending its share of REQUESTS requests back to back, every one at a
random second of the history. Reported: median and p99 latency (ms) and requests/s, per backend.
The load generator shares the machine with the server: on a small machine its own CPU time is
part of the latency measured.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

CLIENTS = 50
REQUESTS = 2_000
WORKERS = 2  # server processes: one per core of the machines the figures come from


def bench_api(history: int, pg_url: str | None, out: Callable[[str], None],
              clients: int = CLIENTS, requests: int = REQUESTS,
              workers: int = WORKERS) -> dict[str, Any]:
    from benchmarks.run import START, _ingest, history_lines, scratch_postgres

    result: dict[str, Any] = {"events": history, "clients": clients, "requests": requests,
                              "workers": workers}
    lines = history_lines(history)
    seconds = history // 2
    for backend, base in (("sqlite", None), ("postgres", pg_url)):
        if backend == "postgres" and not base:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            drop = None
            url = f"sqlite:///{tmp}/api.db"
            if backend == "postgres":
                assert base is not None
                url, drop = scratch_postgres(base, "ledger_bench_api")
            try:
                started = time.perf_counter()
                _ingest(url, lines, batch=5000)
                built = time.perf_counter() - started
                moments = [(START + timedelta(seconds=random.Random(n).randint(1, seconds)))
                           for n in range(requests)]
                figures = _serve_and_load(url, moments, clients, workers)
            finally:
                if drop:
                    drop()
        figures["store_build_s"] = round(built, 1)
        result[backend] = figures
        out(f"GET state?at= on {backend}, account with {history:,} events, {clients} clients, "
            f"{workers} server processes: "
            f"median {figures['median_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"{figures['requests_per_s']:.0f} requests/s")
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_and_load(url: str, moments: list[Any], clients: int, workers: int
                    ) -> dict[str, float]:
    import httpx

    from ledger.api import tokens
    from ledger.application import schema

    engine = schema.create_engine(url)
    try:
        token = tokens.create(engine, "bench", "service", "2025-01-01T00:00:00Z")
    finally:
        engine.dispose()
    port = _free_port()
    log = tempfile.TemporaryFile()  # the server's stderr, shown if it fails
    server = subprocess.Popen([sys.executable, "-m", "ledger.cli", "--db", url, "serve",
                               "--port", str(port), "--workers", str(workers),
                               "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("ledger serve did not start")
            time.sleep(0.2)
        return asyncio.run(_load(base, token, moments, clients))
    except Exception:
        log.seek(0)
        sys.stderr.write(log.read().decode("utf-8", "replace")[-4000:])
        raise
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _load(base: str, token: str, moments: list[Any], clients: int) -> dict[str, float]:
    import httpx

    from ledger.times import format_at

    headers = {"Authorization": f"Bearer {token}"}
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for moment in moments:
        queue.put_nowait(format_at(moment))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=120) as client:
        await client.get("/v1/accounts/big/state")  # warm: reference data loaded once

        async def worker() -> None:
            while not queue.empty():
                at = queue.get_nowait()
                started = time.perf_counter()
                response = await client.get("/v1/accounts/big/state", params={"at": at})
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"median_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max_ms": latencies[-1], "requests_per_s": len(latencies) / elapsed}
