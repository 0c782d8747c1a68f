"""Job-completion webhooks: where they may go, and how they are signed.

Each POST carries the job summary as its body and two headers:

    X-Yoloq-Timestamp: <unix seconds>
    X-Yoloq-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the shared secret>

A receiver recomputes the HMAC over the raw body and refuses old timestamps (replays); see
``verify`` and docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

TIMESTAMP_HEADER = "X-Yoloq-Timestamp"
SIGNATURE_HEADER = "X-Yoloq-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> bool:
    """True for a signature made with ``secret`` over this body, at most ``tolerance_s`` old."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    """Only http(s) URLs to a listed host (``name`` exactly, or ``*.domain`` for its
    subdomains): the API never calls an address an operator did not list."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return False
    for entry in (h.lower() for h in allowed_hosts):
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False
