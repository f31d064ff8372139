"""Parallel ingest by account shard: `ledger run --workers N FEED` (issue 11, docs/sharding.md).

N worker processes share one store; worker `i` is the single writer of the accounts with
`shard_of(account, N) == i`. A coordinator (the calling process) reads the feed in order, parses
each line (a malformed line is reported by the coordinator itself) and routes it:

- a command of one account goes to that account's worker, which applies its commands in feed
  order, `batch_size` per transaction;
- a transfer between two accounts of one worker goes to it whole; a transfer between two workers
  is applied leg by leg (docs/sharding.md): the source's worker applies the out-leg, the
  destination's worker the in-leg or refuses it, and on a refusal the source's worker applies
  the return leg, before either worker is given anything later in the feed;
- every other command (reference data, periodic commands) is a barrier: every worker commits
  what it holds, worker 0 catches up with the store, applies the run of such lines in feed
  order and commits, and the others catch up before their next command. So no worker applies a
  command before the reference data that precedes it in the feed, nor ever sees reference data
  that follows it, and a periodic command sees every account as one process would; its marker
  is written once, by worker 0;
- a funding settlement or margin sweep in such a run is applied in parts: every worker
  applies it to its own accounts and votes, then each commits, then worker 0 writes its marker
  (`Coordinator._parallel`; docs/sharding.md says how a run stopped between parts finishes).

`ShardPool` keeps such workers running for the scheduler (`ledger scheduler --workers N`), which
sends them its funding settlements and margin sweeps, one at a time, in the same parts.

The events are those one process writes (same streams, same versions, same hashes): each
account's commands reach its one writer in feed order and a transfer has the same legs either
way. Only the interleaving of streams in the notification log differs.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import InvalidOperation, Overflow
from multiprocessing.connection import Connection
from typing import Any, Literal

from ledger.application.commands import (
    COMMANDS,
    KEY_SEPARATOR,
    CheckMarginCmd,
    Command,
    SettleFundingCmd,
    TransferCmd,
    idempotency_key,
    identity,
    parse_line,
    repeat_key,
)
from ledger.application.feed import (
    WRITE_ATTEMPTS,
    Rejection,
    RunReport,
    _identity,
    _raw_identity,
    _rejection,
)
from ledger.application.shards import shard_of
from ledger.domain.chain import content_hash
from ledger.errors import ConcurrentWriteError, LedgerError, StoreUnavailableError

APPLIED = "applied"
ACKNOWLEDGED = "acknowledged"

Outcome = str | Rejection


def route(command: Command, workers: int) -> tuple[int, int] | None:
    """Return (source's shard, destination's shard) of an account command — the same twice
    for a command of one account — or None for a command every worker must see in order."""
    if isinstance(command, TransferCmd):
        return shard_of(command.from_, workers), shard_of(command.to, workers)
    account = getattr(command, "account", None)
    if isinstance(account, str):
        shard = shard_of(account, workers)
        return shard, shard
    return None


PARALLEL_TYPES = frozenset({"settle_funding", "check_margin"})
"""Periodic commands every worker applies to its own accounts (`Coordinator._parallel`)."""


def _is_parallel(text: str) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("type") in PARALLEL_TYPES


ACCOUNT_TYPES = frozenset(kind for kind, model in COMMANDS.items()
                          if "account" in model.model_fields)
SHARED_TYPES = frozenset(kind for kind, model in COMMANDS.items()
                         if "account" not in model.model_fields and model is not TransferCmd)


def route_text(text: str, workers: int) -> tuple[int, int] | None | Literal[False]:
    """`route` from the line's JSON alone, without validating it (the worker that applies it
    does, with the same outcome as the coordinator would); False when the JSON cannot say."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict):
        return False
    kind = data.get("type")
    if kind == "transfer":
        source, target = data.get("from"), data.get("to")
        if isinstance(source, str) and isinstance(target, str) and "from_" not in data:
            return shard_of(source, workers), shard_of(target, workers)
        return False
    if kind in ACCOUNT_TYPES:
        account = data.get("account")
        if isinstance(account, str):
            shard = shard_of(account, workers)
            return shard, shard
        return False
    if kind in SHARED_TYPES:
        return None
    return False


