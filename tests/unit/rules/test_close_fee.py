"""Exchange conventions of issue 14 (convB): the fee to close and where it is measured
(`close_fee_basis`), the order cost, the initial margin with the close fee, the liquidation
price on the tick, MEXC's `restore_initial_rate` top-up and Binance's bid/ask buffers, each
against the exchange's own worked example where one was found (URL cited), else a hand
computation of the page's rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.close_fee import (
    bankruptcy_price,
    entry_close_fee,
    fee_to_close,
    initial_margin_with_close_fee,
    liquidation_price_tick,
    order_cost,
)
from ledger.rules.liquidation import (
    IsolatedPosition,
    auto_top_up_amount,
    isolated_liquidation_price,
    isolated_maintenance_margin,
    restore_initial_rate_amount,
)
from ledger.rules.margin import (
    AccountSnapshot,
    Market,
    OrderBook,
    PositionState,
    RestingOrder,
    cross_liquidation_price,
    evaluate,
)
from ledger.rules.positions import unrealized_pnl
from ledger.rules.terms import (
    AssetTerms,
    AutoAddAmount,
    CloseFeeBasis,
    InstrumentTerms,
    Kind,
    MmBasis,
    Mode,
    RiskTier,
)
from ledger.rules.valuation import ask_price, bid_price, valuation_price

numbers.install()

D = Decimal
AT = datetime(2025, 1, 1, tzinfo=UTC)


def cents(value: Decimal, places: str = "0.01") -> Decimal:
    """Round as a page prints (half up), for comparing with a printed figure only."""
    return value.quantize(D(places), rounding=ROUND_HALF_UP)


# ----------------------------------------------------------------------------- order cost


def test_bybit_order_cost_usdt_long() -> None:
    """Bybit "Order Cost (USDT Contract)" (https://www.bybit.com/en/help-center/article/
    Order-Cost-USDT-Contract; the example as reproduced at
    https://mobie.io/faq/how-much-is-the-commission-fee-of-usdt-perpetual-contract-on-bybit):
    long 1 BTC @10,000, 50×, taker 0.075 %: IM 200, open 7.5, bankruptcy 9,800, close 7.35,
    order cost 214.85 USDT."""
    assert bankruptcy_price(D(10000), D(50), True, False) == D(9800)
    close = entry_close_fee(D(1), D(1), D(10000), D(50), D("0.00075"), False)
    assert close == D("7.35")
    assert order_cost(D(200), D("7.5"), close) == D("214.85")


def test_phemex_order_cost_usdt_long() -> None:
    """Phemex "Order Cost (USDT Contract)" (https://phemex.com/help-center/Order-Cost-USDT-Contract):
    long 1 BTC @70,000, 10×, 0.055 %: IM 7,000, open 38.5, close 1 × 70,000 × 0.9 × 0.055 %
    = 34.65, order cost 7,073.15 USDT."""
    close = entry_close_fee(D(1), D(1), D(70000), D(10), D("0.00055"), False)
    assert close == D("34.65")
    assert order_cost(D(7000), D("38.5"), close) == D("7073.15")


def test_inverse_entry_fee_is_at_the_inverse_bankruptcy_price() -> None:
    """Legacy Bybit inverse (https://help.bybit.com/hc/en-us/sections/900000040766-Bybit-
    Perpetual-Contract-Inverse-, "Initial Margin (Inverse Contract)": 12,000 BTCUSD @8,000,
    50× → IM 12,000 / (8,000 × 50) = 0.03 BTC). The page's "Order Cost (Inverse Contract)"
    text could not be read here, so the fee to close is a hand computation of its stated
    rule, Q / bankruptcy × taker: BP = 8,000 × 50 / 51, so 12,000 / BP × 0.075 % =
    12,000 × 51 / 400,000 × 0.00075 = 1.53 × 0.00075 = 0.0011475 BTC.

    The ledger before issue 14 applied the linear factor instead: 12,000 / 8,000 × (1 − 1/50)
    × 0.075 % = 0.0011025 BTC, which is not Bybit's figure (and falls on the wrong side: a
    long's inverse bankruptcy price is below entry, so the coin fee is larger)."""
    bp = bankruptcy_price(D(8000), D(50), True, True)
    assert bp is not None
    assert bp * 51 == D(400000) or abs(bp * 51 - D(400000)) < D("1e-28")
    fee = entry_close_fee(D(12000), D(1), D(8000), D(50), D("0.00075"), True)
    assert abs(fee - D("0.0011475")) < D("1e-30")
    assert D(12000) / D(8000 * 50) == D("0.03")
    # Short: BP = 8,000 × 50 / 49; fee = 12,000 × 49 / 400,000 × 0.00075 = 0.0011025.
    short = entry_close_fee(D(-12000), D(1), D(8000), D(50), D("0.00075"), True)
    assert abs(short - D("0.0011025")) < D("1e-30")
    # A 1× inverse short has no bankruptcy price: no fee is estimated.
    assert bankruptcy_price(D(8000), D(1), False, True) is None
    assert entry_close_fee(D(-1), D(1), D(8000), D(1), D("0.00075"), True) == ZERO


# ----------------------------------------------------------------------------- IM with fee


BTCUSDC = InstrumentTerms("BTCUSDC", Kind.LINEAR_PERPETUAL, "BTC", "USDC", D(1),
                          (RiskTier(None, D("0.005"), D(100)),), taker_fee_rate=D("0.00055"))


def test_bybit_usdc_initial_margin_includes_the_fee_to_close() -> None:
    """Bybit "Initial Margin Calculation (USDC Perpetual & Futures)" (https://www.bybit.com/en/
    help-center/article/Initial-Margin-Calculation-USDC-Contract, as mirrored at
    https://www.lixoperdavimuzonrak.com/en/help-center/article/Initial-Margin-Calculation-USDC-Contract):
    long 0.5 BTC @50,000, 10×, mark 50,500, taker 0.055 %: IM 0.5 × 50,500 / 10 = 2,525;
    fee to close 0.5 × 50,000 × (1 − 1/10) × 0.055 % = 12.375; shown IM 2,537.375 USDC."""
    fee = entry_close_fee(D("0.5"), D(1), D(50000), D(10), D("0.00055"), False)
    assert fee == D("12.375")
    assert initial_margin_with_close_fee(D(2525), fee) == D("2537.375")
    terms = replace(BTCUSDC, im_includes_close_fee=True)
    account = AccountSnapshot(Mode.SINGLE_ASSET, {"USDC": D(10000)}, (
        PositionState("BTCUSDC", "cross", D("0.5"), D(50000), leverage=D(10)),))
    market = Market(AT, {}, {}, {"BTCUSDC": terms}, {"BTCUSDC": D(50500)})
    figures = evaluate(account, market)
    assert figures.positions[0].initial_margin == D("2537.375")
    assert figures.margin.initial_margin_usd == D("2537.375")
    # Default (false): 2,525 as before.
    plain = Market(AT, {}, {}, {"BTCUSDC": BTCUSDC}, {"BTCUSDC": D(50500)})
    assert evaluate(account, plain).positions[0].initial_margin == D(2525)


def test_an_orders_initial_margin_includes_its_fee_to_close() -> None:
    """Hand computation (Bybit's rule applied to an order, entry = the order's price): flat,
    a buy of 0.5 @50,000 at 10× → 2,500 + 12.375 = 2,512.375; a sell of 0.5 @50,000 →
    2,500 + 0.5 × 50,000 × 1.1 × 0.055 % = 2,500 + 15.125 = 2,515.125."""
    terms = replace(BTCUSDC, im_includes_close_fee=True)
    market = Market(AT, {}, {}, {"BTCUSDC": terms}, {"BTCUSDC": D(50000)})
    for book, expected in ((OrderBook(buy=RestingOrder(D("0.5"), D(50000))), "2512.375"),
                           (OrderBook(sell=RestingOrder(D("0.5"), D(50000))), "2515.125")):
        account = AccountSnapshot(Mode.SINGLE_ASSET, {"USDC": D(10000)},
                                  orders={"BTCUSDC": book}, leverage={"BTCUSDC": D(10)})
        assert evaluate(account, market).margin.initial_margin_usd == D(expected)


# ----------------------------------------------------------------------------- price tick


def test_liquidation_price_tick_rounds_towards_the_mark() -> None:
    """No exchange page with a worked example of the rounding was found; the rule (a long's
    liquidation price up to the tick, a short's down, so the position is called no later than
    the exact price allows) is computed by hand: 16,271.96 on 0.5 → 16,272; 16,272 stays;
    short 4,581.77 on 0.05 → 4,581.75; 45,253.419… on 0.1 → 45,253.5 (long)."""
    assert liquidation_price_tick(D("16271.96"), D("0.5"), True) == D(16272)
    assert liquidation_price_tick(D(16272), D("0.5"), True) == D(16272)
    assert liquidation_price_tick(D("4581.77"), D("0.05"), False) == D("4581.75")
    assert liquidation_price_tick(D("45253.41914"), D("0.1"), True) == D("45253.5")
    assert liquidation_price_tick(D("45253.41914"), D("0.1"), False) == D("45253.4")


def test_state_figures_carry_the_tick_price_and_the_bankruptcy_price() -> None:
    """Seed 002's isolated long (LP 16,272 exact) on a 5 tick → 16,275; bankruptcy 18,000 ×
    0.9 = 16,200; without a tick the field is None."""
    terms = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D("0.0001"),
                            (RiskTier(None, D("0.004"), D(125)),), mm_basis=MmBasis.ENTRY,
                            price_tick=D(5))
    position = PositionState("BTCUSDT", "isolated", D(5000), D(18000), D(900), D(10))
    account = AccountSnapshot(Mode.SINGLE_ASSET, {"USDT": D(950)}, (position,))
    figures = evaluate(account, Market(AT, {}, {}, {"BTCUSDT": terms}, {"BTCUSDT": D(18000)}))
    assert figures.positions[0].liquidation_price == D(16272)
    assert figures.positions[0].liquidation_price_tick == D(16275)
    assert figures.positions[0].bankruptcy_price == D(16200)
    untagged = replace(terms, price_tick=None)
    figures = evaluate(account, Market(AT, {}, {}, {"BTCUSDT": untagged}, {"BTCUSDT": D(18000)}))
    assert figures.positions[0].liquidation_price_tick is None


# ----------------------------------------------------------------------------- Bitget basis


def bitget_long(basis: CloseFeeBasis) -> IsolatedPosition:
    return IsolatedPosition(qty=D(1), entry_price=D(50000), contract_size=D(1),
                            position_margin=D(5000), leverage=D(10), inverse=False,
                            tiers=(RiskTier(None, D("0.005"), D(100)),), mm_basis=MmBasis.MARK,
                            close_fee_rate=D("0.0006"), close_fee_basis=basis)


def test_bitget_liquidation_price_has_1_minus_mmr_minus_taker_in_its_denominator() -> None:
    """Bitget "Estimated liquidation price" (https://bitget.com/asia/support/articles/
    12560603808759) prints its formula as an image that could not be read here; its text
    names the taker fee ratio and the MMR as inputs, and Bitget's liquidation notice
    (https://bitget.site/news/detail/12560604115513) divides by Q × (1 − fee rate). Hand
    computation of that rule: isolated long 1 BTC @50,000, PM 5,000, MMR 0.5 %, taker
    0.06 %: LP = (50,000 − 5,000) / (1 − 0.005 − 0.0006) = 45,000 / 0.9944 = 45,253.419…;
    check: PM + UPL = 5,000 − 4,746.58… = 253.419… = LP × (0.005 + 0.0006)."""
    position = bitget_long(CloseFeeBasis.LIQUIDATION_PRICE)
    price = isolated_liquidation_price(position, D(50000))
    assert price == D(45000) / D("0.9944")
    assert cents(price) == D("45253.42")
    equity = position.position_margin + unrealized_pnl(D(1), D(50000), price, D(1), False)
    assert abs(equity - isolated_maintenance_margin(position, price)) < D("1e-28")
    # Short: LP = (5,000 + 50,000) / (1 + 0.005 + 0.0006) = 55,000 / 1.0056.
    short = replace(position, qty=D(-1))
    assert isolated_liquidation_price(short, D(50000)) == D(55000) / D("1.0056")
    # Entry basis (today): the fee at the bankruptcy price 45,000 is 27 →
    # LP = (50,000 − 5,000 + 27) / 0.995 = 45,253.266…
    entry = bitget_long(CloseFeeBasis.ENTRY)
    assert isolated_liquidation_price(entry, D(50000)) == D(45027) / D("0.995")


def test_bitget_basis_entry_mm_basis_and_inverse() -> None:
    """Hand computations: `mm_basis = entry`, MM fixed at 50,000 × 0.5 % = 250, the fee at
    LP: long LP = (250 − 5,000 + 50,000) / (1 − 0.0006) = 45,250 / 0.9994. Inverse long
    (10,000 USD contracts @50,000, PM 0.02 BTC, MMR 0.5 % at mark): LP = Q(1 + mmr + t) /
    (PM + Q/E) = 10,000 × 1.0056 / (0.02 + 0.2) = 10,056 / 0.22 = 45,709.09…"""
    entry = replace(bitget_long(CloseFeeBasis.LIQUIDATION_PRICE), mm_basis=MmBasis.ENTRY)
    assert isolated_liquidation_price(entry, D(50000)) == D(45250) / D("0.9994")
    inverse = IsolatedPosition(qty=D(10000), entry_price=D(50000), contract_size=D(1),
                               position_margin=D("0.02"), leverage=D(10), inverse=True,
                               tiers=(RiskTier(None, D("0.005"), D(100)),),
                               mm_basis=MmBasis.MARK, close_fee_rate=D("0.0006"),
                               close_fee_basis=CloseFeeBasis.LIQUIDATION_PRICE)
    assert isolated_liquidation_price(inverse, D(50000)) == D(10056) / D("0.22")


def test_bitget_basis_cross_liquidation_price_matches_the_isolated_rule() -> None:
    """Cross long, wallet 5,000 USDT alone, the same figures: the cross solver reaches the
    same 45,000 / 0.9944 (its equity is the wallet plus UPL, its MM includes N(P) × t)."""
    terms = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D(1),
                            (RiskTier(None, D("0.005"), D(100)),), taker_fee_rate=D("0.0006"),
                            close_fee_in_mm=True,
                            close_fee_basis=CloseFeeBasis.LIQUIDATION_PRICE)
    account = AccountSnapshot(Mode.SINGLE_ASSET, {"USDT": D(5000)}, (
        PositionState("BTCUSDT", "cross", D(1), D(50000), leverage=D(10)),))
    market = Market(AT, {}, {}, {"BTCUSDT": terms}, {"BTCUSDT": D(50000)})
    price = cross_liquidation_price(account, market, "BTCUSDT")
    assert price is not None
    assert abs(price - D(45000) / D("0.9944")) < D("1e-24")


