"""An account's margin figures at one instant: the rules of DESIGN §6 put together (§6.11).

Input: what the account holds (`AccountSnapshot`) and the prices and parameters in force
(`Market`). Output: every figure the contract's `state` shows (`AccountFigures`). Pure: the
application builds both inputs from events; replay at T and the live state call the same code.

Modes (DESIGN §5, 6.11):
- `single_asset`: each settle asset is margined on its own (ratio 1, no tiers); the account's
  ratio is the largest per-asset ratio.
- `multi_asset`: one pool, every asset haircut by its collateral tiers (seed 000/001).
- `portfolio`: risk units by stress tests plus borrowing (PORTFOLIO-MARGIN.md §10.8).
Isolated positions never enter the account figures: they have their own test (§6.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from ledger.numbers import ONE, ZERO
from ledger.rules import portfolio as pm
from ledger.rules.close_fee import (
    bankruptcy_price,
    entry_close_fee,
    fee_to_close,
    initial_margin_with_close_fee,
    liquidation_price_tick,
)
from ledger.rules.collateral import collateral_breakpoints, effective_collateral_usd, equity_usd
from ledger.rules.interest import liability
from ledger.rules.liquidation import (
    IsolatedPosition,
    isolated_liquidation_price,
)
from ledger.rules.maintenance import (
    initial_leverage,
    maintenance_margin,
    maintenance_margin_with_orders,
)
from ledger.rules.options import (
    OptionMarginTerms,
    OptionType,
    black76,
    implied_vol,
    margin_factor,
    short_option_imr,
    short_option_mmr,
)
from ledger.rules.positions import notional, unrealized_pnl
from ledger.rules.ratios import available, is_past_liquidation, margin_level, margin_ratio
from ledger.rules.solve import last_nonpositive
from ledger.rules.terms import (
    STABLECOINS,
    AssetTerms,
    CloseFeeBasis,
    InstrumentTerms,
    MmBasis,
    Mode,
    PortfolioTerms,
    RiskUnitTerms,
)
from ledger.rules.valuation import ask_price, available_in_asset, bid_price, valuation_price
from ledger.times import year_fraction

CROSS = "cross"
ISOLATED = "isolated"


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class PositionState:
    """A one-way position as the account holds it."""

    symbol: str
    margin_type: str  # "cross" or "isolated"
    qty: Decimal  # signed contracts
    entry_price: Decimal
    position_margin: Decimal = ZERO  # isolated only (settle asset; inverse: coin)
    leverage: Decimal = Decimal(10)
    auto_add_margin: bool = False

    @property
    def is_isolated(self) -> bool:
        return self.margin_type == ISOLATED


@dataclass(frozen=True, slots=True)
class RestingOrder:
    qty: Decimal  # contracts
    price: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """The resting orders of one account on one symbol (contract: `open_orders`)."""

    buy: RestingOrder | None = None
    sell: RestingOrder | None = None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    mode: Mode
    balances: Mapping[str, Decimal]
    positions: Sequence[PositionState] = ()
    orders: Mapping[str, OrderBook] = field(default_factory=dict)
    leverage: Mapping[str, Decimal] = field(default_factory=dict)
    spot_in_use: Mapping[str, Decimal | None] = field(default_factory=dict)  # absent/None: auto


@dataclass(frozen=True, slots=True)
class Market:
    """Prices and parameters in force at `at`."""

    at: datetime
    assets: Mapping[str, AssetTerms]
    indexes: Mapping[str, Decimal]
    instruments: Mapping[str, InstrumentTerms]
    marks: Mapping[str, Decimal]
    risk_units: Mapping[str, RiskUnitTerms] = field(default_factory=dict)
    portfolio: PortfolioTerms = PortfolioTerms()
    ivs: Mapping[str, Decimal] = field(default_factory=dict)  # options' mark IV (issue 15)
    # Per-unit option models of this market, by (symbol, mark): every account holding the same
    # option shares one (issue 15, speed). Not a parameter: `replace` starts a new one.
    option_models: dict[tuple[str, Decimal], pm.OptionHolding | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def index(self, asset: str) -> Decimal | None:
        """Return the asset's USD index; USDT and USDC are 1 until one is sent."""
        price = self.indexes.get(asset)
        if price is None and asset in STABLECOINS:
            return Decimal(1)
        return price

    def asset_terms(self, asset: str) -> AssetTerms:
        return self.assets.get(asset) or AssetTerms(asset)

    def mark(self, symbol: str, fallback: Decimal) -> Decimal:
        """Return the mark; a symbol that never had one is valued at `fallback` (its entry)."""
        return self.marks.get(symbol, fallback)

    def with_mark(self, symbol: str, price: Decimal) -> Market:
        return replace(self, marks={**self.marks, symbol: price})


