"""Clocks for the schedulers and the CLI: the only place that reads the wall clock.

Domain logic never asks a clock: business time is the `at` of commands and events. The scheduler
asks a clock which periods are due, and sends commands whose `at` is the period boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; `advance` moves it (tests and simulations)."""

    def __init__(self, at: datetime) -> None:
        assert at.tzinfo is not None, at
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        assert at.tzinfo is not None, at
        self._at = at

    def advance(self, delta: timedelta) -> None:
        self._at += delta
