"""One settings object per process, read from the environment (prefix ``YOLOQ_``).

AWS credentials and region are not here: boto3 reads ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION`` itself, the way every AWS tool does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "yoloq"


class TenantConfig(BaseModel):
    """What one API key may do. Keys are configured by their SHA-256, never in plain text."""

    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    buckets: list[str] = Field(default_factory=list, description="Input buckets it may read.")
    admin: bool = Field(
        default=False, description="May see workers, change the registry, operate the service."
    )
    models: list[str] | None = Field(
        default=None, description="Models its jobs may name; null: every model."
    )
    max_images_per_job: int | None = Field(
        default=None, ge=1, description="Most images in one of its jobs; null: the default."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YOLOQ_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Job state, results while the TTL lasts, worker heartbeats; also the Celery broker."""
    redis_replicas_to_ack: int = Field(default=0, ge=0)
    """Replicas that must hold a new job before the API answers 202 (Redis ``WAIT``), so a
    failover cannot forget it: 1 with Sentinel. 0: the master's word is enough."""
    redis_replica_ack_timeout_ms: int = Field(default=1000, ge=1)
    """How long the API waits for those replicas before answering 503 (and no job)."""
    key_prefix: str = "yoloq"
    """Prefix of every Redis key yoloq writes, so several deployments can share a server."""

    s3_endpoint_url: str | None = None
    """None means AWS S3; set it for MinIO or any S3-compatible server."""
    input_buckets: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["images"])
    """Buckets jobs may read when auth is disabled (comma-separated); with API keys, each
    tenant's own list applies. Each caller may always read its own uploads."""
    results_bucket: str = "yoloq-results"
    uploads_bucket: str = "yoloq-uploads"

    api_keys: dict[str, TenantConfig] = Field(default_factory=dict)
    """SHA-256 (hex) of each API key -> its tenant, buckets and scope. JSON, e.g.
    ``{"9f86d0...": {"tenant": "line-3", "buckets": ["images"], "admin": false}}``."""
    api_keys_file: Path | None = None
    """The same mapping in a JSON file (a mounted secret); merged with ``api_keys``."""
    auth_disabled: bool = False
    """Serve without API keys: every caller is one admin tenant. For the demo only."""

    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Hosts a job's callback_url may name (comma-separated; ``*.domain`` for subdomains).
    Empty: jobs with a callback_url are refused."""
    webhook_secret: str | None = None
    """Shared secret of the webhook signatures; required when webhooks are allowed."""
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    """Deliveries tried, with exponential backoff and jitter, before a webhook is dropped."""

    models_bucket: str = "yoloq-models"
    """The model registry: every model's versions and aliases (see yoloq.registry)."""
    default_model: str | None = None
    """What a job that names no model runs on: a registry reference (``name``,
    ``name:7``, ``name@production``). Unset: the model of ``YOLOQ_MODEL``."""
    catalog_cache_s: float = Field(default=2.0, ge=0)
    """How long the API reuses what it read of a model from the registry; an alias moved
    is seen by new jobs at most this late."""
    alias_poll_s: float = Field(default=10.0, gt=0)
    """How often a worker following an alias reads it again."""

    model: str | None = None
    """What a worker serves, when ``yoloq worker --model`` is not given: registry
    references, comma-separated, or one weights file (a local path or
    ``s3://bucket/key``)."""
    model_memory_mb: int | None = Field(default=None, ge=1)
    """Most memory a worker's models may take together; unset, 90% of what its device
    has free when it starts. A model past it is refused with a clear error."""
    model_format: str = "pt"
    """Which file of a registry version a worker runs: pt, or an export's format (onnx,
    torchscript, openvino, openvino-int8, ...) added with ``yoloq models export``."""
    openvino_precision: Literal["auto", "fp32"] = "auto"
    """What an OpenVINO model's float layers run in on the CPU: auto (OpenVINO's choice:
    bf16 on CPUs with AVX-512 BF16 or AMX, else fp32) or fp32 (the .pt's own results to
    float rounding). See ``workers.openvino``."""
    model_name: str | None = None
    """Name of a weights file's queue; defaults to the file's stem."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Where workers keep downloaded models and Ultralytics' settings."""

    chunk_size: int = Field(default=16, ge=1, le=1024)
    """Images per Celery task: amortises the per-message cost over several inferences."""
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    """How long job state and results stay in Redis; S3 keeps them after that."""
    max_images_per_job: int = Field(default=10_000_000, ge=1)
    """Most images in one job, for tenants whose key sets none (``TenantConfig``). A prefix
    or manifest job longer than that runs its first this-many images and says
    ``truncated``; an ``images`` list longer than that is refused."""
    result_segment_chunks: int = Field(default=512, ge=1)
    """Consecutive chunks whose parts are joined into one object as soon as all are
    counted, so the end of a large job reads a few large objects, not every part."""
    plan_page_chunks: int = Field(default=64, ge=1)
    """Chunks per page a planner lists at a time (a page of a prefix or manifest job's
    images in S3, ``yoloq.inputs``): 1,024 images with the default chunk size."""
    queue_limit: int | None = Field(default=None, ge=1)
    """Images a model's queue may hold before new jobs get 429; unset, no limit."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest JSON request body (a 10,000-image job is about 1 MB); larger ones get 413."""
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    detect_inline_max_bytes: int = Field(default=1024 * 1024, ge=0)
    """``POST /v1/detect`` images up to this size go to the worker inside Redis instead of
    through S3 (one PUT and one GET fewer per request), and are deleted once recorded; 0
    sends every image through the uploads bucket."""
    detect_timeout_s: float = Field(default=30.0, gt=0)
    """How long ``POST /v1/detect`` waits for its result when the request names no
    ``timeout``; past it, 202 with the job id."""
    max_wait_s: float = Field(default=120.0, gt=0)
    """The longest a request may wait: a longer ``timeout`` of ``POST /v1/detect`` or
    ``wait`` of ``GET /v1/jobs/{id}`` is cut to it."""
    events_heartbeat_s: float = Field(default=15.0, gt=0)
    """Seconds between the comments that keep an idle event stream open through proxies;
    each also re-reads the job, so a stream never hangs on a missed message."""

    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    """Larger objects are item errors (``too_large``), refused before they are downloaded."""
    max_pixels: int = Field(default=100_000_000, ge=1)
    """Images whose header claims more pixels are item errors (``too_many_pixels``),
    refused before decoding: a small file can claim a gigapixel image."""
    worker_concurrency: int = Field(default=4, ge=1)
    """Celery threads per worker: chunks it holds at once, downloading and decoding while
    another infers. More lets one-image jobs fill larger batches (twice the max batch fills
    them), but chunks a worker holds are out of the queue: a high-priority job waits behind
    them, and other workers cannot take them."""
    io_threads: int = Field(default=8, ge=1)
    """Threads per chunk fetching and decoding its images."""
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    """Most images per model call; unset, the worker measures and picks it at warm-up."""
    warmup_imgsz: int | None = Field(default=None, ge=32, le=8192)
    """The inference size the worker measures batch sizes and warms up at; unset, the
    model's training size. Set it to the ``imgsz`` the jobs ask for."""
    max_delay_ms: float = Field(default=5.0, ge=0)
    """How long the batcher waits for a batch to fill once its first image is ready."""
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    """Port of a worker's Prometheus endpoint; 0 turns it off."""
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """A worker that misses three beats is dead: other workers requeue its chunks."""

    # Limits on one chunk, longest last: soft < hard < visibility (checked below). The
    # longest healthy chunk must fit in the soft limit: about chunk_size / io_threads
    # downloads (each at most s3_max_attempts x s3_read_timeout_s) plus chunk_size
    # inferences. See docs/architecture.md, "Time limits".
    chunk_soft_limit_s: float = Field(default=600.0, gt=0)
    """Images of a chunk not done this long after it started become item errors
    (``timeout``), and the rest of the chunk is recorded."""
    chunk_hard_limit_s: float = Field(default=900.0, gt=0)
    """A chunk still running after this has a stuck thread: the worker exits, so that its
    supervisor restarts it and the chunk is delivered again (see max_deliveries)."""
    visibility_timeout_s: int = Field(default=1200, ge=10)
    """The broker redelivers a chunk nobody acknowledged after this: the backstop for a
    dead worker's chunks that its in-flight list missed (killed in the moment between
    taking a message and listing it)."""
    lost_chunk_after_s: float = Field(default=120.0, gt=0)
    """A chunk of a running job found nowhere (not queued, held or recorded) this long
    after its job was submitted is sent again; see workers/sweeper.py."""
    max_deliveries: int = Field(default=3, ge=1, le=100)
    """Deliveries of a chunk whose worker died each time; the next one sets the chunk
    aside in the dead-letter list and records its images as ``poison``."""

    s3_max_attempts: int = Field(default=5, ge=1, le=20)
    """Tries per object read or write; timeouts, throttling and 5xx are retried."""
    s3_backoff_s: float = Field(default=0.2, gt=0)
    """Base of the exponential backoff between S3 tries (full jitter, capped at 10 s)."""
    s3_read_timeout_s: float = Field(default=30.0, gt=0)
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _limits_in_order(self) -> Settings:
        if not self.chunk_soft_limit_s < self.chunk_hard_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "chunk time limits must be in order: YOLOQ_CHUNK_SOFT_LIMIT_S "
                f"({self.chunk_soft_limit_s:g}) < YOLOQ_CHUNK_HARD_LIMIT_S "
                f"({self.chunk_hard_limit_s:g}) < YOLOQ_VISIBILITY_TIMEOUT_S "
                f"({self.visibility_timeout_s}), or a chunk could be delivered twice at once "
                "or killed before it can record what it finished"
            )
        return self

    @field_validator("input_buckets", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            return [b.strip() for b in value.split(",") if b.strip()]
        return value

    def tenants_by_key_hash(self) -> dict[str, TenantConfig]:
        keys = {digest.lower(): tenant for digest, tenant in self.api_keys.items()}
        if self.api_keys_file:
            raw = json.loads(self.api_keys_file.read_text())
            for digest, tenant in raw.items():
                keys[digest.lower()] = TenantConfig.model_validate(tenant)
        return keys

    @property
    def queue_model_name(self) -> str:
        """The model name that names the queue: explicit, or the stem of the weights file."""
        if self.model_name:
            return self.model_name
        if self.model:
            return Path(self.model.rsplit("/", 1)[-1]).stem
        return "default"
