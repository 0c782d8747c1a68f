"""The model catalog: what can be run, which versions the aliases point at, and who
serves each version. Reading needs any API key; moving an alias needs an admin key."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.auth import AdminPrincipal, CurrentPrincipal, Principal
from api.deps import Services, ServicesDep
from api.routes.health import HEARTBEAT_MAX_AGE_S
from yoloq.catalog import (
    Alias,
    AliasUpdate,
    CatalogError,
    ModelCard,
    ModelReference,
    ModelStatus,
    VersionStatus,
)
from yoloq.schemas import WorkerHeartbeat

router = APIRouter(prefix="/v1/models", tags=["models"])


def _serving(beats: list[WorkerHeartbeat]) -> dict[str, list[str]]:
    """Worker names by the model version ids they serve."""
    by_id: dict[str, list[str]] = {}
    for beat in beats:
        for model in beat.models:
            by_id.setdefault(model.id, []).append(beat.name)
    return by_id


def _status(card: ModelCard, serving: dict[str, list[str]], queued: dict[str, int]) -> ModelStatus:
    versions = [
        VersionStatus(
            **version.model_dump(),
            workers=sorted(serving.get(version.id, [])),
            queued_images=queued.get(version.id, 0),
        )
        for version in card.versions
    ]
    return ModelStatus(
        name=card.name,
        task=card.versions[-1].task if card.versions else None,
        versions=versions,
        aliases=card.aliases,
        workers=sorted({name for v in versions for name in v.workers}),
        queued_images=sum(v.queued_images for v in versions),
    )


def _file_models(
    beats: list[WorkerHeartbeat], queued: dict[str, int], known: set[str]
) -> list[ModelStatus]:
    """Models workers serve from a weights file, outside the registry."""
    found: dict[str, ModelStatus] = {}
    for beat in beats:
        for model in beat.models:
            if model.version is not None or model.name in known:
                continue
            entry = found.setdefault(
                model.name,
                ModelStatus(
                    name=model.name,
                    task=model.task,
                    versions=[],
                    aliases={},
                    in_registry=False,
                    queued_images=queued.get(model.id, 0),
                ),
            )
            entry.workers.append(beat.name)
    return list(found.values())


def _card(services: Services, name: str, principal: Principal) -> ModelCard:
    if not principal.may_use(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model named {name!r}")
    try:
        return services.registry.card(ModelReference.parse(name).name)
    except CatalogError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error


@router.get("")
def list_models(services: ServicesDep, principal: CurrentPrincipal) -> list[ModelStatus]:
    """Every model this API key may run: versions, aliases and their splits, task, classes,
    the live workers serving each version and the images queued for it. A model with no
    live worker is listed with none: its jobs are accepted and wait in its queue."""
    beats = services.jobs.live_workers(HEARTBEAT_MAX_AGE_S)
    serving, queued = _serving(beats), services.jobs.queued_images()
    models = []
    names = [name for name in services.registry.names() if principal.may_use(name)]
    for name in names:
        try:
            models.append(_status(services.registry.card(name), serving, queued))
        except CatalogError:  # a name with no version written yet (a push under way)
            continue
    files = _file_models(beats, queued, set(names))
    return models + [model for model in files if principal.may_use(model.name)]


@router.get("/{name}", responses={404: {"description": "No such model."}})
def get_model(name: str, services: ServicesDep, principal: CurrentPrincipal) -> ModelStatus:
    beats = services.jobs.live_workers(HEARTBEAT_MAX_AGE_S)
    serving, queued = _serving(beats), services.jobs.queued_images()
    try:
        card = _card(services, name, principal)
    except HTTPException:
        for model in _file_models(beats, queued, set()):
            if model.name == name and principal.may_use(name):
                return model
        raise
    return _status(card, serving, queued)


@router.put(
    "/{name}/aliases/{alias}",
    responses={
        403: {"description": "Not an admin API key."},
        404: {"description": "No such model."},
        422: {"description": "The target names a version the model does not have."},
    },
)
def set_alias(
    name: str, alias: str, body: AliasUpdate, services: ServicesDep, _admin: AdminPrincipal
) -> ModelStatus:
    """Point an alias at a version, or split it between versions (``7:90,8:10``). New
    jobs naming the alias see it within ``YOLOQ_CATALOG_CACHE_S``; jobs already accepted
    keep the version they were pinned to. Workers following the alias load the new
    version, then drain the old one."""
    _card(services, name, _admin)
    try:
        card = services.registry.set_alias(name, alias, Alias.parse(body.target))
    except CatalogError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    beats = services.jobs.live_workers(HEARTBEAT_MAX_AGE_S)
    return _status(card, _serving(beats), services.jobs.queued_images())


@router.delete(
    "/{name}/aliases/{alias}",
    responses={
        403: {"description": "Not an admin API key."},
        404: {"description": "No such alias."},
    },
)
def delete_alias(
    name: str, alias: str, services: ServicesDep, _admin: AdminPrincipal
) -> ModelStatus:
    card = _card(services, name, _admin)
    if alias not in card.aliases:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no alias {alias!r}")
    card = services.registry.delete_alias(name, alias)
    beats = services.jobs.live_workers(HEARTBEAT_MAX_AGE_S)
    return _status(card, _serving(beats), services.jobs.queued_images())