# ----------------------------------------------------------------------------- MEXC top-up


def mexc_position(margin: str) -> IsolatedPosition:
    return IsolatedPosition(qty=D(5000), entry_price=D(18000), contract_size=D("0.0001"),
                            position_margin=D(margin), leverage=D(10), inverse=False,
                            tiers=(RiskTier(None, D("0.004"), D(125)),), mm_basis=MmBasis.ENTRY)


def test_mexc_restore_initial_rate_worked_example() -> None:
    """MEXC "Feature: Auto-margin Addition" (2022-09-06, support.mexc.com article
    360052856411, as mirrored at https://www.coincarp.com/es/exchange/announcement/
    mexc-360052856411-feature-auto-margin-addition): 5,000 × 0.0001 BTC @18,000, 10×, fair
    price 16,288.98 → added 764.56 USDT. Formula: fair × Q × F / lev − UPL − PM
    = 814.449 + 855.51 − PM. The page does not print PM: with the bare 900 it gives
    769.959; its 764.56 is reproduced by PM 905.40 = 900 + 9,000 × 0.06 % (the taker fee
    MEXC held in the position margin then): 1,669.959 − 905.4 = 764.559 → 764.56."""
    assert restore_initial_rate_amount(mexc_position("900"), D("16288.98")) == D("769.959")
    added = restore_initial_rate_amount(mexc_position("905.4"), D("16288.98"))
    assert added == D("764.559")
    assert cents(added) == D("764.56")
    policy = AutoAddAmount.RESTORE_INITIAL_RATE
    # At most what is available, never below zero.
    assert auto_top_up_amount(mexc_position("905.4"), D("16288.98"), policy, D(1000)) == added
    assert auto_top_up_amount(mexc_position("905.4"), D("16288.98"), policy, D(500)) == D(500)
    assert auto_top_up_amount(mexc_position("905.4"), D(18000), policy, D(1000)) == ZERO


