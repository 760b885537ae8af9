"""Training data: split into train/validation regions, sample random patches, augment.

Sampling is vectorised in torch: all training images live in one flat tensor and a
batch of patches is one ``gather``, so data preparation never starves the model.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .augment import random_transforms
from .errors import InputError


@dataclass
class Split:
    """Training regions and fixed validation patches (float32 arrays)."""

    train: list[np.ndarray]
    val: list[np.ndarray]


def patch_shape(patch_size: int | Sequence[int], ndim: int = 2) -> tuple[int, ...]:
    """A patch's spatial shape: ``patch_size`` on every axis, or the sequence as given."""
    if isinstance(patch_size, int | np.integer):
        return (int(patch_size),) * ndim
    return tuple(int(p) for p in patch_size)


def _side(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size))


def grid_cut(array: np.ndarray, size: Sequence[int]) -> list[np.ndarray]:
    """Non-overlapping patches of ``size`` (the last axes) on a fixed grid from the corner."""
    starts = [range(0, n - p + 1, p) for n, p in zip(array.shape[-len(size):], size,
                                                     strict=True)]
    return [array[(Ellipsis, *(slice(c, c + p) for c, p in zip(corner, size, strict=True)))]
            for corner in itertools.product(*starts)]


def evenly(items: list, limit: int) -> list:
    """At most ``limit`` of ``items``, evenly spread over them (all when fewer)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def split_train_val(
    slices: Sequence[np.ndarray], patch_size: int | Sequence[int], val_fraction: float,
    names: Sequence[str], divisor: int = 1, max_val_patches: int = 32,
) -> Split:
    """Hold out the bottom ``val_fraction`` rows (along Y) of every image for validation.

    Images are ``(*spatial)`` or ``(C, *spatial)`` with as many spatial axes as
    ``patch_size`` has entries (an int: a square 2-D patch). A strip that is too thin
    (fewer than ``divisor`` rows) or whose removal would leave less than one patch for
    training is not held out. Validation patches are cut from the strips on a fixed
    grid (at most ``max_val_patches``) so the validation loss is comparable between
    epochs.
    """
    patch = patch_shape(patch_size)
    nd = len(patch)
    train, val = [], []
    for sl, name in zip(slices, names, strict=True):
        spatial = tuple(sl.shape[-nd:])
        if any(n < p for n, p in zip(spatial, patch, strict=True)):
            raise InputError(
                f"{name}: image {_side(spatial)} is smaller than the patch size "
                f"{_side(patch)}; use a smaller --patch-size"
            )
        h = spatial[-2]
        rows = int(round(h * val_fraction)) // divisor * divisor
        if val_fraction > 0 and rows >= divisor and h - rows >= patch[-2]:
            train.append(sl[..., : h - rows, :])
            val.extend(grid_cut(sl[..., h - rows:, :],
                                (*patch[:-2], min(rows, patch[-2]), patch[-1])))
        else:
            train.append(sl)
    if val_fraction > 0 and not val:
        warnings.warn(
            "images too small to hold out a validation strip; training without validation",
            stacklevel=2,
        )
    return Split(train, evenly(val, max_val_patches))


class PatchSampler:
    """Draw random patches from a set of images, with random flips and YX turns.

    Images are ``(*spatial)`` (one channel) or ``(C, *spatial)``, all with the same C;
    ``patch_size`` is an int (a square 2-D patch) or the spatial patch shape (2-D or 3-D,
    square in YX). All images live in one flat tensor, so a batch is one ``gather``.
    """

    def __init__(self, images: Sequence[np.ndarray], patch_size: int | Sequence[int],
                 augment: bool = True):
        self.patch = patch_shape(patch_size)
        self.patch_size = self.patch[-1]
        self.augment = augment
        nd = len(self.patch)
        arrays = [np.asarray(im) for im in images]
        arrays = [a[None] if a.ndim == nd else a for a in arrays]
        self.channels = arrays[0].shape[0]
        if any(a.shape[0] != self.channels for a in arrays):
            raise InputError("all training images need the same number of channels")
        self.sizes = torch.tensor([a.shape[1:] for a in arrays])  # (n_images, nd)
        counts = torch.tensor([a.size for a in arrays])
        self.offsets = torch.cumsum(counts, 0) - counts
        self.flat = torch.cat([torch.from_numpy(np.ascontiguousarray(a)).reshape(-1)
                               for a in arrays])
        # strides of (C, *spatial) per image, innermost last
        inner = torch.ones(len(arrays), nd + 1, dtype=torch.long)
        for axis in range(nd - 1, -1, -1):
            inner[:, axis] = inner[:, axis + 1] * self.sizes[:, axis]
        self.strides = inner  # column 0: channel stride; 1..nd: spatial strides
        # choose images in proportion to the number of patch positions they offer
        positions = torch.prod(self.sizes - torch.tensor(self.patch) + 1, dim=1)
        self.weights = positions.double() / positions.sum()
        grids = torch.meshgrid(*[torch.arange(p) for p in self.patch], indexing="ij")
        self._deltas = grids
        self._channel = torch.arange(self.channels)

    @property
    def n_pixels(self) -> int:
        """Pixels (voxels) per channel in all images."""
        return int(self.flat.numel()) // self.channels

    def seek(self, step: int) -> None:
        """Nothing to do: a batch depends on the generator alone (a resumed run sets the
        step of :class:`~n2v_cascade.lazy_data.BlockSampler`, which also needs it)."""

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``(B, C, *patch)`` of random patches, randomly flipped/turned."""
        nd = len(self.patch)
        idx = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        flat_idx = self.offsets[idx].view(-1, *([1] * (nd + 1)))
        flat_idx = flat_idx + (self._channel.view(1, -1, *([1] * nd))
                               * self.strides[idx, 0].view(-1, 1, *([1] * nd)))
        for axis in range(nd):
            size = self.sizes[idx, axis]
            start = (torch.rand(batch_size, generator=generator)
                     * (size - self.patch[axis] + 1)).long()
            stride = self.strides[idx, axis + 1]
            shape = (-1, 1, *([1] * nd))
            flat_idx = flat_idx + ((start.view(shape) + self._deltas[axis])
                                   * stride.view(shape))
        patches = self.flat[flat_idx]
        if self.augment:
            patches = random_transforms(patches, generator)
        return patches


#: The most steps a default epoch has, so that the default run's length does not grow
#: with the size of the data (docs/DECISIONS.md: "Defaults that finish").
MAX_DEFAULT_STEPS = 100


def default_steps_per_epoch(n_pixels: int, patch_size: int | Sequence[int], batch_size: int,
                            cap: int | None = MAX_DEFAULT_STEPS) -> int:
    """Steps that show the network each pixel about 8 times (once per augmentation),
    at most ``cap``.

    This is what the original N2V epoch amounts to: every non-overlapping patch in
    each of the 8 orientations. The cap bounds a default run on large data.
    ``patch_size``: a square 2-D side, or the patch shape.
    """
    n_patches = max(1, n_pixels // math.prod(patch_shape(patch_size))) * 8
    steps = max(1, -(-n_patches // batch_size))
    return steps if cap is None else min(steps, cap)
