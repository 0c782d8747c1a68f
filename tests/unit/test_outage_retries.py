"""Waiting out a store outage: retried with backoff until the deadline, then handed back."""

from __future__ import annotations

import time

import pytest
import redis

from workers.delivery import HandBack, retry_through_outages
from yoloq.object_store import RetryPolicy, StorageUnavailable


def test_a_step_is_retried_until_the_store_returns() -> None:
    calls: list[float] = []

    def step() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise redis.ConnectionError("connection refused")
        return "recorded"

    assert retry_through_outages(step, time.monotonic() + 30, "recording") == "recorded"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.125  # backoff, not a busy loop


def test_an_outage_past_the_deadline_hands_the_chunk_back() -> None:
    def step() -> None:
        raise StorageUnavailable("S3 answered 503 five times")

    with pytest.raises(HandBack, match="503"):
        retry_through_outages(step, time.monotonic() + 0.5, "recording")


def test_other_errors_are_not_retried() -> None:
    calls = []

    def step() -> None:
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        retry_through_outages(step, time.monotonic() + 30, "recording")
    assert calls == [1]


def test_s3_backoff_grows_with_full_jitter_and_a_cap() -> None:
    policy = RetryPolicy(attempts=8, backoff_s=0.1, max_backoff_s=1.0)
    for retry in range(8):
        delays = [policy.delay_s(retry) for _ in range(200)]
        ceiling = min(1.0, 0.1 * 2**retry)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.5 * ceiling  # spread over the range, not fixed
