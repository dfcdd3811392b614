"""The API's OpenAPI 3 document, served at ``GET /api/v1/openapi.json``.

Paths and methods come from the Chalice app's own routes; this module adds only what a route
cannot say (bodies, parameters, headers, responses), keyed by route. ``build`` refuses a route
without a description and a description without a route, so the two never drift apart.
"""

from __future__ import annotations

import re
from typing import Any

from .paging import MAX_CURSOR_CHARS
from .protocol import ACTIVE, API_BASE, CONTENT_TYPES, ENGINES, FINAL, VERSION
from .repository import MAX_PAGE

BASE = API_BASE


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Id": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    "Sequence": {"type": "object", "required": ["id", "config", "instances"], "properties": {
        "id": {"type": "string"}, "name": {"type": ["string", "null"]}, "config": {"type": "object"},
        "location": {"type": "string"}, "created": {"type": "string"}, "size": {"type": "integer"},
        "sha256": {"type": "string"}, "files": {"type": ["integer", "null"]},
        "instances": {"type": "array", "items": {"type": "string"}}}},
    "Instance": {"type": "object", "required": ["id", "status", "sequence"], "properties": {
        "id": {"type": "string"}, "args": {"type": "array"}, "appConfig": {"type": "object"},
        "sequence": {"type": "object"}, "created": {"type": "string"}, "started": {"type": "string"},
        "ended": {"type": "string"}, "expires": {"type": "string"},
        "provides": {"type": "string"}, "requires": {"type": "string"},
        "engine": {"enum": list(ENGINES), "description": "what runs it: a Lambda invocation or a Fargate task"},
        "status": {"enum": [*ACTIVE, *FINAL]},
        "terminated": {"type": "object", "properties": {"exitcode": {"type": ["integer", "null"]},
                                                        "reason": {"type": ["string", "null"]}}},
        "startDataOmitted": {"type": "string"}}},
    "StartRequest": {"type": ["object", "null"], "properties": {
        "args": {"type": ["array", "null"], "description": "passed positionally to the sequence, types kept"},
        "appConfig": {"type": ["object", "null"]},
        "instanceId": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
        "outputTopic": {"type": "string", "description": "the instance's output also goes to this topic"},
        "inputTopic": {"type": "string", "description": "the instance's input comes from this topic"},
        "engine": {"enum": list(ENGINES), "description": "lambda (15 minutes at most) or fargate (hours); default: "
                   "package.json's sequenceHub.engine, else fargate for a topic consumer or a declared runSeconds "
                   "past the lambda engine's limit (where the hub has fargate), else lambda"}}},
    "Topic": {"type": "object", "required": ["contentType", "topic", "topicName"], "properties": {
        "contentType": {"type": "string"}, "localProvider": {"type": "string"}, "topic": {"type": "string"},
        "topicName": {"type": "string"}}},
    "Started": {"type": "object", "required": ["id", "message"],
                "properties": {"id": {"type": "string"}, "message": {"type": "string"}}},
    "Upload": {"type": "object", "required": ["id", "url", "method"], "properties": {
        "id": {"type": "string"}, "url": {"type": "string"}, "method": {"const": "PUT"},
        "expiresIn": {"type": "integer"}}},
}

