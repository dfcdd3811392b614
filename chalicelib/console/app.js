// Sequence Hub console: the same /api/v1 the CLI uses, with the same authentication.
"use strict";

const API = location.pathname.replace(/\/console\/?$/, "") + "/api/v1";
const DIRECT_UPLOAD_LIMIT = 4500000;
const $ = (sel) => document.querySelector(sel);
const enc = new TextEncoder();

// ---- authentication: the embedded hub's token, or SigV4 with the user's AWS credentials -------------
function loadSettings() {
  try { return JSON.parse(sessionStorage.getItem("seqhub-settings") || "{}"); } catch (e) { return {}; }
}
let settings = loadSettings();

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256hex = async (data) => hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? enc.encode(data) : data));
async function hmac(key, msg) {
  const k = await crypto.subtle.importKey("raw", typeof key === "string" ? enc.encode(key) : key,
    { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(msg)));
}
const rfc3986 = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

// AWS Signature Version 4 for API Gateway's IAM authorizer (service "execute-api").
async function sigv4({ method, url, headers = {}, body = "", creds, region, amzDate }) {
  const u = new URL(url, location.href);
  amzDate = amzDate || new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const h = {};
  for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = String(v);
  h.host = u.host;
  h["x-amz-date"] = amzDate;
  if (creds.sessionToken) h["x-amz-security-token"] = creds.sessionToken;
  const names = Object.keys(h).sort();
  const query = [...u.searchParams].map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`).join("&");
  const path = u.pathname.split("/").map((p) => rfc3986(decodeURIComponent(p))).join("/");
  const canonical = [method, path, query, names.map((n) => `${n}:${h[n].trim().replace(/\s+/g, " ")}\n`).join(""),
    names.join(";"), await sha256hex(body || "")].join("\n");
  const scope = `${day}/${region}/execute-api/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256hex(canonical)].join("\n");
  let key = await hmac("AWS4" + creds.secretAccessKey, day);
  for (const part of [region, "execute-api", "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  const out = { "X-Amz-Date": amzDate,
    Authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}` };
  if (creds.sessionToken) out["X-Amz-Security-Token"] = creds.sessionToken;
  return out;
}
window.seqhubSigV4 = sigv4; // for the browser test that checks it against botocore

async function authHeaders(method, url, headers, body) {
  if (settings.accessKeyId && settings.secretAccessKey) {
    const region = settings.region || (location.host.match(/\.execute-api\.([a-z0-9-]+)\.amazonaws\.com/) || [])[1] || "us-east-1";
    return sigv4({ method, url, headers, body, region, creds: settings });
  }
  return settings.token ? { Authorization: `Bearer ${settings.token}` } : {};
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(method, path, { body, headers = {}, raw = false, signal } = {}) {
  const url = API + path;
  const all = { ...headers, ...(await authHeaders(method, url, headers, body)) };
  const resp = await fetch(url, { method, headers: all, body, signal });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try { const j = await resp.json(); message = j.error || j.message || message; } catch (e) { /* not JSON */ }
    throw new ApiError(message, resp.status);
  }
  if (raw) return resp;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}
const postJson = (path, obj) => api("POST", path, { body: JSON.stringify(obj), headers: { "Content-Type": "application/json" } });

// ---- small helpers ------------------------------------------------------------------------------------
function banner(message, ok = false) {
  const el = $("#banner");
  el.textContent = message;
  el.className = ok ? "ok" : "";
  el.hidden = !message;
}
function cell(row, text, cls) {
  const td = row.insertCell();
  if (text instanceof Node) td.append(text); else td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}
function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : `${Math.floor(s / 3600)}h ago`;
}
function duration(info) {
  if (!info.started) return "";
  const end = info.ended ? Date.parse(info.ended) : Date.now();
  return `${((end - Date.parse(info.started)) / 1000).toFixed(1)} s`;
}
const size = (n) => (n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n > 1024 ? `${(n / 1024).toFixed(1)} kB` : `${n} B`);

// Positional arguments as the CLI parses them: JSON numbers, booleans and null typed, the rest strings.
function parseArgs(text) {
  const out = [];
  for (const m of text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    if (m[3] === undefined) { out.push(m[1] !== undefined ? m[1] : m[2]); continue; }
    let v = m[3];
    if (/^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)$/.test(v)) v = JSON.parse(v);
    out.push(v);
  }
  return out;
}
window.seqhubParseArgs = parseArgs;

// ---- home: sequences and instances ---------------------------------------------------------------------
// The newest of each listing (pages of the API: history never makes a refresh cost more).
const HOME_PAGE = 50;
let lastHome = "";

async function refreshHome() {
  let seqs, insts, retained;
  try {
    const [s, i] = await Promise.all([api("GET", `/sequences?limit=${HOME_PAGE}`, { raw: true }),
      api("GET", `/instances?limit=${HOME_PAGE}`, { raw: true })]);
    [seqs, insts] = await Promise.all([s.json(), i.json()]);
    retained = Number(i.headers.get("X-Retained-Count") || insts.length);
  } catch (e) {
    banner(e.status === 403 ? `${e.message} — open Settings to enter the hub's token or your AWS credentials.` : e.message);
    return;
  }
  const seen = JSON.stringify([seqs, insts, retained]);
  if (seen === lastHome) return;  // nothing changed (the hub answered 304): leave the page as it is
  lastHome = seen;
  const tbody = $("#sequences tbody");
  tbody.replaceChildren();
  for (const s of seqs) {
    const row = tbody.insertRow();
    row.dataset.id = s.id;
    cell(row, s.config.name || s.id);
    cell(row, s.config.version);
    cell(row, s.config.language);
    cell(row, size(s.size || 0));
    cell(row, age(s.created));
    cell(row, s.instances.length);
    const form = $("#start-form").content.firstElementChild.cloneNode(true);
    form.querySelector("input").setAttribute("aria-label", `Arguments for ${s.config.name || s.id}`);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); startSequence(s, form); });
    cell(row, form);
    const del = document.createElement("button");
    del.type = "button";
    del.className = "secondary";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${s.config.name || s.id}`);
    del.addEventListener("click", () => deleteSequence(s));
    cell(row, del);
  }
  $("#no-sequences").hidden = seqs.length > 0;
  const ibody = $("#instances tbody");
  ibody.replaceChildren();
  for (const i of insts) {  // newest first
    const row = ibody.insertRow();
    row.dataset.id = i.id;
    const link = document.createElement("a");
    link.href = `#/instance/${i.id}`;
    link.textContent = i.id.slice(0, 8);
    link.className = "mono";
    cell(row, link);
    cell(row, i.status, `status status-${i.status}`);
    cell(row, i.sequence.name || i.sequence.id);
    cell(row, JSON.stringify(i.args), "mono");
    cell(row, age(i.started));
    cell(row, duration(i));
    cell(row, i.terminated ? i.terminated.exitcode : "");
  }
  $("#no-instances").hidden = insts.length > 0;
  $("#inst-count").textContent = retained > insts.length ? `the newest ${insts.length} of ${retained}` : "";
}

