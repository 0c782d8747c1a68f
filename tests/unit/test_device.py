import os
import subprocess
import sys

import pytest

from workers.device import parse_device


def test_cpu() -> None:
    device = parse_device("cpu")
    assert (device.torch_device, device.label, device.is_cuda) == ("cpu", "cpu", False)


def test_cuda_n_is_pinned_and_seen_as_cuda_0() -> None:
    device = parse_device("cuda:3")
    assert (device.requested, device.torch_device, device.label) == ("cuda:3", "cuda:0", "gpu3")
    assert device.host_index == 3
    assert parse_device("cpu").host_index is None


@pytest.mark.parametrize("bad", ["gpu", "cuda", "cuda:x", "tpu:0", ""])
def test_refuses_unknown_devices(bad: str) -> None:
    with pytest.raises(ValueError, match="device must be"):
        parse_device(bad)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environ
    )


def test_pinning_sets_cuda_visible_devices_before_torch() -> None:
    result = _run(
        "import os, sys\n"
        "from workers.device import parse_device, pin_device\n"
        "pin_device(parse_device('cuda:2'))\n"
        "assert 'torch' not in sys.modules\n"
        "print(os.environ['CUDA_VISIBLE_DEVICES'])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_cpu_pinning_hides_every_gpu() -> None:
    result = _run(
        "import os\n"
        "from workers.device import parse_device, pin_device\n"
        "pin_device(parse_device('cpu'))\n"
        "print(repr(os.environ['CUDA_VISIBLE_DEVICES']))\n"
    )
    assert result.stdout.strip() == "''"


def test_cpu_workers_let_idle_openmp_threads_sleep_unless_told_otherwise() -> None:
    script = (
        "import os\n"
        "from workers.device import parse_device, pin_device\n"
        "pin_device(parse_device('cpu'))\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    assert _run(script).stdout.strip() == "PASSIVE"
    assert _run(script, OMP_WAIT_POLICY="ACTIVE").stdout.strip() == "ACTIVE"


def test_pinning_after_torch_is_refused() -> None:
    result = _run(
        "import sys, types\n"
        "sys.modules['torch'] = types.ModuleType('torch')\n"
        "from workers.device import parse_device, pin_device\n"
        "pin_device(parse_device('cuda:0'))\n"
    )
    assert result.returncode != 0
    assert "before torch is imported" in result.stderr
