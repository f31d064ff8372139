"""`/metrics` with `--nats`: publisher lag = log head − the `Ledger-Position` header of the last
message in the JetStream stream (what `ledger publish` puts on every message), against the real
NATS server at 127.0.0.1:4222 and a real `ledger serve`."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
from api_support import FEED, LEDGER, env, free_port, ledger, wait_until_serving, write_feed

NATS_URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def _stream_with_position(stream: str, subject: str, position: int | None) -> None:
    import nats

    connection = await nats.connect(NATS_URL, connect_timeout=3)
    try:
        jetstream = connection.jetstream()
        try:
            await jetstream.delete_stream(stream)
        except Exception:  # noqa: BLE001 - not there yet
            pass
        if position is None:
            return
        await jetstream.add_stream(name=stream, subjects=[subject + ".>"])
        await jetstream.publish(subject + ".alice", b"{}", stream=stream,
                                headers={"Ledger-Position": str(position)})
    finally:
        await connection.close()


def test_publisher_lag_is_the_head_minus_the_last_published_position(tmp_path: Path) -> None:
    pytest.importorskip("nats", reason="nats-py comes with `ledger publish` (issue 12)")
    stream, subject = f"LEDGER_API_TEST_{os.getpid()}", f"apitest{os.getpid()}"
    try:
        asyncio.run(_stream_with_position(stream, subject, 4))
    except Exception as error:  # noqa: BLE001 - no NATS server answering
        if os.environ.get("CI"):
            pytest.fail(f"NATS at {NATS_URL} is required under CI=true: {error}")
        pytest.skip(f"no NATS with JetStream at {NATS_URL}: {error}")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert ledger("--db", url, "run", str(write_feed(tmp_path / "f.jsonl", FEED)),
                  cwd=tmp_path).returncode == 0
    port = free_port()
    process = subprocess.Popen([str(LEDGER), "--db", url, "serve", "--port", str(port),
                                "--nats", NATS_URL, "--stream", stream], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process)
        logged = int(httpx.get(base + "/healthz", timeout=10).json()["log_position"])
        metrics = httpx.get(base + "/metrics", timeout=30).text
        found = re.search(r"^ledger_publisher_lag ([-0-9.e+]+)$", metrics, re.M)
        assert found, metrics
        assert logged > 4
        assert float(found.group(1)) == logged - 4
    finally:
        process.terminate()
        process.wait(timeout=30)
        asyncio.run(_stream_with_position(stream, subject, None))
