"""Optional extras: a one-line error naming the extra to install when one is missing.

``pip install n2v-cascade`` works for everything except the features listed in
:data:`EXTRAS`; those import their packages through :func:`require`, so a missing package
is reported as ``... needs the optional extra 'bmz': pip install "n2v-cascade[bmz]"``
instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import N2VError

# extra name -> (what it is for, the modules it provides)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bmz": ("BioImage Model Zoo export", ("bioimageio.spec", "bioimageio.core")),
    "napari": ("the napari plugin", ("napari", "magicgui", "qtpy")),
    "distributed": ("reading zarr, OME-Zarr or tiled TIFFs chunk by chunk (chunked "
                    "prediction, lazy training)",
                    ("zarr", "ome_zarr", "dask.array", "dask.distributed")),
}


class MissingExtraError(N2VError, ImportError):
    """An optional feature was used without its extra installed."""


def require(extra: str) -> list[ModuleType]:
    """Import the modules of ``extra``; raise :class:`MissingExtraError` naming it if absent."""
    purpose, modules = EXTRAS[extra]
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            raise MissingExtraError(
                f"{purpose} needs the optional extra '{extra}' (cannot import "
                f"{exc.name or name}): pip install \"n2v-cascade[{extra}]\"") from None
    return loaded
