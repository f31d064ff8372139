"""The `ledger` command: argument parsing and output only (DESIGN §8).

Click parses the arguments (small, well kept, starts fast); rich draws tables and progress bars
for people and is imported only by the commands that draw. Heavy modules (the application,
alembic, apscheduler) are imported inside the commands, so `ledger --help` answers quickly.

Exit statuses (contract): 0 every command applied or acknowledged; 1 some rejected; 2 the feed
could not be read or the store not reached; 3 an internal error stopped the run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ledger.application.service import Ledger

DEFAULT_DB = "sqlite:///ledger.db"
# pydantic looks up plugins through package metadata at first use (~0.1 s); we use none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
log = logging.getLogger("ledger")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from ledger.times import parse_at

    try:
        return parse_at(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def open_ledger(url: str) -> Ledger:
    """Open the store, or exit 2 when it cannot be reached."""
    from ledger.application.service import Ledger
    from ledger.numbers import install

    install()
    try:
        return Ledger(url)
    except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
        click.echo(json.dumps({"error": "store_unavailable", "message": str(error)}),
                   err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", default=lambda: os.environ.get("LEDGER_DATABASE_URL", DEFAULT_DB),
              show_default="sqlite:///ledger.db or $LEDGER_DATABASE_URL",
              help="Store URL: sqlite:///FILE or postgresql://user@host/db.")
@click.pass_context
def main(ctx: click.Context, db: str) -> None:
    """An event-sourced margin ledger for crypto-derivatives exchanges."""
    ctx.obj = {"db": db}


@main.command()
@click.argument("feed", type=click.Path(dir_okay=False))
@click.option("--batch", "batch_size", default=1000, show_default=True,
              help="Commands per transaction.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when stderr is a terminal).")
@click.pass_context
def run(ctx: click.Context, feed: str, batch_size: int, progress: bool | None) -> None:
    """Apply a JSONL feed of commands, in order."""
    from ledger.application.feed import FeedUnreadable, Rejection, read_lines, run_feed

    if not os.path.isfile(feed) or not os.access(feed, os.R_OK):
        click.echo(json.dumps({"error": "feed_unreadable", "message": f"cannot read {feed}"}),
                   err=True)
        sys.exit(2)
    ledger = open_ledger(ctx.obj["db"])

    def reject(rejection: Rejection) -> None:
        click.echo(json.dumps(rejection.as_dict(), ensure_ascii=False), err=True)

    show = sys.stderr.isatty() if progress is None else progress
    try:
        if show:
            report = _run_with_progress(ledger, feed, reject, batch_size)
        else:
            report = run_feed(ledger, read_lines(feed), reject, batch_size=batch_size)
    except FeedUnreadable as error:
        click.echo(json.dumps({"error": "feed_unreadable", "message": str(error)}), err=True)
        sys.exit(2)
    if report.internal_error is not None:
        failure = report.internal_error
        traceback.print_exception(type(failure), failure, failure.__traceback__,
                                  file=sys.stderr)
        click.echo(json.dumps({"line": report.internal_error_line, "error": "internal_error",
                               "message": f"{type(failure).__name__}: {failure}"}), err=True)
        sys.exit(3)
    if show:
        click.echo(f"applied {report.applied}, acknowledged {report.acknowledged}, "
                   f"rejected {len(report.rejected)}", err=True)
    sys.exit(1 if report.rejected else 0)


def _run_with_progress(ledger: Ledger, feed: str, reject: Any, batch_size: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ledger.application.feed import read_lines, run_feed

    with open(feed, "rb") as handle:
        total = sum(1 for line in handle if line.strip())
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("ingesting", total=total)
        return run_feed(ledger, read_lines(feed), reject,
                        on_progress=lambda n: bar.advance(task, n), batch_size=batch_size)


@main.command()
@click.argument("account", required=False)
@click.option("--at", "at", help="RFC 3339 time (default: the latest event in the store).")
@click.option("--all", "every", is_flag=True, help="Every account.")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.pass_context
def state(ctx: click.Context, account: str | None, at: str | None, every: bool,
          as_json: bool) -> None:
    """Show an account's state at any second."""
    from ledger.application import queries
    from ledger.errors import LedgerError

    moment = _parse_time(at)
    if not every and not account:
        raise click.UsageError("give an ACCOUNT or --all")
    ledger = open_ledger(ctx.obj["db"])
    try:
        result: Any = (queries.all_states(ledger, moment) if every
                       else queries.state(ledger, account or "", moment))
    except LedgerError as error:
        click.echo(json.dumps({"error": error.code, "message": str(error)}), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    from ledger.tables import print_states

    print_states(result if every else [result])


@main.command()
@click.argument("account")
@click.option("--since", help="Only events at or after this time.")
@click.option("--until", help="Only events at or before this time.")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.pass_context
def events(ctx: click.Context, account: str, since: str | None, until: str | None,
           as_json: bool) -> None:
    """List an account's events, in order (for auditors)."""
    from ledger.application import queries
    from ledger.errors import LedgerError

    ledger = open_ledger(ctx.obj["db"])
    try:
        result = queries.events(ledger, account, _parse_time(since), _parse_time(until))
    except LedgerError as error:
        click.echo(json.dumps({"error": error.code, "message": str(error)}), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    from ledger.tables import print_events

    print_events(account, result)


@main.command()
@click.option("--anchor", "anchor_path", type=click.Path(dir_okay=False),
              help="An anchor from `ledger seal`: also prove the store still extends it.")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.pass_context
def verify(ctx: click.Context, anchor_path: str | None, as_json: bool) -> None:
    """Check the store for tampering; name every break (exit 1 when there is one).

    \b
    Without an anchor: every stream's hash chain (accounts, assets, instruments, settings),
    postings balance, snapshots equal the replay of their events, ledger_event_index and
    ledger_streams match the events, and the log's notification ids have no hole. This
    catches edited events, snapshots and reference data (prices, terms), deletions in the
    middle of a stream or of the log, reordered events and a deleted account whose events
    leave a hole. It cannot catch events deleted from the very end of the log together with
    their index rows, nor an edit whose chain was recomputed forward. (On PostgreSQL a write
    killed before it committed also leaves a hole; `seal` records the holes it finds and
    the anchor accepts exactly those.)
    With --anchor: also every stream head sealed in the anchor is still there with its hash
    and the log reaches the sealed position, which catches those two; the store may have
    grown since. With LEDGER_SEAL_KEY set: the anchor's HMAC must match, so an anchor
    forged by someone without the key is caught too. See docs/tamper-evidence.md.
    """
    from ledger.application.audit import AnchorError, audit, load_anchor

    try:
        anchor = load_anchor(anchor_path) if anchor_path else None
    except AnchorError as error:
        click.echo(json.dumps({"error": "anchor_unreadable", "message": str(error)}), err=True)
        sys.exit(2)
    found = audit(open_ledger(ctx.obj["db"]), anchor, os.environ.get("LEDGER_SEAL_KEY"))
    if as_json:
        click.echo(json.dumps(found.as_dict(), ensure_ascii=False))
    else:
        legacy = f", {found.legacy} unchained (legacy)" if found.legacy else ""
        click.echo(f"checked {found.events} events in {found.streams} streams"
                   f" ({found.accounts} accounts{legacy}), {found.snapshots} snapshots, log"
                   f" position {found.log_position}"
                   + (" against the anchor" if anchor else "") + ": "
                   + ("no break" if not found.breaks else f"{len(found.breaks)} broken"))
        for note in found.notes:
            click.echo(f"  note: {note}")
        for item in found.breaks:
            click.echo(f"  {item}")
    sys.exit(1 if found.breaks else 0)


@main.command()
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="Write the anchor to this file (default: print it).")
@click.pass_context
def seal(ctx: click.Context, out: str | None) -> None:
    """Print an anchor of the store (log position, every stream's head, a root hash; an HMAC
    when LEDGER_SEAL_KEY is set) to keep outside the database for `verify --anchor`."""
    from ledger.application.audit import AnchorError
    from ledger.application.audit import seal as make_anchor

    try:
        anchor = make_anchor(open_ledger(ctx.obj["db"]), os.environ.get("LEDGER_SEAL_KEY"))
    except AnchorError as error:
        click.echo(json.dumps({"error": "not_sealed", "message": str(error)}), err=True)
        sys.exit(1)
    text = json.dumps(anchor, indent=1, sort_keys=True)
    for gap in anchor["gaps"]:
        click.echo(f"note: log gap {gap[0]}–{gap[1]} recorded in the anchor", err=True)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        click.echo(text)


@main.command()
@click.option("--accounts", default=300, show_default=True, help="Accounts to simulate.")
@click.option("--seed", default=7, show_default=True, help="Random seed (the day is reproducible).")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Start from an empty store (SQLite file removed first).")
@click.pass_context
def demo(ctx: click.Context, accounts: int, seed: int, fresh: bool) -> None:
    """Simulate a realistic day, ingest it, summarise, replay and verify."""
    from ledger.demo import run_demo

    sys.exit(run_demo(ctx.obj["db"], accounts=accounts, seed=seed, fresh=fresh))


@main.command()
@click.option("--fills", default=100_000, show_default=True, help="Fills to ingest.")
@click.option("--history", default=100_000, show_default=True,
              help="Events of the account whose state is queried.")
@click.option("--postgres", "pg_url", default=None,
              help="PostgreSQL URL to bench too (default: $LEDGER_BENCH_POSTGRES_URL).")
@click.option("--only", type=click.Choice(["ingest", "state", "portfolio", "funding",
                                           "projections"]), multiple=True,
              help="Run only these cases.")
@click.pass_context
def bench(ctx: click.Context, fills: int, history: int, pg_url: str | None,
          only: tuple[str, ...]) -> None:
    """Measure ingest, state queries and margin computation (figures for the notes)."""
    from ledger.bench import run_bench

    sys.exit(run_bench(fills=fills, history=history,
                       pg_url=pg_url or os.environ.get("LEDGER_BENCH_POSTGRES_URL"),
                       only=set(only)))


from projections.cli import register  # noqa: E402 - imports click only
from schedulers.cli import scheduler  # noqa: E402 - APScheduler is imported when it runs

register(main)  # migrate, projections run|rebuild|status, reconcile
main.add_command(scheduler)

if __name__ == "__main__":
    main()
