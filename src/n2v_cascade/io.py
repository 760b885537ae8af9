"""Image input/output: read microscopy images as float32, write results atomically.

Everything a user can get wrong in an input (missing, empty or corrupt file, colour channels,
dimensions, dtype, NaN/Inf, constant image) becomes a one-line InputError naming the file.
Writes go through :mod:`n2v_cascade.safe_write`, so a crash never leaves a half file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import imageio.v3 as iio
import numpy as np
import tifffile

from n2v_cascade.errors import InputError, N2VError, error_reason
from n2v_cascade.formats import (
    FORMATS_EXTRA_SUFFIXES,
    check_formats_extra,
    check_suffix,
    png_pixels,
    require_formats_extra,
    tifffile_log,
)
from n2v_cascade.safe_write import atomic_path, check_output_path, write_errors

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")
WRITE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".npy", ".png")

Channels = Literal["average", "reject"]
# A channel plan lists (axis, keep): the axis holds channels, entries from `keep` on are
# alpha/extra samples to drop. ``None`` means "no metadata: guess from the shape".
_Plan = list[tuple[int, int]] | None

_NPY_MAGIC = b"\x93NUMPY"
# Private ImageJ-description key: ImageJ squeezes a (1, Y, X) stack to (Y, X) on reading,
# so write_image records the number of dimensions to give the same shape back.
_NDIM_KEY = "n2v_ndim"
_GENERIC_TIFF_AXES = frozenset("QIYX")  # tifffile's axes when a file has no axis metadata


def read_image(
    path: str | Path, channels: Channels = "average", allow_constant: bool = False
) -> np.ndarray:
    """Read one image file as float32 in its own intensity scale (no rescaling).

    Returns shape (Y, X) for a 2-D image or (S, Y, X) for a stack of 2-D images (S = any
    leading axis: time, z, samples). Colour channels are averaged with a warning
    (``channels="average"``) or refused (``"reject"``); alpha is dropped. Every problem
    raises :class:`InputError` naming the file. The file is only opened for reading.
    """
    path = Path(path)
    source = str(path)
    _check_input_file(path, source)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        data, plan = _read_tiff(path, source)
    elif suffix == ".npy":
        data, plan = _read_npy(path, source), None
    else:
        data, plan = _read_pillow(path, source, "PNG" if suffix == ".png" else "JPEG")
    return _finish(data, source, plan, channels, allow_constant)


def list_images(path: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """List the image files to read for one command-line input.

    A file gives ``[file]``; a directory gives its image files (by suffix, sorted by name,
    non-recursive, hidden files skipped). Missing paths and folders without images raise
    :class:`InputError` so that a typo is reported before any work starts. ``suffixes``
    that include the microscope formats (CZI, ND2, LIF) accept them when the ``formats``
    extra is installed and name the extra otherwise.
    """
    path = Path(path)
    source = str(path)
    extra = set(FORMATS_EXTRA_SUFFIXES) <= set(suffixes)
    if not path.is_dir():
        if not os.path.lexists(path):
            raise InputError(f"{source}: no such file or folder")
        if extra:
            require_formats_extra(path, source)
        else:
            check_formats_extra(path, source)
        check_suffix(path, source, suffixes, "file")
        return [path]
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise InputError(f"{source}: cannot list folder ({error_reason(exc, path)})") from exc
    images = sorted(
        p
        for p in entries
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )
    for p in (images if extra else []):
        if p.suffix.lower() in FORMATS_EXTRA_SUFFIXES:
            require_formats_extra(p, str(p))
            break
    if not images:
        other = sorted(p for p in entries if p.suffix.lower() in FORMATS_EXTRA_SUFFIXES)
        if other:
            check_formats_extra(other[0], source)
        shown = ", ".join(suffixes)
        raise InputError(f"{source}: folder contains no image files (looked for {shown})")
    return images


def read_images(
    path: str | Path | Sequence[str | Path],
    channels: Channels = "average",
    allow_constant: bool = False,
) -> list[tuple[Path, np.ndarray]]:
    """Read a file, a directory, or a list of files/dirs as ``[(path, image), ...]``.

    All paths are listed before any is read, so a missing input fails fast; a file reached
    twice (e.g. named and inside a listed folder) is read once.
    """
    items = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not items:
        raise InputError("input: no image paths given")
    return [(file, read_image(file, channels, allow_constant))
            for file in unique_files(items, IMAGE_SUFFIXES)]


def unique_files(items: Sequence[str | Path], suffixes: tuple[str, ...],
                 whole: Callable[[str | Path], bool] | None = None) -> list[Path]:
    """The image files of every file/folder in ``items`` (see :func:`list_images`), all
    listed before any is read; a file reached twice (named and inside a listed folder)
    comes once. Items for which ``whole`` is true are one image as they are (a zarr
    store is a folder of chunks)."""
    files: list[Path] = []
    seen: set[str] = set()
    for item in items:
        listed = [Path(item)] if whole is not None and whole(item) else list_images(
            item, suffixes)
        for file in listed:
            key = os.path.normcase(os.path.realpath(file))
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def validate_array(
    array: np.ndarray, source: str, allow_constant: bool = False, *, channels: Channels = "average"
) -> np.ndarray:
    """Check an in-memory array the way :func:`read_image` checks a file; float32 copy.

    Same rules: trailing RGB(A) axis (size 3/4 after two axes > 4) averaged or rejected, then
    2 or 3 dimensions, real numeric dtype, non-empty, finite, not constant (unless
    ``allow_constant``). ``source`` names the array in error messages.
    """
    try:
        data = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{source}: cannot be converted to an array ({error_reason(exc)})") from exc
    return _finish(data, source, None, channels, allow_constant)


def write_image(
    path: str | Path, array: np.ndarray, overwrite: bool = False, protect: Iterable[Path] = ()
) -> Path:
    """Write a 2-D or 3-D array as float32 .tif/.tiff (ImageJ axes YX / ZYX) or .npy, or a
    2-D array as an integer .png.

    PNG holds integers: the values are rounded and clipped to uint8 (when at most 0.1% of
    the pixels lie above 255) or uint16, with a warning that says how many pixels were
    clipped. The write is atomic (temporary file + ``os.replace``), so a crash never leaves a
    half-written file. Refuses an existing path unless ``overwrite`` (OutputExistsError)
    and any path in ``protect`` -- the inputs -- even with ``overwrite`` (InputError).
    Parent folders are created. Returns the path written.
    """
    path = Path(path)
    source = str(path)
    suffix = check_output_path(path, WRITE_SUFFIXES, overwrite, protect)
    data = _output_array(array, source)
    if suffix == ".png":
        data = png_pixels(data, source)
    with write_errors(source), atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".npy":
            with open(tmp, "xb") as fh:
                np.save(fh, data, allow_pickle=False)
        elif suffix == ".png":
            iio.imwrite(tmp, data, plugin="pillow", extension=".png")
        else:
            # An explicit samples axis (S=1) stops tifffile reading a width of 1 as samples.
            axes = ("YX" if data.ndim == 2 else "ZYX") + "S"
            metadata = {"axes": axes, _NDIM_KEY: data.ndim}
            tifffile.imwrite(
                tmp, data[..., np.newaxis], imagej=True, photometric="minisblack", metadata=metadata
            )
    return path


# --- reading ---------------------------------------------------------------------------


def _check_input_file(
    path: Path,
    source: str,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    formats: Callable[[Path, str], None] = check_formats_extra,
) -> None:
    """Refuse a folder, a missing, special or empty file, or a suffix not in ``suffixes``.

    ``formats`` checks the microscope formats first (by default: they are refused with a
    line that names the ``formats`` extra).
    """
    if path.is_dir():
        raise InputError(f"{source}: is a folder; expected an image file")
    if not path.exists():
        raise InputError(f"{source}: file not found")
    if not path.is_file():
        raise InputError(f"{source}: is not a regular file")
    formats(path, source)
    check_suffix(path, source, suffixes, "file")
    if path.stat().st_size == 0:
        raise InputError(f"{source}: file is empty")


@contextmanager
def _reading(path: Path, source: str, kind: str) -> Iterator[None]:
    """Turn any exception of a third-party reader into a one-line InputError."""
    try:
        yield
    except N2VError:
        raise
    except PermissionError:
        raise InputError(f"{source}: permission denied; cannot read file") from None
    except MemoryError:
        raise InputError(f"{source}: image too large to load into memory") from None
    except Exception as exc:  # corrupt files make parsers raise almost anything
        raise InputError(
            f"{source}: not a readable {kind} file ({error_reason(exc, path)})") from exc


def _read_tiff(path: Path, source: str) -> tuple[np.ndarray, _Plan]:
    with tifffile_log(source):  # damage that tifffile only logs is an error too
        return _read_tiff_series(path, source)


def _read_tiff_series(path: Path, source: str) -> tuple[np.ndarray, _Plan]:
    with _reading(path, source, "TIFF"), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"{source}: TIFF file contains no images")
        if len(tif.series) > 1:
            message = f"{source}: has {len(tif.series)} image series; reading only the first"
            warnings.warn(message, UserWarning, stacklevel=4)
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        page = series.keyframe
        rgb = page.photometric == tifffile.PHOTOMETRIC.RGB
        extras = len(page.extrasamples)
        imagej = tif.imagej_metadata if tif.is_imagej else None
    if imagej and imagej.get(_NDIM_KEY) == 3 and data.ndim == 2:
        data, axes = data[np.newaxis], "Z" + axes
    if len(axes) != data.ndim or set(axes) <= _GENERIC_TIFF_AXES:
        return data, None
    plan: list[tuple[int, int]] = []
    for axis, name in enumerate(axes):
        if name == "C":
            plan.append((axis, data.shape[axis]))
        elif name == "S":  # samples per pixel: RGB(A), or grey plus extra samples
            keep = max(data.shape[axis] - extras, 1)
            plan.append((axis, min(keep, 3) if rgb else keep))
    return data, plan


def _read_npy(path: Path, source: str) -> np.ndarray:
    with _reading(path, source, ".npy"), open(path, "rb") as fh:
        if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise InputError(f"{source}: not a .npy file (missing NumPy header)")
        fh.seek(0)
        return np.lib.format.read_array(fh, allow_pickle=False)


def _read_pillow(path: Path, source: str, kind: str) -> tuple[np.ndarray, _Plan]:
    with _reading(path, source, kind):
        data = np.asarray(iio.imread(path, plugin="pillow"))
    if data.ndim >= 3 and data.shape[-1] in (2, 3, 4):  # grey+alpha, RGB, RGBA
        count = data.shape[-1]
        return data, [(data.ndim - 1, count - 1 if count in (2, 4) else count)]
    return data, []


def _guess_plan(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Trailing RGB(A) axis for arrays without metadata: (..., Y>4, X>4, 3 or 4)."""
    if len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4 and shape[-3] > 4:
        return [(len(shape) - 1, 3)]
    return []


