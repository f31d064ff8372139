"""The shard rule is stable: fixed values computed by hand from SHA-256 (sha256sum)."""

import hashlib

import pytest

from ledger.application.shards import shard_of


def test_shard_is_the_first_eight_bytes_of_sha256_modulo_n() -> None:
    # printf alice | sha256sum -> 2bd806c97f0e00af...; 0x2bd806c97f0e00af = 3159282601090220207
    assert hashlib.sha256(b"alice").hexdigest().startswith("2bd806c97f0e00af")
    assert shard_of("alice", 1) == 0
    assert shard_of("alice", 2) == 3159282601090220207 % 2
    assert shard_of("alice", 7) == 3159282601090220207 % 7


def test_every_account_has_one_shard_in_range() -> None:
    names = [f"acct-{i}" for i in range(1000)]
    counts = [0, 0, 0]
    for name in names:
        counts[shard_of(name, 3)] += 1
    assert sum(counts) == 1000 and min(counts) > 250  # spread, none empty


def test_shards_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("alice", 0)
