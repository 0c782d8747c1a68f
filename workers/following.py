"""A worker following aliases: when an alias it serves moves, load the new version first,
then drain the old one.

Every ``YOLOQ_ALIAS_POLL_S`` the follower reads the registry again. A version an alias
now names is downloaded, loaded and warmed (on a passing thread, while the batcher goes
on with the others) before the worker consumes its queue, so no job waits on a cold
model. A version no reference names any more is *draining*: the worker keeps serving its
queue, because jobs pinned to it are still queued, until none is left (and the API can no
longer pin new jobs to it from a stale cache) or another live worker serves it. Then the
worker stops consuming that queue, lets the chunks it holds finish, and unloads it.

Jobs are pinned to a version when they are accepted, so moving an alias never runs one
job on two versions; draining this way loses and stalls none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from celery import Celery

from workers.memory import MemoryBudget, ModelDoesNotFit
from workers.runtime import WorkerRuntime
from workers.serving import ModelSource, ServedModel, is_weights_file, unload, version_source
from yoloq import keys
from yoloq.catalog import CatalogError, ModelReference, ModelVersion
from yoloq.registry import ModelRegistry

log = logging.getLogger(__name__)

Loader = Callable[[ModelSource], ServedModel]


def follows_an_alias(specs: list[str]) -> bool:
    """Whether any reference can change under the worker: a bare name or an alias."""
    return any(
        not is_weights_file(spec) and ModelReference.parse(spec).version is None for spec in specs
    )


class AliasFollower:
    def __init__(
        self,
        runtime: WorkerRuntime,
        specs: list[str],
        registry: ModelRegistry,
        app: Celery,
        load: Loader,
        budget: MemoryBudget,
    ) -> None:
        self.runtime = runtime
        self.references = [ModelReference.parse(s) for s in specs if not is_weights_file(s)]
        self.registry = registry
        self.app = app
        self.load = load
        self.budget = budget
        self.poll_s = runtime.settings.alias_poll_s
        # Jobs pinned from the API's cached view of an alias may still arrive this long
        # after it moved.
        self.grace_s = 2 * runtime.settings.catalog_cache_s + self.poll_s
        self.unwanted_since: dict[str, float] = {}
        self.refused: set[str] = set()
        self.consuming: set[str] = set(runtime.models)
        """Versions whose queues the worker takes from (at start: all it was started with)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)

    def start(self) -> AliasFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.follow_once()
            except Exception:
                # The registry or Redis may be away; what is loaded keeps serving.
                log.warning("following the aliases failed; trying again", exc_info=True)

    def wanted(self) -> dict[str, ModelVersion]:
        """Every version the references name now."""
        found: dict[str, ModelVersion] = {}
        for reference in self.references:
            for version in self.registry.card(reference.name).serving(reference):
                found[version.id] = version
        return found

    def follow_once(self) -> None:
        wanted = self.wanted()
        for model_id, version in wanted.items():
            if model_id not in self.runtime.models and model_id not in self.refused:
                self._add(version)
            elif model_id in self.runtime.models and model_id not in self.consuming:
                self._consume(model_id, start=True)  # an earlier try got no reply
        for model_id, model in list(self.runtime.models.items()):
            if model.source.version is None:
                continue  # a weights file: not the registry's
            if model_id in wanted:
                self.unwanted_since.pop(model_id, None)
                model.draining = False
                continue
            since = self.unwanted_since.setdefault(model_id, time.monotonic())
            if not model.draining:
                model.draining = True
                log.info("model %s is no longer named by its alias: draining its queue", model_id)
            if time.monotonic() - since >= self.grace_s and self._drained(model_id):
                self._remove(model)

    def _add(self, version: ModelVersion) -> None:
        try:
            source = version_source(version, self.runtime.settings, self.registry)
            served = self.load(source)
        except (ModelDoesNotFit, CatalogError, OSError) as error:
            # Not tried again until the worker restarts: a model that does not fit now
            # will not fit on the next poll either.
            log.error("cannot serve %s: %s", version.id, error)
            self.refused.add(version.id)
            return
        # Loaded and warm before its queue is consumed: no chunk waits on a cold model.
        self.runtime.models = {**self.runtime.models, served.id: served}
        self._consume(served.id, start=True)
        log.info("model %s is served (its alias moved to it)", served.id)

    def _drained(self, model_id: str) -> bool:
        if self.runtime.jobs.queued_images_for(model_id) == 0:
            return True
        return any(
            beat.name != self.runtime.name
            and any(m.id == model_id and not m.draining for m in beat.models)
            for beat in self.runtime.jobs.live_workers(
                3 * self.runtime.settings.heartbeat_interval_s
            )
        )

    def _remove(self, model: ServedModel) -> None:
        self._consume(model.id, start=False)
        # Chunks it had received (listed in flight from the moment they arrive) still run.
        while any(task.model == model.id for task in self.runtime.jobs.inflight(self.runtime.name)):
            if self._stop.wait(0.2):
                return
        self.runtime.models = {k: v for k, v in self.runtime.models.items() if k != model.id}
        self.unwanted_since.pop(model.id, None)
        unload(model, self.runtime.device, self.budget)
        log.info("model %s drained and unloaded", model.id)

    def _consume(self, model_id: str, start: bool) -> None:
        """Start or stop taking chunks from the version's queues, through Celery's remote
        control, addressed to this worker alone."""
        from celery.utils.nodenames import default_nodename

        control = self.app.control
        # Celery's own name for the node: a name without '@' is celery@name to it.
        node = [default_nodename(self.runtime.name)]
        for queue in keys.priority_queues(model_id):
            if start:
                replies = control.add_consumer(queue, destination=node, reply=True)
            else:
                replies = control.cancel_consumer(queue, destination=node, reply=True)
            if not replies:
                raise RuntimeError(f"no reply from {self.runtime.name} to consume {queue}")
        if start:
            self.consuming.add(model_id)
        else:
            self.consuming.discard(model_id)
