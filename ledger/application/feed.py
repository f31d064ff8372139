"""The JSONL feed runner: line → command → applied, acknowledged, or an error line.

Commands are applied in order and written in batches (`batch_size` commands per transaction),
so throughput does not collapse to one commit per command. Idempotency keys of a whole batch
are looked up in one query before it runs.

Errors: a rejected command (`LedgerError`) is reported and changes nothing; the run goes on.
An internal error stops the run: the uncommitted part of the batch is replayed up to the line
before the failing one and written, so "the commands before the named line were applied"
(contract, exit status 3) holds with batching too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.application.commands import Command, idempotency_key, parse_line, repeat_key
from ledger.application.service import ACKNOWLEDGED, Ledger
from ledger.domain.chain import content_hash
from ledger.errors import LedgerError


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


class FeedUnreadable(Exception):
    """The feed file cannot be opened (exit status 2)."""


NOT_UTF8 = "\x00not UTF-8"  # stands for a line that could not be decoded (rejected as such)


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield (physical line number, text) of a feed, blank lines skipped but counted.

    Lines are decoded one by one: a line that is not UTF-8 is rejected on its own
    (`invalid_input`), like any other malformed line, and the rest of the feed still runs."""
    try:
        handle = Path(path).open("rb")  # noqa: SIM115
    except OSError as error:
        raise FeedUnreadable(str(error)) from error
    with handle:
        for number, raw in enumerate(handle, start=1):
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
    return (kind if isinstance(kind, str) else None,
            identifier if isinstance(identifier, str) else None)


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


def _run_chunk(
    ledger: Ledger,
    chunk: list[tuple[int, str]],
    report: RunReport,
    on_reject: Callable[[Rejection], None] | None,
) -> bool:
    parsed: list[tuple[int, str, Command | LedgerError]] = []
    keys = []
    for number, text in chunk:
        try:
            command = parse_line(text)
        except LedgerError as error:
            parsed.append((number, text, error))
            continue
        parsed.append((number, text, command))
        key = idempotency_key(command) or repeat_key(command, content_hash(command.content()))
        keys.append(key)
    ledger.prefetch_keys(keys)
    done: list[Command] = []
    committed = [0]  # how many of `done` a flush inside the chunk has already written

    def note_flush() -> None:
        committed[0] = len(done)

    ledger.flush_listeners.append(note_flush)
    try:
        with ledger.batch():
            for number, text, item in parsed:
                if isinstance(item, LedgerError):
                    _reject(report, on_reject, number, *_raw_identity(text), item)
                    continue
                try:
                    outcome = ledger.handle(item)
                except LedgerError as error:
                    _reject(report, on_reject, number, *_identity(item), error)
                    continue
                except Exception as error:  # noqa: BLE001 - an internal error stops the run
                    _recover(ledger, done[committed[0]:])
                    report.internal_error_line = number
                    report.internal_error = error
                    return False
                done.append(item)
                if outcome == ACKNOWLEDGED:
                    report.acknowledged += 1
                else:
                    report.applied += 1
    finally:
        ledger.flush_listeners.remove(note_flush)
    return True


def _recover(ledger: Ledger, replay: list[Command]) -> None:
    """Drop the broken batch and write again the commands before the failing line."""
    ledger.discard()
    with ledger.batch():
        for command in replay:
            try:
                ledger.handle(command)
            except LedgerError:
                continue


def _reject(
    report: RunReport,
    on_reject: Callable[[Rejection], None] | None,
    number: int,
    kind: str | None,
    identifier: str | None,
    error: LedgerError,
) -> None:
    rejection = Rejection(number, kind, identifier, error.code, str(error))
    report.rejected.append(rejection)
    if on_reject:
        on_reject(rejection)
