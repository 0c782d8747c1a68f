"""The durable record of a job in the results bucket: result parts, results.jsonl, manifest.

Layout (keys in ``yoloq.keys``)::

    jobs/{id}/parts/{chunk:06d}-{delivery}.jsonl   a chunk's items, written before it is counted
    jobs/{id}/segments/{n:06d}.jsonl               a run of counted parts joined, as it completes
    jobs/{id}/parts.json                           which part holds each chunk, at the end
    jobs/{id}/results.jsonl                        every item in submission order, at the end
    jobs/{id}/manifest.json                        the job's final state, at the end

Items live only here (a job of one chunk also keeps its few in Redis while the TTL lasts):
a page of results is read from the parts that cover it, found by arithmetic, and
results.jsonl is assembled from the parts by a multipart upload, so no process ever holds
a whole job's results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import BaseModel

from yoloq import keys
from yoloq.object_store import ObjectNotFound, ObjectStore
from yoloq.results import ResultItem, parse_item
from yoloq.schemas import Manifest

MIN_COPY_BYTES = 5 * 1024 * 1024
"""S3's smallest multipart part but the last: a part this large is copied inside S3."""
UPLOAD_PART_BYTES = 8 * 1024 * 1024
"""Smaller parts are downloaded and joined into upload parts of about this size."""
FETCH_THREADS = 16
CACHED_PARTS = 256
CACHED_INDEXES = 16


def to_jsonl(items: list[ResultItem]) -> bytes:
    return b"".join(item.model_dump_json().encode() + b"\n" for item in items)


def _from_jsonl(data: bytes) -> list[ResultItem]:
    return [parse_item(line) for line in data.splitlines() if line.strip()]


@dataclass(frozen=True)
class PartRef:
    """The part that holds a counted chunk: the delivery that wrote it, and its size."""

    delivery: int
    size: int

    def encode(self) -> str:
        return f"{self.delivery}:{self.size}"

    @classmethod
    def decode(cls, value: str) -> PartRef:
        delivery, _, size = value.partition(":")
        return cls(int(delivery), int(size or 0))


class PartsIndex(BaseModel):
    """``parts.json``: where each chunk's items are, once Redis has forgotten the job."""

    chunk_size: int
    parts: dict[int, str]
    """Chunk -> ``PartRef.encode()``; a chunk not counted (a cancelled job) is missing."""


