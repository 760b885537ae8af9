"""Command-line interface: a thin typer shell over the Python API.

Every user-caused error is printed as one line ``error: ...`` with exit code 2; no
traceback. Ctrl-C during training writes a checkpoint and exits with code 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_config import blind_radius as parse_blind_radius
from .cli_config import config_from_options
from .cli_options import (
    Axes,
    BatchSize,
    Channels,
    Depth,
    Device,
    Dims,
    LearningRate,
    Overwrite,
    PatchSize,
    PatchZ,
    Quiet,
    StepsPerEpoch,
    Width,
    parse_dims,
    parse_duration,
)
from .errors import InputError, N2VError, OutputExistsError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Self-supervised Noise2Void denoising for microscopy images (no clean data needed).",
)




@app.command()
def train(
    images: Annotated[list[Path], typer.Argument(help="The noisy images to learn from: files or folders (TIFF, PNG, JPG, NPY). No clean images are needed.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to save the trained model in (use it with `denoise --model`).")],
    variant: Annotated[str | None, typer.Option(help="Denoising method (default n2v). `n2v-cascade methods` lists them and what each is for; probabilistic-blindspot also gives a per-pixel uncertainty.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Older spelling: `--variant probabilistic --backbone blindspot` is the method probabilistic-blindspot.", rich_help_panel="Advanced")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="A YAML file with settings (as saved in a model folder's config.yaml); options given here override it.", rich_help_panel="Advanced")] = None,
    epochs: Annotated[int | None, typer.Option(help="How many rounds of training (default 30; blind-spot methods 10). A default round is one pass over the images, at most 100 steps, so a default run takes about the same time on large data as on small. --time-limit stops earlier if it is reached first.")] = None,
    steps_per_epoch: StepsPerEpoch = None,
    patch_size: PatchSize = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    val_fraction: Annotated[float | None, typer.Option(help="Fraction of each image (a strip at the bottom) kept aside to report a validation loss (default 0.1; 0 = none).", rich_help_panel="Advanced")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed: the same seed and inputs give the same model (default 0).", rich_help_panel="Advanced")] = None,
    depth: Depth = None,
    width: Width = None,
    blind_radius: Annotated[str | None, typer.Option(help="Blind-spot methods: how many pixels around each pixel the network must not look at. Noise that spreads over neighbouring pixels (some cameras) needs 1 or 2; default auto, chosen from your images (0 = only the pixel itself).", rich_help_panel="Advanced")] = None,
    ema_decay: Annotated[float | None, typer.Option(help="Smooth the model over the last training steps (default 0.99; 0 = use the last step's model as it is).", rich_help_panel="Advanced")] = None,
    mask: Annotated[list[str] | None, typer.Option(help="Which pixels are hidden during training: random (n2v), grid (structured); and around each of them (structN2V): horizontal:N / vertical:N (with --dims 3 also depth:N) a line of N pixels, for stripe-like noise along rows, columns or slices, box:N an N x N square, auto (default) a square when the noise is correlated between neighbours, none nothing. Repeatable.", rich_help_panel="Advanced")] = None,
    mask_file: Annotated[Path | None, typer.Option(help="Your own structN2V hiding pattern: a 2-D (or, with --dims 3, 3-D) boolean .npy array with odd sides.", rich_help_panel="Advanced")] = None,
    mask_fraction: Annotated[float | None, typer.Option(help="Share of pixels hidden per crop with random masking (default 0.002).", rich_help_panel="Advanced")] = None,
    mask_stride: Annotated[int | None, typer.Option(help="Spacing in pixels of the hidden grid with grid masking (default 4).", rich_help_panel="Advanced")] = None,
    noise_model: Annotated[str | None, typer.Option(help="Probabilistic methods: the kind of noise, gaussian (the same everywhere, default) or poisson-gaussian (grows with brightness: photon counting, most fluorescence).", rich_help_panel="Advanced")] = None,
    sigma: Annotated[float | None, typer.Option(help="The noise level if you know it (Gaussian standard deviation in the image's units); default: measured from the images.", rich_help_panel="Advanced")] = None,
    precision: Annotated[str | None, typer.Option(help="auto (default: bfloat16 where a quick timing at start shows it faster, e.g. CPUs with native bfloat16 and most GPUs; float32 elsewhere; float16 with loss scaling on CUDA GPUs without bfloat16), float32, bfloat16 or float16. The choice is printed and saved with the model.", rich_help_panel="Advanced")] = None,
    time_limit: Annotated[str | None, typer.Option(help="Stop training after this long (e.g. 90s, 10m, 2h) and save the model so far; --resume continues it. Default: no limit.")] = None,
    refine: Annotated[str, typer.Option(help="auto (default): when the noise is spatially correlated (as from many cameras), with a 2-D network, the default method trains for a third of the epochs and the renoise method, learning from its output, for the rest; the model saved is the second (the first is kept in OUTPUT/stage1). renoise: do so for any method. none: train one method.", rich_help_panel="Advanced")] = "auto",
    axes: Axes = None,
    dims: Dims = None,
    patch_z: PatchZ = None,
    channels: Channels = None,
    device: Device = "auto",
    processes: Annotated[int | None, typer.Option("--processes", help="Train one model with N processes on this machine (PyTorch DistributedDataParallel; CPUs: gloo, each process gets its share of the cores; CUDA: nccl, one GPU each). --batch-size is the batch of all processes together (it must divide by N) and the learning rate is unchanged, so the recipe is that of one process. Rank 0 writes the checkpoints and the model; --resume works with any number of processes. Under torchrun leave it out.", rich_help_panel="Advanced")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped or interrupted run in OUTPUT (its settings are taken from the folder); with a larger --epochs, train a finished model longer.")] = False,
    lazy: Annotated[bool, typer.Option("--lazy", help="Read TIFFs block by block instead of whole, for images larger than memory: training draws its crops from 8 random blocks of storage chunks at a time, drawn again every 50 steps (zarr and OME-Zarr inputs are always read so; tiled or compressed TIFFs need the distributed extra).")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a denoiser on noisy images (self-supervised) and save it to a model folder."""
    from .inputs import list_inputs
    from .omezarr import is_zarr

    for path in images:  # a typo fails here, before torch is imported
        if not is_zarr(path):  # a zarr store is a folder of chunks, not of images
            list_inputs(path)
    from .checkpoints import stored_recipe
    from .refine import PLAN, is_refined, train_refined

    recipe = dict(
        variant=variant, backbone=backbone, epochs=epochs,
        steps_per_epoch=steps_per_epoch, patch_size=patch_size, batch_size=batch_size,
        learning_rate=learning_rate, val_fraction=val_fraction, seed=seed,
        network__depth=depth, network__width=width,
        network__blind_radius=parse_blind_radius(blind_radius),
        ema_decay=ema_decay, mask=mask, mask_file=mask_file,
        mask__fraction=mask_fraction, mask__stride=mask_stride,
        noise_model__kind=noise_model, noise_model__sigma=sigma, precision=precision,
        dims=parse_dims(dims), patch_z=patch_z, channels=channels)
    two_phase = resume and is_refined(output)
    if two_phase and (config is not None or any(v not in (None, []) for v in recipe.values())):
        raise InputError(f"{output}: a two-phase run resumes with the recipe in its "
                         f"{PLAN}; leave out the recipe options, or use --overwrite to "
                         f"start over")
    cfg = config_from_options(config, stored_recipe(output) if resume and not two_phase
                              else None, **recipe)
    from .launch import launch, needs_launch, process_env

    limit = parse_duration(time_limit)
    if needs_launch(processes, cfg.batch_size):  # start the processes; they run this command
        sys.exit(launch(["-m", __package__, *sys.argv[1:]], processes))  # rank 0 has spoken
    model = train_refined([str(p) for p in images], cfg, refine=refine, axes=axes,
                          output_dir=output, resume=resume, overwrite=overwrite,
                          progress=not quiet, device=device, time_limit=limit, lazy=lazy)
    if not quiet and process_env()[0] == 0:
        typer.echo(f"model saved to {output} ({model.train_seconds:.1f} s of training)")


