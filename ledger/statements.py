"""Statements and the journal: what `ledger statement`, `ledger journal` and the HTTP API print.

One module for the CLI and the API (issue 12), computation and CSV writing both:

- `statement(...)`: an account's opening balance per asset (after every event with
  `at < from`), every posting to it with `from ≤ at ≤ to` in order with its running balance,
  and its closing balance (after every event with `at ≤ to`, equal to the state's `balances`
  at `to`). A client account is read from its own events (its snapshot before `from`, then the
  events up to `to`), so it is always current. A system account (`system:fees`, …) has no
  aggregate: its postings are counter-legs inside the client accounts' events, and they are
  read from the read model `projection_journal` (indexed by account), brought up to the log
  first (`projections.runner.run`), never summed by reading every event.
- `journal(...)`: every posting of every account event with `from ≤ at ≤ to`, one row each.
  Each leg of a transfer (out, in, return) carries its own pair of lines through
  `system:transit` (docs/sharding.md); in stores written before that, one pair travels in both
  `TransferredOut` and `TransferredIn` and is listed once, with `TransferredOut`. Either way
  every event's lines sum to zero per asset.

Amounts are exact decimal strings (`to_str`); times RFC 3339 (`format_at`).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ledger.domain.ids import account_id
from ledger.domain.postings import SYSTEM_ACCOUNTS, SYSTEM_TRANSIT
from ledger.errors import InvalidInputError, UnknownAccountError
from ledger.numbers import ZERO, to_str
from ledger.times import format_at, from_micros, to_micros

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ledger.application.service import Ledger

log = logging.getLogger("ledger.statements")
SYSTEM_PREFIX = "system:"
ONE_MICROSECOND = timedelta(microseconds=1)

STATEMENT_COLUMNS = ("at", "event", "event_account", "version", "id", "asset", "amount",
                     "balance")
"""CSV columns of a statement's postings (docs/api.md): the posting's event (type, the account
whose stream holds it, its version and command id), `at`, the asset, the signed amount
(+ increases the balance) and the running balance of that asset after it."""

JOURNAL_COLUMNS = ("at", "event", "event_account", "version", "id", "line", "account", "asset",
                   "amount")
"""CSV columns of the journal: the event (as above), the posting's index in the event (`line`),
the account it moves, the asset and the signed amount."""


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def period(start: datetime, end: datetime) -> Period:
    """Return the period [start, end]; refuse one that ends before it starts."""
    if start > end:
        raise InvalidInputError(
            f"from {format_at(start)} is later than to {format_at(end)}: the period is empty")
    return Period(start, end)


def is_system(name: str) -> bool:
    return name.startswith(SYSTEM_PREFIX)


# ---------------------------------------------------------------------------- statements


def statement(ledger: Ledger, engine: Engine, name: str, when: Period) -> dict[str, Any]:
    """Return the statement of account `name` for the period (client or system account)."""
    if is_system(name):
        return _system_statement(ledger, engine, name, when)
    if ledger.find_account(name) is None:
        raise UnknownAccountError(name)
    try:
        before = ledger.account_at(name, when.start - ONE_MICROSECOND)
    except OverflowError:  # `from` is the calendar's first instant: nothing lies before it
        before = None
    after = ledger.account_at(name, when.end)
    opening: dict[str, Decimal] = dict(before.balances) if before is not None else {}
    running = dict(opening)
    rows: list[dict[str, Any]] = []
    if after is not None:
        first = before.version if before is not None else 0
        for event in ledger.account_history(account_id(name), gt=first, lte=after.version):
            for posting in getattr(event, "postings", None) or ():
                if posting.account != name:
                    continue
                running[posting.asset] = running.get(posting.asset, ZERO) + posting.amount
                rows.append(_line(type(event).__name__, name, event.originator_version,
                                  getattr(event, "command_id", None), event.at, posting.asset,
                                  posting.amount, running[posting.asset]))
    closing = dict(after.balances) if after is not None else {}
    assert {a: v for a, v in running.items() if v or a in closing} == closing, (running, closing)
    return _statement(name, when, opening, rows, closing, None)


_JOURNAL_LOCK = threading.Lock()


def _system_statement(ledger: Ledger, engine: Engine, name: str, when: Period
                      ) -> dict[str, Any]:
    from sqlalchemy import select

    from projections import tables
    from projections.runner import run

    if name not in SYSTEM_ACCOUNTS:
        raise UnknownAccountError(name)
    with _JOURNAL_LOCK:
        try:
            run(ledger.url, until_caught_up=True)
        except Exception as error:  # noqa: BLE001 - e.g. a runner elsewhere applied it first
            # The journal is read as it stands; `journal_position` says how far it reaches.
            log.warning("system statement: the read models were not brought up to the log: %s",
                        type(error).__name__)
    journal = tables.journal.c
    opening: dict[str, Decimal] = {}
    rows: list[dict[str, Any]] = []
    start, end = to_micros(when.start), to_micros(when.end)
    query = (select(journal.event_type, journal.event_account, journal.version,
                    journal.at_micros, journal.asset, journal.amount, journal.notification_id)
             .where(journal.account == name, journal.at_micros <= end)
             .order_by(journal.at_micros, journal.notification_id, journal.line))
    with engine.connect() as connection:
        found = connection.execute(query).all()
    running: dict[str, Decimal] = {}
    for kind, account, version, at_micros, asset, amount, _ in found:
        running[asset] = running.get(asset, ZERO) + amount
        if at_micros < start:
            opening[asset] = running[asset]
            continue
        rows.append(_line(kind, account, version, None, from_micros(at_micros), asset, amount,
                          running[asset]))
    _fill_command_ids(ledger, rows)
    position = _journal_position(engine)
    return _statement(name, when, opening, rows, running, position)


def _fill_command_ids(ledger: Ledger, rows: list[dict[str, Any]]) -> None:
    """Give each system posting its event's command id (read from the event itself)."""
    wanted: dict[str, set[int]] = {}
    for row in rows:
        wanted.setdefault(row["event_account"], set()).add(row["version"])
    ids: dict[tuple[str, int], str | None] = {}
    for account, versions in wanted.items():
        events = ledger.account_history(account_id(account), gt=min(versions) - 1,
                                        lte=max(versions))
        for event in events:
            ids[(account, event.originator_version)] = getattr(event, "command_id", None)
    for row in rows:
        row["id"] = ids.get((row["event_account"], row["version"]))


