"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import kombu.exceptions
import redis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import Services
from api.docs import install_docs
from api.limits import BodyLimitMiddleware
from api.metrics import MetricsMiddleware
from api.routes import dead_letters, detect, events, health, images, jobs, models, workers
from yoloq.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.events.close()

    app = FastAPI(
        title="yoloq",
        lifespan=lifespan,
        version="0.1.0",
        description="Submit images in object storage for YOLO inference and follow the jobs "
        "as they run, or send one image and get its result in the same request.",
        docs_url=None,  # served by install_docs, from local files
        redoc_url=None,
        # No OpenTelemetry from FastAPI itself, even where FASTAPI_OTEL_AUTO_CONFIGURE or
        # an installed provider would turn it on: nothing leaves the host unasked, and
        # each request skips the check. Metrics are the API's own (/metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    install_docs(app)
    app.state.services = services
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(detect.router)
    app.include_router(images.router)
    app.include_router(workers.router)
    app.include_router(models.router)
    app.include_router(dead_letters.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes + 64 * 1024,  # multipart framing
    )
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(kombu.exceptions.OperationalError)
    async def redis_unavailable(request: Request, error: Exception) -> JSONResponse:
        # Redis is both the job store and the broker; either failing means the same.
        log.warning("redis error on %s: %s", request.url.path, error)
        return JSONResponse(
            {"detail": f"job store (Redis) unavailable: {error}; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    return app
