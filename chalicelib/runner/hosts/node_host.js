// Node runtime host: runs `module.exports = function (input, ...args)` of a Scramjet JS sequence.
// Started by the runner as a child process; the pipe protocol is described in hosts/__init__.py.
// No npm dependencies: it runs with nothing but Node.js.
"use strict";

const fs = require("fs");
const net = require("net");
const path = require("path");
const { PassThrough, Readable } = require("stream");

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
const start = JSON.parse(fs.readFileSync(process.env.SEQHUB_START, "utf8"));
delete process.env.SEQHUB_START;

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
async function writeOutput(data) {
  pending.push(data);
  pendingBytes += data.length;
  if (pendingBytes >= 64 * 1024) {
    if (!flushOutput()) await new Promise((resolve) => output.once("drain", resolve));
  } else if (!flushTimer) {
    flushTimer = setTimeout(flushOutput, 20);
  }
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
};

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

// Input: "Content-Type: X\r\n\r\n" preamble, then text chunks, Buffers or ndjson objects.
function inputStream() {
  const stream = new PassThrough({ objectMode: true });
  const src = pipeIn("input");
  let head = Buffer.alloc(0);
  let type = null;
  let rest = "";
  const decoder = new (require("string_decoder").StringDecoder)("utf8");
  // Backpressure: a sequence that reads slowly (or not at all) leaves the rest in the pipe, and the
  // runner stops taking input for it at its quota, instead of Node buffering all of it.
  const push = (item) => {
    if (!stream.write(item) && !src.isPaused()) {
      src.pause();
      stream.once("drain", () => src.resume());
    }
  };
  src.on("data", (data) => {
    if (type === null) {
      head = Buffer.concat([head, data]);
      const at = head.indexOf("\r\n\r\n");
      if (at < 0) return;
      type = head.slice(0, at).toString("latin1").split(":")[1].trim().toLowerCase();
      data = head.slice(at + 4);
      if (!data.length) return;
    }
    if (type === "application/octet-stream") push(data);
    else if (type.endsWith("x-ndjson")) {
      rest += decoder.write(data);
      const lines = rest.split("\n");
      rest = lines.pop();
      for (const line of lines) if (line.trim()) push(JSON.parse(line));
    } else push(decoder.write(data));
  });
  src.on("end", () => {
    if (type && type.endsWith("x-ndjson") && rest.trim()) stream.write(JSON.parse(rest));
    stream.end();
  });
  src.on("error", () => stream.end());
  return stream;
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
  return v && typeof v.pipe === "function" && typeof v.on === "function" && v.readable !== undefined;
}

// Before any output, the runner learns where it goes (a topic the sequence names) and what it is.
function announceOutput(result, ndjson) {
  const named = result !== null && typeof result === "object";
  sendEvent({ type: "output", topic: (named && result.topic) || null, contentType: (named && result.contentType) || null,
    format: ndjson ? "ndjson" : "text" });
}

async function forward(result) {
  result = await result;
  const iterable = result !== null && result !== undefined && !isReadable(result) && typeof result !== "string" && !Buffer.isBuffer(result) &&
    (typeof result[Symbol.asyncIterator] === "function" || typeof result[Symbol.iterator] === "function");
  announceOutput(result, iterable || (isReadable(result) && (result.readableObjectMode || /x-ndjson/.test(result.contentType || ""))));
  if (result === undefined || result === null) {
    await writeOutput(String(result));
  } else if (Buffer.isBuffer(result) || ["string", "number", "boolean", "bigint"].includes(typeof result)) {
    await writeOutput(Buffer.isBuffer(result) ? result : String(result));
  } else if (isReadable(result)) {
    // Objects become JSON lines; a byte stream's bytes pass as they are (even one that says it is
    // x-ndjson: its bytes are JSON lines already).
    const ndjson = result.readableObjectMode;
    for await (const item of result) {
      await writeOutput(ndjson ? JSON.stringify(item) + "\n" : (typeof item === "string" || Buffer.isBuffer(item) ? item : Buffer.from(item)));
    }
  } else if (typeof result[Symbol.asyncIterator] === "function" || typeof result[Symbol.iterator] === "function") {
    for await (const item of result) await writeOutput(JSON.stringify(item) + "\n");
  } else {
    await writeOutput(JSON.stringify(result) + "\n");
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
    if (exported && typeof exported !== "function" && !Array.isArray(exported) && exported.default) exported = exported.default;
    if (typeof exported !== "function" && !Array.isArray(exported)) throw new TypeError("the sequence must export a function or an array of functions");
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
    for (const func of chain) {
      stream = await (takesInput(func) ? func.call(context, stream, ...args) : func.apply(context, args));
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

process.on("unhandledRejection", (e) => { console.error(e && e.stack ? e.stack : String(e)); finish(EXIT_FAILED_DURING_RUN); });
main();
