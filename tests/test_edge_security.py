"""Trust at the edge, against the real platform through the gateway: no token can be signed
with a string of the repository, the generated development secret is private and shared,
the edge headers, and path tricks that would reach a worker's internal routes.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import aiohttp
import jwt

from tests.conftest import signed_in_admin
from tests.platform import ROOT, Platform

ADMIN_ROUTE = "/api/v1/admin/stats/users"
_LITERAL = re.compile(r'"([^"\n]{8,})"|\'([^\'\n]{8,})\'')
_PUNCT = "\"'`,;:()[]{}<>"


def repository_strings() -> set[str]:
    """Every string literal and every whitespace-separated word (also without surrounding
    punctuation, and the value of `NAME=value`) of 8 characters or more in the files git
    tracks: whatever someone could copy from the repository as a secret."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    found: set[str] = set()
    for name in filter(None, listed):
        try:
            data = (ROOT / name).read_bytes()
        except OSError:  # deleted in the work tree
            continue
        if b"\0" in data[:8192]:
            continue
        text = data.decode("utf-8", "replace")
        for match in _LITERAL.finditer(text):
            found.add(match.group(1) or match.group(2))
        for word in text.split():
            for candidate in (word, word.strip(_PUNCT), word.rsplit("=", 1)[-1].strip(_PUNCT)):
                if len(candidate) >= 8:
                    found.add(candidate)
    return found


