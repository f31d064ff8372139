"""The fee to close a position, the bankruptcy price and the order cost (issue 14).

Exchanges put the fee a liquidation would pay into the margin in three ways, chosen per
instrument by `close_fee_basis` when `close_fee_in_mm` is true:

- `entry` (default, Bybit): the fee at the bankruptcy price estimated from the entry price and
  the leverage. Linear: Q·F·BP·taker with BP = E·(1 ∓ 1/lev) (= the seed-004 figure
  notional × (1 ∓ 1/lev) × taker). Inverse (legacy Bybit): Q·F / BP × taker in coin, with the
  inverse bankruptcy price BP = E·lev/(lev ± 1).
- `liquidation_price` (Bitget): the fee at the liquidation price itself, notional(LP) × taker,
  so that the liquidation price solves with `1 − mmr − taker` in its denominator.
- `reserved` (Phemex): the fee to close (at the bankruptcy price) is taken into an isolated
  position's margin at opening; the liquidation test is then the same as under `entry`.

`im_includes_close_fee` (Bybit USDC display) adds the same `entry` fee to the initial margin.
Every figure here is exact (not rounded); a posted fee is rounded where it is posted.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ledger.numbers import ONE, ZERO
from ledger.rules.maintenance import close_fee_in_mm


def bankruptcy_price(
    entry_price: Decimal, leverage: Decimal, is_long: bool, inverse: bool
) -> Decimal | None:
    """Return the price at which a position opened at `leverage` has lost its initial margin.

    Linear (Bybit, "Bankruptcy Price (USDT Contract)",
    https://www.bybit.com/en/help-center/article/Bankruptcy-Price-USDT-Contract):
      long E·(1 − 1/lev), short E·(1 + 1/lev).
    Inverse (legacy Bybit, "What is Bankruptcy Price? (Inverse Contract)",
    https://help.bybit.com/hc/en-us/sections/900000040766-Bybit-Perpetual-Contract-Inverse-):
      the coin margin Q·F/(E·lev) is lost where Q·F/BP − Q·F/E = ± Q·F/(E·lev), i.e.
      long E·lev/(lev + 1), short E·lev/(lev − 1) (none for a 1× short); the same formulas
      are printed as "Isolated Margin Bankruptcy Price" at
      https://help.mcs.io/hc/en-us/articles/360040683032-Bankruptcy-Price.
    Example: long @10,000, 50× → 9,800; inverse long @8,000, 50× → 7,843.137…
    """
    if not inverse:
        return entry_price * (ONE - ONE / leverage if is_long else ONE + ONE / leverage)
    if is_long:
        return entry_price * leverage / (leverage + ONE)
    if leverage <= ONE:
        return None  # a 1× inverse short cannot go bankrupt
    return entry_price * leverage / (leverage - ONE)


def fee_to_close(
    qty: Decimal, contract_size: Decimal, price: Decimal, taker_fee_rate: Decimal, inverse: bool
) -> Decimal:
    """Return the taker fee of closing |qty| contracts at `price` (settle asset; inverse: coin).

    Linear |Q|·F·P·taker; inverse |Q|·F/P·taker. Example (Bybit): 1 BTC at the bankruptcy price
    9,800, 0.075 % → 7.35.
    """
    size = abs(qty) * contract_size
    return (size / price if inverse else size * price) * taker_fee_rate


def entry_close_fee(
    qty: Decimal, contract_size: Decimal, entry_price: Decimal, leverage: Decimal,
    taker_fee_rate: Decimal, inverse: bool,
) -> Decimal:
    """Return the fee to close at the bankruptcy price estimated from entry and leverage
    (`close_fee_basis = entry`, Bybit; 0 for a 1× inverse short, which has none).

    Linear: equals the seed-004 rule notional × (1 ∓ 1/lev) × taker (short 100 ETH @4,200, 10×,
    0.055 % → 254.1). Inverse (legacy Bybit "Order Cost (Inverse Contract)"): Q·F/BP × taker;
    example: long 12,000 BTCUSD @8,000, 50×, 0.075 % → BP 7,843.137…, 12,000/BP × 0.00075 =
    0.0011475 BTC.
    """
    if not inverse:  # the seed-004 expression, digit for digit (1/lev may not terminate)
        return close_fee_in_mm(abs(qty) * contract_size * entry_price, leverage,
                               taker_fee_rate, qty > ZERO)
    price = bankruptcy_price(entry_price, leverage, qty > ZERO, inverse)
    if price is None:
        return ZERO
    return fee_to_close(qty, contract_size, price, taker_fee_rate, inverse)


def order_cost(
    initial_margin: Decimal, open_fee: Decimal, close_fee_at_bankruptcy: Decimal
) -> Decimal:
    """Return what opening costs: initial margin + fee to open + fee to close at the bankruptcy
    price (Bybit, "Order Cost (USDT Contract)",
    https://www.bybit.com/en/help-center/article/Order-Cost-USDT-Contract).

    Example: long 1 BTC @10,000, 50×, taker 0.075 % → 200 + 7.5 + 7.35 = 214.85 USDT.
    """
    return initial_margin + open_fee + close_fee_at_bankruptcy


def initial_margin_with_close_fee(initial_margin: Decimal, close_fee: Decimal) -> Decimal:
    """Return the initial margin shown with the fee to close included
    (`im_includes_close_fee`, Bybit "Initial Margin Calculation (USDC Perpetual & Futures)",
    https://www.bybit.com/en/help-center/article/Initial-Margin-Calculation-USDC-Contract).

    `close_fee` is the `entry` fee: Q·E·(1 ∓ 1/lev)·taker. Example: long 0.5 BTC @50,000, 10×,
    mark 50,500, taker 0.055 % → 2,525 + 0.5 × 50,000 × 0.9 × 0.00055 = 2,525 + 12.375 =
    2,537.375 USDC. Favours the exchange (the requirement is larger).
    """
    return initial_margin + close_fee


def liquidation_price_tick(price: Decimal, tick: Decimal, is_long: bool) -> Decimal:
    """Return the liquidation price rounded to the instrument's tick in the conservative
    direction: a long's up, a short's down (the position is called at the first tick at or
    beyond the exact price; favours the exchange).

    Example: long LP 16,271.96 on a 0.5 tick → 16,272.0; short LP 4,581.77 on 0.05 → 4,581.75.
    """
    assert tick > ZERO, tick
    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if is_long else ROUND_FLOOR)
    return steps * tick