# ----------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class PositionFigures:
    symbol: str
    margin_type: str
    side: str
    qty: Decimal  # magnitude, contracts
    entry_price: Decimal
    mark_price: Decimal
    notional: Decimal
    unrealized_pnl: Decimal
    leverage: Decimal
    position_margin: Decimal | None
    maintenance_margin: Decimal | None
    initial_margin: Decimal | None
    liquidation_price: Decimal | None
    auto_add_margin: bool
    # issue 14 (convB)
    liquidation_price_tick: Decimal | None = None
    bankruptcy_price: Decimal | None = None
    mark_value: Decimal | None = None  # options: q·F·mark, settle asset (issue 15)
    delta: Decimal | None = None  # options: q·F·Black-76 delta, coins of the base


@dataclass(frozen=True, slots=True)
class CollateralFigures:
    equity: Decimal
    index_price: Decimal | None
    effective_usd: Decimal


@dataclass(frozen=True, slots=True)
class MarginFigures:
    equity_usd: Decimal
    effective_equity_usd: Decimal
    maintenance_margin_usd: Decimal
    initial_margin_usd: Decimal
    margin_ratio: Decimal | None
    margin_level: Decimal | None
    available_usd: Decimal
    max_withdrawable: Mapping[str, Decimal]
    borrowing_mmr_usd: Decimal = ZERO
    borrowing_imr_usd: Decimal = ZERO
    risk_units: Mapping[str, pm.RiskUnitFigures] = field(default_factory=dict)
    past_liquidation: bool = False
    at_call_level: bool = False


@dataclass(frozen=True, slots=True)
class AccountFigures:
    collateral: Mapping[str, CollateralFigures]
    debts: Mapping[str, Decimal]
    positions: Sequence[PositionFigures]
    margin: MarginFigures
    available_by_asset: Mapping[str, Decimal] = field(default_factory=dict)  # issue 14


# ----------------------------------------------------------------------------- core


@dataclass(slots=True)
class _Position:
    state: PositionState
    terms: InstrumentTerms
    mark: Decimal
    upl: Decimal
    notional: Decimal  # at mark
    mm: Decimal  # the position alone, close fee included
    im: Decimal
    option: pm.OptionHolding | None = None  # issue 15


@dataclass(slots=True)
class _Core:
    """The account-level numbers every figure derives from."""

    equity: dict[str, Decimal]  # coin equity e_a
    effective: dict[str, Decimal]  # USD each asset contributes to effective equity
    mm: dict[str, Decimal]  # cross requirement per settle asset (orders rule included)
    im: dict[str, Decimal]  # cross initial margin per settle asset (orders included)
    isolated: dict[str, Decimal]  # isolated position margin per settle asset
    positions: list[_Position]
    equity_usd: Decimal = ZERO
    effective_equity_usd: Decimal = ZERO
    mm_usd: Decimal = ZERO
    im_usd: Decimal = ZERO
    borrowing_mmr_usd: Decimal = ZERO
    borrowing_imr_usd: Decimal = ZERO
    units: dict[str, pm.RiskUnitFigures] = field(default_factory=dict)
    available_usd: Decimal = ZERO
    ratio: Decimal | None = None
    level: Decimal | None = None
    past_liquidation: bool = False


def _leverage(account: AccountSnapshot, terms: InstrumentTerms) -> Decimal:
    return account.leverage.get(terms.symbol) or initial_leverage(terms.risk_tiers)


def _position(
    state: PositionState, terms: InstrumentTerms, market: Market, portfolio: bool
) -> _Position:
    if terms.is_option:
        return _option_position(state, terms, market, portfolio)
    inverse = terms.is_inverse
    mark = market.mark(state.symbol, state.entry_price)
    upl = unrealized_pnl(state.qty, state.entry_price, mark, terms.contract_size, inverse)
    if portfolio:  # the unit carries the requirement: no position-level margin
        return _Position(state, terms, mark, upl,
                         notional(state.qty, terms.contract_size, mark, inverse), ZERO, ZERO)
    basis_price = state.entry_price if terms.mm_basis is MmBasis.ENTRY else mark
    mm_notional = notional(state.qty, terms.contract_size, basis_price, inverse)
    mm = maintenance_margin(mm_notional, terms.risk_tiers)
    if terms.close_fee_in_mm:
        mm += _close_fee_in_mm(state, terms, mark)
    if state.is_isolated:
        entry_notional = notional(state.qty, terms.contract_size, state.entry_price, inverse)
        im = entry_notional / state.leverage
    else:
        im = mm_notional / state.leverage
    if terms.im_includes_close_fee:  # issue 14: Bybit USDC display
        im = initial_margin_with_close_fee(im, entry_close_fee(
            state.qty, terms.contract_size, state.entry_price, state.leverage,
            terms.taker_fee_rate, inverse))
    return _Position(
        state=state,
        terms=terms,
        mark=mark,
        upl=upl,
        notional=notional(state.qty, terms.contract_size, mark, inverse),
        mm=mm,
        im=im,
    )


