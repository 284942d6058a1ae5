"""Test harness: a private Kilat deployment on the real Kafka broker and PostgreSQL server.

Each `Platform` gets its own database (migrated with Alembic), its own topic prefix and Faust
app id, and runs workers and the gateway as separate processes, exactly as `make run` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg2
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
KAFKA = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
ADMIN_DSN = os.environ.get("KILAT_TEST_ADMIN_DSN", "postgresql://kilat:kilat@127.0.0.1:5432/kilat")
JWT_SECRET = "kilat-test-secret-0123456789abcdef0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fatal(Exception):
    """Raised inside a wait_until predicate to stop waiting at once."""


async def wait_until(predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                     interval: float = 0.1, what: str = "condition") -> Any:
    """Await `predicate()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await predicate()
            if result:
                return result
        except Fatal:
            raise
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Platform:
    tmp: Path
    ident: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:10])
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Proc] = field(default_factory=list)
    gateway: Proc | None = None

    @property
    def db_name(self) -> str:
        return f"kilat_{self.ident}"

    @property
    def database_url(self) -> str:
        return ADMIN_DSN.rsplit("/", 1)[0] + "/" + self.db_name

    @property
    def topic_prefix(self) -> str:
        return f"{self.ident}."

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "KILAT_ENV": "test", "KILAT_APP_ID": f"kilat-{self.ident}",
            "KILAT_TOPIC_PREFIX": self.topic_prefix, "KAFKA_BROKERS": KAFKA,
            "DATABASE_URL": self.database_url, "JWT_SECRET": JWT_SECRET,
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
        })
        env.update(self.extra_env)
        env.update(extra)
        return env

    # ------------------------------------------------------------ database

    def create_database(self) -> None:
        conn = psycopg2.connect(ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.db_name}"')
        conn.close()
        subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "heads"], cwd=ROOT,
                       env=self.env(), check=True, capture_output=True)

    def drop_database(self) -> None:
        conn = psycopg2.connect(ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        conn.close()
        self.delete_topics()

    def delete_topics(self) -> None:
        """Delete this deployment's topics (its prefix and its app id's internal topics): a
        broker holding the partitions of every past test run restarts slowly. Runs in a thread
        of its own, as teardown may be inside a running event loop."""
        from aiokafka.admin import AIOKafkaAdminClient

        own = (self.topic_prefix, f"kilat-{self.ident}-")

        async def delete() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=15000)
            await admin.start()
            try:
                names = [t for t in await admin.list_topics() if t.startswith(own)]
                if names:
                    await admin.delete_topics(names, timeout_ms=15000)
            finally:
                await admin.close()

        def run() -> None:
            try:
                asyncio.run(delete())
            except Exception:  # the broker may be down after a fault test: nothing to clean
                pass

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(30)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run SQL against this platform's database (for asserting rows)."""
        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                if cur.description is None:
                    return []
                names = [d.name for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    # ------------------------------------------------------------ processes

    def start_worker(self, name: str = "w1", port: int | None = None, **env: str) -> Proc:
        port = port or free_port()
        data_dir = self.tmp / f"data-{name}"
        log_path = self.tmp / f"{name}.log"
        popen = subprocess.Popen(
            [str(VENV_BIN / "faust"), "-A", "kilat", "worker", "-l", "info",
             "--web-port", str(port)],
            cwd=ROOT, env=self.env(KILAT_DATA_DIR=str(data_dir), WEB_PORT=str(port), **env),
            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        proc = Proc(name, popen, log_path, port)
        self.workers.append(proc)
        return proc

    def start_gateway(self, port: int | None = None, **env: str) -> Proc:
        port = port or free_port()
        upstream = ",".join(w.url for w in self.workers if w.alive())
        log_path = self.tmp / "gateway.log"
        popen = subprocess.Popen(
            [str(VENV_BIN / "kilat-gateway")], cwd=ROOT,
            env=self.env(GATEWAY_PORT=str(port), GATEWAY_HOST="127.0.0.1",
                         KILAT_UPSTREAM=upstream, **env),
            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.gateway = Proc("gateway", popen, log_path, port)
        return self.gateway

    async def wait_ready(self, proc: Proc, path: str = "/readiness", timeout: float = 120) -> None:
        async def ready() -> bool:
            if not proc.alive():
                raise Fatal(f"{proc.name} exited")
            async with aiohttp.ClientSession() as s, s.get(proc.url + path) as r:
                return r.status == 200
        try:
            await wait_until(ready, timeout, 0.25, f"{proc.name} ready")
        except (AssertionError, Fatal) as exc:
            raise AssertionError(f"{exc}\n--- {proc.name} log ---\n{proc.log_tail()}") from None

    async def start_worker_and_gateway(self) -> Proc:
        """One ready worker (returned) and a ready gateway whose rate limit tests never reach."""
        worker = self.start_worker("w1")
        await self.wait_ready(worker)
        await self.wait_ready(self.start_gateway(RATE_LIMIT_PER_MIN="100000"), "/health")
        return worker

    async def run_kilat(self, *args: str, timeout: float = 180) -> tuple[int, str, str]:
        """Run the `kilat` command against this deployment: (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "kilat"), *args, cwd=ROOT, env=self.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()

    async def kilat(self, *args: str, timeout: float = 180) -> str:
        """Run the `kilat` command, which must succeed; its standard output."""
        code, out, err = await self.run_kilat(*args, timeout=timeout)
        assert code == 0, (out + err)[-2000:]
        return out

    def stop(self, proc: Proc, *, kill: bool = False, timeout: float = 30) -> None:
        if not proc.alive():
            return
        try:
            os.killpg(proc.popen.pid, 9 if kill else 15)
        except ProcessLookupError:
            return
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, 9)
            proc.popen.wait(10)

    def stop_all(self) -> None:
        if self.gateway:
            self.stop(self.gateway)
        for w in self.workers:
            self.stop(w)

    @property
    def base_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    # ------------------------------------------------------------ Kafka

    async def produce(self, topic: str, key: str, value: bytes | dict) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
        await producer.start()
        try:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            await producer.send_and_wait(self.topic(topic), raw, key=key.encode())
        finally:
            await producer.stop()

    async def produce_many(self, topic: str, items: list[tuple[str, bytes | dict]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = []
            for key, value in items:
                raw = value if isinstance(value, bytes) else json.dumps(value).encode()
                futures.append(await producer.send(self.topic(topic), raw, key=key.encode()))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def commit_group_to_end(self, topic: str) -> None:
        """Move the workers' consumer group past everything in `topic` (while no worker runs),
        as Faust does for the messages it skips and acknowledges while a worker stops."""
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        try:
            partitions = await producer.partitions_for(self.topic(topic))
        finally:
            await producer.stop()
        tps = [TopicPartition(self.topic(topic), n) for n in partitions]
        consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=f"kilat-{self.ident}",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.commit(await consumer.end_offsets(tps))
        finally:
            await consumer.stop()

    async def read_topic(self, topic: str, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Every message currently on `topic` (all partitions), decoded as JSON when possible,
        each with its `_key` and `_partition`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            name = self.topic(topic)
            parts = consumer.partitions_for_topic(name)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in parts]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while time.monotonic() < deadline and await behind():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        try:
                            item = json.loads(rec.value)
                        except ValueError:
                            item = {"_raw": rec.value}
                        if not isinstance(item, dict):
                            item = {"_raw": item}
                        item["_key"] = rec.key.decode() if rec.key else None
                        item["_partition"] = rec.partition
                        item["_offset"] = rec.offset
                        out.append(item)
            return out
        finally:
            await consumer.stop()

    async def events_of(self, topic: str, type_: str | None = None, **data_match: Any):
        items = await self.read_topic(topic)
        return [e for e in items if (type_ is None or e.get("type") == type_)
                and all(e.get("data", {}).get(k) == v for k, v in data_match.items())]

    async def processed_count(self, consumer: str, type_: str, outcome: str) -> float:
        """How many `type_` events `consumer` counted with `outcome` (ok, duplicate, ...), from
        the workers' own /metrics."""
        line = (f'kilat_events_processed_total{{consumer="{consumer}",outcome="{outcome}",'
                f'type="{type_}"}}')
        total = 0.0
        async with aiohttp.ClientSession() as http:
            for worker in self.workers:
                if not worker.alive():
                    continue
                async with http.get(worker.url + "/metrics") as r:
                    text = await r.text()
                total += sum(float(x.split()[-1]) for x in text.splitlines()
                             if x.startswith(line))
        return total

    async def wait_event(self, topic: str, type_: str, timeout: float = 30.0, **data_match: Any):
        async def found():
            return await self.events_of(topic, type_, **data_match)
        return await wait_until(found, timeout, 0.3, f"{type_} on {topic} {data_match}")


def days_ahead(days: int, hour: int = 10, minute: int = 0) -> tuple[str, str]:
    """A time `days` from today at hour:minute Malaysia time (bookings are scheduled at most 90
    days ahead, so tests cannot use fixed dates): (the offset-less local ISO string the Flutter
    app sends, the same instant as the API returns it in UTC)."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    local = (datetime.now(ZoneInfo("Asia/Kuala_Lumpur")) + timedelta(days=days)).replace(
        hour=hour, minute=minute, second=0, microsecond=0)
    utc = local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return local.replace(tzinfo=None).isoformat(timespec="milliseconds"), utc
