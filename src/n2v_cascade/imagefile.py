"""N-D image files with their axes and metadata: 3-D stacks, time-lapses, channels.

:func:`read_image_nd` reads a file with all its axes (nothing averaged away) as float32,
plus an :class:`ImageMeta` (axes in our letters S T C Z Y X, the file's pixel type,
physical pixel sizes, unit, channel names, the input's OME-XML / ImageJ extras);
:func:`write_image_nd` writes a result back with that metadata; :func:`describe` is the
one-line summary for messages. :mod:`n2v_cascade.io` keeps the 2-D/stack API
(``read_image``, float32 YX/SYX) that the rest of the package uses.

Axes come from the file: ImageJ hyperstack and OME-TIFF metadata, tifffile's own axes of
a TIFF it wrote, bioio's dimensions for CZI/ND2/LIF; letters are translated by the one
table :data:`~n2v_cascade.imagefile_meta.FILE_AXES` (RGB samples are channels C). A file
without axis metadata (.npy, plain page stacks) follows the default rules: 2-D is YX,
3-D is SYX, a single unnamed axis before/among named ones is S, anything else needs
``axes=``. Size-1 axes that tifffile or bioio add (or squeeze) are dropped, except those
recorded by :func:`write_image_nd` in an ImageJ file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import tifffile

from n2v_cascade.axes import AXES, check_axes
from n2v_cascade.errors import InputError
from n2v_cascade.formats import FORMATS_EXTRA_SUFFIXES, require_formats_extra, tifffile_log
from n2v_cascade.imagefile_meta import (
    GENERIC,
    ImageMeta,
    describe,
    imagej_info,
    map_axes,
    ome_info,
    tiff_physical,
)
from n2v_cascade.imagefile_write import (
    N2V_AXES_KEY,
    N2V_SHAPE_KEY,
    WRITE_SUFFIXES_ND,
    WriteReport,
    imagej_layout,
    write_image_nd,
)
from n2v_cascade.io import (
    _NDIM_KEY,
    IMAGE_SUFFIXES,
    _check_input_file,
    _check_pixels,
    _float32,
    _read_npy,
    _reading,
)

__all__ = ["ImageMeta", "WriteReport", "describe", "read_image_nd", "write_image_nd",
           "READ_SUFFIXES_ND", "WRITE_SUFFIXES_ND"]

#: Files :func:`read_image_nd` reads (the microscope formats need the ``formats`` extra).
READ_SUFFIXES_ND: tuple[str, ...] = IMAGE_SUFFIXES + FORMATS_EXTRA_SUFFIXES


class _Found:
    """What a reader learnt about the axes and metadata besides the pixels."""

    def __init__(self, kind: str, file_axes: str | None = None, shown: str | None = None,
                 **meta: Any) -> None:
        self.kind = kind
        self.file_axes = file_axes    # our letters, GENERIC for unknown; None: no metadata
        self.shown = shown            # the file's own axes letters, for messages
        self.unknown: dict[str, str] = meta.pop("unknown", {})
        self.meta = meta              # physical, unit, channel_names, ome_xml, imagej_extra


def read_image_nd(path: str | Path, axes: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file with all its axes: ``(float32 array, ImageMeta)``.

    No channel averaging and no rescaling; ``meta.axes`` names every axis of the array in
    the letters S (sample/position), T, C, Z, Y, X. ``axes`` overrides the file's axes (a
    UserWarning names both when the file says otherwise); it must name as many axes as
    the file has. Physical sizes and channel names stay with the axes they belong to: an
    axis renamed by ``axes`` loses them. Every problem (missing, empty, corrupt file,
    non-numeric or NaN/Inf pixels, bad axes) raises a one-line :class:`InputError` naming
    the file. Constant images are accepted (the caller decides).
    """
    path = Path(path)
    source = str(path)
    _check_input_file(path, source, READ_SUFFIXES_ND, require_formats_extra)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        with tifffile_log(source):
            data, found = _read_tiff(path, source)
    elif suffix == ".npy":
        data, found = _read_npy(path, source), _Found("npy")
    elif suffix in FORMATS_EXTRA_SUFFIXES:
        data, found = _read_bioio(path, source)
    else:
        data, found = _read_pillow(path, source)
    _check_pixels(data, source)
    if data.ndim < 2:
        raise InputError(f"{source}: has {data.ndim} dimension(s) (shape {data.shape}); "
                         f"an image needs at least two axes (YX)")
    dtype = data.dtype.name
    final, meta = _resolve_axes(source, data.shape, found, axes)
    out = _float32(data, source)
    return out, ImageMeta(axes=final, dtype=dtype, source=source, kind=found.kind, **meta)


