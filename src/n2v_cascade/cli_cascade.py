"""The ``cascade`` and ``reproduce`` commands (registered on the app in :mod:`cli`).

Kept apart from ``cli.py`` so the cascade options can grow without crowding the basic
commands. Heavy imports happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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
)
from .errors import InputError

Resume = Annotated[bool, typer.Option("--resume", help="Reuse finished stages/runs in OUTPUT and continue an interrupted one from its checkpoint.")]


def _split(text: str, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"{option}: expected a comma-separated list, got {text!r}")
    return items


def _yaml_stages(path: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """A YAML mapping (shared by all stages) or list of mappings (one per stage)."""
    if path is None:
        return {}, None
    from .config import read_yaml

    data = read_yaml(path)
    if isinstance(data, dict):
        return data, None
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        return {}, data
    raise InputError(f"{path}: expected a mapping of config fields or a list of them (one "
                     f"per stage)")


def _plan(stages: str | None, passes: str | None, variant: str, candidates: str,
          per_stage: list[dict] | None) -> tuple[list[Any], bool]:
    """(stage specs, auto) from --stages / --passes / a per-stage YAML list."""
    if stages is not None and passes is not None:
        raise InputError("--stages and --passes: give one of them, not both")
    if per_stage is not None and "auto" in (stages, passes):
        raise InputError("--config: a per-stage list cannot be combined with auto mode")
    if passes is not None:
        if passes == "auto":
            return [variant], True
        if not passes.isdigit() or int(passes) < 1:
            raise InputError(f"--passes: expected a number >= 1 or 'auto', got {passes!r}")
        names = [variant] * int(passes)
    elif stages == "auto":
        return _split(candidates, "--candidates"), True
    elif stages is not None:
        names = _split(stages, "--stages")
    elif per_stage is not None:
        return per_stage, False
    else:
        names = ["structured", "probabilistic"]
    if per_stage is None:
        return names, False
    if len(per_stage) != len(names):
        raise InputError(f"--config: lists {len(per_stage)} stage(s) but {len(names)} were "
                         f"asked for")
    return [{**cfg, "variant": name} for cfg, name in zip(per_stage, names, strict=True)], False


def cascade(
    images: Annotated[list[Path], typer.Argument(help="Noisy image files or folders (TIFF/OME-TIFF, PNG, JPG, NPY; CZI, ND2, LIF with the formats extra).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for stage models, outputs and cascade.json.")],
    stages: Annotated[str | None, typer.Option(help="Variants per stage, e.g. structured,probabilistic (default), or 'auto'.")] = None,
    passes: Annotated[str | None, typer.Option(help="N stages of --variant (multi-pass), or 'auto'.")] = None,
    variant: Annotated[str, typer.Option(help="Variant of --passes.")] = "probabilistic",
    candidates: Annotated[str, typer.Option(help="Variants tried at each position with --stages auto.")] = "structured,probabilistic",
    max_stages: Annotated[int, typer.Option(help="Most stages in auto mode.")] = 4,
    config: Annotated[Path | None, typer.Option("--config", help="YAML: a mapping shared by all stages, or a list of mappings (one per stage). Options given here override it.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the first stage (paper: 30).")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(help="Epochs of each retraining stage (paper: 10).")] = None,
    steps_per_epoch: StepsPerEpoch = None,
    patch_size: PatchSize = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    seed: Annotated[int | None, typer.Option(help="Seed of stage 1; stage k uses seed + k - 1 (default 0).")] = None,
    depth: Depth = None,
    width: Width = None,
    precision: Annotated[str | None, typer.Option(help="auto (default), float32, bfloat16 or float16 (see `train --help`).")] = None,
    axes: Axes = None,
    device: Device = "auto",
    dims: Dims = None,
    patch_z: PatchZ = None,
    channels: Channels = None,
    reference: Annotated[list[Path] | None, typer.Option("--reference", "-r", help="Clean image(s), one per input, for true metrics per stage.")] = None,
    data_range: Annotated[float | None, typer.Option(help="Intensity range for PSNR/SSIM (default: from the reference).")] = None,
    posterior: Annotated[bool, typer.Option("--posterior", help="Probabilistic stages pass on the posterior mean (default: the prior mean).")] = False,
    inference_only: Annotated[bool, typer.Option("--inference-only", help="Apply --models in sequence without retraining.")] = False,
    models: Annotated[str | None, typer.Option(help="Trained model folders DIR1,DIR2,... for --inference-only.")] = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Progressive retraining: train each stage on the previous stage's output (paper III.D)."""
    from .inputs import list_inputs

    for path in images:  # a typo fails here, before torch is imported
        list_inputs(path)
    from .cascade import Cascade
    from .stages import merge_values

    if models is not None and not inference_only:
        raise InputError("--models: only used with --inference-only")
    inputs = [str(p) for p in images]
    refs = [str(p) for p in reference] if reference else None
    if inference_only:
        if models is None:
            raise InputError("--inference-only: needs --models DIR1,DIR2,...")
        casc = Cascade.from_models(_split(models, "--models"), posterior=posterior,
                                   device=device)
        casc.axes = axes
        casc.apply(inputs, output_dir=output, reference=refs, data_range=data_range,
                   overwrite=overwrite or resume, progress=not quiet)
    else:
        base, per_stage = _yaml_stages(config)
        given = {"steps_per_epoch": steps_per_epoch, "patch_size": patch_size,
                 "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
                 "precision": precision, "dims": parse_dims(dims), "patch_z": patch_z,
                 "channels": channels}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        net = {k: v for k, v in (("depth", depth), ("width", width)) if v is not None}
        if net:
            changes["network"] = net
        specs, auto = _plan(stages, passes, variant, candidates, per_stage)
        own = {k: v for k, v in changes.items() if k != "seed"}  # stage k keeps seed + k - 1
        specs = [merge_values(s, own) if isinstance(s, dict) else s for s in specs]
        casc = Cascade(specs, base=merge_values(base, changes), epochs=epochs,
                       retrain_epochs=retrain_epochs, posterior=posterior, auto=auto,
                       max_stages=max_stages, axes=axes, device=device)
        casc.fit(inputs, output_dir=output, reference=refs, data_range=data_range,
                 resume=resume, overwrite=overwrite, progress=not quiet)
    if not quiet:
        _print_summary(casc.manifest, output)


