"""Topics (#16): the API on the real app and moto, then sequences and both CLIs on the embedded hub.

A topic is a retained, ordered log in the table and the bucket: producers append, every consumer
reads all of it from where its retained data begins, and it expires like instances do.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from chalicelib import aws, clock, sweeper, topics
from chalicelib.repository import Repository

from .conftest import running_hub
from .helpers import EXAMPLES, js_package, make_package, py_package, si

TEXT = {"Content-Type": "text/plain"}
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
ANY = {"Accept": "*/*"}


def write(api, name: str, data: bytes, headers: dict = TEXT):
    return api.http.post(f"/api/v1/topic/{name}", headers=headers, body=data)


def read(api, name: str, cursor: str = "", wait: float = 0):
    resp = api.http.get(f"/api/v1/topic/{name}?cursor={cursor}&wait={wait}", headers=ANY)
    assert resp.status_code == 200, resp.body
    return resp.body, resp.headers["X-Next-Cursor"]


def read_all(api, name: str) -> bytes:
    out, cursor = b"", ""
    while True:
        data, cursor = read(api, name, cursor)
        if not data:
            return out
        out += data


def stored(settings, name: str) -> list[dict]:
    """Every item the topic has in the table (its record and its chunks)."""
    return list(Repository(settings.table)._query(
        KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"topic#{name}"}}))


def topic_objects(settings) -> list[str]:
    found = aws.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix="topics/").get("Contents", [])
    return [o["Key"] for o in found]


# -- the API ----------------------------------------------------------------------------------------
def test_first_write_creates_and_types_the_topic_and_another_type_is_refused(api, settings):
    assert write(api, "names", b"Ada\n").status_code == 200
    refused = write(api, "names", b'{"n": 1}\n', NDJSON)
    assert refused.status_code == 415
    assert json.loads(refused.body) == {"error": "Acceptable Content-Type for names is text/plain"}
    assert write(api, "names", b"Grace\n").status_code == 200
    assert len([i for i in stored(settings, "names") if i["sk"].startswith("d#")]) == 2  # nothing of the refused
    assert json.loads(api.http.get("/api/v1/topics").body) == [
        {"contentType": "text/plain", "localProvider": "", "topic": "names", "topicName": "names"}]
    resp = api.http.get("/api/v1/topic/names?cursor=&wait=0", headers=ANY)
    assert resp.body == b"Ada\nGrace\n" and resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Channel-Ended"] == "false"  # a topic never ends


def test_bad_names_types_and_cursors_are_clear_errors(api, settings):
    for name in ("a%20b", "a.b", "x" * 201, "%00"):
        resp = write(api, name, b"x")
        assert resp.status_code == 400 and "Topic id incorrect format" in json.loads(resp.body)["error"], name
        assert api.http.get(f"/api/v1/topic/{name}?wait=0", headers=ANY).status_code == 400
        assert api.http.delete(f"/api/v1/topics/{name}").status_code == 400
    for headers in ({"Content-Type": "application/json"}, {"Content-Type": "image/png"}):
        resp = write(api, "t", b"x", headers)
        assert resp.status_code == 415 and "error" in json.loads(resp.body)
    for body in ({}, {"id": "t"}, {"content-type": "text/plain"}, {"id": "t", "content-type": "text/html"},
                 {"id": "a b", "content-type": "text/plain"}, [1]):
        resp = api.http.post("/api/v1/topics", headers=JSON, body=json.dumps(body))
        assert resp.status_code == 400 and json.loads(resp.body)["error"], body
    for cursor in ("x", "-1", "1" * 13, "%C2%B2", "%D9%A1"):  # "²" and "١" are digits to str.isdigit
        resp = api.http.get(f"/api/v1/topic/t?cursor={cursor}&wait=0", headers=ANY)
        assert resp.status_code == 400 and "cursor" in json.loads(resp.body)["error"]
    assert stored(settings, "t") == [] and topic_objects(settings) == []  # nothing stored by any of them
    resp = api.http.delete("/api/v1/topics/never")
    assert resp.status_code == 404 and json.loads(resp.body) == {"error": "Topic never not found"}
    assert write(api, "big", b"x" * (settings.max_input_chunk_bytes + 1)).status_code == 413


def test_create_delete_and_a_new_topic_of_the_same_name(api, settings):
    made = api.http.post("/api/v1/topics", headers=JSON, body=json.dumps({"id": "t", "content-type": "text/plain"}))
    assert json.loads(made.body)["contentType"] == "text/plain"
    again = api.http.post("/api/v1/topics", headers=JSON, body=json.dumps({"id": "t", "content-type": "text/plain"}))
    assert again.status_code == 400 and json.loads(again.body) == {"error": "Topic with given id already exist"}
    write(api, "t", b"old\n")
    _, old_cursor = read(api, "t")
    assert json.loads(api.http.delete("/api/v1/topics/t").body) == {"message": "Topic t removed"}
    assert api.http.delete("/api/v1/topics/t").status_code == 404
    assert json.loads(api.http.get("/api/v1/topics").body) == []
    assert read(api, "t") == (b"", "")  # its data went with it
    # A new topic of that name: any type again, and none of the old data, whatever the reader's cursor.
    assert write(api, "t", b'{"new": 1}\n', NDJSON).status_code == 200
    assert read_all(api, "t") == b'{"new": 1}\n'
    assert read(api, "t", old_cursor)[0] == b'{"new": 1}\n'


def test_readers_page_with_cursors_and_wait_for_new_data(api, settings):
    for i in range(10):
        write(api, "t", f"{i}\n".encode())
    first, cursor = read(api, "t")
    assert first == b"".join(f"{i}\n".encode() for i in range(10))
    assert read(api, "t", cursor) == (b"", cursor)  # nothing new: the same cursor back
    later = threading.Timer(0.5, write, (api, "t", b"late\n"))
    later.start()
    assert read(api, "t", cursor, wait=10)[0] == b"late\n"  # a long poll returns when data comes
    later.join()
    # A consumer that starts after everything was written reads all of it, as does a second one.
    assert read_all(api, "t") == first + b"late\n"
    assert read_all(api, "t") == first + b"late\n"
    # Pages stay within a Lambda response: 6 MiB of chunks read as pages of at most 4 MiB.
    piece = b"z" * (settings.max_input_chunk_bytes - 1) + b"\n"
    for _ in range(6):
        write(api, "big", piece)
    sizes, cursor = [], ""
    while data := read(api, "big", cursor)[0]:
        sizes.append(len(data))
        cursor = read(api, "big", cursor)[1]
    assert sum(sizes) == 6 * len(piece) and max(sizes) <= topics.MAX_PAGE_BYTES


def test_large_chunks_live_in_s3_and_a_refused_one_leaves_nothing(api, settings):
    inline = b"a" * topics.INLINE_CHUNK_BYTES
    large = b"b" * (topics.INLINE_CHUNK_BYTES + 1)
    write(api, "t", inline)
    write(api, "t", large)
    chunks = [i for i in stored(settings, "t") if i["sk"].startswith("d#")]
    assert ["data" in chunks[0], "s3_key" in chunks[1]] == [True, True]
    # DynamoDB refuses items over 400 KB (moto does not on a transaction's Put): ours stay below.
    assert len(chunks[0]["data"]) + 200 < 400 * 1000
    assert len(topic_objects(settings)) == 1
    assert write(api, "t", large, NDJSON).status_code == 415
    assert len(topic_objects(settings)) == 1
    assert read_all(api, "t") == inline + large


def test_topics_expire_like_instances(api, settings, monkeypatch):
    write(api, "old", b"x" * (topics.INLINE_CHUNK_BYTES + 1))
    write(api, "old", b"y\n")
    later = clock.now() + settings.retention_seconds + 2  # TTL is in whole seconds
    monkeypatch.setattr(clock, "now", lambda: later)
    assert json.loads(api.http.get("/api/v1/topics").body) == []
    assert read(api, "old") == (b"", "")
    assert api.http.delete("/api/v1/topics/old").status_code == 404
    assert sweeper.sweep(settings)["topics"] == ["old"]  # as DynamoDB's TTL and the lifecycle rule would
    assert stored(settings, "old") == [] and topic_objects(settings) == []
    write(api, "old", b'{"again": true}\n', NDJSON)  # the name is free, of any type
    assert read_all(api, "old") == b'{"again": true}\n'


def test_retained_data_begins_after_expired_chunks(api, settings, monkeypatch):
    now = clock.now()
    write(api, "t", b"early\n")
    monkeypatch.setattr(clock, "now", lambda: now + settings.retention_seconds - 1)
    write(api, "t", b"recent\n")
    monkeypatch.setattr(clock, "now", lambda: now + settings.retention_seconds + 2)  # TTL is in whole seconds
    assert read_all(api, "t") == b"recent\n"  # a late consumer starts where the retained data begins
    sweeper.sweep(settings)
    assert read_all(api, "t") == b"recent\n"
    assert [i["sk"] for i in stored(settings, "t")] == ["#", "d#000000000002"]


def test_expiry_reads_what_expired_not_what_a_topic_holds(api, settings, monkeypatch, calls):
    now = clock.now()
    write(api, "t", b"early\n")
    monkeypatch.setattr(clock, "now", lambda: now + settings.retention_seconds - 1)
    for n in range(120):
        write(api, "t", b"%d\n" % n)
    monkeypatch.setattr(clock, "now", lambda: now + settings.retention_seconds + 2)
    calls.reset()
    calls.on = True
    topics.expire(settings, budget_seconds=60)
    calls.on = False
    # the record, the dead chunk and the page that found the first live one, then one to check
    assert calls.items_read <= 2 + topics.EXPIRY_PAGE + 1
    assert read_all(api, "t") == b"".join(b"%d\n" % n for n in range(120))


def test_start_options_and_package_declarations_are_checked(api, settings):
    seq = json.loads(api.http.post("/api/v1/sequence", headers={"Content-Type": "application/octet-stream"},
                                   body=py_package("def run(context, input):\n    return 1\n")).body)["id"]
    for option in ({"outputTopic": "a b"}, {"inputTopic": 5}, {"inputTopic": "x" * 300}):
        resp = api.http.post(f"/api/v1/sequence/{seq}/start", headers=JSON, body=json.dumps(option))
        assert resp.status_code == 400 and "topic name" in json.loads(resp.body)["error"]
    for declared in ({"provides": "a b"}, {"requires": {"topic": "t", "contentType": "text/html"}}, {"provides": 7}):
        package = make_package({"package.json": {"name": "p", "main": "main.py", "engines": {"python3": "3.12"},
                                                 **declared}, "main.py": "def run(c, i):\n    return 1\n"})
        resp = api.http.post("/api/v1/sequence", headers={"Content-Type": "application/octet-stream"}, body=package)
        assert resp.status_code == 422 and "package.json" in json.loads(resp.body)["error"], declared
    started = json.loads(api.http.post(f"/api/v1/sequence/{seq}/start", headers=JSON,
                                       body=json.dumps({"inputTopic": "in", "outputTopic": "out"})).body)["id"]
    info = json.loads(api.http.get(f"/api/v1/instance/{started}").body)
    assert (info["requires"], info["provides"]) == ("in", "out")
    resp = api.http.post(f"/api/v1/instance/{started}/input", headers=TEXT, body=b"x")
    assert resp.status_code == 405 and "Input provided in other way" in json.loads(resp.body)["error"]


# -- sequences and the CLIs on the embedded hub --------------------------------------------------------
def wait_for(check, timeout: float = 60.0):
    """``check()``'s first truthy answer, asked until ``timeout`` (the answer must come; never a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.25)


