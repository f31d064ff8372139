"""The event stream: the store's notification log published to NATS JetStream (an edge).

`ledger publish` follows the log in notification order and publishes every event once:

- an account's event to `<prefix>.events.<account>`: the `ledger events --json` item
  (`ledger.application.queries.render_event`) plus `account` and `position`;
- a reference event (asset, instrument, settings stream) to `<prefix>.reference.<kind>.<name>`:
  the same rendering plus `kind`, `name` and `position`.

Names go into subjects through `encode_token` (NATS splits subjects on `.`; `*`, `>` and
whitespace are special): the bytes [A-Za-z0-9_-] stay, every other byte of the UTF-8 name
becomes `~XX` (two upper-case hex digits), so `system:fees` is `system~3Afees`, and
`decode_token` gives the name back. docs/stream.md is the user's page.

Exactly once, as a consumer sees it:

- every message carries `Nats-Msg-Id: <stream id>:<version>` (JetStream's duplicate window drops
  a message sent again) and `Ledger-Position: <notification id>`;
- on start the publisher reads the stream's last message and resumes after its
  `Ledger-Position`; it publishes in log order on one connection and waits for every ack of a
  batch before it reads the next, so what the stream holds is always a prefix of the log (a
  kill loses a suffix of the batch in flight, never a message in the middle);
- a batch that fails (a timeout, a lost connection) is not retried blindly: the publisher reads
  the stream's last position again and continues after it, and the message ids drop whatever
  was stored but not acknowledged;
- a hole in the log (ids taken by a PostgreSQL write that was killed before it committed) is
  skipped: the write path commits ids in order (a table lock), so no id below one already read
  is ever filled in later.

The publisher never writes to the store; the core never imports this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.application.queries import render_event

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from ledger.application.service import Ledger

log = logging.getLogger("ledger.publisher")

DEFAULT_STREAM = "LEDGER"
DEFAULT_PREFIX = "ledger"
BATCH = 1000
POLL_S = 0.2
ACK_TIMEOUT_S = 30.0
DUPLICATE_WINDOW_S = 120.0
MSG_ID = "Nats-Msg-Id"
POSITION = "Ledger-Position"

_SAFE = re.compile(rb"[A-Za-z0-9_-]")
_ESCAPE = re.compile(r"~([0-9A-F]{2})")


def encode_token(name: str) -> str:
    """Return `name` as one subject token: [A-Za-z0-9_-] kept, any other byte of its UTF-8
    encoding written `~XX` (upper-case hex). `system:fees` → `system~3Afees`; the empty name
    is `~` alone (a subject token cannot be empty)."""
    if not name:
        return "~"
    out: list[str] = []
    for byte in name.encode("utf-8"):
        char = bytes([byte])
        out.append(char.decode() if _SAFE.fullmatch(char) else f"~{byte:02X}")
    return "".join(out)


def decode_token(token: str) -> str:
    """Return the name `encode_token` made `token` from."""
    if token == "~":
        return ""
    raw = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "~":
            if _ESCAPE.match(token, index) is None:
                raise ValueError(f"bad escape at {index} in subject token {token!r}")
            raw.append(int(token[index + 1:index + 3], 16))
            index += 3
        else:
            if not _SAFE.fullmatch(token[index].encode()):
                raise ValueError(f"{token[index]!r} cannot appear in an encoded token")
            raw.extend(token[index].encode())
            index += 1
    return raw.decode("utf-8")


def subjects(prefix: str) -> list[str]:
    """The stream's subjects: events and reference data (never `<prefix>.commands.>`)."""
    return [f"{prefix}.events.>", f"{prefix}.reference.>"]


def event_subject(prefix: str, account: str) -> str:
    return f"{prefix}.events.{encode_token(account)}"


def reference_subject(prefix: str, kind: str, name: str) -> str:
    return f"{prefix}.reference.{kind}.{encode_token(name)}"


class StreamAheadError(RuntimeError):
    """The stream holds positions this store's log does not reach: another store's stream."""


@dataclass
class Counts:
    """What one `ledger publish` did (its last JSON line)."""

    published: int = 0  # messages the stream acknowledged as new
    events: int = 0  # of which account events
    reference: int = 0  # of which reference events
    duplicates: int = 0  # acknowledged as duplicates (sent again after a failed batch)
    resumed_after: int = 0  # the stream's last position when the publisher started
    position: int = 0  # the last position the stream holds
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Message:
    subject: str
    payload: bytes
    headers: dict[str, str]
    position: int
    is_account: bool


