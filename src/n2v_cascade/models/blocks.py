"""Building blocks shared by the U-Net and the blind-spot network.

Every block takes ``ndim`` (2 or 3) so the same code builds 2-D and 3-D networks, and a
``shift`` flag. ``shift=True`` makes the block *causal* in the vertical (second-to-last)
axis, as in the blind-spot network of Laine et al. (2019): an output at row ``r`` depends
only on inputs at rows ``<= r``. The causal variant is 2-D only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import autocast_dtype

__all__ = [
    "Conv",
    "ConvBlock",
    "Down",
    "MaxBlurPool",
    "Up",
    "conv_class",
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

_FUSED = {"causal": True}


@contextlib.contextmanager
def fused_causal(enabled: bool) -> Iterator[None]:
    """Switch the fused causal convolution on or off (off = the plain pad-then-convolve form).

    Both compute the same function; the plain form is the reference for equivalence tests
    and for counting the architecture's FLOPs without the fused form's extra top-row
    convolution.
    """
    previous = _FUSED["causal"]
    _FUSED["causal"] = enabled
    try:
        yield
    finally:
        _FUSED["causal"] = previous


def _check_ndim(ndim: int, shift: bool = False) -> None:
    """Validate the spatial dimensionality (and that ``shift`` is only used in 2-D)."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if shift and ndim != 2:
        raise ValueError("shifted (causal) blocks are 2-D only (ndim=2)")


def conv_class(ndim: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """Return ``nn.Conv2d`` or ``nn.Conv3d`` for ``ndim`` spatial dimensions."""
    _check_ndim(ndim)
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Shift a 2-D feature map down by ``rows`` (zero rows in at the top, bottom rows out).

    Used at the end of the blind-spot branch so that each output's receptive field lies
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


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a convolution runs in: the autocast dtype if autocast is on, else the inputs'."""
    return autocast_dtype(x) or torch.result_type(x, weight)


class _CausalConvReLU(torch.autograd.Function):
    """``relu(causal_conv(x))`` for a stride-1 ``k x k`` kernel, without padded copies.

    Output row ``r`` must see input rows ``r - k + 1 .. r`` (zeros above the image). For
    ``r >= h`` (``h = k // 2``) that is row ``r - h`` of the ordinary "same" convolution, so
    the same convolution is computed once and its rows are moved down by ``h`` during the
    ReLU, which has to read and write every element anyway. The ``h`` top rows are a
    tiny separate convolution. The backward mirrors this, so no full-size tensor is
    padded, cropped or accumulated.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):  # noqa: D102
        dtype = _compute_dtype(x, weight)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            kh, kw = w.shape[-2:]
            h, pw = kh // 2, kw // 2
            y = F.conv2d(x, w, b, padding=(h, pw))
            top = F.conv2d(_top_rows(x, kh, pw), w, b)
            out = torch.empty_like(y)
            torch.clamp_min(y[:, :, : y.shape[2] - h], 0, out=out[:, :, h:])
            torch.clamp_min(top, 0, out=out[:, :, :h])
        ctx.save_for_backward(x, w, out)
        ctx.has_bias = bias is not None
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, w, out = ctx.saved_tensors
        kh, kw = w.shape[-2:]
        h, pw = kh // 2, kw // 2
        rows = out.shape[2]
        grad = grad.to(out.dtype)
        g_main = torch.empty_like(out)
        g_main[:, :, rows - h:].zero_()
        torch.ops.aten.threshold_backward.grad_input(
            grad[:, :, h:], out[:, :, h:], 0, grad_input=g_main[:, :, : rows - h]
        )
        g_top = torch.ops.aten.threshold_backward(grad[:, :, :h], out[:, :, :h], 0)
        need = ctx.needs_input_grad
        mask = [need[0], need[1], need[2] and ctx.has_bias]
        bias_sizes = [w.shape[0]] if ctx.has_bias else None
        conv_bwd = torch.ops.aten.convolution_backward
        gx, gw, gb = conv_bwd(g_main, x, w, bias_sizes, [1, 1], [h, pw], [1, 1], False,
                              [0, 0], 1, mask)
        top_x = _top_rows(x, kh, pw)
        tx, tw, tb = conv_bwd(g_top, top_x, w, bias_sizes, [1, 1], [0, 0], [1, 1], False,
                              [0, 0], 1, [need[0], mask[1], mask[2]])
        if gx is not None:
            gx[:, :, :h] += tx[:, :, kh - 1:, pw: tx.shape[3] - pw]
        if gw is not None:
            gw = (gw + tw).to(ctx.dtypes[0])
        if gb is not None:
            gb = (gb + tb).to(ctx.dtypes[1])
        return gx, gw, gb


def _top_rows(x: torch.Tensor, kh: int, pw: int) -> torch.Tensor:
    """The first ``kh // 2`` rows of ``x``, zero-padded as the causal convolution sees them."""
    return F.pad(x[:, :, : kh // 2], (pw, pw, kh - 1, 0))


class Conv(nn.Module):
    """A ``k x k`` convolution with "same" padding, optionally causal (shifted) and ReLU'd.

    With ``shift=True`` the input is (in effect) padded by ``k - 1`` zero rows at the top
    and none at the bottom: this equals ordinary padding followed by shifting the output
    down by ``k // 2`` rows, so output row ``r`` only sees input rows ``r - k + 1 .. r``.
    With ``stride=2`` the output has ``ceil(size / 2)`` rows/columns in both modes and row
    ``R`` only sees input rows ``<= 2R`` (a causal strided convolution). ``relu=True``
    applies a ReLU; for the stride-1 causal case it is fused with the shift (see
    :class:`_CausalConvReLU`), which avoids padded copies of the feature maps.
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
        _check_ndim(ndim, shift)
        self.shift = shift
        self.relu = relu
        half = kernel_size // 2
        self.conv = conv_class(ndim)(
            in_channels, out_channels, kernel_size, stride=stride, padding=0 if shift else half
        )
        # (left, right, top, bottom) for the causal variant.
        self._causal_pad = (half, half, kernel_size - 1, 0)
        self._fused = shift and relu and stride == 1 and kernel_size > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution (and the ReLU if asked for)."""
        if self._fused and _FUSED["causal"]:
            return _CausalConvReLU.apply(x, self.conv.weight, self.conv.bias)
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
        conv = F.conv2d if self.ndim == 2 else F.conv3d
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
        _check_ndim(ndim, shift)
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
