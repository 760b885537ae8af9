"""Images read and written chunk by chunk: OME-Zarr (and large TIFFs) for the ``distributed``
extra.

:func:`open_image` opens an OME-Zarr (NGFF 0.4 on zarr v2 or 0.5 on zarr v3, as
ome-zarr-py writes them), a plain zarr array or a TIFF (through tifffile's zarr store)
without reading its pixels: a :class:`LazyImage` holds the full-resolution level's shape,
dtype and storage chunks, an :class:`~n2v_cascade.imagefile_meta.ImageMeta` (axes in our
letters, pixel sizes from the ``scale`` transforms and the axis units, channel names from
``omero``), and reads any region on demand. :func:`create_omezarr` makes an OME-Zarr for a
result with the same axes, scale and units, :func:`write_region` fills it region by region,
and :func:`build_pyramid` derives the lower resolutions from the written full-resolution
level afterwards. zarr, ome-zarr and dask are imported only here and in
:mod:`n2v_cascade.chunked`, through :func:`n2v_cascade.extras.require`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .axes import check_axes
from .errors import InputError, N2VError
from .extras import MissingExtraError, require
from .imagefile import _Found, _resolve_axes
from .imagefile_meta import ImageMeta, imagej_info, map_axes, microns_per, ome_info, tiff_physical

#: NGFF axis names of our letters (S, a sample axis, is a custom axis without a type).
NGFF_NAMES = {"T": "t", "S": "s", "C": "c", "Z": "z", "Y": "y", "X": "x"}
NGFF_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: NGFF length units -> ours (imagefile_meta's spellings); time units -> seconds.
SPACE_UNITS = {"angstrom": "Å", "picometer": "pm", "nanometer": "nm", "micrometer": "µm",
               "millimeter": "mm", "centimeter": "cm", "meter": "m", "inch": "in"}
TIME_UNITS = {"nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0,
              "minute": 60.0, "hour": 3600.0, "day": 86400.0}
TIFF_SUFFIXES = (".tif", ".tiff")


def modules() -> tuple[Any, Any]:
    """``(zarr, dask.array)``, or a one-line error naming the ``distributed`` extra."""
    zarr, _, dask_array, _ = require("distributed")
    return zarr, dask_array


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store: ``*.zarr`` (``*.ome.zarr``) or a folder with
    zarr metadata."""
    path = Path(path)
    if path.name.lower().endswith(".zarr"):
        return True
    return path.is_dir() and any((path / n).is_file()
                                 for n in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


@dataclass(frozen=True)
class LazyImage:
    """An image on disk, read region by region (picklable: each read opens the file).

    ``kind`` is "ome-zarr", "zarr" or "tiff"; ``array`` the full-resolution array inside
    the store ("" for the store itself, the series index for a TIFF); ``ngff`` a source
    OME-Zarr's axes (NGFF dicts) and first dataset's transforms, written back unchanged.
    """

    path: str
    kind: str
    array: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    meta: ImageMeta
    ngff: dict | None = None

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        """The pixels of ``region`` (one slice per axis) as stored."""
        if self.kind == "tiff-memmap":  # needs no zarr
            return np.array(tifffile.memmap(self.path, mode="r")[region])
        zarr, _ = modules()
        if self.kind == "tiff":  # a fresh handle per read: tifffile's are not thread-safe
            with tifffile.TiffFile(self.path) as tif:
                store = tif.series[int(self.array)].aszarr()
                return np.asarray(zarr.open_array(store, mode="r")[region])
        return np.asarray(zarr.open_array(self.path, path=self.array, mode="r")[region])

    def dask(self) -> Any:
        """The full-resolution level as a lazy dask array in its storage chunks."""
        _, da = modules()
        return da.from_array(_Reader(self), chunks=self.chunks, asarray=False, fancy=False,
                             name=f"lazy-{self.path}-{self.array}-{self.meta.axes}")

    def identity(self) -> dict[str, Any]:
        """What identifies the source in a resume fingerprint (its pixels are not hashed)."""
        path = Path(self.path)
        marker = path if self.kind.startswith("tiff") else path / self.array / "zarr.json"
        if not marker.exists():
            marker = path / self.array / ".zarray"
        stat = marker.stat() if marker.exists() else None
        return {"path": str(path.resolve()), "kind": self.kind, "array": self.array,
                "shape": list(self.shape), "dtype": self.dtype, "axes": self.meta.axes,
                "size": stat.st_size if stat else None,
                "mtime_ns": stat.st_mtime_ns if stat else None}


class _Reader:
    """What :func:`dask.array.from_array` needs of a :class:`LazyImage`."""

    def __init__(self, image: LazyImage) -> None:
        self.image, self.shape = image, image.shape
        self.dtype, self.ndim = np.dtype(image.dtype), len(image.shape)

    def __getitem__(self, region: tuple[slice, ...]) -> np.ndarray:
        return self.image.read(region if isinstance(region, tuple) else (region,))


def open_image(path: str | Path, axes: str | None = None) -> LazyImage:
    """Open an OME-Zarr, a zarr array or a TIFF lazily (``axes`` overrides the file's)."""
    source = str(path)
    if not Path(path).exists():
        raise InputError(f"{source}: not found")
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(Path(path), axes)
    zarr, _ = modules()
    try:
        node = zarr.open(store=source, mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure means no readable store
        raise InputError(f"{source}: not a readable zarr store ({type(exc).__name__}: "
                         f"{exc})") from None
    if isinstance(node, zarr.Array):
        text = check_axes(axes, node.shape, source)
        meta = ImageMeta(axes=text, dtype=str(node.dtype), physical={}, unit=None,
                         channel_names=None, source=source, kind="zarr",
                         axes_from="user" if axes else "default")
        return LazyImage(source, "zarr", "", tuple(node.shape), str(node.dtype),
                         tuple(node.chunks), meta)
    attrs = node.attrs.asdict()
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise InputError(f"{source}: a zarr group without OME-Zarr multiscales metadata")
    first = multiscales[0]
    dataset = first["datasets"][0]
    array = node[dataset["path"]]
    shape = tuple(int(n) for n in array.shape)
    named = first.get("axes") or [{"name": n} for n in "tczyx"[-len(shape):]]
    named = [{"name": a} if isinstance(a, str) else dict(a) for a in named]
    letters = _letters(named, source)
    transforms = dataset.get("coordinateTransformations", [])
    scale = [1.0] * len(shape)
    for t in transforms + first.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [a * float(b) for a, b in zip(scale, t["scale"], strict=True)]
    physical, unit = _physical(letters, named, scale)
    labels = [c.get("label") for c in ome.get("omero", {}).get("channels", [])]
    names = tuple(str(n) for n in labels) if labels and all(labels) else None
    if "C" not in letters or len(labels) != shape[letters.index("C")]:
        names = None
    meta = ImageMeta(axes=letters, dtype=str(array.dtype), physical=physical, unit=unit,
                     channel_names=names, source=source, kind="ome-zarr")
    if axes is not None:
        meta = _user_axes(meta, axes, shape)
    version = str(ome.get("version") or first.get("version") or "0.4")
    ngff = {"axes": named, "transforms": transforms, "version": version,
            "name": first.get("name")}
    return LazyImage(source, "ome-zarr", str(dataset["path"]), shape, str(array.dtype),
                     tuple(int(c) for c in array.chunks), meta, ngff)


def open_omezarr(path: str | Path, axes: str | None = None) -> tuple[Any, ImageMeta]:
    """An OME-Zarr's full-resolution level as a lazy dask array, and its metadata."""
    image = open_image(path, axes)
    return image.dask(), image.meta


def _letters(named: list[dict], source: str) -> str:
    """Our letters for NGFF axes: t c z y x by name, one axis of another kind is S."""
    out = []
    for axis in named:
        name, kind = str(axis.get("name", "")).lower(), axis.get("type")
        letter = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}.get(name) or {
            "time": "T", "channel": "C"}.get(str(kind)) or ("S" if kind != "space" else None)
        if letter is None or letter in out:
            raise InputError(f"{source}: cannot map the OME-Zarr axes "
                             f"{[a.get('name') for a in named]} to S T C Z Y X; name them "
                             f"with --axes")
        out.append(letter)
    return check_axes("".join(out), [0] * len(out), source)


def _physical(letters: str, named: list[dict], scale: list[float]
              ) -> tuple[dict[str, float], str | None]:
    """Pixel sizes (Z Y X in one unit, T in seconds) from the NGFF scale and units."""
    physical: dict[str, float] = {}
    units = {a: str(d["unit"]) for a, d in zip(letters, named, strict=True) if d.get("unit")}
    spatial = [a for a in "XYZ" if a in units and a in letters]
    unit = SPACE_UNITS.get(units[spatial[0]], units[spatial[0]]) if spatial else None
    for a in spatial:
        here = SPACE_UNITS.get(units[a], units[a])
        ratio = 1.0 if here == unit else (microns_per(here) or math.nan) / (
            microns_per(unit) or math.nan)
        if math.isfinite(ratio):
            physical[a] = scale[letters.index(a)] * ratio
    if "T" in units and units["T"] in TIME_UNITS:
        physical["T"] = scale[letters.index("T")] * TIME_UNITS[units["T"]]
    return physical, unit


def _user_axes(meta: ImageMeta, axes: str, shape: tuple[int, ...]) -> ImageMeta:
    """The user's axes; metadata kept only for axes named as the file names them."""
    text = check_axes(axes, shape, meta.source, holder="file")
    same = {f for f, u in zip(meta.axes, text, strict=True) if f == u}
    return replace(meta, axes=text, axes_from="user",
                   physical={k: v for k, v in meta.physical.items() if k in same},
                   channel_names=meta.channel_names if "C" in same else None)


def _open_tiff(path: Path, axes: str | None) -> LazyImage:
    """The first series of a TIFF through tifffile's zarr store, with its metadata."""
    source = str(path)
    try:
        zarr, _ = modules()
    except MissingExtraError:  # an uncompressed TIFF is memory-mapped without zarr
        zarr = None
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            kind, shape, chunks = _tiff_store(path, series, zarr)
            mapped, unknown = map_axes(series.axes)
            page = series.keyframe
            if tif.is_ome and series.kind == "ome":
                physical, unit, names = ome_info(tif.ome_metadata, mapped, shape)
                found = _Found("ome", mapped, series.axes, unknown=unknown, physical=physical,
                               unit=unit, channel_names=names)
            elif tif.is_imagej and series.kind == "imagej":
                physical, unit, names, _ = imagej_info(tif.imagej_metadata or {}, page,
                                                       mapped, shape)
                found = _Found("imagej", mapped, series.axes, unknown=unknown,
                               physical=physical, unit=unit, channel_names=names)
            else:
                physical, unit = tiff_physical(page, None)
                found = _Found("tiff", mapped, series.axes, unknown=unknown, unit=unit,
                               physical={k: v for k, v in physical.items() if k in mapped})
            dtype = str(series.dtype)
    except N2VError:
        raise  # already one line naming the file (or the extra)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
        raise InputError(f"{source}: cannot read the TIFF lazily ({exc})") from None
    final, meta = _resolve_axes(source, shape, found, axes)
    return LazyImage(source, kind, "0", shape, dtype, chunks,
                     ImageMeta(axes=final, dtype=dtype, source=source, kind=found.kind, **meta))


def _tiff_store(path: Path, series: Any, zarr: Any) -> tuple[str, tuple[int, ...],
                                                          tuple[int, ...]]:
    """How a TIFF is read by region: tifffile's zarr store (it implements zarr v3's store
    interface), or else a memory map of uncompressed contiguous pixels; else refused
    (``zarr`` None: not installed, so only the memory map is tried)."""
    if zarr is not None:
        try:
            store = zarr.open_array(series.aszarr(), mode="r")
            return "tiff", tuple(store.shape), tuple(store.chunks)
        except Exception:  # noqa: BLE001 - a tifffile/zarr pairing without a working store
            pass
    try:
        mapped = tifffile.memmap(path, mode="r")
    except ValueError:
        if zarr is None:
            modules()  # the one-line error naming the extra
        raise InputError(f"{path}: cannot be read by region here (tifffile's zarr store "
                         f"fails and the pixels are not contiguous); convert it to "
                         f"OME-Zarr first") from None
    shape = tuple(mapped.shape)
    return "tiff-memmap", shape, (1,) * (len(shape) - 2) + shape[-2:]


# --- writing ----------------------------------------------------------------------------


def ngff_order(axes: str) -> str:
    """The axes in an order NGFF allows (time, then sample/channel, then space): ``axes``
    itself when it already is, else T S C Z Y X."""
    ranks = [{"T": 0, "S": 1, "C": 1}.get(a, 2) for a in axes]
    return axes if ranks == sorted(ranks) else "".join(a for a in "TSCZYX" if a in axes)


def ngff_axes(meta: ImageMeta, axes: str) -> tuple[list[dict], list[float]]:
    """NGFF axis dicts (names, types, units) and the scale of ``axes`` from ``meta``."""
    unit = _ngff_unit(meta.unit)
    named, scale = [], []
    for a in axes:
        axis: dict[str, str] = {"name": NGFF_NAMES[a]}
        if a in NGFF_TYPES:
            axis["type"] = NGFF_TYPES[a]
        if a in "ZYX" and a in meta.physical and unit:
            axis["unit"] = unit
        if a == "T" and "T" in meta.physical:
            axis["unit"] = "second"
        named.append(axis)
        scale.append(float(meta.physical.get(a, 1.0)))
    return named, scale


def _ngff_unit(unit: str | None) -> str | None:
    factor = microns_per(unit)
    return next((n for n, ours in SPACE_UNITS.items() if microns_per(ours) == factor), None)


def create_omezarr(path: str | Path, shape: tuple[int, ...], dtype: str,
                   chunks: tuple[int, ...], named: list[dict], transforms: list[dict], *,
                   version: str = "0.5", name: str | None = None,
                   channel_names: tuple[str, ...] | None = None) -> None:
    """Create an OME-Zarr for a result: group metadata and an empty full-resolution array
    "0" (float arrays are filled with NaN until written)."""
    zarr, _ = modules()
    from ome_zarr.format import format_from_version

    fmt = format_from_version(version)
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    extra = {"dimension_names": [a["name"] for a in named]} if fmt.zarr_format == 3 else {}
    group.create_array("0", shape=shape, chunks=chunks, dtype=dtype,
                       fill_value=np.nan if np.dtype(dtype).kind == "f" else 0,
                       chunk_key_encoding=fmt.chunk_key_encoding, **extra)
    write_metadata(path, named, [transforms], version=version, name=name,
                   channel_names=channel_names)


def write_metadata(path: str | Path, named: list[dict], levels: list[list[dict]], *,
                   version: str = "0.5", name: str | None = None,
                   channel_names: tuple[str, ...] | None = None) -> None:
    """(Re)write the multiscales metadata: one dataset per level, its transforms."""
    zarr, _ = modules()
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="r+")
    datasets = [{"path": str(i), "coordinateTransformations": t} for i, t in enumerate(levels)]
    extra = {"metadata": {"omero": {"channels": [{"label": n} for n in channel_names]}}} \
        if channel_names else {}
    write_multiscales_metadata(group, datasets, fmt=format_from_version(version),
                               axes=[dict(a) for a in named], name=name or "image", **extra)


