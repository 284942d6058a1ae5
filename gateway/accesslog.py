"""The gateway's access log: one JSON line per request on the `kilat.gateway.access` logger.

Writing a line per request through `logging` (a record, a formatted time, a write and a flush
on stderr) cost about a tenth of the gateway's CPU under load. Requests only append a tuple
here; every `interval` seconds (and when `max_pending` lines wait, and at shutdown) the pending
lines are formatted and written by the logger's own handlers in one write each, in the same
format as every other log line. The logger's level still decides: `LOG_LEVEL=WARNING` turns
the access log off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

log = logging.getLogger("kilat.gateway.access")


class AccessLog:
    def __init__(self, logger: logging.Logger = log, interval: float = 0.2,
                 max_pending: int = 1000) -> None:
        self.logger = logger
        self.interval = interval
        self.max_pending = max_pending
        self.enabled = logger.isEnabledFor(logging.INFO)
        self._pending: list[tuple] = []
        self._task: asyncio.Task | None = None

    def record(self, request_id: str, method: str, path: str, status: int, client: str,
               ms: float) -> None:
        self._pending.append((time.time(), request_id, method, path, status, client, ms))
        if len(self._pending) >= self.max_pending:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        messages = [(created, "{" + f'"request_id": {_js(request_id)}, "method": {_js(method)}, '
                     f'"path": {_js(path)}, "status": {status}, "client": {_js(client)}, '
                     f'"ms": {round(ms, 2)}' + "}")
                    for created, request_id, method, path, status, client, ms in pending]
        records = None
        for handler in _handlers(self.logger):
            if logging.INFO < handler.level:
                continue
            if isinstance(handler, logging.StreamHandler) and not handler.filters:
                # One write for the whole batch instead of one per line.
                if _plain(handler.formatter):
                    prefix = f" INFO {self.logger.name} "
                    text = "".join(_asctime(c) + prefix + m + handler.terminator
                                   for c, m in messages)
                else:
                    records = records or self._records(messages)
                    text = "".join(handler.format(r) + handler.terminator for r in records)
                with handler.lock:  # type: ignore[union-attr]
                    handler.stream.write(text)
                    handler.flush()
            else:
                records = records or self._records(messages)
                for r in records:
                    handler.handle(r)

    def _records(self, messages: list[tuple[float, str]]) -> list[logging.LogRecord]:
        records = []
        for created, message in messages:
            record = self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0,
                                            message, None, None)
            record.created = created
            record.msecs = (created - int(created)) * 1000
            records.append(record)
        return records

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.flush()


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # gateway.app.main's
_second: list = [-1, ""]


def _plain(formatter: logging.Formatter | None) -> bool:
    """Whether lines in the gateway's own log format can be written without a LogRecord."""
    return (type(formatter) is logging.Formatter and formatter._fmt == PLAIN_FORMAT  # noqa: SLF001
            and formatter.datefmt is None and formatter.converter is time.localtime)


def _asctime(created: float) -> str:
    """`asctime` as logging.Formatter writes it by default, the date part once per second."""
    second = int(created)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%d %H:%M:%S",
                                                       time.localtime(second))
    return f"{_second[1]},{int((created - second) * 1000):03d}"


def _js(value: str) -> str:
    """A JSON string: most values need no escaping, and json.dumps is the slow part."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value)


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of `logger` reaches, as `Logger.callHandlers` walks them."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if not found and logging.lastResort is not None:
        found.append(logging.lastResort)
    return found
