// Node runtime host: runs `module.exports = function (input, ...args)` of a Scramjet JS sequence.
// Started by the runner as a child process; the pipe protocol is described in hosts/__init__.py.
// As Scramjet's runner does, it gives the sequence scramjet's streams (its input is a DataStream)
// and a HostClient (this.hub), from its own node_modules (package.json beside it), never the
// sequence's: a sequence that bundles its own scramjet gets streams the host does not serialise.
"use strict";

const fs = require("fs");
const http = require("http");
const net = require("net");
const path = require("path");
const { Readable } = require("stream");

const own = (name) => require(path.join(__dirname, "node_modules", name));
const { DataStream, StringStream, BufferStream } = own("scramjet");

const EXIT_UNPACK_FAILED = 10;  // Scramjet's SEQUENCE_UNPACK_FAILED
const EXIT_INVALID_MAIN = 21;
const EXIT_FAILED_ON_START = 22;
const EXIT_FAILED_DURING_RUN = 23;
const EXIT_KILLED = 137;
const EXIT_STOPPED = 138;

// The protocol's descriptors, taken out of the environment the sequence will see.
const FDS = {};
for (const key of Object.keys(process.env).filter((k) => k.startsWith("SEQHUB_FD_"))) {
  FDS[key.slice("SEQHUB_FD_".length).toLowerCase()] = Number(process.env[key]);
  delete process.env[key];
}
const fd = (name) => FDS[name];
// Pipes are opened as sockets: fs streams read pipes on the thread pool, which blocks process.exit.
const pipeIn = (name) => new net.Socket({ fd: fd(name), readable: true, writable: false });
const pipeOut = (name) => new net.Socket({ fd: fd(name), readable: false, writable: true });
// A standby's host (chalicelib/runner/standby.py): loaded, it waits for the runner's word that an
// instance is ours. A word other than "go" (the runner left) ends it.
if (fd("go") !== undefined) {
  const word = fs.readFileSync(fd("go"), "latin1");  // blocks until the runner closes its end
  fs.closeSync(fd("go"));
  if (word !== "go") process.exit(0);
}
// In a sandbox, the package comes packed: unpacked into the working directory (/package), as this uid.
const ARCHIVE = process.env.SEQHUB_ARCHIVE;
delete process.env.SEQHUB_ARCHIVE;
if (ARCHIVE) {
  const tar = require("child_process").spawnSync(
    "tar", ["-xzf", ARCHIVE, "-C", process.cwd(), "--no-same-owner", "--delay-directory-restore"],
    { stdio: ["ignore", "ignore", "inherit"] });
  if (tar.status !== 0) {
    process.stderr.write("Sequence unpack failed\n");
    process.exit(EXIT_UNPACK_FAILED);
  }
}
const start = JSON.parse(fs.readFileSync(process.env.SEQHUB_START, "utf8"));
delete process.env.SEQHUB_START;
const HUB_SOCKET = process.env.SEQHUB_HUB_SOCKET;  // where the runner serves this hub's API to the instance
delete process.env.SEQHUB_HUB_SOCKET;

function jsonLines(name) {
  const out = pipeOut(name);
  out.on("error", () => {});
  return (obj) => out.write(JSON.stringify(obj) + "\n");
}
const sendEvent = jsonLines("events");
const sendLog = jsonLines("log");

// Output: batched writes to the output pipe, honouring backpressure.
const output = pipeOut("output");
output.on("error", () => {});
let pending = [];
let pendingBytes = 0;
let flushTimer = null;
function flushOutput() {
  if (flushTimer) { clearTimeout(flushTimer); flushTimer = null; }
  if (!pending.length) return true;
  const chunk = pending.length === 1 ? pending[0] : (typeof pending[0] === "string" && pending.every((p) => typeof p === "string") ? pending.join("") : Buffer.concat(pending.map((p) => Buffer.from(p))));
  pending = []; pendingBytes = 0;
  return output.write(chunk);
}
// Queue output without waiting: a promise to await only when a full batch met backpressure.
function queueOutput(data) {
  pending.push(data);
  pendingBytes += data.length;
  if (pendingBytes >= 64 * 1024) {
    if (!flushOutput()) return new Promise((resolve) => output.once("drain", resolve));
  } else if (!flushTimer) {
    flushTimer = setTimeout(flushOutput, 20);
  }
  return null;
}
async function writeOutput(data) {
  const drained = queueOutput(data);
  if (drained) await drained;
}
let outputEnded = null;
function endOutput() {
  if (!outputEnded) {
    flushOutput();
    outputEnded = new Promise((resolve) => { output.once("close", resolve); output.once("error", resolve); output.end(); });
  }
  return outputEnded;
}

