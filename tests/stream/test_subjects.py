"""The subject-safe encoding of names (docs/stream.md): hand-worked cases and a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.publisher import decode_token, encode_token, event_subject, reference_subject


@pytest.mark.parametrize(("name", "token"), [
    ("alice", "alice"),
    ("acct-0001_B", "acct-0001_B"),
    ("system:fees", "system~3Afees"),          # ':' is 0x3A
    ("desk.alice", "desk~2Ealice"),            # '.' would split the subject
    ("a b", "a~20b"),                          # whitespace ends a subject
    ("*>", "~2A~3E"),                          # wildcards
    ("x~y", "x~7Ey"),                          # the escape character escapes itself
    ("é", "~C3~A9"),                           # UTF-8 bytes of U+00E9
    ("", "~"),
])
def test_encoding_of_hand_worked_names(name: str, token: str) -> None:
    assert encode_token(name) == token
    assert decode_token(token) == name


def test_subjects() -> None:
    assert event_subject("ledger", "system:fees") == "ledger.events.system~3Afees"
    assert reference_subject("ledger", "instrument", "BTC.USDT") == (
        "ledger.reference.instrument.BTC~2EUSDT")


@given(st.text(max_size=140))
def test_round_trip_and_token_is_one_plain_subject_token(name: str) -> None:
    token = encode_token(name)
    assert decode_token(token) == name
    assert token and all(c.isascii() and (c.isalnum() or c in "_-~") for c in token)


@pytest.mark.parametrize("bad", ["a~", "a~4", "a~zz", "a~3a", "a.b", "a b"])
def test_decoding_refuses_what_encoding_never_makes(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_token(bad)
