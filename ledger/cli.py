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
import re
import sys
import traceback
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from ledger.config import config_option
from ledger.opening import open_ledger

if TYPE_CHECKING:
    from ledger.application.service import Ledger

DEFAULT_DB = "sqlite:///ledger.db"
QUICK_FILLS, QUICK_HISTORY, QUICK_PORTFOLIO, QUICK_SECONDS = 1_000, 500, 500, 10
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


class LedgerGroup(click.Group):
    """The `ledger` group: `--db URL` is accepted after the subcommand too.

    `ledger state alice --db URL` reads as naturally as `ledger --db URL state alice`; the
    option is moved in front of the subcommand before click parses, so every subcommand (and
    any added later) takes it without declaring it. A later `--db` wins, as click's own
    options do. Arguments after `--` are left alone.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_db(args))


def hoist_db(args: list[str]) -> list[str]:
    """Return `args` with every `--db URL` / `--db=URL` after the subcommand moved before it."""
    front: list[str] = []
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "--":
        takes_value = args[index] == "--db"
        front.append(args[index])
        if takes_value and index + 1 < len(args):
            front.append(args[index + 1])
            index += 1
        index += 1
    moved: list[str] = []
    rest: list[str] = []
    tail = args[index:]
    position = 0
    while position < len(tail):
        item = tail[position]
        if item == "--":
            rest.extend(tail[position:])
            break
        if item == "--db" and position + 1 < len(tail):
            moved.extend(tail[position:position + 2])
            position += 2
            continue
        if item.startswith("--db="):
            moved.append(item)
        else:
            rest.append(item)
        position += 1
    return [*front, *moved, *rest]


EPILOG = """\b
The store: --db URL (before or after the command), else $LEDGER_DATABASE_URL, else `db` in
the settings file, else sqlite:///ledger.db. `ledger demo` uses a store of its own
(sqlite:///demo.db). Every option can also be set by $LEDGER_<COMMAND>_<OPTION> or in a TOML
file (--config, $LEDGER_CONFIG, ./ledger.toml): see docs/configuration.md.

\b
Shell completion (bash; zsh and fish likewise with zsh_source / fish_source):
  eval "$(_LEDGER_COMPLETE=bash_source ledger)"
"""


@click.group(cls=LedgerGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "--version", package_name="margin-ledger", prog_name="ledger",
                      message="%(prog)s %(version)s")
@config_option
@click.option("--db", "db", default=None, metavar="URL", envvar="LEDGER_DATABASE_URL",
              show_default="sqlite:///ledger.db or $LEDGER_DATABASE_URL",
              help="Store URL: sqlite:///FILE or postgresql://user@host/db.")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """An event-sourced margin ledger for crypto-derivatives exchanges."""
    # "db_given": what --db named on the command line, if anything; the demo never falls back
    # to the store the other commands use (it would write a simulated day into it).
    given = ctx.get_parameter_source("db") is click.core.ParameterSource.COMMANDLINE
    ctx.obj = {"db": db or DEFAULT_DB, "db_given": db if given else None}


@main.command()
@click.argument("feed", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--batch", "batch_size", default=1000, show_default=True,
              help="Commands per transaction.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when stderr is a terminal and FEED is a file).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes, one per account shard (docs/sharding.md).")
@click.pass_context
def run(ctx: click.Context, feed: str, batch_size: int, progress: bool | None,
        workers: int) -> None:
    """Apply a JSONL feed of commands, in order (FEED `-`: standard input).

    Each rejected line prints one JSON line on stderr; a last JSON line gives the counts:
    {"applied": N, "acknowledged": N, "rejected": N}. Exit 0: all applied or acknowledged;
    1: some rejected; 2: feed or store unavailable; 3: internal error.

    \b
    Command types (one JSON object per line, each with "type" and "at"):
      reference data: asset, instrument, mark_price, index_price, funding_rate,
                      risk_unit, portfolio_margin
      accounts:       open_account, change_mode, deposit, withdraw, transfer, fill,
                      open_orders, adjust_isolated_margin, set_auto_add_margin,
                      set_leverage, repay, set_spot_in_use
      periodic:       settle_funding, charge_interest, check_margin, settle_delivery
    Fields, defaults and error codes: docs/contract.md.
    """
    from ledger.application.feed import FeedUnreadable, Rejection, read_lines, run_feed

    from_stdin = feed == "-"
    if not from_stdin and (not os.path.isfile(feed) or not os.access(feed, os.R_OK)):
        click.echo(json.dumps({"error": "feed_unreadable", "message": f"cannot read {feed}"}),
                   err=True)
        sys.exit(2)
    if workers > 1:
        from ledger.cli_shards import run_workers  # issue 11: parallel ingest by shard

        run_workers(ctx.obj["db"], feed, workers, batch_size)
    ledger = open_ledger(ctx.obj["db"], create=True)

    def reject(rejection: Rejection) -> None:
        rejection.message = _on_its_line(rejection.message, rejection.line)
        click.echo(json.dumps(rejection.as_dict(), ensure_ascii=False), err=True)

    show = (sys.stderr.isatty() if progress is None else progress) and not from_stdin
    try:
        if show:
            report = _run_with_progress(ledger, feed, reject, batch_size)
        else:
            lines = read_lines(feed)
            report = run_feed(ledger, _physical(lines), reject, batch_size=batch_size)
    except FeedUnreadable as error:
        click.echo(json.dumps({"error": "feed_unreadable", "message": str(error)}), err=True)
        sys.exit(2)
    if report.store_error is not None:
        last = report.last_durable_line
        click.echo(json.dumps({
            "line": last, "error": "store_unavailable", "last_committed_line": last,
            "message": f"{report.store_error} (committed up to line {last}; "
                       "run the feed again to finish)" if last else
                       f"{report.store_error} (nothing of this run was committed)"}), err=True)
        sys.exit(2)
    if report.internal_error is not None:
        failure = report.internal_error
        traceback.print_exception(type(failure), failure, failure.__traceback__,
                                  file=sys.stderr)
        click.echo(json.dumps({"line": report.internal_error_line, "error": "internal_error",
                               "message": f"{type(failure).__name__}: {failure}"}), err=True)
        sys.exit(3)
    # The counts as one more JSON line, so that every line `run` writes on stderr parses.
    click.echo(json.dumps({"applied": report.applied, "acknowledged": report.acknowledged,
                           "rejected": len(report.rejected)}), err=True)
    sys.exit(1 if report.rejected else 0)


def _physical(lines: Any) -> Any:
    """Drop each line's terminator before it is parsed: JSON counts the newline, so a line cut
    short was reported as "line 2 column 1" inside physical line 22."""
    for number, text in lines:
        yield number, text.removesuffix("\n").removesuffix("\r")


_JSON_POSITION = re.compile(r": line 1 column (\d+) \(char \d+\)")


def _on_its_line(message: str, line: int) -> str:
    """Say where a JSON error is in the feed's terms: "at column 40 of line 22", not the
    parser's "line 1 column 40 (char 39)" of the one line it was given."""
    return _JSON_POSITION.sub(lambda m: f" at column {m.group(1)} of line {line}", message)


def _run_with_progress(ledger: Ledger, feed: str, reject: Any, batch_size: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ledger.application.feed import read_lines, run_feed

    with open(feed, "rb") as handle:
        total = sum(1 for line in handle if line.strip())
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("ingesting", total=total)
        return run_feed(ledger, _physical(read_lines(feed)), reject,
                        on_progress=lambda n: bar.advance(task, n), batch_size=batch_size)


@main.command()
@click.argument("account", required=False)
@click.option("--at", "at", help="RFC 3339 time (default: the latest event in the store).")
@click.option("--all", "every", is_flag=True, help="Every account (a table: one row each).")
@click.option("--details", is_flag=True,
              help="With --all: every account's full tables, not one summary row each.")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines (exact figures).")
@click.pass_context
def state(ctx: click.Context, account: str | None, at: str | None, every: bool, details: bool,
          as_json: bool) -> None:
    """Show an account's state at any second.

    Tables round figures for reading (prices to the mark's places, amounts to the asset's
    precision, USD to cents, ratios to 4 places); --json prints them exactly.
    """
    from ledger.application import queries
    from ledger.errors import LedgerError, UnknownAccountError

    moment = _parse_time(at)
    if every and account:
        raise click.UsageError(f"give an ACCOUNT or --all, not both (got {account!r} and --all)")
    if not every and not account:
        raise click.UsageError("give an ACCOUNT or --all")
    if details and not every:
        raise click.UsageError("--details is for --all (one account is always shown in full)")
    ledger = open_ledger(ctx.obj["db"])
    try:
        result: Any = (queries.all_states(ledger, moment) if every
                       else queries.state(ledger, account or "", moment))
    except UnknownAccountError as error:
        click.echo(json.dumps({"error": error.code,
                               "message": _not_yet(ledger, account or "", moment) or str(error)}),
                   err=True)
        sys.exit(1)
    except LedgerError as error:
        click.echo(json.dumps({"error": error.code, "message": str(error)}), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    from ledger.tables import print_states, print_summary

    if every and not details:
        print_summary(result)
    else:
        print_states(result if every else [result], _units(ledger, result if every else [result]))


def _not_yet(ledger: Ledger, account: str, at: datetime | None) -> str | None:
    """Say that `account` did not exist yet at `at`, with its opening time (None: it never
    existed at all, and `unknown account` says so)."""
    from ledger.domain.ids import account_id
    from ledger.times import format_at

    if at is None or account not in ledger.account_names():
        return None
    first = ledger.account_history(account_id(account), lte=1)
    if not first:
        return None
    return (f"account {account!r} did not exist yet at {format_at(at)}: it was opened at "
            f"{format_at(first[0].at)}")


def _units(ledger: Ledger, states: list[dict[str, Any]]) -> Any:
    """Return each shown asset's precision and each shown instrument's settle asset, as of
    each state's time (what the tables round to)."""
    from ledger.errors import LedgerError
    from ledger.tables import Units
    from ledger.times import parse_at

    units = Units()
    for item in states:
        at = parse_at(item["as_of"])
        for asset in item["balances"]:
            try:
                units.precision[asset] = ledger.require_asset(asset, at).precision
            except LedgerError:
                continue  # not listed then: the display helper's default places
        for position in item["positions"]:
            try:
                terms = ledger.require_instrument(position["symbol"], at)
                units.settle[position["symbol"]] = terms.settle
                units.precision[terms.settle] = ledger.require_asset(terms.settle, at).precision
            except LedgerError:
                continue
    return units


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

    start, end = _parse_time(since), _parse_time(until)
    if start is not None and end is not None and start > end:
        raise click.UsageError(f"--since {since} is later than --until {until}: no event can "
                               "be in between")
    ledger = open_ledger(ctx.obj["db"])
    try:
        result = queries.events(ledger, account, start, end)
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
@click.option("--accounts", type=click.IntRange(min=1), default=300, show_default=True,
              help="Accounts to simulate (4 portfolio books are added to them).")
@click.option("--seed", default=7, show_default=True, help="Random seed (the day is reproducible).")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Clear the store of a previous demo first (--keep: ingest again into it).")
@click.pass_context
def demo(ctx: click.Context, accounts: int, seed: int, fresh: bool) -> None:
    """Simulate a realistic day, ingest it, summarise, replay and verify.

    The demo uses a store of its own: sqlite:///demo.db unless --db names another
    ($LEDGER_DATABASE_URL is not used). It writes only into a new or empty store or one a
    previous demo made, and refuses (exit 2) any other, changing nothing there.
    """
    from ledger.demo import DEMO_DB, run_demo

    url = ctx.obj["db_given"] or DEMO_DB
    sys.exit(run_demo(url, accounts=accounts, seed=seed, fresh=fresh))


@main.command()
@click.option("--fills", default=100_000, show_default=True, help="Fills to ingest.")
@click.option("--history", default=100_000, show_default=True,
              help="Events of the account whose state is queried.")
@click.option("--postgres", "pg_url", default=None, envvar="LEDGER_BENCH_POSTGRES_URL",
              help="PostgreSQL URL to bench too (default: $LEDGER_BENCH_POSTGRES_URL).")
@click.option("--only", type=click.Choice(["ingest", "state", "portfolio", "funding",
                                           "projections", "api", "shards", "growth"]),
              multiple=True,
              help="Run only these cases.")
@click.option("--quick", is_flag=True,
              help=f"A small run to try the bench (~{QUICK_SECONDS} s): {QUICK_FILLS:,} fills, "
                   f"{QUICK_HISTORY:,} events of history, {QUICK_PORTFOLIO:,} portfolio "
                   "accounts, on SQLite only.")
@click.pass_context
def bench(ctx: click.Context, fills: int, history: int, pg_url: str | None,
          only: tuple[str, ...], quick: bool) -> None:
    """Measure ingest, state queries and margin computation (figures for the notes).

    Writes bench-results.json in the current directory."""
    from benchmarks.run import run_bench

    source = ctx.get_parameter_source
    if quick:  # sizes given explicitly still win
        fills = QUICK_FILLS if source("fills") is click.core.ParameterSource.DEFAULT else fills
        history = (QUICK_HISTORY if source("history") is click.core.ParameterSource.DEFAULT
                   else history)
    postgres = None if quick else pg_url
    sys.exit(run_bench(fills=fills, history=history, pg_url=postgres,
                       only=set(only), portfolio_accounts=QUICK_PORTFOLIO if quick else 10_000))


from projections.cli import register  # noqa: E402 - imports click only
from schedulers.cli import scheduler  # noqa: E402 - APScheduler is imported when it runs

register(main)  # migrate, projections run|rebuild|status, reconcile
main.add_command(scheduler)

# Commands that live in modules of their own (ledger/cli_<topic>.py), one line each.
from ledger.cli_service import serve, token  # noqa: E402 - issue 12: the HTTP API, its tokens
from ledger.cli_statement import journal, statement  # noqa: E402 - issue 12: the CLI twins

main.add_command(serve)
main.add_command(token)
main.add_command(statement)
main.add_command(journal)

from ledger.cli_stream import publish  # noqa: E402

main.add_command(publish)

from ledger import cli_shards  # noqa: E402 - issue 11 (imports click only)

main.add_command(cli_shards.submit)
main.add_command(cli_shards.consume)

if __name__ == "__main__":
    main()
