"""The model registry on a real S3 server: numbered versions, digests, aliases, splits."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workers.weights_info import read_weights_info
from yoloq.catalog import Alias, CatalogError, ModelReference, Task, WeightsInfo
from yoloq.model_files import sha256_of
from yoloq.object_store import ObjectStore
from yoloq.registry import ModelRegistry


@pytest.fixture
def registry(object_store: ObjectStore) -> ModelRegistry:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    object_store.ensure_bucket(bucket)
    return ModelRegistry(object_store, bucket)


@pytest.fixture(scope="module")
def detector_info(model_path: Path) -> WeightsInfo:
    return read_weights_info(model_path)


def _weights_variant(model_path: Path, tmp_path: Path, tag: str) -> Path:
    """Other bytes of the same model: a new version when pushed."""
    path = tmp_path / f"{tag}.pt"
    path.write_bytes(model_path.read_bytes() + tag.encode())
    return path


def test_weights_say_their_task_classes_and_size(detector_info: WeightsInfo) -> None:
    assert detector_info.task == Task.DETECT and detector_info.format == "pt"
    assert detector_info.class_names == {0: "circle", 1: "square", 2: "triangle", 3: "star"}
    assert detector_info.imgsz == 256 and detector_info.ultralytics


def test_push_numbers_versions_and_dedupes_the_same_bytes(
    registry: ModelRegistry, model_path: Path, detector_info: WeightsInfo, tmp_path: Path
) -> None:
    first, created = registry.push(model_path, "shapes", detector_info)
    assert created and first.version == 1 and first.sha256 == sha256_of(model_path)
    assert first.task == Task.DETECT and first.class_names[3] == "star"

    again, created = registry.push(model_path, "shapes", detector_info)
    assert not created and again.version == 1

    second, created = registry.push(
        _weights_variant(model_path, tmp_path, "v2"), "shapes", detector_info
    )
    assert created and second.version == 2
    card = registry.card("shapes")
    assert [v.version for v in card.versions] == [1, 2]
    # A bare name is the newest version until the model has a production alias.
    assert registry.resolve(ModelReference.parse("shapes"), "job").version == 2
    assert registry.resolve(ModelReference.parse("shapes:1"), "job").version == 1


def test_concurrent_pushes_of_different_bytes_get_different_numbers(
    registry: ModelRegistry, model_path: Path, detector_info: WeightsInfo, tmp_path: Path
) -> None:
    files = [_weights_variant(model_path, tmp_path, f"c{i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        pushed = list(pool.map(lambda p: registry.push(p, "racy", detector_info)[0], files))
    assert sorted(v.version for v in pushed) == [1, 2, 3, 4]
    assert {v.sha256 for v in pushed} == {sha256_of(p) for p in files}


def test_downloads_are_checked_and_cached_by_digest(
    registry: ModelRegistry, model_path: Path, detector_info: WeightsInfo, tmp_path: Path
) -> None:
    version, _ = registry.push(model_path, "cached", detector_info)
    path = registry.download(version, "pt", tmp_path)
    assert sha256_of(path) == version.sha256 and path.name.startswith(version.sha256)
    assert registry.download(version, "pt", tmp_path) == path

    # Weights replaced behind the registry's back are refused, not served.
    registry.store.put(registry.bucket, version.file("pt").key, b"tampered")
    with pytest.raises(CatalogError, match="does not match"):
        registry.download(version, "pt", tmp_path / "elsewhere")


def test_aliases_point_at_versions_and_split_jobs(
    registry: ModelRegistry, model_path: Path, detector_info: WeightsInfo, tmp_path: Path
) -> None:
    registry.push(model_path, "parts", detector_info)
    registry.push(_weights_variant(model_path, tmp_path, "v2"), "parts", detector_info)

    card = registry.set_alias("parts", "production", Alias.parse("1"))
    assert str(card.aliases["production"]) == "1"
    assert registry.resolve(ModelReference.parse("parts"), "any").version == 1
    assert registry.resolve(ModelReference.parse("parts@production"), "any").version == 1

    registry.set_alias("parts", "production", Alias.parse("1:90,2:10"))
    picks = [
        registry.resolve(ModelReference.parse("parts@production"), uuid.uuid4().hex).version
        for _ in range(2000)
    ]
    assert 0.07 <= picks.count(2) / len(picks) <= 0.13
    job = uuid.uuid4().hex
    assert (
        len({registry.resolve(ModelReference.parse("parts"), job).version for _ in range(5)}) == 1
    )

    with pytest.raises(CatalogError, match="no version 9"):
        registry.set_alias("parts", "staging", Alias.parse("9"))
    with pytest.raises(CatalogError, match="no alias 'staging'"):
        registry.resolve(ModelReference.parse("parts@staging"), "job")
    registry.delete_alias("parts", "production")
    assert registry.resolve(ModelReference.parse("parts"), "job").version == 2


def test_unknown_models_are_named_in_the_error(registry: ModelRegistry) -> None:
    with pytest.raises(CatalogError, match="no model named 'ghost'"):
        registry.card("ghost")
