"""``python -m benchmarks.refine [SECONDS]``: `train`'s two phases on correlated noise of
known truth, outside FMD.

The cells3d nucleus crop (``microscopy_nd``, taken as clean) plus Gaussian noise convolved
with (0.5, 1, 0.5) along X and Y, half the stack's standard deviation; its slices are
2-D samples (the default network). ``train_refined`` with ``refine`` none and auto, the
same time limit (default 90 s, 1 thread); prints the PSNR of each.
"""

from __future__ import annotations

import sys

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

from benchmarks import datasets
from benchmarks.targets import psnr
from n2v_cascade import train_refined
from n2v_cascade.config import make_config


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 90.0
    torch.set_num_threads(1)
    path = datasets.data_root() / "microscopy_nd/ncp_cells3d_nucleus_crop_zyx/nucleus.tif"
    clean = tifffile.imread(path).astype(np.float32)
    rng = np.random.default_rng(0)
    taper = np.array([0.5, 1.0, 0.5])
    white = rng.normal(size=clean.shape)
    noise = ndi.convolve1d(ndi.convolve1d(white, taper, axis=-1), taper, axis=-2) / 1.5
    noisy = (clean + noise * 0.5 * float(clean.std())).astype(np.float32)
    span = float(clean.max() - clean.min())
    print(f"noisy {psnr(noisy, clean, span):.2f} dB", flush=True)
    for refine in ("none", "auto"):
        cfg = make_config("refine", epochs=3, steps_per_epoch=100000, patch_size=32, seed=0)
        model = train_refined(noisy, cfg, axes="ZYX", refine=refine, time_limit=seconds,
                              progress=False)
        print(f"refine {refine}: {model.config.variant}, "
              f"{psnr(model.denoise(noisy, axes='ZYX'), clean, span):.2f} dB, "
              f"{model.train_seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
