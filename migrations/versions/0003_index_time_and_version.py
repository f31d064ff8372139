"""Index the time-to-version index by stream, time and version

Revision ID: 0003
Revises: 0002
Create Date: 2025-06-02

`state --at T` asks for the last version of a stream with `at ≤ T`. With the index on
(stream_id, at_micros) alone, `MAX(version)` had to visit every entry up to T on SQLite (slow at a
late T) while PostgreSQL walked the primary key back from the last version (slow at an early T).
An index on (stream_id, at_micros, version) answers `ORDER BY at_micros DESC, version DESC
LIMIT 1` with one descent on both backends.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ledger_event_index_at_version ON ledger_event_index"
               " (stream_id, at_micros, version)")
    op.execute("DROP INDEX IF EXISTS ledger_event_index_at")


def downgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ledger_event_index_at ON ledger_event_index"
               " (stream_id, at_micros)")
    op.execute("DROP INDEX IF EXISTS ledger_event_index_at_version")
