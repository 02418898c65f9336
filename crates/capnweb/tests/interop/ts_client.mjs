// Walkthrough of the Rust demo server with the real npm `capnweb` client (0.12.x).
// Usage: node ts_client.mjs http://127.0.0.1:PORT   — exits non-zero on any mismatch.
import WebSocket from "ws";
import { newWebSocketRpcSession, newHttpBatchRpcSession, RpcTarget } from "capnweb";

// Node 20 has no global WebSocket; the client constructs one from the URL.
globalThis.WebSocket ??= WebSocket;

const base = process.argv[2];
if (!base) {
  console.error("usage: node ts_client.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const wsBase = base.replace(/^http/, "ws");
const items = [
  { name: "Laptop", price: 999.99, quantity: 1 },
  { name: "Mouse", price: 29.99, quantity: 2 },
];

let failures = 0;
function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : "  " + detail}`);
  if (!ok) failures++;
}
function same(name, actual, expected) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  check(name, a === e, `got ${a}, expected ${e}`);
}
async function rejects(name, promise, pattern) {
  try {
    const value = await promise;
    check(name, false, `resolved with ${JSON.stringify(value)}`);
  } catch (err) {
    const ok = pattern instanceof RegExp ? pattern.test(err.message) : err.message === pattern;
    check(name, ok, `message was ${JSON.stringify(err.message)}`);
  }
}
const dispose = (stub) => stub?.[Symbol.dispose]?.();

class Listener extends RpcTarget {
  onEvent(text) {
    return `got: ${text}`;
  }
}

async function webSocketWalkthrough(path) {
  console.log(`--- WebSocket ${path}`);
  const api = newWebSocketRpcSession(wsBase + path);
  same("ping", await api.ping(), "pong");

  const login = await api.login("bob", "bob123");
  same("login fields", [login.userId, login.username, login.role], ["user2", "bob", "user"]);
  check("login token", /^token_bob_\d+$/.test(login.token), login.token);

  const user = await api.getUserByToken(login.token);
  same("user.getId()", await user.getId(), "user2");
  same("user.getUsername()", await user.getUsername(), "bob");
  same("user.getEmail()", await user.getEmail(), "bob@example.com");
  same("user.role (property)", await user.role, "user");
  same("user.hasPermission(order.cancel)", await user.hasPermission("order.cancel"), false);

  const order = await api.createOrder(user, items);
  same("createOrder", [order.total, order.status, order.itemCount], [1059.97, "pending", 2]);
  check("orderId", /^order\d+$/.test(order.orderId), order.orderId);

  const orders = await api.listOrders(user);
  check("listOrders has the order", orders.some((o) => o.orderId === order.orderId && o.status === "pending"), JSON.stringify(orders));

  await rejects("cancelOrder as bob", api.cancelOrder(user, order.orderId), "You don't have permission to cancel orders");
  await rejects("unknown method", api.nope(1), "Method 'nope' not found");
  await rejects("bad password", api.login("bob", "wrong"), "Invalid username or password");

  // Special values survive a round trip through the Rust codec.
  const sent = {
    date: new Date(1700000000123), big: 12345678901234567890n, bytes: new Uint8Array([1, 2, 3, 250]),
    nested: [1, [2, [3]]], undef: undefined, inf: Infinity, ninf: -Infinity, nan: NaN,
    text: "line\nbreak \u2028 \"quoted\" é", nil: null, err: new RangeError("bad range"),
  };
  const back = await api.echo(sent);
  same("echo date", back.date instanceof Date && back.date.getTime(), 1700000000123);
  same("echo bigint", typeof back.big === "bigint" && back.big.toString(), "12345678901234567890");
  same("echo bytes", Array.from(back.bytes), [1, 2, 3, 250]);
  same("echo nested arrays", back.nested, [1, [2, [3]]]);
  check("echo undefined", "undef" in back && back.undef === undefined, JSON.stringify(Object.keys(back)));
  same("echo non-finite", [back.inf, back.ninf, Number.isNaN(back.nan)], [Infinity, -Infinity, true]);
  same("echo text and null", [back.text, back.nil], [sent.text, null]);
  check("echo error", back.err instanceof Error && back.err.message === "bad range", String(back.err));

  // Pipelining: four dependent calls without awaiting in between.
  const loginP = api.login("alice", "alice123");
  const userP = api.getUserByToken(loginP.token);
  const idP = userP.getId();
  const orderP = api.createOrder(userP, items);
  same("pipelined getId", await idP, "user1");
  same("pipelined createOrder", (await orderP).status, "pending");

  const alice = await api.getUserByToken((await api.login("alice", "alice123")).token);
  same("admin cancels", await api.cancelOrder(alice, order.orderId), { orderId: order.orderId, status: "cancelled" });
  const after = await api.listOrders(user);
  same("bob sees cancelled", after.find((o) => o.orderId === order.orderId)?.status, "cancelled");

  // The server calls back into an object of ours.
  same("server -> client call", await api.notifyMe(new Listener(), "hi"), "got: hi");

  dispose(user);
  dispose(alice);
  dispose(api);
}

async function batchWalkthrough() {
  console.log("--- HTTP batch /api (pipelined chain in one request)");
  const realFetch = globalThis.fetch;
  let posts = 0;
  globalThis.fetch = (...args) => {
    posts++;
    return realFetch(...args);
  };
  try {
    const api = newHttpBatchRpcSession(base + "/api");
    const loginP = api.login("bob", "bob123");
    const userP = api.getUserByToken(loginP.token);
    const orderP = api.createOrder(userP, items);
    const idP = userP.getId();
    const [login, order, id] = await Promise.all([loginP, orderP, idP]);
    same("one HTTP request", posts, 1);
    same("batch login", [login.username, login.role], ["bob", "user"]);
    same("batch getId", id, "user2");
    same("batch createOrder", [order.total, order.status, order.itemCount], [1059.97, "pending", 2]);
  } finally {
    globalThis.fetch = realFetch;
  }

  console.log("--- HTTP batch /rpc/batch");
  const api2 = newHttpBatchRpcSession(base + "/rpc/batch");
  // Both awaited before the batch goes out: the client only pulls what is awaited.
  const [r1, r2] = await Promise.allSettled([api2.login("bob", "wrong"), api2.ping()]);
  same("batch error", r1.status === "rejected" && r1.reason.message, "Invalid username or password");
  same("batch ping", r2.value, "pong");

  const api3 = newHttpBatchRpcSession(base + "/api");
  await rejects("batch: calls back into the client fail fast", api3.notifyMe(new Listener(), "hi"), /cannot call back/);
}

try {
  await webSocketWalkthrough("/api");
  await webSocketWalkthrough("/rpc/ws");
  await batchWalkthrough();
} catch (err) {
  failures++;
  console.log("FAIL uncaught:", err?.stack ?? err);
}
console.log(failures === 0 ? "ts interop: all checks passed" : `ts interop: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
