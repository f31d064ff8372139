"""Rewrite money-command idempotency keys into an unambiguous encoding

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Keys of money commands were `type|account|id`: account `a|b` with id `c` and account `a` with id
`b|c` were the same key, so the second command was acknowledged (or refused as `id_conflict`)
without ever being applied. From this revision on they are `type|["account","id"]` (a JSON
array, `commands.idempotency_key`); periodic keys (`check_margin|@<at>`) and repeat keys
(`mark_price|@<at>|<digest>`) hold no user text and stay as they are.

An old key `deposit|a|b|c` splits where exactly one `|` is left after the type. With more, the
split whose account is a known account (`ledger_streams`) is taken; when no split or several
splits name a known account, every candidate is written: a retried command may then be
acknowledged or refused as `id_conflict` when it should not be, but none is ever applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY_TYPES = ("deposit", "withdraw", "transfer", "fill", "adjust_isolated_margin", "repay")


def _encode(kind: str, account: str, identifier: str) -> str:
    return kind + "|" + json.dumps([account, identifier], ensure_ascii=False,
                                   separators=(",", ":"))


def _is_new(key: str) -> bool:
    kind, _, rest = key.partition("|")
    try:
        parts = json.loads(rest)
    except ValueError:
        return False
    return (isinstance(parts, list) and len(parts) == 2
            and all(isinstance(part, str) for part in parts) and _encode(kind, *parts) == key)


def new_keys(old: str, accounts: set[str]) -> list[str]:
    """Return the new key(s) of an old money key (see the module docstring).

    Examples: `deposit|alice|d1` → [`deposit|["alice","d1"]`]; with accounts {"a|b"},
    `deposit|a|b|c` → [`deposit|["a|b","c"]`].
    """
    kind, _, rest = old.partition("|")
    splits = [(rest[:i], rest[i + 1:]) for i, char in enumerate(rest) if char == "|"]
    if not splits:
        return []
    known = [split for split in splits if split[0] in accounts]
    chosen = splits if len(splits) == 1 else (known if len(known) == 1 else known or splits)
    return [_encode(kind, account, identifier) for account, identifier in chosen]


def upgrade() -> None:
    bind = op.get_bind()
    accounts = {row[0] for row in bind.execute(
        text("SELECT name FROM ledger_streams WHERE kind = 'account'"))}
    where = " OR ".join(f"command_key LIKE '{kind}|%'" for kind in MONEY_TYPES)
    rows = list(bind.execute(text(
        f"SELECT command_key, content_hash, at_micros FROM ledger_commands WHERE {where}")))
    existing = {row[0] for row in rows}
    for key, digest, at_micros in rows:
        if key.partition("|")[0] not in MONEY_TYPES or _is_new(key):
            continue  # the LIKE patterns' `_` matches any character; a new key stays
        bind.execute(text("DELETE FROM ledger_commands WHERE command_key = :key"), {"key": key})
        for new in new_keys(key, accounts):
            if new in existing:
                continue
            existing.add(new)
            bind.execute(text("INSERT INTO ledger_commands (command_key, content_hash, at_micros)"
                              " VALUES (:key, :digest, :at)"),
                         {"key": new, "digest": digest, "at": at_micros})


def downgrade() -> None:
    bind = op.get_bind()
    where = " OR ".join(f"command_key LIKE '{kind}|[%'" for kind in MONEY_TYPES)
    rows = list(bind.execute(text(
        f"SELECT command_key, content_hash, at_micros FROM ledger_commands WHERE {where}")))
    existing = {row[0] for row in rows}
    for key, digest, at_micros in rows:
        kind, _, rest = key.partition("|")
        try:
            account, identifier = json.loads(rest)
        except ValueError:
            continue
        old = f"{kind}|{account}|{identifier}"
        bind.execute(text("DELETE FROM ledger_commands WHERE command_key = :key"), {"key": key})
        if old in existing:
            continue
        existing.add(old)
        bind.execute(text("INSERT INTO ledger_commands (command_key, content_hash, at_micros)"
                          " VALUES (:key, :digest, :at)"),
                     {"key": old, "digest": digest, "at": at_micros})
