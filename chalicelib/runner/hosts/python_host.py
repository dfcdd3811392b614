"""Python runtime host: runs ``run(context, input, *args)`` of a Scramjet Python sequence.

Started by the runner as a child process; see ``hosts/__init__.py`` for the pipe protocol. It is
self-contained (standard library plus scramjet-framework-py) because it runs in the sequence's
scrubbed environment, not in the runner's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import io
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any, NoReturn

EXIT_UNPACK_FAILED = 10  # Scramjet's SEQUENCE_UNPACK_FAILED
EXIT_INVALID_MAIN = 21
EXIT_FAILED_ON_START = 22
EXIT_FAILED_DURING_RUN = 23
EXIT_KILLED = 137
EXIT_STOPPED = 138


# The protocol's descriptors, taken out of the environment the sequence will see.
_FDS = {key[len("SEQHUB_FD_"):].lower(): int(os.environ.pop(key))
        for key in [k for k in os.environ if k.startswith("SEQHUB_FD_")]}


def _fd(name: str) -> int:
    return _FDS[name]


class Output:
    """Buffered writer of the output channel: STH text/plain (str as-is) or ndjson items.

    Fast output is batched (written at 64 KiB or by the host's flush tick); an item that comes after
    a quiet tick is written at once, so output that trickles reaches readers without waiting a tick."""

    def __init__(self, fd: int, ndjson: bool = False):
        # Text goes through the C encoder, bytes straight to its buffer, once the text before them
        # is there (a switch from text to bytes writes out what is buffered: output that alternates
        # is correct, if slower; a stream of either kind is batched).
        self._file = io.TextIOWrapper(open(fd, "wb", buffering=64 * 1024, closefd=True), encoding="utf-8",
                                      errors="strict", newline="")
        self.ndjson = ndjson
        self._quiet = True  # nothing was written since the last tick (or ever)
        self._written = False  # something was written since the last tick
        self._text = False  # text was written since the last bytes

    def write(self, item: Any) -> None:
        if item is None:
            return
        if not self.ndjson and isinstance(item, (bytes, bytearray, memoryview)):
            if self._text:  # the text before it goes first
                self._file.flush()
                self._text = False
            self._file.buffer.write(bytes(item))
        else:
            self._file.write(item if isinstance(item, str) and not self.ndjson else json.dumps(item) + "\n")
            self._text = True
        self._wrote()

    async def write_all(self, items: AsyncIterator[Any]) -> None:
        """Write every item of ``items``. A text output's str items, what most sequences yield, go
        to the encoder without a Python call of their own: at 1,000,000 items that is 150 ms of the
        host's time less (bench/RESULTS.md)."""
        if self.ndjson:
            async for item in items:
                self.write(item)
            return
        # Per str item only the write and a look at _quiet: _text is kept in a local while only this
        # loop changes it, and _written is set by _wrote() at the first item after a quiet tick
        # alone (so a burst seems quiet to every other tick, whose next item is then written at
        # once: one write more each 0.1 s, against 40 ns an item).
        write_text = self._file.write
        text = self._text
        async for item in items:
            if type(item) is str:
                write_text(item)
                if not text:
                    self._text = text = True
                if self._quiet:  # the first item after a quiet tick: at once, as write() does
                    self._wrote()
            else:
                self.write(item)
                text = self._text

    def _wrote(self) -> None:
        if self._quiet:
            self._quiet = False
            self._file.flush()
        self._written = True

    def flush(self) -> None:
        self._file.flush()

    def tick(self) -> None:
        """The host's flush tick: write what is buffered; a tick that finds nothing new is quiet."""
        self._quiet = not self._written
        self._written = False
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class JsonLines:
    def __init__(self, fd: int):
        self._file = open(fd, "w", buffering=1, encoding="utf-8", closefd=True)

    def send(self, obj: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(obj, default=str) + "\n")
        except (BrokenPipeError, ValueError):
            pass


class LogHandler(logging.Handler):
    LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}

    def __init__(self, sink: JsonLines):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.send({"ts": int(record.created * 1000),
                        "level": self.LEVELS.get(record.levelname, record.levelname),
                        "from": "Sequence", "msg": record.getMessage()})


