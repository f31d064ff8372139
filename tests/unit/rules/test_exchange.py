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


def test_the_at_or_above_trigger_covers_a_debt_exactly_at_the_threshold() -> None:
    """Issue 14, asset `auto_exchange_trigger`. No exchange page with a worked boundary example
    was found; hand computation of the rule: a −10,000 USDT wallet at index 1 is worth exactly
    the 10,000 threshold: `above` (MEXC, "exceeds the auto repayment threshold",
    https://www.mexc.com/futures/information/multi_asset) leaves it, `at_or_above` covers it.
    −2 BTC at 4,999.995 = 9,999.99 USD: below the threshold under both."""
    from ledger.rules.terms import AutoExchangeTrigger

    at_or_above = AutoExchangeTrigger.AT_OR_ABOVE
    assert auto_exchange_deficit(d(-10000), d(1), d(10000), AutoExchangeTrigger.ABOVE) == 0
    assert auto_exchange_deficit(d(-10000), d(1), d(10000), at_or_above) == d(10000)
    assert auto_exchange_deficit(d(-20000), d(1), d(10000), at_or_above) == d(20000)
    assert auto_exchange_deficit(d(-2), d("4999.995"), d(10000), at_or_above) == 0
    assert auto_exchange_deficit(d(-2), d("5000"), d(10000), at_or_above) == d(2)
    assert auto_exchange_deficit(d(0), d(1), d(0), at_or_above) == 0  # no debt at a 0 threshold
