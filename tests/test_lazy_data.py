"""Training on images read block by block (lazy_data): only the sampled blocks of the
stated grid are read, validation blocks never for training, runs are reproducible and
resume exactly, 3-D works, and bad inputs fail in one line naming the file."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import tifffile
import torch

from conftest import run_cli
from n2v_cascade import lazy_data
from n2v_cascade.axes import layout
from n2v_cascade.config import make_config
from n2v_cascade.errors import InputError
from n2v_cascade.extras import MissingExtraError
from n2v_cascade.lazy_data import BlockSampler, Source, hold_out, open_lazy, plan_blocks
from n2v_cascade.normalize import Normalizer
from n2v_cascade.omezarr import LazyImage
from n2v_cascade.training import train

REASON = 'needs the distributed extra: pip install "n2v-cascade[distributed]"'


def _config(**extra):
    values = dict(variant="n2v", patch_size=16, batch_size=4, epochs=2, steps_per_epoch=3,
                  seed=0, precision="float32", network={"depth": 2, "width": 8})
    values.update(extra)
    return make_config(**values)


def _stack(shape, seed=0) -> np.ndarray:
    """A noisy uint16 image with structure along its last two axes."""
    y = np.linspace(0, 6, shape[-2])[:, None] + np.linspace(0, 4, shape[-1])[None]
    noise = np.random.default_rng(seed).normal(0, 40, shape)
    return (1000 + 300 * np.sin(y) + noise).astype(np.uint16)


def _tiff(path, data, tile=(32, 32)):
    tifffile.imwrite(path, data, tile=tile, photometric="minisblack")
    return str(path)


def _grid(shape, spatial, chunks, patch, whole=()) -> set:
    """The block grid of the module's rule, computed here independently: on each spatial
    axis sides of the chunk grown by whole chunks to 2x the patch (capped by the image),
    a last piece shorter than the patch joined to the one before; one position of every
    other axis, or all of the axes in ``whole``."""
    per_axis = []
    for axis, n in enumerate(shape):
        if axis in spatial:
            p, c = patch[spatial.index(axis)], chunks[axis]
            side = min(n, c * -(-2 * p // c))
            edges = list(range(0, n, side)) + [n]
            if len(edges) > 2 and edges[-1] - edges[-2] < p:
                del edges[-2]
            per_axis.append(list(itertools.pairwise(edges)))
        else:
            per_axis.append([(0, n)] if axis in whole else [(i, i + 1) for i in range(n)])
    return set(itertools.product(*per_axis))


@pytest.fixture
def reads(monkeypatch):
    """Every LazyImage.read, as ``(start, stop)`` per axis, in order."""
    log: list[tuple[tuple[int, int], ...]] = []
    original = LazyImage.read

    def counted(self, region):
        log.append(tuple((s.start, s.stop) for s in region))
        return original(self, region)

    monkeypatch.setattr(LazyImage, "read", counted)
    return log


@pytest.fixture
def samplers(monkeypatch):
    """The BlockSampler each training run makes; refreshed every 2 steps."""
    made: list[BlockSampler] = []

    class Recorded(BlockSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(lazy_data, "BlockSampler", Recorded)
    monkeypatch.setattr(lazy_data, "REFRESH", 2)
    return made


def _check_reads(log, sampler, grid, size):
    """What every lazy run must satisfy: blocks of the grid only, far less than the image,
    the first sample and the refreshes from training blocks only, each validation block
    read once (for validation); returns the fraction of the image read."""
    val = {b.region for b in sampler.val_blocks}
    train_blocks = {b.region for b in sampler.blocks}
    assert set(log) <= grid, set(log) - grid
    assert val and not val & train_blocks and val | train_blocks == grid
    first = min(lazy_data.FIRST_SAMPLE, len(train_blocks))
    assert set(log[:first]) <= train_blocks
    assert sorted(log[first:first + len(val)]) == sorted(val)
    assert set(log[first + len(val):]) <= train_blocks
    assert len(log) == first + len(val) + sampler.reads
    assert sampler.reads > lazy_data.N_BLOCKS  # 6 steps, a refresh every 2: drawn again
    fraction = sum(np.prod([b - a for a, b in r]) for r in log) / size
    assert fraction < 0.25
    return fraction


def test_lazy_tiff_training_reads_only_the_chunks_it_samples(tmp_path, reads, samplers):
    data = _stack((4, 256, 256))
    path = _tiff(tmp_path / "big.tif", data)
    model = train(path, _config(), lazy=True, progress=False)
    grid = _grid(data.shape, (1, 2), (1, 32, 32), (16, 16))
    assert len(grid) == 4 * 8 * 8
    fraction = _check_reads(reads, samplers[0], grid, data.size)
    assert fraction == pytest.approx(len(reads) / len(grid))  # 16 + 4 + 3 x 8 of 256 blocks
    assert len(model.history) == 2 and model.history[-1]["val_loss"] is not None
    assert np.isfinite(model.history[-1]["train_loss"])


def test_lazy_omezarr_joint_channels_reads_whole_c_blocks(tmp_path, reads, samplers):
    pytest.importorskip("zarr", reason=REASON)
    pytest.importorskip("ome_zarr", reason=REASON)
    from n2v_cascade.omezarr import create_omezarr, write_region

    data = _stack((2, 512, 520)).astype(np.float32)  # X: 16 chunks and 8 columns more
    path = tmp_path / "big.ome.zarr"
    named = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
             {"name": "x", "type": "space"}]
    create_omezarr(path, data.shape, "float32", (1, 16, 32), named,
                   [{"type": "scale", "scale": [1.0, 1.0, 1.0]}])
    write_region(path, (slice(None),) * 3, data)
    model = train(str(path), _config(channels="joint"), progress=False)  # lazy: a zarr
    grid = _grid(data.shape, (1, 2), (1, 16, 32), (16, 16), whole=(0,))  # 2 chunks in Y
    assert max(b - a for a, b in (r[2] for r in grid)) == 40  # the 8 joined the last block
    _check_reads(reads, samplers[0], grid, data.size)
    assert model.config.n_channels == 2 and all(r[0] == (0, 2) for r in reads)


def test_lazy_training_is_reproducible_and_resumes_exactly(tmp_path, samplers):
    path = _tiff(tmp_path / "img.tif", _stack((2, 128, 128)))

    def weights(model):
        return [p.detach().clone() for p in model.network.state_dict().values()]

    a = train(path, _config(), lazy=True, progress=False)
    b = train(path, _config(), lazy=True, progress=False)
    other = train(path, _config(seed=1), lazy=True, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(other), strict=True))
    # stopped after epoch 1 (step 3: half-way through the blocks of steps 2-3) and resumed
    train(path, _config(epochs=1), lazy=True, output_dir=tmp_path / "m", progress=False)
    resumed = train(path, _config(), lazy=True, output_dir=tmp_path / "m", resume=True,
                    progress=False)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(resumed), strict=True))
    assert samplers[-1].step == 6 and samplers[-1].reads > 0


def test_held_out_blocks_are_disjoint_from_training_blocks(tmp_path):
    image = open_lazy(_tiff(tmp_path / "img.tif", _stack((3, 128, 128))), None, 2)[0]
    source = Source(image, layout(image.shape, image.meta.axes, 2))
    blocks = plan_blocks(source, 0, (16, 16))
    train_blocks, val = hold_out(blocks, 0.1, seed=0)
    assert len(blocks) == 3 * 4 * 4 and len(val) == lazy_data.MAX_VAL_BLOCKS
    assert not set(val) & set(train_blocks) and set(val) | set(train_blocks) == set(blocks)
    assert hold_out(blocks, 0.1, seed=0)[1] == val and hold_out(blocks, 0.1, seed=5)[1] != val
    assert hold_out(blocks, 0.0, seed=0)[1] == []
    sampler = BlockSampler([source], train_blocks, (16, 16), Normalizer(mean=0.0, std=1.0))
    drawn = {sampler.blocks[i] for w in range(200) for i in sampler.chosen(w, seed=w)}
    assert drawn == set(train_blocks)  # every training block is drawn, no other


def test_lazy_3d_zarr_trains(tmp_path, reads, samplers):
    zarr = pytest.importorskip("zarr", reason=REASON)
    data = _stack((24, 64, 64)).astype(np.float32)
    path = tmp_path / "vol.zarr"
    zarr.open_array(str(path), mode="w", shape=data.shape, chunks=(8, 32, 32),
                    dtype="float32")[...] = data
    config = _config(dims=3, patch_size=8, patch_z=4, batch_size=2, epochs=1,
                     steps_per_epoch=2, network={"depth": 1, "width": 4})
    model = train(str(path), config, axes="ZYX", progress=False)
    assert model.config.dims == 3 and np.isfinite(model.history[-1]["train_loss"])
    grid = _grid(data.shape, (0, 1, 2), (8, 32, 32), (4, 8, 8))
    assert set(reads) <= grid and len(grid) == 3 * 2 * 2
    assert samplers[0].val_blocks and not set(samplers[0].val_blocks) & set(samplers[0].blocks)


def test_lazy_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.tif"
    with pytest.raises(InputError, match="missing.tif"):
        train(str(missing), _config(), lazy=True, progress=False)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(InputError, match="bad.tif") as info:
        train(str(bad), _config(), lazy=True, progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="not arrays"):
        train(np.zeros((64, 64), np.float32), _config(), lazy=True, progress=False)
    code, _, err = run_cli(["train", str(bad), "--lazy", "-o", str(tmp_path / "m")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad.tif" in err
    assert not (tmp_path / "m").exists()


def test_cli_lazy_trains_a_model(tmp_path, capsys):
    path = _tiff(tmp_path / "big.tif", _stack((2, 128, 128)))
    code, out, err = run_cli(["train", path, "--lazy", "-o", str(tmp_path / "m"),
                              "--patch-size", "16", "--batch-size", "4", "--epochs", "1",
                              "--steps-per-epoch", "2", "--depth", "2", "--width", "4"],
                             capsys)
    assert code == 0, err
    assert "reading lazily: 32 block(s)" in err + out and (tmp_path / "m" / "model.json").exists()


def test_without_zarr_uncompressed_tiff_is_memory_mapped(tmp_path, monkeypatch, reads):
    path = str(tmp_path / "plain.tif")
    tifffile.imwrite(path, _stack((2, 96, 96)), photometric="minisblack")  # contiguous
    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` now fails
    model = train(path, _config(epochs=1), lazy=True, progress=False)
    assert np.isfinite(model.history[-1]["train_loss"])
    # no chunks that matter in a memory map: blocks of 2x the patch (96 = 32 + 32 + 32)
    assert set(reads) <= _grid((2, 96, 96), (1, 2), (1, 1, 1), (16, 16))
    zarr_path = tmp_path / "x.zarr"
    zarr_path.mkdir()
    with pytest.raises(MissingExtraError, match=r"n2v-cascade\[distributed\]"):
        train(str(zarr_path), _config(), progress=False)


def test_a_tiff_that_cannot_be_read_by_region_says_so_once(tmp_path, monkeypatch) -> None:
    from n2v_cascade import omezarr

    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.zeros((32, 32), np.uint16))

    def refuse(p, *_args):
        raise InputError(f"{p}: cannot be read by region here")

    monkeypatch.setattr(omezarr, "_tiff_store", refuse)
    with pytest.raises(InputError) as info:
        omezarr.open_image(path)
    assert str(info.value) == f"{path}: cannot be read by region here"  # not wrapped again
