"""`ledger statement ACCOUNT --from --to` and `ledger journal --from --to`: the CLI twins of
the API's statement and journal (one module computes and writes both: `ledger.statements`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click


def _time(value: str, option: str) -> datetime:
    from ledger.times import parse_at

    try:
        return parse_at(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None


def _format(as_csv: bool, as_json: bool) -> str:
    if as_csv and as_json:
        raise click.UsageError("give --csv or --json, not both")
    return "csv" if as_csv else "json"


@click.command()
@click.argument("account")
@click.option("--from", "start", required=True, help="RFC 3339: postings at or after it.")
@click.option("--to", "end", required=True, help="RFC 3339: postings at or before it.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (columns: docs/api.md).")
@click.option("--json", "as_json", is_flag=True, help="JSON (the default).")
@click.pass_context
def statement(ctx: click.Context, account: str, start: str, end: str, as_csv: bool,
              as_json: bool) -> None:
    """An account's statement: opening balances, every posting in the period with running
    balances, closing balances. System accounts too (system:fees, …)."""
    from ledger import statements
    from ledger.application import schema
    from ledger.errors import LedgerError
    from ledger.opening import open_ledger

    fmt = _format(as_csv, as_json)
    first, last = _time(start, "--from"), _time(end, "--to")
    ledger = open_ledger(ctx.obj["db"])
    engine = schema.create_engine(ctx.obj["db"])
    try:
        result = statements.statement(ledger, engine, account,
                                      statements.period(first, last))
    except LedgerError as error:
        click.echo(json.dumps({"error": error.code, "message": str(error)}), err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    if fmt == "csv":
        click.echo(statements.statement_csv(result), nl=False)
    else:
        click.echo(json.dumps(result, ensure_ascii=False))


@click.command()
@click.option("--from", "start", required=True, help="RFC 3339: postings at or after it.")
@click.option("--to", "end", required=True, help="RFC 3339: postings at or before it.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (columns: docs/api.md).")
@click.option("--json", "as_json", is_flag=True, help="JSON (the default).")
@click.pass_context
def journal(ctx: click.Context, start: str, end: str, as_csv: bool, as_json: bool) -> None:
    """Every posting of every account event in the period, one row each."""
    from ledger import statements
    from ledger.application import schema
    from ledger.errors import LedgerError
    from ledger.opening import open_ledger

    fmt = _format(as_csv, as_json)
    first, last = _time(start, "--from"), _time(end, "--to")
    ledger = open_ledger(ctx.obj["db"])
    engine = schema.create_engine(ctx.obj["db"])
    try:
        rows = statements.journal(ledger, engine, statements.period(first, last))
    except LedgerError as error:
        click.echo(json.dumps({"error": error.code, "message": str(error)}), err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    if fmt == "csv":
        click.echo(statements.journal_csv(rows), nl=False)
    else:
        click.echo(json.dumps({"from": start, "to": end, "postings": rows},
                              ensure_ascii=False))