def _close_fee_in_mm(state: PositionState, terms: InstrumentTerms, mark: Decimal) -> Decimal:
    """The close fee in MM by `close_fee_basis` (issue 14): at the bankruptcy price from entry
    and leverage (`entry`, `reserved`), or at the mark being tested (`liquidation_price`)."""
    if terms.close_fee_basis is CloseFeeBasis.LIQUIDATION_PRICE:
        return fee_to_close(state.qty, terms.contract_size, mark, terms.taker_fee_rate,
                            terms.is_inverse)
    return entry_close_fee(state.qty, terms.contract_size, state.entry_price, state.leverage,
                           terms.taker_fee_rate, terms.is_inverse)


def option_holding(state: PositionState, terms: InstrumentTerms, market: Market, mark: Decimal
                   ) -> pm.OptionHolding | None:
    """Return the option as its unit sees it (docs/options.md): the forward is the base's index
    in the option's price unit (settle asset; USD for coin-margined), the volatility the mark
    IV, else the one implied by the mark; None without an index, or past expiry."""
    key = (terms.symbol, mark)
    if key not in market.option_models:
        market.option_models[key] = _option_model(terms, market, mark)
    model = market.option_models[key]
    if model is None:
        return None
    return pm.OptionHolding(model.option_type, model.strike, model.expiry, model.years,
                            state.qty * terms.contract_size, model.forward, model.vol,
                            model.usd, model.index, model.rate, model.at_rate)


def _option_model(terms: InstrumentTerms, market: Market, mark: Decimal
                  ) -> pm.OptionHolding | None:
    """Return the option's per-unit holding (units 1) in this market, greeks included."""
    assert terms.expiry is not None and terms.strike is not None and terms.option_type
    base, settle = market.index(terms.base), market.index(terms.settle)
    years = year_fraction(market.at, terms.expiry)
    if base is None or settle is None or years <= ZERO:
        return None
    option_type = OptionType(terms.option_type)
    forward = base if terms.coin_margined else base / settle
    price = mark * base if terms.coin_margined else mark  # in the forward's unit
    rate = (market.risk_units.get(terms.base) or RiskUnitTerms(terms.base)).rate
    vol = market.ivs.get(terms.symbol) or implied_vol(option_type, forward, terms.strike,
                                                      years, price, rate)
    if vol is None:
        return None
    return pm.OptionHolding(option_type, terms.strike, terms.expiry, years, ONE, forward, vol,
                            ONE if terms.coin_margined else settle, base, rate,
                            black76(option_type, forward, terms.strike, years, vol, rate))


def _option_position(
    state: PositionState, terms: InstrumentTerms, market: Market, portfolio: bool
) -> _Position:
    """An option (issue 15): its mark value q·F·M counts in the settle coin's equity (long an
    asset, short a liability) in place of unrealised PnL; outside portfolio mode a short
    carries OKX's option margin (`short_option_mmr`/`imr` × |q|·F), a long none."""
    mark = market.mark(state.symbol, state.entry_price)
    units = state.qty * terms.contract_size
    holding = option_holding(state, terms, market, mark)
    mm = im = ZERO
    if state.qty < ZERO and not portfolio:
        base, settle = market.index(terms.base), market.index(terms.settle)
        assert terms.strike is not None and terms.option_type is not None
        underlying = ((base or ZERO) if terms.coin_margined
                      else (base or ZERO) / (settle or ONE))
        option_type = OptionType(terms.option_type)
        option_terms = OptionMarginTerms(terms.option_a, terms.option_b, terms.option_c)
        factor = margin_factor(abs(state.qty), terms.margin_factor_tiers)
        if underlying > ZERO:
            mm = -units * short_option_mmr(option_type, mark, underlying, factor, option_terms,
                                           terms.coin_margined)
            im = -units * short_option_imr(option_type, underlying, terms.strike, mark,
                                           underlying, factor, option_terms,
                                           terms.coin_margined)
    return _Position(state, terms, mark, units * mark, abs(units) * mark, mm, im, holding)


def _increasing_order(
    book: OrderBook, qty: Decimal, terms: InstrumentTerms
) -> RestingOrder | None:
    """Return the resting order on the increasing side: the position's side, or, while flat,
    the larger of the buy and sell notionals (DESIGN 6.11)."""
    if qty > ZERO:
        return book.buy
    if qty < ZERO:
        return book.sell
    if book.buy is None or book.sell is None:
        return book.buy or book.sell
    size = terms.contract_size
    buy = notional(book.buy.qty, size, book.buy.price, terms.is_inverse)
    sell = notional(book.sell.qty, size, book.sell.price, terms.is_inverse)
    return book.buy if buy >= sell else book.sell


