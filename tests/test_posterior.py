"""Posterior mean and the uncertainty map: calibrated, never overconfident."""

from __future__ import annotations

import numpy as np
import pytest

from n2v_cascade.posterior import RESIDUAL_WINDOW, combine, resolvable_signal_variance


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    clean = (100 + 40 * np.sin(6 * x) * np.cos(4 * y)).astype(np.float32)[None]
    noisy = (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)
    return clean, noisy


def test_an_overconfident_variance_does_not_make_a_certain_map() -> None:
    clean, noisy = _scene()
    # a prior mean that is off by 5 grey levels in one region, and a predicted noisy
    # variance below the noise's: the prior std would be 0 everywhere
    mean = clean.copy()
    mean[:, 30:60, 30:60] += 5.0
    est = {"mean": mean, "var": np.full_like(clean, 50.0)}
    noise = {"kind": "gaussian", "sigma": 10.0}
    for posterior in (False, True):
        _, std = combine(noisy, est, blind=True, blind_radius=0, posterior=posterior,
                         noise=noise)
        assert np.all(std > 0)
        values, counts = np.unique(std, return_counts=True)
        assert counts.max() / std.size < 0.05  # no single value covers the map
        # where the prior mean is off, the map says so
        assert np.median(std[:, 35:55, 35:55]) > 1.3 * np.median(std[:, 70:, 70:])


def test_floor_is_the_resolution_of_the_local_residual() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.normal(0, 10, (1, 128, 128)).astype(np.float32)
    floor = resolvable_signal_variance(noisy, np.zeros_like(noisy), np.full_like(noisy, 100.0))
    # pure noise around an exact prior mean: the floor is about sqrt(2 / n) * 100
    expected = np.sqrt(2.0 / RESIDUAL_WINDOW**2) * 100
    assert np.median(floor) == pytest.approx(expected, rel=0.35)


def test_a_calibrated_variance_is_left_as_it_is() -> None:
    clean, noisy = _scene(2)
    rng = np.random.default_rng(3)
    prior_err = rng.normal(0, 8, clean.shape).astype(np.float32)  # true prior std 8
    est = {"mean": clean + prior_err, "var": np.full_like(clean, 64.0 + 100.0)}
    _, std = combine(noisy, est, blind=True, blind_radius=0, posterior=False,
                     noise={"kind": "gaussian", "sigma": 10.0})
    assert np.median(std) == pytest.approx(8.0, rel=0.1)
