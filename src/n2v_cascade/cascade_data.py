"""A cascade's images in one sample layout, and back to each file's own axes.

Every stage of a cascade trains and predicts on the same images, and the ground-truth-free
score compares stages on them; so the inputs are brought once into one layout that every
stage reads with one axes string -- ``S`` (samples) then, for joint channels, ``C``, then
the network's spatial axes (``SYX``, ``SZYX``, ``SCYX``, ``SCZYX``) -- and each result is
put back into its input's axes (and written with its metadata) only when it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .axes import Layout, choose_dims, from_samples, layout, to_samples
from .errors import InputError
from .imagefile import ImageMeta, read_image_nd, write_image_nd
from .inputs import Input, load_inputs


def sample_axes(dims: int, joint: bool) -> str:
    """The axes string of a cascade's arrays for a ``dims``-D network."""
    return "S" + ("C" if joint else "") + ("ZYX" if dims == 3 else "YX")


@dataclass
class CascadeImages:
    """A cascade's inputs as sample arrays of one layout (``axes``), with their layouts
    and metadata for writing results back."""

    names: list[str]
    arrays: list[np.ndarray]
    axes: str
    dims: int
    layouts: list[Layout]
    metas: list[ImageMeta | None]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The inputs' own shapes."""
        return [lay.shape for lay in self.layouts]

    def to_image(self, index: int, samples: np.ndarray) -> np.ndarray:
        """A result (in sample layout) of input ``index`` in that input's own axes."""
        return from_samples(samples, self.layouts[index])

    def to_samples(self, index: int, image: np.ndarray) -> np.ndarray:
        """An array in input ``index``'s axes (a reference, a stored result) as samples."""
        lay = self.layouts[index]
        if tuple(image.shape) != lay.shape:
            raise InputError(f"{self.names[index]}: shape {tuple(image.shape)} does not match "
                             f"the input's {lay.shape}")
        return to_samples(np.asarray(image, np.float32), lay)

    def write(self, index: int, path: Path, samples: np.ndarray, overwrite: bool) -> None:
        """Write a float32 result of input ``index`` with that input's axes and metadata."""
        write_image_nd(path, self.to_image(index, samples), self._meta(index),
                       overwrite=overwrite)

    def read(self, index: int, path: Path) -> np.ndarray:
        """Read back a result written by :meth:`write`, as samples."""
        data, _ = read_image_nd(path, self.layouts[index].axes)
        return self.to_samples(index, data)

    def _meta(self, index: int) -> ImageMeta:
        meta = self.metas[index]
        if meta is not None:
            return meta
        return ImageMeta(axes=self.layouts[index].axes, dtype="float32", physical={},
                         unit=None, channel_names=None, source=self.names[index], kind="npy")


def prepare_images(images: object, axes: str | None, dims: int | str, joint: bool,
                   allow_constant: bool = False) -> CascadeImages:
    """Read/check the inputs (arrays or files) and bring them into one sample layout.

    ``dims: auto`` is resolved on the inputs (3 only when every one has enough Z slices).
    """
    items = load_inputs(images, axes, dims, allow_constant)
    if dims == "auto":
        dims = min(choose_dims("auto", i.data.shape, i.axes) for i in items)
    lays = [layout(i.data.shape, i.axes, int(dims), source=i.name, joint=joint)
            for i in items]
    arrays = [to_samples(i.data, lay) for i, lay in zip(items, lays, strict=True)]
    return CascadeImages([i.name for i in items], arrays, sample_axes(int(dims), joint),
                         int(dims), lays, [i.meta for i in items])


def reference_samples(reference: object, images: CascadeImages) -> list[np.ndarray]:
    """Clean references (arrays or files), one per input with its shape, as samples."""
    refs: Sequence[Input] = load_inputs(reference, None, images.dims, allow_constant=True)
    if len(refs) != len(images.arrays):
        raise InputError(f"reference: {len(refs)} image(s) given for {len(images.arrays)} "
                         f"input(s)")
    out = []
    for k, ref in enumerate(refs):
        if tuple(ref.data.shape) != images.shapes[k]:
            raise InputError(f"reference: shape {ref.data.shape} does not match "
                             f"{images.names[k]} {images.shapes[k]}")
        out.append(images.to_samples(k, ref.data))
    return out

