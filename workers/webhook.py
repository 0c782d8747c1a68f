"""Delivering a finished job's webhook: the signed job summary, POSTed to its callback_url."""

from __future__ import annotations

import logging
import random
import time

import httpx

from yoloq.job_store import JobStore
from yoloq.settings import Settings
from yoloq.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, host_allowed, sign

log = logging.getLogger(__name__)


class WebhookFailed(Exception):
    """The receiver did not answer 2xx; worth trying again later."""


def backoff_s(attempt: int) -> float:
    """Exponential, capped at 5 minutes, with jitter so receivers are not hit in step."""
    return min(300.0, 2.0**attempt) * random.uniform(0.5, 1.5)


def deliver(settings: Settings, jobs: JobStore, job_id: str) -> bool:
    """POST the summary once; False when there is nothing (left) to send."""
    record = jobs.get(job_id)
    if record is None or not record.callback_url:
        return False
    # Checked again here: the allow-list may have shrunk since the job was accepted.
    if not settings.webhook_secret or not host_allowed(
        record.callback_url, settings.webhook_allowed_hosts
    ):
        log.warning(
            "job %s: callback %s is no longer allowed; not sent", job_id, record.callback_url
        )
        return False
    body = record.public.model_dump_json().encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(settings.webhook_secret, timestamp, body),
        "User-Agent": "yoloq-webhook",
    }
    try:
        response = httpx.post(record.callback_url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as error:
        raise WebhookFailed(f"{record.callback_url}: {error}") from error
    if not response.is_success:
        raise WebhookFailed(f"{record.callback_url} answered {response.status_code}")
    log.info("job %s: webhook delivered to %s", job_id, record.callback_url)
    return True