_ID = {"type": "string", "maxLength": 64}
_TYPES = CONTENT_TYPES
_JSON_BODY: dict[str, Any] = {"content": {"application/json": {"schema": {}}}}
_CHANNEL = {
    "summary": "Read a channel from a cursor (long-polls while the instance runs)",
    "parameters": [
        {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 64},
         "description": "X-Next-Cursor of the previous page; empty for the start. Without it, the answer "
                        "waits (up to 25 s) for the channel's end and starts from the beginning."},
        {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 25}},
    ],
    "responses": {
        "200": {"description": "The channel's bytes (at most 4 MiB)", "headers": {
            "X-Next-Cursor": {"schema": {"type": "string"}},
            "X-Channel-Ended": {"schema": {"enum": ["true", "false"]}}},
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "400": _error("Bad cursor or wait"), "404": _error("No such instance (or expired)")},
}
_APPEND = {
    "summary": "Append a chunk; the first input request fixes the content type",
    "parameters": [{"name": "x-end-stream", "in": "header", "schema": {"enum": ["true", "false"]},
                    "description": "end the stream with this request (default true, as in STH)"}],
    "requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in
                                _TYPES}},
    "responses": {"200": {"description": "Stored; the stream is ended"},
                  "202": {"description": "Stored; the stream stays open"},
                  "400": _error("No content type yet, or an unsupported one"), "404": _error("No such instance"),
                  "409": _error("The instance or the stream has ended"), "413": _error("Over 1 MiB")},
}
_EVENT_WAIT = [{"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 25}}]
# Every listing: a page, newest first; X-Next-Cursor names the next one (empty: none).
_PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
         {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": MAX_CURSOR_CHARS},
          "description": "the X-Next-Cursor of the page before"}]

OPERATIONS: dict[str, dict[str, Any]] = {
    "GET /version": {"summary": "Service name and version", "responses": {"200": _json({"type": "object"})}},
    "GET /openapi.json": {"summary": "This document", "responses": {"200": _json({"type": "object"})}},
    "POST /sequence": {
        "summary": "Upload a package (tar.gz, up to ~4.5 MB; larger: /sequence/upload)",
        "requestBody": {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in
                                                      ("application/octet-stream", "application/gzip")}},
        "responses": {"200": _json(_ref("Id")), "413": _error("Too large"), "422": _error("Not a valid package")}},
    "POST /sequence/upload": {"summary": "A presigned S3 PUT for a large package",
                              "responses": {"200": _json(_ref("Upload"))}},
    "POST /sequence/{seq_id}/commit": {
        "summary": "Validate and record an uploaded package (idempotent)",
        "responses": {"200": _json(_ref("Id")), "404": _error("No such upload"), "413": _error("Too large"),
                      "422": _error("Not a valid package")}},
    "GET /sequences": {"summary": "A page of sequences, newest first, each with its live instances", "parameters": _PAGE,
                       "responses": {"200": _json({"type": "array", "items": _ref("Sequence")}),
                                     "400": _error("Bad limit or cursor")}},
    "GET /sequence/{seq_id}": {"summary": "One sequence", "responses": {
        "200": _json(_ref("Sequence")), "404": _error("No such sequence")}},
    "GET /sequence/{seq_id}/instances": {"summary": "A page of its unexpired instances' ids, newest first",
                                         "parameters": _PAGE, "responses": {
        "200": _json({"type": "array", "items": {"type": "string"}}), "400": _error("Bad limit or cursor"),
        "404": _error("No such sequence")}},
    "DELETE /sequence/{seq_id}": {
        "summary": "Delete a sequence and its package",
        "parameters": [{"name": "x-seq-kill-inst", "in": "header", "schema": {"enum": ["true", "false"]},
                        "description": "kill its running instances instead of answering 409"}],
        "responses": {"200": _json(_ref("Id")), "404": _error("No such sequence"),
                      "409": _error("Instances still running")}},
    "POST /sequence/{seq_id}/start": {
        "summary": "Start an instance",
        "requestBody": {"content": {"application/json": {"schema": _ref("StartRequest")}}},
        "responses": {"200": _json(_ref("Started")), "400": _error("Bad body"), "404": _error("No such sequence"),
                      "409": _error("instanceId taken"), "413": _error("args or appConfig over 256 KiB"),
                      "429": _error("Too many running")}},
    "GET /instances": {"summary": "A page of unexpired instances, newest first", "parameters": [
        *_PAGE, {"name": "sequence", "in": "query", "schema": {"type": "string", "maxLength": 64}},
        {"name": "status", "in": "query", "schema": {"enum": [*ACTIVE, *FINAL]}},
        {"name": "live", "in": "query", "schema": {"enum": ["true", "false"]},
         "description": "only the instances starting or running"}],
                       "responses": {"200": _json({"type": "array", "items": _ref("Instance")}),
                                     "400": _error("Bad limit, cursor, sequence, status or live")}},
    "GET /instance/{inst_id}": {"summary": "One instance", "responses": {
        "200": _json(_ref("Instance")), "404": _error("No such instance (or expired)")}},
    "GET /instance/{inst_id}/output": _CHANNEL,
    "GET /instance/{inst_id}/stdout": _CHANNEL,
    "GET /instance/{inst_id}/stderr": _CHANNEL,
    "GET /instance/{inst_id}/log": _CHANNEL,
    "POST /instance/{inst_id}/input": _APPEND,
    "POST /instance/{inst_id}/stdin": _APPEND,
    "POST /instance/{inst_id}/_kill": {"summary": "Kill; {removeImmediately: true} (or STH's [code, {...}]) "
                                                  "leaves no retention", "requestBody": _JSON_BODY, "responses": {
        "202": _json(_ref("Instance")), "400": _error("Not running"), "404": _error("No such instance")}},
    "POST /instance/{inst_id}/_stop": {
        "summary": "Stop: stop handlers, then a kill after the timeout unless kept alive",
        "requestBody": {"content": {"application/json": {"schema": {"type": ["object", "array", "null"], "properties": {
            "timeout": {"type": "integer", "minimum": 0, "maximum": 900000},
            "canCallKeepalive": {"type": "boolean"}}}}}},
        "responses": {"202": _json(_ref("Instance")), "400": _error("Not running, or a bad timeout"),
                      "404": _error("No such instance")}},
    "POST /instance/{inst_id}/_event": {
        "summary": "Send an event: STH's [5001, {eventName, message}]",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": {"200": _json({"type": "object"}), "400": _error("Bad format, or not running"),
                      "404": _error("No such instance"), "413": _error("Message over 256 KiB")}},
    "GET /instance/{inst_id}/event/{name}": {
        "summary": "The last message of an event the instance emitted (waits for one)", "parameters": _EVENT_WAIT,
        "responses": {"200": _json({}), "404": _error("No such instance, or no such event yet")}},
    "GET /instance/{inst_id}/once/{name}": {
        "summary": "The next message of an event the instance emits", "parameters": _EVENT_WAIT,
        "responses": {"200": _json({}), "404": _error("No such instance, or no event in time")}},
    "GET /instance/{inst_id}/health": {"summary": "Health as the sequence reports it", "responses": {
        "200": _json({"type": "object"}), "404": _error("No such instance, or ended")}},
    "GET /instance/{inst_id}/events/{name}": {
        "summary": "Messages of an event emitted after the cursor (a time; none: now), as JSON lines, paged",
        "parameters": [{"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 32}},
                       *_EVENT_WAIT],
        "responses": {"200": {"description": "JSON lines", "headers": {
            "X-Next-Cursor": {"schema": {"type": "string"}}, "X-Channel-Ended": {"schema": {"enum": ["true", "false"]}}},
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
            "400": _error("Bad cursor or wait"), "404": _error("No such instance")}},
    "GET /topics": {"summary": "Every topic", "responses": {"200": _json({"type": "array", "items": _ref("Topic")})}},
    "POST /topics": {
        "summary": "Create an empty topic: {\"id\": name, \"content-type\": type}",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
            "id": {"type": "string"}, "content-type": {"enum": list(_TYPES)}}}}}},
        "responses": {"200": _json({"type": "object"}), "400": _error("Bad name or type, or the topic exists")}},
    "DELETE /topics/{name}": {"summary": "Remove a topic and its data", "responses": {
        "200": _json({"type": "object"}), "400": _error("Bad name"), "404": _error("No such topic")}},
    "POST /topic/{name}": {
        "summary": "Append to a topic (made on the first write; its content type is the first writer's)",
        "requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _TYPES}},
        "responses": {"200": {"description": "Stored"}, "400": _error("Bad name or content type"),
                      "413": _error("Over 1 MiB"), "415": _error("The topic has another content type")}},
    "GET /topic/{name}": {
        "summary": "Read a topic from a cursor (none: where its retained data begins); long-polls for news",
        "parameters": [{"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]*$",
                                                                     "maxLength": 12}}, *_EVENT_WAIT],
        "responses": {"200": {"description": "The topic's bytes (at most 4 MiB)", "headers": {
            "X-Next-Cursor": {"schema": {"type": "string"}}, "X-Channel-Ended": {"schema": {"const": "false"}}},
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _TYPES}},
            "400": _error("Bad name, cursor or wait")}},
    "GET /load-check": {"summary": "Load, memory and scratch disk, in Scramjet's shape",
                        "responses": {"200": _json({"type": "object", "required": [
                            "avgLoad", "currentLoad", "memFree", "memUsed", "fsSize"]})}},
    "GET /config": {"summary": "The hub's public settings (limits, retention)",
                    "responses": {"200": _json({"type": "object"})}},
    "GET /status": {"summary": "Platform connection, in Scramjet's shape (never connected)",
                    "responses": {"200": _json({"type": "object"})}},
    "GET /entities": {"summary": "Every sequence and instance", "responses": {"200": _json({
        "type": "object", "required": ["sequences", "instances"], "properties": {
            "sequences": {"type": "array", "items": _ref("Sequence")},
            "instances": {"type": "array", "items": _ref("Instance")}}})}},
    "GET /log": {
        "summary": "The hub's own log as JSON lines, from a line number (the embedded hub; on AWS: CloudWatch)",
        "parameters": [{"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]*$",
                                                                     "maxLength": 20}}, *_EVENT_WAIT],
        "responses": {"200": {"description": "JSON lines", "headers": {"X-Next-Cursor": {"schema": {"type": "string"}}},
                              "content": {"application/octet-stream": {"schema": {"type": "string"}}}},
                      "400": _error("Bad cursor"), "404": _error("Not kept by this hub (AWS)")}},
}