def test_mexc_restore_initial_rate_inverse() -> None:
    """The page's coin-margined rule, by hand: Q × F / (lev × fair) − UPL − PM. 10,000 USD
    contracts @50,000, 10×, PM 0.02 BTC, fair 40,000: 10,000 / 400,000 = 0.025; UPL =
    10,000 × (1/50,000 − 1/40,000) = −0.05; added 0.025 + 0.05 − 0.02 = 0.055 BTC."""
    position = IsolatedPosition(qty=D(10000), entry_price=D(50000), contract_size=D(1),
                                position_margin=D("0.02"), leverage=D(10), inverse=True,
                                tiers=(RiskTier(None, D("0.005"), D(100)),),
                                mm_basis=MmBasis.MARK)
    assert restore_initial_rate_amount(position, D(40000)) == D("0.055")


def test_fee_to_close_is_linear_times_price_and_inverse_divided() -> None:
    """1 BTC at 9,800 × 0.075 % = 7.35; 12,000 USD at 8,000 × 0.075 % = 0.001125 BTC."""
    assert fee_to_close(D(-1), D(1), D(9800), D("0.00075"), False) == D("7.35")
    assert fee_to_close(D(12000), D(1), D(8000), D("0.00075"), True) == D("0.001125")


# ----------------------------------------------------------------------------- bid / ask

