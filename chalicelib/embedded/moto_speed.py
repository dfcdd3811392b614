"""moto's DynamoDB, made to read only what a query asks for and to answer at JSON's speed.

moto answers every query by listing and sorting *every item of the table* (``Table.all_items``) and
then keeping those the key condition selects. DynamoDB reads the selected key range alone. On the
embedded hub every read of an instance's input chunks, events, slots or a listing page then costs
what the whole history costs: a hub with a few hundred retained instances (and their chunks)
answered a listing in seconds. This hands moto's query only the items its key condition selects
(the partition and, on the table's own key, the range), which is all it keeps of them anyway;
moto still sorts, pages and filters them as before, so what it answers is unchanged (a test
compares it with moto's own answers).

moto also turns each answer into JSON by walking botocore's model of the response, attribute by
attribute: about 2.6 ms per instance record, so a listing page of 100 took 0.26 s in moto alone.
The item operations' answers (items in DynamoDB's JSON, counts, keys) are plain data, which
``json.dumps`` writes as the model walk does (binary values in base64, nothing for None); the
other operations keep moto's serializer. A test compares the two on every item operation.

An UpdateExpression is parsed once per distinct expression, not twice per request, and a
ConditionExpression lexed once. moto's server also lists its own package directory (~150
``isdir`` calls) on every request, to ask whether the Host names a service, under the lock all its
requests share, and each handler's methods; each list is read once.

The embedded hub serves DynamoDB one request at a time (``hub.moto_server``), as do the tests'
in-process moto: the items handed to a query are never changed while it runs.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
from collections import deque
from datetime import datetime
from typing import Any

# Operations whose answers are items and plain values only (what the hub calls on its hot paths).
PLAIN_ANSWERS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                           "BatchGetItem", "BatchWriteItem"})

_installed = False


def install() -> None:
    """Patch moto's ``Table.query``, the item operations' serializer and its server's module list
    (once; moto is pinned: see pyproject.toml's local extra)."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoResult

    original = Table.query
    signature = inspect.signature(original)  # moto passes index_name by position

    @functools.wraps(original)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.range_key_attr:  # not one of ours: every table of the hub has a sort key
            return original(self, *args, **kwargs)
        selected = _selected(self, signature.bind(self, *args, **kwargs).arguments)
        self.all_items = lambda: selected
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    setattr(Table, "query", query)  # noqa: B010 (mypy refuses assigning to a method)

    serialize = DynamoResult.execute_result

    @functools.wraps(serialize)
    def execute_result(self: Any, context: Any) -> Any:
        if context.operation_model.name not in PLAIN_ANSWERS:
            return serialize(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(_plain(self.result))

    setattr(DynamoResult, "execute_result", execute_result)  # noqa: B010

    # An UpdateExpression is tokenised and parsed twice per UpdateItem (the handler checks the
    # names it uses, the backend runs it); the tree does not depend on the values, and every use
    # copies it before resolving them (moto's validators deep-copy their input), so one parse of
    # each expression serves all.
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    parse = UpdateExpressionParser.make
    setattr(UpdateExpressionParser, "make", staticmethod(functools.lru_cache(maxsize=256)(parse)))  # noqa: B010

    # A ConditionExpression is lexed twice per conditional write too, by a loop that tries six
    # patterns at every character: a sixth of an UpdateItem's time in moto. The tokens depend on
    # the text alone; each parse gets fresh copies (a bad expression still raises every time).
    from moto.dynamodb.comparisons import ConditionExpressionParser

    lex = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=256)
    def tokens(expression: str) -> tuple[Any, ...]:
        return tuple(lex(ConditionExpressionParser(expression, {}, {})))

    @functools.wraps(lex)
    def lexed(self: Any) -> deque[Any]:
        return deque(token._replace(children=[]) for token in tokens(self.condition_expression))

    setattr(ConditionExpressionParser, "_lex_condition_expression", lexed)  # noqa: B010

    # Each write's handler parses its ConditionExpression whole only to learn which names and values
    # it uses (to refuse unused ones); the backend then parses it again to evaluate it. What the
    # handler learns depends on the text and on which placeholders are given, not on their values:
    # it is learnt once for each (an expression that fails to parse fails every time, as before).
    from moto.dynamodb import responses as dynamo_responses

    make_parser = getattr(dynamo_responses, "create_condition_expression_parser")  # noqa: B009 (imported there, not exported)
    learnt: dict[tuple[Any, ...], tuple[list[str], list[str]]] = {}

    class UsesOnly:
        """The condition parser as a write's handler uses it: ``parse()``, then what it found."""

        def __init__(self, expression: str | None, names: dict[str, str] | None, values: dict[str, Any] | None):
            self._asked = (expression, names, values)
            self.expr_attr_names_found: list[str] = []
            self.expr_attr_values_found: list[str] = []

        def parse(self) -> None:
            expression, names, values = self._asked
            key = (expression, tuple(sorted((names or {}).items())), tuple(sorted(values or {})))
            found = learnt.get(key)
            if found is None:
                parser = make_parser(expression, names, values)
                parser.parse()
                found = (list(parser.expr_attr_names_found), list(parser.expr_attr_values_found))
                if len(learnt) < 1024:  # the hub's writes use a few dozen
                    learnt[key] = found
            self.expr_attr_names_found.extend(found[0])
            self.expr_attr_values_found.extend(found[1])

    setattr(dynamo_responses, "create_condition_expression_parser", UsesOnly)  # noqa: B010

    # Every request lists its handler class's methods (inspect.getmembers, ~0.1 ms) to find the
    # action's: a class's methods do not change, so each class is listed once.
    from moto.core import responses as core_responses

    listing = getattr(core_responses, "method_names_from_class")  # noqa: B009 (imported there, not exported)
    setattr(core_responses, "method_names_from_class", functools.lru_cache(maxsize=None)(listing))  # noqa: B010

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())  # the installed package's directories: fixed
    setattr(backends, "list_of_moto_modules", lambda: modules)  # noqa: B010
    _installed = True


def _plain(value: Any) -> Any:
    """``value`` as DynamoDB's JSON protocol writes it: bytes in base64, times in epoch seconds,
    absent members (None) left out."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def _selected(table: Any, named: dict[str, Any]) -> list[Any]:
    """The items the query's key condition selects, in no order: moto sorts what it is given by the
    table's full key (and the index's), so the order handed to it does not matter."""
    if named.get("index_name"):
        wanted = list(named.get("hash_key_conditions") or [])
        return [item for partition in table.items.values() for item in partition.values()
                if all(_has(item, name, value) for name, value in wanted)]
    items = list(table.items.get(named.get("hash_key"), {}).values())
    comparison, range_keys = named.get("range_comparison"), named.get("range_key_conditions") or []
    if comparison and len(range_keys) <= 1:  # a single sort-key condition, applied as moto applies it
        items = [item for item in items if item.range_key.compare(comparison, named.get("range_objs"))]
    return items


def _has(item: Any, name: str, value: Any) -> bool:
    got = item.attrs.get(name)  # absent from items the index does not hold (moto's DynamoType cannot equal None)
    return got is not None and got == value
