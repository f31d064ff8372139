"""Portfolio margin: risk units, their stress figures, borrowing, the liquidation plan's legs.

PORTFOLIO-MARGIN.md 10.3-10.10 (seed 003). One risk unit per underlying `U` holds the account's
cross derivatives on `U` and the spot it puts in use. Each position has two measures (10.3): its
coin exposure `x` (linear `q·F`, inverse `q·F/M`), which the price shocks move, and its cash
delta `c` (linear `q·F·M·I_settle`, inverse `q·F`), on which basis (MR4), the minimum charge
(MR7) and the depeg charge (MR9) are sized. The unit requirement is OKX's public rule

    MMR_U = max(max(MR1, MR2, MR6) + MR3 + MR4 + MR5 + MR9, MR7),  IMR_U = imr_factor · MMR_U

with MR2 = MR3 = MR5 = 0 (options only, 10.1). Every figure is an exact `Decimal`, never rounded;
the only inexact steps are the quotients `q·F/M` (inverse exposure) and the pro-rata fractions of
the liquidation legs, kept at the context's 34 digits.

Example (PM-01, OKX position builder): short 0.1 BTC perpetual, index 97,034.243706, mark
97,093.7, USDT index 0.99954 → MR1 = MR6 = 1,164.410924472, MR4 = 19.4098073796,
MR7 = 43.6720666041, MMR = 1,183.8207318516, IMR = 1,538.96695140708.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from ledger.numbers import ZERO
from ledger.rules.options import Greeks, OptionType, black76
from ledger.rules.positions import fill_fee
from ledger.rules.terms import Kind, MultiplierTier, RateBand, RiskUnitTerms
from ledger.times import to_micros, year_fraction

PERPETUAL_BUCKET = "perpetual"


@dataclass(frozen=True, slots=True)
class UnitItem:
    """One derivative position of a risk unit (PORTFOLIO-MARGIN.md 10.3)."""

    symbol: str
    kind: Kind
    qty: Decimal  # signed contracts, long > 0
    contract_size: Decimal  # coins (linear) or USD (inverse) per contract
    mark: Decimal  # M_i
    settle_index: Decimal  # index of the settle asset (linear); 1 for inverse (unused)
    margin_currency: str  # settle asset for linear ("USDT", "USDC"), "USD" for inverse
    expiry: datetime | None  # None for perpetuals
    taker_fee_rate: Decimal  # the liquidation plan's legs pay it
    option_delta: Decimal | None = None  # options: Black-76 delta per unit of base (issue 15)

    @property
    def is_inverse(self) -> bool:
        return self.kind is Kind.INVERSE_PERPETUAL

    @property
    def is_option(self) -> bool:
        return self.kind is Kind.OPTION

    @property
    def is_perpetual(self) -> bool:
        return self.kind in (Kind.LINEAR_PERPETUAL, Kind.INVERSE_PERPETUAL)

    @property
    def is_future(self) -> bool:
        return self.kind is Kind.LINEAR_FUTURE


@dataclass(frozen=True, slots=True)
class RiskUnitFigures:
    """A unit's figures as state shows them (10.12): USD, except `delta`/`spot_in_use` (coins)."""

    mr1: Decimal
    mr2: Decimal
    mr3: Decimal
    mr4: Decimal
    mr5: Decimal
    mr6: Decimal
    mr7: Decimal
    mr9: Decimal
    mmr: Decimal
    imr: Decimal
    delta: Decimal
    delta_usd: Decimal
    spot_in_use: Decimal
    mr8: Decimal = ZERO  # short-option minimum charge (issue 15)


# --- 10.3 exposures and spot in use ---------------------------------------------------------


def coin_exposure(item: UnitItem) -> Decimal:
    """Return the position's exposure x in coins of the underlying (signed, long > 0).

    Linear `q·F`; inverse `q·F/M` (its face value in coins at the mark: 10.3 shows that with the
    coin equity as the holding this splits the account's USD P&L exactly). The inverse quotient
    is not always exact; it keeps 34 digits. PORTFOLIO-MARGIN.md 10.3.
    Examples: −100 × 0.001 BTC → −0.1; inverse −500 × 100 USD at mark 50,000 → −1.
    An option's exposure is its delta, q·F·Δ (issue 15; 0 without a price model).
    """
    if item.is_option:
        return item.qty * item.contract_size * (item.option_delta or ZERO)
    return exposure(item.qty, item.contract_size, item.mark, item.is_inverse)


