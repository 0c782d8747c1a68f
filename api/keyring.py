"""The configured API keys, looked up by hash."""

from __future__ import annotations

import hashlib
import hmac
import logging

from yoloq.settings import Settings, TenantConfig

log = logging.getLogger(__name__)


class KeyRing:
    """The configured keys, looked up in constant time per key."""

    def __init__(self, settings: Settings) -> None:
        self.disabled = settings.auth_disabled
        self.tenants = settings.tenants_by_key_hash()
        self.open_buckets = frozenset(settings.input_buckets)
        if self.disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (YOLOQ_AUTH_DISABLED): anyone who can reach this "
                "API can submit jobs and read every result. Never run it so in production."
            )
        elif not self.tenants:
            log.error("no API keys configured (YOLOQ_API_KEYS): every request will get 401")

    def find(self, api_key: str) -> TenantConfig | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        found = None
        for known, tenant in self.tenants.items():
            if hmac.compare_digest(known, digest):
                found = tenant
        return found
