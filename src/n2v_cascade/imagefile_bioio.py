"""CZI, ND2 and LIF files through bioio: the ``formats`` extra of :mod:`n2v_cascade.imagefile`.

Only this module imports bioio (when a microscope file is read), so the core install
never needs it; a missing extra or plug-in is named in a one-line InputError.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from n2v_cascade.errors import InputError
from n2v_cascade.formats import require_formats_extra
from n2v_cascade.io import _reading


def read_bioio(path: Path, source: str) -> tuple[np.ndarray, str, dict[str, float],
                                                tuple[str, ...] | None]:
    """Pixels, axes (bioio's letters), physical sizes (Z/Y/X in µm, T in s) and channel
    names of the first scene. bioio's 5-D TCZYX(S) is squeezed to the axes the image
    really has: T, C, Z (and S) of size 1 are dropped, so a 2-D CZI is YX."""
    require_formats_extra(path, source)
    suffix = path.suffix.lower()
    kind = suffix[1:].upper()
    with _reading(path, source, kind), _quiet_bioio() as log:
        from bioio import BioImage

        try:
            image = BioImage(path)
        except Exception as exc:  # bioio_base.exceptions.UnsupportedFileFormatError
            if type(exc).__name__ != "UnsupportedFileFormatError":
                raise
            plugin = f"bioio_{suffix[1:]}"
            if importlib.util.find_spec(plugin) is None:
                raise InputError(f"{source}: no bioio reader for {suffix} files is installed: "
                                 f'pip install "n2v-cascade[formats]"') from None
            reason = log[-1].split(" failed with error: ")[-1] if log else str(exc)
            reason = reason.replace(repr(str(path)), "the file").replace(str(path), "the file")
            raise InputError(f"{source}: not a readable {kind} file ({_short(reason)})") from None
        if len(image.scenes) > 1:
            warnings.warn(f"{source}: has {len(image.scenes)} scenes; reading only the first",
                          UserWarning, stacklevel=4)
        data = np.asarray(image.data)
        dims = str(image.dims.order)
        sizes = image.physical_pixel_sizes
        interval = image.time_interval
        names = image.channel_names
    keep = [i for i, a in enumerate(dims) if data.shape[i] > 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    dims = "".join(dims[i] for i in keep)
    physical = {a: float(getattr(sizes, a)) for a in "ZYX"
                if a in dims and getattr(sizes, a, None)}
    if "T" in dims and interval is not None and interval.total_seconds() > 0:
        physical["T"] = interval.total_seconds()
    channels = None
    if "C" in dims and names is not None and len(names) == data.shape[dims.index("C")]:
        channels = tuple(str(n) for n in names)
    return data, dims, physical, channels


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _quiet_bioio() -> Iterator[list[str]]:
    """Keep bioio's log (each plug-in that failed to read the file) off stderr; yield it."""
    logger, lines = logging.getLogger("bioio"), []
    handler, propagate = _Lines(lines), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _short(text: str) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= 150 else line[:147] + "..."
