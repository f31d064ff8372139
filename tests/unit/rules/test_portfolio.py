"""Portfolio margin rules (PORTFOLIO-MARGIN.md 10.3-10.10): OKX's examples, the public scenarios'
hand arithmetic, small hand-made books for the liquidation plan, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.portfolio import (
    UnitItem,
    borrowing_margin,
    cash_delta,
    coin_exposure,
    delta_reduction,
    depeg_charge,
    derivatives_delta,
    grid_worst_loss,
    hedge_reduction,
    hedged_value,
    leg_fee,
    liquidity_key,
    margin_currency_groups,
    min_charge,
    mr1,
    mr4,
    mr6,
    mr7,
    mr9,
    progressive,
    risk_unit_figures,
    spot_in_use,
    tenor_groups,
    unit_mmr,
    worst_loss,
)
from ledger.rules.terms import (
    DEFAULT_MIN_CHARGE_TIERS,
    Kind,
    MultiplierTier,
    PortfolioTerms,
    RiskUnitTerms,
)

numbers.install()

D = Decimal
T0 = datetime(2025, 1, 1, 8, tzinfo=UTC)
BTC = RiskUnitTerms(asset="BTC")
LTC = RiskUnitTerms(
    asset="LTC",
    price_shocks=tuple(D(s) for s in ("-0.18", "-0.12", "-0.06", "0", "0.06", "0.12", "0.18")),
    extreme_shocks=(D("-0.36"), D("0.36")),
    extreme_factor=D("0.5"),
    basis_rate=D("0.008"),
    min_charge_rate=D("0.007"),
)
IMR_FACTOR = PortfolioTerms().imr_factor
TIERS_2021 = (MultiplierTier(D("10000"), D("1")), MultiplierTier(D("70000"), D("2")))
# PM-12: OKX's BTC/ETH bounds after 2025-01-15 are 250k/500k/1M/2M/3M/4M. The multipliers are
# not in our sources; 1, 2, 4 are what "600,000 → 1,150,000" pins (250k×1 + 250k×2 + 100k×4),
# and 6, 8, 10, 12 above are assumed to continue the 2021 table's progression.
TIERS_2025 = tuple(
    MultiplierTier(None if up is None else D(up), D(m))
    for up, m in (
        ("250000", "1"),
        ("500000", "2"),
        ("1000000", "4"),
        ("2000000", "6"),
        ("3000000", "8"),
        ("4000000", "10"),
        (None, "12"),
    )
)


def perp(
    symbol: str,
    qty: str,
    size: str,
    mark: str,
    settle_index: str = "1",
    currency: str = "USDT",
    taker: str = "0.0005",
) -> UnitItem:
    return UnitItem(
        symbol, Kind.LINEAR_PERPETUAL, D(qty), D(size), D(mark), D(settle_index), currency,
        None, D(taker),
    )  # fmt: skip


def future(
    symbol: str, qty: str, size: str, mark: str, expiry: datetime, settle_index: str = "1"
) -> UnitItem:
    return UnitItem(
        symbol, Kind.LINEAR_FUTURE, D(qty), D(size), D(mark), D(settle_index), "USDT", expiry,
        D("0.0005"),
    )  # fmt: skip


def inverse(symbol: str, qty: str, size: str, mark: str, taker: str = "0.0005") -> UnitItem:
    return UnitItem(
        symbol, Kind.INVERSE_PERPETUAL, D(qty), D(size), D(mark), D("1"), "USD", None, D(taker)
    )


def years_after(at: datetime, years: str) -> datetime:
    """Return `at` + years × 365 days (the exact seconds of the 31,536,000-s year)."""
    seconds = D(years) * 31_536_000
    assert seconds == seconds.to_integral_value()
    return at + timedelta(seconds=int(seconds))


# --- PM-01..03: OKX position builder, to the last digit ---------------------------------------


def test_okx_btc_unit_short_perpetual_reproduces_the_position_builder() -> None:
    """PM-01: short 100 × 0.001 = 0.1 BTC; index 97,034.243706, mark 97,093.7, USDT 0.99954.

    MR1 = 0.1 × 97,034.243706 × 0.12 = 1,164.410924472; MR6 = 0.5 × 0.1 × 97,034.243706 × 0.24
    = the same. c = −0.1 × 97,093.7 × 0.99954 = −9,704.9036898: MR4 = 0.2 % → 19.4098073796,
    MR7 = 0.45 % → 43.6720666041. MMR = max(1,164.410924472 + 19.4098073796, 43.67…) =
    1,183.8207318516; IMR × 1.3 = 1,538.96695140708; delta −0.1, × index = −9,703.4243706.
    """
    btc = perp("BTC-USDT-SWAP", "-100", "0.001", "97093.7", settle_index="0.99954")
    figures = risk_unit_figures([btc], ZERO, None, D("97034.243706"), BTC, IMR_FACTOR, T0)
    assert figures.mr1 == D("1164.410924472")
    assert figures.mr6 == D("1164.410924472")
    assert figures.mr4 == D("19.4098073796")
    assert figures.mr7 == D("43.6720666041")
    assert (figures.mr2, figures.mr3, figures.mr5, figures.mr9) == (ZERO, ZERO, ZERO, ZERO)
    assert figures.mmr == D("1183.8207318516")
    assert figures.imr == D("1538.96695140708")
    assert figures.delta == D("-0.1")
    assert figures.delta_usd == D("-9703.4243706")
    assert figures.spot_in_use == ZERO


def test_okx_ltc_unit_long_perpetual_with_mid_cap_parameters() -> None:
    """PM-02: long 10 × 1 LTC; index 101.948182254, mark 102, USDT 0.99954, mid-cap set.

    MR1 = 10 × 101.948182254 × 0.18 = 183.5067280572 (= MR6, 0.5 × 36 %); c = 10 × 102 ×
    0.99954 = 1,019.5308: MR4 = 0.8 % → 8.1562464, MR7 = 0.7 % → 7.1367156. MMR =
    183.5067280572 + 8.1562464 = 191.6629744572; IMR × 1.3 = 249.16186679436.
    """
    ltc = perp("LTC-USDT-SWAP", "10", "1", "102", settle_index="0.99954")
    figures = risk_unit_figures([ltc], ZERO, None, D("101.948182254"), LTC, IMR_FACTOR, T0)
    assert figures.mr1 == D("183.5067280572")
    assert figures.mr6 == D("183.5067280572")
    assert figures.mr4 == D("8.1562464")
    assert figures.mr7 == D("7.1367156")
    assert figures.mmr == D("191.6629744572")
    assert figures.imr == D("249.16186679436")
    assert figures.delta == D("10")
    assert figures.delta_usd == D("1019.48182254")


def test_okx_borrowing_and_account_totals() -> None:
    """PM-03: 78,589.37 USDT owed at 0.99954: × 2 % = 1,571.064377796, × 10 % = 7,855.32188898.

    MMR = 1,183.8207318516 + 191.6629744572 + 1,571.064377796 = 2,946.5480841048;
    IMR = 1.3 × (1,183.8207318516 + 191.6629744572 = 1,375.4837063088) + 7,855.32188898
    = 1,788.12881820144 + 7,855.32188898 = 9,643.45070718144.
    """
    borrow_mmr, borrow_imr = borrowing_margin([(D("78589.37"), D("0.99954"), D("0.02"), D("0.1"))])
    assert borrow_mmr == D("1571.064377796")
    assert borrow_imr == D("7855.32188898")
    btc = risk_unit_figures(
        [perp("BTC-USDT-SWAP", "-100", "0.001", "97093.7", settle_index="0.99954")],
        ZERO, None, D("97034.243706"), BTC, IMR_FACTOR, T0,
    )  # fmt: skip
    ltc = risk_unit_figures(
        [perp("LTC-USDT-SWAP", "10", "1", "102", settle_index="0.99954")],
        ZERO, None, D("101.948182254"), LTC, IMR_FACTOR, T0,
    )  # fmt: skip
    assert btc.mmr + ltc.mmr == D("1375.4837063088")
    assert btc.mmr + ltc.mmr + borrow_mmr == D("2946.5480841048")
    assert btc.imr + ltc.imr + borrow_imr == D("9643.45070718144")


def test_borrowing_sums_every_liability_and_is_zero_without_one() -> None:
    """pm-borrowing-usdt-liability: 5,000 USDT at 0.9995 → 99.95 / 499.75; plus 1 BTC at
    50,000 at 5 % / 20 % → 2,500 / 10,000; nothing owed → 0 / 0."""
    assert borrowing_margin([(D("5000"), D("0.9995"), D("0.02"), D("0.1"))]) == (
        D("99.95"),
        D("499.75"),
    )
    both = borrowing_margin(
        [(D("5000"), D("0.9995"), D("0.02"), D("0.1")), (D("1"), D("50000"), D("0.05"), D("0.2"))]
    )
    assert both == (D("2599.95"), D("10499.75"))
    assert borrowing_margin([]) == (ZERO, ZERO)


# --- 10.3 exposures and spot in use -----------------------------------------------------------


def test_linear_exposure_is_coins_and_cash_delta_is_at_mark_and_settle_index() -> None:
    """Linear: x = q·F = −100 × 0.001 = −0.1; c = −0.1 × 97,093.7 × 0.99954 = −9,704.9036898."""
    item = perp("BTC-USDT-SWAP", "-100", "0.001", "97093.7", settle_index="0.99954")
    assert coin_exposure(item) == D("-0.1")
    assert cash_delta(item) == D("-9704.9036898")


def test_inverse_exposure_is_face_value_in_coins_at_the_mark() -> None:
    """Inverse: x = q·F/M = −500 × 100 / 50,000 = −1 BTC; c = q·F = −50,000 USD (face)."""
    item = inverse("BTCUSD-SWAP", "-500", "100", "50000")
    assert coin_exposure(item) == D("-1")
    assert cash_delta(item) == D("-50000")


def test_spot_in_use_automatic_offsets_only_a_short_delta_up_to_the_holding() -> None:
    """Auto: min(h, max(0, −D)): h 10, D −10 → 10; h 4, D −10 → 4; h 10, D −3 → 3;
    D +3 → 0 (spot never offsets a long); coin equity −5 (a liability) → 0."""
    assert spot_in_use(D("10"), D("-10"), None) == D("10")
    assert spot_in_use(D("4"), D("-10"), None) == D("4")
    assert spot_in_use(D("10"), D("-3"), None) == D("3")
    assert spot_in_use(D("10"), D("3"), None) == ZERO
    assert spot_in_use(D("-5"), D("-10"), None) == ZERO


def test_spot_in_use_fixed_is_capped_at_the_holding_even_when_it_over_hedges() -> None:
    """Fixed A: min(A, h): 6 of 10 → 6; 20 of 10 → 10; 3 with a long delta → 3 (the user's
    choice); 0 → 0; any amount with a negative coin equity → 0."""
    assert spot_in_use(D("10"), D("-10"), D("6")) == D("6")
    assert spot_in_use(D("10"), D("-10"), D("20")) == D("10")
    assert spot_in_use(D("10"), D("5"), D("3")) == D("3")
    assert spot_in_use(D("10"), D("-10"), ZERO) == ZERO
    assert spot_in_use(D("-1"), D("-10"), D("6")) == ZERO


def spot_hedge_book(mark: str = "50010") -> list[UnitItem]:
    """pm-spot-hedge-mr7: short 10,000 × 0.001 = 10 BTC BTCUSDT."""
    return [perp("BTCUSDT", "-10000", "0.001", mark)]


def test_spot_hedge_automatic_makes_the_unit_delta_neutral_and_mr7_binds() -> None:
    """pm-spot-hedge-mr7: 10 BTC held, short 10 BTC at mark 50,010, index 50,000.

    s = min(10, 10) = 10, X = 0: MR1 = MR6 = 0 (the premium is not directional). c = −500,100:
    MR4 = 500,100 × 0.2 % = 1,000.2; MR7 = 500,100 × 0.45 % = 2,250.45 (×1 below 10,000);
    MMR = max(0 + 1,000.2, 2,250.45) = 2,250.45; IMR = 2,925.585.
    """
    figures = risk_unit_figures(spot_hedge_book(), D("10"), None, D("50000"), BTC, IMR_FACTOR, T0)
    assert figures.spot_in_use == D("10")
    assert figures.delta == ZERO
    assert figures.delta_usd == ZERO
    assert figures.mr1 == ZERO
    assert figures.mr6 == ZERO
    assert figures.mr4 == D("1000.2")
    assert figures.mr7 == D("2250.45")
    assert figures.mr9 == ZERO
    assert figures.mmr == D("2250.45")
    assert figures.imr == D("2925.585")


def test_spot_hedge_fixed_six_leaves_four_btc_short() -> None:
    """pm-spot-hedge-mr7, set_spot_in_use 6: X = −10 + 6 = −4; delta_usd −200,000;
    MR1 = MR6 = 4 × 50,000 × 12 % = 24,000; MMR = 24,000 + 1,000.2 = 25,000.2."""
    figures = risk_unit_figures(spot_hedge_book(), D("10"), D("6"), D("50000"), BTC, IMR_FACTOR, T0)
    assert figures.spot_in_use == D("6")
    assert figures.delta == D("-4")
    assert figures.delta_usd == D("-200000")
    assert figures.mr1 == D("24000")
    assert figures.mr6 == D("24000")
    assert figures.mmr == D("25000.2")


def test_spot_hedge_fixed_twenty_is_capped_at_the_ten_held() -> None:
    """set_spot_in_use 20 with 10 held → s = 10, X = 0, MMR = MR7 = 2,250.45."""
    figures = risk_unit_figures(
        spot_hedge_book(), D("10"), D("20"), D("50000"), BTC, IMR_FACTOR, T0
    )
    assert figures.spot_in_use == D("10")
    assert figures.delta == ZERO
    assert figures.mmr == D("2250.45")


def test_spot_hedge_at_forty_thousand_collapses_to_mr7() -> None:
    """Index and mark 40,000: c = −400,000; MR4 = 800, MR7 = 400,000 × 0.45 % = 1,800 = MMR."""
    figures = risk_unit_figures(
        spot_hedge_book("40000"), D("10"), None, D("40000"), BTC, IMR_FACTOR, T0
    )
    assert figures.mr4 == D("800")
    assert figures.mr7 == D("1800")
    assert figures.mmr == D("1800")


def test_inverse_short_is_hedged_exactly_by_the_coin_it_is_margined_in() -> None:
    """10.3: wallet 1.25 BTC, short 500 × 100 USD BTCUSD from entry 40,000, mark = index 50,000.

    Inverse PnL = −50,000 × (1/40,000 − 1/50,000) = −0.25 BTC, so coin equity e = 1 BTC.
    x = q·F/M = −1 BTC; auto spot = min(1, 1) = 1; X = 0. Revaluing the account directly:
    at +25 % (62,500) the PnL is −50,000 × (1/40,000 − 1/62,500) = −0.45, e = 0.8 BTC, worth
    50,000 USD; at −20 % (40,000) PnL 0, e = 1.25 BTC, worth 50,000 USD: the USD value never
    moves, as X = 0 says. Exposure at the entry (q·F/E = −1.25) or spot = the wallet (1.25)
    would each show a false 0.25 BTC of delta.
    """
    wallet, entry, index = D("1.25"), D("40000"), D("50000")
    short = inverse("BTCUSD-SWAP", "-500", "100", str(index))
    face = short.qty * short.contract_size

    def coin_equity(mark: Decimal) -> Decimal:
        return wallet + face * (1 / entry - 1 / mark)

    equity = coin_equity(index)
    assert equity == D("1")
    figures = risk_unit_figures([short], equity, None, index, BTC, IMR_FACTOR, T0)
    assert figures.spot_in_use == D("1")
    assert figures.delta == ZERO
    assert figures.mr1 == ZERO
    for moved in (D("62500"), D("40000")):
        assert coin_equity(moved) * moved == equity * index == D("50000")


def test_inverse_short_at_a_premium_is_still_neutral_against_its_coin() -> None:
    """Mark 50,010 above index 50,000: x = −50,000/50,010 (a 34-digit quotient); the holding
    of 1 BTC covers it, auto spot = −x exactly, X = D + s = 0 and MR1 = 0."""
    short = inverse("BTCUSD-SWAP", "-500", "100", "50010")
    figures = risk_unit_figures([short], D("1"), None, D("50000"), BTC, IMR_FACTOR, T0)
    assert figures.spot_in_use == -coin_exposure(short)
    assert figures.delta == ZERO
    assert figures.mr1 == ZERO


# --- 10.4 MR1 and MR6 -------------------------------------------------------------------------


def test_naked_long_mr1_equals_mr6_with_btc_parameters() -> None:
    """pm-naked-perp-mr1-mr6: long 2 BTC at index 60,000: MR1 = 2 × 60,000 × 12 % = 14,400;
    MR6 = 0.5 × 2 × 60,000 × 24 % = 14,400."""
    assert mr1(D("2"), D("60000"), BTC.price_shocks) == D("14400")
    assert mr6(D("2"), D("60000"), BTC.extreme_shocks, BTC.extreme_factor) == D("14400")


def test_mr1_is_zero_for_a_flat_unit_and_mr6_can_exceed_mr1() -> None:
    """X = 0 → 0. One-sided grid: shocks −10 %, 0 on a short: the worst is 0 (a fall pays a
    short), so MR1 = 0. Extreme ±50 % × 0.5 on X = 1 at 100 → 25, above MR1's 12 % → 12."""
    assert mr1(ZERO, D("60000"), BTC.price_shocks) == ZERO
    assert mr1(D("-1"), D("100"), (D("-0.1"), ZERO)) == ZERO
    assert mr1(D("1"), D("100"), BTC.price_shocks) == D("12")
    assert mr6(D("1"), D("100"), (D("-0.5"), D("0.5")), D("0.5")) == D("25")


