"""The bundled demo: a real microscopy image, synthetic noise, N2V, outputs on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import OutputExistsError

DEMO_NOISE = "gaussian:25"


def demo_image() -> np.ndarray:
    """``skimage.data.cell()``: a 660x550 phase image of a cell, shipped offline (CC0)."""
    from skimage import data

    return data.cell().astype(np.float32)


def run_demo(output: str | Path, *, epochs: int = 10, overwrite: bool = False,
             progress: bool = True) -> dict:
    """Add noise (fixed seed), train N2V briefly, denoise, write TIFFs, figure and metrics."""
    from .config import make_config
    from .figures import comparison_figure
    from .io import write_image
    from .metrics import evaluate, format_table, write_metrics
    from .noise import add_noise, parse_noise_spec
    from .train import train

    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out}: folder is not empty; use --overwrite")
    clean = demo_image()
    noisy = add_noise(clean, parse_noise_spec(DEMO_NOISE), seed=0)
    config = make_config(
        "demo", variant="n2v", epochs=epochs, patch_size=64, batch_size=8, steps_per_epoch=40,
        seed=0, network={"depth": 3, "width": 16})
    model = train(noisy, config, output_dir=out / "model", overwrite=True, progress=progress)
    denoised = model.denoise(noisy)
    for name, img in (("clean", clean), ("noisy", noisy), ("denoised", denoised)):
        write_image(out / f"{name}.tif", img, overwrite=True)
    rows = [{"image": name, **evaluate(img, clean, 255.0)}
            for name, img in (("noisy", noisy), ("n2v", denoised))]
    write_metrics(out / "metrics.json", rows, overwrite=True)
    table = format_table(rows, columns=["image", "mse", "psnr", "ssim"])
    (out / "metrics.md").write_text(table + "\n")
    comparison_figure(out / "comparison.png",
                      [(f"noisy ({rows[0]['psnr']:.2f} dB)", noisy),
                       (f"N2V ({rows[1]['psnr']:.2f} dB)", denoised), ("clean", clean)],
                      overwrite=True)
    print(table)
    print(f"\ndemo outputs in {out.resolve()}: clean.tif, noisy.tif, denoised.tif, "
          f"comparison.png, metrics.json, metrics.md, model/")
    return {"rows": rows, "output": out}
