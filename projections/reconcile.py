"""Reconciliation for the back office: the events, the read models and a statement agree.

`reconcile(ledger, engine, statement_csv=None)` collects every mismatch as a value (STYLE §9)
and returns them all; it changes nothing. The checks (DESIGN §1, §9):

1. `event_postings` — the postings of every event sum to zero per asset (read from the store);
2. `journal_total` — the journal sums to zero per asset, system accounts included;
   `journal_balance` — per account and asset, the journal sums to the balance read model
   (`projection_balances`, `projection_system_balances`);
3. `read_model` — every account's read models equal its replay, `queries.state` as of the
   account's last event: the account row, balances, debts, positions, interest and its latest
   margin-state row; read-model accounts the ledger does not know are reported too;
4. `statement` — with a CSV (header `account,asset,balance,as_of`), the ledger's balance of
   each row as of its `as_of` against the statement's.

Each `Difference` names the account, the asset (a position: `SYMBOL:margin_type`; margin
figures: `USD`), the ledger's amount and the other side's, and where the other side comes from.
The read models must be caught up for check 3 to mean anything (`ledger projections run
--once` first).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic
from sqlalchemy import Engine, select

from ledger.application import queries
from ledger.application.service import Ledger
from ledger.domain.account import Account
from ledger.errors import UnknownAccountError
from ledger.numbers import ZERO, parse_decimal, to_str
from ledger.times import parse_at
from projections import tables

STATEMENT_HEADER = ("account", "asset", "balance", "as_of")
MARGIN_FIELDS = ("equity_usd", "effective_equity_usd", "maintenance_margin_usd",
                 "initial_margin_usd", "margin_ratio", "margin_level", "available_usd")
POSITION_FIELDS = ("side", "qty", "entry_price", "position_margin", "leverage",
                   "auto_add_margin")
PAGE = 1000


@dataclass(frozen=True)
class Difference:
    """One mismatch: `ledger` is the ledger's amount (events or replay), `other` the read
    model's or the statement's (None: absent on that side)."""

    check: str
    account: str
    asset: str
    ledger: str | None
    other: str | None
    where: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(ledger: Ledger, engine: Engine,
              statement_csv: str | Path | None = None) -> list[Difference]:
    """Run every check; return the differences (empty: everything agrees)."""
    differences = check_event_postings(ledger)
    differences += check_journal(engine)
    differences += check_read_models(ledger, engine)
    if statement_csv is not None:
        differences += check_statement(ledger, statement_csv)
    return differences


# ----------------------------------------------------------------------------- events


def _posting_topics() -> list[str]:
    found = []
    for value in vars(Account).values():
        if isinstance(value, type) and issubclass(value, Account.Event) and (
                issubclass(value, Account.MoneyMoved) or value is Account.Filled):
            found.append(get_topic(value))
    return found


def _money_events(ledger: Ledger) -> Iterator[tuple[int, Any]]:
    topics = _posting_topics()
    start = 0
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=PAGE, topics=topics,
                                                    inclusive_of_start=False)
        for notification in page:
            yield notification.id, ledger.mapper.to_domain_event(notification)
        if len(page) < PAGE:
            return
        start = page[-1].id


def check_event_postings(ledger: Ledger) -> list[Difference]:
    """Every event's postings sum to zero per asset."""
    names = {stream: name for stream, name in ledger.index.streams("account")}
    found = []
    for notification_id, event in _money_events(ledger):
        totals: dict[str, Decimal] = {}
        for posting in event.postings:
            totals[posting.asset] = totals.get(posting.asset, ZERO) + posting.amount
        for asset, total in sorted(totals.items()):
            if total != ZERO:
                found.append(Difference(
                    "event_postings", names.get(event.originator_id.hex, "?"), asset, "0",
                    to_str(total), f"{type(event).__name__} v{event.originator_version} "
                    f"(notification {notification_id})"))
    return found


# ----------------------------------------------------------------------------- journal


