"""Blind-spot network (Laine et al. 2019, "High-quality self-supervised deep image denoising").

The network sees every pixel's neighbourhood but never the pixel itself, so it can be
trained on noisy images with a plain reconstruction loss and no masking. It reuses the
U-Net backbone with causal (``shift=True``) blocks: each branch only looks *up*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from n2v_cascade.errors import InputError
from n2v_cascade.models.blocks import (
    inference_chunks,
    init_weights,
    pad_to_multiple,
    shift_down,
)
from n2v_cascade.models.unet import UNetBackbone, check_input
from n2v_cascade.runtime import fast_layout

__all__ = ["BlindSpotNet"]


class BlindSpotNet(nn.Module):
    """Four-rotation blind-spot U-Net; 2-D only.

    Each of the four rotations (0, 90, 180, 270 degrees) of the input goes through one
    shared causal U-Net, whose receptive field is the half-plane above each pixel
    including its own row. Shifting the input down by one row first makes it strictly
    above. The four feature maps are rotated back, concatenated along channels and
    combined by ``1 x 1`` convolutions, so every output sees up, down, left and right
    but not the pixel itself: ``d out[i, j] / d in[i, j] == 0`` exactly.

    Inputs of any size work: they are zero-padded to a multiple of ``2**depth``
    (zeros carry no information, so the blind spot survives at the borders) and the
    output is cropped back. Square inputs run the rotations as one batch (faster on
    CPU), others one rotation at a time.

    Parameters
    ----------
    in_channels, out_channels
        Channels of input and output.
    depth, width
        U-Net depth (number of downsamplings) and top-level channels.
    ndim
        Must be 2; a 3-D blind spot would need six directions and is not implemented.
    growth
        Channel growth per level (see the U-Net).
    blind_radius
        0 (Laine et al.): only the pixel itself is hidden. ``r > 0`` hides the whole
        ``(2r + 1) x (2r + 1)`` square around it (each branch is shifted ``r + 1`` rows),
        for spatially correlated noise whose correlation reaches ``r`` pixels, where a
        one-pixel blind spot would let the network copy the noise from its neighbours
        (the blind-spot counterpart of structN2V masks).
    ring_residual
        Add the mean of the one-pixel ring just outside the blind square to the first
        output channel, so the network learns a correction to a blind local average
        instead of the intensity scale itself (which a blind-spot net, unlike a U-Net,
        learns slowly: far fewer training steps per second). One input channel only.

    Raises
    ------
    InputError
        For ``ndim != 2`` or invalid sizes (``InputError`` is a ``ValueError``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 3,
        width: int = 32,
        ndim: int = 2,
        growth: float = 2.0,
        blind_radius: int = 0,
        ring_residual: bool = False,
    ) -> None:
        super().__init__()
        if ndim != 2:
            raise InputError(f"BlindSpotNet is 2-D only (ndim=2), got ndim={ndim}")
        if blind_radius < 0:
            raise InputError(f"blind_radius must be >= 0, got {blind_radius}")
        if ring_residual and in_channels != 1:
            raise InputError(f"ring_residual needs in_channels == 1, got {in_channels}")
        self.shift = blind_radius + 1
        ring = None
        if ring_residual:
            side = 2 * blind_radius + 3
            ring = torch.ones(1, 1, side, side)
            ring[..., 1:-1, 1:-1] = 0
            ring = ring / ring.sum()
        self.register_buffer("ring", ring, persistent=False)  # fixed, derived from the args
        if out_channels < 1:
            raise InputError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        self.ndim = ndim
        self.backbone = UNetBackbone(in_channels, depth, width, ndim=2, shift=True, growth=growth)
        self.head = nn.Sequential(
            nn.Conv2d(4 * width, 4 * width, 1),
            nn.ReLU(),
            nn.Conv2d(4 * width, width, 1),
            nn.ReLU(),
        )
        self.out = nn.Conv2d(width, out_channels, 1)
        init_weights(self.backbone)
        init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict each pixel from its surroundings: ``(B, C, Y, X) -> (B, out, Y, X)``."""
        check_input(x, self.in_channels, 2)
        chunks = inference_chunks(x)
        if chunks is not None:
            return torch.cat([self(part) for part in chunks])
        padded, crop = pad_to_multiple(x, 2**self.depth, 2, mode="constant")
        if not torch.is_grad_enabled():
            y = self.out(self.head[1:](self._first_head_layer(padded)[crop]))
        else:
            square = padded.shape[-1] == padded.shape[-2]
            y = self.out(self.head(self.rotated_features(padded, batched=square)[crop]))
        if self.ring is None:
            return y
        base = F.conv2d(x, self.ring.to(x.dtype), padding=self.ring.shape[-1] // 2)
        return torch.cat([y[:, :1] + base.to(y.dtype), y[:, 1:]], dim=1)

    def _first_head_layer(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form of ``head[0](rotated_features(x))`` holding one rotation at a time.

        The ``1 x 1`` convolution of the concatenated features is the sum of its four
        channel blocks applied to each rotation's features, so the wide concatenation
        and the four-fold batch never exist (about 4x less activation memory).
        """
        conv = self.head[0]
        width = conv.in_channels // 4
        dims = (-2, -1)
        total = None
        for k in range(4):
            part = self.backbone(fast_layout(shift_down(torch.rot90(x, k, dims), self.shift)))
            if k:
                part = torch.rot90(part, -k, dims)
            block = conv.weight[:, k * width: (k + 1) * width]
            y = F.conv2d(part, block, conv.bias if k == 0 else None)
            total = y if total is None else total.add_(y)
        assert total is not None
        return total

    def rotated_features(self, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Run the four rotations through the causal backbone and undo the rotations.

        Parameters
        ----------
        x
            Input whose sizes are multiples of ``2**depth``.
        batched
            Stack the rotations along the batch axis (needs a square ``x``) instead of
            looping over them.

        Returns
        -------
        torch.Tensor
            ``(B, 4 * width, Y, X)`` features, each blind to its own pixel.
        """
        dims = (-2, -1)
        # The one-row shift that makes each branch strictly causal is applied to the
        # (one-channel) input rather than to the wide feature maps: the backbone is
        # causal, so its row r then sees input rows <= r - 1 only.
        if batched:
            if x.shape[-1] != x.shape[-2]:
                raise ValueError("batched rotations need a square input")
            stacked = torch.cat([shift_down(torch.rot90(x, k, dims), self.shift)
                                 for k in range(4)], dim=0)
            parts = self.backbone(fast_layout(stacked)).chunk(4, dim=0)
        else:
            parts = tuple(
                self.backbone(fast_layout(shift_down(torch.rot90(x, k, dims), self.shift)))
                for k in range(4)
            )
        back = [p if k == 0 else torch.rot90(p, -k, dims) for k, p in enumerate(parts)]
        return fast_layout(torch.cat(back, dim=1))