def exposure(qty: Decimal, contract_size: Decimal, mark: Decimal, inverse: bool) -> Decimal:
    """Return x from a position's numbers: q·F (linear) or q·F/M (inverse). 10.3."""
    if inverse:
        return qty * contract_size / mark
    return qty * contract_size


def cash(
    qty: Decimal, contract_size: Decimal, mark: Decimal, settle_index: Decimal, inverse: bool
) -> Decimal:
    """Return c from a position's numbers: q·F·M·I_settle (linear) or q·F (inverse). 10.3."""
    if inverse:
        return qty * contract_size
    return qty * contract_size * mark * settle_index


def cash_delta(item: UnitItem) -> Decimal:
    """Return the position's cash delta c in USD (signed, long > 0).

    Linear `q·F·M·I_settle` (valued at its own mark and settle index); inverse `q·F` (face
    value). PORTFOLIO-MARGIN.md 10.3.
    Example (PM-01): −100 × 0.001 × 97,093.7 × 0.99954 = −9,704.9036898.
    """
    return cash(item.qty, item.contract_size, item.mark, item.settle_index, item.is_inverse)


def derivatives_delta(items: Iterable[UnitItem]) -> Decimal:
    """Return D_U = Σ x_i over the unit's positions (coins). PORTFOLIO-MARGIN.md 10.3.

    Example: short 10 BTC perpetual and long 2 BTC future → −8.
    """
    return sum((coin_exposure(item) for item in items), ZERO)


@dataclass(frozen=True, slots=True)
class OptionHolding:
    """An option position as its risk unit sees it (issue 15, docs/options.md).

    `units` = q·F (signed units of the base), `forward` the base's price in the option's price
    unit (settle asset; USD for a coin-margined option), `vol` its implied volatility, `usd`
    what one price unit is worth in USD (the settle index; 1 for coin-margined options, which
    are priced in USD here), `years` to expiry at T.
    """

    option_type: OptionType
    strike: Decimal
    expiry: datetime
    years: Decimal
    units: Decimal
    forward: Decimal
    vol: Decimal
    usd: Decimal
    index: Decimal  # the base's USD index (MR8)
    rate: Decimal | None = None  # the rate `at_rate` was priced at
    at_rate: Greeks | None = None

    def greeks(self, rate: Decimal) -> Greeks:
        if self.at_rate is not None and rate == self.rate:
            return self.at_rate
        return black76(self.option_type, self.forward, self.strike, self.years, self.vol, rate)

    def pnl(self, shock: Decimal, vol_shock: Decimal, rate: Decimal) -> Decimal:
        """USD P&L when the forward moves by `shock` and the vol by `vol_shock` (relative)."""
        base = self.greeks(rate).price
        moved = black76(self.option_type, self.forward * (1 + shock), self.strike, self.years,
                        self.vol * (1 + vol_shock), rate).price
        return self.units * self.usd * (moved - base)


@dataclass(slots=True)
class UnitAggregate:
    """What a unit's requirement needs of its positions, gathered in one pass (§10.3–10.7):
    the coin delta D, the gross |c|, and the net cash delta per tenor bucket and per margin
    currency. The MR formulas read only these, so each unit is aggregated once."""

    coins: Decimal = ZERO
    gross: Decimal = ZERO
    buckets: dict[datetime | None, Decimal] = field(default_factory=dict)
    currencies: dict[str, Decimal] = field(default_factory=dict)
    options: list[OptionHolding] = field(default_factory=list)  # issue 15
    option_delta: Decimal = ZERO  # Σ q·F·Δ of the options (coins)

    def add_option(self, holding: OptionHolding, rate: Decimal, currency: str) -> None:
        """Add an option: its delta joins D_U and its delta cash the gross and the currency
        nets (MR7, MR9); its value is re-priced in the grid (issue 15)."""
        delta = holding.units * holding.greeks(rate).delta
        cash = delta * holding.forward * holding.usd
        self.options.append(holding)
        self.option_delta += delta
        self.gross += abs(cash)
        self.currencies[currency] = self.currencies.get(currency, ZERO) + cash

    def add(self, coins: Decimal, cash: Decimal, expiry: datetime | None, currency: str) -> None:
        """Add one position: exposure `coins`, cash delta `cash`, its bucket and currency."""
        self.coins += coins
        self.gross += abs(cash)
        self.buckets[expiry] = self.buckets.get(expiry, ZERO) + cash
        self.currencies[currency] = self.currencies.get(currency, ZERO) + cash


