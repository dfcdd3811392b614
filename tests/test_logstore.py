"""The CloudWatch channel encoding and batching rules (moto enforces none of these limits)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from chalicelib import channels, logstore


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
    cursor = channels.encode_cursor(42, 1234)
    assert channels.decode_cursor(cursor) == (42, 1234)
    assert channels.decode_cursor("") == (0, 0)
    forged = ["!!not-a-cursor", channels.encode_cursor(-1, 0), "x" * 10_000,
              *(base64.urlsafe_b64encode(json.dumps(v).encode()).decode() for v in
                ("str", 5, {"n": 1}, [1e400, 0], [1.5, 0], [True, 0], [0, channels.SEGMENT_BYTES + 1], [10**12, 0]))]
    for garbage in forged:
        with pytest.raises(ValueError, match="invalid cursor"):
            channels.decode_cursor(garbage)


def test_a_page_that_ends_with_a_full_segment_continues_with_the_next(settings):
    """Pages of 4 MiB over 1 MiB segments end exactly at a segment's end: the cursor must go on."""
    segments = [bytes([n]) * channels.SEGMENT_BYTES for n in range(6)]
    for n, data in enumerate(segments):
        channels.write_segment(settings.bucket, "i", "output", n, data)
    got, segment, offset, pages = b"", 0, 0, 0
    while segment < len(segments):
        cursor = channels.encode_cursor(segment, offset)
        data, segment, offset = channels.read(settings.bucket, "i", "output", *channels.decode_cursor(cursor),
                                              len(segments))
        got, pages = got + data, pages + 1
    assert got == b"".join(segments) and pages == 2