# ---------------------------------------------------------------------------------- worker


@dataclass
class WorkerFailure:
    """What stopped a worker: an internal error (exit 3) or the store (exit 2)."""

    line: int | None
    store: bool
    message: str
    trace: str
    last_durable_line: int | None = None


class ShardWorker:
    """Apply lines to one store as the single writer of one shard's accounts."""

    def __init__(self, url: str) -> None:
        from ledger.application.service import Ledger
        from ledger.numbers import install

        install()
        self.ledger = Ledger(url)
        self.report = RunReport()
        self.pending: list[tuple[int, Outcome]] = []
        self.ledger.flush_listeners.append(self._durable)

    def _durable(self) -> None:
        for line, outcome in self.pending:
            self.report.last_durable_line = line
            if isinstance(outcome, Rejection):
                self.report.rejected.append(outcome)
            elif outcome == ACKNOWLEDGED:
                self.report.acknowledged += 1
            else:
                self.report.applied += 1
        self.pending.clear()

    def apply(self, items: list[tuple[int, str, str | None, str]]) -> list[Outcome]:
        """Apply (line, text, leg, verdict) items in one transaction; return their outcomes.
        A leg's outcome counts nowhere here: the coordinator reports the transfer."""
        ledger = self.ledger
        parsed: list[tuple[int, str, str | None, str, Command | LedgerError]] = []
        keys = []
        for number, text, leg, verdict in items:
            try:
                command = parse_line(text)
            except LedgerError as error:
                parsed.append((number, text, leg, verdict, error))
                continue
            parsed.append((number, text, leg, verdict, command))
            key = idempotency_key(command) or repeat_key(command,
                                                         content_hash(command.content()))
            keys.append(key if leg in (None, "out") else f"{key}{KEY_SEPARATOR}{leg}")
        outcomes: list[Outcome] = []
        start = 0  # parsed[:start] are durable (their outcomes in `outcomes`)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            done: list[Outcome] = []
            durable = [start]

            def committed() -> None:
                durable[0] = start + len(done)  # noqa: B023 - this attempt's list

            ledger.flush_listeners.append(committed)
            try:
                ledger.prefetch_keys(keys)  # one query for the page, as `run_feed` does
                self._apply(parsed[start:], done)
            except ConcurrentWriteError:
                # Another writer changed one of this shard's accounts: nothing of the
                # uncommitted part was written; reload and run it again, as `run_feed` does.
                outcomes.extend(done[:durable[0] - start])
                start = durable[0]
                self.pending.clear()  # not durable, not reported
                ledger.discard()
                if attempt == WRITE_ATTEMPTS:
                    raise
                continue
            finally:
                ledger.flush_listeners.remove(committed)
            outcomes.extend(done)
            return outcomes
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    def _apply(self, parsed: list[tuple[int, str, str | None, str, Command | LedgerError]],
               outcomes: list[Outcome]) -> None:
        ledger = self.ledger
        money = ledger.money
        with ledger.batch():
            for number, text, leg, verdict, item in parsed:
                if isinstance(item, LedgerError):
                    outcome: Outcome = _rejection(number, *_raw_identity(text), item)
                else:
                    money.leg, money.verdict = leg, verdict
                    try:
                        outcome = ledger.handle(item)
                    except LedgerError as error:
                        outcome = _rejection(number, *_identity(item), error)
                    finally:
                        money.leg, money.verdict = None, ""
                outcomes.append(outcome)
                if leg is None:
                    self.pending.append((number, outcome))

    def serve(self, connection: Connection) -> None:
        """Answer the coordinator's messages until it says stop."""
        current: int | None = None
        try:
            while True:
                kind, payload = connection.recv()
                if kind == "lines":
                    current = payload[0][0]
                    self.apply(payload)
                elif kind == "leg":
                    current = payload[0]
                    connection.send(("leg", self.apply([payload])[0]))
                elif kind == "sync":
                    connection.send(("synced", None))
                elif kind == "global":
                    current = payload[0][0]
                    self.ledger.catch_up()
                    connection.send(("synced", self.apply(payload)))
                elif kind == "catch_up":
                    self.ledger.catch_up()
                elif kind == "part":
                    current = payload[0]
                    connection.send(("voted", self.settle_part(*payload)))
                elif kind == "commit":
                    connection.send(("committed", self.commit_part(retry=bool(payload))))
                elif kind == "discard":
                    self.ledger.discard()
                elif kind == "marker":
                    current = payload[0][0]
                    connection.send(("synced", self.write_marker(*payload)))
                elif kind == "stop":
                    connection.send(("report", self.report, time.process_time()))
                    return
        except EOFError:
            return  # the coordinator is gone: nobody to report to
        except Exception as error:  # noqa: BLE001 - reported to the coordinator, which stops
            from ledger.application.unit_of_work import is_store_error

            self._durable_only()
            try:
                connection.send(("failed", WorkerFailure(
                    current, is_store_error(error), f"{type(error).__name__}: {error}",
                    traceback.format_exc(), self.report.last_durable_line), self.report))
            except OSError:
                pass  # the coordinator is gone too
        finally:
            self.ledger.close()

    def settle_part(self, number: int, text: str, shard: int, shards: int
                    ) -> dict[str, bool] | None:
        """Apply this worker's part of a funding settlement or margin sweep: its own
        accounts, no once-per-period marker, not yet committed (the coordinator says commit or
        discard once every part has voted). Return what it paid (or found paid) per symbol
        ({} for a sweep), or None when the command is refused: then it is applied whole, by
        worker 0, as one process would."""
        from ledger.application.handlers.settlement import Part

        ledger = self.ledger
        ledger.catch_up()
        try:
            command = parse_line(text)
        except LedgerError:
            return None
        if not isinstance(command, (SettleFundingCmd, CheckMarginCmd)):
            return None
        key = identity(command)[2]
        # A repeat (its key in the store: every worker has committed all it holds) is
        # acknowledged by one process before any handler runs: no part may act on it. Read
        # from the store, not `Ledger._prior`, which would remember the key as unused while
        # worker 0 writes it (a sweep's marker writes no event, so no `catch_up` forgets it).
        if ledger.index.seen_commands([key]):
            return None
        handlers = ledger.settlement if isinstance(command, SettleFundingCmd) else ledger.sweep
        handlers.part = Part(shard, shards)
        try:
            if isinstance(command, SettleFundingCmd):
                ledger.settlement.settle_funding(command)
            else:
                ledger.sweep.check_margin(command)
        except (LedgerError, InvalidOperation, Overflow):
            ledger.discard()
            return None
        finally:
            handlers.part = None
        return dict(ledger.settlement.paid) if isinstance(command, SettleFundingCmd) else {}

    def commit_part(self, retry: bool) -> bool:
        """Commit this worker's part; return False when another writer saved one of its
        accounts first and `retry` (the scheduler's pool) says to discard it and tell the
        coordinator, which runs the parts again (a re-run skips the accounts done)."""
        try:
            self.ledger.uow.flush()
        except ConcurrentWriteError:
            if not retry:
                raise
            self.ledger.discard()
            return False
        return True

    def write_marker(self, item: tuple[int, str, str | None, str], paid: dict[str, bool]
                     ) -> Outcome:
        """Apply a funding settlement or sweep whose parts are committed: its period markers
        (with what the parts paid) and its idempotency key, as one process records them."""
        settlement, sweep = self.ledger.settlement, self.ledger.sweep
        settlement.parts_paid, sweep.parts_done = paid, True
        try:
            return self.apply([item])[0]
        finally:
            settlement.parts_paid, sweep.parts_done = None, False

    def _durable_only(self) -> None:
        self.pending.clear()  # what was not written is not reported


