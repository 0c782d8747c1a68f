"""How much memory a model takes on the worker's device, and whether another fits.

Each model version is measured as it loads and warms up (the weights, the backend, the
largest batch's activations): on a GPU torch's peak allocation, on a CPU the growth of
the process's resident memory (at least the weights file's size). A worker has a
budget, ``YOLOQ_MODEL_MEMORY_MB`` or what the device has free when it starts; a version
that would take the models past it is refused with a clear error instead of failing
later, mid-batch, out of memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from workers.device import Device, check_torch_sees

MIB = 1 << 20
HEADROOM = 0.9
"""The share of the device's free memory the models may take: the rest is for the images
in flight and the runtime's own buffers."""


class ModelDoesNotFit(RuntimeError):
    """A model version that would take the worker past its memory budget."""


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def free_bytes(device: Device) -> int:
    if device.is_cuda:
        import torch

        check_torch_sees(device)
        return int(torch.cuda.mem_get_info(device.torch_device)[0])
    return _available_bytes()


class Measurement:
    """Memory taken between ``start`` and ``stop``: on CUDA the peak allocation."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.before = 0

    def start(self) -> Measurement:
        if self.device.is_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device.torch_device)
            self.before = int(torch.cuda.memory_allocated(self.device.torch_device))
        else:
            # The libraries themselves are not the model's: loaded before the baseline.
            import torch
            from ultralytics.models import YOLO  # noqa: F401

            self.before = _rss_bytes()
        return self

    def stop(self) -> int:
        if self.device.is_cuda:
            import torch

            peak = int(torch.cuda.max_memory_allocated(self.device.torch_device))
            return max(0, peak - self.before)
        return max(0, _rss_bytes() - self.before)


@dataclass
class MemoryBudget:
    limit_bytes: int
    taken: dict[str, int] = field(default_factory=dict)
    """Measured bytes by model version id."""

    @classmethod
    def for_device(cls, device: Device, limit_mb: int | None) -> MemoryBudget:
        if limit_mb is not None:
            return cls(limit_mb * MIB)
        return cls(int(free_bytes(device) * HEADROOM))

    def admit(self, model_id: str, measured: int, device: Device) -> None:
        """Count ``model_id``'s memory, or raise ModelDoesNotFit if it takes the models
        past the budget."""
        others = sum(size for name, size in self.taken.items() if name != model_id)
        if others + measured > self.limit_bytes:
            loaded = ", ".join(f"{name} {size / MIB:.0f} MiB" for name, size in self.taken.items())
            raise ModelDoesNotFit(
                f"model {model_id} takes {measured / MIB:.0f} MiB on {device.requested} "
                f"(measured at warm-up); with {loaded or 'nothing else'} loaded that is past "
                f"this worker's {self.limit_bytes / MIB:.0f} MiB (YOLOQ_MODEL_MEMORY_MB, or "
                f"{HEADROOM:.0%} of the memory free at start): serve it on another worker"
            )
        self.taken[model_id] = measured

    def release(self, model_id: str) -> None:
        self.taken.pop(model_id, None)
