"""Tokens at rest and secrets in messages: the store keeps a token's SHA-256, never the token;
`ledger serve` and `ledger token` never print a password of the store URL."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from api_support import FEED, ledger, write_feed


def test_the_store_keeps_the_hash_and_never_the_token(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    assert ledger("--db", url, "run", str(write_feed(tmp_path / "f.jsonl", FEED[:1])),
                  cwd=tmp_path).returncode == 0
    made = ledger("--db", url, "token", "create", "--role", "service", "--name", "svc",
                  cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert len(token) == 43  # 32 random bytes in URL-safe base64, unpadded
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, role, token_sha256, revoked_at"
                                  " FROM ledger_api_tokens").fetchall()
    assert rows == [("svc", "service", hashlib.sha256(token.encode()).hexdigest(), None)]
    assert token.encode() not in db.read_bytes()
    again = ledger("--db", url, "token", "create", "--role", "service", "--name", "svc",
                   cwd=tmp_path)
    assert again.returncode == 1
    assert "exists" in again.stderr
    wrong = ledger("--db", url, "token", "create", "--role", "root", "--name", "x", cwd=tmp_path)
    assert wrong.returncode == 2  # click refuses a role outside the three
    assert ledger("--db", url, "token", "revoke", "svc", cwd=tmp_path).returncode == 0
    assert ledger("--db", url, "token", "revoke", "svc", cwd=tmp_path).returncode == 1
    listed = ledger("--db", url, "token", "list", "--json", cwd=tmp_path)
    assert '"revoked_at": "' in listed.stdout
    assert token not in listed.stdout


def test_serve_masks_the_store_password(tmp_path: Path) -> None:
    url = "postgresql://ledger:s3cret-pw@127.0.0.1:1/nothing"  # no server on port 1
    for args in (("serve", "--port", "1"), ("token", "list")):
        done = ledger("--db", url, *args, cwd=tmp_path, timeout=60)
        assert done.returncode == 2
        assert "s3cret-pw" not in done.stdout + done.stderr
        assert "store_unavailable" in done.stderr
