"""Channel pumps: bytes from the child's pipes, buffered briefly, written as S3 segments (what
readers read) and to CloudWatch Logs (where output lands), in chunks.

Memory stays flat: a channel buffers at most ``max_buffer`` bytes, and the thread reading the pipe
waits (so the child blocks on its write) until the flusher has drained it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol

from .. import channels, logstore
from ..observability import logger


class Tee(Protocol):
    def write(self, data: bytes) -> None: ...


class Channel:
    """One channel's buffer, its S3 segments and its CloudWatch stream."""

    def __init__(self, bucket: str, group: str, instance_id: str, name: str, max_buffer: int = 4 * 1024 * 1024,
                 data_ready: threading.Event | None = None, copy_to_logs: bool = True):
        self.bucket = bucket
        self.group = group
        self.instance_id = instance_id
        self.name = name
        self.stream = logstore.stream_name(instance_id, name)
        self.max_buffer = max_buffer
        self.segments_written = 0
        self.closed = False  # the writer end is closed: no more bytes will come
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._last_ts = 0
        self._created = False
        self._in_flight = False
        self._data_ready = data_ready  # set on a first byte or a full batch: flush soon
        # One flush at a time: the runner's last flush waits for one the flusher has in flight, so
        # the segment count it records is final.
        self._flushing = threading.Lock()
        self._tee: Tee | None = None  # a topic the output also goes to
        self.copy_to_logs = copy_to_logs  # the CloudWatch copy (SEQHUB_LOG_COPY)

    def tee(self, target: Tee) -> None:
        """From now on also hand every written byte to ``target`` (a topic), starting with those
        already written: whatever the order the host's announcement and its first bytes came in,
        the topic gets the whole output, in order."""
        with self._flushing:
            segment, offset = 0, 0
            while segment < self.segments_written:
                data, segment, offset = channels.read(self.bucket, self.instance_id, self.name, segment, offset,
                                                      self.segments_written)
                if not data:
                    break
                target.write(data)
            self._tee = target

    def append(self, data: bytes) -> None:
        with self._cond:
            while len(self._buf) >= self.max_buffer:
                self._cond.wait(0.5)
            was_empty = not self._buf
            self._buf += data
            full = len(self._buf) >= logstore.BATCH_DATA_BYTES
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
        return len(self._buf) >= logstore.BATCH_DATA_BYTES

    def flush_due(self) -> bool:
        """Bytes are buffered that waiting would not batch with more: the channel's first (readers
        wait for them) or its last (it is closed)."""
        return bool(self._buf) and not self._in_flight and (self.segments_written == 0 or self.closed)

    def finished(self) -> bool:
        """Closed, and every byte it got is written (and counted in ``segments_written``)."""
        with self._cond:
            return self.closed and not self._buf and not self._in_flight

    def flush(self, full_only: bool = False) -> bool:
        """Write what is buffered (``full_only``: only whole PutLogEvents batches, each one segment;
        the rest waits for the next flush); True when something was written."""
        with self._flushing:
            return self._flush(full_only)

    def _flush(self, full_only: bool = False) -> bool:
        with self._cond:
            unit = logstore.BATCH_DATA_BYTES
            size = len(self._buf) // unit * unit if full_only else len(self._buf)
            data, rest = bytes(self._buf[:size]), self._buf[size:]
            final = self.closed and not rest
            if not data:
                return False
            chunks, keep = logstore.split_chunk(data, final)
            self._buf = bytearray(keep) + rest
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
        """Write S3 segments first (readers are told only about segments that exist), then the same
        bytes to CloudWatch. Unwritten segments go back to the buffer's front on failure."""
        segments = channels.split(b"".join(chunks))
        done = 0
        try:
            for segment in segments:
                channels.write_segment(self.bucket, self.instance_id, self.name, self.segments_written, segment)
                self.segments_written += 1
                done += 1
        except Exception:
            with self._cond:
                self._buf[:0] = b"".join(segments[done:])
            raise
        if self._tee is not None:
            self._tee.write(b"".join(segments))
        if not self.copy_to_logs:
            return
        try:
            if not self._created:
                logstore.create_stream(self.group, self.stream)
                self._created = True
            # One timestamp per batch, never going backwards: ordering is what CloudWatch checks.
            for batch in logstore.batches(logstore.encode(c) for c in chunks):
                ts = max(int(time.time() * 1000), self._last_ts)
                self._last_ts = ts
                logstore.put(self.group, self.stream, batch, ts)
        except Exception:  # readers already have these bytes; a later flush writes CloudWatch again
            logger.exception("CloudWatch write failed", extra={"channel": self.name})


class Budget:
    """Bytes the channels of one instance may still take, in all (its output quota)."""

    def __init__(self, total: int):
        self.left = total
        self.exceeded = threading.Event()
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Whether ``size`` more bytes fit; once one does not, none do."""
        with self._lock:
            if self.exceeded.is_set() or size > self.left:
                self.exceeded.set()
                return False
            self.left -= size
            return True


def pump_fd(fd: int, channel: Channel, budget: Budget | None = None) -> threading.Thread:
    """Start a thread copying ``fd`` into ``channel`` until EOF, then closing both. Past the
    ``budget`` the bytes are read and not kept (the runner ends the instance, saying why)."""

    def run() -> None:
        try:
            while True:
                data = os.read(fd, 256 * 1024)
                if not data:
                    break
                if budget is None or budget.take(len(data)):
                    channel.append(data)
        except OSError:
            pass
        finally:
            os.close(fd)
            channel.close()

    thread = threading.Thread(target=run, name=f"pump-{channel.name}", daemon=True)
    thread.start()
    return thread
