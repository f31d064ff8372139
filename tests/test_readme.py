"""The README stays true: CI runs exactly the test command it gives, and the tour runs."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text[text.index("## Set-up"):text.index("## A short tour")]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_readme_gives_two_set_up_commands_demo_and_tests() -> None:
    demo, tests = _commands()
    assert demo.endswith("ledger demo")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


# ----------------------------------------------------------------------------- the tour

TOUR_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _tour() -> str:
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A short tour"):text.index("## Layout")]
    blocks = re.findall(r"```sh\n(.+?)\n```", tour, flags=re.DOTALL)
    assert len(blocks) == 1, "the tour is one block of commands"
    return blocks[0]


def _fresh_clone(target: Path) -> None:
    """Copy what a clone holds: tracked files and new ones not ignored (no store, no feed the
    author happens to have lying around), with the set-up's virtualenv linked in."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = Path(sys.prefix)
    (target / ".venv").symlink_to(venv)


@pytest.fixture
def tour_postgres(scratch_postgres_db: str) -> str:
    """An empty PostgreSQL database for the tour's last line (not the shared `test` one)."""
    return scratch_postgres_db


def test_the_tour_runs_top_to_bottom_in_a_fresh_clone(tmp_path: Path,
                                                       tour_postgres: str) -> None:
    """Every line of the tour, in order, exits 0 in a copy of the clone (issue 13); only the
    PostgreSQL URL is pointed at a database of this test's own."""
    import subprocess

    script = _tour()
    assert TOUR_PG_URL in script
    readme = (ROOT / "README.md").read_text()
    assert "ledger projections run --once" in script  # the one-shot forms of what runs on
    assert "`ledger scheduler --once`" in readme
    assert "ledger bench --quick" in script
    assert '`eval "$(_LEDGER_COMPLETE=bash_source ledger)"`' in readme  # shell completion
    clone = tmp_path / "clone"
    clone.mkdir()
    _fresh_clone(clone)
    environment = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    done = subprocess.run(["bash", "-e", "-x", "-c", script.replace(TOUR_PG_URL, tour_postgres)],
                          cwd=clone, capture_output=True, text=True, timeout=240,
                          env=environment, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    assert "reconciled: no difference" in done.stdout
    assert ": no break" in done.stdout  # ledger verify
