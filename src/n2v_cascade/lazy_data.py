"""Training on images read block by block: random blocks of storage chunks, patches in them.

The sampling rule. Every image (a :class:`~n2v_cascade.omezarr.LazyImage`: an OME-Zarr, a
zarr array, or a TIFF through tifffile's zarr store) is cut into a grid of *blocks*. Along
each spatial axis (YX, ZYX or TYX, as :func:`~n2v_cascade.axes.layout` says) a block is
the storage chunk grown by whole chunks to at least twice the patch, capped by the image,
and a last block shorter than the patch joins the one before it; a memory-mapped TIFF has
no chunks that matter, so there a block is twice the patch. Along every other axis a block
is one position (S, T, Z under a 2-D network, C when the channels are independent), or
all of C when they are joint. So one block is one ``LazyImage.read`` of whole chunks.

Of these blocks, ``round(val_fraction * n)`` (1 to :data:`MAX_VAL_BLOCKS`, none with a
single block), chosen by the seed, are held out: the validation patches are cut from them
on a fixed grid, and they are never drawn for training. :data:`FIRST_SAMPLE` training
blocks, also chosen by the seed, are read once for what training decides from the data
(the normaliser, the method's settings, the noise model). During training, every
:data:`REFRESH` steps the sampler draws :data:`N_BLOCKS` training blocks at random (in
proportion to the patch positions each offers, without repeats), reads, normalises and
keeps them, and the batches of those steps are random patches within them, drawn by
:class:`~n2v_cascade.data.PatchSampler`. The draw of the k-th refresh depends on the
generator's seed and k alone, so a run is reproducible and resumes exactly; processes
training together have different generators, hence different blocks. Memory holds at most
:data:`N_BLOCKS` blocks and the first sample, never the image.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .axes import Layout, default_axes, layout, to_samples
from .config import TrainConfig
from .data import PatchSampler, evenly, grid_cut
from .errors import InputError
from .io import unique_files
from .normalize import Normalizer
from .omezarr import TIFF_SUFFIXES, LazyImage, is_zarr, open_image
from .progress import note
from .training_data import (
    TrainingData,
    joint_channels,
    resolve_dims,
    settings_for_data,
    training_patch,
)

REFRESH = 50        # steps between two draws of blocks
N_BLOCKS = 8        # blocks in memory during training
FIRST_SAMPLE = 16   # blocks read once for the normaliser, the settings and the noise model
MAX_VAL_BLOCKS = 4  # blocks held out for validation
MAX_VAL_PATCHES = 32


@dataclass(frozen=True)
class Block:
    """One block: the index of its image and its ``(start, stop)`` on every image axis."""

    image: int
    region: tuple[tuple[int, int], ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.region)


@dataclass(frozen=True)
class Source:
    """An image opened lazily and how its axes map to samples."""

    image: LazyImage
    layout: Layout


def wants_lazy(images: object, lazy: bool) -> bool:
    """Whether training reads ``images`` block by block: asked for, or a zarr store given."""
    items = [images] if isinstance(images, str | os.PathLike) else images
    paths = (isinstance(items, Sequence) and bool(items)
             and all(isinstance(i, str | os.PathLike) for i in items))
    if lazy and not paths:
        raise InputError("lazy=True reads files: give TIFF or zarr paths, not arrays")
    return lazy or (paths and any(is_zarr(p) for p in items))


def open_lazy(images: str | os.PathLike | Sequence, axes: str | None, dims: int | str
              ) -> list[LazyImage]:
    """Open every zarr store and TIFF (folders: their TIFFs) without reading pixels;
    axes nothing names follow the defaults of ``dims`` (see :mod:`n2v_cascade.inputs`)."""
    items = [images] if isinstance(images, str | os.PathLike) else list(images)
    opened = []
    for path in unique_files(items, TIFF_SUFFIXES, whole=is_zarr):
        image = open_image(path, axes)
        if image.meta.axes_from == "default" and dims == 3:
            text = default_axes(len(image.shape), image.path, 3)
            image = replace(image, meta=replace(image.meta, axes=text))
        opened.append(image)
    return opened


def plan_blocks(source: Source, index: int, patch: Sequence[int]) -> list[Block]:
    """The block grid of one image (the module's rule) for ``patch`` (spatial shape)."""
    image, lay = source.image, source.layout
    sizes = tuple(image.shape[lay.axes.index(a)] for a in lay.spatial)
    if any(n < p for n, p in zip(sizes, patch, strict=True)):
        raise InputError(f"{image.path}: image {'x'.join(map(str, sizes))} is smaller than "
                         f"the patch size {'x'.join(map(str, patch))}; use a smaller "
                         f"--patch-size")
    per_axis = []
    for letter, n, chunk in zip(lay.axes, image.shape, image.chunks, strict=True):
        if letter in lay.spatial:
            p = patch[lay.spatial.index(letter)]
            step = 1 if image.kind == "tiff-memmap" else chunk
            side = min(n, -(-2 * p // step) * step)
            starts = list(range(0, n, side))
            if len(starts) > 1 and n - starts[-1] < p:
                starts.pop()  # too short for a patch: the block before reaches the end
            per_axis.append(list(zip(starts, [*starts[1:], n], strict=True)))
        elif letter == "C" and lay.joint:
            per_axis.append([(0, n)])
        else:
            per_axis.append([(i, i + 1) for i in range(n)])
    return [Block(index, region) for region in itertools.product(*per_axis)]


def hold_out(blocks: Sequence[Block], val_fraction: float, seed: int
             ) -> tuple[list[Block], list[Block]]:
    """``(train, val)``: the blocks held out for validation, chosen by ``seed``."""
    n = len(blocks)
    count = 0 if val_fraction <= 0 or n < 2 else min(
        MAX_VAL_BLOCKS, n - 1, max(1, round(val_fraction * n)))
    if val_fraction > 0 and count == 0:
        warnings.warn("image too small to hold out a validation block; training without "
                      "validation", stacklevel=2)
    held = set(np.random.default_rng(seed).choice(n, size=count, replace=False).tolist())
    return ([b for i, b in enumerate(blocks) if i not in held],
            [b for i, b in enumerate(blocks) if i in held])


def read_block(sources: Sequence[Source], block: Block) -> np.ndarray:
    """One block as a float32 sample ``([C,] *spatial)``: one ``LazyImage.read``."""
    source = sources[block.image]
    data = np.asarray(source.image.read(block.slices), dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{source.image.path}: the block {block.region} holds NaN or "
                         f"infinite values")
    lay = replace(source.layout, shape=tuple(data.shape))
    return np.ascontiguousarray(to_samples(data, lay)[0])


def _spatial(source: Source, block: Block) -> tuple[int, ...]:
    lay = source.layout
    return tuple(b - a for a, b in (block.region[lay.axes.index(x)] for x in lay.spatial))


class BlockSampler:
    """Random patches from a few random blocks, drawn again every ``refresh`` steps.

    The interface of :class:`~n2v_cascade.data.PatchSampler` (``sample``, ``n_pixels``,
    ``channels``, ``seek``). ``blocks`` are the training blocks; ``val_blocks``, the ones
    held out, are only kept as a record; ``reads`` counts the blocks read so far.
    """

    def __init__(self, sources: Sequence[Source], blocks: Sequence[Block],
                 patch: Sequence[int], normalizer: Normalizer, augment: bool = True,
                 n_blocks: int | None = None, refresh: int | None = None,
                 val_blocks: Sequence[Block] = ()):
        self.sources, self.blocks = list(sources), list(blocks)
        self.val_blocks = list(val_blocks)
        self.patch, self.normalizer, self.augment = tuple(patch), normalizer, augment
        self.n_blocks = n_blocks or N_BLOCKS
        self.refresh = refresh or REFRESH
        self.channels = self.sources[0].layout.channels
        sizes = [_spatial(self.sources[b.image], b) for b in self.blocks]
        self.n_pixels = sum(math.prod(s) for s in sizes)
        positions = np.array([math.prod(n - p + 1 for n, p in zip(s, self.patch, strict=True))
                              for s in sizes], dtype=np.float64)
        self.weights = positions / positions.sum()
        self.step, self.reads = 0, 0
        self._window, self._chosen, self._patches = -1, (), None

    def seek(self, step: int) -> None:
        """Continue at global ``step`` (a resumed run): its blocks are drawn again."""
        self.step, self._window = step, -1

    def chosen(self, window: int, seed: int) -> tuple[int, ...]:
        """The training blocks (indices, sorted) of refresh ``window`` for ``seed``."""
        rng = np.random.default_rng([seed, window])
        count = min(self.n_blocks, len(self.blocks))
        return tuple(sorted(rng.choice(len(self.blocks), size=count, replace=False,
                                       p=self.weights).tolist()))

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``(B, C, *patch)`` of random patches from this refresh's blocks."""
        window = self.step // self.refresh
        if window != self._window:
            chosen = self.chosen(window, generator.initial_seed())
            if chosen != self._chosen:  # the same blocks again are kept, not reread
                self._patches = None  # the old blocks go before the new ones are read
                arrays = [self.normalizer.apply(read_block(self.sources, self.blocks[i]))
                          for i in chosen]
                self.reads += len(arrays)
                self._patches = PatchSampler(arrays, self.patch, augment=self.augment)
                self._chosen = chosen
            self._window = window
        self.step += 1
        return self._patches.sample(batch_size, generator)


def _shaped(shape: Sequence[int]) -> np.ndarray:
    """A read-only array of ``shape`` that takes no memory: a sample's shape, not its data."""
    return np.broadcast_to(np.float32(0), tuple(shape))


def lazy_training_data(config: TrainConfig, images: Sequence[LazyImage], progress: bool
                       ) -> TrainingData:
    """What :func:`~n2v_cascade.training.train` needs, from blocks of ``images``."""
    config = resolve_dims(config, [(im.shape, im.meta.axes) for im in images])
    joint = config.channels == "joint"
    sources = [Source(im, layout(im.shape, im.meta.axes, config.dims, source=im.path,
                                 joint=joint)) for im in images]
    shown, shown_names = [], []
    for s in sources:
        lay = s.layout
        inner = ((lay.channels,) if lay.joint else ()) + tuple(
            s.image.shape[lay.axes.index(a)] for a in lay.spatial)
        shown.extend([_shaped(inner)] * lay.n_samples)
        shown_names.extend([s.image.path] * lay.n_samples)
    config = joint_channels(config, shown, shown_names)
    patch = training_patch(config, shown)
    blocks = [b for i, s in enumerate(sources) for b in plan_blocks(s, i, patch)]
    train, val = hold_out(blocks, config.val_fraction, config.seed)
    rng = np.random.default_rng([config.seed, 1])
    first = sorted(rng.choice(len(train), size=min(FIRST_SAMPLE, len(train)),
                              replace=False).tolist())
    raw = [read_block(sources, train[i]) for i in first]
    names = [sources[train[i].image].image.path for i in first]
    config = settings_for_data(config, raw, names, progress)
    normalizer = Normalizer.fit(raw)
    sampler = BlockSampler(sources, train, patch, normalizer, augment=config.augment,
                           val_blocks=val)
    val_patches = evenly([p for b in val for p in grid_cut(
        normalizer.apply(read_block(sources, b)), patch)], MAX_VAL_PATCHES)
    if progress:
        note(f"reading lazily: {len(blocks)} block(s) of storage chunks ({len(val)} held "
             f"out for validation), {sampler.n_blocks} in memory, drawn again every "
             f"{sampler.refresh} steps")
    return TrainingData(config, raw, names, normalizer, patch, sampler, val_patches, shown)
