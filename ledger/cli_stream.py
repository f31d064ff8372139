"""`ledger publish`: the event stream on NATS JetStream (ledger/publisher.py does the work)."""

from __future__ import annotations

import json
import sys

import click

from ledger.opening import open_ledger


@click.command()
@click.option("--nats", "servers", default="nats://127.0.0.1:4222", show_default=True,
              metavar="URL", help="NATS server(s), comma-separated.")
@click.option("--stream", default="LEDGER", show_default=True,
              help="JetStream stream to publish into (created if missing).")
@click.option("--prefix", default="ledger", show_default=True,
              help="Subject prefix: PREFIX.events.<account>, PREFIX.reference.<kind>.<name>.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=1000,
              show_default=True, help="Messages per batch (acks awaited per batch).")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.01), default=0.2,
              show_default=True, help="Seconds to wait when the log has nothing new.")
@click.option("--once", is_flag=True, help="Publish what the log holds, then exit.")
@click.pass_context
def publish(ctx: click.Context, servers: str, stream: str, prefix: str, batch_size: int,
            poll_s: float, once: bool) -> None:
    """Publish every event of the store to NATS JetStream, exactly once, in log order.

    \b
    Account events go to PREFIX.events.<account>, reference data to
    PREFIX.reference.<kind>.<name> (names encoded: [A-Za-z0-9_-] kept, any other byte
    ~XX, e.g. system:fees -> system~3Afees). Every message carries Nats-Msg-Id
    (<stream id>:<version>) and Ledger-Position (its log position); a restarted
    publisher resumes after the stream's last Ledger-Position. Without --once it follows
    the log until SIGINT or SIGTERM. The last line on stdout is a JSON line of counts.
    See docs/stream.md.
    """
    import asyncio
    import signal

    import nats.errors

    from ledger.masking import mask_in, mask_url
    from ledger.publisher import Publisher, StreamAheadError

    ledger = open_ledger(ctx.obj["db"])
    publisher = Publisher(ledger, servers, stream=stream, prefix=prefix, batch=batch_size,
                          poll_s=poll_s)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await publisher.run(once=once, stop=stop)

    try:
        asyncio.run(main())
    except (OSError, TimeoutError, nats.errors.Error) as error:
        click.echo(json.dumps({"error": "nats_unavailable",
                               "message": mask_in(f"cannot reach NATS at {mask_url(servers)}: "
                                                  f"{error}", servers)}), err=True)
        sys.exit(2)
    except StreamAheadError as error:
        click.echo(json.dumps({"error": "stream_ahead", "message": str(error)}), err=True)
        sys.exit(2)
    finally:
        ledger.close()
    click.echo(json.dumps(publisher.counts.as_dict()))