def _journal_position(engine: Engine) -> int:
    from sqlalchemy import select

    from projections import tables

    with engine.connect() as connection:
        found = connection.execute(select(tables.tracking.c.notification_id).where(
            tables.tracking.c.projection == "journal")).scalar()
    return int(found or 0)


def _line(kind: str, account: str, version: int, command_id: str | None, at: datetime,
          asset: str, amount: Decimal, balance: Decimal) -> dict[str, Any]:
    return {"at": format_at(at), "event": kind, "event_account": account, "version": version,
            "id": command_id, "asset": asset, "amount": to_str(amount),
            "balance": to_str(balance)}


def _statement(name: str, when: Period, opening: dict[str, Decimal], rows: list[dict[str, Any]],
               closing: dict[str, Decimal], position: int | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "account": name, "from": format_at(when.start), "to": format_at(when.end),
        "opening": {asset: to_str(v) for asset, v in sorted(opening.items())},
        "postings": rows,
        "closing": {asset: to_str(v) for asset, v in sorted(closing.items())},
    }
    if position is not None:
        result["journal_position"] = position  # the log position the system figures reflect
    return result


# ---------------------------------------------------------------------------- the journal


def journal(ledger: Ledger, engine: Engine, when: Period) -> list[dict[str, Any]]:
    """Return every posting of every account event with from ≤ at ≤ to, one row each, in
    order of `at`, then account, then version (a transfer's lines once, see the module)."""
    from sqlalchemy import text

    query = text(
        "SELECT s.name, i.version FROM ledger_event_index i"
        " JOIN ledger_streams s ON s.stream_id = i.stream_id AND s.kind = 'account'"
        " WHERE i.at_micros >= :start AND i.at_micros <= :end"
        " ORDER BY i.at_micros, s.name, i.version")
    with engine.connect() as connection:
        found = connection.execute(query, {"start": to_micros(when.start),
                                           "end": to_micros(when.end)}).all()
    order: list[tuple[str, int]] = [(str(name), int(version)) for name, version in found]
    spans: dict[str, tuple[int, int]] = {}
    for name, version in order:
        low, high = spans.get(name, (version, version))
        spans[name] = (min(low, version), max(high, version))
    events: dict[tuple[str, int], Any] = {}
    for name, (low, high) in spans.items():
        for event in ledger.account_history(account_id(name), gt=low - 1, lte=high):
            events[(name, event.originator_version)] = event
    rows: list[dict[str, Any]] = []
    for key in order:
        event = events[key]
        kind = type(event).__name__
        postings = getattr(event, "postings", None) or ()
        if kind == "TransferredIn" and all(p.account != SYSTEM_TRANSIT for p in postings):
            continue  # a store written before issue 11: the TransferredOut's lines, listed there
        for line, posting in enumerate(postings):
            rows.append({"at": format_at(event.at), "event": kind, "event_account": key[0],
                         "version": key[1], "id": getattr(event, "command_id", None),
                         "line": line, "account": posting.account, "asset": posting.asset,
                         "amount": to_str(posting.amount)})
    return rows


# ---------------------------------------------------------------------------- CSV


def to_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """Return rows as CSV text with a header line (RFC 4180 quoting, `\\n` line ends; an
    absent value is an empty field)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return out.getvalue()


def statement_csv(result: dict[str, Any]) -> str:
    """Return a statement as CSV (STATEMENT_COLUMNS): one `opening` row per asset (at `from`,
    no amount, the opening balance), the postings, then one `closing` row per asset (at `to`)."""
    opening = [{"at": result["from"], "event": "opening", "asset": asset, "balance": balance}
               for asset, balance in result["opening"].items()]
    closing = [{"at": result["to"], "event": "closing", "asset": asset, "balance": balance}
               for asset, balance in result["closing"].items()]
    return to_csv(STATEMENT_COLUMNS, [*opening, *result["postings"], *closing])


def journal_csv(rows: list[dict[str, Any]]) -> str:
    return to_csv(JOURNAL_COLUMNS, rows)
