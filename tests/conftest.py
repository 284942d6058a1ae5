"""Shared fixtures: infrastructure up (via the project's script), one platform per session."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.platform import JWT_SECRET, ROOT, Platform

os.environ.setdefault("JWT_SECRET", JWT_SECRET)


@pytest.fixture(scope="session")
def infra() -> None:
    """Kafka + PostgreSQL/PostGIS, brought up idempotently by scripts/infra.sh."""
    subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up"], check=True)


def _make_platform(tmp: Path, **env: str) -> Platform:
    p = Platform(tmp, extra_env=env)
    p.create_database()
    return p


@pytest.fixture(scope="session")
async def platform(infra, tmp_path_factory) -> AsyncIterator[Platform]:
    """One worker + the gateway, shared by the tests that do not restart processes.

    Every test signs in from 127.0.0.1, and some fail on purpose: the per-address sign-in
    throttle would lock them all out of each other, so it is out of reach here (its own test,
    test_identity.test_sign_in_throttle, runs on a platform of its own)."""
    p = _make_platform(tmp_path_factory.mktemp("platform"),
                       LOGIN_MAX_FAILURES_PER_ADDRESS="100000")
    await p.start_worker_and_gateway()
    yield p
    p.stop_all()
    p.drop_database()


@pytest.fixture
def fresh_platform(infra, tmp_path) -> Iterator[Platform]:
    """A private platform for tests that start, kill or restart processes themselves."""
    p = _make_platform(tmp_path)
    yield p
    p.stop_all()
    p.drop_database()


class Client:
    """An HTTP client for the gateway that keeps a bearer token, like the mobile apps do."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None = None):
        self.session = session
        self.base = base
        self.token = token
        self.user: dict[str, Any] = {}
        self.refresh_token: str | None = None

    async def call(self, method: str, path: str, json: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None, data: Any = None):
        hdrs = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        async with self.session.request(method, self.base + path, json=json, data=data,
                                        headers=hdrs) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = await resp.text()
            return resp.status, body

    async def get(self, path: str, **kw):
        return await self.call("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw):
        return await self.call("POST", path, json, **kw)

    async def put(self, path: str, json: Any = None, **kw):
        return await self.call("PUT", path, json, **kw)

    async def delete(self, path: str, **kw):
        return await self.call("DELETE", path, **kw)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(platform, http) -> Client:
    return Client(http, platform.base_url)


@pytest.fixture
def new_client(platform, http):
    """Factory of clients signed up through the API: `await new_client("owner")`."""

    async def make(role: str = "owner", **fields: Any) -> Client:
        c = Client(http, platform.base_url)
        email = fields.pop("email", f"{role}-{uuid.uuid4().hex[:10]}@kilat.test")
        body = {"email": email, "password": "Secret123!", "full_name": f"Test {role.title()}",
                "phone": "+60123456789", "role": role, **fields}
        status, resp = await c.post("/api/v1/auth/register", body)
        assert status == 201, resp
        c.token = resp["data"]["access_token"]
        c.refresh_token = resp["data"]["refresh_token"]
        c.user = resp["data"]["user"]
        return c

    return make


@pytest.fixture
async def new_admin(platform, http) -> Client:
    return await signed_in_admin(platform, http)


async def signed_in_admin(platform: Platform, http: aiohttp.ClientSession) -> Client:
    """An admin client: made by `kilat create-admin` (sign-up refuses the role), then logged in."""
    email, password = f"admin-{uuid.uuid4().hex[:10]}@kilat.test", "Admin-Secret-123"
    await platform.kilat("create-admin", "--email", email, "--password", password,
                         "--full-name", "Test Admin")
    c = Client(http, platform.base_url)
    status, resp = await c.post("/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, resp
    c.token, c.refresh_token = resp["data"]["access_token"], resp["data"]["refresh_token"]
    c.user = resp["data"]["user"]
    return c


def pytest_addoption(parser) -> None:
    parser.addoption("--broker-faults", action="store_true",
                     help="run the broker fault tests on the three-broker cluster "
                          "(make test-faults); without it they are deselected")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "infra_faults: stops shared infrastructure; runs after every other test")
    config.addinivalue_line(
        "markers", "broker_faults: kills brokers of the three-broker cluster (--broker-faults)")


def pytest_collection_modifyitems(config, items) -> None:
    """Tests that stop PostgreSQL or Kafka run last, so no other test sees the outage. Broker
    fault tests need the three-broker cluster: deselected (not passed) unless asked for."""
    if not config.getoption("--broker-faults"):
        faults = [item for item in items if item.get_closest_marker("broker_faults")]
        if faults:
            config.hook.pytest_deselected(items=faults)
            items[:] = [item for item in items if not item.get_closest_marker("broker_faults")]
    items.sort(key=lambda item: item.get_closest_marker("infra_faults") is not None)
