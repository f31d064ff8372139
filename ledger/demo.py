"""`ledger demo`: a realistic day for a few hundred accounts, ingested, summarised, replayed.

The day (reproducible from `--seed`): USDT (with debt interest), USDC, BTC and ETH (tiered
collateral, index prices on a random walk every 5 minutes), BTC and ETH linear perpetuals, an
inverse BTC perpetual and a USDC perpetual with session settlement; accounts in single-asset,
multi-asset and portfolio mode deposit, trade, withdraw and transfer; funding rates every 8 hours;
the scheduler's periodic commands (funding at 00:00/08:00/16:00, interest hourly, the margin sweep
every 15 minutes) are in the feed as it would send them.

The feed is written to `demo-feed.jsonl` beside the store and ingested exactly as `ledger run`
does, with a progress bar. Then: a summary table, a replay check (a few accounts at random past
seconds, read through the time index and snapshots, against a plain fold of every event up to
that second), and `verify`.

The demo's store is its own (issue 13): by default `sqlite:///demo.db`, never the
`ledger.db` or `$LEDGER_DATABASE_URL` the other commands use. It writes only into a store that
does not exist yet, an empty one, or one a previous demo made, and marks its stores with a row
in `ledger_commands` (`MARKER_KEY`: no event, so no account, read model or scenario sees it);
`--fresh` (the default) clears a marked store on either backend, and a store holding anything
else is refused (`NotADemoStore`, exit 2) and left exactly as it was.
"""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from ledger.times import format_at

DAY = datetime.fromisoformat("2025-03-03T00:00:00+00:00")
DEMO_DB = "sqlite:///demo.db"
MARKER_KEY = "ledger-demo|store"
"""The `ledger_commands` row that marks a store as the demo's: no command type has this
form (command keys start with the command's type), so no command can ever collide with it."""
MARKER_HASH = "made by ledger demo; cleared by ledger demo --fresh"
BOOKS = ("pm-hedged", "pm-calendar", "pm-inverse", "pm-stressed")
"""The portfolio books the demo adds to the simulated accounts (see `DayBuilder`)."""
TIERS_BTC = [{"up_to": "50", "ratio": "0.95"}, {"up_to": "200", "ratio": "0.9"},
             {"up_to": "1000", "ratio": "0.8"}, {"up_to": None, "ratio": "0"}]
TIERS_ETH = [{"up_to": "500", "ratio": "0.9"}, {"up_to": "2000", "ratio": "0.8"},
             {"up_to": "10000", "ratio": "0.7"}, {"up_to": None, "ratio": "0"}]
RISK_TIERS = [{"up_to": "250000", "mmr": "0.004", "max_leverage": "100"},
              {"up_to": "1000000", "mmr": "0.005", "max_leverage": "50"},
              {"up_to": "5000000", "mmr": "0.01", "max_leverage": "20"},
              {"up_to": None, "mmr": "0.025", "max_leverage": "10"}]
INVERSE_TIERS = [{"up_to": "20", "mmr": "0.005", "max_leverage": "100"},
                 {"up_to": "100", "mmr": "0.01", "max_leverage": "50"},
                 {"up_to": None, "mmr": "0.02", "max_leverage": "20"}]


