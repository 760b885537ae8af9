"""Recorrupted-to-Recorrupted (Pang et al. 2021): a dense loss between two re-corruptions.

A noisy patch ``y`` gets extra noise ``z`` with the noise's own (per-pixel) variance;
the network maps ``y + alpha z`` to ``y - z / alpha``. For Gaussian noise the noise of
that input and of that target are independent, so the squared error on every pixel
trains a denoiser as clean targets would (in expectation, up to a constant). Noise with
variance ``a * signal + b`` uses the same pair with ``z`` drawn at each pixel's
variance, the paper's extension to signal-dependent noise.

The noise model comes from the patches themselves, in their (normalised) units: Haar
diagonal details estimate the local noise variance, binned by the local signal level,
and a line ``a * signal + b`` is fitted through the bins' variances on every batch. It
is a function of the batch alone, so training resumes bit-identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from ..noise import fit_line
from . import register
from .base import Method

if TYPE_CHECKING:
    from ..runtime import Runner

VARIANCE_FLOOR = 1e-6  # in normalised units (data variance 1)


def haar_detail(x: torch.Tensor) -> torch.Tensor:
    """The diagonal Haar detail of each 2x2 cell of ``(B, C, H, W)``: ``(B, C, H/2, W/2)``.

    It is orthonormal, so for independent noise its variance is the pixels' noise
    variance, while content of the form ``f(row) + g(column)`` (edges along an axis,
    linear ramps) cancels.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2]
            + x[..., 1::2, 1::2]) / 2


def local_mean(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Mean of each pixel's ``size x size`` YX neighbourhood (edge pixels repeated); 3-D
    volumes plane by plane."""
    r = size // 2
    flat = x.reshape(-1, 1, *x.shape[-2:])
    mean = F.avg_pool2d(F.pad(flat, (r, r, r, r), mode="replicate"), size, stride=1)
    return mean.reshape(x.shape)


def fit_noise_line(patches: torch.Tensor, bins: int = 16) -> tuple[float, float]:
    """Fit ``variance = a * signal + b`` (``a >= 0``) to the noise of ``(B, 1, H, W)`` patches.

    Detail coefficients are split into up to ``bins`` equal-count bins by the local mean;
    each bin's variance is the mean square of its details (low photon counts give noise
    far from Gaussian, whose median-based variance would be biased low); the line is a
    weighted least-squares fit (weights ``1 / variance**2``, iterated), kept at least
    :data:`VARIANCE_FLOOR` at the darkest bin.
    """
    x = patches.detach().double()
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    detail = haar_detail(x).flatten()
    signal = local_mean(x)[..., :h:2, :w:2].flatten()
    k = min(bins, max(2, detail.numel() // 64))
    size = detail.numel() // k
    groups = torch.argsort(signal)[: k * size].view(k, size)  # the few brightest left out
    levels = signal[groups].mean(dim=1)
    var = (detail[groups] ** 2).mean(dim=1)
    fitted = var.clamp_min(VARIANCE_FLOOR)
    a, b = 0.0, float(fitted.mean())
    for _ in range(3):  # reweighted by the current fit
        a, b = _weighted_line(levels, var, fitted.reciprocal() ** 2)
        fitted = (a * levels + b).clamp_min(VARIANCE_FLOOR)
    return a, b


def _weighted_line(s: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """Weighted least-squares line ``v = a s + b`` with ``a >= 0``, pinned to
    :data:`VARIANCE_FLOOR` at the lowest ``s`` when the free fit falls below it there."""
    arrays = [t.detach().double().cpu().numpy() for t in (s, v, w)]
    return fit_line(*arrays, float(arrays[0].min()), VARIANCE_FLOOR)


def pixel_variance(patches: torch.Tensor) -> torch.Tensor:
    """The fitted noise variance of every pixel of ``(B, 1, H, W)`` patches (same shape)."""
    a, b = fit_noise_line(patches)
    return (a * local_mean(patches) + b).clamp_min(VARIANCE_FLOOR)


def recorrupt(patches: torch.Tensor, alpha: float, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y + alpha z, y - z / alpha)`` with ``z`` Gaussian at each pixel's noise variance."""
    std = pixel_variance(patches).sqrt()
    z = torch.randn(patches.shape, generator=generator, dtype=patches.dtype) * std
    return patches + alpha * z, patches - z / alpha


@register
class Recorrupted(Method):
    """Maps one re-corruption of the noisy patch to another; every pixel is scored.

    ``alpha`` (the paper's ``D = alpha I``) trades input noise (variance ``(1 + alpha**2)``
    times the noise's) against target noise (``1 + 1 / alpha**2``). Prediction is the
    network on the noisy image itself.
    """

    masks_pixels = False
    hides_pixel = False  # trained on every pixel's own value
    name = "recorrupted"
    training_text = "trained to map re-corrupted copies of the noisy image to each other"
    doi = "10.1109/CVPR46437.2021.00208"
    listing_order = 80
    label = "Recorrupted-to-Recorrupted"
    short_label = "R2R"
    summary = ("Recorrupted-to-Recorrupted: maps noisier to differently noisy copies, a loss "
               "on every pixel (near-Gaussian noise; behind N2V on low-count microscopy)")
    citation = ("Pang, Zhan, Zhang, Liu, Zhang, Zhou, Yao. Recorrupted-to-Recorrupted: "
                "Unsupervised Deep Learning for Image Denoising. CVPR 2021")
    defaults = {"learning_rate": 1e-3}
    correlated_noise_advice = ("the re-corrupted input and target then share noise and the "
                               "network learns to copy it - consider method 'blindspot' "
                               "(--blind-radius auto)")
    alpha: ClassVar[float] = 0.5

    def step_loss(self, patches: torch.Tensor, generator: torch.Generator,
                  run: Runner) -> torch.Tensor:
        """Re-corrupt the batch and score the mapping on all pixels."""
        inputs, target = recorrupt(patches, self.alpha, generator)
        return ((run(inputs)[:, :self.channels] - run.put(target)) ** 2).mean()