def write_region(path: str | Path, region: tuple[slice, ...], data: np.ndarray) -> None:
    """Write ``data`` into ``region`` of the full-resolution level (whole chunks: no two
    writers share a chunk)."""
    zarr, _ = modules()
    zarr.open_array(str(path), path="0", mode="r+")[region] = data


def build_pyramid(path: str | Path, axes: str, named: list[dict], transforms: list[dict], *,
                  levels: int | None = None, version: str = "0.5", name: str | None = None,
                  channel_names: tuple[str, ...] | None = None,
                  compute: Callable[[Any], Any] | None = None) -> int:
    """Add lower resolutions (Y and X halved by 2x2 means per level; other axes kept),
    each computed chunk by chunk from the level above it once that is written, and list
    them in the metadata. ``levels`` (default: until one chunk holds a YX plane) counts
    the added ones; ``compute`` runs a dask graph (default: the threaded scheduler).
    Returns the number of levels written, the full resolution included."""
    zarr, da = modules()
    from ome_zarr.format import format_from_version

    fmt = format_from_version(version)
    group = zarr.open_group(str(path), mode="r+")
    base = group["0"]
    iy, ix = axes.index("Y"), axes.index("X")
    if levels is None:
        levels, size = 0, max(base.shape[iy], base.shape[ix])
        while size > max(base.chunks[iy], base.chunks[ix]) and levels < 8 and \
                min(base.shape[iy], base.shape[ix]) >> (levels + 1) >= 1:
            levels, size = levels + 1, size // 2
    compute = compute or (lambda graph: graph.compute(scheduler="threads"))
    scale = next((list(t["scale"]) for t in transforms if t.get("type") == "scale"),
                 [1.0] * base.ndim)
    all_transforms = [transforms]
    for level in range(1, levels + 1):
        above = da.from_zarr(group[str(level - 1)])
        even = tuple(c - c % 2 or 2 for c in base.chunks)
        above = above.rechunk({i: even[i] for i in (iy, ix)})
        small = da.coarsen(np.mean, above, {iy: 2, ix: 2}, trim_excess=True)
        if base.dtype.kind in "iu":
            info = np.iinfo(base.dtype)
            small = da.clip(da.round(small), info.min, info.max)
        small = small.astype(base.dtype)
        extra = {"dimension_names": [a["name"] for a in named]} if fmt.zarr_format == 3 else {}
        target = group.create_array(str(level), shape=small.shape, chunks=base.chunks,
                                    dtype=base.dtype, fill_value=base.fill_value,
                                    chunk_key_encoding=fmt.chunk_key_encoding,
                                    overwrite=True, **extra)
        compute(da.store(small.rechunk(base.chunks), target, lock=False, compute=False))
        all_transforms.append([_halved(t, iy, ix, level, scale) for t in transforms])
    write_metadata(path, named, all_transforms, version=version, name=name,
                   channel_names=channel_names)
    return levels + 1


def _halved(transform: dict, iy: int, ix: int, level: int, base: list[float]) -> dict:
    """A level's transform: Y and X pixels 2**level times larger, and its translation moved
    to the centre of the first pixel (as ome-zarr-py places it)."""
    factor = 2 ** level
    if transform.get("type") == "scale":
        return {**transform, "scale": [float(s) * (factor if i in (iy, ix) else 1)
                                       for i, s in enumerate(transform["scale"])]}
    if transform.get("type") == "translation":
        return {**transform, "translation": [
            float(t) + ((factor - 1) / 2 * base[i] if i in (iy, ix) else 0.0)
            for i, t in enumerate(transform["translation"])]}
    return dict(transform)
