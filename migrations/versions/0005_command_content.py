"""Keep each command's canonical content beside its idempotency key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

An `id_conflict` says which fields differ from the command that first used the id (issue 13), so
the store keeps the canonical JSON whose SHA-256 is `content_hash`. Keys recorded before this
revision have no content (NULL): their conflicts are reported without the fields.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE ledger_commands ADD COLUMN content TEXT")


def downgrade() -> None:
    with op.batch_alter_table("ledger_commands") as batch:
        batch.drop_column("content")
