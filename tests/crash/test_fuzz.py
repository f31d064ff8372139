"""Issue 10, part 6: mutated feed lines (extreme numbers, missing/duplicated/odd fields,
unicode junk, impossible times, truncation, non-UTF-8 bytes) interleaved with a valid feed.

`ledger run` never exits 3 and never prints a Traceback; what it accepted is exactly what a
clean run of only the accepted lines (every line not named in a rejection) gives.
`scripts/crash-trials --only fuzz --fuzz-lines 10000` runs ten thousand mutated lines.
"""

from __future__ import annotations

import collections
from pathlib import Path

from .conftest import SEED
from .fuzz import mutate
from .trials import fuzz_trial


def test_mutated_lines_never_crash_and_accepted_lines_replay_identically(
        crash_dir: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    result = fuzz_trial("sqlite", crash_dir, SEED, 300, counts, minimize_budget=0)
    assert result.ok, result.report() + f"\n{dict(counts)}"


def test_the_mutator_is_deterministic() -> None:
    import random

    line = ('{"type":"deposit","at":"2025-03-03T00:01:00Z","id":"d1","account":"a",'
            '"asset":"USDT","amount":"5"}')
    first = [mutate(line, random.Random(7)) for _ in range(50)]
    again = [mutate(line, random.Random(7)) for _ in range(50)]
    assert first == again
    assert any(m != line for m in first)
