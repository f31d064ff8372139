"""The read-model tables: SQLAlchemy Core `Table`s on one `MetaData` with a naming convention.

Other services read these tables; the projection runner (`projections.runner`) is their only
writer, and writes every page of rows in the transaction that moves its tracking position
(`projection_tracking`), so a row is never lost or doubled. Alembic owns the schema: the
revisions in `migrations/versions` are written against this module (a test compares the migrated
database with this metadata on both backends). Amounts are `ExactDecimal`, times `UtcDateTime`
plus an integer `*_micros` twin (microseconds since the epoch, the ledger's time index key) for
ordering and range queries.

| table | one row per | holds |
|---|---|---|
| projection_tracking | projection | the last notification id applied |
| projection_accounts | account | mode, first and last `at`, version |
| projection_balances | account, asset | wallet balance (user accounts) |
| projection_system_balances | system account, asset | balance of `system:*` accounts |
| projection_debts | account, asset | liability `max(0, −e)` as of the account's last event |
| projection_interest | account, asset | liability, rate, accrued as of the last event, charged |
| projection_positions | account, symbol, margin type | side, qty, entry, margin, leverage |
| projection_margin_state | account event | equity, effective equity, MM, IM, ratio, level, avail. |
| projection_journal | posting | the posting and the event that applied it |
| projection_feed | margin call, liquidation trigger, top-up | the signal's figures |

PostgreSQL also has the view `projection_interest_now` (migration 0002): `accrued` extended to
now() at the rate and liability of the last event — for other services; the ledger never uses it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, Table, Text

from projections.types import ExactDecimal, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

tracking = Table(
    "projection_tracking", metadata,
    Column("projection", Text, primary_key=True),
    Column("application_name", Text, primary_key=True),
    Column("notification_id", BigInteger, nullable=False),
)

accounts = Table(
    "projection_accounts", metadata,
    Column("account", Text, primary_key=True),
    Column("account_id", Text, nullable=False),  # stream id (uuid hex)
    Column("mode", Text, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_at", UtcDateTime, nullable=False),
    Column("last_at_micros", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("notification_id", BigInteger, nullable=False),  # of the account's last event
    Index(None, "last_at_micros"),
)

balances = Table(
    "projection_balances", metadata,
    Column("account", Text, primary_key=True),
    Column("asset", Text, primary_key=True),
    Column("balance", ExactDecimal, nullable=False),
    Column("version", BigInteger, nullable=False),  # account version of the last change
)

system_balances = Table(
    "projection_system_balances", metadata,
    Column("account", Text, primary_key=True),
    Column("asset", Text, primary_key=True),
    Column("balance", ExactDecimal, nullable=False),
    Column("notification_id", BigInteger, nullable=False),  # of the last change
)

debts = Table(
    "projection_debts", metadata,
    Column("account", Text, primary_key=True),
    Column("asset", Text, primary_key=True),
    Column("debt", ExactDecimal, nullable=False),
    Column("as_of", UtcDateTime, nullable=False),
    Column("version", BigInteger, nullable=False),
)

interest = Table(
    "projection_interest", metadata,
    Column("account", Text, primary_key=True),
    Column("asset", Text, primary_key=True),
    Column("liability", ExactDecimal, nullable=False),
    Column("annual_rate", ExactDecimal, nullable=True),  # null: no interest terms in force
    Column("free_amount", ExactDecimal, nullable=True),
    Column("free_mode", Text, nullable=True),
    Column("accrued", ExactDecimal, nullable=False),  # since the last charge, exact
    Column("charged", ExactDecimal, nullable=False),  # total charged, as posted
    Column("as_of", UtcDateTime, nullable=False),
    Column("version", BigInteger, nullable=False),
)

positions = Table(
    "projection_positions", metadata,
    Column("account", Text, primary_key=True),
    Column("symbol", Text, primary_key=True),
    Column("margin_type", Text, primary_key=True),
    Column("side", Text, nullable=False),  # long / short
    Column("qty", ExactDecimal, nullable=False),  # contracts, magnitude
    Column("entry_price", ExactDecimal, nullable=False),
    Column("position_margin", ExactDecimal, nullable=True),  # isolated only
    Column("leverage", ExactDecimal, nullable=False),
    Column("auto_add_margin", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
)

margin_state = Table(
    "projection_margin_state", metadata,
    Column("account", Text, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("notification_id", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("at_micros", BigInteger, nullable=False),
    Column("mode", Text, nullable=False),
    Column("equity_usd", ExactDecimal, nullable=False),
    Column("effective_equity_usd", ExactDecimal, nullable=False),
    Column("maintenance_margin_usd", ExactDecimal, nullable=False),
    Column("initial_margin_usd", ExactDecimal, nullable=False),
    Column("margin_ratio", ExactDecimal, nullable=True),
    Column("margin_level", ExactDecimal, nullable=True),
    Column("available_usd", ExactDecimal, nullable=False),
    Index(None, "at_micros"),
)

journal = Table(
    "projection_journal", metadata,
    Column("notification_id", BigInteger, primary_key=True, autoincrement=False),
    # the index of the posting in its event's postings
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("stream_id", Text, nullable=False),  # the event's account stream (uuid hex)
    Column("event_account", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("at_micros", BigInteger, nullable=False),
    Column("account", Text, nullable=False),  # the posting's account
    Column("asset", Text, nullable=False),
    Column("amount", ExactDecimal, nullable=False),  # signed: + increases the balance
    Index(None, "account", "asset"),
    Index(None, "asset"),
)

feed = Table(
    "projection_feed", metadata,
    Column("notification_id", BigInteger, primary_key=True, autoincrement=False),
    Column("account", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),  # margin_call / liquidation_triggered / top_up
    Column("at", UtcDateTime, nullable=False),
    Column("at_micros", BigInteger, nullable=False),
    Column("margin_type", Text, nullable=True),
    Column("symbol", Text, nullable=True),
    Column("margin_ratio", ExactDecimal, nullable=True),
    Column("margin_level", ExactDecimal, nullable=True),
    Column("effective_equity_usd", ExactDecimal, nullable=True),
    Column("maintenance_margin_usd", ExactDecimal, nullable=True),
    Column("liquidation_price", ExactDecimal, nullable=True),
    Column("mark_price", ExactDecimal, nullable=True),
    Column("amount", ExactDecimal, nullable=True),  # top-up amount
    Column("position_margin", ExactDecimal, nullable=True),  # after the top-up
    Index(None, "account", "at_micros"),
)

READ_MODEL_TABLES = (accounts, balances, system_balances, debts, interest, positions,
                     margin_state, journal, feed)
"""Every table a rebuild empties (tracking aside)."""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Let Alembic's autogenerate see the read models only: the event store's tables are the
    eventsourcing library's, not in this metadata (revision 0001 writes them by hand)."""
    if type_ == "table":
        return bool(name and name.startswith("projection_"))
    table = getattr(obj, "table", None)
    return table is None or str(table.name).startswith("projection_")