class Streams:
    """Stream id → (kind, name), from `ledger_streams` (written with the stream's events)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[str, tuple[str, str]] = {}

    def find(self, stream_id: UUID) -> tuple[str, str]:
        key = stream_id.hex
        found = self.known.get(key)
        if found is None:
            index = self.ledger.index
            rows = index._rows(index._sql(
                "SELECT kind, name FROM ledger_streams WHERE stream_id = ?"), (key,))
            if not rows:
                raise LookupError(f"stream {key} has events but no ledger_streams row")
            found = (str(rows[0][0]), str(rows[0][1]))
            self.known[key] = found
        return found


class Publisher:
    """Publishes the log to one JetStream stream; `run` does the work."""

    def __init__(self, ledger: Ledger, servers: str, *, stream: str = DEFAULT_STREAM,
                 prefix: str = DEFAULT_PREFIX, batch: int = BATCH, poll_s: float = POLL_S,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.ledger = ledger
        self.servers = servers
        self.stream = stream
        self.prefix = prefix
        self.batch = batch
        self.poll_s = poll_s
        self.on_batch = on_batch
        self.streams = Streams(ledger)
        self.counts = Counts()

    # ------------------------------------------------------------------ messages

    def message(self, notification: Any) -> Message:
        """Build the message of one notification of the log."""
        event = self.ledger.mapper.to_domain_event(notification)
        kind, name = self.streams.find(event.originator_id)
        item = render_event(event)
        position = int(notification.id)
        if kind == "account":
            item["account"] = name
            subject = event_subject(self.prefix, name)
        else:
            item["kind"] = kind
            item["name"] = name
            subject = reference_subject(self.prefix, kind, name)
        item["position"] = position
        headers = {MSG_ID: f"{event.originator_id}:{event.originator_version}",
                   POSITION: str(position)}
        payload = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
        return Message(subject, payload, headers, position, kind == "account")

    def read(self, after: int) -> Sequence[Any]:
        """The next notifications after position `after` (holes skipped)."""
        return self.ledger.recorder.select_notifications(
            start=after, limit=self.batch, inclusive_of_start=False)

    # ------------------------------------------------------------------ JetStream

    async def ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream if it is missing (subjects: events and reference data)."""
        from nats.js.errors import NotFoundError

        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=subjects(self.prefix),
                                duplicate_window=DUPLICATE_WINDOW_S)

    async def last_position(self, js: JetStreamContext) -> int:
        """The `Ledger-Position` of the stream's last message (0: the stream is empty)."""
        info = await js.stream_info(self.stream)
        last = info.state.last_seq
        if not info.state.messages or not last:
            return 0
        message = await js.get_msg(self.stream, seq=last)
        value = (message.headers or {}).get(POSITION)
        if value is None:
            raise RuntimeError(f"stream {self.stream}: its last message (sequence {last}) has "
                               f"no {POSITION} header: not a stream this publisher writes")
        return int(value)

    async def publish_batch(self, js: JetStreamContext, messages: Sequence[Message]) -> None:
        futures = [await js.publish_async(m.subject, m.payload, headers=dict(m.headers))
                   for m in messages]
        acks = await asyncio.wait_for(asyncio.gather(*futures), ACK_TIMEOUT_S)
        for message, ack in zip(messages, acks, strict=True):
            if ack.stream != self.stream:
                raise RuntimeError(f"{message.subject} was stored in stream {ack.stream}, "
                                   f"not {self.stream}")
            if ack.duplicate:
                self.counts.duplicates += 1
                continue
            self.counts.published += 1
            if message.is_account:
                self.counts.events += 1
            else:
                self.counts.reference += 1
        self.counts.position = messages[-1].position

    async def run(self, *, once: bool = False, stop: asyncio.Event | None = None) -> Counts:
        """Publish until caught up (`once`) or until `stop` is set; return the counts."""
        import nats

        started = time.perf_counter()
        stop = stop or asyncio.Event()
        async def quiet(error: Exception) -> None:
            log.warning("nats: %s", error)

        # 20 attempts half a second apart: a server restart is ridden out; a wrong URL fails
        # within seconds (the library's initial connect follows the same policy).
        nc = await nats.connect(self.servers, connect_timeout=5, max_reconnect_attempts=20,
                                reconnect_time_wait=0.5, error_cb=quiet,
                                name="ledger publish")
        try:
            js = nc.jetstream(publish_async_max_pending=max(4000, self.batch))
            await self.ensure_stream(js)
            position = await self.last_position(js)
            head = self.ledger.recorder.max_notification_id() or 0
            if position > head:
                raise StreamAheadError(
                    f"stream {self.stream} holds position {position}, beyond this store's log "
                    f"(last position {head}): it was published from another store; name "
                    "another --stream (or delete this one) to publish this store")
            self.counts.resumed_after = self.counts.position = position
            while not stop.is_set():
                notifications = self.read(position)
                if notifications:
                    messages = [self.message(n) for n in notifications]
                    try:
                        await self.publish_batch(js, messages)
                    except (TimeoutError, OSError, nats.errors.Error) as error:
                        log.warning("batch after position %d failed (%s): resuming after the "
                                    "stream's last position", position, error)
                        await asyncio.sleep(self.poll_s)
                        position = await self.last_position(js)
                        self.counts.position = position
                        continue
                    position = messages[-1].position
                    if self.on_batch is not None:
                        self.on_batch(len(messages))
                    if len(notifications) == self.batch:
                        continue
                if once:
                    break
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_s)
                except TimeoutError:
                    pass
        finally:
            await nc.drain()
            self.counts.seconds = round(time.perf_counter() - started, 3)
        return self.counts
