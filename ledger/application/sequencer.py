"""The single sequencing writer of a PostgreSQL store (issue 11, docs/architecture.md).

In `ledger run --workers N` on PostgreSQL, the shard workers do all the Python (parse, decide,
encode: the lean rows, their index rows, the idempotency and other side rows) and hand each
finished batch to one `Sequencer` process over a pipe. The sequencer alone writes the events
table. It takes every batch that has arrived (a **group**), and in one transaction:

    LOCK TABLE ledger_events IN EXCLUSIVE MODE       -- uncontended: it is the only writer
    SELECT max(notification_id)                      -- the counter, read under the lock
    per batch: SAVEPOINT; side rows; COPY events with ids counter+1 …; RELEASE
               (a constraint violated: ROLLBACK TO SAVEPOINT, the counter stays)
    setval(the id sequence, counter)                 -- one-process writers continue after it
    NOTIFY; COMMIT

and only then answers every worker of the group: `ok`, or `conflict` for a batch rolled back to
its savepoint (the worker raises the `IntegrityError` it gets today, which the unit of work turns
into `ConcurrentWriteError`), or `store` when the transaction could not commit (nothing of the
group is written; the worker stops with `store_unavailable`).

Why gap-free: ids are assigned by one transaction at a time — the EXCLUSIVE lock, which every
writer of the events table takes (the sequencer per group, a one-process `ledger run` per batch,
the library's own recorder), orders them — starting after the last committed id, contiguous
within the transaction (a rolled-back batch gives its ids back to the next one). A crash rolls
the whole group back: the ids were never committed, so there is no hole to skip. Readers
page by id after the last they read; no id can commit behind one they have seen.

The sequence of the `bigserial` column is moved to the last id in the same transaction
(`setval`), so a one-process writer that later takes the lock gets the next id from it. `setval`
is not undone by a rollback: a group that fails after it leaves the sequence ahead, and the next
one-process writer leaves a hole in the numbers (never an id behind one already read), as a
rolled-back batch of that path does today. The sequencer itself never uses the sequence.

A process, not a thread of the coordinator: the coordinator parses and routes every line (its
own CPU), and a thread would share its interpreter lock; a process gives the write path a core
of its own and its CPU is measured apart (`benchmarks/shards.py`). The batches travel pickled:
UUID, version, topic and the stored bytes of each event (no decoding on either side).
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from ledger.application.store import SideRows

EVENTS_TABLE = "ledger_events"  # the application "Ledger"'s tables (migration 0001)
SNAPSHOTS_TABLE = "ledger_snapshots"
EVENT_TYPES = ["uuid", "int8", "text", "bytea", "int8"]  # columns of the sequenced COPY

Row = tuple[Any, int, str, bytes]  # originator id, version, topic, stored state


@dataclass
class Batch:
    """One worker batch: what one `insert_events` call of a worker would write."""

    events: list[Row]
    side: SideRows | None


@dataclass
class GroupFigures:
    """What the sequencer spent, for the bench (`ledger bench --only shards`)."""

    groups: int = 0
    batches: int = 0
    events: int = 0
    conflicts: int = 0
    locked_s: float = 0.0  # from LOCK TABLE to the end of COMMIT, summed over groups
    commit_s: float = 0.0  # the COMMIT alone
    cpu_s: float = 0.0  # the sequencer process's CPU time
    server_cpu_s: float | None = None  # its PostgreSQL backend's, when the server is local
    group_sizes: list[int] = field(default_factory=list)


class SequencerGone(Exception):
    """The sequencer ended without answering (killed, or its pipe closed)."""


class SequencerClient:
    """A worker's end: send a batch, wait until it is durable (or refused)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def write(self, events: Sequence[Any], side: SideRows | None) -> None:
        """Hand a batch to the sequencer and return once it is committed; raise the
        library's `IntegrityError` on a constraint violated (nothing of it written),
        `OperationalError` when the group could not be written or the sequencer is gone."""
        from eventsourcing.persistence import IntegrityError, OperationalError

        rows = [(e.originator_id, e.originator_version, e.topic, e.state) for e in events]
        try:
            self.connection.send_bytes(pickle.dumps(Batch(rows, side), pickle.HIGHEST_PROTOCOL))
            kind, message = self.connection.recv()
        except (EOFError, OSError) as error:
            raise OperationalError(f"the sequencer is gone: {error}") from error
        if kind == "ok":
            return
        if kind == "conflict":
            raise IntegrityError(message)
        if kind == "store":
            raise OperationalError(message)
        raise RuntimeError(f"sequencer: {message}")


