"""Tests for tiled prediction: exactness vs whole image, partition, TTA, memory bound, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from n2v_cascade.errors import InputError
from n2v_cascade.predict import pad_image, predict_tiled, tile_slices

RADIUS = 3  # three stacked 3x3 convolutions


def _make_net(c_out: int = 2) -> nn.Module:
    """Small fully convolutional net with receptive-field radius 3 (zero padding)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, c_out, 3, padding=1),
    ).eval()
    torch.random.set_rng_state(gen_state)
    return net


NET = _make_net()


def _whole(fn, image: np.ndarray) -> np.ndarray:
    """Reference: the network applied to the whole image at once."""
    with torch.inference_mode():
        return fn(torch.from_numpy(image)[None, None])[0].numpy()


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _numpy_tta(fn, image: np.ndarray) -> np.ndarray:
    """Independent TTA reference on the whole image using numpy rot90/flip."""
    acc = 0.0
    for flip in (False, True):
        for k in range(4):
            x = image[:, ::-1] if flip else image
            x = np.ascontiguousarray(np.rot90(x, k))
            y = np.rot90(_whole(fn, x), -k, axes=(1, 2))
            acc = acc + (y[:, :, ::-1] if flip else y)
    return (acc / 8).astype(np.float32)


# --- exactness against whole-image prediction -------------------------------------------

COMBOS = [
    (16, 3),
    (9, 3),
    (20, 4),
    ((24, 12), (5, 3)),
    ((13, 40), 3),
    (32, 8),
    (128, 3),  # larger than every test image: one tile
]


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (100, 30)])
@pytest.mark.parametrize(("tile", "overlap"), COMBOS)
def test_tiled_equals_whole_image(shape, tile, overlap) -> None:
    image = _image(shape)
    expected = _whole(NET, image)
    got = predict_tiled(NET, image, tile=tile, overlap=overlap, batch_size=3)
    assert got.dtype == np.float32
    assert got.shape == (2, *shape)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_divisor_rounds_tiles_and_stays_exact() -> None:
    image = _image((70, 45))
    seen: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return NET(x)

    got = predict_tiled(fn, image, tile=30, overlap=4, divisor=8)
    assert {s[-2:] for s in seen} == {(24, 24)}
    np.testing.assert_allclose(got, _whole(NET, image), atol=1e-5, rtol=0)


def test_tile_none_is_one_call() -> None:
    image = _image((37, 53))
    calls: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return NET(x)

    got = predict_tiled(fn, image, tile=None)
    assert calls == [(1, 1, 37, 53)]
    np.testing.assert_allclose(got, _whole(NET, image), atol=1e-6, rtol=0)


def test_overlap_below_receptive_field_differs() -> None:
    """Sanity check that the equality test has teeth: too little overlap is visibly wrong."""
    image = _image((64, 64))
    expected = _whole(NET, image)
    good = predict_tiled(NET, image, tile=16, overlap=RADIUS)
    bad = predict_tiled(NET, image, tile=16, overlap=RADIUS - 2)
    np.testing.assert_allclose(good, expected, atol=1e-5, rtol=0)
    assert np.abs(bad - expected).max() > 1e-3


# --- tile_slices -----------------------------------------------------------------------


def test_tile_slices_small_example() -> None:
    got = tile_slices((10,), (6,), (1,))
    assert got == [
        ((slice(0, 6),), (slice(0, 5),), (slice(0, 5),)),
        ((slice(4, 10),), (slice(1, 6),), (slice(5, 10),)),
    ]


@st.composite
def _tiling(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 80)) for _ in range(ndim))
    overlap = tuple(draw(st.integers(0, 12)) for _ in range(ndim))
    tile = tuple(draw(st.integers(1, 100)) for _ in range(ndim))
    return shape, tile, overlap


@settings(max_examples=200, deadline=None)
@given(_tiling())
def test_tile_slices_partition(args) -> None:
    shape, tile, overlap = args
    split = [t < n for n, t in zip(shape, tile, strict=True)]
    if any(s and t <= 2 * o for s, t, o in zip(split, tile, overlap, strict=True)):
        with pytest.raises(InputError, match="tile"):
            tile_slices(shape, tile, overlap)
        return
    slices = tile_slices(shape, tile, overlap)
    coverage = np.zeros(shape, dtype=np.int32)
    for src, keep, dst in slices:
        coverage[dst] += 1
        for ax, (s, k, d) in enumerate(zip(src, keep, dst, strict=True)):
            n = shape[ax]
            assert 0 <= s.start < s.stop <= n  # input in bounds
            assert s.stop - s.start == min(tile[ax], n)  # all tiles the same size
            assert 0 <= k.start < k.stop <= s.stop - s.start
            assert k.stop - k.start == d.stop - d.start
            assert d.start - s.start == k.start  # keep/destination agree
            # kept pixels are >= overlap from any inner tile edge (exactness condition)
            assert s.start == 0 or d.start - s.start >= overlap[ax]
            assert s.stop == n or s.stop - d.stop >= overlap[ax]
    assert (coverage == 1).all()


def test_tile_slices_3d_example_covers_volume() -> None:
    shape = (7, 30, 41)
    slices = tile_slices(shape, (4, 12, 12), (1, 2, 3))
    coverage = np.zeros(shape, dtype=np.int32)
    for _, _, dst in slices:
        coverage[dst] += 1
    assert (coverage == 1).all()


# --- test-time augmentation ------------------------------------------------------------


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Symmetric 3x3 binomial blur: equivariant to all rotations and flips."""
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    return nn.functional.conv2d(x, k[None, None], padding=1)


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Shift right by one pixel: not equivariant to rotations/flips."""
    return torch.roll(x, 1, dims=-1)