# --- 10.5 MR4 ---------------------------------------------------------------------------------


def test_mr4_future_two_tenths_of_a_year_out() -> None:
    """pm-future-delivery: 1 BTC future, 73 days (0.2 y) to expiry, mark 50,500:
    50,500 × (0.2 % + 5 % × 0.2) = 50,500 × 1.2 % = 606."""
    expiry = years_after(T0, "0.2")
    item = future("BTCUSDT-250315", "1000", "0.001", "50500", expiry)
    assert mr4([item], ZERO, D("50000"), BTC, T0) == D("606")


def test_mr4_future_one_tenth_of_a_year_out() -> None:
    """36.5 days (0.1 y) left: 50,500 × (0.2 % + 5 % × 0.1) = 50,500 × 0.7 % = 353.5."""
    expiry = years_after(T0, "0.2")
    item = future("BTCUSDT-250315", "1000", "0.001", "50500", expiry)
    at = years_after(T0, "0.1")
    assert mr4([item], ZERO, D("50000"), BTC, at) == D("353.5")


def test_mr4_future_after_expiry_has_tenor_zero() -> None:
    """Expired, not yet delivered, mark 53,000: τ = 0 → 53,000 × 0.2 % = 106."""
    expiry = years_after(T0, "0.2")
    item = future("BTCUSDT-250315", "1000", "0.001", "53000", expiry)
    at = expiry + timedelta(minutes=30)
    assert mr4([item], ZERO, D("52000"), BTC, at) == D("106")


