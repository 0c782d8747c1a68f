"""A small synchronous client for the yoloq HTTP API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx

from yoloq.catalog import AliasUpdate, ModelStatus
from yoloq.results import DetectResult, ResultItem, ResultsPage
from yoloq.schemas import (
    ImageRef,
    InferenceParams,
    JobAccepted,
    JobCreate,
    JobEvent,
    JobPublic,
    ManifestSource,
    PrefixSource,
    UploadedImage,
    WorkerHeartbeat,
)


class ApiError(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def _passing(error: Exception) -> bool:
    """An outage worth waiting out: the service answered 503, or could not be reached."""
    if isinstance(error, ApiError):
        return error.status_code == 503
    return isinstance(error, httpx.HTTPError)


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

    def _raise(self, response: httpx.Response) -> NoReturn:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise(response)
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
        images: list[ImageRef] | PrefixSource | ManifestSource,
        params: InferenceParams | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """A job of the images listed, or of every image under a prefix or in a manifest
        (listed by the workers: it starts as ``planning``, with ``total`` growing)."""
        job = JobCreate(
            images=images if isinstance(images, list) else None,
            source=images if isinstance(images, PrefixSource) else None,
            manifest=images if isinstance(images, ManifestSource) else None,
            params=params or InferenceParams(),
            model=model,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return JobAccepted.model_validate(
            self._call(
                "POST",
                "/v1/jobs",
                json=job.model_dump(mode="json", exclude_none=True),
                headers=headers,
            )
        )

    def job(self, job_id: str, wait_s: float | None = None) -> JobPublic:
        """The job now; with ``wait_s``, once its status changes (or ``wait_s`` passes)."""
        params = {"wait": wait_s} if wait_s else {}
        timeout = (wait_s or 0) + (self.http.timeout.read or 30.0)
        return JobPublic.model_validate(
            self._call("GET", f"/v1/jobs/{job_id}", params=params, timeout=timeout)
        )

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

    def events(self, job_id: str, read_timeout_s: float = 60.0) -> Iterator[JobEvent | None]:
        """The job's events as the API streams them (``GET /v1/jobs/{id}/events``): its
        state now, each change, and its final state, after which the stream ends. None
        for each heartbeat comment, so a caller can check a deadline of its own."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout_s)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith(":"):
                    yield None
                elif line.startswith("data:"):
                    data.append(line.removeprefix("data:").strip())
                elif not line and data:
                    yield JobEvent.model_validate_json("\n".join(data))
                    data = []

    def wait(
        self,
        job_id: str,
        timeout_s: float = 600.0,
        poll_s: float = 0.25,
        on_progress: Callable[[JobEvent], None] | None = None,
    ) -> JobPublic:
        """Follow the job's events until its status is final; if the stream breaks,
        poll instead (every ``poll_s``). A service briefly unavailable (503, or no
        connection: a Redis failover, an API restart) is waited out until the deadline."""
        deadline = time.monotonic() + timeout_s
        try:
            for event in self.events(job_id):
                if event is not None and on_progress:
                    on_progress(event)
                if event is not None and event.status.is_final:
                    return self._job_once_reachable(job_id, deadline, poll_s)
                if time.monotonic() > deadline:
                    break
        except (httpx.HTTPError, ApiError) as error:
            if not _passing(error):
                raise  # the stream broke or the service is away: polling takes over
        while True:
            job = self._job_once_reachable(job_id, deadline, poll_s)
            if on_progress:
                on_progress(JobEvent.of(job))
            if job.status.is_final:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s:.0f}s")
            time.sleep(poll_s)

    def _job_once_reachable(self, job_id: str, deadline: float, poll_s: float) -> JobPublic:
        while True:
            try:
                return self.job(job_id)
            except (httpx.TransportError, ApiError) as error:
                if not _passing(error) or time.monotonic() > deadline:
                    raise
            time.sleep(poll_s)

    def detect(
        self,
        image: Path | bytes | ImageRef,
        params: InferenceParams | None = None,
        model: str | None = None,
        timeout_s: float = 30.0,
    ) -> DetectResult:
        """One image's result in one request (``POST /v1/detect``): a file, its bytes, or
        an object in a bucket the key may read. If the API answers 202 (its wait ran
        out first), waits for the job here, up to ``timeout_s`` in all."""
        started = time.monotonic()
        query: dict[str, Any] = (params or InferenceParams()).model_dump(exclude_defaults=True)
        query.update({"timeout": timeout_s, **({"model": model} if model else {})})
        if isinstance(image, ImageRef):
            request: dict[str, Any] = {"json": {"image": image.model_dump()}}
        elif isinstance(image, Path):
            request = {"files": {"file": (image.name, image.read_bytes())}}
        else:
            request = {"content": image, "headers": {"Content-Type": "application/octet-stream"}}
        # The API answers within timeout_s (202 at worst): give it that and a margin.
        wait = timeout_s + (self.http.timeout.connect or 10.0)
        response = self.http.post("/v1/detect", params=query, timeout=wait, **request)
        if response.status_code == 202:
            job_id = JobAccepted.model_validate(response.json()).id
            self.wait(job_id, timeout_s=max(0.0, timeout_s - (time.monotonic() - started)))
            [item] = list(self.results(job_id))
            return DetectResult(job_id=job_id, item=item)
        if response.status_code >= 400:
            self._raise(response)
        return DetectResult.model_validate(response.json())
