"""Re-noised targets (the idea of FM2S, Liu et al. 2024, with a fitted noise model).

A later cascade stage: the previous stage's output ``t`` is taken as clean, the noisy
input ``y`` beside it gives the noise model, and the network learns to map ``t`` plus
synthetic noise back to ``t``. Every pixel is scored and the network sees the pixel it
estimates, so it is applied to the noisy input ``y`` itself (not to ``t``).

The noise model is fitted once from the residual ``y - t`` (normalised units) and needs
no per-microscope constants: its power spectrum at the patch shape (averaged over
patch-sized tiles, so correlated noise is re-created with its correlation), and a
variance line ``a * signal + b`` over the local mean of ``t`` (signal-dependent noise).
A batch's noise is white noise filtered to that spectrum, scaled at each pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..noise import fit_line
from . import register
from .base import Method
from .recorrupted import VARIANCE_FLOOR, local_mean

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..runtime import Runner

BINS = 10  # signal levels of the variance line
REACH = 8  # pixels of the noise's correlation that re-noising keeps, per side


def residual_spectrum(residuals: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Amplitude spectrum of the residuals at the patch ``shape`` (spatial axes last).

    The square root of the mean power over all whole ``shape``-tiles of every image
    (and channel), each tile's mean removed.
    """
    ndim = len(shape)
    axes = tuple(range(1, ndim + 1))
    power, count = np.zeros(shape), 0
    for res in residuals:
        planes = np.asarray(res, np.float64).reshape(-1, *res.shape[-ndim:])
        counts = [n // size for n, size in zip(planes.shape[1:], shape, strict=True)]
        for index in np.ndindex(*counts):
            where = tuple(slice(i * size, (i + 1) * size)
                          for i, size in zip(index, shape, strict=True))
            tiles = planes[(slice(None), *where)]
            tiles = tiles - tiles.mean(axis=axes, keepdims=True)
            power += (np.abs(np.fft.fftn(tiles, axes=axes)) ** 2).sum(axis=0)
            count += len(tiles)
    if count == 0:
        raise ValueError(f"no {'x'.join(map(str, shape))} tile fits in the images")
    amplitude = np.sqrt(power / count)
    amplitude[(0,) * ndim] = 0.0  # each tile's mean was removed: the mean is not noise
    return amplitude


def colouring_kernel(amplitude: np.ndarray, reach: int = REACH) -> np.ndarray:
    """The centred convolution kernel (at most ``2 * reach + 1`` wide per axis) whose
    filtering of white noise gives the spectrum ``amplitude``; unit sum of squares, so
    the coloured noise keeps the white noise's variance."""
    kernel = np.fft.fftshift(np.real(np.fft.ifftn(amplitude)))
    centre = [n // 2 for n in kernel.shape]
    kernel = kernel[tuple(slice(max(c - reach, 0), c + min(reach, n - c - 1) + 1)
                          for c, n in zip(centre, kernel.shape, strict=True))]
    return kernel / np.sqrt((kernel**2).sum())


def variance_line(clean: Sequence[np.ndarray], residuals: Sequence[np.ndarray],
                  bins: int = BINS) -> tuple[float, float]:
    """``variance = a * signal + b`` (``a >= 0``) of the residuals over ``clean``'s local
    mean, fitted through equal-count bins (weights ``1 / variance**2``)."""
    signal = np.concatenate([
        local_mean(torch.from_numpy(np.asarray(c, np.float32))[None]).numpy().ravel()
        for c in clean])
    sq = np.concatenate([np.asarray(r, np.float64).ravel() ** 2 for r in residuals])
    groups = np.array_split(np.argsort(signal, kind="stable"), bins)
    levels = np.array([signal[g].mean() for g in groups], np.float64)
    var = np.array([sq[g].mean() for g in groups])
    weights = 1.0 / np.maximum(var, VARIANCE_FLOOR) ** 2
    return fit_line(levels, var, weights, float(levels.min()), VARIANCE_FLOOR)


@register
class Renoised(Method):
    """Learns from a previous stage's output with noise of the data's own kind added."""

    masks_pixels = False
    hides_pixel = False  # sees every pixel's own value
    needs_noisy = True
    name = "renoise"
    training_text = ("trained to remove synthetic noise, fitted to the data, from an earlier "
                     "stage's output")
    doi = "10.48550/arXiv.2412.10031"
    listing_order = 90
    label = "Re-noised previous stage"
    short_label = "Renoise"
    summary = ("a later cascade stage (and `train`'s second phase on correlated noise): "
               "trained on the previous output plus noise fitted to the data (spectrum, "
               "variance line), then denoises the noisy images; for spatially correlated "
               "noise")
    citation = ("Liu, Teng, Ma, Jiang. FM2S: Towards Spatially-Correlated Noise Modeling in "
                "Zero-Shot Fluorescence Microscopy Image Denoising. arXiv:2412.10031, 2024 "
                "(its re-noised targets; here the target is an earlier stage's output)")
    defaults = {"learning_rate": 1e-3}

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.kernel_noise: np.ndarray | None = None
        self.line = (0.0, 0.0)

    def settings_for_data(self, slices: Sequence[np.ndarray], names: Sequence[str]
                          ) -> tuple[dict[str, Any], str | None]:
        """Nothing to hide: the noise model, correlation included, comes from the data."""
        return ({"mask": {"struct": "none"}} if self.config.mask.struct_auto else {}), None

    def fit_noise(self, clean: Sequence[np.ndarray], noisy: Sequence[np.ndarray],
                  patch: tuple[int, ...]) -> str:
        """Fit the noise model from normalised samples; return a line saying what it is."""
        residuals = [np.asarray(y, np.float64) - c for y, c in zip(noisy, clean, strict=True)]
        self.kernel_noise = colouring_kernel(residual_spectrum(residuals, patch))
        self.line = variance_line(clean, residuals)
        a, b = self.line
        return (f"re-noising with the residual's spectrum and variance {a:.3g} * signal + "
                f"{b:.3g} (normalised units)")

    def synthetic_noise(self, patches: torch.Tensor, generator: torch.Generator
                        ) -> torch.Tensor:
        """Noise for ``(B, C, *spatial)`` patches: the fitted spectrum and variance line."""
        if self.kernel_noise is None:
            raise RuntimeError("renoise: fit_noise() comes before training")
        kernel = torch.from_numpy(self.kernel_noise)[None, None]
        spatial = patches.shape[2:]
        pad = [k - 1 for k in kernel.shape[2:]]
        flat = (patches.shape[0] * patches.shape[1], 1)
        white = torch.randn((*flat, *(n + p for n, p in zip(spatial, pad, strict=True))),
                            generator=generator, dtype=torch.float64)
        conv = getattr(F, f"conv{len(spatial)}d")
        coloured = conv(white, kernel).reshape(patches.shape)
        a, b = self.line
        std = (a * local_mean(patches.double()) + b).clamp_min(VARIANCE_FLOOR).sqrt()
        return (coloured * std).to(patches.dtype)

    def step_loss(self, patches: torch.Tensor, generator: torch.Generator,
                  run: Runner) -> torch.Tensor:
        """Re-noise the (clean) batch and score the denoised estimate on every pixel."""
        inputs = patches + self.synthetic_noise(patches, generator)
        return ((run(inputs)[:, :self.channels] - run.put(patches)) ** 2).mean()
