"""Pinning a worker process to one device, before torch is imported.

``CUDA_VISIBLE_DEVICES`` is read once, when CUDA initialises; set later it is silently
ignored. So the worker sets it first thing, and from then on its one GPU is ``cuda:0``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

_CUDA = re.compile(r"^cuda:(\d+)$")


@dataclass(frozen=True)
class Device:
    requested: str
    """As asked for: ``cpu`` or ``cuda:N`` (N counts the host's GPUs)."""
    torch_device: str
    """As torch sees it once pinned: ``cpu`` or ``cuda:0``."""
    label: str
    """For the worker's hostname: ``cpu`` or ``gpuN``."""

    @property
    def is_cuda(self) -> bool:
        return self.torch_device != "cpu"

    @property
    def host_index(self) -> int | None:
        """The GPU's index on the host (as NVML counts), None on the CPU."""
        return int(self.requested.split(":", 1)[1]) if self.is_cuda else None


def count_host_gpus() -> int:
    """NVIDIA GPUs on this host, found without importing torch."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def parse_device(value: str) -> Device:
    """``cpu``, ``cuda:N``, or ``auto`` (the first GPU if there is one, else the CPU)."""
    value = value.strip().lower()
    if value == "auto":
        value = "cuda:0" if count_host_gpus() > 0 else "cpu"
    if value == "cpu":
        return Device(requested="cpu", torch_device="cpu", label="cpu")
    match = _CUDA.fullmatch(value)
    if not match:
        raise ValueError(f"device must be 'cpu', 'cuda:N' or 'auto', not {value!r}")
    return Device(requested=value, torch_device="cuda:0", label=f"gpu{match.group(1)}")


def pin_device(device: Device) -> None:
    """Make ``device`` the only one this process can see. Must run before torch loads."""
    if "torch" in sys.modules:
        raise RuntimeError("pin_device must run before torch is imported")
    if device.is_cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = device.requested.split(":", 1)[1]
    else:
        # Hide every GPU, so nothing in the process initialises CUDA by accident.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        # Ultralytics sets OMP_NUM_THREADS=1 when it is unset; the CPU worker wants all cores.
        os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        # Idle OpenMP threads sleep instead of spinning: between batches the same cores
        # download, decode and record images, and spinning took a third of the worker's
        # CPU under request load (docs/performance.md, bench/detect.py).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_torch_sees(device: Device) -> None:
    """A clear error when a GPU was asked for and torch has none (no driver, or the
    device hidden by CUDA_VISIBLE_DEVICES)."""
    if not device.is_cuda:
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{device.requested} was requested but torch sees no CUDA device "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