async function startSequence(seq, form) {
  let appConfig;
  const raw = form.elements.config.value.trim();
  if (raw) {
    try { appConfig = JSON.parse(raw); } catch (e) { banner(`appConfig is not valid JSON: ${e.message}`); return; }
  }
  try {
    const body = { args: parseArgs(form.elements.args.value) };
    if (appConfig !== undefined) body.appConfig = appConfig;
    const started = await postJson(`/sequence/${seq.id}/start`, body);
    banner("");
    location.hash = `#/instance/${started.id}`;
  } catch (e) { banner(e.message); }
}

async function deleteSequence(seq) {
  if (!confirm(`Delete sequence ${seq.config.name || seq.id}?`)) return;
  try {
    await api("DELETE", `/sequence/${seq.id}`, { headers: { "Content-Type": "application/json" } });
    banner(`Deleted ${seq.config.name || seq.id}.`, true);
  } catch (e) {
    banner(e.status === 409 ? `${e.message}. Its instances are still running: kill them (or wait for them) first.` : e.message);
  }
  refreshHome();
}

function uploadWithProgress(method, url, body, headers) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    const bar = $("#upload-progress");
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) bar.value = (100 * ev.loaded) / ev.total; };
    xhr.onload = () => {
      bar.hidden = true;
      if (xhr.status < 300) { resolve(xhr.responseText ? JSON.parse(xhr.responseText || "null") : null); return; }
      let message = `${xhr.status} ${xhr.statusText}`;
      try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* not JSON */ }
      reject(new ApiError(message, xhr.status));
    };
    xhr.onerror = () => { bar.hidden = true; reject(new ApiError("upload failed: the hub could not be reached", 0)); };
    xhr.send(body);
  });
}

