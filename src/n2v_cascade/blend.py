"""Returning a share of the observed pixel to a blind estimate: ``(1 - w) p + w y``.

A masked or blind-spot network learns each pixel from its neighbours only, so its
estimate ``p`` discards what the pixel itself says about the signal. For zero-mean
noise independent of the neighbours, the error ``p - x`` is uncorrelated with the
pixel's noise, and the weight that minimises the squared error of ``p + w (y - p)`` is
``w = 1 - S / R``, with ``R`` the mean squared residual ``(y - p)**2`` and ``S`` the mean
noise variance (Batson & Royer's remark that a J-invariant denoiser gains from the
noisy input; the posterior of the probabilistic methods is the per-pixel form of it).

``S`` is estimated from the residual itself, where the estimate ``p`` is good: in
square blocks of ``BLOCK`` x ``BLOCK`` pixels the residual's sample variance is the
noise variance plus the estimate's local error, so a low quantile over the blocks of
equal brightness, divided by that quantile of the sample variance of pure noise
(chi-square), reads the noise variance at that brightness, with an error towards too
much noise: the safe side, as a smaller ``w``. A line ``a * signal + b`` through those
readings gives each pixel's variance. It needs no noise model and works on images
whose noise is clipped or quantised, where noise estimates from the image's finest
details read low (benchmarks/RESULTS.md).

The share assumes noise independent between neighbours, as the blind spot does: a
model that hides more than the pixel (a structN2V mask, a blind radius) was trained on
correlated noise, and ``Model.denoise`` returns no share for it unless one is given.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .errors import InputError

BLOCK = 8  # side of the square blocks whose residual variance is read
QUANTILE = 0.1  # the blocks' quantile read as noise (docs/DECISIONS.md)
BINS = 10  # brightness bins, equal numbers of blocks
MIN_BLOCKS = 16  # fewer blocks than this: no reading, no blend


def _blocks(values: np.ndarray) -> np.ndarray:
    """``(n_blocks, BLOCK**2)``: the whole BLOCK x BLOCK squares of the last two axes."""
    h, w = (s // BLOCK * BLOCK for s in values.shape[-2:])
    if not (h and w):
        return np.empty((0, BLOCK * BLOCK), values.dtype)
    v = values[..., :h, :w].reshape(-1, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    return v.transpose(0, 1, 3, 2, 4).reshape(-1, BLOCK * BLOCK)


def residual_noise_line(observed: np.ndarray, estimate: np.ndarray) -> tuple[float, float] | None:
    """``(a, b)`` of the noise variance ``a * signal + b`` read from the residual's
    quietest blocks; None when the image has too few whole blocks."""
    signal = _blocks(np.asarray(estimate, np.float64))
    resid = _blocks(np.asarray(observed, np.float64) - np.asarray(estimate, np.float64))
    if len(signal) < MIN_BLOCKS:
        return None
    level, var = signal.mean(axis=1), resid.var(axis=1, ddof=1)
    dof = BLOCK * BLOCK - 1
    pure = stats.chi2.ppf(QUANTILE, dof) / dof  # that quantile for noise alone
    order = np.argsort(level, kind="stable")
    centres, readings = [], []
    for part in np.array_split(order, max(1, min(BINS, len(order) // MIN_BLOCKS))):
        centres.append(float(np.median(level[part])))
        readings.append(float(np.quantile(var[part], QUANTILE)) / pure)
    centres_a, readings_a = np.array(centres), np.array(readings)
    if np.ptp(centres_a) > 0:
        a, b = np.polyfit(centres_a, readings_a, 1)
    else:
        a, b = 0.0, float(np.median(readings_a))
    if a < 0:  # noise that falls with the signal is not Poisson-Gaussian: a constant
        a, b = 0.0, float(np.median(readings_a))
    return float(a), float(b)


def blend_weight(observed: np.ndarray, estimate: np.ndarray) -> float:
    """The share ``w`` (0..1) of the observed value that ``estimate`` gets back."""
    obs, est = np.asarray(observed, np.float64), np.asarray(estimate, np.float64)
    line = residual_noise_line(obs, est)
    if line is None:
        return 0.0
    mean_sq = float(np.mean((obs - est) ** 2))
    if not mean_sq > 0:
        return 0.0
    noise = float(np.mean(np.maximum(line[0] * est + line[1], 0.0)))
    return float(min(max(1.0 - noise / mean_sq, 0.0), 1.0))


def blend_setting(value: str | float) -> float | None:
    """``"auto"`` -> None (estimate per image), ``"none"`` -> 0, a number in [0, 1] -> it."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "none"):
        return None if value.strip().lower() == "auto" else 0.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = float("nan")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"blend must be auto, none or a share in [0, 1], got {value!r}")
    return weight


def blended(observed: np.ndarray, estimate: np.ndarray, weight: float) -> np.ndarray:
    """``estimate + weight * (observed - estimate)`` in the estimate's dtype."""
    out = estimate + np.float32(weight) * (observed.astype(np.float32) - estimate)
    return out.astype(estimate.dtype, copy=False)