def aggregate(items: Iterable[UnitItem]) -> UnitAggregate:
    """Return the unit's aggregate of `items` (one pass; futures bucketed by expiry)."""
    total = UnitAggregate()
    for item in items:
        expiry = item.expiry if item.is_future else None
        assert not item.is_future or expiry is not None, item.symbol
        total.add(coin_exposure(item), cash_delta(item), expiry, item.margin_currency)
    return total


def spot_in_use(holding: Decimal, derivatives_delta: Decimal, fixed: Decimal | None) -> Decimal:
    """Return the spot in use s_U (coins, ≥ 0): automatic when `fixed` is None, else capped.

    `holding` is h_U = max(0, e_U) (a negative coin equity is a liability, never spot; it is
    clamped here too). Automatic: `min(h, max(0, −D))`, long spot offsets a short derivatives
    delta and never more. Fixed A: `min(A, h)`, even when that over-hedges. 10.3.
    Examples (pm-spot-hedge-mr7): h 10, D −10 → auto 10; fixed 6 → 6; fixed 20 → 10.
    """
    held = max(ZERO, holding)
    if fixed is None:
        return min(held, max(ZERO, -derivatives_delta))
    assert fixed >= ZERO, fixed
    return min(fixed, held)


# --- 10.4 MR1 and MR6 -----------------------------------------------------------------------


def worst_loss(delta_coins: Decimal, index: Decimal, shocks: Sequence[Decimal]) -> Decimal:
    """Return max(0, max over s of −X·I·s): the unit's worst loss on a grid of index moves.

    PnL_U(s) = X_U · I_U · s (every item in scope is linear in s), so the worst point of the
    grid is one of its ends: the maximum over the two ends equals the maximum over the grid
    exactly (the grid stays the definition; `grid_worst_loss` evaluates it point by point,
    and a property test holds the two equal). PORTFOLIO-MARGIN.md 10.4.
    Example: X = 2 BTC, I = 60,000, shocks ±12 % → 14,400.
    """
    assert shocks, "a shock grid is never empty"
    value = delta_coins * index
    return max(ZERO, -(value * min(shocks)), -(value * max(shocks)))


def grid_worst_loss(delta_coins: Decimal, index: Decimal, shocks: Sequence[Decimal]) -> Decimal:
    """Return the worst loss over every point of the grid (the definition, for non-linear
    items to come and for the equality test of `worst_loss`)."""
    assert shocks, "a shock grid is never empty"
    return max(ZERO, *(-(delta_coins * index * shock) for shock in shocks))


def mr1(delta_coins: Decimal, index: Decimal, price_shocks: Sequence[Decimal]) -> Decimal:
    """Return MR1 = max(0, max over s in price_shocks of −X·I·s). PORTFOLIO-MARGIN.md 10.4.

    Example (PM-01): X = −0.1 BTC, I = 97,034.243706, shocks to ±12 % →
    0.1 × 97,034.243706 × 0.12 = 1,164.410924472.
    """
    return worst_loss(delta_coins, index, price_shocks)


def mr6(
    delta_coins: Decimal,
    index: Decimal,
    extreme_shocks: Sequence[Decimal],
    extreme_factor: Decimal,
) -> Decimal:
    """Return MR6 = extreme_factor · max(0, max over s in extreme_shocks of −X·I·s). 10.4.

    Example (PM-04): X = −0.1 BTC, I = 97,034.243706, ±24 %, factor 0.5 →
    0.5 × 0.1 × 97,034.243706 × 0.24 = 1,164.410924472 (= MR1 with the BTC parameters).
    """
    return extreme_factor * worst_loss(delta_coins, index, extreme_shocks)


# --- 10.5 MR4 -------------------------------------------------------------------------------


