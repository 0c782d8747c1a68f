"""Reading a page of a job's results, wherever they are: the one place that knows."""

from __future__ import annotations

from yoloq.archive import ResultArchive
from yoloq.job_store import JobStore
from yoloq.results import ResultItem


def read_items(
    jobs: JobStore, archive: ResultArchive, job_id: str, offset: int, limit: int, total: int
) -> list[ResultItem]:
    """Finished items from ``offset`` (at most ``limit``, none past ``total``), in order,
    stopping at the first unfinished one.

    While Redis holds the job, its counted chunks name their parts in S3, and item ``i``
    is in chunk ``i // chunk_size``: a page costs one Redis call and a GET per part (in
    parallel, cached). A job of one chunk has its items in Redis. Once a job has ended,
    ``parts.json`` names the parts (Redis drops the markers); a job of one chunk is read
    from results.jsonl after the TTL."""
    limit = min(limit, max(0, total - offset))
    record = jobs.get(job_id)
    if record is not None:
        if record.only_task is not None:
            items = []
            for item in jobs.items(job_id, offset, limit):
                if item is None:
                    break
                items.append(item)
            return items
        index = archive.read_parts_index(job_id) if record.public.status.is_final else None
        if index is not None:  # its chunk markers may be gone from Redis
            return archive.read_items(job_id, offset, limit, *index)
        size = record.chunk_size
        chunks = list(range(offset // size, (offset + limit - 1) // size + 1)) if limit else []
        parts = jobs.counted_parts(job_id, chunks)
        return archive.read_items(job_id, offset, limit, size, parts)
    index = archive.read_parts_index(job_id)
    if index is not None:
        return archive.read_items(job_id, offset, limit, *index)
    return (archive.read_results(job_id) or [])[offset : offset + limit]
