"""Quality on real data: every variant at one training budget, and the classical baselines.

One model per data set and variant is trained on the noisy images of that data set
themselves (self-supervised, no clean image seen), then each image is denoised with
``Model.denoise`` (default tiling). PSNR/SSIM use the data set's ``data_range``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.classical import baselines, run_baseline
from benchmarks.datasets import Dataset
from benchmarks.training import RECIPES, denoise_all, train_budget
from n2v_cascade.metrics import psnr, ssim

Log = Callable[[str], None]


def score(ds: Dataset, outputs: list[np.ndarray]) -> dict:
    """Mean PSNR/SSIM over the data set and the per-image PSNRs."""
    psnrs = [psnr(o, c, ds.data_range) for o, c in zip(outputs, ds.clean, strict=True)]
    ssims = [ssim(o, c, ds.data_range) for o, c in zip(outputs, ds.clean, strict=True)]
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "psnr_per_image": [round(p, 3) for p in psnrs]}


def run_dataset(ds: Dataset, budget: float, variants: list[str], log: Log,
                precision: str = "bfloat16", with_baselines: bool = True) -> list[dict]:
    """All rows (noisy, variants, baselines) of one data set."""
    rows = [{"method": "noisy input", "kind": "input", **score(ds, ds.noisy)}]
    for key in variants:
        if key in CASCADES:
            rows.append(run_cascade(ds, budget, key, precision))
            log(f"  {ds.name} {rows[-1]['method']}: {rows[-1]['psnr']:.2f} dB "
                f"({rows[-1]['steps']} steps, {rows[-1]['train_s']:.0f} s)")
            continue
        recipe = RECIPES[key]
        model, clock, wall = train_budget(recipe, ds.noisy, ds.noise_model, budget, precision)
        base = {"kind": "self-supervised", "variant": key, "train_s": clock.seconds,
                "train_wall_s": clock.wall_seconds, "steps": clock.steps, "budget_s": budget,
                "precision": precision}
        out, sec = denoise_all(model, ds.noisy)
        label = recipe.label + (" - prior mean" if recipe.posterior else "")
        rows.append({"method": label, **base, "predict_s": sec, **score(ds, out)})
        log(f"  {ds.name} {label}: {rows[-1]['psnr']:.2f} dB ({clock.steps} steps, "
            f"{clock.seconds:.0f} s)")
        if recipe.posterior:
            # real microscope noise differs per image (FMD: 12 set-ups) and is underestimated
            # by the wavelet fit: bootstrap it per image from the prior mean (PN2V)
            noise = "bootstrap" if ds.real_noise else "stored"
            out, sec = denoise_all(model, ds.noisy, posterior=True, noise_model=noise)
            rows.append({"method": recipe.label + " - posterior mean", **base, "predict_s": sec,
                         "noise_model": model.noise if noise == "stored" else noise,
                         **score(ds, out)})
            log(f"  {ds.name} {rows[-1]['method']}: {rows[-1]['psnr']:.2f} dB")
    for name, fn in (baselines(ds) if with_baselines else {}).items():
        out, sec = run_baseline(fn, ds.noisy)
        rows.append({"method": name, "kind": "classical", "predict_s": sec, **score(ds, out)})
        log(f"  {ds.name} {name}: {rows[-1]['psnr']:.2f} dB ({sec:.1f} s)")
    return rows


# Two-stage cascades (progressive retraining, paper III.D) run at the same total budget as
# one variant: each stage gets half. Blind-spot -> Structured was the best two-stage
# cascade in 5 of the 6 `reproduce --budget quick` tables (RESULTS.md, issue 4).
CASCADES: dict[str, tuple[str, str]] = {"cascade-bsn-structured": ("blindspot", "structured")}


def run_cascade(ds: Dataset, budget: float, key: str, precision: str = "bfloat16") -> dict:
    """Stage 1 trained on the noisy images, stage 2 on stage 1's outputs; half the budget each."""
    images, train_s, wall_s, steps, predict_s = ds.noisy, 0.0, 0.0, 0, 0.0
    for variant in CASCADES[key]:
        model, clock, _ = train_budget(RECIPES[variant], images, ds.noise_model, budget / 2,
                                       precision)
        images, sec = denoise_all(model, images)
        train_s, wall_s = train_s + clock.seconds, wall_s + clock.wall_seconds
        steps, predict_s = steps + clock.steps, predict_s + sec
    labels = " -> ".join(RECIPES[v].label for v in CASCADES[key])
    return {"method": f"Cascade {labels} (half the budget each)", "kind": "self-supervised",
            "variant": key, "train_s": train_s, "train_wall_s": wall_s, "steps": steps,
            "budget_s": budget, "precision": precision, "predict_s": predict_s,
            **score(ds, images)}


def precision_check(ds: Dataset, budget: float, variants: list[str], log: Log) -> list[dict]:
    """Same number of steps in float32 and bfloat16: does bf16 training lose quality?

    The bf16 run uses the time budget; the float32 run then trains exactly as many steps
    (taking longer). Both models are also evaluated with bf16 inference.
    """
    import torch

    rows = []
    for key in variants:
        recipe = RECIPES[key]
        bf16, clock, _ = train_budget(recipe, ds.noisy, ds.noise_model, budget, "bfloat16")
        fp32, clock32, _ = train_budget(recipe, ds.noisy, ds.noise_model, 0.0, "float32",
                                        steps=clock.steps)
        for prec, model, clk in (("bfloat16", bf16, clock), ("float32", fp32, clock32)):
            out, sec = denoise_all(model, ds.noisy, posterior=recipe.posterior)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out16, sec16 = denoise_all(model, ds.noisy, posterior=recipe.posterior)
            rows.append({"variant": key, "precision": prec, "steps": clk.steps,
                         "train_s": clk.seconds, "train_wall_s": clk.wall_seconds,
                         "psnr": score(ds, out)["psnr"],
                         "predict_s": sec, "psnr_bf16_inference": score(ds, out16)["psnr"],
                         "predict_bf16_s": sec16})
            log(f"  precision {key} {prec}: {rows[-1]['psnr']:.2f} dB "
                f"(bf16 inference {rows[-1]['psnr_bf16_inference']:.2f}), {clk.steps} steps, "
                f"{clk.seconds:.0f} s")
    return rows
