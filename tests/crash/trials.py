"""Crash trials of issue 10: kill `ledger run` / `ledger scheduler` / the PostgreSQL server at
random points, split the feed across processes, fuzz feed lines; compare with a reference.

Used by the CI-sized tests in this directory and, with big counts, by `scripts/crash-trials`:

    python -m tests.crash.trials --trials 100 --backend sqlite --backend postgres
    scripts/crash-trials --trials 100 --fuzz-lines 10000

Each function returns a `Trial` (ok, and a readable account of what differed) rather than
asserting, so the script can count and go on, and a test can print everything it saw.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import feedgen
from .harness import (
    Run,
    Store,
    compare,
    dump,
    event_count,
    ledger,
    new_store,
    postgres_available,
    run_and_kill,
    scratch_store,
    with_database,
    workdir,
)


@dataclass
class Trial:
    name: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def report(self) -> str:
        head = f"[{'identical' if self.ok else 'MISMATCH'}] {self.name}"
        body = [f"  note: {n}" for n in self.notes] + [f"  - {p}" for p in self.problems]
        return "\n".join([head, *body])


@dataclass
class Reference:
    feed: Path
    backend: str
    data: dict[str, Any]
    seconds: float  # wall time of the uninterrupted run
    events: int
    run: Run


def check_completion(trial: Trial, run: Run, what: str, allowed: tuple[int, ...] = (0, 1)
                     ) -> bool:
    if run.traceback:
        trial.fail(f"{what}: a Traceback on stderr: {run.describe()}")
    if run.returncode not in allowed:
        trial.fail(f"{what}: exit {run.returncode}, expected one of {allowed}: "
                   + run.describe())
        return False
    return True


def make_reference(feed: Path, backend: str, wd: Path, extra: tuple[str, ...] = ()
                   ) -> Reference:
    with scratch_store(backend, wd) as store:
        run = ledger(store.url, "run", *extra, str(feed))
        if run.returncode not in (0, 1) or run.traceback:
            raise RuntimeError("the uninterrupted reference run failed: " + run.describe())
        data = dump(store.url, wd / f"reference-{backend}.json")
        return Reference(feed, backend, data, run.seconds, event_count(store.url), run)


def compare_into(trial: Trial, reference: dict[str, Any], store: Store, wd: Path) -> None:
    got = dump(store.url, wd / f"trial-{store.name.rsplit('/', 1)[-1]}.json")
    for problem in compare(reference, got):
        trial.fail(problem)


# ----------------------------------------------------------------------------- kill `ledger run`


def kill_trial(ref: Reference, wd: Path, rng: random.Random, *, kills: int = 1,
               label: str = "", extra: tuple[str, ...] = ()) -> Trial:
    """Kill `ledger run FEED` `kills` times at random points, re-run it to the end, compare."""
    trial = Trial(f"kill x{kills} {ref.backend} {label}".strip())
    with scratch_store(ref.backend, wd) as store:
        for number in range(kills):
            if rng.random() < 0.5 or ref.events < 10:
                delay = rng.uniform(0.1, ref.seconds)
                run = run_and_kill(store.url, ["run", *extra, str(ref.feed)], delay=delay,
                                   stderr_path=wd / "kill.stderr")
                how = f"after {delay:.2f}s of {ref.seconds:.2f}s"
            else:
                target = rng.randint(1, max(1, ref.events - 1))
                run = run_and_kill(store.url, ["run", *extra, str(ref.feed)],
                                   after_events=target, stderr_path=wd / "kill.stderr")
                how = f"once {target} of {ref.events} events were in the store"
            if not run.killed and number == kills - 1 and not any(
                    "killed, " in part for part in trial.name.split("[")):
                # The run ended before the delay (a loaded machine): kill the next one by
                # event count instead, so that every trial has at least one real kill.
                trial.name += f" [kill {number + 1} {how}: ended first, exit {run.returncode}]"
                target = rng.randint(1, max(1, ref.events - 1))
                run = run_and_kill(store.url, ["run", *extra, str(ref.feed)],
                                   after_events=target, stderr_path=wd / "kill.stderr")
                how = f"(again) once {target} of {ref.events} events were in the store"
            trial.name += f" [kill {number + 1} {how}: " + (
                f"killed, {event_count(store.url)} events stored]" if run.killed
                else f"ended first, exit {run.returncode}]")
            if not run.killed:
                check_completion(trial, run, f"run {number + 1} (not killed)")
            if run.traceback:
                trial.fail(f"killed run {number + 1}: a Traceback before the kill: "
                           + run.describe())
            wrong = [r for r in run.rejections
                     if r["line"] not in {x["line"] for x in ref.run.rejections}]
            if wrong:
                trial.notes.append(f"run {number + 1} rejected {len(wrong)} lines the "
                                   f"reference applied, e.g. {wrong[:2]}")
        rerun = ledger(store.url, "run", *extra, str(ref.feed))
        if not check_completion(trial, rerun, "re-run after the kill"):
            # Does it ever move forward? One more re-run tells the lead.
            again = ledger(store.url, "run", *extra, str(ref.feed))
            trial.notes.append(f"a second re-run: exit {again.returncode}"
                               + (" (with a Traceback)" if again.traceback else ""))
        ref_lines = {r["line"] for r in ref.run.rejections}
        got_lines = {r["line"] for r in rerun.rejections}
        if got_lines - ref_lines:
            # A line the reference applied, rejected on the re-run: fine only if the killed
            # run had applied it already (then its re-run answer is a rejection such as
            # out_of_order instead of an acknowledgement); the comparison below decides.
            sample = [r for r in rerun.rejections if r["line"] in got_lines - ref_lines][:3]
            trial.notes.append(f"{len(got_lines - ref_lines)} lines applied by the reference "
                               f"were rejected on the re-run, e.g. {sample}")
        compare_into(trial, ref.data, store, wd)
    return trial


# ----------------------------------------------------------------------------- split property


def split_trial(feed: Path, reference: dict[str, Any], backend: str, wd: Path,
                rng: random.Random, pieces: int | None = None,
                reference_rejections: list[dict[str, Any]] | None = None) -> Trial:
    """The feed cut at random lines into slices, each run by its own `ledger run`."""
    lines = feed.read_bytes().decode("utf-8", "surrogateescape").removesuffix("\n").split("\n")
    pieces = pieces or rng.randint(2, 6)
    cuts = sorted(rng.sample(range(1, len(lines)), k=min(pieces - 1, len(lines) - 1)))
    trial = Trial(f"split {backend} at lines {cuts}")
    bounds = [0, *cuts, len(lines)]
    with scratch_store(backend, wd) as store:
        for index, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
            # blank lines keep the physical line numbers of the whole feed
            part = wd / f"slice-{index}.jsonl"
            feedgen.write(part, [""] * start + lines[start:end])
            run = ledger(store.url, "run", str(part))
            check_completion(trial, run, f"slice {index} (lines {start + 1}-{end})")
            expected = {r["line"] for r in reference_rejections} if reference_rejections \
                is not None else None
            if expected is not None:
                wrong = [r for r in run.rejections if r["line"] not in expected]
                if wrong:
                    trial.notes.append(f"slice {index} rejected lines one run applies: "
                                       f"{wrong[:2]}")
        compare_into(trial, reference, store, wd)
    return trial


# ----------------------------------------------------------------------------- scheduler


def copy_store(source: Store, wd: Path) -> Store:
    if source.backend == "sqlite":
        target = new_store("sqlite", wd)
        shutil.copyfile(source.name, target.name)
        for suffix in ("-wal", "-shm"):
            if Path(source.name + suffix).exists():
                shutil.copyfile(source.name + suffix, target.name + suffix)
        return target
    import psycopg

    target = new_store("postgres", wd, source.server)
    with psycopg.connect(with_database(source.server or "", "postgres"),
                         autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{target.name}"')
        admin.execute(f'CREATE DATABASE "{target.name}" TEMPLATE "{source.name}"')
    return target


@dataclass
class SchedulerReference:
    base: Store
    data: dict[str, Any]
    seconds: float
    args: list[str]
    events: int


def scheduler_reference(backend: str, wd: Path, seed: int, accounts: int, hours: int
                        ) -> SchedulerReference:
    lines = feedgen.generate(seed, accounts, hours, periodic=False)
    feed = feedgen.write(wd / f"feed-noperiodic-{seed}.jsonl", lines)
    start, until = feedgen.span(seed, accounts, hours)
    base = new_store(backend, wd)
    run = ledger(base.url, "run", str(feed))
    if run.returncode not in (0, 1):
        raise RuntimeError("loading the feed without periodic commands failed: "
                           + run.describe())
    args = ["scheduler", "--clock", "simulated", "--from", start, "--until", until,
            "--sweep-seconds", "3600"]
    store = copy_store(base, wd)
    try:
        done = ledger(store.url, *args)
        if done.returncode != 0 or done.traceback:
            raise RuntimeError("the uninterrupted scheduler run failed: " + done.describe())
        data = dump(store.url, wd / f"scheduler-reference-{backend}.json")
        events = event_count(store.url) - event_count(base.url)
    finally:
        store.drop()
    return SchedulerReference(base, data, done.seconds, args, events)


def scheduler_kill_trial(ref: SchedulerReference, wd: Path, rng: random.Random) -> Trial:
    trial = Trial(f"scheduler kill {ref.base.backend}")
    store = copy_store(ref.base, wd)
    try:
        delay = rng.uniform(0.1, ref.seconds)
        run = run_and_kill(store.url, ref.args, delay=delay, stderr_path=wd / "sched.stderr")
        trial.name += (f" [after {delay:.2f}s of {ref.seconds:.2f}s: "
                       + ("killed]" if run.killed else f"ended first, exit {run.returncode}]"))
        again = ledger(store.url, *ref.args, timeout=300)
        check_completion(trial, again, "scheduler re-run after the kill", allowed=(0,))
        compare_into(trial, ref.data, store, wd)
    finally:
        store.drop()
    return trial


# ----------------------------------------------------------------------------- fuzzing


def fuzz_trial(backend: str, wd: Path, seed: int, lines: int, counts: collections.Counter[str],
               minimize_budget: int = 10, tame: bool = False) -> Trial:
    """Mutated lines interleaved with valid ones: never exit 3, never a Traceback, and the
    store equals a clean replay of only the accepted lines."""
    from .fuzz import fuzz_feed

    trial = Trial(f"fuzz {backend} seed {seed} ({lines} mutated lines"
                  + (", tame: no legal extreme magnitudes)" if tame else ")"))
    rng = random.Random(seed)
    base = feedgen.generate(seed, accounts=10, hours=max(2, lines // 150 + 1))
    mixed, mutated = fuzz_feed(base, rng, lines, tame)
    feed = feedgen.write(wd / f"fuzz-{seed}.jsonl", mixed)
    with scratch_store(backend, wd) as store:
        run = ledger(store.url, "run", "--progress", str(feed))
        for key, value in run.summary.items():
            counts[f"outcome:{key}"] += value
        if run.returncode == 3 or run.returncode not in (0, 1):
            internal = [o for o in run.others if o.get("error") == "internal_error"]
            where = internal[0]["line"] if internal else None
            text = mixed[where - 1] if where and where <= len(mixed) else None
            rejected_now = {r["line"] for r in run.rejections}
            suspects = [n for n in sorted(mutated - rejected_now) if where and n < where][-3:]
            culprit = (minimize_crash(mixed, mutated - rejected_now, where, backend, wd,
                                      minimize_budget)
                       if where and minimize_budget else "")
            trial.fail(f"exit {run.returncode}" + (f" at line {where}: {text[:300]!r}"
                                                  if text is not None else "")
                       + "; the last accepted mutated lines before it: "
                       + "; ".join(f"{n}: {mixed[n - 1][:200]!r}" for n in suspects)
                       + (f"; {culprit}" if culprit else "")
                       + "; " + run.describe())
        if run.traceback:
            trial.fail("a Traceback on stderr: " + run.describe())
        rejected = {r["line"] for r in run.rejections}
        for item in run.rejections:
            counts[f"rejected:{item['error']}"] += 1
        internal = [o for o in run.others if o.get("error") == "internal_error"]
        stop = internal[0]["line"] if internal and isinstance(internal[0].get("line"), int) \
            else len(mixed) + 1
        reached = {n for n in mutated if n < stop}
        counts["lines"] += len(mixed)
        counts["mutated"] += len(mutated)
        counts["mutated rejected"] += len(rejected & reached)
        counts["mutated accepted"] += len(reached - rejected)
        counts["mutated not reached (after an exit 3)"] += len(mutated - reached)
        counts["runs exiting 3"] += run.returncode == 3
        if run.returncode == 3 and internal and isinstance(internal[0].get("line"), int):
            # Exit 3's contract: "the commands before the named line were applied, exactly
            # once". The store must equal a clean run of the accepted lines before it.
            before = [text if (number + 1) not in rejected else ""
                      for number, text in enumerate(mixed[: stop - 1])]
            prefix = feedgen.write(wd / f"fuzz-{seed}-before-{stop}.jsonl", before)
            with scratch_store(backend, wd) as replay:
                ledger(replay.url, "run", str(prefix))
                expected = dump(replay.url, wd / f"fuzz-{seed}-before.json")
            got = dump(store.url, wd / f"fuzz-{seed}-crashed.json")
            for problem in compare(expected, got):
                trial.fail(f"after exit 3 at line {stop} the store is not the accepted lines "
                           f"before it, applied once: {problem}")
        if run.returncode not in (0, 1):
            return trial
        accepted = [text if (number + 1) not in rejected else ""
                    for number, text in enumerate(mixed)]
        clean = feedgen.write(wd / f"fuzz-{seed}-accepted.jsonl", accepted)
        with scratch_store(backend, wd) as replay:
            again = ledger(replay.url, "run", str(clean))
            counts["replay rejected"] += len(again.rejections)
            if again.returncode != 0:
                trial.fail("the replay of only the accepted lines did not exit 0: "
                           + again.describe())
            reference = dump(replay.url, wd / f"fuzz-{seed}-replay.json")
        compare_into(trial, reference, store, wd)
        outcome = ledger(store.url, "run", str(feed))  # a re-run: acknowledged, no change
        counts["rerun acknowledged-or-rejected"] += 1 if outcome.returncode in (0, 1) else 0
    return trial


def minimize_crash(mixed: list[str], accepted_mutated: set[int], where: int, backend: str,
                   wd: Path, budget: int = 10) -> str:
    """Bisect the accepted mutated lines before `where` for one that alone (with the valid
    lines up to `where`) still makes the run exit 3: a minimal reproduction for the lead."""
    candidates = sorted(n for n in accepted_mutated if n < where)
    all_mutated = {n for n in range(1, len(mixed) + 1)} & (accepted_mutated | set())

    def crashes(keep: list[int]) -> bool:
        keep_set = set(keep)
        lines = [text if (number + 1 not in all_mutated or number + 1 in keep_set) else ""
                 for number, text in enumerate(mixed[:where])]
        feed = feedgen.write(wd / "minimize.jsonl", lines)
        with scratch_store(backend, wd) as store:
            return ledger(store.url, "run", str(feed)).returncode == 3

    if not candidates:
        return ""
    if not crashes(candidates):
        return "(the crash needs lines rejected here or is not reproducible on a prefix)"
    runs = 1
    while len(candidates) > 1 and runs < budget:
        half = candidates[: len(candidates) // 2]
        other = candidates[len(candidates) // 2:]
        runs += 1
        if crashes(half):
            candidates = half
            continue
        runs += 1
        if crashes(other):
            candidates = other
            continue
        return f"the crash needs mutated lines from both halves of {candidates[:6]}…"
    shown = "; ".join(f"{n}: {mixed[n - 1][:300]!r}" for n in candidates[:3])
    return (f"MINIMAL: the valid lines 1-{where} with only mutated line(s) {shown} "
            f"still exit 3")


# ----------------------------------------------------------------------------- the script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Crash trials of issue 10 (big runs).")
    parser.add_argument("--trials", type=int, default=100, help="kill trials per backend")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--hours", type=int, default=12)
    parser.add_argument("--double-kill-every", type=int, default=5,
                        help="every Nth kill trial kills twice before the re-run")
    parser.add_argument("--splits", type=int, default=10, help="split trials per backend")
    parser.add_argument("--scheduler-trials", type=int, default=10)
    parser.add_argument("--server-kills", type=int, default=3,
                        help="PostgreSQL server kills (a private cluster)")
    parser.add_argument("--fuzz-lines", type=int, default=10_000)
    parser.add_argument("--fuzz-tame", choices=["never", "half", "always"], default="half",
                        help="fuzz trials without legal extreme magnitudes (which, accepted, "
                             "make every later line exit 3 on e8f5029 and hide the rest)")
    parser.add_argument("--fuzz-trial", type=int, action="append",
                        help="run only this fuzz trial seed (as printed: `fuzz BACKEND seed N`); "
                             "with --backend and --fuzz-tame always for a tame one")
    parser.add_argument("--only", action="append",
                        choices=["kill", "split", "scheduler", "server", "fuzz"])
    parser.add_argument("--server-wait", type=float, default=150,
                        help="seconds `ledger run` may take to exit after the server died")
    parser.add_argument("--run-arg", action="append", default=[],
                        help="extra argument of every `ledger run` of the kill trials "
                             "(e.g. --run-arg=--batch --run-arg=7)")
    parser.add_argument("--verbose", action="store_true", help="print every trial")
    args = parser.parse_args(argv)
    import signal

    # SIGTERM/SIGINT: unwind, so that scratch databases and temp dirs are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    backends = args.backend or ["sqlite", "postgres"]
    only = set(args.only or ["kill", "split", "scheduler", "server", "fuzz"])
    if "postgres" in backends and (reason := postgres_available()):
        print(f"skipping postgres: {reason}")
        backends = [b for b in backends if b != "postgres"]
    rng = random.Random(args.seed)
    totals: collections.Counter[str] = collections.Counter()
    fuzz_counts: collections.Counter[str] = collections.Counter()
    failures: list[Trial] = []
    started = time.perf_counter()

    def record(kind: str, trial: Trial) -> None:
        totals[f"{kind} trials"] += 1
        totals[f"{kind} identical"] += trial.ok
        if not trial.ok:
            failures.append(trial)
        if args.verbose or not trial.ok:
            print(trial.report(), flush=True)

    with workdir() as wd:
        feed = feedgen.write(wd / "feed.jsonl",
                             feedgen.generate(args.seed, args.accounts, args.hours))
        print(f"feed: {sum(1 for _ in feed.open())} lines (seed {args.seed}, "
              f"{args.accounts} accounts, {args.hours} h) in {feed}", flush=True)
        refs: dict[str, Reference] = {}
        for backend in backends:
            if only & {"kill", "split", "server"}:
                refs[backend] = make_reference(feed, backend, wd, tuple(args.run_arg))
                ref = refs[backend]
                print(f"reference on {backend}: {ref.seconds:.1f}s, {ref.events} events, "
                      f"exit {ref.run.returncode}, {len(ref.run.rejections)} rejected lines",
                      flush=True)
                control = Trial(f"control {backend}: a second uninterrupted run")
                with scratch_store(backend, wd) as store:
                    check_completion(control, ledger(store.url, "run", *args.run_arg,
                                                     str(feed)), "run")
                    compare_into(control, ref.data, store, wd)
                record("control", control)
            if "kill" in only:
                for number in range(args.trials):
                    kills = 2 if (number + 1) % args.double_kill_every == 0 else 1
                    record(f"kill {backend}", kill_trial(refs[backend], wd, rng, kills=kills,
                                                         label=f"#{number + 1}",
                                                         extra=tuple(args.run_arg)))
                print(f"kill {backend}: {totals[f'kill {backend} identical']}/"
                      f"{totals[f'kill {backend} trials']} identical", flush=True)
            if "split" in only:
                for _ in range(args.splits):
                    record(f"split {backend}", split_trial(
                        feed, refs[backend].data, backend, wd, rng,
                        reference_rejections=refs[backend].run.rejections))
            if "scheduler" in only and args.scheduler_trials:
                sref = scheduler_reference(backend, wd, args.seed, args.accounts,
                                           min(args.hours, 24))
                try:
                    for _ in range(args.scheduler_trials):
                        record(f"scheduler {backend}", scheduler_kill_trial(sref, wd, rng))
                finally:
                    sref.base.drop()
        if "server" in only and args.server_kills:
            from .pgcluster import server_kill_trial

            for number in range(args.server_kills):
                record("server kill", server_kill_trial(feed, wd, rng, label=f"#{number + 1}",
                                                        wait=args.server_wait))
        if "fuzz" in only and args.fuzz_trial:
            for seed in args.fuzz_trial:
                record(f"fuzz {backends[0]}", fuzz_trial(
                    backends[0], wd, seed, 500, fuzz_counts,
                    tame=args.fuzz_tame == "always"))
        elif "fuzz" in only and args.fuzz_lines:
            per = 500
            for number in range(max(1, args.fuzz_lines // per)):
                backend = backends[number % len(backends)]
                tame = args.fuzz_tame == "always" or (
                    args.fuzz_tame == "half" and (number // len(backends)) % 2)
                record(f"fuzz {backend}",
                       fuzz_trial(backend, wd, args.seed * 1000 + number, per, fuzz_counts,
                                  tame=bool(tame)))
    print()
    print(f"done in {time.perf_counter() - started:.0f}s")
    kinds = sorted({k.rsplit(" ", 1)[0] for k in totals})
    print("trials:")
    for kind in kinds:
        print(f"  {kind:24} {totals[kind + ' identical']:5} identical of "
              f"{totals[kind + ' trials']:5}")
    if fuzz_counts:
        print("fuzz lines:")
        for key, value in sorted(fuzz_counts.items()):
            print(f"  {key:40} {value}")
    print(f"total: {sum(v for k, v in totals.items() if k.endswith('trials'))} trials, "
          f"{sum(v for k, v in totals.items() if k.endswith('identical'))} identical, "
          f"{len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
