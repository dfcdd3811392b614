"""Instance state at AWS's limits and against hostile users: bounded records, steady input, reads that
never write, listings and caps that read only what is live.

Cost is asserted as AWS calls and items read, counted on the real boto3 clients (what a request costs
on AWS), never as wall-clock time; `make bench` measures the times.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from chalicelib import aws, clock, instances, models, protocol, sequences, sweeper
from chalicelib.errors import TooLarge
from chalicelib.repository import Repository
from chalicelib.runner.service import run_instance

from .helpers import py_package


def _record_size(settings, inst_id: str) -> int:
    raw = aws.client("dynamodb").get_item(TableName=settings.table,
                                          Key={"pk": {"S": f"inst#{inst_id}"}, "sk": {"S": "#"}})["Item"]
    return len(json.dumps(raw))


ECHO_INPUT = ("async def run(context, input):\n"
              "    async for line in input:\n"
              "        yield line\n")


def test_five_thousand_inputs_cost_the_same_each_and_arrive_in_order(settings, calls, not_invoked):
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    lines = [f"line {n}\n".encode() for n in range(5_000)]
    costs = []
    calls.on = True
    for n, line in enumerate(lines):
        calls.reset()
        instances.append_input(settings, inst, "input", line, "text/plain", end=n == len(lines) - 1)
        costs.append((sorted(calls.ops.items()), calls.items_read))
    calls.on = False
    # The cost of one request never depends on how many came before it: the same calls for the
    # first thousand as for the last (and each one like the others).
    assert {str(c) for c in costs[1:1000]} == {str(c) for c in costs[-1000:-1]}
    assert len({str(c) for c in costs[1:-1]}) == 1
    assert _record_size(settings, inst) < 4096  # the record did not grow with its input

    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == b"".join(lines)


def test_a_thousand_events_arrive_and_the_record_stays_small(settings, not_invoked):
    source = ("import asyncio\n\n"
              "async def run(context, input):\n"
              "    seen = []\n"
              "    done = asyncio.Event()\n"
              "    def on_ping(message):\n"
              "        seen.append(message)\n"
              "        if len(seen) == 1000:\n"
              "            context.emit('count', {'n': len(seen), 'ordered': seen == list(range(1000))})\n"
              "            done.set()\n"
              "    context.on('ping', on_ping)\n"
              "    await done.wait()\n")
    inst = instances.start(settings, sequences.create(settings, py_package(source))["id"], {})["id"]
    for n in range(1000):
        instances.send_event(settings, inst, [5001, {"eventName": "ping", "message": n}])
    assert _record_size(settings, inst) < 4096
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.last_event(settings, inst, "count", 0) == (True, {"n": 1000, "ordered": True})


def test_largest_args_and_event_on_one_instance_still_complete(settings, api, not_invoked):
    limit = settings.max_start_data_bytes
    big = "x" * (limit - len('[""]'))  # args of exactly the limit, as JSON
    source = ("import asyncio\n\n"
              "async def run(context, input, big):\n"
              "    got = asyncio.get_running_loop().create_future()\n"
              "    context.on('big', lambda m: got.done() or got.set_result(m))\n"
              "    message = await got\n"
              "    yield f'{len(big)} {len(message)}'\n")
    seq_id = sequences.create(settings, py_package(source))["id"]
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers={"Content-Type": "application/json"},
                         body=json.dumps({"args": [big + "y"]}))
    assert resp.status_code == 413 and "args is" in json.loads(resp.body)["error"]
    assert Repository(settings.table).list_instances()[0] == []  # a refused start stores nothing
    inst = instances.start(settings, seq_id, {"args": [big], "appConfig": {"also": "z" * (limit - 20)}})["id"]

    largest = "m" * (settings.max_event_bytes - 2)  # a JSON string of exactly the limit
    too_large = [5001, {"eventName": "big", "message": largest + "m"}]
    with pytest.raises(TooLarge):
        instances.send_event(settings, inst, too_large)
    resp = api.http.post(f"/api/v1/instance/{inst}/_event", headers={"Content-Type": "application/json"},
                         body=json.dumps([5001, {"eventName": "big", "message": largest}]))
    assert resp.status_code == 200
    assert _record_size(settings, inst) < 4096

    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == \
        f"{len(big)} {len(largest)}".encode()
    listed = json.loads(api.http.get("/api/v1/instances").body)
    assert listed[0]["args"] == [big] and listed[0]["status"] == "completed"
    assert json.loads(api.http.get(f"/api/v1/instance/{inst}").body)["appConfig"]["also"] == "z" * (limit - 20)


def test_a_listing_carries_large_start_data_only_up_to_its_budget(settings, api, not_invoked, monkeypatch):
    monkeypatch.setattr(instances, "LISTING_START_DATA_BUDGET", 25_000)
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    ids = [instances.start(settings, seq_id, {"args": ["a" * 10_000]})["id"] for _ in range(3)]
    listed = {i["id"]: i for i in json.loads(api.http.get("/api/v1/instances").body)}
    # newest first: the budget carries the newest two
    assert [listed[i].get("args") for i in reversed(ids)] == [["a" * 10_000], ["a" * 10_000], None]
    assert "appConfig" not in listed[ids[0]] and "GET /instance/" in listed[ids[0]]["startDataOmitted"]
    assert json.loads(api.http.get(f"/api/v1/instance/{ids[0]}").body)["args"] == ["a" * 10_000]


def test_reads_never_write(settings, api, calls, not_invoked, monkeypatch):
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    ids = [instances.start(settings, seq_id, {})["id"] for _ in range(20)]
    Repository(settings.table).claim(ids[0], clock.now())
    later = clock.now() + sweeper.START_TIMEOUT_SECONDS + settings.lost_after_seconds + 1
    monkeypatch.setattr(clock, "now", lambda: later)  # every one of them now lost or never started
    calls.on = True
    for path in ("/api/v1/instances", "/api/v1/sequences", f"/api/v1/sequence/{seq_id}",
                 f"/api/v1/sequence/{seq_id}/instances", f"/api/v1/instance/{ids[0]}",
                 f"/api/v1/instance/{ids[0]}/health", f"/api/v1/instance/{ids[0]}/output?cursor=&wait=0"):
        assert api.http.get(path).status_code == 200, path
    assert calls.writes() == 0
    calls.on = False
    assert sorted(sweeper.settle(settings)) == sorted(ids)  # settling is the sweeper's job
    statuses = {i["id"]: i["terminated"]["reason"] for i in json.loads(api.http.get("/api/v1/instances").body)}
    assert statuses[ids[0]] == models.REASON_LOST and statuses[ids[1]] == models.REASON_NEVER_STARTED


def _retain(settings, seq_id: str, count: int) -> None:
    """``count`` ended, unexpired instances of ``seq_id``, as the runner leaves them."""
    repo = Repository(settings.table)
    for n in range(count):
        inst = models.Instance(id=f"old-{uuid.uuid4()}", sequence_id=seq_id, status=protocol.STARTING,
                               created=clock.now(), args=[n])
        repo.create_instance(inst)
        repo.end(inst.id, protocol.COMPLETED, 0, models.REASON_COMPLETED, clock.now(), settings.retention_seconds)


def test_a_start_costs_the_same_with_a_thousand_retained_instances_as_with_ten(settings, calls, not_invoked):
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    costs = []
    for retained in (10, 1000):
        _retain(settings, seq_id, retained - len(instances.listed(settings)))
        assert len(instances.listed(settings)) >= retained
        calls.on = True
        calls.reset()
        inst = instances.start(settings, seq_id, {})["id"]
        costs.append((dict(calls.ops), calls.items_read))
        calls.on = False
        instances.request_kill(settings, inst)  # ended: the next start sees the same live state
    assert costs[0] == costs[1]


def test_running_caps_count_only_live_instances(settings, not_invoked, monkeypatch):
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    _retain(settings, seq_id, 30)  # history does not count
    monkeypatch.setenv("SEQHUB_MAX_RUNNING_PER_SEQUENCE", "2")
    from chalicelib import config

    capped = config.load()
    first = instances.start(capped, seq_id, {})["id"]
    instances.start(capped, seq_id, {})
    with pytest.raises(Exception, match="too many instances of sequence"):
        instances.start(capped, seq_id, {})
    instances.request_kill(capped, first)  # never claimed: ends at once, and frees its place
    instances.start(capped, seq_id, {})


def test_three_hundred_simultaneous_starts_never_pass_the_caps(settings, not_invoked, monkeypatch):
    """The caps were read-then-write: 300 starts at once across 6 sequences ran 297 (cap 200), 70 of
    one sequence (cap 50). Each running instance now holds a slot item taken by a conditional put."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib import config
    from chalicelib.errors import Busy, TooMany

    seqs = [sequences.create(settings, py_package(ECHO_INPUT))["id"] for _ in range(6)]
    capped = config.load()
    assert (capped.max_running, capped.max_running_per_sequence) == (200, 50)

    def start(n: int) -> tuple[str, str]:
        seq_id = seqs[0] if n % 3 == 0 else seqs[n % 6]  # one sequence gets a third of the burst
        try:
            return seq_id, instances.start(capped, seq_id, {})["id"]
        except (TooMany, Busy) as exc:
            return seq_id, type(exc).__name__

    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(start, range(300)))
    started = [(seq, inst) for seq, inst in results if inst not in ("TooMany", "Busy")]
    per_seq = Counter(seq for seq, _ in started)
    assert len(started) <= 200 and max(per_seq.values()) <= 50, (len(started), per_seq)
    assert per_seq[seqs[0]] == 50  # the one asked for 100 times reached its cap exactly
    live = [i for i in instances.listed(capped) if i.active]
    assert len(live) == len(started)
    repo = Repository(settings.table)
    assert len(repo.slot_owners("hub")) == len(started)
    for inst in live:  # every slot goes back when its instance ends
        instances.request_kill(capped, inst.id)
    assert repo.slot_owners("hub") == {} and all(repo.slot_owners(f"seq#{s}") == {} for s in seqs)


