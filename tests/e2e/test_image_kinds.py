"""Every kind of image a camera or a person may send, through the whole service: each is
processed, or is an item error with a stable code and a message a person understands."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET, MAX_IMAGE_BYTES
from yoloq.client import Client
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, JobStatus

PROCESSED: dict[str, Callable[[], bytes]] = {
    "cmyk.jpg": make.cmyk_jpeg,
    "scan.tif": make.tiff,
    "legacy.bmp": make.bmp,
    "animated.gif": lambda: make.animated("GIF"),
    "animated.webp": lambda: make.animated("WEBP"),
    "gray.png": make.gray_png,
    "rgba.png": make.rgba_png,
    "deep.png": make.png16,
}
REFUSED: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "bomb.png": (lambda: make.png_claiming(100_000, 100_000), "too_many_pixels", "100000x100000"),
    "huge.jpg": (lambda: make.random_bytes(MAX_IMAGE_BYTES + 1), "too_large", "limit is"),
    "page.html": (make.html, "not_an_image", "not an image"),
    "cut.jpg": (make.truncated_jpeg, "decode_failed", "truncated"),
}


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


def test_every_kind_is_processed_or_explained(client: Client, object_store: ObjectStore) -> None:
    folder = f"kinds/{uuid.uuid4().hex}"
    names = [*PROCESSED, *REFUSED]
    for name, make_bytes in PROCESSED.items():
        object_store.put(INPUT_BUCKET, f"{folder}/{name}", make_bytes())
    for name, (make_bytes, _, _) in REFUSED.items():
        object_store.put(INPUT_BUCKET, f"{folder}/{name}", make_bytes())
    refs = [ImageRef(bucket=INPUT_BUCKET, key=f"{folder}/{name}") for name in names]

    job = client.wait(client.submit(refs).id, timeout_s=180)
    assert job.status == JobStatus.PARTIAL
    assert (job.done, job.failed) == (len(names), len(REFUSED))
    items = {item.key.rsplit("/", 1)[-1]: item for item in client.results(job.id)}
    for name in PROCESSED:
        assert items[name].status == "ok", (name, items[name].error)
        assert (items[name].width, items[name].height) == (320, 240), name
    for name, (_, code, says) in REFUSED.items():
        error = items[name].error
        assert error is not None and error.code == code, (name, error)
        assert says in error.message, (name, error.message)
    # The worker is alive and well after all of it.
    assert client.ready()
