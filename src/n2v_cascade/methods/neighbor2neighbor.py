"""Neighbor2Neighbor (Huang et al. 2021): a dense loss between neighbouring sub-images.

Each 2x2 cell of a noisy patch gives one pixel to each of two half-size sub-images,
two different pixels that share an edge (one of the 8 ordered adjacent pairs, drawn
uniformly per cell). Their noise is independent and their signals nearly equal, so the
network learns to map one sub-image to the other, with a loss on every pixel. A
regulariser ties this to the full-resolution output ``f(y)`` (computed without
gradient), which is what prediction uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from . import register
from .base import Method

if TYPE_CHECKING:
    from ..runtime import Runner

# The ordered pairs (first, second) of edge-sharing pixels of a 2x2 cell, pixels numbered
# 0 top left, 1 top right, 2 bottom left, 3 bottom right (the paper's eight choices).
NEIGHBOUR_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3],
                                [1, 0], [2, 0], [3, 1], [3, 2]])


def cells(x: torch.Tensor) -> torch.Tensor:
    """The 2x2 YX cells of ``(B, C, [Z,] H, W)`` as ``(B, C, [Z,] H // 2, W // 2, 4)`` (odd
    edges dropped); a 3-D volume is sub-sampled in each YX plane.

    The last axis holds the cell's pixels in the order of :data:`NEIGHBOUR_PAIRS`.
    """
    if x.ndim not in (4, 5):
        raise ValueError(f"sub-sampling needs (B, C, [Z,] H, W) tensors, got shape "
                         f"{tuple(x.shape)}")
    *lead, h, w = x.shape
    x = x[..., : h - h % 2, : w - w % 2]
    n = len(lead)
    x = x.reshape(*lead, h // 2, 2, w // 2, 2)
    x = x.permute(*range(n), n, n + 2, n + 1, n + 3)
    return x.reshape(*lead, h // 2, w // 2, 4)


def neighbour_pair(shape: torch.Size | tuple[int, ...], generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cell positions of the two sub-images for a batch of ``shape`` (B, C, H, W).

    Returns two ``(B, 1, H // 2, W // 2)`` index tensors (values 0-3, see :func:`cells`):
    per cell one of the 8 ordered adjacent pairs, uniformly, the same for all channels.
    """
    b, _, *mid, h, w = shape
    choice = torch.randint(len(NEIGHBOUR_PAIRS), (b, 1, *mid, h // 2, w // 2),
                           generator=generator)
    pair = NEIGHBOUR_PAIRS[choice]
    return pair[..., 0], pair[..., 1]


def subsample(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The sub-image of ``x`` (B, C, H, W) taking pixel ``index`` (B, 1, H/2, W/2) of each cell."""
    grid = cells(x)
    idx = index.to(x.device).unsqueeze(-1).expand(*grid.shape[:-1], 1)
    return torch.gather(grid, -1, idx).squeeze(-1)


@register
class Neighbor2Neighbor(Method):
    """Maps one random neighbour sub-image to the other; every pixel is scored.

    The loss is ``mean((f(g1) - g2)**2) + gamma * mean((f(g1) - g2 - (g1(f(y)) -
    g2(f(y))))**2)`` with ``g1, g2`` the two sub-samplers of one draw and ``f(y)`` the
    network on the full patch without gradient. ``gamma`` is the paper's final value
    (its code ramps it up from 0 during training; a step loss does not know the step,
    so it is constant here). Prediction is ``f(y)`` at full resolution.
    """

    masks_pixels = False
    hides_pixel = False  # trained on every pixel's own value
    name = "neighbor2neighbor"
    training_text = "trained to map one random neighbour sub-image of a patch to the other"
    doi = "10.1109/CVPR46437.2021.01454"
    listing_order = 70
    label = "Neighbor2Neighbor"
    short_label = "Nb2Nb"
    summary = ("Neighbor2Neighbor: maps one random neighbour sub-image to the other, a loss "
               "on every pixel (white noise; level with N2V per CPU-second)")
    citation = ("Huang, Li, Jia, Lu, Liu. Neighbor2Neighbor: Self-Supervised Denoising from "
                "Single Noisy Images. CVPR 2021")
    defaults = {"learning_rate": 1e-3}
    correlated_noise_advice = ("neighbouring sub-images then share noise and the network "
                               "learns to copy it - consider method 'blindspot' "
                               "(--blind-radius auto)")
    gamma: ClassVar[float] = 2.0  # weight of the regulariser

    def step_loss(self, patches: torch.Tensor, generator: torch.Generator,
                  run: Runner) -> torch.Tensor:
        """Sub-sample a neighbour pair, score the mapping on all pixels, regularise."""
        first, second = neighbour_pair(patches.shape, generator)
        g1, g2 = subsample(patches, first), subsample(patches, second)
        diff = run(g1)[:, :self.channels] - run.put(g2)
        loss = (diff ** 2).mean()
        if self.gamma:
            with torch.no_grad():
                full = run(patches)[:, :self.channels]
                gap = subsample(full, first) - subsample(full, second)
            loss = loss + self.gamma * ((diff - gap) ** 2).mean()
        return loss
