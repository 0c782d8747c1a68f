"""A job's images, kept in the results bucket in pages, so Redis holds none of them.

The API writes a list job's images as one page; the planner writes a prefix or manifest
job's as it lists them, ``page_images`` (a whole number of chunks) to a page. A chunk's
images are then found by arithmetic: chunk ``c`` starts at image ``c * chunk_size``, in
page ``c * chunk_size // page_images``. That is how a lost chunk is sent again (the
sweeper) and how a planner resumes.
"""

from __future__ import annotations

import json
import time

from yoloq import keys
from yoloq.job_store import JobRecord
from yoloq.object_store import ObjectStore
from yoloq.schemas import ChunkTask, ImageRef


def encode_page(images: list[ImageRef], invalid: dict[int, str] | None = None) -> bytes:
    """JSONL, a line an image; ``invalid``: index in the page -> why that line names none."""
    invalid = invalid or {}
    lines = []
    for index, ref in enumerate(images):
        line: dict[str, str] = {"bucket": ref.bucket, "key": ref.key}
        if index in invalid:
            line["invalid"] = invalid[index]
        lines.append(json.dumps(line, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def decode_page(data: bytes) -> tuple[list[ImageRef], dict[int, str]]:
    images, invalid = [], {}
    for index, line in enumerate(data.splitlines()):
        fields = json.loads(line)
        images.append(ImageRef(bucket=fields["bucket"], key=fields["key"]))
        if "invalid" in fields:
            invalid[index] = fields["invalid"]
    return images, invalid


class JobInputs:
    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def write_page(
        self, job_id: str, page: int, images: list[ImageRef], invalid: dict[int, str] | None = None
    ) -> None:
        self.store.put(
            self.bucket,
            keys.input_page_key(job_id, page),
            encode_page(images, invalid),
            "application/jsonl",
        )

    def read_page(self, job_id: str, page: int) -> tuple[list[ImageRef], dict[int, str]]:
        return decode_page(self.store.get(self.bucket, keys.input_page_key(job_id, page)))

    def chunk_task(
        self,
        record: JobRecord,
        chunk: int,
        page: tuple[list[ImageRef], dict[int, str]] | None = None,
    ) -> ChunkTask:
        """Chunk ``chunk`` of the job, rebuilt from its input page (``page``, if the caller
        has read it already)."""
        if record.only_task is not None:
            return record.only_task
        start = chunk * record.chunk_size
        number, first = divmod(start, record.page_images)
        images, invalid = page if page is not None else self.read_page(record.public.id, number)
        end = first + record.chunk_size
        return ChunkTask(
            job_id=record.public.id,
            model=record.model,
            chunk=chunk,
            start=start,
            job_chunks=0,  # not needed: only a job of one chunk (only_task) is told apart
            images=images[first:end],
            params=record.params,
            priority=record.priority,
            queued_at=time.time(),
            invalid={i - first: why for i, why in invalid.items() if first <= i < end},
        )

    def page_of(self, record: JobRecord, chunk: int) -> int:
        return chunk * record.chunk_size // record.page_images
