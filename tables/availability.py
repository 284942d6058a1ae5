"""Where the online runners are and what they can carry, on every worker (a Faust GlobalTable).

Keyed by runner (user) id, raw UTF-8 like the message keys of `runner.events`; values are the
availability entries of `domain.offers` (online flag, rough position, crates). The
`kilat.runner-availability` agent (streams/job_offers.py) writes it from `runner.events`; the
job-offer agent reads all of it to find the runners nearest to a pickup, on whichever worker
owns the booking, without a database query.

Entries are written while the agent handles an event of that runner, so each runner's entry
lives in the changelog partition of the runner's events (Faust's RocksDB store files a write
under the partition of the current event, and refuses writes made outside one). A position is
rewritten only when the runner moved MOVE_THRESHOLD_KM (domain.offers), since every worker
reads every write. See tables/sessions.py for how Faust keeps a global table on every worker.
"""

from __future__ import annotations

from collections.abc import Iterator

from domain.offers import Availability
from kilat import app, cfg

runner_availability = app.GlobalTable(
    "runner-availability", default=None, key_type=bytes, partitions=cfg.topic_partitions,
    recovery_buffer_size=1,
    help="Per runner user id: online, rough position and crates (for job offers).",
)


def availability_of(runner_id: str) -> Availability | None:
    raw = runner_availability.get(runner_id.encode())
    return dict(raw) if raw else None


def keep_availability(entry: Availability) -> None:
    runner_availability[entry["runner_id"].encode()] = entry


def all_runners() -> Iterator[Availability]:
    """Every runner's entry (a global table holds all partitions on every worker)."""
    for value in list(runner_availability.values()):
        if value:
            yield value
