"""The bundled demo: a real microscopy image, synthetic noise, a two-stage N2V cascade."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputExistsError

DEMO_NOISE = "gaussian:25"
# Sized to finish in about 2 minutes on 2 CPU cores (budget: 5 minutes).
DEMO_BASE: dict[str, Any] = {"patch_size": 64, "batch_size": 8, "steps_per_epoch": 40,
                             "network": {"depth": 3, "width": 16, "growth": 2.0}}


def demo_image() -> np.ndarray:
    """``skimage.data.cell()``: a 660x550 phase image of a cell, shipped offline (CC0)."""
    from skimage import data

    return data.cell().astype(np.float32)


def run_demo(output: str | Path, *, epochs: int = 10, retrain_epochs: int = 5,
             crop: int | None = None, base: Mapping[str, Any] | None = None,
             overwrite: bool = False, progress: bool = True, device: str | None = None
             ) -> dict:
    """Add noise (fixed seed), run a two-stage cascade, write TIFFs, metrics and a figure.

    Stage 1 is Structured N2V trained on the noisy image, stage 2 Probabilistic N2V
    retrained on stage 1's output (paper III.D). ``epochs`` / ``retrain_epochs`` size the
    two stages, ``crop`` keeps a centred ``crop x crop`` part of the image and ``base``
    replaces :data:`DEMO_BASE` (tests use both for a tiny run). ``progress=False`` prints
    nothing. ``device`` is where the networks run (None: the best available).
    """
    from .cascade import Cascade, ranking_note, versus_best
    from .figures import comparison_figure
    from .io import write_image
    from .metrics import format_table, write_metrics
    from .noise import add_noise, parse_noise_spec
    from .reproduce import centre_crop
    from .runtime import resolve_device
    from .safe_write import atomic_write_text

    t0 = time.perf_counter()
    resolve_device(device)  # an unusable device fails before any work
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out}: folder is not empty; use --overwrite")
    clean = centre_crop(demo_image(), crop)
    spec = parse_noise_spec(DEMO_NOISE)
    noisy = add_noise(clean, spec, seed=0)
    cascade = Cascade(["structured", "probabilistic"], base=dict(base or DEMO_BASE),
                      epochs=epochs, retrain_epochs=retrain_epochs, device=device)
    cascade.fit(noisy, output_dir=out, reference=clean, data_range=255.0, names=["cell"],
                overwrite=True, progress=progress)
    for name, img in (("clean", clean), ("noisy", noisy)):
        write_image(out / f"{name}.tif", img, overwrite=True)

    stages = cascade.manifest["stages"]
    rows = [{"image": "noisy", **cascade.manifest["input_metrics"], "gt_free": None}]
    rows += [{"image": e["dir"], **e["metrics"], "gt_free": e["gt_free_error"],
              "gt_free_se": e["gt_free_se"], "gt_free_vs_best": versus_best(e),
              "train_seconds": e["train_seconds"]} for e in stages]
    columns = ["image", "mse", "psnr", "ssim", "gt_free", "gt_free_vs_best", "train_seconds"]
    write_metrics(out / "metrics.json", rows, overwrite=True)
    table = format_table(rows, columns=columns)
    note = (f"gt_free: mean squared difference to the noisy value at hidden pixels (no clean "
            f"image used); expected = true MSE + noise variance ({spec.sigma**2:g} here).\n"
            f"gt_free_vs_best: difference to the lowest score ± the standard error of that "
            f"paired difference (over 32x32-pixel blocks).\n"
            f"{ranking_note(cascade.manifest, lambda e: e['dir'])}.")
    atomic_write_text(out / "metrics.md", f"{table}\n\n{note}\n", overwrite=True)
    labels = ["Structured N2V", "Structured → ProbN2V"]
    panels = [(f"noisy ({rows[0]['psnr']:.2f} dB)", noisy)]
    panels += [(f"{lab} ({r['psnr']:.2f} dB)", o[0])
               for lab, r, o in zip(labels, rows[1:], cascade.outputs, strict=True)]
    comparison_figure(out / "comparison.png", [*panels, ("clean", clean)], overwrite=True)
    seconds = time.perf_counter() - t0
    if progress:
        print(table)
        print(f"\n{note}\ndemo finished in {seconds:.0f} s; outputs in {out.resolve()}:\n"
              f"  comparison.png, metrics.md, metrics.json, cascade.json, clean.tif, "
              f"noisy.tif,\n  stage1-structured/cell.tif, stage2-probabilistic/cell.tif (+ "
              f"cell_std.tif: uncertainty), stageN-*/model/")
    return {"rows": rows, "output": out, "seconds": seconds,
            "manifest": json.loads((out / "cascade.json").read_text())}
