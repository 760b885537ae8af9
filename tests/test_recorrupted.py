"""Recorrupted-to-Recorrupted: the on-the-fly noise model, the re-corrupted pairs, training."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from conftest import run_cli, tiny_config
from n2v_cascade.errors import InputError
from n2v_cascade.methods import get_method
from n2v_cascade.methods.recorrupted import (
    Recorrupted,
    fit_noise_line,
    haar_detail,
    pixel_variance,
    recorrupt,
)
from n2v_cascade.metrics import psnr
from n2v_cascade.model import Model
from n2v_cascade.training import train

R2R = {"variant": "recorrupted"}


def _clean(batch: int = 8, size: int = 64) -> torch.Tensor:
    """Smooth patches with edges, values 0.2-1.0 (in normalised units)."""
    rows, cols = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size),
                                indexing="ij")
    img = 0.6 + 0.3 * torch.sin(6 * cols) * torch.cos(4 * rows)
    img[size // 3: size // 2, size // 3: size // 2] += 0.1
    return img.double().expand(batch, 1, size, size).clone()


def test_haar_detail_cancels_edges_and_ramps_and_keeps_the_noise_variance() -> None:
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    content = 3 * rows - 2 * cols + 5 * (cols > 7) + torch.sin(rows)
    assert torch.allclose(haar_detail(content[None, None]), torch.zeros(1, 1, 8, 8), atol=1e-5)
    noise = torch.randn(64, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(haar_detail(0.3 * noise).var()) == pytest.approx(0.09, rel=0.02)


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.04), (0.02, 0.0), (0.02, 0.0025)])
def test_noise_line_is_recovered_from_one_batch(a: float, b: float) -> None:
    gen = torch.Generator().manual_seed(1)
    clean = 0.1 + 1.9 * (_clean() - 0.3) / 0.8  # levels 0.1 - 2.0
    var = a * clean + b
    noisy = clean + var.sqrt() * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)
    fit_a, fit_b = fit_noise_line(noisy)
    assert fit_a == pytest.approx(a, abs=0.005)
    for level in (0.3, 1.8):
        assert fit_a * level + fit_b == pytest.approx(a * level + b, rel=0.15), level
    # the variance it gives each pixel is the true one within a few percent on average
    ratio = pixel_variance(noisy) / var
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.08)
    assert float((ratio - 1).abs().median()) < 0.15


def test_target_mean_is_y_and_input_variance_grows_by_alpha_squared_sigma_squared() -> None:
    gen = torch.Generator().manual_seed(2)
    sigma, alpha = 0.2, 0.5
    clean = _clean()
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)
    estimated = float(pixel_variance(y).mean())
    assert estimated == pytest.approx(sigma ** 2, rel=0.08)
    draws = [recorrupt(y, alpha, gen) for _ in range(100)]
    inputs = torch.stack([d[0] for d in draws])
    targets = torch.stack([d[1] for d in draws])
    # given y: the target is y on average, input and target spread by alpha^2 and 1/alpha^2
    # times the noise variance
    assert float((targets.mean(0) - y).abs().max()) < 5 * sigma / alpha / 10
    assert float((inputs - y).var()) == pytest.approx(alpha ** 2 * estimated, rel=0.02)
    assert float((targets - y).var()) == pytest.approx(estimated / alpha ** 2, rel=0.02)
    # against the clean image: input variance (1 + alpha^2) sigma^2, and the input's noise
    # is uncorrelated with the target's (the point of the method), while copying y would
    # exploit a covariance of sigma^2
    noise_in, noise_target = inputs - clean, targets - clean
    assert float(noise_in.var()) == pytest.approx((1 + alpha ** 2) * sigma ** 2, rel=0.1)
    cov = float((noise_in * noise_target).mean())
    assert abs(cov) < 0.1 * sigma ** 2, cov
    assert float(((y - clean) ** 2).mean()) == pytest.approx(sigma ** 2, rel=0.05)


def test_signal_dependent_pairs_are_uncorrelated_too() -> None:
    gen = torch.Generator().manual_seed(3)
    clean = _clean()
    var = 0.05 * clean + 0.001
    y = clean + var.sqrt() * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)
    inputs, targets = recorrupt(y, 0.5, gen)
    cov = float(((inputs - clean) * (targets - clean)).mean())
    assert abs(cov) < 0.05 * float(var.mean()), cov


def test_recorruption_is_deterministic_for_a_seed() -> None:
    y = _clean(batch=2, size=32) + 0.1
    a = recorrupt(y, 0.5, torch.Generator().manual_seed(4))
    b = recorrupt(y, 0.5, torch.Generator().manual_seed(4))
    c = recorrupt(y, 0.5, torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_denoises_gaussian_noise_and_reloads_identically(noisy_pair, tmp_path) -> None:
    clean, noisy = noisy_pair
    cfg = tiny_config(patch_size=32, batch_size=8, epochs=4, steps_per_epoch=25,
                      learning_rate=3e-3, network={"depth": 2, "width": 16}, **R2R)
    model = train(noisy, cfg, output_dir=tmp_path / "m", progress=False)
    assert isinstance(model.method, Recorrupted)
    losses = [h["val_loss"] for h in model.history]
    assert losses[-1] < losses[0], losses
    out = model.denoise(noisy)
    assert psnr(out, clean, 1.0) > psnr(noisy, clean, 1.0) + 6.0
    loaded = Model.load(tmp_path / "m")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.denoise(noisy), out)


def test_resume_gives_the_weights_of_one_run(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=3, steps_per_epoch=3, **R2R)
    straight = train(noisy, cfg, progress=False)
    stop = {"n": 0}

    def stop_at_four(info) -> bool:
        stop["n"] += 1
        return stop["n"] == 4

    train(noisy, cfg, output_dir=tmp_path / "m", progress=False, callbacks=[stop_at_four])
    resumed = train(noisy, cfg, output_dir=tmp_path / "m", resume=True, progress=False)
    for x, y in zip(straight.network.state_dict().values(),
                    resumed.network.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_struct_masks_are_refused_and_correlated_noise_warns_with_its_advice() -> None:
    with pytest.raises(InputError, match="mask.struct: 'recorrupted' masks no pixels"):
        tiny_config(mask={"struct": "vertical:3"}, **R2R)
    white = np.random.default_rng(3).normal(0, 1, (129, 128))
    correlated = (white[1:] + white[:-1]).astype(np.float32)
    with pytest.warns(UserWarning, match="spatially correlated.*input and target then share"):
        get_method(tiny_config(**R2R)).settings_for_data([correlated], ["stripes.tif"])


def test_trains_through_the_cli(noisy_pair, tmp_path, capsys) -> None:
    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(tmp_path / "m"),
                            "--variant", "recorrupted", "--epochs", "2", "--steps-per-epoch",
                            "3", "--patch-size", "16", "--depth", "2", "--width", "8", "-q"],
                           capsys)
    assert code == 0, err
    model = Model.load(tmp_path / "m")
    assert model.config.variant == "recorrupted" and model.config.learning_rate == 1e-3
