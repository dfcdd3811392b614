"""moto, made to keep only what the embedded hub stores.

moto registers every model object it ever makes (``BaseModel.instances_tracked``: for its
dashboard, and to close S3 keys' files at a reset): every version of every DynamoDB item (two per
update), every S3 key, every stream record. None is ever let go, so a hub's memory grew with every
write it served, for good: about 8 KB per one-line input request (two copies of the instance
record). The embedded hub uses neither the dashboard nor a reset (S3 closes a key's file when the
key is deleted or replaced, which is all the hub needs); objects are no longer registered.

A table's stream, once turned off, records nothing on DynamoDB; moto went on building a record of
every write, kept for ever. The embedded hub reads no stream (its sweeper purges what expires) and
turns its table's off.
"""

from __future__ import annotations

import functools
from typing import Any

_installed = False


def install() -> None:
    """Patch moto's model base class and its tables' stream switch (once; moto is pinned)."""
    global _installed
    if _installed:
        return
    from moto.core.common_models import BaseModel
    from moto.dynamodb.models.table import Table

    def __new__(cls: type[BaseModel], *args: Any, **kwargs: Any) -> Any:
        return super(BaseModel, cls).__new__(cls)  # BaseModel's own, without the registration

    setattr(BaseModel, "__new__", __new__)  # noqa: B010 (mypy refuses assigning to a method)

    set_streams = Table.set_stream_specification

    @functools.wraps(set_streams)
    def set_stream_specification(self: Any, streams: dict[str, Any] | None) -> None:
        set_streams(self, streams)
        if not self.stream_specification.get("StreamEnabled"):
            self.stream_shard = None

    setattr(Table, "set_stream_specification", set_stream_specification)  # noqa: B010
    _installed = True