def test_mr4_calendar_spread_pays_both_legs() -> None:
    """10.5: +1 BTC March (0.25 y, 40,000), −1 BTC June (0.5 y, 40,400): 40,000 × (0.2 % +
    5 % × 0.25) + 40,400 × (0.2 % + 5 % × 0.5) = 580 + 1,090.8 = 1,670.8."""
    march = future("BTCUSDT-MAR", "1000", "0.001", "40000", years_after(T0, "0.25"))
    june = future("BTCUSDT-JUN", "-1000", "0.001", "40400", years_after(T0, "0.5"))
    assert mr4([march, june], ZERO, D("40000"), BTC, T0) == D("1670.8")


def test_mr4_linear_and_inverse_perpetuals_net_in_one_bucket() -> None:
    """Long 1 BTC BTCUSDT at 50,000 (c = +50,000) and short 500 × 100 USD BTCUSD (c = −50,000):
    the perpetual bucket nets to 0 → MR4 = 0. With 400 contracts short (c = −40,000) the bucket
    is +10,000 → 20."""
    linear = perp("BTCUSDT", "1000", "0.001", "50000")
    assert mr4([linear, inverse("BTCUSD", "-500", "100", "50010")], ZERO, D("50000"), BTC, T0) == 0
    smaller = inverse("BTCUSD", "-400", "100", "50010")
    assert mr4([linear, smaller], ZERO, D("50000"), BTC, T0) == D("20")


