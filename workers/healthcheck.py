"""``python -m workers.healthcheck [--name NAME]``: is this worker's model warm?

The container health check (Dockerfile.worker, docker-compose.yml) and the Kubernetes
readiness probe run this. It reads the heartbeat the worker writes to Redis, so it
answers for the process that actually serves: exit 0 when a live heartbeat says
``warmed``, else exit 1 with a one-line reason.

It imports neither torch nor the worker: a probe that loaded torch would take seconds
and gigabytes on every call.
"""

from __future__ import annotations

import argparse
import socket
import sys

import redis

from yoloq.job_store import JobStore
from yoloq.schemas import WorkerHeartbeat
from yoloq.settings import Settings

PROBE_TIMEOUT_S = 3.0
"""Redis timeouts for the probe: it must answer well inside the probe's own timeout."""


def find_reason(beats: list[WorkerHeartbeat], name: str | None, hostname: str) -> str | None:
    """Why this worker is not ready, or None when it is.

    ``name`` picks one worker exactly; without it, any worker named ``...@hostname``
    (``gpu0@host``, ``cpu@host``) counts, which is this container's worker.
    """
    if name:
        mine = [beat for beat in beats if beat.name == name]
        wanted = f"worker {name!r}"
    else:
        mine = [beat for beat in beats if beat.name.endswith(f"@{hostname}")]
        wanted = f"a worker named '*@{hostname}'"
    if not mine:
        return f"no live heartbeat from {wanted}"
    if not any(beat.warmed for beat in mine):
        return f"{wanted} is alive but its model is not warmed yet"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.healthcheck", description=__doc__)
    parser.add_argument("--name", help="the worker's name (default: any worker '*@<hostname>')")
    args = parser.parse_args(argv)

    settings = Settings()
    jobs = JobStore.from_url(
        settings.redis_url,
        settings.key_prefix,
        connect_timeout_s=PROBE_TIMEOUT_S,
        timeout_s=PROBE_TIMEOUT_S,
    )
    # A heartbeat older than three beats is gone: the same rule its Redis TTL follows.
    max_age_s = 3 * settings.heartbeat_interval_s
    try:
        beats = jobs.live_workers(max_age_s)
    except redis.RedisError as error:
        print(f"not ready: redis unreachable: {error}", file=sys.stderr)
        return 1
    finally:
        jobs.close()
    reason = find_reason(beats, args.name, socket.gethostname())
    if reason:
        print(f"not ready: {reason}", file=sys.stderr)
        return 1
    print("ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
