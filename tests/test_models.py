"""Tests of the U-Net backbone and the blind-spot network (tiny networks, small images)."""

from __future__ import annotations

import math

import pytest
import torch

from n2v_cascade.errors import InputError
from n2v_cascade.models import BlindSpotNet, UNet, count_parameters
from n2v_cascade.models import blindspot as blindspot_module
from n2v_cascade.models.blocks import Down, MaxBlurPool

W = 8  # width of the test networks


def _pixels(h: int, w: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Corners, border midpoints and the centre, plus random pixels: ``n`` in total."""
    fixed = {(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)}
    fixed |= {(0, w // 2), (h - 1, w // 2), (h // 2, 0), (h // 2, w - 1), (h // 2, w // 2)}
    gen = torch.Generator().manual_seed(seed)
    pixels = sorted(fixed)
    while len(pixels) < n:
        p = (int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen)))
        if p not in pixels:
            pixels.append(p)
    return pixels


def _neighbourhood(i: int, j: int, h: int, w: int, radius: float = 3.0) -> list[tuple[int, int]]:
    """In-image pixels within ``radius`` of ``(i, j)``, excluding ``(i, j)`` itself."""
    r = math.floor(radius)
    return [
        (a, b)
        for a in range(max(0, i - r), min(h, i + r + 1))
        for b in range(max(0, j - r), min(w, j + r + 1))
        if (a, b) != (i, j) and (a - i) ** 2 + (b - j) ** 2 <= radius**2
    ]


def _input_grad(net: torch.nn.Module, x: torch.Tensor, pixels: list[tuple[int, int]]):
    """Yield ``(i, j, grad)``: the gradient of ``sum_c out[0, c, i, j]`` w.r.t. ``x[0]``."""
    x = x.clone().requires_grad_(True)
    out = net(x)
    assert out.shape[-2:] == x.shape[-2:]
    for i, j in pixels:
        (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        yield i, j, grad[0]


def _check_blind_spot(net: torch.nn.Module, x: torch.Tensor, pixels: list[tuple[int, int]]):
    """Assert the exact blind spot and a non-zero response to every nearby pixel."""
    h, w = x.shape[-2:]
    for i, j, grad in _input_grad(net, x, pixels):
        assert torch.all(grad[:, i, j] == 0), f"pixel {(i, j)} sees itself: {grad[:, i, j]}"
        magnitude = grad.abs().sum(0)
        for a, b in _neighbourhood(i, j, h, w):
            assert magnitude[a, b] > 0, f"output {(i, j)} ignores input {(a, b)}"


# --------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("size", [(17, 23), (32, 32), (1, 1), (33, 8)])
@pytest.mark.parametrize("blurpool", [False, True])
@pytest.mark.parametrize("top_skip", [True, False])
def test_unet_keeps_shape(size: tuple[int, int], blurpool: bool, top_skip: bool) -> None:
    net = UNet(depth=3, width=W, blurpool=blurpool, top_skip=top_skip)
    x = torch.randn(2, 1, *size)
    out = net(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_3d_volume() -> None:
    for blurpool in (False, True):
        net = UNet(depth=2, width=W, ndim=3, blurpool=blurpool)
        x = torch.randn(1, 1, 5, 9, 12)
        assert net(x).shape == x.shape
    with pytest.raises(ValueError):
        net(torch.randn(1, 1, 9, 12))  # a 2-D image given to a 3-D network


def test_unet_out_channels() -> None:
    x = torch.randn(2, 1, 15, 10)
    assert UNet(out_channels=2, depth=2, width=W)(x).shape == (2, 2, 15, 10)
    assert UNet(in_channels=3, depth=2, width=W)(torch.randn(1, 3, 9, 9)).shape == (1, 1, 9, 9)
    with pytest.raises(ValueError):
        UNet(depth=2, width=W)(torch.randn(1, 2, 8, 8))  # wrong channel count


def test_parameter_count_depends_on_width_and_depth() -> None:
    small = count_parameters(UNet(depth=2, width=8))
    assert count_parameters(UNet(depth=2, width=16)) > small
    assert count_parameters(UNet(depth=3, width=8)) > small
    # The default configuration (3 levels down, width 32), pinned to catch silent changes.
    assert count_parameters(UNet()) == 2_333_825
    assert count_parameters(BlindSpotNet()) == 2_354_465


def test_blurpool_has_fixed_kernel_and_keeps_shapes_for_odd_sizes() -> None:
    pool = MaxBlurPool(3)
    assert count_parameters(pool) == 0
    assert torch.allclose(pool.blur.sum(dim=(-2, -1)), torch.ones(3, 1))
    assert torch.allclose(pool(torch.full((1, 3, 7, 7), 2.5)), torch.full((1, 3, 4, 4), 2.5))
    strided, blurred = Down(4), Down(4, blurpool=True)
    for h, w in [(1, 1), (2, 3), (5, 7), (9, 4), (17, 23)]:
        x = torch.randn(1, 4, h, w)
        expected = (1, 4, math.ceil(h / 2), math.ceil(w / 2))
        assert strided(x).shape == blurred(x).shape == expected
    pool3d = MaxBlurPool(2, ndim=3)
    assert pool3d(torch.randn(1, 2, 3, 5, 6)).shape == (1, 2, 2, 3, 3)


def test_top_skip_false_removes_full_resolution_skip() -> None:
    with_skip, no_skip = UNet(depth=3, width=W), UNet(depth=3, width=W, top_skip=False)
    top = with_skip.backbone.decoders[0].conv1.conv.weight
    assert top.shape[1] == 2 * W
    assert no_skip.backbone.decoders[0].conv1.conv.weight.shape[1] == W
    # Lower levels keep their skips.
    assert no_skip.backbone.decoders[1].conv1.conv.weight.shape[1] == 4 * W

    seen: list[int] = []
    no_skip.backbone.decoders[0].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].shape[1])
    )
    no_skip(torch.randn(1, 1, 16, 16))
    assert seen == [W]


def test_unet_is_not_blind() -> None:
    """Negative control: a plain U-Net's output does depend on its own input pixel."""
    net = UNet(depth=3, width=W)
    x = torch.randn(1, 1, 12, 12)
    for i, j, grad in _input_grad(net, x, _pixels(12, 12, 10)):
        assert grad[0, i, j] != 0


# ---------------------------------------------------------------- blind-spot network


def test_blindspot_rejects_other_ndim() -> None:
    with pytest.raises(InputError, match="ndim"):
        BlindSpotNet(ndim=4)


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (13, 5), (17, 23), (33, 8)])
def test_blindspot_keeps_shape(size: tuple[int, int]) -> None:
    net = BlindSpotNet(in_channels=2, out_channels=3, depth=3, width=W)
    out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_blindspot_full_jacobian_diagonal_is_zero() -> None:
    """Every pixel of a 12x12 image: d out[i, j] / d in[i, j] == 0 exactly."""
    net = BlindSpotNet(depth=3, width=W)
    x = torch.randn(1, 1, 12, 12)
    jac = torch.autograd.functional.jacobian(net, x).reshape(144, 144)
    assert torch.all(jac.diagonal() == 0)
    # ... and every other pixel within radius 3 does matter.
    for i in range(12):
        for j in range(12):
            row = jac[i * 12 + j].reshape(12, 12)
            assert all(row[a, b] != 0 for a, b in _neighbourhood(i, j, 12, 12))


