"""A worker's heartbeat in Redis: what it serves, on which device, and that it is alive."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from workers.inflight import requeue_orphans
from workers.runtime import WorkerRuntime
from workers.sweeper import sweep_lost_chunks
from yoloq.schemas import WorkerHeartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, runtime: WorkerRuntime, name: str, interval_s: float) -> None:
        self.runtime = runtime
        self.name = name
        self.interval_s = interval_s
        # Three missed beats and the entry expires by itself.
        self.ttl_s = 3 * interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> WorkerHeartbeat:
        import torch

        runtime = self.runtime
        models = list(runtime.models.values())
        beat = WorkerHeartbeat(
            name=self.name,
            device=runtime.device.requested,
            models=[model.info() for model in models],
            warmed=all(model.detector.warmed for model in models),
            threads=torch.get_num_threads(),
            images_done=runtime.stats.images_done,
            max_batch=runtime.max_batch,
            concurrency=runtime.concurrency,
            batch_sizes=runtime.stats.batch_histogram(),
            started_at=datetime.fromtimestamp(runtime.started_at, tz=UTC),
            last_seen=datetime.now(tz=UTC),
        )
        runtime.jobs.heartbeat(beat, ttl_s=self.ttl_s)
        return beat

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s)
        try:
            self.runtime.jobs.forget_worker(self.name)
        except Exception:
            log.warning("could not remove the heartbeat of %s", self.name, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
                # Every live worker looks for dead ones, so their chunks come back
                # whichever workers survive.
                requeue_orphans(
                    self.runtime.jobs,
                    self.runtime.inputs,
                    self.runtime.requeue,
                    self.name,
                    self.ttl_s,
                )
                sweep_lost_chunks(
                    self.runtime.jobs,
                    self.runtime.inputs,
                    self.runtime.requeue,
                    self.runtime.settings.lost_chunk_after_s,
                    self.runtime.send_plan,
                )
            except Exception:
                # Redis may be restarting; the next beat tries again.
                log.warning("heartbeat failed", exc_info=True)
