"""One active scheduler per store: an advisory lock (PostgreSQL) or a lock file (SQLite).

The lock is not what makes periods exactly-once — the ledger's ids per period and its own
records of what is settled do that, so two schedulers running at once would still settle every
period once (the loser of a race gets `IntegrityError` and retries on a fresh view). The lock
keeps a second scheduler idle, waiting, so that the work is not done twice and the logs tell one
story; when the active process dies, the lock dies with it and a waiting one takes over.

- PostgreSQL: `pg_try_advisory_lock(key)` on a dedicated connection held for the life of the
  process (session-level: released when the session ends, however the process ends). The key is
  fixed; advisory locks are per database, so each store has its own. Waiting polls with
  `pg_try_advisory_lock` rather than blocking in `pg_advisory_lock`, so that SIGTERM is answered
  while waiting. TCP keepalives let the server notice a vanished holder; even a clean exit frees
  the lock a moment after the client closes (the server ends the session asynchronously), so
  waiters poll rather than try once.
- SQLite: `fcntl.flock` on `<database>.scheduler.lock`, next to the database file; the kernel
  releases it when the process dies. The file is opened without following a symlink and
  created 0600 (a link planted at its name is refused, its target never truncated). An
  in-memory database has no other process: no lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any, Protocol

from ledger.application.store import sqlite_path

log = logging.getLogger("ledger.scheduler")

ADVISORY_KEY = 0x6C65_6467_7363_6864  # "ledgschd": the scheduler's advisory lock in a database
POLL_SECONDS = 1.0


class SchedulerLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; tell whether this process holds it now."""
        ...

    def still_held(self) -> bool:
        """Tell whether the lock is still ours (False when the session holding it is gone)."""
        ...

    def release(self) -> None:
        ...

    def describe(self) -> str:
        ...


def scheduler_lock(url: str) -> SchedulerLock:
    """Return the lock for the store at `url`."""
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path in (":memory:", ""):
            return NoLock()
        database = Path(path).resolve()  # `sqlite_path` may give "//tmp/…" for 4 slashes
        return FileLock(database.with_name(database.name + ".scheduler.lock"))
    return AdvisoryLock(url)


def wait_for(lock: SchedulerLock, stop: threading.Event, poll: float = POLL_SECONDS) -> bool:
    """Wait until this process holds the lock (True) or `stop` is set (False)."""
    if lock.try_acquire():
        log.info("scheduler lock taken (%s): this scheduler is active", lock.describe())
        return True
    log.info("another scheduler is active (%s): waiting to take over", lock.describe())
    while not stop.wait(poll):
        if lock.try_acquire():
            log.info("scheduler lock taken (%s): taking over", lock.describe())
            return True
    return False


class NoLock:
    """An in-memory store: nobody else can see it."""

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def describe(self) -> str:
        return "in-memory store, no lock"


class FileLock:
    """`flock` on a file next to the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        # O_NOFOLLOW: a symlink planted at the lock's name is refused (ELOOP), never followed
        # to truncate or write its target; no O_TRUNC: the file is emptied only once locked,
        # and only when it is a regular file of ours; 0600: only the owner reads the pid.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"lock file {self.path} is not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: who holds it
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def describe(self) -> str:
        return f"lock file {self.path}"


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                               keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=3, application_name="ledger-scheduler")

    def try_acquire(self) -> bool:
        if self._conn is not None and self.still_held():
            return True
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
        return bool(row and row[0])

    def still_held(self) -> bool:
        """Ask the server whether our session holds the lock (a lost connection: no)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            row = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid() AND granted"
                " AND objid = (%s::bigint & 4294967295)::oid)",  # the key's low 32 bits
                (ADVISORY_KEY,)).fetchone()
        except Exception:  # noqa: BLE001 - any failure of the lock's session means "lost"
            return False
        return bool(row and row[0])

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            finally:
                self._conn.close()
        self._conn = None

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {ADVISORY_KEY}"

    def close_connection(self) -> None:
        """Drop the session without unlocking (what a dying process does; tests use it)."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
