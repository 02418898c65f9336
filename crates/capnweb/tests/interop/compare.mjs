// Side by side: the npm `capnweb` client runs the same scenarios against the reference server
// (target.mjs) and the Rust `interop_target`, over WebSocket and HTTP batch, and compares
//   1. what the application sees (values, error names and messages), and
//   2. the answers on the wire: every resolve/reject/abort the server sent, by id, with the
//      reference's `["promise", -n]` indirections replaced by what they resolved to and export
//      ids renumbered by first appearance (the two servers number their exports differently).
// Usage: node compare.mjs REFERENCE_URL RUST_URL   — exits non-zero on any difference.
import WebSocket from "ws";
import { newWebSocketRpcSession, newHttpBatchRpcSession, RpcTarget } from "capnweb";

globalThis.WebSocket ??= WebSocket;

const [referenceBase, rustBase] = process.argv.slice(2);
if (!rustBase) {
  console.error("usage: node compare.mjs REFERENCE_URL RUST_URL");
  process.exit(2);
}

class Listener extends RpcTarget {
  notify(text) {
    return `listener got ${text}`;
  }
}

const OVER_SIZE = "x".repeat(5 * 1024 * 1024); // above both servers' 4 MiB message limit

// Each scenario is written pipelined (no await between calls) so it also runs as one HTTP batch.
// `webSocketOnly`: the server calls back into the client, or writes a stream into it, which an
// HTTP batch cannot serve (`batchOnly`: the opposite).
// `promisesAsSent`: on the wire, compare the `["promise", -n]` forms themselves too, not only
// what they resolved to (ids renumbered by first appearance).
// `streamsAsSent`: compare every message the server sent, in order (pipes, stream writes,
// releases).
// `onlyWhetherRejected`: compare only which calls fail, not their errors nor the wire (the two
// servers word limit errors differently, and over HTTP batch the reference's handler throws
// instead of answering; see the crate README).
const scenarios = [
  ["numbers", (api) => [api.square(5), api.square(2.5), api.square("3"), api.add(2, 3), api.add("a", "b"), api.add("a", 1), api.returnNumber(-0.5), api.returnNumber(1e21)]],
  ["special values", (api) => [api.returnNull(), api.returnUndefined(), api.returnInfinity(), api.returnNegativeInfinity(), api.returnNaN()]],
  ["echoes", (api) => [
    api.echo({ list: [1, [2, [3]]], text: "é \u2028 \"q\"", nothing: null, no: undefined, when: new Date(0) }),
    api.echoBytes(new Uint8Array([0, 1, 255])), api.echoDate(new Date(1700000000123)),
    api.echoBigInt(-123456789012345678901234567890n),
  ]],
  ["makers", (api) => [api.makeBytes("AQID/w=="), api.makeDate(1700000000123), api.makeBigInt("123456789012345678901234567890"),
    api.getTimestamp(new Date(5)), api.getBytesLength(new Uint8Array(7)), api.getBigIntString(99n)]],
  ["fibonacci", (api) => [api.generateFibonacci(10), api.generateFibonacci(0), api.generateFibonacci(1), api.generateFibonacci(80)]],
  ["strings and lists", (api) => [api.greet("World"), api.getList(), api.slowMethod(20)]],
  ["thrown RangeError", (api) => [api.throwError()]],
  ["what the target does not have", (api) => [api.nope(1), api.someProperty, api.makeCounter(1).nope(), api.makeCounter(1).secret]],
  ["BigInt of a non-number", (api) => [api.makeBigInt("abc")]],
  ["counter capability", (api) => {
    const counter = api.makeCounter(10);
    return [counter.increment(5), counter.increment(), api.incrementCounter(counter, 2), api.incrementCounter(counter), counter.value];
  }],
  ["a result holding a running call", (api) => [api.callSquare(api, 7)], { promisesAsSent: true }],
  ["map over a list, calling a capture", (api) => [api.getList().map((x) => api.square(x))]],
  ["map into objects", (api) => [api.getList().map((x) => ({ value: x, square: api.square(x), list: [x, api.add(x, 1)] }))]],
  ["listUsers().map(u => u.username)", (api) => [api.listUsers().map((u) => u.username)]],
  ["listOrders().map(o => ({ id, total }))", (api) => [api.listOrders().map((o) => ({ id: o.orderId, total: o.total }))]],
  ["map of a property", (api) => [api.echo([{ username: "bob" }, { username: "alice" }]).map((u) => u.username)]],
  ["map of a single capability", (api) => [api.makeCounter(1).map((c) => c.increment(2))]],
  ["map of null", (api) => [api.returnNull().map((x) => api.square(x))]],
  ["nested maps", (api) => [api.echo([[1, 2], [3]]).map((row) => row.map((x) => api.square(x)))]],
  ["map whose elements fail", (api) => [api.getList().map(() => api.throwError())]],
  ["a client function called by the server", (api) => [api.callFunction((i) => i * 3, 4)], { webSocketOnly: true }],
  ["a registered callback", async (api) => {
    const registered = await api.registerCallback(new Listener());
    return [registered, await api.triggerCallback()];
  }, { webSocketOnly: true }],
  ["a stream from the server", async (api) => {
    const chunks = [];
    for await (const chunk of await api.countTo(3)) chunks.push(chunk);
    return [chunks];
  }, { webSocketOnly: true, streamsAsSent: true }],
  ["a streamed order status feed", async (api) => {
    const statuses = [];
    for await (const change of await api.watchOrder("order1")) statuses.push(change);
    return [statuses];
  }, { webSocketOnly: true, streamsAsSent: true }],
  // The reference answers with a stream whose reading fails once the batch is over; we refuse
  // the call.
  ["reading a stream over HTTP batch fails", (api) => [(async () => {
    for await (const change of await api.watchOrder("order1")) void change;
  })()], { batchOnly: true, onlyWhetherRejected: true }],
  ["a stream from the server that fails", async (api) => {
    const read = (async () => {
      for await (const chunk of await api.countTo(2, true)) void chunk;
    })();
    // Only the error: how many chunks the reader got first is a race in both (an abort
    // discards what the client's stream had queued but not yet handed out).
    return [read];
  }, { webSocketOnly: true }],
  ["a stream to the server", (api) => {
    let k = 0;
    const numbers = new ReadableStream({ pull(c) { if (k < 4) c.enqueue(++k); else c.close(); } });
    return [api.sumStream(numbers)];
  }, { webSocketOnly: true }],
  ["the client's WritableStream written by the server", async (api) => {
    const lines = [];
    const done = await api.writeLines(new WritableStream({ write(line) { lines.push(line); } }), 3);
    return [done, lines];
  }, { webSocketOnly: true, streamsAsSent: true }],
  ["URL, Headers, a Request and a Response", (api) => [
    api.echo(new URL("https://example.com/a b?q=1#f")).then((url) => `URL ${url.href}`),
    api.echo(new Headers([["X-A", "1"], ["content-type", "text/plain"]])).then((h) => `Headers ${JSON.stringify([...h])}`),
    api.echo(new Request("https://example.com/get")).then((r) => `Request ${r.method} ${r.url}`),
    api.echo(new Response(null, { status: 204 })).then((r) => `Response ${r.status}`),
  ]],
  ["a Blob", (api) => [api.echo(new Blob(["hello"], { type: "text/plain" })).then(async (b) => `Blob ${b.type} ${await b.text()}`)],
    { webSocketOnly: true }],
  ["an over-size message ends the session", (api) => [api.echo(OVER_SIZE).then((v) => v.length), api.greet("after")], { onlyWhetherRejected: true }],
];