def test_mr4_futures_of_one_expiry_net_and_spot_has_its_own_bucket() -> None:
    """Two futures of one expiry (+1 BTC USDT at 50,000, −1 BTC USDC at 50,000) net to 0.
    Spot 10 BTC at index 50,000 with spot_basis_rate 1.2 % → 500,000 × 1.2 % = 6,000; a short
    perpetual of 10 BTC at 50,000 sits in another bucket: + 500,000 × 0.2 % = 1,000."""
    expiry = years_after(T0, "0.25")
    usdt = future("BTCUSDT-MAR", "1000", "0.001", "50000", expiry)
    usdc = UnitItem(
        "BTCUSDC-MAR", Kind.LINEAR_FUTURE, D("-1000"), D("0.001"), D("50000"), D("1"), "USDC",
        expiry, D("0.0005"),
    )  # fmt: skip
    assert mr4([usdt, usdc], ZERO, D("50000"), BTC, T0) == ZERO
    terms = RiskUnitTerms(asset="BTC", spot_basis_rate=D("0.012"))
    short = perp("BTCUSDT", "-10000", "0.001", "50000")
    assert mr4([short], D("10"), D("50000"), terms, T0) == D("7000")


# --- 10.6 MR7 ---------------------------------------------------------------------------------


def test_mr7_tiers_2021_pm11() -> None:
    """PM-11: raw 30,000 on 10,000 ×1, 70,000 ×2 → 10,000 + 20,000 × 2 = 50,000 (the default
    table gives the same: 30,000 is inside its second tier)."""
    assert min_charge(D("30000"), TIERS_2021) == D("50000")
    assert min_charge(D("30000"), DEFAULT_MIN_CHARGE_TIERS) == D("50000")


