"""Building blocks shared by the U-Net and the blind-spot network.

Every block takes ``ndim`` (2 or 3) so the same code builds 2-D and 3-D networks, and a
``shift`` flag. ``shift=True`` makes the block *causal* in the vertical (second-to-last)
axis, as in the blind-spot network of Laine et al. (2019): an output at row ``r`` depends
only on inputs at rows ``<= r``; along X (and Z in 3-D) it is an ordinary block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .causal import CausalConvReLU, causal_pad, fused_causal, use_fused

__all__ = [
    "Conv",
    "ConvBlock",
    "Down",
    "MaxBlurPool",
    "Up",
    "conv_class",
    "conv_function",
    "fused_causal",
    "inference_chunks",
    "init_weights",
    "pad_to_multiple",
    "shift_down",
]

# Without autograd, large batches are run this many pixels per sample-chunk at a time:
# the output is the same, the peak memory of the activations is bounded (tiled prediction
# of a 512 x 512 tile batch would otherwise hold several GB of feature maps).
INFERENCE_CHUNK_PIXELS = 2**18


def _check_ndim(ndim: int) -> None:
    """Validate the spatial dimensionality."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")


def conv_class(ndim: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """Return ``nn.Conv2d`` or ``nn.Conv3d`` for ``ndim`` spatial dimensions."""
    _check_ndim(ndim)
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def conv_function(ndim: int) -> Callable[..., torch.Tensor]:
    """Return ``F.conv2d`` or ``F.conv3d`` for ``ndim`` spatial dimensions."""
    _check_ndim(ndim)
    return F.conv2d if ndim == 2 else F.conv3d


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Shift a feature map down by ``rows`` along Y (zero rows in at the top, bottom out).

    Acts on the second-to-last axis, so on 2-D and 3-D maps alike. Applied to the input
    of a causal branch of the blind-spot network, it puts each output's receptive field
    *strictly* above it.
    """
    if rows <= 0:
        return x
    return F.pad(x, (0, 0, rows, 0))[..., : x.shape[-2], :]


def inference_chunks(x: torch.Tensor) -> list[torch.Tensor] | None:
    """Split a batch into sample chunks for memory-bounded inference, or ``None`` to keep it.

    Only without autograd (prediction) and only when a chunk of at most
    :data:`INFERENCE_CHUNK_PIXELS` pixels per channel holds fewer samples than the batch.
    """
    if torch.is_grad_enabled() or x.shape[0] < 2:
        return None
    per_sample = max(1, x[0, 0].numel())
    size = max(1, INFERENCE_CHUNK_PIXELS // per_sample)
    return None if size >= x.shape[0] else list(x.split(size))


def pad_to_multiple(
    x: torch.Tensor, multiple: int, ndim: int, mode: str = "replicate", centred: bool = True
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the last ``ndim`` axes of ``x`` up to a multiple of ``multiple``.

    Parameters
    ----------
    x
        Tensor of shape ``(B, C, *spatial)``.
    multiple
        Every spatial size is rounded up to a multiple of this (``2**depth``).
    ndim
        Number of spatial axes.
    mode
        ``"replicate"``, ``"reflect"`` or ``"constant"`` (zeros).
    centred
        Split the padding between both sides (networks) or pad only at the end (images
        before tiling, so tiles stay on the strided layers' grid).

    Returns
    -------
    padded, crop
        The padded tensor and the index that crops it back (``padded[crop]``).
    """
    pads: list[int] = []  # F.pad order: last axis first
    crop: list[slice] = []
    for size in x.shape[-ndim:]:
        total = (-size) % multiple
        before = total // 2 if centred else 0
        pads = [before, total - before, *pads]
        crop.append(slice(before, before + size))
    index = (slice(None), slice(None), *crop)
    if not any(pads):
        return x, index
    if mode == "reflect" and max(pads) >= min(x.shape[-ndim:]):
        mode = "replicate"  # reflect needs pad < size; replicate works for any size >= 1
    if mode == "constant":
        return F.pad(x, pads), index
    return F.pad(x, pads, mode=mode), index


class Conv(nn.Module):
    """A ``k x k`` convolution with "same" padding, optionally causal (shifted) and ReLU'd.

    With ``shift=True`` the input is (in effect) padded by ``k - 1`` zero rows at the top
    and none at the bottom: this equals ordinary padding followed by shifting the output
    down by ``k // 2`` rows, so output row ``r`` only sees input rows ``r - k + 1 .. r``.
    With ``stride=2`` the output has ``ceil(size / 2)`` rows/columns in both modes and row
    ``R`` only sees input rows ``<= 2R`` (a causal strided convolution). Along X (and Z)
    the padding is the ordinary "same" one in both modes. ``relu=True`` applies a ReLU;
    for the stride-1 causal case it is fused with the shift (see :class:`CausalConvReLU`),
    which avoids padded copies of the feature maps.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        ndim: int = 2,
        shift: bool = False,
        relu: bool = False,
    ) -> None:
        super().__init__()
        _check_ndim(ndim)
        self.shift = shift
        self.relu = relu
        half = kernel_size // 2
        self.conv = conv_class(ndim)(
            in_channels, out_channels, kernel_size, stride=stride, padding=0 if shift else half
        )
        # F.pad widths of the causal variant: X, then Y (top, bottom), then Z.
        self._causal_pad = causal_pad(kernel_size, ndim)
        self._fused = shift and relu and stride == 1 and kernel_size > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution (and the ReLU if asked for)."""
        if self._fused and use_fused():
            return CausalConvReLU.apply(x, self.conv.weight, self.conv.bias)
        if self.shift and any(self._causal_pad):
            x = F.pad(x, self._causal_pad)
        y = self.conv(x)
        return F.relu(y, inplace=True) if self.relu else y


class ConvBlock(nn.Module):
    """Two ``3 x 3`` convolutions, each followed by ReLU (one U-Net level)."""

    def __init__(
        self, in_channels: int, out_channels: int, ndim: int = 2, shift: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = Conv(in_channels, out_channels, 3, ndim=ndim, shift=shift, relu=True)
        self.conv2 = Conv(out_channels, out_channels, 3, ndim=ndim, shift=shift, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv-ReLU-conv-ReLU."""
        return self.conv2(self.conv1(x))


class MaxBlurPool(nn.Module):
    """Anti-aliased max pooling (N2V2, Höck et al. 2022; Zhang 2019).

    Max-pool with a window of 2 and stride 1 (edge-replicated so the size is kept), then a
    fixed binomial ``[1, 2, 1]`` blur applied depthwise with stride 2. Output size is
    ``ceil(size / 2)``, the same as a stride-2 ``3 x 3`` convolution, for odd sizes too.
    Avoids the checkerboard artefacts that strided downsampling causes in N2V.
    """

    blur: torch.Tensor

    def __init__(self, channels: int, ndim: int = 2) -> None:
        super().__init__()
        _check_ndim(ndim)
        self.channels = channels
        self.ndim = ndim
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps
        for _ in range(ndim - 1):
            kernel = kernel[..., None] * taps
        kernel = kernel / kernel.sum()
        self.register_buffer(
            "blur", kernel.expand(channels, 1, *kernel.shape).contiguous(), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample ``x`` by 2 along every spatial axis."""
        pool = F.max_pool2d if self.ndim == 2 else F.max_pool3d
        conv = conv_function(self.ndim)
        x = pool(F.pad(x, (0, 1) * self.ndim, mode="replicate"), kernel_size=2, stride=1)
        x = F.pad(x, (1, 1) * self.ndim, mode="replicate")
        return conv(x, self.blur.to(x.dtype), stride=2, groups=self.channels)


class Down(nn.Module):
    """Downsample by 2: a stride-2 ``3 x 3`` convolution, or max-blur-pool then a convolution.

    Keeps the channel count; the following :class:`ConvBlock` doubles it. With
    ``shift=True`` the strided convolution is causal (see :class:`Conv`).
    """

    def __init__(
        self, channels: int, ndim: int = 2, shift: bool = False, blurpool: bool = False
    ) -> None:
        super().__init__()
        if shift and blurpool:
            raise ValueError("blurpool is not supported in shifted (blind-spot) blocks")
        self.pool: nn.Module = MaxBlurPool(channels, ndim) if blurpool else nn.Identity()
        stride = 1 if blurpool else 2
        self.conv = Conv(channels, channels, 3, stride=stride, ndim=ndim, shift=shift, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve every spatial size (rounding up)."""
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Upsample to the skip connection's size, then a ``3 x 3`` convolution and ReLU.

    Uses (bi/tri)linear interpolation normally. With ``shift=True`` it uses nearest
    neighbour instead, which maps row ``r`` to coarse row ``r // 2`` and so never looks
    downwards; linear interpolation would mix in the row below and break the blind spot.
    """

    def __init__(
        self, in_channels: int, out_channels: int, ndim: int = 2, shift: bool = False
    ) -> None:
        super().__init__()
        _check_ndim(ndim)
        self.shift = shift
        self.mode = "nearest" if shift else ("bilinear" if ndim == 2 else "trilinear")
        self.conv = Conv(in_channels, out_channels, 3, ndim=ndim, shift=shift, relu=True)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Upsample ``x`` to spatial ``size`` (twice its size) and convolve."""
        size = tuple(int(s) for s in size)
        if self.shift and any(s != 2 * t for s, t in zip(size, x.shape[2:], strict=True)):
            raise ValueError("causal upsampling needs exactly doubled sizes (pad the input)")
        if self.mode == "nearest":
            x = F.interpolate(x, size=size, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode=self.mode, align_corners=False)
        return self.conv(x)


def init_weights(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation for ReLU networks, zero biases.

    Keeps activations from shrinking layer after layer, as PyTorch's default does.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