def test_a_slot_its_owner_never_gave_back_is_taken_back_when_the_cap_is_reached(settings, not_invoked, monkeypatch):
    """A runner that died between recording its end and giving its slot back: the slot is taken
    back by the next start that finds every slot held (its owner has ended)."""
    from chalicelib import config
    from chalicelib.repository import SLOT_GRACE_SECONDS

    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    monkeypatch.setenv("SEQHUB_MAX_RUNNING", "2")
    capped = config.load()
    repo = Repository(settings.table)
    held = instances.start(capped, seq_id, {})["id"]
    ghost = instances.start(capped, seq_id, {})["id"]
    ended = repo.get_instance(ghost)
    with monkeypatch.context() as crash:
        crash.setattr(Repository, "_release_instance_slots", lambda self, item: None)
        instances.request_kill(capped, ghost)  # its end is recorded, its slot is not given back
    assert len(repo.slot_owners("hub")) == 2
    with pytest.raises(Exception, match="too many instances running"):
        instances.start(capped, seq_id, {})  # too young to be taken back: its owner may still be writing
    monkeypatch.setattr(clock, "now", lambda: ended.created + SLOT_GRACE_SECONDS + 1)
    third = instances.start(capped, seq_id, {})["id"]
    assert {s["owner"] for s in repo.slot_owners("hub").values()} == {held, third}