def _serve(url: str, connection: Connection, sequencer: Connection | None = None,
           index: int = 0, inherited: tuple[Connection, ...] = ()) -> None:
    from ledger.application.sequencer import name_process

    # The coordinator's ends this fork copied (its own pipe's, the earlier workers', the
    # sequencer's control): closed, so that when the coordinator dies every pipe to it closes
    # and this worker stops instead of waiting for it for good.
    for end in inherited:
        end.close()
    name_process(f"ledger-shard-{index}")
    try:
        worker = ShardWorker(url)
        if sequencer is not None:
            _use_sequencer(worker, sequencer)
    except Exception as error:  # noqa: BLE001 - the store cannot be opened
        connection.send(("failed", WorkerFailure(None, True, f"{type(error).__name__}: {error}",
                                                 traceback.format_exc()), RunReport()))
        return
    connection.send(("ready", time.process_time()))  # CPU spent starting (the bench)
    worker.serve(connection)


def _use_sequencer(worker: ShardWorker, connection: Connection) -> None:
    """Send this worker's writes to the store's sequencer (ledger/application/sequencer.py)."""
    from ledger.application.sequencer import EVENTS_TABLE, SNAPSHOTS_TABLE, SequencerClient

    recorder: Any = worker.ledger.recorder
    # The sequencer writes these tables by name: a store named otherwise must not use it.
    assert recorder.events_table_name == EVENTS_TABLE, recorder.events_table_name
    assert recorder.snapshots_table == SNAPSHOTS_TABLE, recorder.snapshots_table
    recorder.sequencer = SequencerClient(connection)


