"""The crash harness's plumbing: scratch stores, `ledger` subprocesses, kills, dumps, diffs.

Every store is private: a SQLite file in a temp dir, or a PostgreSQL database of a unique name
(`crash10_<pid>_<n>_<random>`) created on the server of $LEDGER_TEST_POSTGRES_URL and dropped
afterwards. Every `ledger` command is a separate process, like in production; a kill is a
SIGKILL of that process (no handler, no flush, no atexit).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_COUNTER = itertools.count()


def ledger_command() -> list[str]:
    script = Path(sys.executable).with_name("ledger")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ledger.cli"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LEDGER_DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ----------------------------------------------------------------------------- stores


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


def postgres_available(url: str = PG_URL) -> str | None:
    """None when a server answers, else the reason."""
    try:
        import psycopg

        psycopg.connect(with_database(url, "postgres"), connect_timeout=3).close()
    except Exception as error:  # noqa: BLE001
        return f"no PostgreSQL at {url}: {error}"
    return None


@dataclass
class Store:
    backend: str
    url: str
    name: str
    server: str | None = None  # the admin URL of the PostgreSQL server

    def drop(self) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(self.name + suffix).unlink(missing_ok=True)
            return
        import psycopg

        try:
            with psycopg.connect(with_database(self.server or PG_URL, "postgres"),
                                 autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - best effort (e.g. the server was killed)
            pass


def new_store(backend: str, workdir: Path, server: str | None = None) -> Store:
    n = next(_COUNTER)
    if backend == "sqlite":
        path = workdir / f"store-{n}-{random.randrange(10**6)}.db"
        return Store("sqlite", f"sqlite:///{path}", str(path))
    import psycopg

    server = server or PG_URL
    name = f"crash10_{os.getpid()}_{n}_{random.randrange(10**6)}"
    with psycopg.connect(with_database(server, "postgres"), autocommit=True,
                         connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return Store("postgres", with_database(server, name), name, server)


@contextmanager
def scratch_store(backend: str, workdir: Path, server: str | None = None) -> Iterator[Store]:
    store = new_store(backend, workdir, server)
    try:
        yield store
    finally:
        store.drop()


@contextmanager
def workdir(prefix: str = "crash10-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- runs


@dataclass
class Run:
    args: list[str]
    returncode: int | None
    stderr: str
    stdout: str
    seconds: float
    killed: bool = False
    rejections: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)  # non-rejection JSON lines
    summary: dict[str, int] = field(default_factory=dict)  # `--progress`'s closing counts

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr

    def describe(self) -> str:
        tail = self.stderr.strip().splitlines()[-6:]
        return (f"`{' '.join(self.args)}` -> exit {self.returncode}"
                + (" (SIGKILLed by the harness)" if self.killed else "")
                + (", stderr tail:\n    " + "\n    ".join(tail) if tail else ""))


def _parse_stderr(run: Run) -> Run:
    found = re.search(r"applied (\d+), acknowledged (\d+), rejected (\d+)", run.stderr)
    if found:
        run.summary = dict(zip(("applied", "acknowledged", "rejected"),
                               map(int, found.groups()), strict=True))
    # Only "\n" ends a line: str.splitlines() would also cut at U+2028, U+0085, \x1c… that a
    # rejection line may carry raw (ensure_ascii=False) in an echoed id.
    for text in run.stderr.split("\n"):
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            item = json.loads(text)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if "line" in item and item.get("error") not in (None, "internal_error",
                                                        "store_unavailable"):
            run.rejections.append(item)
        else:
            run.others.append(item)
    return run


def ledger(url: str, *args: str, timeout: float = 600) -> Run:
    command = [*ledger_command(), "--db", url, *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(),
                          timeout=timeout)
    return _parse_stderr(Run(command[-len(args) - 2:], done.returncode, done.stderr,
                             done.stdout, time.perf_counter() - started))


def start_ledger(url: str, *args: str, stderr_path: Path) -> tuple[subprocess.Popen[bytes], Any]:
    command = [*ledger_command(), "--db", url, *args]
    handle = stderr_path.open("wb")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=handle,
                               env=child_env(), start_new_session=True)
    return process, handle


def event_count(url: str) -> int:
    """Events in the store now (0 when its tables do not exist yet)."""
    from .dump import _sql_rows

    try:
        return int(_sql_rows(url, "SELECT count(*) FROM ledger_event_index")[0][0])
    except Exception:  # noqa: BLE001
        return 0


def run_and_kill(url: str, args: list[str], *, delay: float | None = None,
                 after_events: int | None = None, stderr_path: Path,
                 timeout: float = 600) -> Run:
    """Start `ledger --db url ARGS`, SIGKILL it after `delay` seconds or once `after_events`
    events are in the store (polled), whichever is given; a run that ends first is not
    killed. Returns the run (killed=True when the harness killed it)."""
    started = time.perf_counter()
    process, handle = start_ledger(url, *args, stderr_path=stderr_path)
    killed = False
    try:
        if delay is not None:
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                killed = True
        else:
            assert after_events is not None
            while process.poll() is None:
                if event_count(url) >= after_events:
                    os.kill(process.pid, signal.SIGKILL)
                    killed = True
                    break
                if time.perf_counter() - started > timeout:
                    break
                time.sleep(0.02)
        process.wait(timeout=timeout)
    finally:
        handle.close()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
    return _parse_stderr(Run(args, process.returncode, stderr, "",
                             time.perf_counter() - started, killed=killed))


def dump(url: str, out: Path, *, cli: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.crash.dump", url, str(out)]
    if cli:
        command.append("--cli")
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(),
                          cwd=str(Path(__file__).resolve().parents[2]), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"dump of {url} failed (exit {done.returncode}):\n{done.stderr}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


# ----------------------------------------------------------------------------- diffs


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _first_path_diff(a: Any, b: Any, path: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{path or '.'}: {_short(a, 200)} != {_short(b, 200)}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a:
                return f"{path}.{key}: missing in reference, trial has {_short(b[key], 200)}"
            if key not in b:
                return f"{path}.{key}: reference has {_short(a[key], 200)}, missing in trial"
            found = _first_path_diff(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first_path_diff(x, y, f"{path}[{index}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: length {len(a)} (reference) != {len(b)} (trial)"
        return None
    return None if a == b else f"{path or '.'}: {_short(a, 200)} != {_short(b, 200)}"


def compare(reference: dict[str, Any], trial: dict[str, Any]) -> list[str]:
    """Return readable differences (empty: identical): per section, the first differing
    account / stream and its first differing event or field."""
    diffs: list[str] = []
    ref_ev, got_ev = reference["events"], trial["events"]
    missing = sorted(set(ref_ev) - set(got_ev))
    extra = sorted(set(got_ev) - set(ref_ev))
    if missing:
        diffs.append(f"events: {len(missing)} accounts missing in trial, e.g. {missing[:5]}")
    if extra:
        diffs.append(f"events: {len(extra)} accounts only in trial, e.g. {extra[:5]}")
    differing = [n for n in sorted(set(ref_ev) & set(got_ev)) if ref_ev[n] != got_ev[n]]
    if differing:
        name = differing[0]
        a, b = ref_ev[name], got_ev[name]
        index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                     min(len(a), len(b)))
        line = (f"events: {len(differing)} accounts differ, first {name!r} "
                f"({len(a)} events in reference, {len(b)} in trial); first difference at "
                f"position {index}:")
        line += f"\n      reference: {_short(a[index]) if index < len(a) else '(none)'}"
        line += f"\n      trial:     {_short(b[index]) if index < len(b) else '(none)'}"
        if index < len(a) and index < len(b):
            line += "\n      field: " + str(_first_path_diff(a[index], b[index]))
        diffs.append(line)
        counts = []
        for n in differing[:8]:
            ra = _type_counts(ref_ev[n])
            rb = _type_counts(got_ev[n])
            delta = {t: rb.get(t, 0) - ra.get(t, 0) for t in set(ra) | set(rb)
                     if rb.get(t, 0) != ra.get(t, 0)}
            counts.append(f"{n}: {delta or 'same counts, different content/order'}")
        diffs.append("events: per-account event-type delta (trial - reference): "
                     + "; ".join(counts))
    ref_state = {s["account"]: s for s in reference["state"]}
    got_state = {s["account"]: s for s in trial["state"]}
    for name in sorted(set(ref_state) | set(got_state)):
        found = _first_path_diff(ref_state.get(name), got_state.get(name), "")
        if found:
            others = sum(1 for n in set(ref_state) | set(got_state)
                         if ref_state.get(n) != got_state.get(n))
            diffs.append(f"state: {others} accounts differ, first {name!r} at {found}")
            break
    for section in ("streams", "commands"):
        a, b = reference.get(section), trial.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            key = keys[0]
            found = _first_path_diff(a.get(key), b.get(key), key)
            diffs.append(f"{section}: {len(keys)} streams differ, first {found}")
        elif isinstance(a, list) and isinstance(b, list):
            sa, sb = {tuple(x) for x in a}, {tuple(x) for x in b}
            diffs.append(f"{section}: {len(sa - sb)} only in reference (e.g. "
                         f"{sorted(sa - sb)[:3]}), {len(sb - sa)} only in trial (e.g. "
                         f"{sorted(sb - sa)[:3]})")
        else:
            diffs.append(f"{section}: {_short(a, 100)} != {_short(b, 100)}")
    return diffs


def _type_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["type"]] = counts.get(event["type"], 0) + 1
    return counts
