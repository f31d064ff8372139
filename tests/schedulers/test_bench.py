"""The funding bench runs end to end on a few positions (the figures come from `ledger bench`)."""

from __future__ import annotations

from benchmarks.funding import funding_bench


def test_the_funding_bench_settles_every_position_once_in_one_transaction(
    sqlite_url: str,
) -> None:
    """50 positions (half long, half short): one `FundingSettled` each, plus the instrument's
    `FundingPeriodSettled`, in the one settlement the scheduler's funding job sends."""
    figures = funding_bench(sqlite_url, 50, batch_accounts=20)
    assert figures["positions"] == 50
    assert figures["events"] == 51
    assert figures["transactions_per_settlement"] == 1
    assert figures["settle_cold_s"] >= 0 and figures["settle_warm_s"] >= 0
