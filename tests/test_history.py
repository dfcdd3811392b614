"""A hub with 100,000 retained instances answers like one with ten (issue 26).

The records are written straight into moto's table (as 100,000 runs would leave them), then the
items each request reads are counted on the real boto3 client, as DynamoDB bills them: a listing
page, a start, an instance's info and a sweeper run read as many with 100,000 retained as with 10.
Times are `make bench`'s (bench/run.py --history), never asserted here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid

import pytest
from moto.dynamodb.models import dynamodb_backends

from chalicelib import aws, clock, instances, models, protocol, sequences, sweeper
from chalicelib.repository import Repository, _due_item, _instance_item, _listing_items, _to_ddb

from .helpers import py_package

JSON = {"Content-Type": "application/json"}
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def _retain_directly(settings, seq_id: str, count: int, expires_in: float = 3600) -> None:
    """``count`` ended instances of ``seq_id``, written into moto's table as runs leave them: the record,
    its listing items and its due item (expiring ``expires_in`` s from now). One record is made the
    hub's way; the rest are copies with their own id and times (serialising 100,000 takes minutes)."""
    table = dynamodb_backends["123456789012"]["us-east-1"].get_table(settings.table)
    now = clock.now()
    expires = int(now + expires_in)
    model = models.Instance(id="model", sequence_id=seq_id, status=protocol.COMPLETED, created=now, args=[0])
    record = _to_ddb({**_instance_item(model), "ended": now, "exitcode": 0, "reason": models.REASON_COMPLETED,
                      "expires_at": expires})
    for n in range(count):
        inst_id, created = f"old-{uuid.uuid4()}", now - 7200 + n * 0.001
        table.put_item({**record, "pk": {"S": f"inst#{inst_id}"}, "id": {"S": inst_id},
                        "created": {"N": repr(created)}, "args": {"S": f"[{n}]"}})
        for item in (*_listing_items(inst_id, seq_id, created, expires), _due_item(inst_id, expires)):
            table.put_item({k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in item.items()})
    Repository(settings.table)._count("instances", count)



def test_listing_start_info_and_a_sweep_read_the_same_with_a_hundred_thousand_retained(settings, api, calls,
                                                                                     not_invoked):
    # Retained for a day: what the test starts must not expire while 100,000 records are written.
    settings = dataclasses.replace(settings, retention_seconds=86400)
    seq_id = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]

    def measure() -> dict:
        _retain_directly(settings, seq_id, 3, expires_in=-1)  # expired a moment ago: the sweeper's work
        newest = instances.list_page(settings, limit=20).items[0].id
        return {
            "listing page": calls.of(lambda: api.http.get("/api/v1/instances?limit=10")),
            "a sequence's page": calls.of(lambda: api.http.get(f"/api/v1/sequence/{seq_id}/instances?limit=10")),
            "sequences": calls.of(lambda: api.http.get("/api/v1/sequences?limit=10")),
            "start": calls.of(lambda: instances.request_kill(settings, instances.start(settings, seq_id, {})["id"])),
            "info": calls.of(lambda: instances.info(settings, newest)),
            "sweep": calls.of(lambda: sweeper.sweep(settings)),
        }

    _retain_directly(settings, seq_id, 10)
    few = measure()
    _retain_directly(settings, seq_id, 100_000 - 10)
    many = measure()
    assert many == few  # every request: the same calls, the same items read
    assert few["sweep"][1] < 20  # what was due, not what is retained
    resp = api.http.get("/api/v1/instances?limit=1")
    assert int(resp.headers["X-Retained-Count"]) == 100_000 + 2  # counted as they come and go, never scanned


@pytest.fixture
def uncapped(hub_env, monkeypatch):
    """Settings that let these tests start hundreds of instances and leave them starting."""
    from chalicelib import config

    monkeypatch.setenv("SEQHUB_MAX_RUNNING", "1000")
    monkeypatch.setenv("SEQHUB_MAX_RUNNING_PER_SEQUENCE", "1000")
    return config.load()


