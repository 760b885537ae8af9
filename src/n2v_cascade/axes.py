"""The one place that knows axes: an image with an axes string -> samples, and back.

An axes string names every axis of an array with one letter each, in order: S (sample),
T (time), C (channel), Z, Y, X (as in CAREamics). A method trains and predicts on
*samples*: arrays of the spatial axes only (YX for 2-D networks). Every other axis is
a sample axis: its positions are independent images (a stack is denoised slice by
slice). :func:`to_samples` moves the sample axes to the front and flattens them;
:func:`from_samples` restores the original layout, so outputs keep the input's axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError

AXES = "STCZYX"
SPATIAL = {2: "YX", 3: "ZYX"}
#: Axes assumed for an array given without an axes string, by its number of axes.
DEFAULT_AXES = {2: "YX", 3: "SYX"}


def default_axes(ndim: int, source: str = "array") -> str:
    """The axes of an array given without them: YX, or SYX for a stack of images."""
    if ndim not in DEFAULT_AXES:
        raise InputError(f"{source}: cannot tell the axes of a {ndim}-D array; give them "
                         f"(e.g. axes='ZYX' or 'TCYX', letters from {AXES})")
    return DEFAULT_AXES[ndim]


def check_axes(axes: str | None, shape: Sequence[int], source: str = "array", *,
               holder: str = "array", detail: str | None = None) -> str:
    """Validate an axes string against an array shape (None: the default for its ndim).

    A wrong count of letters is reported as "... but the {holder} has N ({detail})";
    ``detail`` defaults to the shape.
    """
    if axes is None:
        return default_axes(len(shape), source)
    text = axes.strip().upper()
    bad = sorted(set(text) - set(AXES))
    if bad:
        raise InputError(f"{source}: axes {axes!r} has unknown letter(s) {', '.join(bad)} "
                         f"(use {AXES})")
    if len(set(text)) != len(text):
        raise InputError(f"{source}: axes {axes!r} names an axis twice")
    if len(text) != len(shape):
        detail = detail or f"shape {tuple(shape)}"
        raise InputError(f"{source}: axes {axes!r} name {len(text)} axes but the {holder} "
                         f"has {len(shape)} ({detail})")
    if "Y" not in text or "X" not in text:
        raise InputError(f"{source}: axes {axes!r} must include Y and X")
    return text


@dataclass(frozen=True)
class Layout:
    """How an image's axes map to samples: enough to put outputs back in place."""

    axes: str          # the image's axes
    shape: tuple[int, ...]
    spatial: str       # the axes a network sees (YX or ZYX)

    @property
    def sample_axes(self) -> str:
        """The axes whose positions are independent samples, in image order."""
        return "".join(a for a in self.axes if a not in self.spatial)

    @property
    def n_samples(self) -> int:
        return int(np.prod([self.shape[self.axes.index(a)] for a in self.sample_axes]))

    @property
    def _order(self) -> list[int]:
        return [self.axes.index(a) for a in self.sample_axes + self.spatial]


def layout(shape: Sequence[int], axes: str | None = None, dims: int = 2,
           source: str = "array") -> Layout:
    """The :class:`Layout` of an array of ``shape`` for a ``dims``-D network."""
    text = check_axes(axes, shape, source)
    spatial = SPATIAL[dims]
    missing = [a for a in spatial if a not in text]
    if missing:
        raise InputError(f"{source}: a {dims}-D network needs axes {spatial}; "
                         f"{''.join(missing)} missing from {text!r}")
    return Layout(text, tuple(int(s) for s in shape), spatial)


def to_samples(image: np.ndarray, lay: Layout) -> np.ndarray:
    """``image`` as an array ``(N, *spatial)`` of samples (a view when possible)."""
    moved = np.transpose(image, lay._order)
    return moved.reshape(lay.n_samples, *moved.shape[len(lay.sample_axes):])


def from_samples(samples: np.ndarray, lay: Layout) -> np.ndarray:
    """Put ``(N, *spatial)`` samples (same spatial size) back into the image's axes."""
    sample_shape = [lay.shape[lay.axes.index(a)] for a in lay.sample_axes]
    stacked = samples.reshape(*sample_shape, *samples.shape[1:])
    return np.transpose(stacked, np.argsort(lay._order))


def samples_of(images: Sequence[np.ndarray], names: Sequence[str] | None = None,
               axes: str | None = None) -> tuple[list[np.ndarray], list[str]]:
    """All 2-D samples of several images, with the image name repeated for each."""
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    out: list[np.ndarray] = []
    out_names: list[str] = []
    for image, name in zip(images, names, strict=True):
        samples = to_samples(image, layout(image.shape, axes, source=name))
        out.extend(samples)
        out_names.extend([name] * len(samples))
    return out, out_names