def send(hub, session, package_path) -> str:
    return json.loads(si(hub, "--format", "json", "seq", "send", str(package_path), session=session).stdout)["id"]


def start(hub, session, seq_id: str, *options: str) -> str:
    return json.loads(si(hub, "--format", "json", "seq", "start", seq_id, *options, session=session).stdout)["id"]


def output_of(hub, session, inst_id: str) -> str:
    return si(hub, "inst", "output", inst_id, "--no-follow", session=session).stdout.decode()


GREETINGS = "".join(f"Hello, {n}!\n" for n in ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald"])


def test_python_producer_feeds_javascript_consumers_started_before_and_after(hub, session, tmp_path):
    topic = f"names-{uuid.uuid4().hex[:6]}"
    greeter = send(hub, session, EXAMPLES / "greeter-js")
    early = start(hub, session, greeter, "--input-topic", topic)
    producer = start(hub, session, send(hub, session, EXAMPLES / "names-py"), "--output-topic", topic, "6", "0.05")
    assert wait_for(lambda: output_of(hub, session, early) == GREETINGS)
    # The producer's output channel is whole too, and si topic get reads the topic from its start.
    assert si(hub, "inst", "output", producer, session=session).stdout.decode() == \
        "Ada\nGrace\nAlan\nEdsger\nBarbara\nDonald\n"
    got = si(hub, "topic", "get", topic, "--no-follow", session=session).stdout.decode()
    assert got == "Ada\nGrace\nAlan\nEdsger\nBarbara\nDonald\n"
    # A consumer started after the producer ended reads the retained data: producer and consumer
    # never ran at the same time.
    late = start(hub, session, greeter, "--input-topic", topic)
    assert wait_for(lambda: output_of(hub, session, late) == GREETINGS)
    info = json.loads(si(hub, "--format", "json", "inst", "info", producer, session=session).stdout)
    assert info["provides"] == topic and info["status"] == "completed"
    assert json.loads(si(hub, "--format", "json", "inst", "info", late, session=session).stdout)["requires"] == topic
    listed = si(hub, "topic", "ls", session=session).stdout.decode()
    assert topic in listed and "text/plain" in listed
    for inst_id in (early, late):  # consumers of a topic run until stopped, as on Scramjet's hub
        si(hub, "inst", "kill", inst_id, session=session)


def test_si_topic_send_feeds_two_consumers_and_input_to_them_is_refused(hub, session, tmp_path):
    topic = f"people-{uuid.uuid4().hex[:6]}"
    names = tmp_path / "names.txt"
    names.write_text("Ada\nGrace\nAlan\n")
    si(hub, "topic", "send", topic, str(names), "-t", "text/plain", session=session)
    greeter = send(hub, session, EXAMPLES / "greeter-js")
    consumers = [start(hub, session, greeter, "--input-topic", topic) for _ in range(2)]
    si(hub, "topic", "send", topic, "-t", "text/plain", session=session, stdin=b"Edsger\n")
    expected = "Hello, Ada!\nHello, Grace!\nHello, Alan!\nHello, Edsger!\n"
    for inst_id in consumers:
        assert wait_for(lambda i=inst_id: output_of(hub, session, i) == expected)
    refused = si(hub, "inst", "input", consumers[0], session=session, stdin=b"Barbara\n", check=False)
    assert refused.returncode == 1 and b"Input provided in other way" in refused.stderr
    wrong = si(hub, "topic", "send", topic, "-t", "application/x-ndjson", session=session, stdin=b"1\n", check=False)
    assert wrong.returncode == 1 and wrong.stderr.decode().strip() == \
        f"Error: Acceptable Content-Type for {topic} is text/plain"
    bad = si(hub, "topic", "get", "no good", session=session, check=False)
    assert bad.returncode == 1 and b"Topic id incorrect format" in bad.stderr
    # A restart keeps the topic: the new instance reads it from where its retained data begins.
    restarted = json.loads(si(hub, "--format", "json", "inst", "restart", consumers[0], session=session).stdout)["id"]
    assert wait_for(lambda: output_of(hub, session, restarted) == expected)
    for inst_id in (consumers[1], restarted):
        si(hub, "inst", "kill", inst_id, session=session)
    si(hub, "topic", "rm", topic, session=session)
    assert topic not in si(hub, "topic", "ls", session=session).stdout.decode()
    gone = si(hub, "topic", "rm", topic, session=session, check=False)
    assert gone.returncode == 1 and gone.stderr.decode().strip() == f"Error: Topic {topic} not found"


JS_PRODUCER = """
const { PassThrough } = require("stream");
module.exports = function () {
  const out = new PassThrough({ objectMode: true });
  out.topic = "%s";  // Scramjet's way for a sequence to name the topic its output goes to
  out.contentType = "application/x-ndjson";
  (async () => {
    for (let n = 1; n <= 5; n++) { out.write({ n }); await new Promise((r) => setTimeout(r, 20)); }
    out.end();
  })();
  return out;
};
"""
PY_CONSUMER = """
requires = {"requires": "%s", "contentType": "application/x-ndjson"}  # Scramjet's way to read a topic


async def run(context, input):
    async for item in input:
        yield f"{item['n'] * 10}\\n"
"""


def test_javascript_producer_feeds_python_consumer_both_declared_in_code(hub, session, tmp_path):
    topic = f"nums-{uuid.uuid4().hex[:6]}"
    (tmp_path / "producer.tar.gz").write_bytes(js_package(JS_PRODUCER % topic))
    (tmp_path / "consumer.tar.gz").write_bytes(py_package(PY_CONSUMER % topic))
    producer = start(hub, session, send(hub, session, tmp_path / "producer.tar.gz"))
    consumer = start(hub, session, send(hub, session, tmp_path / "consumer.tar.gz"))
    assert wait_for(lambda: output_of(hub, session, consumer) == "10\n20\n30\n40\n50\n")
    assert si(hub, "topic", "get", topic, "--no-follow", session=session).stdout.decode() == \
        "".join(f'{{"n":{n}}}\n' for n in range(1, 6))
    assert json.loads(si(hub, "--format", "json", "inst", "info", producer, session=session).stdout)["provides"] == topic
    assert json.loads(si(hub, "--format", "json", "inst", "info", consumer, session=session).stdout)["requires"] == topic
    listed = json.loads(si(hub, "--format", "json", "topic", "ls", session=session).stdout)
    assert {"contentType": "application/x-ndjson", "localProvider": "", "topic": topic, "topicName": topic} in listed
    si(hub, "inst", "kill", consumer, session=session)


def test_concurrent_producers_lose_nothing_and_keep_their_own_order(hub):
    """Six producers writing at once to one topic of the embedded hub (whose moto, like DynamoDB,
    makes each conditional write atomic): every line arrives, numbered without a gap, each
    producer's lines in their order."""
    topic, producers, each = f"busy-{uuid.uuid4().hex[:6]}", 6, 25

    def produce(p: int) -> None:
        with requests.Session() as http:
            for j in range(each):
                resp = http.post(f"{hub['url']}/topic/{topic}", data=f"{p}:{j}\n", headers=TEXT, timeout=60)
                assert resp.status_code == 200, resp.text

    with ThreadPoolExecutor(producers) as pool:
        list(pool.map(produce, range(producers)))  # re-raises a producer's failure
    resp = requests.get(f"{hub['url']}/topic/{topic}", params={"cursor": "", "wait": 0}, timeout=60)
    lines = resp.text.splitlines()
    # What went wrong, when something does: lines missing, lines twice, and where each producer's are.
    sent = [f"{p}:{j}" for p in range(producers) for j in range(each)]
    seen = {line: [n for n, other in enumerate(lines) if other == line] for line in set(lines)}
    story = (f"missing {[line for line in sent if line not in seen]}, twice {[(k, v) for k, v in seen.items() if len(v) > 1]}, "
             f"unexpected {[line for line in seen if line not in sent]}, next cursor {resp.headers['X-Next-Cursor']}")
    assert len(lines) == producers * each and resp.headers["X-Next-Cursor"] == str(producers * each + 1), story
    for p in range(producers):
        assert [int(line.split(":")[1]) for line in lines if line.startswith(f"{p}:")] == list(range(each)), story


def test_topics_expire_on_the_embedded_hub(tmp_path, session):
    with running_hub(tmp_path, "--retention", "2") as short:
        si(short, "topic", "send", "brief", "-t", "text/plain", session=session, stdin=b"soon gone\n")
        assert si(short, "topic", "get", "brief", "--no-follow", session=session).stdout == b"soon gone\n"
        assert wait_for(lambda: "brief" not in si(short, "topic", "ls", session=session).stdout.decode(), 30)
        assert si(short, "topic", "get", "brief", "--no-follow", session=session).stdout == b""


def test_a_hub_holds_a_bounded_number_of_topics(api, settings, monkeypatch):
    monkeypatch.setenv("SEQHUB_MAX_TOPICS", "3")
    for name in ("a", "b", "c"):
        assert write(api, name, b"x").status_code == 200
    refused = write(api, "d", b"x" * (topics.INLINE_CHUNK_BYTES + 1))
    assert refused.status_code == 429 and "SEQHUB_MAX_TOPICS" in json.loads(refused.body)["error"]
    assert stored(settings, "d") == [] and len(topic_objects(settings)) == 0
    assert write(api, "a", b"more").status_code == 200  # the ones it holds take writes


SHORT_PRODUCER = """const { PassThrough } = require("stream");
module.exports = function () {
  const out = new PassThrough();
  out.topic = "%s";
  out.contentType = "text/plain";
  out.end("run %s\\n");
  return out;
};
"""


def test_a_topic_announced_by_a_short_lived_producer_gets_its_output_every_time(api, settings):
    """The runner acted on announcements only while the host was alive: one read after its last
    look (a producer that ends at once) was never routed, about one run in three."""
    from chalicelib import instances, sequences

    topic = f"brief-{uuid.uuid4().hex[:6]}"
    for n in range(20):
        seq_id = sequences.create(settings, js_package(SHORT_PRODUCER % (topic, n)))["id"]
        inst = instances.start(settings, seq_id, {})["id"]  # the tests' invoker runs it to its end
        assert instances.info(settings, inst)["provides"] == topic
    assert read_all(api, topic) == "".join(f"run {n}\n" for n in range(20)).encode()
