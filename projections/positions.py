"""Read model `projection_positions`: one row per open position (account, symbol, margin type).

Values are the replayed account's: quantity and entry from `Filled` (and `SessionSettled`,
which resets the entry to the mark), isolated margin from fills, top-ups and adjustments,
leverage from `LeverageChanged`, auto-add from `AutoAddMarginSet`. As in the contract's `state`,
`qty` is a magnitude with its `side`, cross positions have no `position_margin` and never
auto-add. A position whose quantity returns to 0 leaves the table. Each row carries the version
of the account's last event that concerned that position (its symbol and margin type).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from ledger.domain.account import CROSS, ISOLATED, Account
from ledger.numbers import ZERO
from projections import tables
from projections.base import ReadModel
from projections.view import PageWriter


class Positions(ReadModel):
    name = "positions"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.moved: dict[tuple[UUID, str, str], int] = {}  # (account, symbol, type) → version

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events leave positions as they are."""

    @process_event.register(Account.Filled)
    @process_event.register(Account.SessionSettled)
    @process_event.register(Account.FutureDelivered)
    def _position(self, event: Any, tracking: Tracking) -> None:
        self._moved(event, (event.margin_type,))

    @process_event.register(Account.OptionSettled)
    def _option_settled(self, event: Any, tracking: Tracking) -> None:
        self._moved(event, (CROSS,))  # an option is cross only (issue 15)

    @process_event.register(Account.PositionMarginChanged)
    @process_event.register(Account.AutoAddMarginSet)
    def _isolated(self, event: Any, tracking: Tracking) -> None:
        self._moved(event, (ISOLATED,))

    @process_event.register(Account.LeverageChanged)
    def _leverage(self, event: Any, tracking: Tracking) -> None:
        self._moved(event, (CROSS, ISOLATED))

    def _moved(self, event: Any, margin_types: tuple[str, ...]) -> None:
        for margin_type in margin_types:
            key = (event.originator_id, event.symbol, margin_type)
            self.moved[key] = event.originator_version

    def write(self, writer: PageWriter) -> None:
        rows, gone = [], []
        for (account_id, symbol, margin_type), version in sorted(self.moved.items()):
            account = self.replay.page.touched[account_id]
            held = account.position(symbol, margin_type)
            if held is None:
                gone.append({"account": account.name, "symbol": symbol,
                             "margin_type": margin_type})
            else:
                rows.append(position_row(account, held, version))
        writer.delete_keys(tables.positions, gone)
        writer.upsert(tables.positions, rows)

    def reset(self) -> None:
        self.moved.clear()


def position_row(account: Account, held: dict[str, Any], version: int) -> dict[str, Any]:
    """Return the row of one open position."""
    isolated = held["margin_type"] == ISOLATED
    symbol = held["symbol"]
    return {
        "account": account.name, "symbol": symbol, "margin_type": held["margin_type"],
        "side": "long" if held["qty"] > ZERO else "short", "qty": abs(held["qty"]),
        "entry_price": held["entry_price"],
        "position_margin": held["position_margin"] if isolated else None,
        "leverage": account.leverage[symbol],
        "auto_add_margin": bool(account.auto_add.get(symbol, False)) if isolated else False,
        "version": version,
    }