@app.command()
def denoise(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders to denoise.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by `train`, or a .zip written by `export`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.tif, or .png for 8/16-bit) for one input, or a folder.")],
    tile: Annotated[int, typer.Option(help="Large images are processed in square pieces of this side to limit memory (default 512; 0 = all at once). The result is the same.", rich_help_panel="Advanced")] = 512,
    overlap: Annotated[int | None, typer.Option(help="How far the pieces overlap (default: as far as the network looks, which makes the result exact).", rich_help_panel="Advanced")] = None,
    batch_size: Annotated[int, typer.Option(help="Pieces processed together (default 4; more uses more memory).", rich_help_panel="Advanced")] = 4,
    tta: Annotated[bool, typer.Option("--tta", help="Denoise the 8 flipped/rotated copies and average them: slightly better, 8x slower.")] = False,
    posterior: Annotated[bool | None, typer.Option("--posterior/--prior", help="Probabilistic blind-spot models: --posterior combines the prediction with the measured pixel and a noise model (usually sharper), --prior returns the network's own estimate. Default: per image, whichever a ground-truth-free estimate of the error says is better (printed for each image).")] = None,
    blend: Annotated[str | None, typer.Option(help="Masked and blind-spot methods: how much of each measured pixel goes back into its denoised value: auto (default: the share that minimises the expected error, estimated per image from what the denoising removed; printed for each image), none (the network's estimate alone) or a share from 0 to 1.")] = None,
    uncertainty: Annotated[bool, typer.Option("--uncertainty", help="Probabilistic models: also write NAME_std.tif, the estimated error (standard deviation) of each denoised pixel.")] = False,
    axes: Axes = None,
    output_dtype: Annotated[str, typer.Option(help="Pixel type of the TIFF written: float32 (default, no rounding) or input (the input's type, e.g. uint16: rounded, values outside its range clipped and counted).")] = "float32",
    device: Device = "auto",
    noise_from: Annotated[str, typer.Option("--noise-from", help="With --posterior/--uncertainty, where the noise level comes from: bootstrap (default: measured on each image against its denoised version; safest on real microscope noise), image (measured on each image alone) or stored (measured on the training images).", rich_help_panel="Advanced")] = "bootstrap",
    workers: Annotated[int | None, typer.Option(help="OME-Zarr: predict on a local dask cluster of this many worker processes (default: threads in this process).", rich_help_panel="OME-Zarr (chunked)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="OME-Zarr: predict on a running dask.distributed cluster at this address (tcp://HOST:PORT); its workers must see the input and output paths.", rich_help_panel="OME-Zarr (chunked)")] = None,
    chunk: Annotated[str | None, typer.Option(help="OME-Zarr: output chunk sides on the model's spatial axes, e.g. 1024 or 64,256,256 (default 1024x1024; 64x256x256 for 3-D models).", rich_help_panel="OME-Zarr (chunked)")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Denoise images with a saved model; writes TIFFs with the input's axes, pixel sizes and channel names (float32, or the input's type with --output-dtype input), or integer PNGs, in the input's intensity scale. An OME-Zarr input or output (-o OUT.ome.zarr; the input may be a large TIFF) is predicted chunk by chunk, out of core, on dask; a rerun resumes an interrupted one."""
    from .batch import denoise_files
    from .inputs import list_inputs
    from .omezarr import is_zarr

    if is_zarr(output) or any(is_zarr(p) for p in images):
        return _denoise_chunked(images, model, output, workers=workers, scheduler=scheduler, chunk=chunk, posterior=posterior, blend=blend, uncertainty=uncertainty, noise_from=noise_from, device=device, axes=axes, output_dtype=output_dtype, overwrite=overwrite, quiet=quiet, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta)
    if workers is not None or scheduler is not None or chunk is not None:
        raise InputError("--workers, --scheduler and --chunk apply to OME-Zarr output (-o OUT.ome.zarr)")
    for path in images:  # a typo fails here, before torch is imported
        list_inputs(path)
    from .model import Model
    from .posterior import NOISE_SOURCES

    for name, value, low in (("--tile", tile, 0), ("--batch-size", batch_size, 1),
                             ("--overlap", overlap, 0)):
        if value is not None and value < low:
            raise InputError(f"{name}: must be >= {low}, got {value}")
    if noise_from not in NOISE_SOURCES:
        raise InputError(f"--noise-from: expected {', '.join(NOISE_SOURCES[:-1])} or "
                         f"{NOISE_SOURCES[-1]}, got {noise_from!r}")
    if blend is not None:
        from .blend import blend_setting

        blend_setting(blend)  # refused before any work
    net = Model.load(model, device=device)
    failed = denoise_files(
        net, images, output, overwrite=overwrite, progress=not quiet,
        posterior="auto" if posterior is None else posterior,
        uncertainty=uncertainty, tile=tile or None, overlap=overlap, batch_size=batch_size,
        tta=tta, noise_model=noise_from, axes=axes, output_dtype=output_dtype,
        blend="auto" if blend is None else blend)
    if failed:
        raise typer.Exit(2)


def _denoise_chunked(images: list[Path], model: Path, output: Path, *, workers: int | None, scheduler: str | None, chunk: str | None, posterior: bool | None, blend: str | None, uncertainty: bool, noise_from: str, device: str, quiet: bool, **options) -> None:
    """``denoise`` into an OME-Zarr: one input, chunk by chunk (:func:`.chunked.denoise_chunked`)."""
    from .omezarr import is_zarr

    if len(images) != 1:
        raise InputError("chunked (OME-Zarr) prediction takes one input: an OME-Zarr, a zarr array or a TIFF")
    if not is_zarr(output) or output.suffix.lower() != ".zarr":
        raise InputError(f"{output}: an OME-Zarr input is written as an OME-Zarr; give -o NAME.ome.zarr")
    if posterior or uncertainty or noise_from != "bootstrap":
        raise InputError("--posterior, --uncertainty and --noise-from are not available for OME-Zarr output (the prior mean is written)")
    if blend not in (None, "none"):
        raise InputError("--blend is not available for OME-Zarr output (the prior mean is written)")
    try:
        sizes = [int(part) for part in chunk.split(",")] if chunk else None
    except ValueError:
        raise InputError(f"--chunk: expected a size or comma-separated sizes (e.g. 1024 or 32,256,256), got {chunk!r}") from None
    if options["tile"] < 0 or options["batch_size"] < 1 or (options["overlap"] or 0) < 0:
        raise InputError("--tile, --overlap: must be >= 0; --batch-size: must be >= 1")
    from .chunked import denoise_chunked
    from .model import Model

    net = Model.load(model, device=device)
    options["tile"] = options["tile"] or None
    try:
        result = denoise_chunked(net, images[0], output, chunks=sizes[0] if sizes and len(sizes) == 1 else sizes, scheduler=scheduler, workers=workers, progress=not quiet, **options)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the chunks written so far are kept in {output}; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    if not quiet:
        typer.echo(f"{images[0]} -> {output}: {result.computed} chunk(s) computed, {result.skipped} already done, {max(result.levels, 0) or 'existing'} resolution level(s), {result.seconds:.1f} s")


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

    for out in (json_out, csv_out):  # check every output before any work or write
        if out is not None and out.suffix.lower() not in (".json", ".csv"):
            raise InputError(f"{out}: metrics file must end in .json or .csv")
        if out is not None and out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    if data_range is not None and not 0 < data_range < float("inf"):
        raise InputError(f"--data-range: must be a positive number, got {data_range}")
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

    try:
        spec = parse_noise_spec(noise)
    except InputError as exc:
        raise InputError(f"--noise: {exc}") from None
    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    clean = read_image(image, allow_constant=True)  # a flat field is a fine clean image
    try:
        noisy = add_noise_fn(clean, spec, seed=seed)
    except InputError as exc:
        raise InputError(f"{image}: {exc}") from None
    write_image(output, noisy, overwrite=overwrite, protect=[image])
    typer.echo(f"wrote {output} ({spec}, seed {seed})")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo outputs.")] = Path("demo-output"),
    epochs: Annotated[int, typer.Option(help="Epochs of stage 1, Structured N2V (short by default).")] = 10,
    retrain_epochs: Annotated[int, typer.Option(help="Epochs of stage 2, Probabilistic N2V retrained on stage 1's output.")] = 5,
    device: Device = "auto",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Run the bundled demo: noisy skimage cell image -> Structured -> Probabilistic cascade."""
    from .demo import run_demo

    run_demo(output, epochs=epochs, retrain_epochs=retrain_epochs, overwrite=overwrite,
             progress=not quiet, device=device)


@app.command("methods")
def list_methods(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown (as in the README).")] = False,
) -> None:
    """List the denoising methods (for --variant) and what each is for."""
    from .methods import markdown_table, methods

    if markdown:
        typer.echo(markdown_table())
        return
    for method in methods().values():
        typer.echo(f"{method.name:<24} {method.summary}")


from .cli_cascade import cascade, reproduce  # noqa: E402  (commands kept in their own module)
from .cli_export import export  # noqa: E402
from .cli_finish import finish  # noqa: E402

app.command()(cascade)
app.command()(reproduce)
app.command()(finish)
app.command()(export)


def _usage_errors() -> tuple[type[BaseException], ...]:
    """click's usage-error base classes (newer typer vendors click as ``typer._click``)."""
    types: list[type[BaseException]] = [getattr(typer, "TyperException", N2VError)]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:
        pass
    return tuple(types)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Print a warning as one ``warning: ...`` line (no source location, no code line)."""
    typer.echo(f"warning: {str(message).strip()}", err=True)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = app(standalone_mode=False)
    except N2VError as exc:
        # only a run that imported the training module (and torch) can be interrupted
        training = sys.modules.get(f"{__package__}.training")
        if training is not None and isinstance(exc, training.TrainingInterrupted):
            typer.echo(f"stopped: {exc.cli_message()}", err=True)
            sys.exit(130)
        typer.echo(f"error: {exc.cli_message()}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors: unknown option, bad value, missing argument
        if not isinstance(exc, _usage_errors()):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # plain `n2v-cascade`: print the help
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        text = " ".join(exc.format_message().split())
        typer.echo(f"error: {text}{hint}", err=True)
        sys.exit(2)
    # in non-standalone mode click returns the code of typer.Exit / Ctrl-C instead of raising
    if isinstance(code, int) and code:
        if code == 130:
            typer.echo("interrupted", err=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