BINANCE_URL = ("https://www.binance.com/en/support/faq/"
               "how-to-calculate-margin-in-multi-assets-mode-c983a9268cfa4e70a4916c276bb3b7bc")


def binance_market(**instruments: InstrumentTerms) -> Market:
    usdt = AssetTerms("USDT", bid_buffer=D("0.01"), ask_buffer=D("0.005"))
    return Market(AT, {"USDT": usdt, "USDC": AssetTerms("USDC")},
                  {"USDT": D("0.99"), "USDC": D(1)}, instruments,
                  {"BTCUSDT": D(20000), "ETHUSDC": D(600)})


def test_binance_bid_and_ask_rates() -> None:
    """Binance "How to Calculate Margin Ratio in the Multi-Assets Mode" (BINANCE_URL):
    USDTUSD index 0.99, index bid buffer 0.01, index ask buffer 0.005 → bid rate 0.9801,
    ask rate 0.99495; a holding counts at the bid, a debt at the ask."""
    assert bid_price(D("0.99"), D("0.01")) == D("0.9801")
    assert ask_price(D("0.99"), D("0.005")) == D("0.99495")
    assert valuation_price(D(200), D("0.99"), D("0.01"), D("0.005")) == D("0.9801")
    assert valuation_price(D(-200), D("0.99"), D("0.01"), D("0.005")) == D("0.99495")