async function uploadPackage(file) {
  if (!file) return;
  try {
    const data = new Uint8Array(await file.arrayBuffer());
    let result;
    if (data.length > DIRECT_UPLOAD_LIMIT) {
      const upload = await postJson("/sequence/upload", {});
      await uploadWithProgress("PUT", upload.url, data, {});
      result = await postJson(`/sequence/${upload.id}/commit`, {});
    } else {
      const url = API + "/sequence";
      const headers = { "Content-Type": "application/octet-stream" };
      result = await uploadWithProgress("POST", url, data, { ...headers, ...(await authHeaders("POST", url, headers, data)) });
    }
    banner(`Uploaded ${file.name}: sequence ${result.id}`, true);
  } catch (e) { banner(`${file.name}: ${e.message}`); }
  refreshHome();
}

// ---- instance page -----------------------------------------------------------------------------------
let current = null; // {id, channels: {name: text}, tab, aborts: [], timer}

function stopInstanceView() {
  if (!current) return;
  current.aborts.forEach((a) => a.abort());
  clearInterval(current.timer);
  current = null;
}

function showTab(name) {
  current.tab = name;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.channel === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
  }
  $("#channel").setAttribute("aria-labelledby", `tab-${name}`);
  $("#channel").textContent = current.channels[name];
}

