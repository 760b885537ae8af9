"""Real microscopy files through the commands: axes and metadata in, the same out.

Tiny synthetic ImageJ/OME files (tifffile) and, when present, the real stacks of the
shared data (skipped with a reason otherwise). Networks are tiny; quality is not tested
here, only that axes, physical sizes, channel names and pixel types survive.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import run_cli, shared_data
from n2v_cascade.imagefile import read_image_nd
from n2v_cascade.model import Model

ND = shared_data() / "microscopy_nd"
TINY = ["--patch-size", "16", "--patch-z", "4", "--batch-size", "2", "--epochs", "1",
        "--steps-per-epoch", "2", "--depth", "2", "--width", "4", "-q"]


def _noisy(shape, seed=0, scale=1000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(0, 1, n) for n in shape[-2:]], indexing="ij")
    clean = scale * (1.5 + np.sin(4 * grid[0]) * np.cos(3 * grid[1]))
    return np.clip(rng.poisson(np.broadcast_to(clean, shape)), 0, 65535).astype(np.uint16)


def _imagej(path: Path, data: np.ndarray, axes: str) -> Path:
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": axes, "spacing": 0.5, "unit": "um"})
    return path


def test_imagej_stack_trains_3d_by_auto_and_denoise_keeps_axes_and_scale(tmp_path,
                                                                          capsys) -> None:
    src = _imagej(tmp_path / "stack.tif", _noisy((10, 24, 24)), "ZYX")
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), "--dims", "auto",
                            *TINY], capsys)
    assert code == 0, err
    assert Model.load(tmp_path / "m").config.dims == 3  # Z from the ImageJ metadata
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o", str(out),
                            "-q"], capsys)
    assert code == 0, err
    data, meta = read_image_nd(out)
    assert (meta.axes, data.shape, meta.kind) == ("ZYX", (10, 24, 24), "imagej")
    assert meta.physical == pytest.approx({"Z": 0.5, "Y": 0.2, "X": 0.2})
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].dtype == np.float32


def test_output_dtype_input_rounds_to_the_input_type_and_reports_clipping(tmp_path,
                                                                          capsys) -> None:
    data = _noisy((4, 24, 24))
    data[0, :4, :4] = 65535  # saturated corner: the denoised values may exceed the range
    src = _imagej(tmp_path / "sat.tif", data, "ZYX")
    assert run_cli(["train", str(src), "-o", str(tmp_path / "m"), *TINY], capsys)[0] == 0
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o", str(out),
                            "--output-dtype", "input", "-q"], capsys)
    assert code == 0, err
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].dtype == np.uint16 and tif.is_imagej
    float_out = tmp_path / "float.tif"
    run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o", str(float_out), "-q"],
            capsys)
    wide = read_image_nd(float_out)[0]
    clipped = int(np.count_nonzero(np.rint(wide) > 65535) + np.count_nonzero(np.rint(wide) < 0))
    if clipped:
        assert f"{clipped} value(s) clipped to the uint16 range" in err
    else:
        assert "clipped" not in err
    np.testing.assert_array_equal(read_image_nd(out)[0],
                                  np.clip(np.rint(wide), 0, 65535).astype(np.float32))


def test_multichannel_file_is_never_averaged_and_keeps_channel_axis(tmp_path, capsys) -> None:
    data = np.stack([_noisy((6, 24, 24), seed=s) for s in range(2)], axis=1)  # ZCYX
    src = _imagej(tmp_path / "zc.tif", data, "ZCYX")
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), *TINY], capsys)
    assert code == 0 and "averag" not in err, err
    out = tmp_path / "zc_out.tif"
    code, _, err = run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o", str(out),
                            "-q"], capsys)
    assert code == 0, err
    result, meta = read_image_nd(out)
    assert (meta.axes, result.shape) == ("ZCYX", data.shape)


def test_ome_tiff_keeps_its_order_and_channel_names(tmp_path, capsys) -> None:
    data = np.stack([np.stack([_noisy((3, 24, 24), seed=10 * t + c) for c in range(2)])
                     for t in range(2)])  # TCZYX
    src = tmp_path / "movie.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={
        "axes": "TCZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.4,
        "Channel": {"Name": ["dapi", "gfp"]}})
    assert run_cli(["train", str(src), "-o", str(tmp_path / "m"), *TINY], capsys)[0] == 0
    code, _, err = run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o",
                            str(tmp_path / "out"), "-q"], capsys)
    assert code == 0, err
    out = tmp_path / "out" / "movie_denoised.ome.tif"
    result, meta = read_image_nd(out)
    assert (meta.axes, result.shape, meta.kind) == ("TCZYX", data.shape, "ome")
    assert meta.channel_names == ("dapi", "gfp")
    assert meta.physical == pytest.approx({"Z": 0.4, "Y": 0.1, "X": 0.1})


def test_axes_that_contradict_the_file_are_one_line_errors(tmp_path, capsys) -> None:
    src = _imagej(tmp_path / "stack.tif", _noisy((4, 24, 24)), "ZYX")
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), "--axes", "CZYX",
                            *TINY], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {src}: axes 'CZYX' name 4 axes but the file has 3 (ZYX 4x24x24)"]
    assert not (tmp_path / "m").exists()
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), "--dims", "3",
                            "--axes", "SYX", *TINY], capsys)
    lines = err.strip().splitlines()  # the contradiction warned, then the one error
    assert code == 2 and lines[0].startswith("warning:") and "the file says 'ZYX'" in lines[0]
    assert len(lines) == 2 and "a 3-D network needs axes ZYX" in lines[1]


def test_plain_stack_without_metadata_is_a_volume_for_a_3d_model(tmp_path, capsys) -> None:
    src = tmp_path / "plain.npy"
    np.save(src, _noisy((5, 24, 24)).astype(np.float32))
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), "--dims", "3",
                            *TINY], capsys)
    assert code == 0, err
    assert Model.load(tmp_path / "m").config.dims == 3


def _real(relative: str) -> Path:
    path = ND / relative
    if not path.is_file():
        pytest.skip(f"shared file {path} is not on this machine")
    return path


def test_real_zcyx_stack_in_3d_keeps_calibration(tmp_path, capsys) -> None:
    src = _real("neubias_dna_conf_wf_zcyx/xyzc_16bit__dna_conf_wf.tif")
    _, before = read_image_nd(src)
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), "--dims", "3",
                            *TINY], capsys)
    assert code == 0, err
    out = tmp_path / "dna.tif"
    code, _, err = run_cli(["denoise", str(src), "-m", str(tmp_path / "m"), "-o", str(out),
                            "--tile", "64", "-q"], capsys)
    assert code == 0, err
    result, after = read_image_nd(out)
    assert after.axes == before.axes == "ZCYX"
    assert after.physical == pytest.approx(before.physical)
    assert result.shape == (45, 2, 130, 133)


def test_microscope_formats_need_the_formats_extra(tmp_path, capsys) -> None:
    src = _real("aicspylibczi_cd_tczyx_multichannel/CD_s_1_t_3_c_2_z_5.czi")
    code, _, err = run_cli(["train", str(src), "-o", str(tmp_path / "m"), *TINY], capsys)
    if importlib.util.find_spec("bioio") is None:
        assert code == 2
        assert 'pip install "n2v-cascade[formats]"' in err and len(err.splitlines()) == 1
    else:
        assert code == 0, err


def test_cascade_on_a_multichannel_volume_keeps_axes_and_scores_every_stage(tmp_path) -> None:
    from n2v_cascade.cascade import Cascade

    data = np.stack([_noisy((6, 24, 24), seed=s) for s in range(2)], axis=1)  # ZCYX
    src = _imagej(tmp_path / "zc.tif", data, "ZCYX")
    base = {"dims": 3, "patch_size": 16, "patch_z": 4, "batch_size": 2, "steps_per_epoch": 2,
            "network": {"depth": 2, "width": 4}}
    casc = Cascade(["n2v", "probabilistic"], base=base, epochs=1, retrain_epochs=1)
    casc.fit([str(src)], output_dir=tmp_path / "c", progress=False)
    stages = casc.manifest["stages"]
    assert [s["variant"] for s in stages] == ["n2v", "probabilistic"]
    assert all(np.isfinite(s["gt_free_error"]) for s in stages)
    assert casc.outputs[1][0].shape == data.shape
    result, meta = read_image_nd(tmp_path / "c" / "stage2-probabilistic" / "zc.tif")
    std, _ = read_image_nd(tmp_path / "c" / "stage2-probabilistic" / "zc_std.tif")
    assert (meta.axes, result.shape, std.shape) == ("ZCYX", data.shape, data.shape)
    assert meta.physical == pytest.approx({"Z": 0.5, "Y": 0.2, "X": 0.2})
    np.testing.assert_allclose(casc.denoise(data.astype(np.float32), axes="ZCYX"), result,
                               atol=1e-3)


def test_cli_auto_cascade_on_a_3d_stack(tmp_path, capsys) -> None:
    src = _imagej(tmp_path / "stack.tif", _noisy((8, 24, 24)), "ZYX")
    code, out, err = run_cli(["cascade", str(src), "-o", str(tmp_path / "c"), "--stages",
                              "auto", "--candidates", "n2v,structured", "--max-stages", "2",
                              "--dims", "3", "--patch-size", "16", "--patch-z", "4",
                              "--batch-size", "2", "--epochs", "1", "--retrain-epochs", "1",
                              "--steps-per-epoch", "2", "--depth", "2", "--width", "4"],
                             capsys)
    assert code == 0, err
    assert "manifest:" in out
    first = tmp_path / "c" / "stage1-n2v" / "stack.tif"
    chosen = first if first.exists() else tmp_path / "c" / "stage1-structured" / "stack.tif"
    assert read_image_nd(chosen)[1].axes == "ZYX"