def test_binance_multi_assets_worked_example() -> None:
    """BINANCE_URL, multi-assets mode, 200 USDT + 220 USDC. (1) No positions: account equity
    200 × 0.9801 + 220 × 1 = 416.02; USDT available 416.02 / 0.99495 = 418.13 (printed), USDC
    416.02. (2) BTCUSDT 0.5 @20,000 at 100× (MMR 0.8 %) and ETHUSDC 20 @600 at 50× (MMR 1 %):
    available 416.02 − (0.5 × 20,000 × 0.01 × 0.99495 + 20 × 600 × 0.02 × 1) = 76.525, USDT
    available 76.525 / 0.99495 = 76.91 (printed); MM 0.5 × 20,000 × 0.008 × 0.99495 + 20 ×
    600 × 0.01 = 199.596; margin ratio 199.596 / 416.02 = 0.47977 = 47.98 % (printed)."""
    btc = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D(1),
                          (RiskTier(None, D("0.008"), D(125)),))
    eth = InstrumentTerms("ETHUSDC", Kind.LINEAR_PERPETUAL, "ETH", "USDC", D(1),
                          (RiskTier(None, D("0.01"), D(75)),))
    market = binance_market(BTCUSDT=btc, ETHUSDC=eth)
    balances = {"USDT": D(200), "USDC": D(220)}
    flat_figures = evaluate(AccountSnapshot(Mode.MULTI_ASSET, balances), market)
    assert flat_figures.margin.equity_usd == D("416.02")
    assert flat_figures.margin.available_usd == D("416.02")
    assert cents(flat_figures.available_by_asset["USDT"]) == D("418.13")
    assert flat_figures.available_by_asset["USDC"] == D("416.02")
    held = AccountSnapshot(Mode.MULTI_ASSET, balances, (
        PositionState("BTCUSDT", "cross", D("0.5"), D(20000), leverage=D(100)),
        PositionState("ETHUSDC", "cross", D(20), D(600), leverage=D(50))))
    figures = evaluate(held, market)
    assert figures.margin.available_usd == D("76.525")
    assert cents(figures.available_by_asset["USDT"]) == D("76.91")
    assert figures.available_by_asset["USDC"] == D("76.525")
    assert figures.margin.maintenance_margin_usd == D("199.596")
    ratio = figures.margin.margin_ratio
    assert ratio is not None
    assert ratio == D("199.596") / D("416.02")
    # The page prints 0.47977 (cut, not rounded: 0.4797750…) and 47.98 % (rounded).
    assert ratio.quantize(D("0.00001"), rounding=ROUND_DOWN) == D("0.47977")
    assert cents(ratio * 100) == D("47.98")


