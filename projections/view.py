"""The materialised view's plumbing: a tracking recorder and a page writer on SQLAlchemy.

`ReadModelView` is the eventsourcing `TrackingRecorder` of one projection, kept in
`projection_tracking` (one row per projection and upstream application), so the library's
`wait()` and `has_tracking_id()` work on it. The runner never calls `insert_tracking` on its own:
it moves every projection's position with `PageWriter.track` inside the page's transaction,
conditionally on the position it started from (another runner that moved it first makes this
one fail instead of writing twice).

`PageWriter` runs the statements of one page on one connection, calling the test hook between
rows and before the commit, so a crash can be injected at any of those points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from sqlalchemy import Connection, Engine, Table, and_, delete, exc, insert, select, update

from projections.tables import tracking
from projections.types import UtcDateTime

Hook = Callable[[str], None]
"""Called with "row" between rows, "statement" after a statement, "commit" before commit."""


def _memo(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return `process` remembering its results (for one statement's values)."""
    found: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        text = found.get(value)
        if text is None:
            text = found[value] = process(value)
        return text

    return remembered


class TrackingConflict(IntegrityError):
    """The tracking position moved under this runner (another runner or a rebuild)."""


class ReadModelView(TrackingRecorder):
    """Tracking of one projection in `projection_tracking`."""

    def __init__(self, engine: Engine, projection: str) -> None:
        self.engine = engine
        self.projection = projection

    def insert_tracking(self, tracking_: Tracking) -> None:
        with self.engine.begin() as connection:
            PageWriter(connection).track([self.projection], tracking_,
                                         self._max(connection, tracking_.application_name))

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.engine.connect() as connection:
            return self._max(connection, application_name)

    def _max(self, connection: Connection, application_name: str) -> int | None:
        return connection.execute(
            select(tracking.c.notification_id).where(
                tracking.c.projection == self.projection,
                tracking.c.application_name == application_name)
        ).scalar_one_or_none()


