"""Neighbor2Neighbor: the random neighbour sub-sampler, its loss, training and the CLI."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import tifffile
import torch

from conftest import run_cli, tiny_config
from n2v_cascade import training as train_mod
from n2v_cascade.errors import InputError
from n2v_cascade.methods import get_method
from n2v_cascade.methods.neighbor2neighbor import (
    NEIGHBOUR_PAIRS,
    Neighbor2Neighbor,
    neighbour_pair,
    subsample,
)
from n2v_cascade.metrics import psnr
from n2v_cascade.model import Model
from n2v_cascade.training import TrainingInterrupted, train

N2N = {"variant": "neighbor2neighbor"}


def _positions(shape: tuple[int, int, int, int]) -> torch.Tensor:
    """A batch whose value at (row, col) is ``1000 * row + col`` (every channel)."""
    b, c, h, w = shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (1000 * rows + cols).double().expand(b, c, h, w).clone()


def test_sub_images_take_two_different_edge_neighbours_of_every_cell() -> None:
    x = _positions((3, 2, 12, 10))
    first, second = neighbour_pair(x.shape, torch.Generator().manual_seed(0))
    g1, g2 = subsample(x, first), subsample(x, second)
    assert g1.shape == g2.shape == (3, 2, 6, 5)
    assert torch.equal(g1[:, 0], g1[:, 1]) and torch.equal(g2[:, 0], g2[:, 1])  # channels alike
    r1, c1 = g1 // 1000, g1 % 1000
    r2, c2 = g2 // 1000, g2 % 1000
    cell_r, cell_c = torch.meshgrid(torch.arange(6), torch.arange(5), indexing="ij")
    for r, c in ((r1, c1), (r2, c2)):  # both pixels lie in their own cell
        assert torch.equal(r // 2, cell_r.expand_as(r).double())
        assert torch.equal(c // 2, cell_c.expand_as(c).double())
    steps = (r1 - r2).abs() + (c1 - c2).abs()
    assert torch.all(steps == 1)  # two pixels sharing an edge: never the same, never diagonal


def test_pairs_are_uniform_over_the_eight_ordered_neighbour_pairs() -> None:
    x = _positions((32, 1, 32, 32))  # 8192 cells
    first, second = neighbour_pair(x.shape, torch.Generator().manual_seed(1))
    code = (4 * first + second).flatten()
    counts = torch.bincount(code, minlength=16).double()
    allowed = (4 * NEIGHBOUR_PAIRS[:, 0] + NEIGHBOUR_PAIRS[:, 1]).tolist()
    assert set(torch.nonzero(counts).flatten().tolist()) == set(allowed)
    observed = counts[allowed]
    expected = code.numel() / 8
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 24.3, (chi2, observed)  # 7 degrees of freedom, p = 0.001
    # every pixel of a cell is as likely to be first as second
    assert torch.allclose(torch.bincount(first.flatten(), minlength=4).double() / expected,
                          torch.full((4,), 2.0, dtype=torch.float64), atol=0.15)


def test_sub_sampling_is_deterministic_for_a_seed() -> None:
    shape = torch.Size([4, 1, 16, 16])
    a = neighbour_pair(shape, torch.Generator().manual_seed(5))
    b = neighbour_pair(shape, torch.Generator().manual_seed(5))
    c = neighbour_pair(shape, torch.Generator().manual_seed(6))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


class _Run:
    """A stand-in for the training runner: a fixed function as the network."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def put(self, x):
        return x


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_step_loss_is_the_papers_loss(gamma: float) -> None:
    method = type("G", (Neighbor2Neighbor,), {"gamma": gamma})(tiny_config(**N2N))
    patches = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    f = lambda t: 0.7 * torch.tanh(t) + 0.1 * t.roll(1, dims=-1)  # noqa: E731 - a fake net
    loss = method.step_loss(patches, torch.Generator().manual_seed(3), _Run(f))
    first, second = neighbour_pair(patches.shape, torch.Generator().manual_seed(3))
    # by hand, cell by cell
    cells = patches.reshape(2, 1, 4, 2, 4, 2).permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 4, 4, 4)
    full = f(patches).reshape(2, 1, 4, 2, 4, 2).permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 4, 4, 4)
    g1 = torch.zeros(2, 1, 4, 4)
    g2, fy1, fy2 = g1.clone(), g1.clone(), g1.clone()
    for idx in np.ndindex(2, 1, 4, 4):
        g1[idx], g2[idx] = cells[idx][first[idx]], cells[idx][second[idx]]
        fy1[idx], fy2[idx] = full[idx][first[idx]], full[idx][second[idx]]
    diff = f(g1) - g2
    expected = (diff ** 2).mean() + gamma * ((diff - (fy1 - fy2)) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_regulariser_gets_no_gradient_through_the_full_patch() -> None:
    method = get_method(tiny_config(**N2N))
    net = method.build_network()
    seen = []
    net.register_forward_hook(lambda mod, inp, out: seen.append(torch.is_grad_enabled()))
    patches = torch.randn(2, 1, 16, 16)
    method.step_loss(patches, torch.Generator().manual_seed(0), _Run(net))
    assert seen == [True, False]  # sub-image with gradient, full patch without


def _train_config(**kw):
    values = dict(patch_size=32, batch_size=8, epochs=4, steps_per_epoch=25,
                  learning_rate=3e-3, network={"depth": 2, "width": 16}, **N2N)
    values.update(kw)
    return tiny_config(**values)


def test_denoises_gaussian_noise_and_reloads_identically(noisy_pair, tmp_path) -> None:
    clean, noisy = noisy_pair
    model = train(noisy, _train_config(), output_dir=tmp_path / "m", progress=False)
    assert isinstance(model.method, Neighbor2Neighbor)
    losses = [h["val_loss"] for h in model.history]
    assert losses[-1] < losses[0], losses
    out = model.denoise(noisy)
    assert psnr(out, clean, 1.0) > psnr(noisy, clean, 1.0) + 6.0
    loaded = Model.load(tmp_path / "m")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.denoise(noisy), out)


