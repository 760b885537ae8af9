"""ZS-N2N, Zero-Shot Noise2Noise (Mansour & Heckel, CVPR 2023, arXiv:2303.11253).

The algorithm, as the paper describes it, re-implemented here:

* Two half-size images are taken from the single noisy image ``y`` with fixed 2x2,
  stride-2 kernels: ``D1`` averages the anti-diagonal pair of every 2x2 block, ``D2`` the
  diagonal pair. Their signals nearly agree and, for pixel-wise independent noise, their
  noise is independent: a Noise2Noise pair made from one image.
* A tiny network ``f`` (3x3 conv to 48 channels, LeakyReLU 0.2, 3x3 conv 48 -> 48,
  LeakyReLU 0.2, 1x1 conv back) predicts the *noise*; the denoiser is ``y - f(y)``.
* Loss = residual + consistency:
  ``1/2 (|D1 y - g(D2 y)|^2 + |D2 y - g(D1 y)|^2)`` with ``g(x) = x - f(x)``, plus
  ``1/2 (|g(D1 y) - D1 g(y)|^2 + |g(D2 y) - D2 g(y)|^2)`` (denoising then down-sampling
  should match down-sampling then denoising). Mean squared errors, full image per step.
* Adam, learning rate 1e-3, 2000 iterations; the output ``clip(y - f(y), 0, 1)``.

The image is divided by its data range (8-bit data: 255) to the paper's 0..1 scale and the
result multiplied back.

Deviations: the learning rate is halved after 1500 of the 2000 iterations, the step
schedule of a public reproduction of the method (the authors' own notebook could not be
consulted here; its schedule may differ); with a time budget training stops when the
budget is spent, before 2000 iterations if need be. An odd-sized image loses its last
row/column for the training pair only (the prediction covers the whole image).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers.common import (
    Budget,
    PeerResult,
    check_image,
    cpu_seconds,
    fast,
    resolve_range,
    seeded,
    to_tensor,
)

ITERATIONS = 2000
LEARNING_RATE = 1e-3
DECAY_AT, DECAY = 1500, 0.5
WIDTH = 48


class Net(nn.Module):
    """Two 3x3 convolutions and a 1x1 output; predicts the noise."""

    def __init__(self, channels: int = 1, width: int = WIDTH) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two diagonal-pair averages of every 2x2 block (trailing odd row/column dropped)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return 0.5 * (b + c), 0.5 * (a + d)


def loss_fn(net: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Residual plus consistency loss of the paper."""
    y1, y2 = pair_downsample(y)
    g1, g2 = y1 - net(y1), y2 - net(y2)
    residual = 0.5 * (F.mse_loss(g2, y1) + F.mse_loss(g1, y2))
    d1, d2 = pair_downsample(y - net(y))
    consistency = 0.5 * (F.mse_loss(g1, d1) + F.mse_loss(g2, d2))
    return residual + consistency


def fit(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
        data_range: float | None = None, iterations: int = ITERATIONS) -> PeerResult:
    """Train ZS-N2N on ``noisy`` alone and denoise it; see the module docstring."""
    img = check_image(noisy)
    scale = resolve_range(img, data_range)
    y = to_tensor(img / scale)
    budget = Budget(seconds)
    steps = 0
    with seeded(seed):
        net = fast(Net())
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=DECAY_AT, gamma=DECAY)
        while steps < iterations and not budget.spent():
            loss = loss_fn(net, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
    train_s = budget.used

    def predict() -> np.ndarray:
        with torch.no_grad():
            return torch.clamp(y - net(y), 0.0, 1.0)[0, 0].numpy() * scale

    out, predict_s = cpu_seconds(predict)
    return PeerResult(out.astype(np.float32), steps, train_s, predict_s,
                      finished=steps >= iterations)


def denoise(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
            data_range: float | None = None) -> np.ndarray:
    """ZS-N2N output for one 2-D image, in the image's own intensity scale."""
    return fit(noisy, seconds=seconds, seed=seed, data_range=data_range).output
