"""Settings: flag > environment > TOML file > default, with real files, variables and processes.

The observable settings are real ones: the store (`--db` / LEDGER_DATABASE_URL / `db`), and
`ledger state --at` (`LEDGER_STATE_AT`, `[state] at`), whose `as_of` in the JSON says which
value won. Three stores each hold one account (alice, bob, carol), so `state --all` says which
store was read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

LEDGER = Path(sys.executable).parent / "ledger"
ROOT = Path(__file__).resolve().parents[2]
T1, T2, T3, T4 = ("2025-03-01T01:00:00Z", "2025-03-01T02:00:00Z", "2025-03-01T03:00:00Z",
                  "2025-03-01T04:00:00Z")


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    base.update(env)
    return subprocess.run([str(LEDGER), *args], cwd=cwd, capture_output=True, text=True,
                          env=base, timeout=120, check=False)


def make_store(directory: Path, account: str) -> str:
    url = f"sqlite:///{directory / (account + '.db')}"
    lines = [{"type": "asset", "at": T1, "asset": "USDT", "precision": 8},
             {"type": "open_account", "at": T1, "account": account, "mode": "single_asset"}]
    lines += [{"type": "deposit", "at": at, "id": f"d{n}", "account": account, "asset": "USDT",
               "amount": "1"} for n, at in enumerate((T2, T3, T4))]
    feed = directory / f"{account}.jsonl"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    done = run("--db", url, "run", str(feed), cwd=directory)
    assert done.returncode == 0, done.stderr
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("stores")
    return {name: make_store(directory, name) for name in ("alice", "bob", "carol")}


def accounts(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [item["account"] for item in json.loads(done.stdout)]


def as_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["as_of"]


def test_store_precedence_flag_env_file_default(stores: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "ledger.toml").write_text(f'db = "{stores["alice"]}"\n', encoding="utf-8")
    # file only (./ledger.toml found in the current directory)
    assert accounts(run("state", "--all", "--json", cwd=tmp_path)) == ["alice"]
    # env over file
    assert accounts(run("state", "--all", "--json", cwd=tmp_path,
                        LEDGER_DATABASE_URL=stores["bob"])) == ["bob"]
    # flag over env over file, before or after the command
    assert accounts(run("--db", stores["carol"], "state", "--all", "--json", cwd=tmp_path,
                        LEDGER_DATABASE_URL=stores["bob"])) == ["carol"]
    assert accounts(run("state", "--all", "--json", "--db", stores["carol"], cwd=tmp_path,
                        LEDGER_DATABASE_URL=stores["bob"])) == ["carol"]
    # no file, no env: the default store sqlite:///ledger.db, which is not there (exit 2)
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    done = run("state", "--all", "--json", cwd=elsewhere)
    assert done.returncode == 2 and "ledger.db" in done.stderr


def test_command_setting_precedence(stores: dict[str, str], tmp_path: Path) -> None:
    settings = tmp_path / "elsewhere.toml"
    settings.write_text(f'db = "{stores["alice"]}"\n\n[state]\nat = "{T2}"\n', encoding="utf-8")
    # no setting: the latest event
    assert as_of(run("--db", stores["alice"], "state", "alice", "--json", cwd=tmp_path)) == T4
    # the file, named by --config and by LEDGER_CONFIG
    assert as_of(run("--config", str(settings), "state", "alice", "--json", cwd=tmp_path)) == T2
    assert as_of(run("state", "alice", "--json", cwd=tmp_path, LEDGER_CONFIG=str(settings))) == T2
    # env over file
    assert as_of(run("--config", str(settings), "state", "alice", "--json", cwd=tmp_path,
                     LEDGER_STATE_AT=T3)) == T3
    # flag over env over file
    assert as_of(run("--config", str(settings), "state", "alice", "--json", "--at", T1,
                     cwd=tmp_path, LEDGER_STATE_AT=T3)) == T1


def test_flag_options_from_env_and_file(stores: dict[str, str], tmp_path: Path) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text('[state]\njson = true\n', encoding="utf-8")
    done = run("--db", stores["bob"], "--config", str(settings), "state", "bob", cwd=tmp_path)
    assert json.loads(done.stdout)["account"] == "bob"
    done = run("--db", stores["bob"], "state", "bob", cwd=tmp_path, LEDGER_STATE_JSON="1")
    assert json.loads(done.stdout)["account"] == "bob"
    done = run("--db", stores["bob"], "--config", str(settings), "state", "bob", cwd=tmp_path,
               LEDGER_STATE_JSON="false")
    assert not done.stdout.startswith("{")


@pytest.mark.parametrize(("text", "named"), [
    ('[state]\nwhen = "x"\n', "'when' at [state]"),
    ('dbb = "x"\n', "'dbb' at the top level"),
    ('[stat]\nat = "x"\n', "'stat' at the top level"),
    ('[projections.runn]\nonce = true\n', "'runn' at [projections]"),
])
def test_a_setting_that_names_nothing_is_refused(text: str, named: str, tmp_path: Path) -> None:
    settings = tmp_path / "bad.toml"
    settings.write_text(text, encoding="utf-8")
    done = run("--config", str(settings), "verify", cwd=tmp_path)
    assert done.returncode == 2
    assert named in done.stderr and "names no setting" in done.stderr


def test_unreadable_or_invalid_settings_file(tmp_path: Path) -> None:
    done = run("--config", str(tmp_path / "missing.toml"), "verify", cwd=tmp_path)
    assert done.returncode == 2 and "cannot read" in done.stderr
    (tmp_path / "broken.toml").write_text("db = \n", encoding="utf-8")
    done = run("--config", str(tmp_path / "broken.toml"), "verify", cwd=tmp_path)
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_version_is_the_package_version(tmp_path: Path) -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        expected = tomllib.load(handle)["project"]["version"]
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"ledger {expected}"