@pytest.mark.parametrize("size", [(24, 24), (20, 28)])
@pytest.mark.parametrize("train", [True, False])
def test_blindspot_property_sampled(size: tuple[int, int], train: bool) -> None:
    net = BlindSpotNet(depth=3, width=W).train(train)
    _check_blind_spot(net, torch.randn(1, 1, *size), _pixels(*size, n=50))


def test_blindspot_property_multichannel_odd_size() -> None:
    net = BlindSpotNet(in_channels=2, out_channels=2, depth=2, width=W)
    _check_blind_spot(net, torch.randn(1, 2, 11, 15), _pixels(11, 15, n=20))


def test_blindspot_test_detects_a_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: without the final one-row shift the centre pixel leaks in."""
    monkeypatch.setattr(blindspot_module, "shift_down", lambda x, rows=1: x)
    net = BlindSpotNet(depth=2, width=W)
    x = torch.randn(1, 1, 12, 12)
    leaks = [grad[0, i, j] != 0 for i, j, grad in _input_grad(net, x, _pixels(12, 12, 10))]
    assert all(leaks)


@pytest.mark.parametrize("radius", [1, 2])
def test_blindspot_radius_hides_the_whole_square(radius: int) -> None:
    """blind_radius r: out[i, j] ignores the (2r+1)^2 square around (i, j), sees the ring."""
    net = BlindSpotNet(depth=2, width=W, blind_radius=radius)
    x = torch.randn(1, 1, 12, 12)
    jac = torch.autograd.functional.jacobian(net, x).reshape(12, 12, 12, 12)
    for i in range(12):
        for j in range(12):
            row = jac[i, j]
            square = row[max(0, i - radius): i + radius + 1, max(0, j - radius): j + radius + 1]
            assert torch.all(square == 0), f"output {(i, j)} sees its blind square"
            ring = [(a, b) for a, b in _neighbourhood(i, j, 12, 12, radius + 2.0)
                    if max(abs(a - i), abs(b - j)) > radius]
            assert all(row[a, b] != 0 for a, b in ring), f"output {(i, j)} ignores its ring"
    with torch.no_grad():  # the memory-saving inference path computes the same
        inferred = net(x)
    torch.testing.assert_close(inferred, net(x).detach(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="blind_radius"):
        BlindSpotNet(blind_radius=-1)


def test_blindspot_batched_and_looped_rotations_agree() -> None:
    net = BlindSpotNet(depth=2, width=W)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        batched = net.rotated_features(x, batched=True)
        looped = net.rotated_features(x, batched=False)
    assert batched.shape == (2, 4 * W, 16, 16)
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)
