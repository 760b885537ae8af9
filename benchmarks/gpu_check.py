"""``python -m benchmarks.gpu_check [--device cuda]``: the CUDA paths and GPU throughput.

One short command (a few minutes) for a machine with an NVIDIA GPU; ``--device cpu``
runs the same checks on a CPU (smoke test). It checks and measures, on a generated
noisy image:

* device choice: what ``auto`` resolves to, the GPU's name, the precision ``auto``
  picks there and why;
* training on the device (the real loop: sampling, masking, forward, backward, Adam) for
  the U-Net (``n2v``) and the blind-spot net (``probabilistic-blindspot``): patches/s
  after a warm-up, at batch 8 and 128;
* inference megapixels/s of both on a 2048x2048 image (default tiling);
* 3-D: the default 3-D n2v network's training voxels/s (batch 8 of 16x64x64) and
  inference voxels/s on a ``depth`` x 256 x 256 volume; float16 training (loss scaling)
  runs and stays finite;
* portability: the model trained on the device saves, reloads bit-identically on the
  device, loads on the CPU and predicts the same within float tolerance; a checkpoint
  written on the device resumes on the CPU.

Prints one JSON document (and writes it with ``--json``); numbers go in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import n2v_cascade as nc
from n2v_cascade.config import make_config
from n2v_cascade.model import Model
from n2v_cascade.runtime import choose_precision, resolve_device

NETWORK = {"depth": 3, "width": 32, "growth": 1.0}
METHODS = ("n2v", "probabilistic-blindspot")


def network_for(variant: str) -> dict:
    """The measured network; blind-spot methods get radius 0 (white test noise)."""
    return {**NETWORK, "blind_radius": 0} if variant.endswith("blindspot") else NETWORK


def synthetic(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random scene with Gaussian noise (0..255 scale)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    clean = gaussian_filter(rng.random((size, size)), 4)
    clean = (clean - clean.min()) / np.ptp(clean) * 200 + 20
    return (clean + rng.normal(0, 20, clean.shape)).astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_rate(variant: str, image: np.ndarray, device: torch.device, batch: int,
                  steps: int) -> dict:
    """Patches/s of the training loop on ``device`` (the first 3 steps are warm-up)."""
    times: list[float] = []
    cfg = make_config("gpu_check", variant=variant, patch_size=64, batch_size=batch,
                      epochs=1, steps_per_epoch=steps, val_fraction=0.0,
                      network=network_for(variant))
    model = nc.train(image, cfg, progress=False, device=device,
                     callbacks=[lambda info: times.append(info.step_seconds)])
    wall = sum(times[3:])
    return {"method": variant, "batch": batch, "steps": len(times),
            "precision": model.config.precision,
            "patches_per_s": round(batch * len(times[3:]) / wall, 1) if wall else None}


def inference_rate(model: Model, size: int) -> dict:
    """Megapixels/s of ``Model.predict`` (default tiling) on a ``size``-sided image."""
    image = synthetic(size, 1)
    model.predict(image[:256, :256])  # warm-up
    _sync(model.device)
    t0 = time.perf_counter()
    model.predict(image)
    _sync(model.device)
    seconds = time.perf_counter() - t0
    return {"method": model.config.variant, "size": size, "seconds": round(seconds, 3),
            "mp_per_s": round(size * size / 1e6 / seconds, 2)}


def three_d(device: torch.device, steps: int, depth: int) -> dict:
    """3-D n2v on the device: training and inference voxels/s, and a float16 run."""
    rng = np.random.default_rng(2)
    volume = (100 + rng.normal(0, 20, (depth, 256, 256))).astype(np.float32)
    times: list[float] = []
    cfg = make_config("gpu_check", variant="n2v", dims=3, patch_size=64, patch_z=16,
                      batch_size=8, epochs=1, steps_per_epoch=steps, val_fraction=0.0)
    model = nc.train(volume, cfg, axes="ZYX", progress=False, device=device,
                     callbacks=[lambda info: times.append(info.step_seconds)])
    wall = sum(times[3:])
    model.predict(volume[:16, :64, :64], axes="ZYX")  # warm-up
    _sync(model.device)
    t0 = time.perf_counter()
    model.predict(volume, axes="ZYX")
    _sync(model.device)
    seconds = time.perf_counter() - t0
    half = nc.train(volume[:16], make_config("gpu_check", variant="n2v", dims=3,
                                             patch_size=32, patch_z=8, batch_size=4,
                                             epochs=1, steps_per_epoch=5, val_fraction=0.0,
                                             precision="float16"),
                    axes="ZYX", progress=False, device=device)
    return {"precision": model.config.precision, "depth": model.config.network.depth,
            "train_voxels_per_s": round(8 * 16 * 64 * 64 * len(times[3:]) / wall)
            if wall else None,
            "predict_voxels_per_s": round(volume.size / seconds),
            "float16_finite": bool(np.isfinite(half.denoise(volume[:16], axes="ZYX")).all())}


def portability(image: np.ndarray, device: torch.device, work: Path) -> dict:
    """Save/reload on the device, load on the CPU, resume a device checkpoint on the CPU."""
    cfg = make_config("gpu_check", variant="n2v", patch_size=32, batch_size=4, epochs=2,
                      steps_per_epoch=5, val_fraction=0.0, network=NETWORK)
    model = nc.train(image, cfg, output_dir=work / "m", progress=False, device=device)
    crop = image[:256, :256]
    here = model.denoise(crop)
    again = Model.load(work / "m", device=device).denoise(crop)
    on_cpu = Model.load(work / "m", device="cpu").denoise(crop)
    stopped = nc.train(image, cfg, output_dir=work / "r", progress=False, device=device,
                       callbacks=[lambda info: info.step == 6])
    resumed = nc.train(image, cfg, output_dir=work / "r", progress=False, device="cpu",
                       resume=True)
    return {"reload_on_device_identical": bool(np.array_equal(here, again)),
            "cpu_max_abs_diff": float(np.max(np.abs(here - on_cpu))),
            "cpu_close": bool(np.allclose(here, on_cpu, rtol=1e-3, atol=1e-2)),
            "resumed_on_cpu_steps": len(resumed.history),
            "stopped_on_device_at": f"epoch {stopped.history[-1]['epoch']}, step "
                                    f"{stopped.history[-1].get('step')}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=40, help="training steps per case")
    parser.add_argument("--size", type=int, default=2048, help="inference image side")
    parser.add_argument("--depth", type=int, default=64, help="3-D inference volume depth")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision, why = choose_precision("auto", device)
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(), "torch": torch.__version__, "device": str(device),
        "auto_device": str(resolve_device("auto")),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "precision_auto": precision, "precision_why": why,
    }
    image = synthetic(512)
    report["training"] = [training_rate(m, image, device, b, args.steps)
                          for m in METHODS for b in (8, 128)]
    models = {}
    for m in METHODS:
        cfg = make_config("gpu_check", variant=m, patch_size=64, epochs=1, steps_per_epoch=2,
                          val_fraction=0.0, network=network_for(m))
        models[m] = nc.train(image, cfg, progress=False, device=device)
    report["inference"] = [inference_rate(models[m], args.size) for m in METHODS]
    report["3d"] = three_d(device, args.steps, args.depth)
    with tempfile.TemporaryDirectory() as tmp:
        report["portability"] = portability(image, device, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