class AppContext:
    """What a sequence receives as ``context`` (the STH Python AppContext API)."""

    def __init__(self, config: dict[str, Any], events: JsonLines, logger: logging.Logger):
        self.config = config
        self.logger = logger
        self._events = events
        self._handlers: dict[str, list[Callable[[Any], Any]]] = {}
        self._early: dict[str, list[Any]] = {}  # events that came before any handler for them: delivered on registration
        self._stop_handlers: list[Callable[[float, bool], Any]] = []
        self._health_check: Callable[[], Any] = lambda: {"healthy": True}
        self.keep_alive_requested = False

    def set_stop_handler(self, handler: Callable[[float, bool], Any], *_: Any) -> None:
        """Add a stop handler (Scramjet's runner keeps every one given, and calls each in turn)."""
        self._stop_handlers.append(handler)

    def set_health_check(self, check: Callable[[], Any]) -> None:
        self._health_check = check

    def on(self, event_name: str, callback: Callable[[Any], Any]) -> None:
        self._handlers.setdefault(event_name, []).append(callback)
        for message in self._early.pop(event_name, []):
            asyncio.ensure_future(self.dispatch(event_name, message))

    def emit(self, event_name: str, message: Any = "") -> None:
        self._events.send({"type": "event", "name": event_name, "message": message})

    async def keep_alive(self, timeout: float = 0) -> None:
        self.keep_alive_requested = True
        self._events.send({"type": "keepalive", "timeout": timeout})
        if timeout:
            await asyncio.sleep(timeout)

    # -- used by the host ---------------------------------------------------------------------
    def health(self) -> dict[str, bool]:
        try:
            result = self._health_check()
            return {"healthy": bool(result.get("healthy", True))} if isinstance(result, dict) \
                else {"healthy": bool(result)}
        except Exception:  # a broken health check means unhealthy, not a dead host
            return {"healthy": False}

    async def dispatch(self, name: str, message: Any) -> None:
        if name not in self._handlers:
            self._early.setdefault(name, []).append(message)
            return
        for callback in self._handlers.get(name, []):
            result = callback(message)
            if inspect.isawaitable(result):
                await result

    async def run_stop_handlers(self, timeout_s: float, can_keep_alive: bool) -> None:
        # A keep-alive counts for the stop it answers only, as in Scramjet's runner.
        self.keep_alive_requested = False
        for handler in self._stop_handlers:
            result = handler(timeout_s, can_keep_alive)
            if inspect.isawaitable(result):
                await result


async def _input_items(reader: asyncio.StreamReader) -> AsyncIterator[Any]:
    """STH input decoding: text/plain gives lines (with "\\n"), octet-stream gives ≤8192-byte chunks."""
    try:
        preamble = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:  # the input ended before any byte of it came: no items
        return
    content_type = preamble.decode("latin-1").split(":", 1)[1].strip().lower()
    if content_type == "text/plain":
        async for line in reader:
            yield line.decode("utf-8")
    elif content_type == "application/octet-stream":
        while chunk := await reader.read(io.DEFAULT_BUFFER_SIZE):
            yield chunk
    elif content_type in ("application/x-ndjson", "text/x-ndjson"):
        number = 0
        async for line in reader:
            number += 1
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"input line {number} is not JSON ({exc}): {line[:200]!r}") from None
                yield item
    else:
        raise TypeError(f"Unsupported input type {content_type}")


async def _pipe_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader


