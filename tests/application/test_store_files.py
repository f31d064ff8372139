"""Files and messages that must not leak (issue 10): private SQLite files, safe lock files, URLs
printed without their password."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.application import schema
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.application.store import create_private_file, environment
from ledger.masking import mask_in, mask_url
from schedulers.lock import FileLock, scheduler_lock

SECRET = "s3cr3t-p4ss"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize(("url", "masked"), [
    (f"postgresql://ledger:{SECRET}@db:5432/ledger", "postgresql://ledger:***@db:5432/ledger"),
    (f"mysql://root:{SECRET}@localhost/x", "mysql://root:***@localhost/x"),
    ("postgresql://ledger:p%40ss@db/ledger", "postgresql://ledger:***@db/ledger"),
    ("postgresql://ledger:p@ss@db/ledger", "postgresql://ledger:***@db/ledger"),
    (f"postgresql://db/ledger?user=x&password={SECRET}&sslmode=require",
     "postgresql://db/ledger?user=x&password=***&sslmode=require"),
    ("postgresql://ledger@db/ledger", "postgresql://ledger@db/ledger"),
    ("sqlite:///tmp/ledger.db", "sqlite:///tmp/ledger.db"),
])
def test_mask_url_replaces_the_password_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_in_removes_the_password_wherever_a_message_repeats_it() -> None:
    url = f"postgresql://ledger:{SECRET}@db/ledger"
    text = f"cannot connect to {url}: password {SECRET!r} refused"
    assert mask_in(text, url) == ("cannot connect to postgresql://ledger:***@db/ledger: "
                                  "password '***' refused")


@pytest.mark.parametrize("call", [environment, schema.sqlalchemy_url])
def test_a_wrong_scheme_is_refused_without_printing_the_password(call: object) -> None:
    url = f"mysql://root:{SECRET}@localhost/ledger"
    with pytest.raises(ValueError, match="unsupported database URL") as caught:
        call(url)  # type: ignore[operator]
    assert SECRET not in str(caught.value)
    assert "mysql://root:***@localhost/ledger" in str(caught.value)


def test_the_cli_does_not_print_the_password_of_a_bad_url(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "--db", f"mysql://root:{SECRET}@localhost/x",
         "run", str(feed)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"] == "store_unavailable"


# ----------------------------------------------------------------------------- SQLite files


def test_a_new_sqlite_store_and_its_wal_are_private(tmp_path: Path) -> None:
    """Whatever the umask (022 here: files would be 0644), the store is 0600, and the -wal and
    -shm files SQLite makes next to it take the store's mode."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "ledger.db"
        app = Ledger(f"sqlite:///{path}")
        try:
            app.handle(parse_command({"type": "asset", "at": "2025-01-01T00:00:00Z",
                                      "asset": "USDT"}))
            siblings = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.db")]
            assert path in siblings
            assert {p.name for p in siblings} >= {"ledger.db-wal", "ledger.db-shm"}
            assert {p.name: mode(p) for p in siblings} == {p.name: 0o600 for p in siblings}
        finally:
            app.close()
    finally:
        os.umask(previous)


def test_an_existing_store_file_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    path.write_bytes(b"")
    path.chmod(0o640)
    assert create_private_file(str(path)) is False
    assert mode(path) == 0o640


def test_a_link_to_a_store_not_made_yet_makes_a_private_target(tmp_path: Path) -> None:
    """An operator's link (ledger.db → another disk) is the store: its target is made 0600."""
    target = tmp_path / "elsewhere.db"
    link = tmp_path / "ledger.db"
    link.symlink_to(target)
    assert create_private_file(str(link)) is True
    assert mode(target) == 0o600
    assert link.is_symlink()


# ----------------------------------------------------------------------------- lock files


def test_the_lock_file_is_created_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        lock = scheduler_lock(f"sqlite:///{tmp_path / 'ledger.db'}")
        assert lock.try_acquire()
        try:
            path = tmp_path / "ledger.db.scheduler.lock"
            assert mode(path) == 0o600
            assert path.read_text() == f"{os.getpid()}\n"
        finally:
            lock.release()
    finally:
        os.umask(previous)


def test_a_symlink_at_the_lock_name_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """Before: the lock followed the link and truncated the target (here a precious file)."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    link = tmp_path / "ledger.db.scheduler.lock"
    link.symlink_to(precious)
    lock = FileLock(link)
    with pytest.raises(OSError):
        lock.try_acquire()
    assert precious.read_text() == "keep me\n"
    assert not lock.still_held()


def test_a_busy_lock_file_is_not_emptied_by_a_waiting_process(tmp_path: Path) -> None:
    """A second holder that fails to lock must not truncate the pid the first one wrote."""
    path = tmp_path / "ledger.db.scheduler.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        first.release()