def _add(totals: dict[str, Decimal], key: str, amount: Decimal) -> None:
    totals[key] = totals.get(key, ZERO) + amount


def _core(account: AccountSnapshot, market: Market) -> _Core:
    core = _Core(equity={}, effective={}, mm={}, im={}, isolated={}, positions=[])
    for asset, balance in account.balances.items():
        core.equity[asset] = balance
    cross_by_symbol: dict[str, _Position] = {}
    for state in account.positions:
        terms = market.instruments[state.symbol]
        position = _position(state, terms, market, account.mode is Mode.PORTFOLIO)
        core.positions.append(position)
        settle = terms.settle
        core.equity.setdefault(settle, ZERO)
        if state.is_isolated:
            _add(core.isolated, settle, state.position_margin)
            continue
        cross_by_symbol[state.symbol] = position
        _add(core.equity, settle, position.upl)
        if account.mode is not Mode.PORTFOLIO:  # the unit carries a portfolio's requirement
            _add(core.mm, settle, position.mm)
            _add(core.im, settle, position.im)
    _apply_orders(core, account, market, cross_by_symbol)
    if account.mode is Mode.SINGLE_ASSET:
        _single_asset_totals(core, market)
    elif account.mode is Mode.MULTI_ASSET:
        _pooled_totals(core, market, buffered=True)
    else:
        _portfolio_totals(core, account, market)
    return core


def _apply_orders(
    core: _Core, account: AccountSnapshot, market: Market, cross: Mapping[str, _Position]
) -> None:
    """Add resting orders: IM of the increasing side, and the orders rule of §6.2 for MM."""
    for symbol, book in account.orders.items():
        terms = market.instruments[symbol]
        position = cross.get(symbol)
        qty = position.state.qty if position else ZERO
        order = _increasing_order(book, qty, terms)
        if order is None:
            continue
        leverage = position.state.leverage if position else _leverage(account, terms)
        order_notional = notional(order.qty, terms.contract_size, order.price, terms.is_inverse)
        order_im = order_notional / leverage
        if terms.im_includes_close_fee:  # issue 14: the fee to close at the order's price
            buys = order is book.buy
            order_im = initial_margin_with_close_fee(order_im, entry_close_fee(
                order.qty if buys else -order.qty, terms.contract_size, order.price, leverage,
                terms.taker_fee_rate, terms.is_inverse))
        _add(core.im, terms.settle, order_im)
        if account.mode is Mode.PORTFOLIO:
            continue  # orders add initial margin only (PORTFOLIO-MARGIN §10.8)
        basis_notional = ZERO
        alone = ZERO
        if position is not None:
            price = (position.state.entry_price if terms.mm_basis is MmBasis.ENTRY
                     else position.mark)
            basis_notional = notional(qty, terms.contract_size, price, terms.is_inverse)
            alone = maintenance_margin(basis_notional, terms.risk_tiers)
        combined = maintenance_margin_with_orders(basis_notional, order_notional,
                                                  terms.risk_tiers)
        _add(core.mm, terms.settle, combined - alone)


def _usd(amounts: Mapping[str, Decimal], market: Market, at_ask: bool = False) -> Decimal:
    """Return Σ amount × index (`at_ask`: × the asset's ask, issue 14)."""
    total = ZERO
    for asset, amount in amounts.items():
        price = market.index(asset)
        if price is not None:
            if at_ask:
                price = ask_price(price, market.asset_terms(asset).ask_buffer)
            total += amount * price
    return total


def _single_asset_totals(core: _Core, market: Market) -> None:
    """Each settle asset on its own, ratio 1 without tiers (DESIGN 6.11)."""
    for asset, equity in core.equity.items():
        core.effective[asset] = equity_usd(equity, market.index(asset))
    core.equity_usd = sum(core.effective.values(), ZERO)
    core.effective_equity_usd = core.equity_usd
    core.mm_usd = _usd(core.mm, market)
    core.im_usd = _usd(core.im, market)
    free = {asset: _single_asset_free(core, asset) for asset in core.equity}
    core.available_usd = _usd(free, market)
    ratios: list[Decimal] = []
    levels: list[Decimal] = []
    for asset, requirement in core.mm.items():
        if requirement <= ZERO:
            continue
        equity = core.equity.get(asset, ZERO)
        if equity <= ZERO:
            core.past_liquidation = True
            levels.append(equity / requirement)
            continue
        ratios.append(requirement / equity)
        levels.append(equity / requirement)
    if core.past_liquidation:
        core.ratio = None
    else:
        core.ratio = max(ratios) if ratios else None
        core.past_liquidation = core.ratio is not None and core.ratio >= 1
    core.level = min(levels) if levels else None