def test_mr7_tiers_2025_pm12() -> None:
    """PM-12: raw 600,000 on 250k ×1, 500k ×2, 1M ×4, … → 250,000 + 250,000 × 2 + 100,000 × 4
    = 1,150,000 (the multipliers above 1M are assumed, see TIERS_2025)."""
    assert min_charge(D("600000"), TIERS_2025) == D("1150000")


def test_mr7_last_tier_runs_beyond_its_bound() -> None:
    """Raw 100,000 on 10,000 ×1, 70,000 ×2 (last) → 10,000 + 90,000 × 2 = 190,000; on the
    default table → 10,000 + 60,000×2 + 30,000×4 = 250,000."""
    assert min_charge(D("100000"), TIERS_2021) == D("190000")
    assert min_charge(D("100000"), DEFAULT_MIN_CHARGE_TIERS) == D("250000")


def test_mr7_is_gross_over_derivatives_and_ignores_spot() -> None:
    """Long 1 BTC USDT and short 1 BTC USDC at 50,000: gross 100,000 (no netting), × 0.45 %
    = 450. The spot hedge book's MR7 depends on the perpetual alone (PM-09): 2,250.45 with any
    spot in use."""
    long_usdt = perp("BTCUSDT", "1000", "0.001", "50000")
    short_usdc = perp("BTCUSDC", "-1000", "0.001", "50000", currency="USDC")
    assert mr7([long_usdt, short_usdc], BTC) == D("450")
    assert mr7(spot_hedge_book(), BTC) == D("2250.45")


def test_progressive_charges_nothing_on_zero_and_stops_inside_a_band() -> None:
    """0 → 0; 5,000 on (10,000, 1), (70,000, 2) → 5,000; exactly 10,000 → 10,000."""
    bands = [(D("10000"), D("1")), (D("70000"), D("2"))]
    assert progressive(ZERO, bands) == ZERO
    assert progressive(D("5000"), bands) == D("5000")
    assert progressive(D("10000"), bands) == D("10000")


# --- 10.7 MR9 ---------------------------------------------------------------------------------


def test_mr9_ten_million_usdt_against_coin_margined_pm13() -> None:
    """PM-13: long 200,000 × 0.001 BTC at 50,000 USDT-margined (c = +10,000,000), short
    100,000 × 100 USD inverse (c = −10,000,000): H = (20M − 0)/2 = 10M →
    1M × 0.75 % + 4M × 1.75 % + 5M × 2.5 % = 7,500 + 70,000 + 125,000 = 202,500."""
    long_usdt = perp("BTCUSDT", "200000", "0.001", "50000")
    short_usd = inverse("BTCUSD", "-100000", "100", "50000")
    assert mr9([long_usdt, short_usd], BTC) == D("202500")
    assert depeg_charge(D("10000000"), BTC.depeg_bands) == D("202500")


def test_mr9_is_zero_within_one_margin_currency() -> None:
    """Long and short BTCUSDT-margined only: one group, H = (|G| − |G|)/2 = 0 → MR9 = 0."""
    items = [perp("BTCUSDT", "1000", "0.001", "50000"), perp("BTCUSDT-B", "-500", "0.001", "50000")]
    assert mr9(items, BTC) == ZERO


def test_hedged_value_is_the_smaller_side() -> None:
    """+30 USDT, −10 USDC, +5 USD: (45 − |25|)/2 = 10 = min(35, 10)."""
    assert hedged_value([D("30"), D("-10"), D("5")]) == D("10")
    assert hedged_value([]) == ZERO


def test_mr9_small_hedge_in_the_first_band() -> None:
    """+50,000 USDT vs −30,000 USDC: H = 30,000 → 30,000 × 0.75 % = 225."""
    items = [
        perp("BTCUSDT", "1000", "0.001", "50000"),
        perp("BTCUSDC", "-600", "0.001", "50000", currency="USDC"),
    ]
    assert mr9(items, BTC) == D("225")


# --- 10.8 unit requirement --------------------------------------------------------------------


def test_unit_mmr_takes_the_larger_arm() -> None:
    """max(max(MR1, MR2, MR6) + MR3 + MR4 + MR5 + MR9, MR7): (100, 0, 0, 10, 0, 80, 50, 5)
    → 100 + 10 + 5 = 115; with MR7 200 → 200; MR6 above MR1: (10, …, 30) → 30 + 10 + 5 = 45."""
    z = ZERO
    assert unit_mmr(D("100"), z, z, D("10"), z, D("80"), D("50"), D("5")) == D("115")
    assert unit_mmr(D("100"), z, z, D("10"), z, D("80"), D("200"), D("5")) == D("200")
    assert unit_mmr(D("10"), z, z, D("10"), z, D("30"), D("5"), D("5")) == D("45")


