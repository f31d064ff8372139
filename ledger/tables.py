"""Tables for people (rich): the same data as `--json`, laid out and rounded for reading.

Every figure goes through `ledger.display` (half-even, display only; `--json` stays exact):
prices to the places of the mark in force, amounts to their asset's precision, USD to cents,
ratios to 4 places, `—` where a figure is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger import display as d


@dataclass
class Units:
    """What the tables need to round: each asset's precision, each instrument's settle asset."""

    precision: dict[str, int] = field(default_factory=dict)
    settle: dict[str, str] = field(default_factory=dict)

    def places(self, asset: str) -> int:
        return self.precision.get(asset, d.OTHER_PLACES)

    def settle_places(self, symbol: str) -> int:
        return self.places(self.settle.get(symbol, ""))


def print_states(states: list[dict[str, Any]], units: Units | None = None) -> None:
    """Print each account's balances, positions and margin figures (the detailed view)."""
    units = units or Units()
    console = Console()
    for item in states:
        margin = item["margin"]
        title = f"{item['account']} ({item['mode']}) as of {item['as_of']}, v{item['version']}"
        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("asset")
        table.add_column("balance", justify="right")
        table.add_column("debt", justify="right")
        table.add_column("equity", justify="right")
        table.add_column("index", justify="right")
        table.add_column("effective USD", justify="right")
        table.add_column("max withdrawable", justify="right")
        for asset, balance in item["balances"].items():
            entry = item["collateral"].get(asset, {})
            places = units.places(asset)
            table.add_row(asset, d.amount(balance, places),
                          d.amount(item["debts"].get(asset, "0"), places),
                          d.amount(entry.get("equity"), places),
                          d.figure(entry.get("index_price")),
                          d.usd(entry.get("effective_usd")),
                          d.amount(margin["max_withdrawable"].get(asset), places))
        console.print(table)
        if item["positions"]:
            positions = Table(show_header=True, header_style="bold")
            for column in ("symbol", "type", "side", "qty", "entry", "mark", "uPnL", "MM",
                           "IM", "liq. price"):
                positions.add_column(column, justify="right")
            for p in item["positions"]:
                places = units.settle_places(p["symbol"])
                mark = p["mark_price"]
                positions.add_row(p["symbol"], p["margin_type"], p["side"], d.figure(p["qty"]),
                                  d.price(p["entry_price"], mark), d.figure(mark),
                                  d.amount(p["unrealized_pnl"], places),
                                  d.amount(p["maintenance_margin"], places),
                                  d.amount(p["initial_margin"], places),
                                  d.price(p["liquidation_price"], mark))
            console.print(positions)
        summary = Table(show_header=False, box=None)
        for key in ("equity_usd", "effective_equity_usd", "maintenance_margin_usd",
                    "initial_margin_usd", "available_usd"):
            summary.add_row(key, d.usd(margin[key]))
        for key in ("margin_ratio", "margin_level"):
            summary.add_row(key, d.ratio(margin[key]))
        console.print(summary)


def print_summary(states: list[dict[str, Any]]) -> None:
    """Print one row per account (`state --all`): the figures that tell where to look."""
    as_of = states[0]["as_of"] if states else "—"
    table = Table(title=f"{len(states)} accounts as of {as_of} (details: --details)",
                  show_header=True, header_style="bold")
    table.add_column("account")
    table.add_column("mode")
    for column in ("positions", "equity USD", "MM USD", "available USD", "margin ratio",
                   "margin level"):
        table.add_column(column, justify="right")
    for item in states:
        margin = item["margin"]
        table.add_row(item["account"], item["mode"], str(len(item["positions"])),
                      d.usd(margin["equity_usd"]), d.usd(margin["maintenance_margin_usd"]),
                      d.usd(margin["available_usd"]), d.ratio(margin["margin_ratio"]),
                      d.ratio(margin["margin_level"]))
    Console().print(table)


def print_events(account: str, events: list[dict[str, Any]]) -> None:
    table = Table(title=f"events of {account}", show_header=True, header_style="bold")
    table.add_column("v", justify="right")
    table.add_column("at")
    table.add_column("type")
    table.add_column("details")
    for event in events:
        details = ", ".join(
            f"{k}={d.figure(v)}" for k, v in event.items()
            if k not in ("type", "at", "version", "hash", "postings")
        )
        table.add_row(str(event["version"]), event["at"], event["type"], details)
    Console().print(table)
