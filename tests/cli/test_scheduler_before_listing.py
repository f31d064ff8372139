"""Issue 13, point 2: a simulated scheduler started before the store's reference data.

The README's example ran `ledger scheduler --clock simulated --from 2025-01-01T00:00:00Z …` on a
store listed later and died with `KeyError: 'BTCUSDT'` (exit 3): the margin sweep was due at
times before any instrument existed, and the ledger evaluated alice's position with no terms.
"""

from __future__ import annotations

from pathlib import Path

from cli_support import ledger, store_with_alice


def test_periods_before_the_first_listing_are_not_due(tmp_path: Path) -> None:
    """Listed 2025-03-01, alice long BTCUSDT: from 01-01 to 01-03 nothing at all is due."""
    url = store_with_alice(tmp_path)
    done = ledger("--db", url, "scheduler", "--clock", "simulated",
                  "--from", "2025-01-01T00:00:00Z", "--until", "2025-01-03T00:00:00Z",
                  "--sweep-seconds", "3600", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "settled" not in done.stderr  # no sweep, no interest, no funding before the listing


def test_periods_after_the_listing_are_settled_once_the_clock_gets_there(tmp_path: Path) -> None:
    """From 02-28 22:00 to 03-01 02:00 hourly: sweeps at 00:00 (the listing), 01:00 and 02:00
    are settled; 22:00 and 23:00 are before the listing and are not."""
    url = store_with_alice(tmp_path)
    done = ledger("--db", url, "scheduler", "--clock", "simulated",
                  "--from", "2025-02-28T22:00:00Z", "--until", "2025-03-01T02:00:00Z",
                  "--sweep-seconds", "3600", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    swept = sorted(line.split("check_margin ")[1].split()[0]
                   for line in done.stderr.splitlines() if "check_margin 20" in line)
    assert swept == ["2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z", "2025-03-01T02:00:00Z"]
