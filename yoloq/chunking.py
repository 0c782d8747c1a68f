"""Splitting a job into chunks: the unit of work one Celery message carries."""

from __future__ import annotations

import time

from yoloq.schemas import ChunkTask, ImageRef, InferenceParams, Priority


def split_into_chunks(
    job_id: str,
    model: str,
    images: list[ImageRef],
    params: InferenceParams,
    chunk_size: int,
    priority: Priority = "normal",
) -> list[ChunkTask]:
    """Consecutive slices of at most ``chunk_size`` images, in submission order."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    queued_at = time.time()
    starts = range(0, len(images), chunk_size)
    return [
        ChunkTask(
            job_id=job_id,
            model=model,
            chunk=number,
            start=start,
            job_chunks=len(starts),
            images=images[start : start + chunk_size],
            params=params,
            priority=priority,
            queued_at=queued_at,
        )
        for number, start in enumerate(starts)
    ]
