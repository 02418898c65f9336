// The seed-000 walkthrough with the real npm `capnweb` client against a running ordermesh.
// Usage: node walkthrough.mjs http://127.0.0.1:PORT   (the gateway) — exits non-zero on a mismatch.
import WebSocket from "ws";
import { newWebSocketRpcSession, newHttpBatchRpcSession } from "capnweb";

globalThis.WebSocket ??= WebSocket;

const base = process.argv[2];
const wsUrl = base.replace(/^http/, "ws") + "/rpc/ws";
const items = [
  { name: "Laptop", price: 999.99, quantity: 1 },
  { name: "Mouse", price: 29.99, quantity: 2 },
];

let failures = 0;
const check = (name, ok, detail = "") => {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : "  " + detail}`);
  if (!ok) failures++;
};
const same = (name, actual, expected) =>
  check(name, JSON.stringify(actual) === JSON.stringify(expected), `got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
async function rejects(name, promise, message) {
  try {
    check(name, false, `resolved with ${JSON.stringify(await promise)}`);
  } catch (err) {
    check(name, err.message === message, `message was ${JSON.stringify(err.message)}`);
  }
}

async function restOrders(token) {
  const res = await fetch(base + "/api/orders?per_page=100", { headers: { authorization: `Bearer ${token}` } });
  return (await res.json()).items;
}

async function overWebSocket() {
  console.log(`--- WebSocket ${wsUrl}`);
  const api = newWebSocketRpcSession(wsUrl);
  const login = await api.login("bob", "bob123");
  same("login", [login.username, login.role], ["bob", "user"]);
  const user = await api.getUserByToken(login.token);
  same("user.getUsername()", await user.getUsername(), "bob");
  same("user.getId() is the login's userId", await user.getId(), login.userId);
  same("user.email (property)", await user.email, "bob@example.com");
  same("user.hasPermission(order.cancel)", await user.hasPermission("order.cancel"), false);
  same("getUserProfile", (await api.getUserProfile(login.token)).username, "bob");

  const order = await api.createOrder(user, items);
  same("createOrder", [order.total, order.status, order.itemCount], [1059.97, "pending", 2]);
  const listed = await api.listOrders(user);
  check("listOrders has it", listed.some((o) => o.orderId === order.orderId), JSON.stringify(listed));
  const rest = await restOrders(login.token);
  check("the RPC order is in GET /api/orders", rest.some((o) => o.id === order.orderId && o.total === "1059.97"), JSON.stringify(rest));

  await rejects("bob's cancel is refused", api.cancelOrder(user, order.orderId), "You don't have permission to cancel orders");
  await rejects("bad password", api.login("bob", "wrong"), "Invalid username or password");

  // A streamed feed of the order's status: now, then the cancellation, then its end.
  const feed = (await api.watchOrder(user, order.orderId)).getReader();
  same("watchOrder: the status now", (await feed.read()).value, { orderId: order.orderId, status: "pending" });
  await rejects("bob may not watch every order", api.watchOrders(user), "Only administrators watch every order");

  const alice = await api.getUserByToken((await api.login("alice", "alice123")).token);
  same("alice cancels", await api.cancelOrder(alice, order.orderId), { orderId: order.orderId, status: "cancelled" });
  same("watchOrder: the cancellation", (await feed.read()).value, { orderId: order.orderId, status: "cancelled" });
  same("watchOrder: then the feed ends", (await feed.read()).done, true);
  same("bob sees it cancelled", (await api.listOrders(user)).find((o) => o.orderId === order.orderId)?.status, "cancelled");
  const users = await api.listUsers(alice);
  check("alice lists users", users.length >= 3, JSON.stringify(users));

  // .map() runs on the server: one round trip, whatever the length of the list.
  same("listUsers().map(u => u.username)", await api.listUsers(alice).map((u) => u.username), users.map((u) => u.username));
  const mappedOrders = await api.listOrders(user).map((o) => ({ id: o.orderId, status: o.status }));
  same("listOrders().map(o => ({id, status}))", mappedOrders.find((o) => o.id === order.orderId), { id: order.orderId, status: "cancelled" });
  same("a map that calls a captured capability per element",
    await api.listUsers(alice).map((u) => ({ name: u.username, bobMayCancel: user.hasPermission("order.cancel") })),
    users.map((u) => ({ name: u.username, bobMayCancel: false })));

  // Pipelining: the user is used before the login answer arrives.
  const userP = api.getUserByToken(api.login("charlie", "charlie123").token);
  const [name, pipelined] = await Promise.all([userP.getUsername(), api.createOrder(userP, items)]);
  same("pipelined chain", [name, pipelined.total], ["charlie", 1059.97]);
  api[Symbol.dispose]?.();
}

async function overHttpBatch() {
  console.log(`--- HTTP batch ${base}/rpc/batch (login → getUserByToken → createOrder in one request)`);
  const realFetch = globalThis.fetch;
  let posts = 0;
  globalThis.fetch = (...args) => {
    if (String(args[0]).endsWith("/rpc/batch")) posts++;
    return realFetch(...args);
  };
  try {
    const api = newHttpBatchRpcSession(base + "/rpc/batch");
    const loginP = api.login("bob", "bob123");
    const userP = api.getUserByToken(loginP.token);
    const orderP = api.createOrder(userP, items);
    const namesP = api.listOrders(userP).map((o) => o.orderId);
    const [login, order, names] = await Promise.all([loginP, orderP, namesP]);
    same("one HTTP request", posts, 1);
    check("listOrders().map() in the same batch", Array.isArray(names) && names.every((n) => typeof n === "string"), JSON.stringify(names));
    same("batch order", [order.total, order.status, order.itemCount], [1059.97, "pending", 2]);
    const rest = await restOrders(login.token);
    check("the batch order is in GET /api/orders", rest.some((o) => o.id === order.orderId), JSON.stringify(rest));
  } finally {
    globalThis.fetch = realFetch;
  }
}

try {
  await overWebSocket();
  await overHttpBatch();
} catch (err) {
  failures++;
  console.log("FAIL uncaught:", err?.stack ?? err);
}
console.log(failures === 0 ? "npm capnweb walkthrough: all checks passed" : `npm capnweb walkthrough: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