def test_future_unit_figures_pm_future_delivery() -> None:
    """pm-future-delivery: long 1 BTC future 0.2 y out at 50,500, index 50,000: MR1 = 6,000,
    MR4 = 606, MR7 = 50,500 × 0.45 % = 227.25, MMR 6,606, IMR 8,587.8, delta 1 (50,000 USD)."""
    item = future("BTCUSDT-250315", "1000", "0.001", "50500", years_after(T0, "0.2"))
    figures = risk_unit_figures([item], ZERO, None, D("50000"), BTC, IMR_FACTOR, T0)
    assert figures.mr1 == D("6000")
    assert figures.mr4 == D("606")
    assert figures.mr7 == D("227.25")
    assert figures.mmr == D("6606")
    assert figures.imr == D("8587.8")
    assert figures.delta == D("1")
    assert figures.delta_usd == D("50000")


def test_spot_only_unit_with_fixed_spot_has_a_long_delta() -> None:
    """No derivatives, 2 BTC fixed in use at 50,000: X = 2, MR1 = 2 × 50,000 × 12 % = 12,000;
    MR4 = 0 (spot_basis_rate 0), MR7 = MR9 = 0 → MMR 12,000."""
    figures = risk_unit_figures([], D("5"), D("2"), D("50000"), BTC, IMR_FACTOR, T0)
    assert figures.delta == D("2")
    assert figures.mr1 == D("12000")
    assert figures.mmr == D("12000")


# --- 10.10 liquidation plan building blocks ---------------------------------------------------

MARCH = datetime(2025, 3, 28, 8, tzinfo=UTC)
JUNE = datetime(2025, 6, 27, 8, tzinfo=UTC)


def test_liquidity_order_perpetuals_then_futures_by_expiry_then_size_then_symbol() -> None:
    """Perpetuals first, larger |c| first (150,000 before 50,000; ties by symbol: A before B);
    then March before June whatever their size."""
    big_perp = perp("BTCUSDT", "-3000", "0.001", "50000")  # |c| 150,000
    small_a = perp("A-PERP", "1000", "0.001", "50000")  # |c| 50,000
    small_b = inverse("B-PERP", "-500", "100", "50000")  # |c| 50,000
    march = future("BTC-MAR", "100", "0.001", "50000", MARCH)
    june = future("BTC-JUN", "-9000", "0.001", "50000", JUNE)
    ordered = sorted([june, small_b, march, small_a, big_perp], key=liquidity_key)
    assert [item.symbol for item in ordered] == [
        "BTCUSDT",
        "A-PERP",
        "B-PERP",
        "BTC-MAR",
        "BTC-JUN",
    ]


def test_hedge_reduction_across_margin_currencies() -> None:
    """USDT +30,000 (600 × 0.001 × 50,000) vs USDC −10,000 (200 contracts): L 30,000, S 10,000,
    H 10,000. USDC closes 200 × 10,000/10,000 = 200 (whole), USDT 600 × 10,000/30,000 = 200.
    After: USDT +20,000, USDC 0: net +20,000 as before."""
    usdt = perp("BTCUSDT", "600", "0.001", "50000")
    usdc = perp("BTCUSDC", "-200", "0.001", "50000", currency="USDC")
    legs = hedge_reduction(margin_currency_groups([usdt, usdc]))
    assert legs == [(usdt, D("200")), (usdc, D("200"))]


def test_hedge_reduction_shrinks_mixed_groups_pro_rata_and_leaves_zero_groups() -> None:
    """Tenor groups: perpetual bucket +50,000 − 50,000 = 0 (left alone); March +1 BTC at
    40,000 (+40,000); June −2 BTC at 40,000 (−80,000). L 40,000, S 80,000, H 40,000: March
    closes 1,000 × 1 = 1,000; June 2,000 × 40,000/80,000 = 1,000. Legs in liquidity order."""
    linear = perp("BTCUSDT", "1000", "0.001", "50000")
    inv = inverse("BTCUSD", "-500", "100", "50000")
    march = future("BTC-MAR", "1000", "0.001", "40000", MARCH)
    june = future("BTC-JUN", "-2000", "0.001", "40000", JUNE)
    groups = tenor_groups([june, linear, march, inv])
    assert list(groups) == [JUNE.isoformat(), "perpetual", MARCH.isoformat()]
    assert hedge_reduction(groups) == [(march, D("1000")), (june, D("1000"))]


def test_hedge_reduction_closes_both_directions_inside_a_group() -> None:
    """USDT group: long 1,000 and short 400 contracts (net +30,000 at 50,000); USDC −300
    (−15,000). H = 15,000: USDT positions close half of |q| (500 and 200), USDC all 300.
    USDT net after (+500 − 200) × 50 = +15,000; USDC 0; net +15,000 as before. Liquidity
    order by |c|: 50,000, 20,000, 15,000."""
    long_usdt = perp("BTCUSDT", "1000", "0.001", "50000")
    short_usdt = perp("BTCUSDT-2", "-400", "0.001", "50000")
    usdc = perp("BTCUSDC", "-300", "0.001", "50000", currency="USDC")
    legs = hedge_reduction(margin_currency_groups([long_usdt, short_usdt, usdc]))
    assert legs == [(long_usdt, D("500")), (short_usdt, D("200")), (usdc, D("300"))]


def test_hedge_reduction_without_a_hedge_has_no_legs() -> None:
    """One currency, or every group on one side: H = 0 → []."""
    only_usdt = [perp("BTCUSDT", "1000", "0.001", "50000"), perp("X", "-10", "0.001", "50000")]
    assert hedge_reduction(margin_currency_groups(only_usdt)) == []
    same_side = [perp("BTCUSDT", "10", "0.001", "50000"), inverse("BTCUSD", "5", "100", "50000")]
    assert hedge_reduction(margin_currency_groups(same_side)) == []
    assert hedge_reduction({}) == []


