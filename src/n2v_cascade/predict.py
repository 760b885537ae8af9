"""Tiled prediction: any image size in bounded memory, identical to whole-image prediction.

The network is an opaque callable mapping a ``(B, 1, h, w)`` float32 tensor to a
``(B, C_out, h, w)`` tensor. For a fully convolutional network with a finite receptive
field of radius ``r``, an output pixel depends only on input pixels within ``r`` of it.
So if tiles overlap by ``overlap >= r`` pixels on each side and only the central part of
each tile is kept, the assembled result equals whole-image prediction up to float error.
Nothing is blended or averaged across tiles: the kept regions partition the image.

Tiles at the image border are shifted back to stay inside the image (never padded), so
every tile along an axis has the same size and tiles can always be batched. At the image
border no margin is needed because the border of the tile *is* the border of the image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .augment import inverse, n_transforms, transform
from .errors import InputError
from .models.blocks import pad_to_multiple
from .progress import progress_bar

__all__ = ["pad_image", "predict_tiled", "probe_radius", "tile_slices"]

Predictor = Callable[[torch.Tensor], torch.Tensor]
SliceTriple = tuple[tuple[slice, ...], tuple[slice, ...], tuple[slice, ...]]


def _per_axis(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """Expand an int or a per-axis sequence to an ``ndim``-tuple of ints, validating type."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    if isinstance(value, int | np.integer):
        return (int(value),) * ndim
    try:
        values = tuple(value)
    except TypeError:
        raise InputError(
            f"{name} must be an int or a sequence of {ndim} ints, got {value!r}"
        ) from None
    if len(values) != ndim or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values
    ):
        raise InputError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _axis_slices(length: int, tile: int, overlap: int, axis: int) -> list[tuple[slice, ...]]:
    """1-D tiling of one axis: ``(input, keep-in-tile, destination)`` slices per tile.

    Tiles start every ``tile - 2 * overlap`` pixels; the last one is shifted back to end
    exactly at ``length``. A tile keeps ``[start + overlap, stop - overlap)`` except at the
    image border, where it keeps up to the border. The last tile keeps from where the
    previous one stopped, which is still at least ``overlap`` into it.
    """
    if length < 1:
        raise InputError(f"image axis {axis} has size {length}; every axis needs size >= 1")
    if tile < 1:
        raise InputError(f"tile must be >= 1 on every axis, got {tile} on axis {axis}")
    if overlap < 0:
        raise InputError(f"overlap must be >= 0, got {overlap} on axis {axis}")
    if tile >= length:
        return [(slice(0, length), slice(0, length), slice(0, length))]
    step = tile - 2 * overlap
    if step < 1:
        raise InputError(
            f"tile ({tile}) must be > 2 * overlap ({2 * overlap}) on axis {axis} "
            f"(image size {length})"
        )
    out: list[tuple[slice, ...]] = []
    kept_to = 0  # everything before this index is already covered
    start = 0
    while start + tile < length:
        stop = start + tile - overlap
        out.append(
            (slice(start, start + tile), slice(kept_to - start, stop - start), slice(kept_to, stop))
        )
        kept_to = stop
        start += step
    start = length - tile
    out.append((slice(start, length), slice(kept_to - start, tile), slice(kept_to, length)))
    return out


