"""Tests of n2v_cascade.formats: integer PNG output, tifffile's log, the formats extra."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from conftest import run_cli
from n2v_cascade.errors import InputError
from n2v_cascade.io import list_images, read_image, write_image


def _ramp(low: float, high: float, shape: tuple[int, int] = (20, 50)) -> np.ndarray:
    return np.linspace(low, high, shape[0] * shape[1]).reshape(shape).astype(np.float32)


@pytest.mark.parametrize("low, high, dtype, clipped", [
    (0.4, 254.6, np.uint8, 0),          # an 8-bit scale: rounded, nothing clipped
    (-3.0, 254.0, np.uint8, 10),        # a few negative values: clipped to 0, counted
    (0.0, 4095.0, np.uint16, 0),        # a 12-bit scale: uint16
    (0.0, 70000.0, np.uint16, 64),      # beyond uint16: clipped at 65535, counted
])
def test_png_output_is_rounded_and_clipped_to_the_fitting_integer_type(
        tmp_path: Path, low: float, high: float, dtype: type, clipped: int) -> None:
    data = _ramp(low, high)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(tmp_path / "out.png", data)
    back = iio.imread(tmp_path / "out.png")
    assert back.dtype == dtype and back.shape == data.shape
    top = np.iinfo(dtype).max
    np.testing.assert_array_equal(back, np.clip(np.rint(data), 0, top).astype(dtype))
    messages = [str(w.message) for w in caught]
    if clipped:
        assert messages == [f"{tmp_path / 'out.png'}: PNG stores whole numbers 0-{top}; "
                            f"{clipped} of {data.size} pixels were clipped (write .tif for "
                            f"the exact values)"]
    else:
        assert messages == []
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), back.astype(np.float32))


def test_png_uint8_tolerates_a_few_overshooting_pixels(tmp_path: Path) -> None:
    data = _ramp(0.0, 250.0, (40, 50))
    data[0, :2] = 258.0  # 2 of 2000 pixels (0.1%): still an 8-bit image
    with pytest.warns(UserWarning, match="2 of 2000 pixels were clipped"):
        write_image(tmp_path / "a.png", data)
    assert iio.imread(tmp_path / "a.png").dtype == np.uint8
    data[0, :3] = 258.0  # 3 pixels: more than 0.1% above 255, so uint16 keeps them
    write_image(tmp_path / "b.png", data)
    back = iio.imread(tmp_path / "b.png")
    assert back.dtype == np.uint16 and back.max() == 258


def test_png_output_refuses_stacks_and_non_finite_values(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="s.png: PNG holds one 2-D image"):
        write_image(tmp_path / "s.png", np.ones((2, 8, 8), np.float32))
    bad = np.ones((8, 8), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="n.png: cannot write NaN/Inf pixels to PNG"):
        write_image(tmp_path / "n.png", bad)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".czi", ".nd2", ".lif"])
def test_microscope_formats_name_the_extra(tmp_path: Path, suffix: str, monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bioio" else object())
    path = tmp_path / f"scan{suffix}"
    path.write_bytes(b"not really")
    expected = (f'{path}: {suffix} files need the formats extra: pip install '
                f'"n2v-cascade[formats]" (or export the image as TIFF)')
    for call in (read_image, list_images):
        with pytest.raises(InputError) as info:
            call(path)
        assert str(info.value) == expected
    with pytest.raises(InputError) as info:  # a folder holding only such files
        list_images(tmp_path)
    assert str(info.value) == expected.replace(str(path), str(tmp_path), 1)


def test_microscope_format_with_the_extra_installed_says_export_tiff(tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    path = tmp_path / "scan.czi"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="scan.czi: .czi files are not read by this version"):
        read_image(path)


def _truncated_stack(path: Path) -> Path:
    """A 3-slice stack written by write_image, cut to 60%: tifffile then finds one slice."""
    write_image(path, np.random.default_rng(0).normal(100, 20, (3, 48, 48)))
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    return path


@pytest.mark.parametrize("cut", [0.5, None])
def test_truncated_tiff_gives_one_clean_error_and_no_log(tmp_path: Path, capsys, caplog,
                                                          cut: float | None) -> None:
    path = tmp_path / "cut.tif"
    if cut is None:  # tifffile logs the damage and would return 1 of the 3 slices
        _truncated_stack(path)
    else:  # tifffile logs the damage, then raises
        write_image(path, np.random.default_rng(0).normal(100, 20, (48, 48)))
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    with caplog.at_level(logging.DEBUG):
        code, out, err = run_cli(["add-noise", str(path), "-o", str(tmp_path / "n.tif")],
                                 capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {path}: not a readable "
                                                                f"TIFF file (")
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    assert not (tmp_path / "n.tif").exists()
    assert logging.getLogger("tifffile").propagate  # the logger is restored


def test_a_logged_tifffile_warning_becomes_one_warning(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ok.tif"
    tifffile.imwrite(path, np.arange(64, dtype=np.uint16).reshape(8, 8))
    real = tifffile.TiffFile.__init__

    def noisy_init(self, *args, **kwargs):
        logging.getLogger("tifffile").warning("<tifffile.TiffTag 270> odd tag value")
        real(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", noisy_init)
    with pytest.warns(UserWarning, match=r"ok.tif: odd tag value$"):
        back = read_image(path)
    assert back.shape == (8, 8)
