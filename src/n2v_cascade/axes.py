"""The one place that knows axes: an image with an axes string -> samples, and back.

An axes string names every axis of an array with one letter each, in order: S (sample),
T (time), C (channel), Z, Y, X (as in CAREamics). A method trains and predicts on
*samples*: arrays of the spatial axes only (YX for 2-D networks, ZYX -- or TYX for a
time-lapse without Z -- for 3-D ones), with the channels in front when they are joint.
Every other axis is a sample axis: its positions are independent images (with a 2-D
network a stack is denoised slice by slice). :func:`to_samples` moves the sample axes
to the front and flattens them; :func:`from_samples` restores the original layout, so
outputs keep the input's axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError

AXES = "STCZYX"
SPATIAL = {2: "YX", 3: "ZYX"}
#: Axes assumed for an array given without an axes string, by network dims and ndim.
DEFAULT_AXES = {2: {2: "YX", 3: "SYX"}, 3: {3: "ZYX", 4: "SZYX"}}
#: ``dims: auto`` trains 3-D when the data have a Z axis of at least this many slices.
MIN_AUTO_SLICES = 8


def default_axes(ndim: int, source: str = "array", dims: int = 2) -> str:
    """The axes of an array given without them: YX or SYX for a 2-D network, ZYX or
    SZYX for a 3-D one."""
    known = DEFAULT_AXES[dims]
    if ndim not in known:
        raise InputError(f"{source}: cannot tell the axes of a {ndim}-D array; give them "
                         f"(e.g. axes='ZYX' or 'TCYX', letters from {AXES})")
    return known[ndim]


def check_axes(axes: str | None, shape: Sequence[int], source: str = "array",
               dims: int = 2, *, holder: str = "array", detail: str | None = None) -> str:
    """Validate an axes string against an array shape (None: the default for its ndim).

    A wrong count of letters is reported as "... but the {holder} has N ({detail})";
    ``detail`` defaults to the shape.
    """
    if axes is None:
        return default_axes(len(shape), source, dims)
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


def choose_dims(dims: int | str, shape: Sequence[int], axes: str | None = None) -> int:
    """The network dims for data of ``shape``: ``dims`` itself, or for ``auto`` 3 when
    the axes (as given, or the 2-D defaults) have a Z of >= MIN_AUTO_SLICES slices."""
    if dims in (2, 3):
        return int(dims)
    text = check_axes(axes, shape, dims=2) if axes is not None or len(shape) in (2, 3) else ""
    if "Z" in text and shape[text.index("Z")] >= MIN_AUTO_SLICES:
        return 3
    return 2


@dataclass(frozen=True)
class Layout:
    """How an image's axes map to samples: enough to put outputs back in place.

    A sample is ``(*spatial)``, or ``(C, *spatial)`` when the channels are ``joint``.
    """

    axes: str          # the image's axes
    shape: tuple[int, ...]
    spatial: str       # the axes a network sees (YX, ZYX, or TYX)
    joint: bool = False  # C is the samples' channel axis, not a sample axis

    @property
    def sample_axes(self) -> str:
        """The axes whose positions are independent samples, in image order."""
        skip = self.spatial + ("C" if self.joint else "")
        return "".join(a for a in self.axes if a not in skip)

    @property
    def n_samples(self) -> int:
        return int(np.prod([self.shape[self.axes.index(a)] for a in self.sample_axes]))

    @property
    def channels(self) -> int:
        """Channels of one sample: the C axis when joint, else 1."""
        return self.shape[self.axes.index("C")] if self.joint else 1

    def channel_of_samples(self) -> np.ndarray | None:
        """The C index of every sample (independent channels), or None without C."""
        if "C" not in self.sample_axes:
            return None
        sizes = [self.shape[self.axes.index(a)] for a in self.sample_axes]
        grid = np.indices(sizes).reshape(len(sizes), -1)
        return grid[self.sample_axes.index("C")]

    @property
    def _order(self) -> list[int]:
        inner = "C" if self.joint else ""
        return [self.axes.index(a) for a in self.sample_axes + inner + self.spatial]


def layout(shape: Sequence[int], axes: str | None = None, dims: int = 2,
           source: str = "array", joint: bool = False) -> Layout:
    """The :class:`Layout` of an array of ``shape`` for a ``dims``-D network.

    A 3-D network convolves ZYX; a time-lapse without Z is convolved over TYX. With
    ``joint`` a C axis becomes the samples' channel axis.
    """
    text = check_axes(axes, shape, source, dims)
    spatial = SPATIAL[dims]
    if dims == 3 and "Z" not in text and "T" in text:
        spatial = "TYX"
    missing = [a for a in spatial if a not in text]
    if missing:
        hint = (" (give the axes, e.g. --axes ZYX, or use --dims 2)" if dims == 3 else "")
        raise InputError(f"{source}: a {dims}-D network needs axes {spatial}; "
                         f"{''.join(missing)} missing from {text!r}{hint}")
    if dims == 3 and shape[text.index(spatial[0])] < 2:
        raise InputError(f"{source}: has {shape[text.index(spatial[0])]} slice along "
                         f"{spatial[0]}; a 3-D network needs at least 2 (use --dims 2)")
    return Layout(text, tuple(int(s) for s in shape), spatial, joint and "C" in text)


def to_samples(image: np.ndarray, lay: Layout) -> np.ndarray:
    """``image`` as an array ``(N, [C,] *spatial)`` of samples (a view when possible)."""
    moved = np.transpose(image, lay._order)
    return moved.reshape(lay.n_samples, *moved.shape[len(lay.sample_axes):])


def from_samples(samples: np.ndarray, lay: Layout) -> np.ndarray:
    """Put ``(N, [C,] *spatial)`` samples (same spatial size) back into the image's axes."""
    sample_shape = [lay.shape[lay.axes.index(a)] for a in lay.sample_axes]
    stacked = samples.reshape(*sample_shape, *samples.shape[1:])
    return np.transpose(stacked, np.argsort(lay._order))


def planes(samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every 2-D YX plane of ``(..., Y, X)`` samples: what 2-D noise checks look at."""
    out: list[np.ndarray] = []
    for s in samples:
        arr = np.asarray(s)
        out.extend(arr.reshape(-1, *arr.shape[-2:]))
    return out


def samples_of(images: Sequence[np.ndarray], names: Sequence[str] | None = None,
               axes: str | None = None, dims: int = 2, joint: bool = False
               ) -> tuple[list[np.ndarray], list[str]]:
    """All samples of several images, with the image name repeated for each."""
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    out: list[np.ndarray] = []
    out_names: list[str] = []
    for image, name in zip(images, names, strict=True):
        samples = to_samples(image, layout(image.shape, axes, dims, source=name, joint=joint))
        out.extend(samples)
        out_names.extend([name] * len(samples))
    return out, out_names
