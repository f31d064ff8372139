"""The JSONL feed runner: line → command → applied, acknowledged, or an error line.

Commands are applied in order and written in batches (`batch_size` commands per transaction),
so throughput does not collapse to one commit per command. Idempotency keys of a whole batch
are looked up in one query before it runs.

Errors: a rejected command (`LedgerError`) is reported and changes nothing; the run goes on.
An internal error stops the run: the ledger writes the commands of the batch before the failing
one, exactly as they were applied, and nothing of it (`Ledger.handle`), so "the commands before
the named line were applied" (contract, exit status 3) holds with batching too. A store that is
lost mid-run stops it with `store_error` and the last durable line (exit status 2); a write
conflict with another writer runs the uncommitted part again on a fresh view (bounded).
Outcomes are counted and rejections printed only once they are durable, so a retried part is
never reported twice.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.application.commands import Command, cut, identity, parse_line
from ledger.application.service import ACKNOWLEDGED, Ledger
from ledger.application.unit_of_work import is_store_error
from ledger.errors import ConcurrentWriteError, LedgerError, StoreUnavailableError


@dataclass
class Rejection:
    line: int
    type: str | None
    id: str | None
    error: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "type": self.type, "id": self.id, "error": self.error,
                "message": self.message}


@dataclass
class RunReport:
    applied: int = 0
    acknowledged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    internal_error_line: int | None = None
    internal_error: BaseException | None = None
    store_error: StoreUnavailableError | None = None
    last_durable_line: int | None = None  # the last line whose outcome is committed
    # (line, "applied" | "acknowledged") of every durable line not rejected (the HTTP API
    # answers one result per line)
    outcomes: list[tuple[int, str]] = field(default_factory=list)


class FeedUnreadable(Exception):
    """The feed file cannot be opened (exit status 2)."""


NOT_UTF8 = "\x00not UTF-8"  # stands for a line that could not be decoded (rejected as such)


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield (physical line number, text) of a feed file, or of standard input for `-`.

    Blank lines are skipped but counted. Lines are decoded one by one: a line that is not
    UTF-8 is rejected on its own (`invalid_input`), like any other malformed line, and the
    rest of the feed still runs."""
    if path == "-":
        yield from decode_lines(sys.stdin.buffer)
        return
    try:
        handle = Path(path).open("rb")  # noqa: SIM115
    except OSError as error:
        raise FeedUnreadable(str(error)) from error
    with handle:
        yield from decode_lines(handle)


