"""The embedded hub's store says when a record changed, so its long polls look then, not on a timer.

Every write of the embedded hub's DynamoDB, the runners' as well as the API's, is made by moto in
the hub's own process. After each UpdateItem or PutItem that succeeded (an instance record's new
segments, ended channels and end; an event an instance emitted; a topic's new chunk) the record's
change count goes up and its waiters wake. Only records someone waits on are counted, so nothing
grows with history.
On AWS there is no such source and long polls keep their timer (``chalicelib.longpoll``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Hashable
from typing import Any

from .. import longpoll

_current: RecordChanges | None = None
_installed = False


class RecordChanges:
    """Change counts of the records being waited on; keys are (table, pk, sk) strings. A write
    wakes only the waiters of its own record: a hub with many followers of many busy instances
    wakes each for its instance's writes alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Hashable, int] = {}
        self._watchers: Counter[Hashable] = Counter()
        self._conditions: dict[Hashable, threading.Condition] = {}

    def watch(self, key: Hashable) -> int:
        with self._lock:
            self._watchers[key] += 1
            self._conditions.setdefault(key, threading.Condition(self._lock))
            return self._counts.setdefault(key, 0)

    def unwatch(self, key: Hashable) -> None:
        with self._lock:
            self._watchers[key] -= 1
            if self._watchers[key] <= 0:
                del self._watchers[key]
                self._counts.pop(key, None)
                self._conditions.pop(key, None)

    def changed(self, key: Hashable) -> None:
        with self._lock:
            if key in self._counts:
                self._counts[key] += 1
                self._conditions[key].notify_all()

    def wait(self, key: Hashable, seen: int, timeout: float) -> int:
        """Until ``key``'s count is not ``seen`` or ``timeout`` passed; only for a watched key."""
        with self._lock:
            condition = self._conditions.get(key)
            if condition is not None:
                condition.wait_for(lambda: self._counts.get(key, 0) != seen, timeout)
            return self._counts.get(key, 0)


def _announce(table_name: str, key: dict[str, dict[str, Any]]) -> None:
    """A write of the record ``key`` (its key attributes, as DynamoDB's wire format has them) succeeded."""
    source = _current
    if source is not None:
        source.changed((table_name, *(str(next(iter(key[name].values()))) for name in sorted(key))))


def install() -> RecordChanges:
    """Announce moto's UpdateItems and PutItems to a new change source, which long polls then wait on."""
    global _current, _installed
    if not _installed:
        from moto.dynamodb.models import DynamoDBBackend

        original_update, original_put = DynamoDBBackend.update_item, DynamoDBBackend.put_item

        def update_item(self: Any, table_name: str, key: dict[str, dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            item = original_update(self, table_name, key, *args, **kwargs)
            _announce(table_name, key)
            return item

        def put_item(self: Any, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            item = original_put(self, table_name, item_attrs, *args, **kwargs)
            table = self.get_table(table_name)
            _announce(table_name, {name: item_attrs[name] for name in (table.hash_key_attr, table.range_key_attr)
                                   if name})
            return item

        DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
        DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
        _installed = True
    _current = RecordChanges()
    longpoll.use_changes(_current)
    return _current


def uninstall() -> None:
    global _current
    _current = None
    longpoll.use_changes(None)
