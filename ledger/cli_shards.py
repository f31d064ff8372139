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


@click.command()
@click.argument("feed", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--nats", "nats_url", required=True, metavar="URL",
              help="NATS server with JetStream, e.g. nats://127.0.0.1:4222.")
@click.option("--shards", type=click.IntRange(1, 1024), required=True,
              help="How many shards the accounts are spread over (docs/sharding.md).")
@click.option("--stream", default="LEDGER_COMMANDS", show_default=True,
              help="JetStream stream (created if missing, subjects ledger.commands.>).")
@click.option("--subjects", "prefix", default="ledger.commands", show_default=True,
              help="Subject prefix of the stream (PREFIX.>; shard i on PREFIX.<i>).")
def submit(feed: str, nats_url: str, shards: int, stream: str, prefix: str) -> None:
    """Publish a JSONL feed (FEED `-`: standard input) to JetStream, one subject per shard.

    A malformed line is reported on stderr (as `ledger run` does) and not published; a last
    JSON line gives {"published": N, "rejected": N}. Exit 1 when a line was rejected, 2 when
    the feed or NATS cannot be read."""
    import asyncio

    from ledger.application.feed import FeedUnreadable, Rejection, read_lines
    from ledger.cli import _on_its_line, _physical
    from ledger.streaming import submit as publish

    def reject(rejection: Rejection) -> None:
        rejection.message = _on_its_line(rejection.message, rejection.line)
        click.echo(json.dumps(rejection.as_dict(), ensure_ascii=False), err=True)

    try:
        published, rejected = asyncio.run(
            publish(nats_url, shards, _physical(read_lines(feed)), reject, stream=stream,
                    prefix=prefix))
    except FeedUnreadable as error:
        click.echo(json.dumps({"error": "feed_unreadable", "message": str(error)}), err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(json.dumps({"error": "nats_unavailable", "message": str(error)}), err=True)
        sys.exit(2)
    click.echo(json.dumps({"published": published, "rejected": rejected}), err=True)
    sys.exit(1 if rejected else 0)


def _shard_spec(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, e.g. 0/3") from None
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"{value!r}: I must be in 0..N-1")
    return index, count


@click.command()
@click.option("--nats", "nats_url", required=True, metavar="URL",
              help="NATS server with JetStream, e.g. nats://127.0.0.1:4222.")
@click.option("--shard", "spec", required=True, metavar="I/N",
              help="This worker's shard I of N (docs/sharding.md).")
@click.option("--once", is_flag=True, help="Drain what the stream holds, then exit.")
@click.option("--stream", default="LEDGER_COMMANDS", show_default=True,
              help="JetStream stream of the commands.")
@click.option("--subjects", "prefix", default="ledger.commands", show_default=True,
              help="Subject prefix of the stream (PREFIX.>; shard i on PREFIX.<i>).")
@click.pass_context
def consume(ctx: click.Context, nats_url: str, spec: str, once: bool, stream: str,
            prefix: str) -> None:
    """Apply shard I/N's commands from JetStream into the store (--db), in order.

    A message is acknowledged only after its transaction commits; a restarted worker goes on
    where its store stands, so a kill at any point loses nothing and doubles nothing.
    Rejections print one JSON line each on stderr; a last line gives the counts."""
    from ledger.opening import open_ledger
    from ledger.streaming import consume as run_consumer
    from ledger.streaming import print_rejection

    index, count = _shard_spec(spec)
    url = ctx.obj["db"]
    _first_open(url)
    open_ledger(url, create=True).close()
    try:
        consumer = run_consumer(nats_url, index, count, url, once, print_rejection,
                                stream=stream, prefix=prefix)
    except OSError as error:
        click.echo(json.dumps({"error": "nats_unavailable", "message": str(error)}), err=True)
        sys.exit(2)
    click.echo(json.dumps({"applied": consumer.applied, "acknowledged": consumer.acknowledged,
                           "rejected": consumer.rejected}), err=True)
    sys.exit(1 if consumer.rejected else 0)


def _first_open(url: str, attempts: int = 20) -> None:
    """Open (and so migrate) the store, waiting for another worker that migrates it at the same
    moment: N workers started together on an empty database race to create its tables, and
    the losers' CREATE fails. The last failure is left to `open_ledger` to report (exit 2)."""
    import random
    import time

    from ledger.application.service import Ledger
    from ledger.numbers import install

    install()
    for _ in range(attempts):
        try:
            Ledger(url).close()
            return
        except Exception:  # noqa: BLE001 - retried; the last attempt's error is reported
            time.sleep(0.2 + random.random() * 0.5)  # noqa: S311 - a jitter, not a secret
