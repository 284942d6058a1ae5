"""Response headers every HTTP answer of Kilat carries, shared by the gateway and the workers.

The `Server` header names no software version. Responses of the sign-in family
(`/api/v1/auth/...`) carry tokens or personal data and are never cached. HSTS is only sent over
TLS, or when a proxy trusted by configuration says the client used HTTPS: over plain HTTP it is
meaningless at best and pins a name that may not serve TLS at worst.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

SERVER_NAME = "kilat"
NO_STORE_PREFIX = "/api/v1/auth"
HSTS = "max-age=31536000; includeSubDomains"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def came_over_https(scheme: str, remote: str | None, headers: Mapping[str, str],
                    trusted_proxies: Collection[str]) -> bool:
    """Whether the client used TLS: our own listener did, or a trusted proxy says so."""
    if scheme == "https":
        return True
    if remote and remote in trusted_proxies:
        proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def edge_headers(path: str, secure: bool) -> dict[str, str]:
    """The headers a response to `path` gets (`secure`: the client used HTTPS)."""
    headers = dict(SECURITY_HEADERS)
    headers["Server"] = SERVER_NAME
    if path == NO_STORE_PREFIX or path.startswith(NO_STORE_PREFIX + "/"):
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = HSTS
    return headers
