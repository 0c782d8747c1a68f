import pytest

from api.backpressure import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, DrainRate, retry_after_s


def test_rate_from_samples() -> None:
    rate = DrainRate(window_s=60)
    rate.observe(100, now=0.0)
    assert rate.images_per_s() is None  # one sample says nothing
    rate.observe(150, now=5.0)
    rate.observe(200, now=10.0)
    assert rate.images_per_s() == pytest.approx(10.0)


def test_old_samples_leave_the_window() -> None:
    rate = DrainRate(window_s=10)
    rate.observe(0, now=0.0)
    rate.observe(1000, now=5.0)
    rate.observe(1010, now=14.0)  # the first sample is now out of the window
    assert rate.images_per_s() == pytest.approx(10 / 9)


def test_a_restarted_worker_resets_the_samples() -> None:
    rate = DrainRate()
    rate.observe(500, now=0.0)
    rate.observe(10, now=2.0)
    assert rate.images_per_s() is None


def test_retry_after() -> None:
    assert retry_after_s(100, 10.0) == 10
    assert retry_after_s(1, 1000.0) == 1
    assert retry_after_s(10**9, 1.0) == MAX_RETRY_AFTER_S
    assert retry_after_s(100, None) == DEFAULT_RETRY_AFTER_S