def decode_lines(raw_lines: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Number and decode raw lines (see `read_lines`)."""
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, NOT_UTF8
            continue
        if text.strip():
            yield number, text


def _identity(command: Any) -> tuple[str | None, str | None]:
    kind = getattr(command, "type", None)
    identifier = getattr(command, "id", None)
    return kind, identifier


def _raw_identity(text: str) -> tuple[str | None, str | None]:
    """Best effort type and id of a line that did not parse (for the error line)."""
    import json

    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    kind, identifier = data.get("type"), data.get("id")
    return (cut(kind) if isinstance(kind, str) else None,
            cut(identifier) if isinstance(identifier, str) else None)


def run_feed(
    ledger: Ledger,
    lines: Iterable[tuple[int, str]],
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
) -> RunReport:
    """Apply a feed's lines in order; return what happened."""
    report = RunReport()
    chunk: list[tuple[int, str]] = []
    with fewer_collections():
        for item in lines:
            chunk.append(item)
            if len(chunk) >= batch_size:
                if not _run_chunk(ledger, chunk, report, on_reject):
                    return report
                if on_progress:
                    on_progress(len(chunk))
                chunk = []
        if chunk and _run_chunk(ledger, chunk, report, on_reject) and on_progress:
            on_progress(len(chunk))
    return report


GC_FIRST_GENERATION = 50_000
"""Container allocations between two collections of the youngest generation while a feed runs
(Python's default is 700). Issue 11: ingest allocates a few dicts and lists per event and
frees them by reference counting (events, postings and commands hold no cycles); at the
default, the cycle collector took ~12 µs of a 64 µs event, walking the batch's pending
events again and again; at 50,000 it takes ~1.5 µs. Memory stays bounded: the collector
still runs, less often."""

_tuned = [0]  # feeds running with the collector tuned (the API may run several at once)
_tuned_lock = threading.Lock()
_thresholds: list[tuple[int, int, int]] = []


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cycle collector's youngest generation less often while a feed runs (see
    GC_FIRST_GENERATION); the thresholds in force before come back when the last feed ends."""
    with _tuned_lock:
        if _tuned[0] == 0:
            before = gc.get_threshold()
            _thresholds[:] = [before]
            gc.set_threshold(max(before[0], GC_FIRST_GENERATION), before[1], before[2])
        _tuned[0] += 1
    try:
        yield
    finally:
        with _tuned_lock:
            _tuned[0] -= 1
            if _tuned[0] == 0:
                gc.set_threshold(*_thresholds[0])


WRITE_ATTEMPTS = 5  # a write conflict with another writer: reload and run again, this often


def _run_chunk(
    ledger: Ledger,
    chunk: list[tuple[int, str]],
    report: RunReport,
    on_reject: Callable[[Rejection], None] | None,
) -> bool:
    """Apply one chunk in one transaction; return False when the run must stop.

    Outcomes are reported once they are durable: when the chunk commits, or when a command
    that fails part-way has the commands before it written (`Ledger.handle`). A write conflict
    leaves nothing of the uncommitted part: it is run again on a fresh view (bounded)."""
    parsed: list[tuple[int, str, Command | LedgerError]] = []
    identities: dict[int, tuple[str, str, str]] = {}  # by position in `parsed`
    for number, text in chunk:
        try:
            command = parse_line(text)
        except LedgerError as error:
            parsed.append((number, text, error))
            continue
        identities[len(parsed)] = identity(command)
        parsed.append((number, text, command))
    keys = [key for _, _, key in identities.values()]
    start = 0  # parsed[:start] are durable and reported
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        outcomes: list[str | Rejection] = []
        durable = [start]

        def committed() -> None:
            durable[0] = start + len(outcomes)  # noqa: B023 - this attempt's list

        ledger.flush_listeners.append(committed)
        try:
            ledger.prefetch_keys(keys)
            with ledger.batch():
                for position in range(start, len(parsed)):
                    number, text, item = parsed[position]
                    if isinstance(item, LedgerError):
                        outcomes.append(_rejection(number, *_raw_identity(text), item))
                        continue
                    try:
                        outcomes.append(ledger.handle(item, identities[position]))
                    except LedgerError as error:
                        outcomes.append(_rejection(number, *_identity(item), error))
        except ConcurrentWriteError:
            _report(report, on_reject, parsed, outcomes[:durable[0] - start], start)
            start = durable[0]
            ledger.discard()
            if attempt == WRITE_ATTEMPTS:
                report.store_error = StoreUnavailableError(
                    f"another writer kept changing the same accounts ({attempt} attempts)")
                return False
            continue
        except Exception as error:  # noqa: BLE001 - a lost store or an internal error stops it
            _report(report, on_reject, parsed, outcomes[:durable[0] - start], start)
            if is_store_error(error):
                report.store_error = (error if isinstance(error, StoreUnavailableError)
                                      else StoreUnavailableError(str(error)))
                return False
            failing = start + len(outcomes)
            report.internal_error_line = parsed[min(failing, len(parsed) - 1)][0]
            report.internal_error = error
            return False
        finally:
            ledger.flush_listeners.remove(committed)
        _report(report, on_reject, parsed, outcomes, start)
        return True
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


def _report(
    report: RunReport,
    on_reject: Callable[[Rejection], None] | None,
    parsed: list[tuple[int, str, Command | LedgerError]],
    outcomes: list[str | Rejection],
    start: int,
) -> None:
    """Count durable outcomes (parsed[start:start + len(outcomes)]) and print rejections."""
    for offset, outcome in enumerate(outcomes):
        report.last_durable_line = parsed[start + offset][0]
        if isinstance(outcome, Rejection):
            report.rejected.append(outcome)
            if on_reject:
                on_reject(outcome)
        elif outcome == ACKNOWLEDGED:
            report.acknowledged += 1
            report.outcomes.append((parsed[start + offset][0], "acknowledged"))
        else:
            report.applied += 1
            report.outcomes.append((parsed[start + offset][0], "applied"))


def _rejection(number: int, kind: str | None, identifier: str | None,
               error: LedgerError) -> Rejection:
    return Rejection(number, kind, identifier, error.code, str(error))


