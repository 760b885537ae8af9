"""The networks on 3-D volumes: causal blocks, the six-view blind spot, odd shapes.

Tiny networks (width 4, depth 2) on volumes of a few hundred to a few thousand voxels.
The blind-spot checks are exact: gradients of the output at a voxel with respect to the
input are compared with 0, and the voxels that must be seen are required to be non-zero,
so a network gone blind everywhere fails too.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from n2v_cascade.models import BlindSpotNet, UNet, blocks
from n2v_cascade.models import blindspot as blindspot_module
from n2v_cascade.models.blocks import Conv, fused_causal, shift_down
from n2v_cascade.models.unet import UNetBackbone
from n2v_cascade.predict import probe_radius

W = 4  # width of the test networks
Voxel = tuple[int, int, int]

# BlindSpotNet(depth=2, width=4).state_dict() of the 2-D network as it was before the
# 3-D views existed: saved 2-D models must keep loading.
STATE_2D = [
    ("backbone.inc.conv1.conv.weight", (4, 1, 3, 3)), ("backbone.inc.conv1.conv.bias", (4,)),
    ("backbone.inc.conv2.conv.weight", (4, 4, 3, 3)), ("backbone.inc.conv2.conv.bias", (4,)),
    ("backbone.downs.0.conv.conv.weight", (4, 4, 3, 3)), ("backbone.downs.0.conv.conv.bias", (4,)),
    ("backbone.downs.1.conv.conv.weight", (8, 8, 3, 3)), ("backbone.downs.1.conv.conv.bias", (8,)),
    ("backbone.encoders.0.conv1.conv.weight", (8, 4, 3, 3)),
    ("backbone.encoders.0.conv1.conv.bias", (8,)),
    ("backbone.encoders.0.conv2.conv.weight", (8, 8, 3, 3)),
    ("backbone.encoders.0.conv2.conv.bias", (8,)),
    ("backbone.encoders.1.conv1.conv.weight", (16, 8, 3, 3)),
    ("backbone.encoders.1.conv1.conv.bias", (16,)),
    ("backbone.encoders.1.conv2.conv.weight", (16, 16, 3, 3)),
    ("backbone.encoders.1.conv2.conv.bias", (16,)),
    ("backbone.ups.0.conv.conv.weight", (4, 8, 3, 3)), ("backbone.ups.0.conv.conv.bias", (4,)),
    ("backbone.ups.1.conv.conv.weight", (8, 16, 3, 3)), ("backbone.ups.1.conv.conv.bias", (8,)),
    ("backbone.decoders.0.conv1.conv.weight", (4, 8, 3, 3)),
    ("backbone.decoders.0.conv1.conv.bias", (4,)),
    ("backbone.decoders.0.conv2.conv.weight", (4, 4, 3, 3)),
    ("backbone.decoders.0.conv2.conv.bias", (4,)),
    ("backbone.decoders.1.conv1.conv.weight", (8, 16, 3, 3)),
    ("backbone.decoders.1.conv1.conv.bias", (8,)),
    ("backbone.decoders.1.conv2.conv.weight", (8, 8, 3, 3)),
    ("backbone.decoders.1.conv2.conv.bias", (8,)),
    ("head.0.weight", (16, 16, 1, 1)), ("head.0.bias", (16,)),
    ("head.2.weight", (4, 16, 1, 1)), ("head.2.bias", (4,)),
    ("out.weight", (1, 4, 1, 1)), ("out.bias", (1,)),
]


def _voxels(shape: tuple[int, int, int], n: int, seed: int = 0) -> list[Voxel]:
    """The eight corners and the centre, plus random voxels: ``n`` in total."""
    corners = itertools.product(*[(0, s - 1) for s in shape])
    voxels = sorted({*corners, tuple(s // 2 for s in shape)})
    gen = torch.Generator().manual_seed(seed)
    while len(voxels) < n:
        v = tuple(int(torch.randint(s, (1,), generator=gen)) for s in shape)
        if v not in voxels:
            voxels.append(v)
    return voxels


def _positive(net: torch.nn.Module) -> torch.nn.Module:
    """Make every weight positive (random magnitudes) and every bias zero.

    With a non-negative input no ReLU is then ever off and no paths cancel, so an
    output's gradient is non-zero exactly where its receptive field reaches.
    """
    with torch.no_grad():
        for name, param in net.named_parameters():
            param.abs_() if name.endswith("weight") else param.zero_()
    return net


def _grads(net: torch.nn.Module, x: torch.Tensor, voxels: list[Voxel]) -> torch.Tensor:
    """``grads[i]``: the gradient of ``sum_c out[0, c, *voxels[i]]`` w.r.t. ``x[0]``.

    The samples of a batch are independent, so one backward pass through ``len(voxels)``
    copies of ``x`` gives every voxel's gradient.
    """
    batch = x.expand(len(voxels), *x.shape[1:]).clone().requires_grad_(True)
    out = net(batch)
    assert out.shape[2:] == x.shape[2:]
    picked = torch.stack([out[(i, slice(None), *v)].sum() for i, v in enumerate(voxels)])
    (grads,) = torch.autograd.grad(picked.sum(), batch)
    return grads


def _cube(v: Voxel, r: int) -> tuple[slice, ...]:
    """Index of the ``(2r + 1)^3`` cube around ``v`` (cut at the volume's border)."""
    return tuple(slice(max(0, c - r), c + r + 1) for c in v)


def _check_blind_cube(net: BlindSpotNet, x: torch.Tensor, voxels: list[Voxel],
                      sees_the_rest: bool = True) -> None:
    """Assert the hidden ``(2r+1)^3`` cube, every input channel; and that every voxel
    outside it is seen (diagonals and 6-neighbours of the cube included), or, for a
    network with signed weights whose ReLUs may be off, that the output is not blind."""
    r = net.shift - 1
    for v, grad in zip(voxels, _grads(net, x, voxels), strict=True):
        assert torch.all(grad[(slice(None), *_cube(v, r))] == 0), f"voxel {v} sees its cube"
        seen = grad.abs().sum(0) > 0  # over input channels
        if sees_the_rest:
            seen[_cube(v, r)] = True
            assert seen.all(), f"output {v} ignores inputs {seen.logical_not().nonzero()[:4]}"
        else:
            assert seen.any(), f"output {v} sees nothing"


# ------------------------------------------------------------------ causal blocks


@pytest.mark.parametrize("size", [(1, 1, 1), (2, 3, 4), (5, 7, 6)])
def test_fused_causal_conv_3d_matches_reference(size: tuple[int, int, int]) -> None:
    conv = Conv(3, 5, 3, ndim=3, shift=True, relu=True)
    results = []
    for fused in (False, True):
        conv.zero_grad()
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
        x.requires_grad_(True)
        with fused_causal(fused):
            out = conv(x)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        results.append([out.detach(), x.grad, conv.conv.weight.grad, conv.conv.bias.grad])
        if fused:
            assert "CausalConvReLU" in type(out.grad_fn).__name__
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_causal_conv_3d_looks_up_along_y_only(stride: int) -> None:
    """Output row R sees input rows <= stride * R; Z and X have "same" padding."""
    conv = Conv(2, 3, 3, stride=stride, ndim=3, shift=True, relu=False)
    x = torch.randn(1, 2, 5, 6, 7, requires_grad=True)
    out = conv(x)
    assert out.shape == (1, 3, *(-(-s // stride) for s in (5, 6, 7)))
    for z, y, xx in [(0, 0, 0), (1, 1, 2), (2, 2, 3)]:
        (grad,) = torch.autograd.grad(out[0, :, z, y, xx].sum(), x, retain_graph=True)
        seen = grad[0].abs().sum(0)
        cz, cy, cx = stride * z, stride * y, stride * xx
        assert torch.all(seen[:, cy + 1:] == 0)  # nothing below
        window = seen[max(0, cz - 1): cz + 2, max(0, cy - 2): cy + 1, max(0, cx - 1): cx + 2]
        assert torch.all(window > 0)  # the whole kernel above and to every side
        assert seen.count_nonzero() == window.numel()


def test_causal_backbone_3d_never_looks_down() -> None:
    """Strided convs, nearest upsampling and skips together stay causal along Y."""
    net = UNetBackbone(1, depth=2, width=W, ndim=3, shift=True)
    x = torch.randn(1, 1, 4, 8, 8, requires_grad=True)
    out = net(x)
    assert out.shape == (1, W, 4, 8, 8)
    for z, y, xx in [(0, 0, 0), (3, 3, 5), (1, 7, 7)]:
        (grad,) = torch.autograd.grad(out[0, :, z, y, xx].sum(), x, retain_graph=True)
        assert torch.all(grad[0, 0, :, y + 1:] == 0)
        assert grad[0, 0, :, y].abs().sum() > 0  # its own row is seen (before the shift)


def test_shift_down_moves_y_only_in_3d() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 1, 2, 3, 4)
    shifted = shift_down(x, 2)
    assert torch.all(shifted[..., :2, :] == 0)
    assert torch.equal(shifted[..., 2:, :], x[..., :1, :])


# ------------------------------------------------------------- 3-D blind spot


def test_blindspot_3d_hides_the_voxel_and_sees_around_it() -> None:
    net = BlindSpotNet(depth=2, width=W, ndim=3)
    voxels = _voxels((8, 12, 12), n=16)
    _check_blind_cube(net, torch.randn(1, 1, 8, 12, 12), voxels, sees_the_rest=False)
    _check_blind_cube(_positive(net), torch.rand(1, 1, 8, 12, 12), voxels)


def test_blindspot_3d_hides_every_channel_of_the_voxel() -> None:
    net = BlindSpotNet(in_channels=2, out_channels=2, depth=2, width=W, ndim=3)
    voxels = _voxels((5, 9, 7), n=12, seed=1)  # odd, anisotropic: padded, unequal views
    _check_blind_cube(net, torch.randn(1, 2, 5, 9, 7), voxels, sees_the_rest=False)
    _check_blind_cube(_positive(net), torch.rand(1, 2, 5, 9, 7), voxels)


def test_blindspot_3d_ring_residual_per_channel_stays_blind() -> None:
    """Joint channels with the ring mean: each channel's ring skips the voxel itself."""
    net = BlindSpotNet(in_channels=2, out_channels=2, depth=2, width=W, ndim=3,
                       ring_residual=True)
    voxels = _voxels((5, 9, 7), n=8, seed=3)
    _check_blind_cube(net, torch.randn(1, 2, 5, 9, 7), voxels, sees_the_rest=False)


@pytest.mark.parametrize("ring_residual", [False, True])
def test_blindspot_3d_radius_hides_the_whole_cube(ring_residual: bool) -> None:
    """blind_radius 1: the 3x3x3 cube, diagonal corners included, is hidden; every voxel
    outside it is seen."""
    net = BlindSpotNet(depth=2, width=W, ndim=3, blind_radius=1, ring_residual=ring_residual)
    voxels = _voxels((8, 12, 12), n=10, seed=2)
    _check_blind_cube(net, torch.randn(1, 1, 8, 12, 12), voxels, sees_the_rest=False)
    _check_blind_cube(_positive(net), torch.rand(1, 1, 8, 12, 12), voxels)


def test_blindspot_3d_test_detects_a_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: without the shift of each view the voxel itself leaks in."""
    monkeypatch.setattr(blindspot_module, "shift_down", lambda x, rows=1: x)
    net = BlindSpotNet(depth=2, width=W, ndim=3)
    voxels = _voxels((6, 8, 8), n=8)
    grads = _grads(net, torch.randn(1, 1, 6, 8, 8), voxels)
    assert all(g[(0, *v)] != 0 for v, g in zip(voxels, grads, strict=True))


def test_ring_residual_3d_is_the_shell_mean() -> None:
    for radius, count in [(0, 26), (1, 98)]:
        net = BlindSpotNet(depth=1, width=W, ndim=3, blind_radius=radius, ring_residual=True)
        ring = net.ring
        assert ring.shape == (1, 1, *(2 * radius + 3,) * 3)
        assert int(ring.count_nonzero()) == count
        torch.testing.assert_close(ring.sum(), torch.tensor(1.0))
        assert torch.all(ring[0, 0, 1:-1, 1:-1, 1:-1] == 0)


# -------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", [(1, 5, 6), (3, 8, 8), (5, 24, 40), (2, 3, 17)])
@pytest.mark.parametrize("depth", [2, 3])
def test_unet_3d_keeps_shape_with_few_slices(shape: tuple[int, int, int], depth: int) -> None:
    net = UNet(in_channels=2, out_channels=3, depth=depth, width=W, ndim=3)
    out = net(torch.randn(1, 2, *shape))
    assert out.shape == (1, 3, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 5, 6), (3, 8, 8), (5, 24, 40)])
@pytest.mark.parametrize("options", [{}, {"ring_residual": True, "blind_radius": 1}])
def test_blindspot_3d_keeps_shape(shape: tuple[int, int, int], options: dict) -> None:
    net = BlindSpotNet(out_channels=2, depth=2, width=W, ndim=3, **options)
    x = torch.randn(2, 1, *shape)
    out = net(x)
    assert out.shape == (2, 2, *shape)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError):
        net(torch.randn(1, 1, 8, 8))  # a 2-D image given to a 3-D network


# ----------------------------------------------------- inference path, precision


@pytest.mark.parametrize("shape", [(2, 1, 8, 8, 8), (1, 1, 3, 12, 20)])
@pytest.mark.parametrize("ring_residual", [False, True])
def test_blindspot_3d_inference_path_matches_training_path(
    shape: tuple[int, ...], ring_residual: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocks, "INFERENCE_CHUNK_PIXELS", 8**3)  # split batches too
    net = BlindSpotNet(out_channels=2, depth=2, width=W, ndim=3, ring_residual=ring_residual)
    x = torch.randn(shape)
    reference = net(x.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        fast = net(x)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_blindspot_3d_batched_and_looped_views_agree() -> None:
    net = BlindSpotNet(depth=2, width=W, ndim=3)
    x = torch.randn(1, 1, 4, 8, 12)  # three view shapes: (4, 8, 12), (4, 12, 8), (8, 4, 12)
    with torch.no_grad():
        batched = net.rotated_features(x, batched=True)
        looped = net.rotated_features(x, batched=False)
    assert batched.shape == (1, 6 * W, 4, 8, 12)
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)


def test_causal_conv_3d_runs_in_bf16_autocast() -> None:
    conv = Conv(2, 4, 3, ndim=3, shift=True, relu=True)
    x = torch.randn(2, 2, 3, 6, 5, requires_grad=True)
    reference = conv(x).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16 and out.shape == reference.shape
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, rtol=5e-2, atol=5e-2)
    out.float().sum().backward()
    assert conv.conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(conv.conv.weight.grad).all() and torch.isfinite(x.grad).all()

    net = BlindSpotNet(depth=2, width=W, ndim=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(torch.randn(1, 1, 4, 8, 8))
    assert y.shape == (1, 1, 4, 8, 8) and torch.isfinite(y.float()).all()


# --------------------------------------------------------- 2-D kept, receptive field


def test_blindspot_2d_state_dict_is_unchanged() -> None:
    state = BlindSpotNet(depth=2, width=W).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == STATE_2D
    three = BlindSpotNet(depth=2, width=W, ndim=3).state_dict()
    assert list(three) == [k for k, _ in STATE_2D]  # same names, 3-D kernels, six views
    assert three["head.0.weight"].shape == (6 * W, 6 * W, 1, 1, 1)
    assert three["backbone.inc.conv1.conv.weight"].shape == (W, 1, 3, 3, 3)


@pytest.mark.parametrize("cls", [UNet, BlindSpotNet])
def test_probe_radius_in_3d_equals_2d(cls: type) -> None:
    """Every axis of a 3-D network has the layers of one 2-D axis: the same reach."""
    flat = probe_radius(cls(depth=1, width=1), 2)
    assert probe_radius(cls(depth=1, width=1, ndim=3), 2, ndim=3, size=8) == flat > 0