def _pooled_totals(core: _Core, market: Market, buffered: bool = True) -> None:
    """One pool of haircut collateral (multi-asset mode, seed 000/001). With `buffered`
    (multi-asset mode, issue 14) equity counts at the bid or the ask and margins at the ask."""
    for asset, equity in core.equity.items():
        terms = market.asset_terms(asset)
        price = market.index(asset)
        if buffered and price is not None:
            price = valuation_price(equity, price, terms.bid_buffer, terms.ask_buffer)
        core.effective[asset] = effective_collateral_usd(
            equity, price, terms.collateral_tiers, terms.tier_basis
        )
        core.equity_usd += equity_usd(equity, price)
    core.effective_equity_usd = sum(core.effective.values(), ZERO)
    core.mm_usd = _usd(core.mm, market, buffered)
    core.im_usd = _usd(core.im, market, buffered) + _usd(core.isolated, market, buffered)
    _ratios(core)


def _ratios(core: _Core) -> None:
    core.available_usd = available(core.effective_equity_usd, core.im_usd)
    core.ratio = margin_ratio(core.mm_usd, core.effective_equity_usd)
    core.level = margin_level(core.effective_equity_usd, core.mm_usd)
    core.past_liquidation = is_past_liquidation(core.mm_usd, core.effective_equity_usd)


def unit_items(
    positions: Iterable[tuple[PositionState, InstrumentTerms, Decimal]], market: Market
) -> dict[str, list[pm.UnitItem]]:
    """Return each underlying's derivative items (PORTFOLIO-MARGIN §10.3), by base asset."""
    items: dict[str, list[pm.UnitItem]] = {}
    for state, terms, mark in positions:
        settle_index = market.index(terms.settle) or ZERO
        items.setdefault(terms.base, []).append(pm.UnitItem(
            symbol=terms.symbol,
            kind=terms.kind,
            qty=state.qty,
            contract_size=terms.contract_size,
            mark=mark,
            settle_index=Decimal(1) if terms.is_inverse else settle_index,
            margin_currency="USD" if terms.is_inverse else terms.settle,
            expiry=terms.expiry,
            taker_fee_rate=terms.taker_fee_rate,
            option_delta=_option_unit_delta(state, terms, market, mark),
        ))
    return items


def _option_unit_delta(state: PositionState, terms: InstrumentTerms, market: Market,
                       mark: Decimal) -> Decimal | None:
    """An option's Black-76 delta per unit of base (issue 15), None for other kinds."""
    if not terms.is_option:
        return None
    holding = option_holding(state, terms, market, mark)
    if holding is None:
        return ZERO
    rate = (market.risk_units.get(terms.base) or RiskUnitTerms(terms.base)).rate
    return holding.greeks(rate).delta


def _portfolio_totals(core: _Core, account: AccountSnapshot, market: Market) -> None:
    """Risk units plus borrowing (PORTFOLIO-MARGIN.md §10.8)."""
    _pooled_totals(core, market, buffered=False)  # bid/ask buffers: multi-asset mode only
    order_im_usd = core.im_usd  # only orders are in core.im in portfolio mode
    aggregates: dict[str, pm.UnitAggregate] = {}
    for position in core.positions:  # one pass: each unit aggregated once (issue 7, speed)
        terms, qty = position.terms, position.state.qty
        if terms.is_option:  # issue 15: re-priced in the unit's grid
            unit = aggregates.setdefault(terms.base, pm.UnitAggregate())
            option = position.option
            if option is not None:
                assert option.rate is not None  # priced at the unit's rate (`_option_model`)
                unit.add_option(option, option.rate, terms.settle)
            continue
        inverse = terms.is_inverse
        settle_index = ONE if inverse else (market.index(terms.settle) or ZERO)
        aggregates.setdefault(terms.base, pm.UnitAggregate()).add(
            pm.exposure(qty, terms.contract_size, position.mark, inverse),
            pm.cash(qty, terms.contract_size, position.mark, settle_index, inverse),
            terms.expiry if terms.is_future else None,
            "USD" if inverse else terms.settle,
        )
    underlyings = set(aggregates) | {
        asset for asset, amount in account.spot_in_use.items()
        if amount is not None and amount > ZERO and core.equity.get(asset, ZERO) > ZERO
    }
    sum_mmr = ZERO
    sum_imr = ZERO
    for underlying in sorted(underlyings):
        unit_terms = market.risk_units.get(underlying) or RiskUnitTerms(underlying)
        figures = pm.unit_figures(
            aggregates.get(underlying) or pm.UnitAggregate(),
            max(ZERO, core.equity.get(underlying, ZERO)),
            account.spot_in_use.get(underlying),
            market.index(underlying) or ZERO,
            unit_terms,
            market.portfolio.imr_factor,
            market.at,
        )
        if underlying not in aggregates and figures.spot_in_use == ZERO:
            continue
        core.units[underlying] = figures
        sum_mmr += figures.mmr
        sum_imr += figures.imr
    borrowed = []
    for asset, equity in core.equity.items():
        if equity < ZERO:
            asset_terms = market.asset_terms(asset)
            borrowed.append((liability(equity), market.index(asset) or ZERO,
                             asset_terms.borrow_mmr_rate, asset_terms.borrow_imr_rate))
    core.borrowing_mmr_usd, core.borrowing_imr_usd = pm.borrowing_margin(borrowed)
    core.mm_usd = sum_mmr + core.borrowing_mmr_usd
    core.im_usd = sum_imr + core.borrowing_imr_usd + order_im_usd
    _ratios(core)