const log = (level) => (...args) => sendLog({
  ts: Date.now(), level, from: "Sequence",
  msg: args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "),
});

const listeners = {};
const early = {}; // events that came before any listener for them: delivered on registration
const stopHandlers = [];
const killHandlers = [];
const monitoringHandlers = [];
let keepAliveRequested = false;

const context = {
  logger: { trace: log("TRACE"), debug: log("DEBUG"), info: log("INFO"), warn: log("WARN"),
    error: log("ERROR"), fatal: log("FATAL"), log: log("INFO") },
  config: start.config === null ? undefined : start.config,
  instanceId: start.instanceId,
  // STH lingers 10 s after the output ends; on Lambda that is billed idle time, so 0 by default.
  exitTimeout: 0,
  addStopHandler(handler) { stopHandlers.push(handler); return this; },
  addKillHandler(handler) { killHandlers.push(handler); return this; },
  addMonitoringHandler(handler) { monitoringHandlers.push(handler); return this; },
  keepAlive(ms) { keepAliveRequested = true; sendEvent({ type: "keepalive", timeout: (ms || 0) / 1000 }); return this; },
  end() { finish(0); return this; },
  destroy(err) { if (err) console.error(err); finish(err ? EXIT_FAILED_DURING_RUN : 0); return this; },
  on(name, handler) {
    (listeners[name] = listeners[name] || []).push(handler);
    for (const message of early[name] || []) Promise.resolve().then(() => handler(message)).catch((e) => console.error(e));
    delete early[name];
    return this;
  },
  emit(name, message) { sendEvent({ type: "event", name, message: message === undefined ? "" : message }); return this; },
  describe() { return this; },
  initialState: undefined,  // Scramjet's state saved by an earlier run: none here, as there
  save() { throw new Error("save() is not implemented (as on Scramjet's hub)"); },
  // Scramjet's HostClient for this hub (made when first used: loading it takes a while).
  get hub() { return hubClient || (hubClient = makeHubClient()); },
};
let hubClient = null;

// The HostClient of Scramjet's @scramjet/api-client, whose requests go to the runner over a Unix
// socket (the instance has no network); the runner sends them on to this hub's API and nowhere
// else. Methods Scramjet's newer runner has and this client lacks are added.
function makeHubClient() {
  const { HostClient } = own("@scramjet/api-client");
  const { ClientUtilsBase } = own("@scramjet/client-utils/client-utils");
  const fetch = own("node-fetch");
  const agent = new http.Agent({ keepAlive: true });
  agent.createConnection = (_options, callback) => net.createConnection({ path: HUB_SOCKET }, callback);
  const send = HUB_SOCKET
    ? (url, init) => fetch(url, { ...init, agent })
    : () => Promise.reject(new Error("this hub gives sequences no access to its API here"));
  class Hub extends HostClient {
    getStatus() { return this.client.get("status"); }
    listEntities() { return this.client.get("entities"); }
    getAuditStream(init) { return this.client.getStream("audit", init); }
    getTopic(topic, init, contentType = "application/x-ndjson") {
      return this.client.getStream(`topic/${topic}`, { ...init, headers: { "content-type": contentType } });
    }
    createTopic(id, contentType) { return this.client.post("topics", { id, "content-type": contentType }, {}, { json: true, parse: "json" }); }
    deleteTopic(id) { return this.client.delete(`topics/${id}`); }
    async getSequenceId(name) {
      return (await this.listSequences()).filter((seq) => seq.config && seq.config.name === name).map((seq) => seq.id);
    }
  }
  const base = "http://scramjet-host/api/v1";
  return new Hub(base, new ClientUtilsBase(base, send));
}

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  try { await endOutput(); } catch (e) { /* the pipe may be gone already */ }
  // stdout and stderr are pipes, which Node writes synchronously on Linux: nothing to wait for.
  process.exit(code);
}

// Control messages from the runner.
function controlLoop() {
  const input = pipeIn("control");
  input.setEncoding("utf8");
  let buf = "";
  input.on("data", async (data) => {
    buf += data;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (msg.type === "event") {
        if (!listeners[msg.name]) { (early[msg.name] = early[msg.name] || []).push(msg.message); continue; }
        for (const h of listeners[msg.name]) {
          try { await h(msg.message); } catch (e) { console.error(e); }
        }
      } else if (msg.type === "kill") {
        for (const h of killHandlers) { try { h(); } catch (e) { console.error(e); } }
        finish(EXIT_KILLED);
      } else if (msg.type === "stop") {
        for (const h of stopHandlers) {
          try { await h(msg.timeout, msg.canCallKeepalive); } catch (e) { console.error(e); }
        }
        if (!(msg.canCallKeepalive && keepAliveRequested)) finish(EXIT_STOPPED);
      }
    }
  });
}

