"""The CPU batch conversion is Ultralytics' preprocess, bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from workers.model import model_input


def test_model_input_is_ultralytics_preprocess_exactly() -> None:
    rng = np.random.default_rng(7)
    pixels = [rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(3)]
    # Ultralytics' preprocess: BHWC BGR -> BCHW RGB, to float, divided by 255.
    reference = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).flip(1).float() / 255
    batch = model_input(pixels)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 96, 160)
    assert torch.equal(torch.from_numpy(batch), reference)
