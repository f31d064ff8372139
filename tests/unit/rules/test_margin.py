"""The account evaluator (DESIGN §6.3 and 6.11): the public scenarios' hand arithmetic on
`evaluate`, the single-asset withdrawal limit and cross liquidation prices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.margin import (
    AccountSnapshot,
    Market,
    OrderBook,
    PositionState,
    RestingOrder,
    available_after_withdrawal,
    cross_liquidation_price,
    evaluate,
    max_withdrawable,
)
from ledger.rules.terms import (
    AssetTerms,
    CollateralTier,
    InstrumentTerms,
    Kind,
    MmBasis,
    Mode,
    RiskTier,
)

numbers.install()

D = Decimal
AT = datetime(2025, 1, 1, tzinfo=UTC)
SINGLE, MULTI = Mode.SINGLE_ASSET, Mode.MULTI_ASSET
BTCUSDT = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D("0.0001"),
                          (RiskTier(D("10000000"), D("0.004"), D(125)),))
ETH_TIERS = tuple(RiskTier(D(u), D(m), D(lev), D(d)) for u, m, lev, d in (
    ("100000", "0.02", "50", "0"), ("200000", "0.025", "40", "500"),
    ("300000", "0.03", "30", "1500"), ("1000000", "0.035", "25", "3000")))
ETHUSDC = InstrumentTerms("ETHUSDC", Kind.LINEAR_PERPETUAL, "ETH", "USDC", D(1), ETH_TIERS,
                          mm_basis=MmBasis.ENTRY, taker_fee_rate=D("0.00055"))


def market(instrument: InstrumentTerms, mark: str, **assets: AssetTerms) -> Market:
    indexes = {name: D(4000) for name in assets if name == "ETH"}
    return Market(AT, assets, indexes, {instrument.symbol: instrument},
                  {instrument.symbol: D(mark)})


def cross(symbol: str, qty: str, entry: str) -> PositionState:
    return PositionState(symbol, "cross", D(qty), D(entry), leverage=D(10))


# ----------------------------------------------------------------------------- single asset


def test_withdraw_limit_scenario() -> None:
    """2 BTC @30,000 at 10× needs IM 6,000 of the 10,000 wallet: available 4,000 =
    max_withdrawable; MM 60,000 · 0.4 % = 240, ratio 240 / 10,000 = 0.024."""
    acct = AccountSnapshot(SINGLE, {"USDT": D(10000)}, (cross("BTCUSDT", "20000", "30000"),))
    figures = evaluate(acct, market(BTCUSDT, "30000"))
    assert figures.margin.initial_margin_usd == D(6000)
    assert figures.margin.available_usd == D(4000)
    assert figures.margin.max_withdrawable == {"USDT": D(4000)}
    assert figures.margin.maintenance_margin_usd == D(240)
    assert figures.margin.margin_ratio == D("0.024")
    assert available_after_withdrawal(acct, market(BTCUSDT, "30000"), "USDT", D(1500)) == D(2500)


def test_single_asset_cross_long_liquidation_price() -> None:
    """Wallet 10,200, long 2 BTC @30,000, mark basis, 0.4 %: 10,200 + 2 · (P − 30,000)
    = 2 · P · 0.004 → 1.992 P = 49,800 → P = 25,000. Check: 200 = 50,000 · 0.4 %."""
    acct = AccountSnapshot(SINGLE, {"USDT": D(10200)}, (cross("BTCUSDT", "20000", "30000"),))
    mkt = market(BTCUSDT, "30000")
    assert cross_liquidation_price(acct, mkt, "BTCUSDT") == D(25000)
    assert evaluate(acct, mkt).positions[0].liquidation_price == D(25000)


def test_single_asset_cross_short_liquidation_price() -> None:
    """Wallet 10,280, short 2 BTC @30,000: 10,280 − 2 · (P − 30,000) = 2 · P · 0.004
    → 2.008 P = 70,280 → P = 35,000. Check: 280 = 70,000 · 0.4 %."""
    acct = AccountSnapshot(SINGLE, {"USDT": D(10280)}, (cross("BTCUSDT", "-20000", "30000"),))
    assert cross_liquidation_price(acct, market(BTCUSDT, "30000"), "BTCUSDT") == D(35000)


def test_a_cross_long_that_cannot_be_liquidated_has_no_price() -> None:
    """Wallet 70,000 ≥ the notional 60,000: equity stays above MM down to 0 → null."""
    acct = AccountSnapshot(SINGLE, {"USDT": D(70000)}, (cross("BTCUSDT", "20000", "30000"),))
    assert cross_liquidation_price(acct, market(BTCUSDT, "30000"), "BTCUSDT") is None


def test_seed_004_open_orders_push_the_tier() -> None:
    """Long 50 @4,000 (entry basis) + resting buy 50 @3,000: (200,000 + 150,000) · 3.5 % =
    12,250; IM 20,000 + 15,000 = 35,000 → available 65,000; ratio 12,250 / 100,000 = 0.1225.
    The position alone keeps 200,000 · 2.5 % − 500 = 4,500."""
    acct = AccountSnapshot(SINGLE, {"USDC": D(100000)}, (cross("ETHUSDC", "50", "4000"),),
                           orders={"ETHUSDC": OrderBook(buy=RestingOrder(D(50), D(3000)))})
    figures = evaluate(acct, market(ETHUSDC, "4000"))
    assert figures.margin.maintenance_margin_usd == D(12250)
    assert figures.margin.initial_margin_usd == D(35000)
    assert figures.margin.available_usd == D(65000)
    assert figures.margin.margin_ratio == D("0.1225")
    assert figures.positions[0].maintenance_margin == D(4500)
    assert figures.positions[0].notional == D(200000)


def test_seed_004_after_the_orders_fill() -> None:
    """100 @3,500, mark 3,000: MM 350,000 · 3.5 % − 3,000 = 9,250; equity 100,000 − 50,000 =
    50,000; ratio 0.185; level 200/37; IM 350,000 / 10 (entry basis) → available 15,000."""
    acct = AccountSnapshot(SINGLE, {"USDC": D(100000)}, (cross("ETHUSDC", "100", "3500"),))
    margin = evaluate(acct, market(ETHUSDC, "3000")).margin
    assert margin.maintenance_margin_usd == D(9250)
    assert margin.equity_usd == D(50000)
    assert margin.margin_ratio == D("0.185")
    assert margin.margin_level == D("5." + "405" * 11)
    assert margin.available_usd == D(15000)
    assert not margin.past_liquidation


def test_seed_004_close_fee_in_mm() -> None:
    """Short 100 @4,200, wallet 99,769: 420,000 · 3.5 % − 3,000 + 420,000 · 1.1 · 0.055 %
    = 11,700 + 254.1 = 11,954.1; the same long: 11,700 + 207.9 = 11,907.9."""
    terms = replace(ETHUSDC, close_fee_in_mm=True)
    for qty, expected in (("-100", "11954.1"), ("100", "11907.9")):
        acct = AccountSnapshot(SINGLE, {"USDC": D(99769)}, (cross("ETHUSDC", qty, "4200"),))
        figures = evaluate(acct, market(terms, "4200"))
        assert figures.positions[0].maintenance_margin == D(expected)
        assert figures.margin.maintenance_margin_usd == D(expected)


def test_seed_002_isolated_position_stays_out_of_the_account_figures() -> None:
    """950 USDT, isolated PM 900: available 50 = max_withdrawable; MM 0, ratio null; LP 16,272.
    After +36 at mark 16,272: PM 936, available 14, notional 8,136, UPL −864, LP 16,200."""
    terms = replace(BTCUSDT, risk_tiers=(RiskTier(D("1000000"), D("0.004"), D(125)),),
                    mm_basis=MmBasis.ENTRY)
    position = PositionState("BTCUSDT", "isolated", D(5000), D(18000), D(900), D(10), True)
    acct = AccountSnapshot(SINGLE, {"USDT": D(950)}, (position,))
    figures = evaluate(acct, market(terms, "18000"))
    assert figures.margin.available_usd == D(50)
    assert figures.margin.max_withdrawable == {"USDT": D(50)}
    assert figures.margin.maintenance_margin_usd == ZERO
    assert figures.margin.margin_ratio is None
    assert (figures.positions[0].liquidation_price, figures.positions[0].maintenance_margin,
            figures.positions[0].initial_margin) == (D(16272), D(36), D(900))
    topped = replace(acct, positions=(replace(position, position_margin=D(936)),))
    later = evaluate(topped, market(terms, "16272"))
    assert later.margin.available_usd == D(14)
    assert later.margin.equity_usd == D(950)
    assert (later.positions[0].notional, later.positions[0].unrealized_pnl,
            later.positions[0].liquidation_price) == (D(8136), D(-864), D(16200))


def test_seed_004_isolated_positions_reserve_their_margin() -> None:
    """50,000 USDC − PM 350 (XYZ) − PM 40,000 (ETH) = 9,650 available."""
    positions = (PositionState("ETHUSDC", "isolated", D(100), D(4000), D(40000)),
                 PositionState("ETHUSDC", "isolated", D(100), D(35), D(350)))
    acct = AccountSnapshot(SINGLE, {"USDC": D(50000)}, positions)
    assert evaluate(acct, market(ETHUSDC, "4000")).margin.available_usd == D(9650)


# ----------------------------------------------------------------------------- multi asset


ETH = AssetTerms("ETH", collateral_tiers=tuple(
    CollateralTier(None if u is None else D(u), D(r))
    for u, r in (("100", "0.9"), ("200", "0.8"), ("300", "0.7"), ("400", "0.6"), (None, "0"))))


def test_seed_000_alice_and_bob() -> None:
    """alice 350 ETH @4,000: equity 1,400,000, effective 1,080,000, no MM: ratio null,
    available = effective, max_withdrawable = wallet. bob 450: effective 1,200,000."""
    mkt = market(BTCUSDT, "30000", ETH=ETH)
    alice = evaluate(AccountSnapshot(MULTI, {"ETH": D(350)}), mkt)
    assert alice.margin.equity_usd == D(1400000)
    assert alice.margin.effective_equity_usd == D(1080000)
    assert alice.collateral["ETH"].effective_usd == D(1080000)
    assert alice.margin.margin_ratio is None
    assert alice.margin.available_usd == D(1080000)
    assert alice.margin.max_withdrawable == {"ETH": D(350)}
    bob = evaluate(AccountSnapshot(MULTI, {"ETH": D(450)}), mkt)
    assert bob.margin.effective_equity_usd == D(1200000)
    assert bob.margin.equity_usd == D(1800000)


def test_multi_asset_debt_and_stablecoin_index() -> None:
    """ETH 10 (@4,000, 9 · 4,000 = 36,000) and USDT −1,000 (index 1 by default, no haircut):
    effective 35,000, equity 39,000, debts USDT 1,000. The debt must stay covered: keep
    0.9 · e · 4,000 = 1,000 → e = 5/18 → withdraw 10 − 5/18 = 175/18 = 9.7222… (34 digits)."""
    acct = AccountSnapshot(MULTI, {"ETH": D(10), "USDT": D(-1000)})
    figures = evaluate(acct, market(BTCUSDT, "30000", ETH=ETH))
    assert figures.margin.effective_equity_usd == D(35000)
    assert figures.margin.equity_usd == D(39000)
    assert figures.debts == {"ETH": ZERO, "USDT": D(1000)}
    assert figures.collateral["USDT"].index_price == D(1)
    limit = max_withdrawable(acct, market(BTCUSDT, "30000", ETH=ETH), "ETH")
    assert limit == D("9.722222222222222222222222222222222")


# ----------------------------------------------------------------------------- inverse cross

BTCUSD = InstrumentTerms("BTCUSD", Kind.INVERSE_PERPETUAL, "BTC", "BTC", D(100),
                         (RiskTier(None, D("0.02"), D(50)),))
# Long 108 × 100 USD @54,000 (0.2 BTC), wallet 0.02 BTC, mark basis, 2 %:
# 0.02 + 10,800 · (1/54,000 − 1/P) = 0.02 · 10,800 / P → P = 10,800 · 1.02 / 0.22 = 11,016 / 0.22.
INVERSE_LONG_LP = D("50072.72727272727272727272727272727")


def _inverse_long() -> tuple[AccountSnapshot, Market]:
    acct = AccountSnapshot(SINGLE, {"BTC": D("0.02")}, (cross("BTCUSD", "108", "54000"),))
    return acct, Market(AT, {}, {"BTC": D(54000)}, {"BTCUSD": BTCUSD}, {"BTCUSD": D(54000)})


def test_inverse_cross_long_liquidation_price_is_near_the_hand_root() -> None:
    """11,016 / 0.22 = 50,072.7272… (to 15 significant digits; the exact test follows)."""
    price = cross_liquidation_price(*_inverse_long(), "BTCUSD")
    assert price is not None
    assert abs(price - INVERSE_LONG_LP) <= D("1e-10")


def test_inverse_cross_long_liquidation_price_is_exact_to_34_digits() -> None:
    price = cross_liquidation_price(*_inverse_long(), "BTCUSD")
    assert price is not None
    assert abs(price - INVERSE_LONG_LP) <= D("1e-28")