class DayBuilder:
    """Builds the day's commands in time order."""

    def __init__(self, accounts: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.lines: list[tuple[datetime, int, dict[str, Any]]] = []
        self.order = 0
        self.index = {"BTC": Decimal(60000), "ETH": Decimal(3000)}
        self.basis = {"BTCUSDT": "BTC", "ETHUSDT": "ETH", "BTCUSD": "BTC", "BTCUSDC": "BTC"}
        self.marks: dict[str, Decimal] = {}
        self.ids = 0

    def add(self, at: datetime, command: dict[str, Any]) -> None:
        command = {"type": command["type"], "at": format_at(at),
                   **{k: v for k, v in command.items() if k != "type"}}
        self.lines.append((at, self.order, command))
        self.order += 1

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    def reference(self) -> None:
        at = DAY
        self.add(at, {"type": "asset", "asset": "USDT", "precision": 8,
                      "interest": {"annual_rate": "0.10", "free_amount": "100",
                                   "free_mode": "excess"},
                      "auto_exchange_threshold_usd": "50000", "auto_exchange_discount": "0.975"})
        self.add(at, {"type": "asset", "asset": "USDC", "precision": 8})
        self.add(at, {"type": "asset", "asset": "BTC", "precision": 8,
                      "collateral_tiers": TIERS_BTC})
        self.add(at, {"type": "asset", "asset": "ETH", "precision": 8,
                      "collateral_tiers": TIERS_ETH})
        for symbol, base, settle, size in (("BTCUSDT", "BTC", "USDT", "0.001"),
                                           ("ETHUSDT", "ETH", "USDT", "0.01"),
                                           ("BTCUSDC", "BTC", "USDC", "0.001")):
            self.add(at, {"type": "instrument", "symbol": symbol, "kind": "linear_perpetual",
                          "base": base, "settle": settle, "contract_size": size,
                          "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
                          "session_settlement": settle == "USDC", "risk_tiers": RISK_TIERS})
        for symbol, expiry in (("BTCUSDT-0328", "2025-03-28T08:00:00Z"),
                               ("BTCUSDT-0627", "2025-06-27T08:00:00Z")):
            self.add(at, {"type": "instrument", "symbol": symbol, "kind": "linear_future",
                          "base": "BTC", "settle": "USDT", "contract_size": "0.001",
                          "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
                          "expiry": expiry, "delivery_fee_rate": "0.0005",
                          "risk_tiers": RISK_TIERS})
            self.basis[symbol] = "BTC"
        self.add(at, {"type": "instrument", "symbol": "BTCUSD", "kind": "inverse_perpetual",
                      "base": "BTC", "settle": "BTC", "contract_size": "100",
                      "taker_fee_rate": "0.0005", "maker_fee_rate": "0.0002",
                      "risk_tiers": INVERSE_TIERS})
        for asset in ("BTC", "ETH"):
            self.add(at, {"type": "risk_unit", "asset": asset})
        self.prices(at)

    def prices(self, at: datetime) -> None:
        for asset in ("BTC", "ETH"):
            step = Decimal(self.rng.randint(-60, 60)) / Decimal(10000)
            self.index[asset] = (self.index[asset] * (1 + step)).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            self.add(at, {"type": "index_price", "asset": asset, "price": str(self.index[asset])})
        for symbol, base in self.basis.items():
            premium = Decimal(self.rng.randint(-8, 8)) / Decimal(10000)
            mark = (self.index[base] * (1 + premium)).quantize(Decimal("0.1"),
                                                               rounding=ROUND_HALF_EVEN)
            self.marks[symbol] = mark
            self.add(at, {"type": "mark_price", "symbol": symbol, "price": str(mark)})

    def open_accounts(self) -> list[tuple[str, str]]:
        opened = []
        at = DAY + timedelta(minutes=1)
        for number in range(self.accounts):
            name = f"acct{number:04d}"
            roll = number % 10
            mode = "single_asset" if roll < 5 else "multi_asset"
            self.add(at, {"type": "open_account", "account": name, "mode": mode})
            usdt = self.rng.randint(2, 200) * 500
            self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                          "asset": "USDT", "amount": str(usdt)})
            if mode == "multi_asset":
                self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                              "asset": "BTC", "amount": str(Decimal(self.rng.randint(1, 40)) / 4)})
                self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                              "asset": "ETH", "amount": str(self.rng.randint(1, 80))})
            if roll == 9:  # a portfolio account: enough equity, then change_mode
                self.add(at, {"type": "change_mode", "account": name, "mode": "portfolio"})
                mode = "portfolio"
            if roll == 4:  # single-asset, also trading the USDC and the inverse BTC contract
                self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                              "asset": "BTC", "amount": str(self.rng.randint(1, 8))})
                self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                              "asset": "USDC", "amount": str(self.rng.randint(10, 100) * 500)})
            opened.append((name, mode))
        return opened

    def trade(self, at: datetime, name: str, mode: str) -> None:
        symbols = ["BTCUSDT", "ETHUSDT"]
        if mode == "single_asset":
            symbols += ["BTCUSDC", "BTCUSD"] if name.endswith("4") else []
        if mode == "portfolio" and self.rng.random() < 0.3:
            symbols = ["BTCUSDT"]
        symbol = self.rng.choice(symbols)
        side = self.rng.choice(["buy", "sell"])
        if symbol == "BTCUSD":
            qty = self.rng.randint(1, 50) * 10
        elif symbol.startswith("BTC"):
            qty = self.rng.randint(1, 300)
        else:
            qty = self.rng.randint(1, 200)
        price = self.marks[symbol] * (1 + Decimal(self.rng.randint(-5, 5)) / Decimal(10000))
        price = price.quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
        command = {"type": "fill", "id": self.next_id("f"), "account": name, "symbol": symbol,
                   "side": side, "qty": str(qty), "price": str(price),
                   "liquidity": self.rng.choice(["taker", "maker"])}
        if mode == "single_asset" and self.rng.random() < 0.1:
            command["margin_type"] = "isolated"
            command["leverage"] = str(self.rng.choice([5, 10, 20]))
        self.add(at, command)

    def portfolio_books(self) -> None:
        """A few portfolio accounts with the books issue 7 asks the demo to show: a
        spot-hedged book, a calendar spread, an inverse contract hedged by its coin, and a
        thin book whose liquidation is planned at a sweep and then filled."""
        at = DAY + timedelta(minutes=3)
        btc = self.marks["BTCUSDT"]
        books = {
            "pm-hedged": ({"BTC": "20", "USDT": "50000"},
                          [("BTCUSDT", "sell", "20000")]),
            "pm-calendar": ({"USDT": "200000"},
                            [("BTCUSDT-0328", "buy", "5000"), ("BTCUSDT-0627", "sell", "5000")]),
            "pm-inverse": ({"BTC": "5", "USDT": "20000"},
                           [("BTCUSD", "sell", str(int(5 * btc / 100)))]),
        }
        for name, (deposits, fills) in books.items():
            self.add(at, {"type": "open_account", "account": name, "mode": "multi_asset"})
            for asset, amount in deposits.items():
                self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                              "asset": asset, "amount": amount})
            self.add(at, {"type": "change_mode", "account": name, "mode": "portfolio"})
            for symbol, side, qty in fills:
                self.add(at, {"type": "fill", "id": self.next_id("f"), "account": name,
                              "symbol": symbol, "side": side, "qty": qty,
                              "price": str(self.marks[symbol])})

    def stressed_book(self, at: datetime) -> None:
        """1.1 BTC held against a 10-BTC short: the 12:15 sweep finds margin_level ≤ 1 and
        plans a ddh2 buy-back of the 8.9 BTC of net delta; a liquidation fill follows."""
        name = "pm-stressed"
        self.add(at, {"type": "open_account", "account": name, "mode": "multi_asset"})
        self.add(at, {"type": "deposit", "id": self.next_id("d"), "account": name,
                      "asset": "BTC", "amount": "1.1"})
        self.add(at, {"type": "change_mode", "account": name, "mode": "portfolio"})
        self.add(at, {"type": "fill", "id": self.next_id("f"), "account": name,
                      "symbol": "BTCUSDT", "side": "sell", "qty": "10000",
                      "price": str(self.marks["BTCUSDT"]), "fee": "0"})
        self.add(at + timedelta(minutes=20), {
            "type": "fill", "id": self.next_id("f"), "account": name, "symbol": "BTCUSDT",
            "side": "buy", "qty": "8900", "price": str(self.marks["BTCUSDT"]),
            "liquidation": True})

    def build(self) -> list[dict[str, Any]]:
        self.reference()
        accounts = self.open_accounts()
        self.portfolio_books()
        for name, mode in accounts:
            if name.endswith("7") and mode == "single_asset":
                self.add(DAY + timedelta(minutes=2), {
                    "type": "set_auto_add_margin", "account": name, "symbol": "BTCUSDT",
                    "enabled": True})
        minutes = 24 * 60
        for minute in range(5, minutes + 1, 5):
            at = DAY + timedelta(minutes=minute)
            self.prices(at)
            if minute == 12 * 60:
                self.stressed_book(at + timedelta(seconds=1))
            for _ in range(max(1, self.accounts // 30)):
                name, mode = self.rng.choice(accounts)
                self.trade(at + timedelta(seconds=self.rng.randint(1, 280)), name, mode)
            if minute % 60 == 30:
                name, _ = self.rng.choice(accounts)
                self.add(at + timedelta(seconds=30), {
                    "type": "withdraw", "id": self.next_id("w"), "account": name,
                    "asset": "USDT", "amount": str(self.rng.randint(1, 20) * 50)})
                source, _ = self.rng.choice(accounts)
                target, _ = self.rng.choice(accounts)
                if source != target:
                    self.add(at + timedelta(seconds=40), {
                        "type": "transfer", "id": self.next_id("t"), "from": source,
                        "to": target, "asset": "USDT", "amount": "25"})
            if minute % 480 == 420:  # funding rates an hour before each funding time
                for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSD", "BTCUSDC"):  # futures: none
                    rate = Decimal(self.rng.randint(-5, 15)) / Decimal(100000)
                    self.add(at, {"type": "funding_rate", "symbol": symbol, "rate": str(rate)})
            if minute % 15 == 0:
                self.add(at + timedelta(seconds=299), {"type": "check_margin"})
            if minute % 60 == 0:
                boundary = at + timedelta(minutes=0)
                self.add(boundary + timedelta(seconds=0), {"type": "charge_interest"})
                if minute % 480 == 0:
                    self.add(boundary, {"type": "settle_funding"})
        self.lines.sort(key=lambda item: (item[0], item[1]))
        return [command for _, _, command in self.lines]


def write_feed(path: Path, commands: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for command in commands:
            handle.write(json.dumps(command, separators=(",", ":")) + "\n")


class NotADemoStore(Exception):
    """The store holds something the demo did not write: the demo leaves it alone."""


def store_contents(url: str) -> str:
    """Return what `url` holds, for the demo: "nothing" (absent or no table at all), "demo" (a
    store marked by a previous demo) or "other" (anything else: never touched).

    Raises when the store cannot be reached (exit 2 as `store_unavailable`)."""
    if url.startswith("sqlite:"):
        import sqlite3
        from contextlib import closing

        from ledger.application.store import sqlite_path

        path = Path(sqlite_path(url))
        if str(path) == ":memory:" or not path.exists() or (path.is_file()
                                                            and path.stat().st_size == 0):
            return "nothing"
        readonly = path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(readonly, uri=True, timeout=30)) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
            marked = "ledger_commands" in tables and conn.execute(
                "SELECT 1 FROM ledger_commands WHERE command_key = ?", (MARKER_KEY,)
            ).fetchone() is not None
    else:
        import psycopg

        from ledger.application.schema import _libpq_url

        with psycopg.connect(_libpq_url(url), connect_timeout=5) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")}
            marked = "ledger_commands" in tables and conn.execute(
                "SELECT 1 FROM ledger_commands WHERE command_key = %s", (MARKER_KEY,)
            ).fetchone() is not None
    if not tables or (tables == {"alembic_version"} and not _stamped(url)):
        return "nothing"  # (an empty alembic_version: a PostgreSQL demo cleared, not re-made)
    return "demo" if marked else "other"


def _stamped(url: str) -> bool:
    """Tell whether the store's alembic_version table holds a revision."""
    from ledger.application import schema

    return schema.current(url) is not None


def prepare_store(url: str, *, fresh: bool) -> str:
    """Make `url` ready for the demo; return what it held ("nothing" or "demo").

    A store holding anything but a previous demo raises `NotADemoStore` before anything is
    written. `fresh` clears a previous demo: the SQLite file is removed; on PostgreSQL every
    table of the ledger's schema is dropped (`alembic downgrade base`) and made again."""
    found = store_contents(url)
    if found == "other":
        raise NotADemoStore(
            f"{_where(url)} holds data the demo did not write: the demo only writes into a new "
            f"or empty store, or one a previous demo made, and leaves this one as it is. Choose "
            f"another store: `ledger demo` (its own {DEMO_DB}) or `ledger demo --db "
            f"sqlite:///another.db`.")
    if found == "demo" and fresh:
        if url.startswith("sqlite:"):
            from ledger.application.store import sqlite_path

            for suffix in ("", "-wal", "-shm"):
                Path(sqlite_path(url) + suffix).unlink(missing_ok=True)
        else:
            from ledger.application import schema

            schema.downgrade(url, "base")
    return found


def mark_store(url: str) -> None:
    """Write the demo's marker row (once) into a store the demo has just made its own."""
    from sqlalchemy import text

    from ledger.application import schema

    engine = schema.create_engine(url, write=True)
    try:
        with engine.begin() as conn:
            seen = conn.execute(text("SELECT 1 FROM ledger_commands WHERE command_key = :key"),
                                {"key": MARKER_KEY}).first()
            if seen is None:
                conn.execute(text("INSERT INTO ledger_commands (command_key, content_hash,"
                                  " at_micros) VALUES (:key, :hash, 0)"),
                             {"key": MARKER_KEY, "hash": MARKER_HASH})
    finally:
        engine.dispose()


def _where(url: str) -> str:
    if url.startswith("sqlite:"):
        from ledger.application.store import sqlite_path

        return f"the store {Path(sqlite_path(url)).resolve()}"
    from urllib.parse import urlsplit

    return f"the PostgreSQL database {urlsplit(url).path.lstrip('/') or 'postgres'!r}"


def run_demo(url: str, *, accounts: int = 300, seed: int = 7, fresh: bool = True) -> int:
    """Run the demo into `url` (see the module docstring); return the exit status."""
    from rich.console import Console

    from ledger.opening import open_ledger, store_unavailable

    assert accounts >= 1, accounts
    console = Console(stderr=False)
    try:
        prepare_store(url, fresh=fresh)
    except NotADemoStore as error:
        store_unavailable(f"refusing to run the demo: {error}")
    except Exception as error:  # noqa: BLE001 - any failure to reach the store is exit 2
        store_unavailable(f"cannot reach {_where(url)}: {error}")
    if url.startswith("sqlite:"):
        from ledger.application.store import sqlite_path

        feed_path = Path(sqlite_path(url)).with_name("demo-feed.jsonl")
    else:
        feed_path = Path("demo-feed.jsonl")
    commands = DayBuilder(accounts, seed).build()
    write_feed(feed_path, commands)
    console.print(f"[bold]A simulated day[/]: {len(commands):,} commands for {accounts:,} "
                  f"accounts and {len(BOOKS)} portfolio books written to {feed_path}")
    ledger = open_ledger(url, create=True)
    mark_store(url)
    started = time.perf_counter()
    report = _ingest(ledger, feed_path, len(commands))
    elapsed = time.perf_counter() - started
    console.print(f"ingested into {_where(url)} in {elapsed:.1f} s: {report.applied:,} applied, "
                  f"{report.acknowledged:,} acknowledged, {len(report.rejected):,} rejected"
                  + _rejection_summary(report))
    if report.internal_error is not None:
        console.print(f"[red]internal error at line {report.internal_error_line}: "
                      f"{report.internal_error!r}")
        return 3
    summarise(url, console)
    ok = replay_check(url, console, random.Random(seed))
    from ledger.application.audit import audit

    found = audit(open_ledger(url))
    breaks = found.breaks
    console.print(f"verify: {found.events:,} events in {found.streams:,} streams "
                  f"({found.accounts:,} accounts and the reference data), "
                  + ("every hash chain intact" if not breaks else f"[red]{len(breaks)} broken"))
    return 0 if ok and not breaks else 1


def _ingest(ledger: Any, path: Path, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ledger.application.feed import read_lines, run_feed

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("ingesting", total=total)
        return run_feed(ledger, read_lines(str(path)),
                        on_progress=lambda n: bar.advance(task, n))


def _rejection_summary(report: Any) -> str:
    """Say what was rejected and why that is expected: the simulated users sometimes ask for
    more than their margin allows (a fill too large, a withdrawal or transfer beyond what is
    available), and the ledger refuses those commands as the contract says."""
    counts: dict[tuple[str, str], int] = {}
    for rejection in report.rejected:
        key = (rejection.error, rejection.type or "line")
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    listed = ", ".join(f"{n} {kind} ({code})" for (code, kind), n in sorted(counts.items()))
    return (f": {listed} — simulated users asking for more than their margin allows, refused "
            "as the contract says")


def summarise(url: str, console: Any) -> None:
    from rich.table import Table

    from ledger.application.queries import all_states
    from ledger.opening import open_ledger

    ledger = open_ledger(url)
    states = all_states(ledger)
    events = ledger.recorder.max_notification_id() or 0
    # An account's version is the number of its events; verify checks them and the rest.
    account_events = sum(int(s["version"]) for s in states)
    books = sum(1 for s in states if s["account"] in BOOKS)
    equity = sum((Decimal(s["margin"]["equity_usd"]) for s in states), Decimal(0))
    by_mode: dict[str, int] = {}
    for item in states:
        by_mode[item["mode"]] = by_mode.get(item["mode"], 0) + 1
    table = Table(title="The day in the ledger", show_header=False)
    table.add_row("accounts", f"{len(states):,} = {len(states) - books:,} simulated + {books} "
                  "portfolio books (" + ", ".join(f"{m} {n}" for m, n in sorted(by_mode.items()))
                  + ")")
    table.add_row("events", f"{events:,} in the log (what verify checks) = {account_events:,} "
                  f"account events + {events - account_events:,} reference data (assets, "
                  "instruments, prices, funding)")
    table.add_row("equity (USD, at index)", f"{equity:,.2f}")
    table.add_row("open positions", f"{sum(len(s['positions']) for s in states):,}")
    table.add_row("accounts in debt",
                  f"{sum(1 for s in states if any(Decimal(v) > 0 for v in s['debts'].values()))}")
    console.print(table)
    risky = sorted(
        (s for s in states if s["margin"]["margin_ratio"] is not None),
        key=lambda s: Decimal(s["margin"]["margin_ratio"]), reverse=True)[:8]
    top = Table(title="The riskiest margin ratios", show_header=True, header_style="bold")
    for column in ("account", "mode", "margin ratio", "effective equity", "MM", "available"):
        top.add_column(column, justify="right")
    for item in risky:
        margin = item["margin"]
        top.add_row(item["account"], item["mode"], f"{Decimal(margin['margin_ratio']):.4f}",
                    f"{Decimal(margin['effective_equity_usd']):,.2f}",
                    f"{Decimal(margin['maintenance_margin_usd']):,.2f}",
                    f"{Decimal(margin['available_usd']):,.2f}")
    console.print(top)
    plans = Table(title="Liquidation plans (portfolio accounts)", show_header=True,
                  header_style="bold")
    for column in ("account", "at", "step", "stage", "symbol", "side", "qty", "fee",
                   "level after"):
        plans.add_column(column, justify="right")
    from ledger.application.queries import events as history

    for item in states:
        if item["mode"] != "portfolio":
            continue
        for event in history(ledger, item["account"]):
            if event["type"] == "LiquidationStepPlanned":
                level = event["margin_level_after"]
                plans.add_row(item["account"], event["at"][11:19], str(event["step"]),
                              event["stage"], event["symbol"], event["side"], event["qty"],
                              f"{Decimal(event['fee']):,.2f}",
                              "—" if level is None else f"{Decimal(level):.3f}")
    if plans.row_count:
        console.print(plans)
    units = [(s["account"], unit, figures) for s in states
             for unit, figures in s["margin"]["risk_units"].items()]
    if units:
        table = Table(title="Portfolio risk units", show_header=True, header_style="bold")
        for column in ("account", "unit", "delta", "MR1", "MR4", "MR7", "MMR"):
            table.add_column(column, justify="right")
        shown = [u for u in units if u[0].startswith("pm-")] + units[:4]
        for account, unit, figures in shown:
            table.add_row(account, unit, f"{Decimal(figures['delta']):.4f}",
                          f"{Decimal(figures['mr1']):,.2f}", f"{Decimal(figures['mr4']):,.2f}",
                          f"{Decimal(figures['mr7']):,.2f}", f"{Decimal(figures['mmr']):,.2f}")
        console.print(table)


def replay_check(url: str, console: Any, rng: random.Random, samples: int = 6) -> bool:
    """Compare the state read through the time index and snapshots with a plain fold of every
    event up to the same second (no snapshot, no index), for a few accounts and seconds."""
    from ledger.application.queries import render_state, state
    from ledger.domain.ids import account_id
    from ledger.opening import open_ledger

    ledger = open_ledger(url)
    names = ledger.account_names()
    all_ok = True
    end = DAY + timedelta(seconds=86_000)
    for _ in range(samples):
        name = rng.choice(names)
        # A second between the account's opening and the end of the day (a book opened at
        # noon did not exist at 09:00: asking for its state then is `unknown_account`).
        opened = max(ledger.account_history(account_id(name), lte=1)[0].at,
                     DAY + timedelta(seconds=600))
        at = opened + timedelta(seconds=rng.randint(0, int((end - opened).total_seconds())))
        indexed = state(ledger, name, at)
        folded = None
        for event in ledger.account_history(account_id(name)):
            if event.at > at:
                break
            folded = event.mutate(folded)
        assert folded is not None
        plain = render_state(folded, at, ledger.figures(folded, at, limits=True),
                             ledger.interest_view(folded, at))
        same = plain == indexed
        all_ok = all_ok and same
        console.print(f"replay {name} at {format_at(at)}: version {indexed['version']}, equity "
                      f"{Decimal(indexed['margin']['equity_usd']):,.2f} USD — "
                      + ("[green]matches[/]" if same else "[red]DIFFERS[/]"))
    return all_ok
