"""The contract's scenarios, run in-process on SQLite and on PostgreSQL.

Each folder holds `feed.jsonl` and `expect.json` (the format of ../shared/contract/scenarios,
copied here so the suite stands alone). `supported.txt` lists the scenarios the ledger passes;
CI also runs them through the installed `ledger` command with ../shared/tools/check-contract.
Expected values are the scenario authors' hand computations, never this program's output.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

from ledger.application import queries
from ledger.application.feed import read_lines, run_feed
from ledger.application.service import Ledger
from ledger.times import parse_at

HERE = Path(__file__).parent
SUPPORTED = [
    line.strip() for line in (HERE / "supported.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def resolve(state: Any, path: str) -> Any:
    node = state
    for part in path.split("."):
        if isinstance(node, list):
            symbol, _, margin_type = part.partition(":")
            matches = [p for p in node if p.get("symbol") == symbol
                       and (not margin_type or p.get("margin_type") == margin_type)]
            assert len(matches) == 1, f"{path}: {len(matches)} positions match {part}"
            node = matches[0]
        else:
            assert isinstance(node, dict) and part in node, f"{path}: {part} missing"
            node = node[part]
    return node


def same(actual: Any, expected: Any, tol: Decimal) -> bool:
    if expected is None or isinstance(expected, bool):
        return bool(actual == expected)
    try:
        return abs(Decimal(str(actual)) - Decimal(str(expected))) <= tol
    except (InvalidOperation, TypeError):
        return bool(actual == expected)


@pytest.mark.parametrize("name", SUPPORTED)
def test_scenario(name: str, store_url: str) -> None:
    folder = HERE / name
    expect = json.loads((folder / "expect.json").read_text())
    ledger = Ledger(store_url)
    report = run_feed(ledger, read_lines(str(folder / "feed.jsonl")))
    assert report.internal_error is None, report.internal_error
    rejected = {r.line: r.error for r in report.rejected}
    assert rejected == {r["line"]: r["error"] for r in expect.get("rejected", [])}
    reader = Ledger(store_url)  # a fresh process: everything comes back from the store
    failures = []
    for check in expect["checks"]:
        tol = Decimal(str(check.get("tol", "0")))
        if "event" in check:
            history = queries.events(reader, check["account"])
            wanted = check["event"]
            count = sum(1 for event in history
                        if all(k in event and same(event[k], v, tol) for k, v in wanted.items()))
            if ("count" in check and count != check["count"]) or (
                    "count" not in check and count == 0):
                failures.append(f"{check['account']} {wanted}: {count} match")
            continue
        at = parse_at(check["at"]) if check.get("at") else None
        state = queries.state(reader, check["account"], at)
        actual = resolve(state, check["path"])
        if not same(actual, check["equals"], tol):
            failures.append(f"{check['account']}@{check.get('at')} {check['path']}: "
                            f"got {actual!r}, expected {check['equals']!r}")
    assert not failures, "\n".join(failures)
