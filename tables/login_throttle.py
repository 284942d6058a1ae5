"""Sign-in throttle state (DESIGN 13/issue 13 item 6).

* `login-failures`: failed sign-ins per throttle counter (domain.identity.login_counters) in a
  tumbling window of `LOGIN_WINDOW_S`, timed by the Kafka timestamp of each failure. Written
  only by the `kilat.login-throttle` agent, co-partitioned with `kilat.login-failures`.
* `login-locks`: the counters at their limit and when their window ends (epoch seconds). A
  global table: every worker holds all of it, so the login view on whichever worker serves a
  request sees a lock set by the agent on another. One changelog partition written through the
  partitioner (Faust's advice for global tables shared by several workers).
"""

from __future__ import annotations

from collections.abc import Iterable

from kilat import app, cfg

WINDOW_S = max(1, round(cfg.login_window_s))  # Faust steps windows in whole seconds

login_failures = app.Table(
    "login-failures", default=int, key_type=str, partitions=cfg.topic_partitions,
    help="Failed sign-ins per throttle counter and window.",
).tumbling(WINDOW_S, expires=WINDOW_S).relative_to_stream()

login_locks = app.GlobalTable(
    "login-locks", default=None, key_type=str, partitions=1, recovery_buffer_size=1,
    use_partitioner=True, help="Throttle counters at their limit -> end of their window.",
)


def lock_ends(counters: Iterable[str]) -> list[float | None]:
    """When the lock of each counter ends (None: never locked)."""
    return [login_locks.get(counter) for counter in counters]


def window_end(timestamp: float) -> float:
    """End (epoch seconds) of the tumbling window `timestamp` falls in."""
    start = timestamp - timestamp % WINDOW_S
    return start + WINDOW_S
