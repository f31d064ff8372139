"""Streaming intake on NATS JetStream (issue 11, docs/sharding.md): `ledger submit` publishes a
feed's commands to the stream `LEDGER_COMMANDS`, one subject per shard; `ledger consume` applies
one shard's commands in order into a store.

Subjects (all in the stream, under `ledger.commands.>`):
- `ledger.commands.<i>`: the commands of shard i, in feed order; reference data and periodic
  commands go to every shard. Headers: `Nats-Msg-Id` = the command's idempotency key (its
  content hash where it has none, as `Ledger.handle` derives it) + `#<i>`; `Ledger-Line` = the
  feed line number;
- `ledger.commands.sync.<h>.<i>` / `ledger.commands.sync.<h>.done`: the barrier of a reference or
  periodic line `h` (shard i has committed everything before it / shard 0 has applied it);
- `ledger.commands.leg.<h>.out` / `ledger.commands.leg.<h>.verdict`: a transfer between two
  shards (the source's out-leg outcome / the destination's verdict).
Every coordination message carries a `Nats-Msg-Id`, so a worker that runs a step again after a
restart publishes nothing twice; waiting is reading the subject's last message.

A consumer's position is part of its store: each transaction it commits records the stream
sequence of the last message it applied (an idempotency row `consumer|<durable>|@`, its `at`
holding the sequence). A restarted consumer reads again from the durable consumer's
acknowledgement floor and skips what its store already holds, so a message is applied once
whatever the moment of a kill (between the commit and the acknowledgement included).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.application.commands import (
    Command,
    TransferCmd,
    idempotency_key,
    parse_line,
    repeat_key,
)
from ledger.application.feed import Rejection, _raw_identity, _rejection
from ledger.application.shards import shard_of
from ledger.application.workers import ACKNOWLEDGED, ShardWorker, route
from ledger.domain.chain import canonical_json, text_hash
from ledger.errors import IdConflictError, LedgerError
from ledger.times import to_micros

STREAM = "LEDGER_COMMANDS"
PREFIX = "ledger.commands"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POLL = 0.005  # seconds between two looks at a coordination subject


def message_id(command: Command) -> str:
    """The command's idempotency key, or its content hash where it has none (Ledger.handle)."""
    digest = text_hash(canonical_json(command.content()))
    return idempotency_key(command) or repeat_key(command, digest)


def _tag(msg_id: str, line: int) -> str:
    """A subject token for one line's coordination (hex: no dots or wildcards)."""
    return hashlib.sha256(f"{msg_id}\n{line}".encode()).hexdigest()[:24]


async def ensure_stream(js: Any, stream: str, prefix: str) -> None:
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"])


# ---------------------------------------------------------------------------------- submit


async def submit(url: str, shards: int, lines: Iterable[tuple[int, str]],
                 on_reject: Callable[[Rejection], None], stream: str = STREAM,
                 prefix: str = PREFIX) -> tuple[int, int]:
    """Publish a feed; return (messages published, lines rejected as malformed).

    A run of consecutive reference or periodic lines goes to every shard between a `begin` and
    an `end` message (header `Ledger-Kind`), the barrier the consumers hold around it."""
    import nats

    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        await ensure_stream(js, stream, prefix)
        counts = [0, 0]
        run: list[tuple[int, str, str]] = []

        digests: dict[str, str] = {}  # key → content hash of what this run published

        async def publish(shard: int, data: bytes, msg_id: str, line: int, kind: str) -> bool:
            """Publish; False when JetStream dropped it as a duplicate of its `Nats-Msg-Id`."""
            ack = await js.publish(f"{prefix}.{shard}", data, stream=stream, headers={
                "Nats-Msg-Id": f"{msg_id}#{shard}", "Ledger-Line": str(line),
                "Ledger-Kind": kind})
            counts[0] += 1
            return not ack.duplicate

        def conflict(number: int, command: Command, key: str) -> bool:
            """A money command whose id this run published with other content: JetStream
            drops it (same `Nats-Msg-Id`), so no consumer would say `id_conflict`; say it."""
            digest = text_hash(canonical_json(command.content()))
            first = digests.setdefault(key, digest)
            if first == digest:
                return False
            identifier = getattr(command, "id", None)
            on_reject(Rejection(number, command.type, identifier, IdConflictError.code,
                                f"id {identifier!r} was used by a different command"))
            counts[1] += 1
            return True

        async def release() -> None:
            if not run:
                return
            barrier = _tag("\n".join(key for _, _, key in run), run[0][0])
            marker = json.dumps({"barrier": barrier}).encode()
            for shard in range(shards):
                await publish(shard, marker, f"barrier:{barrier}:begin", run[0][0], "begin")
                for number, text, key in run:
                    await publish(shard, text.encode("utf-8"), key, number, "global")
                await publish(shard, marker, f"barrier:{barrier}:end", run[-1][0], "end")
            run.clear()

        for number, text in lines:
            try:
                command = parse_line(text)
            except LedgerError as error:
                on_reject(_rejection(number, *_raw_identity(text), error))
                counts[1] += 1
                continue
            shards_of = route(command, shards)
            key = message_id(command)
            if shards_of is None:
                run.append((number, text, key))
                continue
            await release()
            if idempotency_key(command) is not None and conflict(number, command, key):
                continue
            source, target = shards_of
            kind = "account" if source == target else "transfer"
            for shard in sorted({source, target}):
                await publish(shard, text.encode("utf-8"), key, number, kind)
        await release()
        return counts[0], counts[1]
    finally:
        await connection.close()