def _finish(
    data: np.ndarray, source: str, plan: _Plan, channels: Channels, allow_constant: bool
) -> np.ndarray:
    """Shared checks of read_image and validate_array; returns a float32 copy."""
    if channels not in ("average", "reject"):
        raise InputError(f"channels: must be 'average' or 'reject', got {channels!r}")
    _check_pixels(data, source)
    data = _merge_channels(
        data, _guess_plan(data.shape) if plan is None else plan, source, channels
    )
    if data.ndim not in (2, 3):
        raise InputError(
            f"{source}: has {data.ndim} dimension(s) (shape {data.shape}); "
            "expected a 2-D image (YX) or a stack (SYX)"
        )
    return float32_pixels(data, source, allow_constant)


def float32_pixels(data: np.ndarray, source: str, allow_constant: bool = False) -> np.ndarray:
    """A C-ordered float32 copy of numeric pixels, refusing (one line, naming ``source``)
    non-numeric, empty, non-finite or (unless ``allow_constant``) constant arrays: the
    pixel checks every input gets, whatever its axes."""
    _check_pixels(data, source)
    out = _float32(data, source)
    low, high = float(out.min()), float(out.max())
    if low == high and not allow_constant:
        shown = float(f"{low:.6g}")
        raise InputError(f"{source}: is constant (all pixels = {shown}); nothing to denoise")
    return out


