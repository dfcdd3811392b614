"""The CloudWatch channel encoding and batching rules (moto enforces none of these limits)."""

from __future__ import annotations

import os

from chalicelib import logstore


def test_text_is_stored_as_is_and_binary_round_trips():
    assert logstore.encode(b"hello\n") == "hello\n"
    for data in (bytes(range(256)), os.urandom(1000), "\ue000 looks like the marker".encode()):
        assert logstore.decode(logstore.encode(data)) == data


def test_split_never_cuts_a_utf8_character_and_holds_back_a_partial_tail():
    text = ("żółw " * 100_000).encode()
    chunks, keep = logstore.split_chunk(text + "ż".encode()[:1], final=False)
    assert keep == "ż".encode()[:1]
    assert b"".join(chunks) == text
    assert all(len(c) <= logstore.MAX_EVENT_BYTES for c in chunks)
    for c in chunks:
        c.decode("utf-8")  # every event is whole UTF-8
    chunks, keep = logstore.split_chunk(b"abc\xc5", final=True)
    assert keep == b"" and b"".join(chunks) == b"abc\xc5"


def test_batches_respect_size_and_count_limits():
    big = ["x" * 200_000] * 12
    for batch in logstore.batches(big):
        assert sum(len(m) + logstore.EVENT_OVERHEAD for m in batch) <= logstore.MAX_BATCH_BYTES
    assert sum(len(b) for b in logstore.batches(big)) == 12
    tiny = ["a"] * 25_000
    sizes = [len(b) for b in logstore.batches(tiny)]
    assert sizes == [10_000, 10_000, 5_000]


def test_cursor_round_trip_and_rejects_garbage():
    cursor = logstore.encode_cursor(42, "f/123")
    assert logstore.decode_cursor(cursor) == (42, "f/123")
    assert logstore.decode_cursor("") == (0, None)
    try:
        logstore.decode_cursor("!!not-a-cursor")
    except ValueError as exc:
        assert str(exc) == "invalid cursor"
    else:
        raise AssertionError("garbage cursor accepted")
