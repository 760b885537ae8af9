"""The clean-reference-free noise-correlation check and its use in training."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import tiny_config
from n2v_cascade.correlation import (
    CORRELATED,
    REACH_CORRELATED,
    estimate_noise_correlation,
    estimate_noise_reach,
    suggest_blind_radius,
)
from n2v_cascade.errors import InputError
from n2v_cascade.training import train


def _smooth(shape=(128, 128)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return 100 + 40 * np.sin(yy / 17.0) * np.cos(xx / 23.0)


def _correlated_noise(shape, rng, axis: int) -> np.ndarray:
    """Unit-variance noise whose neighbours along ``axis`` have correlation 0.5."""
    n = rng.normal(0, 1, (shape[0] + 1, shape[1] + 1))
    a, b = (n[:-1, :-1], n[1:, :-1]) if axis == 0 else (n[:-1, :-1], n[:-1, 1:])
    return (a + b) / np.sqrt(2)


def test_white_noise_is_not_correlated() -> None:
    rng = np.random.default_rng(0)
    corr = estimate_noise_correlation(_smooth() + rng.normal(0, 10, (128, 128)), max_lag=3)
    assert corr.shape == (3, 2)
    assert np.all(np.abs(corr) < 0.1)


@pytest.mark.parametrize("axis", [0, 1])
def test_correlated_noise_is_found_along_its_axis(axis: int) -> None:
    rng = np.random.default_rng(1)
    noisy = _smooth() + 10 * _correlated_noise((128, 128), rng, axis)
    corr = estimate_noise_correlation(noisy, max_lag=2)
    assert corr[0, axis] > 0.35  # true 0.5, minus the box filter's bias
    # the box high-pass biases the other entries slightly negative; none looks correlated
    assert abs(corr[0, 1 - axis]) < 0.15 and np.all(corr[1] < CORRELATED)


def _tapered_noise(shape, rng) -> np.ndarray:
    """Unit-variance noise blurred along X by taps (0.5, 1, 0.5): correlation 0.67 at one
    pixel and 0.17 at two, the profile of the FMD wide-field frames' noise."""
    t = rng.normal(0, 1, (shape[0], shape[1] + 2))
    return (0.5 * t[:, :-2] + t[:, 1:-1] + 0.5 * t[:, 2:]) / np.sqrt(1.5)


def test_a_correlation_over_two_pixels_hides_two() -> None:
    """The box high-pass reads the 0.17 at lag 2 as uncorrelated; the detrended reach
    finds it, so the suggested radius is 2 (it was 1); lag 3 (no correlation) stays out."""
    rng = np.random.default_rng(5)
    noisy = _smooth((256, 256)) + 10 * _tapered_noise((256, 256), rng)
    assert estimate_noise_correlation(noisy, 2)[1, 1] < CORRELATED
    reach = estimate_noise_reach(noisy, 3)
    assert reach[0, 1] > 0.5 and reach[1, 1] > REACH_CORRELATED
    assert abs(reach[2, 1]) < 0.05 and np.all(np.abs(reach[:, 0]) < 0.05)
    assert suggest_blind_radius([noisy])[0] == 2
    assert suggest_blind_radius([noisy], max_radius=3)[0] == 2


def test_the_reach_neither_starts_nor_extends_a_correlation_alone() -> None:
    """White noise reads about 0 at every lag, and noise correlated only between
    neighbours keeps radius 1: the reach only extends a lag-1 correlation."""
    rng = np.random.default_rng(6)
    white = _smooth((256, 256)) + rng.normal(0, 10, (256, 256))
    assert np.all(np.abs(estimate_noise_reach(white, 3)) < 0.05)
    assert suggest_blind_radius([white])[0] == 0
    pair = _smooth((256, 256)) + 10 * _correlated_noise((256, 256), rng, 1)
    assert suggest_blind_radius([pair], max_radius=3)[0] == 1


def test_suggested_radius_follows_the_share_of_correlated_pixels() -> None:
    rng = np.random.default_rng(2)
    white = [_smooth() + rng.normal(0, 10, (128, 128)) for _ in range(3)]
    corr = _smooth() + 10 * _correlated_noise((128, 128), rng, 1)
    assert suggest_blind_radius(white)[0] == 0
    assert suggest_blind_radius([*white, corr])[0] == 1  # a quarter of the pixels
    small = corr[:48, :48]  # 1.4% of the pixels: below the default 10% share
    assert suggest_blind_radius([*white, small])[0] == 0
    radius, values = suggest_blind_radius([*white, np.zeros((8, 8))])  # too small: skipped
    assert radius == 0 and values.shape == (4, 2, 2) and np.all(values[3] == 0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="at least 32x32"):
        estimate_noise_correlation(np.zeros((16, 64)))
    with pytest.raises(InputError, match="2-D real image"):
        estimate_noise_correlation(np.zeros((4, 64, 64)))
    with pytest.raises(InputError, match="NaN"):
        estimate_noise_correlation(np.full((64, 64), np.nan))
    assert np.all(estimate_noise_correlation(np.ones((64, 64))) == 0)


