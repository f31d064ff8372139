"""Tamper evidence: what `ledger verify` checks, and `ledger seal`'s anchor (DESIGN §9).

Plain verify (no anchor) reads the whole store and checks, stream by stream and then as a whole:

- every stream's hash chain (accounts and reference data): each event's hash is recomputed from
  its content and its predecessor's hash; versions run 1, 2, 3 … with no hole; account postings
  balance. Reference events written before reference streams were chained hold no hash: they
  are counted as "unchained (legacy)" and the hash they would have had is carried forward, so
  the first chained event after them covers them; a hashless event after a chained one breaks.
- every snapshot against the events it summarises: the stream is replayed from its first event
  to the snapshot's version and the folded aggregate must equal the snapshot's state.
- the side indexes against the log: every (stream, version) of `ledger_event_index` is an event
  and every event is indexed with its own time and type (`state --at T` picks versions by the
  index); every stream of `ledger_streams` has events, every event's stream
  is listed there, and its id is the one its kind and name give.
- the log itself: notification ids run 1 … max with no hole. A hole means deleted events. On
  SQLite (the rowid) nothing else makes one. On PostgreSQL (a sequence) a conflicting write
  fails on the index rows before it takes ids, so it leaves none; only a write that dies after
  taking ids and before committing (a killed process, a lost connection) can — such a hole is
  reported like a deletion, and once the operator has looked into it, `ledger seal` records it
  in the anchor, which then accepts it.

What no check of the store alone can see: events deleted from the end of the log (or a whole
stream whose events were all at the end) together with their index rows, and a chain edited
then recomputed forward. The anchor catches those: `seal` writes the log position, every
stream's head (version and hash) and a root hash over them (plus an HMAC-SHA256 of the root
when a key is given); `verify` with the anchor checks that every anchored head is still there
with its hash, that the log reaches the anchored position, that the anchor's root matches its
content and, with the key, that its HMAC does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import orjson

from ledger.application.lean import lean_parts
from ledger.application.store import _stored
from ledger.domain.chain import GENESIS, canonical_json, chain_hash, event_fields, hash_body
from ledger.domain.ids import account_id, asset_id, instrument_id, portfolio_settings_id
from ledger.domain.postings import Posting, unbalanced
from ledger.domain.reference import Reference
from ledger.times import format_at, from_micros, parse_at, to_micros

if TYPE_CHECKING:
    from ledger.application.service import Ledger

ANCHOR_FORMAT = "ledger-anchor/1"
LOG = "log"
ANCHOR = "anchor"


@dataclass(frozen=True)
class Break:
    """One finding: the stream (an account's name, `kind:name` for reference data, `log` or
    `anchor`), the version where it shows (None when it is not one event's), and why."""

    stream: str
    version: int | None
    reason: str

    @property
    def account(self) -> str:
        """The stream (the name `verify` has always used for it)."""
        return self.stream

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "version": self.version, "reason": self.reason}

    def __str__(self) -> str:
        where = f" at version {self.version}" if self.version is not None else ""
        return f"{self.stream}{where}: {self.reason}"


@dataclass(frozen=True)
class Head:
    label: str
    version: int
    hash: str


@dataclass
class Audit:
    """What `audit` found."""

    accounts: int = 0
    streams: int = 0
    events: int = 0
    snapshots: int = 0
    legacy: int = 0  # reference events written before reference streams were chained
    log_position: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)  # stream id (hex) → head
    breaks: list[Break] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchored: bool = False
    keyed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts, "streams": self.streams, "events": self.events,
            "snapshots": self.snapshots, "unchained_legacy": self.legacy,
            "log_position": self.log_position, "anchor": self.anchored, "hmac": self.keyed,
            "breaks": [b.as_dict() for b in self.breaks], "notes": self.notes,
        }


class AnchorError(ValueError):
    """The anchor file cannot be used (not JSON, not an anchor, or sealing refused)."""


# ---------------------------------------------------------------------------------- reading


