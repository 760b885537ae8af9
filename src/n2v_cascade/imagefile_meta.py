"""What :mod:`n2v_cascade.imagefile` keeps of a file besides its pixels.

:class:`ImageMeta` (axes, pixel type, physical sizes, unit, channel names, the carrier of
the metadata), :func:`describe` for messages, the one table that turns a file's axis letters
into ours, and the parsing of ImageJ and OME-TIFF metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tifffile

#: A file's axis letters (tifffile's, also bioio's) -> ours. tifffile's "S" is samples
#: per pixel (RGB colour), so it becomes a channel axis. ``None``: a generic axis that
#: means nothing (tifffile's "Q" and "I", a plain sequence of pages): the default rules
#: name it (one such axis is the sample axis S). Any other letter (tifffile's E lambda,
#: A angle, P phase, H lifetime, ...) is refused unless the caller names the axes.
FILE_AXES: dict[str, str | None] = {
    "T": "T", "C": "C", "Z": "Z", "Y": "Y", "X": "X", "S": "C", "Q": None, "I": None,
}
GENERIC = "?"  # an axis of unknown meaning in a mapped axes string

#: Lengths in micrometres, by the spellings files use (ImageJ "micron", OME "µm", ...).
_MICRONS: dict[str, float] = {
    "pm": 1e-6, "nm": 1e-3, "nanometer": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0,
    "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6,
    "å": 1e-4, "angstrom": 1e-4, "in": 25400.0, "inch": 25400.0,
}
#: The OME UnitsLength spelling of the units above (others are not written to OME).
OME_UNITS: dict[float, str] = {1e-6: "pm", 1e-3: "nm", 1.0: "µm", 1e3: "mm", 1e4: "cm",
                               1e6: "m", 1e-4: "Å", 25400.0: "in"}
_SECONDS: dict[str, float] = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
                              "ms": 1e-3, "msec": 1e-3, "µs": 1e-6, "us": 1e-6,
                              "min": 60.0, "h": 3600.0, "hour": 3600.0}
#: ImageJ metadata kept from an ImageJ input for its output (when it still fits).
IMAGEJ_KEPT = ("mode", "Ranges", "LUTs", "Labels", "Info", "Properties", "min", "max",
               "loop", "xorigin", "yorigin", "zorigin")


@dataclass(frozen=True)
class ImageMeta:
    """The axes and metadata of an image read by :func:`read_image_nd`.

    ``physical`` holds the pixel size per axis letter (Z, Y, X in ``unit``; T, the time
    between frames, in seconds), only for axes of the array that the file calibrates.
    ``kind`` says what carried the metadata: "imagej", "ome", "tiff" (a TIFF without
    either), "npy", "bioio" (CZI/ND2/LIF through bioio) or "other" (PNG/JPEG).
    ``ome_xml`` is an OME-TIFF input's OME-XML, ``imagej_extra`` the ImageJ entries of
    :data:`IMAGEJ_KEPT` (display ranges, LUTs, labels, info) to carry to the output.
    ``axes_from`` says where ``axes`` came from, so that a caller with its own defaults
    (a 3-D model reads a 3-D array as ZYX) can apply them to guessed axes only.
    """

    axes: str
    dtype: str
    physical: dict[str, float]
    unit: str | None
    channel_names: tuple[str, ...] | None
    source: str
    kind: str
    ome_xml: str | None = None
    imagej_extra: dict[str, Any] = field(default_factory=dict)
    axes_from: str = "file"  # "file" (metadata), "user" (axes=...) or "default" (guessed)


def describe(meta: ImageMeta, shape: Sequence[int]) -> str:
    """One line for messages: axes, shape, dtype, pixel size, frame interval, channels.

    E.g. ``"ZCYX 45x2x130x133 uint16, 0.4994x0.5119x0.5119 µm, channels conf, wf"``.
    """
    parts = [f"{meta.axes} {'x'.join(str(int(n)) for n in shape)} {meta.dtype}"]
    spatial = [a for a in meta.axes if a in "ZYX" and a in meta.physical]
    if spatial:
        sizes = "x".join(f"{meta.physical[a]:.4g}" for a in spatial)
        parts.append(f"{sizes} {show_unit(meta.unit) or 'units'}")
    if "T" in meta.physical:
        parts.append(f"{meta.physical['T']:.4g} s per frame")
    if meta.channel_names:
        parts.append("channels " + ", ".join(meta.channel_names))
    return ", ".join(parts)


def show_unit(unit: str | None) -> str | None:
    """The unit as people write it: ImageJ's "micron" and "um" are µm."""
    if unit is None:
        return None
    return "µm" if microns_per(unit) == 1.0 else unit


def microns_per(unit: str | None) -> float | None:
    """Micrometres in one ``unit`` (None when it is not a known length unit)."""
    return None if unit is None else _MICRONS.get(unit.strip().lower())


