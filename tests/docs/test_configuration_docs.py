"""docs/configuration.md names every option of every command (walking the click tree)."""

from __future__ import annotations

from pathlib import Path

from ledger.cli import main
from ledger.config import name_envvars, option_key, settable, walk

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
FIX = "run `python -m ledger.config --write docs/configuration.md`"


def sections() -> dict[str, str]:
    """The page's text under each `### \\`ledger …\\`` heading."""
    found: dict[str, str] = {}
    parts = PAGE.read_text(encoding="utf-8").split("\n### `")
    for part in parts[1:]:
        title, _, body = part.partition("`")
        found[title] = body
    return found


def test_every_option_of_every_command_is_documented() -> None:
    name_envvars(main)
    page = sections()
    missing = []
    commands = 0
    for path, command in walk(main):
        options = settable(command)
        if not options:
            continue
        commands += 1
        title = " ".join(("ledger", *path))
        body = page.get(title)
        if body is None:
            missing.append(f"{title}: no section")
            continue
        for option in options:
            for text in (option.opts[0], f"`{option.envvar}`", f"`{option_key(option)}`"):
                if text not in body:
                    missing.append(f"{title} {option.opts[0]}: {text} not in its section")
    assert commands >= 10  # the walk reached the subcommands
    assert not missing, f"{FIX}:\n" + "\n".join(missing)


def test_the_environment_only_settings_are_documented() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for name in ("LEDGER_SEAL_KEY", "LEDGER_CONFIG", "LEDGER_DATABASE_URL"):
        assert f"`{name}`" in text
