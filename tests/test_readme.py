"""The README's two set-up commands stay true: CI runs exactly the test command it gives."""

from __future__ import annotations

import re
from pathlib import Path

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
