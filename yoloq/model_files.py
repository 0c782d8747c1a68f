"""Weights on disk: one file (.pt, .onnx, ...) or an export directory (OpenVINO's
``*_openvino_model/``: the IR's .xml and .bin and Ultralytics' metadata.yaml).

A directory is named by one SHA-256 over its files, so it is cached, pinned and recorded
on results exactly as a single file is; in object storage it is one tar.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import uuid
from pathlib import Path

DIRECTORY_SUFFIX = "_model"
"""How Ultralytics names an export that is a directory (``_openvino_model``, ...)."""


def sha256_of(path: Path) -> str:
    """A file's SHA-256, or a directory's: over each file's relative path and digest, in
    order, so the same export has the same digest wherever it is unpacked."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in _files(path):
            digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_of(file)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file in a directory."""
    if path.is_dir():
        return sum(file.stat().st_size for file in _files(path))
    return path.stat().st_size


def _files(directory: Path) -> list[Path]:
    return sorted(file for file in directory.rglob("*") if file.is_file())


def pack(directory: Path, out: Path) -> None:
    """Write ``directory`` as a tar whose bytes depend only on the files' names and
    contents (no times, owners or modes), so packing the same export twice gives one
    object."""
    with tarfile.open(out, "w") as tar:
        for file in _files(directory):
            info = tarfile.TarInfo(file.relative_to(directory).as_posix())
            info.size = file.stat().st_size
            info.mode = 0o644
            with file.open("rb") as f:
                tar.addfile(info, f)


def unpack(archive: Path, into: Path, expected_sha256: str) -> Path:
    """Unpack a tar written by ``pack`` as the directory ``into``, atomically: unpacked
    beside it, checked against the digest, then renamed, so a crash or a second worker
    unpacking the same archive never leaves a half directory under the real name."""
    partial = into.with_name(f"{into.name}.{uuid.uuid4().hex}.part")
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")  # refuses absolute paths and links out
        digest = sha256_of(partial)
        if digest != expected_sha256:
            raise ValueError(f"{archive.name} unpacks to SHA-256 {digest}, not {expected_sha256}")
        try:
            partial.rename(into)
        except OSError:
            if not into.is_dir():  # another worker unpacking it at once got there first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return into
