"""Exercise the Rust demo server with PyPI `py-capnweb` 0.5.0, limited to what that library can
do against a standard Cap'n Web server (see README.md in this directory).

Usage: python py_client.py http://127.0.0.1:PORT   — exits non-zero on any mismatch.
"""

import asyncio
import sys

from capnweb.client import Client, ClientConfig
from capnweb.error import RpcError

failures = 0


def check(name, ok, detail=""):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else '  ' + detail}")
    if not ok:
        failures += 1


async def expect_error(name, coro, message, code):
    try:
        value = await asyncio.wait_for(coro, 10)
        check(name, False, f"resolved with {value!r}")
    except RpcError as err:
        check(name, err.message == message and str(err.code.value) == code, f"got {err.code!r} {err.message!r}")


async def walkthrough(url):
    print(f"--- {url}")
    async with Client(ClientConfig(url=url, timeout=10.0)) as client:
        check("ping", await client.call(0, "ping", []) == "pong")
        login = await client.call(0, "login", ["bob", "bob123"])
        check("login", login.get("username") == "bob" and login.get("role") == "user", repr(login))
        token = login["token"]
        profile = await client.call(0, "getUserProfile", [token])
        check("getUserProfile", profile == {
            "userId": "user2", "username": "bob", "email": "bob@example.com", "role": "user",
        }, repr(profile))
        users = await client.call(0, "listUsers", [])
        check("listUsers (array result)", [u["username"] for u in users] == ["alice", "bob", "charlie"], repr(users))
        echoed = await client.call(0, "echo", [{"nested": [1, [2, 3]], "n": None, "f": 1.5}])
        check("echo nested arrays", echoed == {"nested": [1, [2, 3]], "n": None, "f": 1.5}, repr(echoed))
        await expect_error("bad password", client.call(0, "login", ["bob", "wrong"]),
                           "Invalid username or password", "bad_request")
        await expect_error("unknown method", client.call(0, "nope", []), "Method 'nope' not found", "not_found")


async def main(base):
    await walkthrough(base + "/rpc/batch")
    # Over WebSocket the library sends binary frames holding "push\npull"; plain calls work.
    await walkthrough(base.replace("http", "ws", 1) + "/rpc/ws")
    print("py-capnweb interop: all checks passed" if failures == 0 else f"py-capnweb interop: {failures} check(s) failed")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1])))
