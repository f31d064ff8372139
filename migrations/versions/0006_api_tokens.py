"""Keep the HTTP API's bearer tokens: a name, a role and the token's SHA-256

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

`ledger serve` (issue 12) answers /v1 requests that carry `Authorization: Bearer <token>`.
`ledger token create` prints a token once; the store keeps only its SHA-256 (hex), the role
(`auditor`, `service`, `operator`) and when it was created and revoked (NULL: in force).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE ledger_api_tokens ("
        " name TEXT PRIMARY KEY, role TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,"
        " created_at TEXT NOT NULL, revoked_at TEXT)")


def downgrade() -> None:
    op.execute("DROP TABLE ledger_api_tokens")
