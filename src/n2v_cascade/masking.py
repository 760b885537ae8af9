"""Blind-spot masking for Noise2Void and its variants.

The network must predict a pixel without seeing its value, so a few pixels of each
training patch are *masked*: their value is replaced (by a random neighbour for N2V, the
neighbourhood median for N2V2, or zero) and the loss is computed only there. structN2V
additionally hides a line-shaped neighbourhood, because noise that is correlated along
a line would otherwise leak the masked value.

All functions work on tensors of shape ``(B, C, *spatial)`` with 2-D ``(Y, X)`` or 3-D
``(Z, Y, X)`` spatial axes, are vectorised over samples and pixels, and take every random
number from an explicit :class:`torch.Generator` so runs are reproducible. Masks are
boolean tensors of shape ``(B, 1, *spatial)``: one mask shared by all channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from .errors import InputError
from .kernels import dilate, line_kernel, validate_kernel

Replacement = Literal["neighbour", "median", "zero"]
REPLACEMENTS: tuple[str, ...] = ("neighbour", "median", "zero")

__all__ = [
    "REPLACEMENTS",
    "apply_masking",
    "grid_mask",
    "hide_struct",
    "line_kernel",
    "random_mask",
    "replace_median",
    "replace_random_neighbour",
    "validate_kernel",
]


# --------------------------------------------------------------------------- helpers


def _spatial(shape: Sequence[int]) -> tuple[int, ...]:
    """Spatial part of a ``(B, C, *spatial)`` shape, checked to be non-empty."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3 or min(shape) < 1:
        raise InputError(f"expected a shape (B, C, *spatial) with positive sizes, got {shape}")
    return shape[2:]


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Integer images (uint8, uint16, ...) become float32 so replacement values fit."""
    return x if x.is_floating_point() else x.to(torch.float32)


def _check_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Check that ``mask`` is a boolean ``(B, 1, *spatial)`` mask for ``x``; move it there."""
    _spatial(x.shape)
    expected = (x.shape[0], 1, *x.shape[2:])
    if mask.dtype != torch.bool or tuple(mask.shape) != expected:
        raise InputError(
            f"mask must be a bool tensor of shape {expected}, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(x.device)


def _check_radius(radius: int, spatial: tuple[int, ...], minimum: int) -> None:
    """``radius`` must be >= 1 and every spatial side at least ``minimum`` pixels."""
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 1:
        raise InputError(f"radius must be an integer >= 1, got {radius!r}")
    if min(spatial) < minimum:
        raise InputError(
            f"radius {radius} needs every spatial side >= {minimum} pixels, got {spatial}"
        )


def _offsets(radius: int, ndim: int) -> torch.Tensor:
    """All non-zero offsets of the ``(2r+1)^d`` cube, shape ``((2r+1)^d - 1, d)``."""
    axis = torch.arange(-radius, radius + 1)
    grid = torch.stack(torch.meshgrid(*([axis] * ndim), indexing="ij"), dim=-1)
    grid = grid.reshape(-1, ndim)
    return grid[(grid != 0).any(dim=1)]


# --------------------------------------------------------------------------- masks


def random_mask(shape: Sequence[int], fraction: float, generator: torch.Generator) -> torch.Tensor:
    """N2V mask: ``max(1, round(fraction * n_pixels))`` distinct random pixels per sample.

    Pixels are drawn uniformly without replacement (top-k of uniform random keys), so
    every sample gets exactly the same number of masked pixels and at least one.

    Parameters
    ----------
    shape : sequence of int
        ``(B, C, *spatial)`` shape of the batch to mask.
    fraction : float
        Share of pixels to mask, in ``(0, 1]``; callers default to 0.002.
    generator : torch.Generator
        Source of randomness; the mask lives on its device.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, *spatial)``.
    """
    spatial = _spatial(shape)
    try:
        ok = 0.0 < float(fraction) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    batch, n_pixels = int(shape[0]), math.prod(spatial)
    n = min(n_pixels, max(1, round(fraction * n_pixels)))
    keys = torch.rand(batch, n_pixels, generator=generator, device=generator.device)
    chosen = keys.topk(n, dim=1, sorted=False).indices
    flat = torch.zeros(batch, n_pixels, dtype=torch.bool, device=generator.device)
    flat.scatter_(1, chosen, True)
    return flat.reshape(batch, 1, *spatial)


def grid_mask(shape: Sequence[int], stride: int, generator: torch.Generator) -> torch.Tensor:
    """Structured mask: a lattice with ``stride`` along every spatial axis, random phase.

    Each sample gets its own phase per axis, drawn from ``[0, stride)`` so that over many
    samples every pixel is masked equally often. If an axis is shorter than ``stride``
    the phase is drawn from ``[0, size)`` instead, so every sample has a masked pixel.

    Parameters
    ----------
    shape : sequence of int
        ``(B, C, *spatial)`` shape of the batch to mask.
    stride : int
        Lattice spacing in pixels, >= 2 (1 would hide the whole image).
    generator : torch.Generator
        Source of randomness; the mask lives on its device.

    Returns
    -------
    torch.Tensor
        Boolean mask of shape ``(B, 1, *spatial)`` with density about ``1 / stride**d``.
    """
    spatial = _spatial(shape)
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 2:
        raise InputError(f"stride must be an integer >= 2, got {stride!r}")
    batch, ndim, device = int(shape[0]), len(spatial), generator.device
    mask = torch.ones(batch, 1, *spatial, dtype=torch.bool, device=device)
    for axis, size in enumerate(spatial):
        phase = torch.randint(0, min(stride, size), (batch, 1), generator=generator, device=device)
        on = (torch.arange(size, device=device)[None, :] - phase) % stride == 0
        view = [batch] + [1] * (ndim + 1)
        view[axis + 2] = size
        mask &= on.reshape(view)
    return mask


# --------------------------------------------------------------------------- replacement


def replace_random_neighbour(
    x: torch.Tensor, mask: torch.Tensor, radius: int, generator: torch.Generator
) -> torch.Tensor:
    """N2V replacement: each masked pixel copies a uniformly random *other* neighbour.

    The offset is uniform over the ``(2r+1)^d - 1`` non-zero offsets of the cube. A
    neighbour outside the image is mirrored through the masked pixel (``c + o`` becomes
    ``c - o``), which keeps the offset non-zero, so a pixel never copies itself. Values
    are read from the original ``x``, so a masked pixel may copy another masked pixel's
    original value (as in the original N2V), but never its own. An axis shorter than
    ``2 r`` (a stack of few slices) clamps the mirrored neighbour and steps it off the
    centre, so the offset along that axis stays non-zero there too.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` batch; integer data is converted to float32.
    mask : torch.Tensor
        Boolean ``(B, 1, *spatial)`` mask of pixels to replace.
    radius : int
        Half-width ``r`` of the neighbourhood; every spatial side must be >= 2.
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    torch.Tensor
        A copy of ``x`` with the masked pixels replaced; unmasked pixels are unchanged.
    """
    x = _as_float(x)
    mask = _check_mask(x, mask)
    spatial = tuple(x.shape[2:])
    _check_radius(radius, spatial, 2)
    out = x.clone()
    where = mask[:, 0].nonzero(as_tuple=True)  # (b, c_1, ..., c_d)
    count = where[0].numel()
    if count == 0:
        return out
    side, ndim = 2 * radius + 1, len(spatial)
    n_offsets = side**ndim
    k = torch.randint(0, n_offsets - 1, (count,), generator=generator, device=generator.device)
    k = k.to(x.device)
    k = k + (k >= n_offsets // 2).long()  # skip the all-zero offset (the cube's centre)
    source = []
    for axis, size in enumerate(spatial):
        offset = (k // side ** (ndim - 1 - axis)) % side - radius
        centre = where[axis + 1]
        coord = centre + offset
        coord = torch.where((coord < 0) | (coord >= size), centre - offset, coord)
        # an axis shorter than 2r (a stack of few slices): the mirror can fall outside
        # too; clamp, and step off the centre so the offset along this axis stays non-zero
        coord = coord.clamp(0, size - 1)
        back = torch.where(centre > 0, centre - 1, centre + 1)
        source.append(torch.where((coord == centre) & (offset != 0), back, coord))
    out[where[0], :, *where[1:]] = x[where[0], :, *source]
    return out


def replace_median(x: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """N2V2 replacement: each masked pixel takes the median of its neighbours.

    The neighbourhood is the ``(2r+1)^d`` cube without its centre, read with reflect
    padding (``np.pad(mode="reflect")``) at the borders. Near a border the reflection can
    map a neighbour back onto the centre pixel; such copies are dropped too, so the
    masked value never enters its own median. With an even number of neighbours the
    median is the mean of the two middle values (as ``np.median``).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` batch; integer data is converted to float32.
    mask : torch.Tensor
        Boolean ``(B, 1, *spatial)`` mask of pixels to replace.
    radius : int
        Half-width ``r`` of the neighbourhood; every spatial side must be > ``r``.

    Returns
    -------
    torch.Tensor
        A copy of ``x`` with the masked pixels replaced; unmasked pixels are unchanged.
    """
    x = _as_float(x)
    mask = _check_mask(x, mask)
    spatial = tuple(x.shape[2:])
    _check_radius(radius, spatial, radius + 1)
    out = x.clone()
    where = mask[:, 0].nonzero(as_tuple=True)
    if where[0].numel() == 0:
        return out
    offsets = _offsets(radius, len(spatial)).to(x.device)  # (K, d)
    source, is_centre = [], None
    for axis, size in enumerate(spatial):
        centre = where[axis + 1][:, None]
        coord = centre + offsets[None, :, axis]  # (M, K)
        coord = torch.where(coord < 0, -coord, coord)
        coord = torch.where(coord >= size, 2 * (size - 1) - coord, coord)
        source.append(coord)
        same = coord == centre
        is_centre = same if is_centre is None else is_centre & same
    values = x[where[0][:, None], :, *source]  # (M, K, C)
    valid = ~is_centre
    values = torch.where(valid[..., None], values, torch.inf).sort(dim=1).values
    n_valid = valid.sum(dim=1)
    channels = x.shape[1]
    lo = ((n_valid - 1) // 2)[:, None, None].expand(-1, 1, channels)
    hi = (n_valid // 2)[:, None, None].expand(-1, 1, channels)
    low, high = values.gather(1, lo)[:, 0], values.gather(1, hi)[:, 0]
    out[where[0], :, *where[1:]] = low + (high - low) / 2
    return out


# --------------------------------------------------------------------------- structN2V


def hide_struct(
    x: torch.Tensor, mask: torch.Tensor, kernel: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """structN2V hiding: randomise every pixel the kernel covers around masked pixels.

    The kernel is centred on each masked pixel (a 2-D kernel acts in the YX plane of 3-D
    data); every covered pixel, the centre included, gets a value drawn uniformly between
    the sample's minimum and maximum (per channel). This removes the neighbours whose
    noise is correlated with the masked pixel (Broaddus et al. 2020).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` batch; integer data is converted to float32.
    mask : torch.Tensor
        Boolean ``(B, 1, *spatial)`` mask of masked pixels.
    kernel : np.ndarray
        Boolean kernel with odd sides (see :func:`line_kernel`, :func:`validate_kernel`).
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    torch.Tensor
        A copy of ``x`` with the hidden neighbourhood randomised.
    """
    x = _as_float(x)
    return _hide(x, x, mask, kernel, generator)


def _hide(
    target: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    kernel: np.ndarray,
    generator: torch.Generator,
) -> torch.Tensor:
    """Randomise ``target`` around ``mask``, drawing values in the range of ``reference``."""
    mask = _check_mask(target, mask)
    kernel = validate_kernel(kernel, "struct kernel", ndim=target.ndim - 2)
    hidden = dilate(mask, kernel)
    axes = tuple(range(2, reference.ndim))
    low = reference.amin(dim=axes, keepdim=True)
    high = reference.amax(dim=axes, keepdim=True)
    noise = torch.rand(target.shape, generator=generator, device=generator.device)
    noise = noise.to(device=target.device, dtype=target.dtype)
    return torch.where(hidden, low + noise * (high - low), target)


def apply_masking(
    x: torch.Tensor,
    mask: torch.Tensor,
    replacement: Replacement,
    radius: int,
    generator: torch.Generator,
    kernel: np.ndarray | None = None,
) -> torch.Tensor:
    """Replace the masked pixels, then (with ``kernel``) hide the structN2V neighbourhood.

    ``replacement`` is ``"neighbour"`` (N2V), ``"median"`` (N2V2) or ``"zero"``; ``radius``
    is the neighbourhood half-width of the first two. Returns a float copy of ``x``.
    """
    if replacement not in REPLACEMENTS:
        raise InputError(
            f"replacement must be one of {', '.join(REPLACEMENTS)}, got {replacement!r}"
        )
    x = _as_float(x)
    if replacement == "neighbour":
        out = replace_random_neighbour(x, mask, radius, generator)
    elif replacement == "median":
        out = replace_median(x, mask, radius)
    else:
        mask = _check_mask(x, mask)
        out = torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device), x)
    if kernel is not None:
        # Draw hiding values in the range of the input, not of the replaced copy
        # (zero replacement could otherwise stretch the range to 0).
        out = _hide(out, x, mask, kernel, generator)
    return out
