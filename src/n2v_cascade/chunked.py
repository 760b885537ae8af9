"""Out-of-core prediction: an image on disk denoised chunk by chunk into an OME-Zarr.

The output is cut into chunks along the model's spatial axes (YX or ZYX; every other axis
holds independent samples, one per chunk unless ``chunks`` says otherwise). Each chunk is
predicted from a window of the source that extends its region by the halo ``R`` (the
receptive radius rounded up to the network's stride multiple ``d = 2**depth``, as
:meth:`Model._predict_one` rounds its tile overlap) and starts on a multiple of ``d``, so
the strided layers see the grid that whole-image prediction sees; where the window
reaches the end of an axis it ends at the image's end and is reflect-padded there exactly
as the whole image is (the padding only reads the last ``< d`` pixels, which the window
holds). Normalisation is the model's stored per-pixel affine map. So every kept pixel is
at least ``R`` from any window edge that is not an image edge, and equals in-memory tiled
prediction (the prior mean) up to float rounding.

Each chunk is written to the destination as soon as it is predicted, then marked done in
a small per-chunk array inside the output store (zarr writes every file through a
temporary file and a rename, so a chunk is never marked before its data are on disk). A
rerun with the same model, source and settings (a fingerprint kept in the group's
attributes) skips the marked chunks; a destination made by anything else is refused.
:mod:`n2v_cascade.chunked_run` runs the chunks on threads or dask.distributed workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .axes import default_axes
from .chunked_run import (
    DONE,
    Chunk,
    Job,
    model_hash,
    run_distributed,
    run_threads,
    scheduler_for,
)
from .errors import InputError, OutputExistsError
from .model import Model
from .omezarr import (
    LazyImage,
    build_pyramid,
    create_omezarr,
    modules,
    ngff_axes,
    ngff_order,
    open_image,
)
from .progress import progress_bar
from .runtime import HOST

__all__ = ["Chunk", "ChunkedResult", "denoise_chunked", "plan_chunks"]

#: Spatial chunk sides by network dims (Z, Y, X for 3-D).
DEFAULT_CHUNKS = {2: (1024, 1024), 3: (64, 256, 256)}
STATE = "n2v_cascade"  # the group attribute with the fingerprint and the state
FORMAT = 1  # of the plan and fingerprint


@dataclass(frozen=True)
class ChunkedResult:
    """What :func:`denoise_chunked` did: chunks in all, computed now, found done."""

    path: Path
    total: int
    computed: int
    skipped: int
    levels: int
    seconds: float


def plan_chunks(shape: Sequence[int], axes: str, spatial: str, sizes: Sequence[int],
                halo: int, div: int) -> list[Chunk]:
    """Every chunk of an image of ``shape``: a regular grid of ``sizes``; on the
    ``spatial`` axes a window aligned to ``div`` with at least ``halo`` on each inner side
    (``halo`` a multiple of ``div``)."""
    per_axis = []
    for length, size, letter in zip(shape, sizes, axes, strict=True):
        pieces = []
        for a in range(0, length, size):
            b = min(a + size, length)
            if letter in spatial:
                end = -(-length // div) * div  # the padded length
                s = max(0, a // div * div - halo)
                e = min(end, -(-(b + halo) // div) * div)
                pieces.append((slice(a, b), slice(s, min(e, length)), slice(a - s, b - s)))
            else:
                pieces.append((slice(a, b), slice(a, b), slice(0, b - a)))
        per_axis.append(pieces)
    grid = itertools.product(*(range(len(p)) for p in per_axis))
    return [Chunk(idx, *(tuple(per_axis[i][j][k] for i, j in enumerate(idx))
                         for k in range(3))) for idx in grid]


def _sizes(chunks: int | Sequence[int] | dict[str, int] | None, shape: Sequence[int],
           axes: str, spatial: str, joint: bool, dims: int) -> tuple[int, ...]:
    """Chunk sides per axis: ``chunks`` for the spatial axes (an int for each, a side per
    spatial axis, or a mapping by letter), the whole joint C, one of every sample axis."""
    if chunks is None:
        chunks = dict(zip(spatial, DEFAULT_CHUNKS[dims], strict=True))
    elif isinstance(chunks, int):
        chunks = dict.fromkeys(spatial, chunks)
    elif not isinstance(chunks, dict):
        if len(chunks) != len(spatial):
            raise InputError(f"chunks: expected {len(spatial)} sizes ({spatial}), got "
                             f"{tuple(chunks)}")
        chunks = dict(zip(spatial, chunks, strict=True))
    out = []
    for letter, n in zip(axes, shape, strict=True):
        size = n if letter == "C" and joint else chunks.get(letter, 1)
        if not isinstance(size, int) or size < 1:
            raise InputError(f"chunks: sizes must be ints >= 1, got {size!r} for {letter}")
        out.append(min(size, n))
    return tuple(out)


def denoise_chunked(
    model: Model | str | Path, source: str | Path | LazyImage, dest: str | Path, *,
    axes: str | None = None, chunks: int | Sequence[int] | dict[str, int] | None = None,
    scheduler: str | Any | None = None, workers: int | None = None, progress: bool = True,
    output_dtype: str = "float32", version: str = "0.5", levels: int | None = None,
    overwrite: bool = False, on_chunk: Callable[[tuple[int, ...]], None] | None = None,
    tile: int | None = 512, overlap: int | None = None, batch_size: int = 4,
    tta: bool = False,
) -> ChunkedResult:
    """Denoise an OME-Zarr, zarr array or TIFF chunk by chunk into an OME-Zarr ``dest``.

    Parameters
    ----------
    model
        A :class:`Model` or its folder. The prior mean is written (``posterior=False``).
    source
        The image (opened lazily; ``axes`` overrides its axes).
    dest
        The output OME-Zarr (NGFF ``version`` 0.5 or 0.4): the source's axes, scale and
        units (a TIFF's axes in NGFF order), a pyramid of ``levels`` halvings of Y and X
        built afterwards (default: until one chunk holds a plane). A rerun resumes it.
    chunks
        Output chunk sides on the spatial axes (default 1024x1024, or 64x256x256).
    scheduler, workers
        None: dask's threaded scheduler; ``workers=N``: a ``LocalCluster`` of N
        single-threaded worker processes; ``scheduler``: a ``dask.distributed`` address
        (``tcp://...``) or Client. Workers must see ``source`` and ``dest`` paths.
    on_chunk
        Called with each chunk's grid index once it is marked done (raise to stop).
    tile, overlap, batch_size, tta
        As for :meth:`Model.predict`; ``overlap`` also sets the halo.
    """
    _, _ = modules()
    started = time.perf_counter()
    model = Model.load(model, device=HOST) if isinstance(model, str | Path) else model
    image = source if isinstance(source, LazyImage) else open_image(source, axes)
    dims = model.config.dims
    text = image.meta.axes if image.meta.axes_from != "default" else default_axes(
        len(image.shape), image.path, dims)
    lay = model.layout(image.shape, text, source=image.path)
    div = 2 ** model.config.network.depth
    reach = model.receptive_radius() if overlap is None else overlap
    halo = -(-reach // div) * div
    sizes = _sizes(chunks, image.shape, text, lay.spatial, lay.joint, dims)
    plan = plan_chunks(image.shape, text, lay.spatial, sizes, halo, div)
    if output_dtype not in ("float32", "input"):
        raise InputError(f"output_dtype: expected float32 or input, got {output_dtype!r}")
    dtype = image.dtype if output_dtype == "input" else "float32"
    predict = {"tile": tile, "overlap": overlap, "batch_size": batch_size, "tta": tta}
    keep_ngff = image.ngff is not None and image.meta.axes_from == "file"
    out_axes = text if keep_ngff else ngff_order(text)
    if keep_ngff:
        named, transforms = image.ngff["axes"], image.ngff["transforms"]
    else:
        named, scale = ngff_axes(image.meta, out_axes)
        transforms = [{"type": "scale", "scale": scale}]
    order = tuple(text.index(a) for a in out_axes)
    grid = tuple(len(range(0, n, c)) for n, c in zip(image.shape, sizes, strict=True))
    fingerprint = hashlib.sha256(json.dumps({
        "format": FORMAT, "model": model_hash(model), "source": image.identity(),
        "axes": text, "chunks": sizes, "halo": halo, "dtype": dtype, "predict": predict,
        "version": version}, sort_keys=True, default=str).encode()).hexdigest()
    dest = Path(dest)
    if dest.resolve() == Path(image.path).resolve():
        raise InputError(f"{dest}: is the input; choose another output")
    done = _prepare(dest, fingerprint, overwrite, lambda: _create(
        dest, image, out_axes, order, sizes, dtype, named, transforms, version, grid,
        fingerprint))
    if done is None:  # complete already
        return ChunkedResult(dest, len(plan), 0, len(plan), -1, time.perf_counter() - started)
    todo = [c for c in plan if not done[c.index]]
    job = Job(image, str(dest), text, order, dtype, predict)
    bar = progress_bar(len(plan), "denoise", "chunk", initial=len(plan) - len(todo),
                       enabled=progress)

    def finished(index: tuple[int, ...]) -> None:
        bar.update(1)
        if on_chunk is not None:
            on_chunk(index)

    try:
        with scheduler_for(scheduler, workers) as (client, threads):
            if client is None:
                run_threads(job, todo, model, finished)
                compute = None
            else:
                run_distributed(client, job, todo, model, threads, finished)
                compute = lambda graph: client.compute(graph).result()  # noqa: E731
            count = build_pyramid(dest, out_axes, named, transforms, levels=levels,
                                  version=version, name=Path(image.path).name,
                                  channel_names=image.meta.channel_names, compute=compute)
    finally:
        bar.close()
    zarr, _ = modules()
    group = zarr.open_group(str(dest), mode="r+")
    group.attrs[STATE] = {**group.attrs[STATE], "complete": True}
    return ChunkedResult(dest, len(plan), len(todo), len(plan) - len(todo), count,
                         time.perf_counter() - started)


def _create(dest: Path, image: LazyImage, out_axes: str, order: tuple[int, ...],
            sizes: tuple[int, ...], dtype: str, named: list[dict], transforms: list[dict],
            version: str, grid: tuple[int, ...], fingerprint: str) -> None:
    """A new destination: the OME-Zarr, its per-chunk markers, the fingerprint."""
    zarr, _ = modules()
    shape = tuple(image.shape[i] for i in order)
    create_omezarr(dest, shape, dtype, tuple(sizes[i] for i in order), named, transforms,
                   version=version, name=Path(image.path).name,
                   channel_names=image.meta.channel_names)
    group = zarr.open_group(str(dest), mode="r+")
    group.create_array(DONE, shape=grid, chunks=(1,) * len(grid), dtype="uint8",
                       fill_value=0, compressors=None)
    group.attrs[STATE] = {"fingerprint": fingerprint, "complete": False,
                          "source": image.path, "grid": list(grid)}


def _prepare(dest: Path, fingerprint: str, overwrite: bool,
             create: Callable[[], None]) -> np.ndarray | None:
    """The done markers of a run to resume (None: it is complete), after creating the
    destination when there is none; refuses one made by another model, source or
    settings unless ``overwrite``."""
    zarr, _ = modules()
    if dest.exists():
        try:
            state = dict(zarr.open_group(str(dest), mode="r").attrs.get(STATE) or {})
        except Exception:  # noqa: BLE001 - not a zarr group: not ours to resume
            state = {}
        if state.get("fingerprint") == fingerprint and not overwrite:
            if state.get("complete"):
                return None
            return np.asarray(zarr.open_array(str(dest), path=DONE, mode="r")[...])
        if not overwrite:
            what = ("was made by another model, source or settings" if state
                    else "already exists and is not an n2v-cascade output")
            raise OutputExistsError(f"{dest}: {what}; use --overwrite to replace it, or "
                                    f"choose another output")
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    create()
    return np.asarray(zarr.open_array(str(dest), path=DONE, mode="r")[...])


