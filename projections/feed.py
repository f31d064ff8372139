"""Read model `projection_feed`: margin calls, liquidation triggers and automatic top-ups.

One row per signal, keyed by its notification id (the order other services consume them in),
with the figures the event recorded: ratio, level, effective equity and maintenance margin for a
margin call or a cross (or portfolio) liquidation trigger; symbol, liquidation price and mark
for an isolated trigger; amount, position margin after, liquidation price and mark for a top-up.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from ledger.domain.account import ISOLATED, Account
from ledger.times import to_micros
from projections import tables
from projections.base import ReadModel
from projections.view import PageWriter

MARGIN_CALL = "margin_call"
LIQUIDATION_TRIGGERED = "liquidation_triggered"
TOP_UP = "top_up"

_EMPTY = dict.fromkeys(("margin_type", "symbol", "margin_ratio", "margin_level",
                        "effective_equity_usd", "maintenance_margin_usd", "liquidation_price",
                        "mark_price", "amount", "position_margin"))


class Feed(ReadModel):
    name = "feed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, Any]] = []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Only signals appear in the feed."""

    @process_event.register(Account.MarginCallIssued)
    def _margin_call(self, event: Account.MarginCallIssued, tracking: Tracking) -> None:
        self._add(event, tracking, MARGIN_CALL, margin_ratio=event.margin_ratio,
                  margin_level=event.margin_level,
                  effective_equity_usd=event.effective_equity_usd,
                  maintenance_margin_usd=event.maintenance_margin_usd)

    @process_event.register(Account.LiquidationTriggered)
    def _liquidation(self, event: Account.LiquidationTriggered, tracking: Tracking) -> None:
        self._add(event, tracking, LIQUIDATION_TRIGGERED, margin_type=event.margin_type,
                  symbol=event.symbol, margin_ratio=event.margin_ratio,
                  margin_level=event.margin_level,
                  effective_equity_usd=event.effective_equity_usd,
                  maintenance_margin_usd=event.maintenance_margin_usd,
                  liquidation_price=event.liquidation_price, mark_price=event.mark_price)

    @process_event.register(Account.MarginToppedUp)
    def _top_up(self, event: Account.MarginToppedUp, tracking: Tracking) -> None:
        self._add(event, tracking, TOP_UP, margin_type=ISOLATED, symbol=event.symbol,
                  amount=event.amount, position_margin=event.position_margin,
                  liquidation_price=event.liquidation_price, mark_price=event.mark_price)

    def _add(self, event: Account.Event, tracking: Tracking, kind: str, **fields: Any) -> None:
        self.rows.append({
            **_EMPTY, **fields, "notification_id": tracking.notification_id,
            "account": self.replay.page.touched[event.originator_id].name,
            "version": event.originator_version, "kind": kind, "at": event.at,
            "at_micros": to_micros(event.at),
        })

    def write(self, writer: PageWriter) -> None:
        writer.insert(tables.feed, self.rows)

    def reset(self) -> None:
        self.rows = []
