// The interop test target served by the npm `capnweb` reference, the yardstick the Rust
// `interop_target` example is compared with (compare.mjs). Same methods, same semantics.
// Usage: node target.mjs [PORT]   — prints `listening on http://127.0.0.1:<port>`; serves
// WebSocket and HTTP batch on every path, as a plain Node server mounting capnweb does.
import http from "node:http";
import WebSocket, { WebSocketServer } from "ws";
import { RpcTarget, newWebSocketRpcSession, nodeHttpBatchRpcResponse } from "capnweb";

globalThis.WebSocket ??= WebSocket;

// The same message limit as the Rust crate's default (Limits::max_message_bytes), so an
// over-size message is refused by both; the reference's own default is 32 Mi code units.
const options = { limits: { maxMessageSize: 4 * 1024 * 1024 } };

const USERS = ["alice", "bob", "charlie"];
const ORDERS = [["order1", 1059.97, "pending"], ["order2", 29.99, "shipped"], ["order3", 1000, "cancelled"]];
const STATUSES = ["pending", "confirmed", "shipped", "delivered"];

class Counter extends RpcTarget {
  #count;
  constructor(start = 0) {
    super();
    this.#count = start;
  }
  increment(amount = 1) {
    this.#count += amount;
    return this.#count;
  }
  get value() {
    return this.#count;
  }
}

class TestTarget extends RpcTarget {
  #callback;
  square(i) { return i * i; }
  // Not awaited, as in the reference's own TestTarget: the result holds a call still running.
  callSquare(self, i) { return { result: self.square(i) }; }
  async callFunction(func, i) { return { result: await func(i) }; }
  throwError() { throw new RangeError("test error"); }
  makeCounter(i) { return new Counter(i); }
  incrementCounter(counter, i = 1) { return counter.increment(i); }
  generateFibonacci(length) {
    const out = [];
    for (let i = 0; i < length; i++) out.push(i < 2 ? i : out[i - 1] + out[i - 2]);
    return out;
  }
  returnNull() { return null; }
  returnUndefined() { return undefined; }
  returnNumber(i) { return i; }
  echo(value) { return value; }
  echoBytes(bytes) { return bytes; }
  echoDate(date) { return date; }
  echoBigInt(big) { return big; }
  returnInfinity() { return Infinity; }
  returnNegativeInfinity() { return -Infinity; }
  returnNaN() { return NaN; }
  makeBytes(base64) { return new Uint8Array(Buffer.from(base64, "base64")); }
  makeDate(ms) { return new Date(ms); }
  makeBigInt(text) { return BigInt(text); }
  getTimestamp(date) { return date.getTime(); }
  getBytesLength(bytes) { return bytes.length; }
  getBigIntString(big) { return big.toString(); }
  add(a, b) { return a + b; }
  async slowMethod(ms) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return `slow result after ${ms}ms`;
  }
  greet(name) { return `Hello, ${name}!`; }
  getList() { return [1, 2, 3, 4, 5]; }
  // The shop's shapes (not in the reference's own TestTarget), for .map() and a feed.
  listUsers() {
    return USERS.map((username, i) => ({ id: `user${i + 1}`, username, role: i === 0 ? "admin" : "user" }));
  }
  listOrders() {
    return ORDERS.map(([orderId, total, status]) => ({ orderId, total, status }));
  }
  watchOrder(orderId) {
    let next = 0;
    return new ReadableStream({
      pull(controller) {
        if (next < STATUSES.length) controller.enqueue({ orderId, status: STATUSES[next++] });
        else controller.close();
      },
    });
  }
  // Streams (not in the reference's own TestTarget): one made here, one read here, and the
  // client's WritableStream written here.
  countTo(n, failAtEnd = false) {
    let i = 0;
    return new ReadableStream({
      pull(controller) {
        if (i < n) controller.enqueue({ i: i++ });
        else if (failAtEnd) controller.error(new RangeError("ran out"));
        else controller.close();
      },
    });
  }
  async sumStream(readable) {
    let total = 0;
    for await (const chunk of readable) total += chunk;
    return total;
  }
  async writeLines(writable, n) {
    const writer = writable.getWriter();
    for (let i = 0; i < n; i++) await writer.write(`line ${i}`);
    await writer.close();
    return "done";
  }
  registerCallback(callback) {
    this.#callback = callback.dup();
    return "registered";
  }
  async triggerCallback() {
    return this.#callback ? await this.#callback.notify("ping") : "no callback";
  }
}

const server = http.createServer((req, res) => {
  nodeHttpBatchRpcResponse(req, res, new TestTarget(), options).catch((err) => {
    res.writeHead(500);
    res.end(String(err));
  });
});
new WebSocketServer({ server }).on("connection", (ws) => newWebSocketRpcSession(ws, new TestTarget(), options));
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
