"""Returning a share of the observed pixel to a blind estimate (n2v_cascade.blend)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import convolve, gaussian_filter

from n2v_cascade.blend import (
    blend_setting,
    blend_weight,
    blended,
    residual_noise_line,
)
from n2v_cascade.errors import InputError


def _scene(size: int = 256, seed: int = 0) -> np.ndarray:
    """Textured clean image in 0..200: blobs and edges at several scales."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.normal(size=(size, size)), 2) * 60
    edges = (gaussian_filter(rng.normal(size=(size, size)), 12) > 0) * 80.0
    return np.clip(base + edges + 60, 0, 200)


def _ring_mean(y: np.ndarray) -> np.ndarray:
    """An estimate that never sees the pixel itself: the mean of its 5x5 ring."""
    kernel = np.ones((5, 5))
    kernel[2, 2] = 0
    return convolve(y, kernel / kernel.sum(), mode="reflect")


def _mse(a: np.ndarray, x: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - x) ** 2))


@pytest.mark.parametrize("noise", ["gaussian", "poisson-gaussian"])
def test_the_share_lowers_the_true_error_and_stays_below_the_best_one(noise) -> None:
    rng = np.random.default_rng(1)
    x = _scene()
    if noise == "gaussian":
        y = x + rng.normal(0, 12, x.shape)
    else:  # variance 0.5 * x + 25
        y = 0.5 * rng.poisson(x / 0.5) + rng.normal(0, 5, x.shape)
    p = _ring_mean(y)
    d = y - p
    best = float(np.sum(d * (x - p)) / np.sum(d * d))  # needs the truth
    w = blend_weight(y.astype(np.float32), p.astype(np.float32))
    assert 0.0 < w <= best  # errs towards too much noise: a smaller share
    out = blended(y.astype(np.float32), p.astype(np.float32), w)
    assert out.dtype == np.float32
    assert _mse(out, x) < 0.9 * _mse(p, x)
    np.testing.assert_allclose(out, p + np.float32(w) * (y - p), rtol=1e-5, atol=1e-3)


def test_an_exact_estimate_gets_no_share_and_the_noise_line_is_read() -> None:
    # p = the clean image: the residual is pure noise, so the reading is the noise line
    # (the chi-square quantile correction) and nothing is left to return
    rng = np.random.default_rng(2)
    x = _scene(384)
    y = x + rng.normal(0, np.sqrt(0.3 * x + 16))
    a, b = residual_noise_line(y, x)
    assert a == pytest.approx(0.3, rel=0.1) and b == pytest.approx(16, rel=0.2)
    assert blend_weight(y, x) < 0.03


def test_too_small_or_flat_inputs_get_no_share() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(100, 5, (24, 24))  # 9 whole blocks: too few to read the noise
    assert residual_noise_line(y, np.full_like(y, 100.0)) is None
    assert blend_weight(y, np.full_like(y, 100.0)) == 0.0
    assert blend_weight(np.ones((64, 64)), np.ones((64, 64))) == 0.0  # no residual


def test_settings_parse_and_bad_ones_are_refused_in_one_line() -> None:
    assert blend_setting("auto") is None and blend_setting(" AUTO ") is None
    assert blend_setting("none") == 0.0 and blend_setting("0.25") == 0.25
    assert blend_setting(1) == 1.0
    for bad in ("1.5", -0.1, "half", float("nan")):
        with pytest.raises(InputError, match="blend must be auto, none or a share in"):
            blend_setting(bad)


# -- through a trained model and the CLI ------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Tiny structured, structured with a 3x3 square, and neighbor2neighbor models."""
    from conftest import tiny_config
    from n2v_cascade.training import train

    rng = np.random.default_rng(4)
    x = _scene(64, seed=4) / 200
    noisy = (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)
    root = tmp_path_factory.mktemp("blend")
    made = {}
    for name, extra in (("structured", {}), ("square", {"mask": {"struct": "box:3"}}),
                        ("neighbor2neighbor", {})):
        variant = "neighbor2neighbor" if name == "neighbor2neighbor" else "structured"
        cfg = tiny_config(epochs=1, steps_per_epoch=10, variant=variant, **extra)
        made[name] = train(noisy, cfg, output_dir=root / name, progress=False)
    made["noisy"], made["root"] = noisy, root
    return made


def test_denoise_returns_the_share_it_reports(models) -> None:
    model, y = models["structured"], models["noisy"]
    prior = model.predict(y)["mean"]
    assert np.array_equal(model.denoise(y, blend="none"), prior)
    info: list = []
    auto = model.denoise(y, info=info)
    w = info[0]["blend"]
    assert w == blend_weight(y, prior) and 0.0 < w < 1.0
    np.testing.assert_allclose(auto, blended(y, prior, w), atol=1e-6)
    np.testing.assert_allclose(model.denoise(y, blend=0.5), 0.5 * (prior + y), atol=1e-6)
    stack = model.denoise(np.stack([y, y[::-1]]), info=(two := []))  # per image
    flipped = y[::-1].copy()
    assert [r["blend"] for r in two] == [
        w, blend_weight(flipped, model.predict(flipped)["mean"])]
    np.testing.assert_allclose(stack[0], auto, atol=1e-6)


def test_no_share_where_the_pixel_was_seen_or_the_noise_is_correlated(models) -> None:
    from n2v_cascade.stages import estimate_fn, stage_outputs

    y = models["noisy"]
    dense = models["neighbor2neighbor"]  # trained on every pixel's own value
    assert np.array_equal(dense.denoise(y), dense.predict(y)["mean"])
    with pytest.raises(InputError, match="not to 'neighbor2neighbor'"):
        dense.denoise(y, blend=0.5)
    square = models["square"]  # the square says the noise is correlated: auto gives none
    info: list = []
    prior = square.predict(y)["mean"]
    assert np.array_equal(square.denoise(y, info=info), prior) and info[0]["blend"] == 0.0
    np.testing.assert_allclose(square.denoise(y, blend=0.25), blended(y, prior, 0.25),
                               atol=1e-6)
    model = models["structured"]  # a cascade stage passes on the network's estimate
    outputs, _ = stage_outputs(model, [y])
    assert np.array_equal(outputs[0], model.predict(y)["mean"])
    assert np.array_equal(estimate_fn(model)(y), model.predict(y)["mean"])


def test_cli_blend_option(models, tmp_path, capsys) -> None:
    import tifffile

    from conftest import run_cli

    src = tmp_path / "in.tif"
    tifffile.imwrite(src, models["noisy"])
    folder = str(models["root"] / "structured")
    code, out, err = run_cli(["denoise", str(src), "-m", folder, "-o", str(tmp_path / "a.tif")],
                             capsys)
    assert code == 0, err
    assert "of the measured value blended back (--blend)" in out + err
    code, _, err = run_cli(["denoise", str(src), "-m", folder, "-o", str(tmp_path / "b.tif"),
                            "--blend", "none"], capsys)
    assert code == 0, err
    prior = models["structured"].predict(models["noisy"])["mean"]
    np.testing.assert_allclose(tifffile.imread(tmp_path / "b.tif"), prior, atol=1e-6)
    assert not np.allclose(tifffile.imread(tmp_path / "a.tif"), prior, atol=1e-4)
    code, _, err = run_cli(["denoise", str(src), "-m", folder, "-o", str(tmp_path / "c.tif"),
                            "--blend", "2"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "blend must be auto, none or a share in [0, 1], got '2'" in err
    assert not (tmp_path / "c.tif").exists()
