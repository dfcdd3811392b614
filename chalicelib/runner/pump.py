"""Channel pumps: bytes from the child's pipes, buffered briefly, written to CloudWatch in chunks.

Memory stays flat: a channel buffers at most ``max_buffer`` bytes, and the thread reading the pipe
waits (so the child blocks on its write) until the flusher has drained it.
"""

from __future__ import annotations

import os
import threading
import time

from .. import logstore


class Channel:
    """One channel's buffer and its CloudWatch stream."""

    def __init__(self, group: str, instance_id: str, name: str, max_buffer: int = 4 * 1024 * 1024,
                 data_ready: threading.Event | None = None):
        self.group = group
        self.name = name
        self.stream = logstore.stream_name(instance_id, name)
        self.max_buffer = max_buffer
        self.events_written = 0
        self.closed = False  # the writer end is closed: no more bytes will come
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._last_ts = 0
        self._created = False
        self._in_flight = False
        self._data_ready = data_ready  # set on a first byte or a full batch: flush soon

    def append(self, data: bytes) -> None:
        with self._cond:
            while len(self._buf) >= self.max_buffer:
                self._cond.wait(0.5)
            was_empty = not self._buf
            self._buf += data
            full = len(self._buf) >= logstore.MAX_BATCH_BYTES
        if (was_empty or full) and self._data_ready is not None:
            self._data_ready.set()

    def append_last(self, data: bytes) -> None:
        """The runner's own closing line, after the host's end of the channel: then it is closed."""
        with self._cond:
            self._buf += data
            self.closed = True

    def close(self) -> None:
        with self._cond:
            self.closed = True
        if self._data_ready is not None:
            self._data_ready.set()

    def backlogged(self) -> bool:
        """A full PutLogEvents batch is waiting: writing it now costs no extra call."""
        return len(self._buf) >= logstore.MAX_BATCH_BYTES

    def finished(self) -> bool:
        """Closed, and every byte it got is written (and counted in ``events_written``)."""
        with self._cond:
            return self.closed and not self._buf and not self._in_flight

    def flush(self) -> bool:
        """Write what is buffered; True when something was written."""
        with self._cond:
            data = bytes(self._buf)
            final = self.closed
            if not data:
                return False
            chunks, keep = logstore.split_chunk(data, final)
            self._buf = bytearray(keep)
            self._in_flight = bool(chunks)
            self._cond.notify_all()
        if not chunks:
            return False
        try:
            self._write(chunks)
        finally:
            with self._cond:
                self._in_flight = False
        return True

    def _write(self, chunks: list[bytes]) -> None:
        """Write chunks in batches; on failure the unwritten ones go back to the buffer's front."""
        if not self._created:
            logstore.create_stream(self.group, self.stream)
            self._created = True
        done = 0
        try:
            # One timestamp per batch, never going backwards: ordering is what CloudWatch checks.
            for batch in logstore.batches(logstore.encode(c) for c in chunks):
                ts = max(int(time.time() * 1000), self._last_ts)
                self._last_ts = ts
                logstore.put(self.group, self.stream, batch, ts)
                self.events_written += len(batch)
                done += len(batch)
        except Exception:
            with self._cond:
                self._buf[:0] = b"".join(chunks[done:])
            raise


def pump_fd(fd: int, channel: Channel) -> threading.Thread:
    """Start a thread copying ``fd`` into ``channel`` until EOF, then closing both."""

    def run() -> None:
        try:
            while True:
                data = os.read(fd, 256 * 1024)
                if not data:
                    break
                channel.append(data)
        except OSError:
            pass
        finally:
            os.close(fd)
            channel.close()

    thread = threading.Thread(target=run, name=f"pump-{channel.name}", daemon=True)
    thread.start()
    return thread