def imagej_unit(text: str) -> str:
    """ImageJ writes non-ASCII characters as ``\\uXXXX`` (``\\u00B5m`` for µm)."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)


def imagej_escape(text: str) -> str:
    """The inverse of :func:`imagej_unit`: an ASCII string for the ImageJ description."""
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in text)


def map_axes(file_axes: str) -> tuple[str, dict[str, str]]:
    """A file's axes in our letters (``?`` for generic ones), and the unknown letters.

    The second value maps each letter we have no meaning for to tifffile's name of it.
    """
    names = tifffile.TIFF.AXES_NAMES
    mapped, unknown = [], {}
    for letter in file_axes:
        if letter in FILE_AXES:
            mapped.append(FILE_AXES[letter] or GENERIC)
        else:
            mapped.append(GENERIC)
            unknown[letter] = names.get(letter, "unknown")
    return "".join(mapped), unknown


# --- ImageJ ------------------------------------------------------------------------------


def _resolution(page: tifffile.TiffPage, tag: str) -> float | None:
    value = page.tags.get(tag)
    if value is None:
        return None
    try:
        num, den = value.value
        size = den / num
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return size if math.isfinite(size) and size > 0 else None


def tiff_physical(page: tifffile.TiffPage, unit: str | None) -> tuple[dict[str, float], str | None]:
    """X/Y pixel size from the resolution tags: in ``unit`` (ImageJ) or, for a plain TIFF,
    only when the ResolutionUnit is centimetre (inch resolutions are mostly screen/print
    dots per inch, not microscope calibration)."""
    x, y = _resolution(page, "XResolution"), _resolution(page, "YResolution")
    if unit is None:
        if page.tags.get("ResolutionUnit") is None or page.tags["ResolutionUnit"].value != 3:
            return {}, None
        x, y = (None if v is None else v * 1e4 for v in (x, y))
        unit = "µm"
    found = {k: v for k, v in (("X", x), ("Y", y)) if v is not None}
    return found, unit if found else None


def imagej_info(ij: Mapping[str, Any], page: tifffile.TiffPage, axes: str,
                shape: Sequence[int]) -> tuple[dict[str, float], str | None,
                                               tuple[str, ...] | None, dict[str, Any]]:
    """Physical sizes, unit, channel names and kept extras of an ImageJ hyperstack."""
    unit = ij.get("unit")
    unit = imagej_unit(str(unit)) if unit not in (None, "", "pixel") else None
    physical, unit = tiff_physical(page, unit) if unit else ({}, None)
    spacing = _number(ij.get("spacing"))
    if unit and "Z" in axes and spacing:
        physical["Z"] = spacing
    interval = _number(ij.get("finterval"))
    scale = _SECONDS.get(str(ij.get("tunit", "sec")).strip().lower())
    if "T" in axes and interval and scale:
        physical["T"] = interval * scale
    extra = {k: ij[k] for k in IMAGEJ_KEPT if k in ij}
    return physical, unit, _imagej_channels(ij.get("Labels"), axes, shape), extra


def _imagej_channels(labels: Any, axes: str, shape: Sequence[int]) -> tuple[str, ...] | None:
    """Channel names from ImageJ's per-plane labels, when every plane of a channel has the
    same label (ImageJ has no channel names; Bio-Formats writes "c:1/2 z:3/45 - ...").
    Planes are in ImageJ's order (T, Z, C), so the channel changes fastest."""
    if "C" not in axes or not isinstance(labels, list | tuple):
        return None
    planes = math.prod(n for a, n in zip(axes, shape, strict=True) if a in "TZC")
    if len(labels) != planes or not all(isinstance(s, str) for s in labels):
        return None
    count = shape[axes.index("C")]
    names = tuple(labels[:count])
    if not all(names) or any(label != names[i % count] for i, label in enumerate(labels)):
        return None
    return names


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# --- OME ---------------------------------------------------------------------------------


def ome_info(xml: str, axes: str, shape: Sequence[int]) -> tuple[dict[str, float], str | None,
                                                                  tuple[str, ...] | None]:
    """Physical sizes (in the X unit), unit and channel names of the first OME image."""
    images = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    image = images[0] if isinstance(images, list) else images
    pixels = image.get("Pixels", {}) if isinstance(image, dict) else {}
    physical: dict[str, float] = {}
    unit = None
    for letter in "XYZ":
        size = _number(pixels.get(f"PhysicalSize{letter}"))
        here = str(pixels.get(f"PhysicalSize{letter}Unit", "µm"))
        if size is None or letter not in axes:
            continue
        unit = unit or here
        ratio = (microns_per(here) or math.nan) / (microns_per(unit) or math.nan)
        if here == unit or math.isfinite(ratio):
            physical[letter] = size * (1.0 if here == unit else ratio)
    interval = _number(pixels.get("TimeIncrement"))
    scale = _SECONDS.get(str(pixels.get("TimeIncrementUnit", "s")).lower())
    if "T" in axes and interval and scale:
        physical["T"] = interval * scale
    names = None
    channels = pixels.get("Channel", [])
    channels = [channels] if isinstance(channels, dict) else list(channels)
    if "C" in axes and len(channels) == shape[axes.index("C")]:
        found = tuple(str(c.get("Name", "")) for c in channels if isinstance(c, dict))
        names = found if len(found) == len(channels) and all(found) else None
    return physical, unit, names
