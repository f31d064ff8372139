"""`numbers.exact_sum`, the account's guard against a silently rounded balance (issue 10)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.numbers import exact_sum


@pytest.mark.parametrize(("left", "right", "expected"), [
    ("1000", "0.1", "1000.1"),
    ("-5", "7.5", "2.5"),
    # 16 + 18 = 34 digits: exact
    ("999999999999999.999999999999999999", "9000000000000000",
     "9999999999999999.999999999999999999"),
    # the carry makes 10^16 exactly: trailing zeros are dropped, nothing is lost
    ("9999999999999999.999999999999999999", "0.000000000000000001", "10000000000000000"),
    # 35 digits: the ledger's context would round to 10^16
    ("10000000000000000", "0.000000000000000001", None),
    ("100000000000000000000000000000000000", "1", None),
])
def test_exact_sum(left: str, right: str, expected: str | None) -> None:
    total = exact_sum(Decimal(left), Decimal(right))
    assert total == (None if expected is None else Decimal(expected))