# --- axes ----------------------------------------------------------------------------------


def _resolve_axes(source: str, shape: tuple[int, ...], found: _Found,
                  user: str | None) -> tuple[str, dict[str, Any]]:
    """The axes of the array (the user's, the file's, or the default rules) and the
    metadata that still applies to them."""
    meta = {"physical": {}, "unit": None, "channel_names": None, **found.meta}
    file_axes = found.file_axes
    shown = f"{found.shown or 'shape'} {'x'.join(str(n) for n in shape)}"
    if file_axes is not None and file_axes.count("C") > 1:
        if user is None:
            sizes = [shape[i] for i, a in enumerate(file_axes) if a == "C"]
            raise InputError(f"{source}: has both channels and colour samples ({found.shown} "
                             f"{'x'.join(str(n) for n in shape)}, {sizes[0]} x {sizes[1]}); "
                             f"name the axes with axes=... (letters from {AXES})")
        file_axes = file_axes.replace("C", GENERIC)
    if user is not None:
        text = check_axes(user, shape, source, holder="file", detail=shown)
        if file_axes is not None:
            clash = any(f not in (GENERIC, u) for f, u in zip(file_axes, text, strict=True))
            if clash:
                # the file's axes in our letters (tifffile's S is a colour sample: C)
                said = file_axes.replace(GENERIC, "?")
                native = f", {found.shown!r} in the file's letters" if (
                    found.shown and found.shown != said) else ""
                warnings.warn(f"{source}: axes {text!r} given but the file says "
                              f"{said!r}{native}; using {text!r}", UserWarning, stacklevel=3)
            _keep_matching(meta, file_axes, text)
        return _present(text, {**meta, "axes_from": "user"})
    if found.unknown:
        letter, name = next(iter(found.unknown.items()))
        raise InputError(f"{source}: has a {name!r} axis ({letter} in {shown}) that "
                         f"n2v-cascade has no letter for; name the axes with axes=... "
                         f"(letters from {AXES})")
    if file_axes is None:  # no metadata: the default rules (YX, SYX)
        return check_axes(None, shape, source), {**meta, "axes_from": "default"}
    if file_axes.count(GENERIC) == 1 and "S" not in file_axes:
        file_axes = file_axes.replace(GENERIC, "S")  # one unnamed axis: a stack of samples
        meta = {**meta, "axes_from": "default"}
    if GENERIC in file_axes:
        raise InputError(f"{source}: cannot tell the axes of {shown}; name them with "
                         f"axes=... (e.g. 'TZYX', letters from {AXES})")
    return _present(check_axes(file_axes, shape, source, holder="file", detail=shown), meta)


