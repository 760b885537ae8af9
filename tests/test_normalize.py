"""Normalizer: pooled statistics, round trips, NumPy and torch, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
import torch

from n2v_cascade.errors import InputError
from n2v_cascade.normalize import Normalizer


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.normal(100, 10, (32, 48)).astype(np.float32),
        rng.normal(300, 30, (3, 20, 20)).astype(np.float32),
        rng.integers(0, 1000, (17, 5)).astype(np.uint16),
    ]


def test_fit_pools_all_pixels(images: list[np.ndarray]) -> None:
    pooled = np.concatenate([im.astype(np.float64).ravel() for im in images])
    norm = Normalizer.fit(images)
    assert norm.mean == pytest.approx(pooled.mean(), rel=1e-12)
    assert norm.std == pytest.approx(pooled.std(), rel=1e-12)


def test_normalised_training_data_has_mean_0_std_1(images: list[np.ndarray]) -> None:
    norm = Normalizer.fit(images)
    pooled = np.concatenate([norm.apply(im).astype(np.float64).ravel() for im in images])
    assert abs(pooled.mean()) < 1e-5
    assert pooled.std() == pytest.approx(1.0, abs=1e-5)


def test_numpy_round_trip(images: list[np.ndarray]) -> None:
    norm = Normalizer.fit(images)
    for im in images:
        out = norm.apply(im)
        assert out.dtype == np.float32 and out.shape == im.shape
        back = norm.undo(out)
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, im.astype(np.float64), rtol=1e-5, atol=1e-3)


def test_large_offset_uint16_keeps_precision() -> None:
    im = (30000 + np.arange(64 * 64) % 7).astype(np.uint16).reshape(64, 64)
    norm = Normalizer.fit([im])
    np.testing.assert_allclose(norm.undo(norm.apply(im)), im, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_round_trip_keeps_dtype_and_gradient(dtype: torch.dtype) -> None:
    norm = Normalizer(mean=5.0, std=2.0)
    x = torch.tensor([[1.0, 5.0, 9.0]], dtype=dtype, requires_grad=True)
    y = norm.apply(x)
    assert isinstance(y, torch.Tensor) and y.dtype == dtype
    assert torch.allclose(y, torch.tensor([[-2.0, 0.0, 2.0]], dtype=dtype))
    assert torch.allclose(norm.undo(y), x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.5))


def test_torch_and_numpy_agree() -> None:
    norm = Normalizer(mean=-3.0, std=4.0)
    arr = np.linspace(-10, 10, 21, dtype=np.float32)
    np.testing.assert_allclose(norm.apply(torch.from_numpy(arr)).numpy(), norm.apply(arr))
    assert norm.apply(torch.arange(3)).dtype == torch.float32  # integer tensors -> float32


def test_undo_variance() -> None:
    norm = Normalizer(mean=100.0, std=3.0)
    np.testing.assert_allclose(norm.undo_variance(np.array([1.0, 2.0])), [9.0, 18.0])
    assert torch.allclose(norm.undo_variance(torch.tensor([0.5])), torch.tensor([4.5]))
    # A variance of normalised data maps back like the data's spread (not shifted).
    x = np.random.default_rng(1).normal(0, 1, 10_000)
    assert norm.undo(x).var() == pytest.approx(float(norm.undo_variance(x.var())), rel=1e-5)


def test_serialisation_round_trip(images: list[np.ndarray]) -> None:
    norm = Normalizer.fit(images)
    text = json.dumps(norm.model_dump())
    assert Normalizer.model_validate(json.loads(text)) == norm
    assert Normalizer.model_validate_json(norm.model_dump_json()) == norm


@pytest.mark.parametrize(
    "fields", [{"mean": 0.0, "std": 0.0}, {"mean": 0.0, "std": -1.0}, {"mean": np.nan, "std": 1.0}]
)
def test_invalid_fields_rejected(fields: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Normalizer.model_validate(fields)


def test_constant_images_raise() -> None:
    with pytest.raises(InputError, match="constant"):
        Normalizer.fit([np.full((8, 8), 4.0), np.full((3, 3), 4.0)])


def test_near_constant_std_is_floored() -> None:
    im = np.full((10, 10), 1e6)
    im[0, 0] += 1e-4
    norm = Normalizer.fit([im])
    assert norm.std == pytest.approx(1e-8 * 1e6)


def test_different_constant_images_are_fine() -> None:
    norm = Normalizer.fit([np.zeros((4, 4)), np.full((4, 4), 2.0)])
    assert norm.mean == pytest.approx(1.0) and norm.std == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad",
    [[], [np.zeros((0, 4))], [np.array([[1.0, np.nan]])], [np.array(["a", "b"])]],
)
def test_bad_training_images_raise(bad: list[np.ndarray]) -> None:
    with pytest.raises(InputError):
        Normalizer.fit(bad)


def test_large_arrays_are_converted_in_chunks_with_identical_results(monkeypatch) -> None:
    # big images are normalised chunk by chunk (bounded memory); every element must come
    # out exactly as the one-shot float64 computation would give it
    from n2v_cascade import normalize

    rng = np.random.default_rng(0)
    image = (rng.random((37, 53)) * 4000).astype(np.uint16)[:, ::2]  # non-contiguous view
    norm = normalize.Normalizer(mean=1234.5678, std=321.123)
    expected = ((image.astype(np.float64) - norm.mean) / norm.std).astype(np.float32)
    back = (expected.astype(np.float64) * norm.std + norm.mean).astype(np.float32)
    monkeypatch.setattr(normalize, "_CHUNK", 100)  # forces 10 chunks here
    got = norm.apply(image)
    assert got.dtype == np.float32 and got.shape == image.shape
    assert np.array_equal(got, expected)
    assert np.array_equal(norm.undo(expected), back)