@pytest.mark.parametrize("fn", [lambda x: x, _blur], ids=["identity", "blur"])
@pytest.mark.parametrize("tile", [None, 16, (24, 12)])
def test_tta_equivariant_fn_unchanged(fn, tile) -> None:
    image = _image((37, 53))
    plain = predict_tiled(fn, image, tile=tile, overlap=2)
    aug = predict_tiled(fn, image, tile=tile, overlap=2, tta=True)
    np.testing.assert_allclose(aug, plain, atol=1e-6, rtol=0)


def test_tta_non_equivariant_fn_differs() -> None:
    image = _image((37, 53))
    plain = predict_tiled(_shift, image, tile=None)
    aug = predict_tiled(_shift, image, tile=None, tta=True)
    assert aug.shape == plain.shape == (1, 37, 53)
    assert np.abs(aug - plain).max() > 1e-2


@pytest.mark.parametrize("tile", [16, (24, 12), (12, 40)])
def test_tta_tiled_matches_reference_tta(tile) -> None:
    """Tiled TTA (incl. non-square, i.e. transposed, tiles) equals whole-image numpy TTA."""
    image = _image((37, 53))
    expected = _numpy_tta(NET, image)
    got = predict_tiled(NET, image, tile=tile, overlap=RADIUS, batch_size=2, tta=True)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# --- channels, stacks, memory, progress ------------------------------------------------


def test_output_channels_preserved() -> None:
    image = _image((40, 33))
    got = predict_tiled(NET, image, tile=16, overlap=RADIUS)
    assert got.shape == (2, 40, 33)
    assert not np.allclose(got[0], got[1])


@pytest.mark.parametrize("tta", [False, True])
def test_memory_bound_batches(tta: bool) -> None:
    image = _image((1024, 1024))
    shapes: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return x * 2

    got = predict_tiled(fn, image, tile=128, overlap=16, batch_size=4, tta=tta)
    assert shapes
    for b, c, h, w in shapes:
        assert b <= 4 and c == 1 and h <= 128 and w <= 128
    np.testing.assert_allclose(got[0], image * 2, atol=1e-6, rtol=0)


def test_progress_bar_runs(capsys) -> None:
    image = _image((40, 40))
    got = predict_tiled(NET, image, tile=16, overlap=RADIUS, progress=True)
    np.testing.assert_allclose(got, _whole(NET, image), atol=1e-5, rtol=0)
    assert "tile" in capsys.readouterr().err


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"tile": 6, "overlap": 3}, "tile"),
        ({"tile": 16, "overlap": 8}, "tile"),
        ({"tile": (16, 6), "overlap": 3}, "tile"),
        ({"tile": 0}, "tile"),
        ({"tile": (16, 16, 16)}, "tile"),
        ({"tile": 16, "overlap": -1}, "overlap"),
        ({"tile": 16, "overlap": (1, 2, 3)}, "overlap"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"divisor": 0}, "divisor"),
        ({"tile": 40, "overlap": 16, "divisor": 32}, "tile"),
    ],
)
def test_bad_options_raise(kwargs, word) -> None:
    with pytest.raises(InputError, match=word):
        predict_tiled(NET, _image((64, 64)), **kwargs)


def test_bad_inputs_raise() -> None:
    with pytest.raises(InputError, match="image"):
        predict_tiled(NET, _image((2, 2, 8, 8)))  # 4 spatial axes
    with pytest.raises(InputError, match="image"):
        predict_tiled(NET, _image((3, 8, 8)), channels=2)  # not 2 channels
    with pytest.raises(InputError, match="image"):
        predict_tiled(NET, np.zeros((0, 5), np.float32))
    with pytest.raises(InputError, match="overlap"):
        tile_slices((10, 10), (4, 4), (-1, 0))


def test_small_image_with_large_overlap_is_one_tile() -> None:
    """An image smaller than the tile needs no overlap, however large overlap is."""
    image = _image((5, 7))
    got = predict_tiled(NET, image, tile=64, overlap=32)
    np.testing.assert_allclose(got, _whole(NET, image), atol=1e-5, rtol=0)


# --- dtypes and random shapes ----------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32]),
    ny=st.integers(1, 60),
    nx=st.integers(1, 60),
    overlap=st.integers(RADIUS, 5),
    extra=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_random_dtypes_and_shapes(dtype, ny, nx, overlap, extra, seed) -> None:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, size=(ny, nx), dtype=dtype, endpoint=True)
    else:
        raw = (rng.standard_normal((ny, nx)) * 1e3).astype(dtype)
    image = raw.astype(np.float32)
    image = (image - image.mean()) / (image.std() + 1e-6)  # "already normalised"
    got = predict_tiled(NET, image, tile=2 * overlap + extra, overlap=overlap, batch_size=3)
    assert got.shape == (2, ny, nx)
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _whole(NET, image), atol=1e-5, rtol=0)


def test_pad_image_reflects_at_the_end_and_crops_back() -> None:
    image = _image((5, 7))
    padded, crop = pad_image(image, 4)
    assert padded.shape == (8, 8)
    np.testing.assert_array_equal(padded[crop], image)
    np.testing.assert_array_equal(padded[5:, :7], image[3:0:-1][:3])  # reflect, no edge copy
    tiny, crop = pad_image(_image((1, 3)), 4)  # too small to reflect: edge values
    assert tiny.shape == (4, 4) and np.all(tiny[1:, :3] == tiny[0, :3])