// ---------------------------------------------------------------------------------------------
// What the application sees, as comparable text.

function show(value) {
  if (value === undefined) return "undefined";
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Date) return `Date(${value.getTime()})`;
  if (value instanceof Uint8Array) return `bytes[${[...value]}]`;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (Array.isArray(value)) return `[${value.map(show).join(",")}]`;
  if (typeof value === "function") return "stub";
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${k}:${show(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

async function outcomes(calls) {
  const settled = await Promise.allSettled(calls);
  return settled.map((s) => (s.status === "fulfilled" ? show(s.value) : `rejected ${show(s.reason)}`));
}

// ---------------------------------------------------------------------------------------------
// The answers on the wire, normalised.

// The answers as sent, promises kept: every resolve/reject/abort, ours before the promises',
// export and promise ids renumbered by first appearance.
function answersAsSent(received) {
  const answers = received.filter(([kind]) => kind === "resolve" || kind === "reject" || kind === "abort");
  const ordered = [...answers.filter((m) => !(m[1] < 0)), ...answers.filter((m) => m[1] < 0)];
  const ids = new Map();
  return ordered.map(([kind, id, expr]) =>
    kind === "abort" ? ["abort"] : [kind, id < 0 ? renumberedId(ids, id) : id, renumber(stripStack(expr), ids)]);
}

// Everything the server sent, in order: pipes, stream writes, answers and releases.
function everythingSent(received) {
  return received.map((message) => (message[0] === "reject" ? [message[0], message[1], stripStack(message[2])] : message));
}

function normaliseAnswers(received) {
  const promises = new Map();
  for (const [kind, id, expr] of received) {
    if ((kind === "resolve" || kind === "reject") && id < 0) promises.set(id, [kind, expr]);
  }
  const answers = [];
  for (const message of received) {
    const [kind, id, expr] = message;
    if (kind === "abort") answers.push(["abort"]);
    if ((kind !== "resolve" && kind !== "reject") || id < 0) continue;
    const failures = [];
    const value = substitute(expr, promises, failures);
    answers.push(kind === "reject" ? ["reject", id, stripStack(value)] : failures.length ? ["reject", id, failures[0]] : ["resolve", id, value]);
  }
  // Keyed by id: which of two calls finishes first is not something a peer promises.
  answers.sort((a, b) => (a[0] === "abort") - (b[0] === "abort") || a[1] - b[1]);
  return renumber(answers, new Map());
}

// Replaces ["promise", -n] by what the server later resolved it to; a rejected one is noted in
// `failures` (the client sees the first such rejection as the call's error).
function substitute(expr, promises, failures) {
  if (!Array.isArray(expr)) {
    if (expr && typeof expr === "object") {
      return Object.fromEntries(Object.entries(expr).map(([k, v]) => [k, substitute(v, promises, failures)]));
    }
    return expr;
  }
  if (expr[0] === "promise" && promises.has(expr[1])) {
    const [kind, inner] = promises.get(expr[1]);
    const value = substitute(inner, promises, failures);
    if (kind === "reject") failures.push(stripStack(value));
    return value;
  }
  return expr.map((item) => substitute(item, promises, failures));
}

function stripStack(expr) {
  return Array.isArray(expr) && expr[0] === "error" ? expr.slice(0, 3) : expr;
}

// Export and promise ids by first appearance: the two servers number their exports differently.
function renumber(expr, ids) {
  if (Array.isArray(expr)) {
    if ((expr[0] === "export" || expr[0] === "promise") && typeof expr[1] === "number" && expr.length === 2) {
      return [expr[0], renumberedId(ids, expr[1])];
    }
    return expr.map((item) => renumber(item, ids));
  }
  if (expr && typeof expr === "object") {
    return Object.fromEntries(Object.entries(expr).map(([k, v]) => [k, renumber(v, ids)]));
  }
  return expr;
}

function renumberedId(ids, id) {
  if (!ids.has(id)) ids.set(id, -(ids.size + 1));
  return ids.get(id);
}

function parseLines(text) {
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

// ---------------------------------------------------------------------------------------------
// Transports with a recorder on what the server sent.

async function overWebSocket(url, scenario) {
  const ws = new WebSocket(url);
  const received = [];
  ws.on("message", (data) => {
    const text = String(data);
    if (text.length < 1024 * 1024) received.push(...parseLines(text));
  });
  const api = newWebSocketRpcSession(ws, new Listener());
  try {
    const seen = await outcomes(await scenario(api));
    await new Promise((resolve) => setTimeout(resolve, 50)); // late promise resolutions
    return { seen, wire: normaliseAnswers(received), sent: answersAsSent(received), all: everythingSent(received) };
  } finally {
    api[Symbol.dispose]?.();
    ws.close();
  }
}

async function overHttpBatch(url, scenario) {
  const realFetch = globalThis.fetch;
  const received = [];
  globalThis.fetch = async (...args) => {
    const response = await realFetch(...args);
    const text = await response.text();
    received.push(...parseLines(text));
    return new Response(text, { status: response.status, headers: response.headers });
  };
  try {
    const api = newHttpBatchRpcSession(url);
    const seen = await outcomes(await scenario(api));
    return { seen, wire: normaliseAnswers(received), sent: answersAsSent(received) };
  } finally {
    globalThis.fetch = realFetch;
  }
}

// ---------------------------------------------------------------------------------------------

const transports = [
  ["WebSocket /", (base, s) => overWebSocket(base.replace(/^http/, "ws") + "/", s), true],
  ["WebSocket /rpc/ws", (base, s) => overWebSocket(base.replace(/^http/, "ws") + "/rpc/ws", s), true],
  ["HTTP batch /", (base, s) => overHttpBatch(base + "/", s), false],
  ["HTTP batch /rpc/batch", (base, s) => overHttpBatch(base + "/rpc/batch", s), false],
];

let failures = 0;
let compared = 0;
for (const [transportName, run, isWebSocket] of transports) {
  console.log(`--- ${transportName}`);
  for (const [name, scenario, options = {}] of scenarios) {
    if ((options.webSocketOnly && !isWebSocket) || (options.batchOnly && isWebSocket)) continue;
    const reference = await run(referenceBase, scenario);
    const rust = await run(rustBase, scenario);
    const view = options.onlyWhetherRejected ? (seen) => seen.map((s) => s.startsWith("rejected")) : (seen) => seen;
    const seenSame = JSON.stringify(view(reference.seen)) === JSON.stringify(view(rust.seen));
    const wire = options.streamsAsSent ? "all" : options.promisesAsSent ? "sent" : "wire";
    const wireSame = options.onlyWhetherRejected || JSON.stringify(reference[wire]) === JSON.stringify(rust[wire]);
    compared++;
    if (seenSame && wireSame) {
      console.log(`same ${name}: ${reference.seen.join(" | ")}`);
      if (options.onlyWhetherRejected) console.log(`     (rust: ${rust.seen.join(" | ")})`);
      continue;
    }
    failures++;
    console.log(`DIFF ${name}`);
    if (!seenSame) console.log(`     reference sees ${reference.seen.join(" | ")}\n     rust sees      ${rust.seen.join(" | ")}`);
    if (!wireSame) console.log(`     reference wire ${JSON.stringify(reference[wire])}\n     rust wire      ${JSON.stringify(rust[wire])}`);
  }
}
console.log(failures === 0 ? `compare: all ${compared} scenarios answer the same` : `compare: ${failures} of ${compared} scenarios differ`);
process.exit(failures === 0 ? 0 : 1);