class ResultArchive:
    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket
        self._fetchers = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="yoloq-parts")
        # A counted part never changes (its key names the delivery that wrote it), so a
        # cache of them is never stale.
        self._cache: OrderedDict[str, list[ResultItem]] = OrderedDict()
        self._indexes: OrderedDict[str, tuple[int, dict[int, PartRef]]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # Parts

    def write_part(self, job_id: str, chunk: int, delivery: int, items: list[ResultItem]) -> int:
        """Returns the part's size in bytes."""
        data = to_jsonl(items)
        key = keys.result_part_key(job_id, chunk, delivery)
        self.store.put(self.bucket, key, data, "application/jsonl")
        return len(data)

    def delete_part(self, job_id: str, chunk: int, delivery: int) -> None:
        self.store.delete(self.bucket, keys.result_part_key(job_id, chunk, delivery))

    def read_part(self, job_id: str, chunk: int, delivery: int) -> list[ResultItem]:
        key = keys.result_part_key(job_id, chunk, delivery)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        items = _from_jsonl(self.store.get(self.bucket, key))
        with self._cache_lock:
            self._cache[key] = items
            while len(self._cache) > CACHED_PARTS:
                self._cache.popitem(last=False)
        return items

    def read_items(
        self, job_id: str, offset: int, limit: int, chunk_size: int, parts: dict[int, PartRef]
    ) -> list[ResultItem]:
        """Items ``offset`` .. ``offset + limit - 1`` from the parts that hold them, in
        order, stopping at the first chunk not counted yet. Item ``i`` is in chunk
        ``i // chunk_size``."""
        if limit <= 0:
            return []
        first, last = offset // chunk_size, (offset + limit - 1) // chunk_size
        wanted = []
        for chunk in range(first, last + 1):
            if chunk not in parts:
                break
            wanted.append(chunk)
        loaded = self._fetchers.map(
            lambda chunk: self.read_part(job_id, chunk, parts[chunk].delivery), wanted
        )
        items = [item for part in loaded for item in part]
        skip = offset - first * chunk_size
        return items[skip : skip + limit]

    def write_parts_index(self, job_id: str, chunk_size: int, parts: dict[int, PartRef]) -> None:
        index = PartsIndex(chunk_size=chunk_size, parts={c: p.encode() for c, p in parts.items()})
        self.store.put(
            self.bucket,
            keys.parts_index_key(job_id),
            index.model_dump_json().encode(),
            "application/json",
        )

    def read_parts_index(self, job_id: str) -> tuple[int, dict[int, PartRef]] | None:
        """Cached: an ended job's index does not change."""
        with self._cache_lock:
            if job_id in self._indexes:
                self._indexes.move_to_end(job_id)
                return self._indexes[job_id]
        data = self.store.get_if_exists(self.bucket, keys.parts_index_key(job_id))
        if data is None:
            return None
        index = PartsIndex.model_validate_json(data)
        found = index.chunk_size, {c: PartRef.decode(p) for c, p in index.parts.items()}
        with self._cache_lock:
            self._indexes[job_id] = found
            while len(self._indexes) > CACHED_INDEXES:
                self._indexes.popitem(last=False)
        return found

    # results.jsonl

    def write_segment(
        self, job_id: str, segment: int, chunks: range, parts: dict[int, PartRef]
    ) -> int:
        """Join a run of counted parts into one object, ahead of the end of the job, so
        finalising reads a few large objects instead of every part. Returns its size."""
        data = b"".join(
            self._fetched([keys.result_part_key(job_id, c, parts[c].delivery) for c in chunks])
        )
        self.store.put(self.bucket, keys.result_segment_key(job_id, segment), data)
        return len(data)

    def write_results(
        self,
        job_id: str,
        chunks: int,
        parts: dict[int, PartRef],
        known: dict[int, list[ResultItem]] | None = None,
        segments: dict[int, int] | None = None,
        segment_chunks: int = 0,
    ) -> None:
        """Join every chunk's items, in chunk order, into results.jsonl.

        From the segments already joined (segment -> its size; each holds
        ``segment_chunks`` chunks), then the parts of the chunks they do not cover. A
        multipart upload: pieces of at least 5 MiB are copied inside S3 (UploadPartCopy),
        smaller ones are fetched (many at once) and joined into upload parts of about
        8 MiB, so memory holds a few pieces, never the job. ``known``: chunks the caller
        has in memory (a job of one chunk, which has no part)."""
        known, segments = known or {}, segments or {}
        pieces: list[_Piece] = []
        chunk = 0
        while chunk < chunks:
            segment = chunk // segment_chunks if segment_chunks else -1
            if segment in segments and chunk % segment_chunks == 0:
                key = keys.result_segment_key(job_id, segment)
                pieces.append(_Piece(key, segments[segment]))
                chunk += segment_chunks
                continue
            if chunk in known:
                data = to_jsonl(known[chunk])
                pieces.append(_Piece(None, len(data), data))
            elif chunk in parts:
                key = keys.result_part_key(job_id, chunk, parts[chunk].delivery)
                pieces.append(_Piece(key, parts[chunk].size))
            else:
                raise ObjectNotFound(f"job {job_id}: chunk {chunk} has no counted part")
            chunk += 1
        plan = _plan_upload(pieces)
        fetching = zip(pieces, plan, strict=True)
        fetched = self._fetched([p.key for p, how in fetching if how == "fetch" and p.key])
        writer = _MultipartWriter(self.store, self.bucket, keys.results_key(job_id))
        try:
            for piece, how in zip(pieces, plan, strict=True):
                if how == "copy" and piece.key:
                    writer.copy(piece.key)
                elif piece.data is not None:
                    writer.add(piece.data)
                else:
                    writer.add(next(fetched))
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def _fetched(self, keys_in_order: list[str]) -> Iterator[bytes]:
        """The objects' bytes in order, fetched up to 2 x FETCH_THREADS ahead."""
        ahead: deque[Future[bytes]] = deque()
        for key in keys_in_order:
            ahead.append(self._fetchers.submit(self.store.get, self.bucket, key))
            if len(ahead) > 2 * FETCH_THREADS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()

    def read_results(self, job_id: str) -> list[ResultItem] | None:
        data = self.store.get_if_exists(self.bucket, keys.results_key(job_id))
        return None if data is None else _from_jsonl(data)

    # The manifest

    def write_manifest(self, manifest: Manifest) -> None:
        self.store.put(
            self.bucket,
            keys.manifest_key(manifest.job.id),
            manifest.model_dump_json(indent=2).encode(),
            "application/json",
        )

    def read_manifest(self, job_id: str) -> Manifest | None:
        data = self.store.get_if_exists(self.bucket, keys.manifest_key(job_id))
        return None if data is None else Manifest.model_validate_json(data)


@dataclass(frozen=True)
class _Piece:
    """A piece of results.jsonl: an object (``key``) or bytes in memory (``data``)."""

    key: str | None
    size: int
    data: bytes | None = None


def _plan_upload(pieces: list[_Piece]) -> list[str]:
    """How each piece reaches results.jsonl: ``copy`` (inside S3) or ``add`` (fetched or
    in memory); decided ahead, from the sizes, so the fetches can start at once. Follows
    ``_MultipartWriter``: a buffer is flushed when it reaches UPLOAD_PART_BYTES or before
    a copy, and a piece is copied only if what is buffered could be a part of its own."""
    plan = []
    buffered = 0
    for piece in pieces:
        if piece.data is None and _copies(piece.size, buffered):
            plan.append("copy")
            buffered = 0
            continue
        plan.append("fetch" if piece.data is None else "add")
        buffered += piece.size
        if buffered >= UPLOAD_PART_BYTES:
            buffered = 0
    return plan


def _copies(size: int, buffered: int) -> bool:
    return size >= MIN_COPY_BYTES and (buffered == 0 or buffered >= MIN_COPY_BYTES)


class _MultipartWriter:
    """One object from pieces: one PUT when it stays small, a multipart upload if not."""

    def __init__(self, store: ObjectStore, bucket: str, key: str) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.buffer = bytearray()
        self.upload: str | None = None
        self.etags: list[str] = []

    def _started(self) -> str:
        if self.upload is None:
            self.upload = self.store.start_multipart(self.bucket, self.key, "application/jsonl")
        return self.upload

    def _flush(self) -> None:
        if self.buffer:
            number = len(self.etags) + 1
            upload = self._started()
            self.etags.append(
                self.store.upload_part(self.bucket, self.key, upload, number, bytes(self.buffer))
            )
            self.buffer.clear()

    def add(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= UPLOAD_PART_BYTES:
            self._flush()

    def copy(self, source_key: str) -> None:
        self._flush()
        upload = self._started()
        number = len(self.etags) + 1
        self.etags.append(self.store.copy_part(self.bucket, self.key, upload, number, source_key))

    def finish(self) -> None:
        if self.upload is None:
            self.store.put(self.bucket, self.key, bytes(self.buffer), "application/jsonl")
            return
        self._flush()
        self.store.complete_multipart(self.bucket, self.key, self.upload, self.etags)

    def abort(self) -> None:
        if self.upload is not None:
            self.store.abort_multipart(self.bucket, self.key, self.upload)
