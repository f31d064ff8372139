"""Commands of the account shards (issue 11, docs/sharding.md): `ledger run --workers N`'s
runner, `ledger submit` and `ledger consume`."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click


def run_workers(url: str, feed: str, workers: int, batch_size: int) -> NoReturn:
    """`ledger run --workers N FEED`: the same exit statuses and stderr lines as `ledger run`
    (rejections in feed order, once every worker has stopped)."""
    from ledger.application.feed import FeedUnreadable, Rejection, read_lines
    from ledger.application.workers import run_sharded
    from ledger.cli import _on_its_line, _physical
    from ledger.opening import open_ledger

    open_ledger(url, create=True).close()  # the store answers and has the current schema

    def reject(rejection: Rejection) -> None:
        rejection.message = _on_its_line(rejection.message, rejection.line)
        click.echo(json.dumps(rejection.as_dict(), ensure_ascii=False), err=True)

    try:
        report = run_sharded(url, _physical(read_lines(feed)), workers, batch_size, reject)
    except FeedUnreadable as error:
        click.echo(json.dumps({"error": "feed_unreadable", "message": str(error)}), err=True)
        sys.exit(2)
    failure = report.failure
    if failure is not None:
        if failure.store:
            click.echo(json.dumps({
                "line": failure.line, "error": "store_unavailable",
                "message": f"{failure.message} (worker stopped at line {failure.line}; run "
                           "the feed again to finish: applied commands are acknowledged)"}),
                err=True)
            sys.exit(2)
        click.echo(failure.trace, err=True)
        click.echo(json.dumps({"line": failure.line, "error": "internal_error",
                               "message": failure.message}), err=True)
        sys.exit(3)
    click.echo(json.dumps({"applied": report.applied, "acknowledged": report.acknowledged,
                           "rejected": len(report.rejected)}), err=True)
    sys.exit(1 if report.rejected else 0)
