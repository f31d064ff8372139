"""`ledger migrate`, `ledger projections run|rebuild|status`, `ledger reconcile`.

Click commands registered on the `ledger` group by `register(main)`; they read the store URL
from `ctx.obj["db"]` (the group's `--db`). Only click is imported here: alembic, SQLAlchemy, the
application and rich are imported inside the commands (start-up time, DESIGN §8).

Exit statuses: 0 done (reconcile: no difference); 1 reconcile found differences; 2 the store
could not be reached or the statement could not be read; 3 an internal error.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the `ledger` group."""
    group.add_command(migrate)
    group.add_command(projections)
    group.add_command(reconcile)


@contextmanager
def _internal_errors() -> Iterator[None]:
    """Map anything unexpected to the contract's internal-error status (3)."""
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - the CLI is where bugs become exit 3
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        click.echo(json.dumps({"error": "internal_error",
                               "message": f"{type(error).__name__}: {error}"}), err=True)
        sys.exit(3)


def _unreachable(error: Exception) -> None:
    click.echo(json.dumps({"error": "store_unavailable", "message": str(error)}), err=True)
    sys.exit(2)


def _require_store(url: str) -> None:
    """Exit 2 unless `url` names an existing ledger store (only `migrate` creates one)."""
    from ledger.opening import require_store

    require_store(url)


@click.command()
@click.option("--revision", default="head", show_default=True,
              help="Target revision (alembic's names: head, 0002, …).")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Bring the store's schema up to date (every table: event store, read models)."""
    from ledger.application import schema

    url = ctx.obj["db"]
    with _internal_errors():
        try:
            before = schema.current(url)
        except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
            _unreachable(error)
        _check_revision(url, revision)
        schema.upgrade(url, revision)
        after = schema.current(url)
    click.echo(f"schema {before or 'none'} → {after}" if before != after
               else f"schema already at {after}")


def _check_revision(url: str, revision: str) -> None:
    """Refuse a revision Alembic cannot find as a usage error (exit 2), before any change."""
    import re

    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from ledger.application import schema

    if re.fullmatch(r"[+-]\d+", revision):
        return  # relative to the store's revision: Alembic resolves it
    try:
        ScriptDirectory.from_config(schema.alembic_config(url)).get_revisions(revision)
    except CommandError as error:
        raise click.BadParameter(f"{error} (known: head, base, 0001 … {schema.HEAD})",
                                 param_hint="--revision") from None


@click.group()
def projections() -> None:
    """Read models for other services: run, rebuild, status."""


@projections.command("run")
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@click.option("--page-size", default=5000, show_default=True,
              help="Notifications per transaction.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar while catching up (default: when stderr is a terminal).")
@click.option("--report-seconds", type=click.FloatRange(min=0.1), default=None,
              help="While following: seconds between status lines on stderr (default: 1 on "
                   "a terminal, where the line is rewritten in place; 60 otherwise).")
@click.pass_context
def run(ctx: click.Context, once: bool, page_size: int, progress: bool | None,
        report_seconds: float | None) -> None:
    """Follow the log and keep the read models current (Ctrl-C stops between pages).

    While it follows, a status line (position, notifications applied) is kept current on a
    terminal and logged every minute otherwise; `--once` catches up and exits."""
    from ledger.numbers import install
    from projections.runner import Runner, status

    install()
    url = ctx.obj["db"]
    _require_store(url)
    with _internal_errors():
        try:
            runner = Runner(url, page_size=page_size)
        except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
            _unreachable(error)
        stop = threading.Event()
        try:
            show = sys.stderr.isatty() if progress is None else progress
            with _progress(show, status(url).lag) as advance, \
                    _following(runner, not once, report_seconds, stop):
                applied = runner.run(until_caught_up=once, stop=stop, on_page=advance)
        except KeyboardInterrupt:
            stop.set()
            applied = -1
        finally:
            runner.close()
    if applied >= 0:
        click.echo(f"applied {applied} notifications; position {runner.position or 0}",
                   err=True)


