"""The 8 flips and quarter turns of the YX plane: training augmentation and TTA.

Element ``t`` (0..7) of the dihedral group acts on the last two axes: a horizontal flip
when ``t >= 4``, then ``t % 4`` quarter turns. :func:`inverse` undoes it, so a network
output can be mapped back to the input's orientation.
"""

from __future__ import annotations

import torch

N_TRANSFORMS = 8


def transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """Element ``t`` of the dihedral group on the last two axes."""
    if t >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, t % 4, dims=(-2, -1)) if t % 4 else x


def inverse(y: torch.Tensor, t: int) -> torch.Tensor:
    """Undo :func:`transform` ``t``."""
    if t % 4:
        y = torch.rot90(y, -(t % 4), dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if t >= 4 else y


def random_transforms(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 transforms, chosen per sample, to a batch of square patches."""
    choice = torch.randint(0, N_TRANSFORMS, (batch.shape[0],), generator=generator)
    out = batch.clone()
    for t in range(1, N_TRANSFORMS):
        sel = choice == t
        if sel.any():
            out[sel] = transform(batch[sel], t)
    return out
