"""Read model `projection_margin_state`: the account's margin figures after each of its events.

One row per account event: equity, effective equity, maintenance and initial margin, ratio,
level and available (USD), as of that event's `at` with the prices and parameters in force then
(DESIGN 6.11) — `rules.evaluate` on the replayed account and the replayed reference series,
the ledger's own code. Between events, `ledger state --at` answers.

A reference change recorded late (its `at` at or before rows already committed) is applied to
the rows it reaches: `at` from the change up to the next value of the same series, for accounts
whose holdings it concerns; a row is rewritten only if a figure moved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from sqlalchemy import Connection, select

from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.rules import margin as rules
from projections import tables
from projections.base import ReadModel
from projections.replay import figures_at, involves
from projections.view import PageWriter

FIGURES = ("equity_usd", "effective_equity_usd", "maintenance_margin_usd", "initial_margin_usd",
           "margin_ratio", "margin_level", "available_usd")


def figure_columns(figures: rules.AccountFigures) -> dict[str, Decimal | None]:
    return margin_columns(figures.margin)


def margin_columns(margin: rules.MarginFigures) -> dict[str, Decimal | None]:
    return {"equity_usd": margin.equity_usd,
            "effective_equity_usd": margin.effective_equity_usd,
            "maintenance_margin_usd": margin.maintenance_margin_usd,
            "initial_margin_usd": margin.initial_margin_usd,
            "margin_ratio": margin.margin_ratio, "margin_level": margin.margin_level,
            "available_usd": margin.available_usd}


class MarginState(ReadModel):
    name = "margin_state"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Reference data moves rows only when late (see `prepare`)."""

    @process_event.register(Account.Event)
    def _account_event(self, event: Account.Event, tracking: Tracking) -> None:
        """Every account event gets a row; its figures wait for the end of the page."""

    def prepare(self, reader: Connection) -> None:
        replay = self.replay
        self.rows = [
            {"account": step.account, "version": step.version,
             "notification_id": step.notification_id, "event_type": step.event_type,
             "at": step.at, "at_micros": step.at_micros, "mode": step.snapshot.mode.value,
             **margin_columns(replay.margin(step))}
            for step in replay.page.steps
        ]
        late_changes = replay.late_changes()
        if not late_changes:
            return
        written = {(step.account, step.version) for step in replay.page.steps}
        table = tables.margin_state
        for late in late_changes:
            query = select(table).where(table.c.at_micros >= late.start)
            if late.end is not None:
                query = query.where(table.c.at_micros < late.end)
            for row in reader.execute(query.order_by(table.c.account, table.c.version)):
                key = (row.account, row.version)
                if key in written:
                    continue
                snapshot = replay.snapshot_at(account_id(row.account), row.version)
                if not involves(replay.reference, snapshot, late.kind, late.name):
                    continue
                written.add(key)
                figures = figure_columns(figures_at(replay.reference, snapshot, row.at))
                if any(figures[name] != getattr(row, name) for name in FIGURES):
                    self.updates.append({"key_account": row.account,
                                         "key_version": row.version, **figures})

    def write(self, writer: PageWriter) -> None:
        writer.insert(tables.margin_state, self.rows)
        writer.update(tables.margin_state, ["account", "version"], self.updates)

    def reset(self) -> None:
        self.rows = []
        self.updates = []
