"""The gateway's prefix route table: which upstream serves which path.

Upstream names are the original services' (identity, booking, ...). By default every upstream
is the Kilat worker pool (`KILAT_UPSTREAM`, comma-separated worker URLs); a domain can be sent
elsewhere with `UPSTREAM_<NAME>` (e.g. `UPSTREAM_TRACKING=http://10.0.0.5:6066`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, unquote

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


def match_prefix(path: str) -> tuple[str, str] | None:
    """The (prefix, upstream name) serving `path`, or None (→ 404 route not found)."""
    for prefix, name in _SORTED:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix, name
    return None


def match(path: str) -> str | None:
    """The upstream name for `path`, or None (→ 404 route not found)."""
    found = match_prefix(path)
    return found[1] if found else None


class BadPath(ValueError):
    """A request path no route can mean: it climbs above the root, or a segment hides a
    separator or a NUL behind percent-encoding."""


# Characters left as they are when a decoded segment is encoded again (RFC 3986 pchar).
_PCHAR_SAFE = "!$&'()*+,;=:@-._~"


def split_path(raw_path: str) -> list[str]:
    """The decoded segments of a raw (percent-encoded) request path, dot segments kept."""
    segments = []
    for raw in raw_path.split("?", 1)[0].split("/")[1:]:
        segment = unquote(raw, errors="strict") if "%" in raw else raw
        if "/" in segment or "\\" in segment or "\x00" in segment:
            raise BadPath("encoded separator in the path")
        segments.append(segment)
    return segments


def normalise(raw_path: str) -> tuple[str, str]:
    """(literal, normalised) decoded paths of a raw request path.

    `literal` keeps dot segments (what a naive router would match); `normalised` has them
    resolved as RFC 3986 says, with their percent-encoded forms (`%2e%2e`) counted too, since
    upstream clients and servers resolve those as well.
    """
    if not raw_path.startswith("/"):
        raise BadPath("not an origin-form path")  # `*`, or a proxy's absolute URL
    try:
        segments = split_path(raw_path)
    except UnicodeDecodeError as exc:
        raise BadPath("the path is not UTF-8") from exc
    out: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if not out:
                raise BadPath("the path climbs above the root")
            out.pop()
            continue
        out.append(segment)
    if segments and segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." is the directory "/a/"
    return "/" + "/".join(segments), "/" + "/".join(out)


def encode_path(path: str) -> str:
    """A decoded path encoded again, so that the upstream decodes exactly `path`."""
    return quote(path, safe="/" + _PCHAR_SAFE)


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