# ----------------------------------------------------------------------------- figures


def evaluate(account: AccountSnapshot, market: Market, *, limits: bool = True) -> AccountFigures:
    """Return every figure of the account at the market's instant (DESIGN 6.11).

    `limits=False` skips what needs re-evaluation (cross liquidation prices and
    max_withdrawable), for sweeps that only need ratios.
    """
    core = _core(account, market)
    positions = [
        _position_figures(position, account, market, core, limits)
        for position in sorted(core.positions,
                               key=lambda p: (p.state.symbol, p.state.margin_type))
    ]
    collateral = {
        asset: CollateralFigures(equity, market.index(asset), core.effective.get(asset, ZERO))
        for asset, equity in sorted(core.equity.items())
    }
    withdrawable = (
        {asset: max_withdrawable(account, market, asset, core)
         for asset in sorted(account.balances)}
        if limits else {}
    )
    margin = _margin(core, withdrawable)
    debts = {asset: liability(equity) for asset, equity in sorted(core.equity.items())}
    return AccountFigures(collateral=collateral, debts=debts, positions=positions, margin=margin,
                          available_by_asset=_available_by_asset(account, market, core))


def _available_by_asset(
    account: AccountSnapshot, market: Market, core: _Core
) -> dict[str, Decimal]:
    """Each asset's available amount (issue 14): single-asset mode, what the asset leaves free
    itself; otherwise the USD available converted at the asset's ask (Binance multi-assets:
    416.02 / 0.99495 = 418.13 USDT). Assets without an index are left out."""
    result: dict[str, Decimal] = {}
    for asset in sorted(core.equity):
        if account.mode is Mode.SINGLE_ASSET:
            result[asset] = _single_asset_free(core, asset)
            continue
        index = market.index(asset)
        if index is None or index <= ZERO:
            continue
        ask = ask_price(index, market.asset_terms(asset).ask_buffer)
        result[asset] = available_in_asset(core.available_usd, ask)
    return result


def margin_figures(account: AccountSnapshot, market: Market) -> MarginFigures:
    """Return only the account-level margin figures (no positions, no limits): what sweeps
    and batch risk runs need."""
    return _margin(_core(account, market), {})


def _margin(core: _Core, withdrawable: Mapping[str, Decimal]) -> MarginFigures:
    return MarginFigures(
        equity_usd=core.equity_usd,
        effective_equity_usd=core.effective_equity_usd,
        maintenance_margin_usd=core.mm_usd,
        initial_margin_usd=core.im_usd,
        margin_ratio=core.ratio,
        margin_level=core.level,
        available_usd=core.available_usd,
        max_withdrawable=withdrawable,
        borrowing_mmr_usd=core.borrowing_mmr_usd,
        borrowing_imr_usd=core.borrowing_imr_usd,
        risk_units=core.units,
        past_liquidation=core.past_liquidation,
    )


def _position_figures(
    position: _Position, account: AccountSnapshot, market: Market, core: _Core, limits: bool
) -> PositionFigures:
    state, terms = position.state, position.terms
    portfolio = account.mode is Mode.PORTFOLIO
    if state.is_isolated:
        liquidation = isolated_liquidation_price(isolated_view(state, terms), position.mark)
    elif portfolio or not limits or terms.is_option:
        liquidation = None
    else:
        liquidation = cross_liquidation_price(account, market, state.symbol)
    is_long = state.qty > ZERO
    tick = terms.price_tick
    return PositionFigures(
        symbol=state.symbol,
        margin_type=state.margin_type,
        side="long" if state.qty > ZERO else "short",
        qty=abs(state.qty),
        entry_price=state.entry_price,
        mark_price=position.mark,
        notional=position.notional,
        unrealized_pnl=(position.state.qty * terms.contract_size
                        * (position.mark - state.entry_price)
                        if terms.is_option else position.upl),
        leverage=state.leverage,
        position_margin=state.position_margin if state.is_isolated else None,
        maintenance_margin=None if portfolio else position.mm,
        initial_margin=None if portfolio else position.im,
        liquidation_price=liquidation,
        auto_add_margin=state.auto_add_margin if state.is_isolated else False,
        liquidation_price_tick=(None if liquidation is None or tick is None
                                else liquidation_price_tick(liquidation, tick, is_long)),
        bankruptcy_price=None if portfolio or terms.is_option else bankruptcy_price(
            state.entry_price, state.leverage, is_long, terms.is_inverse),
        **_option_figures(position, market),
    )


