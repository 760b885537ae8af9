"""Writing N-D images with the metadata :func:`n2v_cascade.imagefile.read_image_nd` kept.

See :func:`write_image_nd`. Kept apart from the reader so both stay short.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from n2v_cascade.axes import check_axes
from n2v_cascade.errors import InputError, error_reason
from n2v_cascade.imagefile_meta import OME_UNITS, ImageMeta, imagej_escape, microns_per
from n2v_cascade.safe_write import atomic_path, check_output_path, write_errors

WRITE_SUFFIXES_ND: tuple[str, ...] = (".tif", ".tiff", ".npy")
#: Private ImageJ-description keys: our axes and shape, in the order written (S, T, Z, C,
#: Y, X). ImageJ has no sample axis and squeezes size-1 axes; these give them back.
N2V_AXES_KEY, N2V_SHAPE_KEY = "n2v_axes", "n2v_shape"
_IMAGEJ_ORDER = "STZCYX"
_IMAGEJ_DTYPES = ("uint8", "uint16", "int16", "float32")
_OME_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8",
              "uint16": "uint16", "uint32": "uint32", "float32": "float", "float64": "double"}


@dataclass(frozen=True)
class WriteReport:
    """What :func:`write_image_nd` wrote: the path, how many values were clipped to the
    output type's range, the pixel type, and the format ("imagej", "ome" or "npy")."""

    path: Path
    n_clipped: int
    dtype: str
    kind: str = ""


def write_image_nd(
    path: str | Path,
    array: np.ndarray,
    meta: ImageMeta,
    *,
    output_dtype: Literal["float32", "input"] = "float32",
    overwrite: bool = False,
    protect: Iterable[Path] = (),
) -> WriteReport:
    """Write ``array`` (axes ``meta.axes``) as .tif/.tiff or .npy with ``meta``'s metadata.

    **Format.** An OME-TIFF or bioio input (``meta.kind`` "ome"/"bioio") gives an OME-TIFF
    in the input's axes order (its DimensionOrder); physical sizes, unit, frame interval
    and channel names are written, and an OME input's whole OME-XML (instrument, channel
    and plane details, annotations) is carried over with the new pixel type when the image
    keeps its axes and shape. Everything else gives an ImageJ hyperstack, stored in
    ImageJ's order T, Z, C, Y, X (an ImageJ input already was) with spacing, unit, frame
    interval, X/Y resolution, channel names as per-plane labels, and an ImageJ input's
    display ranges, LUTs, mode and info. ImageJ has no sample axis: S is stored as
    frames (folded with T when both exist) and our axes are recorded in the description
    (``n2v_axes``), so :func:`read_image_nd` gives S, and size-1 axes, back; Fiji shows
    the samples as frames. Pixel types ImageJ cannot hold (int8, int32, uint32, float64)
    go to OME-TIFF. OME-TIFF holds S as one OME image per sample (read back as S); its
    size-1 axes are squeezed on reading. ``.npy`` stores the array as is: no axes, no
    metadata.

    **Pixels.** ``output_dtype="float32"`` writes float32. ``"input"`` writes the input's
    type (``meta.dtype``): integers are rounded, values whose rounded value lies outside
    the type's range are clipped and counted in ``WriteReport.n_clipped`` (NaN/Inf
    refused); float types are cast.

    **Safety.** Atomic (temporary file + ``os.replace``); an existing ``path`` is refused
    unless ``overwrite`` (OutputExistsError), a path in ``protect`` (the inputs) always
    (InputError).
    """
    path = Path(path)
    source = str(path)
    suffix = check_output_path(path, WRITE_SUFFIXES_ND, overwrite, protect)
    data = np.asarray(array)
    if data.dtype.kind not in "iuf" or data.size == 0:
        raise InputError(f"{source}: cannot write an array of dtype {data.dtype} and shape "
                         f"{data.shape}; expected numbers")
    axes = check_axes(meta.axes, data.shape, source)
    out, clipped = _cast(data, meta.dtype, output_dtype, source)
    kind = "npy" if suffix == ".npy" else "imagej"
    if kind == "imagej" and (meta.kind in ("ome", "bioio") or out.dtype.name not in
                             _IMAGEJ_DTYPES):
        kind = "ome"
    with write_errors(source), atomic_path(path, overwrite=overwrite) as tmp:
        try:
            if kind == "npy":
                with open(tmp, "xb") as fh:
                    np.save(fh, out, allow_pickle=False)
            elif kind == "ome":
                _write_ome(tmp, out, axes, meta)
            else:
                _write_imagej(tmp, out, axes, meta)
        except (ValueError, TypeError, tifffile.OmeXmlError) as exc:
            raise InputError(f"{source}: cannot write {kind} file ({error_reason(exc)})") from exc
    return WriteReport(path, clipped, out.dtype.name, kind)


