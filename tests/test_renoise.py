"""The ``renoise`` stage: its noise model, where it reads the noisy images, its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from n2v_cascade import train
from n2v_cascade.cascade import Cascade
from n2v_cascade.config import make_config
from n2v_cascade.errors import InputError
from n2v_cascade.methods import get_method
from n2v_cascade.methods.renoised import colouring_kernel, residual_spectrum, variance_line
from n2v_cascade.metrics import psnr

TINY = {"patch_size": 32, "batch_size": 4, "steps_per_epoch": 20,
        "network": {"depth": 2, "width": 8}}


def correlated_pair(seed: int = 0, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image and a copy with noise correlated along X (taper 0.5, 1, 0.5)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = (100 + 60 * np.sin(xx / 9) * np.cos(yy / 13)).astype(np.float32)
    noise = ndi.convolve1d(rng.normal(size=clean.shape), [0.5, 1, 0.5], axis=1) * 8
    return clean, (clean + noise).astype(np.float32)


def lag_correlation(x: np.ndarray, axis: int, lag: int) -> float:
    a = np.moveaxis(x, axis, -1)
    return float(np.corrcoef(a[..., :-lag].ravel(), a[..., lag:].ravel())[0, 1])


def fitted_noise(residuals: list[np.ndarray], clean: list[np.ndarray],
                 shape: tuple[int, ...]) -> np.ndarray:
    config = make_config("test", variant="renoise", patch_size=shape[-1])
    method = get_method(config)
    method.fit_noise(clean, [c + r for c, r in zip(clean, residuals, strict=True)], shape)
    base = torch.from_numpy(np.stack(clean)[:, None].astype(np.float32))
    return method.synthetic_noise(base, torch.Generator().manual_seed(1)).numpy()[:, 0]


def test_synthetic_noise_has_the_residuals_correlation_and_variance() -> None:
    rng = np.random.default_rng(0)
    residuals = [ndi.convolve1d(rng.normal(size=(128, 128)), [0.5, 1, 0.5], axis=1)
                 for _ in range(4)]  # lag 1 along X: 0.67, lag 2: 0.17, along Y: 0
    clean = [np.zeros((128, 128)) for _ in residuals]
    noise = fitted_noise(residuals, clean, (32, 32))
    assert lag_correlation(noise, -1, 1) == pytest.approx(0.67, abs=0.05)
    assert lag_correlation(noise, -1, 2) == pytest.approx(0.17, abs=0.05)
    assert abs(lag_correlation(noise, -2, 1)) < 0.05
    assert noise.var() == pytest.approx(np.var(residuals), rel=0.1)


def test_white_residuals_give_white_noise() -> None:
    rng = np.random.default_rng(1)
    residuals = [rng.normal(size=(96, 96)) for _ in range(3)]
    noise = fitted_noise(residuals, [np.zeros((96, 96))] * 3, (32, 32))
    assert abs(lag_correlation(noise, -1, 1)) < 0.05
    assert abs(lag_correlation(noise, -2, 1)) < 0.05


def test_the_colouring_kernel_works_in_3d() -> None:
    rng = np.random.default_rng(2)
    residuals = [ndi.convolve1d(rng.normal(size=(16, 64, 64)), [1, 1], axis=0)]
    amplitude = residual_spectrum(residuals, (8, 32, 32))
    kernel = colouring_kernel(amplitude)
    assert kernel.ndim == 3 and (kernel**2).sum() == pytest.approx(1.0)
    noise = fitted_noise(residuals, [np.zeros((16, 64, 64))], (8, 32, 32))[0]
    assert lag_correlation(noise, 0, 1) == pytest.approx(0.5, abs=0.07)
    assert abs(lag_correlation(noise, -1, 1)) < 0.07


def test_the_variance_line_follows_signal_dependent_noise() -> None:
    rng = np.random.default_rng(3)
    clean = [np.tile(np.linspace(0.0, 4.0, 128), (128, 1))]
    residuals = [rng.normal(size=(128, 128)) * np.sqrt(0.5 * clean[0] + 0.2)]
    a, b = variance_line(clean, residuals)
    assert a == pytest.approx(0.5, rel=0.15)
    assert b == pytest.approx(0.2, abs=0.1)


def test_a_renoise_stage_removes_correlated_noise_that_stage_1_left() -> None:
    clean, noisy = correlated_pair()
    cascade = Cascade(["structured", "renoise"], base=TINY, epochs=3, retrain_epochs=3)
    cascade.fit([noisy], progress=False, reference=[clean])
    first, second = (s["metrics"]["psnr"] for s in cascade.manifest["stages"])
    assert second > first + 1.0
    assert second > psnr(noisy, clean, 255.0) + 3.0


def test_the_stage_denoises_the_noisy_images_in_fit_and_in_a_chain() -> None:
    _, noisy = correlated_pair(4, 64)
    cascade = Cascade(["n2v", "renoise"], base=TINY, epochs=1, retrain_epochs=1)
    cascade.fit([noisy], progress=False)
    stage2 = cascade.models[1]
    final = cascade.outputs[-1][0]
    np.testing.assert_array_equal(final, stage2.denoise(noisy))
    assert not np.array_equal(final, stage2.denoise(cascade.outputs[0][0]))
    again = Cascade.from_models(cascade.models).denoise(noisy)
    np.testing.assert_array_equal(again, final)


def test_renoise_without_an_earlier_stage_is_refused() -> None:
    _, noisy = correlated_pair(5, 64)
    with pytest.raises(InputError, match="'renoise' learns from an earlier stage"):
        train(noisy, make_config("test", variant="renoise", **TINY), progress=False)
    with pytest.raises(InputError, match="stage 1: method 'renoise'"):
        Cascade(["renoise", "n2v"], base=TINY).fit([noisy], progress=False)


def test_noisy_images_of_another_shape_are_refused() -> None:
    _, noisy = correlated_pair(6, 64)
    with pytest.raises(InputError, match=r"noisy image of shape \(64, 96\)"):
        train(noisy, make_config("test", variant="renoise", **TINY), progress=False,
              noisy=np.ones((64, 96), np.float32) + noisy[:, :1])
