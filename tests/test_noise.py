"""Synthetic noise and noise-level estimators, checked against noise of known level."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage
from skimage import data

from n2v_cascade.errors import InputError
from n2v_cascade.noise import (
    MIN_VARIANCE,
    NoiseSpec,
    add_noise,
    estimate_gaussian_sigma,
    estimate_poisson_gaussian,
    noise_variance,
    parse_noise_spec,
)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """256x256 float camera crop (0-255) with mostly flat sky: little texture to confuse MAD."""
    return data.camera()[:256, :256].astype(np.float64)


@pytest.fixture(scope="module")
def smooth_camera() -> np.ndarray:
    """Blurred 256x256 camera crop (0-255): smooth but with a wide range of signal levels."""
    return ndimage.gaussian_filter(data.camera().astype(np.float64), 3)[128:384, 128:384]


def two_level_image(low: float = 50.0, high: float = 200.0) -> np.ndarray:
    img = np.full((256, 512), low)
    img[:, 256:] = high
    return img


# --- NoiseSpec and parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gaussian:25", NoiseSpec(kind="gaussian", sigma=25)),
        ("poisson:30", NoiseSpec(kind="poisson", peak=30)),
        ("poisson-gaussian:30,5", NoiseSpec(kind="poisson-gaussian", peak=30, sigma=5)),
        (" Gaussian: 0.5 ", NoiseSpec(kind="gaussian", sigma=0.5)),
    ],
)
def test_parse_noise_spec(text: str, expected: NoiseSpec) -> None:
    spec = parse_noise_spec(text)
    assert spec == expected
    assert parse_noise_spec(str(spec)) == spec


@pytest.mark.parametrize("text", ["gaussian:25", "poisson:30", "poisson-gaussian:30,5"])
def test_str_is_canonical(text: str) -> None:
    assert str(parse_noise_spec(text)) == text


@given(
    kind=st.sampled_from(["gaussian", "poisson", "poisson-gaussian"]),
    a=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
    b=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
)
def test_str_round_trip_exact(kind: str, a: float, b: float) -> None:
    if kind == "gaussian":
        spec = NoiseSpec(kind=kind, sigma=a)
    elif kind == "poisson":
        spec = NoiseSpec(kind=kind, peak=a)
    else:
        spec = NoiseSpec(kind=kind, peak=a, sigma=b)
    assert parse_noise_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gaussian",
        "gaussian:",
        "gaussian:0",
        "gaussian:-5",
        "gaussian:nan",
        "gaussian:inf",
        "gaussian:1,2",
        "poisson:abc",
        "poisson:0",
        "poisson-gaussian:30",
        "poisson-gaussian:30,-1",
        "laplace:3",
    ],
)
def test_bad_noise_spec_raises_input_error(text: str) -> None:
    with pytest.raises(InputError, match="poisson-gaussian:PEAK,SIGMA") as info:
        parse_noise_spec(text)
    assert "\n" not in str(info.value)


def test_noise_spec_is_frozen_and_validated() -> None:
    spec = NoiseSpec(kind="gaussian", sigma=1.0)
    with pytest.raises(pydantic.ValidationError):
        spec.sigma = 2.0  # type: ignore[misc]
    for bad in (
        {"kind": "gaussian"},
        {"kind": "poisson", "peak": 10, "sigma": 1},
        {"kind": "poisson-gaussian", "peak": 10},
        {"kind": "gaussian", "sigma": -1},
    ):
        with pytest.raises(pydantic.ValidationError):
            NoiseSpec(**bad)


# --- add_noise ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["gaussian:10", "poisson:30", "poisson-gaussian:30,5"])
def test_add_noise_shape_dtype_determinism(text: str, clean_image: np.ndarray) -> None:
    spec = parse_noise_spec(text)
    before = clean_image.copy()
    a = add_noise(clean_image, spec, seed=3)
    assert a.shape == clean_image.shape and a.dtype == np.float32
    np.testing.assert_array_equal(clean_image, before)  # input untouched
    np.testing.assert_array_equal(a, add_noise(clean_image, spec, seed=3))
    assert not np.array_equal(a, add_noise(clean_image, spec, seed=4))


def test_gaussian_noise_has_requested_std(camera: np.ndarray) -> None:
    residual = add_noise(camera, parse_noise_spec("gaussian:25"), seed=0) - camera
    assert abs(residual.std() / 25 - 1) < 0.02
    assert abs(residual.mean()) < 0.5
    assert residual.min() < -camera.min()  # not clipped at zero


def test_gaussian_noise_keeps_uint8_scale() -> None:
    img = data.camera()[:64, :64]
    noisy = add_noise(img, NoiseSpec(kind="gaussian", sigma=5))
    assert abs(float(noisy.mean()) - float(img.mean())) < 1.0


@pytest.mark.parametrize("sigma", [0.0, 5.0])
def test_poisson_noise_mean_and_variance(sigma: float) -> None:
    img = two_level_image()
    peak = 40.0
    text = f"poisson-gaussian:{peak},{sigma}" if sigma else f"poisson:{peak}"
    noisy = add_noise(img, parse_noise_spec(text), seed=1)
    scale = peak / img.max()
    for level, region in ((50.0, noisy[:, :256]), (200.0, noisy[:, 256:])):
        assert abs(region.mean() / level - 1) < 0.01
        assert abs(region.var() / (level / scale + sigma**2) - 1) < 0.05
    assert noisy.max() > img.max()  # not clipped


def test_poisson_clips_negative_input_and_needs_positive_max() -> None:
    img = np.array([[-5.0, 0.0], [10.0, 20.0]])
    noisy = add_noise(img, NoiseSpec(kind="poisson", peak=5))
    assert noisy[0, 0] == 0 and noisy[0, 1] == 0
    with pytest.raises(InputError, match="positive maximum"):
        add_noise(np.zeros((4, 4)), NoiseSpec(kind="poisson", peak=5))


def test_add_noise_rejects_bad_inputs() -> None:
    spec = NoiseSpec(kind="gaussian", sigma=1)
    with pytest.raises(InputError, match="NaN"):
        add_noise(np.array([[np.nan, 1.0]]), spec)
    with pytest.raises(InputError, match="seed"):
        add_noise(np.ones((4, 4)), spec, seed=-1)


# --- estimators ---------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0])
def test_estimate_gaussian_sigma_within_10_percent(camera: np.ndarray, sigma: float) -> None:
    noisy = add_noise(camera, NoiseSpec(kind="gaussian", sigma=sigma), seed=0)
    assert abs(estimate_gaussian_sigma(noisy) / sigma - 1) < 0.10


def test_estimate_gaussian_sigma_stack_averages_slices(camera: np.ndarray) -> None:
    slices = [add_noise(camera, NoiseSpec(kind="gaussian", sigma=s), seed=0) for s in (10, 20)]
    per_slice = [estimate_gaussian_sigma(s) for s in slices]
    assert estimate_gaussian_sigma(np.stack(slices)) == pytest.approx(np.mean(per_slice))
    # a volume or a multichannel stack: the mean over all its YX planes
    four = np.stack([np.stack(slices)] * 2)
    assert estimate_gaussian_sigma(four) == pytest.approx(np.mean(per_slice))


@pytest.mark.parametrize("shape", [(64,), (4, 64)])
def test_estimators_reject_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="image"):
        estimate_gaussian_sigma(np.ones(shape))
    with pytest.raises(InputError, match="image"):
        estimate_poisson_gaussian(np.ones(shape))


def _check_fit(img: np.ndarray, a: float, b: float, scale: float, sigma: float) -> None:
    """Fitted gain within 12 %, predicted noise std over the mid-range within 10 %."""
    assert abs(a * scale - 1) < 0.12, (a, 1 / scale)
    mids = np.linspace(*np.percentile(img, [25, 75]), 11)
    predicted = np.sqrt(a * mids + b)
    true = np.sqrt(mids / scale + sigma**2)
    assert np.max(np.abs(predicted / true - 1)) < 0.10


@pytest.mark.parametrize(("peak", "sigma"), [(30.0, 0.0), (100.0, 0.0), (30.0, 5.0), (50.0, 3.0)])
def test_estimate_poisson_gaussian_known_gain(
    smooth_camera: np.ndarray, peak: float, sigma: float
) -> None:
    spec = NoiseSpec(kind="poisson-gaussian" if sigma else "poisson", peak=peak, sigma=sigma)
    noisy = add_noise(smooth_camera, spec, seed=0)
    a, b = estimate_poisson_gaussian(noisy)
    _check_fit(smooth_camera, a, b, peak / smooth_camera.max(), sigma)
    lo, hi = noisy.min(), noisy.max()
    assert a >= 0 and a * max(lo, 0) + b > 0 and a * hi + b > 0


def test_estimate_poisson_gaussian_on_stack(smooth_camera: np.ndarray) -> None:
    spec = NoiseSpec(kind="poisson-gaussian", peak=30, sigma=5)
    stack = np.stack([add_noise(smooth_camera, spec, seed=k) for k in range(3)])
    a, b = estimate_poisson_gaussian(stack)
    _check_fit(smooth_camera, a, b, 30 / smooth_camera.max(), 5.0)


def test_estimate_poisson_gaussian_on_pure_gaussian(smooth_camera: np.ndarray) -> None:
    noisy = add_noise(smooth_camera, NoiseSpec(kind="gaussian", sigma=10), seed=0)
    a, b = estimate_poisson_gaussian(noisy)
    mid = float(np.median(smooth_camera))
    assert a * mid < 0.1 * b  # signal-dependent part negligible
    assert abs(np.sqrt(a * mid + b) / 10 - 1) < 0.10


def test_estimate_poisson_gaussian_rejects_tiny_image() -> None:
    with pytest.raises(InputError, match="too small"):
        estimate_poisson_gaussian(np.random.default_rng(0).normal(100, 5, (16, 16)))


def test_estimate_poisson_gaussian_noise_free_image_stays_positive() -> None:
    a, b = estimate_poisson_gaussian(np.full((32, 32), 7.0))
    assert a >= 0 and b > 0


# --- noise_variance -----------------------------------------------------------------------


def test_noise_variance_numpy() -> None:
    signal = np.array([-3.0, 0.0, 2.0], dtype=np.float32)
    out = noise_variance(signal, a=2.0, b=1.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1.0, 1.0, 5.0])
    np.testing.assert_allclose(noise_variance(np.array([-1, 0, 4]), 0.5, 0.0), [1e-10, 1e-10, 2])


def test_noise_variance_torch_keeps_type_and_gradient() -> None:
    signal = torch.tensor([-1.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    out = noise_variance(signal, a=2.0, b=0.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert torch.allclose(out, torch.tensor([MIN_VARIANCE, MIN_VARIANCE, 6.0], dtype=out.dtype))
    out.sum().backward()
    assert signal.grad is not None and signal.grad[2] == 2.0


@pytest.mark.parametrize(("a", "b"), [(-1.0, 1.0), (float("nan"), 1.0), (1.0, float("inf"))])
def test_noise_variance_rejects_bad_parameters(a: float, b: float) -> None:
    with pytest.raises(InputError, match="noise model"):
        noise_variance(np.ones(3), a, b)


@pytest.mark.parametrize("a, b", [(2.0, 25.0), (0.5, 4.0)])
def test_bootstrap_noise_model_recovers_a_and_b(a: float, b: float) -> None:
    # with a perfect estimate the residual is the noise itself: the fit must find a, b
    from n2v_cascade.noise import bootstrap_noise_model

    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(5, 200, 256), (256, 1))
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(a * clean + b)
    fit = bootstrap_noise_model(noisy, clean, "poisson-gaussian")
    assert fit["a"] == pytest.approx(a, rel=0.1)
    assert fit["b"] == pytest.approx(b, abs=0.15 * b + 0.1 * a * 5)
    g = bootstrap_noise_model(clean + rng.normal(0, 7, clean.shape), clean, "gaussian")
    assert g["sigma"] == pytest.approx(7, rel=0.02)
    # an imperfect estimate adds its error: the noise model can only grow (the safe side)
    blurred = bootstrap_noise_model(noisy, clean + rng.normal(0, 3, clean.shape),
                                    "poisson-gaussian")
    assert blurred["a"] * 100 + blurred["b"] > a * 100 + b
    with pytest.raises(InputError, match="bootstrap noise model"):
        bootstrap_noise_model(noisy[:5, :5], clean[:5, :5], "gaussian")
