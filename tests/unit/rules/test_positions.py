"""Position arithmetic: entry, realised and unrealised PnL, flips, notional, fees, isolated
margin (DESIGN §6.4; scenario usdc-session-settlement; seeds 002 and 004)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.numbers import ZERO
from ledger.rules.positions import (
    FillOutcome,
    apply_fill,
    average_entry,
    fill_fee,
    isolated_margin_for,
    notional,
    realized_pnl,
    unrealized_pnl,
)

numbers.install()

D = Decimal
BTC_SIZE = D("0.001")  # BTCUSDC in the session-settlement scenario: 100 contracts = 0.1 BTC


def test_open_takes_the_fill_price() -> None:
    assert apply_fill(ZERO, ZERO, D(100), D(50000), BTC_SIZE, inverse=False) == FillOutcome(
        qty=D(100), entry_price=D(50000), closed_qty=ZERO, opened_qty=D(100),
        realized_pnl=ZERO)


def test_add_averages_the_entry_by_quantity() -> None:
    """0.1 @50,000 + 0.1 @50,500 → (50,000 + 50,500) / 2 = 50,250."""
    outcome = apply_fill(D(100), D(50000), D(100), D(50500), BTC_SIZE, inverse=False)
    assert outcome.qty == D(200)
    assert outcome.entry_price == D(50250)
    assert outcome.opened_qty == D(100)
    assert outcome.realized_pnl == ZERO


def test_weighted_average_with_unequal_quantities() -> None:
    """Seed 004 case 2: 50 @4,000 + 50 @3,000 → 3,500; 3 @100 + 1 @200 → 500 / 4 = 125."""
    assert average_entry(D(50), D(4000), D(50), D(3000), inverse=False) == D(3500)
    assert average_entry(D(3), D(100), D(1), D(200), inverse=False) == D(125)


def test_add_to_a_short_averages_too() -> None:
    """Short −2 @100, sell 2 more @110 → −4 @105."""
    outcome = apply_fill(D(-2), D(100), D(-2), D(110), D(1), inverse=False)
    assert (outcome.qty, outcome.entry_price) == (D(-4), D(105))


def test_reduce_realises_pnl_and_keeps_the_entry() -> None:
    """Close 0.1 of 0.2 @50,700 from 50,250: 100 · 0.001 · (50,700 − 50,250) · +1 = 45."""
    outcome = apply_fill(D(200), D(50250), D(-100), D(50700), BTC_SIZE, inverse=False)
    assert outcome == FillOutcome(D(100), D(50250), D(100), ZERO, D(45))


def test_reduce_a_short_at_a_loss() -> None:
    """Short −10 @2,000 (size 1), buy 4 @2,100: 4 · 1 · (2,100 − 2,000) · −1 = −400."""
    outcome = apply_fill(D(-10), D(2000), D(4), D(2100), D(1), inverse=False)
    assert outcome == FillOutcome(D(-6), D(2000), D(4), ZERO, D(-400))


def test_close_flattens_with_entry_zero() -> None:
    """Scenario after session settlement: 0.1 @52,000 closed @51,500 → 0.1 · (−500) = −50."""
    outcome = apply_fill(D(100), D(52000), D(-100), D(51500), BTC_SIZE, inverse=False)
    assert outcome == FillOutcome(ZERO, ZERO, D(100), ZERO, D(-50))


def test_flip_closes_then_opens_the_rest_at_the_fill_price() -> None:
    """Long 100 @50,250, sell 300 @51,000: close 100 → 0.1 · 750 = 75; open short 200 @51,000."""
    outcome = apply_fill(D(100), D(50250), D(-300), D(51000), BTC_SIZE, inverse=False)
    assert outcome == FillOutcome(D(-200), D(51000), D(100), D(200), D(75))


def test_flip_short_to_long() -> None:
    """Short −1 @100 (size 1), buy 3 @90: close 1 → (90 − 100) · −1 = 10; long 2 @90."""
    outcome = apply_fill(D(-1), D(100), D(3), D(90), D(1), inverse=False)
    assert outcome == FillOutcome(D(2), D(90), D(1), D(2), D(10))


def test_inverse_add_uses_the_harmonic_mean() -> None:
    """Inverse (size 100 USD): 300 @50,000 + 100 @25,000 → 400 / (300/50,000 + 100/25,000)
    = 400 / (0.006 + 0.004) = 40,000 (the linear mean would be 43,750)."""
    outcome = apply_fill(D(300), D(50000), D(100), D(25000), D(100), inverse=True)
    assert outcome.entry_price == D(40000)
    assert average_entry(D(300), D(50000), D(100), D(25000), inverse=False) == D(43750)


def test_inverse_realised_pnl_is_in_coin() -> None:
    """Close 100 of a long @40,000 at 50,000, size 100 USD:
    100 · 100 · (1/40,000 − 1/50,000) = 10,000 · 0.000005 = 0.05 BTC."""
    assert realized_pnl(D(100), D(40000), D(50000), D(100), 1, inverse=True) == D("0.05")
    outcome = apply_fill(D(400), D(40000), D(-100), D(50000), D(100), inverse=True)
    assert outcome == FillOutcome(D(300), D(40000), D(100), ZERO, D("0.05"))


def test_inverse_short_loses_coin_when_the_price_rises() -> None:
    """Short −100 @40,000 closed at 50,000: 10,000 · 0.000005 · −1 = −0.05 BTC."""
    assert realized_pnl(D(100), D(40000), D(50000), D(100), -1, inverse=True) == D("-0.05")


def test_unrealised_pnl_linear_and_inverse() -> None:
    """Linear: 100 · 0.001 · (51,000 − 50,250) = 75 (scenario at 04:00).
    Inverse: 100 · 100 · (1/40,000 − 1/50,000) = 0.05; short the opposite; flat 0."""
    assert unrealized_pnl(D(100), D(50250), D(51000), BTC_SIZE, inverse=False) == D(75)
    assert unrealized_pnl(D(100), D(40000), D(50000), D(100), inverse=True) == D("0.05")
    assert unrealized_pnl(D(-100), D(40000), D(50000), D(100), inverse=True) == D("-0.05")
    assert unrealized_pnl(ZERO, ZERO, D(50000), D(100), inverse=True) == ZERO


def test_notional_is_a_magnitude_at_the_price() -> None:
    """Linear short −100 · 0.001 · 51,000 = 5,100; inverse 100 · 100 / 50,000 = 0.2 BTC."""
    assert notional(D(-100), BTC_SIZE, D(51000), inverse=False) == D(5100)
    assert notional(D(100), D(100), D(50000), inverse=True) == D("0.2")


def test_fee_from_the_rate() -> None:
    """Seed 004: 100 ETH · 4,200 · 0.055 % = 231; inverse: 100 · 100 / 50,000 · 0.05 % = 0.0001."""
    assert fill_fee(D(100), D(1), D(4200), D("0.00055"), inverse=False) == D(231)
    assert fill_fee(D(-100), D(100), D(50000), D("0.0005"), inverse=True) == D("0.0001")


def test_isolated_margin_is_the_entry_notional_over_leverage() -> None:
    """Seed 002: 5,000 · 0.0001 · 18,000 / 10 = 9,000 / 10 = 900.
    Inverse: 108 · 100 / 54,000 / 10 = 0.2 / 10 = 0.02 BTC."""
    assert isolated_margin_for(D(5000), D("0.0001"), D(18000), D(10), inverse=False) == D(900)
    assert isolated_margin_for(D(108), D(100), D(54000), D(10), inverse=True) == D("0.02")


QTY = st.decimals(places=3, allow_nan=False, allow_infinity=False,
                  min_value=D("-1000"), max_value=D("1000")).filter(lambda q: q != 0)
PRICE = st.decimals(places=2, allow_nan=False, allow_infinity=False,
                    min_value=D("1"), max_value=D("100000"))


@settings(max_examples=50, deadline=None)
@given(QTY, PRICE, QTY, PRICE, PRICE)
def test_fill_conserves_value_linear(qty: Decimal, entry: Decimal, fill: Decimal,
                                     price: Decimal, mark: Decimal) -> None:
    """Invariant: UPL before at `mark` + the fill's own PnL at `mark` = realised + UPL after.
    (Linear PnL is additive: closing at `price` and marking the rest at `mark` loses nothing.)"""
    before = unrealized_pnl(qty, entry, mark, D(1), inverse=False)
    fill_upl = unrealized_pnl(fill, price, mark, D(1), inverse=False)
    outcome = apply_fill(qty, entry, fill, price, D(1), inverse=False)
    after = unrealized_pnl(outcome.qty, outcome.entry_price, mark, D(1), inverse=False)
    assert outcome.qty == qty + fill
    assert outcome.closed_qty + outcome.opened_qty == abs(fill)
    # The average entry may be a non-terminating quotient (34 digits), hence the tolerance.
    assert abs(before + fill_upl - (outcome.realized_pnl + after)) <= D("1e-20")


def test_isolated_margin_after_releases_pro_rata_and_allocates_what_opens() -> None:
    from ledger.rules.positions import isolated_margin_after

    d = Decimal
    # 900 held for 10 contracts; 4 close → 900 × 6 / 10 = 540.
    assert isolated_margin_after(d(900), d(10), d(4), d(0), d("0.1"), d(18000), d(10),
                                 False) == d(540)
    # All 10 close and 5 open the other way at 18,000 × 0.1 / 10 each → 0 + 900.
    assert isolated_margin_after(d(900), d(10), d(10), d(5), d("0.1"), d(18000), d(10),
                                 False) == d(900)
    # Inverse: 100 contracts of 10 USD at 20,000, 5× → 100 × 10 / (20,000 × 5) = 0.01 BTC.
    assert isolated_margin_after(d(0), d(0), d(0), d(100), d(10), d(20000), d(5),
                                 True) == d("0.01")


def test_an_exact_inverse_pnl_is_exact() -> None:
    """Short 105 contracts of 0.125 USD from 3 to 7: −13.125 × (1/3 − 1/7) = −13.125 × 4/21
    = −52.5/21 = −2.5 exactly. With 1/3 and 1/7 each rounded to 34 digits first, the result
    was −2.499999999999999999999999999999999 (issue 13, point 5)."""
    assert unrealized_pnl(D(-105), D(3), D(7), D("0.125"), inverse=True) == D("-2.5")
    assert numbers.to_str(unrealized_pnl(D(-105), D(3), D(7), D("0.125"), inverse=True)) == "-2.5"
    # Closing the same short at 7 realises the same −2.5 (side −1, 105 closed).
    assert realized_pnl(D(105), D(3), D(7), D("0.125"), -1, inverse=True) == D("-2.5")
