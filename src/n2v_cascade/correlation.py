"""Is the noise spatially correlated? A clean-reference-free check, and what to do about it.

Every blind-spot method assumes that the noise of a pixel is independent of its
neighbours' noise. Camera read-out, demosaicing or resampling break that (the FMD
wide-field frames have a neighbour correlation of about 0.6): the network then learns to
copy the noise from the neighbours, and a posterior mean counts it twice. The remedy is
to hide the correlated neighbourhood as well: ``network.blind_radius`` for the
blind-spot backbone, ``mask.struct`` (structN2V) for masked variants.

The estimate needs no clean image. A 5 x 5 box high-pass removes the smooth signal; in
the flattest quarter of 16 x 16 blocks what is left is mostly noise, and its correlation
at lag ``k`` along each axis is that of the noise (white noise gives about -0.05, the
bias of the box filter). That high-pass also removes most of a correlation that reaches
further than one pixel, so once neighbours are correlated the reach is measured again on
32 x 32 blocks with only a quadratic trend removed (:func:`estimate_noise_reach`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["CORRELATED", "REACH_CORRELATED", "estimate_noise_correlation",
           "estimate_noise_reach", "suggest_blind_radius"]

#: A lag whose estimated noise correlation exceeds this is treated as correlated.
CORRELATED = 0.2
#: Beyond correlated neighbours, a further lag whose :func:`estimate_noise_reach` exceeds
#: this is hidden too (the detrended estimate reads low at longer lags).
REACH_CORRELATED = 0.1
_BOX, _BLOCK, _FLAT_QUANTILE = 5, 16, 0.25
_REACH_BLOCK = 32
_MAX_SIDE = 1024  # a central crop of this side is enough for the estimate


def estimate_noise_correlation(image: np.ndarray, max_lag: int = 2) -> np.ndarray:
    """Correlation of the noise between pixels ``1..max_lag`` apart, without a clean image.

    Parameters
    ----------
    image
        A 2-D (Y, X) noisy image, at least 32 x 32.
    max_lag
        Largest pixel distance to measure.

    Returns
    -------
    np.ndarray
        Shape ``(max_lag, 2)``: row ``k - 1`` holds the correlation at distance ``k``
        along Y and along X.
    """
    x = _checked(image, max_lag, _BLOCK)
    hp = x - ndimage.uniform_filter(x, _BOX, mode="reflect")
    return _flat_correlation(_blocks(hp, _BLOCK), max_lag)


def estimate_noise_reach(image: np.ndarray, max_lag: int = 2) -> np.ndarray:
    """Correlation of the noise at lags ``1..max_lag`` with only a smooth trend removed.

    Each 32 x 32 block loses its least-squares quadratic surface instead of a 5 x 5 box
    mean, so a correlation over several pixels survives, which the box high-pass mostly
    removes (the measurements are in ``docs/DECISIONS.md``). Texture left by the
    quadratic reads as correlation too, so it only extends a correlation that
    :func:`estimate_noise_correlation` found.

    Returns
    -------
    np.ndarray
        Shape ``(max_lag, 2)``, as :func:`estimate_noise_correlation`.
    """
    x = _checked(image, max_lag, _REACH_BLOCK)
    blocks = _blocks(x, _REACH_BLOCK)
    yy, xx = (v.ravel() for v in np.mgrid[:_REACH_BLOCK, :_REACH_BLOCK].astype(np.float64))
    design = np.stack([np.ones_like(yy), yy, xx, yy**2, xx**2, yy * xx], axis=1)
    flat = blocks.reshape(len(blocks), -1).T
    coef = np.linalg.lstsq(design, flat, rcond=None)[0]
    return _flat_correlation((flat - design @ coef).T.reshape(blocks.shape), max_lag)


def _checked(image: np.ndarray, max_lag: int, block: int) -> np.ndarray:
    """The image as float64 (a central crop of at most 1024 per side), or a clear error."""
    x = np.asarray(image)
    if x.ndim != 2 or x.dtype.kind not in "uif":
        raise InputError(f"noise correlation needs a 2-D real image, got {x.dtype} {x.shape}")
    if min(x.shape) < 2 * block or not 1 <= max_lag < block // 2:
        raise InputError(f"noise correlation needs an image of at least {2 * block}x"
                         f"{2 * block} and 1 <= max_lag < {block // 2}, got {x.shape}, "
                         f"max_lag={max_lag}")
    crop = tuple(slice(max(0, (n - _MAX_SIDE) // 2), max(0, (n - _MAX_SIDE) // 2) + _MAX_SIDE)
                 for n in x.shape)
    x = x[crop].astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError("noise correlation: image holds NaN or infinite values")
    return x


def _blocks(x: np.ndarray, side: int) -> np.ndarray:
    """The whole ``side x side`` blocks of a 2-D array, ``(n, side, side)``."""
    ny, nx = (n // side for n in x.shape)
    return (x[: ny * side, : nx * side].reshape(ny, side, nx, side).transpose(0, 2, 1, 3)
            .reshape(-1, side, side))


def _flat_correlation(blocks: np.ndarray, max_lag: int) -> np.ndarray:
    """Lag correlations along Y and X in the flattest quarter of high-passed blocks."""
    power = (blocks**2).mean(axis=(1, 2))
    flat = blocks[power <= np.quantile(power, _FLAT_QUANTILE)]
    energy = float((flat**2).sum())
    side = blocks.shape[-1]
    out = np.zeros((max_lag, 2))
    if energy <= 0:
        return out  # flat regions hold no noise at all (e.g. a constant image)
    for k in range(1, max_lag + 1):
        scale = side / (side - k)  # fewer pairs than values per block
        out[k - 1, 0] = (flat[:, :-k] * flat[:, k:]).sum() / energy * scale
        out[k - 1, 1] = (flat[:, :, :-k] * flat[:, :, k:]).sum() / energy * scale
    return out


def suggest_blind_radius(slices: Sequence[np.ndarray], max_radius: int = 2,
                         min_share: float = 0.1) -> tuple[int, np.ndarray]:
    """Blind-spot radius that hides the correlated part of the noise of these images.

    The radius is the largest distance at which the noise correlation of images holding
    at least ``min_share`` of the pixels exceeds :data:`CORRELATED` (0 for independent
    noise). Past a correlated distance, each further one whose
    :func:`estimate_noise_reach` exceeds :data:`REACH_CORRELATED` (on that share of the
    pixels) is hidden too. A radius too small lets the network copy noise (several dB
    lost on the FMD wide-field frames); one too large only costs the information of the
    hidden pixels.

    Returns
    -------
    (radius, correlations)
        ``correlations`` (the lag estimate, not the reach) has shape ``(len(slices),
        max_radius, 2)``; slices smaller than 32 x 32 count as uncorrelated, and smaller
        than 64 x 64 as reaching no further.
    """
    corr = np.array([estimate_noise_correlation(s, max_radius) if min(s.shape) >= 2 * _BLOCK
                     else np.zeros((max_radius, 2)) for s in slices])
    sizes = np.array([s.size for s in slices], np.float64)
    radius = 0
    for k in range(1, max_radius + 1):
        share = sizes[corr[:, k - 1].max(axis=1) > CORRELATED].sum() / sizes.sum()
        if share >= min_share:
            radius = k
    if 1 <= radius < max_radius:
        reach = np.array([estimate_noise_reach(s, max_radius)
                          if min(s.shape) >= 2 * _REACH_BLOCK else np.zeros((max_radius, 2))
                          for s in slices])
        for k in range(radius + 1, max_radius + 1):
            share = sizes[reach[:, k - 1].max(axis=1) > REACH_CORRELATED].sum() / sizes.sum()
            if share < min_share:
                break
            radius = k
    return radius, corr
