"""Bid/ask valuation of margin assets (issue 14: asset `bid_buffer`, `ask_buffer`).

Binance multi-assets mode values each margin asset at a bid and an ask around its index:
`bid = index × (1 − bid_buffer)`, `ask = index × (1 + ask_buffer)`. An asset's equity counts at
`min(equity × bid, equity × ask)`, so a holding is valued at the bid and a debt at the ask (the
exchange takes the less favourable side either way), and the maintenance and initial margin of
positions settled in the asset convert to USD at the ask. Both buffers default to 0: every
price is then the index, exactly as before.

Source: Binance, "How to Calculate Margin Ratio in the Multi-Assets Mode" (2022-07-06),
https://www.binance.com/en/support/faq/how-to-calculate-margin-in-multi-assets-mode-c983a9268cfa4e70a4916c276bb3b7bc
Example: USDTUSD index 0.99, bid buffer 0.01, ask buffer 0.005 → bid 0.9801, ask 0.99495;
200 USDT + 220 USDC → account equity 200 × 0.9801 + 220 × 1 = 416.02; USDT available for order
416.02 / 0.99495 = 418.13.
"""

from __future__ import annotations

from decimal import Decimal

from ledger.numbers import ONE, ZERO


def bid_price(index: Decimal, bid_buffer: Decimal) -> Decimal:
    """Return index × (1 − bid_buffer). Example: 0.99 × 0.99 = 0.9801."""
    return index * (ONE - bid_buffer)


def ask_price(index: Decimal, ask_buffer: Decimal) -> Decimal:
    """Return index × (1 + ask_buffer). Example: 0.99 × 1.005 = 0.99495."""
    return index * (ONE + ask_buffer)


def valuation_price(
    equity: Decimal, index: Decimal, bid_buffer: Decimal, ask_buffer: Decimal
) -> Decimal:
    """Return the price at which `equity` counts: the one giving min(equity × bid,
    equity × ask), i.e. the bid for a holding and the ask for a debt (Binance multi-assets
    mode; favours the exchange). Example: 200 USDT at index 0.99 (0.01 / 0.005) → 0.9801
    (196.02 USD); −200 USDT → 0.99495 (−198.99 USD)."""
    bid = bid_price(index, bid_buffer)
    ask = ask_price(index, ask_buffer)
    return bid if equity * bid <= equity * ask else ask


def available_in_asset(available_usd: Decimal, ask: Decimal) -> Decimal:
    """Return the USD available converted to an asset at its ask (Binance: "USDT Available for
    Order = 416.02 / 0.99495 = 418.13"). Exact, not rounded; `ask` > 0."""
    assert ask > ZERO, ask
    return available_usd / ask
