"""Rules of the public trip page (pure, no I/O): which page a share link gets, what its status
line says, which Accept header means a browser, and what of a live frame the public may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from domain.booking import ACCEPTED, CANCELLED, COMPLETED, DELIVERED, IN_PROGRESS, REQUESTED
from domain.tracking import ACTIVE
from domain.tracking import CANCELLED as TRACK_CANCELLED
from domain.tracking import COMPLETED as TRACK_COMPLETED

# Page kinds a share token leads to.
LIVE, EXPIRED, UNKNOWN = "live", "expired", "unknown"

# Fields of a `location_update` frame a public viewer gets: no runner or booking id. The ETA
# fields are passed on when the trip agent adds them.
PUBLIC_LOCATION_FIELDS = ("latitude", "longitude", "speed_kmh", "heading_degrees", "timestamp",
                          "eta_minutes", "distance_remaining_km")


def page_kind(share: dict[str, Any] | None, now: datetime) -> str:
    """`unknown` (no such link), `expired`, or `live` (the page, whatever the trip's state)."""
    if share is None:
        return UNKNOWN
    if share["expires_at"] <= now:
        return EXPIRED
    return LIVE


def trip_ended(booking_status: str | None, track_status: str | None) -> bool:
    """Nothing more will move on the map: the track is closed or the booking is over."""
    return (track_status in (TRACK_COMPLETED, TRACK_CANCELLED)
            or booking_status in (COMPLETED, CANCELLED))


def pet_name(pet_spec: Any) -> str:
    name = pet_spec.get("name") if isinstance(pet_spec, dict) else None
    return str(name).strip()[:100] if name and str(name).strip() else "Your pet"


def status_text(booking_status: str | None, track_status: str | None, pet: str) -> str:
    """The page's status line, for people who never saw the app."""
    if booking_status == CANCELLED or track_status == TRACK_CANCELLED:
        return "This trip was cancelled."
    if booking_status in (DELIVERED, COMPLETED) or track_status == TRACK_COMPLETED:
        return f"{pet} has arrived. The trip has ended."
    if booking_status == IN_PROGRESS:
        return f"{pet} is on the way."
    if booking_status == ACCEPTED or track_status == ACTIVE:
        return f"The runner is on the way to pick up {pet}."
    if booking_status == REQUESTED:
        return f"Waiting for a runner to accept {pet}'s trip."
    return "Trip status unknown."


def status_frame(booking_status: str | None, track_status: str | None, pet: str) -> dict:
    """The `trip_status` frame the public WebSocket sends on connect and on every change."""
    return {"type": "trip_status", "booking_status": booking_status,
            "track_status": track_status, "ended": trip_ended(booking_status, track_status),
            "text": status_text(booking_status, track_status, pet)}


def public_location(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The public form of a `location_update` frame, or None for any other frame (chat)."""
    if frame.get("type") != "location_update":
        return None
    data = frame.get("data") if isinstance(frame.get("data"), dict) else frame
    return {"type": "location_update",
            "data": {k: data[k] for k in PUBLIC_LOCATION_FIELDS if k in data}}


def _quality(media_range: str) -> tuple[str, float]:
    kind, *params = (p.strip() for p in media_range.split(";"))
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return kind.lower(), q


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks `text/html` above JSON (RFC 9110 quality values).

    Browsers send `text/html,...,*/*;q=0.8`; API clients send `application/json`, `*/*` or
    nothing, and keep the contract's JSON."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        if part.strip():
            kind, q = _quality(part)
            ranks[kind] = max(q, ranks.get(kind, 0.0))

    def rank(kind: str) -> float:
        family = kind.split("/")[0] + "/*"
        for candidate in (kind, family, "*/*"):
            if candidate in ranks:
                return ranks[candidate]
        return 0.0

    html = ranks.get("text/html", 0.0)
    return html > 0 and html > rank("application/json")


def tile_source(url: str) -> str:
    """The CSP source of the tile server (`{s}` subdomains become a wildcard), or ''."""
    parts = urlsplit(url.replace("{s}", "a"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.netloc.replace("a.", "*.", 1) if "{s}." in url else parts.netloc
    return f"{parts.scheme}://{host}"


def content_security_policy(tile_url: str) -> str:
    """Same-origin scripts, styles and WebSocket; images also from the tile server only."""
    img = " ".join(filter(None, ("'self'", "data:", tile_source(tile_url))))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