def _hex(stream: Any) -> str:
    return stream.hex if isinstance(stream, UUID) else UUID(str(stream)).hex


def _stream_id(kind: str, name: str) -> UUID | None:
    if kind == "account":
        return account_id(name)
    if kind == "asset":
        return asset_id(name)
    if kind == "instrument":
        return instrument_id(name)
    if kind == "settings":
        return portfolio_settings_id()
    return None


def _label(kind: str, name: str) -> str:
    return name if kind == "account" else f"{kind}:{name}"


class _Store:
    """The raw tables `audit` reads (one SQL dialect per backend)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rows = ledger.index._rows  # noqa: SLF001 - the recorders' one-query helper
        postgres = not ledger.url.startswith("sqlite:")
        self.nid = "notification_id" if postgres else "rowid"
        self.events = cast(Any, ledger.recorder).events_table_name
        snapshots = ledger.snapshots
        self.snapshots = (cast(Any, snapshots.recorder).events_table_name
                          if snapshots is not None else None)

    def log(self) -> list[tuple[int, str, int]]:
        """(notification id, stream, version) of every event, in log order."""
        return [(nid, _hex(stream), version) for nid, stream, version in self.rows(
            f"SELECT {self.nid}, originator_id, originator_version FROM {self.events}"
            f" ORDER BY {self.nid}")]

    def index(self) -> dict[tuple[str, int], tuple[int, str]]:
        """(stream, version) → (at in microseconds, event type) of every index row."""
        return {(_hex(stream), version): (at, kind) for stream, version, at, kind in self.rows(
            "SELECT stream_id, version, at_micros, kind FROM ledger_event_index")}

    def streams(self) -> list[tuple[str, str, str]]:
        return [(stream, kind, name) for stream, kind, name in self.rows(
            "SELECT stream_id, kind, name FROM ledger_streams")]

    def snapshot_versions(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = defaultdict(list)
        if self.snapshots is None:
            return found
        for stream, version in self.rows(
                f"SELECT originator_id, originator_version FROM {self.snapshots}"):
            found[_hex(stream)].append(version)
        return found

    def snapshot(self, stream: str, version: int) -> Any:
        key: Any = UUID(stream) if self.nid == "notification_id" else stream
        placeholder = "%s" if self.nid == "notification_id" else "?"
        rows = self.rows(
            f"SELECT originator_id, originator_version, topic, state FROM {self.snapshots}"
            f" WHERE originator_id = {placeholder} AND originator_version = {placeholder}",
            (key, version))
        assert self.ledger.snapshots is not None
        return self.ledger.snapshots.mapper.to_domain_event(_stored(rows[0]))


def _span(gap: tuple[int, int]) -> str:
    return str(gap[0]) if gap[0] == gap[1] else f"{gap[0]}–{gap[1]}"


# ---------------------------------------------------------------------------------- audit


def audit(ledger: Ledger, anchor: Mapping[str, Any] | None = None,
          key: str | None = None) -> Audit:
    """Check the whole store (and, given an anchor, that the store still extends it)."""
    store = _Store(ledger)
    result = Audit(anchored=anchor is not None, keyed=bool(key))
    labels: dict[str, str] = {}
    listed: dict[str, str] = {}  # stream id → kind
    for stream, kind, name in store.streams():
        labels[stream] = _label(kind, name)
        listed[stream] = kind
        expected = _stream_id(kind, name)
        if expected is None or expected.hex != stream:
            result.breaks.append(Break(labels[stream], None,
                                       f"ledger_streams row ({kind}, {name}) has id {stream},"
                                       " not the id its kind and name give"))
    anchored: dict[str, Head] = {}
    if anchor is not None:
        anchored = _read_anchor(anchor, key, result)
        for stream, head in anchored.items():
            labels.setdefault(stream, head.label)

    log = store.log()
    result.log_position = log[-1][0] if log else 0
    versions: dict[str, int] = defaultdict(int)
    for _, stream, version in log:
        versions[stream] = max(versions[stream], version)
    _check_log(result, log, anchor)
    index = store.index()
    _check_index(result, index.keys(), {(s, v) for _, s, v in log}, labels)
    for stream in sorted(listed - versions.keys(), key=lambda s: labels[s]):
        result.breaks.append(Break(labels[stream], None,
                                   "listed in ledger_streams but has no events (deleted)"))
    for stream in sorted(versions.keys() - listed):
        result.breaks.append(Break(labels.get(stream, f"stream {stream}"), None,
                                   "has events but no ledger_streams row (deleted)"))

    snapshots = store.snapshot_versions()
    for stream in sorted(snapshots.keys() - versions.keys()):
        result.breaks.append(Break(labels.get(stream, f"stream {stream}"),
                                   min(snapshots[stream]),
                                   "snapshot of a stream that has no events"))
    for stream in sorted(versions, key=lambda s: labels.get(s, s)):
        label = labels.get(stream, f"stream {stream}")
        result.streams += 1
        if listed.get(stream) == "account":
            result.accounts += 1
        _check_stream(ledger, store, result, stream, label, sorted(snapshots.get(stream, [])),
                      anchored.get(stream), index)
    for stream, head in sorted(anchored.items(), key=lambda item: item[1].label):
        if stream not in versions:
            result.breaks.append(Break(head.label, head.version,
                                       "anchored head is gone: the stream has no events"))
    return result


def _check_log(result: Audit, log: list[tuple[int, str, int]],
               anchor: Mapping[str, Any] | None) -> None:
    """Notification ids run 1 … max; holes are deletions unless the anchor records them."""
    accepted: set[tuple[int, int]] = set()
    position = 0
    if anchor is not None:
        accepted = {(int(a), int(b)) for a, b in anchor.get("gaps", [])}
        position = int(anchor.get("log_position", 0))
    previous = 0
    for nid, _, _ in log:  # in log order
        if nid > previous + 1:
            result.gaps.append((previous + 1, nid - 1))
        previous = nid
    for gap in result.gaps:
        if gap in accepted and gap[1] <= position:
            result.notes.append(f"log gap {_span(gap)} is recorded in the anchor (accepted)")
            continue
        result.breaks.append(Break(
            LOG, None, f"notification ids {_span(gap)} are missing: events were deleted"
            " (on PostgreSQL also a write killed before it committed; see"
            " docs/tamper-evidence.md)"))
    if anchor is not None and result.log_position < position:
        result.breaks.append(Break(
            LOG, None, f"the log ends at {result.log_position}, before the anchor's position"
            f" {position}: events were deleted from its end"))


def _check_index(result: Audit, index: AbstractSet[tuple[str, int]],
                 events: AbstractSet[tuple[str, int]],
                 labels: Mapping[str, str]) -> None:
    for stream, version in sorted(index - events):
        result.breaks.append(Break(labels.get(stream, f"stream {stream}"), version,
                                   "in ledger_event_index but missing from the log (deleted)"))
    for stream, version in sorted(events - index):
        result.breaks.append(Break(labels.get(stream, f"stream {stream}"), version,
                                   "in the log but not in ledger_event_index"))


def _check_stream(ledger: Ledger, store: _Store, result: Audit, stream: str, label: str,
                  snapshots: list[int], anchored: Head | None,
                  index: Mapping[tuple[str, int], tuple[int, str]]) -> None:
    """Recompute the stream's chain; check its index rows (time and type, which `state --at`
    relies on); fold it up to its last snapshot and compare each."""
    previous = GENESIS
    chained = False
    aggregate: Any = None
    expected_version = 1
    fold_until = snapshots[-1] if snapshots else 0
    pending = list(snapshots)
    mapper = ledger.mapper
    event: Any
    digest: str | None
    try:
        for stored_event in ledger.recorder.select_events(UUID(stream)):
            version = stored_event.originator_version
            result.events += 1
            if version != expected_version:
                result.breaks.append(Break(label, version, f"version {version} follows"
                                           f" {expected_version - 1}: events are missing"))
                return
            lean = _lean_check(stored_event, previous, version)
            if lean is not None:
                # A lean row: its stored body is what the hash covers (no decoding to hash).
                digest, fields, ok = lean
                if not ok:
                    result.breaks.append(Break(label, version,
                                               "hash does not match its content and predecessor"))
                    return
                chained = True
                previous = digest
                name = stored_event.topic.rpartition(".")[2]
                event = (mapper.to_domain_event(stored_event) if version <= fold_until
                         else _Fields(fields))  # decoded only where it is folded
            else:
                event = mapper.to_domain_event(stored_event)
                fields = event_fields(event)
                digest = getattr(event, "hash", None)
                name = type(event).__name__
                if digest is None and isinstance(event, Reference.Event) and not chained:
                    result.legacy += 1
                    previous = chain_hash(previous, name, version, fields)
                elif digest is None:
                    result.breaks.append(Break(label, version, "the event has no hash"))
                    return
                elif chain_hash(previous, name, version, fields) != digest:
                    result.breaks.append(Break(
                        label, version, "hash does not match its content and predecessor"))
                    return
                else:
                    chained = True
                    previous = digest
            expected_version += 1  # read (a row that cannot be is a break at its version)
            row = index.get((stream, version))
            if row is not None and row != (to_micros(event.at), name):
                result.breaks.append(Break(
                    label, version, f"ledger_event_index says {row[1]} at"
                    f" {format_at(from_micros(row[0]))}; the event is {name} at"
                    f" {format_at(event.at)}"))
                return
            off = unbalanced(fields.get("postings") or [])
            if off:
                result.breaks.append(Break(label, version, f"postings do not balance: {off}"))
                return
            if version <= fold_until:
                aggregate = event.mutate(aggregate)
                if pending and pending[0] == version:
                    pending.pop(0)
                    result.snapshots += 1
                    try:
                        stored = store.snapshot(stream, version)
                    except Exception as error:  # noqa: BLE001 - a finding, not a crash
                        result.breaks.append(Break(label, version, "snapshot cannot be read:"
                                                   f" {type(error).__name__}: {error}"))
                        return
                    differs = _snapshot_differs(ledger, stored, aggregate)
                    if differs:
                        result.breaks.append(Break(
                            label, version, "snapshot differs from the replay of its events in "
                            + ", ".join(differs)))
            if anchored is not None and version == anchored.version and previous != anchored.hash:
                result.breaks.append(Break(label, version, "the event at the anchored head"
                                           " no longer has the anchored hash (history"
                                           " rewritten)"))
    except Exception as error:  # noqa: BLE001 - an undecodable event is a finding, not a crash
        result.breaks.append(Break(label, expected_version,
                                   f"event cannot be read: {type(error).__name__}: {error}"))
        return
    last = expected_version - 1
    result.heads[stream] = Head(label, last, previous)
    for version in pending:
        result.breaks.append(Break(label, version,
                                   f"snapshot at version {version} is beyond the stream's last"
                                   f" event ({last})"))
    if anchored is not None and last < anchored.version:
        result.breaks.append(Break(label, anchored.version,
                                   f"anchored head is gone: the stream ends at version {last}"
                                   " (final events deleted)"))


class _Fields:
    """What the checks after the hash need of a lean event they do not fold: its `at`."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.at = parse_at(fields["at"])


