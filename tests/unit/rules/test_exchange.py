"""Auto-exchange: which coin is covered, by whom and in what shares (DESIGN §6.9, 6.11)."""

from __future__ import annotations

from decimal import Decimal

from ledger.rules.exchange import auto_exchange_deficit, auto_exchange_givers

d = Decimal


def test_the_deficit_counts_only_beyond_the_threshold() -> None:
    assert auto_exchange_deficit(d(-20000), d(1), d(10000)) == d(20000)
    assert auto_exchange_deficit(d(-10000), d(1), d(10000)) == 0  # `above`: not at
    assert auto_exchange_deficit(d(-5), d(3000), d(10000)) == d(5)  # 15,000 USD > 10,000
    assert auto_exchange_deficit(d(10), d(1), d(0)) == 0


def test_givers_are_the_other_positive_coins_weighted_by_effective_collateral() -> None:
    collateral = [
        ("USDT", d(-20000), d(1), d(-20000)),
        ("BTC", d(1), d(60000), d(54000)),
        ("ETH", d(10), d(3000), d(27000)),
        ("SOL", d(5), None, d(0)),  # no index: cannot be valued, gives nothing
        ("DOGE", d(0), d("0.1"), d(0)),
    ]
    givers, total = auto_exchange_givers("USDT", collateral)
    assert givers == [("BTC", d(54000), d(60000)), ("ETH", d(27000), d(3000))]
    assert total == d(81000)
