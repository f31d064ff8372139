"""Fixtures of the event-stream tests: a real NATS server with JetStream, a stream per test.

The server is the one answering on 127.0.0.1:4222 (LEDGER_TEST_NATS_URL names another); `.ci/run`
starts `nats-server -js` where none answers. Without a server these tests skip with a reason,
except under CI=true, where they fail (a test never silently passes on a skip).

Each test gets a stream name and a subject prefix of its own (`Target`), so tests running at the
same time never share subjects (JetStream refuses two streams with overlapping subjects); the
stream is deleted after the test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from .support import Target, delete_stream

NATS_URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def nats_url() -> str:
    parts = urlparse(NATS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222),
                                      timeout=3):
            pass
    except OSError as error:
        if os.environ.get("CI"):
            pytest.fail(f"NATS at {NATS_URL} is required under CI=true: {error}")
        pytest.skip(f"no NATS server at {NATS_URL}: {error}")
    return NATS_URL


@pytest.fixture
def target(nats_url: str) -> Iterator[Target]:
    tag = uuid.uuid4().hex[:12]
    found = Target(nats_url, f"TEST_{tag}", f"t{tag}")
    yield found
    asyncio.run(delete_stream(found))


