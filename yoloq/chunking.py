"""Splitting a job into chunks: the unit of work one Celery message carries."""

from __future__ import annotations

from yoloq.schemas import ChunkTask, ImageRef, InferenceParams


def split_into_chunks(
    job_id: str, images: list[ImageRef], params: InferenceParams, chunk_size: int
) -> list[ChunkTask]:
    """Consecutive slices of at most ``chunk_size`` images, in submission order."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    return [
        ChunkTask(
            job_id=job_id,
            chunk=number,
            start=start,
            images=images[start : start + chunk_size],
            params=params,
        )
        for number, start in enumerate(range(0, len(images), chunk_size))
    ]