def _print_summary(manifest: dict, output: Path) -> None:
    from .cascade import ranking_note, versus_best
    from .metrics import format_table

    rows = [{"stage": e["stage"], "variant": e["variant"], "folder": e["dir"],
             "gt_free": e["gt_free_error"], "gt_free_vs_best": versus_best(e),
             **(e["metrics"] or {})} for e in manifest["stages"]]
    typer.echo(format_table(rows))
    if manifest.get("auto"):
        typer.echo(f"auto: {manifest['auto']['stopped']}; kept {len(rows)} stage(s)")
    typer.echo(f"{ranking_note(manifest)}\nmanifest: {output / 'cascade.json'}")


def reproduce(
    clean: Annotated[list[Path], typer.Option("--clean", help="Clean image files or folders (converted to grayscale, own intensity scale).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for runs, tables, figures and summary.md.")],
    noise: Annotated[list[str] | None, typer.Option(help="Noise model(s), repeatable: gaussian:SIGMA | poisson:PEAK | poisson-gaussian:PEAK,SIGMA (default: gaussian:25 and poisson:30).")] = None,
    budget: Annotated[str, typer.Option(help="quick (small network, minutes) or paper (30 / 10 epochs).")] = "quick",
    variants: Annotated[str, typer.Option(help="Comma-separated variants (the paper's four by default; n2v2 also exists).")] = "n2v,structured,blindspot,probabilistic",
    crop: Annotated[int, typer.Option(help="Centre crop side in pixels (paper: 128; 0 = whole images).")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the noise (image i uses seed + i) and of training.")] = 0,
    device: Device = "auto",
    resume: Resume = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Reproduce the paper: passes 1-3 and all ordered pairs per noise model; Tables I-III, Fig. 2."""
    from .reproduce import DEFAULT_NOISES
    from .reproduce import reproduce as reproduce_fn

    summary = reproduce_fn([str(p) for p in clean], output, noises=noise or DEFAULT_NOISES,
                           budget=budget, variants=_split(variants, "--variants"),
                           crop=crop or None, seed=seed, resume=resume, overwrite=overwrite,
                           progress=not quiet, device=device)
    if quiet:
        return
    for label, res in summary["noise"].items():
        corr = res["spearman_gt_free_vs_mse"]
        rho = "n/a" if corr["rho"] is None else f"{corr['rho']:.3f}"
        typer.echo(f"{label}: {len(res['runs'])} runs; Spearman(GT-free, MSE) = {rho}")
    typer.echo(f"finished in {summary['seconds']:.0f} s; tables in {output}/*/table*.md, "
               f"summary {output / 'summary.md'}")
