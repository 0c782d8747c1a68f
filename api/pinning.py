"""Which model version a job runs on: resolved once, when the job is accepted.

A job names a model (``name``, ``name:7``, ``name@alias``) or takes the deployment's
default. The alias is resolved here, against the registry, and the job is pinned to the
one version it chose: its chunks go to that version's queue and every image is run by
it, whatever the alias points at later. A split alias chooses from the job id, so a
retried submit (same Idempotency-Key, same job) gets the same version.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from api.auth import Principal
from yoloq.catalog import CatalogError, ModelReference
from yoloq.registry import ModelRegistry
from yoloq.schemas import ModelPin
from yoloq.settings import Settings


def pin_model(
    named: str | None,
    job_id: str,
    settings: Settings,
    registry: ModelRegistry,
    principal: Principal,
) -> ModelPin:
    """The job's version; 422 if the reference names nothing, 403 if the API key may not
    use the model."""
    text = named or settings.default_model
    if text is None:
        # No registry model asked for or configured: the workers' weights file, as before
        # the registry (its queue is named by the file).
        return _file_model(settings.queue_model_name, principal)
    try:
        reference = ModelReference.parse(text)
    except CatalogError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    if not principal.may_use(reference.name):
        raise _refused(reference.name, principal)
    try:
        version = registry.resolve(reference, job_id)
    except CatalogError as error:
        if reference == ModelReference(settings.queue_model_name) and not settings.default_model:
            return _file_model(reference.name, principal)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    return ModelPin(
        id=version.id,
        name=version.name,
        version=version.version,
        sha256=version.sha256,
        task=version.task,
    )


def _file_model(name: str, principal: Principal) -> ModelPin:
    if not principal.may_use(name):
        raise _refused(name, principal)
    return ModelPin(id=name, name=name)


def _refused(name: str, principal: Principal) -> HTTPException:
    allowed = ", ".join(sorted(principal.models or ())) or "none"
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"this API key may not run model {name!r} (its models: {allowed})",
    )