def build(routes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The document for ``routes`` (Chalice's ``app.routes``): every route under the API base."""
    paths: dict[str, dict[str, Any]] = {}
    seen = set()
    for full_path, methods in routes.items():
        if not full_path.startswith(BASE + "/"):
            continue
        path = full_path[len(BASE):]
        for method in methods:
            key = f"{method} {path}"
            if key not in OPERATIONS:
                raise KeyError(f"route {key} has no OpenAPI description in chalicelib/openapi.py")
            seen.add(key)
            operation = dict(OPERATIONS[key])
            params = [{"name": name, "in": "path", "required": True, "schema": _ID}
                      for name in re.findall(r"{(\w+)}", path)]
            operation["parameters"] = params + operation.get("parameters", [])
            operation.setdefault("responses", {}).setdefault("default", _error("An error, as JSON"))
            operation["operationId"] = re.sub(r"\W+", "_", key).strip("_").lower()
            paths.setdefault(path, {})[method.lower()] = operation
    stale = set(OPERATIONS) - seen
    if stale:
        raise KeyError(f"OpenAPI descriptions without a route: {sorted(stale)}")
    return {"openapi": "3.1.0",
            "info": {"title": "Sequence Hub", "version": VERSION,
                     "description": "Run Scramjet-style sequences on AWS. Errors are always {\"error\": \"...\"}."},
            "servers": [{"url": BASE}], "paths": paths, "components": {"schemas": SCHEMAS}}
