"""The staged liquidation plan of a portfolio account (PORTFOLIO-MARGIN.md §10.10, seed 003).

A simulation on a copy of the account at T. A *leg* closes `qty` contracts of one position at
its mark and pays the taker fee on it (exact); closing at the mark turns unrealised into realised
PnL, so coin equity changes only by the fee. A *step* is one or more legs; after each step the
whole account is re-evaluated (§10.3–10.8) and the plan stops as soon as `margin_level ≥
target_level` or no requirement is left. Stages: `ddh1` (stablecoin hedges, MR9), `ddh2` (net
delta, MR1/MR6), `basis` (tenor hedges, MR4), `general` (everything left, most liquid first).

Example (public `pm-liquidation-plan`): 2 BTC held, short 10 BTC at 56,000, level 0.927 → one
ddh2 step buys back 8 BTC (8,000 contracts, fee 224) → level 30.3: the plan stops there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from ledger.numbers import ZERO
from ledger.rules import portfolio as pm
from ledger.rules.margin import AccountSnapshot, Market, PositionState, evaluate, unit_items
from ledger.rules.positions import apply_fill, fill_fee


@dataclass(frozen=True, slots=True)
class Leg:
    step: int
    stage: str
    underlying: str
    symbol: str
    side: str  # the closing side: "buy" closes a short
    qty: Decimal  # contracts
    price: Decimal  # the mark
    fee: Decimal  # settle asset (inverse: coin), exact
    margin_level_after: Decimal | None  # after the whole step


@dataclass(frozen=True, slots=True)
class Plan:
    margin_level: Decimal | None
    legs: tuple[Leg, ...]
    steps: int
    final_margin_level: Decimal | None
    target_reached: bool


@dataclass(frozen=True, slots=True)
class Hedge:
    """A ddh2 leg that trades a perpetual by `signed` contracts to hedge an options book's
    delta (issue 15): it may open or add to a position, unlike a close."""

    item: pm.UnitItem
    signed: Decimal


Close = tuple[pm.UnitItem, Decimal] | Hedge


class _Book:
    """The account being simulated: positions and wallets change leg by leg."""

    def __init__(self, account: AccountSnapshot, market: Market) -> None:
        self.account = account
        self.market = market

    def level(self) -> tuple[Decimal | None, Decimal]:
        margin = evaluate(self.account, self.market, limits=False).margin
        return margin.margin_level, margin.maintenance_margin_usd

    def units(self) -> tuple[dict[str, list[pm.UnitItem]], dict[str, pm.RiskUnitFigures]]:
        positions = [(p, self.market.instruments[p.symbol],
                      self.market.mark(p.symbol, p.entry_price))
                     for p in self.account.positions]
        figures = evaluate(self.account, self.market, limits=False).margin.risk_units
        return unit_items(positions, self.market), dict(figures)

    def trade(self, symbol: str, signed: Decimal) -> tuple[str, Decimal, Decimal, Decimal]:
        """Trade `signed` contracts of a perpetual at its mark, opening, adding to, reducing or
        flipping the position (ddh2's perpetual hedge of an options book, issue 15)."""
        terms = self.market.instruments[symbol]
        held = next((p for p in self.account.positions if p.symbol == symbol), None)
        held_qty, entry = (held.qty, held.entry_price) if held else (ZERO, ZERO)
        mark = self.market.mark(symbol, entry if held else ZERO)
        outcome = apply_fill(held_qty, entry, signed, mark, terms.contract_size,
                             terms.is_inverse)
        fee = fill_fee(abs(signed), terms.contract_size, mark, terms.taker_fee_rate,
                       terms.is_inverse)
        balances = dict(self.account.balances)
        balances[terms.settle] = balances.get(terms.settle, ZERO) + outcome.realized_pnl - fee
        positions = [p for p in self.account.positions if p.symbol != symbol]
        if outcome.qty != ZERO:
            positions.append(replace(held, qty=outcome.qty, entry_price=outcome.entry_price)
                             if held else PositionState(symbol, "cross", outcome.qty,
                                                        outcome.entry_price))
        self.account = replace(self.account, balances=balances, positions=positions)
        return ("buy" if signed > ZERO else "sell"), abs(signed), mark, fee

    def close(self, symbol: str, qty: Decimal) -> tuple[str, Decimal, Decimal, Decimal]:
        """Close `qty` contracts of `symbol` at its mark; return (side, qty, mark, fee).

        A pro-rata quantity computed to 34 digits can exceed the position by the last digit:
        it is capped, so a leg never flips a position into dust."""
        terms = self.market.instruments[symbol]
        position = next(p for p in self.account.positions if p.symbol == symbol)
        qty = min(qty, abs(position.qty))
        mark = self.market.mark(symbol, position.entry_price)
        signed = -qty if position.qty > ZERO else qty
        outcome = apply_fill(position.qty, position.entry_price, signed, mark,
                             terms.contract_size, terms.is_inverse)
        fee = fill_fee(qty, terms.contract_size, mark, terms.taker_fee_rate, terms.is_inverse)
        # An option closes for its premium at the mark (issue 15): the mark value it carried
        # becomes cash; the fee is the taker rate on the premium (no cap needed: it is below).
        cash = -signed * terms.contract_size * mark if terms.is_option else outcome.realized_pnl
        balances = dict(self.account.balances)
        balances[terms.settle] = balances.get(terms.settle, ZERO) + cash - fee
        positions: list[PositionState] = []
        for held in self.account.positions:
            if held.symbol != symbol:
                positions.append(held)
            elif outcome.qty != ZERO:
                positions.append(replace(held, qty=outcome.qty, entry_price=outcome.entry_price))
        self.account = replace(self.account, balances=balances, positions=positions)
        return ("buy" if signed > ZERO else "sell"), qty, mark, fee


def liquidation_plan(account: AccountSnapshot, market: Market) -> Plan:
    """Return the plan for a portfolio account whose margin_level is at or below the
    liquidation level (the caller decides that it is)."""
    target = market.portfolio.target_level
    book = _Book(account, market)
    start_level, _ = book.level()
    legs: list[Leg] = []
    step = 0

    def done() -> bool:
        level, requirement = book.level()
        return requirement <= ZERO or (level is not None and level >= target)

    def run_step(stage: str, underlying: str, closes: Sequence[Close]) -> bool:
        nonlocal step
        hedges = [leg for leg in closes if isinstance(leg, Hedge)]
        plain = [leg for leg in closes if not isinstance(leg, Hedge) and leg[1] > ZERO]
        if not plain and not hedges:
            return False
        step += 1
        pending = []
        for hedge in hedges:  # ddh2's perpetual hedge of an options book (issue 15)
            side, qty, mark, fee = book.trade(hedge.item.symbol, hedge.signed)
            pending.append((hedge.item.symbol, side, qty, mark, fee))
        for leg in plain:
            assert not isinstance(leg, Hedge)
            side, qty, mark, fee = book.close(leg[0].symbol, leg[1])
            item = leg[0]
            pending.append((item.symbol, side, qty, mark, fee))
        level, requirement = book.level()
        after = None if requirement <= ZERO else level
        legs.extend(Leg(step, stage, underlying, symbol, side, qty, mark, fee, after)
                     for symbol, side, qty, mark, fee in pending)
        return done()

    for stage, order, closes_for in _STAGES:
        if done():
            break
        items, figures = book.units()
        ranked = sorted(figures, key=lambda u: (-order(figures[u]), u))
        finished = False
        for underlying in ranked:
            if stage == "general":
                break
            if order(figures[underlying]) <= ZERO:
                continue
            items, figures_now = book.units()
            if underlying not in figures_now:
                continue
            for closes in closes_for(items.get(underlying, []), figures_now[underlying]):
                if run_step(stage, underlying, closes):
                    finished = True
                    break
            if finished:
                break
        if finished:
            break
        if stage == "general":
            items, _ = book.units()
            remaining = sorted(
                ((underlying, item) for underlying, group in items.items() for item in group),
                key=lambda pair: pm.liquidity_key(pair[1]))
            for underlying, item in remaining:
                if run_step("general", underlying, [(item, abs(item.qty))]):
                    break
    final_level, requirement = book.level()
    final = None if requirement <= ZERO else final_level
    reached = requirement <= ZERO or (final_level is not None and final_level >= target)
    return Plan(start_level, tuple(legs), step, final, reached)


def _hedge_by_currency(items: list[pm.UnitItem], _: pm.RiskUnitFigures
                       ) -> list[list[tuple[pm.UnitItem, Decimal]]]:
    return [pm.hedge_reduction(pm.margin_currency_groups(items))]


def _delta(items: list[pm.UnitItem], figures: pm.RiskUnitFigures) -> list[list[Close]]:
    if figures.delta == ZERO:
        return []
    if any(item.is_option for item in items):  # an options book: hedge with a perpetual
        hedge = pm.perpetual_hedge(items, figures.delta)
        if hedge is not None:
            return [[Hedge(*hedge)]]
    return [[leg] for leg in pm.delta_reduction(items, figures.delta)]


def _hedge_by_tenor(items: list[pm.UnitItem], _: pm.RiskUnitFigures
                    ) -> list[list[tuple[pm.UnitItem, Decimal]]]:
    return [pm.hedge_reduction(pm.tenor_groups(items))]


def _none(items: list[pm.UnitItem], _: pm.RiskUnitFigures
          ) -> list[list[tuple[pm.UnitItem, Decimal]]]:
    return []


_STAGES: tuple[tuple[str, Callable[[pm.RiskUnitFigures], Decimal],
                     Callable[[list[pm.UnitItem], pm.RiskUnitFigures],
                              Sequence[Sequence[Close]]]], ...] = (
    ("ddh1", lambda f: f.mr9, _hedge_by_currency),
    ("ddh2", lambda f: max(f.mr1, f.mr6) if f.delta != ZERO else ZERO, _delta),
    ("basis", lambda f: f.mr4, _hedge_by_tenor),
    ("general", lambda f: ZERO, _none),
)
