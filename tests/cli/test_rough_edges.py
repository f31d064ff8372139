"""Issue 13, point 7: the command line's rough edges, through the installed `ledger`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from cli_support import LEDGER, env, error_line, ledger, market, store_with_alice, write_feed


def test_db_is_accepted_after_the_subcommand_and_from_the_environment(tmp_path: Path) -> None:
    url = store_with_alice(tmp_path, "elsewhere.db")
    after = ledger("state", "alice", "--db", url, "--json", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["balances"] == {"USDT": "10000"}
    equals = ledger("state", "alice", f"--db={url}", "--json", cwd=tmp_path)
    assert json.loads(equals.stdout)["account"] == "alice"
    from_env = ledger("state", "alice", "--json", cwd=tmp_path, LEDGER_DATABASE_URL=url)
    assert json.loads(from_env.stdout)["account"] == "alice"
    # The later --db wins, as with any click option: the first names a missing store.
    later = ledger("--db", "sqlite:///missing.db", "verify", "--db", url, cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    assert not (tmp_path / "missing.db").exists()


def test_run_dash_reads_standard_input_and_prints_the_counts_on_stderr(tmp_path: Path) -> None:
    feed = "".join(json.dumps(c) + "\n" for c in market())
    first = ledger("run", "-", cwd=tmp_path, stdin=feed)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert json.loads(first.stderr.splitlines()[-1]) == {
        "applied": 6, "acknowledged": 0, "rejected": 0}
    again = ledger("run", "-", cwd=tmp_path, stdin=feed)  # the same prices: acknowledged
    assert json.loads(again.stderr.splitlines()[-1]) == {
        "applied": 0, "acknowledged": 6, "rejected": 0}


def test_a_json_error_names_the_feeds_physical_line_only(tmp_path: Path) -> None:
    """21 good lines (6 of reference data, 15 blank), then line 22 cut short."""
    lines = [json.dumps(c) for c in market()] + [""] * 15
    lines.append('{"type":"open_account","at":"2025-03-01T01:00:00Z","account":"bob"')
    (tmp_path / "feed.jsonl").write_text("\n".join(lines) + "\n")
    done = ledger("run", "feed.jsonl", cwd=tmp_path)
    assert done.returncode == 1
    rejection = json.loads(done.stderr.splitlines()[0])
    assert rejection["line"] == 22
    assert rejection["message"] == (
        "not a JSON object: Expecting ',' delimiter at column 67 of line 22")


def test_state_before_the_account_was_opened_says_when_it_was(tmp_path: Path) -> None:
    url = store_with_alice(tmp_path)  # alice opened at 2025-03-01T01:00:00Z
    done = ledger("--db", url, "state", "alice", "--at", "2025-03-01T00:30:00Z", cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done.stderr) == {
        "error": "unknown_account",
        "message": "account 'alice' did not exist yet at 2025-03-01T00:30:00Z: it was opened "
                   "at 2025-03-01T01:00:00Z"}
    never = ledger("--db", url, "state", "carol", "--at", "2025-03-01T00:30:00Z", cwd=tmp_path)
    assert error_line(never.stderr) == {"error": "unknown_account",
                                        "message": "unknown account 'carol'"}


def test_migrate_to_an_unknown_revision_is_a_usage_error(tmp_path: Path) -> None:
    done = ledger("--db", "sqlite:///new.db", "migrate", "--revision", "bogus", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "Invalid value for --revision: Can't locate revision identified by 'bogus'" in (
        done.stderr)
    assert not (tmp_path / "new.db").exists()


def test_usage_errors_for_contradictory_arguments(tmp_path: Path) -> None:
    url = store_with_alice(tmp_path)
    both = ledger("--db", url, "state", "alice", "--all", cwd=tmp_path)
    assert both.returncode == 2
    assert "give an ACCOUNT or --all, not both (got 'alice' and --all)" in both.stderr
    window = ledger("--db", url, "events", "alice", "--since", "2025-03-02T00:00:00Z",
                    "--until", "2025-03-01T00:00:00Z", cwd=tmp_path)
    assert window.returncode == 2
    assert ("--since 2025-03-02T00:00:00Z is later than --until 2025-03-01T00:00:00Z"
            in window.stderr)
    assert window.stdout == ""


def test_state_all_prints_one_row_per_account_and_details_on_request(tmp_path: Path) -> None:
    names = ["alice", "bob", "carol"]
    feed = market() + [
        {"type": "open_account", "at": "2025-03-01T01:00:00Z", "account": name,
         "mode": "single_asset"} for name in names]
    write_feed(tmp_path / "feed.jsonl", feed)
    assert ledger("run", "feed.jsonl", cwd=tmp_path).returncode == 0
    summary = ledger("state", "--all", cwd=tmp_path).stdout
    rows = [line for line in summary.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == names
    assert "3 accounts as of 2025-03-01T01:00:00Z (details: --details)" in summary
    details = ledger("state", "--all", "--details", cwd=tmp_path).stdout
    assert details.count("max withdrawable") == 3  # each account's full balance table


def test_projections_run_says_where_it_is_while_it_follows(tmp_path: Path) -> None:
    url = store_with_alice(tmp_path)
    process = subprocess.Popen(
        [str(LEDGER), "--db", url, "projections", "run", "--report-seconds", "0.2"],
        cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=env())
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first == "following the log from position 0 (Ctrl-C stops)\n"
        deadline = time.monotonic() + 60
        line = process.stderr.readline()
        while "position 0," in line and time.monotonic() < deadline:
            line = process.stderr.readline()  # until the first page is applied
        # Every notification of the log is applied in the first page: position = head.
        head = json.loads(ledger("--db", url, "projections", "status", "--json",
                                 cwd=tmp_path).stdout)["head"]
        assert line == f"projections: at position {head}, applied {head} since start\n"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_help_mentions_shell_completion_and_it_works(tmp_path: Path) -> None:
    assert '_LEDGER_COMPLETE=bash_source ledger' in ledger("--help", cwd=tmp_path).stdout
    script = subprocess.run([str(LEDGER)], cwd=tmp_path, capture_output=True, text=True,
                            env=env(_LEDGER_COMPLETE="bash_source"), check=False)
    assert script.returncode == 0
    assert "complete -o nosort -F _ledger_completion ledger" in script.stdout
