"""Chunked OME-Zarr prediction: throughput and peak memory per worker.

``python -m benchmarks.chunked --size 4096 --workers 0 1 2`` writes a uint16 OME-Zarr of
``size`` x ``size`` (noise on a smooth pattern, chunk by chunk), trains a throwaway model
with the default N2V network (depth 3, width 32; its weights do not change the speed),
and denoises the image with :func:`n2v_cascade.chunked.denoise_chunked` on the threaded
scheduler (0) and on local clusters of N single-threaded worker processes, sampling the
resident memory of this process and of every worker process. Needs the ``distributed``
extra and psutil.
"""

from __future__ import annotations

import argparse
import json
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


def make_source(path: Path, size: int, chunk: int) -> None:
    """A uint16 OME-Zarr (NGFF 0.5) of ``size`` x ``size``, written one chunk at a time."""
    from n2v_cascade.omezarr import create_omezarr, write_region

    named = [{"name": "y", "type": "space", "unit": "micrometer"},
             {"name": "x", "type": "space", "unit": "micrometer"}]
    create_omezarr(path, (size, size), "uint16", (chunk, chunk), named,
                   [{"type": "scale", "scale": [0.1, 0.1]}])
    rng = np.random.default_rng(0)
    for y in range(0, size, chunk):
        for x in range(0, size, chunk):
            yy, xx = np.mgrid[y:y + chunk, x:x + chunk].astype(np.float32)
            clean = 1000 + 400 * np.sin(yy / 37) * np.cos(xx / 23)
            noisy = rng.poisson(clean).astype(np.uint16)
            write_region(path, (slice(y, y + chunk), slice(x, x + chunk)), noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folder", type=Path, default=Path("chunked-bench"))
    args = parser.parse_args()

    from n2v_cascade.chunked import denoise_chunked
    from n2v_cascade.config import make_config
    from n2v_cascade.training import train

    args.folder.mkdir(parents=True, exist_ok=True)
    source = args.folder / f"noisy-{args.size}.ome.zarr"
    if not source.exists():
        make_source(source, args.size, args.chunk)
    rng = np.random.default_rng(1)
    model = train(rng.poisson(1000, (128, 128)).astype(np.float32),
                  make_config(variant="n2v", patch_size=64, batch_size=2, epochs=1,
                              steps_per_epoch=1), progress=False)
    crop = rng.poisson(1000, (1024, 1024)).astype(np.float32)
    model.denoise(crop[:256, :256], posterior=False)  # warm up (and the receptive radius)
    start, cpu = time.perf_counter(), time.process_time()
    model.denoise(crop, posterior=False)
    rows = [{"run": "in-memory 1024x1024", "mpx_s": round(crop.size / 1e6 / (
        time.perf_counter() - start), 3), "cpu_s_per_mpx": round(
        (time.process_time() - cpu) / (crop.size / 1e6), 2)}]
    for n in args.workers:
        dest = args.folder / f"out-{n}.ome.zarr"
        shutil.rmtree(dest, ignore_errors=True)
        sampler = Sampler()
        sampler.start()
        start = time.perf_counter()
        result = denoise_chunked(model, source, dest, workers=n or None, progress=False,
                                 chunks=args.chunk)
        seconds = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        cpu = sampler.cpu_seconds()
        workers = sorted(sampler.peaks.values(), reverse=True)[:n]
        rows.append({"run": f"{n} workers" if n else "threads", "seconds": round(seconds, 1),
                     "mpx_s": round(args.size ** 2 / 1e6 / seconds, 3),
                     "cpu_s_per_mpx": round(cpu / (args.size ** 2 / 1e6), 2),
                     "chunks": result.total, "levels": result.levels,
                     "peak_rss_mb_main": round(sampler.own),
                     "peak_rss_mb_workers": [round(w) for w in workers]})
    print(json.dumps({"size": args.size, "chunk": args.chunk, "cpus": os.cpu_count(),
                      "load": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
