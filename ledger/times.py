"""Business time: RFC 3339 parsing and printing, exact elapsed seconds.

`at` values are timezone-aware UTC datetimes to the microsecond. An offset is converted to UTC;
a time without one is refused (the contract's times are UTC, and a naive time is ambiguous).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECONDS_PER_YEAR = 31_536_000  # 365 days, as DESIGN §6.8 and PORTFOLIO-MARGIN §10.1 say

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def parse_at(text: str) -> datetime:
    """Parse an RFC 3339 time with a zone into UTC; raise ValueError otherwise."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    if len(text) == 20 and text[10] == "T" and text[19] == "Z":
        # The common form, whole seconds in UTC: `fromisoformat` reads it as it is.
        return datetime.fromisoformat(text)
    normalised = text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T")
    fraction = re.search(r"\.([0-9]+)", normalised)
    if fraction and len(fraction.group(1)) > 6:
        digits = fraction.group(1)
        if digits[6:].strip("0"):
            raise ValueError(f"more precise than a microsecond: {text!r}")
        normalised = normalised.replace("." + digits, "." + digits[:6])
    try:
        return datetime.fromisoformat(normalised).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"outside the calendar in UTC: {text!r}") from None


@lru_cache(maxsize=4096)
def format_at(at: datetime) -> str:
    """Print a UTC time as RFC 3339 with `Z` (fractional seconds only when present)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # isoformat writes YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00 (the year always with 4 digits)
    text = at.isoformat()[:-6]
    if at.microsecond:
        text = text.rstrip("0")
    return text + "Z"


def to_micros(at: datetime) -> int:
    """Return microseconds since the epoch: the sortable key of the time index."""
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def elapsed_seconds(start: datetime, end: datetime) -> Decimal:
    """Return the exact seconds from `start` to `end` (microseconds included)."""
    delta = end - start
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros) / Decimal(1_000_000)


def year_fraction(start: datetime, end: datetime) -> Decimal:
    """Return (end − start) in years of 31,536,000 s, 0 when end is not after start."""
    seconds = elapsed_seconds(start, end)
    if seconds <= 0:
        return Decimal(0)
    return seconds / SECONDS_PER_YEAR
