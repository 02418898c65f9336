"""Schemathesis hooks for ordermesh: real tokens, refreshed when a test logs them out.

Generated requests run as an administrator, who may call every operation, and so may also
rename, sign out or delete the very account they run as. So the demo administrator (alice)
only mints them: each token fetch registers a fresh account, alice promotes it to admin, and
that account's token is what schemathesis sends. Alice's own token never leaves this file, and
requests that name alice's account are pointed at an account that does not exist.

Operations of the orders service's private API (reservations, event delivery) need a service
token instead.
"""

import json
import os
import urllib.request
import uuid

import schemathesis

USERS = os.environ["ORDERMESH_USERS_URL"]
LOGIN_PATH = os.environ.get("ORDERMESH_LOGIN_PATH", "/users/login")
PREFIX = LOGIN_PATH[: -len("/users/login")]  # "" on the users service, "/api" on the gateway
CLIENT_SECRET = os.environ.get("ORDERMESH_SERVICE_SECRET", "")
# Routes for services alone; a service token names the one service it is for.
CATALOG_SERVICE_ONLY = r"^(/reservations|/events$)"
USERS_SERVICE_ONLY = r"^/auth/revocations$"
SERVICE_ONLY = f"{CATALOG_SERVICE_ONLY}|{USERS_SERVICE_ONLY}"
ROOT = {"username": "alice", "password": "alice123"}


def call(method, path, body, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(USERS + path, data=json.dumps(body).encode(), headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


_root = call("POST", LOGIN_PATH, ROOT)
ROOT_TOKEN = _root["access_token"]
PROTECTED = {ROOT["username"], str(_root.get("user", {}).get("id", "")), str(_root.get("user", {}).get("email", ""))}
PROTECTED.discard("")


def fresh_administrator():
    name = "st-" + uuid.uuid4().hex[:12]
    password = "contract-" + uuid.uuid4().hex
    user = call("POST", PREFIX + "/users/register", {"username": name, "email": f"{name}@example.com", "password": password})
    user_id = user.get("id") or user.get("user", {}).get("id")
    call("PUT", f"{PREFIX}/users/{user_id}", {"role": "admin"}, ROOT_TOKEN)
    return call("POST", LOGIN_PATH, {"username": name, "password": password})["access_token"]


def bearer(case, token):
    case.headers = case.headers or {}
    case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    params = case.path_parameters or {}
    for key, value in params.items():
        if str(value) in PROTECTED:
            params[key] = "no-such-account-" + uuid.uuid4().hex[:8]


@schemathesis.auth(refresh_interval=30, retry_on=[401]).skip_for(path_regex=SERVICE_ONLY)
class Administrator:
    def get(self, case, ctx):
        return fresh_administrator()

    def set(self, case, data, ctx):
        bearer(case, data)


def service_token(audience):
    body = {"client_id": "orders", "client_secret": CLIENT_SECRET, "audience": audience}
    return call("POST", "/auth/token", body)["access_token"]


@schemathesis.auth(refresh_interval=30, retry_on=[401]).apply_to(path_regex=CATALOG_SERVICE_ONLY)
class ServiceCallingTheCatalog:
    def get(self, case, ctx):
        return service_token("catalog")

    def set(self, case, data, ctx):
        bearer(case, data)


@schemathesis.auth(refresh_interval=30, retry_on=[401]).apply_to(path_regex=USERS_SERVICE_ONLY)
class ServiceCallingUsers:
    def get(self, case, ctx):
        return service_token("users")

    def set(self, case, data, ctx):
        bearer(case, data)
