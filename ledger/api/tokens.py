"""Bearer tokens of the HTTP API: roles, creation, lookup by hash, revocation.

A token is 32 random bytes (256 bits, `secrets.token_urlsafe`), printed once by
`ledger token create`; the store keeps only its SHA-256 (table `ledger_api_tokens`, migration
0006). A 256-bit random secret needs no salt or slow hash: nobody can guess it, and its SHA-256
cannot be inverted. A presented token is hashed and looked up; the comparison of the found hash
is done again with `hmac.compare_digest` (constant time), so the answer's timing tells nothing
about how much of a hash matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

ROLES = ("auditor", "service", "operator")

READ = "read"  # accounts, state, events, statements
AUDIT = "audit"  # the journal and verify
WRITE = "write"  # POST /v1/commands

RIGHTS: dict[str, frozenset[str]] = {
    "auditor": frozenset({READ, AUDIT}),
    "service": frozenset({READ}),
    "operator": frozenset({READ, AUDIT, WRITE}),
}
"""What each role may do (docs/api.md publishes this table)."""


class TokenError(Exception):
    """A token command cannot be done (unknown role, name taken, unknown name)."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created_at: str
    revoked_at: str | None


def digest(token: str) -> str:
    """Return the SHA-256 (hex) the store keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """Return a new random token: 256 bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def create(engine: Engine, name: str, role: str, created_at: str) -> str:
    """Record a token for `name` with `role`; return the token (shown once, never stored)."""
    from sqlalchemy import text

    if role not in RIGHTS:
        raise TokenError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not name.strip():
        raise TokenError("a token needs a name")
    token = new_token()
    with engine.begin() as connection:
        taken = connection.execute(text("SELECT 1 FROM ledger_api_tokens WHERE name = :name"),
                                   {"name": name}).first()
        if taken is not None:
            raise TokenError(f"a token named {name!r} exists (revoke it or choose another name)")
        connection.execute(text(
            "INSERT INTO ledger_api_tokens (name, role, token_sha256, created_at)"
            " VALUES (:name, :role, :hash, :created)"),
            {"name": name, "role": role, "hash": digest(token), "created": created_at})
    return token


def listing(engine: Engine) -> list[TokenInfo]:
    """Return every token's name, role and dates (never the hash)."""
    from sqlalchemy import text

    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT name, role, created_at, revoked_at FROM ledger_api_tokens ORDER BY name"))
        return [TokenInfo(*row) for row in rows]


def revoke(engine: Engine, name: str, revoked_at: str) -> None:
    """Revoke the token named `name` (it answers 401 from now on)."""
    from sqlalchemy import text

    with engine.begin() as connection:
        done = connection.execute(text(
            "UPDATE ledger_api_tokens SET revoked_at = :at"
            " WHERE name = :name AND revoked_at IS NULL"), {"at": revoked_at, "name": name})
        if done.rowcount == 0:
            raise TokenError(f"no token in force named {name!r}")


def role_of(engine: Engine, token: str) -> str | None:
    """Return the role of a token in force (None: unknown or revoked)."""
    from sqlalchemy import text

    presented = digest(token)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT token_sha256, role FROM ledger_api_tokens"
            " WHERE token_sha256 = :hash AND revoked_at IS NULL"), {"hash": presented}).first()
    if row is None or not hmac.compare_digest(str(row[0]), presented):
        return None
    return str(row[1])
