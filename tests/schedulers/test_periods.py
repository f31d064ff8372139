"""Which periods are due (pure): funding times, interest hours, sweeps, deliveries, the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.application.commands import idempotency_key, parse_command
from schedulers import periods as p


def t(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, minute, second, tzinfo=UTC)


def ats(periods: list[p.Period]) -> list[datetime]:
    return [period.at for period in periods]


def test_period_gives_the_command_its_at_and_an_id_derived_from_it() -> None:
    period = p.Period.of(p.FUNDING, t(1, 8))
    assert period.command_id == "settle_funding:2025-01-01T08:00:00Z"
    command = parse_command(period.command())
    assert command.type == "settle_funding"
    assert command.at == t(1, 8)
    assert command.id == "settle_funding:2025-01-01T08:00:00Z"  # type: ignore[attr-defined]
    # The ledger keys periodic commands by `at`: a repeat with the same period is the same.
    assert idempotency_key(command) == idempotency_key(
        parse_command({"type": "settle_funding", "at": "2025-01-01T08:00:00Z"}))


def test_eight_hour_funding_times_are_00_08_16_utc_from_the_listing_on() -> None:
    schedule = p.FundingSchedule("BTCUSDT", [(t(1, 5, 30), 8)])
    assert list(schedule.funding_times(t(2, 8))) == [t(1, 8), t(1, 16), t(2, 0), t(2, 8)]


def test_a_listing_on_a_funding_time_settles_that_time() -> None:
    schedule = p.FundingSchedule("BTCUSDT", [(t(1, 0), 8)])
    assert list(schedule.funding_times(t(1, 8))) == [t(1, 0), t(1, 8)]


def test_the_interval_in_force_at_each_time_decides() -> None:
    """8 h until 10:00, then 4 h: 00:00, 08:00 (8 h), then 12:00, 16:00, 20:00, 00:00 (4 h)."""
    schedule = p.FundingSchedule("ETHUSDT", [(t(1, 0), 8), (t(1, 10), 4)])
    assert list(schedule.funding_times(t(2, 0))) == [
        t(1, 0), t(1, 8), t(1, 12), t(1, 16), t(1, 20), t(2, 0)]


def test_a_reconfiguration_at_a_funding_time_applies_from_that_time() -> None:
    """From 08:00 on the interval is 4 h: 08:00 is a funding time of the new terms only."""
    schedule = p.FundingSchedule("ETHUSDT", [(t(1, 0), 8), (t(1, 8), 4)])
    assert list(schedule.funding_times(t(1, 12))) == [t(1, 0), t(1, 8), t(1, 12)]


def test_a_future_has_no_funding_times() -> None:
    schedule = p.FundingSchedule("BTCUSDT-F", [(t(1, 0), None)])
    assert list(schedule.funding_times(t(3, 0))) == []


def test_due_funding_merges_instruments_and_skips_what_every_one_has_settled() -> None:
    btc = p.FundingSchedule("BTCUSDT", [(t(1, 0), 8)], frozenset({t(1, 0), t(1, 8)}))
    eth = p.FundingSchedule("ETHUSDT", [(t(1, 0), 4)], frozenset({t(1, 0), t(1, 4)}))
    due = p.due_funding([btc, eth], t(1, 17))
    # 08:00: ETH has not settled it (BTC has: the ledger skips BTC then); 12:00 ETH; 16:00 both.
    assert ats(due) == [t(1, 8), t(1, 12), t(1, 16)]
    assert {period.kind for period in due} == {p.FUNDING}


def test_nothing_is_due_before_its_time() -> None:
    btc = p.FundingSchedule("BTCUSDT", [(t(1, 0), 8)], frozenset({t(1, 0)}))
    assert p.due_funding([btc], t(1, 7, 59, 59)) == []
    assert ats(p.due_funding([btc], t(1, 8))) == [t(1, 8)]


def test_interest_is_due_every_hour_from_the_first_interest_configuration() -> None:
    due = p.due_interest(t(1, 0, 30), t(1, 4), charged=[t(1, 2)])
    assert ats(due) == [t(1, 1), t(1, 3), t(1, 4)]
    assert p.due_interest(None, t(1, 4), charged=[]) == []


def test_deliveries_are_due_at_each_expiry_not_yet_delivered() -> None:
    futures = [(t(2, 8), False), (t(1, 8), True), (t(3, 8), False), (t(2, 8), False)]
    assert ats(p.due_deliveries(futures, t(2, 9))) == [t(2, 8)]
    assert p.next_expiry(futures, t(2, 9)) == t(3, 8)
    assert p.next_expiry(futures, t(3, 8)) is None


def test_only_the_latest_sweep_time_is_due() -> None:
    assert p.latest_sweep(t(1, 8, 0, 7), 5).at == t(1, 8, 0, 5)
    assert p.latest_sweep(t(1, 8, 0, 5), 5).at == t(1, 8, 0, 5)
    assert p.latest_sweep(t(1, 8, 59, 59), 3600).at == t(1, 8)


def test_boundaries_are_multiples_of_the_step_since_00_00_utc() -> None:
    assert list(p.boundaries(t(1, 1), t(1, 23), timedelta(hours=8))) == [t(1, 8), t(1, 16)]
    assert p.floor_to(t(1, 7, 59), timedelta(hours=4)) == t(1, 4)
    assert p.ceil_to(t(1, 4), timedelta(hours=4)) == t(1, 4)


def test_a_job_catches_up_every_kind_in_time_order_up_to_its_own_latest_period() -> None:
    """After an outage: interest 09:00 … 15:00 and funding 16:00 due. The funding job settles
    the interest hours first (a later funding posted first would break the time order), and
    stops at its own 16:00; the interest job takes 16:00 and 17:00 afterwards."""
    due = [p.Period.of(p.INTEREST, t(1, h)) for h in range(9, 18)]
    due += [p.Period.of(p.FUNDING, t(1, 16)), p.Period.of(p.SWEEP, t(1, 17, 30))]
    plan = p.catch_up_plan(due, p.FUNDING, limit=100)
    assert [(x.kind, x.at) for x in plan.periods] == [
        *[(p.INTEREST, t(1, h)) for h in range(9, 16)], (p.FUNDING, t(1, 16))]
    assert plan.left == 0
    rest = [x for x in due if x not in plan.periods]
    plan = p.catch_up_plan(rest, p.INTEREST, limit=100)
    assert [(x.kind, x.at) for x in plan.periods] == [(p.INTEREST, t(1, 16)),
                                                     (p.INTEREST, t(1, 17))]


def test_at_equal_times_funding_then_delivery_then_interest_then_the_sweep() -> None:
    due = [p.Period.of(kind, t(1, 8)) for kind in reversed(p.KINDS)]
    plan = p.catch_up_plan(due, p.SWEEP, limit=10)
    assert [x.kind for x in plan.periods] == list(p.KINDS)


def test_a_plan_is_bounded_and_says_how_many_are_left() -> None:
    due = [p.Period.of(p.INTEREST, t(1, h)) for h in range(24)]
    plan = p.catch_up_plan(due, p.INTEREST, limit=10)
    assert ats(list(plan.periods)) == [t(1, h) for h in range(10)]
    assert plan.left == 14


def test_a_job_whose_kind_has_nothing_due_settles_nothing() -> None:
    due = [p.Period.of(p.INTEREST, t(1, 9))]
    assert not p.catch_up_plan(due, p.FUNDING, limit=10)
    assert p.catch_up_plan(due, p.FUNDING, limit=10).left == 0


def test_duplicates_in_the_due_list_are_planned_once() -> None:
    due = [p.Period.of(p.FUNDING, t(1, 8)), p.Period.of(p.FUNDING, t(1, 8))]
    assert len(p.catch_up_plan(due, p.FUNDING, limit=10).periods) == 1
