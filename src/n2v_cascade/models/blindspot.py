"""Blind-spot network (Laine et al. 2019, "High-quality self-supervised deep image denoising").

The network sees every pixel's neighbourhood but never the pixel itself, so it can be
trained on noisy images with a plain reconstruction loss and no masking. It reuses the
U-Net backbone with causal (``shift=True``) blocks: each branch only looks *up*.
"""

from __future__ import annotations

import torch
from torch import nn

from n2v_cascade.errors import InputError
from n2v_cascade.models.blocks import (
    conv_class,
    conv_function,
    inference_chunks,
    init_weights,
    pad_to_multiple,
    shift_down,
)
from n2v_cascade.models.unet import UNetBackbone, check_backbone_args, check_input
from n2v_cascade.runtime import fast_layout

__all__ = ["BlindSpotNet"]

_YX, _ZY = (-2, -1), (-3, -2)
# The views, as ``torch.rot90(x, k, dims)``: in each the causal backbone looks up its Y
# axis, which is one of the directions -Y, +X, +Y, -X (and -Z, +Z in 3-D) of the input.
VIEWS: dict[int, tuple[tuple[int, tuple[int, int]], ...]] = {
    2: tuple((k, _YX) for k in range(4)),
    3: (*((k, _YX) for k in range(4)), (1, _ZY), (3, _ZY)),
}


