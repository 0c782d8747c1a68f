"""Prometheus metrics of one worker, served on its own port.

The stage histogram splits an image's time the way Triton users expect: waiting in the
queue versus downloading, decoding, waiting for a batch, inference and recording results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

MODEL_LABELS = ["model", "version"]
"""Every per-model metric: the model's name and its version ("" for a weights file)."""

IMAGES = Counter(
    "yoloq_worker_images_total", "Images finished, by outcome.", [*MODEL_LABELS, "status"]
)
BATCH_IMAGES = Histogram(
    "yoloq_worker_batch_images",
    "Images per model call.",
    MODEL_LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
STAGE_SECONDS = Histogram(
    "yoloq_worker_stage_seconds",
    "Seconds per stage: queue (per chunk), download, decode (and letterbox), batch_wait "
    "(per image), inference (per batch), upload (per chunk: the results part to S3 and the "
    "count in Redis).",
    [*MODEL_LABELS, "stage"],
    buckets=_SECONDS,
)
MODEL_WARM = Gauge(
    "yoloq_worker_model_warm", "1 while the model version is loaded and warm.", MODEL_LABELS
)
MODEL_BACKEND = Gauge(
    "yoloq_worker_model_backend",
    "1 for the format (pt, onnx, openvino, openvino-int8, ...) and precision (fp32, fp16, "
    "bf16, int8) the model version runs in.",
    [*MODEL_LABELS, "format", "precision"],
)
MAX_BATCH = Gauge(
    "yoloq_worker_max_batch_images", "Largest batch the batcher forms for it.", MODEL_LABELS
)
MODEL_MEMORY = Gauge(
    "yoloq_worker_model_memory_bytes",
    "Device memory the model version took, measured at warm-up.",
    MODEL_LABELS,
)
DEAD_LETTERS = Counter(
    "yoloq_worker_dead_letters_total", "Chunks set aside as poison after max deliveries."
)
REQUEUED_CHUNKS = Counter(
    "yoloq_worker_requeued_chunks_total",
    "Chunks a dead worker was running, sent back to the queue by this one.",
)
LOST_CHUNKS = Counter(
    "yoloq_worker_lost_chunks_total",
    "Chunks the broker lost (taken by a worker that died before recording it), sent again.",
)
OUTAGE_RETRIES = Counter(
    "yoloq_worker_outage_retries_total",
    "Retries of a chunk's Redis or S3 step while a store was unreachable.",
    ["store"],
)


class GpuCollector(Collector):
    """GPU memory and utilisation from NVML, read at scrape time."""

    def __init__(self, index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        rates = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        yield GaugeMetricFamily(
            "yoloq_worker_gpu_memory_used_bytes", "GPU memory in use.", value=memory.used
        )
        yield GaugeMetricFamily(
            "yoloq_worker_gpu_memory_total_bytes", "GPU memory in all.", value=memory.total
        )
        yield GaugeMetricFamily(
            "yoloq_worker_gpu_utilization_ratio",
            "Fraction of the last sample period the GPU was busy.",
            value=rates.gpu / 100,
        )


def serve(port: int, gpu_index: int | None) -> None:
    """Start the metrics endpoint; ``gpu_index`` is the host's index of the pinned GPU."""
    if gpu_index is not None:
        try:
            REGISTRY.register(GpuCollector(gpu_index))
        except Exception as error:  # no driver: the worker still runs, without GPU metrics
            log.warning("GPU metrics unavailable: %s", error)
    if port:
        start_http_server(port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", port)
