"""The seed-000 walkthrough with PyPI `py-capnweb` 0.5.0 against a running ordermesh.

That library cannot call methods on capabilities it receives from a standard server (see
crates/capnweb/tests/interop/README.md), so it passes the token where the seed passes the User
capability — the shop accepts either. Usage: python walkthrough.py http://127.0.0.1:PORT
"""

import asyncio
import sys

from capnweb.client import Client, ClientConfig
from capnweb.error import RpcError

failures = 0
ITEMS = [{"name": "Laptop", "price": 999.99, "quantity": 1}, {"name": "Mouse", "price": 29.99, "quantity": 2}]


def check(name, ok, detail=""):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else '  ' + detail}")
    if not ok:
        failures += 1


async def refused(name, coro, message):
    try:
        value = await asyncio.wait_for(coro, 10)
        check(name, False, f"resolved with {value!r}")
    except RpcError as err:
        check(name, err.message == message, f"got {err.code!r} {err.message!r}")


async def walkthrough(url):
    print(f"--- {url}")
    async with Client(ClientConfig(url=url, timeout=10.0)) as client:
        bob = await client.call(0, "login", ["bob", "bob123"])
        check("login", bob.get("username") == "bob" and bob.get("role") == "user", repr(bob))
        profile = await client.call(0, "getUserProfile", [bob["token"]])
        check("getUserProfile", profile.get("email") == "bob@example.com", repr(profile))
        order = await client.call(0, "createOrder", [bob["token"], ITEMS])
        check("createOrder", order.get("total") == 1059.97 and order.get("status") == "pending", repr(order))
        orders = await client.call(0, "listOrders", [bob["token"]])
        check("listOrders", any(o["orderId"] == order["orderId"] for o in orders), repr(orders))
        await refused("bob's cancel is refused", client.call(0, "cancelOrder", [bob["token"], order["orderId"]]),
                      "You don't have permission to cancel orders")
        alice = await client.call(0, "login", ["alice", "alice123"])
        done = await client.call(0, "cancelOrder", [alice["token"], order["orderId"]])
        check("alice cancels", done == {"orderId": order["orderId"], "status": "cancelled"}, repr(done))
        await refused("bad password", client.call(0, "login", ["bob", "wrong"]), "Invalid username or password")


async def main(base):
    await walkthrough(base + "/rpc/batch")
    await walkthrough(base.replace("http", "ws", 1) + "/rpc/ws")
    print("py-capnweb walkthrough: all checks passed" if failures == 0 else f"py-capnweb walkthrough: {failures} check(s) failed")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
