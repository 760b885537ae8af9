"""Quality on real data: every variant at one training budget, and the classical baselines.

One model per data set and variant (per microscope type for FMD, ``Dataset.groups``) is
trained on the noisy images themselves (self-supervised, no clean image seen), then each
image is denoised with ``Model.denoise`` (default tiling). PSNR/SSIM use the data set's
``data_range``.
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
        # real microscope noise differs per image (FMD: 12 set-ups) and is underestimated
        # by the wavelet fit: bootstrap it per image from the prior mean (PN2V)
        noise = "bootstrap" if ds.real_noise else "stored"
        fit = fit_groups(ds, key, ds.noisy, budget, precision, posterior=recipe.posterior,
                         noise_model=noise)
        base = {"kind": "self-supervised", "variant": key, "train_s": fit["train_s"],
                "train_wall_s": fit["train_wall_s"], "steps": fit["steps"],
                "budget_s": budget, "precision": precision}
        if ds.groups:
            base["models"] = fit["models"]
        label = recipe.label + (" - prior mean" if recipe.posterior else "")
        rows.append({"method": label, **base, "predict_s": fit["predict_s"],
                     **score(ds, fit["outputs"])})
        log(f"  {ds.name} {label}: {rows[-1]['psnr']:.2f} dB ({fit['steps']} steps, "
            f"{fit['train_s']:.0f} s)")
        if recipe.posterior:
            rows.append({"method": recipe.label + " - posterior mean", **base,
                         "predict_s": fit["posterior_s"],
                         "noise_model": fit["noise"] if noise == "stored" else noise,
                         **score(ds, fit["posterior"])})
            log(f"  {ds.name} {rows[-1]['method']}: {rows[-1]['psnr']:.2f} dB")
    for name, fn in (baselines(ds) if with_baselines else {}).items():
        out, sec = run_baseline(fn, ds.noisy)
        rows.append({"method": name, "kind": "classical", "predict_s": sec, **score(ds, out)})
        log(f"  {ds.name} {name}: {rows[-1]['psnr']:.2f} dB ({sec:.1f} s)")
    return rows


def fit_groups(ds: Dataset, key: str, images: list[np.ndarray], budget: float,
               precision: str = "bfloat16", posterior: bool = False,
               noise_model: str = "stored") -> dict:
    """Train one model per group of ``ds`` (the whole set when it has none) on ``images``.

    The budget is split by image count, so every variant gets the same total. Returns the
    denoised images in data-set order (and the posterior means when asked), the summed
    steps and seconds, and per group the images and the model's resolved settings.
    """
    groups = ds.groups or [list(range(len(images)))]
    n = len(images)
    res: dict = {"outputs": [None] * n, "posterior": [None] * n, "train_s": 0.0,
                 "train_wall_s": 0.0, "steps": 0, "predict_s": 0.0, "posterior_s": 0.0,
                 "models": [], "noise": None}
    for idx in groups:
        part = [images[i] for i in idx]
        model, clock, _ = train_budget(RECIPES[key], part, ds.noise_model,
                                       budget * len(idx) / n, precision)
        res["train_s"] += clock.seconds
        res["train_wall_s"] += clock.wall_seconds
        res["steps"] += clock.steps
        res["noise"] = model.noise
        net = model.config.network
        res["models"].append({"images": [ds.names[i] for i in idx], "steps": clock.steps,
                              "blind_radius": net.blind_radius})
        out, sec = denoise_all(model, part)
        res["predict_s"] += sec
        for i, o in zip(idx, out, strict=True):
            res["outputs"][i] = o
        if posterior:
            out, sec = denoise_all(model, part, posterior=True, noise_model=noise_model)
            res["posterior_s"] += sec
            for i, o in zip(idx, out, strict=True):
                res["posterior"][i] = o
    return res


# Two-stage cascades (progressive retraining, paper III.D) run at the same total budget as
# one variant: each stage gets half. Blind-spot -> Structured was the best two-stage
# cascade in 5 of the 6 `reproduce --budget quick` tables (RESULTS-history.md).
CASCADES: dict[str, tuple[str, str]] = {"cascade-bsn-structured": ("blindspot", "structured")}


def run_cascade(ds: Dataset, budget: float, key: str, precision: str = "bfloat16") -> dict:
    """Stage 1 trained on the noisy images, stage 2 on stage 1's outputs; half the budget each."""
    images, train_s, wall_s, steps, predict_s = ds.noisy, 0.0, 0.0, 0, 0.0
    for variant in CASCADES[key]:
        fit = fit_groups(ds, variant, images, budget / 2, precision)
        images = fit["outputs"]
        train_s, wall_s = train_s + fit["train_s"], wall_s + fit["train_wall_s"]
        steps, predict_s = steps + fit["steps"], predict_s + fit["predict_s"]
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
