"""Shared test settings: deterministic, few threads, small images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def clean_image() -> np.ndarray:
    """A small smooth-with-edges float32 image in [0, 1] (64x64)."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    img = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    img[20:40, 20:40] += 0.2
    return np.clip(img, 0, 1).astype(np.float32)
