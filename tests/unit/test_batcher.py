"""The batcher on its own: ordering, max batch, max delay, isolated errors, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from workers.batcher import Batcher, BatcherStopped


class Recorder:
    """A run_batch that records its batches and can be held closed by a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, values: list[int]) -> list[int]:
        self.gate.wait(10)
        self.batches.append(list(values))
        if any(v < 0 for v in values):
            raise ValueError("negative input")
        return [v * 10 for v in values]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def batcher(recorder: Recorder) -> Iterator[Batcher[int, int]]:
    b: Batcher[int, int] = Batcher(recorder, max_batch=4, max_delay_s=0.2).start()
    yield b
    b.stop()


def test_results_go_to_their_own_callers(batcher: Batcher[int, int]) -> None:
    futures = [batcher.submit(v) for v in range(10)]
    assert [f.result(5) for f in futures] == [v * 10 for v in range(10)]


def test_batches_never_exceed_max_and_keep_arrival_order(
    batcher: Batcher[int, int], recorder: Recorder
) -> None:
    recorder.gate.clear()  # hold the first batch so the rest queue up behind it
    futures = [batcher.submit(v) for v in range(11)]
    time.sleep(0.05)
    recorder.gate.set()
    for f in futures:
        f.result(5)
    assert all(len(b) <= 4 for b in recorder.batches)
    assert [v for b in recorder.batches for v in b] == list(range(11))
    assert max(len(b) for b in recorder.batches) == 4


def test_an_input_waits_at_most_max_delay_for_announced_company(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=64, max_delay_s=0.05).start()
    try:
        b.announce(2)  # the second never comes and is never withdrawn
        started = time.monotonic()
        assert b.submit(7, announced=True).result(5) == 70
        waited = time.monotonic() - started
    finally:
        b.stop()
    assert 0.04 <= waited < 1.0
    assert recorder.batches == [[7]]


def test_announced_inputs_are_waited_for_and_batched_together(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=8, max_delay_s=5).start()
    try:
        b.announce(3)
        first = b.submit(1, announced=True)
        time.sleep(0.1)  # the others are still "downloading"
        rest = [b.submit(v, announced=True) for v in (2, 3)]
        assert [f.result(5) for f in [first, *rest]] == [10, 20, 30]
    finally:
        b.stop()
    assert recorder.batches == [[1, 2, 3]]


def test_an_input_nobody_announced_company_for_runs_at_once(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=64, max_delay_s=5).start()
    try:
        started = time.monotonic()
        assert b.submit(7).result(5) == 70
        waited = time.monotonic() - started
    finally:
        b.stop()
    assert waited < 1.0


def test_a_withdrawn_input_is_not_waited_for(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=64, max_delay_s=5).start()
    try:
        b.announce(2)
        started = time.monotonic()
        future = b.submit(7, announced=True)
        time.sleep(0.05)
        b.withdraw()  # the other image failed to download
        assert future.result(5) == 70
        waited = time.monotonic() - started
    finally:
        b.stop()
    assert waited < 1.0
    assert recorder.batches == [[7]]


def test_a_full_batch_runs_without_waiting_for_the_delay(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=3, max_delay_s=30).start()
    try:
        futures = [b.submit(v) for v in range(3)]
        assert [f.result(5) for f in futures] == [0, 10, 20]
    finally:
        b.stop()


def test_inputs_with_different_keys_are_never_mixed(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(
        recorder, max_batch=8, max_delay_s=0.05, batch_key=lambda v: v % 2
    ).start()
    try:
        futures = [b.submit(v) for v in range(8)]
        assert [f.result(5) for f in futures] == [v * 10 for v in range(8)]
    finally:
        b.stop()
    assert all(len({v % 2 for v in batch}) == 1 for batch in recorder.batches)


def test_a_failing_input_fails_alone(batcher: Batcher[int, int]) -> None:
    futures = [batcher.submit(v) for v in (1, -1, 2, 3)]
    assert futures[0].result(5) == 10
    with pytest.raises(ValueError, match="negative"):
        futures[1].result(5)
    assert [futures[2].result(5), futures[3].result(5)] == [20, 30]


def test_stop_finishes_waiting_inputs_then_refuses(recorder: Recorder) -> None:
    b: Batcher[int, int] = Batcher(recorder, max_batch=2, max_delay_s=0.01).start()
    futures = [b.submit(v) for v in range(5)]
    b.stop()
    assert [f.result(0) for f in futures] == [0, 10, 20, 30, 40]
    with pytest.raises(BatcherStopped):
        b.submit(1)


def test_on_batch_reports_sizes(recorder: Recorder) -> None:
    sizes: list[int] = []
    b: Batcher[int, int] = Batcher(
        recorder, max_batch=4, max_delay_s=0.05, on_batch=lambda n, _s: sizes.append(n)
    ).start()
    try:
        for f in [b.submit(v) for v in range(6)]:
            f.result(5)
    finally:
        b.stop()
    assert sum(sizes) == 6 and max(sizes) <= 4


def test_refuses_a_zero_batch(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(recorder, max_batch=0, max_delay_s=0.1)
