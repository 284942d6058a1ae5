"""Gateway overhead: the same load sent directly to an upstream and through the gateway.

Starts a small upstream (a separate process answering a JSON body like a worker's GET) and the
gateway, then sends `--requests` GETs with `--concurrency` clients to each, in the same run, and
prints throughput, p50/p99 latency and the ratios.

    .venv/bin/python -m bench.gateway_bench --requests 3000 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import aiohttp

from tests.platform import ROOT, VENV_BIN, free_port

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


async def wait_up(url: str) -> None:
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                if r.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def load(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    up_port, gw_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM_CODE, str(up_port)])
    env = dict(os.environ, GATEWAY_PORT=str(gw_port), GATEWAY_HOST="127.0.0.1",
               KILAT_UPSTREAM=f"http://127.0.0.1:{up_port}", RATE_LIMIT_PER_MIN="100000000",
               LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    gateway = subprocess.Popen([str(VENV_BIN / "kilat-gateway")], env=env)
    try:
        direct_url = f"http://127.0.0.1:{up_port}/api/v1/petshops"
        gw_url = f"http://127.0.0.1:{gw_port}/api/v1/petshops"
        await wait_up(direct_url)
        await wait_up(gw_url)
        await load(direct_url, 200, args.concurrency)  # warm-up
        await load(gw_url, 200, args.concurrency)
        results = {}
        for name, url in (("direct", direct_url), ("gateway", gw_url)):
            elapsed, lat = await load(url, args.requests, args.concurrency)
            results[name] = (args.requests / elapsed, pct(lat, 50), pct(lat, 99))
            print(f"{name:8s} {results[name][0]:8.0f} req/s  p50 {results[name][1]:6.2f} ms"
                  f"  p99 {results[name][2]:6.2f} ms")
        d, g = results["direct"], results["gateway"]
        print(f"ratio    throughput gateway/direct {g[0] / d[0]:.2f}  "
              f"p50 gateway/direct {g[1] / d[1]:.2f}  p99 gateway/direct {g[2] / d[2]:.2f}")
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(10)
        upstream.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
