"""Create the projections' tracking table and the read models

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

The tables of `projections.tables` as of this revision (written out, not imported: a merged
migration is never edited), and on PostgreSQL the view `projection_interest_now`, the one place
where SQL does arithmetic: the interest accrued as of the last event, extended to now()
truncated to the second at the liability and rate of that event (DESIGN §6.8:
`base × annual_rate × seconds / 31,536,000`, base per `free_mode`). It is offered to other
services; the ledger never relies on it (the liability of cross positions moves with marks
between events, which the view cannot see). SQLite has no view: its decimals are TEXT.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from projections.types import ExactDecimal, UtcDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTEREST_NOW = """
CREATE VIEW projection_interest_now AS
SELECT account, asset, liability, annual_rate, free_amount, free_mode, charged,
       as_of, accrued,
       date_trunc('second', now()) AS accrued_to,
       accrued + CASE
           WHEN annual_rate IS NULL OR date_trunc('second', now()) <= as_of THEN 0
           ELSE (CASE
                     WHEN free_mode = 'full' THEN
                         CASE WHEN liability > COALESCE(free_amount, 0) THEN liability ELSE 0 END
                     ELSE GREATEST(liability - COALESCE(free_amount, 0), 0)
                 END)
                * annual_rate
                * EXTRACT(EPOCH FROM (date_trunc('second', now()) - as_of))
                / 31536000
       END AS accrued_now
FROM projection_interest
"""


def _key(*names: str) -> list[sa.Column[str]]:
    return [sa.Column(name, sa.Text(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "projection_tracking",
        *_key("projection", "application_name"),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("projection", "application_name",
                                name="pk_projection_tracking"),
    )
    op.create_table(
        "projection_accounts",
        *_key("account", "account_id", "mode"),
        sa.Column("opened_at", UtcDateTime(), nullable=False),
        sa.Column("last_at", UtcDateTime(), nullable=False),
        sa.Column("last_at_micros", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_projection_accounts"),
    )
    op.create_index("ix_projection_accounts_last_at_micros", "projection_accounts",
                    ["last_at_micros"])
    op.create_table(
        "projection_balances",
        *_key("account", "asset"),
        sa.Column("balance", ExactDecimal(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "asset", name="pk_projection_balances"),
    )
    op.create_table(
        "projection_system_balances",
        *_key("account", "asset"),
        sa.Column("balance", ExactDecimal(), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "asset", name="pk_projection_system_balances"),
    )
    op.create_table(
        "projection_debts",
        *_key("account", "asset"),
        sa.Column("debt", ExactDecimal(), nullable=False),
        sa.Column("as_of", UtcDateTime(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "asset", name="pk_projection_debts"),
    )
    op.create_table(
        "projection_interest",
        *_key("account", "asset"),
        sa.Column("liability", ExactDecimal(), nullable=False),
        sa.Column("annual_rate", ExactDecimal(), nullable=True),
        sa.Column("free_amount", ExactDecimal(), nullable=True),
        sa.Column("free_mode", sa.Text(), nullable=True),
        sa.Column("accrued", ExactDecimal(), nullable=False),
        sa.Column("charged", ExactDecimal(), nullable=False),
        sa.Column("as_of", UtcDateTime(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "asset", name="pk_projection_interest"),
    )
    op.create_table(
        "projection_positions",
        *_key("account", "symbol", "margin_type", "side"),
        sa.Column("qty", ExactDecimal(), nullable=False),
        sa.Column("entry_price", ExactDecimal(), nullable=False),
        sa.Column("position_margin", ExactDecimal(), nullable=True),
        sa.Column("leverage", ExactDecimal(), nullable=False),
        sa.Column("auto_add_margin", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "symbol", "margin_type",
                                name="pk_projection_positions"),
    )
    op.create_table(
        "projection_margin_state",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("at_micros", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("equity_usd", ExactDecimal(), nullable=False),
        sa.Column("effective_equity_usd", ExactDecimal(), nullable=False),
        sa.Column("maintenance_margin_usd", ExactDecimal(), nullable=False),
        sa.Column("initial_margin_usd", ExactDecimal(), nullable=False),
        sa.Column("margin_ratio", ExactDecimal(), nullable=True),
        sa.Column("margin_level", ExactDecimal(), nullable=True),
        sa.Column("available_usd", ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("account", "version", name="pk_projection_margin_state"),
    )
    op.create_index("ix_projection_margin_state_at_micros", "projection_margin_state",
                    ["at_micros"])
    op.create_table(
        "projection_journal",
        sa.Column("notification_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        *_key("stream_id", "event_account"),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("at_micros", sa.BigInteger(), nullable=False),
        *_key("account", "asset"),
        sa.Column("amount", ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "line", name="pk_projection_journal"),
    )
    op.create_index("ix_projection_journal_account_asset", "projection_journal",
                    ["account", "asset"])
    op.create_index("ix_projection_journal_asset", "projection_journal", ["asset"])
    op.create_table(
        "projection_feed",
        sa.Column("notification_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("at_micros", sa.BigInteger(), nullable=False),
        sa.Column("margin_type", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        *(sa.Column(name, ExactDecimal(), nullable=True) for name in (
            "margin_ratio", "margin_level", "effective_equity_usd", "maintenance_margin_usd",
            "liquidation_price", "mark_price", "amount", "position_margin")),
        sa.PrimaryKeyConstraint("notification_id", name="pk_projection_feed"),
    )
    op.create_index("ix_projection_feed_account_at_micros", "projection_feed",
                    ["account", "at_micros"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(INTEREST_NOW)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP VIEW IF EXISTS projection_interest_now")
    op.drop_index("ix_projection_feed_account_at_micros", table_name="projection_feed")
    op.drop_table("projection_feed")
    op.drop_index("ix_projection_journal_asset", table_name="projection_journal")
    op.drop_index("ix_projection_journal_account_asset", table_name="projection_journal")
    op.drop_table("projection_journal")
    op.drop_index("ix_projection_margin_state_at_micros", table_name="projection_margin_state")
    op.drop_table("projection_margin_state")
    for name in ("projection_positions", "projection_interest", "projection_debts",
                 "projection_system_balances", "projection_balances"):
        op.drop_table(name)
    op.drop_index("ix_projection_accounts_last_at_micros", table_name="projection_accounts")
    op.drop_table("projection_accounts")
    op.drop_table("projection_tracking")
