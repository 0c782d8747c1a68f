"""The services a request needs, built once per process and held on the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from api.backpressure import DrainRate
from api.events import JobEventHub
from api.keyring import KeyRing
from api.metrics import ApiMetrics
from yoloq import keys
from yoloq.archive import ResultArchive
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.queue import ChunkQueue, make_celery
from yoloq.registry import ModelRegistry
from yoloq.settings import Settings


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    store: ObjectStore
    archive: ResultArchive
    queue: ChunkQueue
    metrics: ApiMetrics
    keyring: KeyRing
    registry: ModelRegistry
    events: JobEventHub
    drain_rates: dict[str, DrainRate] = field(default_factory=dict)

    @property
    def inputs(self) -> JobInputs:
        return JobInputs(self.store, self.settings.results_bucket)

    def drain_rate(self, model: str) -> DrainRate:
        return self.drain_rates.setdefault(model, DrainRate())

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        store = ObjectStore.from_settings(settings)
        jobs = JobStore.from_url(settings.redis_url, settings.key_prefix)
        return cls(
            settings=settings,
            jobs=jobs,
            store=store,
            archive=ResultArchive(store, settings.results_bucket),
            queue=ChunkQueue(make_celery(settings), settings.queue_model_name),
            metrics=ApiMetrics(jobs.queued_images),
            keyring=KeyRing(settings),
            registry=ModelRegistry(store, settings.models_bucket, settings.catalog_cache_s),
            events=JobEventHub(
                settings.redis_url, keys.RedisKeys(settings.key_prefix).job_events()
            ),
        )


# The dependencies below do no I/O, so they are coroutines: FastAPI runs a plain function
# dependency on its thread pool, a hand-off to a thread and back for each of them on every
# request, which cost more than the work itself.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
