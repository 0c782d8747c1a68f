"""The GPU collector against a stand-in NVML: there is no GPU here to read."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from workers.metrics import GpuCollector


def test_gpu_collector_reports_memory_and_utilisation(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def handle(index: int) -> str:
        asked.append(index)
        return f"gpu{index}"

    nvml = types.ModuleType("pynvml")
    nvml.nvmlInit = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=3 * 2**30, total=80 * 2**30)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=87, memory=40)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    values = {family.name: family.samples[0].value for family in GpuCollector(2).collect()}
    assert asked == [2]  # the host's index of the pinned GPU
    assert values == {
        "yoloq_worker_gpu_memory_used_bytes": 3 * 2**30,
        "yoloq_worker_gpu_memory_total_bytes": 80 * 2**30,
        "yoloq_worker_gpu_utilization_ratio": 0.87,
    }
