"""Connecting to Redis, for the job store, the API's event subscription, the health check
and the Celery broker alike: one server (``redis://``, ``rediss://``, ``unix://``), or
the master a set of Sentinels names, which survives losing the master's host::

    redis+sentinel://[:password@]host:26379,host2:26379,host3:26379/<master name>[/<db>]

The password is the master's (and its replicas'); the Sentinels themselves are reached
without one. After a failover every client finds the new master by asking the
Sentinels again, the broker included (kombu's ``sentinel://`` transport).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        rest = url.removeprefix(SENTINEL_SCHEME)
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        master, _, db = path.strip("/").partition("/")
        sentinels = []
        for entry in filter(None, hosts.split(",")):
            host, _, port = entry.partition(":")
            sentinels.append((host, int(port) if port else SENTINEL_PORT))
        if not sentinels or not master:
            raise ValueError(
                f"a Sentinel URL is redis+sentinel://host:port[,host:port...]/master[/db], "
                f"not {url!r}"
            )
        password = unquote(userinfo.partition(":")[2]) if userinfo else None
        return cls(sentinels, master, int(db or 0), password or None)


def sentinel_target(url: str) -> SentinelTarget | None:
    return SentinelTarget.parse(url) if url.startswith(SENTINEL_SCHEME) else None


def connect(url: str, **options: Any) -> redis.Redis[str]:
    """A client for ``url`` that decodes replies; ``options`` are redis-py's (timeouts)."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, decode_responses=True, **options)
    client: redis.Redis[str] = _sentinel(target, options).master_for(
        target.master, db=target.db, password=target.password, decode_responses=True, **options
    )
    return client


def connect_bytes(url: str, **options: Any) -> redis.Redis[bytes]:
    """The same server, through a client that keeps replies as bytes (image data)."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, decode_responses=False, **options)
    client: redis.Redis[bytes] = _sentinel(target, options).master_for(
        target.master, db=target.db, password=target.password, **options
    )
    return client


def connect_async(url: str, **options: Any) -> redis.asyncio.Redis[str]:
    """A decoding client for asyncio."""
    target = sentinel_target(url)
    if target is None:
        return redis.asyncio.Redis.from_url(url, decode_responses=True, **options)
    sentinel = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_timeouts(options))
    client: redis.asyncio.Redis[str] = sentinel.master_for(
        target.master, db=target.db, password=target.password, decode_responses=True, **options
    )
    return client


def _sentinel(target: SentinelTarget, options: dict[str, Any]) -> redis.sentinel.Sentinel:
    return redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=_timeouts(options))


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """The broker URL kombu takes for ``url``, and the transport options it needs."""
    target = sentinel_target(url)
    if target is None:
        return url, {}
    auth = f":{quote(target.password, safe='')}@" if target.password else ""
    broker = ";".join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels
    )
    return broker, {"master_name": target.master}


def _timeouts(options: dict[str, Any]) -> dict[str, Any]:
    """The client's timeouts, for its questions to the Sentinels too."""
    keys = ("socket_connect_timeout", "socket_timeout")
    return {key: options[key] for key in keys if key in options}