class Sequencer:
    """The one writer of a store's events table (module docstring)."""

    def __init__(self, url: str, workers: list[Connection], control: Connection) -> None:
        self.url = url
        self.workers = list(workers)
        self.control = control
        self.connection: Any = None
        self.figures = GroupFigures()
        self.cpu_started = time.process_time()
        self.backend: int | None = None  # the server process of its connection

    def serve(self) -> None:
        """Write groups until the coordinator says stop (then send it the figures)."""
        self.cpu_started = time.process_time()
        try:
            while self.workers:
                ready = wait([*self.workers, self.control])
                if self.control in ready and self._control():
                    return
                group: list[tuple[Connection, Batch]] = []
                for connection in ready:
                    if connection is self.control:
                        continue
                    try:
                        payload = connection.recv_bytes()  # type: ignore[union-attr]
                    except (EOFError, OSError):
                        self.workers.remove(connection)  # type: ignore[arg-type]
                        continue
                    group.append((connection, pickle.loads(payload)))  # type: ignore[arg-type]
                if group:
                    self._answer(group, self._write_group([batch for _, batch in group]))
            self._control(block=True)
        finally:
            if self.connection is not None:
                self.connection.close()

    def _control(self, block: bool = False) -> bool:
        """Handle the coordinator's message; True when it said stop (or is gone)."""
        if not block and not self.control.poll():
            return False
        try:
            self.control.recv()
        except (EOFError, OSError):
            return True
        self.figures.cpu_s = time.process_time() - self.cpu_started
        self.figures.server_cpu_s = _backend_cpu_s(self.backend)
        try:
            self.control.send(("figures", self.figures))
        except OSError:
            pass
        return True

    @staticmethod
    def _answer(group: list[tuple[Connection, Batch]], answers: list[tuple[str, str]]) -> None:
        for (connection, _), answer in zip(group, answers, strict=True):
            try:
                connection.send(answer)
            except OSError:
                pass  # the worker is gone; the coordinator notices

    def _connect(self) -> Any:
        import psycopg

        if self.connection is None or self.connection.closed:
            self.connection = psycopg.connect(self.url, connect_timeout=3, autocommit=True)
            self.backend = self.connection.info.backend_pid
        return self.connection

    def _write_group(self, batches: list[Batch]) -> list[tuple[str, str]]:
        """Write a group in one transaction, a savepoint per batch; return each batch's
        answer. Nothing is answered `ok` unless the commit returned."""
        import psycopg

        answers: list[tuple[str, str]] = []
        events = 0
        try:
            connection = self._connect()
            started = time.perf_counter()
            with connection.transaction(), connection.cursor() as curs:
                curs.execute(f"SET LOCAL lock_timeout = '30s'; LOCK TABLE {EVENTS_TABLE}"
                             " IN EXCLUSIVE MODE")
                row = curs.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()
                last = int(row[0]) if row and row[0] is not None else 0
                for batch in batches:
                    try:
                        with connection.transaction():
                            write_batch(curs, batch, last + 1)
                    except psycopg.errors.IntegrityError as error:
                        answers.append(("conflict", str(error)))
                        self.figures.conflicts += 1
                        continue
                    except (psycopg.errors.DataError, psycopg.errors.ProgrammingError) as error:
                        answers.append(("error", f"{type(error).__name__}: {error}"))
                        continue
                    answers.append(("ok", ""))
                    last += len(batch.events)
                    events += len(batch.events)
                if events:
                    curs.execute("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
                                 " %s)", (EVENTS_TABLE, last))
                    curs.execute(f"NOTIFY {EVENTS_TABLE}")
                committing = time.perf_counter()
            done = time.perf_counter()
        except psycopg.OperationalError as error:
            if self.connection is not None:
                self.connection.close()
            return [("store", f"OperationalError: {error}")] * len(batches)
        except psycopg.Error as error:  # rolled back whole: nothing of the group is written
            return [("error", f"{type(error).__name__}: {error}")] * len(batches)
        figures = self.figures
        figures.groups += 1
        figures.batches += len(batches)
        figures.events += events
        figures.locked_s += done - started
        figures.commit_s += done - committing
        figures.group_sizes.append(len(batches))
        return answers


def _backend_cpu_s(pid: int | None) -> float | None:
    """CPU seconds the server process `pid` has used, read from /proc when the server runs on
    this machine (the bench's figure of the database's share); None otherwise."""
    if pid is None:
        return None
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_batch(curs: Any, batch: Batch, first_id: int) -> None:
    """Write one worker batch's side rows and events, the events numbered from `first_id`."""
    from ledger.application.pgstore import copy_side_rows

    if batch.side:
        copy_side_rows(curs, batch.side, SNAPSHOTS_TABLE)
    if batch.events:
        with curs.copy(f"COPY {EVENTS_TABLE} (originator_id, originator_version, topic, state,"
                       " notification_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(EVENT_TYPES)
            for number, (originator, version, topic, state) in enumerate(batch.events,
                                                                         start=first_id):
                copy.write_row((originator, version, topic, state, number))


def name_process(name: str) -> None:
    """Give this process a name `ps` and /proc/PID/comm show (Linux; at most 15 bytes), so an
    operator (or a kill test) can tell the sequencer and the shard workers apart."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass  # not Linux: the name is a convenience only


def serve(url: str, workers: list[Connection], control: Connection,
          inherited: list[Connection]) -> None:
    """The sequencer process's entry point (forked by the coordinator before the workers)."""
    for connection in inherited:
        connection.close()  # the workers' ends: only the workers hold them
    name_process("ledger-sequencer")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops it, in order
    Sequencer(url, workers, control).serve()
