"""How the chunks of :mod:`n2v_cascade.chunked` run: one chunk (read its window, predict,
write, mark done), on dask's threaded scheduler or on dask.distributed workers.

Workers get the model as its folder's files (weights, config, statistics), broadcast
once; each loads it on the CPU on first use and keeps it for the chunks that follow.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .axes import from_samples, to_samples
from .config import config_yaml
from .errors import InputError
from .model import Model
from .omezarr import LazyImage, modules, write_region
from .runtime import HOST, host_state

#: The per-chunk marker array inside the output store.
DONE = "n2v_cascade_done"
#: Chunks at once with the threaded scheduler, by the model's dims (torch parallelises
#: each): two 2-D chunks overlap one's reading and writing with the other's compute; a
#: 3-D chunk computes far longer than its I/O and holds a whole tile's activations, so
#: one at a time (benchmarks/RESULTS.md, "3-D").
THREADS = {2: 2, 3: 1}


@dataclass(frozen=True)
class Chunk:
    """One piece of work: ``out`` (the image region it writes, one slice per axis),
    ``read`` (the source window: ``out`` plus the halo) and ``keep`` (``out`` inside it)."""

    index: tuple[int, ...]
    out: tuple[slice, ...]
    read: tuple[slice, ...]
    keep: tuple[slice, ...]


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the model (picklable)."""

    source: LazyImage
    dest: str
    axes: str
    order: tuple[int, ...]  # the destination's axes as positions in the source's
    dtype: str
    predict: dict[str, Any]


def model_hash(model: Model) -> str:
    """A digest of what determines a model's output: weights, recipe, normalisation."""
    digest = hashlib.sha256(config_yaml(model.config).encode())
    digest.update(model.normalizer.model_dump_json().encode())
    for name, tensor in sorted(host_state(model.network).items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _payload(model: Model) -> dict[str, bytes]:
    """The model folder's files, for workers that may not see this machine's disk."""
    with tempfile.TemporaryDirectory(prefix="n2v-model-") as tmp:
        folder = model.save(Path(tmp) / "model")
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


_MODELS: dict[str, Model] = {}
_LOCK = threading.Lock()


def _worker_model(key: str, payload: dict[str, bytes], threads: int | None) -> Model:
    """The model on this worker: loaded on the CPU on first use, then kept."""
    with _LOCK:
        if key not in _MODELS:
            import torch

            if threads:
                torch.set_num_threads(threads)
            folder = Path(tempfile.mkdtemp(prefix="n2v-model-"))
            try:
                for name, blob in payload.items():
                    (folder / name).write_bytes(blob)
                _MODELS.clear()
                _MODELS[key] = Model.load(folder, device=HOST)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        return _MODELS[key]


def _cast(data: np.ndarray, dtype: str) -> np.ndarray:
    """Prediction (float32) as the output type: integers rounded and clipped to range."""
    kind = np.dtype(dtype)
    if kind.kind in "iu":
        info = np.iinfo(kind)
        return np.clip(np.rint(data), info.min, info.max).astype(kind)
    return data.astype(kind, copy=False)


def run_chunk(job: Job, chunk: Chunk, model: Model) -> tuple[int, ...]:
    """Read one window, predict it, write the kept region, then mark the chunk done."""
    zarr, _ = modules()
    data = job.source.read(chunk.read).astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        where = ", ".join(f"{s.start}:{s.stop}" for s in chunk.read)
        raise InputError(f"{job.source.path}: has NaN or infinite values in [{where}]")
    lay = model.layout(data.shape, job.axes, source=job.source.path)
    mean = from_samples(model._predict_samples(to_samples(data, lay), **job.predict)["mean"],
                        lay)[chunk.keep]
    region = tuple(chunk.out[i] for i in job.order)
    write_region(job.dest, region, np.transpose(_cast(mean, job.dtype), job.order))
    zarr.open_array(job.dest, path=DONE, mode="r+")[chunk.index] = 1
    return chunk.index


def _remote_chunk(chunk: Chunk, job: Job, model_key: str, payload: dict[str, bytes],
                  threads: int | None) -> tuple[int, ...]:
    return run_chunk(job, chunk, _worker_model(model_key, payload, threads))


@contextlib.contextmanager
def scheduler_for(scheduler: str | Any | None, workers: int | None
               ) -> Iterator[tuple[Any, int | None]]:
    """``(client, torch threads per worker)``: no client for the threaded scheduler, a
    LocalCluster of ``workers`` processes, or a Client connected to ``scheduler``."""
    if scheduler is not None and workers is not None:
        raise InputError("give either workers (a local cluster) or scheduler, not both")
    if scheduler in (None, "threads") and workers is None:
        yield None, None
        return
    from dask.distributed import Client, LocalCluster

    if workers is None and not isinstance(scheduler, str):
        yield scheduler, None  # a Client given by the caller
        return
    with contextlib.ExitStack() as stack:
        if workers is not None:
            if workers < 1:
                raise InputError(f"workers: must be >= 1, got {workers}")
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
            yield client, max(1, (os.cpu_count() or 1) // workers)
            return
        try:
            client = stack.enter_context(Client(scheduler, timeout="20s"))
        except OSError as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        yield client, None


def run_threads(job: Job, todo: list[Chunk], model: Model,
                 finished: Callable[[tuple[int, ...]], None]) -> None:
    """The chunks on dask's threaded scheduler; ``finished`` runs in this thread. On an
    error the chunks already running finish (and are marked) before it is raised, so
    nothing writes to the destination after this returns."""
    from concurrent.futures import ThreadPoolExecutor

    import dask
    from dask.callbacks import Callback

    model.receptive_radius()  # cached before threads share the model

    class Done(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            if str(key).startswith("chunk-"):
                finished(result)

    tasks = [dask.delayed(run_chunk, pure=False)(job, c, model,
                                                 dask_key_name=f"chunk-{i}")
             for i, c in enumerate(todo)]
    threads = THREADS[model.config.dims]
    pool = ThreadPoolExecutor(threads, thread_name_prefix="n2v-chunk")
    try:
        with Done():
            dask.compute(*tasks, scheduler="threads", pool=pool, num_workers=threads)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_distributed(client: Any, job: Job, todo: list[Chunk], model: Model,
                     threads: int | None, finished: Callable[[tuple[int, ...]], None]
                     ) -> None:
    """The chunks on a dask.distributed cluster, the model broadcast to every worker."""
    from dask.distributed import as_completed

    if not todo:
        return
    payload = client.scatter([_payload(model)], broadcast=True, hash=False)[0]
    futures = client.map(_remote_chunk, todo, job=job, model_key=model_hash(model),
                         payload=payload, threads=threads, pure=False)
    try:
        for future in as_completed(futures):
            finished(future.result())
    finally:
        client.cancel(futures)