def _cast(data: np.ndarray, dtype: str, output_dtype: str, source: str) -> tuple[np.ndarray, int]:
    if output_dtype == "float32":
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(data, dtype=np.float32), 0
    if output_dtype != "input":
        raise InputError(f"output_dtype: must be 'float32' or 'input', got {output_dtype!r}")
    try:
        target = np.dtype(dtype)
    except TypeError:
        raise InputError(f"{source}: unknown input pixel type {dtype!r}") from None
    if target.kind == "f":
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(data, dtype=target), 0
    if target.kind not in "iu":
        raise InputError(f"{source}: cannot write pixels as the input type {dtype}")
    if data.dtype.kind in "iu" and np.can_cast(data.dtype, target):
        return np.ascontiguousarray(data, dtype=target), 0
    values = data.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise InputError(f"{source}: has {values.size - np.count_nonzero(finite)} NaN/Inf "
                         f"values; cannot write them as {target}")
    rounded = np.rint(values)
    info = np.iinfo(target)
    clipped = int(np.count_nonzero(rounded < info.min) + np.count_nonzero(rounded > info.max))
    return np.clip(rounded, info.min, info.max).astype(target), clipped


# --- ImageJ --------------------------------------------------------------------------------


def imagej_layout(axes: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """ImageJ axes and shape of an array in our axes (in S T Z C Y X order): S becomes
    frames (T), folded into T when both exist (S outer)."""
    if len(axes) != len(shape) or any(a not in _IMAGEJ_ORDER for a in axes) or \
            list(axes) != sorted(axes, key=_IMAGEJ_ORDER.index):
        raise ValueError(f"axes {axes!r} are not in ImageJ order {_IMAGEJ_ORDER}")
    out_axes, out_shape, fold = [], [], 1
    for a, n in zip(axes, shape, strict=True):
        if a == "S" and "T" in axes:
            fold = n
            continue
        out_axes.append("T" if a == "S" else a)
        out_shape.append(n * fold if a == "T" else n)
    return "".join(out_axes), tuple(out_shape)


def _write_imagej(tmp: Path, out: np.ndarray, axes: str, meta: ImageMeta) -> None:
    order = "".join(a for a in _IMAGEJ_ORDER if a in axes)
    data = np.transpose(out, [axes.index(a) for a in order])
    ij_axes, ij_shape = imagej_layout(order, data.shape)
    metadata: dict[str, Any] = {"axes": ij_axes + "S", N2V_AXES_KEY: order,
                                N2V_SHAPE_KEY: "x".join(str(n) for n in data.shape)}
    metadata.update(_imagej_extra(meta, ij_axes, ij_shape))
    physical = meta.physical
    spatial = {a for a in physical if a in "ZYX"}
    if meta.unit and spatial:
        metadata["unit"] = imagej_escape(meta.unit)
    if "Z" in physical and "Z" in axes:
        metadata["spacing"] = physical["Z"]
    if "T" in physical and "T" in axes:
        metadata["finterval"] = physical["T"]
    resolution = None
    if "X" in physical or "Y" in physical:
        x = physical.get("X", physical.get("Y"))
        resolution = (1.0 / x, 1.0 / physical.get("Y", x))
    tifffile.imwrite(tmp, data.reshape(*ij_shape, 1), imagej=True, photometric="minisblack",
                     metadata=metadata, resolution=resolution)


def _imagej_extra(meta: ImageMeta, ij_axes: str, ij_shape: tuple[int, ...]) -> dict[str, Any]:
    """The ImageJ input's ranges, LUTs, labels, info... that still fit the output."""
    channels = ij_shape[ij_axes.index("C")] if "C" in ij_axes else 1
    planes = int(np.prod([n for a, n in zip(ij_axes, ij_shape, strict=True) if a in "TZC"]))
    extra = dict(meta.imagej_extra)
    if len(extra.get("Ranges", ())) != 2 * channels:
        extra.pop("Ranges", None)
    if len(extra.get("LUTs", ())) != channels:
        extra.pop("LUTs", None)
    names = meta.channel_names
    if names is not None and len(names) == channels:
        extra["Labels"] = [names[i % channels] for i in range(planes)]
    elif len(extra.get("Labels", ())) != planes:
        extra.pop("Labels", None)
    return extra


# --- OME-TIFF ------------------------------------------------------------------------------


def _write_ome(tmp: Path, out: np.ndarray, axes: str, meta: ImageMeta) -> None:
    order = ("S" if "S" in axes else "") + "".join(a for a in axes if a not in "SYX") + "YX"
    data = np.transpose(out, [axes.index(a) for a in order])
    if "S" not in order:
        xml = _carried_ome_xml(meta, data.dtype, order, data.shape)
        if xml is not None:
            tifffile.imwrite(tmp, data, photometric="minisblack", metadata=None,
                             description=xml.encode("utf-8"))
            return
    metadata: dict[str, Any] = {"axes": order.replace("S", "")}
    unit = OME_UNITS.get(microns_per(meta.unit) or 0.0)
    for letter in "XYZ":
        if letter in meta.physical and letter in axes and unit:
            metadata[f"PhysicalSize{letter}"] = meta.physical[letter]
            metadata[f"PhysicalSize{letter}Unit"] = unit
    if "T" in meta.physical and "T" in axes:
        metadata.update(TimeIncrement=meta.physical["T"], TimeIncrementUnit="s")
    names = meta.channel_names
    if names is not None and "C" in axes and len(names) == data.shape[order.index("C")]:
        metadata["Channel"] = {"Name": list(names)}
    with tifffile.TiffWriter(tmp, ome=True) as tif:
        for image in (data if "S" in order else [data]):
            tif.write(image, photometric="minisblack", metadata=metadata)


def _carried_ome_xml(meta: ImageMeta, dtype: np.dtype, axes: str,
                     shape: tuple[int, ...]) -> str | None:
    """The input's OME-XML for the output: new pixel type, one TiffData for all planes, new
    UUID. None (write fresh OME-XML) unless it describes one image with these axes and
    shape and one sample per channel."""
    if meta.kind != "ome" or not meta.ome_xml or meta.axes != axes:
        return None
    try:
        root = ET.fromstring(meta.ome_xml)
    except ET.ParseError:
        return None
    ns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""

    def q(tag: str) -> str:
        return f"{{{ns}}}{tag}" if ns else tag

    images = root.findall(q("Image"))
    pixels = images[0].find(q("Pixels")) if len(images) == 1 else None
    if pixels is None or root.find(q("BinaryOnly")) is not None:
        return None
    try:
        sizes = {a: int(pixels.get(f"Size{a}", "1")) for a in "XYZCT"}
        samples = [int(c.get("SamplesPerPixel", "1")) for c in pixels.findall(q("Channel"))]
    except ValueError:
        return None
    order = pixels.get("DimensionOrder", "")
    kept = "".join(a for a in reversed(order) if sizes.get(a, 1) > 1 or a in "YX")
    if kept != axes or tuple(sizes[a] for a in axes) != shape or any(n != 1 for n in samples):
        return None
    pixels.set("Type", _OME_TYPES[dtype.name])
    pixels.set("SignificantBits", str(dtype.itemsize * 8))
    pixels.set("BigEndian", "false")
    pixels.set("Interleaved", "false")
    for child in list(pixels):
        if child.tag in (q("TiffData"), q("BinData"), q("MetadataOnly")):
            pixels.remove(child)
    at = max((i + 1 for i, c in enumerate(pixels) if c.tag == q("Channel")), default=0)
    planes = sizes["Z"] * sizes["C"] * sizes["T"]
    pixels.insert(at, ET.Element(q("TiffData"), {"IFD": "0", "PlaneCount": str(planes)}))
    root.set("UUID", f"urn:uuid:{uuid.uuid4()}")
    root.set("Creator", "n2v-cascade (OME-XML of the input, new pixel data)")
    if ns:  # unprefixed OME elements, unless some (annotation content) have no namespace
        plain = any(not e.tag.startswith("{") for e in root.iter() if isinstance(e.tag, str))
        ET.register_namespace("ome" if plain else "", ns)  # ElementTree's registry is global
    text = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>' + text
