"""Feeding input and stdin: the numbered chunks the API stored, written to the child in order."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import aws
from ..observability import logger

GAP_SECONDS = 10.0  # a chunk numbered but never stored (its request died) is skipped after this

# (first, last) -> the stored chunks in that range, {"n", "data"} or {"n", "s3_key"}
ChunkReader = Callable[[int, int], list[dict[str, Any]]]


class InOrder:
    """Numbered items (input chunks, events) handed on strictly in order. One numbered but not yet
    stored (its request is between its two writes) is waited for, and skipped after GAP_SECONDS."""

    def __init__(self, name: str):
        self.name = name
        self.next = 1
        self._gap_since: float | None = None

    def take(self, numbered: int, read: Callable[[int, int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        if numbered < self.next:
            return []
        found = {item["n"]: item for item in read(self.next, numbered)}
        out = []
        while self.next <= numbered:
            item = found.get(self.next)
            if item is None:
                if self._gap_since is None:
                    self._gap_since = time.monotonic()
                if time.monotonic() - self._gap_since < GAP_SECONDS:
                    break
                logger.warning("numbered but never stored; skipped", extra={"stream": self.name, "n": self.next})
            else:
                out.append(item)
            self._gap_since = None
            self.next += 1
        return out


class Feeder:
    """Writes chunks to a pipe strictly in their numbered order; closes it at the stream's end."""

    def __init__(self, bucket: str, fd: int, name: str, preamble: bool, read_chunks: ChunkReader):
        self.bucket = bucket
        self.fd = fd
        self.name = name
        self.preamble = preamble  # the input channel starts with STH's Content-Type preamble
        self.read_chunks = read_chunks
        self.order = InOrder(name)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()  # (preamble|bytes|key|end, its value)
        self._closed = False
        self._fed = False
        self._keep_fd = False
        self.written = 0  # chunk bytes the child has taken from the pipe (the preamble not counted)
        self._thread = threading.Thread(target=self._run, name=f"feed-{name}", daemon=True)
        self._thread.start()

    def offer(self, numbered: int, content_type: str | None, end_at: int | None) -> None:
        """``numbered`` chunks have been numbered so far; the stream ends after chunk ``end_at``."""
        if self._closed:
            return
        for chunk in self.order.take(numbered, self.read_chunks):
            self._fed = True
            if chunk["n"] == 1 and self.preamble:
                self._queue.put(("preamble", preamble(content_type or "text/plain")))
            self._queue.put(("key", chunk["s3_key"]) if "s3_key" in chunk else ("bytes", chunk["data"]))
        if end_at is not None and self.order.next > end_at:
            self.close()

    def hand_over(self) -> bool:
        """Stop feeding and leave the pipe open for another source (a topic), if nothing was fed yet."""
        if self._fed or self._closed:
            return False
        self._keep_fd = True
        self.close()
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(("end", None))

    def _run(self) -> None:
        try:
            while True:
                kind, value = self._queue.get()
                if kind == "end":
                    break
                if kind == "preamble":
                    write_all(self.fd, value)
                    continue
                if kind == "bytes":
                    self._write(value)
                    continue
                body = aws.client("s3").get_object(Bucket=self.bucket, Key=value)["Body"]
                for chunk in body.iter_chunks(64 * 1024):
                    self._write(chunk)
        except OSError:  # the child has gone or closed its end: nothing more to deliver
            pass
        finally:
            if not self._keep_fd:
                close_quietly(self.fd)

    def _write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self.written += len(data)


def preamble(content_type: str) -> bytes:
    """What STH's input channel starts with: its content type, as a header block."""
    return f"Content-Type: {content_type}\r\n\r\n".encode()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
