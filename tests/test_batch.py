"""Tests of n2v_cascade.batch through ``denoise``: what is printed, PNG output, existing outputs."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from conftest import run_cli, tiny_config
from n2v_cascade.batch import output_paths
from n2v_cascade.errors import InputError
from n2v_cascade.model import Model
from n2v_cascade.training import train


def _image(seed: int = 0, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    y, x = np.mgrid[0: shape[0], 0: shape[1]]
    clean = 120 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    return np.clip(clean + np.random.default_rng(seed).normal(0, 15, shape), 0, 255)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "model"
    train(_image(0, (64, 64)).astype(np.float32),
          tiny_config(epochs=1, steps_per_epoch=2, variant="probabilistic"), output_dir=path,
          progress=False)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        tifffile.imwrite(folder / f"{name}.tif", _image(seed).astype(np.float32))
    return folder


def test_quiet_prints_nothing_and_loud_names_each_output(tmp_path, inputs, model_dir,
                                                         capsys) -> None:
    args = ["denoise", str(inputs), "-m", str(model_dir), "-o", str(tmp_path / "out")]
    code, out, err = run_cli([*args, "-q"], capsys)
    assert (code, out, err) == (0, "", "")
    assert len(list((tmp_path / "out").iterdir())) == 3
    code, out, _ = run_cli([*args, "--overwrite"], capsys)
    assert code == 0
    assert f"{inputs / 'a.tif'} -> {tmp_path / 'out' / 'a_denoised.tif'}" in out.splitlines()


def test_existing_outputs_are_counted_in_words(tmp_path, inputs, model_dir, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_denoised.tif").write_bytes(b"old")
    args = ["denoise", str(inputs), "-m", str(model_dir), "-o", str(out), "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err == (f"error: {out / 'a_denoised.tif'}: already exists (pass --overwrite to "
                   f"replace it)\n")
    (out / "b_denoised.tif").write_bytes(b"old")
    (out / "c_denoised.tif").write_bytes(b"old")
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err == (f"error: {out / 'a_denoised.tif'}: already exists, and so do 2 more outputs "
                   f"(pass --overwrite to replace them)\n")
    assert {p.read_bytes() for p in out.iterdir()} == {b"old"}


def test_denoise_writes_png_and_a_float_std_tif(tmp_path, model_dir, capsys) -> None:
    noisy = _image(5).round().astype(np.uint8)
    iio.imwrite(tmp_path / "cell.png", noisy)
    code, _, err = run_cli(["denoise", str(tmp_path / "cell.png"), "-m", str(model_dir), "-o",
                            str(tmp_path / "den.png"), "-q", "--uncertainty"], capsys)
    assert code == 0, err
    std = tifffile.imread(tmp_path / "den_std.tif")  # the uncertainty stays a float TIFF
    assert std.dtype == np.float32 and std.shape == noisy.shape
    got = iio.imread(tmp_path / "den.png")
    expected = Model.load(model_dir).denoise(noisy.astype(np.float32))
    assert got.dtype == np.uint8 and got.shape == noisy.shape
    np.testing.assert_array_equal(got, np.clip(np.rint(expected), 0, 255))
    clipped = int(np.count_nonzero((np.rint(expected) < 0) | (np.rint(expected) > 255)))
    assert ("pixels were clipped" in err) == (clipped > 0)


def test_output_paths_accept_tif_and_png_for_one_input_only(tmp_path) -> None:
    one = [tmp_path / "x.png"]
    assert output_paths(one, tmp_path / "y.png") == [tmp_path / "y.png"]
    assert output_paths(one, tmp_path / "y.tiff") == [tmp_path / "y.tiff"]
    with pytest.raises(InputError, match=r"y.jpg: unsupported output type '.jpg' \(denoise "
                                         r"writes .tif or .png\)"):
        output_paths(one, tmp_path / "y.jpg")
    with pytest.raises(InputError, match="several inputs need an output folder"):
        output_paths([*one, tmp_path / "z.png"], tmp_path / "y.png")
    assert output_paths([*one, tmp_path / "z.png"], tmp_path / "o") == [
        tmp_path / "o" / "x_denoised.tif", tmp_path / "o" / "z_denoised.tif"]
