"""Helpers of the event-stream tests: the per-test target, a consumer that reads a stream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    url: str
    stream: str
    prefix: str


@dataclass(frozen=True)
class Received:
    subject: str
    data: dict[str, Any]
    headers: dict[str, str]
    sequence: int



async def delete_stream(target: Target) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(target.url)
    try:
        await nc.jetstream().delete_stream(target.stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


def consume(target: Target) -> list[Received]:
    """Every message of the stream, in stream order, as a JetStream consumer sees it."""
    return asyncio.run(_consume(target))


async def _consume(target: Target) -> list[Received]:
    import json

    import nats
    from nats.errors import TimeoutError as NatsTimeout

    nc = await nats.connect(target.url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(target.stream)).state.messages
        subscription = await js.pull_subscribe(f"{target.prefix}.>", stream=target.stream)
        found: list[Received] = []
        while len(found) < total:
            try:
                batch = await subscription.fetch(1000, timeout=2)
            except NatsTimeout:
                break
            for msg in batch:
                found.append(Received(msg.subject, json.loads(msg.data),
                                      dict(msg.headers or {}), msg.metadata.sequence.stream))
                await msg.ack()
        return found
    finally:
        await nc.close()


def stream_messages(target: Target) -> int:
    """How many messages the stream holds (0: no stream yet)."""
    return asyncio.run(_stream_messages(target))


async def _stream_messages(target: Target) -> int:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(target.url)
    try:
        return int((await nc.jetstream().stream_info(target.stream)).state.messages)
    except NotFoundError:
        return 0
    finally:
        await nc.close()
