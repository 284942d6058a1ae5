"""Revoked sessions and banned users, held by every worker (a Faust GlobalTable).

Keyed by user id; the value is the user's revocation record (domain.identity.apply_revocation):
banned or not, "tokens issued before T are void" (epoch ms), and the recently revoked session
ids. The `kilat.identity-sessions` agent (streams/identity.py) writes it from identity.events;
every worker reads it on each authenticated request and WebSocket handshake (web/http.py,
web/tracking.py).

How Faust keeps it on every worker (faust-streaming 0.15, read from its source):
* The changelog has the app's partition count, like identity.events, and entries are written
  while the agent handles an event keyed by the same user id, so a user's entry lives in the
  changelog partition of that user's events (never in two partitions, which the RocksDB
  store's per-partition lookup would otherwise read inconsistently).
* The assignor gives every worker every partition of a global table's changelog: the ones it
  does not write are standbys, read continuously after recovery, so a write on one worker
  reaches the others within one fetch. tests/test_identity.py measures it across two workers.
* Those partitions are also listed as *actives* (so that they are recovered at start), and the
  recovery loop files an event under "active" first: it is then buffered up to
  `recovery_buffer_size` events (1000 by default) before it reaches the table, however long
  that takes. `recovery_buffer_size=1` (what faust's GlobalTable docstring recommends) applies
  every event at once; the table is small, so recovery one event at a time costs little.
* During (re)covery the table may be behind: readiness reports "recovering" meanwhile.
"""

from __future__ import annotations

import time

from core.config import settings
from core.security import Principal
from domain import identity as rules
from kilat import app, cfg

# Long enough that every access token of a revoked session has expired by the time its entry
# is dropped: the access-token lifetime plus a margin for clock differences between workers.
_KEEP_MARGIN_MS = 5 * 60 * 1000

revocations = app.GlobalTable(
    "identity-revocations", default=None, key_type=str, partitions=cfg.topic_partitions,
    recovery_buffer_size=1,
    help="Per user id: banned flag, tokens-void-before time and revoked session ids.",
)


def record_of(user_id: str) -> dict | None:
    raw = revocations.get(user_id)
    return dict(raw) if raw else None


def is_revoked(principal: Principal) -> bool:
    """Whether the principal's token is void: banned user, session ended, or issued before
    the user's sessions were all ended (logout, password reset, ban)."""
    return rules.token_revoked(record_of(principal.user_id), principal.session_id,
                               principal.issued_at_ms)


def apply_event(user_id: str, type_: str, data: dict, at_ms: int) -> dict:
    """Fold one identity event into the user's record. Only for the agent: the write must
    happen while it handles that user's event (see the module docstring)."""
    keep_ms = settings().jwt_access_ttl_s * 1000 + _KEEP_MARGIN_MS
    record = rules.apply_revocation(record_of(user_id), type_, data, at_ms, keep_ms=keep_ms,
                                    now_ms=int(time.time() * 1000))
    revocations[user_id] = record
    return record