async function health() {
  let healthy = true;
  for (const h of monitoringHandlers) {
    try {
      const r = await h({ healthy: true });
      if (r && r.healthy === false) healthy = false;
    } catch (e) { healthy = false; }
  }
  sendEvent({ type: "health", healthy });
}

// Input, as Scramjet's runner gives it: a DataStream, into which the input channel is piped once its
// "Content-Type: X\r\n\r\n" preamble is read: text/plain as a StringStream of string chunks,
// x-ndjson as parsed objects, octet-stream as a BufferStream (mapToInputDataStream). Piped streams
// keep backpressure: input the sequence does not read stays in the pipe.
function inputStream() {
  const input = new DataStream();
  const src = pipeIn("input");
  let head = Buffer.alloc(0);
  const onData = (data) => {
    head = Buffer.concat([head, data]);
    const at = head.indexOf("\r\n\r\n");
    if (at < 0) return;
    src.off("data", onData);
    src.pause();
    const type = head.slice(0, at).toString("latin1").split(":")[1].trim().toLowerCase();
    const rest = head.slice(at + 4);
    if (rest.length) src.unshift(rest);
    let typed;
    if (type.endsWith("x-ndjson")) typed = StringStream.from(src, { encoding: "utf-8" }).JSONParse(true);
    else if (type === "text/plain") typed = StringStream.from(src, { encoding: "utf-8" });
    else if (type === "application/octet-stream") typed = BufferStream.from(src);
    else { input.end(); return; }
    typed.pipe(input);
  };
  src.on("data", onData);
  src.on("end", () => { if (!head.includes("\r\n\r\n")) input.end(); });
  src.on("error", () => input.end());
  return input;
}

// STH calls func(input, ...args). A function whose first parameter has a default value (the seed's
// `async function* (initialNumber = 0, length = 1000)`) cannot be expecting the input stream, so it
// gets the arguments alone.
function takesInput(func) {
  if (func.length > 0) return true;
  const src = Function.prototype.toString.call(func);
  const open = src.indexOf("(");
  const arrow = src.indexOf("=>");
  if (open < 0 || (arrow >= 0 && arrow < open)) return true;
  const first = src.slice(open + 1).split(/[,)]/)[0];
  return !first.includes("=");
}

function isReadable(v) {
  return v instanceof Readable || (v && typeof v.pipe === "function" && typeof v.on === "function" && v.readable !== undefined);
}

const NDJSON_TYPES = ["application/x-ndjson", "text/x-ndjson"];

// What most sequences return (`async function*`, `function*`): a generator object.
function isGenerator(v) {
  return v !== null && typeof v === "object" && typeof v.next === "function" && typeof v.throw === "function" &&
    (typeof v[Symbol.asyncIterator] === "function" || typeof v[Symbol.iterator] === "function");
}

const isThenable = (v) => v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";

// A generator's items as Scramjet's DataStream.from reads them (fromIterator): each value awaited,
// a null value ends the stream, a truthy return value comes last; written as JSON lines, as the
// runner's own stream is. Read in a plain loop, not through a stream, and queued without an await
// per item: the same bytes, at 1,000,000 items 1.3 s → ~0.3 s (bench/RESULTS.md).
async function writeGenerator(gen) {
  // A generator that never waits on I/O would hold the event loop (timers, the control pipe: stop,
  // kill, events) until a batch met backpressure: give the loop a turn every 10 ms, checking the
  // clock about every 2 ms of items (so a fast generator pays next to nothing for it).
  let every = 1, count = 0, checked = Date.now(), yielded = checked;
  for (;;) {
    let read = gen.next();
    if (isThenable(read)) read = await read;
    if (read.done) {  // as fromIterator: the return value counts when it (not what it resolves to) is truthy
      if (read.value) {
        const last = await read.value;
        if (last !== null) await writeOutput(JSON.stringify(last) + "\n");
      }
      return;
    }
    let value = read.value;
    if (isThenable(value)) value = await value;
    if (value === null) return;
    const drained = queueOutput(JSON.stringify(value) + "\n");
    if (drained) await drained;
    if (++count >= every) {
      count = 0;
      const now = Date.now();
      every = now - checked < 2 ? Math.min(every * 2, 8192) : Math.max(1, every >> 1);
      checked = now;
      if (now - yielded >= 10) {
        await new Promise(setImmediate);
        yielded = Date.now();
      }
    }
  }
}

// Before any output, the runner learns where it goes (a topic the sequence names) and what it is.
function announceOutput(result, ndjson) {
  const named = result !== null && typeof result === "object";
  sendEvent({ type: "output", topic: (named && result.topic) || null, contentType: (named && result.contentType) || null,
    format: ndjson ? "ndjson" : "text" });
}