def _option_figures(position: _Position, market: Market) -> dict[str, Decimal | None]:
    """An option's extra figures (issue 15): mark value and delta (coins); {} otherwise."""
    if not position.terms.is_option:
        return {}
    holding = position.option
    rate = (market.risk_units.get(position.terms.base) or RiskUnitTerms(position.terms.base)
            ).rate
    delta = None if holding is None else holding.units * holding.greeks(rate).delta
    return {"mark_value": position.upl, "delta": delta}


def isolated_view(state: PositionState, terms: InstrumentTerms) -> IsolatedPosition:
    """Return what the isolated-position rules need of a position and its instrument."""
    return IsolatedPosition(
        qty=state.qty,
        entry_price=state.entry_price,
        contract_size=terms.contract_size,
        position_margin=state.position_margin,
        leverage=state.leverage,
        inverse=terms.is_inverse,
        tiers=terms.risk_tiers,
        mm_basis=terms.mm_basis,
        close_fee_rate=terms.taker_fee_rate if terms.close_fee_in_mm else None,
        close_fee_basis=terms.close_fee_basis,
    )


# ----------------------------------------------------------------------------- limits


def _shortfall(account: AccountSnapshot, market: Market, settle: str) -> Decimal:
    """Return MM − effective equity of the pool that margins `settle` (> 0: past liquidation)."""
    core = _core(account, market)
    if account.mode is Mode.SINGLE_ASSET:
        return core.mm.get(settle, ZERO) - core.equity.get(settle, ZERO)
    return core.mm_usd - core.effective_equity_usd


def cross_liquidation_price(
    account: AccountSnapshot, market: Market, symbol: str
) -> Decimal | None:
    """Return the mark of `symbol` at which margin_ratio reaches 1, every other price fixed.

    Long: the highest such mark; short: the lowest. None when there is none (DESIGN 6.11).
    Linear contracts are solved in the price, inverse ones in x = 1/price, where the account's
    figures are piecewise linear, so the root is exact.
    """
    state = next(p for p in account.positions if p.symbol == symbol and not p.is_isolated)
    terms = market.instruments[symbol]
    is_long = state.qty > ZERO
    mark = market.mark(symbol, state.entry_price)

    def shortfall_at(price: Decimal) -> Decimal:
        return _shortfall(account, market.with_mark(symbol, price), terms.settle)

    if not terms.is_inverse:
        root = _liquidation_boundary(shortfall_at, mark, safe_upwards=is_long, lowest=ZERO)
        return None if root is None else _snap(root, shortfall_at, mark)

    def shortfall_in_x(x: Decimal) -> Decimal:
        return shortfall_at(ONE / x)

    start = ONE / mark
    # A higher price is a lower x: a long is safe as x falls, a short as x rises.
    root = _liquidation_boundary(shortfall_in_x, start, safe_upwards=not is_long,
                                 lowest=start * _TINY)
    return None if root is None else _snap(ONE / root, shortfall_at, mark)


def _snap(root: Decimal, shortfall: Callable[[Decimal], Decimal], mark: Decimal) -> Decimal:
    """Return the shortest decimal near `root` at which the shortfall is exactly 0, if any.

    The solver's root carries 34 digits; when the true price has fewer (66,000 computed
    through 1/66,000 comes back as 66,000.00…01), the shorter number meets the equation to the
    last digit's noise (a wrong rounding at 28 digits or fewer moves the shortfall by about
    its scale × 1e-28, a hundred times more than allowed), and it is the exact root.
    """
    # Last-digit noise of the shortfall near the root, against the size of its values.
    allowed = abs(shortfall(root)) + abs(shortfall(mark)) * Decimal("1e-30")
    for digits in (12, 16, 20, 24, 28):
        candidate = root.quantize(ONE.scaleb(root.adjusted() - digits + 1),
                                  rounding=ROUND_HALF_EVEN)
        if candidate != root and candidate > ZERO and abs(shortfall(candidate)) <= allowed:
            return candidate.normalize()
    return root


_TINY = Decimal("1e-12")
_DOUBLINGS = 200


