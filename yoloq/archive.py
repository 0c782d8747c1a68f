"""The durable record of a job in the results bucket: result parts, results.jsonl, manifest.

Layout (keys in ``yoloq.keys``)::

    jobs/{id}/parts/{chunk:06d}.jsonl   one per chunk, written before the chunk is counted
    jobs/{id}/results.jsonl             every item in submission order, written at the end
    jobs/{id}/manifest.json             the job's final state, written at the end
"""

from __future__ import annotations

from yoloq import keys
from yoloq.object_store import ObjectStore
from yoloq.results import ResultItem, parse_item
from yoloq.schemas import Manifest


def _to_jsonl(items: list[ResultItem]) -> bytes:
    return b"".join(item.model_dump_json().encode() + b"\n" for item in items)


def _from_jsonl(data: bytes) -> list[ResultItem]:
    return [parse_item(line) for line in data.splitlines() if line.strip()]


class ResultArchive:
    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def write_part(self, job_id: str, chunk: int, items: list[ResultItem]) -> None:
        self.store.put(
            self.bucket, keys.result_part_key(job_id, chunk), _to_jsonl(items), "application/jsonl"
        )

    def read_part(self, job_id: str, chunk: int) -> list[ResultItem]:
        return _from_jsonl(self.store.get(self.bucket, keys.result_part_key(job_id, chunk)))

    def write_results(
        self, job_id: str, chunks: int, known: dict[int, list[ResultItem]] | None = None
    ) -> int:
        """Merge every part, in chunk order, into results.jsonl; returns the item count.

        ``known`` holds parts the caller already has in memory, which are not read back.
        """
        known = known or {}
        items = [
            item
            for chunk in range(chunks)
            for item in (known[chunk] if chunk in known else self.read_part(job_id, chunk))
        ]
        self.store.put(self.bucket, keys.results_key(job_id), _to_jsonl(items), "application/jsonl")
        return len(items)

    def read_results(self, job_id: str) -> list[ResultItem] | None:
        data = self.store.get_if_exists(self.bucket, keys.results_key(job_id))
        return None if data is None else _from_jsonl(data)

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
