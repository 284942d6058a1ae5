"""The gateway's prefix route table: which upstream serves which path.

Upstream names are the original services' (identity, booking, ...). By default every upstream
is the Kilat worker pool (`KILAT_UPSTREAM`, comma-separated worker URLs); a domain can be sent
elsewhere with `UPSTREAM_<NAME>` (e.g. `UPSTREAM_TRACKING=http://10.0.0.5:6066`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

UPSTREAM_NAMES = ("identity", "booking", "payment", "runner", "tracking", "notification", "review")

# Longest prefix wins; `/api/v1/runners/apply` lives with identity (the original misrouted it).
PREFIXES: tuple[tuple[str, str], ...] = (
    ("/api/v1/runners/apply", "identity"),
    ("/api/v1/auth", "identity"),
    ("/api/v1/referrals", "identity"),
    ("/api/v1/admin/users", "identity"),
    ("/api/v1/admin/stats/users", "identity"),
    ("/api/v1/runners", "runner"),
    ("/api/v1/petshops", "runner"),
    ("/api/v1/admin/runners", "runner"),
    ("/api/v1/bookings", "booking"),
    ("/api/v1/pets", "booking"),
    ("/api/v1/users", "booking"),  # the iOS client's /users/me/pets
    ("/api/v1/admin/bookings", "booking"),
    ("/api/v1/admin/stats/bookings", "booking"),
    ("/api/v1/payments", "payment"),
    ("/api/v1/promos", "payment"),
    ("/api/v1/subscriptions", "payment"),
    ("/api/v1/payouts", "payment"),
    ("/api/v1/admin/payments", "payment"),
    ("/api/v1/admin/promos", "payment"),
    ("/api/v1/admin/stats/payments", "payment"),
    ("/api/v1/tracking", "tracking"),
    ("/api/v1/admin/tracking", "tracking"),
    ("/api/v1/chat", "tracking"),
    ("/ws/tracking", "tracking"),
    ("/api/v1/notifications", "notification"),
    ("/api/v1/reviews", "review"),
)
_SORTED = sorted(PREFIXES, key=lambda p: len(p[0]), reverse=True)


def match(path: str) -> str | None:
    """The upstream name for `path`, or None (→ 404 route not found)."""
    for prefix, name in _SORTED:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


@dataclass
class Upstream:
    name: str
    urls: list[str]
    _next: int = 0

    def pick(self) -> str:
        """Round-robin over the upstream's URLs."""
        url = self.urls[self._next % len(self.urls)]
        self._next += 1
        return url


def upstreams_from_env(env: dict[str, str] | None = None) -> dict[str, Upstream]:
    env = dict(os.environ if env is None else env)
    default = env.get("KILAT_UPSTREAM", "http://127.0.0.1:6066")
    result = {}
    for name in UPSTREAM_NAMES:
        raw = env.get(f"UPSTREAM_{name.upper()}", default)
        urls = [u.strip().rstrip("/") for u in raw.split(",") if u.strip()]
        result[name] = Upstream(name, urls)
    return result
