"""The lightweight U-Net backbone shared by all N2V variants.

:class:`UNetBackbone` is the encoder/decoder without an output layer; :class:`UNet` adds
input padding, the final ``1 x 1`` convolution and the optional residual connection. The
blind-spot network builds the same backbone with ``shift=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from n2v_cascade.errors import InputError
from n2v_cascade.models.blocks import (
    ConvBlock,
    Down,
    Up,
    conv_class,
    inference_chunks,
    init_weights,
    pad_to_multiple,
)

__all__ = ["UNet", "UNetBackbone", "check_backbone_args", "check_input"]


def check_backbone_args(in_channels: int, depth: int, width: int, ndim: int) -> None:
    """Raise :class:`InputError` for option values no network can be built with."""
    if in_channels < 1:
        raise InputError(f"in_channels must be >= 1, got {in_channels}")
    if depth < 0:
        raise InputError(f"depth must be >= 0, got {depth}")
    if width < 1:
        raise InputError(f"width must be >= 1, got {width}")
    if ndim not in (2, 3):
        raise InputError(f"ndim must be 2 or 3, got {ndim}")


class UNetBackbone(nn.Module):
    """U-Net encoder/decoder returning full-resolution features with ``width`` channels.

    Encoder level ``k`` has ``width * 2**k`` channels; there are ``depth`` downsamplings,
    so spatial sizes must be multiples of ``2**depth`` (the wrappers pad). Decoder level
    ``k`` upsamples level ``k + 1``, convolves it to ``width * 2**k`` channels,
    concatenates the encoder skip and applies a :class:`ConvBlock`.

    Parameters
    ----------
    in_channels, depth, width, ndim
        Input channels, number of downsamplings, channels at the top level, 2 or 3.
    blurpool
        Downsample with max-blur-pool + conv instead of a stride-2 conv (N2V2).
    top_skip
        Keep the skip connection at full resolution; N2V2 drops it (``False``) because
        it carries the high-frequency checkerboard artefacts.
    shift
        Build causal blocks (blind-spot network): causal along Y, ordinary along X, Z.
    growth
        Channel multiplier from one level to the next (2 = the classic U-Net; 1 keeps
        every level at ``width`` channels, about 3x fewer FLOPs for the same top width).
    """

    def __init__(
        self,
        in_channels: int = 1,
        depth: int = 3,
        width: int = 32,
        ndim: int = 2,
        blurpool: bool = False,
        top_skip: bool = True,
        shift: bool = False,
        growth: float = 2.0,
    ) -> None:
        super().__init__()
        check_backbone_args(in_channels, depth, width, ndim)
        if growth <= 0:
            raise InputError(f"growth must be > 0, got {growth}")
        self.depth = depth
        self.top_skip = top_skip
        self.out_channels = width
        chans = [max(1, round(width * growth**k)) for k in range(depth + 1)]
        self.inc = ConvBlock(in_channels, chans[0], ndim, shift)
        self.downs = nn.ModuleList(
            Down(chans[k], ndim, shift=shift, blurpool=blurpool) for k in range(depth)
        )
        self.encoders = nn.ModuleList(
            ConvBlock(chans[k], chans[k + 1], ndim, shift) for k in range(depth)
        )
        # ups[k] / decoders[k] produce decoder level k (k = 0 is full resolution).
        self.ups = nn.ModuleList(Up(chans[k + 1], chans[k], ndim, shift) for k in range(depth))
        self.decoders = nn.ModuleList(
            ConvBlock(chans[k] * (1 if k == 0 and not top_skip else 2), chans[k], ndim, shift)
            for k in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, *spatial)`` to ``(B, width, *spatial)``."""
        skips = [self.inc(x)]
        for down, enc in zip(self.downs, self.encoders, strict=True):
            skips.append(enc(down(skips[-1])))
        h = skips.pop()
        for k in reversed(range(self.depth)):
            skip = skips.pop()
            h = self.ups[k](h, skip.shape[2:])
            if k > 0 or self.top_skip:
                h = torch.cat([h, skip], dim=1)
            h = self.decoders[k](h)
        return h


class UNet(nn.Module):
    """Lightweight U-Net for N2V denoising; works for any input size.

    ReLU conv blocks, skip connections, strided-conv (or max-blur-pool) downsampling and
    (bi/tri)linear upsampling followed by a convolution. The input is padded by edge
    replication to a multiple of ``2**depth`` and the output cropped back, so
    ``forward`` keeps the spatial size of any input (every size >= 1).

    Parameters
    ----------
    in_channels, out_channels
        Channels of input and output.
    depth
        Number of downsamplings (encoder/decoder blocks below the top level).
    width
        Channels at the top level; level ``k`` has ``width * growth**k``.
    ndim
        2 for ``(B, C, Y, X)`` images, 3 for ``(B, C, Z, Y, X)`` volumes.
    blurpool, top_skip
        N2V2 options (Höck et al. 2022), see :class:`UNetBackbone`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 3,
        width: int = 32,
        ndim: int = 2,
        blurpool: bool = False,
        top_skip: bool = True,
        growth: float = 2.0,
    ) -> None:
        super().__init__()
        if out_channels < 1:
            raise InputError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        self.ndim = ndim
        self.backbone = UNetBackbone(
            in_channels, depth, width, ndim, blurpool=blurpool, top_skip=top_skip, growth=growth
        )
        self.head = conv_class(ndim)(width, out_channels, 1)
        init_weights(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)``."""
        check_input(x, self.in_channels, self.ndim)
        chunks = inference_chunks(x)
        if chunks is not None:
            return torch.cat([self(part) for part in chunks])
        padded, crop = pad_to_multiple(x, 2**self.depth, self.ndim, mode="replicate")
        return self.head(self.backbone(padded))[crop]


def check_input(x: torch.Tensor, in_channels: int, ndim: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, *spatial)`` with sizes >= 1."""
    if x.ndim != ndim + 2:
        raise ValueError(
            f"expected a {ndim + 2}-D tensor (B, C, *spatial), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channel(s), got {x.shape[1]}")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"every spatial size must be >= 1, got {tuple(x.shape[2:])}")