def tile_slices(
    shape: Sequence[int], tile: Sequence[int], overlap: Sequence[int]
) -> list[SliceTriple]:
    """Split an N-D image into overlapping tiles whose kept centres partition the image.

    Parameters
    ----------
    shape
        Image shape (any number of axes).
    tile
        Tile size per axis; clamped to the image size (a tile never exceeds the image).
    overlap
        Margin per axis discarded at each inner tile edge; should be at least the
        receptive-field radius of the network for exact results.

    Returns
    -------
    list of (input, keep, destination)
        ``input`` indexes the image to cut the tile, ``keep`` indexes the tile's output
        to select the valid centre, ``destination`` is where that centre goes in the
        image. Every image pixel lies in exactly one destination region.

    Raises
    ------
    InputError
        On mismatched lengths, sizes < 1, negative overlap, or ``tile <= 2 * overlap``
        on an axis that needs more than one tile.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    tiles = _per_axis(tile, ndim, "tile")
    overlaps = _per_axis(overlap, ndim, "overlap")
    per_axis = [
        _axis_slices(n, t, o, axis)
        for axis, (n, t, o) in enumerate(zip(shape, tiles, overlaps, strict=True))
    ]
    result: list[SliceTriple] = []
    for combo in itertools.product(*per_axis):
        src, keep, dst = zip(*combo, strict=True)
        result.append((tuple(src), tuple(keep), tuple(dst)))
    return result


def _round_tile(tile: int, divisor: int) -> int:
    """Round a tile size down to a multiple of ``divisor`` (never below ``divisor``)."""
    if tile < divisor:
        return tile
    return tile - tile % divisor


def _run(fn: Predictor, batch: torch.Tensor) -> torch.Tensor:
    """Call ``fn`` and check it returns ``(B, C_out, *spatial)`` for a ``(B, C, *spatial)``
    batch."""
    out = fn(batch)
    if (
        not isinstance(out, torch.Tensor)
        or out.ndim != batch.ndim
        or out.shape[0] != batch.shape[0]
        or out.shape[2:] != batch.shape[2:]
    ):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model returned {got} for input {tuple(batch.shape)}; expected "
            f"(B, C_out, *spatial)"
        )
    return out.float()


def _predict_batch(fn: Predictor, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    """Run one batch of tiles, averaging over the flips and YX turns if ``tta`` (8 in
    2-D, 16 in 3-D: see :mod:`n2v_cascade.augment`)."""
    if not tta:
        return _run(fn, batch)
    count = n_transforms(batch.ndim - 2)
    acc: torch.Tensor | None = None
    for t in range(count):
        y = inverse(_run(fn, transform(batch, t)), t)
        acc = y.clone() if acc is None else acc.add_(y)
    assert acc is not None
    return acc / count


def _batches(items: list[SliceTriple], size: int) -> Iterator[list[SliceTriple]]:
    """Yield consecutive chunks of at most ``size`` tiles."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_tiled(
    fn: Predictor,
    image: np.ndarray,
    tile: int | Sequence[int] | None = 256,
    overlap: int | Sequence[int] = 32,
    batch_size: int = 4,
    tta: bool = False,
    progress: bool = False,
    divisor: int = 1,
    channels: int = 1,
) -> np.ndarray:
    """Predict a 2-D or 3-D image tile by tile, matching whole-image prediction.

    Parameters
    ----------
    fn
        Network: ``(B, C, *tile)`` float32 tensor -> ``(B, C_out, *tile)`` tensor.
    image
        ``(*spatial)`` image (``channels == 1``) or ``(C, *spatial)``, already
        normalised; converted to float32.
    tile
        Tile size (int or per spatial axis); ``None`` predicts the whole image at once.
        Rounded down to a multiple of ``divisor`` and clamped to the image size.
    overlap
        Pixels discarded at each inner tile edge; use at least the receptive-field radius.
    batch_size
        Tiles run together per ``fn`` call (memory is O(image + batch_size tiles)).
    tta
        Average over the flips/turns of each tile batch (test-time augmentation).
    progress
        Show a tqdm progress bar over tiles.
    divisor
        Preferred tile-size multiple (e.g. ``2 ** depth`` for a U-Net).
    channels
        Input channels: a leading axis of ``image`` when > 1.

    Returns
    -------
    np.ndarray
        float32 array of shape ``(C_out, *spatial)``.
    """
    image = np.asarray(image, dtype=np.float32)
    if channels == 1:
        image = image[None]
    nd = image.ndim - 1
    if nd not in (2, 3) or image.shape[0] != channels:
        shown = image.shape[1:] if channels == 1 else image.shape
        raise InputError(f"image must be 2-D or 3-D (with {channels} channel(s) first when "
                         f"more than one), got shape {shown}")
    if image.size == 0:
        raise InputError(f"image must not be empty, got shape {image.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise InputError(f"divisor must be an int >= 1, got {divisor!r}")
    spatial = image.shape[1:]
    overlaps = _per_axis(overlap, nd, "overlap")
    if min(overlaps) < 0:
        raise InputError(f"overlap must be >= 0, got {overlap!r}")
    if tile is None:
        tiles = spatial
    else:
        tiles = tuple(_round_tile(t, divisor) for t in _per_axis(tile, nd, "tile"))
        if min(tiles) < 1:
            raise InputError(f"tile must be >= 1, got {tile!r}")
    slices = tile_slices(spatial, tiles, overlaps)

    out: np.ndarray | None = None
    bar = progress_bar(len(slices), "predict", "tile", enabled=progress)
    try:
        with torch.inference_mode():
            for chunk in _batches(slices, batch_size):
                batch = torch.from_numpy(np.stack([image[(slice(None), *src)]
                                                   for src, _, _ in chunk]))
                pred = _predict_batch(fn, batch, tta).cpu().numpy()
                if out is None:
                    out = np.empty((pred.shape[1], *spatial), dtype=np.float32)
                for i, (_, keep, dst) in enumerate(chunk):
                    out[(slice(None), *dst)] = pred[(i, slice(None), *keep)]
                bar.update(len(chunk))
    finally:
        bar.close()
    assert out is not None
    return out


def pad_image(image: np.ndarray, multiple: int, ndim: int | None = None
              ) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Reflect-pad the end of the last ``ndim`` axes (default: every axis) to a multiple
    of ``multiple``; return the padded image and the crop of those axes.

    Tiles cut from the padded image start on the strided layers' grid, which makes
    tiled prediction equal whole-image prediction.
    """
    ndim = image.ndim if ndim is None else ndim
    lead = image.shape[: image.ndim - ndim]
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))
    x = x.reshape(1, -1, *image.shape[image.ndim - ndim:])
    padded, crop = pad_to_multiple(x, multiple, ndim, mode="reflect", centred=False)
    return padded[0].reshape(*lead, *padded.shape[2:]).numpy(), crop[2:]


def probe_radius(network: nn.Module, div: int, ndim: int = 2, size: int | None = None) -> int:
    """Receptive-field radius: how far input pixels reach in the output (a safe bound).

    All weights are set to ``1 / fan_in`` and biases to zero, so no ReLU is ever off and
    no paths cancel: the output is non-zero exactly where the input can reach (a gradient
    at a real input misses pixels behind inactive ReLUs). The input is a block of side
    ``div``, because with strided layers the reach depends on the position modulo
    ``div``; the bound is exact up to ``div - 1``. The probe grows until the reach stays
    clear of its border. ``network`` is overwritten: pass a throw-away copy.
    """
    size = 40 * div if size is None else size
    with torch.no_grad():
        for param in network.parameters():
            param.fill_(1.0 / param[0].numel() if param.ndim > 1 else 0.0)
        network.eval()
        while True:
            size = -(-size // (2 * div)) * 2 * div
            lo, hi = size // 2 - div, size // 2 - 1  # a whole period, aligned with the strides
            x = torch.zeros(1, 1, *([size] * ndim))
            x[(0, 0, *([slice(lo, hi + 1)] * ndim))] = 1.0
            reach = torch.nonzero(network(x)[0].abs().sum(0) > 0)
            radius = int(torch.maximum(hi - reach, reach - lo).max()) if reach.numel() else 0
            if radius < lo or size >= 8192:
                return radius
            size *= 2
