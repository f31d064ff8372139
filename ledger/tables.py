"""Tables for people (rich): the same data as `--json`, laid out for reading."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_states(states: list[dict[str, Any]]) -> None:
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
            table.add_row(asset, balance, item["debts"].get(asset, "0"), entry.get("equity", ""),
                          entry.get("index_price") or "—", entry.get("effective_usd", ""),
                          margin["max_withdrawable"].get(asset, ""))
        console.print(table)
        if item["positions"]:
            positions = Table(show_header=True, header_style="bold")
            for column in ("symbol", "type", "side", "qty", "entry", "mark", "uPnL", "MM",
                           "IM", "liq. price"):
                positions.add_column(column, justify="right")
            for p in item["positions"]:
                positions.add_row(p["symbol"], p["margin_type"], p["side"], p["qty"],
                                  p["entry_price"], p["mark_price"], p["unrealized_pnl"],
                                  p["maintenance_margin"] or "—", p["initial_margin"] or "—",
                                  p["liquidation_price"] or "—")
            console.print(positions)
        summary = Table(show_header=False, box=None)
        for key in ("equity_usd", "effective_equity_usd", "maintenance_margin_usd",
                    "initial_margin_usd", "margin_ratio", "margin_level", "available_usd"):
            summary.add_row(key, str(margin[key]))
        console.print(summary)


def print_events(account: str, events: list[dict[str, Any]]) -> None:
    table = Table(title=f"events of {account}", show_header=True, header_style="bold")
    table.add_column("v", justify="right")
    table.add_column("at")
    table.add_column("type")
    table.add_column("details")
    for event in events:
        details = ", ".join(
            f"{k}={v}" for k, v in event.items()
            if k not in ("type", "at", "version", "hash", "postings")
        )
        table.add_row(str(event["version"]), event["at"], event["type"], details)
    Console().print(table)
