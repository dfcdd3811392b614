"""An instance's topics: its output also appended to the topic it provides, and its input read
from the topic it requires (Scramjet's outputTopic / inputTopic, or the sequence's own declaration).

Both run in the runner, so a sequence in either language takes part the same way; the topic itself
lives in the table and the bucket (``chalicelib.topics``), so producer and consumer need not run at
the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .. import topics
from ..config import Settings
from ..errors import HubError
from ..observability import logger
from .feed import close_quietly, preamble, write_all

LogLine = Callable[[str, str], None]  # (level, message) into the instance's log
# A consumer looks at its topic's record this often while idle: what a line waits for at most. The
# runner is billed while it runs anyway; four reads a second cost ~$0.002 an hour on DynamoDB.
FIRST_LOOK_SECONDS, IDLE_LOOK_SECONDS = 0.05, 0.25


class TopicOutput:
    """Appends what the output channel writes to a topic, in the order it is written."""

    def __init__(self, settings: Settings, name: str, content_type: str, log_line: LogLine):
        self.settings = settings
        self.name = name
        self.content_type = content_type
        self.log_line = log_line
        self.failed = False

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        step = self.settings.max_input_chunk_bytes
        try:
            for start in range(0, len(data), step):
                topics.publish(self.settings, self.name, data[start:start + step], self.content_type)
        except HubError as exc:  # e.g. the topic holds another type: the output channel carries on
            self.failed = True
            self.log_line("ERROR", f"output no longer sent to topic {self.name}: {exc.message}")
        except Exception as exc:
            self.failed = True
            logger.exception("topic write failed", extra={"topic": self.name})
            self.log_line("ERROR", f"output no longer sent to topic {self.name}: {exc}")


def output_type(settings: Settings, name: str, declared: str | None, fmt: str | None) -> str:
    """The type a producer writes its topic as: declared, else the topic's own (a producer that did
    not say joins it), else what the host writes (JSON lines, or text)."""
    if declared:
        return declared
    existing = topics.get(settings, name)
    if existing is not None:
        return existing.content_type
    return "application/x-ndjson" if fmt == "ndjson" else "text/plain"


class TopicInput:
    """Feeds a topic into the instance's input pipe: the content-type preamble, then every chunk
    from where the topic's retained data begins, until the instance ends."""

    def __init__(self, settings: Settings, name: str, content_type: str | None, fd: int):
        self.settings = settings
        self.name = name
        self.content_type = content_type
        self.fd = fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"topic-in-{name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)  # a look at the topic is one short read

    def _run(self) -> None:
        cursor: str | None = None
        started = False
        try:
            pause = FIRST_LOOK_SECONDS
            while not self._stop.is_set():
                page = topics.read(self.settings, self.name, cursor, 0)
                cursor = page["cursor"] or None
                if not page["data"]:  # idle: look less often, down to IDLE_LOOK_SECONDS
                    self._stop.wait(pause)
                    pause = min(pause * 2, IDLE_LOOK_SECONDS)
                    continue
                pause = FIRST_LOOK_SECONDS
                if not started:
                    ctype = self.content_type or page["content_type"]
                    write_all(self.fd, preamble(ctype))
                    started = True
                write_all(self.fd, page["data"])
        except OSError:  # the sequence closed its input or ended
            pass
        except Exception:
            logger.exception("topic read failed", extra={"topic": self.name})
        finally:
            close_quietly(self.fd)