@contextmanager
def _following(runner: Any, follow: bool, every_s: float | None, stop: threading.Event
               ) -> Iterator[None]:
    """While the runner follows the log, say where it is: a line rewritten in place on a
    terminal, a plain line every `every_s` seconds otherwise (60 by default: a log file)."""
    if not follow:
        yield
        return
    terminal = sys.stderr.isatty()
    interval = every_s if every_s is not None else (1.0 if terminal else 60.0)
    start = runner.position or 0
    click.echo(f"following the log from position {start} (Ctrl-C stops)", err=True)
    done = threading.Event()

    def report() -> None:
        while not done.wait(interval) and not stop.is_set():
            position = runner.position or 0
            line = (f"projections: at position {position}, applied {position - start} "
                    "since start")
            if terminal:
                click.echo("\r" + line, err=True, nl=False)
            else:
                click.echo(line, err=True)

    reporter = threading.Thread(target=report, name="projections-status", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
        if terminal:
            click.echo(err=True)


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    if not show or total == 0:
        yield lambda count: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("projecting", total=total)
        yield lambda count: bar.advance(task, count)


@projections.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--page-size", default=5000, show_default=True,
              help="Notifications per transaction.")
@click.pass_context
def rebuild(ctx: click.Context, yes: bool, page_size: int) -> None:
    """Empty every read model and apply the whole log again."""
    from ledger.numbers import install
    from projections.runner import rebuild as rebuild_all

    install()
    if not yes:
        click.confirm("Empty every read model and rebuild it from the log?", abort=True)
    _require_store(ctx.obj["db"])
    with _internal_errors():
        applied = rebuild_all(ctx.obj["db"], page_size=page_size)
    click.echo(f"rebuilt from {applied} notifications", err=True)


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.pass_context
def show_status(ctx: click.Context, as_json: bool) -> None:
    """Show how far the read models are behind the log."""
    from projections.runner import status

    _require_store(ctx.obj["db"])
    with _internal_errors():
        try:
            found = status(ctx.obj["db"])
        except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
            _unreachable(error)
    if as_json:
        click.echo(json.dumps({"head": found.head, "position": found.position,
                               "lag": found.lag, "projections": found.positions}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"log head {found.head}, lag {found.lag}", header_style="bold")
    table.add_column("projection")
    table.add_column("position", justify="right")
    table.add_column("lag", justify="right")
    for name, position in found.positions.items():
        table.add_row(name, str(position), str(found.head - position))
    Console().print(table)


@click.command()
@click.option("--statement", type=click.Path(dir_okay=False, exists=True),
              help="CSV with header account,asset,balance,as_of to check against.")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.option("--catch-up/--no-catch-up", default=True, show_default=True,
              help="Bring the read models up to the log first.")
@click.pass_context
def reconcile(ctx: click.Context, statement: str | None, as_json: bool, catch_up: bool) -> None:
    """Check postings, the journal, the read models (and a statement); exit 1 on any
    difference."""
    from ledger.application import schema
    from ledger.application.service import Ledger
    from ledger.numbers import install
    from projections.reconcile import StatementError, read_statement
    from projections.reconcile import reconcile as check
    from projections.runner import run as run_projections

    install()
    url = ctx.obj["db"]
    if statement is not None:
        try:
            read_statement(statement)
        except (StatementError, OSError, UnicodeDecodeError) as error:
            click.echo(json.dumps({"error": "statement_unreadable", "message": str(error)}),
                       err=True)
            sys.exit(2)
    _require_store(url)
    with _internal_errors():
        try:
            if not schema.is_current(url):
                schema.upgrade(url)
            ledger = Ledger(url)
        except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
            _unreachable(error)
        if catch_up:
            run_projections(url, until_caught_up=True)
        engine = schema.create_engine(url)
        try:
            differences = check(ledger, engine, statement)
        finally:
            engine.dispose()
    if as_json:
        click.echo(json.dumps({"differences": [d.as_dict() for d in differences]},
                              ensure_ascii=False))
    else:
        _print_differences(differences)
    sys.exit(1 if differences else 0)


def _print_differences(differences: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not differences:
        console.print("reconciled: no difference")
        return
    table = Table(title=f"{len(differences)} differences", header_style="bold")
    for column in ("check", "account", "asset", "ledger", "other", "where"):
        table.add_column(column, justify="right" if column in ("ledger", "other") else "left")
    for item in differences:
        table.add_row(item.check, item.account, item.asset, item.ledger or "—",
                      item.other or "—", item.where)
    console.print(table)
