"""n2v-cascade: self-supervised Noise2Void denoising with progressive retraining cascades.

``import n2v_cascade`` stays light: ``Model``, ``TrainConfig``, ``Cascade`` and ``train``
are imported (with torch) on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = ["Cascade", "Model", "TrainConfig", "__version__", "train"]

_LAZY = {"Model": ".model", "TrainConfig": ".config", "Cascade": ".cascade"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """The ``train`` submodule, callable as its ``train`` function (``nc.train(images)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.train(*args, **kwargs)


class _Package(types.ModuleType):
    """``n2v_cascade.train`` is both a submodule and the training function.

    The import system sets the package attribute to the submodule whenever it is
    imported; this property hands out that module made callable instead, whichever of
    ``nc.train(...)``, ``from n2v_cascade import train`` or ``import n2v_cascade.train``
    comes first.
    """

    @property
    def train(self) -> types.ModuleType:
        module = importlib.import_module(".train", __name__)
        if not isinstance(module, _CallableModule):
            module.__class__ = _CallableModule
        return module

    @train.setter
    def train(self, value: types.ModuleType) -> None:  # the submodule; found in sys.modules
        pass


sys.modules[__name__].__class__ = _Package