def check_journal(engine: Engine) -> list[Difference]:
    """The journal sums to zero per asset and to every balance per account and asset."""
    journal = tables.journal
    per_account: dict[tuple[str, str], Decimal] = {}
    with engine.connect() as connection:
        for account, asset, amount in connection.execute(
                select(journal.c.account, journal.c.asset, journal.c.amount)):
            key = (account, asset)
            per_account[key] = per_account.get(key, ZERO) + amount
        balances = {(r.account, r.asset): r.balance for r in connection.execute(
            select(tables.balances.c.account, tables.balances.c.asset,
                   tables.balances.c.balance))}
        system = {(r.account, r.asset): r.balance for r in connection.execute(
            select(tables.system_balances.c.account, tables.system_balances.c.asset,
                   tables.system_balances.c.balance))}
    found = []
    totals: dict[str, Decimal] = {}
    for (_, asset), amount in per_account.items():
        totals[asset] = totals.get(asset, ZERO) + amount
    for asset, total in sorted(totals.items()):
        if total != ZERO:
            found.append(Difference("journal_total", "*", asset, "0", to_str(total),
                                    "projection_journal"))
    held = {**balances, **system}
    for key in sorted(set(per_account) | set(held)):
        summed, balance = per_account.get(key), held.get(key)
        if (summed or ZERO) != (balance or ZERO) or (balance is None and summed is not None):
            table = ("projection_system_balances" if key in system or key[0].startswith(
                "system:") else "projection_balances")
            found.append(Difference("journal_balance", key[0], key[1], _opt(summed),
                                    _opt(balance), f"{table} against projection_journal"))
    return found


# ----------------------------------------------------------------------------- read models


@dataclass
class _Rows:
    accounts: dict[str, Any]
    balances: dict[str, dict[str, Decimal]]
    debts: dict[str, dict[str, Decimal]]
    positions: dict[str, dict[str, Any]]
    interest: dict[str, dict[str, Any]]
    margin: dict[str, Any]


def _load(engine: Engine) -> _Rows:
    rows = _Rows({}, {}, {}, {}, {}, {})
    with engine.connect() as connection:
        for row in connection.execute(select(tables.accounts)):
            rows.accounts[row.account] = row
        for row in connection.execute(select(tables.balances)):
            rows.balances.setdefault(row.account, {})[row.asset] = row.balance
        for row in connection.execute(select(tables.debts)):
            rows.debts.setdefault(row.account, {})[row.asset] = row.debt
        for row in connection.execute(select(tables.positions)):
            rows.positions.setdefault(row.account, {})[f"{row.symbol}:{row.margin_type}"] = row
        for row in connection.execute(select(tables.interest)):
            rows.interest.setdefault(row.account, {})[row.asset] = row
        state = tables.margin_state
        for row in connection.execute(select(state).order_by(state.c.account, state.c.version)):
            rows.margin[row.account] = row  # the last version wins
    return rows


def check_read_models(ledger: Ledger, engine: Engine) -> list[Difference]:
    """Every account's read models equal its replay as of its last event."""
    rows = _load(engine)
    found: list[Difference] = []
    names = ledger.account_names()
    for name in names:
        account = ledger.find_account(name)
        if account is None:
            continue
        state = queries.state(ledger, name, account.last_at)
        found += _compare_account(name, state, rows)
    for name in sorted(set(rows.accounts) - set(names)):
        found.append(Difference("read_model", name, "", None, "row", "projection_accounts: "
                                "an account the ledger does not know"))
    return found


def _compare_account(name: str, state: dict[str, Any], rows: _Rows) -> list[Difference]:
    found: list[Difference] = []
    row = rows.accounts.get(name)
    if row is None:
        return [Difference("read_model", name, "", str(state["version"]), None,
                           "projection_accounts: missing (version)")]
    if row.version != state["version"] or row.mode != state["mode"]:
        found.append(Difference("read_model", name, "", f"v{state['version']} {state['mode']}",
                                f"v{row.version} {row.mode}",
                                "projection_accounts (version, mode)"))
    found += _compare_amounts(name, state["balances"], rows.balances.get(name, {}),
                              "projection_balances.balance")
    found += _compare_amounts(name, state["debts"], rows.debts.get(name, {}),
                              "projection_debts.debt")
    found += _compare_positions(name, state["positions"], rows.positions.get(name, {}))
    found += _compare_interest(name, state["interest"], rows.interest.get(name, {}))
    margin = rows.margin.get(name)
    for field in MARGIN_FIELDS:
        expected = state["margin"][field]
        actual = None if margin is None else getattr(margin, field)
        if margin is None or not _same(expected, actual):
            found.append(Difference("read_model", name, "USD", expected, _opt(actual),
                                    f"projection_margin_state.{field} (last version)"))
    return found