def test_groups_by_margin_currency_and_by_tenor() -> None:
    """BTCUSDT, BTCUSDC, BTCUSD → three currency groups; the two perpetuals and the USDT
    future → tenor groups "perpetual" and the expiry's ISO text."""
    usdt = perp("BTCUSDT", "1", "0.001", "50000")
    usdc = perp("BTCUSDC", "1", "0.001", "50000", currency="USDC")
    usd = inverse("BTCUSD", "1", "100", "50000")
    fut = future("BTC-MAR", "1", "0.001", "50000", MARCH)
    assert margin_currency_groups([usdt, usdc, usd, fut]) == {
        "USDT": [usdt, fut],
        "USDC": [usdc],
        "USD": [usd],
    }
    assert tenor_groups([usdt, usd, fut]) == {
        "perpetual": [usdt, usd],
        "2025-03-28T08:00:00+00:00": [fut],
    }


def test_delta_reduction_pm_liquidation_plan() -> None:
    """pm-liquidation-plan: short 10 BTC, 2 BTC spot in use, X = −8: buy back 8 / 0.001 =
    8,000 contracts; fee 8,000 × 0.001 × 56,000 × 0.05 % = 224."""
    short = perp("BTCUSDT", "-10000", "0.001", "56000")
    legs = delta_reduction([short], D("-8"))
    assert legs == [(short, D("8000"))]
    assert leg_fee(short, D("8000")) == D("224")


def test_delta_reduction_closes_whole_positions_then_one_in_part() -> None:
    """Shorts BTCUSDT −3 BTC (|c| 150,000), BTCUSDC −1 BTC (|c| 50,000), March −2 BTC; long
    June +1 BTC. X = −5: BTCUSDT whole (3, remaining 2), BTCUSDC whole (1, remaining 1), March
    in part 2,000 × 1/2 = 1,000. The long June is not touched."""
    usdt = perp("BTCUSDT", "-3000", "0.001", "50000")
    usdc = perp("BTCUSDC", "-1000", "0.001", "50000", currency="USDC")
    march = future("BTC-MAR", "-2000", "0.001", "50000", MARCH)
    june = future("BTC-JUN", "1000", "0.001", "50000", JUNE)
    items = [june, march, usdc, usdt]
    assert derivatives_delta(items) == D("-5")
    assert delta_reduction(items, D("-5")) == [
        (usdt, D("3000")),
        (usdc, D("1000")),
        (march, D("1000")),
    ]


def test_delta_reduction_on_an_inverse_position_uses_its_coin_exposure() -> None:
    """Inverse short 500 × 100 USD at 50,000 (x = −1 BTC), X = −0.5: close
    500 × 0.5 / 1 = 250 contracts; a long X = +0.5 leaves the short alone → []."""
    short = inverse("BTCUSD", "-500", "100", "50000")
    assert delta_reduction([short], D("-0.5")) == [(short, D("250"))]
    assert delta_reduction([short], D("0.5")) == []
    assert delta_reduction([short], ZERO) == []


def test_delta_reduction_stops_when_the_positions_run_out() -> None:
    """Fixed spot over-hedging: long 2 BTC perpetual, 3 BTC spot, X = +5: only the perpetual
    can close (2,000 contracts); spot is never sold."""
    long = perp("BTCUSDT", "2000", "0.001", "50000")
    assert delta_reduction([long], D("5")) == [(long, D("2000"))]


def test_leg_fee_linear_in_settle_asset_inverse_in_coin() -> None:
    """Linear 10 × 0.001 × 50,000 × 0.05 % = 0.25 USDT; inverse 100 × 100 / 50,000 × 0.05 %
    = 0.0001 BTC."""
    assert leg_fee(perp("BTCUSDT", "-10", "0.001", "50000"), D("10")) == D("0.25")
    assert leg_fee(inverse("BTCUSD", "-100", "100", "50000"), D("100")) == D("0.0001")


# --- properties -------------------------------------------------------------------------------

TOLERANCE = D("1e-20")  # inverse exposures and pro-rata fractions are 34-digit quotients

marks = st.decimals(min_value=D("100"), max_value=D("100000"), places=1)
quantities = st.decimals(min_value=D("-5000"), max_value=D("5000"), places=0)
settle_indices = st.decimals(min_value=D("0.98"), max_value=D("1.02"), places=5)
holdings = st.decimals(min_value=D("-5"), max_value=D("50"), places=8)
spot_settings = st.none() | st.decimals(min_value=ZERO, max_value=D("50"), places=8)
indices = st.decimals(min_value=D("100"), max_value=D("100000"), places=2)


@st.composite
def unit_items(draw: st.DrawFn) -> UnitItem:
    """Draw one derivative of a BTC unit: a linear perpetual or future (USDT/USDC), or inverse."""
    kind = draw(st.sampled_from([k for k in Kind if k is not Kind.OPTION]))  # options: own tests
    qty = draw(quantities)
    mark = draw(marks)
    symbol = draw(st.sampled_from(["P1", "P2", "F1", "F2", "I1"]))
    if kind is Kind.INVERSE_PERPETUAL:
        size = draw(st.sampled_from([D("10"), D("100")]))
        return UnitItem(symbol, kind, qty, size, mark, D("1"), "USD", None, D("0.0005"))
    size = draw(st.sampled_from([D("0.001"), D("0.01"), D("1")]))
    currency = draw(st.sampled_from(["USDT", "USDC"]))
    expiry = draw(st.sampled_from([MARCH, JUNE])) if kind is Kind.LINEAR_FUTURE else None
    settle = draw(settle_indices)
    return UnitItem(symbol, kind, qty, size, mark, settle, currency, expiry, D("0.0005"))