def bucket_rate(expiry: datetime | None, terms: RiskUnitTerms, at: datetime) -> Decimal:
    """Return a derivative bucket's MR4 rate: perpetual `basis_rate`, expiry + annual · τ.

    r_expiry = basis_rate + basis_annual_rate · τ, τ = max(0, expiry − T) / 31,536,000 s
    (10.5, our construction). Example: 0.2 years to expiry, 0.2 % + 5 % × 0.2 = 1.2 %.
    """
    if expiry is None:
        return terms.basis_rate
    return terms.basis_rate + terms.basis_annual_rate * year_fraction(at, expiry)


def mr4(
    items: Iterable[UnitItem],
    spot_coins: Decimal,
    index: Decimal,
    terms: RiskUnitTerms,
    at: datetime,
) -> Decimal:
    """Return MR4 = Σ_b |C_b| · r_b over the tenor buckets. PORTFOLIO-MARGIN.md 10.5.

    Buckets: every perpetual (linear and inverse) together; one per expiry instant; spot in use
    (C = s·I at `spot_basis_rate`). Items net inside a bucket, never across buckets.
    Examples: long 1 BTC future 0.2 years out at 50,500 → 50,500 × 1.2 % = 606; calendar
    spread +1 BTC (0.25 y, 40,000) / −1 BTC (0.5 y, 40,400) → 580 + 1,090.8 = 1,670.8.
    """
    return basis_charge(aggregate(items), spot_coins, index, terms, at)


def basis_charge(
    unit: UnitAggregate, spot_coins: Decimal, index: Decimal, terms: RiskUnitTerms, at: datetime
) -> Decimal:
    """Return MR4 from a unit's bucket nets: |spot·I|·spot_basis_rate + Σ_b |C_b|·r_b. 10.5."""
    charge = abs(spot_coins * index) * terms.spot_basis_rate
    for expiry, net in unit.buckets.items():
        charge += abs(net) * bucket_rate(expiry, terms, at)
    return charge


# --- 10.6 MR7 and 10.7 MR9 ------------------------------------------------------------------


def progressive(amount: Decimal, bands: Sequence[tuple[Decimal | None, Decimal]]) -> Decimal:
    """Return Σ_k max(0, min(amount, u_k) − u_{k−1}) · f_k; the last band runs beyond its bound.

    `bands` are (up_to, factor), `up_to` strictly increasing, u_0 = 0 (10.6, 10.7).
    Example: 30,000 on (10,000, 1), (70,000, 2) → 10,000 + 20,000 × 2 = 50,000.
    """
    assert amount >= ZERO, amount
    total = ZERO
    lower = ZERO
    for position, (up_to, factor) in enumerate(bands):
        is_last = position == len(bands) - 1
        upper = amount if is_last or up_to is None else min(amount, up_to)
        if upper > lower:
            total += (upper - lower) * factor
        if is_last or up_to is None or amount <= up_to:
            return total
        assert up_to > lower, "band bounds strictly increase"
        lower = up_to
    return total


def min_charge(raw: Decimal, tiers: Sequence[MultiplierTier]) -> Decimal:
    """Return MR7 from its raw charge: each slice of `raw` times its tier's multiplier. 10.6.

    Example (PM-11): raw 30,000 on 10,000 ×1, 70,000 ×2 → 50,000.
    """
    return progressive(raw, [(tier.up_to, tier.multiplier) for tier in tiers])


def mr7(items: Iterable[UnitItem], terms: RiskUnitTerms) -> Decimal:
    """Return MR7: raw = min_charge_rate · Σ|c_i| over the derivatives, gross, then tiered.

    Spot in use is not included (PM-09). PORTFOLIO-MARGIN.md 10.6.
    Example (PM-06): |c| = 9,704.9036898, 0.45 % → 43.6720666041 (below 10,000: ×1).
    """
    return min_charge(terms.min_charge_rate * aggregate(items).gross, terms.min_charge_tiers)


def hedged_value(net_by_group: Iterable[Decimal]) -> Decimal:
    """Return H = (Σ_g |G_g| − |Σ_g G_g|) / 2, the smaller of the long and short sides. 10.7.

    Example (PM-13): +10,000,000 USDT-margined, −10,000,000 USD (inverse) → 10,000,000.
    """
    nets = list(net_by_group)
    return (sum((abs(net) for net in nets), ZERO) - abs(sum(nets, ZERO))) / 2


