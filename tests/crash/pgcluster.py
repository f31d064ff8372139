"""A private PostgreSQL 15 cluster for the server-kill trial (issue 10, part 4).

The test starts its own server (initdb + pg_ctl; as root, through `runuser -u postgres`),
listening on a free port on 127.0.0.1 with its socket in the temp dir, kills it in the middle
of a `ledger run` with `pg_ctl stop -m immediate` (the postmaster and every backend die at
once, no checkpoint: a crash as far as the store is concerned), restarts it (crash recovery),
and runs the feed again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import Run, _parse_stderr, dump, event_count, ledger, scratch_store, start_ledger
from .trials import Trial, check_completion, compare_into

BIN = Path(os.environ.get("LEDGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def cluster_unavailable() -> str | None:
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"no initdb/pg_ctl in {BIN} (set LEDGER_TEST_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crash10-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            self.prefix = []
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True,
                              check=check, timeout=120, cwd=str(self.root))

    def init(self) -> Cluster:
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=40 -c shared_buffers=32MB")
        for attempt in range(10):
            done = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                             "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
                             check=False)
            if done.returncode == 0:
                return
            status = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "status",
                               check=False)
            if status.returncode == 0:
                return  # it is running (e.g. a start raced with recovery)
            time.sleep(1 + attempt)
        log = (self.root / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the private PostgreSQL server did not start: {done.stdout}"
                           f"{done.stderr}\n{log}")

    def kill(self) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, no checkpoint."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                  check=False)

    def stop(self) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                  check=False)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            self.init()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _store_unavailable_lines(run: Run) -> list[dict[str, object]]:
    return [o for o in run.others if o.get("error") == "store_unavailable"]


def server_kill_trial(feed: Path, wd: Path, rng: random.Random, label: str = "",
                      cluster: Cluster | None = None, wait: float = 150) -> Trial:
    """Kill the server in the middle of `ledger run`: exit 2 with a store_unavailable line
    naming the last committed line; after a restart the lines up to it are exactly what a run
    of those lines alone gives, and a re-run ends identical to an uninterrupted run."""
    if cluster is None:
        with Cluster() as own:
            return server_kill_trial(feed, wd, rng, label, own, wait)
    trial = Trial(f"postgres server kill {label}".strip())
    with scratch_store("postgres", wd, cluster.url) as ref_store:
        reference_run = ledger(ref_store.url, "run", str(feed))
        if reference_run.returncode not in (0, 1):
            trial.fail("the reference run on the private cluster failed: "
                       + reference_run.describe())
            return trial
        reference = dump(ref_store.url, wd / "server-reference.json")
        ref_url = ref_store.url
        reference_events = event_count(ref_url)
    store_ctx = scratch_store("postgres", wd, cluster.url)
    store = store_ctx.__enter__()
    try:
        target = rng.randint(max(1, reference_events // 5), max(1, reference_events * 4 // 5))
        delay = 0.0
        started = time.perf_counter()
        # Batches of 25 lines: commit points all through the run, so the server dies between
        # some and in the middle of one (a feed under 1,000 lines is one batch by default).
        process, handle = start_ledger(store.url, "run", "--batch", "25", str(feed),
                                       stderr_path=wd / "server-kill.stderr")
        try:
            # Kill the server once a random share (20-80 %) of the reference's events is in
            # the store: always in the middle of the run, however loaded the machine is.
            while process.poll() is None and event_count(store.url) < target:
                time.sleep(0.05)
            delay = time.perf_counter() - started
            if process.poll() is not None:
                trial.notes.append(f"the run ended before the kill ({delay:.2f}s)")
            else:
                cluster.kill()
            killed_at = time.perf_counter()
            try:
                process.wait(timeout=wait)
                trial.notes.append(f"the run exited {time.perf_counter() - killed_at:.1f}s "
                                   "after the kill")
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                trial.fail(f"`ledger run` did not exit within {wait:.0f} s of the server's "
                           "death (the harness SIGKILLed it)")
        finally:
            handle.close()
        stderr = (wd / "server-kill.stderr").read_text(encoding="utf-8", errors="replace")
        run = _parse_stderr(Run(["run", str(feed)], process.returncode, stderr, "", delay))
        trial.name += (f" [server killed at {delay:.2f}s (run of {reference_run.seconds:.2f}s), "
                       f"once {target} of {reference_events} events were stored]")
        named_line = None
        if not any(n.startswith("the run ended") for n in trial.notes):
            if run.returncode != 2:
                trial.fail(f"the run exited {run.returncode}, not 2, when the server died: "
                           + run.describe())
            if run.traceback:
                trial.fail("a Traceback on stderr when the server died: " + run.describe())
            lost = _store_unavailable_lines(run)
            if not lost:
                trial.fail("no JSON line with \"error\":\"store_unavailable\" on stderr: "
                           + run.describe())
            else:
                trial.notes.append(f"store_unavailable line: {json.dumps(lost[-1])[:300]}")
                named_line = lost[-1].get("line")
                if not isinstance(named_line, int):
                    trial.fail(f"the store_unavailable line names no last committed line "
                               f"(\"line\": {named_line!r})")
                    named_line = None
        restart = time.perf_counter()
        cluster.start()
        trial.notes.append(f"server restarted in {time.perf_counter() - restart:.1f}s")
        if named_line is not None:
            # The lines up to the named one are in the store: exactly what they give alone.
            partial = dump(store.url, wd / "server-partial.json")
            text = feed.read_bytes().decode("utf-8", "surrogateescape")
            lines = text.removesuffix("\n").split("\n")
            prefix = wd / "server-prefix.jsonl"
            from . import feedgen

            feedgen.write(prefix, lines[:named_line])
            with scratch_store("postgres", wd, cluster.url) as alone:
                ledger(alone.url, "run", str(prefix))
                expected = dump(alone.url, wd / "server-prefix.json")
            from .harness import compare

            for problem in compare(expected, partial):
                trial.fail(f"after the server kill the store is not lines 1-{named_line} "
                           f"(the named last committed line): {problem}")
        rerun = ledger(store.url, "run", str(feed))
        check_completion(trial, rerun, "re-run after the server restart")
        compare_into(trial, reference, store, wd)
    finally:
        try:
            cluster.start()
        except subprocess.CalledProcessError:
            pass  # already running
        store_ctx.__exit__(None, None, None)
    return trial
