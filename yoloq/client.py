"""A small synchronous client for the yoloq HTTP API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from yoloq.catalog import AliasUpdate, ModelStatus
from yoloq.results import ResultItem, ResultsPage
from yoloq.schemas import (
    ImageRef,
    InferenceParams,
    JobAccepted,
    JobCreate,
    JobPublic,
    UploadedImage,
    WorkerHeartbeat,
)


class ApiError(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.json()

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def upload(self, path: Path) -> ImageRef:
        with path.open("rb") as f:
            body = self._call("POST", "/v1/images", files={"file": (path.name, f)})
        uploaded = UploadedImage.model_validate(body)
        return ImageRef(bucket=uploaded.bucket, key=uploaded.key)

    def submit(
        self,
        images: list[ImageRef],
        params: InferenceParams | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        job = JobCreate(images=images, params=params or InferenceParams(), model=model)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return JobAccepted.model_validate(
            self._call(
                "POST",
                "/v1/jobs",
                json=job.model_dump(mode="json", exclude_none=True),
                headers=headers,
            )
        )

    def job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._call("GET", f"/v1/jobs/{job_id}"))

    def results_page(self, job_id: str, offset: int = 0, limit: int = 100) -> ResultsPage:
        body = self._call(
            "GET", f"/v1/jobs/{job_id}/results", params={"offset": offset, "limit": limit}
        )
        return ResultsPage.model_validate(body)

    def results(self, job_id: str, page_size: int = 500) -> Iterator[ResultItem]:
        """Every item of a finished job, in submission order."""
        offset: int | None = 0
        while offset is not None:
            page = self.results_page(job_id, offset, page_size)
            yield from page.items
            offset = page.next_offset

    def models(self) -> list[ModelStatus]:
        return [ModelStatus.model_validate(m) for m in self._call("GET", "/v1/models")]

    def model(self, name: str) -> ModelStatus:
        return ModelStatus.model_validate(self._call("GET", f"/v1/models/{name}"))

    def set_alias(self, name: str, alias: str, target: str) -> ModelStatus:
        body = self._call(
            "PUT",
            f"/v1/models/{name}/aliases/{alias}",
            json=AliasUpdate(target=target).model_dump(),
        )
        return ModelStatus.model_validate(body)

    def workers(self) -> list[WorkerHeartbeat]:
        return [WorkerHeartbeat.model_validate(w) for w in self._call("GET", "/v1/workers")]

    def wait(
        self,
        job_id: str,
        timeout_s: float = 600.0,
        poll_s: float = 0.25,
        on_progress: Callable[[JobPublic], None] | None = None,
    ) -> JobPublic:
        """Poll until the job's status is final."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_progress:
                on_progress(job)
            if job.status.is_final:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s:.0f}s")
            time.sleep(poll_s)
