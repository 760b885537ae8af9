"""Shared test settings: deterministic, few threads, small images."""

from __future__ import annotations

import os
from pathlib import Path

# Qt (napari plugin tests) renders off screen: no display server is needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture
def noisy_pair(clean_image) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) with Gaussian sigma 0.1, fixed seed."""
    rng = np.random.default_rng(0)
    noisy = clean_image + rng.normal(0, 0.1, clean_image.shape).astype(np.float32)
    return clean_image, noisy


def tiny_config(**overrides):
    """A config small enough to train in well under a second."""
    from n2v_cascade.config import make_config

    values = dict(patch_size=16, batch_size=4, epochs=2, steps_per_epoch=5, seed=0,
                  network={"depth": 2, "width": 8}, mask={"fraction": 0.02})
    values.update(overrides)
    return make_config("test", **values)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    import sys

    from n2v_cascade.cli import main

    old = sys.argv
    sys.argv = ["n2v-cascade", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def shared_data() -> Path:
    """The shared data folder (``N2V_SHARED_DATA``, else ``../shared/data`` next to the
    repository, else ``/work/shared/data``); may not exist (tests then skip)."""
    candidates = [os.environ.get("N2V_SHARED_DATA"),
                  Path(__file__).resolve().parents[2] / "shared" / "data", "/work/shared/data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path(candidates[1])
