"""Which shard an account belongs to (issue 11): one stable rule for every process.

`shard_of(account, n)` is the first 8 bytes of SHA-256 of the account name's UTF-8 bytes, read
as a big-endian unsigned integer, modulo `n`. It depends on nothing but the name and `n`, so
`ledger run --workers N`, `ledger submit --shards N` and every `ledger consume --shard I/N`
agree on it on any machine, in any Python version (no `hash()` randomisation).
"""

from __future__ import annotations

import hashlib


def shard_of(account: str, shards: int) -> int:
    """The shard (0..shards-1) that owns `account`."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.sha256(account.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards
