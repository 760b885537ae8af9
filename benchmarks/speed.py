"""Speed: training and inference throughput, peak memory of a large denoise, FLOP counts.

Times are CPU seconds per torch thread (see :mod:`benchmarks.training`); wall-clock
figures are stored next to them. Training throughput goes through
:func:`n2v_cascade.train.train` (patch sampling, augmentation, masking, forward,
backward and Adam all included); the first step of each case is a warm-up (oneDNN
builds its kernels) and is not counted. Inference runs
:meth:`Model.predict` with its default tiling on a 2048 x 2048 image. Peak memory of
denoising an 8192 x 8192 float32 image is measured in a fresh subprocess
(:mod:`benchmarks.memprobe`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.training import NETWORK, RECIPES, train_budget
from n2v_cascade.models import count_parameters
from n2v_cascade.models.blocks import fused_causal

# Backbones measured: (recipe key, network overrides, label).
BACKBONES = {
    "unet": ("n2v", {}, "U-Net w32 g1 d3"),
    "blindspot": ("blindspot", {}, "Blind-spot net w32 g1 d3"),
    "unet-333k": ("n2v", {"width": 41}, "U-Net w41 g1 d3 (CAREamics-size)"),
    "unet-default": ("n2v", {"growth": 2.0}, "U-Net w32 g2 d3 (package default)"),
    "blindspot-default": ("blindspot", {"growth": 2.0}, "Blind-spot w32 g2 d3 (package default)"),
}
CAREAMICS = {"patches_per_s": 36.0, "params": 333_000, "gflop_per_patch": 2.04,
             "gflops": 75.0, "patch": 64, "batch": 128}


@dataclass
class TrainCase:
    backbone: str
    patch: int
    batch: int
    precision: str


def train_cases(quick: bool) -> list[TrainCase]:
    """The training-throughput grid of a suite (blind-spot 128x128 x 128 is never run)."""
    cases = []
    for bb in ("unet", "blindspot"):
        for patch in (64, 128):
            for batch in (8, 128):
                if bb == "blindspot" and patch == 128 and batch == 128:
                    continue  # ~27 GB of saved activations in float32, ~14 GB in bf16
                precisions = ["bfloat16"] if quick and patch == 128 else ["float32", "bfloat16"]
                cases += [TrainCase(bb, patch, batch, p) for p in precisions]
    cases += [TrainCase("unet-333k", 64, 128, p) for p in ("float32", "bfloat16")]
    cases += [TrainCase(bb, 64, 8, p) for bb in ("unet-default", "blindspot-default")
              for p in ("float32", "bfloat16")]
    return cases


def _network(backbone: str) -> dict:
    return {**NETWORK, **BACKBONES[backbone][1]}


def training_throughput(case: TrainCase, images: list[np.ndarray], seconds: float) -> dict:
    """Patches/s and MP/s of the real training loop for one case."""
    key = BACKBONES[case.backbone][0]
    _, clock, _ = train_budget(
        RECIPES[key], images, None, budget=seconds, precision=case.precision, min_steps=3,
        patch_size=case.patch, batch_size=case.batch, network=_network(case.backbone))
    times = clock.step_times[1:]  # first step = warm-up
    per_step = float(np.mean(times))
    wall = float(np.mean(clock.wall_step_times[1:]))
    pps = case.batch / per_step
    return {**asdict(case), "label": BACKBONES[case.backbone][2], "steps_timed": len(times),
            "step_seconds": per_step, "patches_per_s": pps,
            "mpix_per_s": pps * case.patch**2 / 1e6, "wall_patches_per_s": case.batch / wall}


def tiny_model(backbone: str, images: list[np.ndarray], variant_key: str | None = None):
    """A model trained for one step (weights do not matter for speed or memory)."""
    key = variant_key or BACKBONES[backbone][0]
    model, _, _ = train_budget(RECIPES[key], images, {"kind": "gaussian", "sigma": 25.0},
                               budget=0.0, min_steps=1, precision="float32",
                               network=_network(backbone))
    return model


def inference_throughput(model, size: int = 2048, precision: str = "float32") -> dict:
    """MP/s of ``Model.predict`` (default tiling) on a ``size`` x ``size`` image."""
    rng = np.random.default_rng(0)
    image = (rng.random((size, size), dtype=np.float32) * 255).astype(np.float32)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" \
        else contextlib.nullcontext()
    threads = max(1, torch.get_num_threads())
    with autocast:
        model.predict(image[:512, :512])  # warm-up at the tile size
        t0, c0 = time.perf_counter(), time.process_time()
        model.predict(image)
        wall = time.perf_counter() - t0
        sec = (time.process_time() - c0) / threads
    return {"size": size, "precision": precision, "seconds": sec, "wall_s": wall,
            "mpix_per_s": size * size / 1e6 / sec}


def memory_probe(model, shape: tuple[int, int], threads: int, posterior: bool = False) -> dict:
    """Peak RSS of denoising a float32 image of ``shape`` in a fresh subprocess."""
    with tempfile.TemporaryDirectory(dir=_out_dir()) as tmp:
        model.save(Path(tmp) / "model")
        cmd = [sys.executable, "-m", "benchmarks.memprobe", str(Path(tmp) / "model"),
               str(shape[0]), str(shape[1]), "--threads", str(threads)]
        if posterior:
            cmd.append("--posterior")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _out_dir() -> Path:
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(parents=True, exist_ok=True)
    return out


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an ``n x n`` matmul with the current thread setting.

    Timed in CPU seconds per thread, like the throughputs, so that time other processes
    hold the cores does not lower the peak.
    """
    threads = max(1, torch.get_num_threads())
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        a @ b
        best = min(best, (time.process_time() - c0) / threads)
    return 2 * n**3 / best / 1e9


def flop_counts(backbone: str, patch: int = 64) -> dict:
    """Parameters, forward FLOPs per pixel and counted training FLOPs per patch."""
    key = BACKBONES[backbone][0]
    from benchmarks.training import make_recipe_config
    from n2v_cascade.methods import get_method

    # blind radius 0 (white noise): "auto" is only resolved by training on images
    cfg = make_recipe_config(RECIPES[key], network={**_network(backbone), "blind_radius": 0},
                             patch_size=patch)
    net = get_method(cfg).build_network()
    x = torch.randn(1, 1, patch, patch)
    with fused_causal(False), FlopCounterMode(display=False) as fwd:  # architecture FLOPs
        net(x)
    with fused_causal(False), FlopCounterMode(display=False) as both:
        net(x).float().square().mean().backward()
    return {"backbone": backbone, "label": BACKBONES[backbone][2],
            "params": count_parameters(net), "fwd_flop_per_px": fwd.get_total_flops() / patch**2,
            "train_gflop_per_patch": both.get_total_flops() / 1e9,
            "train_gflop_per_patch_3x": 3 * fwd.get_total_flops() / 1e9, "patch": patch}
