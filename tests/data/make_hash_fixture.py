"""Record the chain hashes (and the stored rows) that a set of feeds gives, as a fixture.

Run once from the code before the lean write path (issue 11) to freeze today's hashes:
`python tests/data/make_hash_fixture.py > tests/data/chain_hashes_v1.json`. The test
`tests/application/test_lean_hashes.py` runs the same feeds through today's code and asserts
the same hashes, and reads the frozen stored rows through today's mapper (old stores readable).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.run import fill_feed  # noqa: E402
from ledger.application.feed import read_lines, run_feed  # noqa: E402
from ledger.application.service import Ledger  # noqa: E402
from ledger.numbers import install  # noqa: E402

SCENARIOS = ["funding-8h", "interest-per-second", "seed002-isolated-auto-topup",
             "pm-future-delivery", "usdc-session-settlement", "withdraw-limit-and-idempotency",
             "bad-input"]


def feeds() -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for name in SCENARIOS:
        out[name] = list(read_lines(str(ROOT / "tests" / "scenarios" / name / "feed.jsonl")))
    out["bench-fills-300"] = list(enumerate(fill_feed(300, accounts=7), start=1))
    return out


def stored(url: str) -> list[dict[str, Any]]:
    ledger = Ledger(url)
    rows = []
    for n in ledger.recorder.select_notifications(1, 10**9):
        event = ledger.mapper.to_domain_event(n)
        rows.append({"id": n.id, "stream": n.originator_id.hex, "version": n.originator_version,
                     "topic": n.topic, "hash": getattr(event, "hash", None),
                     "state": base64.b64encode(n.state).decode()})
    ledger.close()
    return rows


def main() -> None:
    install()  # the ledger's decimal context, as every entry point (and the tests) installs it
    result: dict[str, Any] = {}
    for name, lines in feeds().items():
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/f.db"
            run_feed(Ledger(url), iter(lines))
            result[name] = stored(url)
    for row in result["bench-fills-300"]:
        row.pop("state")  # hashes only: the rows of the scenario feeds suffice for decoding
    json.dump(result, sys.stdout, indent=0, sort_keys=True)


if __name__ == "__main__":
    main()
