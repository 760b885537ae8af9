"""Property-based tests of the end-to-end paths: files -> io -> Model.denoise -> files.

test_masking.py and test_predict.py already check the masking functions and the tiling
arithmetic on their own; here the same guarantees are checked through the public entry
points (a trained Model, ``denoise_files``, a Variant's training batch) on random shapes
and dtypes. Runs are derandomized so CI is deterministic.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_config
from n2v_cascade.batch import denoise_files
from n2v_cascade.io import read_image
from n2v_cascade.masking import line_kernel
from n2v_cascade.methods import get_method
from n2v_cascade.training import train

SETTINGS = settings(deadline=None, derandomize=True, max_examples=10,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
DTYPES = [np.uint8, np.uint16, np.int32, np.float32]


@pytest.fixture(scope="module")
def model():
    """A one-level U-Net: its small receptive field (radius 13, tiles >= 56) lets small
    images tile."""
    rng = np.random.default_rng(0)
    noisy = (rng.normal(0, 1, (48, 48)).cumsum(1) / 4 + rng.normal(0, 0.3, (48, 48)))
    cfg = tiny_config(epochs=1, steps_per_epoch=2, network={"depth": 1, "width": 8})
    with warnings.catch_warnings():  # the random-walk signal looks like correlated noise
        warnings.simplefilter("ignore", UserWarning)
        return train(noisy.astype(np.float32), cfg, progress=False)


def _image(dtype: type, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random non-constant pixels spanning much of the dtype's range."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        top = min(np.iinfo(dtype).max, 100_000)
        low = -top if np.issubdtype(dtype, np.signedinteger) else 0
        data = rng.integers(low, top, size=shape, endpoint=True).astype(dtype)
    else:
        data = (rng.standard_normal(shape) * 300 + 1000).astype(dtype)
    data.flat[0], data.flat[-1] = data.min(), data.max() + (1 if data.min() == data.max() else 0)
    return data


@settings(SETTINGS, max_examples=16)
@given(dtype=st.sampled_from(DTYPES),
       shape=st.one_of(st.tuples(st.integers(3, 70), st.integers(3, 70)),
                       st.tuples(st.integers(50, 150), st.integers(50, 150)),
                       st.tuples(st.integers(2, 3), st.integers(3, 70), st.integers(3, 70))),
       tile=st.sampled_from([2, 16, 32, 40]),
       seed=st.integers(0, 2**16))
def test_denoise_tiled_equals_whole_for_any_shape_and_dtype(model, dtype, shape, tile,
                                                            seed) -> None:
    image = _image(dtype, shape, seed)
    whole = model.denoise(image, tile=None)
    assert whole.shape == image.shape and whole.dtype == np.float32
    assert np.isfinite(whole).all()
    # integer input is exactly its float32 conversion
    np.testing.assert_array_equal(model.denoise(image.astype(np.float32), tile=None), whole)
    assert model.receptive_radius() == 13
    tiled = model.denoise(image, tile=tile, batch_size=3)
    scale = max(1.0, float(np.abs(whole).max()))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5 * scale)


_FORMATS = {
    ".tif": lambda path, data: tifffile.imwrite(path, data, photometric="minisblack"),
    ".npy": lambda path, data: np.save(path, data),
    ".png": lambda path, data: iio.imwrite(path, data),
}


@st.composite
def _file_case(draw):
    suffix = draw(st.sampled_from(sorted(_FORMATS)))
    dtypes = [np.uint8, np.uint16] if suffix == ".png" else DTYPES
    dtype = draw(st.sampled_from(dtypes))
    side = st.integers(4, 40)
    if suffix == ".png":
        shape = (draw(side), draw(side))
    else:
        shape = draw(st.one_of(st.tuples(side, side), st.tuples(st.integers(2, 3), side, side)))
    return suffix, dtype, shape, draw(st.integers(0, 2**16))


@SETTINGS
@given(case=_file_case())
def test_files_through_io_and_denoise(model, case) -> None:
    """Any supported file and dtype: read exactly, denoised as in memory, written whole."""
    suffix, dtype, shape, seed = case
    data = _image(dtype, shape, seed)
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / f"img{suffix}"
        _FORMATS[suffix](src, data)
        read = read_image(src)
        assert read.dtype == np.float32 and read.shape == data.shape
        np.testing.assert_array_equal(read, data.astype(np.float32))
        before = src.read_bytes()
        failed = denoise_files(model, [src], Path(folder) / "out", progress=False, tile=32)
        assert failed == [] and src.read_bytes() == before
        (out,) = (Path(folder) / "out").iterdir()
        assert out.name == "img_denoised.tif"
        written = tifffile.imread(out)
    assert written.dtype == np.float32 and written.shape == data.shape
    np.testing.assert_array_equal(written, model.denoise(data.astype(np.float32), tile=32))


def _dilate(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Reference dilation of a (B, 1, Y, X) mask by a symmetric kernel, by shifting."""
    out = np.zeros_like(mask)
    ky, kx = kernel.shape
    ny, nx = mask.shape[-2:]
    for dy, dx in zip(*np.nonzero(kernel), strict=True):
        oy, ox = dy - ky // 2, dx - kx // 2
        src = mask[..., max(0, -oy): ny - max(0, oy), max(0, -ox): nx - max(0, ox)]
        out[..., max(0, oy): ny - max(0, -oy), max(0, ox): nx - max(0, -ox)] |= src
    return out


@settings(deadline=None, derandomize=True, max_examples=40)
@given(variant=st.sampled_from(["n2v", "n2v2", "structured", "blindspot", "probabilistic"]),
       struct=st.sampled_from([None, "horizontal:3", "vertical:5"]),
       batch=st.integers(1, 3), patch=st.sampled_from([8, 16, 24]),
       fraction=st.sampled_from([0.002, 0.05, 0.3]), seed=st.integers(0, 2**16))
def test_training_batch_hides_exactly_the_blind_spots(variant, struct, batch, patch, fraction,
                                                      seed) -> None:
    """Through a method: masked pixels always change, nothing outside the hidden area does."""
    mask_cfg = {"fraction": fraction} if struct is None else {"fraction": fraction,
                                                               "struct": struct}
    cfg = tiny_config(variant=variant, patch_size=patch, mask=mask_cfg)
    v = get_method(cfg)
    patches = torch.randn(batch, 1, patch, patch, generator=torch.Generator().manual_seed(seed))
    inputs, target, mask = v.training_batch(patches, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(target, patches)
    if not v.masked:  # the blind-spot network hides the centre pixel itself
        assert mask is None and torch.equal(inputs, patches)
        return
    again = v.training_batch(patches, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(again[0], inputs) and torch.equal(again[2], mask)
    m = mask.numpy()
    assert m.dtype == bool and m.shape == (batch, 1, patch, patch)
    assert m.reshape(batch, -1).any(axis=1).all()
    if cfg.mask.pattern == "grid":  # variant default of structured: one lattice per sample
        for sample in m[:, 0]:
            ys, xs = np.nonzero(sample)
            assert len(set(ys % cfg.mask.stride)) == 1 and len(set(xs % cfg.mask.stride)) == 1
    changed = (inputs != patches).numpy()
    hidden = m if struct is None else _dilate(m, line_kernel(struct))
    assert not (changed & ~hidden).any()  # untouched outside the hidden area
    assert changed[m].all()  # every blind spot really differs from the pixel it hides
