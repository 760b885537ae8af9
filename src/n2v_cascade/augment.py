"""Flips and quarter turns: training augmentation and test-time augmentation (TTA).

Element ``t`` of the group acts on the spatial axes of ``(B, C, *spatial)`` tensors: a
flip of X when ``t % 8 >= 4``, then ``t % 4`` quarter turns of the YX plane, and for 3-D
data (``t >= 8``) a flip of the depth axis (Z or T). Turns stay in the YX plane because
that is the plane with square pixels and square patches; a 3-D voxel is usually longer
along Z, so turning Z into Y would show the network a different sampling. 2-D data have
8 elements, 3-D data 16. :func:`inverse` undoes an element, so a network output can be
mapped back to the input's orientation.
"""

from __future__ import annotations

import torch

#: Number of transforms for 2-D data (the dihedral group of the square).
N_TRANSFORMS = 8


def n_transforms(ndim: int = 2) -> int:
    """How many transforms the group has for ``ndim`` spatial axes (8 or 16)."""
    return N_TRANSFORMS * (2 if ndim == 3 else 1)


def transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """Element ``t`` of the group on the spatial axes (the last two, and the third
    last for ``t >= 8``)."""
    if t >= N_TRANSFORMS:
        x = torch.flip(x, dims=(-3,))
    if t % N_TRANSFORMS >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, t % 4, dims=(-2, -1)) if t % 4 else x


def inverse(y: torch.Tensor, t: int) -> torch.Tensor:
    """Undo :func:`transform` ``t``."""
    if t % 4:
        y = torch.rot90(y, -(t % 4), dims=(-2, -1))
    if t % N_TRANSFORMS >= 4:
        y = torch.flip(y, dims=(-1,))
    return torch.flip(y, dims=(-3,)) if t >= N_TRANSFORMS else y


def random_transforms(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one transform, chosen per sample, to a batch of patches square in YX."""
    count = n_transforms(batch.ndim - 2)
    choice = torch.randint(0, count, (batch.shape[0],), generator=generator)
    out = batch.clone()
    for t in range(1, count):
        sel = choice == t
        if sel.any():
            out[sel] = transform(batch[sel], t)
    return out
