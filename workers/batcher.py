"""A dynamic batcher: one thread owns the model and runs batches formed across tasks.

Callers on any thread ``submit`` one input and get a future. The batcher thread takes the
oldest waiting input, then collects more inputs of the same batch key until it has
``max_batch`` or ``max_delay_s`` has passed since that first input arrived, and runs them
in one call. Inputs with other keys wait their turn in arrival order, so none starves.

It waits only for inputs it has been told are coming: callers ``announce`` inputs they are
still downloading or decoding, and ``submit(..., announced=True)`` or ``withdraw`` each.
With none announced a batch runs at once, so a lone image never waits for company that
is not on its way.

It knows nothing of Celery, S3 or Ultralytics: ``run_batch`` is any function from a list
of inputs to a list of outputs of the same length.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class BatcherStopped(RuntimeError):
    """The batcher was stopped before this input ran."""


@dataclass
class _Request(Generic[In, Out]):
    value: In
    key: Hashable
    arrived: float
    future: Future[Out] = field(default_factory=Future)


class Batcher(Generic[In, Out]):
    def __init__(
        self,
        run_batch: Callable[[list[In]], list[Out]],
        *,
        max_batch: int,
        max_delay_s: float,
        batch_key: Callable[[In], Hashable] = lambda _: None,
        batch_limit: Callable[[In], int] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.batch_key = batch_key
        self.batch_limit = batch_limit
        """The most inputs a batch starting with this one may take (at most
        ``max_batch``): models of one worker may each have their own."""
        self.on_batch = on_batch
        self._waiting: deque[_Request[In, Out]] = deque()
        self._announced = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Batcher[In, Out]:
        self._thread.start()
        return self

    def announce(self, count: int) -> None:
        """``count`` inputs are on their way: a batch that is not full may wait for them."""
        with self._cond:
            self._announced += count

    def withdraw(self, count: int = 1) -> None:
        """Announced inputs that will not come after all (they failed to download)."""
        with self._cond:
            self._announced = max(0, self._announced - count)
            self._cond.notify()

    def submit(self, value: In, *, announced: bool = False) -> Future[Out]:
        """Queue one input; ``announced`` if it was counted in ``announce`` before."""
        request: _Request[In, Out] = _Request(value, self.batch_key(value), time.monotonic())
        with self._cond:
            if announced:
                self._announced = max(0, self._announced - 1)
            if self._stopping:
                raise BatcherStopped("the batcher is stopped")
            self._waiting.append(request)
            self._cond.notify()
        return request.future

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what is waiting, then stop. Whatever is still waiting after
        ``timeout_s`` fails with ``BatcherStopped``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)
        with self._cond:
            while self._waiting:
                self._waiting.popleft().future.set_exception(BatcherStopped("stopped"))

    def _next_batch(self) -> list[_Request[In, Out]] | None:
        """Block until a batch is ready; None once stopped with nothing waiting."""
        with self._cond:
            while not self._waiting:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._waiting[0]
            deadline = first.arrived + self.max_delay_s
            limit = self.max_batch
            if self.batch_limit is not None:
                limit = max(1, min(limit, self.batch_limit(first.value)))
            while not self._stopping:
                same = sum(1 for r in self._waiting if r.key == first.key)
                remaining = deadline - time.monotonic()
                if same >= limit or remaining <= 0 or not self._announced:
                    break
                self._cond.wait(remaining)
            batch: list[_Request[In, Out]] = []
            kept: deque[_Request[In, Out]] = deque()
            for request in self._waiting:
                if request.key == first.key and len(batch) < limit:
                    batch.append(request)
                else:
                    kept.append(request)
            self._waiting = kept
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Request[In, Out]]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.run_batch([r.value for r in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"run_batch returned {len(outputs)} outputs for {len(batch)}")
        except Exception as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
            else:
                # One bad input must not fail its neighbours: run each alone.
                log.warning("a batch of %d failed (%s); running them one by one", len(batch), error)
                for request in batch:
                    self._run([request])
            return
        if self.on_batch:
            self.on_batch(len(batch), time.perf_counter() - started)
        for request, output in zip(batch, outputs, strict=True):
            request.future.set_result(output)
