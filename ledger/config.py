"""Settings of the `ledger` command: flag > environment > TOML file > default.

docs/configuration.md lists them all (its tables: `python -m ledger.config`).

Every option of every command can be given three ways besides its default:

- a flag: `ledger publish --stream OTHER`;
- an environment variable `LEDGER_<COMMAND>_<OPTION>`: the command's path and the option's long
  name, upper case, `-` written `_` (`LEDGER_PUBLISH_STREAM`, `LEDGER_PROJECTIONS_RUN_PAGE_SIZE`);
  the group's own `--db` keeps its historical name `LEDGER_DATABASE_URL`, `bench --postgres`
  its `LEDGER_BENCH_POSTGRES_URL`;
- a TOML file: `--config FILE`, else `$LEDGER_CONFIG`, else `ledger.toml` in the current directory
  when there is one. Top-level keys set the group's options (`db = "postgresql://…"`), a table per
  command sets that command's (`[publish]`, `[projections.run]`); keys are the long option names
  (`page-size` or `page_size`). A key or table that names no option is an error.

Click does the precedence: a value on the command line wins over its environment variable, which
wins over `ctx.default_map` (the file), which wins over the default. This module names the
environment variables (`name_envvars`) and turns the file into a default map (`load`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

PREFIX = "LEDGER"
DEFAULT_FILE = "ledger.toml"
CONFIG_ENVVAR = "LEDGER_CONFIG"


def option_key(option: click.Option) -> str:
    """The option's name in a TOML file: its first long flag without dashes, `-` → `_`
    (`--page-size` → `page_size`; `--progress/--no-progress` → `progress`)."""
    for flag in option.opts:
        if flag.startswith("--"):
            return flag[2:].replace("-", "_")
    return str(option.name)


def walk(command: click.Command, path: tuple[str, ...] = ()
         ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree with its path below the root (the root's path is ())."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], (*path, name))


def settable(command: click.Command) -> list[click.Option]:
    """The options a setting can give: every option but --help, --version and --config."""
    return [param for param in command.params
            if isinstance(param, click.Option) and param.expose_value
            and option_key(param) not in ("help", "version", "config")]


def envvar_name(path: tuple[str, ...], option: click.Option) -> str:
    return "_".join((PREFIX, *(part.replace("-", "_") for part in path),
                     option_key(option))).upper()


def name_envvars(root: click.Command) -> None:
    """Give every option without an environment variable its `LEDGER_<COMMAND>_<OPTION>`."""
    for path, command in walk(root):
        for option in settable(command):
            if option.envvar is None:
                option.envvar = envvar_name(path, option)


def find_file(given: str | None) -> Path | None:
    """The settings file: `given` (--config or $LEDGER_CONFIG), else ./ledger.toml if present."""
    if given:
        return Path(given)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load(path: Path, root: click.Command) -> dict[str, Any]:
    """Read a settings file into click's default map (keys: option names; tables: commands)."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror}",
                                 param_hint="'--config'") from None
    except tomllib.TOMLDecodeError as error:
        raise click.BadParameter(f"{path} is not valid TOML: {error}",
                                 param_hint="'--config'") from None
    return _defaults(data, root, (), path)


def _defaults(data: dict[str, Any], command: click.Command, path: tuple[str, ...],
              source: Path) -> dict[str, Any]:
    options = {option_key(option): option for option in settable(command)}
    commands = command.commands if isinstance(command, click.Group) else {}
    where = f"[{'.'.join(path)}]" if path else "the top level"
    found: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in options:
            found[str(options[name].name)] = value
        elif key in commands and isinstance(value, dict):
            found[key] = _defaults(value, commands[key], (*path, key), source)
        else:
            allowed = sorted(options) + sorted(f"[{'.'.join((*path, c))}]" for c in commands)
            raise click.BadParameter(
                f"{source}: {key!r} at {where} names no setting; allowed: "
                + ", ".join(allowed), param_hint="'--config'")
    return found


def config_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The group's eager `--config` option: name the environment variables, load the file."""
    root = ctx.find_root().command
    name_envvars(root)
    path = find_file(value)
    if path is not None:
        ctx.default_map = load(path, root)


def config_option(function: Any) -> Any:
    return click.option(
        "--config", type=click.Path(dir_okay=False), envvar=CONFIG_ENVVAR, is_eager=True,
        expose_value=False, callback=config_callback, metavar="FILE",
        help=f"TOML settings file (default: ./{DEFAULT_FILE} when present). "
             "See docs/configuration.md.")(function)


def environment_only() -> dict[str, str]:
    """Settings read from the environment only (secrets never go on a command line)."""
    return {"LEDGER_SEAL_KEY": "HMAC key of `ledger seal` / `ledger verify --anchor`"}



def _default(option: click.Option) -> str:
    if isinstance(option.show_default, str):
        return option.show_default
    value = option.default
    if callable(value):
        return "(computed)"
    if value is None or value == () or type(value).__name__ == "Sentinel":  # click's UNSET
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def reference(root: click.Command) -> str:
    """The settings tables of docs/configuration.md: one per command, one row per option."""
    name_envvars(root)
    out: list[str] = []
    for path, command in walk(root):
        options = settable(command)
        if not options:
            continue
        title = " ".join(("ledger", *path))
        table = f"[{'.'.join(path)}]" if path else "top level"
        out.append(f"### `{title}`\n")
        out.append(f"TOML: {table}\n")
        out.append("| flag | environment variable | TOML key | default | meaning |")
        out.append("|---|---|---|---|---|")
        for option in options:
            flags = " / ".join(f"`{flag}`" for flag in (*option.opts, *option.secondary_opts)
                               if flag.startswith("--"))
            meaning = " ".join((option.help or "").split()).replace("|", "\\|")
            out.append(f"| {flags} | `{option.envvar}` | `{option_key(option)}` | "
                       f"{_default(option).replace('|', '/')} | {meaning} |")
        out.append("")
    return "\n".join(out)


BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def rewrite(page: Path, root: click.Command) -> None:
    """Replace the generated part of docs/configuration.md (between its two markers)."""
    text = page.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(f"{head}{BEGIN}\n{reference(root)}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":  # python -m ledger.config [--write docs/configuration.md]
    import importlib
    import sys

    main: click.Command = importlib.import_module("ledger.cli").main

    if sys.argv[1:2] == ["--write"]:
        rewrite(Path(sys.argv[2]), main)
    else:
        print(reference(main))