def test_a_broken_record_is_skipped_by_the_sweeper_and_breaks_no_listing_or_start(settings, api, not_invoked,
                                                                                  monkeypatch):
    """Real DynamoDB refuses an update that would take an item past 400 KB; so does moto. A record in
    that state (made here directly: no API path can make one) must not break anything else."""
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    victim = instances.start(settings, seq_id, {})["id"]
    healthy = instances.start(settings, seq_id, {})["id"]
    ddb = aws.client("dynamodb")
    key = {"pk": {"S": f"inst#{victim}"}, "sk": {"S": "#"}}
    for size in range(409_600, 399_000, -16):  # the largest the record can be: any further write fails
        try:
            ddb.update_item(TableName=settings.table, Key=key, UpdateExpression="SET junk = :j",
                            ExpressionAttributeValues={":j": {"S": "j" * size}})
            break
        except ClientError:
            continue
    later = clock.now() + sweeper.START_TIMEOUT_SECONDS + 1
    monkeypatch.setattr(clock, "now", lambda: later)
    assert sweeper.settle(settings) == [healthy]  # the broken one is logged and skipped
    assert api.http.get("/api/v1/instances").status_code == 200
    assert api.http.get("/api/v1/sequences").status_code == 200
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers={"Content-Type": "application/json"}, body="{}")
    assert resp.status_code == 200


def test_numbered_items_go_in_order_a_gap_is_waited_for_then_skipped(monkeypatch):
    """An input chunk or event is numbered, then stored: a reader between the two sees a gap."""
    from chalicelib.runner import feed

    order = feed.InOrder("test")
    stored = {1: {"n": 1}, 3: {"n": 3}}

    def read(first: int, last: int) -> list[dict]:
        return [stored[n] for n in range(first, last + 1) if n in stored]

    assert [i["n"] for i in order.take(3, read)] == [1]  # 2 is numbered, not stored yet: wait
    stored[2] = {"n": 2}
    assert [i["n"] for i in order.take(3, read)] == [2, 3]
    stored[5] = {"n": 5}
    assert order.take(5, read) == []  # 4 may still come
    monkeypatch.setattr(feed, "GAP_SECONDS", 0)
    assert [i["n"] for i in order.take(5, read)] == [5]  # 4's request died: skipped, never reordered


def test_a_kill_with_remove_immediately_removes_the_instance_whenever_its_end_is_recorded(settings, not_invoked):
    """Scramjet's `seq prune --force` kills with removeImmediately and waits for the instance to
    leave the listing: however the kill and the runner's end interleave, it leaves at the end."""
    seq_id = sequences.create(settings, py_package(ECHO_INPUT))["id"]
    repo = Repository(settings.table)
    inst_id = instances.start(settings, seq_id, {})["id"]
    repo.claim(inst_id, clock.now())
    instances.request_kill(settings, inst_id, remove=True)
    assert inst_id in [i.id for i in instances.listed(settings)]  # still running: its runner ends it
    # The runner records its end with the usual retention, not having seen the request yet.
    repo.end(inst_id, protocol.COMPLETED, 137, models.REASON_KILLED, clock.now(), settings.retention_seconds)
    assert inst_id not in [i.id for i in instances.listed(settings)]
    ended = instances.start(settings, seq_id, {})["id"]
    repo.end(ended, protocol.COMPLETED, 0, models.REASON_COMPLETED, clock.now(), settings.retention_seconds)
    instances.request_kill(settings, ended, remove=True)  # already ended: removed at once, not refused
    assert ended not in [i.id for i in instances.listed(settings)]
