"""Issue 10, part 5: the same feed cut at random lines and run slice by slice, each slice by
its own `ledger run` process, ends identical to one run of the whole feed (events with hashes,
states, streams). Physical line numbers are kept (each slice is padded with blank lines).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from . import feedgen
from .harness import ledger, scratch_store
from .trials import Reference, split_trial


@pytest.mark.parametrize("reference", ["sqlite"], indirect=True)
@pytest.mark.parametrize("trial", [1])
def test_a_feed_split_across_processes_equals_one_run(reference: Reference, trial: int,
                                                      crash_feed: Path, crash_dir: Path,
                                                      rng: random.Random) -> None:
    result = split_trial(crash_feed, reference.data, "sqlite", crash_dir, rng,
                         reference_rejections=reference.run.rejections)
    assert result.ok, result.report()


def test_split_after_line_238_of_seed_2(crash_dir: Path) -> None:
    """A split point found by the kill trials: the first slice ends at line 238, the second
    process runs lines 239-270; one process applies every line of these (only the bad lines
    the reference rejects too are rejected)."""
    lines = feedgen.generate(2, 20, 12)[:270]
    head = feedgen.write(crash_dir / "seed2-head.jsonl", lines[:238])
    tail = feedgen.write(crash_dir / "seed2-tail.jsonl", [""] * 238 + lines[238:])
    whole = feedgen.write(crash_dir / "seed2-270.jsonl", lines)
    with scratch_store("sqlite", crash_dir) as one, scratch_store("sqlite", crash_dir) as two:
        once = ledger(one.url, "run", str(whole))
        ledger(two.url, "run", str(head))
        split = ledger(two.url, "run", str(tail))
        expected = {(r["line"], r["error"]) for r in once.rejections if r["line"] > 238}
        got = {(r["line"], r["error"]) for r in split.rejections}
        assert got == expected, (f"only in the split run: {sorted(got - expected)}; only in "
                                 f"one run: {sorted(expected - got)}")