def _liquidation_boundary(
    shortfall: Callable[[Decimal], Decimal], start: Decimal, *, safe_upwards: bool,
    lowest: Decimal,
) -> Decimal | None:
    """Return where `shortfall(x) = MM − equity` (monotone in x) reaches 0.

    shortfall ≥ 0 is liquidation. `safe_upwards`: shortfall falls as x grows, and the answer is
    the highest liquidated x; otherwise it rises with x and the answer is the lowest one.
    """
    if safe_upwards:
        if shortfall(lowest) < ZERO:
            return None  # safe even at the lowest x: never liquidated
        high = _first(lambda x: shortfall(x) < ZERO, start)
        if high is None:
            return None
        return last_nonpositive(lambda x: -shortfall(x), lowest, high)
    if shortfall(lowest) >= ZERO:
        return None
    top = _first(lambda x: shortfall(x) >= ZERO, start)
    if top is None:
        return None
    # inf{x : shortfall(x) ≥ 0} = −sup{y : shortfall(−y) ≥ 0}, with y = −x rising.
    return -last_nonpositive(lambda y: -shortfall(-y), -top, -lowest)


def _first(condition: Callable[[Decimal], bool], start: Decimal) -> Decimal | None:
    """Return start, 2·start, 4·start, … : the first that meets `condition`, or None."""
    x = start if start > ZERO else ONE
    for _ in range(_DOUBLINGS):
        if condition(x):
            return x
        x = x * 2
    return None


def max_withdrawable(
    account: AccountSnapshot, market: Market, asset: str, core: _Core | None = None
) -> Decimal:
    """Return the largest withdrawal of `asset` that keeps `available_usd ≥ 0` and does not
    exceed the wallet (DESIGN §6.3; exact, tiers included; PORTFOLIO-MARGIN §10.8)."""
    core = core or _core(account, market)
    wallet = account.balances.get(asset, ZERO)
    if wallet <= ZERO:
        return ZERO
    if account.mode is Mode.SINGLE_ASSET:
        return max(ZERO, min(wallet, _single_asset_free(core, asset)))
    if core.available_usd < ZERO:
        return ZERO

    def used(w: Decimal) -> Decimal:
        return -available_after_withdrawal(account, market, asset, w)

    if used(wallet) <= ZERO:
        return wallet
    limit = last_nonpositive(used, ZERO, wallet, _withdrawal_hints(core, market, asset))
    # A root that does not terminate is cut at 34 digits: step down to the last amount that
    # is still allowed, so withdrawing exactly max_withdrawable is never refused.
    for _ in range(8):
        if used(limit) <= ZERO or limit <= ZERO:
            break
        limit = limit.next_minus()
    return max(limit, ZERO)


def available_after_withdrawal(
    account: AccountSnapshot, market: Market, asset: str, amount: Decimal
) -> Decimal:
    """Return `available_usd` once `amount` of `asset` has left the wallet."""
    balances = dict(account.balances)
    balances[asset] = balances.get(asset, ZERO) - amount
    core = _core(replace(account, balances=balances), market)
    if account.mode is Mode.SINGLE_ASSET:
        return _single_asset_free(core, asset)
    return core.available_usd


def _single_asset_free(core: _Core, asset: str) -> Decimal:
    """What an asset leaves free in single-asset mode: its equity less the cross initial margin
    and the isolated position margin it settles (DESIGN 6.11)."""
    return core.equity.get(asset, ZERO) - core.im.get(asset, ZERO) - core.isolated.get(
        asset, ZERO)


def _withdrawal_hints(core: _Core, market: Market, asset: str) -> Iterable[Decimal]:
    terms = market.asset_terms(asset)
    equity = core.equity.get(asset, ZERO)
    index = market.index(asset)
    prices = [index]
    if index is not None and terms.bid_buffer > ZERO:  # issue 14: multi-asset values at the bid
        prices.append(bid_price(index, terms.bid_buffer))
    for price in prices:
        for bound in collateral_breakpoints(terms.collateral_tiers, price, terms.tier_basis):
            yield equity - bound


def liquidation_shortfall(figures: AccountFigures, mode: Mode, settle: str,
                          index: Decimal | None) -> Decimal:
    """Return what the insurance fund covers after a liquidation fill, in the settle coin:
    the account's negative equity (single-asset: the settle coin's own equity; otherwise the
    pooled USD equity at the settle coin's index), 0 when it is not negative (issue 3).

    Example: multi-asset equity −150 USD, USDT index 1 → 150 USDT; single-asset BTC equity
    −0.002 → 0.002 BTC; without an index price nothing can be valued → 0.
    """
    if mode is Mode.SINGLE_ASSET:
        shortfall = -figures.collateral[settle].equity
    elif not index:
        return ZERO
    else:
        shortfall = -figures.margin.equity_usd / index
    return max(shortfall, ZERO)
