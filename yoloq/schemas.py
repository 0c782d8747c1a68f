"""Job and result schemas: the contract between the API, the workers and clients."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from yoloq.catalog import CatalogError, ModelReference, Task

BucketName = Annotated[
    str,
    Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$"),
]
ObjectKey = Annotated[str, Field(min_length=1, max_length=1024)]


class JobStatus(enum.StrEnum):
    PLANNING = "planning"
    """A prefix or manifest job whose images are still being listed; chunks run meanwhile."""
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (JobStatus.PLANNING, JobStatus.QUEUED, JobStatus.RUNNING)


class ItemErrorCode(enum.StrEnum):
    """Stable codes for an image that produced no detections; clients may branch on them."""

    NOT_FOUND = "not_found"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    NOT_AN_IMAGE = "not_an_image"
    DECODE_FAILED = "decode_failed"
    ACCESS_DENIED = "access_denied"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INFERENCE_FAILED = "inference_failed"
    TIMEOUT = "timeout"
    POISON = "poison"
    INVALID_INPUT = "invalid_input"
    """A manifest line that names no image (bad JSON or CSV, no key, a bucket not allowed)."""


class ImageRef(BaseModel):
    """An image in object storage: bucket and key, never a URL (no SSRF)."""

    model_config = ConfigDict(extra="forbid")

    bucket: BucketName
    key: ObjectKey

    @field_validator("key")
    @classmethod
    def _safe_key(cls, key: str) -> str:
        if len(key.encode()) > 1024:
            raise ValueError("the key is longer than S3's limit of 1024 bytes (UTF-8)")
        if any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise ValueError("the key holds a control character; remove it")
        if ".." in key.split("/"):
            raise ValueError("the key holds a '..' segment; name the object by its real path")
        return key


MAX_CLASS_ID = 65535
"""No model has more classes; a larger id is a mistake, refused before it reaches one."""


class InferenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: float = Field(default=0.25, ge=0.0, le=1.0, description="Minimum confidence.")
    iou: float = Field(default=0.7, ge=0.0, le=1.0, description="NMS IoU threshold.")
    imgsz: int | None = Field(
        default=None,
        ge=32,
        le=4096,
        multiple_of=32,
        description="Inference size in pixels; null: the size the model was trained at, "
        "as Ultralytics does for .pt weights.",
    )
    max_det: int = Field(default=300, ge=1, le=3000, description="Most detections per image.")
    classes: list[Annotated[int, Field(ge=0, le=MAX_CLASS_ID)]] | None = Field(
        default=None, description="Keep only these class ids; null keeps all."
    )
    top_k: int = Field(
        default=5, ge=1, le=100, description="Classify models: the best classes kept per image."
    )
    masks: Literal["polygons", "rle"] = Field(
        default="polygons",
        description="Segment models: each mask as polygons (its parts, holes kept); 'rle' "
        "adds COCO run-length encoding at the original size.",
    )


class DetectOptions(InferenceParams):
    """``POST /v1/detect``'s query (or form) fields: the job's parameters, its model and
    how long to wait."""

    model: str | None = Field(
        default=None,
        description="name, name:version or name@alias; unset, the deployment's default.",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds to wait for the result (default YOLOQ_DETECT_TIMEOUT_S, at "
        "most YOLOQ_MAX_WAIT_S); past it, 202 with the job id to poll.",
    )

    def params(self) -> InferenceParams:
        return InferenceParams.model_validate(self.model_dump(exclude={"model", "timeout"}))


class DetectImage(BaseModel):
    """``POST /v1/detect`` with an image already in object storage."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": {"bucket": "line-3", "key": "cam1/0001.jpg"}}]},
    )

    image: ImageRef


class PrefixSource(BaseModel):
    """Every image under a prefix, instead of naming each one."""

    model_config = ConfigDict(extra="forbid")

    bucket: BucketName
    prefix: str = Field(default="", max_length=1024)
    limit: int | None = Field(default=None, ge=1, description="At most this many, by key order.")

    @field_validator("prefix")
    @classmethod
    def _safe_prefix(cls, prefix: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in prefix) or ".." in prefix.split("/"):
            raise ValueError("the prefix holds a control character or a '..' segment")
        return prefix


