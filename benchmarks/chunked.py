"""Chunked OME-Zarr prediction: throughput and peak memory per worker.

``python -m benchmarks.chunked --shape 4096x4096 --workers 0 1 2`` writes a uint16
OME-Zarr (or with ``--source tiff`` a TIFF) of that YX or ZYX shape (noise on a
smooth pattern, block by block), trains a throwaway model with the default N2V network
of that dims (width 32; its weights do not change the speed),
and denoises the image with :func:`n2v_cascade.chunked.denoise_chunked` on the threaded
scheduler (0) and on local clusters of N single-threaded worker processes, sampling the
resident memory of this process and of every worker process. Needs the ``distributed``
extra and psutil. ``--max-chunks N`` stops each run after N chunks (memory per worker
does not depend on how many chunks run; throughput is over the chunks done).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np


class Sampler(threading.Thread):
    """The peak resident memory of this process and of each child process (MB), and the
    CPU seconds they use (a machine shared with other work slows the wall clock, not
    these)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psutil

        self.me, self.interval, self.stop = psutil.Process(), interval, threading.Event()
        self.peaks: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.own = 0.0
        self.start_cpu = self._cpu(self.me)

    @staticmethod
    def _cpu(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def run(self) -> None:
        while not self.stop.is_set():
            self.own = max(self.own, self.me.memory_info().rss / 2**20)
            for child in self.me.children(recursive=True):
                try:
                    rss, cpu = child.memory_info().rss / 2**20, self._cpu(child)
                except Exception:  # noqa: BLE001 - a process that just ended
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss)
                self.cpu[child.pid] = cpu
            time.sleep(self.interval)

    def cpu_seconds(self) -> float:
        """CPU seconds of this process since the start, and of every child seen."""
        return self._cpu(self.me) - self.start_cpu + sum(self.cpu.values())


def _clean(region: tuple[slice, ...]) -> np.ndarray:
    """A smooth pattern (photons) over ``region`` of the whole image's grid."""
    grids = np.ogrid[region]
    plane = 1000 + 400 * np.sin(grids[-2] / 37.0) * np.cos(grids[-1] / 23.0)
    if len(grids) == 3:
        plane = plane * (1 + 0.3 * np.sin(grids[0] / 5.0))
    return plane.astype(np.float32)


def make_source(path: Path, shape: tuple[int, ...], chunk: tuple[int, ...]) -> None:
    """A uint16 noisy image (Poisson on :func:`_clean`) written block by block: an
    OME-Zarr (NGFF 0.5; YX or ZYX in ``chunk`` chunks) or, for ``.tif``, a TIFF
    written plane by plane, so neither is ever whole in memory."""
    rng = np.random.default_rng(0)
    if path.suffix == ".tif":
        import tifffile

        def planes():
            for z in range(shape[0] if len(shape) == 3 else 1):
                region = ((slice(z, z + 1),) if len(shape) == 3 else ()) + (
                    slice(0, shape[-2]), slice(0, shape[-1]))
                yield rng.poisson(_clean(region)).astype(np.uint16).reshape(shape[-2:])

        tifffile.imwrite(path, planes(), shape=shape, dtype="uint16",
                         metadata={"axes": "ZYX"[-len(shape):]}, bigtiff=True)
        return
    from n2v_cascade.omezarr import create_omezarr, write_region

    names = "zyx"[-len(shape):]
    named = [{"name": a, "type": "space", "unit": "micrometer"} for a in names]
    create_omezarr(path, shape, "uint16", chunk, named,
                   [{"type": "scale", "scale": [0.1] * len(shape)}])
    starts = [range(0, n, c) for n, c in zip(shape, chunk, strict=True)]
    for corner in itertools.product(*starts):
        region = tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, chunk, shape,
                                                                 strict=True))
        write_region(path, region, rng.poisson(_clean(region)).astype(np.uint16))


class Enough(Exception):
    """Raised from ``on_chunk`` to stop a run after ``--max-chunks`` chunks."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096x4096", help="YX or ZYX, e.g. 128x2048x2048")
    parser.add_argument("--chunk", default=None,
                        help="output chunk sides (default: the package's, per dims)")
    parser.add_argument("--source", choices=("zarr", "tiff"), default="zarr")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-chunks", type=int, default=0,
                        help="stop each run after this many chunks (0: all)")
    parser.add_argument("--folder", type=Path, default=Path("chunked-bench"))
    args = parser.parse_args()

    import torch

    from n2v_cascade.chunked import DEFAULT_CHUNKS, denoise_chunked
    from n2v_cascade.config import make_config
    from n2v_cascade.training import train

    torch.set_num_threads(1)
    shape = tuple(int(n) for n in args.shape.split("x"))
    dims = len(shape)
    chunk = tuple(int(c) for c in args.chunk.split("x")) if args.chunk else DEFAULT_CHUNKS[dims]
    args.folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tif" if args.source == "tiff" else ".ome.zarr"
    source = args.folder / f"noisy-{args.shape}{suffix}"
    if not source.exists():
        t0 = time.perf_counter()
        make_source(source, shape, chunk)
        print(f"wrote {source} in {time.perf_counter() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(1)
    small = (16, 64, 64) if dims == 3 else (128, 128)
    cfg = make_config(variant="n2v", dims=dims, patch_size=32 if dims == 3 else 64,
                      patch_z=8, batch_size=2, epochs=1, steps_per_epoch=1)
    model = train(rng.poisson(1000, small).astype(np.float32), cfg, progress=False,
                  axes="ZYX"[-dims:])
    rows = []
    for n in args.workers:
        dest = args.folder / f"out-{args.shape}-{n}.ome.zarr"
        shutil.rmtree(dest, ignore_errors=True)
        count = {"chunks": 0}

        def stop(_index, count=count) -> None:
            count["chunks"] += 1
            if args.max_chunks and count["chunks"] >= args.max_chunks:
                raise Enough

        sampler = Sampler()
        sampler.start()
        start = time.perf_counter()
        try:
            result = denoise_chunked(model, source, dest, workers=n or None, progress=False,
                                     chunks=chunk, on_chunk=stop)
            total = result.total
        except Enough:
            total = None
        seconds = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        cpu = sampler.cpu_seconds()
        done_px = count["chunks"] * math.prod(chunk)
        workers = sorted(sampler.peaks.values(), reverse=True)[:n]
        rows.append({"run": f"{n} workers" if n else "threads", "seconds": round(seconds, 1),
                     "chunks_done": count["chunks"], "chunks_total": total,
                     "mvoxels_s": round(done_px / 1e6 / seconds, 3),
                     "cpu_s_per_mvoxel": round(cpu / (done_px / 1e6), 2),
                     "peak_rss_mb_main": round(sampler.own),
                     "peak_rss_mb_workers": [round(w) for w in workers]})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"shape": shape, "chunk": chunk, "source": args.source,
                      "depth": model.config.network.depth,
                      "halo": model.receptive_radius(), "cpus": os.cpu_count(),
                      "load": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
