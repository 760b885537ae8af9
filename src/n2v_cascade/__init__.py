"""n2v-cascade: self-supervised Noise2Void denoising with progressive retraining cascades.

``import n2v_cascade`` stays light: ``Model``, ``TrainConfig``, ``Cascade``, ``train`` and
``train_refined`` (what the ``train`` command runs) are imported (with torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["Cascade", "Model", "TrainConfig", "__version__", "train", "train_refined"]

_LAZY = {"Model": ".model", "TrainConfig": ".config", "Cascade": ".cascade",
         "train": ".training", "train_refined": ".refine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