def _check_pixels(data: np.ndarray, source: str) -> None:
    """Refuse boolean, complex, non-numeric and empty arrays."""
    kind = data.dtype.kind
    if kind == "b":
        raise InputError(f"{source}: has boolean pixels; expected numbers")
    if kind == "c":
        raise InputError(f"{source}: has complex pixels ({data.dtype}); expected real numbers")
    if kind not in "iuf":
        raise InputError(f"{source}: has non-numeric pixels (dtype {data.dtype})")
    if data.size == 0:
        raise InputError(f"{source}: is empty (shape {data.shape})")


def _float32(data: np.ndarray, source: str) -> np.ndarray:
    """A C-ordered float32 copy of checked pixels; NaN/Inf (or too large) refused."""
    with np.errstate(over="ignore"):
        out = np.array(data, dtype=np.float32, order="C", copy=True)
    if data.dtype.kind == "f" and not np.isfinite(out).all():
        bad = data.size - np.count_nonzero(np.isfinite(data))
        if not bad:  # finite float64 values beyond the float32 range became Inf
            raise InputError(f"{source}: has pixel values too large for float32")
        raise InputError(f"{source}: contains {bad} NaN/Inf pixels")
    return out


def _merge_channels(
    data: np.ndarray, plan: list[tuple[int, int]], source: str, channels: Channels
) -> np.ndarray:
    """Drop alpha/extra samples, then average (or refuse) the remaining channels."""
    if not plan:
        return data
    index: list[slice] = [slice(None)] * data.ndim
    for axis, keep in plan:
        index[axis] = slice(0, keep)
    dropped = any(keep < data.shape[axis] for axis, keep in plan)
    data = data[tuple(index)]
    axes = tuple(axis for axis, _ in plan)
    count = math.prod(data.shape[axis] for axis in axes)
    if count == 1:
        return data.reshape([n for axis, n in enumerate(data.shape) if axis not in axes])
    alpha = " (alpha ignored)" if dropped else ""
    if channels == "reject":
        raise InputError(f"{source}: has {count} colour channels{alpha}; convert to grayscale")
    message = f"{source}: has {count} colour channels{alpha}; averaging them to grayscale"
    warnings.warn(message, UserWarning, stacklevel=4)
    return data.mean(axis=axes, dtype=np.float64)


# --- writing ---------------------------------------------------------------------------


def _output_array(array: np.ndarray, source: str) -> np.ndarray:
    data = np.asarray(array)
    if data.dtype.kind not in "iuf":
        raise InputError(f"{source}: cannot write pixels of dtype {data.dtype}; expected numbers")
    if data.ndim not in (2, 3) or data.size == 0:
        raise InputError(f"{source}: cannot write an array of shape {data.shape}; need YX or SYX")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(data, dtype=np.float32)