async function follow(view, channel) {
  const abort = new AbortController();
  view.aborts.push(abort);
  const decoder = new TextDecoder();
  let cursor = "";
  while (current === view) {
    let resp, body;
    try {
      resp = await api("GET", `/instance/${view.id}/${channel}?cursor=${encodeURIComponent(cursor)}&wait=20`,
        { raw: true, signal: abort.signal, headers: { Accept: "application/octet-stream" } });
      body = await resp.arrayBuffer(); // leaving the page aborts this read too: caught here, not thrown
    } catch (e) {
      if (e.name === "AbortError" || current !== view) return;
      if (e.status === 404) { expired(view); return; }
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    const text = decoder.decode(body, { stream: true });
    if (text) {
      view.channels[channel] += text;
      if (view.tab === channel) $("#channel").append(text);
    }
    cursor = resp.headers.get("X-Next-Cursor") || cursor;
    if (resp.headers.get("X-Channel-Ended") === "true") return;
  }
}

function expired(view) {
  if (current !== view) return;
  $("#expired").hidden = false;
  $("#inst-body").hidden = true;
  stopInstanceView();
}

async function refreshInfo(view) {
  let info;
  try { info = await api("GET", `/instance/${view.id}`); } catch (e) {
    if (e.status === 404) expired(view); else banner(e.message);
    return;
  }
  if (current !== view) return;
  const dl = $("#inst-info");
  dl.replaceChildren();
  const rows = [["Status", info.status], ["Engine", info.engine || "lambda"],
    ["Sequence", info.sequence.name || info.sequence.id],
    ["Arguments", JSON.stringify(info.args)], ["appConfig", JSON.stringify(info.appConfig)],
    ["Created", info.created], ["Started", info.started || ""], ["Ended", info.ended || ""],
    ["Duration", duration(info)]];
  if (info.terminated) rows.push(["Exit code", info.terminated.exitcode], ["Reason", info.terminated.reason]);
  if (info.expires) rows.push(["Expires", info.expires]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    if (k === "Status") { dd.className = `status status-${v}`; dd.id = "inst-status"; }
    dl.append(dt, dd);
  }
  const active = ["starting", "running", "stopping", "killing"].includes(info.status);
  $("#kill").disabled = !active;
  $("#stop").disabled = info.status !== "running";
}

function openInstance(id) {
  stopInstanceView();
  const view = { id, channels: { output: "", stdout: "", stderr: "", log: "" }, tab: "output", aborts: [] };
  current = view;
  $("#inst-id").textContent = id;
  $("#expired").hidden = true;
  $("#inst-body").hidden = false;
  showTab("output");
  refreshInfo(view);
  view.timer = setInterval(() => refreshInfo(view), 1500);
  for (const ch of Object.keys(view.channels)) follow(view, ch);
}

async function control(op, body) {
  if (!current) return;
  try { await postJson(`/instance/${current.id}/${op}`, body); banner(""); } catch (e) { banner(e.message); }
  refreshInfo(current);
}

// ---- routing and wiring ----------------------------------------------------------------------------------
function route() {
  const m = location.hash.match(/^#\/instance\/([A-Za-z0-9_-]+)$/);
  $("#home-view").hidden = !!m;
  $("#instance-view").hidden = !m;
  if (m) openInstance(m[1]); else { stopInstanceView(); refreshHome(); }
}

function wire() {
  window.addEventListener("hashchange", route);
  setInterval(() => { if (!current && document.visibilityState === "visible") refreshHome(); }, 3000);
  const input = $("#upload-input");
  input.addEventListener("change", () => { uploadPackage(input.files[0]); input.value = ""; });
  $("#upload-label").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); }
  });
  const zone = $("#dropzone");
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); zone.classList.remove("over"); uploadPackage(ev.dataTransfer.files[0]); });
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.channel));
    tab.addEventListener("keydown", (ev) => {
      const tabs = [...document.querySelectorAll("[role=tab]")];
      const i = tabs.indexOf(tab);
      const next = ev.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : ev.key === "ArrowLeft" ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { ev.preventDefault(); next.focus(); showTab(next.dataset.channel); }
    });
  }
  $("#kill").addEventListener("click", () => control("_kill", {}));
  $("#stop").addEventListener("click", () => control("_stop", { timeout: 5000, canCallKeepalive: false }));
  $("#input-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    try {
      await api("POST", `/instance/${current.id}/input`, { body: f.data.value,
        headers: { "Content-Type": f.type.value, "x-end-stream": f.end.checked ? "true" : "false" } });
      f.data.value = "";
      banner("Input sent.", true);
    } catch (e) { banner(e.message); }
  });
  const dialog = $("#settings");
  $("#settings-open").addEventListener("click", () => {
    $("#set-token").value = settings.token || "";
    $("#set-akid").value = settings.accessKeyId || "";
    $("#set-secret").value = settings.secretAccessKey || "";
    $("#set-session").value = settings.sessionToken || "";
    $("#set-region").value = settings.region || "";
    dialog.showModal();
  });
  $("#settings-cancel").addEventListener("click", () => dialog.close());
  $("#settings-form").addEventListener("submit", () => {
    settings = { token: $("#set-token").value.trim(), accessKeyId: $("#set-akid").value.trim(),
      secretAccessKey: $("#set-secret").value.trim(), sessionToken: $("#set-session").value.trim(),
      region: $("#set-region").value.trim() };
    sessionStorage.setItem("seqhub-settings", JSON.stringify(settings));
    banner("");
    route();
  });
  api("GET", "/version").then((v) => { $("#hub-version").textContent = `${v.service} ${v.version}`; }).catch(() => {});
  route();
}

wire();
