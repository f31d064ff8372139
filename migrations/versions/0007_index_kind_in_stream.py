"""Index the time-to-version index by stream, event type, time and version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

`state --at T` reads the reference data in force at T by point look-ups (issue 11,
`ledger.application.asof`): "the last `MarkPriceSet` of the BTCUSDT stream with at ≤ T", "the
`FundingRateSet`s of that stream in (A, B]". An instrument stream interleaves its types (a
funding rate every 8 h among a mark a second), so the index on (stream_id, at_micros, version)
would walk back over every other type, reading each row's type from the table; an index on
(stream_id, kind, at_micros, version) answers `ORDER BY at_micros DESC, version DESC LIMIT 1`
with one descent on both backends, and holds the version the event is then fetched by.

It replaces the index on (kind, at_micros), which no query uses (every read of the index names a
stream, or a time range across all streams): the write path keeps the same number of index
entries per event.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ledger_event_index_stream_kind ON ledger_event_index"
               " (stream_id, kind, at_micros, version)")
    op.execute("DROP INDEX IF EXISTS ledger_event_index_kind")


def downgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ledger_event_index_kind ON ledger_event_index"
               " (kind, at_micros)")
    op.execute("DROP INDEX IF EXISTS ledger_event_index_stream_kind")
