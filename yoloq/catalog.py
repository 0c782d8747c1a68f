"""The model catalog's vocabulary: references, versions, aliases and traffic splits.

Plain data and pure functions, no I/O: the registry (``yoloq.registry``) stores these in
object storage, the API resolves a job's reference with them, and workers name their
queues by the version they serve.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,62}$"
ALIAS_PATTERN = NAME_PATTERN
_NAME = re.compile(NAME_PATTERN)
_SHARE = re.compile(r"([1-9][0-9]*)(?::([1-9][0-9]*))?")

DEFAULT_ALIAS = "production"
"""What a bare model name means, when the model has that alias; otherwise its newest
version."""


class Task(enum.StrEnum):
    """The Ultralytics tasks; each has its own result shape (``yoloq.results``)."""

    DETECT = "detect"
    SEGMENT = "segment"
    POSE = "pose"
    CLASSIFY = "classify"
    OBB = "obb"


class CatalogError(ValueError):
    """A model reference that does not parse, or names nothing in the registry."""


@dataclass(frozen=True)
class ModelReference:
    """What a job or a worker names: ``name``, ``name:7`` (a version) or ``name@alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelReference:
        name, at, alias = text.strip().partition("@")
        name, colon, version = name.partition(":")
        if not _NAME.fullmatch(name):
            raise CatalogError(
                f"model {text!r}: a name is 1-63 of a-z, 0-9, '_', '.', '-', starting "
                "with a letter or digit"
            )
        if at and colon:
            raise CatalogError(f"model {text!r}: name a version or an alias, not both")
        if colon:
            if not version.isdigit() or int(version) < 1:
                raise CatalogError(f"model {text!r}: a version is a number from 1")
            return cls(name, version=int(version))
        if at:
            if not _NAME.fullmatch(alias):
                raise CatalogError(f"model {text!r}: {alias!r} is not a valid alias name")
            return cls(name, alias=alias)
        return cls(name)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def served_id(name: str, version: int) -> str:
    """The id of one model version: it names the version's queue, its queued-images
    counter and its metrics, so each version is scaled and drained on its own."""
    return f"{name}:{version}"


class ExportAccuracy(BaseModel):
    """An export measured against the .pt it came from, on one labelled set."""

    data: str = Field(description="The labelled set (an Ultralytics dataset YAML).")
    imgsz: int
    images: int
    pt_map50: float
    pt_map50_95: float
    export_map50: float
    export_map50_95: float
    max_loss: float = Field(description="Most mAP@0.5 points the export may lose.")
    accepted_loss: bool = Field(
        default=False, description="It lost more than max_loss and was kept anyway."
    )

    @property
    def loss_points(self) -> float:
        """mAP@0.5 points lost (negative when the export scores higher)."""
        return 100 * (self.pt_map50 - self.export_map50)


class ModelFile(BaseModel):
    """One file of a version: its weights in one format."""

    format: str = Field(description="pt, onnx, torchscript, engine, openvino, openvino-int8, ...")
    key: str = Field(description="Object key in the models bucket.")
    sha256: str
    bytes: int
    imgsz: list[int] | None = Field(
        default=None, description="Fixed input (height, width) of an export; null: any."
    )
    precision: str | None = Field(
        default=None, description="int8 for a quantized export; null: as trained (fp32)."
    )
    accuracy: ExportAccuracy | None = Field(
        default=None, description="mAP of the export and of the .pt, when it was measured."
    )


class WeightsInfo(BaseModel):
    """What a weights file says of itself (read by ``workers.weights_info``, with torch)."""

    format: str
    task: Task
    class_names: dict[int, str]
    imgsz: int
    input_shape: list[int] | None = None
    precision: str | None = None
    """int8 for a quantized export."""
    ultralytics: str | None = None
    keypoint_names: dict[int, list[str]] | None = None
    keypoint_shape: list[int] | None = None


class ModelVersion(BaseModel):
    """An immutable, numbered version of a model, with what its weights say of it."""

    name: str
    version: int = Field(ge=1)
    task: Task
    class_names: dict[int, str]
    imgsz: int = Field(description="The size it was trained at.")
    sha256: str = Field(description="SHA-256 of the .pt weights: which weights made a box.")
    bytes: int
    ultralytics: str | None = Field(default=None, description="Ultralytics that wrote it.")
    created_at: datetime
    files: list[ModelFile] = Field(description="Its weights: the .pt first, then exports.")
    keypoint_names: dict[int, list[str]] | None = Field(
        default=None, description="Pose models: by class, a name per keypoint."
    )
    keypoint_shape: list[int] | None = Field(
        default=None, description="Pose models: keypoints and values per keypoint."
    )

    @property
    def id(self) -> str:
        return served_id(self.name, self.version)

    def file(self, format: str = "pt") -> ModelFile:
        for file in self.files:
            if file.format == format:
                return file
        have = ", ".join(f.format for f in self.files)
        raise CatalogError(f"model {self.id} has no {format} file (it has: {have})")