def test_training_warns_on_correlated_noise_and_auto_radius_hides_it() -> None:
    rng = np.random.default_rng(3)
    noisy = (_smooth() + 10 * _correlated_noise((128, 128), rng, 1)).astype(np.float32)
    with pytest.warns(UserWarning, match="spatially correlated.*--mask horizontal"):
        train(noisy, tiny_config(epochs=1, steps_per_epoch=1, mask={"struct": "none"}),
              progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default (struct auto) handles it: no warning
        model = train(noisy, tiny_config(epochs=1, steps_per_epoch=1), progress=False)
    assert model.config.mask.struct == "box:3" and model.method.kernel.shape == (3, 3)
    for radius in ("auto", None):  # None: the blind-spot backbone's default is auto
        model = train(noisy, tiny_config(variant="blindspot", epochs=1, steps_per_epoch=1,
                                         network={"depth": 2, "width": 8,
                                                  "blind_radius": radius}),
                      progress=False)
        assert model.config.network.blind_radius == 1
        assert model.network.shift == 2
    white = (_smooth() + rng.normal(0, 10, (128, 128))).astype(np.float32)
    model = train(white, tiny_config(variant="blindspot", epochs=1, steps_per_epoch=1),
                  progress=False)
    assert model.config.network.blind_radius == 0 and model.network.shift == 1
    assert model.config.mask.struct is None  # auto resolves to nothing for white noise
    model = train(white, tiny_config(epochs=1, steps_per_epoch=1), progress=False)
    assert model.config.mask.struct is None and model.method.kernel is None
    with pytest.warns(UserWarning, match="--blind-radius auto"):  # an explicit 0 is kept
        model = train(noisy, tiny_config(variant="blindspot", epochs=1, steps_per_epoch=1,
                                         network={"depth": 2, "width": 8, "blind_radius": 0}),
                      progress=False)
    assert model.network.shift == 1


def test_posterior_falls_back_to_the_prior_on_correlated_noise() -> None:
    rng = np.random.default_rng(4)
    white = (_smooth() + rng.normal(0, 10, (128, 128))).astype(np.float32)
    corr = (_smooth() + 10 * _correlated_noise((128, 128), rng, 0)).astype(np.float32)
    model = train(white, tiny_config(variant="probabilistic", backbone="blindspot", epochs=1,
                                     steps_per_epoch=2, noise_model={"sigma": 10.0}),
                  progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on white noise
        post = model.denoise(white, posterior=True, noise_model="stored")
    assert not np.array_equal(post, model.denoise(white))
    # the posterior uses the predicted variance calibrated on this image's residual
    from n2v_cascade.posterior import calibrate_variance, noise_variance, posterior_mean

    est = model.predict(white)
    var = calibrate_variance(white, est["mean"], est["var"])
    expected, _ = posterior_mean(est["mean"], var, white, noise_variance(est["mean"], model.noise))
    np.testing.assert_allclose(post, expected, rtol=1e-5, atol=1e-4)
    with pytest.warns(UserWarning, match="correlated.*beyond the model's blind spot"):
        post = model.denoise(corr, posterior=True)
    np.testing.assert_array_equal(post, model.denoise(corr))


def test_a_wide_auto_square_widens_the_grid_and_a_given_one_is_refused() -> None:
    """Noise correlated over 2 pixels gets a 5x5 square; around the structured grid of
    stride 4 that would hide every input pixel, so auto widens the grid to stride 6, and
    the same square given by hand is refused in one line."""
    rng = np.random.default_rng(4)
    taps = rng.normal(0, 1, (128, 131))
    noise = sum(taps[:, k:k + 128] for k in range(4)) / 2.0  # correlation 0.75, 0.5, 0.25
    noisy = (_smooth() + 10 * noise).astype(np.float32)
    assert suggest_blind_radius([noisy])[0] == 2
    model = train(noisy, tiny_config(epochs=1, steps_per_epoch=1), progress=False)
    assert model.config.variant == "structured" and model.config.mask.pattern == "grid"
    assert model.config.mask.struct == "box:5" and model.config.mask.stride == 6
    with pytest.raises(InputError, match="hides every input pixel.*--mask-stride"):
        tiny_config(mask={"struct": "box:5", "stride": 4})


def test_a_wide_auto_square_keeps_a_3d_grid() -> None:
    """In 3-D the YX square leaves the grid's other planes visible, so ``auto`` keeps the
    stride that it widens in 2-D."""
    from n2v_cascade.methods import get_method

    rng = np.random.default_rng(7)
    taps = rng.normal(0, 1, (128, 131))
    noisy = (_smooth() + 2.5 * sum(taps[:, k:k + 128] for k in range(4))).astype(np.float32)
    for dims, stride in ((2, 6), (3, 4)):
        changes, _ = get_method(tiny_config(dims=dims)).settings_for_data([noisy], ["a"])
        assert changes["mask"]["struct"] == "box:5"
        assert changes["mask"].get("stride", 4) == stride