def _lean_check(stored: Any, previous: str, version: int
                ) -> tuple[str, dict[str, Any], bool] | None:
    """For a lean row: (its hash, its canonical fields, whether sha256(previous + stored body)
    is that hash and the body names the row's type and version). None: not a lean row."""
    parts = lean_parts(stored.state)
    if parts is None:
        return None
    digest, body = parts
    name = stored.topic.rpartition(".")[2]
    ok = (body.endswith(b'"type":"' + name.encode() + b'","version":' + str(version).encode()
                        + b"}") and hash_body(previous, body) == digest)
    fields = orjson.loads(body)["fields"]
    postings = fields.get("postings")
    if postings:
        fields["postings"] = [Posting(a, s, Decimal(x)) for a, s, x in postings]
    return digest, fields, ok


def _snapshot_differs(ledger: Ledger, stored: Any, aggregate: Any) -> list[str]:
    """Return the fields where a stored snapshot and the replayed aggregate differ (both
    through the same transcoder, so lists and tuples compare alike)."""
    assert ledger.snapshots is not None
    mapper = ledger.snapshots.mapper
    fresh = cast(Any, mapper.to_domain_event(mapper.to_stored_event(
        type(aggregate).Snapshot.take(aggregate))))
    mine, theirs = fresh.state, stored.state
    differs = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if stored.topic != fresh.topic:
        differs.insert(0, "topic")
    return differs


