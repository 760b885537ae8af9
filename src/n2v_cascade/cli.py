"""Command-line interface: a thin typer shell over the Python API.

Every user-caused error is printed as one line ``error: ...`` with exit code 2; no
traceback. Ctrl-C during training writes a checkpoint and exits with code 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import InputError, N2VError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Self-supervised Noise2Void denoising for microscopy images (no clean data needed).",
)

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _config_from_options(config_file: Path | None, **opts):
    """Merge a YAML config (if any) with the command-line options that were given."""
    from .config import TrainConfig, load_config, update_config

    base = load_config(config_file) if config_file else TrainConfig()
    changes: dict = {}
    nested = {"mask": {}, "network": {}, "noise_model": {}}
    masks = opts.pop("mask") or []
    mask_file = opts.pop("mask_file")
    for spec in masks:
        if spec in ("grid", "random"):
            nested["mask"]["pattern"] = spec
        elif spec.split(":")[0] in ("horizontal", "vertical"):
            nested["mask"]["struct"] = spec
        else:
            raise InputError(f"--mask: unknown mask {spec!r} (use random, grid, horizontal:N, "
                             f"vertical:N or --mask-file)")
    if mask_file is not None:
        nested["mask"]["struct_kernel"] = _load_mask_file(mask_file)
    for key, value in opts.items():
        if value is None:
            continue
        group, _, field = key.partition("__")
        if field:
            nested[group][field] = value
        else:
            changes[key] = value
    changes.update({k: v for k, v in nested.items() if v})
    return update_config(base, source="options", **changes)


def _load_mask_file(path: Path) -> list[list[bool]]:
    import numpy as np

    from .masking import validate_kernel

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy mask ({type(exc).__name__})") from None
    return validate_kernel(np.asarray(arr).astype(bool), str(path)).tolist()


@app.command()
def train(
    images: Annotated[list[Path], typer.Argument(help="Noisy image files or folders (TIFF, PNG, JPG, NPY).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    variant: Annotated[str | None, typer.Option(help="n2v, n2v2, structured, blindspot or probabilistic.")] = None,
    backbone: Annotated[str | None, typer.Option(help="unet or blindspot (probabilistic only; default: the variant's).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config; options given here override it.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (paper: 30).")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Batches per epoch (default: each pixel ~8 times).")] = None,
    patch_size: Annotated[int | None, typer.Option(help="Square patch side; divisible by 2**depth (default 128).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Patches per batch (default 8).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Adam learning rate (default 1e-3).")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Bottom fraction of each image held out for validation (default 0.1).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    depth: Annotated[int | None, typer.Option(help="U-Net levels (default 3).")] = None,
    width: Annotated[int | None, typer.Option(help="Channels of the first level (default 32).")] = None,
    mask: Annotated[list[str] | None, typer.Option(help="random | grid | horizontal:N | vertical:N (repeatable).")] = None,
    mask_file: Annotated[Path | None, typer.Option(help="structN2V mask: 2-D boolean .npy with odd sides.")] = None,
    mask_fraction: Annotated[float | None, typer.Option(help="Fraction of pixels masked per patch (random, default 0.002).")] = None,
    mask_stride: Annotated[int | None, typer.Option(help="Grid stride for grid masking (default 4).")] = None,
    noise_model: Annotated[str | None, typer.Option(help="gaussian or poisson-gaussian (probabilistic posterior).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Known Gaussian noise sigma in image units (default: estimated).")] = None,
    precision: Annotated[str | None, typer.Option(help="float32 or bfloat16 (autocast, faster on CPUs with BF16).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUTPUT/checkpoint.pt.")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a denoiser on noisy images (self-supervised) and save it to a model folder."""
    from .train import train as train_fn

    cfg = _config_from_options(
        config, variant=variant, backbone=backbone, epochs=epochs,
        steps_per_epoch=steps_per_epoch, patch_size=patch_size, batch_size=batch_size,
        learning_rate=learning_rate, val_fraction=val_fraction, seed=seed,
        network__depth=depth, network__width=width, mask=mask, mask_file=mask_file,
        mask__fraction=mask_fraction, mask__stride=mask_stride,
        noise_model__kind=noise_model, noise_model__sigma=sigma, precision=precision,
    )
    model = train_fn([str(p) for p in images], cfg, output_dir=output, resume=resume,
                     overwrite=overwrite, progress=not quiet)
    typer.echo(f"model saved to {output} ({model.train_seconds:.1f} s of training)")


