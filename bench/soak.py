"""Soak: one worker under steady GPS and API load for minutes, watching for leaks.

Starts its own deployment (private database and topics on the local Kafka/PostgreSQL, ONE
worker, the gateway), then for `--minutes` drives `--gps-rate` runner.location_update events per
second into runner.events and `--clients` app users through the gateway (each makes a call,
waits `--think` seconds, makes the next). Every `--every` seconds it prints the worker's RSS,
open file descriptors, RocksDB size (its data directory) and consumer lag (its /metrics).

At the end: RSS growth after warm-up (the first `--warmup` minutes), as a percentage of the RSS
at the end of warm-up, and whether it stays under 10 %. The last line is JSON. Not part of CI.

    .venv/bin/python -m bench.soak                      # 10 minutes, 1,000 fixes/s, 100 clients
    .venv/bin/python -m bench.soak --minutes 2 --warmup 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench.load import Stats, client_loop, gps_stream
from tests.platform import Platform, Proc

MAX_GROWTH = 0.10


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    rocksdb_mb: float
    consumer_lag: float
    requests: int


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def dir_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # compaction removed it meanwhile
                pass
    return total / 1e6


async def consumer_lag(session: aiohttp.ClientSession, worker: Proc) -> float:
    """Sum of the worker's `kilat_consumer_lag` gauges (every partition it consumes)."""
    async with session.get(worker.url + "/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kilat_consumer_lag{"))


async def sample_every(every: float, stop_at: float, worker: Proc, data_dir: Path,
                       stats: Stats, samples: list[Sample]) -> None:
    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while True:
            sample = Sample(
                t_s=round(time.monotonic() - start, 1), rss_mb=round(rss_mb(worker.popen.pid), 1),
                fds=open_fds(worker.popen.pid), rocksdb_mb=round(dir_mb(data_dir), 1),
                consumer_lag=await consumer_lag(session, worker),
                requests=sum(stats.status.values()))
            samples.append(sample)
            print(f"{sample.t_s:7.0f} s  RSS {sample.rss_mb:7.1f} MB  fds {sample.fds:4d}  "
                  f"RocksDB {sample.rocksdb_mb:7.1f} MB  lag {sample.consumer_lag:8.0f}  "
                  f"requests {sample.requests}", flush=True)
            if time.monotonic() + every > stop_at + 1:
                return
            await asyncio.sleep(every)


async def run(args: argparse.Namespace) -> int:
    platform = Platform(Path(tempfile.mkdtemp(prefix="kilat-soak-")))
    platform.create_database()
    try:
        worker = platform.start_worker("w1")
        await platform.wait_ready(worker)
        gateway = platform.start_gateway(RATE_LIMIT_PER_MIN="1000000")
        await platform.wait_ready(gateway, "/health")
        stats, samples = Stats(), []
        stop_at = time.monotonic() + args.minutes * 60
        connector = aiohttp.TCPConnector(limit=args.clients + 10)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=30)) as session:
            roles = ["owner", "runner"]
            clients = [client_loop(platform.base_url, session, stats, roles[i % 2], stop_at,
                                   args.think) for i in range(args.clients)]
            sent, *_ = await asyncio.gather(
                gps_stream(platform.topic("runner.events"), args.gps_rate, stop_at),
                sample_every(args.every, stop_at, worker, platform.tmp / "data-w1", stats,
                             samples),
                *clients)
        alive = worker.alive()
        after_warmup = [s for s in samples if s.t_s >= args.warmup * 60] or samples
        base, last = after_warmup[0], samples[-1]
        growth = (last.rss_mb - base.rss_mb) / base.rss_mb
        total = sum(stats.status.values())
        errors = sum(v for k, v in stats.status.items() if k >= 500) + stats.transport_errors
        print(f"gps events sent {sent} ({sent / (args.minutes * 60):.0f}/s); API requests "
              f"{total} ({total / (args.minutes * 60):.0f}/s), 5xx or transport errors {errors}")
        print(f"RSS after warm-up {base.rss_mb:.1f} MB at {base.t_s:.0f} s -> {last.rss_mb:.1f} MB "
              f"at {last.t_s:.0f} s: {growth:+.1%} (limit +{MAX_GROWTH:.0%}); fds "
              f"{base.fds} -> {last.fds}; RocksDB {base.rocksdb_mb} -> {last.rocksdb_mb} MB; "
              f"worker alive {alive}")
        ok = alive and growth < MAX_GROWTH and errors == 0
        print(json.dumps({"ok": ok, "rss_growth_after_warmup": round(growth, 4),
                          "gps_per_s": round(sent / (args.minutes * 60)),
                          "requests_per_s": round(total / (args.minutes * 60)),
                          "errors": errors, "samples": [asdict(s) for s in samples]}))
        return 0 if ok else 1
    finally:
        platform.stop_all()
        platform.drop_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes not judged")
    parser.add_argument("--gps-rate", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a client's calls")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
