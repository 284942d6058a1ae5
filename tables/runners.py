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


def position_of(runner_id: str) -> RunnerPosition | None:
    raw = runner_positions.get(runner_id)
    return RunnerPosition.from_data(raw) if raw else None


def store_position(pos: RunnerPosition) -> None:
    runner_positions[pos.runner_id] = pos.asdict()