class Share(BaseModel):
    version: int = Field(ge=1)
    weight: int = Field(ge=1, le=10_000, description="Relative share of the jobs.")


class Alias(BaseModel):
    """A name for one version, or a split of jobs between several (a canary)."""

    shares: list[Share] = Field(min_length=1, max_length=8)

    @classmethod
    def parse(cls, text: str) -> Alias:
        """``7`` or ``7:90,8:10``."""
        parts = [_SHARE.fullmatch(part.strip()) for part in text.split(",")]
        if not all(parts):
            raise CatalogError(
                f"alias target {text!r}: give a version (7) or versions with weights "
                "(7:90,8:10), each a number from 1"
            )
        shares = [Share(version=int(part[1]), weight=int(part[2] or 1)) for part in parts if part]
        if len({share.version for share in shares}) != len(shares):
            raise CatalogError(f"alias target {text!r} names a version twice")
        return cls(shares=shares)

    @property
    def versions(self) -> list[int]:
        return [share.version for share in self.shares]

    def choose(self, job_id: str) -> int:
        """The version a job runs on: deterministic from the job id, so a job resolved
        again (a retried submit) gets the same one, and over many jobs each version gets
        its weight's share."""
        total = sum(share.weight for share in self.shares)
        point = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") % total
        for share in self.shares:
            if point < share.weight:
                return share.version
            point -= share.weight
        raise AssertionError("unreachable: point < total")

    def __str__(self) -> str:
        if len(self.shares) == 1:
            return str(self.shares[0].version)
        return ",".join(f"{share.version}:{share.weight}" for share in self.shares)


class ModelAliases(BaseModel):
    """Every alias of one model (one object in the registry)."""

    aliases: dict[str, Alias] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """A model as the registry holds it: its versions and aliases."""

    name: str
    versions: list[ModelVersion]
    aliases: dict[str, Alias]

    def version(self, number: int) -> ModelVersion:
        for version in self.versions:
            if version.version == number:
                return version
        have = ", ".join(str(v.version) for v in self.versions) or "none"
        raise CatalogError(f"model {self.name!r} has no version {number} (versions: {have})")

    def alias_for(self, reference: ModelReference) -> Alias:
        """What a reference without a version points at."""
        if reference.alias is not None:
            alias = self.aliases.get(reference.alias)
            if alias is None:
                have = ", ".join(sorted(self.aliases)) or "none"
                raise CatalogError(
                    f"model {self.name!r} has no alias {reference.alias!r} (aliases: {have})"
                )
            return alias
        if DEFAULT_ALIAS in self.aliases:
            return self.aliases[DEFAULT_ALIAS]
        if not self.versions:
            raise CatalogError(f"model {self.name!r} has no versions yet")
        return Alias(shares=[Share(version=self.versions[-1].version, weight=1)])

    def resolve(self, reference: ModelReference, job_id: str) -> ModelVersion:
        """The one version a job naming ``reference`` runs on."""
        if reference.version is not None:
            return self.version(reference.version)
        return self.version(self.alias_for(reference).choose(job_id))

    def serving(self, reference: ModelReference) -> list[ModelVersion]:
        """Every version a worker following ``reference`` must serve: all of a split."""
        if reference.version is not None:
            return [self.version(reference.version)]
        return [self.version(number) for number in self.alias_for(reference).versions]


class VersionStatus(ModelVersion):
    """A version as ``GET /v1/models/{name}`` shows it: what it is and who serves it."""

    workers: list[str] = Field(description="Live workers serving it.")
    queued_images: int = Field(description="Images of accepted jobs it has not run yet.")


class ModelStatus(BaseModel):
    """A model as ``GET /v1/models`` and ``GET /v1/models/{name}`` show it."""

    name: str
    task: Task | None = Field(description="The task of its newest version.")
    versions: list[VersionStatus]
    aliases: dict[str, Alias] = Field(description="Alias name to versions and weights.")
    in_registry: bool = Field(
        default=True,
        description="False for a model workers serve from a weights file (YOLOQ_MODEL), "
        "outside the registry: it has no versions or aliases.",
    )
    workers: list[str] = Field(default_factory=list, description="Live workers serving any of it.")
    queued_images: int = 0


class AliasUpdate(BaseModel):
    """The body of ``PUT /v1/models/{name}/aliases/{alias}``."""

    target: str = Field(
        description="A version (7), or versions with weights (7:90,8:10): a canary.",
        examples=["7", "7:90,8:10"],
    )
