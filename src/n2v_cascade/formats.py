"""File-format details of :mod:`n2v_cascade.io`: supported suffixes, integer PNG output,
tifffile's log, and microscope formats that need the ``formats`` extra.

Kept apart from ``io.py`` so that the reader and writer there stay short.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from n2v_cascade.errors import InputError

# Microscope formats read through the ``formats`` extra (bioio and its plug-ins).
FORMATS_EXTRA_SUFFIXES: tuple[str, ...] = (".czi", ".nd2", ".lif")
# PNG output is uint8 when at most this fraction of the pixels lies above 255 (denoising
# overshoots an 8-bit image's maximum on a few pixels), else uint16.
PNG_UINT8_OVERFLOW = 1e-3


def check_suffix(path: Path, source: str, allowed: tuple[str, ...], what: str) -> str:
    """The lower-case suffix of ``path``; refused unless in ``allowed`` (``what``: file/output)."""
    suffix = path.suffix.lower()
    if suffix not in allowed:
        shown, names = suffix or "(none)", ", ".join(allowed)
        raise InputError(f"{source}: unsupported {what} type '{shown}' (supported: {names})")
    return suffix


def check_formats_extra(path: Path, source: str) -> None:
    """Refuse a microscope format with a line that says how to read it."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS_EXTRA_SUFFIXES:
        return
    require_formats_extra(path, source)
    raise InputError(f"{source}: {suffix} files are not read by this version of n2v-cascade; "
                     f"export the image as TIFF")


def require_formats_extra(path: Path, source: str) -> None:
    """Refuse a microscope format when bioio (the ``formats`` extra) is not installed."""
    suffix = path.suffix.lower()
    if suffix in FORMATS_EXTRA_SUFFIXES and importlib.util.find_spec("bioio") is None:
        raise InputError(f'{source}: {suffix} files need the formats extra: pip install '
                         f'"n2v-cascade[formats]" (or export the image as TIFF)')


def png_pixels(data: np.ndarray, source: str) -> np.ndarray:
    """Round and clip a 2-D image to uint8 or uint16 for PNG; warn how many pixels clipped.

    uint8 when at most :data:`PNG_UINT8_OVERFLOW` of the pixels round above 255, else
    uint16. Values below 0 or above the type's maximum are clipped, with one warning.
    """
    if data.ndim != 2:
        raise InputError(f"{source}: PNG holds one 2-D image; write .tif for the stack of "
                         f"shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(f"{source}: cannot write NaN/Inf pixels to PNG; write .tif")
    rounded = np.rint(data.astype(np.float64))
    eight_bit = np.count_nonzero(rounded > 255) <= PNG_UINT8_OVERFLOW * rounded.size
    dtype = np.uint8 if eight_bit else np.uint16
    top = int(np.iinfo(dtype).max)
    clipped = int(np.count_nonzero((rounded < 0) | (rounded > top)))
    if clipped:
        warnings.warn(f"{source}: PNG stores whole numbers 0-{top}; {clipped} of "
                      f"{rounded.size} pixels were clipped (write .tif for the exact values)",
                      UserWarning, stacklevel=3)
    return np.clip(rounded, 0, top).astype(dtype)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _text(record: logging.LogRecord) -> str:
    text = re.sub(r"^<[^>]*>\s*", "", record.getMessage().strip())  # drop "<tifffile.X> "
    lines = text.splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= 150 else text[:147] + "..."


@contextmanager
def tifffile_log(source: str) -> Iterator[None]:
    """Keep tifffile's log off stderr while reading ``source``, and act on it.

    tifffile logs (rather than raises) some damage, e.g. a page offset past the end of a
    truncated stack, and then returns fewer slices: an error it logs becomes an
    InputError, a warning one ``warning:`` line naming the file. When the read itself
    raises, the log is dropped and the read's own error is reported.
    """
    logger, handler = logging.getLogger("tifffile"), _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    errors = [_text(r) for r in handler.records if r.levelno >= logging.ERROR]
    if errors:
        raise InputError(f"{source}: not a readable TIFF file (truncated or corrupt: "
                         f"{errors[-1]})")
    if handler.records:
        warnings.warn(f"{source}: {_text(handler.records[0])}", UserWarning, stacklevel=4)