def depeg_charge(hedged: Decimal, bands: Sequence[RateBand]) -> Decimal:
    """Return MR9 from the hedged value: each slice of H at its band's rate. 10.7.

    Example (PM-13): 10M on 1M 0.75 %, 5M 1.75 %, above 2.5 % → 7,500 + 70,000 + 125,000
    = 202,500.
    """
    return progressive(hedged, [(band.up_to, band.rate) for band in bands])


def mr9(items: Iterable[UnitItem], terms: RiskUnitTerms) -> Decimal:
    """Return MR9: the depeg bands on H over the margin-currency groups' net cash deltas. 10.7.

    G_g = Σ c_i per margin currency (USDT, USDC, … linear; USD inverse); spot is left out.
    Example (PM-13): long 10M USDT-margined vs short 10M coin-margined → 202,500.
    """
    return depeg_charge(hedged_value(aggregate(items).currencies.values()), terms.depeg_bands)


# --- 10.8 unit requirement and borrowing ----------------------------------------------------


def unit_mmr(
    mr1: Decimal,
    mr2: Decimal,
    mr3: Decimal,
    mr4: Decimal,
    mr5: Decimal,
    mr6: Decimal,
    mr7: Decimal,
    mr9: Decimal,
) -> Decimal:
    """Return MMR_U = max(max(MR1, MR2, MR6) + MR3 + MR4 + MR5 + MR9, MR7). 10.8 (OKX public).

    Example (PM-01): max(1,164.410924472 + 19.4098073796, 43.6720666041) = 1,183.8207318516.
    """
    return max(max(mr1, mr2, mr6) + mr3 + mr4 + mr5 + mr9, mr7)


def risk_unit_figures(
    items: Sequence[UnitItem],
    holding: Decimal,
    spot_setting: Decimal | None,
    index: Decimal,
    terms: RiskUnitTerms,
    imr_factor: Decimal,
    at: datetime,
) -> RiskUnitFigures:
    """Return every figure of one risk unit at `at` (10.3-10.8).

    s = spot in use (auto when `spot_setting` is None), X = D + s, delta_usd = X·I,
    MMR = max(max(MR1, MR6) + MR4 + MR9, MR7) (MR2 = MR3 = MR5 = 0), IMR = imr_factor · MMR.
    Example (pm-spot-hedge-mr7): 10 BTC held, short 10 BTC perpetual at 50,010, index 50,000 →
    s = 10, X = 0, MR1 = 0, MR4 = 1,000.2, MR7 = 2,250.45 = MMR, IMR 2,925.585.
    """
    return unit_figures(aggregate(items), holding, spot_setting, index, terms, imr_factor, at)


def unit_figures(
    unit: UnitAggregate,
    holding: Decimal,
    spot_setting: Decimal | None,
    index: Decimal,
    terms: RiskUnitTerms,
    imr_factor: Decimal,
    at: datetime,
) -> RiskUnitFigures:
    """Return a unit's figures from its aggregate (the one-pass form of `risk_unit_figures`)."""
    spot = spot_in_use(holding, unit.coins + unit.option_delta, spot_setting)
    linear = unit.coins + spot
    delta = linear + unit.option_delta
    basis = basis_charge(unit, spot, index, terms, at)
    minimum = min_charge(terms.min_charge_rate * unit.gross, terms.min_charge_tiers)
    depeg = depeg_charge(hedged_value(unit.currencies.values()), terms.depeg_bands)
    theta = vega = rates = short = ZERO
    if unit.options:
        shock_loss = option_grid_loss(linear, index, unit.options, terms.price_shocks, terms)
        extreme_loss = terms.extreme_factor * option_grid_loss(
            linear, index, unit.options, terms.extreme_shocks, terms)
        theta, vega, rates, short = option_charges(unit.options, terms)
    else:
        shock_loss = mr1(linear, index, terms.price_shocks)
        extreme_loss = mr6(linear, index, terms.extreme_shocks, terms.extreme_factor)
    mmr = max(unit_mmr(shock_loss, theta, vega, basis, rates, extreme_loss, minimum, depeg),
              minimum + short)
    return RiskUnitFigures(
        mr1=shock_loss,
        mr2=theta,
        mr3=vega,
        mr4=basis,
        mr5=rates,
        mr6=extreme_loss,
        mr7=minimum,
        mr9=depeg,
        mmr=mmr,
        imr=imr_factor * mmr,
        delta=delta,
        delta_usd=delta * index,
        spot_in_use=spot,
        mr8=short,
    )


