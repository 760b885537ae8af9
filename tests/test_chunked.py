"""Chunked (out-of-core) prediction into OME-Zarr: equal to in-memory tiled prediction,
metadata kept, resumable, on threads or a dask.distributed cluster, from the CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tifffile

from conftest import run_cli
from n2v_cascade.errors import OutputExistsError
from n2v_cascade.extras import MissingExtraError

REASON = 'needs the distributed extra: pip install "n2v-cascade[distributed]"'
zarr = pytest.importorskip("zarr", reason=REASON)
pytest.importorskip("ome_zarr", reason=REASON)
pytest.importorskip("dask.distributed", reason=REASON)

from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import add_metadata, write_image  # noqa: E402

from n2v_cascade import chunked, chunked_run  # noqa: E402
from n2v_cascade.chunked import denoise_chunked, plan_chunks  # noqa: E402
from n2v_cascade.config import make_config  # noqa: E402
from n2v_cascade.omezarr import open_image  # noqa: E402
from n2v_cascade.training import train  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-3}  # float rounding of different tile sizes, values ~100


def _config(**extra):
    return make_config(variant="n2v", patch_size=16, batch_size=2, epochs=1,
                       steps_per_epoch=2, network={"depth": 2, "width": 4}, **extra)


@pytest.fixture(scope="module")
def model2d():
    rng = np.random.default_rng(1)
    return train(rng.normal(100, 10, (64, 64)).astype(np.float32), _config(), progress=False)


@pytest.fixture(scope="module")
def folder2d(model2d, tmp_path_factory) -> str:
    return str(model2d.save(tmp_path_factory.mktemp("m") / "model2d"))


@pytest.fixture(scope="module")
def model3d():
    # depth 1 (receptive radius 13): a 24x48x48 volume then has windows smaller than the
    # volume on every axis, so interior chunk edges are exercised in 3-D too
    rng = np.random.default_rng(2)
    config = make_config(variant="n2v", dims=3, patch_size=8, patch_z=4, batch_size=2,
                         epochs=1, steps_per_epoch=2, network={"depth": 1, "width": 4})
    return train(rng.normal(100, 10, (12, 32, 32)).astype(np.float32), config, axes="ZYX",
                 progress=False)


def _image(shape, seed=0):
    y = np.linspace(0, 6, shape[-2])[:, None] + np.linspace(0, 4, shape[-1])[None]
    noise = np.random.default_rng(seed).normal(0, 10, shape)
    return (100 + 30 * np.sin(y) + noise).astype(np.float32)


def _zarr(path, data, chunks):
    array = zarr.open_array(str(path), mode="w", shape=data.shape, chunks=chunks,
                            dtype=data.dtype)
    array[...] = data
    return path


def _level0(path):
    return zarr.open_array(str(path), path="0", mode="r")[...]


def _partial(plan, shape, axes, spatial):
    """Whether some chunk's window is shorter than the image on every spatial axis."""
    return all(any(c.read[axes.index(a)] != slice(0, shape[axes.index(a)]) for c in plan)
               for a in spatial)