# ---------------------------------------------------------------------------------- anchor


def _root(log_position: int, gaps: list[list[int]], streams: Mapping[str, Any]) -> str:
    body = canonical_json({"gaps": gaps, "log_position": log_position, "streams": streams})
    return hashlib.sha256(body.encode()).hexdigest()


def _mac(key: str, root: str) -> str:
    return hmac.new(key.encode(), root.encode(), hashlib.sha256).hexdigest()


def seal(ledger: Ledger, key: str | None = None) -> dict[str, Any]:
    """Return the anchor of the store as it is now (refused when `audit` finds a break other
    than a log gap; gaps are recorded in the anchor, which then accepts them)."""
    found = audit(ledger)
    refused = [b for b in found.breaks if b.stream != LOG]
    if refused:
        raise AnchorError("refusing to seal a store that does not verify: "
                          + "; ".join(str(b) for b in refused))
    streams = {stream: {"stream": head.label, "version": head.version, "hash": head.hash}
               for stream, head in sorted(found.heads.items())}
    gaps = [[a, b] for a, b in found.gaps]
    anchor: dict[str, Any] = {"format": ANCHOR_FORMAT, "log_position": found.log_position,
                              "gaps": gaps, "streams": streams}
    anchor["root"] = _root(found.log_position, gaps, streams)
    if key:
        anchor["hmac"] = _mac(key, anchor["root"])
    return anchor