def test_resume_after_ctrl_c_is_bit_identical(noisy_pair, tmp_path, monkeypatch) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=2, steps_per_epoch=3, **N2N)
    straight = train(noisy, cfg, output_dir=tmp_path / "a", progress=False)
    calls = {"n": 0}
    original = train_mod._Loop._step

    def step_then_ctrl_c(self):
        loss = original(self)
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(train_mod._Loop, "_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted):
        train(noisy, cfg, output_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(train_mod._Loop, "_step", original)
    resumed = train(noisy, cfg, output_dir=tmp_path / "b", resume=True, progress=False)
    for x, y in zip(straight.network.state_dict().values(),
                    resumed.network.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_struct_masks_are_refused_and_correlated_noise_warns_with_its_advice() -> None:
    with pytest.raises(InputError, match="mask.struct: 'neighbor2neighbor' masks no pixels"):
        tiny_config(mask={"struct": "horizontal:3"}, **N2N)
    rng = np.random.default_rng(3)
    white = rng.normal(0, 1, (128, 129))
    correlated = (white[:, 1:] + white[:, :-1]).astype(np.float32)  # neighbours share noise
    method = get_method(tiny_config(**N2N))
    with pytest.warns(UserWarning, match="spatially correlated.*sub-images then share noise"):
        method.settings_for_data([correlated], ["stripes.tif"])


def test_trains_and_denoises_through_the_cli(noisy_pair, tmp_path, capsys) -> None:
    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(tmp_path / "m"),
                            "--variant", "neighbor2neighbor", "--epochs", "2",
                            "--steps-per-epoch", "3", "--patch-size", "16", "--depth", "2",
                            "--width", "8", "-q"], capsys)
    assert code == 0, err
    assert Model.load(tmp_path / "m").config.variant == "neighbor2neighbor"
    code, _, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "--model",
                            str(tmp_path / "m"), "-o", str(tmp_path / "out.tif"), "-q"], capsys)
    assert code == 0, err
    expected = Model.load(tmp_path / "m").denoise(noisy)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), expected)
