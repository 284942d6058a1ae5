"""Gateway overhead: the same load sent directly to an upstream, through nginx and through the
Kilat gateway, in the same run.

Starts a small upstream (a separate process answering a 20-item JSON list like a worker's GET),
nginx as the reference reverse proxy when it is installed (one worker process, keep-alive to the
upstream, access log on; the row is skipped when `nginx` is not on the PATH) and the gateway
with every edge feature on (rate limit, CORS for the `Origin` the client sends, request ids,
access log to a file, security headers). Then it sends `--requests` GETs with `--concurrency`
keep-alive connections to each and prints throughput, p50/p99 latency, the ratios to direct
and, as the last line, a JSON object with every figure.

    .venv/bin/python -m bench.gateway_bench --requests 3000 --concurrency 20
    .venv/bin/python -m bench.gateway_bench --token       # a signed bearer token on each GET
    .venv/bin/python -m bench.gateway_bench --profile gw.svg   # py-spy record of the gateway

The load generator (bench/harness.py) is a small HTTP/1.1 keep-alive loop on raw asyncio, so
that it takes little of the CPU it shares with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import cpu_seconds, load, pct
from tests.platform import JWT_SECRET, ROOT, VENV_BIN, free_port

UPSTREAM_CODE = """
import sys
from aiohttp import web
body = {"success": True, "data": [{"id": i, "name": "shop %d" % i} for i in range(20)]}
async def h(request):
    return web.json_response(body)
app = web.Application()
app.router.add_get("/{tail:.*}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream kilat {{ server 127.0.0.1:{up_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://kilat;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""

ORIGIN = "http://localhost:3000"


async def wait_up(port: int, path: str) -> None:
    for _ in range(400):
        try:
            await load(port, path, 1, 1, {})
            return
        except (OSError, RuntimeError):
            await asyncio.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not come up")


def start_nginx(tmp: Path, up_port: int) -> tuple[subprocess.Popen | None, int]:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if binary is None:
        return None, 0
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, up_port=up_port, port=port))
    popen = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return popen, port


def bearer_token() -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": "bench", "user_id": "00000000-0000-4000-8000-000000000001",
                       "role": "owner", "token_type": "access", "iss": "kilat-pet-runner",
                       "iat": now, "exp": now + 3600}, JWT_SECRET, algorithm="HS256")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--token", action="store_true",
                        help="send a signed bearer token (the rate limit verifies it)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the gateway row with py-spy into FILE (.svg or .txt)")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx row")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every row this many times, interleaved; the best round "
                             "of each row counts (a shared machine only ever slows a row down)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kilat-gwbench-"))
    up_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM_CODE, str(up_port)])
    procs.append(upstream)
    env = dict(os.environ, GATEWAY_PORT=str(gw_port), GATEWAY_HOST="127.0.0.1",
               KILAT_UPSTREAM=f"http://127.0.0.1:{up_port}", RATE_LIMIT_PER_MIN="100000000",
               JWT_SECRET=JWT_SECRET, LOG_LEVEL="INFO", PYTHONPATH=str(ROOT))
    gw_log = (tmp / "gateway.log").open("ab")
    gateway = subprocess.Popen([str(VENV_BIN / "kilat-gateway")], env=env,
                               stdout=gw_log, stderr=subprocess.STDOUT)
    procs.append(gateway)
    nginx, nginx_port = (None, 0) if args.no_nginx else start_nginx(tmp, up_port)
    if nginx is not None:
        procs.append(nginx)
    path = "/api/v1/petshops"
    headers = {"Origin": ORIGIN}
    if args.token:
        headers["Authorization"] = "Bearer " + bearer_token()
    targets = [("direct", up_port, upstream.pid)]
    if nginx is not None:
        targets.append(("nginx", nginx_port, nginx.pid))
    targets.append(("gateway", gw_port, gateway.pid))
    try:
        for _, port, _ in targets:
            await wait_up(port, path)
            await load(port, path, 500, args.concurrency, headers)  # warm-up
        results: dict[str, dict[str, float]] = {}
        for _ in range(max(1, args.rounds)):
            for name, port, pid in targets:
                spy = None
                if args.profile and name == "gateway":
                    spy = subprocess.Popen(
                        [str(VENV_BIN / "py-spy"), "record", "-p", str(pid), "-o", args.profile,
                         "-r", "250", "-f", "raw" if args.profile.endswith(".txt")
                         else "flamegraph"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(1.0)
                cpu_before = cpu_seconds(pid)
                elapsed, lat = await load(port, path, args.requests, args.concurrency, headers)
                cpu = cpu_seconds(pid) - cpu_before
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                row = {"rps": round(args.requests / elapsed, 1),
                       "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
                       # CPU of the process answering (the upstream for direct, the proxy
                       # otherwise) per request: what the proxy costs, whatever else runs.
                       "cpu_us_per_request": round(cpu / args.requests * 1e6, 1)}
                if name not in results or row["rps"] > results[name]["rps"]:
                    results[name] = row
        for name, r in results.items():
            print(f"{name:8s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                  f"  p99 {r['p99_ms']:6.2f} ms  cpu {r['cpu_us_per_request']:6.1f} us/req")
        d = results["direct"]
        ratios = {}
        for name in results:
            if name == "direct":
                continue
            r = results[name]
            ratios[name] = {"throughput": round(r["rps"] / d["rps"], 3),
                            "added_p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
                            "p99_ratio": round(r["p99_ms"] / d["p99_ms"], 3)}
            print(f"ratio    {name}/direct throughput {ratios[name]['throughput']:.2f}  "
                  f"added p50 {ratios[name]['added_p50_ms']:.2f} ms  "
                  f"p99 {ratios[name]['p99_ratio']:.2f}x")
        if nginx is None:
            print("nginx    skipped (not installed)")
        await asyncio.sleep(0.5)  # the gateway writes its access log in batches
        print(json.dumps({
            "bench": "gateway", "cores": os.cpu_count(), "requests": args.requests,
            "rounds": args.rounds,
            "concurrency": args.concurrency, "token": args.token,
            "nginx": nginx is not None, "rows": results, "ratios": ratios,
            "access_log_lines": sum(1 for _ in (tmp / "gateway.log").open("rb")),
        }))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        gw_log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