// What Scramjet's runner does with the last function's result (runSequence):
// - a primitive (string, number, boolean, undefined) is written as `${value}` and the output ends;
// - a Readable is the output as it is; anything else (a generator, an iterable) becomes the
//   runner's own DataStream of its items;
// - the output is serialised, JSON.stringify(item) + "\n" each item, when it says it is JSON
//   lines (contentType x-ndjson) or is the runner's own DataStream (not a String/BufferStream);
//   otherwise its chunks are written as they are (a sequence's own PassThrough, or a stream of
//   its own copy of scramjet, object mode or not), in its encoding if it set one.
async function forward(result) {
  result = await result;
  if (["string", "number", "boolean", "undefined"].includes(typeof result)) {
    announceOutput(result, false);
    await writeOutput(`${result}`);
    return;
  }
  if (isGenerator(result)) {
    announceOutput(result, true);  // the runner's own DataStream would be serialised
    await writeGenerator(result);
    return;
  }
  const stream = isReadable(result) ? result : DataStream.from(result);
  const ownStream = stream instanceof DataStream && !(stream instanceof StringStream || stream instanceof BufferStream);
  const serialise = NDJSON_TYPES.includes(result.contentType) || ownStream;
  announceOutput(result, serialise);
  const encoding = !serialise && stream.readableEncoding;
  for await (const item of stream) {
    if (serialise) await writeOutput(JSON.stringify(item) + "\n");
    else if (typeof item === "string") await writeOutput(encoding ? Buffer.from(item, encoding) : item);
    else if (Buffer.isBuffer(item) || item instanceof Uint8Array) await writeOutput(Buffer.from(item));
    else {
      // What piping this chunk into a byte stream does in Scramjet's runner: it fails.
      throw new TypeError(`The "chunk" argument must be of type string or an instance of Buffer or Uint8Array. ` +
        `Received ${item === null ? "null" : typeof item}: a stream of objects is written as JSON lines only when ` +
        `it says so (contentType "application/x-ndjson")`);
    }
  }
}

async function main() {
  const main = start.main.replace(/\.js$/, "") + ".js";
  const entry = path.resolve(process.cwd(), main);
  if (!fs.existsSync(entry) || !fs.statSync(entry).isFile()) {
    context.logger.error(`Sequence entrypoint path ${start.main} is invalid`);
    process.exitCode = EXIT_INVALID_MAIN;
    await new Promise((resolve) => setTimeout(resolve, 20));
    process.exit(EXIT_INVALID_MAIN);
  }
  let exported;
  try {
    exported = require(entry);
    if (exported && Object.prototype.hasOwnProperty.call(exported, "default")) exported = exported.default;
    if (typeof exported !== "function" && !Array.isArray(exported)) throw new TypeError("the sequence must export a function or an array of functions");
    if (Array.isArray(exported) && !exported.length) throw new Error("Empty Sequence");
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    return finish(EXIT_FAILED_ON_START);
  }
  controlLoop();
  health();
  setInterval(health, 1000);
  // Scramjet's topic input: a first element {requires, contentType} instead of a function.
  const head = Array.isArray(exported) ? exported[0] : null;
  if (head && typeof head === "object" && head.requires) {
    sendEvent({ type: "requires", topic: String(head.requires), contentType: head.contentType || null });
  }
  const chain = (Array.isArray(exported) ? exported : [exported]).filter((f) => typeof f === "function");
  try {
    let stream = inputStream();
    const args = start.args || [];
    for (const [index, func] of chain.entries()) {
      const out = takesInput(func) ? func.call(context, stream, ...args) : func.apply(context, args);
      // What it set up as it was called (stop handlers, listeners) is in place from here on.
      if (index === 0) sendLog({ ts: Date.now(), level: "DEBUG", from: "Runner", msg: "Sequence called" });
      if (index === chain.length - 1) {
        stream = out;
        break;
      }
      // Between the functions of a chain, as in Scramjet's runner: what one gives the next gets
      // as a DataStream; nothing at all is an error.
      const intermediate = await out;
      if (!intermediate) throw new Error("Sequence ended premature");
      stream = intermediate instanceof DataStream ? intermediate : DataStream.from(intermediate);
    }
    await forward(stream);
    await endOutput();
    if (context.exitTimeout > 0) await new Promise((resolve) => setTimeout(resolve, context.exitTimeout));
    finish(0);
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    finish(EXIT_FAILED_DURING_RUN);
  }
}

// Whatever the sequence throws where nobody catches it ends the instance, errored, with the error on
// its stderr: it never leaves it running with an output that will not end.
const failed = (e) => { console.error(e && e.stack ? e.stack : String(e)); finish(EXIT_FAILED_DURING_RUN); };
process.on("unhandledRejection", failed);
process.on("uncaughtException", failed);
main();