async def pipelined_statuses(port: int, path: str, tokens: list[str]) -> list[int]:
    """The status of `GET path` with each bearer token, pipelined on one keep-alive connection
    (tens of thousands of requests stay cheap for the client; answers come back in order)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses: list[int] = []
    try:
        for i in range(0, len(tokens), 64):
            chunk = tokens[i:i + 64]
            writer.write(b"".join(
                f"GET {path} HTTP/1.1\r\nHost: kilat\r\nAuthorization: Bearer {t}\r\n\r\n"
                .encode() for t in chunk))
            await writer.drain()
            for _ in chunk:
                statuses.append(int((await reader.readline()).split()[1]))
                length = None
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                assert length is not None, "answer without Content-Length"
                await reader.readexactly(length)
    finally:
        writer.close()
    return statuses


async def start(p: Platform) -> None:
    worker = p.start_worker("w1")
    await p.wait_ready(worker)
    await p.wait_ready(p.start_gateway(RATE_LIMIT_PER_MIN="1000000"), "/health")


async def test_no_string_in_the_repository_signs_a_token_a_running_worker_accepts(
        infra, tmp_path: Path):
    secret_file = tmp_path / "install" / "secrets" / "jwt-secret"
    # Development mode with no JWT_SECRET at all (conftest sets one for every other platform).
    p = Platform(tmp_path, extra_env={"KILAT_ENV": "development", "JWT_SECRET": "",
                                      "KILAT_SECRET_FILE": str(secret_file)})
    p.create_database()
    try:
        await start(p)
        mode = secret_file.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, oct(mode)
        secret = secret_file.read_text().strip()
        assert len(secret) >= 43  # ≥ 256 bits of URL-safe base64

        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8)) as http:
            admin = await signed_in_admin(p, http)

            async def status(token: str) -> int:
                async with http.get(p.base_url + ADMIN_ROUTE,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    return r.status

            # The forgeries copy a real admin's claims, so only the signature can fail them:
            # signed with the install's secret, the same claims are accepted.
            claims = jwt.decode(admin.token, options={"verify_signature": False})
            assert await status(admin.token) == 200
            assert await status(jwt.encode(claims, secret, algorithm="HS256")) == 200

            candidates = sorted(repository_strings())
            assert len(candidates) > 1000  # the scan did read the repository
            assert secret not in candidates
            t0 = time.monotonic()
            with warnings.catch_warnings():  # short keys are the point here
                warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                tokens = [jwt.encode(claims, c, algorithm="HS256") for c in candidates]
            lanes = 32
            answers = await asyncio.gather(*(
                pipelined_statuses(p.gateway.port, ADMIN_ROUTE, tokens[n::lanes])
                for n in range(lanes)))
            statuses: dict[int, list[str]] = {}
            for n, lane in enumerate(answers):
                for c, s in zip(candidates[n::lanes], lane, strict=True):
                    statuses.setdefault(s, []).append(c)
            print(f"{len(candidates)} candidates in {time.monotonic() - t0:.1f}s")
            assert set(statuses) == {401}, {s: c[:5] for s, c in statuses.items() if s != 401}

            # A restart reuses the file: a token issued before it still works.
            p.stop_all()
            p.workers.clear()
            await start(p)
            assert secret_file.read_text().strip() == secret
            assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
            assert await status(admin.token) == 200
    finally:
        p.stop_all()
        p.drop_database()


def test_processes_starting_together_end_with_one_secret(tmp_path: Path):
    """Workers, the gateway and commands of one install that start at the same moment all
    read one secret (created once, never half-written)."""
    secret_file = tmp_path / "secrets" / "jwt-secret"
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env.update(KILAT_ENV="development", KILAT_SECRET_FILE=str(secret_file),
               PYTHONPATH=str(ROOT))
    code = "from core.config import jwt_secret; print(jwt_secret())"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    secrets_read = {out.decode().strip() for out, _err in outputs}
    assert secrets_read == {secret_file.read_text().strip()}
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert [f.name for f in secret_file.parent.iterdir()] == ["jwt-secret"]  # no leftovers

    # A secret file others can read is refused rather than trusted.
    secret_file.chmod(0o644)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True)
    assert result.returncode != 0 and b"readable by others" in result.stderr


def test_the_repository_ignores_the_generated_secret():
    default = ROOT / "var" / "secrets" / "jwt-secret"
    result = subprocess.run(["git", "check-ignore", "-q", str(default)], cwd=ROOT)
    assert result.returncode == 0


# ---------------------------------------------------------------- headers (item 7)

async def test_edge_headers_through_the_gateway(platform, http):
    base = platform.base_url
    auth_calls = [
        ("POST", "/api/v1/auth/login", {"email": "nobody@kilat.test", "password": "x" * 10}),
        ("POST", "/api/v1/auth/register", {"email": "bad"}),
        ("GET", "/api/v1/auth/profile", None),
        ("POST", "/api/v1/auth/refresh", {"refresh_token": "x"}),
    ]
    for method, path, body in auth_calls:
        async with http.request(method, base + path, json=body) as r:
            assert r.status < 500, (path, r.status)
            assert r.headers.get("Cache-Control") == "no-store", path
            assert r.headers.getall("Server") == ["kilat"], path
    # Other answers: worker (proxied), the gateway's own, the gateway's errors.
    for path in ("/api/v1/subscriptions/plans", "/health", "/openapi.json", "/nowhere"):
        async with http.get(base + path) as r:
            await r.read()
            assert r.headers.getall("Server") == ["kilat"], path
            assert "Strict-Transport-Security" not in r.headers, path  # plain HTTP
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    # No trusted proxy is configured: a client claiming HTTPS does not get HSTS.
    async with http.get(base + "/health", headers={"X-Forwarded-Proto": "https"}) as r:
        assert "Strict-Transport-Security" not in r.headers


async def test_a_worker_sends_hsts_only_behind_a_trusted_proxy(fresh_platform: Platform, http):
    worker = fresh_platform.start_worker("w1", KILAT_TRUSTED_PROXIES="127.0.0.1")
    await fresh_platform.wait_ready(worker)
    async with http.get(worker.url + "/health", headers={"X-Forwarded-Proto": "https"}) as r:
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert r.headers["Server"] == "kilat"
    async with http.get(worker.url + "/health") as r:
        assert "Strict-Transport-Security" not in r.headers
