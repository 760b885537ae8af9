"""FM2S, Fluorescence Micrograph to Self (Liu, Teng, Ma & Jiang, arXiv:2412.10031, 2024:
"Towards spatially-correlated noise modeling in zero-shot fluorescence microscopy image
denoising"), re-implemented from the paper and its published hyper-parameters.

* Pre-denoising: a median filter (window ``filter``) of the noisy image, on the 0..1
  scale, is the pseudo-clean target.
* Channel expansion: the network sees the image repeated ``lambda`` times as channels
  (each channel gets its own synthetic noise) and its output channels are averaged.
* The network (about 3.5k parameters for one channel): 5x5 conv to 24 channels, 3x3 conv
  to 12, 5x5 conv back, LeakyReLU (slope 1e-3) between; MSE loss; Adam 1e-3.
* Two-stage training on the full image: first 5 steps from the raw noisy image to the
  target (structure); then 450 rounds, each synthesising a new noisy version of the target
  and taking 5 steps from it to the target (noise distribution alignment), 2255 steps.
* Adaptive noise synthesis: the target is cut into ``stride x stride`` regions; a region
  with mean ``m`` (clipped to 1e-5..0.15) gets Poisson noise of ``k_p / m`` photons per
  unit and Gaussian noise of std ``k_g * m / 255``, then clipping to 0..1; then the whole
  image gets Poisson noise of ``lambda_p`` photons per unit and clipping again.
* Output: the network applied to the raw noisy image, clipped to 0..1, channels averaged.

``PRESETS`` hold the paper's settings per microscope for FMD single frames (raw, "avg1")
and its SRDTrans setting. The image is divided by its data range (8-bit: 255) to the
method's 0..1 scale and the output multiplied back.

Deviations: a time budget, when given, stops training before the 2255 steps if spent;
the output is not rounded to 8 bits. Region noise levels are computed by average pooling
over zero-padded regions, as in the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
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

LEARNING_RATE = 1e-3
STAGE1_STEPS = 5
ROUNDS, STEPS_PER_ROUND = 450, 5
LEVEL_RANGE = (1e-5, 0.15)


@dataclass(frozen=True)
class Preset:
    """FM2S hyper-parameters: channel expansion, region size, filter window, noise gains."""

    channels: int  # lambda
    stride: int
    filter: int
    k_g: float
    k_p: float
    lambda_p: float


PRESETS: dict[str, Preset] = {
    "confocal": Preset(2, 75, 3, 200.0, 30.0, 70.0),
    "twophoton": Preset(2, 75, 3, 175.0, 30.0, 60.0),
    "widefield": Preset(1, 75, 11, 220.0, 45.0, 2000.0),
    "srdtrans": Preset(6, 5, 3, 60.0, 40.0, 125.0),
}


def preset_for(name: str) -> str:
    """The preset for an FMD image name (``Confocal_...``, ``TwoPhoton_...``)."""
    head = name.split("_")[0].lower()
    return head if head in PRESETS else "confocal"


class Net(nn.Module):
    """The three-layer FM2S network."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 24, 5, padding=2), nn.LeakyReLU(1e-3),
            nn.Conv2d(24, 12, 3, padding=1), nn.LeakyReLU(1e-3),
            nn.Conv2d(12, channels, 5, padding=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def synthesise(clean: torch.Tensor, p: Preset, gen: torch.Generator) -> torch.Tensor:
    """Region-adaptive Poisson-Gaussian noise, then global Poisson noise (0..1 scale)."""
    _, _, h, w = clean.shape
    s = p.stride
    ph, pw = -h % s, -w % s
    padded = F.pad(clean, (0, pw, 0, ph))
    level = F.avg_pool2d(padded.mean(dim=1, keepdim=True), s).clamp(*LEVEL_RANGE)
    level = level.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)[..., :h, :w]
    photons = p.k_p / level
    noisy = torch.poisson(clean * photons, generator=gen) / photons
    noisy = noisy + torch.randn(clean.shape, generator=gen) * (p.k_g * level / 255.0)
    noisy = noisy.clamp(0.0, 1.0)
    return (torch.poisson(noisy * p.lambda_p, generator=gen) / p.lambda_p).clamp(0.0, 1.0)


def fit(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
        data_range: float | None = None, preset: str = "confocal",
        rounds: int = ROUNDS) -> PeerResult:
    """Train FM2S on ``noisy`` alone and denoise it; see the module docstring."""
    if preset not in PRESETS:
        raise ValueError(f"unknown FM2S preset {preset!r}; known: {sorted(PRESETS)}")
    p = PRESETS[preset]
    img = check_image(noisy)
    scale = resolve_range(img, data_range)
    x = img / scale
    target = to_tensor(ndimage.median_filter(x, size=p.filter), p.channels)
    raw = to_tensor(x, p.channels)
    budget = Budget(seconds)
    steps, total = 0, STAGE1_STEPS + rounds * STEPS_PER_ROUND
    with seeded(seed) as gen:
        net = fast(Net(p.channels))
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)

        def step(inp: torch.Tensor) -> None:
            loss = F.mse_loss(net(inp), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(STAGE1_STEPS):
            step(raw)
            steps += 1
        for _ in range(rounds):
            if budget.spent():
                break
            synthetic = synthesise(target, p, gen)
            for _ in range(STEPS_PER_ROUND):
                step(synthetic)
                steps += 1
    train_s = budget.used

    def predict() -> np.ndarray:
        with torch.no_grad():
            return net(raw).clamp(0.0, 1.0).mean(dim=1)[0].numpy() * scale

    out, predict_s = cpu_seconds(predict)
    return PeerResult(out.astype(np.float32), steps, train_s, predict_s,
                      finished=steps >= total, extra={"preset": preset})


def denoise(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
            data_range: float | None = None, preset: str = "confocal") -> np.ndarray:
    """FM2S output for one 2-D image, in the image's own intensity scale."""
    return fit(noisy, seconds=seconds, seed=seed, data_range=data_range,
               preset=preset).output
