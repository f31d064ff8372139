"""`ledger serve` (the HTTP API) and `ledger token create|list|revoke` (its bearer tokens).

The app is built by `ledger.api.app.create_app` and served by uvicorn; both are imported when
the command runs. See docs/api.md.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--max-body", "max_body", default=10 * 1024 * 1024, show_default=True,
              type=click.IntRange(min=1), metavar="BYTES",
              help="Largest POST /v1/commands body (413 above).")
@click.option("--nats", "nats_url", default=None, metavar="URL",
              help="NATS server whose stream `ledger publish` feeds (for publisher lag).")
@click.option("--stream", default="LEDGER", show_default=True,
              help="JetStream stream `ledger publish` writes (with --nats).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes (each holds its own ledger; reads scale with cores).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, max_body: int, nats_url: str | None,
          stream: str, workers: int, log_level: str) -> None:
    """Serve the HTTP API (docs/api.md): state, events, statements, journal, commands,
    verify, /healthz, /metrics, /openapi.json. /v1 needs a token (`ledger token create`)."""
    import uvicorn

    from ledger.api.app import OPTIONS_VARIABLE, create_app
    from ledger.masking import mask_url
    from ledger.opening import open_ledger

    url = ctx.obj["db"]
    open_ledger(url, create=True).close()  # reachable (exit 2 otherwise) and migrated
    click.echo(f"serving {mask_url(url)} on http://{host}:{port}", err=True)
    # Keep-alive beyond uvicorn's 5 s: a client with many connections in a pool otherwise
    # meets a connection the server has just closed.
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                              "timeout_keep_alive": 30}
    if workers == 1:
        app = create_app(url, max_body=max_body, nats_url=nats_url, stream=stream)
        uvicorn.run(app, **common)
        return
    # Several processes: uvicorn imports the app in each from the environment.
    os.environ[OPTIONS_VARIABLE] = json.dumps({"db_url": url, "max_body": max_body,
                                               "nats_url": nats_url, "stream": stream})
    uvicorn.run("ledger.api.app:app_from_environment", factory=True, workers=workers,
                **common)


@click.group()
def token() -> None:
    """Bearer tokens of the HTTP API (roles: auditor, service, operator)."""


def _engine(url: str) -> object:
    from ledger.application import schema
    from ledger.opening import open_ledger

    open_ledger(url, create=True).close()  # exit 2 when unreachable; migrated to head
    return schema.create_engine(url)


def _now() -> str:
    from ledger.clock import SystemClock
    from ledger.times import format_at

    return format_at(SystemClock().now().replace(microsecond=0))


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["auditor", "service", "operator"]))
@click.option("--name", required=True, help="A name to list and revoke it by.")
@click.pass_context
def create(ctx: click.Context, role: str, name: str) -> None:
    """Create a token and print it once (the last line of stdout); the store keeps only its
    SHA-256."""
    from ledger.api import tokens

    engine = _engine(ctx.obj["db"])
    try:
        secret = tokens.create(engine, name, role, _now())  # type: ignore[arg-type]
    except tokens.TokenError as error:
        click.echo(json.dumps({"error": "invalid_input", "message": str(error)}), err=True)
        sys.exit(1)
    click.echo(f"token {name!r} ({role}); it is shown only now:")
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON for machines.")
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool) -> None:
    """List the tokens: name, role, created, revoked (never the token)."""
    from ledger.api import tokens

    found = tokens.listing(_engine(ctx.obj["db"]))  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([vars(t) for t in found]))
        return
    for item in found:
        state = f"revoked {item.revoked_at}" if item.revoked_at else "in force"
        click.echo(f"{item.name}\t{item.role}\tcreated {item.created_at}\t{state}")


@token.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Revoke the token NAME (401 from then on)."""
    from ledger.api import tokens

    try:
        tokens.revoke(_engine(ctx.obj["db"]), name, _now())  # type: ignore[arg-type]
    except tokens.TokenError as error:
        click.echo(json.dumps({"error": "invalid_input", "message": str(error)}), err=True)
        sys.exit(1)
    click.echo(f"revoked {name!r}")
