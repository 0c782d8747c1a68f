"""The model registry: numbered, immutable versions and their aliases, in object storage.

Layout (``yoloq.keys``), in the models bucket::

    parts-seg/aliases.json          every alias: {"production": {"shares": [...]}}
    parts-seg/7/claim               who took number 7 (written first, conditionally)
    parts-seg/7/weights.pt          the weights, as pushed
    parts-seg/7/weights.onnx.onnx   an export of them (``add_file``); an export that is
                                    a directory (OpenVINO) is one tar: weights.openvino.tar
    parts-seg/7/model.json          the version's metadata: it exists once this does
    parts-seg/sha256/<digest>       the version holding these bytes

Storage is the only state, so the CLI, the API and every worker see one registry with no
service of its own to run. Numbers are taken with conditional PUTs (``If-None-Match``),
so two pushes at once never get the same number, and the digest index makes a second
push of the same bytes return the first version.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from yoloq import keys
from yoloq.catalog import (
    Alias,
    CatalogError,
    ExportAccuracy,
    ModelAliases,
    ModelCard,
    ModelFile,
    ModelReference,
    ModelVersion,
    WeightsInfo,
)
from yoloq.model_files import pack, sha256_of, size_of, unpack
from yoloq.object_store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, store: ObjectStore, bucket: str, cache_s: float = 0.0) -> None:
        self.store = store
        self.bucket = bucket
        self.cache_s = cache_s
        """How long a model's card is reused before it is read again (the API's
        resolution path; 0 reads every time)."""
        self._cards: dict[str, tuple[float, ModelCard]] = {}
        self._lock = threading.Lock()

    # Reading

    def names(self) -> list[str]:
        try:
            prefixes = self.store.list_prefixes(self.bucket)
        except ObjectNotFound:
            return []
        return sorted(prefix.rstrip("/") for prefix in prefixes)

    def card(self, name: str) -> ModelCard:
        """The model's versions and aliases; CatalogError if it has none."""
        if self.cache_s > 0:
            with self._lock:
                cached = self._cards.get(name)
            if cached and time.monotonic() - cached[0] < self.cache_s:
                return cached[1]
        card = self._read_card(name)
        if self.cache_s > 0:
            with self._lock:
                self._cards[name] = (time.monotonic(), card)
        return card

    def _read_card(self, name: str) -> ModelCard:
        versions = self._versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise CatalogError(f"no model named {name!r} in the registry (models: {known})")
        return ModelCard(name=name, versions=versions, aliases=self._aliases(name).aliases)

    def _versions(self, name: str) -> list[ModelVersion]:
        try:
            found = self.store.list_keys(
                self.bucket, keys.model_prefix(name), frozenset({"/model.json"}), 1_000_000
            )
        except ObjectNotFound:
            return []
        versions = []
        for key in found:
            raw = self.store.get_if_exists(self.bucket, key)
            if raw is not None:
                versions.append(ModelVersion.model_validate_json(raw))
        return sorted(versions, key=lambda v: v.version)

    def _aliases(self, name: str) -> ModelAliases:
        raw = self.store.get_if_exists(self.bucket, keys.model_aliases_key(name))
        return ModelAliases.model_validate_json(raw) if raw else ModelAliases()

    def resolve(self, reference: ModelReference, job_id: str) -> ModelVersion:
        return self.card(reference.name).resolve(reference, job_id)

    def version(self, name: str, number: int) -> ModelVersion:
        raw = self.store.get_if_exists(self.bucket, keys.model_version_key(name, number))
        if raw is None:
            raise CatalogError(f"model {name!r} has no version {number}")
        return ModelVersion.model_validate_json(raw)

    # Writing

    def push(self, path: Path, name: str, info: WeightsInfo) -> tuple[ModelVersion, bool]:
        """Add ``path`` as the next version of ``name``; the version and whether it is new.
        The same bytes pushed again return the version that holds them."""
        ModelReference.parse(name)  # a name a job can reference
        if info.format != "pt":
            raise CatalogError(
                f"{path.name}: push the .pt weights; exports are added to a version with "
                "`yoloq models export name:N --format onnx`"
            )
        self.store.ensure_bucket(self.bucket)
        digest = sha256_of(path)
        existing = self._version_holding(name, digest)
        if existing is not None:
            number = existing
            made = self._get_version(name, number)
            if made is not None:
                return made, False
            # An earlier push claimed the number and died before writing model.json.
        else:
            number = self._claim_number(name, digest)
        key = keys.model_file_key(name, number, "weights.pt")
        self.store.upload_file(str(path), self.bucket, key)
        version = ModelVersion(
            name=name,
            version=number,
            task=info.task,
            class_names=info.class_names,
            imgsz=info.imgsz,
            sha256=digest,
            bytes=size_of(path),
            ultralytics=info.ultralytics,
            created_at=datetime.now(tz=UTC),
            files=[ModelFile(format="pt", key=key, sha256=digest, bytes=path.stat().st_size)],
            keypoint_names=info.keypoint_names,
            keypoint_shape=info.keypoint_shape,
        )
        self._write_version(version)
        log.info("pushed %s as %s", path, version.id)
        return version, True

    def add_file(
        self,
        name: str,
        number: int,
        path: Path,
        info: WeightsInfo,
        accuracy: ExportAccuracy | None = None,
    ) -> ModelVersion:
        """An export of a version (ONNX, TorchScript, an OpenVINO directory, ...): another
        file of that version, so a worker may serve it and its results name the version
        it came from."""
        version = self.version(name, number)
        if path.is_dir():
            key = keys.model_file_key(name, number, f"weights.{info.format}.tar")
            with tempfile.TemporaryDirectory() as scratch:
                archive = Path(scratch) / "weights.tar"
                pack(path, archive)
                self.store.upload_file(str(archive), self.bucket, key)
        else:
            key = keys.model_file_key(name, number, f"weights.{info.format}{path.suffix}")
            self.store.upload_file(str(path), self.bucket, key)
        file = ModelFile(
            format=info.format,
            key=key,
            sha256=sha256_of(path),
            bytes=size_of(path),
            imgsz=info.input_shape,
            precision=info.precision,
            accuracy=accuracy,
        )
        files = [f for f in version.files if f.format != info.format] + [file]
        version = version.model_copy(update={"files": files})
        self._write_version(version)
        return version

    def set_alias(self, name: str, alias: str, target: Alias) -> ModelCard:
        ModelReference.parse(f"{name}@{alias}")
        card = self._read_card(name)
        for number in target.versions:
            card.version(number)  # each must exist
        aliases = self._aliases(name)
        aliases.aliases[alias] = target
        self._write_aliases(name, aliases)
        self._forget(name)
        return self._read_card(name)

    def delete_alias(self, name: str, alias: str) -> ModelCard:
        aliases = self._aliases(name)
        if aliases.aliases.pop(alias, None) is None:
            raise CatalogError(f"model {name!r} has no alias {alias!r}")
        self._write_aliases(name, aliases)
        self._forget(name)
        return self._read_card(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cards.pop(name, None)

    def _write_aliases(self, name: str, aliases: ModelAliases) -> None:
        self.store.put(
            self.bucket,
            keys.model_aliases_key(name),
            aliases.model_dump_json(indent=2).encode(),
            "application/json",
        )

    def _write_version(self, version: ModelVersion) -> None:
        self.store.put(
            self.bucket,
            keys.model_version_key(version.name, version.version),
            version.model_dump_json(indent=2).encode(),
            "application/json",
        )
        self._forget(version.name)

    def _get_version(self, name: str, number: int) -> ModelVersion | None:
        try:
            return self.version(name, number)
        except CatalogError:
            return None

    def _version_holding(self, name: str, digest: str) -> int | None:
        raw = self.store.get_if_exists(self.bucket, keys.model_digest_key(name, digest))
        return int(json.loads(raw)["version"]) if raw else None

    def _claim_number(self, name: str, digest: str) -> int:
        """The next free version number, taken for ``digest``. A claim is a conditional
        PUT, so two pushes never both take a number; the loser tries the next one."""
        token = uuid.uuid4().hex
        claimed = self._claims(name)
        number = max(claimed, default=0) + 1
        while not self.store.put_new(
            self.bucket, keys.model_claim_key(name, number), token.encode()
        ):
            number += 1
        entry = json.dumps({"version": number}).encode()
        if not self.store.put_new(self.bucket, keys.model_digest_key(name, digest), entry):
            # The same bytes are being pushed at once elsewhere: theirs is the version.
            other = self._version_holding(name, digest)
            if other is not None and other != number:
                raise CatalogError(
                    f"these weights are being pushed as {name}:{other} at this moment; "
                    "push again once that is done"
                )
        return number

    def _claims(self, name: str) -> list[int]:
        try:
            found = self.store.list_keys(
                self.bucket, keys.model_prefix(name), frozenset({"/claim"}), 1_000_000
            )
        except ObjectNotFound:
            return []
        numbers = []
        for key in found:
            part = key.removeprefix(keys.model_prefix(name)).split("/")[0]
            if part.isdigit():
                numbers.append(int(part))
        return numbers

    # Fetching (workers)

    def download(self, version: ModelVersion, format: str, cache_dir: Path) -> Path:
        """The version's file in ``format``, downloaded once into the cache, named by its
        SHA-256 so a file is never fetched twice nor a stale one used. A directory export
        (stored as a tar) is unpacked to ``<sha256>_openvino_model/``."""
        file = version.file(format)
        is_directory = file.key.endswith(".tar")
        # Ultralytics knows an export directory's format by its name: *_openvino_model.
        suffix = f"_{file.format.split('-')[0]}_model" if is_directory else Path(file.key).suffix
        cached = cache_dir / "models" / "sha256" / f"{file.sha256}{suffix}"
        if cached.exists():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + f".{uuid.uuid4().hex}.download")
        self.store.client.download_file(self.bucket, file.key, str(partial))
        try:
            if is_directory:
                return unpack(partial, cached, file.sha256)
            if sha256_of(partial) != file.sha256:
                raise ValueError("digest differs")
            partial.replace(cached)
            return cached
        except ValueError as error:
            raise CatalogError(
                f"s3://{self.bucket}/{file.key} does not match the SHA-256 its version "
                f"{version.id} records: the object was changed after it was pushed"
            ) from error
        finally:
            partial.unlink(missing_ok=True)
