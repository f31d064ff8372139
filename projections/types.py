"""Column types of the read models: exact decimals and UTC times on SQLite and PostgreSQL.

- `ExactDecimal`: unconstrained `NUMERIC` on PostgreSQL (any precision, trailing zeros kept),
  `TEXT` on SQLite, whose `NUMERIC` affinity goes through a float (LIBRARY-NOTES: 0.114155251…
  came back as 0.114155251141552505). Values go in and come out as `Decimal`; the text form is
  `format(x, "f")`, so no exponent is ever stored. Do arithmetic in Python, not in SQL (STYLE §4).
- `UtcDateTime`: `TIMESTAMP WITH TIME ZONE` on PostgreSQL (microseconds, like `at`); on SQLite a
  fixed-width text `2025-01-01T08:00:00.000000Z`, so that text order is time order. Values are
  timezone-aware UTC datetimes both ways.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Dialect, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

_SQLITE_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, TEXT on SQLite (never a float)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC(asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"ExactDecimal takes a Decimal, not {type(value).__name__}")
        if dialect.name == "postgresql":
            return value
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return Decimal(value)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        return self

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time: timestamptz on PostgreSQL, sortable text on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"UtcDateTime takes an aware datetime, not {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.strftime(_SQLITE_TIME)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.strptime(value, _SQLITE_TIME).replace(tzinfo=UTC)

    @property
    def python_type(self) -> type[datetime]:
        return datetime