def load_anchor(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            anchor = json.load(handle)
    except (OSError, ValueError) as error:
        raise AnchorError(f"cannot read the anchor {path}: {error}") from None
    if not isinstance(anchor, dict) or anchor.get("format") != ANCHOR_FORMAT:
        raise AnchorError(f"{path} is not a ledger anchor (format {ANCHOR_FORMAT})")
    return anchor


def _read_anchor(anchor: Mapping[str, Any], key: str | None, result: Audit) -> dict[str, Head]:
    """Check the anchor's own integrity (root, HMAC); return its heads by stream id."""
    try:
        streams = anchor["streams"]
        position = int(anchor["log_position"])
        gaps = [[int(a), int(b)] for a, b in anchor.get("gaps", [])]
        heads = {stream: Head(str(item["stream"]), int(item["version"]), str(item["hash"]))
                 for stream, item in streams.items()}
        root = str(anchor["root"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        result.breaks.append(Break(ANCHOR, None, f"the anchor is malformed: {error!r}"))
        return {}
    if _root(position, gaps, streams) != root:
        result.breaks.append(Break(ANCHOR, None, "the anchor's root does not match its content"
                                   " (the anchor file was edited)"))
    mac = anchor.get("hmac")
    if key:
        if not isinstance(mac, str):
            result.breaks.append(Break(ANCHOR, None, "a key was given but the anchor has no"
                                       " HMAC"))
        elif not hmac.compare_digest(mac, _mac(key, root)):
            result.breaks.append(Break(ANCHOR, None, "the anchor's HMAC does not match the key"
                                       " (forged anchor or wrong key)"))
    elif mac is not None:
        result.notes.append("the anchor has an HMAC but no LEDGER_SEAL_KEY was given: not"
                            " checked")
    return heads
