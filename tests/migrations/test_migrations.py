"""Migrations: every revision up and down, one at a time, on SQLite and PostgreSQL.

Also: the migrated schema is exactly `projections.tables`' (autogenerate finds nothing to do);
revision 0001 is what the library and the recorders create on first use (a legacy store is
stamped, then upgraded, and holds the same columns, keys and indexes as a migrated one); the
head revision is the one the code expects; the alembic command line takes `-x url=`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from sqlalchemy import inspect, text

from ledger.application import schema
from ledger.application.store import SIDE_TABLES, environment
from projections.tables import include_object, metadata

ROOT = Path(__file__).resolve().parents[2]
READ_MODELS = {table.name for table in metadata.sorted_tables}


def _tables(url: str) -> set[str]:
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _postgres_objects(url: str) -> dict[str, bool]:
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                "type": connection.execute(text(
                    "SELECT to_regtype('stored_event_uuid') IS NOT NULL")).scalar_one(),
                "view": connection.execute(text(
                    "SELECT to_regclass('projection_interest_now') IS NOT NULL")).scalar_one(),
            }
    finally:
        engine.dispose()


def _to_base(url: str) -> None:
    """Take whatever the shared store holds (a legacy store, head) down to nothing."""
    schema.upgrade(url)
    schema.downgrade(url, "base")


def _revisions() -> list[str]:
    script = ScriptDirectory(schema.script_location())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def test_the_code_expects_the_head_revision() -> None:
    script = ScriptDirectory(schema.script_location())
    assert script.get_current_head() == schema.HEAD
    assert _revisions() == ["0001", "0002", "0003", "0004", "0005", "0006", "0007"]


def test_every_revision_up_and_down_one_at_a_time(store_url: str) -> None:
    url = store_url
    _to_base(url)
    legacy = set(schema.legacy_tables(url))
    expected = {"0001": legacy, "0002": legacy | READ_MODELS, "0003": legacy | READ_MODELS,
                "0004": legacy | READ_MODELS, "0005": legacy | READ_MODELS,
                "0006": legacy | READ_MODELS | {"ledger_api_tokens"},
                "0007": legacy | READ_MODELS | {"ledger_api_tokens"}}
    assert _tables(url) == set()
    assert schema.current(url) is None
    for revision in _revisions():
        schema.upgrade(url, revision)
        assert schema.current(url) == revision
        assert _tables(url) == expected[revision]
    assert schema.is_current(url)
    if schema.is_postgres(url):
        assert _postgres_objects(url) == {"type": True, "view": True}
    for revision, below in (("0007", "0006"), ("0006", "0005"), ("0005", "0004"), ("0004", "0003"),
                            ("0003", "0002"), ("0002", "0001"), ("0001", "base")):
        assert schema.current(url) == revision
        schema.downgrade(url, below)
        assert _tables(url) == (expected[below] if below != "base" else set())
    assert schema.current(url) is None
    if schema.is_postgres(url):
        assert _postgres_objects(url) == {"type": False, "view": False}
    schema.upgrade(url)  # leave the shared store as the other tests expect it
    assert schema.is_current(url)


def test_upgrade_twice_changes_nothing(store_url: str) -> None:
    schema.upgrade(store_url)
    before = _tables(store_url)
    schema.upgrade(store_url)
    assert _tables(store_url) == before
    assert schema.is_current(store_url)


def test_migrated_schema_is_the_metadata(store_url: str) -> None:
    """Autogenerate compares the read models with `projections.tables`: nothing to do."""
    schema.upgrade(store_url)
    engine = schema.create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "include_object": include_object, "compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def _legacy_store(url: str) -> None:
    """Create the tables as the library and the recorders did before the migrations (their
    own table creation on), independently of how `Ledger` starts today."""
    import importlib

    from ledger.application import store

    legacy = importlib.import_module("migrations.versions.0001_create_event_store").SIDE_TABLES
    modules = [store]
    if url.startswith("postgres"):
        from ledger.application import pgstore

        modules.append(pgstore)
    today = store.SIDE_TABLES
    env = Environment("Ledger", {**environment(url), "CREATE_TABLE": "y"})
    factory: Any = InfrastructureFactory.construct(env)
    try:
        for module in modules:  # the side tables as they were before the migrations
            module.SIDE_TABLES = legacy  # type: ignore[attr-defined]
        factory.application_recorder()
        factory.aggregate_recorder("snapshots")
    finally:
        for module in modules:
            module.SIDE_TABLES = today  # type: ignore[attr-defined]
        factory.close()


def _shape(url: str, names: set[str]) -> dict[str, Any]:
    engine = schema.create_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            return {
                name: {
                    "columns": [(c["name"], str(c["type"]), c["nullable"])
                                for c in found.get_columns(name)],
                    "key": found.get_pk_constraint(name)["constrained_columns"],
                    "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in found.get_indexes(name)),
                }
                for name in sorted(names)
            }
    finally:
        engine.dispose()


def test_a_legacy_store_is_stamped_and_holds_what_0001_creates(store_url: str) -> None:
    url = store_url
    _to_base(url)
    schema.upgrade(url, "0001")
    migrated = _shape(url, set(schema.legacy_tables(url)))
    schema.downgrade(url, "base")
    _legacy_store(url)
    assert schema.current(url) is None
    assert _shape(url, set(schema.legacy_tables(url))) == migrated
    assert schema.stamp_if_legacy(url) is True
    assert schema.current(url) == "0001"
    assert schema.stamp_if_legacy(url) is False  # stamped: not legacy any more
    schema.upgrade(url)
    assert schema.is_current(url)
    assert _tables(url) == set(schema.legacy_tables(url)) | READ_MODELS | {"ledger_api_tokens"}


def test_a_partial_legacy_store_gets_what_is_missing(store_url: str) -> None:
    url = store_url
    _to_base(url)
    _legacy_store(url)
    engine = schema.create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE ledger_holders"))
    engine.dispose()
    assert schema.stamp_if_legacy(url) is True
    assert schema.current(url) == "0001"
    assert "ledger_holders" in _tables(url)
    schema.upgrade(url)


def test_an_empty_store_is_not_legacy(store_url: str) -> None:
    _to_base(store_url)
    assert schema.stamp_if_legacy(store_url) is False
    assert schema.current(store_url) is None
    schema.upgrade(store_url)


def test_revision_0001_copies_the_side_tables_of_the_day() -> None:
    """0001 is never edited: if `SIDE_TABLES` changes, a new revision must say how."""
    import importlib

    revision = importlib.import_module("migrations.versions.0001_create_event_store")
    # 0005 adds the commands' content column: the table of the day is 0001's plus that column.
    with_content = tuple(
        statement.replace("at_micros BIGINT NOT NULL)", "at_micros BIGINT NOT NULL, content TEXT)")
        if "ledger_commands" in statement else statement for statement in revision.SIDE_TABLES)
    assert with_content == SIDE_TABLES


def test_is_current_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    assert schema.is_current(url) is False
    assert not (tmp_path / "absent.db").exists()


def test_the_alembic_command_line_takes_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini")]
    done = subprocess.run([*alembic, "-x", f"url={url}", "upgrade", "head"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert schema.current(url) == schema.HEAD
    env = {**os.environ, "LEDGER_DATABASE_URL": url}
    done = subprocess.run([*alembic, "current"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{schema.HEAD} (head)" in done.stdout


@pytest.mark.parametrize("url", ["mysql://nowhere/db", "oracle://x"])
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        schema.sqlalchemy_url(url)
