"""What the per-image peers share: the result record, the CPU-time budget and scaling.

Time is counted as in :mod:`benchmarks.training`: CPU seconds of the process divided by
the number of torch threads (the wall time on an idle machine, without the time other
processes on a shared CPU take). A peer's training time covers everything its training
loop does per iteration (noise synthesis, validation passes), because those belong to
the published algorithm; the final prediction is timed separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from n2v_cascade.metrics import default_data_range


@dataclass
class PeerResult:
    """A peer's output for one image and what it cost."""

    output: np.ndarray
    steps: int  # optimiser steps taken
    train_s: float  # CPU seconds per torch thread spent in the training loop
    predict_s: float  # CPU seconds per torch thread of the final prediction
    finished: bool  # the published schedule or stopping rule ended training (not the budget)
    extra: dict = field(default_factory=dict)


class Budget:
    """Counts CPU seconds per torch thread; ``spent()`` once ``seconds`` are used up.

    ``seconds=None`` means no budget: the algorithm's own schedule decides.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.threads = max(1, torch.get_num_threads())
        self._start = time.process_time()

    @property
    def used(self) -> float:
        return (time.process_time() - self._start) / self.threads

    def spent(self) -> bool:
        return self.seconds is not None and self.used >= self.seconds

    def left(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.seconds - self.used)


def cpu_seconds(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """Run ``fn`` and return its result with its CPU seconds per torch thread."""
    clock = Budget(None)
    out = fn()
    return out, clock.used


def resolve_range(noisy: np.ndarray, data_range: float | None) -> float:
    """The intensity scale mapped to 1 (the image's own range rule when none is given)."""
    return float(data_range) if data_range else default_data_range(noisy)


def check_image(noisy: np.ndarray, min_side: int = 4) -> np.ndarray:
    """A finite 2-D float32 copy of ``noisy``; a clear error otherwise."""
    arr = np.asarray(noisy)
    if arr.ndim != 2 or min(arr.shape) < min_side:
        raise ValueError(f"a peer denoises one 2-D image of at least {min_side}x{min_side} "
                         f"pixels, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("the image holds NaN or infinite values")
    return arr


@contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Torch's global generator seeded for weight initialisation, restored afterwards;
    yields a separate generator for the algorithm's random draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed + 1)


def to_tensor(img: np.ndarray, channels: int = 1) -> torch.Tensor:
    """``(1, channels, H, W)`` float32 tensor holding ``img`` in every channel, in the
    channels-last layout (see :func:`fast`)."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    t = t.repeat(1, channels, 1, 1) if channels > 1 else t
    return t.contiguous(memory_format=torch.channels_last)


def fast(net: torch.nn.Module) -> torch.nn.Module:
    """The network in the channels-last layout: the same computation, and oneDNN's
    convolutions for these narrow networks run faster on CPU in it."""
    return net.to(memory_format=torch.channels_last)