def test_plan_partitions_the_image_with_aligned_windows() -> None:
    shape, div, halo = (3, 97, 70), 4, 8
    plan = plan_chunks(shape, "SYX", "YX", (1, 32, 24), halo, div)
    cover = np.zeros(shape, int)
    for c in plan:
        cover[c.out] += 1
        for axis in (1, 2):
            read, out = c.read[axis], c.out[axis]
            assert read.start % div == 0 and c.keep[axis].start == out.start - read.start
            assert read.start == 0 or out.start - read.start >= halo
            padded = -(-shape[axis] // div) * div
            assert read.stop == shape[axis] or (read.stop - out.stop >= halo
                                                and read.stop % div == 0 and read.stop < padded)
    assert (cover == 1).all() and len(plan) == 3 * 4 * 3


@pytest.mark.parametrize(("axes", "shape"), [("YX", (96, 96)), ("SYX", (2, 96, 80))])
def test_chunked_equals_in_memory_prediction_2d(axes, shape, model2d, tmp_path) -> None:
    image = _image(shape)
    src = _zarr(tmp_path / "in.zarr", image, (1,) * (len(shape) - 2) + (32, 32))
    result = denoise_chunked(model2d, src, tmp_path / "out.ome.zarr", axes=axes, chunks=32,
                             progress=False)
    plan = plan_chunks(shape, axes, "YX", (1,) * (len(shape) - 2) + (32, 32), 36, 4)
    assert model2d.receptive_radius() <= 36 and _partial(plan, shape, axes, "YX")
    assert result.computed == result.total == len(plan) and result.levels >= 2
    expected = model2d.denoise(image, axes=axes, posterior=False, blend="none")
    np.testing.assert_allclose(_level0(result.path), expected, **TOL)


def test_chunked_equals_in_memory_prediction_3d(model3d, tmp_path) -> None:
    volume = _image((24, 48, 48))
    src = _zarr(tmp_path / "vol.zarr", volume, (8, 16, 16))
    result = denoise_chunked(model3d, src, tmp_path / "out.ome.zarr", axes="ZYX",
                             chunks=(8, 16, 16), progress=False)
    halo = -(-model3d.receptive_radius() // 2) * 2
    assert _partial(plan_chunks(volume.shape, "ZYX", "ZYX", (8, 16, 16), halo, 2),
                    volume.shape, "ZYX", "ZYX")
    expected = model3d.denoise(volume, axes="ZYX", posterior=False, blend="none")
    np.testing.assert_allclose(_level0(result.path), expected, **TOL)


def test_local_cluster_of_two_workers(model2d, model3d, tmp_path) -> None:
    from dask.distributed import Client, LocalCluster

    stack = _image((2, 96, 80), seed=3)
    src = _zarr(tmp_path / "in.zarr", stack, (1, 32, 32))
    result = denoise_chunked(model2d, src, tmp_path / "out.ome.zarr", axes="SYX",
                             chunks=32, workers=2, progress=False)
    np.testing.assert_allclose(_level0(result.path),
                               model2d.denoise(stack, axes="SYX", posterior=False,
                                               blend="none"), **TOL)
    # a running cluster, by address: one with its two workers in this process (they start
    # in no time), for the 3-D model
    volume = _image((24, 48, 48), seed=4)
    src = _zarr(tmp_path / "vol.zarr", volume, (8, 16, 16))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster, Client(cluster):
        assert cluster.scheduler_address.startswith("tcp://")
        result = denoise_chunked(model3d, src, tmp_path / "vol.ome.zarr", axes="ZYX",
                                 chunks=(8, 24, 24), scheduler=cluster.scheduler_address,
                                 progress=False)
    np.testing.assert_allclose(_level0(result.path),
                               model3d.denoise(volume, axes="ZYX", posterior=False,
                                               blend="none"), **TOL)


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff0.4", "ngff0.5"])
def test_ome_zarr_metadata_round_trip(fmt, model2d, tmp_path) -> None:
    image = _image((2, 64, 96))
    src = tmp_path / "in.ome.zarr"
    group = zarr.open_group(str(src), mode="w", zarr_format=fmt.zarr_format)
    write_image(image, group, axes="cyx", fmt=fmt, scale_factors=(2,),
                scale={"c": 1.0, "y": 0.25, "x": 0.5},
                axes_units={"y": "micrometer", "x": "micrometer"},
                storage_options={"chunks": (1, 32, 32)})
    add_metadata(group, {"omero": {"channels": [{"label": "gfp"}, {"label": "dapi"}]}}, fmt)
    lazy = open_image(src)
    assert lazy.meta.axes == "CYX" and lazy.meta.unit == "µm"
    assert lazy.meta.physical == {"Y": 0.25, "X": 0.5}
    assert lazy.meta.channel_names == ("gfp", "dapi")
    out = tmp_path / "out.ome.zarr"
    result = denoise_chunked(model2d, src, out, chunks=32, version=fmt.version,
                             progress=False)
    node = next(iter(Reader(parse_url(str(out)))()))
    axes = node.metadata["axes"]
    assert [(a["name"], a.get("type"), a.get("unit")) for a in axes] == [
        ("c", "channel", None), ("y", "space", "micrometer"), ("x", "space", "micrometer")]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales[0] == [1.0, 0.25, 0.5] and scales[1] == [1.0, 0.5, 1.0]
    assert len(node.data) == result.levels == 3
    assert [d.shape for d in node.data] == [(2, 64, 96), (2, 32, 48), (2, 16, 24)]
    back = open_image(out)
    assert (back.meta.axes, back.meta.physical, back.meta.unit, back.meta.channel_names) == (
        "CYX", lazy.meta.physical, "µm", ("gfp", "dapi"))
    level1 = np.asarray(node.data[1])
    np.testing.assert_allclose(level1, _level0(out).reshape(2, 32, 2, 48, 2).mean((2, 4)),
                               rtol=1e-6)


def test_kill_and_resume(model2d, tmp_path, monkeypatch) -> None:
    image = _image((2, 96, 96), seed=5)
    src = _zarr(tmp_path / "in.zarr", image, (1, 32, 32))
    out = tmp_path / "out.ome.zarr"

    class Killed(Exception):
        pass

    seen: list = []

    def stop_after_three(index) -> None:
        seen.append(index)
        if len(seen) == 3:
            raise Killed

    # one chunk dies after its data are written but before it is marked done
    real, calls = chunked_run.write_region, []

    def dies_once(path, region, data) -> None:
        real(path, region, data)
        calls.append(region)
        if len(calls) == 2:
            raise Killed

    monkeypatch.setattr(chunked_run, "write_region", dies_once)
    with pytest.raises(Killed):
        denoise_chunked(model2d, src, out, axes="SYX", chunks=32, progress=False)
    monkeypatch.setattr(chunked_run, "write_region", real)
    marked = int(zarr.open_array(str(out), path=chunked.DONE, mode="r")[...].sum())
    assert marked == len(calls) - 1 < 18  # the chunk that died is written, not marked
    with pytest.raises(Killed):  # stopped by the hook after three more chunks
        denoise_chunked(model2d, src, out, axes="SYX", chunks=32, progress=False,
                        on_chunk=stop_after_three)
    before = int(zarr.open_array(str(out), path=chunked.DONE, mode="r")[...].sum())
    assert marked + 3 <= before < 18
    again: list = []
    result = denoise_chunked(model2d, src, out, axes="SYX", chunks=32, progress=False,
                             on_chunk=again.append)
    assert (result.total, result.skipped, result.computed, len(again)) == (
        18, before, 18 - before, 18 - before)
    np.testing.assert_allclose(_level0(out), model2d.denoise(image, axes="SYX",
                                                             posterior=False, blend="none"), **TOL)
    done = denoise_chunked(model2d, src, out, axes="SYX", chunks=32, progress=False)
    assert (done.computed, done.skipped) == (0, 18)


def test_refuses_a_destination_of_another_model_or_source(model2d, model3d, tmp_path) -> None:
    image = _image((64, 64))
    src = _zarr(tmp_path / "in.zarr", image, (32, 32))
    out = tmp_path / "out.ome.zarr"
    denoise_chunked(model2d, src, out, chunks=32, progress=False)
    other = train(image, _config(seed=7), progress=False)
    with pytest.raises(OutputExistsError, match="another model, source or settings"):
        denoise_chunked(other, src, out, chunks=32, progress=False)
    src2 = _zarr(tmp_path / "in2.zarr", image + 1, (32, 32))
    with pytest.raises(OutputExistsError, match="another model"):
        denoise_chunked(model2d, src2, out, chunks=32, progress=False)
    result = denoise_chunked(other, src, out, chunks=32, progress=False, overwrite=True)
    assert result.computed == result.total == 4
    np.testing.assert_allclose(_level0(out), other.denoise(image, posterior=False,
                                                           blend="none"), **TOL)


def test_cli_denoise_zarr_and_tiff_to_zarr(model2d, folder2d, tmp_path, capsys) -> None:
    folder = folder2d
    image = _image((80, 96))
    src = _zarr(tmp_path / "in.zarr", image, (32, 32))
    code, out, err = run_cli(["denoise", str(src), "-m", folder, "-o",
                              str(tmp_path / "out.ome.zarr"), "--chunk", "32", "--device",
                              "cpu"], capsys)
    assert code == 0, err
    assert "9 chunk(s) computed" in out
    expected = model2d.denoise(image, posterior=False, blend="none")
    np.testing.assert_allclose(_level0(tmp_path / "out.ome.zarr"), expected, **TOL)
    counts = (np.round(image * 10)).astype(np.uint16)  # a uint16 TIFF, read lazily
    tifffile.imwrite(tmp_path / "in.tif", counts, tile=(32, 32), resolution=(2e4, 2e4),
                     resolutionunit="CENTIMETER")
    code, out, err = run_cli(["denoise", str(tmp_path / "in.tif"), "-m", folder, "-o",
                              str(tmp_path / "t.ome.zarr"), "--chunk", "48", "-q",
                              "--output-dtype", "input"], capsys)
    assert code == 0 and out == "", err
    written = _level0(tmp_path / "t.ome.zarr")
    assert written.dtype == np.uint16
    expected = model2d.denoise(counts.astype(np.float32), posterior=False, blend="none")
    assert np.abs(written.astype(np.float64) - expected).max() <= 0.5 + 1e-2
    assert open_image(tmp_path / "t.ome.zarr").meta.physical == pytest.approx(
        {"Y": 0.5, "X": 0.5})
    code, _, err = run_cli(["denoise", str(src), "-m", folder, "-o",
                            str(tmp_path / "out.ome.zarr"), "--posterior"], capsys)
    assert code == 2 and "not available for OME-Zarr output" in err
    code, _, err = run_cli(["denoise", str(tmp_path / "in.tif"), "-m", folder, "-o",
                            str(tmp_path / "x.tif"), "--workers", "2"], capsys)
    assert code == 2 and "apply to OME-Zarr output" in err


def test_missing_extra_is_one_line_naming_it(model2d, folder2d, tmp_path, monkeypatch,
                                             capsys) -> None:
    src = _zarr(tmp_path / "in.zarr", _image((32, 32)), (32, 32))
    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` now fails
    with pytest.raises(MissingExtraError, match=r'pip install "n2v-cascade\[distributed\]"'):
        denoise_chunked(model2d, src, tmp_path / "out.ome.zarr", progress=False)
    code, _, err = run_cli(["denoise", str(src), "-m", folder2d, "-o",
                            str(tmp_path / "out.ome.zarr")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "optional extra 'distributed'" in err and not (tmp_path / "out.ome.zarr").exists()
