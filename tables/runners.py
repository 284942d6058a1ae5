"""Live runner state, keyed by runner (user) id, co-partitioned with `runner.events`.

* `runner-positions`: the last accepted GPS fix of each runner (RunnerPosition as a dict).
* `runner-bookings`: the bookings a runner is currently carrying (list of booking ids), kept
  from `runner.assigned` / `runner.released` so fixes can be forwarded to their trips.
"""

from __future__ import annotations

from kilat import app, cfg
from models.runner import RunnerPosition

runner_positions = app.Table(
    "runner-positions", default=None, key_type=str, partitions=cfg.topic_partitions,
    help="Last accepted GPS fix per runner (user id).",
)

runner_bookings = app.Table(
    "runner-bookings", default=list, key_type=str, partitions=cfg.topic_partitions,
    help="Active booking ids per runner (user id).",
)


SOURCE_OFFSET = "source_offset"


def position_of(runner_id: str) -> RunnerPosition | None:
    raw = runner_positions.get(runner_id)
    if not raw:
        return None
    return RunnerPosition.from_data({k: v for k, v in raw.items() if k != SOURCE_OFFSET})


def store_position(pos: RunnerPosition, source_offset: int | None = None) -> None:
    """Keep the fix, with the offset of the runner.events message it came from."""
    runner_positions[pos.runner_id] = {**pos.asdict(), SOURCE_OFFSET: source_offset}


def already_handled(runner_id: str, offset: int) -> bool:
    """True if the message at `offset` (of the runner's partition) is at or before the last
    accepted fix: it is being redelivered after a crash or a rebalance."""
    raw = runner_positions.get(runner_id) or {}
    last = raw.get(SOURCE_OFFSET)
    return last is not None and offset <= last
