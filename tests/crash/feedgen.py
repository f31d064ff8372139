"""A deterministic feed for the crash harness (issue 10), built on the demo's day.

`ledger.demo.DayBuilder` already writes a realistic day (assets with interest and collateral
tiers, linear/inverse/USDC perpetuals, futures, single-asset / multi-asset / portfolio
accounts, deposits, withdrawals, transfers, fills, funding rates, the scheduler's periodic
commands). This module reuses it and adds what the crash trials need on top:

- a configurable length (`hours`) and size (`accounts`);
- price shocks (marks and index pushed 6-18 % for a few steps, then back) so the sweeps
  produce auto top-ups, margin calls and liquidation triggers, multi-asset accounts run their
  USDT negative and pay hourly interest;
- isolated, leveraged fills of the accounts that have `set_auto_add_margin` on;
- liquidation fills (`"liquidation": true`) closing part of a position after each shock;
- deliberately bad lines (exit 1 is the normal outcome of a run of this feed): not JSON,
  unknown type, negative amount, unknown account/asset/symbol, an `id` reused with other
  content (`id_conflict`), a repeated identical line (acknowledged), a too large withdrawal.

Everything is a pure function of the seed: `generate(seed, accounts, hours)` returns the
lines (strings, no newline). `periodic=False` leaves out settle_funding / charge_interest /
check_margin (the scheduler test sends those itself).

    python -m tests.crash.feedgen --seed 3 --accounts 20 --hours 12 OUT.jsonl [--no-periodic]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from ledger.demo import DAY, DayBuilder
from ledger.times import format_at

PERIODIC = frozenset({"settle_funding", "charge_interest", "check_margin"})
START = DAY


class RawLine(str):
    """A line written as is (not a JSON object built from a dict)."""


class CrashDay(DayBuilder):
    """The demo's day, shortened or lengthened, with shocks, liquidations and bad lines."""

    def __init__(self, accounts: int, seed: int, hours: int) -> None:
        super().__init__(accounts, seed)
        self.hours = hours
        self.shock: dict[str, Decimal] = {"BTC": Decimal(1), "ETH": Decimal(1)}
        self.positions: dict[tuple[str, str], int] = {}
        self.auto_add: set[str] = set()
        self.money_lines: list[dict[str, Any]] = []

    # --------------------------------------------------------------- prices, with shocks

    def prices(self, at: datetime) -> None:
        for asset in ("BTC", "ETH"):
            step = Decimal(self.rng.randint(-60, 60)) / Decimal(10000)
            self.index[asset] = (self.index[asset] * (1 + step)).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            shown = (self.index[asset] * self.shock[asset]).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            self.add(at, {"type": "index_price", "asset": asset, "price": str(shown)})
        for symbol, base in self.basis.items():
            premium = Decimal(self.rng.randint(-8, 8)) / Decimal(10000)
            mark = (self.index[base] * self.shock[base] * (1 + premium)).quantize(
                Decimal("0.1"), rounding=ROUND_HALF_EVEN)
            self.marks[symbol] = mark
            self.add(at, {"type": "mark_price", "symbol": symbol, "price": str(mark)})

    # --------------------------------------------------------------- trading

    def trade(self, at: datetime, name: str, mode: str) -> None:
        before = len(self.lines)
        super().trade(at, name, mode)
        command = self.lines[before][2]
        if name in self.auto_add:
            # isolated, leveraged BTCUSDT: the shocks push these to their liquidation price
            # and the sweep tops them up from the account's available balance
            command["symbol"] = "BTCUSDT"
            command["price"] = str(self.marks["BTCUSDT"])
            command["margin_type"] = "isolated"
            command["leverage"] = str(self.rng.choice([20, 25, 50]))
        sign = 1 if command["side"] == "buy" else -1
        key = (name, command["symbol"])
        self.positions[key] = self.positions.get(key, 0) + sign * int(command["qty"])
        self.money_lines.append(command)

    def liquidations(self, at: datetime) -> None:
        """Close part of a few of the largest positions with liquidation fills."""
        ranked = sorted(((abs(q), k) for k, q in self.positions.items() if q), reverse=True)
        for _, (name, symbol) in ranked[: self.rng.randint(1, 3)]:
            qty = self.positions[(name, symbol)]
            part = max(1, abs(qty) // self.rng.choice([1, 2, 3]))
            side = "sell" if qty > 0 else "buy"
            command = {"type": "fill", "id": self.next_id("L"), "account": name,
                       "symbol": symbol, "side": side, "qty": str(part),
                       "price": str(self.marks[symbol]), "liquidation": True}
            self.add(at, command)
            self.positions[(name, symbol)] = qty - (part if qty > 0 else -part)

    # --------------------------------------------------------------- bad lines

    def bad_lines(self, at: datetime, accounts: list[tuple[str, str]]) -> None:
        name, _ = self.rng.choice(accounts)
        stamp = format_at(at)
        choice = self.rng.randrange(9)
        if choice == 0:
            self.add_raw(at, RawLine("this is not json"))
        elif choice == 1:
            self.add(at, {"type": "teleport", "account": name, "asset": "USDT", "amount": "5"})
        elif choice == 2:
            self.add(at, {"type": "deposit", "id": self.next_id("bad"), "account": name,
                          "asset": "USDT", "amount": "-5"})
        elif choice == 3:
            self.add(at, {"type": "deposit", "id": self.next_id("bad"), "account": "nobody-"
                          + str(self.rng.randint(0, 99)), "asset": "USDT", "amount": "5"})
        elif choice == 4:
            self.add(at, {"type": "deposit", "id": self.next_id("bad"), "account": name,
                          "asset": "DOGE", "amount": "5"})
        elif choice == 5:
            self.add(at, {"type": "fill", "id": self.next_id("bad"), "account": name,
                          "symbol": "XRPUSDT", "side": "buy", "qty": "1", "price": "1"})
        elif choice == 6 and self.money_lines:
            # the same id again with other content: id_conflict
            old = dict(self.rng.choice(self.money_lines))
            old["qty"] = str(int(old["qty"]) + 1)
            self.add(at, {k: v for k, v in old.items() if k != "at"})
        elif choice == 7 and self.money_lines:
            # the very same line again: acknowledged, not applied twice
            old = self.rng.choice(self.money_lines)
            self.add_raw(at, RawLine(json.dumps(old, separators=(",", ":"))))
        else:
            self.add(at, {"type": "withdraw", "id": self.next_id("bad"), "account": name,
                          "asset": "USDT", "amount": "1000000000"})
        del stamp

    def add_raw(self, at: datetime, line: RawLine) -> None:
        self.lines.append((at, self.order, line))  # type: ignore[arg-type]
        self.order += 1

    # --------------------------------------------------------------- the day

    def build(self) -> list[dict[str, Any]]:  # type: ignore[override]
        self.reference()
        accounts = self.open_accounts()
        self.portfolio_books()
        for name, mode in accounts:
            if int(name[-1]) in (2, 3) and mode == "single_asset":
                self.auto_add.add(name)
                self.add(DAY + timedelta(minutes=2), {
                    "type": "set_auto_add_margin", "account": name, "symbol": "BTCUSDT",
                    "enabled": True})
        minutes = self.hours * 60
        shocks = sorted(self.rng.sample(range(60, max(61, minutes - 60), 5),
                                        k=max(1, self.hours // 5)))
        shock_until = -1
        for minute in range(5, minutes + 1, 5):
            at = DAY + timedelta(minutes=minute)
            if minute in shocks:
                asset = self.rng.choice(["BTC", "ETH", "both"])
                factor = Decimal(1) + (Decimal(self.rng.choice([-1, 1]))
                                       * Decimal(self.rng.randint(6, 18)) / Decimal(100))
                for name in (["BTC", "ETH"] if asset == "both" else [asset]):
                    self.shock[name] = factor
                shock_until = minute + 5 * self.rng.randint(2, 6)
            elif minute == shock_until:
                self.liquidations(at + timedelta(seconds=10))
                self.shock = {"BTC": Decimal(1), "ETH": Decimal(1)}
            self.prices(at)
            if minute == (minutes // 2) // 5 * 5:
                self.stressed_book(at + timedelta(seconds=1))
            for _ in range(max(1, self.accounts // 30)):
                name, mode = self.rng.choice(accounts)
                self.trade(at + timedelta(seconds=self.rng.randint(1, 280)), name, mode)
            if self.rng.random() < 0.15:
                self.bad_lines(at + timedelta(seconds=self.rng.randint(1, 280)), accounts)
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
            if minute % 480 == 420:
                for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSD", "BTCUSDC"):
                    rate = Decimal(self.rng.randint(-5, 15)) / Decimal(100000)
                    self.add(at, {"type": "funding_rate", "symbol": symbol, "rate": str(rate)})
            if minute % 15 == 0:
                self.add(at + timedelta(seconds=299), {"type": "check_margin"})
            if minute % 60 == 0:
                self.add(at, {"type": "charge_interest"})
                if minute % 480 == 0:
                    self.add(at, {"type": "settle_funding"})
        self.lines.sort(key=lambda item: (item[0], item[1]))
        return [command for _, _, command in self.lines]

    def open_accounts(self) -> list[tuple[str, str]]:
        opened = super().open_accounts()
        # Multi-asset accounts with little USDT and much coin: their losses, fees and funding
        # take USDT below zero (a debt that accrues interest, charged hourly).
        at = DAY + timedelta(minutes=1, seconds=30)
        for name, mode in opened:
            if mode == "multi_asset" and self.rng.random() < 0.6:
                self.add(at, {"type": "withdraw", "id": self.next_id("w"), "account": name,
                              "asset": "USDT", "amount": str(self.rng.randint(1, 4) * 250)})
        return opened


def generate(seed: int, accounts: int = 20, hours: int = 12, periodic: bool = True
             ) -> list[str]:
    """Return the feed's lines (no newlines), deterministic from the arguments."""
    commands = CrashDay(accounts, seed, hours).build()
    lines = []
    for command in commands:
        if isinstance(command, RawLine):
            lines.append(str(command))
            continue
        if not periodic and command.get("type") in PERIODIC:
            continue
        lines.append(json.dumps(command, separators=(",", ":")))
    return lines


def span(seed: int, accounts: int = 20, hours: int = 12) -> tuple[str, str]:
    """The feed's first and last times (for `ledger scheduler --from … --until …`)."""
    del seed, accounts
    return format_at(START), format_at(START + timedelta(hours=hours))


def write(path: Path, lines: list[str]) -> Path:
    # surrogateescape: a fuzzed line may carry bytes that are not UTF-8 (as \udcXX)
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--hours", type=int, default=12)
    parser.add_argument("--no-periodic", action="store_true")
    args = parser.parse_args()
    lines = generate(args.seed, args.accounts, args.hours, periodic=not args.no_periodic)
    write(args.out, lines)
    print(f"{len(lines)} lines written to {args.out}")


if __name__ == "__main__":
    main()