class BlindSpotNet(nn.Module):
    """Blind-spot U-Net: four rotations in 2-D, six views in 3-D.

    Each view of the input goes through one shared causal U-Net, whose receptive field
    is the half-space above each pixel including its own row. Shifting the view's input
    down by one row first makes it strictly above. In 2-D the views are the rotations by
    0, 90, 180 and 270 degrees (looking -Y, +X, +Y, -X); in 3-D the same four rotations
    in the (Y, X) plane plus the rotations by 90 and 270 degrees in the (Z, Y) plane
    (looking -Z and +Z). The feature maps are rotated back, concatenated along channels
    and combined by ``1 x 1`` convolutions, so every output sees all directions but not
    the pixel itself, in any input channel: ``d out[..., i, j] / d in[..., i, j] == 0``
    exactly. The views' half-spaces (strictly above, below, left, right, in front,
    behind) together hold every pixel but the centre, so nothing else is hidden.

    Inputs of any size work: they are zero-padded to a multiple of ``2**depth`` on every
    axis (zeros carry no information, so the blind spot survives at the borders) and the
    output is cropped back. Views of equal shape run as one batch (faster on CPU): all
    four of a square 2-D input, the (Y, X) rotations of a 3-D volume in pairs (all four
    when Y and X are equal) and its two (Z, Y) rotations; other views run one at a time.

    Parameters
    ----------
    in_channels, out_channels
        Channels of input and output.
    depth, width
        U-Net depth (number of downsamplings) and top-level channels.
    ndim
        2 for ``(B, C, Y, X)`` images, 3 for ``(B, C, Z, Y, X)`` volumes (anisotropic
        ones too: the (Z, Y) views are then differently shaped and form their own batch).
    growth
        Channel growth per level (see the U-Net).
    blind_radius
        0 (Laine et al.): only the pixel itself is hidden. ``r > 0`` hides the whole
        ``(2r + 1)**ndim`` square or cube around it (each view is shifted ``r + 1`` rows,
        so it sees only beyond distance ``r`` in its direction, and a voxel of the cube is
        beyond ``r`` in no direction), for spatially correlated noise whose correlation
        reaches ``r`` pixels, where a one-pixel blind spot would let the network copy
        the noise from its neighbours (the blind-spot counterpart of structN2V masks).
    ring_residual
        Add the mean of the one-pixel shell just outside the blind square (cube) to the
        first output channel, so the network learns a correction to a blind local
        average instead of the intensity scale itself (which a blind-spot net, unlike a
        U-Net, learns slowly: far fewer training steps per second). With several
        channels, each channel's ring mean goes to its own output channel (the first
        ``in_channels`` outputs are the means).

    Raises
    ------
    InputError
        For ``ndim`` other than 2 or 3, or invalid sizes (``InputError`` is a
        ``ValueError``).
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
        check_backbone_args(in_channels, depth, width, ndim)
        if blind_radius < 0:
            raise InputError(f"blind_radius must be >= 0, got {blind_radius}")
        self.shift = blind_radius + 1
        ring = None
        if ring_residual:
            side = 2 * blind_radius + 3
            ring = torch.ones(1, 1, *(side,) * ndim)
            ring[(..., *(slice(1, -1),) * ndim)] = 0
            ring = ring / ring.sum()
        self.register_buffer("ring", ring, persistent=False)  # fixed, derived from the args
        if out_channels < 1:
            raise InputError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        self.ndim = ndim
        self.views = VIEWS[ndim]
        self.tile_cost = len(self.views)  # activations per voxel, in U-Nets (tile_shape)
        self.backbone = UNetBackbone(in_channels, depth, width, ndim, shift=True, growth=growth)
        conv, wide = conv_class(ndim), len(self.views) * width
        self.head = nn.Sequential(conv(wide, wide, 1), nn.ReLU(), conv(wide, width, 1), nn.ReLU())
        self.out = conv(width, out_channels, 1)
        init_weights(self.backbone)
        init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict each pixel from its surroundings: ``(B, C, *spatial) -> (B, out, *spatial)``."""
        check_input(x, self.in_channels, self.ndim)
        chunks = inference_chunks(x)
        if chunks is not None:
            return torch.cat([self(part) for part in chunks])
        padded, crop = pad_to_multiple(x, 2**self.depth, self.ndim, mode="constant")
        if not torch.is_grad_enabled():
            y = self.out(self.head[1:](self._first_head_layer(padded)[crop]))
        else:
            # 3-D batches the views of equal shape; 2-D the rotations of a square input.
            batched = self.ndim > 2 or padded.shape[-1] == padded.shape[-2]
            y = self.out(self.head(self.rotated_features(padded, batched=batched)[crop]))
        if self.ring is None:
            return y
        conv = conv_function(self.ndim)
        c = self.in_channels  # each channel's own ring mean, added to its mean output
        ring = self.ring.to(x.dtype).expand(c, *self.ring.shape[1:])
        base = conv(x, ring, padding=self.ring.shape[-1] // 2, groups=c)
        return torch.cat([y[:, :c] + base.to(y.dtype), y[:, c:]], dim=1)

    def _view(self, x: torch.Tensor, k: int, dims: tuple[int, int]) -> torch.Tensor:
        """The input of one view: rotated, then shifted down so the branch sees strictly up.

        The shift is applied to the (few-channel) input rather than to the wide feature
        maps: the backbone is causal, so its row ``r`` then sees input rows
        ``<= r - self.shift`` only.
        """
        return shift_down(torch.rot90(x, k, dims), self.shift)

    def _first_head_layer(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form of ``head[0](rotated_features(x))`` holding one view at a time.

        The ``1 x 1`` convolution of the concatenated features is the sum of its channel
        blocks (one per view) applied to each view's features, so the wide concatenation
        and the multi-view batch never exist (4x or 6x less activation memory).
        """
        conv = self.head[0]
        width = conv.in_channels // len(self.views)
        conv_fn = conv_function(self.ndim)
        total = None
        for i, (k, dims) in enumerate(self.views):
            part = self.backbone(fast_layout(self._view(x, k, dims)))
            if k:
                part = torch.rot90(part, -k, dims)
            block = conv.weight[:, i * width: (i + 1) * width]
            y = conv_fn(part, block, conv.bias if i == 0 else None)
            total = y if total is None else total.add_(y)
        assert total is not None
        return total

    def rotated_features(self, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Run the views through the causal backbone and undo their rotations.

        Parameters
        ----------
        x
            Input whose sizes are multiples of ``2**depth``.
        batched
            Stack the views of equal shape along the batch axis instead of running every
            view on its own.

        Returns
        -------
        torch.Tensor
            ``(B, n_views * width, *spatial)`` features, each blind to its own pixel.
        """
        inputs = [self._view(x, k, dims) for k, dims in self.views]
        if batched:
            groups: dict[torch.Size, list[int]] = {}
            for i, view in enumerate(inputs):
                groups.setdefault(view.shape, []).append(i)
            found: dict[int, torch.Tensor] = {}
            for members in groups.values():
                stacked = torch.cat([inputs[i] for i in members], dim=0)
                outs = self.backbone(fast_layout(stacked)).chunk(len(members), dim=0)
                found.update(zip(members, outs, strict=True))
            parts = [found[i] for i in range(len(inputs))]
        else:
            parts = [self.backbone(fast_layout(view)) for view in inputs]
        back = [p if k == 0 else torch.rot90(p, -k, dims)
                for (k, dims), p in zip(self.views, parts, strict=True)]
        return fast_layout(torch.cat(back, dim=1))