class Host:
    def __init__(self, start: dict[str, Any]):
        self.start = start
        self.events = JsonLines(_fd("events"))
        logger = logging.getLogger("Sequence")
        logger.setLevel(logging.DEBUG)
        self.log_sink = JsonLines(_fd("log"))
        logger.addHandler(LogHandler(self.log_sink))
        logger.propagate = False
        logger.warn = logger.warning  # type: ignore[method-assign]  # Scramjet's sequences call warn
        self.logger = logger
        self.context = AppContext(start.get("config") or {}, self.events, logger)
        self.output: Output | None = None

    def load(self) -> ModuleType:
        path = os.path.abspath(self.start["main"])
        seq_dir = os.getcwd()
        sys.path[:0] = [seq_dir, os.path.join(seq_dir, "__pypackages__")]
        if not os.path.isfile(path):
            self.logger.error("Sequence entrypoint path %s is invalid", self.start["main"])
            sys.exit(EXIT_INVALID_MAIN)
        try:
            spec = importlib.util.spec_from_file_location("sequence", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules["sequence"] = module
            spec.loader.exec_module(module)
            if not callable(getattr(module, "run", None)):
                raise AttributeError("the sequence module defines no run(context, input, *args)")
        except Exception:
            traceback.print_exc()
            sys.exit(EXIT_FAILED_ON_START)
        return module

    async def control_loop(self) -> None:
        reader = await _pipe_reader(_fd("control"))
        async for line in reader:
            msg = json.loads(line)
            kind = msg.get("type")
            if kind == "event":
                asyncio.ensure_future(self.context.dispatch(msg["name"], msg.get("message")))
            elif kind == "kill":
                self.finish(EXIT_KILLED)
            elif kind == "stop":
                asyncio.ensure_future(self.stop(msg))

    async def stop(self, msg: dict[str, Any]) -> None:
        timeout_s = (msg.get("timeout") or 0) / 1000
        can_keep_alive = bool(msg.get("canCallKeepalive"))
        try:
            await self.context.run_stop_handlers(timeout_s, can_keep_alive)
        except Exception:
            traceback.print_exc()
        if not (can_keep_alive and self.context.keep_alive_requested):
            self.finish(EXIT_STOPPED)

    async def health_loop(self) -> None:
        while True:
            self.events.send({"type": "health", **self.context.health()})
            await asyncio.sleep(1)

    def finish(self, code: int) -> NoReturn:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self.output is not None:
            try:
                self.output.flush()
            except (BrokenPipeError, ValueError):
                pass
        os._exit(code)

    async def failing_on_error(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The input's items; input that cannot be read (a line of JSON lines that is not JSON) ends
        the instance, errored, as Scramjet's Node runner does: scramjet's stream would keep the error
        to itself, and the sequence would wait for input that cannot come."""
        try:
            async for item in items:
                yield item
        except Exception:
            traceback.print_exc()
            self.finish(EXIT_FAILED_DURING_RUN)

    async def forward(self, result: Any, ndjson: bool) -> None:
        output = self.output = Output(_fd("output"), ndjson=ndjson)
        # Not isawaitable(): a scramjet Stream defines __await__ only to refuse it.
        if inspect.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        flusher = asyncio.ensure_future(self._flush_often(output))
        try:
            if result is None:
                return
            if isinstance(result, (str, bytes, bytearray)):
                output.write(result)
            elif hasattr(result, "__aiter__"):
                await output.write_all(result)
            elif hasattr(result, "__iter__"):
                for item in result:
                    output.write(item)
                    await asyncio.sleep(0)
            else:
                output.write(result)
        finally:
            flusher.cancel()
            output.close()

    async def _flush_often(self, output: Output) -> None:
        # Items may trickle in slowly: push what is buffered every 50 ms so readers see it.
        while True:
            await asyncio.sleep(0.05)
            output.tick()

    async def main(self) -> None:
        module = self.load()
        os.environ.pop("SEQHUB_START", None)
        asyncio.ensure_future(self.control_loop())
        asyncio.ensure_future(self.health_loop())
        input_reader = await _pipe_reader(_fd("input"))
        try:
            from scramjet.streams import Stream
        except ImportError:  # scramjet is optional for sequences that ignore their input and stdin
            input_stream: Any = _input_items(input_reader)
        else:
            input_stream = Stream.read_from(self.failing_on_error(_input_items(input_reader)))
            # As in Scramjet's runner: stdin is a Stream of decoded lines (`await sys.stdin.read()`,
            # `async for line in sys.stdin`), read on the event loop, never blocking it.
            sys.stdin = Stream.read_from(await _pipe_reader(0)).decode("utf-8")
        provides = _declared(module, "provides")
        requires = _declared(module, "requires")
        if requires.get("requires"):  # Scramjet's PANG: the input comes from this topic
            self.events.send({"type": "requires", "topic": requires["requires"],
                              "contentType": requires.get("contentType")})
        try:
            result = module.run(self.context, input_stream, *self.start.get("args", []))
            if inspect.iscoroutine(result):  # run its body up to its first wait, where it sets itself up
                result = asyncio.ensure_future(result)
                await asyncio.sleep(0)
            # What it set up as it was called (stop handlers, listeners) is in place from here on.
            self.log_sink.send({"ts": int(time.time() * 1000), "level": "DEBUG", "from": "Runner",
                                "msg": "Sequence called"})
            content_type = getattr(result, "content_type", None) or provides.get("contentType")
            ndjson = content_type in ("application/x-ndjson", "text/x-ndjson")
            if getattr(result, "requires", None) and not requires.get("requires"):
                self.events.send({"type": "requires", "topic": result.requires, "contentType": content_type})
            # Before any output: where it goes (a topic the sequence names) and what it is.
            self.events.send({"type": "output", "topic": getattr(result, "provides", None) or provides.get("provides"),
                              "contentType": content_type, "format": "ndjson" if ndjson else "text"})
            await self.forward(result, ndjson=ndjson)
        except Exception:
            traceback.print_exc()
            self.finish(EXIT_FAILED_DURING_RUN)
        self.finish(0)


def _declared(module: ModuleType, key: str) -> dict[str, Any]:
    """A module's Scramjet topic declaration: {"provides"|"requires": name, "contentType": type}."""
    value = getattr(module, key, None)
    return value if isinstance(value, dict) else {}


def await_instance() -> None:
    """A standby's host (``chalicelib.runner.standby``): loaded, wait for the runner's word that an
    instance is ours. A word other than "go" (the runner left) ends the host."""
    try:
        import scramjet.streams  # noqa: F401  what main() would import: loaded while nobody waits
    except ImportError:
        pass
    word = b""
    while chunk := os.read(_fd("go"), 16):
        word += chunk
    os.close(_fd("go"))
    if word != b"go":
        os._exit(0)


def unpack(archive: str) -> None:
    """Unpack the package into the working directory (a sandbox's ``/package``), as this uid."""
    import subprocess

    unpacked = subprocess.run(["tar", "-xzf", archive, "-C", os.getcwd(), "--no-same-owner",
                               "--delay-directory-restore"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    if unpacked.returncode != 0:
        print("Sequence unpack failed", file=sys.stderr, flush=True)
        os._exit(EXIT_UNPACK_FAILED)
    importlib.invalidate_caches()  # the package's directories did not exist when the paths were first looked at


def main() -> None:
    archive = os.environ.pop("SEQHUB_ARCHIVE", None)  # in a sandbox: the package, still packed
    if "go" in _FDS:
        await_instance()
    if archive is not None:
        unpack(archive)
    with open(os.environ["SEQHUB_START"], encoding="utf-8") as fh:
        start = json.load(fh)
    asyncio.run(Host(start).main())


if __name__ == "__main__":
    main()
