"""The commands `migrate`, `projections run|rebuild|status` and `reconcile`, through click.

They are registered on a group like `ledger`'s (`--db` into `ctx.obj["db"]`), as
`projections.cli.register(main)` does for the real one.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import click
from click.testing import CliRunner
from projections_support import apply, seeded_feed
from sqlalchemy import update

from ledger.application import schema
from ledger.application.service import Ledger
from projections import tables
from projections.cli import register


@click.group()
@click.option("--db", "db", required=True)
@click.pass_context
def main(ctx: click.Context, db: str) -> None:
    ctx.obj = {"db": db}


register(main)


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    code, out, _ = _invoke("--db", url, "migrate")
    assert code == 0
    assert out.strip() == f"schema none → {schema.HEAD}"
    ledger = Ledger(url)
    try:
        apply(ledger, seeded_feed(2, size=15), [3])
    finally:
        ledger.close()
    return url


def test_migrate_then_again(tmp_path: Path) -> None:
    url = _store(tmp_path)
    code, out, _ = _invoke("--db", url, "migrate")
    assert (code, out.strip()) == (0, f"schema already at {schema.HEAD}")


def test_run_once_and_status(tmp_path: Path) -> None:
    url = _store(tmp_path)
    code, out, _ = _invoke("--db", url, "projections", "status", "--json")
    before = json.loads(out)
    assert code == 0 and before["lag"] == before["head"] > 0
    code, _, err = _invoke("--db", url, "projections", "run", "--once", "--no-progress")
    assert code == 0
    assert f"applied {before['head']} notifications" in err
    code, out, _ = _invoke("--db", url, "projections", "status", "--json")
    assert json.loads(out)["lag"] == 0
    code, out, _ = _invoke("--db", url, "projections", "status")
    assert code == 0 and "lag 0" in out


def test_rebuild_needs_yes_or_a_confirmation(tmp_path: Path) -> None:
    url = _store(tmp_path)
    result = CliRunner().invoke(main, ["--db", url, "projections", "rebuild"], input="n\n")
    assert result.exit_code == 1  # aborted
    code, _, err = _invoke("--db", url, "projections", "rebuild", "--yes")
    assert code == 0 and "rebuilt from" in err


def test_reconcile_exit_status_and_outputs(tmp_path: Path) -> None:
    url = _store(tmp_path)
    code, out, _ = _invoke("--db", url, "reconcile", "--json")
    assert (code, json.loads(out)) == (0, {"differences": []})
    engine = schema.create_engine(url)
    with engine.begin() as connection:
        connection.execute(update(tables.system_balances).where(
            tables.system_balances.c.account == "system:custody",
            tables.system_balances.c.asset == "BTC").values(balance=Decimal("-0.4")))
    engine.dispose()
    code, out, _ = _invoke("--db", url, "reconcile", "--json", "--no-catch-up")
    assert code == 1
    assert {"check": "journal_balance", "account": "system:custody", "asset": "BTC",
            "ledger": "-0.5", "other": "-0.4",
            "where": "projection_system_balances against projection_journal"
            } in json.loads(out)["differences"]
    code, out, _ = _invoke("--db", url, "reconcile", "--no-catch-up")
    assert code == 1
    assert "system:custody" in out and "-0.4" in out


def test_reconcile_refuses_an_unreadable_statement(tmp_path: Path) -> None:
    url = _store(tmp_path)
    statement = tmp_path / "bad.csv"
    statement.write_text("account,asset,amount,as_of\nalice,USDT,1,2025-01-01T00:00:00Z\n",
                         encoding="utf-8")
    code, _, err = _invoke("--db", url, "reconcile", "--statement", str(statement))
    assert code == 2
    assert json.loads(err)["error"] == "statement_unreadable"


def test_an_unreachable_store_is_exit_2() -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    code, _, err = _invoke("--db", url, "migrate")
    assert code == 2
    assert json.loads(err)["error"] == "store_unavailable"
