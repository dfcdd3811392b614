"""Feeding input and stdin: chunks the API stored in S3, written to the child in order."""

from __future__ import annotations

import os
import queue
import threading

from .. import aws


class Feeder:
    """Writes S3 objects to a pipe in the order their keys are handed over; closes it at the end."""

    def __init__(self, bucket: str, fd: int, name: str, preamble: bool):
        self.bucket = bucket
        self.fd = fd
        self.name = name
        self.preamble = preamble  # the input channel starts with STH's Content-Type preamble
        self.delivered = 0  # keys handed to the thread so far
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"feed-{name}", daemon=True)
        self._thread.start()

    def offer(self, keys: list[str], content_type: str | None, ended: bool) -> None:
        """Hand over the keys not yet seen (``keys`` is the whole list so far)."""
        if self._closed:
            return
        new = keys[self.delivered:]
        if new and self.delivered == 0 and self.preamble:
            self._queue.put(("bytes", f"Content-Type: {content_type or 'text/plain'}\r\n\r\n".encode()))
        for key in new:
            self._queue.put(("key", key))
        self.delivered = len(keys)
        if ended:
            self._closed = True
            self._queue.put(("end", None))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(("end", None))

    def _run(self) -> None:
        s3 = aws.client("s3")
        try:
            while True:
                kind, value = self._queue.get()
                if kind == "end":
                    break
                if kind == "bytes":
                    os.write(self.fd, value)
                    continue
                body = s3.get_object(Bucket=self.bucket, Key=value)["Body"]
                for chunk in body.iter_chunks(64 * 1024):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(self.fd, view):]
        except OSError:  # the child has gone or closed its end: nothing more to deliver
            pass
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass
