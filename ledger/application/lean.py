"""The lean stored form of events (issue 11): the canonical JSON the chain hash covers, stored
as it was hashed, behind the library's `Mapper` interface.

An account event is encoded once, when it is recorded (`Account._record`): its canonical body
`{"fields":{…},"type":…,"version":…}` is hashed into the chain and kept on the event (`_lean`).
`LeanMapper.to_stored_event` stores those very bytes, wrapped with what the hash does not cover:

    {"L":1,"cv":<class version>,"h":"<hash>","t":"<recording time>","e":<canonical body>}

so the library's transcoder never runs on the write path, and `ledger verify` can hash the
stored body without decoding it (`lean_parts`). Rows keep the library's `StoredEvent` shape
and topic: its recorders, notification log, readers and the projections runner read them
through this mapper unchanged. A row without the `{"L":1,` prefix is the library's
own form (every store written before, snapshots, reference data, the events of a class whose
fields the lean form cannot type) and is decoded by the library as before.

Decoding types the canonical fields by the event class's annotations: `Decimal` from its
plain text (trailing zeros are not kept: equal values, `to_str` prints them alike),
`datetime` from RFC 3339, postings from `[account, asset, amount]`; `str`, `int`, `bool`
and `None` as JSON gives them. A class with any other field type is never written lean.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, Union
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from ledger.domain.postings import Posting

PREFIX = b'{"L":1,'
BOOKKEEPING = frozenset({"originator_id", "originator_version", "timestamp", "hash",
                         "originator_topic", "originator_id_type"})

Decode = Callable[[Any], Any]


# Each decoder lets None through (a field the code leaves None whatever its annotation says
# reads back as None, as the library's transcoder gives it).


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _posting(value: Any) -> Posting | None:
    return None if value is None else Posting(value[0], value[1], Decimal(value[2]))


def _postings(values: Any) -> list[Posting] | None:
    return None if values is None else [Posting(v[0], v[1], Decimal(v[2])) for v in values]


def _plain(value: Any) -> Any:
    return value


def _decoder(hint: Any) -> Decode | None:
    """The decoder of one field's canonical value, None when the lean form cannot type it."""
    if hint in (str, int, bool):
        return _plain
    if hint is Decimal:
        return _decimal
    if hint is datetime:
        return _time
    if hint is Posting:
        return _posting
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _decoder(rest[0]) if len(rest) == 1 else None
    if origin in (list, tuple, Sequence, typing.Sequence) and args and args[0] is Posting:
        return _postings
    return None


@cache
def field_decoders(cls: type) -> dict[str, Decode] | None:
    """Decoders of every field of an event class, None when one of them has no lean form."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: not lean
        return None
    decoders: dict[str, Decode] = {}
    for name, hint in hints.items():
        if name in BOOKKEEPING or typing.get_origin(hint) is typing.ClassVar:
            continue
        decode = _decoder(hint)
        if decode is None:
            return None
        decoders[name] = decode
    return decoders


def lean_parts(state: bytes) -> tuple[str, bytes] | None:
    """Return (hash, canonical body) of a lean row without decoding it; None: not lean."""
    if not state.startswith(PREFIX):
        return None
    at = state.find(b',"h":"', len(PREFIX))
    body = state.find(b',"e":', at + 70)
    if at < 0 or body < 0 or state[-1:] != b"}":
        return None
    return state[at + 6:at + 70].decode(), state[body + 5:-1]


class LeanMapper(Mapper[UUID]):
    """The library's mapper, writing events that carry their canonical body in the lean form
    and reading both forms."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        body: bytes | None = getattr(domain_event, "_lean", None)
        cls: Any = type(domain_event)
        lean = _lean_class(cls) if body is not None else None
        if body is None or lean is None or self.cipher or self.compressor:
            return super().to_stored_event(domain_event)
        opening, topic = lean
        state = b"".join((
            opening, domain_event.hash.encode(), b'","t":"',
            domain_event.timestamp.isoformat().encode(), b'","e":', body, b"}"))
        return StoredEvent(originator_id=domain_event.originator_id,
                           originator_version=domain_event.originator_version,
                           topic=topic, state=state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = stored_event.state
        if not (isinstance(state, bytes) and state.startswith(PREFIX)):
            return super().to_domain_event(stored_event)
        cls: Any = resolve_topic(stored_event.topic)
        try:
            row = orjson.loads(state)
            decoders = field_decoders(cls)
            if decoders is None:
                raise ValueError(f"{cls.__name__} has no lean form")
            fields = row["e"]["fields"]
            event_state: dict[str, Any] = {
                name: decoders[name](value) for name, value in fields.items()}
        except Exception as error:
            raise MapperDeserialisationError(
                f"Failed to deserialise lean stored event with topic '{stored_event.topic}', "
                f"originator_id '{stored_event.originator_id}' and originator_version "
                f"{stored_event.originator_version}: {error}") from error
        event_state["timestamp"] = datetime.fromisoformat(row["t"])
        event_state["hash"] = row["h"]
        originator = stored_event.originator_id
        event_state["originator_id"] = (originator if isinstance(originator, UUID)
                                        else UUID(str(originator)))
        event_state["originator_version"] = stored_event.originator_version
        version = row.get("cv", 1)
        while version < getattr(cls, "class_version", 1):
            getattr(cls, f"upcast_v{version}_v{version + 1}")(event_state)
            version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event


@cache
def _lean_class(cls: type) -> tuple[bytes, str] | None:
    """The opening of a lean row of an event class (`{"L":1,"cv":<version>,"h":"`) and the
    class's topic; None when the class has no lean form."""
    if field_decoders(cls) is None:
        return None
    opening = b'{"L":1,"cv":' + str(getattr(cls, "class_version", 1)).encode() + b',"h":"'
    return opening, get_topic(cls)
