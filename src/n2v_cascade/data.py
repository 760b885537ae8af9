"""Training data: split into train/validation regions, sample random patches, augment.

Sampling is vectorised in torch: all training images live in one flat tensor and a
batch of patches is one ``gather``, so data preparation never starves the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .augment import random_transforms
from .errors import InputError


@dataclass
class Split:
    """Training regions and fixed validation patches (all 2-D float32 arrays)."""

    train: list[np.ndarray]
    val: list[np.ndarray]


def split_train_val(
    slices: Sequence[np.ndarray], patch_size: int, val_fraction: float, names: Sequence[str],
    divisor: int = 1, max_val_patches: int = 32,
) -> Split:
    """Hold out the bottom ``val_fraction`` rows of every slice for validation.

    A strip that is too thin (fewer than ``divisor`` rows) or whose removal would leave
    less than one patch for training is not held out. Validation patches are cut from
    the strips on a fixed grid (at most ``max_val_patches``) so the validation loss is
    comparable between epochs.
    """
    train, val = [], []
    for sl, name in zip(slices, names, strict=True):
        h, w = sl.shape
        if h < patch_size or w < patch_size:
            raise InputError(
                f"{name}: image {h}x{w} is smaller than the patch size {patch_size}; "
                f"use a smaller --patch-size"
            )
        rows = int(round(h * val_fraction)) // divisor * divisor
        if val_fraction > 0 and rows >= divisor and h - rows >= patch_size:
            train.append(sl[: h - rows])
            strip = sl[h - rows:]
            ph = min(rows, patch_size)
            for x0 in range(0, w - patch_size + 1, patch_size):
                for y0 in range(0, rows - ph + 1, ph):
                    val.append(strip[y0: y0 + ph, x0: x0 + patch_size])
        else:
            train.append(sl)
    if val_fraction > 0 and not val:
        warnings.warn(
            "images too small to hold out a validation strip; training without validation",
            stacklevel=2,
        )
    if len(val) > max_val_patches:
        pick = np.linspace(0, len(val) - 1, max_val_patches).round().astype(int)
        val = [val[i] for i in pick]
    return Split(train, val)


class PatchSampler:
    """Draw random square patches from a set of 2-D images, with 8-fold augmentation."""

    def __init__(self, images: Sequence[np.ndarray], patch_size: int, augment: bool = True):
        self.patch_size = patch_size
        self.augment = augment
        shapes = [im.shape for im in images]
        self.heights = torch.tensor([s[0] for s in shapes])
        self.widths = torch.tensor([s[1] for s in shapes])
        sizes = self.heights * self.widths
        self.offsets = torch.cumsum(sizes, 0) - sizes
        self.flat = torch.cat([torch.from_numpy(np.ascontiguousarray(im)).reshape(-1)
                               for im in images])
        # choose images in proportion to the number of patch positions they offer
        positions = (self.heights - patch_size + 1) * (self.widths - patch_size + 1)
        self.weights = positions.double() / positions.sum()
        r = torch.arange(patch_size)
        self._dy, self._dx = torch.meshgrid(r, r, indexing="ij")

    @property
    def n_pixels(self) -> int:
        return int(self.flat.numel())

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch (B, 1, P, P) of random patches, randomly flipped/rotated."""
        ps = self.patch_size
        idx = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        h, w = self.heights[idx], self.widths[idx]
        y0 = (torch.rand(batch_size, generator=generator) * (h - ps + 1)).long()
        x0 = (torch.rand(batch_size, generator=generator) * (w - ps + 1)).long()
        rows = (y0[:, None, None] + self._dy) * w[:, None, None]
        flat_idx = self.offsets[idx, None, None] + rows + x0[:, None, None] + self._dx
        patches = self.flat[flat_idx].unsqueeze(1)
        if self.augment:
            patches = random_transforms(patches, generator)
        return patches


#: The most steps a default epoch has, so that the default run's length does not grow
#: with the size of the data (docs/DECISIONS.md: "Defaults that finish").
MAX_DEFAULT_STEPS = 100


def default_steps_per_epoch(n_pixels: int, patch_size: int, batch_size: int,
                            cap: int | None = MAX_DEFAULT_STEPS) -> int:
    """Steps that show the network each pixel about 8 times (once per augmentation),
    at most ``cap``.

    This is what the original N2V epoch amounts to: every non-overlapping patch in
    each of the 8 orientations. The cap bounds a default run on large data.
    """
    n_patches = max(1, n_pixels // (patch_size * patch_size)) * 8
    steps = max(1, -(-n_patches // batch_size))
    return steps if cap is None else min(steps, cap)