# ---------------------------------------------------------------------------------- consume


class Consumer:
    """One shard's worker on JetStream (module docstring)."""

    def __init__(self, nats_url: str, shard: int, shards: int, db: str,
                 on_reject: Callable[[Rejection], None], stream: str = STREAM,
                 prefix: str = PREFIX, batch: int = 500, idle: float = 1.0) -> None:
        self.nats_url, self.shard, self.shards = nats_url, shard, shards
        self.stream, self.prefix, self.batch, self.idle = stream, prefix, batch, idle
        self.on_reject = on_reject
        self.durable = f"{stream}-shard-{shard}-of-{shards}"
        self.worker = ShardWorker(db)
        self.ledger = self.worker.ledger
        self.position_key = f"consumer|{self.durable}|@"
        times = self.ledger.index.command_times(self.position_key)
        self.position = max(times) if times else 0  # the last stream sequence applied
        self.js: Any = None
        self.applied = self.acknowledged = self.rejected = 0

    # -------------------------------------------------------------- plumbing

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        start = 1
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
            start = info.ack_floor.stream_seq + 1
            await self.js.delete_consumer(self.stream, self.durable)
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            filter_subject=f"{self.prefix}.{self.shard}", max_ack_pending=-1,
            ack_wait=3600)
        return await self.js.pull_subscribe(
            f"{self.prefix}.{self.shard}", durable=self.durable, stream=self.stream,
            config=config)

    async def _publish(self, subject: str, body: str) -> None:
        await self.js.publish(subject, body.encode(), stream=self.stream,
                              headers={"Nats-Msg-Id": subject})

    async def _wait(self, subject: str) -> str:
        from nats.js.errors import NotFoundError

        while True:
            try:
                message = await self.js.get_last_msg(self.stream, subject)
            except NotFoundError:
                await asyncio.sleep(POLL)
                continue
            return bytes(message.data).decode()

    def _apply(self, items: list[tuple[int, str, str | None, str]],
               seq: int | None) -> list[Any]:
        """Apply items in one transaction, with the position `seq` when the message is done
        (a step of a barrier or of a transfer that must run again after a restart gives
        None: its commands are idempotent and its state has not moved on)."""
        ledger = self.ledger
        with ledger.batch():
            outcomes = self.worker.apply(items)
            if seq is not None:
                ledger.uow.remember_key(f"{self.position_key}{seq}", "", EPOCH
                                        + timedelta(microseconds=seq), "{}")
        if seq is not None:
            self.position = seq
        self._report()
        return outcomes

    def _report(self) -> None:
        report = self.worker.report
        for rejection in report.rejected:
            self.on_reject(rejection)
            self.rejected += 1
        self.applied += report.applied
        self.acknowledged += report.acknowledged
        report.rejected.clear()
        report.applied = report.acknowledged = 0

    # -------------------------------------------------------------- the loop

    async def run(self, once: bool) -> None:
        import nats

        connection = await nats.connect(self.nats_url)
        try:
            self.js = connection.jetstream()
            await ensure_stream(self.js, self.stream, self.prefix)
            subscription = await self._subscribe()
            delivered = 0  # the consumer sequence of the last message this worker received
            while True:
                try:
                    messages = await subscription.fetch(self.batch, timeout=self.idle)
                except TimeoutError:  # nats' own is one too: nothing came in `idle`
                    info = await subscription.consumer_info()
                    if info.num_ack_pending and info.delivered.consumer_seq > delivered:
                        # Delivered into a fetch that had timed out: lost to this worker, and
                        # JetStream would send it again only after ack_wait, out of order.
                        subscription, delivered = await self._resubscribe(subscription), 0
                    elif once and info.num_pending == 0 and info.num_ack_pending == 0:
                        return
                    continue
                first = messages[0].metadata.sequence.consumer
                if first != delivered + 1:  # the same loss, seen from the next fetch
                    subscription, delivered = await self._resubscribe(subscription), 0
                    continue
                delivered = messages[-1].metadata.sequence.consumer
                await self._handle(messages)
        finally:
            await connection.close()

    async def _resubscribe(self, subscription: Any) -> Any:
        """Start again in order from the acknowledgement floor (what this worker's store
        already holds is skipped by position)."""
        await subscription.unsubscribe()
        return await self._subscribe()

    async def _handle(self, messages: list[Any]) -> None:
        """Apply a fetched page in order: account lines (and, on shard 0, reference and
        periodic lines) in one transaction with the position; barriers and cross-shard
        transfers step by step; acknowledge each message once its outcome is durable."""
        plain: list[tuple[int, str, str | None, str]] = []
        waiting: list[Any] = []
        last: int | None = None

        async def settle() -> None:
            nonlocal plain, waiting, last
            if plain or (last is not None and last > self.position):
                self._apply(plain, last)
            for done in waiting:
                await done.ack()
            plain, waiting, last = [], [], None

        for message in messages:
            seq = message.metadata.sequence.stream
            waiting.append(message)
            if seq <= self.position:  # applied before a restart: its store holds it
                continue
            headers = message.headers or {}
            kind = headers.get("Ledger-Kind", "account")
            number = int(headers.get("Ledger-Line", "0"))
            text = bytes(message.data).decode("utf-8")
            if kind == "account" or (kind == "global" and self.shard == 0):
                plain.append((number, text, None, ""))
            elif kind in ("begin", "end", "transfer"):
                waiting.pop()
                await settle()
                if kind == "transfer":
                    command = parse_line(text)  # submit published only lines that parse
                    assert isinstance(command, TransferCmd)
                    await self._transfer(number, text, command)
                else:
                    await self._barrier(kind, json.loads(text)["barrier"])
                waiting.append(message)
            last = seq  # (a global line on shard i > 0 only moves the position: shard 0 writes it)
        await settle()

    async def _barrier(self, kind: str, barrier: str) -> None:
        """Around a run of reference or periodic lines (docs/sharding.md): every shard has
        committed what precedes it before shard 0 applies the run, and catches up with the
        store (reading nothing that follows it) before it goes on."""
        base = f"{self.prefix}.sync.{barrier}"
        if kind == "begin":
            if self.shard != 0:
                await self._publish(f"{base}.{self.shard}", "reached")
                await self._wait(f"{base}.done")
            else:
                for other in range(1, self.shards):
                    await self._wait(f"{base}.{other}")
            self.ledger.catch_up()
        elif self.shard == 0:
            await self._publish(f"{base}.done", "done")

    async def _transfer(self, number: int, text: str, command: TransferCmd) -> None:
        """A transfer between two shards, leg by leg (docs/sharding.md). Each step runs again
        after a restart (its legs are idempotent, its coordination messages deduplicated)."""
        base = f"{self.prefix}.leg.{_tag(message_id(command), number)}"
        if shard_of(command.from_, self.shards) == self.shard:
            out = self._apply([(number, text, "out", "")], None)[0]
            await self._publish(f"{base}.out", json.dumps(
                ["rejected"] if isinstance(out, Rejection) else [out]))
            if isinstance(out, Rejection):
                self._rejected(out)
                return
            verdict = json.loads(await self._wait(f"{base}.verdict"))
            if verdict[0] == "in":
                self._count(out)
                return
            back = self._apply([(number, text, "return", verdict[1])], None)[0]
            if out == ACKNOWLEDGED and back == ACKNOWLEDGED:
                self._count(ACKNOWLEDGED)
            else:
                self._rejected(Rejection(number, "transfer", command.id, verdict[1], verdict[2]))
            return
        out_outcome = json.loads(await self._wait(f"{base}.out"))
        if out_outcome[0] == "rejected":
            return
        inward = self._apply([(number, text, "in", "")], None)[0]
        await self._publish(f"{base}.verdict", json.dumps(
            ["refused", inward.error, inward.message] if isinstance(inward, Rejection)
            else ["in"]))

    def _rejected(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.on_reject(rejection)

    def _count(self, outcome: Any) -> None:
        if outcome == ACKNOWLEDGED:
            self.acknowledged += 1
        else:
            self.applied += 1


def consume(nats_url: str, shard: int, shards: int, db: str, once: bool,
            on_reject: Callable[[Rejection], None], stream: str = STREAM,
            prefix: str = PREFIX) -> Consumer:
    consumer = Consumer(nats_url, shard, shards, db, on_reject, stream, prefix)
    try:
        asyncio.run(consumer.run(once))
    finally:
        consumer.ledger.close()
    return consumer


def print_rejection(rejection: Rejection) -> None:
    print(json.dumps(rejection.as_dict(), ensure_ascii=False), file=sys.stderr, flush=True)


__all__ = ["PREFIX", "STREAM", "Consumer", "consume", "message_id", "submit", "to_micros"]
