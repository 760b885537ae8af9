"""The speed/memory forms of the networks compute the same function as the reference forms.

* The fused causal convolution (one "same" convolution whose rows are moved down during
  the ReLU) equals the plain pad-then-convolve form, values and gradients.
* Without autograd (prediction) large batches are split into chunks and the blind-spot
  network holds one rotation at a time; the outputs equal the autograd path, and the
  blind spot stays exact.
"""

from __future__ import annotations

import pytest
import torch

from n2v_cascade.models import BlindSpotNet, UNet, blocks
from n2v_cascade.models.blocks import Conv, fused_causal
from n2v_cascade.models.unet import UNetBackbone


def _run(module: torch.nn.Module, x: torch.Tensor, fused: bool):
    """Output and the gradients of a fixed scalar loss (input, then every parameter)."""
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    with fused_causal(fused):
        out = module(x)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out.detach(), [g.clone() for g in grads]


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (2, 3), (7, 9), (16, 16)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_causal_conv_matches_reference(size: tuple[int, int], channels_last: bool) -> None:
    conv = Conv(3, 5, 3, shift=True, relu=True)
    x = torch.randn(2, 3, *size)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ref_out, ref_grads = _run(conv, x, fused=False)
    out, grads = _run(conv, x, fused=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fused_causal_backbone_matches_reference_fp32_and_bf16() -> None:
    net = UNetBackbone(1, depth=3, width=8, shift=True, growth=1.5)
    x = torch.randn(2, 1, 32, 24)
    ref_out, ref_grads = _run(net, x, fused=False)
    out, grads = _run(net, x, fused=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref16, grads16 = _run(net, x, fused=False)
        out16, fused16 = _run(net, x, fused=True)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), ref16.float(), rtol=2e-2, atol=2e-2)
    for got, expected in zip(fused16[1:], grads16[1:], strict=True):
        assert got.dtype == torch.float32  # parameter gradients stay float32
        scale = expected.abs().max().clamp_min(1e-6)
        assert (got - expected).abs().max() / scale < 5e-2


def test_fused_form_is_the_default() -> None:
    conv = Conv(2, 2, 3, shift=True, relu=True)
    out = conv(torch.randn(1, 2, 5, 5, requires_grad=True))
    assert "CausalConvReLU" in type(out.grad_fn).__name__


@pytest.mark.parametrize("cls", [UNet, BlindSpotNet])
def test_inference_path_matches_autograd_path(cls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "INFERENCE_CHUNK_PIXELS", 24 * 24)  # force batch splitting
    net = cls(depth=2, width=8, out_channels=2).eval()
    for shape in [(3, 1, 24, 24), (2, 1, 13, 30), (1, 1, 8, 8)]:
        x = torch.randn(shape)
        with torch.enable_grad():
            reference = net(x.requires_grad_(True)).detach()
        with torch.inference_mode():
            fast = net(x.detach())
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_inference_path_keeps_the_blind_spot() -> None:
    net = BlindSpotNet(depth=2, width=8).eval()
    x = torch.randn(1, 1, 20, 20)
    with torch.inference_mode():
        base = net(x)
        for i, j in [(0, 0), (7, 12), (19, 19), (10, 0)]:
            bumped = x.clone()
            bumped[0, 0, i, j] += 100.0
            out = net(bumped)
            assert torch.allclose(out[0, 0, i, j], base[0, 0, i, j], atol=1e-4)
            assert not torch.allclose(out, base, atol=1e-4)  # the bump is seen elsewhere