# --- options in the unit (issue 15, docs/options.md) ----------------------------------------


def option_grid_loss(
    linear: Decimal, index: Decimal, options: Sequence[OptionHolding],
    price_shocks: Sequence[Decimal], terms: RiskUnitTerms,
) -> Decimal:
    """Return max(0, max over (s, v) of −PnL): the unit's worst loss over the price shocks `s`
    crossed with `terms.vol_shocks` `v`; linear items move `linear·I·s`, each option is
    re-priced by Black-76 at the forward F·(1 + s) and the volatility σ·(1 + v).

    Example: short 1 call K 60,000, F = I = 60,000, σ 0.5, 0.25 y, r 0, s = +12 %, v = +30 %:
    loss = C(67,200, 0.65) − C(60,000, 0.5) (docs/options.md, tests/unit/rules).
    """
    shocks = tuple(price_shocks)
    grids = [(o.units * o.usd, _unit_pnl_grid(o.option_type, o.strike, o.years, o.forward,
                                              o.vol, terms.rate, shocks, terms.vol_shocks))
             for o in options]
    worst = ZERO
    if len(grids) == 1:  # one option: the worst vol point of each price shock is an extreme
        size, (_, lowest, highest) = grids[0]
        for shock, low, high in zip(shocks, lowest, highest, strict=True):
            loss = -(linear * index * shock + size * (low if size > ZERO else high))
            if loss > worst:
                worst = loss
        return worst
    for row, shock in enumerate(shocks):
        moved = linear * index * shock
        for column in range(len(terms.vol_shocks)):
            pnl = moved
            for size, (grid, _, _) in grids:
                pnl += size * grid[row][column]
            if -pnl > worst:
                worst = -pnl
    return worst


@lru_cache(maxsize=16384)
def _unit_pnl_grid(
    option_type: OptionType, strike: Decimal, years: Decimal, forward: Decimal, vol: Decimal,
    rate: Decimal, shocks: tuple[Decimal, ...], vol_shocks: tuple[Decimal, ...],
) -> tuple[tuple[tuple[Decimal, ...], ...], tuple[Decimal, ...], tuple[Decimal, ...]]:
    """Per unit of the base: the rows V(F·(1+s), σ·(1+v)) − V(F, σ) for each s over every v,
    and each row's minimum and maximum. Cached: every account holding the same option at the
    same market shares it (issue 15, speed)."""
    base = black76(option_type, forward, strike, years, vol, rate).price
    rows = tuple(tuple(black76(option_type, forward * (1 + s), strike, years, vol * (1 + v),
                               rate).price - base for v in vol_shocks) for s in shocks)
    return rows, tuple(min(row) for row in rows), tuple(max(row) for row in rows)


def vega_shock(years: Decimal, terms: RiskUnitTerms) -> Decimal:
    """Return MR3's relative volatility shock for a tenor: the first `vega_rates` entry whose
    years bound is ≥ the tenor (the last beyond). Default: ≤ 1 month 25 %, ≤ 3 months 20 %,
    ≤ 1 year 15 %, longer 10 %."""
    for bound, shock in terms.vega_rates:
        if years <= bound:
            return shock
    return terms.vega_rates[-1][1]