def test_buffers_apply_in_multi_asset_mode_only_and_default_to_the_index() -> None:
    """Single-asset mode keeps the index (200 × 0.99 = 198 USD) and reports each asset's own
    free amount (Binance: "USDT available for order = 200"); zero buffers value at the
    index in multi-asset mode too (200 × 0.99 + 220 = 418)."""
    market = binance_market()
    balances = {"USDT": D(200), "USDC": D(220)}
    single = evaluate(AccountSnapshot(Mode.SINGLE_ASSET, balances), market)
    assert single.margin.equity_usd == D(418)
    assert single.available_by_asset == {"USDC": D(220), "USDT": D(200)}
    plain = replace(market, assets={"USDT": AssetTerms("USDT"), "USDC": AssetTerms("USDC")})
    multi = evaluate(AccountSnapshot(Mode.MULTI_ASSET, balances), plain)
    assert multi.margin.equity_usd == D(418)


def test_max_withdrawable_values_the_withdrawn_coin_at_the_bid() -> None:
    """Hand computation on the Binance example with positions: 76.525 USD available; each USDT
    withdrawn lowers equity by the bid 0.9801 (the IM is unchanged), so at most
    76.525 / 0.9801 = 78.0787674727… USDT leave (USDC: 76.525)."""
    btc = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D(1),
                          (RiskTier(None, D("0.008"), D(125)),))
    eth = InstrumentTerms("ETHUSDC", Kind.LINEAR_PERPETUAL, "ETH", "USDC", D(1),
                          (RiskTier(None, D("0.01"), D(75)),))
    held = AccountSnapshot(Mode.MULTI_ASSET, {"USDT": D(200), "USDC": D(220)}, (
        PositionState("BTCUSDT", "cross", D("0.5"), D(20000), leverage=D(100)),
        PositionState("ETHUSDC", "cross", D(20), D(600), leverage=D(50))))
    limits = evaluate(held, binance_market(BTCUSDT=btc, ETHUSDC=eth)).margin.max_withdrawable
    assert abs(limits["USDT"] - D("76.525") / D("0.9801")) < D("1e-28")
    assert limits["USDT"] <= D("76.525") / D("0.9801")
    assert limits["USDC"] == D("76.525")


def test_bankruptcy_price_is_null_in_portfolio_mode() -> None:
    """The risk unit carries a portfolio's requirement: no position-level bankruptcy price;
    the same cross long outside portfolio mode has 50,000 × 0.9 = 45,000."""
    terms = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D(1),
                            (RiskTier(None, D("0.005"), D(100)),))
    market = Market(AT, {}, {"BTC": D(50000)}, {"BTCUSDT": terms}, {"BTCUSDT": D(50000)})
    position = PositionState("BTCUSDT", "cross", D(1), D(50000), leverage=D(10))
    for mode, expected in ((Mode.PORTFOLIO, None), (Mode.MULTI_ASSET, D(45000))):
        account = AccountSnapshot(mode, {"USDT": D(20000)}, (position,))
        assert evaluate(account, market).positions[0].bankruptcy_price == expected