# ---------------------------------------------------------------------------------- coordinator


@dataclass
class ShardedReport:
    applied: int = 0
    acknowledged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failure: WorkerFailure | None = None
    worker_cpu_s: list[float] = field(default_factory=list)  # each worker process's CPU time
    worker_start_cpu_s: list[float] = field(default_factory=list)  # … of which to start
    sequencer: Any = None  # the sequencer's GroupFigures (PostgreSQL), for the bench


class PartsLost(Exception):
    """A part of a funding settlement or sweep lost its commit to another writer."""


class WorkerGone(Exception):
    def __init__(self, failure: WorkerFailure, report: RunReport) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.report = report


class Coordinator:
    """Read the feed, route its lines, hold the barriers (module docstring)."""

    def __init__(self, url: str, workers: int, batch_size: int = 1000) -> None:
        self.url = url
        self.n = workers
        self.batch_size = batch_size
        self.report = ShardedReport()
        self.buffers: list[list[tuple[int, str, str | None, str]]] = [[] for _ in range(workers)]
        self.globals: list[tuple[int, str, str | None, str]] = []
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        self.sequencer: Any = None  # the sequencer process (PostgreSQL only)
        self.sequencer_control: Connection | None = None
        self.retry_commit = False  # `ShardPool`: a part's lost commit is retried, not fatal

    # -------------------------------------------------------------- processes

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        to_sequencer = self._start_sequencer(context) if uses_sequencer(self.url) else None
        for index in range(self.n):
            mine, theirs = context.Pipe()
            sequenced = to_sequencer[index] if to_sequencer else None
            inherited = (mine, *self.connections, *to_sequencer[index + 1:]) if to_sequencer \
                else (mine, *self.connections)
            if self.sequencer_control is not None:
                inherited += (self.sequencer_control,)
            process = context.Process(
                target=_serve, args=(self.url, theirs, sequenced, index, inherited),
                daemon=True, name=f"ledger-shard-{index}")
            process.start()
            theirs.close()
            if sequenced is not None:
                sequenced.close()  # the worker alone holds its end: it sees the sequencer die
            self.connections.append(mine)
            self.processes.append(process)
            # The first one brings the store to the current schema before the others open it.
            if index == 0:
                self.report.worker_start_cpu_s.append(self._expect(0, "ready"))
        for index in range(1, self.n):
            self.report.worker_start_cpu_s.append(self._expect(index, "ready"))

    def _start_sequencer(self, context: Any) -> list[Connection]:
        """Fork the store's sequencer before any worker, so that no worker inherits the
        sequencer's end of another worker's pipe (each worker sees EOF when it dies)."""
        from ledger.application.sequencer import serve

        pairs = [context.Pipe() for _ in range(self.n)]
        control, theirs = context.Pipe()
        ends = [end for end, _ in pairs]
        workers_ends = [end for _, end in pairs]
        self.sequencer = context.Process(
            target=serve, args=(self.url, ends, theirs, [*workers_ends, control]), daemon=True,
            name="ledger-sequencer")
        self.sequencer.start()
        theirs.close()
        for end in ends:
            end.close()
        self.sequencer_control = control
        return workers_ends

    def _expect(self, index: int, kind: str) -> Any:
        try:
            message = self.connections[index].recv()
        except (EOFError, OSError) as error:
            raise WorkerGone(WorkerFailure(None, False, f"worker {index} ended: {error}", ""),
                             RunReport()) from error
        if message[0] == "failed":
            raise WorkerGone(message[1], message[2])
        if message[0] != kind:  # pragma: no cover - a protocol error
            raise AssertionError(f"worker {index}: {message[0]} instead of {kind}")
        return message[1]

    def _check(self) -> None:
        """A worker speaks unasked only to say it failed: then feed no one any more."""
        for index, connection in enumerate(self.connections):
            if connection.poll():
                self._expect(index, "never")

    def _send(self, index: int, message: tuple[str, Any]) -> None:
        try:
            self.connections[index].send(message)
        except (BrokenPipeError, OSError):
            self._expect(index, "never")  # the worker said why it stopped, or it died

    # -------------------------------------------------------------- routing

    def run(self, lines: Iterable[tuple[int, str]]) -> ShardedReport:
        self.start()
        try:
            for number, text in lines:
                self._route(number, text)
            self._release_globals()
            self._flush_all()
            self._stop()
        except WorkerGone as gone:
            self.report.failure = gone.failure
            self._merge(gone.report)
            self._stop()
        finally:
            self._end()
        self.report.rejected.sort(key=lambda r: r.line)
        return self.report

    def _route(self, number: int, text: str) -> None:
        shards = route_text(text, self.n)
        if shards is False:  # a line that routing alone cannot place: parse it here
            try:
                command = parse_line(text)
            except LedgerError as error:
                self.report.rejected.append(_rejection(number, *_raw_identity(text), error))
                return
            shards = route(command, self.n)
        if shards is None:
            self.globals.append((number, text, None, ""))
            return
        self._release_globals()
        source, target = shards
        if source == target:
            buffer = self.buffers[source]
            buffer.append((number, text, None, ""))
            if len(buffer) >= self.batch_size:
                self._flush(source)
            return
        self._transfer(number, text, source, target)

    def _flush(self, index: int) -> None:
        if self.buffers[index]:
            self._check()
            self._send(index, ("lines", self.buffers[index]))
            self.buffers[index] = []

    def _flush_all(self) -> None:
        for index in range(self.n):
            self._flush(index)

    def _release_globals(self) -> None:
        """The barrier before a run of reference or periodic lines (module docstring); a
        funding settlement in it is applied by every worker for its own accounts."""
        if not self.globals:
            return
        self._flush_all()
        run, self.globals = self.globals, []
        segment: list[tuple[int, str, str | None, str]] = []
        for item in run:
            if self.n > 1 and _is_parallel(item[1]):
                self._apply_globals(segment)
                segment = []
                self._parallel(item)
            else:
                segment.append(item)
        self._apply_globals(segment)

    def _apply_globals(self, items: list[tuple[int, str, str | None, str]]) -> list[Outcome]:
        """Every worker commits what it holds, worker 0 applies `items` in order and
        commits, the others catch up before their next command. Return their outcomes."""
        if not items:
            return []
        for index in range(1, self.n):
            self._send(index, ("sync", None))
        for index in range(1, self.n):
            self._expect(index, "synced")
        self._send(0, ("global", items))
        outcomes: list[Outcome] = self._expect(0, "synced")
        for index in range(1, self.n):
            self._send(index, ("catch_up", None))
        return outcomes

    def _parallel(self, item: tuple[int, str, str | None, str]) -> Outcome:
        """A funding settlement in parts (docs/sharding.md): every worker settles its own
        holders and votes; if every part passed, each commits its part, then worker 0 writes
        the period markers (paid: any part paid) and the command's key. A run stopped
        between commits is finished by any later run: an account paid already is skipped
        (and counts as paid), the marker is written once. A refused part: every part is
        discarded and worker 0 applies the command whole, as one process would. Return the
        command's outcome (the marker's, or the whole command's).

        With `retry_commit` (the scheduler's pool) a part that loses its commit to another
        writer is discarded and `PartsLost` raised: the caller runs the parts again."""
        number, text = item[0], item[1]
        for index in range(self.n):
            self._send(index, ("part", (number, text, index, self.n)))
        votes: list[dict[str, bool] | None] = [
            self._expect(index, "voted") for index in range(self.n)]
        if any(vote is None for vote in votes):
            for index in range(self.n):
                self._send(index, ("discard", None))
            return self._apply_globals([item])[0]
        for index in range(self.n):
            self._send(index, ("commit", self.retry_commit or None))
        committed = [self._expect(index, "committed") for index in range(self.n)]
        if not all(committed):
            raise PartsLost(text)
        paid: dict[str, bool] = {}
        for vote in votes:
            assert vote is not None
            for symbol, part_paid in vote.items():
                paid[symbol] = paid.get(symbol, False) or part_paid
        self._send(0, ("marker", (item, paid)))
        outcome: Outcome = self._expect(0, "synced")
        for index in range(1, self.n):
            self._send(index, ("catch_up", None))
        return outcome

    def _leg(self, index: int, number: int, text: str, leg: str, verdict: str = "") -> Outcome:
        self._flush(index)
        self._send(index, ("leg", (number, text, leg, verdict)))
        outcome: Outcome = self._expect(index, "leg")
        return outcome

    def _transfer(self, number: int, text: str, source: int, target: int) -> None:
        """Out-leg, in-leg, and on a refusal the return leg (docs/sharding.md)."""
        out = self._leg(source, number, text, "out")
        if isinstance(out, Rejection):
            self.report.rejected.append(out)
            return
        inward = self._leg(target, number, text, "in")
        if not isinstance(inward, Rejection):
            self._count(out)
            return
        back = self._leg(source, number, text, "return", inward.error)
        if isinstance(back, Rejection):  # pragma: no cover - a return leg checks nothing
            raise WorkerGone(WorkerFailure(number, False, back.message, ""), RunReport())
        if out == ACKNOWLEDGED and back == ACKNOWLEDGED:
            self._count(ACKNOWLEDGED)  # the whole transfer is a repeat
        else:
            self.report.rejected.append(inward)

    def _count(self, outcome: Outcome) -> None:
        if outcome == ACKNOWLEDGED:
            self.report.acknowledged += 1
        else:
            self.report.applied += 1

    # -------------------------------------------------------------- the end

    def _stop(self) -> None:
        for index, connection in enumerate(self.connections):
            try:
                connection.send(("stop", None))
                message = connection.recv()
            except (BrokenPipeError, EOFError, OSError):
                if self.report.failure is None:
                    self.report.failure = WorkerFailure(
                        None, False, f"worker {index} ended without a report", "")
                continue
            if message[0] == "report":
                self._merge(message[1])
                self.report.worker_cpu_s.append(message[2])
            elif message[0] == "failed":
                if self.report.failure is None:
                    self.report.failure = message[1]
                self._merge(message[2])

    def _merge(self, report: RunReport) -> None:
        self.report.applied += report.applied
        self.report.acknowledged += report.acknowledged
        self.report.rejected.extend(report.rejected)

    def _stop_sequencer(self) -> None:
        """Stop the sequencer once every worker has stopped; keep its figures."""
        control = self.sequencer_control
        if control is None:
            return
        try:
            control.send(("stop", None))
            if control.poll(30):
                self.report.sequencer = control.recv()[1]
        except (BrokenPipeError, EOFError, OSError):
            pass  # it died: the workers it served have said so
        control.close()
        self.sequencer_control = None

    def _end(self) -> None:
        for connection in self.connections:
            connection.close()
        self._stop_sequencer()
        for process in [*self.processes, *([self.sequencer] if self.sequencer else [])]:
            process.join(timeout=30)
            if process.is_alive():  # pragma: no cover - a worker that does not stop
                process.kill()
                process.join()