def _compare_amounts(name: str, expected: dict[str, str], actual: dict[str, Decimal],
                     where: str) -> list[Difference]:
    return [
        Difference("read_model", name, asset, expected.get(asset), _opt(actual.get(asset)),
                   where)
        for asset in sorted(set(expected) | set(actual))
        if asset not in expected or asset not in actual
        or not _same(expected[asset], actual[asset])
    ]


def _compare_positions(name: str, expected: Sequence[dict[str, Any]],
                       actual: dict[str, Any]) -> list[Difference]:
    found = []
    wanted = {f"{p['symbol']}:{p['margin_type']}": p for p in expected}
    for key in sorted(set(wanted) | set(actual)):
        position, row = wanted.get(key), actual.get(key)
        if position is None or row is None:
            found.append(Difference("read_model", name, key,
                                    None if position is None else position["qty"],
                                    None if row is None else to_str(row.qty),
                                    "projection_positions: position missing on one side"))
            continue
        for field in POSITION_FIELDS:
            value = getattr(row, field)
            if not _same(position[field], value):
                found.append(Difference("read_model", name, key, _text(position[field]),
                                        _text(value), f"projection_positions.{field}"))
    return found


def _compare_interest(name: str, expected: dict[str, dict[str, str]],
                      actual: dict[str, Any]) -> list[Difference]:
    found = []
    for asset in sorted(set(expected) | set(actual)):
        view, row = expected.get(asset), actual.get(asset)
        for field in ("accrued", "charged"):
            want = None if view is None else view[field]
            got = None if row is None else getattr(row, field)
            if view is None or row is None or not _same(want, got):
                found.append(Difference("read_model", name, asset, want, _opt(got),
                                        f"projection_interest.{field}"))
    return found


# ----------------------------------------------------------------------------- statement


class StatementError(ValueError):
    """The statement CSV cannot be read (header, a decimal, a time)."""


@dataclass(frozen=True)
class StatementLine:
    number: int  # line in the file (the header is line 1)
    account: str
    asset: str
    balance: Decimal
    as_of: datetime
    as_of_text: str


def read_statement(statement_csv: str | Path) -> list[StatementLine]:
    """Parse a statement (header `account,asset,balance,as_of`; exact decimals, RFC 3339)."""
    lines = []
    with open(statement_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = tuple(name.strip() for name in reader.fieldnames or ())
        if header != STATEMENT_HEADER:
            raise StatementError(f"{statement_csv}: the header must be "
                                 f"{','.join(STATEMENT_HEADER)}, not {','.join(header)}")
        for number, row in enumerate(reader, start=2):
            values = {key.strip(): (value or "").strip() for key, value in row.items() if key}
            try:
                lines.append(StatementLine(number, values["account"], values["asset"],
                                           parse_decimal(values["balance"]),
                                           parse_at(values["as_of"]), values["as_of"]))
            except ValueError as error:
                raise StatementError(f"{statement_csv} line {number}: {error}") from None
    return lines


def check_statement(ledger: Ledger, statement_csv: str | Path) -> list[Difference]:
    """The ledger's balance of each statement row as of its `as_of` equals the statement's.

    The balance is the account replayed up to `as_of` (`Ledger.account_at`: what
    `queries.state(ledger, account, as_of)` prints as `balances[asset]`, without valuing the
    whole account); an account unknown at that time has no balance.
    """
    found = []
    for line in read_statement(statement_csv):
        expected = _balance_at(ledger, line.account, line.asset, line.as_of)
        if expected is None or expected != line.balance:
            found.append(Difference(
                "statement", line.account, line.asset, _opt(expected), to_str(line.balance),
                f"{Path(statement_csv).name} line {line.number} (as of {line.as_of_text})"))
    return found


def _balance_at(ledger: Ledger, name: str, asset: str, at: datetime) -> Decimal | None:
    try:
        account = ledger.account_at(name, at)
    except UnknownAccountError:
        return None
    if account is None:
        return None
    return account.balances.get(asset, ZERO)


# ----------------------------------------------------------------------------- helpers


def _same(expected: Any, actual: Any) -> bool:
    """Compare a state value (decimal string, bool, None) with a read-model value."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected) == bool(actual)
    if isinstance(actual, str):
        return str(expected) == actual
    return bool(Decimal(str(expected)) == actual)


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else to_str(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return to_str(value)
    return str(value)
