"""Interest accrued by whole hours (issue 14, asset `interest.accrual`): each exchange's own
published example, to the digit. Times are minutes after 00:00 UTC; an hourly rate h is the
annual rate h × 8,760 (annual_rate × 3,600 / 31,536,000 = h exactly)."""

from __future__ import annotations

from decimal import Decimal

from ledger.rules.interest import Segment, hourly_accrued
from ledger.rules.terms import FreeMode, InterestAccrual, InterestTerms

D = Decimal
MINUTE = 60_000_000


def annual(hourly: str) -> Decimal:
    return D(hourly) * 8760


def timeline(terms: InterestTerms, steps: list[tuple[int, str]], end: int) -> list[Segment]:
    """Segments from (minute, debt from then on) steps up to `end` (minutes), with the final
    point (end, end)."""
    segments: list[Segment] = []
    for (start, debt), (stop, _) in zip(steps, [*steps[1:], (end, "")], strict=True):
        if stop > start:
            segments.append((start * MINUTE, stop * MINUTE, D(debt), terms))
    last_debt = [debt for minute, debt in steps if minute <= end][-1]
    segments.append((end * MINUTE, end * MINUTE, D(last_debt), terms))
    return segments


def test_bit_hourly_snapshot_example() -> None:
    """BIT, "Liability and Interest", §5
    (https://helpcenter.bit.com/hc/en-us/articles/10876258909721-Liability-and-Interest; the
    figures as printed in the Chinese edition https://hc.bitexch.dev/zh-CN/articles/9771416):
    free amount 0.2 BTC, charged on the full liability once above it, 0.01 %/h. 5:30 borrow 1
    BTC; 5:55 repay 0.8 (0.2 left); 6:00 interest 0 (within the free amount); 6:20 borrow 0.2
    (0.4); 7:00 0.4 × 0.01 % = 0.00004; 8:00 0.00004 again, accrued 0.00008 (deducted)."""
    terms = InterestTerms(annual("0.0001"), D("0.2"), FreeMode.FULL,
                          InterestAccrual.HOURLY_SNAPSHOT)
    steps = [(0, "0"), (330, "1"), (355, "0.2"), (380, "0.4")]
    assert hourly_accrued(timeline(terms, steps, 6 * 60), 6 * 60 * MINUTE) == 0
    assert hourly_accrued(timeline(terms, steps, 6 * 60 + 59), (6 * 60 + 59) * MINUTE) == 0
    assert hourly_accrued(timeline(terms, steps, 7 * 60), 7 * 60 * MINUTE) == D("0.00004")
    assert hourly_accrued(timeline(terms, steps, 8 * 60), 8 * 60 * MINUTE) == D("0.00008")


def test_bitget_hours_rounded_up_example() -> None:
    """Bitget, "Spot margin trading: How are interest and debt calculated?"
    (https://www.bitget.com/support/articles/12560603799000): 10,000 USDT at a daily rate of
    0.0126279 %, borrowed 00:10, repaid 02:30 = 3 hours: 10,000 × (0.0126279 % / 24) × 3 =
    0.15784875 USDT."""
    terms = InterestTerms(D("0.000126279") * 365, accrual=InterestAccrual.HOURS_ROUNDED_UP)
    steps = [(0, "0"), (10, "10000"), (150, "0")]
    assert hourly_accrued(timeline(terms, steps, 180), 180 * MINUTE) == D("0.15784875")
    # While it runs, elapsed hours are rounded up: at borrowing 0; one minute in, one hour;
    # at exactly two hours (02:10), two.
    one_hour = D("0.05261625")
    assert hourly_accrued(timeline(terms, steps, 10), 10 * MINUTE) == 0
    assert hourly_accrued(timeline(terms, steps, 11), 11 * MINUTE) == one_hour
    assert hourly_accrued(timeline(terms, steps, 130), 130 * MINUTE) == 2 * one_hour


def test_rightbtc_started_hours_example() -> None:
    """RightBTC, "How to calculate interest on RightBTC"
    (https://rightbtc.zendesk.com/hc/en-us/articles/360046157651-How-to-calculate-interest-on-RightBTC):
    0.02 %/h; 10,000 USDT borrowed 10:10, repaid 11:10 → 2 hours, 10,000 × 0.02 % × 2 = 4."""
    terms = InterestTerms(annual("0.0002"), accrual=InterestAccrual.STARTED_HOURS)
    steps = [(0, "0"), (610, "10000"), (670, "0")]
    assert hourly_accrued(timeline(terms, steps, 720), 720 * MINUTE) == D("4")
    # The first hour is accrued at borrowing.
    assert hourly_accrued(timeline(terms, steps, 610), 610 * MINUTE) == D("2")


def test_mexc_started_hours_example() -> None:
    """MEXC, "Calculation and Payment of Interests in Margin Trading"
    (https://blog.mexc.com/calculation-and-payment-of-interests-in-margin-trading/): 0.1 BTC at
    0.0033 %/h; repaid within one hour: 0.1 × 0.0033 % × 1 = 0.0000033 BTC; repaid in the
    19th hour (not exceeding 20 hours): 0.1 × 0.0033 % × 20 = 0.000066."""
    terms = InterestTerms(annual("0.000033"), accrual=InterestAccrual.STARTED_HOURS)
    within = [(0, "0.1"), (45, "0")]
    assert hourly_accrued(timeline(terms, within, 60 * 30), 60 * 30 * MINUTE) == D("0.0000033")
    nineteenth = [(0, "0.1"), (19 * 60 + 30, "0")]
    assert hourly_accrued(timeline(terms, nineteenth, 60 * 30), 60 * 30 * MINUTE) == D(
        "0.000066")


def test_per_second_segments_accrue_nothing_here() -> None:
    """The default policy is integrated per second elsewhere (accrued_over)."""
    terms = InterestTerms(D("0.1"))
    assert hourly_accrued(timeline(terms, [(0, "10000")], 600), 600 * MINUTE) == 0


def test_a_policy_applies_to_the_hours_it_is_in_force_at() -> None:
    """10,000 owed all along at 0.02 %/h: per second until 01:30, started hours from then on.
    The borrowing under the hourly policy starts at 01:30 (its hours 01:30, 02:30, ...), so by
    03:00: 2 hours = 4."""
    before = InterestTerms(annual("0.0002"))
    after = InterestTerms(annual("0.0002"), accrual=InterestAccrual.STARTED_HOURS)
    segments: list[Segment] = [(0, 90 * MINUTE, D(10000), before),
                               (90 * MINUTE, 180 * MINUTE, D(10000), after),
                               (180 * MINUTE, 180 * MINUTE, D(10000), after)]
    assert hourly_accrued(segments, 180 * MINUTE) == D(4)