# ---------------------------------------------------------------------------------- pool

POOL_ATTEMPTS = 5  # runs of one command's parts: lost commits and restarts of the pool


class ShardPool(Coordinator):
    """Long-lived shard workers (and the sequencer) for `ledger scheduler --workers N`.

    The scheduler sends each funding settlement or margin sweep due to `settle`, which applies
    it in parts as `ledger run --workers N` does (`Coordinator._parallel`): every worker
    settles its own accounts, then worker 0 writes the period's one marker, whose outcome (or
    the whole command's, when a part refused it) `settle` returns. Between commands the
    workers keep their accounts in memory; each catches up with the store before its part.

    Parts are run again, up to `POOL_ATTEMPTS` times, when a part loses its commit to another
    writer (the feed) or a worker dies (the pool is restarted: every process stopped, new ones
    forked). A re-run is safe: an account already settled for the period is skipped, a command
    whose key is recorded is acknowledged, the marker is written once."""

    def __init__(self, url: str, workers: int) -> None:
        if not uses_sequencer(url):
            raise ValueError("a pool of shard workers needs PostgreSQL (its sequencer)")
        super().__init__(url, workers)
        self.retry_commit = True
        self.restarts = 0

    def settle(self, text: str) -> Outcome:
        """Apply one funding settlement or margin sweep (its command line) in parts."""
        if not self.processes:
            self.start()
        for attempt in range(1, POOL_ATTEMPTS + 1):
            try:
                return self._parallel((0, text, None, ""))
            except PartsLost as lost:
                if attempt == POOL_ATTEMPTS:
                    raise ConcurrentWriteError(f"parts lost their commit {attempt} times"
                                               ) from lost
            except WorkerGone as gone:
                if attempt == POOL_ATTEMPTS:
                    if gone.failure.store:  # the scheduler's exit 2, as without workers
                        raise StoreUnavailableError(gone.failure.message) from gone
                    raise
                self.restart(gone.failure.message)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def restart(self, why: str) -> None:
        """Stop every process of the pool and fork new ones."""
        import logging

        logging.getLogger("ledger.scheduler").warning(
            "shard pool: %s; restarting %d workers", why, self.n)
        self.close()
        self.restarts += 1
        self.start()

    def close(self) -> None:
        """Stop the workers and the sequencer (a dead one is simply joined)."""
        if not self.processes:
            return
        for connection in self.connections:
            try:
                connection.send(("stop", None))
            except (BrokenPipeError, OSError):
                pass
        self._end()
        self.connections, self.processes, self.sequencer = [], [], None


def uses_sequencer(url: str) -> bool:
    """Workers on PostgreSQL write through one sequencer; on SQLite each writes itself (the
    database file's write lock already orders the log)."""
    return url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:"))


def run_sharded(url: str, lines: Iterable[tuple[int, str]], workers: int,
                batch_size: int = 1000,
                on_reject: Callable[[Rejection], None] | None = None) -> ShardedReport:
    """Apply a feed with `workers` shard workers; return what happened (rejections by line)."""
    report = Coordinator(url, workers, batch_size).run(lines)
    if on_reject:
        for rejection in report.rejected:
            on_reject(rejection)
    return report


__all__ = ["Coordinator", "ShardPool", "ShardedReport", "StoreUnavailableError",
           "WorkerFailure", "route", "run_sharded"]