def test_pages_follow_each_other_newest_first_and_a_plain_get_is_the_first_page(uncapped, api, not_invoked):
    settings = uncapped
    seq_id = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]
    other = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]
    started = [instances.start(settings, seq_id if n % 3 else other, {})["id"] for n in range(250)]
    plain = api.http.get("/api/v1/instances")
    assert plain.status_code == 200 and len(json.loads(plain.body)) == 100  # Scramjet's clients: the newest 100
    seen, cursor = [], ""
    while True:
        resp = api.http.get(f"/api/v1/instances?limit=70&cursor={cursor}")
        seen += [i["id"] for i in json.loads(resp.body)]
        cursor = resp.headers["X-Next-Cursor"]
        if not cursor:
            break
    assert seen == list(reversed(started))
    mine = []
    cursor = ""
    while True:
        resp = api.http.get(f"/api/v1/sequence/{other}/instances?limit=30&cursor={cursor}")
        mine += json.loads(resp.body)
        cursor = resp.headers["X-Next-Cursor"]
        if not cursor:
            break
    assert mine == [i for n, i in reversed(list(enumerate(started))) if n % 3 == 0]
    live = json.loads(api.http.get(f"/api/v1/instances?live=true&sequence={other}").body)
    assert {i["id"] for i in live} == set(mine)  # all still starting
    assert json.loads(api.http.get("/api/v1/instances?status=completed").body) == []
    for bad in ("limit=0", "limit=201", "limit=x", "cursor=nope", "status=gone", "live=maybe", "sequence=a%0A"):
        resp = api.http.get(f"/api/v1/instances?{bad}")
        assert resp.status_code == 400 and "error" in json.loads(resp.body), bad
    listed = json.loads(api.http.get("/api/v1/sequences").body)
    assert [s["id"] for s in listed] == [other, seq_id]  # newest first, each with its live instances
    assert len(listed[0]["instances"]) == len(mine)


def test_an_unchanged_listing_answers_304(api, settings, not_invoked):
    first = api.http.get("/api/v1/instances")
    again = api.http.get("/api/v1/instances", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.body == b""
    seq_id = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]
    instances.start(settings, seq_id, {})
    changed = api.http.get("/api/v1/instances", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and len(json.loads(changed.body)) == 1


def test_the_largest_listing_page_fits_a_lambda_response_as_api_gateway_sends_it(uncapped, api, not_invoked):
    """200 instances, each with args and appConfig just inline (4 KiB each), and some with start data
    stored apart: the page, base64 as API Gateway's binary responses are, stays under 6 MB."""
    settings = uncapped
    seq_id = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]
    inline = {"args": ["x" * 4000], "appConfig": {"k": "y" * 3990}}
    for n in range(200):
        body = inline if n % 10 else {"args": ["z" * 200_000], "appConfig": {"k": "w" * 200_000}}
        instances.start(settings, seq_id, body)
    resp = api.http.get("/api/v1/instances?limit=200")
    assert resp.status_code == 200 and len(json.loads(resp.body)) == 200
    assert len(base64.b64encode(resp.body)) < LAMBDA_RESPONSE_LIMIT


def test_an_expired_instance_leaves_every_listing_at_once(settings, api, not_invoked, monkeypatch):
    seq_id = sequences.create(settings, py_package("def run(context, input):\n    pass\n"))["id"]
    kept = instances.start(settings, seq_id, {})["id"]
    gone = instances.start(settings, seq_id, {})["id"]
    instances.request_kill(settings, gone, remove=True)  # removeImmediately: expired now
    for path in ("/api/v1/instances", f"/api/v1/sequence/{seq_id}/instances", "/api/v1/entities"):
        assert gone not in api.http.get(path).body.decode(), path
    assert kept in api.http.get("/api/v1/instances").body.decode()
    repo = Repository(settings.table)
    assert [inst for _, inst in repo.due(clock.now())] == [gone]
    assert sweeper.expire(settings) == [gone]  # purged once: its due item goes with it
    assert repo.due(clock.now()) == [] and sweeper.expire(settings) == []
    leftovers = aws.client("dynamodb").query(TableName=settings.table, KeyConditionExpression="pk = :p",
                                            ExpressionAttributeValues={":p": {"S": f"inst#{gone}"}})["Items"]
    assert leftovers == []
    listing = aws.client("dynamodb").query(TableName=settings.table, KeyConditionExpression="pk = :p",
                                          ExpressionAttributeValues={":p": {"S": "ilist"}})["Items"]
    assert [i["sk"]["S"].split("#")[1] for i in listing] == [kept]
