"""The causal (vertically shifted) convolution of the blind-spot network, 2-D and 3-D.

A causal convolution sees, at output row ``r``, only input rows ``<= r`` along the Y axis
(the second-to-last one); along X (and Z in 3-D) it is an ordinary "same" convolution.
:func:`causal_pad` gives the zero padding of the plain pad-then-convolve form;
:class:`CausalConvReLU` is a fused form of ``relu(causal_conv(x))`` that computes the same
function without padded copies of the feature maps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from ..runtime import autocast_dtype

__all__ = ["CausalConvReLU", "causal_pad", "fused_causal", "use_fused"]

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


def use_fused() -> bool:
    """Whether the fused causal convolution is switched on (see :func:`fused_causal`)."""
    return _FUSED["causal"]


def causal_pad(kernel_size: int, ndim: int) -> tuple[int, ...]:
    """``F.pad`` widths that make a ``kernel_size`` convolution causal along Y.

    ``k - 1`` zero rows at the top and none at the bottom of Y; ``k // 2`` on both sides
    of X (and of Z in 3-D), the ordinary "same" padding.
    """
    half = kernel_size // 2
    return (half, half, kernel_size - 1, 0) + (half, half) * (ndim - 2)


def _conv(x: torch.Tensor) -> Callable[..., torch.Tensor]:
    """``F.conv2d`` or ``F.conv3d`` for a ``(B, C, *spatial)`` tensor."""
    return F.conv3d if x.ndim == 5 else F.conv2d


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a convolution runs in: the autocast dtype if autocast is on, else the inputs'."""
    return autocast_dtype(x) or torch.result_type(x, weight)


def _top_rows(x: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    """The first ``kh // 2`` rows of ``x``, zero-padded as the causal convolution sees them."""
    kh = kernel[-2]
    pads = (kernel[-1] // 2,) * 2 + (kh - 1, 0)
    if len(kernel) == 3:
        pads += (kernel[0] // 2,) * 2
    return F.pad(x[..., : kh // 2, :], pads)


class CausalConvReLU(torch.autograd.Function):
    """``relu(causal_conv(x))`` for a stride-1 kernel of odd size, without padded copies.

    Output row ``r`` must see input rows ``r - kh + 1 .. r`` (zeros above the image). For
    ``r >= h`` (``h = kh // 2``) that is row ``r - h`` of the ordinary "same" convolution,
    so the same convolution is computed once and its rows are moved down by ``h`` during
    the ReLU, which has to read and write every element anyway. The ``h`` top rows are a
    thin separate convolution. The backward mirrors this, so no full-size tensor is
    padded, cropped or accumulated. Works for ``(B, C, Y, X)`` and ``(B, C, Z, Y, X)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):  # noqa: D102
        dtype = _compute_dtype(x, weight)
        conv = _conv(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            kernel = tuple(w.shape[2:])
            h = kernel[-2] // 2
            y = conv(x, w, b, padding=[k // 2 for k in kernel])
            top = conv(_top_rows(x, kernel), w, b)
            out = torch.empty_like(y)
            torch.clamp_min(y[..., : y.shape[-2] - h, :], 0, out=out[..., h:, :])
            torch.clamp_min(top, 0, out=out[..., :h, :])
        ctx.save_for_backward(x, w, out)
        ctx.has_bias = bias is not None
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, w, out = ctx.saved_tensors
        kernel = tuple(w.shape[2:])
        kh, pw = kernel[-2], kernel[-1] // 2
        h = kh // 2
        rows = out.shape[-2]
        grad = grad.to(out.dtype)
        g_main = torch.empty_like(out)
        g_main[..., rows - h:, :].zero_()
        torch.ops.aten.threshold_backward.grad_input(
            grad[..., h:, :], out[..., h:, :], 0, grad_input=g_main[..., : rows - h, :]
        )
        g_top = torch.ops.aten.threshold_backward(grad[..., :h, :], out[..., :h, :], 0)
        need = ctx.needs_input_grad
        mask = [need[0], need[1], need[2] and ctx.has_bias]
        bias_sizes = [w.shape[0]] if ctx.has_bias else None
        conv_bwd = torch.ops.aten.convolution_backward
        ones, zeros = [1] * len(kernel), [0] * len(kernel)
        gx, gw, gb = conv_bwd(g_main, x, w, bias_sizes, ones, [k // 2 for k in kernel], ones,
                              False, zeros, 1, mask)
        top_x = _top_rows(x, kernel)
        tx, tw, tb = conv_bwd(g_top, top_x, w, bias_sizes, ones, zeros, ones, False,
                              zeros, 1, [need[0], mask[1], mask[2]])
        if gx is not None:
            # The top rows' input gradient without the zero padding of _top_rows.
            crop = (slice(kh - 1, None), slice(pw, tx.shape[-1] - pw))
            if len(kernel) == 3:
                pd = kernel[0] // 2
                crop = (slice(pd, tx.shape[-3] - pd), *crop)
            gx[..., :h, :] += tx[(..., *crop)]
        if gw is not None:
            gw = (gw + tw).to(ctx.dtypes[0])
        if gb is not None:
            gb = (gb + tb).to(ctx.dtypes[1])
        return gx, gw, gb