books = st.lists(unit_items(), min_size=0, max_size=5)


def applied(legs: list[tuple[UnitItem, Decimal]], items: list[UnitItem]) -> list[UnitItem]:
    """Return the book after the legs: each closed qty moves q toward 0 by that many contracts."""
    closed: dict[int, Decimal] = {}
    for item, qty in legs:
        closed[id(item)] = closed.get(id(item), ZERO) + qty
    after = []
    for item in items:
        cut = closed.get(id(item), ZERO)
        assert cut <= abs(item.qty)
        new_qty = item.qty - cut if item.qty > ZERO else item.qty + cut
        after.append(replace(item, qty=new_qty))
    return after


@settings(max_examples=100, deadline=None)
@given(books, holdings, spot_settings, indices)
def test_property_unit_mmr_covers_both_arms(
    items: list[UnitItem], holding: Decimal, setting: Decimal | None, index: Decimal
) -> None:
    """MMR ≥ MR7 and MMR ≥ max(MR1, MR6) + MR4 + MR9, equal to one of them; IMR = 1.3 MMR."""
    figures = risk_unit_figures(items, holding, setting, index, BTC, IMR_FACTOR, T0)
    stressed = max(figures.mr1, figures.mr6) + figures.mr4 + figures.mr9
    assert figures.mmr >= figures.mr7
    assert figures.mmr >= stressed
    assert figures.mmr in (figures.mr7, stressed)
    assert figures.imr == IMR_FACTOR * figures.mmr
    assert figures.delta_usd == figures.delta * index


@settings(max_examples=100, deadline=None)
@given(books, holdings, indices)
def test_property_automatic_spot_never_raises_mr1_or_mr6(
    items: list[UnitItem], holding: Decimal, index: Decimal
) -> None:
    """Auto spot offsets only a short derivatives delta and never beyond it: |X| ≤ |D|, same
    sign or zero, so MR1 and MR6 with auto spot ≤ with spot 0."""
    coins = derivatives_delta(items)
    auto = coins + spot_in_use(holding, coins, None)
    assert mr1(auto, index, BTC.price_shocks) <= mr1(coins, index, BTC.price_shocks)
    factor = BTC.extreme_factor
    assert mr6(auto, index, BTC.extreme_shocks, factor) <= mr6(
        coins, index, BTC.extreme_shocks, factor
    )


def _net_cash(items: list[UnitItem]) -> Decimal:
    return sum((cash_delta(item) for item in items), ZERO)


@settings(max_examples=100, deadline=None)
@given(books, st.booleans())
def test_property_hedge_reduction_keeps_net_cash_delta_and_removes_the_hedge(
    items: list[UnitItem], by_tenor: bool
) -> None:
    """After the legs: Σ c unchanged (L − S, up to the 34-digit fractions H/L, H/S), the hedge
    between groups gone (H' ≈ 0), no position closed beyond its size (checked in `applied`)."""
    grouping = tenor_groups if by_tenor else margin_currency_groups
    legs = hedge_reduction(grouping(items))
    assert all(qty > ZERO for _, qty in legs)
    after = applied(legs, items)
    assert abs(_net_cash(after) - _net_cash(items)) <= TOLERANCE
    nets_after = [_net_cash(group) for group in grouping(after).values()]
    assert hedged_value(nets_after) <= TOLERANCE


@settings(max_examples=100, deadline=None)
@given(books, holdings, spot_settings)
def test_property_delta_reduction_brings_unit_delta_to_zero_without_crossing(
    items: list[UnitItem], holding: Decimal, setting: Decimal | None
) -> None:
    """Re-evaluate X' = D' + s' after the legs (spot re-computed): |X'| ≤ |X|, never of the
    other sign; X' ≈ 0 whenever the positions on X's side hold at least |X| coins (always with
    automatic spot; fixed spot above the short side can leave X' > 0: spot is never sold)."""
    coins = derivatives_delta(items)
    delta = coins + spot_in_use(holding, coins, setting)
    legs = delta_reduction(items, delta)
    after = applied(legs, items)
    coins_after = derivatives_delta(after)
    delta_after = coins_after + spot_in_use(holding, coins_after, setting)
    assert abs(delta_after) <= abs(delta) + TOLERANCE
    assert delta_after * delta >= -TOLERANCE * abs(delta)
    side = sum((abs(coin_exposure(i)) for i in items if coin_exposure(i) * delta > ZERO), ZERO)
    if side >= abs(delta):
        assert abs(delta_after) <= TOLERANCE


@settings(max_examples=100, deadline=None)
@given(
    delta=st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=4,
                      allow_nan=False, allow_infinity=False),
    index=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4,
                      allow_nan=False, allow_infinity=False),
    shocks=st.lists(st.decimals(min_value=Decimal("-0.99"), max_value=Decimal("2"), places=3,
                                allow_nan=False, allow_infinity=False), min_size=1, max_size=9),
)
def test_grid_ends_shortcut_equals_the_whole_grid(
    delta: Decimal, index: Decimal, shocks: list[Decimal]
) -> None:
    """PnL is linear in the shock, so the worst loss over the grid is at one of its ends:
    the shortcut the rules take equals the point-by-point grid, exactly."""
    assert worst_loss(delta, index, shocks) == grid_worst_loss(delta, index, shocks)