class ManifestSource(BaseModel):
    """A list of images too long for a request body, as an object in an allowed bucket:
    JSONL (a ``{"key": ...}`` or ``{"bucket": ..., "key": ...}`` per line) or, for a key
    ending ``.csv``, CSV (``bucket,key`` or ``key`` per line, as S3 Batch Operations
    writes them). A line without a bucket names one in the manifest's own bucket."""

    model_config = ConfigDict(extra="forbid")

    bucket: BucketName
    key: ObjectKey


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "images": [{"bucket": "images", "key": "line-3/cam-1/000123.jpg"}],
                    "params": {"conf": 0.25, "iou": 0.7, "imgsz": None, "max_det": 300},
                },
                {"source": {"bucket": "images", "prefix": "line-3/2026-11-22/", "limit": 5000}},
                {"manifest": {"bucket": "images", "key": "backfills/2026-q3.jsonl"}},
            ]
        },
    )

    images: list[ImageRef] | None = Field(default=None, min_length=1)
    source: PrefixSource | None = None
    manifest: ManifestSource | None = None
    model: str | None = Field(
        default=None,
        max_length=140,
        description="The model: 'name' (its production alias, else its newest version), "
        "'name:7' (a version) or 'name@alias'. Null: the deployment's default model. The job "
        "is pinned to one version when it is accepted.",
        examples=["parts-seg@production"],
    )
    params: InferenceParams = Field(default_factory=InferenceParams)
    priority: Priority = Field(
        default="normal",
        description="While the queue is busy, high gets 4/7 of the workers' turns, normal 2/7, "
        "low 1/7: higher first, lower never starved.",
    )
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed the job summary, signed, when the job ends (allow-listed hosts).",
    )

    @field_validator("model")
    @classmethod
    def _model_reference(cls, model: str | None) -> str | None:
        if model is None:
            return None
        try:
            return str(ModelReference.parse(model))
        except CatalogError as error:
            raise ValueError(str(error)) from error

    @model_validator(mode="after")
    def _one_of_images_or_source(self) -> JobCreate:
        given = [self.images is not None, self.source is not None, self.manifest is not None]
        if sum(given) != 1:
            raise ValueError(
                "give one of 'images' (a list of bucket/key), 'source' (a prefix) or "
                "'manifest' (an object listing the images)"
            )
        return self


Priority = Literal["high", "normal", "low"]


class ModelPin(BaseModel):
    """The one model version a job runs on, chosen when it was accepted."""

    id: str = Field(description="name:version: names the queue the job's chunks wait in.")
    name: str
    version: int | None = Field(
        default=None, description="Null for a model served from a weights file, not the registry."
    )
    sha256: str | None = Field(default=None, description="SHA-256 of the version's weights.")
    task: Task | None = None


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    total: int
    model: ModelPin | None = Field(default=None, description="The model version it runs on.")


class ObjectLocation(BaseModel):
    bucket: str
    key: str


class JobPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "8d2e4c1f0b9a4e6f8a7b6c5d4e3f2a1b",
                    "status": "partial",
                    "total": 500,
                    "done": 500,
                    "failed": 3,
                    "created_at": "2026-11-22T08:00:00Z",
                    "started_at": "2026-11-22T08:00:01Z",
                    "finished_at": "2026-11-22T08:00:09Z",
                    "results": {
                        "bucket": "yoloq-results",
                        "key": "jobs/8d2e4c1f0b9a4e6f8a7b6c5d4e3f2a1b/results.jsonl",
                    },
                }
            ]
        }
    )

    id: str
    status: JobStatus
    total: int
    done: int = Field(description="Items finished, with or without an error.")
    failed: int = Field(description="Items finished with an error.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    results: ObjectLocation = Field(description="Where results.jsonl is (once finished).")
    model: ModelPin | None = Field(default=None, description="The model version it runs on.")
    planned_at: datetime | None = Field(
        default=None,
        description="When the job's images were all listed (prefix and manifest jobs): "
        "until then `total` counts the images listed so far.",
    )
    truncated: bool = Field(
        default=False,
        description="Listing stopped at the job's image limit (source.limit or the "
        "tenant's most images per job) with images left unlisted.",
    )


class JobEvent(BaseModel):
    """A job's status and counts at one moment, as ``GET /v1/jobs/{id}/events`` streams
    them: published by the scripts that change a job, as they change it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "8d2e4c1f0b9a4e6f8a7b6c5d4e3f2a1b",
                    "status": "running",
                    "done": 48,
                    "failed": 1,
                    "total": 500,
                }
            ]
        }
    )

    job: str
    status: JobStatus
    done: int
    failed: int
    total: int

    @classmethod
    def of(cls, job: JobPublic) -> JobEvent:
        return cls(job=job.id, status=job.status, done=job.done, failed=job.failed, total=job.total)


class CocoImage(BaseModel):
    id: int
    file_name: str
    width: int | None
    height: int | None


class CocoAnnotation(BaseModel):
    id: int
    image_id: int
    category_id: int
    bbox: list[float] = Field(description="x, y, width, height in pixels.")
    area: float
    score: float
    iscrowd: int
    segmentation: list[list[float]] | dict[str, list[int]] | None = Field(
        default=None,
        description="Segment models: polygons (x1, y1, x2, y2, ...) or RLE (size, counts); "
        "OBB models: the polygon of the four corners.",
    )
    keypoints: list[float] | None = Field(
        default=None, description="Pose models: x, y, confidence per keypoint."
    )
    num_keypoints: int | None = None


class CocoCategory(BaseModel):
    id: int
    name: str
    keypoints: list[str] | None = Field(default=None, description="Pose models' keypoint names.")


class CocoResults(BaseModel):
    """A finished job in COCO format (``?format=coco``): boxes, masks and keypoints."""

    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


class UploadedImage(BaseModel):
    bucket: str
    key: str


class ChunkTask(BaseModel):
    """The body of one Celery message: a slice of a job's images, in submission order."""

    job_id: str
    model: str = Field(description="The model (and so the queue) the job was sent to.")
    chunk: int = Field(ge=0)
    start: int = Field(ge=0, description="Index of the chunk's first image in the job.")
    job_chunks: int = Field(default=0, ge=0, description="Chunks in the job (0: not known).")
    images: list[ImageRef]
    params: InferenceParams
    priority: Priority = "normal"
    inline_image: bool = Field(
        default=False,
        description="Its one image's bytes are in Redis (RedisKeys.job_image), not in S3.",
    )
    queued_at: float = Field(
        description="Unix time the chunk was sent: the start of its queue wait."
    )
    invalid: dict[int, str] = Field(
        default_factory=dict,
        description="Offset in the chunk -> why that manifest line names no image; those "
        "items are recorded as invalid_input errors without being fetched.",
    )


class PlanSpec(BaseModel):
    """What a planner lists for a prefix or manifest job, and what its lines may name."""

    source: PrefixSource | ManifestSource
    most: int = Field(ge=1, description="Images to list at most (source.limit, tenant limit).")
    buckets: list[str] = Field(description="Buckets the job's API key may read.")
    uploads_bucket: str
    tenant: str

    def may_read(self, ref: ImageRef) -> bool:
        """As the API key would (``api.auth.Principal.may_read``)."""
        if ref.bucket == self.uploads_bucket:
            return ref.key.startswith(f"uploads/{self.tenant}/")
        return ref.bucket in self.buckets


class DeadLetter(BaseModel):
    """A chunk set aside because its worker died on every delivery: its images were
    recorded as ``poison`` errors so its job could end. The task is kept for inspection
    and, once the cause is fixed, for resubmitting its images."""

    job_id: str
    chunk: int
    deliveries: int = Field(description="Deliveries that started and never finished.")
    dead_lettered_at: datetime
    worker: str = Field(description="The worker that set it aside.")
    task: ChunkTask


class Manifest(BaseModel):
    """Written to S3 when a job ends: the durable record once Redis has expired it."""

    job: JobPublic
    tenant: str
    model: str = Field(description="The id of the model version (its queue).")
    params: InferenceParams
    chunks: int


class ServedModelInfo(BaseModel):
    """One model version a worker holds: what its heartbeat says of it."""

    id: str = Field(description="name:version, or the name of a weights file's model.")
    name: str
    version: int | None = None
    sha256: str
    task: Task
    format: str = Field(
        default="pt", description="The weights' format: pt, onnx, openvino, openvino-int8, ..."
    )
    precision: str = Field(
        default="fp32", description="What it runs in: fp32, fp16 (GPU), bf16 or int8 (OpenVINO)."
    )
    max_batch: int
    memory_bytes: int = Field(default=0, description="Device memory it took at warm-up.")
    warmed: bool = True
    batch_sizes: dict[int, int] = Field(default_factory=dict, description="Its batches, by size.")
    draining: bool = Field(
        default=False,
        description="No longer named by what the worker follows: finishing its queue.",
    )


class WorkerHeartbeat(BaseModel):
    name: str = Field(description="Celery hostname, naming the device: gpu0@host, cpu@host.")
    device: str
    models: list[ServedModelInfo] = Field(description="The model versions it serves.")
    warmed: bool
    threads: int = Field(
        description="Torch CPU threads: all cores on a CPU worker running a .pt or TorchScript "
        "model, 1 when ONNX Runtime (or another runtime) runs it."
    )
    images_done: int
    max_batch: int = Field(description="Largest batch the worker forms (measured or set).")
    concurrency: int | None = Field(
        default=None,
        description="Chunks it holds at once (Celery threads, YOLOQ_WORKER_CONCURRENCY). "
        "None from a worker too old to say.",
    )
    batch_sizes: dict[int, int] = Field(description="Batches run, by size.")
    started_at: datetime
    last_seen: datetime
