"""`ledger scheduler`: the click command (argument parsing and output only).

Registered on the `ledger` group by `ledger/cli.py`; it reads the store URL from
`ctx.obj["db"]` like every other command. Only click is imported at module level, so that
`ledger --help` stays fast; APScheduler and the application load when the command runs.

`python -m schedulers.cli [--db URL] scheduler …` runs the same command on its own.

Exit status: 0 done (or, with `--once`, another scheduler is active and does the work); 1 a job
stopped at an error, or the lock was lost; 3 an internal error (a bug: its traceback is logged).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import datetime

import click

DEFAULT_DB = "sqlite:///ledger.db"
DEFAULT_LIMIT = 200  # = schedulers.jobs.DEFAULT_LIMIT, not imported here to keep start-up light


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from ledger.times import parse_at

    try:
        return parse_at(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None


@click.command("scheduler")
@click.option("--once", is_flag=True,
              help="Run every due job now and exit (for operators and cron).")
@click.option("--clock", "clock", type=click.Choice(["system", "simulated"]), default="system",
              show_default=True, help="system: the wall clock; simulated: --from … --until, fast.")
@click.option("--from", "start", metavar="TIME",
              help="Simulated clock: the first time (RFC 3339).")
@click.option("--until", "until", metavar="TIME",
              help="Simulated clock: the last time (RFC 3339).")
@click.option("--sweep-seconds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seconds between margin sweeps.")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
              help="Periods per job run (catch-up is bounded per run).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shard worker processes that settle funding and sweeps in parts "
                   "(PostgreSQL; docs/sharding.md).")
@click.option("--step-delay", type=click.FloatRange(min=0), default=0.0, hidden=True,
              help="Simulated clock: seconds to pause per step (demos, fail-over tests).")
@click.pass_context
def scheduler(ctx: click.Context, once: bool, clock: str, start: str | None, until: str | None,
              sweep_seconds: int, limit: int, workers: int, step_delay: float) -> None:
    """Run the periodic jobs: funding, interest, deliveries, the margin sweep.

    Each job sends the ledger's own commands with ids derived from the period, catching up
    every period that is due and not settled; one scheduler per store is active, others wait.
    """
    from ledger.numbers import install
    from schedulers.main import Options, install_signal_handlers, main

    begin, end = _time(start, "--from"), _time(until, "--until")
    if clock == "simulated":
        if begin is None or end is None:
            raise click.UsageError("--clock simulated needs --from and --until")
        if end < begin:
            raise click.UsageError("--until is before --from")
        if once:
            raise click.UsageError("--once runs on the system clock")
    elif begin is not None or end is not None:
        raise click.UsageError("--from and --until are for --clock simulated")
    if workers > 1 and not ctx.obj["db"].startswith(("postgresql:", "postgres:",
                                                      "postgresql+psycopg:")):
        raise click.UsageError("--workers above 1 needs a PostgreSQL store (the shard workers "
                               "write through its sequencer); on SQLite run one process")
    install()
    _configure_logging()
    options = Options(url=ctx.obj["db"], once=once, clock=clock, start=begin, until=end,
                      sweep_seconds=sweep_seconds, limit=limit,
                      wait_for_lock=not once, step_delay=step_delay, workers=workers)
    import threading

    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        outcome = main(options, stop)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: a bug, exit 3 (STYLE §9)
        from ledger.application.unit_of_work import is_store_error

        if is_store_error(error):
            # Lost or unreachable store: what was settled stays settled, a restart resumes.
            click.echo(json.dumps({"error": "store_unavailable", "message": str(error)}),
                       err=True)
            sys.exit(2)
        logging.getLogger("ledger.scheduler").error("internal error: %s: %s\n%s",
                                                    type(error).__name__, error,
                                                    traceback.format_exc())
        sys.exit(3)
    sys.exit(1 if outcome.errors else 0)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler's own "Running job … executed successfully" lines would double ours, and the
    # store's schema check (alembic) is not the scheduler's story.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@click.group()
@click.option("--db", "db", default=lambda: os.environ.get("LEDGER_DATABASE_URL", DEFAULT_DB),
              help="Store URL: sqlite:///FILE or postgresql://user@host/db.")
@click.pass_context
def standalone(ctx: click.Context, db: str) -> None:
    """The scheduler on its own (`ledger scheduler` is the same command)."""
    ctx.obj = {"db": db}


standalone.add_command(scheduler)

if __name__ == "__main__":
    standalone()
