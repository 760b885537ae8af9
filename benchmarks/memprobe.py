"""Subprocess: peak resident memory of denoising one large float32 image.

``python -m benchmarks.memprobe MODEL_DIR HEIGHT WIDTH [--posterior] [--threads N]``
prints one JSON line. The process peak (``VmHWM`` of ``/proc/self/status``) includes the
interpreter, torch, the input image and every output array; ``tracemalloc`` adds the
peak of Python/NumPy allocations during the denoise call alone. (``ru_maxrss`` is not
used: Linux carries the parent's resident size at fork over into it.)
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize()


def _peak_rss_bytes() -> int:
    """High-water mark of the resident set of this process image (``VmHWM``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("height", type=int)
    parser.add_argument("width", type=int)
    parser.add_argument("--posterior", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch

    from n2v_cascade.model import Model

    torch.set_num_threads(args.threads)
    model = Model.load(args.model)
    rss_loaded = _rss_bytes()
    image = np.random.default_rng(0).random((args.height, args.width), dtype=np.float32) * 255
    rss_image = _rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = model.denoise(image, posterior=args.posterior, noise_model="stored")
    seconds = time.perf_counter() - t0
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _peak_rss_bytes()
    print(json.dumps({
        "shape": [args.height, args.width], "posterior": args.posterior,
        "variant": model.config.variant, "backbone": model.method.backbone,
        "rss_after_load_mb": rss_loaded / 2**20, "rss_with_image_mb": rss_image / 2**20,
        "peak_rss_mb": peak / 2**20, "tracemalloc_peak_mb": traced_peak / 2**20,
        "image_mb": image.nbytes / 2**20, "output_mb": out.nbytes / 2**20,
        "seconds": seconds, "mpix_per_s": image.size / 1e6 / seconds,
    }))


if __name__ == "__main__":
    main()
