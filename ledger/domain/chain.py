"""Canonical JSON and the SHA-256 hash chain of events (tamper evidence, DESIGN §9).

Each account and reference event carries `hash = sha256(previous hash + canonical JSON of the
event)`, where the canonical JSON holds the event's type, version and every field but the hash
itself, with sorted keys, decimals as plain text without trailing zeros ("10000.0" is "10000")
and times in RFC 3339. The first event chains from `GENESIS`. The same canonical form gives the
content hash of commands (idempotency, STYLE §8).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

from ledger.domain.postings import Posting
from ledger.numbers import to_str
from ledger.times import format_at

_format_at = lru_cache(maxsize=4096)(format_at)  # the events of a command share their `at`

GENESIS = "0" * 64

BOOKKEEPING = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic",
                         "hash"})
"""Event attributes the chain does not cover: the library's bookkeeping and the hash itself."""


def _default(value: Any) -> Any:
    """Encode what JSON does not know: decimals as plain text without trailing zeros, times
    in RFC 3339, postings as [account, asset, amount], UUIDs as text."""
    if isinstance(value, Decimal):
        return to_str(value)
    if isinstance(value, datetime):
        return _format_at(value)
    if isinstance(value, Posting):
        return [value.account, value.asset, to_str(value.amount)]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot put {type(value).__name__} in canonical JSON")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            default=_default)


_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def canonical_bytes(value: Any) -> bytes:
    """Return the canonical JSON of a value as UTF-8 bytes (sorted keys, no spaces, decimals
    as text), byte for byte what `canonical_json` gives.

    orjson writes it (sorted keys, no spaces, UTF-8 without `\\u` escapes of non-ASCII, the same
    escapes of control characters as the standard library with `ensure_ascii=False`); what it
    refuses (integers beyond 64 bits, keys that are not text) goes through the standard
    library's encoder, which defines the form (tests/application/test_lean_hashes.py)."""
    if type(value) is dict:
        value = plain_fields(value)
    try:
        return orjson.dumps(value, default=_default, option=_FAST)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _ENCODER.encode(value).encode()


def plain_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields with their decimals, times and postings written as canonical text:
    what `_default` would make of them, converted up front (the same bytes; orjson then never
    calls back into Python for them). Anything else is left to `_default`."""
    plain = dict(fields)
    for name, value in plain.items():
        kind = type(value)
        if kind is Decimal:
            plain[name] = to_str(value)
        elif kind is datetime:
            plain[name] = _format_at(value)
        elif kind is list and value and type(value[0]) is Posting:
            plain[name] = [[p.account, p.asset, to_str(p.amount)] if type(p) is Posting else p
                           for p in value]
    return plain


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a value (sorted keys, no spaces, decimals as text)."""
    return canonical_bytes(value).decode()


def chain_body(event_type: str, version: int, fields: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON that an event's hash covers (and the lean store keeps)."""
    body = {"type": event_type, "version": version, "fields": plain_fields(fields)}
    try:
        return orjson.dumps(body, default=_default, option=_FAST)
    except TypeError:  # as `canonical_bytes`: the standard library defines the form
        return _ENCODER.encode(body).encode()


def hash_body(previous: str, body: bytes) -> str:
    """Return sha256(previous hash + canonical body) in hex."""
    return hashlib.sha256(previous.encode() + body).hexdigest()


def chain_hash(previous: str, event_type: str, version: int, fields: Mapping[str, Any]) -> str:
    """Return the hash of an event chained to `previous`."""
    return hash_body(previous, chain_body(event_type, version, fields))


def event_fields(event: Any) -> dict[str, Any]:
    """Return the fields of a stored event that its hash covers."""
    return {k: v for k, v in vars(event).items() if k not in BOOKKEEPING}


def content_hash(fields: Mapping[str, Any]) -> str:
    """Return the SHA-256 of a command's canonical JSON (same content ⇔ same hash)."""
    return text_hash(canonical_bytes(plain_fields(fields)))


def text_hash(text: str | bytes) -> str:
    """Return the SHA-256 (hex) of a canonical JSON text (str or its UTF-8 bytes)."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()
