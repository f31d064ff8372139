"""Queries: an account's state at any T, its events, and the hash-chain audit.

`state` is exactly the contract's JSON (contract/README.md, DESIGN 6.11): the account after
every event with `at ≤ T`, valued with the prices and parameters in force at T.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.application.asof import point_reads
from ledger.application.audit import Break, audit
from ledger.application.service import Ledger
from ledger.domain.account import Account
from ledger.domain.ids import account_id
from ledger.domain.postings import Posting
from ledger.errors import UnknownAccountError
from ledger.numbers import opt_str, to_str
from ledger.rules import margin as rules
from ledger.times import format_at, from_micros

_BOOKKEEPING = {"originator_id", "originator_version", "timestamp", "originator_topic", "hash"}


def latest_at(ledger: Ledger) -> datetime | None:
    micros = ledger.index.last_at_micros()
    return None if micros is None else from_micros(micros)


def state(ledger: Ledger, name: str, at: datetime | None = None, *,
          points: bool = True) -> dict[str, Any]:
    """Return the contract's state JSON of account `name` as of `at` (default: the latest
    `at` of any event in the store).

    The reference data in force then is read by point look-ups (`ledger.application.asof`:
    the cost does not grow with the length of the price history); `points=False` reads it
    from the whole streams as the writer does (the same answer; tests compare the two)."""
    if points:
        with point_reads(ledger):
            return state(ledger, name, at, points=False)
    as_of = at if at is not None else latest_at(ledger)
    account = ledger.account_at(name, as_of) if as_of is not None else None
    if account is None:
        raise UnknownAccountError(name)
    assert as_of is not None
    figures = ledger.figures(account, as_of, limits=True)
    return render_state(account, as_of, figures, ledger.interest_view(account, as_of))


def render_state(
    account: Account, as_of: datetime, figures: rules.AccountFigures,
    interest: dict[str, dict[str, Decimal]],
) -> dict[str, Any]:
    margin = figures.margin
    return {
        "account": account.name,
        "as_of": format_at(as_of),
        "mode": account.mode,
        "version": account.version,
        "balances": {asset: to_str(amount) for asset, amount in sorted(account.balances.items())},
        "debts": {asset: to_str(amount) for asset, amount in figures.debts.items()},
        "interest": {
            asset: {"accrued": to_str(view["accrued"]), "charged": to_str(view["charged"])}
            for asset, view in sorted(interest.items())
        },
        "collateral": {
            asset: {
                "equity": to_str(entry.equity),
                "index_price": opt_str(entry.index_price),
                "effective_usd": to_str(entry.effective_usd),
            }
            for asset, entry in figures.collateral.items()
        },
        "positions": [_position(p) for p in figures.positions],
        "available_by_asset": {  # issue 14 (convB)
            asset: to_str(amount) for asset, amount in figures.available_by_asset.items()},
        "margin": {
            "equity_usd": to_str(margin.equity_usd),
            "effective_equity_usd": to_str(margin.effective_equity_usd),
            "maintenance_margin_usd": to_str(margin.maintenance_margin_usd),
            "initial_margin_usd": to_str(margin.initial_margin_usd),
            "margin_ratio": opt_str(margin.margin_ratio),
            "margin_level": opt_str(margin.margin_level),
            "available_usd": to_str(margin.available_usd),
            "max_withdrawable": {a: to_str(v) for a, v in margin.max_withdrawable.items()},
            "borrowing_mmr_usd": to_str(margin.borrowing_mmr_usd),
            "borrowing_imr_usd": to_str(margin.borrowing_imr_usd),
            "risk_units": {
                unit: {
                    "mr1": to_str(f.mr1), "mr2": to_str(f.mr2), "mr3": to_str(f.mr3),
                    "mr4": to_str(f.mr4), "mr5": to_str(f.mr5), "mr6": to_str(f.mr6),
                    "mr7": to_str(f.mr7), "mr9": to_str(f.mr9), "mmr": to_str(f.mmr),
                    "imr": to_str(f.imr), "delta": to_str(f.delta),
                    "delta_usd": to_str(f.delta_usd), "spot_in_use": to_str(f.spot_in_use),
                    "mr8": to_str(f.mr8),
                }
                for unit, f in sorted(margin.risk_units.items())
            },
        },
    }


def _position(p: rules.PositionFigures) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "margin_type": p.margin_type,
        "side": p.side,
        "qty": to_str(p.qty),
        "entry_price": to_str(p.entry_price),
        "mark_price": to_str(p.mark_price),
        "notional": to_str(p.notional),
        "unrealized_pnl": to_str(p.unrealized_pnl),
        "leverage": to_str(p.leverage),
        "position_margin": opt_str(p.position_margin),
        "maintenance_margin": opt_str(p.maintenance_margin),
        "initial_margin": opt_str(p.initial_margin),
        "liquidation_price": opt_str(p.liquidation_price),
        "auto_add_margin": p.auto_add_margin,
        # issue 14 (convB)
        "liquidation_price_tick": opt_str(p.liquidation_price_tick),
        "bankruptcy_price": opt_str(p.bankruptcy_price),
        **({"mark_value": opt_str(p.mark_value), "delta": opt_str(p.delta)}
           if p.mark_value is not None else {}),  # options (issue 15)
    }


def all_states(ledger: Ledger, at: datetime | None = None) -> list[dict[str, Any]]:
    result = []
    as_of = at if at is not None else latest_at(ledger)
    with point_reads(ledger):  # one set of look-ups for every account
        for name in ledger.account_names():
            try:
                result.append(state(ledger, name, as_of, points=False))
            except UnknownAccountError:
                continue  # opened after `at`
    return result


def plain(value: Any) -> Any:
    """Return an event field as the contract prints it (decimal strings, RFC 3339 times)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return to_str(value)
    if isinstance(value, datetime):
        return format_at(value)
    if isinstance(value, Posting):
        return {"account": value.account, "asset": value.asset, "amount": to_str(value.amount)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def account_events(ledger: Ledger, name: str) -> Iterator[Account.Event]:
    if ledger.find_account(name) is None:
        raise UnknownAccountError(name)
    return iter(ledger.account_history(account_id(name)))


def render_event(event: Any) -> dict[str, Any]:
    fields = {k: v for k, v in vars(event).items() if k not in _BOOKKEEPING}
    item: dict[str, Any] = {"type": type(event).__name__, "at": plain(fields.pop("at")),
                            "version": event.originator_version}
    if "command_id" in fields:
        item["id"] = fields.pop("command_id")
    if "source" in fields:
        item["from"] = fields.pop("source")
    for key, value in fields.items():
        item[key] = plain(value)
    item["hash"] = event.hash
    return item


def events(
    ledger: Ledger, name: str, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Return the account's events in order as the contract's JSON list."""
    rendered = []
    for event in account_events(ledger, name):
        if since is not None and event.at < since:
            continue
        if until is not None and event.at > until:
            continue
        rendered.append(render_event(event))
    return rendered


ChainBreak = Break  # a break's `account` names its stream (an account's name, `kind:name`…)


def verify(ledger: Ledger) -> tuple[int, int, list[ChainBreak]]:
    """Check the store for tampering without an anchor (`ledger.application.audit`): every
    stream's hash chain (accounts and reference data) and the postings of every event,
    snapshots against their events, the side indexes against the log, and the log's
    notification ids for holes.

    Returns (accounts checked, events checked, breaks), naming the first break of each chain.
    """
    found = audit(ledger)
    return found.accounts, found.events, found.breaks