@app.command()
def denoise(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders to denoise.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by `train`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .tif (one input) or folder.")],
    tile: Annotated[int, typer.Option(help="Tile side for bounded memory (0 = whole image).")] = 512,
    overlap: Annotated[int | None, typer.Option(help="Tile overlap (default: the receptive-field radius).")] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per batch.")] = 4,
    tta: Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations.")] = False,
    posterior: Annotated[bool, typer.Option("--posterior", help="Posterior mean (probabilistic models).")] = False,
    uncertainty: Annotated[bool, typer.Option("--uncertainty", help="Also write *_std.tif (probabilistic models).")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Denoise images with a saved model; writes float32 TIFFs in the input's intensity scale."""
    from .batch import denoise_files
    from .model import Model

    net = Model.load(model)
    failed = denoise_files(
        net, images, output, overwrite=overwrite, progress=not quiet, posterior=posterior,
        uncertainty=uncertainty, tile=tile or None, overlap=overlap, batch_size=batch_size,
        tta=tta)
    if failed:
        raise typer.Exit(2)


@app.command()
def evaluate(
    denoised: Annotated[list[Path], typer.Argument(help="Denoised (or noisy) images to score.")],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Clean reference image.")],
    data_range: Annotated[float | None, typer.Option(help="Intensity range for PSNR/SSIM (default: 255 for 0-255 data, 1 for [0,1], else max-min of the reference).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """MSE, PSNR and SSIM of images against a clean reference."""
    from .io import read_image
    from .metrics import default_data_range, format_table, write_metrics
    from .metrics import evaluate as evaluate_fn

    ref = read_image(reference, allow_constant=True)
    rng = data_range if data_range is not None else default_data_range(ref)
    rows = []
    for path in denoised:
        img = read_image(path, allow_constant=True)
        rows.append({"image": path.name, **evaluate_fn(img, ref, rng, source=str(path))})
    typer.echo(format_table(rows))
    for out in (json_out, csv_out):
        if out is not None:
            write_metrics(out, rows, overwrite=overwrite)


@app.command("add-noise")
def add_noise(
    image: Annotated[Path, typer.Argument(help="Clean image file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Noisy image to write (.tif or .npy).")],
    noise: Annotated[str, typer.Option(help="gaussian:SIGMA | poisson:PEAK | poisson-gaussian:PEAK,SIGMA. SIGMA is in the image's own units (25 on a 0-255 image); PEAK is the photon count at the image maximum.")] = "gaussian:25",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Add synthetic noise with a fixed seed (for benchmarking against the clean image)."""
    from .io import read_image, write_image
    from .noise import add_noise as add_noise_fn
    from .noise import parse_noise_spec

    spec = parse_noise_spec(noise)
    clean = read_image(image)
    write_image(output, add_noise_fn(clean, spec, seed=seed), overwrite=overwrite,
                protect=[image])
    typer.echo(f"wrote {output} ({spec}, seed {seed})")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo outputs.")] = Path("demo-output"),
    epochs: Annotated[int, typer.Option(help="Training epochs (short by default).")] = 10,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Run the bundled demo: noisy skimage cell image -> N2V -> denoised, figure, metrics."""
    from .demo import run_demo

    run_demo(output, epochs=epochs, overwrite=overwrite, progress=not quiet)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from .train import TrainingInterrupted

    try:
        app(standalone_mode=False)
    except TrainingInterrupted as exc:
        typer.echo(f"stopped: {exc}", err=True)
        sys.exit(130)
    except N2VError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
