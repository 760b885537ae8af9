"""Denoising methods as plug-ins, and the registry that drives config, CLI and tables.

Every module of this package defines one method (a :class:`~.base.Method` subclass
decorated with :func:`register`); the package imports them all, so a new built-in
method is one new file here. Code outside the package registers its own methods the
same way (``@register`` on a subclass) before using them.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Method

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add a method class to the registry under ``cls.name`` (a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a method needs a name")
    known = REGISTRY.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"method name {cls.name!r} is taken by {known.__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    ordered = sorted(REGISTRY.values(), key=lambda m: m.listing_order)
    REGISTRY.clear()
    REGISTRY.update((m.name, m) for m in ordered)


def methods() -> dict[str, type[Method]]:
    """All registered methods by name (built-ins first, by ``listing_order``)."""
    return REGISTRY


def method_class(name: str, backbone: str | None = None) -> type[Method]:
    """The method selected by a name and, in the older spelling, a backbone.

    ``("probabilistic", "blindspot")`` selects ``probabilistic-blindspot``, so commands
    and saved configs that use ``--variant X --backbone Y`` keep working. Unknown names
    and backbones raise ``ValueError`` listing what exists.
    """
    cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown method {name!r} (choose from {', '.join(REGISTRY)})")
    if backbone is None or backbone == cls.backbone:
        return cls
    for other in REGISTRY.values():
        if other.variant_of == name and other.backbone == backbone:
            return other
    raise ValueError(f"backbone {backbone!r} is not available for method {name!r}")


def get_method(config) -> Method:
    """The method object of a validated :class:`~n2v_cascade.config.TrainConfig`."""
    return method_class(config.variant)(config)


def markdown_table() -> str:
    """The README's table of methods, generated from the registry."""
    rows = ["| method | what it does | backbone |", "| --- | --- | --- |"]
    rows += [f"| `{m.name}` | {m.summary} | {m.backbone} |" for m in REGISTRY.values()]
    return "\n".join(rows)


_load_builtins()
