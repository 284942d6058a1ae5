"""Optional structured logs: `KILAT_LOG_JSON=1` makes workers log one JSON object per line."""

from __future__ import annotations

import json
import logging
from typing import Any

from models.events import now_rfc3339


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": now_rfc3339(), "level": record.levelname, "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(json_logs: bool) -> dict[str, Any] | None:
    """A dictConfig for Faust's worker when JSON logs are wanted, else None (Faust default)."""
    if not json_logs:
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "core.logs.JsonFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": "INFO"},
    }
