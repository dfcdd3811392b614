"""The Node host writes a generator's items itself, in batches, instead of through a scramjet
DataStream (#28): its bytes must be exactly what Scramjet's runner writes, which is
``JSON.stringify(item) + "\\n"`` for each item of ``DataStream.from(result)``. Each case runs on the
hub's runner and is compared with that, computed by Node with the same scramjet package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chalicelib import instances, protocol
from chalicelib.runner.hosts import HOSTS_DIR
from chalicelib.runner.service import run_instance

from .helpers import js_package
from .test_runner import created, far, invoked, output_of  # noqa: F401  (invoked: autouse fixture)

# Scramjet's runner's way: the runner's own DataStream of the result, every item as a JSON line.
REFERENCE = """
const { DataStream } = require(process.argv[1] + "/node_modules/scramjet");
const sequence = require(process.argv[2]);
(async () => {
  const chunks = [];
  for await (const item of DataStream.from(await sequence(null))) chunks.push(JSON.stringify(item) + "\\n");
  process.stdout.write(chunks.join(""));
})();
"""

CASES = {
    # several 64 KB batches, and the timer's flush of the last one
    "numbers": "module.exports = async function* () { for (let i = 0; i < 30000; i++) yield i * 7; };",
    "strings": ('module.exports = async function* () {\n'
                '  yield* ["plain", "", "with \\"quotes\\"", "line\\nbreak", "zażółć 🦀", "\\u0000", "tab\\t"]; };'),
    "objects": ('module.exports = async function* () {\n'
                '  yield { a: 1, b: [true, false, null], c: { d: "e" } }; yield [1, [2, [3]]]; yield true;\n'
                '  yield 0; yield -1.5e-7; yield { toJSON() { return "custom"; } }; yield new Date(0); };'),
    "undefined-and-null-end": ('module.exports = async function* () {\n'
                               '  yield 1; yield undefined; yield 2; yield null; yield "never"; };'),
    "return-value": 'module.exports = async function* () { yield "a"; return Promise.resolve({ last: true }); };',
    "return-zero": 'module.exports = async function* () { yield "a"; return 0; };',
    "return-promise-of-zero": 'module.exports = async function* () { yield "a"; return Promise.resolve(0); };',
    "sync-generator-of-promises": ('module.exports = function* () {\n'
                                   '  yield Promise.resolve("later"); yield 2;\n'
                                   '  yield new Promise((r) => setTimeout(() => r(3), 5)); };'),
    "buffers-and-mixed": ('module.exports = async function* () {\n'
                          '  yield Buffer.from("bytes"); yield new Uint8Array([1, 2, 3]); yield "text";\n'
                          '  for (let i = 0; i < 5000; i++) yield i % 3 ? { i } : `s${i}`; };'),
}


def reference_bytes(source: str, tmp_path: Path) -> bytes:
    module = tmp_path / "sequence.js"
    module.write_text(source)
    done = subprocess.run(["node", "-e", REFERENCE, str(HOSTS_DIR), str(module)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_generators_output_is_byte_identical_to_scramjets_stream(settings, tmp_path, case):
    expected = reference_bytes(CASES[case], tmp_path)
    inst = created(settings, js_package(CASES[case]))
    assert run_instance(settings, inst, far) == protocol.COMPLETED
    assert output_of(settings, inst) == expected


def test_bytes_before_a_generators_error_are_kept(settings):
    source = ('module.exports = async function* () {\n'
              '  for (let i = 0; i < 3; i++) yield { i }; throw new Error("broken at 3"); };')
    inst = created(settings, js_package(source))
    assert run_instance(settings, inst, far) == protocol.ERRORED
    assert output_of(settings, inst) == b"".join(b'{"i":%d}\n' % i for i in range(3))
    assert "broken at 3" in output_of(settings, inst, "stderr").decode()
    assert instances.info(settings, inst)["terminated"]["exitcode"] == protocol.ExitCode.SEQUENCE_FAILED_DURING_EXECUTION


def test_a_generator_that_never_waits_still_hears_a_stop(settings):
    """Written in a plain loop, a generator that never waits on I/O must not hold the host's event
    loop: its stop handler runs, and its output so far is kept (it ends, not killed)."""
    import threading
    import time

    from chalicelib.repository import Repository

    source = ('module.exports = function* () {\n'
              '  this.addStopHandler(() => { console.error("stop handler ran"); });\n'
              '  for (let i = 0; ; i++) { const t = Date.now(); while (Date.now() - t < 2) {} yield i; }\n'
              '};')
    inst = created(settings, js_package(source))
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("status", run_instance(settings, inst, far)))
    runner.start()
    deadline = time.monotonic() + 60
    while Repository(settings.table).get_instance(inst).status != protocol.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    while not output_of_so_far(settings, inst) and time.monotonic() < deadline:  # it has written something
        time.sleep(0.05)
    instances.request_stop(settings, inst, 5000, False)
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert b"stop handler ran" in output_of(settings, inst, "stderr")
    lines = output_of(settings, inst).splitlines()
    assert lines and lines == [str(i).encode() for i in range(len(lines))]
    assert instances.info(settings, inst)["terminated"]["exitcode"] != 137  # stopped, not killed


def output_of_so_far(settings, inst: str) -> bytes:
    return instances.read_channel(settings, inst, "output", None, 0)["data"]