class PageWriter:
    """Statements of one page, on the page's connection (one transaction)."""

    def __init__(self, connection: Connection, hook: Hook | None = None) -> None:
        self.connection = connection
        self.hook = hook
        self.rows = 0

    def track(self, projections: Sequence[str], position: Tracking,
              expected: int | None) -> None:
        """Move the projections' positions from `expected` to `position`, in one statement
        (or fail: `TrackingConflict` when any of them is no longer at `expected`)."""
        if expected is None:
            try:
                self.connection.execute(insert(tracking), [
                    {"projection": name, "application_name": position.application_name,
                     "notification_id": position.notification_id} for name in projections])
            except exc.IntegrityError as error:
                raise TrackingConflict(
                    "tracking was started by another runner (or a rebuild)") from error
        else:
            moved = self.connection.execute(
                update(tracking).where(
                    tracking.c.projection.in_(list(projections)),
                    tracking.c.application_name == position.application_name,
                    tracking.c.notification_id == expected)
                .values(notification_id=position.notification_id))
            if moved.rowcount != len(projections):
                raise TrackingConflict(
                    f"tracking is no longer at {expected} (another runner, or a rebuild)")
        self._after("statement")

    def insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert new rows (PostgreSQL: one COPY, the fastest path into a table; SQLite: one
        `executemany` of the driver's own statement)."""
        if rows and self.hook is None:
            if self.connection.dialect.name == "postgresql":
                self._copy(table, rows)
                return
            self._executemany(table, rows)
            return
        self._run(insert(table), rows)

    def _executemany(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows with one plain `executemany`, each value bound by its column type's
        own bind processor (the exact text SQLAlchemy's `insert` would bind), without
        SQLAlchemy compiling and processing parameters row by row (a quarter of a page's
        time on SQLite)."""
        columns = list(rows[0])
        dialect = self.connection.dialect
        processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.bind_processor(dialect) for name in columns]
        statement = (f'INSERT INTO "{table.name}" ('
                     + ", ".join(f'"{name}"' for name in columns) + ") VALUES ("
                     + ", ".join("?" for _ in columns) + ")")
        for index, name in enumerate(columns):
            process = processors[index]
            if isinstance(table.c[name].type, UtcDateTime) and process is not None:
                processors[index] = _memo(process)  # the rows of one event share its `at`
        pairs = list(zip(columns, processors, strict=True))
        values = [tuple(row[name] if process is None else process(row[name])
                        for name, process in pairs) for row in rows]
        self.connection.exec_driver_sql(statement, values)
        self.rows += len(rows)
        self._after("statement")

    def _copy(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """COPY rows in the page's transaction (the DBAPI connection is the same). The
        values need no conversion on PostgreSQL: ExactDecimal and UtcDateTime bind the
        Decimal and the aware datetime as they are."""
        from psycopg import sql

        columns = list(rows[0])
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
        driver: Any = self.connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[name] for name in columns])
        self.rows += len(rows)
        self._after("statement")

    def upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows, replacing those with the same primary key."""
        if not rows:
            return
        keys = [column.name for column in table.primary_key.columns]
        if self.hook is None and self.connection.dialect.name == "postgresql":
            self._pg_upsert(table, keys, rows)
            return
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table)
        changes = {name: statement.excluded[name] for name in rows[0] if name not in keys}
        self._run(statement.on_conflict_do_update(index_elements=keys, set_=changes), rows)

    def delete_where_in(self, table: Table, column: str, values: Sequence[Any]) -> None:
        if values:
            self.connection.execute(delete(table).where(table.c[column].in_(values)))
            self._after("statement")

    def delete_keys(self, table: Table, keys: Sequence[dict[str, Any]]) -> None:
        """Delete the rows with these primary keys."""
        if not keys:
            return
        from sqlalchemy import bindparam

        names = [column.name for column in table.primary_key.columns]
        condition = and_(*(table.c[name] == bindparam(f"key_{name}") for name in names))
        self._run(delete(table).where(condition),
                  [{f"key_{name}": key[name] for name in names} for key in keys])

    def update(self, table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
        """Update rows matched by `keys` (their values in each row under `key_<name>`)."""
        if not rows:
            return
        from sqlalchemy import bindparam

        if self.hook is None and self.connection.dialect.name == "postgresql":
            self._pg_update(table, keys, rows)
            return
        # The SET clause comes from the rows' other keys (column names), per SQLAlchemy.
        condition = and_(*(table.c[key] == bindparam(f"key_{key}") for key in keys))
        self._run(update(table).where(condition), rows)

    def _unnest(self, table: Table, columns: Sequence[str], names: Sequence[str],
                rows: Sequence[dict[str, Any]]) -> tuple[Any, list[list[Any]]]:
        """Return `unnest(%s::type[], …) AS v(names…)` and its arrays: one array per column
        (`columns`: the table's columns, whose types the arrays take; `names`: the keys of
        the rows), so a page's rows go to the server as one statement's parameters."""
        from psycopg import sql

        dialect = self.connection.dialect
        arrays = sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(table.c[column].type.compile(dialect)))
            for column in columns)
        source = sql.SQL("unnest({}) AS v({})").format(
            arrays, sql.SQL(", ").join(map(sql.Identifier, names)))
        return source, [[row[name] for row in rows] for name in names]

    def _execute_driver(self, statement: Any, values: list[list[Any]], count: int) -> None:
        driver: Any = self.connection.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(statement, values)
        self.rows += count
        self._after("statement")

    def _pg_upsert(self, table: Table, keys: Sequence[str],
                   rows: Sequence[dict[str, Any]]) -> None:
        """`INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE`: one statement for the
        page instead of one per row. The rows' keys are unique (each read model keeps them in
        a dict), as ON CONFLICT DO UPDATE requires."""
        from psycopg import sql

        columns = list(rows[0])
        source, values = self._unnest(table, columns, columns, rows)
        statement = sql.SQL(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {source}"
            " ON CONFLICT ({keys}) DO UPDATE SET {changes}").format(
            table=sql.Identifier(table.name),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)), source=source,
            keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
            changes=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
                for name in columns if name not in keys))
        self._execute_driver(statement, values, len(rows))

    def _pg_update(self, table: Table, keys: Sequence[str],
                   rows: Sequence[dict[str, Any]]) -> None:
        """`UPDATE … FROM unnest(arrays)`: one statement for the page's updates."""
        from psycopg import sql

        names = list(rows[0])
        columns = [name.removeprefix("key_") if name.startswith("key_") else name
                   for name in names]
        source, values = self._unnest(table, columns, names, rows)
        statement = sql.SQL("UPDATE {table} AS t SET {changes} FROM {source} WHERE {match}"
                            ).format(
            table=sql.Identifier(table.name),
            changes=sql.SQL(", ").join(
                sql.SQL("{0} = v.{0}").format(sql.Identifier(name))
                for name in names if not name.startswith("key_")),
            source=source,
            match=sql.SQL(" AND ").join(
                sql.SQL("t.{} = v.{}").format(sql.Identifier(key),
                                              sql.Identifier(f"key_{key}"))
                for key in keys))
        self._execute_driver(statement, values, len(rows))

    def before_commit(self) -> None:
        self._after("commit")

    def _run(self, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.hook is None:
            self.connection.execute(statement, list(rows))
        else:
            for row in rows:  # one at a time, so a crash can fall between any two rows
                self.connection.execute(statement, [row])
                self._after("row")
        self.rows += len(rows)
        self._after("statement")

    def _after(self, point: str) -> None:
        if self.hook is not None:
            self.hook(point)
