"""What the commands read: image files or arrays, each with the axes to use.

Files keep every axis and their metadata (:func:`~n2v_cascade.imagefile.read_image_nd`):
3-D stacks, time-lapses and channels come in as they are, with axes from ImageJ or OME
metadata. PNG and JPEG are photographs or screenshots: their colour is averaged to grey
(with a warning), as the 2-D reader always did. Axes that nothing in the file names
(a .npy or a plain TIFF stack) follow the defaults of the network's dims: a 3-D array is
SYX (a stack of images) for a 2-D network, ZYX (a volume) for a 3-D one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .axes import default_axes
from .errors import InputError, error_reason
from .imagefile import READ_SUFFIXES_ND, ImageMeta, read_image_nd
from .io import float32_pixels, list_images, read_image, unique_files, validate_array

_PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Input:
    """One image to work on: its name, float32 data, axes, and the file's metadata
    (None for arrays)."""

    name: str
    data: np.ndarray
    axes: str | None
    meta: ImageMeta | None = None


def list_inputs(path: str | Path) -> list[Path]:
    """The image files of one command-line input (a file or a folder), N-D formats
    included (CZI, ND2, LIF with the ``formats`` extra)."""
    return list_images(path, READ_SUFFIXES_ND)


def read_input(path: str | Path, axes: str | None = None, dims: int | str = 2,
               allow_constant: bool = False) -> Input:
    """Read one file with its axes (``axes`` overrides the file's; see the module)."""
    path = Path(path)
    source = str(path)
    if path.suffix.lower() in _PHOTO_SUFFIXES:
        data = read_image(path, allow_constant=allow_constant)
        text = axes if axes is not None else default_axes(data.ndim, source, 2)
        meta = ImageMeta(axes=text, dtype="float32", physical={}, unit=None,
                         channel_names=None, source=source, kind="other",
                         axes_from="user" if axes is not None else "default")
        return Input(source, data, text, meta)
    data, meta = read_image_nd(path, axes)
    if meta.axes_from == "default" and dims == 3:
        meta = dataclasses.replace(meta, axes=default_axes(data.ndim, source, 3))
    if not allow_constant and float(data.min()) == float(data.max()):
        raise InputError(f"{source}: is constant (all pixels = {float(data.min()):.6g}); "
                         f"nothing to denoise")
    return Input(source, data, meta.axes, meta)


def load_inputs(images: object, axes: str | None = None, dims: int | str = 2,
                allow_constant: bool = False) -> list[Input]:
    """An array, a list of arrays, or file/folder path(s) -> :class:`Input` per image.

    Arrays take ``axes`` (None: the defaults of ``dims``); files their own unless
    ``axes`` is given. All paths are listed before any is read, so a missing input
    fails fast; a file reached twice is read once.
    """
    if isinstance(images, np.ndarray):
        images = [images]
        names = ["array"]
    elif isinstance(images, Sequence) and images and all(
            isinstance(i, np.ndarray) for i in images):
        names = [f"array[{i}]" for i in range(len(images))]
    else:
        names = None
    if names is not None:
        return [Input(n, _check_array(a, n, axes, allow_constant), axes)
                for n, a in zip(names, images, strict=True)]
    items = [images] if isinstance(images, str | os.PathLike) else images
    if not isinstance(items, Sequence) or not items or not all(
            isinstance(i, str | os.PathLike) for i in items):
        raise InputError("images must be an array, a list of arrays, or file/folder paths")
    return [read_input(f, axes, dims, allow_constant)
            for f in unique_files(list(items), READ_SUFFIXES_ND)]


def _check_array(array: np.ndarray, name: str, axes: str | None,
                 allow_constant: bool) -> np.ndarray:
    """Arrays with named axes (or more than three) keep every axis; others follow the
    2-D rules (a trailing RGB axis is averaged with a warning)."""
    if axes is not None or np.ndim(array) >= 4:
        return validate_nd(array, name, allow_constant)
    return validate_array(array, name, allow_constant)


def validate_nd(array: np.ndarray, source: str, allow_constant: bool = False) -> np.ndarray:
    """Check an in-memory array of 2 to 6 axes (named by an axes string elsewhere) the way
    :func:`validate_array` checks an image, without guessing colour channels; a float32
    copy."""
    try:
        data = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{source}: cannot be converted to an array ({error_reason(exc)})") from exc
    if data.dtype.kind in "iuf" and data.size and not 2 <= data.ndim <= 6:
        raise InputError(f"{source}: has {data.ndim} dimension(s) (shape {data.shape}); "
                         f"expected 2 to 6 axes (letters from STCZYX)")
    return float32_pixels(data, source, allow_constant)
