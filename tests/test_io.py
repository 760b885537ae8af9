"""Tests of n2v_cascade.io: faithful float32 reads, one-line errors, atomic safe writes."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from n2v_cascade.errors import InputError, OutputExistsError
from n2v_cascade.io import list_images, read_image, read_images, validate_array, write_image
from n2v_cascade.safe_write import atomic_path, atomic_write_text


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _rgb(shape: tuple[int, ...] = (12, 10), channels: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(*shape, channels), dtype=np.uint8)


def _error(path: Path, **kwargs: object) -> str:
    """Read ``path`` expecting an InputError; return its (checked one-line) message."""
    with pytest.raises(InputError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    return message


# --- faithful reading ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".npy"])
@pytest.mark.parametrize("shape", [(16, 20), (3, 16, 20), (1, 16, 20), (5, 4, 3)])
def test_write_read_round_trip(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    data = _noise(shape)
    back = read_image(write_image(tmp_path / f"img{suffix}", data))
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_keeps_integer_values(tmp_path: Path, dtype: type) -> None:
    data = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, (12, 10), dtype=dtype)
    iio.imwrite(tmp_path / "grey.png", data)
    back = read_image(tmp_path / "grey.png")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, data.astype(np.float32))
    iio.imwrite(tmp_path / "grey.jpg", data.astype(np.uint8))  # lossy: shape and dtype only
    assert read_image(tmp_path / "grey.jpg").shape == (12, 10)


def test_foreign_tiffs_keep_values_and_stacks(tmp_path: Path) -> None:
    image = np.random.default_rng(3).integers(0, 65535, (3, 9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", image[0])
    tifffile.imwrite(tmp_path / "pages.tif", image, photometric="minisblack", metadata=None)
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, metadata={"axes": "TYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "plain.tif"), image[0])
    for name in ("pages.tif", "ij.tif"):
        back = read_image(tmp_path / name)
        assert back.dtype == np.float32 and back.shape == (3, 9, 11)
        np.testing.assert_array_equal(back, image)


# --- colour channels -------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_png_is_averaged_with_warning(tmp_path: Path, channels: int) -> None:
    rgb = _rgb(channels=channels)
    iio.imwrite(tmp_path / "colour.png", rgb)
    with pytest.warns(UserWarning, match="colour.png: has 3 colour channels"):
        back = read_image(tmp_path / "colour.png")
    np.testing.assert_allclose(back, rgb[..., :3].mean(axis=-1), rtol=1e-6)


def test_colour_png_rejected_on_request(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "colour.png", _rgb())
    message = _error(tmp_path / "colour.png", channels="reject")
    assert "has 3 colour channels; convert to grayscale" in message


def test_grey_alpha_png_drops_alpha_silently(tmp_path: Path) -> None:
    grey_alpha = _rgb(channels=2)
    iio.imwrite(tmp_path / "ga.png", grey_alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = read_image(tmp_path / "ga.png", channels="reject")
    np.testing.assert_array_equal(back, grey_alpha[..., 0])


def _tiff_cyx(path: Path) -> np.ndarray:
    data = _noise((2, 9, 11))
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "CYX"})
    return data.mean(axis=0)


def _tiff_imagej_cyx(path: Path) -> np.ndarray:
    data = _noise((3, 9, 11))
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "CYX"})
    return data.mean(axis=0)


def _tiff_rgb(path: Path) -> np.ndarray:
    rgb = _rgb()
    tifffile.imwrite(path, rgb, photometric="rgb")
    return rgb.mean(axis=-1)


def _tiff_rgba(path: Path) -> np.ndarray:
    rgba = _rgb(channels=4)
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    return rgba[..., :3].mean(axis=-1)


def _tiff_no_axes(path: Path) -> np.ndarray:  # trailing 3 after two dims > 4: a guess
    data = _noise((8, 7, 3))
    tifffile.imwrite(path, data, photometric="minisblack")
    return data.mean(axis=-1)


def _npy_rgba(path: Path) -> np.ndarray:
    data = _noise((8, 7, 4))
    np.save(path, data)
    return data[..., :3].mean(axis=-1)


@pytest.mark.parametrize(
    "make", [_tiff_cyx, _tiff_imagej_cyx, _tiff_rgb, _tiff_rgba, _tiff_no_axes, _npy_rgba]
)
def test_channel_axes_averaged_or_rejected(tmp_path: Path, make: Callable) -> None:
    path = tmp_path / f"{make.__name__.strip('_')}.{'npy' if 'npy' in make.__name__ else 'tif'}"
    expected = make(path)
    with pytest.warns(UserWarning, match=f"{path.name}: has .* colour channels"):
        back = read_image(path)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, expected, rtol=1e-5, atol=1e-6)
    assert "convert to grayscale" in _error(path, channels="reject")


@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 4, 3), (6, 2, 3)])
def test_small_trailing_axis_is_not_guessed_as_colour(tmp_path: Path, shape: tuple) -> None:
    data = _noise(shape)
    np.save(tmp_path / "stack.npy", data)
    np.testing.assert_array_equal(read_image(tmp_path / "stack.npy", channels="reject"), data)


# --- bad inputs ------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    data = (np.arange(64 * 64) % 200).astype(np.uint8).reshape(64, 64)
    if path.suffix == ".png":
        iio.imwrite(path, np.stack([data, data.T, data], axis=-1))
    else:
        tifffile.imwrite(path, data)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array, allow_pickle=True)


def _tif(array: np.ndarray, **kwargs: object) -> Callable[[Path], None]:
    return lambda path: tifffile.imwrite(path, array, **kwargs)


BAD_INPUTS: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing.tif": (lambda path: None, "file not found"),
    "folder.tif": (lambda path: path.mkdir(), "is a folder"),
    "empty.tif": (lambda path: path.write_bytes(b""), "file is empty"),
    "text.tif": (lambda path: path.write_text("hello\n"), "not a readable TIFF file"),
    "text.png": (lambda path: path.write_text("hello\n"), "not a readable PNG file"),
    "text.npy": (lambda path: path.write_text("hello\n"), "not a .npy file"),
    "truncated.tif": (_truncated, "not a readable TIFF file"),
    "truncated.png": (_truncated, "not a readable PNG file"),
    "image.bmp": (lambda path: path.write_bytes(b"BM" + bytes(64)), "unsupported file type '.bmp'"),
    "noext": (lambda path: path.write_bytes(b"data"), "unsupported file type '(none)'"),
    "line.npy": (_npy(np.arange(5.0)), "has 1 dimension(s) (shape (5,))"),
    "scalar.npy": (_npy(np.float32(2.0)), "has 0 dimension(s)"),
    "hyper.npy": (_npy(_noise((2, 3, 8, 8))), "has 4 dimension(s) (shape (2, 3, 8, 8))"),
    "hyper.tif": (_tif(_noise((2, 3, 8, 8)), imagej=True, metadata={"axes": "TZYX"}), "4 dim"),
    "complex.npy": (_npy(np.ones((4, 4), np.complex64)), "complex pixels"),
    "bool.npy": (_npy(np.eye(4, dtype=bool)), "boolean pixels"),
    "strings.npy": (_npy(np.array([["a", "b"], ["c", "d"]])), "non-numeric pixels"),
    "object.npy": (_npy(np.array([[1, None]], dtype=object)), "not a readable .npy file"),
    "nan.npy": (_npy(np.array([[1, np.nan, np.inf], [0, 2, -np.inf]])), "contains 3 NaN/Inf"),
    "nan.tif": (_tif(np.array([[1, np.nan], [2, 3]], np.float32)), "contains 1 NaN/Inf"),
    "huge.npy": (_npy(np.array([[1.0, 1e300]])), "too large for float32"),
    "constant.npy": (_npy(np.full((4, 4), 3.0)), "is constant (all pixels = 3.0)"),
    "constant.tif": (
        _tif(np.zeros((2, 4, 4), np.uint16), photometric="minisblack"),
        "is constant (all pixels = 0.0)",
    ),
    "zero.npy": (_npy(np.zeros((0, 8))), "is empty (shape (0, 8))"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_one_line_error_naming_file(tmp_path: Path, name: str) -> None:
    make, expected = BAD_INPUTS[name]
    make(tmp_path / name)
    assert expected in _error(tmp_path / name)


def test_constant_allowed_on_request_and_bad_channels_option(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.full((4, 4), 7, np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "flat.npy", allow_constant=True), 7.0)
    with pytest.raises(InputError, match="channels"):
        read_image(tmp_path / "flat.npy", channels="first")  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_reading_leaves_input_untouched(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"input{suffix}"
    data = (np.arange(20 * 30) % 255).astype(np.uint8).reshape(20, 30)
    {".tif": tifffile.imwrite, ".png": iio.imwrite, ".npy": np.save}[suffix](path, data)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_image(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# --- listing ---------------------------------------------------------------------------


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    for name in ("b.tif", "a.png", "c.npy", "D.TIF", ".hidden.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "folder.tif").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["D.TIF", "a.png", "b.tif", "c.npy"]
    assert list_images(tmp_path / "b.tif") == [tmp_path / "b.tif"]


def test_list_images_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match=f"{tmp_path.name}: folder contains no image files"):
        list_images(tmp_path)
    with pytest.raises(InputError, match="nowhere.tif: no such file"):
        list_images(tmp_path / "nowhere.tif")
    with pytest.raises(InputError, match="notes.txt: unsupported file type '.txt'"):
        list_images(tmp_path / "notes.txt")


def test_read_images_from_list_dedupes(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_image(folder / "b.npy", _noise((4, 5), seed=1))
    write_image(folder / "a.tif", _noise((2, 4, 5), seed=2))
    single = write_image(tmp_path / "single.npy", _noise((6, 6), seed=3))
    result = read_images([single, str(folder), folder / "a.tif"])
    assert [p.name for p, _ in result] == ["single.npy", "a.tif", "b.npy"]
    assert [img.shape for _, img in result] == [(6, 6), (2, 4, 5), (4, 5)]
    assert [p.name for p, _ in read_images(str(single))] == ["single.npy"]
    with pytest.raises(InputError):
        read_images([])


# --- in-memory arrays ------------------------------------------------------------------


def test_validate_array_copies_and_checks() -> None:
    data = _noise((5, 6))
    out = validate_array(data, "array")
    assert out.dtype == np.float32 and not np.shares_memory(out, data)
    np.testing.assert_array_equal(out, data)
    np.testing.assert_array_equal(
        validate_array(np.arange(6).reshape(2, 3), "ints"), [[0, 1, 2], [3, 4, 5]]
    )
    with pytest.warns(UserWarning, match="array: has 3 colour channels"):
        assert validate_array(_rgb((8, 8)), "array").shape == (8, 8)
    for bad, expected in [
        (np.arange(4.0), "1 dimension"),
        (np.ones((3, 3)), "constant"),
        (np.array([[np.nan, 1.0]]), "NaN/Inf"),
        (_rgb((8, 8)), "colour"),
    ]:
        with pytest.raises(InputError, match=f"^array: .*{expected}"):
            validate_array(bad, "array", channels="reject")


# --- safe writing ----------------------------------------------------------------------


def test_write_image_refuses_existing_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="out.tif: already exists"):
        write_image(path, _noise((4, 4)))
    assert path.read_bytes() == b"precious"
    write_image(path, _noise((4, 4)), overwrite=True)
    np.testing.assert_array_equal(read_image(path), _noise((4, 4)))


def test_write_image_never_overwrites_an_input(tmp_path: Path) -> None:
    source = tmp_path / "input.tif"
    tifffile.imwrite(source, np.arange(16, dtype=np.uint16).reshape(4, 4))
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    other_spelling = tmp_path / "sub" / ".." / "input.tif"
    with pytest.raises(InputError, match="input.tif: is an input file"):
        write_image(other_spelling, _noise((4, 4)), overwrite=True, protect=[source])
    assert source.read_bytes() == before


def test_write_image_rejects_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"out.jpg: unsupported output type '.jpg'"):
        write_image(tmp_path / "out.jpg", _noise((4, 4)))
    with pytest.raises(InputError, match=r"out.tif: cannot write an array of shape \(4,\)"):
        write_image(tmp_path / "out.tif", np.arange(4.0))
    deep = write_image(tmp_path / "a" / "b" / "out.npy", np.arange(6).reshape(2, 3))
    assert np.load(deep).dtype == np.float32


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_write_is_atomic_when_writer_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool, failure: Exception
) -> None:
    def broken_imwrite(file: str | Path, *args: object, **kwargs: object) -> None:
        Path(file).write_bytes(b"II*\x00half-written garbage")
        raise failure

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    path = tmp_path / "out.tif"
    if existing:
        path.write_bytes(b"old content")
    expected = InputError if isinstance(failure, OSError) else RuntimeError
    with pytest.raises(expected):
        write_image(path, _noise((4, 4)), overwrite=True)
    assert os.listdir(tmp_path) == (["out.tif"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old content"


def test_atomic_path_moves_into_place_or_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    with pytest.raises(ValueError, match="crash"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp.name.startswith(".")
        tmp.write_text("partial")
        raise ValueError("crash")
    assert os.listdir(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["model.json"]
    with pytest.raises(OutputExistsError, match="model.json"), atomic_path(target):
        pass
    with pytest.raises(InputError, match="is a folder"), atomic_path(tmp_path, overwrite=True):
        pass


def test_atomic_path_handles_folders(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "run") as tmp:
        tmp.mkdir()
        (tmp / "weights.pt").write_bytes(b"w")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    with atomic_path(tmp_path / "run") as tmp:
        tmp.mkdir()
        (tmp / "weights.pt").write_bytes(b"w")
    assert (tmp_path / "run" / "weights.pt").read_bytes() == b"w"


def test_atomic_write_text(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "cfg" / "config.json", '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n'
    with pytest.raises(OutputExistsError):
        atomic_write_text(path, "new")
    atomic_write_text(path, "new", overwrite=True)
    assert path.read_text() == "new" and os.listdir(path.parent) == ["config.json"]


# --- property: write -> read is exact ----------------------------------------------------


@st.composite
def _images(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32]))
    side = st.integers(1, 7)
    shape = draw(st.one_of(st.tuples(side, side), st.tuples(st.integers(1, 4), side, side)))
    finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, shape, elements=finite if dtype is np.float32 else None))


@settings(max_examples=60, deadline=None)
@given(image=_images(), suffix=st.sampled_from([".tif", ".npy"]))
def test_round_trip_is_exact(image: np.ndarray, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"img{suffix}", image)
        back = read_image(path, allow_constant=True)
    assert back.dtype == np.float32 and back.shape == image.shape
    np.testing.assert_array_equal(back, image.astype(np.float32))


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((2,) * 7), "has 7 dimension(s) (shape (2, 2, 2, 2, 2, 2, 2)); expected 2 to 6"),
    (np.arange(5.0), "has 1 dimension(s)"),
    (np.array([["a", "b"], ["c", "d"]]), "has non-numeric pixels"),
    (np.zeros((0, 4, 4)), "is empty (shape (0, 4, 4))"),
    (np.array([[[1.0, np.nan]]]), "contains 1 NaN/Inf"),
    (np.full((2, 3, 4, 5), 7.0), "is constant (all pixels = 7.0)"),
])
def test_nd_arrays_get_the_image_checks_in_one_line(array, message) -> None:
    from n2v_cascade.inputs import validate_nd

    with pytest.raises(InputError, match=re.escape(f"stack: {message}")):
        validate_nd(array, "stack")
    out = validate_nd(np.arange(24).reshape(1, 2, 3, 4), "ok")  # any axes count 2 to 6
    assert out.dtype == np.float32 and out.shape == (1, 2, 3, 4)