def _present(axes: str, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Drop metadata of axes the array does not have."""
    meta["physical"] = {k: v for k, v in meta["physical"].items() if k in axes}
    if "C" not in axes:
        meta["channel_names"] = None
    if not meta["physical"].keys() - {"T"}:
        meta["unit"] = None
    return axes, meta


def _keep_matching(meta: dict[str, Any], file_axes: str, text: str) -> None:
    """Keep physical sizes and channel names only for axes the user named as the file did."""
    same = {f for f, u in zip(file_axes, text, strict=True) if f == u}
    meta["physical"] = {k: v for k, v in meta["physical"].items() if k in same}
    if "C" not in same:
        meta["channel_names"] = None


# --- TIFF ----------------------------------------------------------------------------------


def _read_tiff(path: Path, source: str) -> tuple[np.ndarray, _Found]:
    with _reading(path, source, "TIFF"), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"{source}: TIFF file contains no images")
        series = tif.series[0]
        ome = tif.is_ome and series.kind == "ome"
        multi = len(tif.series) > 1 and ome and _same_series(tif.series)
        if len(tif.series) > 1 and not multi:
            warnings.warn(f"{source}: has {len(tif.series)} image series; reading only the "
                          f"first", UserWarning, stacklevel=3)
        if multi:  # the OME images of a multi-position file: our sample axis S
            data, axes = np.stack([s.asarray() for s in tif.series]), series.axes
        else:
            data, axes = _drop_alpha(series.asarray(), series.axes, series.keyframe)
        mapped, unknown = map_axes(axes)
        if multi:
            mapped, axes = "S" + mapped, "S" + axes
        page = series.keyframe
        if ome:
            ome_xml = tif.ome_metadata
            physical, unit, names = ome_info(ome_xml, mapped, data.shape)
            found = _Found("ome", mapped, axes, unknown=unknown, physical=physical, unit=unit,
                           channel_names=names,
                           ome_xml=None if multi else ome_xml)
        elif tif.is_imagej and series.kind == "imagej":
            ij = tif.imagej_metadata or {}
            physical, unit, names, extra = imagej_info(ij, page, mapped, data.shape)
            found = _Found("imagej", mapped, axes, unknown=unknown, physical=physical,
                           unit=unit, channel_names=names, imagej_extra=extra)
            data, found = _restore_shape(data, found, ij)
        else:
            physical, unit = tiff_physical(page, None)
            found = _Found("tiff", mapped, axes, unknown=unknown,
                           physical={k: v for k, v in physical.items() if k in mapped},
                           unit=unit)
    return data, found


def _same_series(series: list[tifffile.TiffPageSeries]) -> bool:
    """All OME images alike (shape, dtype, axes): positions of one acquisition."""
    first = series[0]
    return "S" not in first.axes and all(
        s.kind == "ome" and s.shape == first.shape and s.dtype == first.dtype
        and s.axes == first.axes for s in series)


def _drop_alpha(data: np.ndarray, axes: str, page: tifffile.TiffPage) -> tuple[np.ndarray, str]:
    """Drop alpha samples (TIFF ExtraSamples 1 and 2) from the samples axis."""
    extras = tuple(int(e) for e in page.extrasamples)
    if "S" not in axes or not extras:
        return data, axes
    axis = axes.index("S")
    first = data.shape[axis] - len(extras)
    keep = [i for i in range(data.shape[axis])
            if i < first or extras[i - first] not in (1, 2)]
    if len(keep) == data.shape[axis]:
        return data, axes
    data = np.take(data, keep, axis=axis)
    if len(keep) == 1:  # grey plus alpha: one sample left
        return data.squeeze(axis), axes.replace("S", "")
    return data, axes


def _restore_shape(data: np.ndarray, found: _Found,
                   ij: dict[str, Any]) -> tuple[np.ndarray, _Found]:
    """Axes recorded by :func:`write_image_nd` (S, size-1 axes) or io.write_image (Z=1)."""
    axes, shape = ij.get(N2V_AXES_KEY), ij.get(N2V_SHAPE_KEY)
    if isinstance(axes, str) and isinstance(shape, str | int):
        try:
            sizes = tuple(int(n) for n in str(shape).split("x"))
            ij_axes, ij_shape = imagej_layout(axes, sizes)
        except ValueError:
            return data, found
        kept = [(a, n) for a, n in zip(ij_axes, ij_shape, strict=True) if n > 1 or a in "YX"]
        if found.file_axes == "".join(a for a, _ in kept) and \
                data.shape == tuple(n for _, n in kept):
            found.file_axes = found.shown = axes
            return data.reshape(sizes), found
        return data, found
    if ij.get(_NDIM_KEY) == 3 and data.ndim == 2:
        found.file_axes = found.shown = "Z" + (found.file_axes or "")
        return data[np.newaxis], found
    return data, found


# --- other formats -------------------------------------------------------------------------


def _read_pillow(path: Path, source: str) -> tuple[np.ndarray, _Found]:
    kind = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    with _reading(path, source, kind):
        data = np.asarray(iio.imread(path, plugin="pillow"))
    if data.ndim == 3 and data.shape[-1] in (2, 4):  # grey+alpha, RGBA: alpha dropped
        data = data[..., : data.shape[-1] - 1]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data, _Found("other", "YXC" if data.ndim == 3 else "YX", "YXS"[: data.ndim])


def _read_bioio(path: Path, source: str) -> tuple[np.ndarray, _Found]:
    """CZI/ND2/LIF through bioio (the ``formats`` extra), squeezed to its real axes."""
    from n2v_cascade.imagefile_bioio import read_bioio

    data, dims, physical, channels = read_bioio(path, source)
    mapped, unknown = map_axes(dims)
    return data, _Found("bioio", mapped, dims, unknown=unknown, physical=physical,
                        unit="µm" if physical.keys() - {"T"} else None,
                        channel_names=channels)
