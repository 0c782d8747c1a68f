"""Listing from a cursor against the S3 server: a listing resumed anywhere finds what one
pass finds, nothing twice."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import INPUT_BUCKET
from yoloq import listing
from yoloq.listing import list_next
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, ManifestSource, PlanSpec, PrefixSource


def _spec(source: PrefixSource | ManifestSource) -> PlanSpec:
    return PlanSpec(
        source=source, most=10**6, buckets=[INPUT_BUCKET], uploads_bucket="u", tenant="t"
    )


def _in_pages(store: ObjectStore, spec: PlanSpec, size: int) -> list[list[ImageRef]]:
    pages, cursor = [], ""
    while True:
        listed = list_next(store, spec, cursor, size)
        pages.append(listed.images)
        cursor = listed.cursor
        if listed.exhausted:
            return pages


def test_a_prefix_in_pages_is_every_image_once_in_key_order(object_store: ObjectStore) -> None:
    prefix = f"listing/{uuid.uuid4().hex}/"
    names = [f"{n:03d}.jpg" for n in range(23)] + ["004.txt", "010.JSON", "sub/011.png"]
    for name in names:
        object_store.put(INPUT_BUCKET, prefix + name, b"x")
    spec = _spec(PrefixSource(bucket=INPUT_BUCKET, prefix=prefix))
    pages = _in_pages(object_store, spec, 5)
    assert [len(page) for page in pages][:-1] == [5, 5, 5, 5]  # full pages, then the rest
    found = [ref.key.removeprefix(prefix) for page in pages for ref in page]
    assert found == sorted(n for n in names if not n.endswith((".txt", ".JSON")))


def test_a_manifest_read_in_small_pieces_resumes_mid_file(
    object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reads of 7 bytes: every line spans reads, and pages end inside them.
    monkeypatch.setattr(listing, "READ_BYTES", 7)
    lines = [f'{{"key": "m/{n:02d}.jpg"}}' for n in range(9)] + ["", "not json"]
    key = f"listing/{uuid.uuid4().hex}.jsonl"
    object_store.put(INPUT_BUCKET, key, "\n".join(lines).encode())  # no final newline
    spec = _spec(ManifestSource(bucket=INPUT_BUCKET, key=key))
    pages = _in_pages(object_store, spec, 4)
    found = [ref.key for page in pages for ref in page]
    assert found[:9] == [f"m/{n:02d}.jpg" for n in range(9)]
    assert found[9] == f"{key}#line=11"  # the bad last line's stand-in; the blank is skipped
    last = list_next(object_store, spec, "", 100)
    assert last.exhausted and last.invalid == {9: "line 11: not JSON (Expecting value)"}