def option_charges(
    options: Sequence[OptionHolding], terms: RiskUnitTerms
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Return (MR2, MR3, MR5, MR8) of a unit's options, in USD (docs/options.md):

    - MR2 theta decay: max(0, −Σ u·usd·θ·Δt), Δt = theta_days / 365;
    - MR3 vega/volga by tenor: per expiry, Δσ_i = shock(τ)·σ_i, the worse of ±Δσ of
      Σ u·usd·(vega·Δσ + volga·Δσ²/2), floored at 0, summed over expiries (no netting across);
    - MR5 interest rate: |Σ u·usd·rho| · rate_shock;
    - MR8 short-option minimum charge: short_option_rate · Σ over shorts |u| · I_base.
    """
    dt = terms.theta_days / 365
    theta = rho = short = ZERO
    buckets: dict[datetime, tuple[Decimal, Decimal]] = {}
    for option in options:
        g = option.greeks(terms.rate)
        size = option.units * option.usd
        theta += size * g.theta * dt
        rho += size * g.rho
        if option.units < ZERO:
            short += -option.units * option.index
        move = vega_shock(option.years, terms) * option.vol
        up_down = buckets.get(option.expiry, (ZERO, ZERO))
        curvature = size * g.volga * move * move / 2
        buckets[option.expiry] = (up_down[0] + size * g.vega * move + curvature,
                                  up_down[1] - size * g.vega * move + curvature)
    vega = sum((max(ZERO, -min(up, down)) for up, down in buckets.values()), ZERO)
    return (max(ZERO, -theta), vega, abs(rho) * terms.rate_shock,
            terms.short_option_rate * short)


def borrowing_margin(
    liabilities: Sequence[tuple[Decimal, Decimal, Decimal, Decimal]],
) -> tuple[Decimal, Decimal]:
    """Return (Σ L_a·I_a·borrow_mmr_rate_a, Σ L_a·I_a·borrow_imr_rate_a) in USD. 10.8.

    Each tuple is (liability L_a ≥ 0 in coins, index I_a, borrow_mmr_rate, borrow_imr_rate).
    Example (PM-03): 78,589.37 USDT at 0.99954, 2 % / 10 % → 1,571.064377796 / 7,855.32188898.
    """
    mmr = ZERO
    imr = ZERO
    for liability, index, mmr_rate, imr_rate in liabilities:
        assert liability >= ZERO, liability
        value = liability * index
        mmr += value * mmr_rate
        imr += value * imr_rate
    return mmr, imr


# --- 10.10 liquidation plan building blocks -------------------------------------------------


def liquidity_key(item: UnitItem) -> tuple[int, int, Decimal, str]:
    """Return the sort key of the liquidity order: most liquid first. PORTFOLIO-MARGIN.md 10.10.

    Perpetuals before futures; futures by expiry, nearest first; then larger |c_i| first; then
    symbol. Example: BTCUSDT (perp) < BTCUSDT-250328 < BTCUSDT-250627.
    """
    if item.is_future or item.is_option:  # options after futures (issue 15)
        assert item.expiry is not None, item.symbol
        return (2 if item.is_option else 1, to_micros(item.expiry), -abs(cash_delta(item)),
                item.symbol)
    return (0, 0, -abs(cash_delta(item)), item.symbol)


def _net_cash(items: Iterable[UnitItem]) -> Decimal:
    """Return Σ c_i over `items`: a group's net cash delta G_g (USD)."""
    return sum((cash_delta(item) for item in items), ZERO)


def hedge_reduction(groups: Mapping[str, Sequence[UnitItem]]) -> list[tuple[UnitItem, Decimal]]:
    """Return the legs (item, contracts to close > 0) cutting the hedge between groups. 10.10.

    L = Σ G_g > 0, S = Σ |G_g < 0|, H = min(L, S); H = 0 → no legs. A position in a positive
    group closes |q|·H/L, one in a negative group |q|·H/S (the smaller side in full, the larger
    pro rata); zero groups are left alone. Each group keeps its sign and shrinks by the same
    factor, so the unit's net cash delta L − S is unchanged. Legs in liquidity order.
    Example: USDT +30,000 vs USDC −10,000 → H = 10,000: the USDC positions close whole, every
    USDT position closes a third of its contracts.
    """
    nets = {name: _net_cash(items) for name, items in groups.items()}
    long_side = sum((net for net in nets.values() if net > ZERO), ZERO)
    short_side = sum((-net for net in nets.values() if net < ZERO), ZERO)
    hedged = min(long_side, short_side)
    if hedged == ZERO:
        return []
    legs: list[tuple[UnitItem, Decimal]] = []
    for name, items in groups.items():
        if nets[name] == ZERO:
            continue
        side = long_side if nets[name] > ZERO else short_side
        legs.extend((item, abs(item.qty) * hedged / side) for item in items if item.qty != ZERO)
    return sorted(legs, key=lambda leg: liquidity_key(leg[0]))


def margin_currency_groups(items: Iterable[UnitItem]) -> dict[str, list[UnitItem]]:
    """Return the unit's positions grouped by margin currency (MR9 and stage ddh1). 10.7, 10.10.

    Example: BTCUSDT, BTCUSDC, BTCUSD → {"USDT": [..], "USDC": [..], "USD": [..]}.
    """
    groups: dict[str, list[UnitItem]] = {}
    for item in items:
        groups.setdefault(item.margin_currency, []).append(item)
    return groups


def tenor_group_name(item: UnitItem) -> str:
    """Return the tenor bucket's name: "perpetual", or the expiry's ISO 8601 text. 10.5.

    Example: a future expiring 2025-03-28 08:00 UTC → "2025-03-28T08:00:00+00:00".
    """
    if item.is_future or item.is_option:
        assert item.expiry is not None, item.symbol
        return item.expiry.isoformat()
    return PERPETUAL_BUCKET


def tenor_groups(items: Iterable[UnitItem]) -> dict[str, list[UnitItem]]:
    """Return the unit's derivative tenor buckets for the basis stage (spot is never one). 10.10.

    Example: a perpetual and two futures of one expiry → {"perpetual": [p], "2025-…": [f1, f2]}.
    """
    groups: dict[str, list[UnitItem]] = {}
    for item in items:
        groups.setdefault(tenor_group_name(item), []).append(item)
    return groups


def delta_reduction(
    items: Iterable[UnitItem], unit_delta: Decimal
) -> list[tuple[UnitItem, Decimal]]:
    """Return the ddh2 legs (item, contracts to close > 0) that close |X_U| coins. 10.10.

    The positions whose x_i has the sign of X_U, in liquidity order: each whole while its |x_i|
    ≤ what remains, the last in part, qty = |q_i| · remaining / |x_i|. If they hold less than
    |X_U| (spot fixed above the short side) they all close. Example (pm-liquidation-plan):
    X = −8 BTC, short 10,000 × 0.001 BTC → buy back 8,000 contracts.
    """
    if unit_delta == ZERO:
        return []
    same_sign = [item for item in items if coin_exposure(item) * unit_delta > ZERO]
    remaining = abs(unit_delta)
    legs: list[tuple[UnitItem, Decimal]] = []
    for item in sorted(same_sign, key=liquidity_key):
        exposure = abs(coin_exposure(item))
        if exposure <= remaining:
            legs.append((item, abs(item.qty)))
            remaining -= exposure
        else:
            legs.append((item, abs(item.qty) * remaining / exposure))
            remaining = ZERO
        if remaining == ZERO:
            break
    return legs


def leg_fee(item: UnitItem, qty_closed: Decimal) -> Decimal:
    """Return a leg's taker fee at the mark, exact: linear in the settle asset, inverse in coin.

    Linear `qty·F·M·taker`; inverse `qty·F/M·taker`. PORTFOLIO-MARGIN.md 10.10.
    Example (pm-liquidation-plan): 8,000 × 0.001 × 56,000 × 0.05 % = 224 USDT.
    """
    assert qty_closed >= ZERO, qty_closed
    return fill_fee(qty_closed, item.contract_size, item.mark, item.taker_fee_rate,
                    item.is_inverse)


def perpetual_hedge(items: Sequence[UnitItem], unit_delta: Decimal
                    ) -> tuple[UnitItem, Decimal] | None:
    """Return the ddh2 hedge of a unit holding options (issue 15): (perpetual, signed contracts
    to trade) bringing X_U to 0 with the unit's most liquid perpetual, or None without one.

    Linear: −X/F contracts; inverse: −X·M/F. Example: X = +0.35 BTC from a short put, perpetual
    of 0.001 BTC → sell 350 contracts.
    """
    perpetuals = sorted((item for item in items if item.is_perpetual), key=liquidity_key)
    if unit_delta == ZERO or not perpetuals:
        return None
    perpetual = perpetuals[0]
    coins_per_contract = (perpetual.contract_size / perpetual.mark if perpetual.is_inverse
                          else perpetual.contract_size)
    return perpetual, -unit_delta / coins_per_contract
